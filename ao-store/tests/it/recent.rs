//! The `recent` table (format 5): checkpoints write there, and a checkpoint merges it into the
//! main table once it is large enough; readers see one store throughout.

use std::collections::BTreeSet;

use ao_core::{Message, Store, cache};
use ao_store::RedbStore;
use bytes::Bytes;

use crate::util::{config, sample_message, store_path};

type Def = redb::TableDefinition<'static, &'static [u8], &'static [u8]>;

/// The keys of the main table and of `recent`.
fn table_keys(path: &std::path::Path) -> (BTreeSet<Vec<u8>>, BTreeSet<Vec<u8>>) {
    use redb::{ReadableDatabase, ReadableTable};
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let keys = |name: &'static str| {
        let table = txn.open_table(Def::new(name)).unwrap();
        table
            .iter()
            .unwrap()
            .map(|item| item.unwrap().0.value().to_vec())
            .collect()
    };
    (keys("entries"), keys("recent"))
}

fn table_lens(path: &std::path::Path) -> (usize, usize) {
    let (main, recent) = table_keys(path);
    (main.len(), recent.len())
}

#[test]
fn recent_records_merge_into_the_main_table_and_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(dir.path());
    let mut cfg = config(&path);
    cfg.recent_keys = u64::MAX;
    let store = RedbStore::open(cfg.clone()).unwrap();
    let ids: Vec<String> = (0..20)
        .map(|i| cache::write_message(&store, &sample_message(i)).unwrap())
        .collect();
    store.close().unwrap();
    let (main, recent) = table_lens(&path);
    assert_eq!(main, 0, "nothing merged yet");
    assert!(recent >= 20, "{recent}");

    // The next checkpoint merges everything, the new write included.
    cfg.recent_keys = 0;
    let store = RedbStore::open(cfg.clone()).unwrap();
    store
        .write(&format!("{}/name", ids[0]), Bytes::from_static(b"renamed"))
        .unwrap();
    store.close().unwrap();
    let (main, recent) = table_lens(&path);
    assert_eq!(recent, 0);
    assert!(main > 20, "{main}");

    // Without merging again, a key of the main table is overwritten in `recent`, and a
    // message gains a key there: reads and listings take both tables into account.
    cfg.recent_keys = u64::MAX;
    let store = RedbStore::open(cfg.clone()).unwrap();
    store
        .write(&format!("{}/name", ids[1]), Bytes::from_static(b"second"))
        .unwrap();
    store
        .write(&format!("{}/added", ids[1]), Bytes::from_static(b"new"))
        .unwrap();
    store.close().unwrap();
    let (main_keys, recent_keys) = table_keys(&path);
    assert_eq!(main_keys.len(), main, "the main table is untouched");
    assert!(!recent_keys.is_empty());
    let distinct = main_keys.union(&recent_keys).count() as u64;
    let store = RedbStore::open(cfg).unwrap();
    for (i, id) in ids.iter().enumerate() {
        let mut expected: Message = sample_message(i as u64);
        match i {
            0 => expected.insert("name", "renamed"),
            1 => {
                expected.insert("name", "second");
                expected.insert("added", "new");
            }
            _ => {}
        }
        assert_eq!(
            cache::read_message(&store, id).unwrap(),
            Some(expected),
            "{i}"
        );
    }
    let mut children = store.children(&ids[1]).unwrap();
    children.sort();
    assert_eq!(
        children,
        ["added", "ao-types", "index", "list", "name", "nested"],
        "children of a group whose keys lie in both tables"
    );
    let report = store.check_records().unwrap();
    assert!(report.is_ok(), "{report}");
    let stats = store.stats().unwrap();
    assert_eq!(stats.records, distinct, "{stats}: each key counted once");
    store.close().unwrap();
}
