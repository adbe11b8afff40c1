//! `hb-cli process`: what the node's processes are and where they stand, read from the store.
//!
//! * `hb-cli process list [--data-dir DIR]`: one line per process: ID, current slot, highest
//!   computed slot, name.
//! * `hb-cli process show PID [--data-dir DIR]`: the process's definition (name, module,
//!   owner, devices), its current and computed slots, and the last result (`data`, or the error).
//!
//! The store is opened read-only, so these work on a stopped node's data directory; while a
//! node runs, ask it instead (`/<pid>/slot/current`, `/<pid>~process@1.0/now/results/data`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use ao_core::{Message, Store, Value};
use ao_devices::process::genesis::owner_of;
use ao_devices::process::runtime::{read_process, stored_latest, stored_result};
use ao_devices::scheduler::server::recover;

/// Inspect the node's processes.
#[derive(Debug, clap::Args)]
pub(crate) struct ProcessCommand {
    #[command(subcommand)]
    command: ProcessSubcommand,
    /// The node's data directory.
    #[arg(long, global = true, default_value = "hb-data", env = "HB_DATA_DIR")]
    data_dir: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
enum ProcessSubcommand {
    /// List the processes this node schedules: ID, current slot, computed slot, name.
    List,
    /// Show one process: definition, slots and last result.
    Show {
        /// The process ID.
        pid: String,
    },
}

fn open_store(data_dir: &Path) -> Result<ao_store::RedbStore> {
    ao_store::RedbStore::open_read_only(ao_store::StoreConfig::in_data_dir(data_dir)).with_context(
        || {
            format!(
                "opening the store in {} read-only (while a node runs, query it over HTTP, \
                 e.g. /<pid>/slot/current)",
                data_dir.display()
            )
        },
    )
}

fn slot_text(s: Option<u64>) -> String {
    s.map_or_else(|| "-".to_owned(), |s| s.to_string())
}

fn value_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::Binary(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::Integer(i)) => i.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

impl ProcessCommand {
    /// Runs the command, printing to stdout.
    pub(crate) fn execute(self) -> Result<()> {
        let store = open_store(&self.data_dir)?;
        let r = self.execute_with(&store, &mut std::io::stdout().lock());
        store.close()?;
        r
    }

    /// Runs the command against a store, writing to `out`.
    pub(crate) fn execute_with(self, store: &dyn Store, out: &mut dyn Write) -> Result<()> {
        match self.command {
            ProcessSubcommand::List => list(store, out),
            ProcessSubcommand::Show { pid } => show(store, &pid, out),
        }
    }
}

fn list(store: &dyn Store, out: &mut dyn Write) -> Result<()> {
    let pids = store.children("processes")?;
    if pids.is_empty() {
        writeln!(out, "no processes")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<43}  {:>8}  {:>8}  name",
        "process", "slot", "computed"
    )?;
    for pid in pids {
        let current = recover(store, &pid)?.map(|(s, _)| s);
        let computed = stored_latest(store, &pid)?;
        let name = read_process(store, &pid)?
            .and_then(|p| p.get_str("name").map(str::to_owned))
            .unwrap_or_default();
        writeln!(
            out,
            "{pid:<43}  {:>8}  {:>8}  {name}",
            slot_text(current),
            slot_text(computed)
        )?;
    }
    Ok(())
}

