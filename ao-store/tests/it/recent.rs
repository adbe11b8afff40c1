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

/// The `meta/main-filter` header: the main table's key count and the filter's word count.
fn main_filter_header(path: &std::path::Path) -> Option<(u64, u64)> {
    use redb::ReadableDatabase;
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(Def::new("meta")).unwrap();
    let h = meta.get(&b"main-filter"[..]).unwrap()?;
    let h = h.value();
    assert_eq!(h.len(), 16);
    Some((
        u64::from_le_bytes(h[..8].try_into().unwrap()),
        u64::from_le_bytes(h[8..].try_into().unwrap()),
    ))
}

/// Moves every record of `recent` into the main table with redb alone: the merge of a build
/// that keeps no filter of the main table.
fn merge_without_the_filter(path: &std::path::Path) {
    use redb::ReadableTable;
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let recent = txn.open_table(Def::new("recent")).unwrap();
        let mut main = txn.open_table(Def::new("entries")).unwrap();
        for item in recent.iter().unwrap() {
            let (k, v) = item.unwrap();
            main.insert(k.value(), v.value()).unwrap();
        }
    }
    txn.delete_table(Def::new("recent")).unwrap();
    txn.open_table(Def::new("recent")).unwrap();
    txn.commit().unwrap();
}

#[test]
fn the_main_tables_filter_is_stored_at_each_merge_and_a_stale_one_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(dir.path());
    let mut cfg = config(&path);
    cfg.recent_keys = u64::MAX;
    let store = RedbStore::open(cfg.clone()).unwrap();
    let first: Vec<String> = (0..30)
        .map(|i| cache::write_message(&store, &sample_message(i)).unwrap())
        .collect();
    assert_eq!(
        store.stats().unwrap().main_filter_bytes,
        0,
        "nothing merged"
    );
    store.close().unwrap();
    assert_eq!(main_filter_header(&path), None);

    // A merge stores the filter of the merged table, counting its keys.
    cfg.recent_keys = 0;
    let store = RedbStore::open(cfg.clone()).unwrap();
    store
        .write("after/merge", Bytes::from_static(b"1"))
        .unwrap();
    store.close().unwrap();
    let (main, recent) = table_lens(&path);
    assert_eq!(recent, 0);
    let (keys, words) = main_filter_header(&path).expect("stored at the merge");
    assert_eq!(keys, main as u64);
    assert!(words > 0);

    // Reopened, the store uses it: every key passes it (`check`), and reads agree.
    cfg.recent_keys = u64::MAX;
    let store = RedbStore::open(cfg.clone()).unwrap();
    assert_eq!(store.stats().unwrap().main_filter_bytes, words * 8);
    let report = store.check_records().unwrap();
    assert!(report.is_ok(), "{report}");
    for (i, id) in first.iter().enumerate() {
        assert_eq!(
            cache::read_message(&store, id).unwrap(),
            Some(sample_message(i as u64))
        );
    }
    assert_eq!(
        cache::read_message(&store, "not-a-message-id").unwrap(),
        None
    );
    // Messages written now stay in `recent`...
    let second: Vec<String> = (30..60)
        .map(|i| cache::write_message(&store, &sample_message(i)).unwrap())
        .collect();
    store.close().unwrap();

    // ... until a build without the filter merges them: the stored filter, which leaves
    // their keys out, no longer counts the main table's keys and is not used.
    merge_without_the_filter(&path);
    let (main_after, _) = table_lens(&path);
    assert!(main_after > main);
    assert_eq!(main_filter_header(&path).unwrap().0, main as u64);
    let store = RedbStore::open(cfg.clone()).unwrap();
    assert_eq!(
        store.stats().unwrap().main_filter_bytes,
        0,
        "stale: not used"
    );
    for (i, id) in first.iter().chain(&second).enumerate() {
        assert_eq!(
            cache::read_message(&store, id).unwrap(),
            Some(sample_message(i as u64)),
            "{i}"
        );
    }
    // Written over, a key of the main table the stale filter leaves out keeps its blob
    // reference counts right (the checkpoint looks the key up in the main table).
    cache::write_message(&store, &sample_message(40)).unwrap();
    store
        .write(
            &format!("{}/name", second[0]),
            Bytes::from_static(b"renamed"),
        )
        .unwrap();
    store.close().unwrap();
    let store = RedbStore::open(cfg.clone()).unwrap();
    let report = store.check_records().unwrap();
    assert!(report.is_ok(), "{report}");
    store.close().unwrap();

    // The next merge (`recent` holding a quarter as many keys as the main table) builds it
    // afresh from the table.
    cfg.recent_keys = 0;
    let store = RedbStore::open(cfg.clone()).unwrap();
    let third: Vec<String> = (60..90)
        .map(|i| cache::write_message(&store, &sample_message(i)).unwrap())
        .collect();
    store.close().unwrap();
    let (main_final, recent_final) = table_lens(&path);
    assert_eq!(recent_final, 0, "merged");
    assert_eq!(main_filter_header(&path).unwrap().0, main_final as u64);
    let store = RedbStore::open(cfg).unwrap();
    assert!(store.stats().unwrap().main_filter_bytes > 0);
    let report = store.check_records().unwrap();
    assert!(report.is_ok(), "{report}");
    for (i, id) in first.iter().chain(&second).chain(&third).enumerate() {
        let mut expected = sample_message(i as u64);
        if i == 30 {
            expected.insert("name", "renamed");
        }
        assert_eq!(
            cache::read_message(&store, id).unwrap(),
            Some(expected),
            "{i}"
        );
    }
    store.close().unwrap();
}
