//! Interop: `@permaweb/aoconnect` 0.0.98 in mainnet mode against `hb-cli serve`.
//!
//! Installs the client with `npm ci` into `tests/js/node_modules` (from the committed
//! `package-lock.json`), starts a node on a free port with a fresh data directory holding the
//! ao-loader aos module, and runs `tests/js/interop.mjs`: spawn, Eval messages and their
//! results, a dry run that changes nothing, a result by message ID, and `results`.

mod support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value as Json;

fn js_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js"))
}

/// `npm ci`, unless `node_modules` already holds exactly what the lock file says.
fn install_client() {
    let dir = js_dir();
    let npm = Command::new("npm").arg("--version").output();
    assert!(
        npm.as_ref().is_ok_and(|o| o.status.success()),
        "npm is needed for the aoconnect interop test (install Node.js 20+ with npm): {npm:?}"
    );
    let lock = dir.join("package-lock.json");
    let installed = dir.join("node_modules/.package-lock.json");
    let fresh = match (std::fs::metadata(&lock), std::fs::metadata(&installed)) {
        (Ok(l), Ok(i)) => i.modified().ok() >= l.modified().ok(),
        _ => false,
    };
    if !fresh {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .expect("running npm ci");
        assert!(
            out.status.success(),
            "npm ci failed in {}:\n{}\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn aoconnect_spawns_messages_reads_dry_runs_and_lists_results() {
    install_client();
    let data = tempfile::tempdir().unwrap();
    let module = support::add_module(
        data.path(),
        "wasm/ao-loader-wasm64-emscripten-aos2.wasm",
        "wasm64-unknown-emscripten-draft_2024_02_15",
    );
    let node = support::NodeProc::start(data.path(), &[]);
    let out = Command::new("node")
        .arg(js_dir().join("interop.mjs"))
        .arg(&node.url)
        .arg(support::fixture("wallets/test-wallet.json"))
        .arg(&module)
        .arg("30")
        .current_dir(js_dir())
        .output()
        .expect("running node");
    let log = std::fs::read_to_string(data.path().join("node.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "interop.mjs failed:\n{}\n{}\nnode log:\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let r: Json = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    eprintln!("aoconnect saw: {r:#}");
    if std::env::var_os("AO_TEST_NODE_LOG").is_some() {
        eprintln!("node log:\n{log}");
    }

    let pid = r["pid"].as_str().unwrap();
    assert_eq!(pid.len(), 43);
    let evals = r["evals"].as_array().unwrap();
    let slots: Vec<u64> = evals.iter().map(|e| e["slot"].as_u64().unwrap()).collect();
    assert_eq!(slots, vec![1, 2, 3, 4], "slot 0 is the process itself");
    assert_eq!(evals[1]["data"], "42");
    assert_eq!(evals[2]["data"], "2");
    assert!(evals[3]["error"].as_str().unwrap().contains("boom"));
    // The dry run evaluated on the current state, took no slot and changed nothing.
    assert_eq!(r["dryrun"]["data"], "1000");
    assert_eq!(r["after_dryrun"]["slot"], 5);
    assert_eq!(r["after_dryrun"]["data"], "42");
    assert_eq!(r["by_id"]["slot"], 6);
    assert_eq!(r["by_id"]["data"], "by id");
    assert_eq!(r["results"][0]["cursor"], "6");
    assert_eq!(r["results"][0]["data"], "by id");
    assert_eq!(r["final_counter"], "30");
    node.stop();
}
