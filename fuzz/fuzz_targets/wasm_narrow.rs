//! Memory64 narrowing: arbitrary bytes as a wasm module are narrowed or left alone, never a
//! panic; a narrowed module validates and can be metered, and a module with nothing to narrow
//! (no 64-bit memory) is always left alone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmparser::{Validator, WasmFeatures};

fuzz_target!(|data: &[u8]| {
    let Some(narrowed) = ao_wasm::narrow_memory64(data) else {
        return;
    };
    Validator::new_with_features(WasmFeatures::all())
        .validate_all(&narrowed)
        .expect("a narrowed module validates");
    assert!(
        ao_wasm::meter_fuel(&narrowed).is_ok()
            || Validator::new_with_features(WasmFeatures::all())
                .validate_all(data)
                .is_err(),
        "the narrowed form of a valid module can be metered"
    );
    let memory64 = wasmparser::Parser::new(0)
        .parse_all(data)
        .filter_map(Result::ok)
        .any(|payload| match payload {
            wasmparser::Payload::MemorySection(r) => {
                r.into_iter().any(|m| m.is_ok_and(|m| m.memory64))
            }
            _ => false,
        });
    assert!(memory64, "only modules with a 64-bit memory are narrowed");
});
