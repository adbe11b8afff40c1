//! Store benchmark (a plain bench binary: `cargo bench -p ao-store --bench store`).
//!
//! Fills a store with `AO_STORE_BENCH_MESSAGES` small messages (default 1,000,000), then
//! measures, printing one line per figure:
//!
//! * random reads of whole messages by ID (`cache::read_message`), with 1 and 2 threads;
//! * random reads of a deep key (`ID/nested/n`);
//! * durable (`Durability::Immediate`) message writes per second: 1, 16 and 64 writer threads
//!   each waiting for every write (`Store::apply`), and writers that keep several writes in
//!   flight (`RedbStore::submit`, counting a write only when its acknowledgement arrives);
//!   group commit: one log `fdatasync` per batch of waiting writes;
//! * the latency of a 1 KiB overwrite + `fdatasync` and + `fsync` on a preallocated file;
//! * the bytes of store file per message.
//!
//! Each write figure also gives the 99th percentile and the longest time a write waited for
//! its acknowledgement, and the CPU time the whole bench process spent per acknowledged
//! message (the store's threads and the writers' building of the messages): on a shared, noisy
//! machine it varies far less than the throughput does.
//!
//! `AO_STORE_BENCH_DIR` puts the store in a given directory (default: a temporary one); there,
//! `AO_STORE_BENCH_KEEP=1` keeps the filled store and a later run with the same message count
//! reuses it. `AO_STORE_BENCH_PAGE_CACHE` and `AO_STORE_BENCH_ENTRY_CACHE` set the cache sizes
//! in bytes (defaults: 1 GiB of redb page cache, 256 MiB of entry cache).
//! `AO_STORE_BENCH_WRITES=0` skips the write benchmarks (for profiling reads);
//! `AO_STORE_BENCH_WAL_BYTES` sets the log size between durable checkpoints and
//! `AO_STORE_BENCH_MEMTABLE_BYTES` the memtable's (`StoreConfig::memtable_bytes`),
//! `AO_STORE_BENCH_RECENT_KEYS` the size of the `recent` table (`StoreConfig::recent_keys`),
//! `AO_STORE_BENCH_RATE` a limit on the messages the writers submit per second (a load below
//! the store's capacity, for the waits);
//! `AO_STORE_BENCH_SECS` the length of each write figure's run (default 10 s: a larger
//! memtable needs longer runs to include its checkpoints), and `AO_STORE_BENCH_ONLY` (e.g.
//! `16x1,16x8`) runs only the write figures of those writers x in-flight counts.

/// The allocator `hb-cli` runs the node with.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ao_core::{Message, Store, cache};
use ao_store::{Durability, RedbStore, StoreConfig};

/// A small message like those a scheduler stores: five keys, one nested message.
fn small_message(i: u64) -> Message {
    Message::new()
        .with("type", "Message")
        .with("target", "4s4SlSDGx1YuVLqD3Yr2aNk7NVZqpDnPUxqmwkVRfRw")
        .with("slot", i as i64)
        .with("data", format!("hello {i}"))
        .with(
            "nested",
            Message::new()
                .with("from", "8jYTLcvxK1qYDeS4vaWaK6LNhHcgrDDAIphhF2Z0LUU")
                .with("n", format!("{}", i * 7)),
        )
}

/// xorshift64*: a deterministic index stream.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn config(path: &std::path::Path, durability: Durability) -> StoreConfig {
    let mut c = StoreConfig::new(path).with_durability(durability);
    c.cache_bytes = env_u64("AO_STORE_BENCH_ENTRY_CACHE", 256 << 20);
    c.page_cache_bytes = env_u64("AO_STORE_BENCH_PAGE_CACHE", 1 << 30);
    c.wal_bytes = env_u64("AO_STORE_BENCH_WAL_BYTES", c.wal_bytes);
    c.memtable_bytes = env_u64("AO_STORE_BENCH_MEMTABLE_BYTES", c.memtable_bytes);
    c.recent_keys = env_u64("AO_STORE_BENCH_RECENT_KEYS", c.recent_keys);
    c
}

