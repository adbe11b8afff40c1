//! Running `hb-cli serve` as a child process on a free port and a given data directory.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ao_core::{Message, Store, cache};

/// A fixture file's path.
pub(crate) fn fixture(path: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures"
    ))
    .join(path)
}

/// Stores an aos module in the data directory's store the way `hb-cli module add` lays it out
/// (a message whose body is the WASM and whose `module-format` names the aos family), and
/// returns its ID. The node compiles it on first use.
pub(crate) fn add_module(data_dir: &Path, wasm: &str, format: &str) -> String {
    let bytes = std::fs::read(fixture(wasm)).expect("reading the module fixture");
    let store = ao_store::RedbStore::open(ao_store::StoreConfig::in_data_dir(data_dir))
        .expect("opening the store");
    let msg = Message::new()
        .with("body", bytes)
        .with("content-type", "application/wasm")
        .with("data-protocol", "ao")
        .with("type", "Module")
        .with("module-format", format)
        .with("memory-limit", "1-gb")
        .with("input-encoding", "JSON-1")
        .with("output-encoding", "JSON-1");
    let id = cache::write_message(&store as &dyn Store, &msg).expect("storing the module");
    store.close().expect("closing the store");
    id
}

/// A running node.
#[derive(Debug)]
pub(crate) struct NodeProc {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`.
    pub(crate) url: String,
    /// The node's address.
    pub(crate) address: String,
}

impl NodeProc {
    /// Starts `hb-cli serve` on `data_dir` with the node wallet `key-2.json` and extra
    /// environment (node options as `HB_*`); returns once it listens.
    pub(crate) fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("node.log"))
            .expect("opening the node log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hb-cli"));
        cmd.args(["serve", "--port", "0", "--bind", "127.0.0.1", "--data-dir"])
            .arg(data_dir)
            .env("HB_KEY", fixture("wallets/key-2.json"))
            // `AO_TEST_NODE_LOG=ao_http::request=info` logs every request with its duration.
            .env(
                "RUST_LOG",
                std::env::var("AO_TEST_NODE_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdout(Stdio::piped())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting hb-cli serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let started = Instant::now();
        let line = loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("serving http://") => break l,
                Some(Ok(_)) => continue,
                _ => {
                    let log =
                        std::fs::read_to_string(data_dir.join("node.log")).unwrap_or_default();
                    panic!("hb-cli serve exited before listening; log:\n{log}");
                }
            }
        };
        assert!(started.elapsed() < Duration::from_secs(120));
        // "ao-node <version> serving http://<addr> as <address>"
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("the serving line has a URL")
            .to_owned();
        let address = line
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .to_owned();
        // Keep draining stdout so the node never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child: Some(child),
            url,
            address,
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub(crate) fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for a graceful exit (at most 30 s, then SIGKILL): its status, or
    /// `None` when it had to be killed.
    pub(crate) fn stop(mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Decodes an HTTP reply (headers and body) into the message it carries; the headers the
/// transport adds (length, date, CORS) are left out.
pub(crate) fn decode_reply(headers: &reqwest::header::HeaderMap, body: bytes::Bytes) -> Message {
    let mut http = ao_core::codec::httpsig::HttpMessage::default();
    for (k, v) in headers {
        if matches!(
            k.as_str(),
            "content-length"
                | "date"
                | "access-control-allow-origin"
                | "access-control-allow-methods"
        ) {
            continue;
        }
        http.headers.insert(
            k.as_str().to_owned(),
            bytes::Bytes::copy_from_slice(v.as_bytes()),
        );
    }
    http.body = (!body.is_empty()).then_some(body);
    ao_core::codec::from_http(&http).expect("the reply decodes")
}