fn show(store: &dyn Store, pid: &str, out: &mut dyn Write) -> Result<()> {
    let Some(process) = read_process(store, pid)? else {
        bail!("no process {pid} in this node's store");
    };
    let field = |m: &Message, k: &str| m.get_str(k).unwrap_or("-").to_owned();
    writeln!(out, "process           {pid}")?;
    writeln!(out, "name              {}", field(&process, "name"))?;
    let module = process
        .get_str("module")
        .or_else(|| process.get_str("image"))
        .unwrap_or("-");
    writeln!(out, "module            {module}")?;
    writeln!(
        out,
        "owner             {}",
        owner_of(&process).unwrap_or_else(|| "-".to_owned())
    )?;
    writeln!(out, "scheduler         {}", field(&process, "scheduler"))?;
    writeln!(
        out,
        "execution-device  {}",
        field(&process, "execution-device")
    )?;
    let current = recover(store, pid)?.map(|(s, _)| s);
    let computed = stored_latest(store, pid)?;
    writeln!(out, "current slot      {}", slot_text(current))?;
    writeln!(out, "computed slot     {}", slot_text(computed))?;
    match computed {
        Some(s) => {
            let r = stored_result(store, pid, s)?
                .with_context(|| format!("the result of slot {s} is missing"))?;
            writeln!(out, "last message      {}", r.message_id)?;
            match r.results.get_str("error") {
                Some(e) => writeln!(out, "last error        {}", e.trim())?,
                None => writeln!(
                    out,
                    "last result       {}",
                    value_text(r.results.get("data"))
                )?,
            }
            let outbox = r.results.get_message("outbox").map_or(0, Message::len);
            writeln!(out, "last outbox       {outbox} message(s)")?;
        }
        None => writeln!(out, "last result       (nothing computed yet)")?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ao_core::MemoryStore;
    use ao_core::wallet::Wallet;
    use ao_devices::process::{ProcessOptions, Processes};
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        cmd: ProcessCommand,
    }

    fn run(store: &dyn Store, args: &[&str]) -> Result<String> {
        let mut argv = vec!["process"];
        argv.extend(args);
        let cli = Cli::try_parse_from(argv)?;
        let mut out = Vec::new();
        cli.cmd.execute_with(store, &mut out)?;
        Ok(String::from_utf8(out)?)
    }

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/").to_owned() + path,
        )
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lists_and_shows_processes() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        assert_eq!(run(store.as_ref(), &["list"]).unwrap(), "no processes\n");
        let wallet = Arc::new(Wallet::from_jwk(&fixture("wallets/key-1.json")).unwrap());
        let module = ao_core::cache::write_message(
            store.as_ref(),
            &Message::new()
                .with("body", fixture("wasm/aos-2-pure-xs.exnref.wasm"))
                .with("type", "Module"),
        )
        .unwrap();
        let rt = Arc::new(
            Processes::with_defaults(store.clone(), wallet.clone(), ProcessOptions::default())
                .unwrap(),
        );
        let process = ao_core::ans104::commit(
            &Message::new()
                .with("device", "process@1.0")
                .with("type", "Process")
                .with("execution-device", "genesis-wasm@1.0")
                .with("module", module.as_str())
                .with("name", "shown"),
            &wallet,
        )
        .unwrap();
        let pid = rt.spawn(process).await.unwrap().process;
        let eval = ao_core::ans104::commit(
            &Message::new()
                .with("type", "Message")
                .with("target", pid.as_str())
                .with("action", "Eval")
                .with("data", "return 6*7"),
            &wallet,
        )
        .unwrap();
        let a = rt.schedule(&pid, eval).await.unwrap();
        rt.compute(&pid, a.slot).await.unwrap();
        // Results are written right after the answer; wait until they are.
        for _ in 0..100 {
            if stored_latest(store.as_ref(), &pid).unwrap() == Some(1) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let listed = run(store.as_ref(), &["list"]).unwrap();
        assert!(
            listed.contains(&pid) && listed.contains("shown"),
            "{listed}"
        );
        let shown = run(store.as_ref(), &["show", &pid]).unwrap();
        assert!(shown.contains("current slot      1"), "{shown}");
        assert!(shown.contains("computed slot     1"), "{shown}");
        assert!(shown.contains("last result       42"), "{shown}");
        let err = run(store.as_ref(), &["show", "nope"]).unwrap_err();
        assert!(err.to_string().contains("no process"), "{err}");
    }
}