/// The IDs of messages `0..n`, computed on two threads.
fn message_ids(n: u64) -> Vec<String> {
    std::thread::scope(|s| {
        let halves: Vec<_> = (0..2u64)
            .map(|t| {
                s.spawn(move || {
                    (t * n / 2..(t + 1) * n / 2)
                        .map(|i| cache::message_ops(&small_message(i)).unwrap().0)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

/// CPU time (user + system) of this process so far, in seconds (Linux; 0 elsewhere): the
/// store's threads, and the writers' building of the messages, which is the same work in
/// every run.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name: utime is field 14, stime 15 (clock ticks).
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

fn per_sec(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Reads `per_thread` random messages on each of `threads` threads.
fn read_bench(
    store: &Arc<RedbStore>,
    ids: &Arc<Vec<String>>,
    threads: u64,
    per_thread: u64,
    deep: bool,
) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (store, ids) = (store.clone(), ids.clone());
            s.spawn(move || {
                let mut rng = Rng(0x1234_5678 + t * 7919);
                for _ in 0..per_thread {
                    let i = rng.below(ids.len() as u64);
                    if deep {
                        let v = store
                            .read(&format!("{}/nested/n", ids[i as usize]))
                            .unwrap();
                        assert_eq!(v.unwrap(), format!("{}", i * 7));
                    } else {
                        let m = cache::read_message(store.as_ref(), &ids[i as usize]).unwrap();
                        assert!(m.is_some());
                    }
                }
            });
        }
    });
    per_sec(threads * per_thread, start.elapsed())
}

/// Durable message writes with `writers` threads, each keeping up to `in_flight` writes
/// submitted and unacknowledged, for about `duration`. Counts acknowledged writes.
fn write_bench(
    store: &Arc<RedbStore>,
    writers: u64,
    in_flight: usize,
    duration: Duration,
    base: u64,
) -> (f64, Latencies) {
    let done = Arc::new(AtomicU64::new(0));
    // `AO_STORE_BENCH_RATE`: the writers together submit at most this many messages a second
    // (a load the store sustains, to see how long writes wait at checkpoints and merges).
    let interval = match env_u64("AO_STORE_BENCH_RATE", 0) {
        0 => None,
        rate => Some(Duration::from_secs_f64(writers as f64 / rate as f64)),
    };
    let start = Instant::now();
    let mut waits: Vec<Duration> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..writers)
            .map(|w| {
                let (store, done) = (store.clone(), done.clone());
                s.spawn(move || {
                    let mut n = 0;
                    let mut waits = Vec::new();
                    let mut pending = std::collections::VecDeque::new();
                    while start.elapsed() < duration {
                        if let Some(interval) = interval {
                            let due = start + interval.mul_f64(n as f64);
                            std::thread::sleep(due.saturating_duration_since(Instant::now()));
                        }
                        let i = base + w * 1_000_000 + n;
                        let (_, ops) = cache::message_ops(&small_message(i)).unwrap();
                        pending.push_back((Instant::now(), store.submit(ops).unwrap()));
                        n += 1;
                        if pending.len() >= in_flight {
                            let (at, p) = pending.pop_front().unwrap();
                            p.wait().unwrap();
                            waits.push(at.elapsed());
                        }
                    }
                    for (at, p) in pending {
                        p.wait().unwrap();
                        waits.push(at.elapsed());
                    }
                    done.fetch_add(waits.len() as u64, Ordering::Relaxed);
                    waits
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    waits.sort_unstable();
    let at = |q: f64| {
        waits
            .get(((waits.len() as f64 * q) as usize).min(waits.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let latencies = Latencies {
        p99: at(0.99),
        max: waits.last().copied().unwrap_or_default(),
    };
    (
        per_sec(done.load(Ordering::Relaxed), start.elapsed()),
        latencies,
    )
}

/// How long writes waited for their acknowledgement.
struct Latencies {
    p99: Duration,
    max: Duration,
}

/// Mean latency of a 1 KiB overwrite followed by `fdatasync` (or `fsync`) in a preallocated
/// file: what one group commit's log append costs on this disk.
fn sync_latency(dir: &std::path::Path, data_only: bool, rounds: u32) -> Duration {
    use std::os::unix::fs::FileExt as _;
    let path = dir.join("sync-probe");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.write_all_at(&vec![0u8; 4 << 20], 0).unwrap();
    f.sync_all().unwrap();
    let block = vec![7u8; 1024];
    let start = Instant::now();
    for r in 0..rounds {
        f.write_all_at(&block, u64::from(r) * 1024).unwrap();
        if data_only {
            f.sync_data().unwrap();
        } else {
            f.sync_all().unwrap();
        }
    }
    let d = start.elapsed() / rounds;
    let _ = std::fs::remove_file(&path);
    d
}

/// Fills a new store with `n` messages (two threads computing IDs, batches of 1000 messages,
/// one fsync at the end), compacts it, and returns the IDs.
fn fill(path: &std::path::Path, n: u64) -> Vec<String> {
    // Fill: two threads computing IDs, batches of 1000 messages, fsync at the end.
    let store = Arc::new(RedbStore::open(config(path, Durability::None)).unwrap());
    let start = Instant::now();
    let ids: Vec<String> = std::thread::scope(|s| {
        let parts: Vec<_> = (0..2u64)
            .map(|t| {
                let store = store.clone();
                s.spawn(move || {
                    let mut ids = Vec::new();
                    let mut i = t;
                    while i < n {
                        let mut ops = Vec::new();
                        let mut batch = Vec::new();
                        while i < n && batch.len() < 1000 {
                            let (id, o) = cache::message_ops(&small_message(i)).unwrap();
                            ops.extend(o);
                            batch.push((i, id));
                            i += 2;
                        }
                        store.apply(ops).unwrap();
                        ids.extend(batch);
                    }
                    ids
                })
            })
            .collect();
        let mut all: Vec<(u64, String)> =
            parts.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort_unstable();
        all.into_iter().map(|(_, id)| id).collect()
    });
    store.flush().unwrap();
    let fill = start.elapsed();
    println!(
        "fill:                        {:>10.0} messages/s ({:.1} s)",
        per_sec(n, fill),
        fill.as_secs_f64()
    );
    let stats = store.stats().unwrap();
    let file = std::fs::metadata(path).unwrap().len();
    println!(
        "entries per message:         {:>10.1} ({} entries, {} packed records)",
        stats.entries as f64 / n as f64,
        stats.entries,
        stats.packed
    );
    println!(
        "redb keys per message:       {:>10.1} ({} keys, {} bytes of keys + records)",
        stats.records as f64 / n as f64,
        stats.records,
        stats.key_bytes + stats.record_bytes
    );
    println!(
        "file bytes per message:      {:>10.0} ({file} bytes, before compaction)",
        file as f64 / n as f64
    );
    let cfg = store.config().clone();
    Arc::try_unwrap(store).unwrap().close().unwrap();
    ao_store::compact(&cfg).unwrap();
    ids
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = env_u64(
        "AO_STORE_BENCH_MESSAGES",
        if quick { 2_000 } else { 1_000_000 },
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("AO_STORE_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let keep = std::env::var_os("AO_STORE_BENCH_KEEP").is_some();
    let path = dir.join(format!("bench-store-{n}.redb"));
    println!(
        "ao-store benchmark: {n} small messages in {}",
        path.display()
    );
    let ids = if keep && path.exists() {
        println!("reusing the filled store");
        message_ids(n)
    } else {
        let _ = std::fs::remove_file(&path);
        fill(&path, n)
    };
    let cfg = config(&path, Durability::Immediate);
    let file = std::fs::metadata(&path).unwrap().len();
    println!(
        "file bytes per message:      {:>10.0} ({file} bytes, compacted)",
        file as f64 / n as f64
    );
    println!(
        "caches:                      {} MiB redb pages, {} MiB entries",
        cfg.page_cache_bytes >> 20,
        cfg.cache_bytes >> 20
    );

    // Reads, on the reopened store (cold caches first, then warm).
    let store = Arc::new(RedbStore::open(cfg).unwrap());
    let ids = Arc::new(ids);
    let reads = if quick { 2_000 } else { 200_000 };
    for (label, threads, deep) in [
        ("read by ID, 1 thread:", 1, false),
        ("read by ID, 2 threads:", 2, false),
        ("read by ID, 2 threads (again):", 2, false),
        ("deep key read, 1 thread:", 1, true),
        ("deep key read, 2 threads:", 2, true),
    ] {
        let rate = read_bench(&store, &ids, threads, reads / threads, deep);
        println!("{label:<29}{rate:>10.0} reads/s");
    }

    let rounds = if quick { 20 } else { 500 };
    for (label, data_only) in [
        ("1 KiB write + fdatasync:", true),
        ("1 KiB write + fsync:", false),
    ] {
        let d = sync_latency(&dir, data_only, rounds);
        println!("{label:<29}{:>10.0} µs", d.as_secs_f64() * 1e6);
    }

    // Durable writes (Immediate: each acknowledged write is in the fsynced log, group-committed).
    let secs = Duration::from_secs(env_u64("AO_STORE_BENCH_SECS", if quick { 1 } else { 10 }));
    let write_benches = if env_u64("AO_STORE_BENCH_WRITES", 1) == 0 {
        &[][..]
    } else {
        &[(1u64, 1usize), (16, 1), (64, 1), (1, 64), (16, 8)][..]
    };
    // `AO_STORE_BENCH_ONLY=16x1,16x8` runs only those write figures (writers x in flight).
    let only = std::env::var("AO_STORE_BENCH_ONLY").ok();
    for (k, (writers, in_flight)) in write_benches.iter().copied().enumerate() {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|f| f == format!("{writers}x{in_flight}")))
        {
            continue;
        }
        let cpu = cpu_seconds();
        let started = Instant::now();
        let (rate, waits) = write_bench(
            &store,
            writers,
            in_flight,
            secs,
            10_000_000_000 * (k as u64 + 1),
        );
        let messages = rate * started.elapsed().as_secs_f64();
        let label = format!("durable writes, {writers:>2}w x {in_flight:>2} in flight:");
        println!(
            "{label:<37}{rate:>10.0} messages/s   cpu {:>5.1} µs/message   wait p99 {:>7.1} ms, max {:>7.1} ms",
            (cpu_seconds() - cpu) * 1e6 / messages.max(1.0),
            waits.p99.as_secs_f64() * 1e3,
            waits.max.as_secs_f64() * 1e3,
        );
    }

    Arc::try_unwrap(store).unwrap().close().unwrap();
    if !keep {
        let _ = std::fs::remove_file(&path);
        let mut log = path.into_os_string();
        log.push(".wal");
        let _ = std::fs::remove_file(&log);
        log.push(".1");
        let _ = std::fs::remove_file(log);
    }
}
