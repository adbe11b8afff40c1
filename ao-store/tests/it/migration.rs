//! Format 1 (before the write-ahead log) is read as it is and migrated when opened read-write;
//! a damaged log is a typed error.

use std::path::Path;

use ao_core::{Message, Store, cache};
use ao_store::{OpenError, RedbStore};
use redb::ReadableDatabase;

use crate::util::{config, store_path};

type Def = redb::TableDefinition<'static, &'static [u8], &'static [u8]>;
const META: Def = redb::TableDefinition::new("meta");
const ENTRIES: Def = redb::TableDefinition::new("entries");

fn meta_value(path: &Path, key: &[u8]) -> Option<Vec<u8>> {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    meta.get(key).unwrap().map(|g| g.value().to_vec())
}

/// A format-1 store as ao-store 1 wrote it, byte for byte (docs/store-format.md, version 1):
/// `data` and `m` groups, `data/x` holding `hi` inline, `m/k` a link to it.
fn write_format_1(path: &Path) {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(META).unwrap();
        meta.insert(&b"format-version"[..], &[1u8, 0, 0, 0][..])
            .unwrap();
        meta.insert(&b"created-by"[..], &b"ao-store 0.1.0"[..])
            .unwrap();
        let mut entries = txn.open_table(ENTRIES).unwrap();
        for (k, v) in [
            (&b"data"[..], &[0x22u8, 0x00][..]),
            (b"data/x", &[0x0a, 0x02, b'h', b'i']),
            (b"m", &[0x22, 0x00]),
            (b"m/k", &[0x1a, 0x06, b'd', b'a', b't', b'a', b'/', b'x']),
        ] {
            entries.insert(k, v).unwrap();
        }
        for name in ["blobs", "blob-refs"] {
            let def: Def = redb::TableDefinition::new(name);
            txn.open_table(def).unwrap();
        }
    }
    txn.commit().unwrap();
}

#[test]
fn a_format_1_store_is_read_as_is_and_migrated_read_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(dir.path());
    write_format_1(&path);

    // Read-only: read as it is, nothing written.
    let before = std::fs::read(&path).unwrap();
    let ro = RedbStore::open_read_only(config(&path)).unwrap();
    assert_eq!(ro.read("m/k").unwrap().unwrap(), "hi");
    assert_eq!(ro.stats().unwrap().format_version, 1);
    ro.close().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // Read-write: migrated, old records intact, new writes logged.
    let store = RedbStore::open(config(&path)).unwrap();
    assert_eq!(store.read("m/k").unwrap().unwrap(), "hi");
    assert_eq!(store.list("m").unwrap().unwrap(), vec!["k".to_string()]);
    let id = cache::write_message(&store, &Message::new().with("a", "b")).unwrap();
    store.close().unwrap();
    assert_eq!(
        meta_value(&path, b"format-version").unwrap(),
        ao_store::FORMAT_VERSION.to_le_bytes()
    );
    assert!(meta_value(&path, b"wal-applied").is_some());

    let store = RedbStore::open(config(&path)).unwrap();
    assert_eq!(
        store.stats().unwrap().format_version,
        ao_store::FORMAT_VERSION
    );
    assert_eq!(
        cache::read_message(&store, &id).unwrap().unwrap(),
        Message::new().with("a", "b")
    );
    assert_eq!(store.read("m/k").unwrap().unwrap(), "hi");
    store.close().unwrap();
    assert!(ao_store::check(&config(&path)).unwrap().is_ok());
}

/// A log whose records skip past what the database holds lost acknowledged writes: refused,
/// naming the log, and nothing is modified.
#[test]
fn a_log_with_a_gap_is_corrupt_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(dir.path());
    let store = RedbStore::open(config(&path)).unwrap();
    cache::write_message(&store, &Message::new().with("a", "b")).unwrap();
    store.close().unwrap();
    let applied = u64::from_le_bytes(
        meta_value(&path, b"wal-applied")
            .unwrap()
            .try_into()
            .unwrap(),
    );
    // A well-formed record with a sequence number two past the database's.
    let wal = dir.path().join(format!("{}.wal", ao_store::STORE_FILE));
    let mut log = std::fs::read(&wal).unwrap();
    let payload: &[u8] = &[]; // an empty batch
    let seq = applied + 2;
    let mut head = Vec::new();
    head.extend((payload.len() as u32).to_le_bytes());
    head.extend(seq.to_le_bytes());
    let mut h = blake3::Hasher::new();
    h.update(&head);
    h.update(payload);
    let mut record = head;
    record.extend(&h.finalize().as_bytes()[..16]);
    record.extend(payload);
    // A clean close leaves the header only.
    assert_eq!(log.len(), 16);
    log.extend(record);
    std::fs::write(&wal, &log).unwrap();

    let (store_before, log_before) = (std::fs::read(&path).unwrap(), log);
    for r in [
        RedbStore::open(config(&path)),
        RedbStore::open_read_only(config(&path)),
    ] {
        match r {
            Err(OpenError::Corrupt { path: p, reason }) => {
                assert_eq!(p, wal, "{reason}");
                assert!(reason.contains("resumes"), "{reason}");
            }
            other => panic!("expected a corrupt log, got {other:?}"),
        }
    }
    assert_eq!(std::fs::read(&path).unwrap(), store_before);
    assert_eq!(std::fs::read(&wal).unwrap(), log_before);
}

/// A format-2 store (one key per path, `wal-applied` present) is read as it is read-only, and
/// opened read-write it becomes format 3 without rewriting its records: old messages stay one
/// key per path and answer as before, new ones are packed.
#[test]
fn a_format_2_store_is_read_as_is_and_migrated_read_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(dir.path());
    write_format_1(&path);
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            meta.insert(&b"format-version"[..], &[2u8, 0, 0, 0][..])
                .unwrap();
            meta.insert(&b"wal-applied"[..], &[0u8; 8][..]).unwrap();
        }
        txn.commit().unwrap();
    }
    let ro = RedbStore::open_read_only(config(&path)).unwrap();
    assert_eq!(ro.stats().unwrap().format_version, 2);
    assert_eq!(ro.read("m/k").unwrap().unwrap(), "hi");
    ro.close().unwrap();

    let store = RedbStore::open(config(&path)).unwrap();
    store
        .write(
            "m/new",
            bytes::Bytes::from_static(b"into an unpacked group"),
        )
        .unwrap();
    let id = cache::write_message(&store, &Message::new().with("a", "b")).unwrap();
    let stats = store.stats().unwrap();
    assert_eq!(stats.format_version, ao_store::FORMAT_VERSION);
    assert_eq!(stats.packed, 1, "{stats}");
    assert_eq!(
        store.list("m").unwrap().unwrap(),
        vec!["k".to_string(), "new".to_string()]
    );
    assert_eq!(store.read("m/k").unwrap().unwrap(), "hi");
    assert_eq!(store.read(&format!("{id}/a")).unwrap().unwrap(), "b");
    assert!(store.check_records().unwrap().is_ok());
    store.close().unwrap();
    // wal-applied kept (not reset) and the version bumped.
    assert_eq!(
        meta_value(&path, b"format-version").unwrap(),
        ao_store::FORMAT_VERSION.to_le_bytes()
    );
    let ro = RedbStore::open_read_only(config(&path)).unwrap();
    assert_eq!(ro.read("m/new").unwrap().unwrap(), "into an unpacked group");
    ro.close().unwrap();
}
