//! The WASM devices, resolved directly through `ao_core::Resolver`.

use std::sync::Arc;

use ao_core::device::{BoxFuture, Device};
use ao_core::resolve::Context;
use ao_core::{DeviceRegistry, Message, Resolver, Store, Value};
use ao_wasm::devices::WasmRuntime;
use futures::executor::block_on;

use crate::common::*;

/// HyperBEAM's `test-device@1.0` `mul`: `{state, results: [a*b]}`.
struct MulDevice;

impl Device for MulDevice {
    fn id(&self) -> &str {
        "test-mul@1.0"
    }
    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        request: &'a Message,
        _ctx: &'a Context,
    ) -> Option<BoxFuture<'a, ao_core::Result<Value>>> {
        (key == "mul").then(|| {
            Box::pin(async move {
                let Some(Value::List(args)) = request.get("args") else {
                    return Err(ao_core::Error::BadRequest("no args".into()));
                };
                let product: i64 = args.iter().filter_map(Value::as_integer).product();
                Ok(Value::Message(
                    Message::new()
                        .with(
                            "state",
                            base.get("state").cloned().unwrap_or(Value::from("")),
                        )
                        .with("results", Value::List(vec![Value::Integer(product)])),
                ))
            }) as BoxFuture<'a, _>
        })
    }
}

fn resolver(store: Arc<dyn Store>) -> (Resolver, Arc<WasmRuntime>) {
    let rt = WasmRuntime::new(engine());
    let (wasm, wasi, json) = rt.devices();
    let registry = DeviceRegistry::builder()
        .register(wasm)
        .register(wasi)
        .register(json)
        .register(MulDevice)
        .build();
    (Resolver::builder(registry).store(store).build(), rt)
}

fn step(r: &Resolver, base: Message, device: &str, key: &str, request: Message) -> Message {
    let base = base.with("device", device);
    match block_on(r.resolve(base, request.with("path", key))) {
        Ok(Value::Message(m)) => m,
        other => panic!("{device} {key}: {other:?}"),
    }
}

fn output(state: &Message) -> Vec<Value> {
    match state.get_message("results").and_then(|r| r.get("output")) {
        Some(Value::List(l)) => l.clone(),
        other => panic!("no results/output: {other:?} in {state:?}"),
    }
}

#[test]
fn wasm64_computes_fac() {
    let (r, _rt) = resolver(Arc::new(ao_core::MemoryStore::new()));
    let base = Message::new().with("body", fixture("wasm/test.wasm"));
    let state = step(&r, base, "wasm-64@1.0", "init", Message::new());
    let state = state
        .with("function", "fac")
        .with("parameters", Value::List(vec![Value::Float(5.0)]));
    let state = step(&r, state, "wasm-64@1.0", "compute", Message::new());
    assert_eq!(output(&state), vec![Value::Float(120.0)]);
    assert_eq!(
        state.get_message("results").unwrap().get_str("type"),
        Some("ok")
    );
}

/// Instances made by requests are bounded: past `MAX_INSTANCES` the oldest is dropped, and
/// the newest still computes.
#[test]
fn wasm64_instances_are_bounded() {
    let (r, rt) = resolver(Arc::new(ao_core::MemoryStore::new()));
    let base = Message::new().with("body", fixture("wasm/test.wasm"));
    let mut last = None;
    for _ in 0..ao_wasm::devices::MAX_INSTANCES + 6 {
        last = Some(step(
            &r,
            base.clone(),
            "wasm-64@1.0",
            "init",
            Message::new(),
        ));
        assert!(rt.live_instances() <= ao_wasm::devices::MAX_INSTANCES);
    }
    assert_eq!(rt.live_instances(), ao_wasm::devices::MAX_INSTANCES);
    let state = last
        .unwrap()
        .with("function", "fac")
        .with("parameters", Value::List(vec![Value::Float(4.0)]));
    let state = step(&r, state, "wasm-64@1.0", "compute", Message::new());
    assert_eq!(output(&state), vec![Value::Float(24.0)]);
}

