//! ao-loader's emscripten builds, run on the native emscripten host.

use ao_wasm::ModuleKind;

use crate::common::*;

fn evals_keep_state(rel: &str) {
    let engine = engine();
    let module = load(&engine, rel);
    assert_eq!(module.kind(), ModuleKind::AosEmscripten);
    let mut aos = aos(&module);
    let steps = [
        ("return 1+1", Ok("2")),
        ("X = 5", Ok("")),
        ("return X", Ok("5")),
        ("X = X * 2; return X", Ok("10")),
        ("return os.date('%Y-%m-%d', 0)", Ok("1970-01-01")),
    ];
    for (n, (code, want)) in steps.iter().enumerate() {
        let result = aos.handle(&eval_msg(n + 1, code), ENV).unwrap();
        let got = output_data(&result);
        assert_eq!(
            got.as_deref(),
            want.map_err(str::to_owned).as_deref(),
            "{code}: {result}"
        );
    }
    let result = aos.handle(&eval_msg(9, "error('boom')"), ENV).unwrap();
    let err = output_data(&result).unwrap_err();
    assert!(err.contains("boom"), "{result}");
    // The Lua error unwound through setjmp/longjmp (invoke_*); the instance is still sound.
    let result = aos.handle(&eval_msg(10, "return X + 1"), ENV).unwrap();
    assert_eq!(output_data(&result).as_deref(), Ok("11"));
}

#[test]
fn emscripten4_wasm32_keeps_state() {
    evals_keep_state("wasm/ao-loader-emscripten4-aos2.wasm");
}

#[test]
fn wasm64_emscripten_keeps_state() {
    evals_keep_state("wasm/ao-loader-wasm64-emscripten-aos2.wasm");
}

/// aos 1 (`wasm32-unknown-emscripten2`) answers in its own shape: `Output.data.output`.
#[test]
fn emscripten2_aos1_evaluates() {
    let engine = engine();
    let module = load(&engine, "wasm/ao-loader-emscripten2-aos1.wasm");
    assert_eq!(module.kind(), ModuleKind::AosEmscripten);
    let mut aos = aos(&module);
    let output = |aos: &mut ao_wasm::AosInstance, n: usize, code: &str| {
        let result = aos.handle(&eval_msg(n, code), ENV).unwrap();
        let v: serde_json::Value = serde_json::from_str(&result).unwrap();
        v["response"]["Output"]["data"]["output"].clone()
    };
    assert_eq!(output(&mut aos, 1, "return 1+1"), serde_json::json!(2));
    output(&mut aos, 2, "X = 20");
    assert_eq!(output(&mut aos, 3, "return X + 1"), serde_json::json!(21));
    assert_eq!(
        output(&mut aos, 4, "return os.date('!%Y-%m-%d', 86400)"),
        serde_json::json!("1970-01-02")
    );
    assert_eq!(aos.instance().undefined_calls(), 0);
}
