//! Durability levels, flush and close, group commit and cache coherence under concurrency.

use std::sync::Arc;

use ao_core::{Message, Store, cache};
use ao_store::{Durability, RedbStore, WriteError};
use bytes::Bytes;

use crate::util::{config, sample_message, temp_store};

#[test]
fn every_durability_keeps_writes_across_a_clean_close() {
    for durability in [
        Durability::Immediate,
        Durability::Eventual,
        Durability::None,
    ] {
        let (_dir, store) = temp_store(durability);
        let ids: Vec<String> = (0..50)
            .map(|i| cache::write_message(&store, &sample_message(i)).unwrap())
            .collect();
        store.flush().unwrap();
        let cfg = store.config().clone();
        store.close().unwrap();
        let store = RedbStore::open_read_only(cfg).unwrap();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                cache::read_message(&store, id).unwrap(),
                Some(sample_message(i as u64)),
                "{durability:?}"
            );
        }
    }
}

#[test]
fn closed_and_read_only_stores_refuse_writes() {
    let (_dir, store) = temp_store(Durability::Immediate);
    store.write("a", Bytes::from_static(b"1")).unwrap();
    let cfg = store.config().clone();
    store.close().unwrap();
    store.close().unwrap();
    assert!(matches!(
        store.apply_batch(vec![ao_core::store::Op::MakeGroup { path: "g".into() }]),
        Err(WriteError::Closed)
    ));
    assert!(store.get_raw("a").is_err());
    let ro = RedbStore::open_read_only(cfg).unwrap();
    assert!(ro.is_read_only());
    assert_eq!(ro.read("a").unwrap().unwrap(), "1");
    assert!(matches!(
        ro.apply_batch(vec![ao_core::store::Op::MakeGroup { path: "g".into() }]),
        Err(WriteError::ReadOnly)
    ));
    assert!(matches!(ro.flush(), Err(WriteError::ReadOnly)));
}

#[test]
fn invalid_batches_write_nothing() {
    let (_dir, store) = temp_store(Durability::None);
    let err = store
        .apply_batch(vec![
            ao_core::store::Op::Write {
                path: "fine".into(),
                value: Bytes::from_static(b"1"),
            },
            ao_core::store::Op::Write {
                path: "//".into(),
                value: Bytes::from_static(b"2"),
            },
        ])
        .unwrap_err();
    assert!(matches!(err, WriteError::Invalid(_)), "{err:?}");
    assert_eq!(store.get_raw("fine").unwrap(), None);
}

/// Many writers and readers at once: every writer reads its own writes back at once (the cache
/// never serves an entry older than an acknowledged write), and everything is there at the end.
#[test]
fn concurrent_writers_read_their_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg =
        config(&crate::util::store_path(dir.path())).with_durability(Durability::Eventual);
    cfg.cache_bytes = 64 << 10;
    let store = Arc::new(RedbStore::open(cfg.clone()).unwrap());
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let store = store.clone();
            s.spawn(move || {
                for n in 0..60u64 {
                    // A shared path overwritten by everyone, and a private one.
                    let mine = format!("counter/{t}");
                    store.write(&mine, Bytes::from(n.to_string())).unwrap();
                    assert_eq!(store.read(&mine).unwrap().unwrap(), n.to_string());
                    store
                        .write("shared", Bytes::from(format!("{t}-{n}")))
                        .unwrap();
                    assert!(store.read("shared").unwrap().is_some());
                    let i = t * 1000 + n;
                    let id = cache::write_message(store.as_ref(), &sample_message(i)).unwrap();
                    assert_eq!(
                        cache::read_message(store.as_ref(), &id).unwrap(),
                        Some(sample_message(i))
                    );
                }
            });
        }
    });
    assert_eq!(store.list("counter").unwrap().unwrap().len(), 8);
    store.close().unwrap();
    assert!(ao_store::check(&cfg).unwrap().is_ok());
}