#[test]
fn wasm64_imports_through_ao_core_and_restores_snapshots() {
    let store: Arc<dyn Store> = Arc::new(ao_core::MemoryStore::new());
    let (r, rt) = resolver(store.clone());
    let image = Message::new().with("body", fixture("wasm/pow_calculator.wasm"));
    let image_id = ao_core::cache::write_message(store.as_ref(), &image).unwrap();
    let base = Message::new().with("image", image_id.as_str()).with(
        "stdlib",
        Message::new().with("my_lib", Message::new().with("device", "test-mul@1.0")),
    );
    let state = step(&r, base, "wasm-64@1.0", "init", Message::new());
    let call = |s: Message, a: i64, b: i64| {
        s.with("function", "pow").with(
            "parameters",
            Value::List(vec![Value::Integer(a), Value::Integer(b)]),
        )
    };
    let state = step(
        &r,
        call(state, 2, 5),
        "wasm-64@1.0",
        "compute",
        Message::new(),
    );
    assert_eq!(output(&state), vec![Value::Integer(32)]);
    let state = step(
        &r,
        call(state, 2, 2),
        "wasm-64@1.0",
        "compute",
        Message::new(),
    );
    assert_eq!(output(&state), vec![Value::Integer(4)]);

    // Snapshot, then forget the instance (a node restart): `normalize` (run by compute)
    // restores it from `snapshot/body`.
    let snap = step(&r, state.clone(), "wasm-64@1.0", "snapshot", Message::new());
    step(
        &r,
        state.clone(),
        "wasm-64@1.0",
        "terminate",
        Message::new(),
    );
    assert_eq!(rt.live_instances(), 0);
    let mut restored = state.with("snapshot", snap);
    restored.set_private_fields(Default::default());
    let restored = step(
        &r,
        call(restored, 2, 2),
        "wasm-64@1.0",
        "compute",
        Message::new(),
    );
    assert_eq!(output(&restored), vec![Value::Integer(4)]);
    assert!(!restored.contains("snapshot"));
}

/// The aos stack `[wasi, json-iface, wasm-64]` with two passes, stepped by hand (the stack and
/// process devices live elsewhere): "return 1+1" → results/data "2", then state carries over.
#[test]
fn aos_through_wasi_json_iface_and_wasm64() {
    let store: Arc<dyn Store> = Arc::new(ao_core::MemoryStore::new());
    let (r, _rt) = resolver(store.clone());
    let image = Message::new().with("body", fixture("wasm/aos-2-pure-xs.exnref.wasm"));
    let image_id = ao_core::cache::write_message(store.as_ref(), &image).unwrap();
    let process = Message::new()
        .with("type", "Process")
        .with("image", image_id.as_str())
        .with("name", "test");
    let pid = ao_core::id::id_string(&process, ao_core::IdScope::Signed).unwrap();
    let mut state = Message::new()
        .with("process", process)
        .with("input-prefix", "process")
        .with("output-prefix", "wasm");
    for dev in ["wasi@1.0", "json-iface@1.0", "wasm-64@1.0"] {
        state = step(&r, state, dev, "init", Message::new());
    }
    assert!(state.get_message("vfs").is_some());
    let slots = [
        ("X = 41", None),
        ("return X + 1", Some("42")),
        (
            "Send({Target='Foo', Data='Bar', Action='Ping'}); return 'sent'",
            Some("sent"),
        ),
    ];
    for (slot, (code, want)) in slots.iter().enumerate() {
        let body = Message::new()
            .with("action", "Eval")
            .with("data", *code)
            .with("target", pid.as_str());
        let request = Message::new()
            .with("body", body)
            .with("block-height", Value::Integer(slot as i64));
        let mut s = state.with("pass", Value::Integer(1));
        for dev in ["wasi@1.0", "json-iface@1.0", "wasm-64@1.0"] {
            s = step(&r, s, dev, "compute", request.clone());
        }
        s = s.with("pass", Value::Integer(2));
        s = step(&r, s, "json-iface@1.0", "compute", request.clone());
        let results = s.get_message("results").unwrap();
        if let Some(want) = want {
            assert_eq!(results.get_str("data"), Some(*want), "{code}");
        }
        if slot == 2 {
            let out = results
                .get_message("outbox")
                .unwrap()
                .get_message("1")
                .unwrap();
            assert_eq!(out.get_str("target"), Some("Foo"));
            assert_eq!(out.get_str("action"), Some("Ping"));
            assert_eq!(out.get_str("data"), Some("Bar"));
            assert!(out.contains("from-process"));
            assert_eq!(out.get_str("from-image"), Some(image_id.as_str()));
        }
        state = s.without("results");
    }
}

/// A module a request brings that cannot run is the request's failure (422 with the reason),
/// not the node's (500): bytes that are not wasm, and a module with legacy exceptions.
#[test]
fn an_unusable_module_is_a_client_error() {
    let (r, _rt) = resolver(Arc::new(ao_core::MemoryStore::new()));
    let legacy = fixture("wasm/aos-2-pure-xs.wasm");
    for (image, says) in [
        (b"not wasm".to_vec(), "cannot compile module"),
        (legacy, "legacy wasm exception handling"),
    ] {
        let base = Message::new()
            .with("device", "wasm-64@1.0")
            .with("body", image);
        let err = block_on(r.resolve(base, Message::new().with("path", "init"))).unwrap_err();
        assert_eq!(err.http_status(), 422, "{err}");
        assert!(err.to_string().contains(says), "{err}");
    }
}
