//! `hb store …`: operator commands on a node's store (`<data-dir>/store.redb`).
//!
//! Every subcommand opens the store itself and refuses to run while a node holds it (the store
//! is locked). `stats`, `get` and `check` never write to the file; `compact` only reclaims free
//! space.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use ao_core::Value;
use ao_store::StoreConfig;

/// Inspect, check or compact a node's store.
#[derive(Debug, clap::Args)]
#[command(after_help = "EXAMPLES:\n  \
    hb store stats --data-dir ./hb-data\n  \
    hb store get <ID> \n  \
    hb store get <ID>/nested/key\n  \
    hb store check\n  \
    hb store compact")]
pub(crate) struct StoreCommand {
    /// What to do.
    #[command(subcommand)]
    pub(crate) action: StoreAction,
}

/// Arguments every store subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DataDirArgs {
    /// The node's data directory; the store is `<DIR>/store.redb`.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "./hb-data",
        env = "HB_DATA_DIR"
    )]
    pub(crate) data_dir: PathBuf,
}

impl DataDirArgs {
    fn config(&self) -> StoreConfig {
        StoreConfig::in_data_dir(&self.data_dir)
    }
}

/// A store subcommand.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum StoreAction {
    /// Counts and sizes: entries, binaries, groups, links, blobs, file size.
    Stats {
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Print the message or binary at an ID or path (`ID`, `ID/key/subkey`, `data/<hash>`).
    Get {
        /// A message ID (any of its commitment IDs works too) or a store path.
        id_or_path: String,
        /// Print the Rust debug form instead of `json@1.0`.
        #[arg(long)]
        debug: bool,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Check integrity: every page checksum, then every record, link and blob. Read-only.
    Check {
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Compact the store file, returning free space to the file system. Stop the node first.
    Compact {
        #[command(flatten)]
        dir: DataDirArgs,
    },
}

impl StoreCommand {
    /// Runs the subcommand, printing to stdout.
    pub(crate) fn execute(self) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        match self.action {
            StoreAction::Stats { dir } => {
                let stats = ao_store::stats(&dir.config()).context("store stats")?;
                writeln!(out, "{stats}")?;
            }
            StoreAction::Get {
                id_or_path,
                debug,
                dir,
            } => {
                let value = ao_store::get(&dir.config(), &id_or_path)
                    .with_context(|| format!("store get {id_or_path}"))?;
                match value {
                    None => bail!(
                        "nothing at {id_or_path:?} in {}",
                        dir.config().path.display()
                    ),
                    Some(v) if debug => writeln!(out, "{v:#?}")?,
                    Some(Value::Message(m)) => {
                        let json = ao_core::codec::to_json(&m)
                            .with_context(|| format!("encoding {id_or_path} as JSON"))?;
                        out.write_all(&json)?;
                        writeln!(out)?;
                    }
                    Some(Value::Binary(b)) => match std::str::from_utf8(&b) {
                        Ok(text) => writeln!(out, "{text}")?,
                        Err(_) => writeln!(out, "{b:?}")?,
                    },
                    Some(other) => writeln!(out, "{other:?}")?,
                }
            }
            StoreAction::Check { dir } => {
                let report = ao_store::check(&dir.config()).context("store check")?;
                writeln!(out, "{report}")?;
                if !report.is_ok() {
                    bail!(
                        "{} problem(s) in {}",
                        report.problem_count,
                        report.path.display()
                    );
                }
            }
            StoreAction::Compact { dir } => {
                let report = ao_store::compact(&dir.config()).context("store compact")?;
                writeln!(
                    out,
                    "compacted {}: {} -> {} bytes",
                    dir.config().path.display(),
                    report.bytes_before,
                    report.bytes_after
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        store: Top,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Top {
        Store(StoreCommand),
    }

    fn parse(args: &[&str]) -> StoreCommand {
        let Top::Store(cmd) = Cli::try_parse_from(args).unwrap().store;
        cmd
    }

    #[test]
    fn parses_every_subcommand() {
        let cmd = parse(&["hb", "store", "get", "ID/a/b", "--data-dir", "/x"]);
        match cmd.action {
            StoreAction::Get {
                id_or_path, dir, ..
            } => {
                assert_eq!(id_or_path, "ID/a/b");
                assert_eq!(dir.config().path, PathBuf::from("/x/store.redb"));
            }
            other => panic!("{other:?}"),
        }
        for sub in ["stats", "check", "compact"] {
            let cmd = parse(&["hb", "store", sub]);
            let dir = match cmd.action {
                StoreAction::Stats { dir }
                | StoreAction::Check { dir }
                | StoreAction::Compact { dir } => dir,
                StoreAction::Get { dir, .. } => dir,
            };
            if std::env::var_os("HB_DATA_DIR").is_none() {
                assert_eq!(dir.data_dir, PathBuf::from("./hb-data"));
            }
        }
    }

    #[test]
    fn runs_against_a_real_store() {
        let dir = tempfile::tempdir().unwrap();
        let args = DataDirArgs {
            data_dir: dir.path().to_path_buf(),
        };
        let missing = StoreCommand {
            action: StoreAction::Stats { dir: args.clone() },
        }
        .execute()
        .unwrap_err();
        assert!(
            format!("{missing:#}").contains("no store at"),
            "{missing:#}"
        );
        let store = ao_store::RedbStore::open(args.config()).unwrap();
        let msg = ao_core::Message::new().with("hello", "world");
        let id = ao_core::cache::write_message(&store, &msg).unwrap();
        store.close().unwrap();
        for action in [
            StoreAction::Stats { dir: args.clone() },
            StoreAction::Get {
                id_or_path: id,
                debug: false,
                dir: args.clone(),
            },
            StoreAction::Check { dir: args.clone() },
            StoreAction::Compact { dir: args },
        ] {
            StoreCommand { action }.execute().unwrap();
        }
    }
}