#[test]
fn blobs_are_deduplicated_and_reference_counted() {
    let (_dir, store) = temp_store(Durability::None);
    let big = Bytes::from(vec![9u8; 10_000]);
    let other = Bytes::from(vec![8u8; 10_000]);
    for p in ["x/1", "x/2", "y"] {
        store.write(p, big.clone()).unwrap();
    }
    let stats = store.stats().unwrap();
    assert_eq!((stats.blob_binaries, stats.blobs), (3, 1));
    assert_eq!(stats.blob_bytes, 10_000);
    // Overwriting and replacing drop references; the last one drops the blob.
    store.write("x/1", Bytes::from_static(b"small")).unwrap();
    store.write("x/2", other.clone()).unwrap();
    store.make_group("y").unwrap();
    let stats = store.stats().unwrap();
    assert_eq!((stats.blob_binaries, stats.blobs), (1, 1));
    assert_eq!(store.read("x/2").unwrap().unwrap(), other);
    assert!(store.check_records().unwrap().is_ok());
    let msg = Message::new().with("a", big.clone()).with("b", big);
    let id = cache::write_message(&store, &msg).unwrap();
    assert_eq!(cache::read_message(&store, &id).unwrap(), Some(msg));
}

/// `apply_deferred`: visible when it returns, atomic for concurrent readers, ordered after the
/// batches applied before it (its write wins over theirs, also after a reopen), at every
/// durability and across memtable checkpoints.
#[test]
fn deferred_batches_are_atomic_ordered_and_visible_on_return() {
    use ao_core::store::Op;
    use std::sync::atomic::{AtomicBool, Ordering};
    const N: u64 = 150;
    for durability in [
        Durability::Immediate,
        Durability::Eventual,
        Durability::None,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::util::store_path(dir.path());
        let mut cfg = config(&path).with_durability(durability);
        cfg.memtable_bytes = 4096;
        let store = Arc::new(RedbStore::open(cfg.clone()).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut checked = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for k in 0..N {
                        let a = store.read(&format!("derived/{k}/a")).unwrap();
                        if a.is_some() {
                            let b = store.read(&format!("derived/{k}/b")).unwrap();
                            assert_eq!(a, b, "{durability:?}: batch {k} seen in part");
                            checked += 1;
                        }
                    }
                }
                checked
            })
        };
        for k in 0..N {
            store
                .write(&format!("durable/{k}"), Bytes::from(format!("{k}")))
                .unwrap();
            let v = Bytes::from(format!("d{k}"));
            store
                .apply_deferred(vec![
                    Op::Write {
                        path: format!("derived/{k}/a"),
                        value: v.clone(),
                    },
                    Op::Write {
                        path: format!("derived/{k}/b"),
                        value: v.clone(),
                    },
                    Op::Write {
                        path: format!("durable/{k}"),
                        value: v.clone(),
                    },
                ])
                .unwrap();
            assert_eq!(
                store.read(&format!("derived/{k}/b")).unwrap(),
                Some(v.clone())
            );
            assert_eq!(store.read(&format!("durable/{k}")).unwrap(), Some(v));
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
        Arc::try_unwrap(store).unwrap().close().unwrap();
        let store = RedbStore::open(cfg).unwrap();
        for k in 0..N {
            let v = Some(Bytes::from(format!("d{k}")));
            assert_eq!(store.read(&format!("durable/{k}")).unwrap(), v);
            assert_eq!(store.read(&format!("derived/{k}/a")).unwrap(), v);
        }
        assert!(store.check_records().unwrap().is_ok());
        store.close().unwrap();
    }
}

