//! Running `hb-cli serve` as a child process on a free port and a given data directory: the one
//! way every test and bench of this crate starts a node.

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

/// How to start `hb-cli serve`: `Serve::new(dir).config(..).port(..).key(..).env(..).start()`.
#[derive(Debug, Clone)]
pub(crate) struct Serve {
    data_dir: PathBuf,
    config: Option<PathBuf>,
    port: u16,
    key: Option<PathBuf>,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl Serve {
    /// A node on `data_dir`, a free port on 127.0.0.1, the wallet it generates in its data
    /// directory, no config file and no `HB_*` options from the environment of the tests.
    pub(crate) fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            config: None,
            port: 0,
            key: None,
            env: Vec::new(),
            args: Vec::new(),
        }
    }

    /// A config file (`--config`).
    pub(crate) fn config(mut self, path: &Path) -> Self {
        self.config = Some(path.to_owned());
        self
    }

    /// A fixed port (0: a free one).
    pub(crate) fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The node wallet's key file (`HB_KEY`).
    pub(crate) fn key(mut self, path: PathBuf) -> Self {
        self.key = Some(path);
        self
    }

    /// An environment variable (node options as `HB_*`).
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Extra command-line flags of `serve`.
    pub(crate) fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Starts the node and returns once it listens. Its log is appended to `node.log` in the
    /// data directory (and printed if it exits before listening).
    pub(crate) fn start(self) -> NodeProc {
        let log_path = self.data_dir.join("node.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("opening the node log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hb-cli"));
        cmd.args(["serve", "--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env_remove("HB_CONFIG")
            .env_remove("HB_KEY")
            // `AO_TEST_NODE_LOG=ao_http::request=info` logs every request with its duration.
            .env(
                "RUST_LOG",
                std::env::var("AO_TEST_NODE_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        cmd.args(&self.args);
        if let Some(key) = &self.key {
            cmd.env("HB_KEY", key);
        }
        for (k, v) in &self.env {
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
                    let _ = child.wait();
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
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
        NodeProc {
            child: Some(child),
            url,
            address,
        }
    }
}

impl NodeProc {
    /// Starts `hb-cli serve` on `data_dir` with the node wallet `key-2.json` and extra
    /// environment (node options as `HB_*`); returns once it listens.
    pub(crate) fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut serve = Serve::new(data_dir).key(fixture("wallets/key-2.json"));
        for (k, v) in env {
            serve = serve.env(k, v);
        }
        serve.start()
    }

    /// The process ID of the running node.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: no shutdown, no flush.
    pub(crate) fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL without giving up the handle (its URL and address stay readable).
    pub(crate) fn kill_in_place(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("killing the node");
            c.wait().expect("reaping the node");
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
