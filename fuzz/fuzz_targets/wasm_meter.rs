//! Fuel metering: arbitrary bytes as a wasm module are metered or refused with a typed error,
//! never a panic; a valid core module is metered (unless metering would cross one of the
//! format's limits, or it already exports the counter's name), and its metered form validates
//! (the metering adds only well-typed, stack-neutral code, one global and one export).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmparser::{Validator, WasmFeatures};

fuzz_target!(|data: &[u8]| {
    let metered = ao_wasm::meter_fuel(data);
    let core = data.get(4..8) == Some(&[1, 0, 0, 0][..]);
    let valid = Validator::new_with_features(WasmFeatures::all())
        .validate_all(data)
        .is_ok();
    match metered {
        Ok(m) if valid => {
            Validator::new_with_features(WasmFeatures::all())
                .validate_all(&m)
                .expect("the metered form of a valid module validates");
        }
        Err(e) if valid && core => {
            let why = e.to_string();
            assert!(
                why.contains("limit") || why.contains("already exports"),
                "a valid module was refused: {why}"
            );
        }
        _ => {}
    }
});