/// With a small memtable, checkpoints run in the background while writers go on: a write,
/// once acknowledged, stays readable through every freeze of the memtable and every
/// publication of a checkpoint (readers race both), and a message overwritten by a later
/// write never reads as its older value again.
#[test]
fn acknowledged_writes_stay_visible_through_background_checkpoints() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const N: u64 = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&crate::util::store_path(dir.path()));
    cfg.memtable_bytes = 8 << 10;
    // The smallest log: a file fills about every 6 writes, so the writer switches log files
    // (and checkpoints the full one in the background) hundreds of times too.
    cfg.wal_bytes = 1;
    let value = |k: u64| Bytes::from(format!("v{k:0>600}"));
    let store = Arc::new(RedbStore::open(cfg.clone()).unwrap());
    // Keys `k/0..acked` are acknowledged; `counter` holds the last acknowledged `acked`.
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (store, acked, stop) = (store.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ r;
                let mut checked = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let n = acked.load(Ordering::SeqCst);
                    if n == 0 {
                        continue;
                    }
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let k = rng % n;
                    let got = store.read(&format!("k/{k}")).unwrap();
                    assert_eq!(got, Some(value(k)), "k/{k} of {n}");
                    let counter = store.read("counter").unwrap().unwrap();
                    let seen: u64 = std::str::from_utf8(&counter).unwrap().parse().unwrap();
                    assert!(seen + 1 >= n, "counter went back: {seen} < {n}");
                    checked += 1;
                }
                checked
            })
        })
        .collect();
    for k in 0..N {
        store
            .apply(vec![
                ao_core::store::Op::Write {
                    path: format!("k/{k}"),
                    value: value(k),
                },
                ao_core::store::Op::Write {
                    path: "counter".into(),
                    value: Bytes::from(format!("{k}")),
                },
            ])
            .unwrap();
        acked.store(k + 1, Ordering::SeqCst);
    }
    stop.store(true, Ordering::Relaxed);
    let checked: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(checked > 0);
    let mut second_log = cfg.path.clone().into_os_string();
    second_log.push(".wal.1");
    assert!(
        std::fs::metadata(second_log).unwrap().len() > 16,
        "no switch"
    );
    Arc::try_unwrap(store).unwrap().close().unwrap();
    let store = RedbStore::open(cfg).unwrap();
    for k in 0..N {
        assert_eq!(store.read(&format!("k/{k}")).unwrap(), Some(value(k)));
    }
    assert_eq!(
        store.read("counter").unwrap(),
        Some(Bytes::from(format!("{}", N - 1)))
    );
    assert!(store.check_records().unwrap().is_ok());
    store.close().unwrap();
}

/// A log record whose append fails stops the writer: a record whose `fdatasync` failed may be
/// on disk all the same, and were the writer to go on, a later record could take its number
/// in the other log file. Later writes fail until the store is reopened; the reopen replays
/// the log (so the write reported as failed appears: the hook fails the append after the
/// record is on disk) and finds every acknowledged write.
#[test]
fn a_failed_log_append_stops_the_writer_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&crate::util::store_path(dir.path()));
    // The smallest log: the writer switches files every dozen records.
    cfg.wal_bytes = 1;
    cfg.checkpoint_idle_ms = 0;
    cfg.fail_log_record = Some(40);
    let value = |k: u64| Bytes::from(format!("v{k:0>300}"));
    let write = |store: &RedbStore, k: u64| {
        store.apply(vec![ao_core::store::Op::Write {
            path: format!("k/{k}"),
            value: value(k),
        }])
    };
    let store = RedbStore::open(cfg.clone()).unwrap();
    for k in 0..39 {
        write(&store, k).unwrap();
    }
    let failed = write(&store, 39).unwrap_err();
    assert!(
        failed.to_string().contains("injected log failure"),
        "{failed}"
    );
    // Stopped: the next writes fail too, and so does the close (it cannot checkpoint).
    for k in 40..43 {
        assert!(write(&store, k).is_err(), "write {k} was taken");
    }
    assert!(store.close().is_err());
    drop(store);

    cfg.fail_log_record = None;
    let store = RedbStore::open(cfg.clone()).unwrap();
    assert!(store.replayed_log_records() > 0);
    for k in 0..40 {
        assert_eq!(
            store.read(&format!("k/{k}")).unwrap(),
            Some(value(k)),
            "k/{k}"
        );
    }
    assert_eq!(store.read("k/40").unwrap(), None);
    for k in 40..60 {
        write(&store, k).unwrap();
    }
    store.close().unwrap();
    let store = RedbStore::open(cfg).unwrap();
    assert_eq!(store.replayed_log_records(), 0);
    assert_eq!(store.read("k/59").unwrap(), Some(value(59)));
    store.close().unwrap();
}
