//! `hb-cli module`: store WASM modules (compiled ahead of time) and evaluate Lua in them.
//!
//! * `hb-cli module add FILE [--format F] [--memory-limit L] [--data-dir DIR]` stores the module
//!   as a message (`body` = the bytes, plus `content-type`, `module-format`, `memory-limit`,
//!   `type: Module`…), compiles it and stores its AOT artifact, and prints the message ID as the
//!   last line of output.
//! * `hb-cli module eval ID 'lua code' [--data-dir DIR]` runs one aos `Eval` in a fresh
//!   instance of a stored module and prints `Output.data` (a Lua error is a command error).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use ao_core::{Message, Store, Value};
use ao_wasm::{AosInstance, Instance, ModuleKind, WasmConfig, WasmEngine};

/// Work with WASM modules.
#[derive(Debug, clap::Args)]
pub(crate) struct ModuleCommand {
    #[command(subcommand)]
    command: ModuleSubcommand,
}

#[derive(Debug, clap::Subcommand)]
enum ModuleSubcommand {
    /// Store a WASM module as a message and compile it ahead of time.
    Add {
        /// The `.wasm` file.
        file: PathBuf,
        /// The module format tag (detected when omitted), e.g.
        /// `wasm64-unknown-emscripten-draft_2024_02_15` or `wasm32-unknown-emscripten4`.
        #[arg(long)]
        format: Option<String>,
        /// The default memory limit of processes running it (`Memory-Limit`), e.g. `1-gb`.
        #[arg(long, default_value = "1-gb")]
        memory_limit: String,
        /// The node's data directory.
        #[arg(long, env = "HB_DATA_DIR", default_value = "hb-data")]
        data_dir: PathBuf,
    },
    /// Evaluate Lua code in a fresh aos instance of a stored module; prints `Output.data`.
    Eval {
        /// The module's message ID (as printed by `module add`).
        id: String,
        /// The Lua code.
        code: String,
        /// The node's data directory.
        #[arg(long, env = "HB_DATA_DIR", default_value = "hb-data")]
        data_dir: PathBuf,
    },
}

/// Opens the node's store in `data_dir`.
///
/// The node's store in a data directory (the node must not be running: it holds the lock).
pub(crate) fn open_store(data_dir: &Path) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(data_dir)?;
    Ok(Arc::new(ao_store::RedbStore::open(
        ao_store::StoreConfig::in_data_dir(data_dir),
    )?))
}

impl ModuleCommand {
    /// Runs the command against the node's store.
    pub(crate) fn execute(self) -> anyhow::Result<()> {
        self.execute_with(open_store, &mut std::io::stdout().lock())
    }

    /// Runs the command with a given way to open the store, writing results to `out`.
    pub(crate) fn execute_with(
        self,
        open: impl Fn(&Path) -> anyhow::Result<Arc<dyn Store>>,
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        let engine = WasmEngine::new(WasmConfig::default())?;
        match self.command {
            ModuleSubcommand::Add {
                file,
                format,
                memory_limit,
                data_dir,
            } => {
                let store = open(&data_dir)?;
                let id = add(&engine, store.as_ref(), &file, format, &memory_limit)?;
                writeln!(out, "{id}")?;
            }
            ModuleSubcommand::Eval { id, code, data_dir } => {
                let store = open(&data_dir)?;
                let data = eval(&engine, store.as_ref(), &id, &code)?;
                writeln!(out, "{data}")?;
            }
        }
        Ok(())
    }
}

fn default_format(kind: ModuleKind, memory64: bool, legacy: bool) -> &'static str {
    match (kind, memory64) {
        (ModuleKind::AosEmscripten, false) if legacy => "wasm32-unknown-emscripten2",
        (ModuleKind::AosEmscripten, false) => "wasm32-unknown-emscripten4",
        (_, true) => "wasm64-unknown-emscripten-draft_2024_02_15",
        (_, false) => "wasm32-unknown-unknown",
    }
}

fn add(
    engine: &WasmEngine,
    store: &dyn Store,
    file: &Path,
    format: Option<String>,
    memory_limit: &str,
) -> anyhow::Result<String> {
    if ao_wasm::parse_memory_limit(memory_limit).is_none() {
        bail!("bad --memory-limit {memory_limit:?} (expected e.g. 1-gb, 512-mb or a byte count)");
    }
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    eprintln!(
        "[1/3] compiling {} ({} bytes) ahead of time…",
        file.display(),
        bytes.len()
    );
    let started = Instant::now();
    let module = engine.load(&bytes, store)?;
    eprintln!(
        "      {:?} in {} ms (artifact at {})",
        module.origin(),
        started.elapsed().as_millis(),
        engine.artifact_path(&module.hash())
    );
    let format = format.unwrap_or_else(|| {
        default_format(
            module.kind(),
            module.is_memory64(),
            module.is_legacy_emscripten(),
        )
        .to_owned()
    });
    eprintln!("[2/3] storing the module message (format {format})…");
    let msg = Message::new()
        .with("body", bytes)
        .with("content-type", "application/wasm")
        .with("data-protocol", "ao")
        .with("type", "Module")
        .with("module-format", format.as_str())
        .with("memory-limit", memory_limit)
        .with("input-encoding", "JSON-1")
        .with("output-encoding", "JSON-1");
    let id = ao_core::cache::write_message(store, &msg)?;
    eprintln!("[3/3] done");
    Ok(id)
}

