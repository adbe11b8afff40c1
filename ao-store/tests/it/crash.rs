//! Crash safety: a child process writes messages and prints each acknowledged ID; the test
//! SIGKILLs it at a random point, reopens the store, and finds every acknowledged message intact
//! and the store consistent. Not timing-dependent: the kill point is a number of
//! acknowledgements, and the assertions are about acknowledged writes only.
//!
//! Some rounds instead make the child abort itself right after a write-ahead log record is on
//! disk and before redb commits it (a crash between the log and the database): reopening must
//! replay that record.
//!
//! Beside the durable writers, one thread of the child writes deferred batches
//! (`Store::apply_deferred`, acknowledged before any fsync): after a crash each of them is
//! there whole or not at all, and those there are a prefix of the ones written.
//! `a_crash_loses_at_most_the_deferred_batches_at_the_end_of_the_log` loses the unsynced log
//! record of a deferred batch, as a power loss may, and finds the durable write before it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use ao_core::store::Op;
use ao_core::{Store, cache};
use ao_store::{OpenError, RedbStore};

use crate::util::{config, sample_message, store_path};

const CHILD_ENV: &str = "AO_STORE_CRASH_CHILD_DIR";
const CHILD_START_ENV: &str = "AO_STORE_CRASH_CHILD_START";
const CHILD_ABORT_ENV: &str = "AO_STORE_CRASH_CHILD_ABORT_AFTER";
const DEFERRED_CHILD_ENV: &str = "AO_STORE_CRASH_DEFERRED_CHILD_DIR";
const UNCHANGED_CHILD_ENV: &str = "AO_STORE_CRASH_UNCHANGED_CHILD_DIR";
const WRITERS: u64 = 4;
/// Rounds killed with SIGKILL.
const ROUNDS: u64 = 24;
/// Rounds where the child aborts between the log and redb.
const LOG_ROUNDS: u64 = 6;

/// The child: run only when the parent sets the environment variable (otherwise a no-op test).
/// Writes messages from several threads forever, printing `ACK <index> <id>` after each `Ok`.
#[test]
fn crash_child_process() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let start: u64 = std::env::var(CHILD_START_ENV).unwrap().parse().unwrap();
    let mut cfg = config(&store_path(Path::new(&dir)));
    cfg.crash_after_log_records = std::env::var(CHILD_ABORT_ENV)
        .ok()
        .map(|n| n.parse().unwrap());
    // A small memtable and the smallest log: the kill lands before, during and after
    // checkpoints and switches of log files.
    cfg.memtable_bytes = 16 << 10;
    cfg.wal_bytes = 1;
    let store = RedbStore::open(cfg).unwrap();
    std::thread::scope(|s| {
        let store_ref = &store;
        s.spawn(move || {
            for k in start.. {
                store_ref.apply_deferred(deferred_batch(k)).unwrap();
                println!("DEFER {k}");
            }
        });
        for w in 0..WRITERS {
            let store = &store;
            s.spawn(move || {
                for n in 0.. {
                    let i = start + n * WRITERS + w;
                    let id = cache::write_message(store, &sample_message(i)).unwrap();
                    // One write per line: the parent sees whole lines only.
                    println!("ACK {i} {id}");
                }
            });
        }
    });
}

/// Deferred batch `k`: two binaries that must appear together.
fn deferred_batch(k: u64) -> Vec<Op> {
    ["a", "b"]
        .into_iter()
        .map(|leaf| Op::Write {
            path: format!("derived/{k}/{leaf}"),
            value: k.to_string().into(),
        })
        .collect()
}

/// The deferred batches of the round starting at `start` that the store holds: each whole,
/// and together a prefix of the batches written.
fn check_deferred(store: &RedbStore, start: u64, round: u64) {
    let mut found: Vec<u64> = store
        .list("derived")
        .unwrap()
        .unwrap_or_default()
        .iter()
        .map(|k| k.parse().unwrap())
        .filter(|k| (start..start + 1_000_000).contains(k))
        .collect();
    found.sort_unstable();
    for (n, k) in found.iter().enumerate() {
        assert_eq!(
            *k,
            start + n as u64,
            "round {round}: deferred batches not a prefix"
        );
        for leaf in ["a", "b"] {
            assert_eq!(
                store
                    .read(&format!("derived/{k}/{leaf}"))
                    .unwrap()
                    .as_deref(),
                Some(k.to_string().as_bytes()),
                "round {round}: deferred batch {k} is not whole"
            );
        }
    }
}

