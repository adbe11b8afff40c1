//! `hb-cli serve`: run the node.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use ao_core::{Message, Value};

use crate::node::{Node, NodeOptions};

/// Run the node: serve HyperPATH requests over HTTP until SIGINT or SIGTERM, then finish
/// in-flight requests and flush the store.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeCommand {
    /// The port to listen on (default 8734; 0 picks a free port).
    #[arg(long, env = "HB_PORT")]
    port: Option<u16>,
    /// The address to bind (default 0.0.0.0).
    #[arg(long)]
    bind: Option<String>,
    /// The data directory: the store (`store.redb`) and the wallet (`wallet.json`, generated
    /// on first start).
    #[arg(long, default_value = "hb-data", env = "HB_DATA_DIR")]
    data_dir: PathBuf,
    /// A config file (`config.flat` or `config.json`; default: one of those in the data
    /// directory).
    #[arg(long)]
    config: Option<PathBuf>,
    /// How WASM evaluations are budgeted (node option `wasm-budget`): `fuel` (default,
    /// deterministic; size `process-fuel`) or `wall-clock` (stops at a time limit; size
    /// `process-time-ms`).
    #[arg(long, value_parser = ["fuel", "wall-clock"])]
    wasm_budget: Option<String>,
}

impl ServeCommand {
    pub(crate) fn execute(self) -> Result<()> {
        let started = Instant::now();
        let mut flags = Message::new();
        if let Some(p) = self.port {
            flags.insert("port", Value::Integer(i64::from(p)));
        }
        if let Some(b) = &self.bind {
            flags.insert("bind", b.as_str());
        }
        if let Some(b) = &self.wasm_budget {
            flags.insert("wasm-budget", b.as_str());
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let node = Arc::new(Node::open(NodeOptions::new(
                &self.data_dir,
                self.config.as_deref(),
                flags,
            ))?);
            let server = node.serve(shutdown_signal()).await?;
            let addr = server.addr();
            node.set_listen_url(addr);
            tracing::info!(
                address = %node.address(),
                url = %format!("http://{addr}"),
                data_dir = %self.data_dir.display(),
                startup_ms = started.elapsed().as_millis() as u64,
                "serving"
            );
            println!(
                "ao-node {} serving http://{addr} as {}",
                env!("CARGO_PKG_VERSION"),
                node.address()
            );
            server.wait().await;
            tracing::info!("stopped accepting; in-flight requests done; flushing the store");
            node.close().context("closing the store")?;
            Ok(())
        })
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
