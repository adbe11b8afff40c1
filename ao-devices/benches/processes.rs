//! Process benchmarks (reported, not asserted), through the resolver as the HTTP layer drives
//! it, on a durable redb store, with HyperBEAM's aos module (`aos-2-pure-xs`, exnref):
//!
//! * `one`: push → result for one process, sequentially and with 32 requests in flight:
//!   throughput, p50, p99;
//! * `many`: the same over 100 processes, 64 requests in flight;
//! * `spawn`: spawn N processes (default 10,000), evaluate one message in each under a small
//!   memory budget (most instances evicted), and report spawn/evaluation throughput and the
//!   resident memory.
//!
//! `cargo bench -p ao-devices --bench processes -- [one|many|spawn] [N] [signed|unsigned]`
//!
//! Each line also gives the CPU time the whole bench process (node and client side, the
//! background signer included; the clients' signing happens before the clock starts) spent per
//! message: on a shared, noisy machine it varies far less than the throughput does.
//!
//! With signed assignments, `(signer)` lines tell when the background signer had signed every
//! assignment of the run. Environment knobs: `BENCH_DURABILITY=eventual|none` (store fsyncs),
//! `BENCH_SNAPSHOT_EVERY=N`, `BENCH_MEMORY_MB=N` (the process options of those names).

/// The allocator `hb-cli` runs the node with.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ao_core::wallet::Wallet;
use ao_core::{Message, Resolver, Store, cache};
use ao_devices::process::{ProcessOptions, Processes};
use ao_wasm::{WasmConfig, WasmEngine};

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../shared/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

struct Bench {
    resolver: Resolver,
    rt: Arc<Processes>,
    module: String,
    client: Arc<Wallet>,
    _dir: tempfile::TempDir,
}

fn setup(options: ProcessOptions) -> Bench {
    // `BENCH_SNAPSHOT_EVERY=N` overrides `process-snapshot-every`.
    let options = match std::env::var("BENCH_SNAPSHOT_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => options.with_snapshot_every(n),
        None => options,
    };
    // `BENCH_MEMORY_MB=N` overrides `process-memory-budget`.
    let options = match std::env::var("BENCH_MEMORY_MB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(mb) => options.with_memory_budget(mb << 20),
        None => options,
    };
    let dir = tempfile::tempdir().unwrap();
    // `BENCH_DURABILITY=eventual|none` measures what the fsyncs cost (the node's default,
    // and this bench's, is `immediate`).
    let durability = match std::env::var("BENCH_DURABILITY").as_deref() {
        Ok("eventual") => ao_store::Durability::Eventual,
        Ok("none") => ao_store::Durability::None,
        _ => ao_store::Durability::Immediate,
    };
    let store: Arc<dyn Store> = Arc::new(
        ao_store::RedbStore::open(
            ao_store::StoreConfig::in_data_dir(dir.path()).with_durability(durability),
        )
        .unwrap(),
    );
    let module = cache::write_message(
        store.as_ref(),
        &Message::new()
            .with("body", fixture("wasm/aos-2-pure-xs.exnref.wasm"))
            .with("type", "Module"),
    )
    .unwrap();
    let node = Arc::new(Wallet::from_jwk(&fixture("wallets/test-wallet.json")).unwrap());
    let engine = WasmEngine::new(WasmConfig::default()).unwrap();
    let rt = Arc::new(Processes::new(store.clone(), node.clone(), engine, options));
    let resolver = Resolver::builder(ao_devices::builtin().build())
        .store(store.clone())
        .extension(node)
        .extension(rt.clone())
        .build();
    Bench {
        resolver,
        rt,
        module,
        client: Arc::new(Wallet::from_jwk(&fixture("wallets/key-1.json")).unwrap()),
        _dir: dir,
    }
}

impl Bench {
    async fn spawn(&self, name: &str) -> String {
        let p = ao_core::ans104::commit(
            &Message::new()
                .with("device", "process@1.0")
                .with("type", "Process")
                .with("execution-device", "genesis-wasm@1.0")
                .with("module", self.module.as_str())
                .with("name", name),
            &self.client,
        )
        .unwrap();
        let out = self
            .resolver
            .resolve(p.clone(), p.with("path", "push"))
            .await
            .unwrap();
        out.as_message()
            .unwrap()
            .get_str("process")
            .unwrap()
            .to_owned()
    }