/// A small deterministic generator (the kill points).
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(dir.path());
    let exe = std::env::current_exe().unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut acknowledged: Vec<(u64, String)> = Vec::new();
    let mut rounds_that_switched = 0;
    for round in 0..ROUNDS + LOG_ROUNDS {
        let kill_after = 1 + next(&mut seed) % 40;
        // Log rounds: the child aborts itself after this many log records.
        let abort_after = (round >= ROUNDS).then(|| 1 + next(&mut seed) % 10);
        let mut command = Command::new(&exe);
        if let Some(n) = abort_after {
            command.env(CHILD_ABORT_ENV, n.to_string());
        }
        let mut child = command
            .args([
                "--exact",
                "crash::crash_child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env(CHILD_START_ENV, (round * 1_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut seen = 0;
        for line in stdout.lines() {
            let line = line.unwrap();
            let Some(rest) = line.strip_prefix("ACK ") else {
                continue;
            };
            let (i, id) = rest.split_once(' ').unwrap();
            acknowledged.push((i.parse().unwrap(), id.to_owned()));
            seen += 1;
            if seen == kill_after && abort_after.is_none() {
                // std's kill is SIGKILL on Unix: no destructor, no flush, no clean close.
                child.kill().unwrap();
                break;
            }
        }
        let status = child.wait().unwrap();
        if abort_after.is_none() {
            assert_eq!(seen, kill_after, "round {round}: the child stopped early");
        } else {
            assert!(!status.success(), "round {round}: the child did not abort");
        }

        // The second log file has records only once the writer switched to it.
        let second_log = {
            let mut p = path.clone().into_os_string();
            p.push(".wal.1");
            std::path::PathBuf::from(p)
        };
        if std::fs::metadata(&second_log).is_ok_and(|m| m.len() > 16) {
            rounds_that_switched += 1;
        }

        if round == 0 {
            // A crashed store cannot be opened read-only; `check` still checks it, untouched.
            let before = std::fs::read(&path).unwrap();
            assert!(matches!(
                RedbStore::open_read_only(config(&path)),
                Err(OpenError::NeedsRecovery { .. })
            ));
            let report = ao_store::check(&config(&path)).unwrap();
            assert!(report.needs_recovery && report.is_ok(), "{report}");
            assert_eq!(std::fs::read(&path).unwrap(), before);
        }

        // Reopen (redb recovers), and find every acknowledged message, from every round.
        let store = RedbStore::open(config(&path)).unwrap();
        check_deferred(&store, round * 1_000_000, round);
        if abort_after.is_some() {
            // The last record was logged but never committed to redb.
            assert!(
                store.replayed_log_records() >= 1,
                "round {round}: nothing replayed from the log"
            );
        }
        for (i, id) in &acknowledged {
            let read = cache::read_message(&store, id)
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: acknowledged message {i} ({id}) lost"));
            assert_eq!(
                read,
                sample_message(*i),
                "round {round}: message {i} differs"
            );
        }
        store.close().unwrap();
        let report = ao_store::check(&config(&path)).unwrap();
        assert!(
            report.is_ok() && !report.needs_recovery,
            "round {round}: {report}"
        );
    }
    assert!(acknowledged.len() as u64 >= ROUNDS);
    assert!(rounds_that_switched >= ROUNDS / 2, "{rounds_that_switched}");
    // The log survives reopening: a clean close leaves nothing to replay.
    let store = RedbStore::open(config(&path)).unwrap();
    assert_eq!(store.replayed_log_records(), 0);
    store.close().unwrap();
}

/// The child of the deferred-batch test: one durable message, then one deferred batch, then a
/// crash (abort) before any checkpoint.
#[test]
fn deferred_crash_child_process() {
    let Ok(dir) = std::env::var(DEFERRED_CHILD_ENV) else {
        return;
    };
    let mut cfg = config(&store_path(Path::new(&dir)));
    cfg.checkpoint_idle_ms = 0;
    let store = RedbStore::open(cfg).unwrap();
    let id = cache::write_message(&store, &sample_message(1)).unwrap();
    println!("ACK 1 {id}");
    store.apply_deferred(deferred_batch(7)).unwrap();
    println!("DEFER 7");
    std::process::abort();
}

/// Runs the deferred child in `dir`; returns the ID of its durable message.
fn run_deferred_child(dir: &Path) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash::deferred_crash_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DEFERRED_CHILD_ENV, dir)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the child did not crash");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("DEFER 7"), "{stdout}");
    // The harness may print the test's name on the same line, before it.
    let ack = stdout.split("ACK 1 ").nth(1).unwrap();
    ack.split_whitespace().next().unwrap().to_owned()
}

