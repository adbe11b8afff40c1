//! `hb-cli resolve HYPERPATH`: one-shot local resolution.

use std::path::PathBuf;

use anyhow::Result;
use ao_core::{Value, codec};

use crate::node::{Node, NodeOptions};

/// Resolve one HyperPATH against the node's devices and store, and print the result.
#[derive(Debug, clap::Args)]
pub(crate) struct ResolveCommand {
    /// The HyperPATH, e.g. `/~meta@1.0/info/address` or `/ID/key`.
    hyperpath: String,
    /// The data directory (store and wallet).
    #[arg(long, default_value = "hb-data", env = "HB_DATA_DIR")]
    data_dir: PathBuf,
    /// A config file (flat or JSON).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the result as JSON instead of the debug form.
    #[arg(long)]
    json: bool,
}

impl ResolveCommand {
    pub(crate) fn execute(self) -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let node = Node::open(NodeOptions::new(
                &self.data_dir,
                self.config.as_deref(),
                Default::default(),
            ))?;
            let result = node.resolver.resolve_path(&self.hyperpath).await;
            node.close()?;
            let value = result?;
            match (&value, self.json) {
                (Value::Message(m), true) => {
                    println!("{}", String::from_utf8_lossy(&codec::to_json(m)?))
                }
                (Value::Binary(b), _) => println!("{}", String::from_utf8_lossy(b)),
                (other, _) => println!("{other:#?}"),
            }
            Ok(())
        })
    }
}