    /// Signed Eval messages (client-side signing is not part of what is measured).
    fn messages(&self, pid: &str, n: usize) -> Vec<Message> {
        (0..n)
            .map(|i| {
                ao_core::ans104::commit(
                    &Message::new()
                        .with("type", "Message")
                        .with("target", pid)
                        .with("action", "Eval")
                        .with("nonce", i.to_string())
                        .with("data", "N = (N or 0) + 1; return N"),
                    &self.client,
                )
                .unwrap()
            })
            .collect()
    }

    async fn push(&self, msg: Message) -> Duration {
        let started = Instant::now();
        let out = self
            .resolver
            .resolve(
                Message::new().with("device", "process@1.0"),
                msg.with("path", "push").with("method", "POST"),
            )
            .await
            .unwrap();
        assert!(out.as_message().unwrap().get("slot").is_some());
        started.elapsed()
    }
}

/// CPU time (user + system) of this process so far, in seconds (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name: state is field 3, utime 14, stime 15 (clock ticks).
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    match (f.get(11), f.get(12)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => 0.0,
    }
}

fn report(label: &str, mut lat: Vec<Duration>, total: Duration, cpu_at_start: f64) {
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{label:<44} {:>6} msgs in {:>7.2} s = {:>7.1} msgs/s   p50 {:>7.2} ms   p99 {:>7.2} ms   cpu {:>5.2} ms/msg",
        lat.len(),
        total.as_secs_f64(),
        lat.len() as f64 / total.as_secs_f64(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        (cpu_seconds() - cpu_at_start) * 1e3 / lat.len() as f64,
    );
}