#[test]
fn a_crash_loses_at_most_the_deferred_batches_at_the_end_of_the_log() {
    // The log kept everything the child wrote: both are replayed.
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(dir.path());
    let id = run_deferred_child(dir.path());
    let store = RedbStore::open(config(&path)).unwrap();
    assert_eq!(store.replayed_log_records(), 2);
    assert_eq!(
        cache::read_message(&store, &id).unwrap(),
        Some(sample_message(1))
    );
    check_deferred(&store, 7, 0);
    assert_eq!(store.list("derived").unwrap(), Some(vec!["7".to_owned()]));
    store.close().unwrap();

    // The deferred batch's record never reached the disk (it was not fdatasynced; a power
    // loss may drop it): the durable message before it is still there, the batch is not.
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(dir.path());
    let id = run_deferred_child(dir.path());
    let log_path = {
        let mut p = path.clone().into_os_string();
        p.push(".wal");
        std::path::PathBuf::from(p)
    };
    let mut log = std::fs::read(&log_path).unwrap();
    let first_len = u32::from_le_bytes(log[16..20].try_into().unwrap()) as usize;
    let second = 16 + 28 + first_len;
    let second_len = u32::from_le_bytes(log[second..second + 4].try_into().unwrap()) as usize;
    assert!(second_len > 0, "no second record");
    log[second + 28] ^= 0xff;
    std::fs::write(&log_path, &log).unwrap();
    let store = RedbStore::open(config(&path)).unwrap();
    assert_eq!(store.replayed_log_records(), 1);
    assert_eq!(
        cache::read_message(&store, &id).unwrap(),
        Some(sample_message(1))
    );
    assert_eq!(store.list("derived").unwrap(), None);
    store.close().unwrap();
    assert!(ao_store::check(&config(&path)).unwrap().is_ok());
}

/// The child of the next test: making a group, and a flush; making the same group again (a
/// group that changes nothing: its record is logged all the same), and a flush; then a write,
/// and a crash right after its record is on disk.
#[test]
fn unchanged_group_crash_child_process() {
    let Ok(dir) = std::env::var(UNCHANGED_CHILD_ENV) else {
        return;
    };
    let mut cfg = config(&store_path(Path::new(&dir)));
    cfg.checkpoint_idle_ms = 0;
    cfg.crash_after_log_records = Some(3);
    let store = RedbStore::open(cfg).unwrap();
    let make_group = || store.apply(vec![Op::MakeGroup { path: "g".into() }]);
    make_group().unwrap();
    store.flush().unwrap();
    // The same group again: record 2, which changes nothing.
    make_group().unwrap();
    store.flush().unwrap();
    println!("FLUSHED");
    // Record 3: the child aborts once it is on disk.
    let _ = store.apply(vec![Op::Write {
        path: "g/x".into(),
        value: "2".into(),
    }]);
    unreachable!("the child did not abort");
}

/// A flush after a group that changed nothing must still record that group's log record in the
/// database before the log starts over: otherwise the next record lands at the log's start
/// and, after a crash, follows a record the database never held (the open refused the store
/// as corrupt).
#[test]
fn a_group_that_changes_nothing_does_not_break_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash::unchanged_group_crash_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(UNCHANGED_CHILD_ENV, dir.path())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the child did not crash");
    assert!(String::from_utf8_lossy(&out.stdout).contains("FLUSHED"));
    let path = store_path(dir.path());
    let store = RedbStore::open(config(&path)).unwrap();
    assert_eq!(store.replayed_log_records(), 1);
    assert_eq!(store.read("g/x").unwrap().as_deref(), Some(&b"2"[..]));
    store.close().unwrap();
    assert!(ao_store::check(&config(&path)).unwrap().is_ok());
}
