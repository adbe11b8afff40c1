//! Plain modules called directly: HyperBEAM's `test.wasm` and `pow_calculator.wasm`.

use std::sync::{Arc, Mutex};

use ao_wasm::{Instance, ModuleKind, Snapshot, WasmValue};

use crate::common::*;

#[test]
fn fac_of_five_is_120() {
    let engine = engine();
    for rel in ["wasm/test.wasm", "wasm/test-64.wasm"] {
        let module = load(&engine, rel);
        assert_eq!(module.kind(), ModuleKind::Plain);
        let mut inst = Instance::new(&module, limits(&module)).unwrap();
        for (n, want) in [(5.0, 120.0), (6.0, 720.0), (3.0, 6.0)] {
            let out = inst.call("fac", &[WasmValue::F64(n)]).unwrap();
            assert_eq!(out, vec![WasmValue::F64(want)]);
        }
    }
}

/// `my_lib.mul(a, b) = a * b`, recording its calls.
fn mul(calls: Arc<Mutex<Vec<(i32, i32)>>>) -> impl ao_wasm::HostImports {
    move |module: &str, name: &str, args: &[WasmValue]| match (module, name, args) {
        ("my_lib", "mul", [WasmValue::I32(a), WasmValue::I32(b)]) => {
            calls.lock().unwrap().push((*a, *b));
            Some(vec![WasmValue::I32(a * b)])
        }
        _ => None,
    }
}

#[test]
fn pow_calculator_uses_the_mul_import() {
    let engine = engine();
    let module = load(&engine, "wasm/pow_calculator.wasm");
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut inst = Instance::with_imports(&module, limits(&module), mul(calls.clone())).unwrap();
    let out = inst
        .call("pow", &[WasmValue::I32(2), WasmValue::I32(5)])
        .unwrap();
    assert_eq!(out, vec![WasmValue::I32(32)]);
    assert_eq!(
        *calls.lock().unwrap(),
        vec![(1, 2), (2, 2), (4, 2), (8, 2), (16, 2)]
    );
    let out = inst
        .call("pow", &[WasmValue::I32(2), WasmValue::I32(2)])
        .unwrap();
    assert_eq!(out, vec![WasmValue::I32(4)]);
}

/// devices.md §9 / HyperBEAM `state_export_and_restore_test`: pow(2,2) → 4, snapshot, restore
/// into a new instance without re-running anything → pow(2,2) → 4 again; and HyperBEAM's
/// memory-only snapshot body restores too.
#[test]
fn pow_calculator_snapshot_and_restore() {
    let engine = engine();
    let module = load(&engine, "wasm/pow_calculator.wasm");
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut inst = Instance::with_imports(&module, limits(&module), mul(calls.clone())).unwrap();
    assert_eq!(
        inst.call("pow", &[WasmValue::I32(2), WasmValue::I32(2)])
            .unwrap(),
        vec![WasmValue::I32(4)]
    );
    let snap = inst.snapshot().unwrap();
    assert_eq!(snap.memory().len() as u64, inst.memory_size());
    drop(inst);
    let bytes = snap.to_bytes();
    let snap = Snapshot::from_bytes(bytes).unwrap();
    for snapshot in [snap.clone(), Snapshot::from_memory(snap.memory().clone())] {
        let mut restored =
            Instance::restore_with_imports(&module, limits(&module), mul(calls.clone()), &snapshot)
                .unwrap();
        assert_eq!(
            restored.read_memory(0, snap.memory().len() as u64).unwrap(),
            snap.memory()[..]
        );
        assert_eq!(
            restored
                .call("pow", &[WasmValue::I32(2), WasmValue::I32(2)])
                .unwrap(),
            vec![WasmValue::I32(4)]
        );
    }
}

#[test]
fn bad_calls_are_typed_errors() {
    let engine = engine();
    let module = load(&engine, "wasm/test.wasm");
    let mut inst = Instance::new(&module, limits(&module)).unwrap();
    assert!(matches!(
        inst.call("nope", &[]),
        Err(ao_wasm::WasmError::Export { .. })
    ));
    assert!(matches!(
        inst.call("fac", &[WasmValue::I32(1)]),
        Err(ao_wasm::WasmError::BadCall { .. })
    ));
    assert!(matches!(
        inst.call("fac", &[]),
        Err(ao_wasm::WasmError::BadCall { .. })
    ));
    // Still usable: argument checks happen before the guest runs.
    assert_eq!(
        inst.call("fac", &[WasmValue::F64(5.0)]).unwrap(),
        vec![WasmValue::F64(120.0)]
    );
}
