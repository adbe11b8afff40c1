//! Shared helpers: fixture paths, one engine and store per test.

use std::sync::Arc;

use ao_wasm::{AosInstance, CompiledModule, Instance, Limits, WasmConfig, WasmEngine};

/// The shared fixtures directory.
pub(crate) const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures");

pub(crate) fn fixture(rel: &str) -> Vec<u8> {
    let path = format!("{FIXTURES}/{rel}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {path}: {e}"))
}

pub(crate) fn engine() -> WasmEngine {
    WasmEngine::new(WasmConfig::default()).expect("engine")
}

pub(crate) fn load(engine: &WasmEngine, rel: &str) -> Arc<CompiledModule> {
    let store = ao_core::MemoryStore::new();
    engine.load(&fixture(rel), &store).expect("load")
}

pub(crate) fn limits(module: &CompiledModule) -> Limits {
    Instance::default_limits(module)
}

pub(crate) fn aos(module: &Arc<CompiledModule>) -> AosInstance {
    AosInstance::new(module, limits(module)).expect("instantiate")
}

pub(crate) const ENV: &str =
    r#"{"Process":{"Id":"PROCESS","Owner":"OWNER","Tags":[{"name":"Name","value":"test"}]}}"#;

/// The message JSON `tools/aos_eval.py` builds (field order and all).
pub(crate) fn eval_msg(n: usize, code: &str) -> String {
    serde_json::json!({
        "Id": format!("MSG{n}"),
        "Target": "PROCESS",
        "Owner": "OWNER",
        "From": "OWNER",
        "Module": "MODULE",
        "Block-Height": "1000",
        "Timestamp": "1700000000000",
        "Tags": [{"name": "Action", "value": "Eval"}],
        "Data": code,
    })
    .to_string()
}

/// `Output.data` (or the `Error`) of a result JSON.
pub(crate) fn output_data(result: &str) -> Result<String, String> {
    let v: serde_json::Value = serde_json::from_str(result).expect("result is JSON");
    let resp = &v["response"];
    if let Some(d) = resp["Output"]["data"].as_str() {
        return Ok(d.to_owned());
    }
    Err(resp["Error"].as_str().unwrap_or("").to_owned())
}
