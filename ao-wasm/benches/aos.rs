//! `return 1+1` through `handle` on each aos module: compile time, cold start (deserialize +
//! instantiate), first eval, and p50/p99 per eval, under four engine settings:
//!
//! * `default`: [`Budget::Fuel`] (deterministic budgets) with Spectre hardening;
//! * `nospec`: [`Budget::Fuel`] without Spectre hardening (node option
//!   `wasm-spectre-hardening=false`);
//! * `wallclk`: [`Budget::WallClock`] (epoch interruption, node option
//!   `wasm-budget=wall-clock`) with Spectre hardening;
//! * `fast`: [`Budget::WallClock`] without Spectre hardening.
//!
//! Then, in the same run, `js/v8-bench.cjs` measures the same modules on V8 (directly, and
//! through `@permaweb/ao-loader`) when node and the `js/` dependencies (`npm ci` there) are
//! present. Run with `cargo bench -p ao-wasm --bench aos`; `AOS_BENCH_N` sets the number of
//! evaluations (1000), `AOS_BENCH_MODULES` a comma-separated filter on file names,
//! `AOS_BENCH_CONFIGS` one on the settings above (`default,fast`), `AOS_BENCH_NO_V8`
//! (any value) skips the V8 side, and `AOS_BENCH_MESSAGE=signed` evaluates the same
//! `return 1+1` in the message and env shape a process's signed Eval message has on the node
//! (43-character IDs, a 4096-bit signature, the assignment's fields), on both sides.
//! `AOS_BENCH_INSTANCES=K` (Rust side only) rotates the evaluations over K instances of the
//! module, as a node does over many busy processes: each evaluation then finds its instance's
//! memory out of the CPU caches.

use std::process::Command;
use std::time::{Duration, Instant};

use ao_wasm::{AosInstance, Budget, Instance, WasmConfig, WasmEngine};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/wasm");
const ENV: &str =
    r#"{"Process":{"Id":"PROCESS","Owner":"OWNER","Tags":[{"name":"Name","value":"bench"}]}}"#;

fn msg(n: usize) -> String {
    format!(
        r#"{{"Id":"MSG{n}","Target":"PROCESS","Owner":"OWNER","From":"OWNER","Module":"MODULE","Block-Height":"1000","Timestamp":"1700000000000","Tags":[{{"name":"Action","value":"Eval"}}],"Data":"return 1+1"}}"#
    )
}

// `AOS_BENCH_MESSAGE=signed`: the same eval in the message and env shape the node's process
// runtime passes for an ANS-104-signed Eval (43-character IDs and addresses, a 4096-bit
// signature, the assignment's fields). `js/v8-bench.cjs` builds the same strings.
const PID: &str = "w1QMlUh4gdKqYa4AI4p_B1Uja2qKbkM23ynKmtIwFb8";
const OWNER: &str = "vcaPe4JWnrSOCktDHBgXge-zWUb6JRkqbom5w9t7i-4";
const MODULE: &str = "a_cHnnTSkJBMUKpzAhUl515-qEXRnKnt736jr9Eb8q4";
const SIG_PART: &str = "niuT08eEF9fdI86mac2Kps_zzh3PVUw5khoXW46mgHfzJhsWQQLN7_JLfYzUcpcK0Oyn";

fn signed_env() -> String {
    format!(
        r#"{{"Process":{{"Id":"{PID}","Owner":"{OWNER}","Tags":[{{"name":"Device","value":"process@1.0"}},{{"name":"Execution-Device","value":"genesis-wasm@1.0"}},{{"name":"Module","value":"{MODULE}"}},{{"name":"Name","value":"bench"}},{{"name":"Type","value":"Process"}}]}},"Module":{{"Id":"{MODULE}","Owner":"","Tags":[{{"name":"Type","value":"Module"}}]}}}}"#
    )
}

fn signed_msg(n: usize) -> String {
    let id = format!("{:A<43}", format!("MSG{n}"));
    let sig: String = SIG_PART.repeat(11).chars().take(683).collect();
    let chain = format!("{:B<43}", format!("CHAIN{n}"));
    format!(
        r#"{{"Id":"{id}","Owner":"{OWNER}","From":"{OWNER}","Target":"{PID}","Anchor":"","Signature":"{sig}","Tags":[{{"name":"Action","value":"Eval"}},{{"name":"Nonce","value":"{n}"}},{{"name":"Type","value":"Message"}}],"Data":"return 1+1","Module":"{MODULE}","Block-Height":0,"Timestamp":"1796614473784","Nonce":"{n}","Epoch":"0","Hash-Chain":"{chain}"}}"#
    )
}