fn eval(engine: &WasmEngine, store: &dyn Store, id: &str, code: &str) -> anyhow::Result<String> {
    let msg = ao_core::cache::read_message(store, id)?
        .with_context(|| format!("no module message {id} in the store"))?;
    let body = msg
        .get("body")
        .and_then(Value::as_bytes)
        .with_context(|| format!("message {id} has no body"))?;
    let module = engine.load(body, store)?;
    let mut limits = Instance::default_limits(&module);
    if let Some(l) = msg.get_str("memory-limit") {
        limits = limits.with_memory_limit_tag(l);
    }
    let mut aos = AosInstance::new(&module, limits)?;
    let request = serde_json::json!({
        "Id": "EVAL", "Target": "PROCESS", "Owner": "OWNER", "From": "OWNER", "Module": id,
        "Block-Height": "0", "Timestamp": "0",
        "Tags": [{"name": "Action", "value": "Eval"}], "Data": code,
    });
    let env = serde_json::json!({"Process": {"Id": "PROCESS", "Owner": "OWNER",
        "Tags": [{"name": "Name", "value": "hb-cli"}]}});
    let result = aos.handle(&request.to_string(), &env.to_string())?;
    let parsed: serde_json::Value =
        serde_json::from_str(&result).context("the module's answer is not JSON")?;
    let response = &parsed["response"];
    if let Some(data) = response["Output"].get("data") {
        return Ok(match data {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    }
    match response.get("Error") {
        Some(e) => bail!(
            "Lua error: {}",
            e.as_str().map_or_else(|| e.to_string(), str::to_owned)
        ),
        None => bail!("unexpected answer: {result}"),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Top,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Top {
        Module(ModuleCommand),
    }

    fn run(args: &[&str], store: &Arc<dyn Store>) -> anyhow::Result<String> {
        let Top::Module(cmd) = Cli::try_parse_from(args)?.cmd;
        let mut out = Vec::new();
        let s = Arc::clone(store);
        cmd.execute_with(move |_| Ok(Arc::clone(&s)), &mut out)?;
        Ok(String::from_utf8(out)?)
    }

    #[test]
    fn add_then_eval() {
        let store: Arc<dyn Store> = Arc::new(ao_core::MemoryStore::new());
        let wasm = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/wasm/aos-2-pure-xs.exnref.wasm"
        );
        let out = run(&["hb", "module", "add", wasm], &store).unwrap();
        let id = out.lines().last().unwrap().to_owned();
        assert_eq!(id.len(), 43);
        let msg = ao_core::cache::read_message(store.as_ref(), &id)
            .unwrap()
            .unwrap();
        assert_eq!(
            msg.get_str("module-format"),
            Some("wasm64-unknown-emscripten-draft_2024_02_15")
        );
        let out = run(&["hb", "module", "eval", &id, "return 1+1"], &store).unwrap();
        assert_eq!(out, "2\n");
        let err = run(&["hb", "module", "eval", &id, "error('boom')"], &store).unwrap_err();
        assert!(err.to_string().contains("boom"));
    }

    /// aos 1 is tagged with its ao-loader format and evaluates; its `Output.data` is an object
    /// (`{"output": …}`), printed as JSON.
    #[test]
    fn aos1_add_then_eval() {
        let store: Arc<dyn Store> = Arc::new(ao_core::MemoryStore::new());
        let wasm = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/wasm/ao-loader-emscripten2-aos1.wasm"
        );
        let out = run(&["hb", "module", "add", wasm], &store).unwrap();
        let id = out.lines().last().unwrap().to_owned();
        let msg = ao_core::cache::read_message(store.as_ref(), &id)
            .unwrap()
            .unwrap();
        assert_eq!(
            msg.get_str("module-format"),
            Some("wasm32-unknown-emscripten2")
        );
        let out = run(&["hb", "module", "eval", &id, "return 1+1"], &store).unwrap();
        let data: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(data["output"], serde_json::json!(2), "{out}");
    }

    #[test]
    fn commands_use_the_data_directory_store() {
        let dir = tempfile::tempdir().unwrap();
        let held = open_store(dir.path()).unwrap();
        // A running node holds the store: a second opener is told so, nothing is touched.
        let err = open_store(dir.path()).err().unwrap();
        assert!(format!("{err:#}").contains("locked"), "{err:#}");
        drop(held);
        let store = open_store(dir.path()).unwrap();
        let id =
            ao_core::cache::write_message(store.as_ref(), &Message::new().with("a", "b")).unwrap();
        drop(store);
        let store = open_store(dir.path()).unwrap();
        assert!(
            ao_core::cache::read_message(store.as_ref(), &id)
                .unwrap()
                .is_some()
        );
    }
}
