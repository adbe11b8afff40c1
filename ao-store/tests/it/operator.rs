//! The operator commands: stats, get, check, compact.

use ao_core::{Message, Store, Value, cache};
use ao_store::{Durability, RedbStore};
use bytes::Bytes;
use redb::ReadableTable as _;

use crate::util::{config, sample_message, store_path};

#[test]
fn stats_get_and_check_a_healthy_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(dir.path());
    let store = RedbStore::open(config(&path).with_durability(Durability::None)).unwrap();
    let ids: Vec<String> = (0..20)
        .map(|i| cache::write_message(&store, &sample_message(i)).unwrap())
        .collect();
    store.close().unwrap();
    let cfg = config(&path);
    let before = std::fs::read(&path).unwrap();

    let stats = ao_store::stats(&cfg).unwrap();
    assert_eq!(stats.format_version, ao_store::FORMAT_VERSION);
    assert!(
        stats.entries > 20 && stats.groups >= 20 && stats.links > 20,
        "{stats}"
    );
    assert_eq!(stats.blobs, 2, "two messages carry a large binary");
    assert!(stats.to_string().contains("entries"));

    let got = ao_store::get(&cfg, &ids[3]).unwrap();
    assert_eq!(got, Some(Value::Message(sample_message(3))));
    let deep = ao_store::get(&cfg, &format!("{}/nested/deeper/leaf", ids[3])).unwrap();
    assert_eq!(deep, Some(Value::Binary(Bytes::from_static(b"z"))));
    assert_eq!(ao_store::get(&cfg, "no/such/path").unwrap(), None);

    let report = ao_store::check(&cfg).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.entries, stats.entries);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "read-only commands wrote"
    );
}

/// Damage made behind the store's back (with raw redb) is found by `check`, which still
/// modifies nothing.
#[test]
fn check_reports_damaged_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(dir.path());
    let store = RedbStore::open(config(&path)).unwrap();
    store.write("a/b", Bytes::from(vec![1u8; 1000])).unwrap();
    store.write("c", Bytes::from_static(b"ok")).unwrap();
    store.close().unwrap();
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            // Records written since the last merge live in `recent`.
            let def: redb::TableDefinition<'_, &[u8], &[u8]> = redb::TableDefinition::new("recent");
            let mut t = txn.open_table(def).unwrap();
            t.insert(&b"c"[..], &[0xff, 0xff][..]).unwrap();
            t.insert(&b"orphan/child"[..], &[0x22, 0x00][..]).unwrap();
            let blobs: redb::TableDefinition<'_, &[u8], &[u8]> =
                redb::TableDefinition::new("blobs");
            let mut b = txn.open_table(blobs).unwrap();
            let key: Vec<u8> = b
                .iter()
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .0
                .value()
                .to_vec();
            b.insert(key.as_slice(), &[2u8; 1000][..]).unwrap();
        }
        txn.commit().unwrap();
    }
    let cfg = config(&path);
    let before = std::fs::read(&path).unwrap();
    let report = ao_store::check(&cfg).unwrap();
    assert!(!report.is_ok());
    let all = report.problems.join("\n");
    assert!(all.contains("\"c\""), "{all}");
    assert!(all.contains("no parent entry \"orphan\""), "{all}");
    assert!(all.contains("does not match its hash"), "{all}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // Reading the damaged record is an error, not a panic.
    let ro = RedbStore::open_read_only(cfg).unwrap();
    assert!(ro.get_raw("c").is_err());
}

#[test]
fn compact_shrinks_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(dir.path());
    let store = RedbStore::open(config(&path).with_durability(Durability::Eventual)).unwrap();
    for round in 0..5u8 {
        let ops: Vec<_> = (0..500)
            .map(|i| ao_core::store::Op::Write {
                path: format!("bulk/{i}"),
                value: Bytes::from(vec![round; 2000]),
            })
            .collect();
        store.apply(ops).unwrap();
    }
    let id = cache::write_message(&store, &Message::new().with("kept", "yes")).unwrap();
    store.close().unwrap();
    let report = ao_store::compact(&config(&path)).unwrap();
    assert!(report.bytes_after <= report.bytes_before, "{report:?}");
    let store = RedbStore::open_read_only(config(&path)).unwrap();
    assert_eq!(store.read("bulk/7").unwrap().unwrap(), vec![4u8; 2000]);
    assert_eq!(
        cache::read_message(&store, &id)
            .unwrap()
            .unwrap()
            .get_str("kept"),
        Some("yes")
    );
    store.close().unwrap();
    assert!(ao_store::check(&config(&path)).unwrap().is_ok());
}