/// The message and env of eval `n`, in the shape `AOS_BENCH_MESSAGE` chooses.
fn eval_input(n: usize) -> (String, String) {
    if signed_messages() {
        (signed_msg(n), signed_env())
    } else {
        (msg(n), ENV.to_owned())
    }
}

fn signed_messages() -> bool {
    std::env::var("AOS_BENCH_MESSAGE").is_ok_and(|v| v == "signed")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    ms(sorted[i])
}

fn bench(label: &str, config: &WasmConfig, file: &str, n: usize) {
    let bytes = std::fs::read(format!("{FIXTURES}/{file}")).expect("fixture");
    let store = ao_core::MemoryStore::new();
    let compiling = WasmEngine::new(config.clone()).unwrap();
    let t = Instant::now();
    let compiled = compiling.load(&bytes, &store).unwrap();
    let compile = t.elapsed();
    drop(compiled);

    // Cold start on a "restarted node": a new engine deserializes the stored artifact.
    let engine = WasmEngine::new(config.clone()).unwrap();
    let t = Instant::now();
    let module = engine.load(&bytes, &store).unwrap();
    let deser = t.elapsed();
    let t = Instant::now();
    let mut aos = AosInstance::new(&module, Instance::default_limits(&module)).unwrap();
    let inst = t.elapsed();
    let t = Instant::now();
    let (m, e) = eval_input(0);
    let first = aos.handle(&m, &e).unwrap();
    let first_eval = t.elapsed();
    assert!(first.contains(r#""data":"2""#), "{first}");
    // `AOS_BENCH_INSTANCES` (see above).
    let k: usize = std::env::var("AOS_BENCH_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut instances = vec![aos];
    for _ in 1..k {
        let mut other = AosInstance::new(&module, Instance::default_limits(&module)).unwrap();
        other.handle(&m, &e).unwrap();
        instances.push(other);
    }
    let mut times = Vec::with_capacity(n);
    for i in 1..=n {
        let (m, e) = eval_input(i);
        let aos = &mut instances[i % k];
        let t = Instant::now();
        let r = aos.handle(&m, &e).unwrap();
        times.push(t.elapsed());
        std::hint::black_box(r);
    }
    times.sort();
    println!(
        "{:<48} {:>7.1}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.3}ms {:>7.3}ms",
        format!("{label:<8} {file} ({n})"),
        ms(compile),
        ms(deser),
        ms(inst),
        ms(deser + inst),
        ms(first_eval),
        pct(&times, 0.5),
        pct(&times, 0.99)
    );
}

fn main() {
    let n: usize = std::env::var("AOS_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let filter: Vec<String> = std::env::var("AOS_BENCH_MODULES")
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let configs_filter = std::env::var("AOS_BENCH_CONFIGS").ok();
    let configs = [
        ("default", WasmConfig::default()),
        (
            "nospec",
            WasmConfig::default().with_spectre_hardening(false),
        ),
        (
            "wallclk",
            WasmConfig::default().with_budget(Budget::WallClock),
        ),
        (
            "fast",
            WasmConfig::default()
                .with_budget(Budget::WallClock)
                .with_spectre_hardening(false),
        ),
    ];
    println!(
        "{:<48} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "config   module (N evals)", "compile", "deser.", "inst.", "cold", "1st eval", "p50", "p99"
    );
    for file in [
        "aos-2-pure-xs.exnref.wasm",
        "aos-2-pure.exnref.wasm",
        "ao-loader-emscripten4-aos2.wasm",
        "ao-loader-wasm64-emscripten-aos2.wasm",
    ] {
        if !filter.is_empty() && !filter.iter().any(|f| file.contains(f.as_str())) {
            continue;
        }
        for (label, config) in &configs {
            if configs_filter
                .as_ref()
                .is_some_and(|f| !f.split(',').any(|c| c == *label))
            {
                continue;
            }
            bench(label, config, file, n);
        }
    }
    if std::env::var_os("AOS_BENCH_NO_V8").is_none() {
        v8(n);
    }
}

/// The V8 side, in the same run.
fn v8(n: usize) {
    let js = concat!(env!("CARGO_MANIFEST_DIR"), "/js");
    if !std::path::Path::new(js)
        .join("node_modules/@permaweb/ao-loader")
        .exists()
    {
        println!("(V8: run `npm ci` in {js} to compare with V8 and ao-loader)");
        return;
    }
    let status = Command::new("node")
        .args(["--experimental-wasm-memory64", "v8-bench.cjs", FIXTURES])
        .arg(n.to_string())
        .arg(if signed_messages() { "signed" } else { "plain" })
        .current_dir(js)
        .status();
    if !status.is_ok_and(|s| s.success()) {
        println!("(V8: node failed or is missing)");
    }
}
