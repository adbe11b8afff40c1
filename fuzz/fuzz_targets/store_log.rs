//! Opens a store whose write-ahead log (`store.redb.wal` and `store.redb.wal.1`) holds
//! arbitrary records: arbitrary
//! payloads framed with valid checksums (so the fuzzer reaches the decoder and the replay),
//! arbitrary sequence numbers, and an arbitrary tail. Every outcome must be an error or a
//! consistent store, never a panic; a refused open leaves both files untouched. The database
//! under the log already holds a message in packed records.

#![no_main]

use ao_store::{RedbStore, StoreConfig};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    /// Keep the real header (otherwise arbitrary bytes replace it).
    header: bool,
    /// Records: sequence number relative to the database's (`wal-applied`, 0 here), payload.
    records: Vec<(i8, Vec<u8>)>,
    /// Records of the second file.
    second: Vec<(i8, Vec<u8>)>,
    /// Bytes after the records.
    tail: Vec<u8>,
}

/// One record as docs/store-format.md lays it out.
fn record(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend((payload.len() as u32).to_le_bytes());
    out.extend(seq.to_le_bytes());
    let mut h = blake3::Hasher::new();
    h.update(&out);
    h.update(payload);
    out.extend(&h.finalize().as_bytes()[..16]);
    out.extend(payload);
    out
}

fn config(path: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(path);
    c.page_cache_bytes = 1 << 20;
    c.cache_bytes = 16 << 10;
    // Merge the table of recent records into the main one often.
    c.recent_keys = 8;
    c
}

fuzz_target!(|input: Input| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        // A message written before the log: packed records (format 3) that replayed ops may
        // write into, under or over (unpacking them).
        let store = RedbStore::open(config(&path)).unwrap();
        let msg = ao_core::Message::new()
            .with("a", "b")
            .with("nested", ao_core::Message::new().with("x", "y"));
        ao_core::cache::write_message(&store, &msg).unwrap();
        store.close().unwrap();
    }
    let mut log = if input.header {
        b"ao-wal\0\x03\0\0\0\0\0\0\0\0".to_vec()
    } else {
        input.tail.iter().copied().take(16).collect()
    };
    for (rel, payload) in &input.records {
        log.extend(record(i64::from(*rel).max(0) as u64, payload));
    }
    log.extend(&input.tail);
    let wal = dir.path().join("store.redb.wal");
    std::fs::write(&wal, &log).unwrap();
    let mut log1 = b"ao-wal\0\x03\0\0\0\0\0\0\0\0".to_vec();
    for (rel, payload) in &input.second {
        log1.extend(record(i64::from(*rel).max(0) as u64, payload));
    }
    let wal1 = dir.path().join("store.redb.wal.1");
    std::fs::write(&wal1, &log1).unwrap();
    let before = std::fs::read(&path).unwrap();

    if let Ok(store) = RedbStore::open_read_only(config(&path)) {
        store.close().unwrap();
    }
    assert_eq!(std::fs::read(&path).unwrap(), before);
    match RedbStore::open(config(&path)) {
        Ok(store) => {
            store.close().unwrap();
            let report = ao_store::check(&config(&path)).unwrap();
            assert!(report.is_ok(), "{report}");
            // Replayed records are in the database: nothing is left to replay.
            let again = RedbStore::open(config(&path)).unwrap();
            assert_eq!(again.replayed_log_records(), 0);
            again.close().unwrap();
        }
        Err(_) => {
            assert_eq!(std::fs::read(&wal).unwrap(), log);
            assert_eq!(std::fs::read(&wal1).unwrap(), log1);
        }
    }
});