async fn run_concurrent(
    b: &Arc<Bench>,
    msgs: Vec<Message>,
    in_flight: usize,
) -> (Vec<Duration>, Duration) {
    let started = Instant::now();
    let queue = Arc::new(std::sync::Mutex::new(msgs));
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (b, queue) = (b.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let next = queue.lock().unwrap().pop();
                let Some(m) = next else { break };
                lat.push(b.push(m).await);
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    (lat, started.elapsed())
}

/// Waits for the background signer and reports when the last assignment was signed.
async fn report_signed(b: &Bench, label: &str, n: usize, started: Instant) {
    while b.rt.scheduler().signing_backlog() > 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let t = started.elapsed().as_secs_f64();
    println!(
        "{label:<44} {n:>6} assignments signed {t:>7.2} s after the first push = {:>7.1}/s",
        n as f64 / t
    );
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn one(n: usize, sign: bool) {
    let b = Arc::new(setup(
        ProcessOptions::default().with_signed_assignments(sign),
    ));
    let tag = if sign { "" } else { " (unsigned assignments)" };
    let pid = b.spawn("bench").await;
    for m in b.messages(&pid, 20) {
        b.push(m).await; // warm-up: boot, AOT, caches
    }
    let msgs = b.messages(&pid, n);
    let cpu = cpu_seconds();
    let started = Instant::now();
    let mut lat = Vec::new();
    for m in msgs {
        lat.push(b.push(m).await);
    }
    report(
        &format!("one process, sequential{tag}"),
        lat,
        started.elapsed(),
        cpu,
    );
    if sign {
        report_signed(&b, "  (signer)", n, started).await;
    }
    let msgs = b.messages(&pid, n);
    let cpu = cpu_seconds();
    let started = Instant::now();
    let (lat, total) = run_concurrent(&b, msgs, 32).await;
    report(&format!("one process, 32 in flight{tag}"), lat, total, cpu);
    if sign {
        report_signed(&b, "  (signer)", n, started).await;
    }
}

async fn many(n: usize, sign: bool) {
    let b = Arc::new(setup(
        ProcessOptions::default().with_signed_assignments(sign),
    ));
    let tag = if sign { "" } else { " (unsigned assignments)" };
    let mut pids = Vec::new();
    for i in 0..100 {
        pids.push(b.spawn(&format!("p{i}")).await);
    }
    let mut warm = Vec::new();
    for pid in &pids {
        warm.extend(b.messages(pid, 1));
    }
    run_concurrent(&b, warm, 16).await;
    let per = n.div_ceil(100);
    let mut msgs = Vec::new();
    for i in 0..per {
        for pid in &pids {
            msgs.push(
                b.messages(pid, 1)
                    .pop()
                    .unwrap()
                    .with("round", i.to_string()),
            );
        }
    }
    // Re-sign with the round tag so each message is distinct.
    let msgs: Vec<Message> = msgs
        .into_iter()
        .map(|m| ao_core::ans104::commit(&m.without("commitments"), &b.client).unwrap())
        .collect();
    let count = msgs.len();
    let cpu = cpu_seconds();
    let started = Instant::now();
    let (lat, total) = run_concurrent(&b, msgs, 64).await;
    report(
        &format!("100 processes, 64 in flight{tag}"),
        lat,
        total,
        cpu,
    );
    if sign {
        report_signed(&b, "  (signer)", count, started).await;
    }
    println!(
        "live instance bytes: {} MB (budget {} MB)",
        b.rt.live_bytes() >> 20,
        b.rt.options().memory_budget >> 20
    );
}

async fn spawn(n: usize) {
    let b = Arc::new(setup(
        ProcessOptions::default()
            .with_memory_budget(256 << 20)
            .with_snapshot_every(0),
    ));
    println!("rss at start: {:.0} MB", rss_mb());
    let procs: Vec<Message> = (0..n)
        .map(|i| {
            ao_core::ans104::commit(
                &Message::new()
                    .with("device", "process@1.0")
                    .with("type", "Process")
                    .with("execution-device", "genesis-wasm@1.0")
                    .with("module", b.module.as_str())
                    .with("name", format!("p{i}")),
                &b.client,
            )
            .unwrap()
        })
        .collect();
    let started = Instant::now();
    let queue = Arc::new(std::sync::Mutex::new(procs));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (b, queue) = (b.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            let mut pids = Vec::new();
            loop {
                let next = queue.lock().unwrap().pop();
                let Some(p) = next else { break };
                let out = b
                    .resolver
                    .resolve(p.clone(), p.with("path", "push"))
                    .await
                    .unwrap();
                pids.push(
                    out.as_message()
                        .unwrap()
                        .get_str("process")
                        .unwrap()
                        .to_owned(),
                );
            }
            pids
        }));
    }
    let mut pids = Vec::new();
    for t in tasks {
        pids.extend(t.await.unwrap());
    }
    let spawn_time = started.elapsed();
    println!(
        "spawned {n} processes in {:.1} s = {:.0} spawns/s; rss {:.0} MB",
        spawn_time.as_secs_f64(),
        n as f64 / spawn_time.as_secs_f64(),
        rss_mb()
    );
    let mut msgs = Vec::new();
    for pid in &pids {
        msgs.extend(b.messages(pid, 1));
    }
    let cpu = cpu_seconds();
    let (lat, total) = run_concurrent(&b, msgs, 16).await;
    report("first message to each (boot + eval)", lat, total, cpu);
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "after: rss {:.0} MB, live instance bytes {} MB (budget 256 MB), {} processes",
        rss_mb(),
        b.rt.live_bytes() >> 20,
        b.rt.list().unwrap().len()
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let which = args.first().map_or("all", String::as_str).to_owned();
    let n: Option<usize> = args.get(1).and_then(|s| s.parse().ok());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let modes: &[bool] = match args.get(2).map(String::as_str) {
            Some("signed") => &[true],
            Some("unsigned") => &[false],
            _ => &[true, false],
        };
        for &sign in modes {
            if which == "one" || which == "all" {
                one(n.unwrap_or(500), sign).await;
            }
            if which == "many" || which == "all" {
                many(n.unwrap_or(2000), sign).await;
            }
        }
        if which == "spawn" || which == "all" {
            spawn(n.unwrap_or(10_000)).await;
        }
    });
}
