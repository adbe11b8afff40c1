//! `return 1+1` through `handle` on each aos module: compile time, cold start (deserialize +
//! instantiate), first eval, and p50/p99 per eval. Run with `cargo bench -p ao-wasm`.
//! `js/v8-bench.cjs` measures the same modules on V8 for a side-by-side figure.

use std::time::{Duration, Instant};

use ao_wasm::{AosInstance, Instance, WasmConfig, WasmEngine};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/wasm");
const ENV: &str =
    r#"{"Process":{"Id":"PROCESS","Owner":"OWNER","Tags":[{"name":"Name","value":"bench"}]}}"#;

fn msg(n: usize) -> String {
    format!(
        r#"{{"Id":"MSG{n}","Target":"PROCESS","Owner":"OWNER","From":"OWNER","Module":"MODULE","Block-Height":"1000","Timestamp":"1700000000000","Tags":[{{"name":"Action","value":"Eval"}}],"Data":"return 1+1"}}"#
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    ms(sorted[i])
}

fn main() {
    let n: usize = std::env::var("AOS_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    println!(
        "{:<40} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "module (N evals)", "compile", "deser.", "inst.", "cold", "1st eval", "p50", "p99"
    );
    for file in [
        "aos-2-pure-xs.exnref.wasm",
        "aos-2-pure.exnref.wasm",
        "ao-loader-emscripten4-aos2.wasm",
        "ao-loader-wasm64-emscripten-aos2.wasm",
    ] {
        let bytes = std::fs::read(format!("{FIXTURES}/{file}")).expect("fixture");
        let store = ao_core::MemoryStore::new();
        let compiling = WasmEngine::new(WasmConfig::default()).unwrap();
        let t = Instant::now();
        let compiled = compiling.load(&bytes, &store).unwrap();
        let compile = t.elapsed();
        drop(compiled);

        // Cold start on a "restarted node": a new engine deserializes the stored artifact.
        let engine = WasmEngine::new(WasmConfig::default()).unwrap();
        let t = Instant::now();
        let module = engine.load(&bytes, &store).unwrap();
        let deser = t.elapsed();
        let t = Instant::now();
        let mut aos = AosInstance::new(&module, Instance::default_limits(&module)).unwrap();
        let inst = t.elapsed();
        let t = Instant::now();
        let first = aos.handle(&msg(0), ENV).unwrap();
        let first_eval = t.elapsed();
        assert!(first.contains(r#""data":"2""#), "{first}");
        let mut times = Vec::with_capacity(n);
        for i in 1..=n {
            let m = msg(i);
            let t = Instant::now();
            let r = aos.handle(&m, ENV).unwrap();
            times.push(t.elapsed());
            std::hint::black_box(r);
        }
        times.sort();
        println!(
            "{:<40} {:>7.1}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.3}ms {:>7.3}ms",
            format!("{file} ({n})"),
            ms(compile),
            ms(deser),
            ms(inst),
            ms(deser + inst),
            ms(first_eval),
            pct(&times, 0.5),
            pct(&times, 0.99)
        );
    }
}
