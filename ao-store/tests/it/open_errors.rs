//! Each kind of open error is typed, names the file, and leaves the file untouched.

use std::path::Path;

use ao_core::{Message, cache};
use ao_store::{Durability, OpenError, RedbStore};

use crate::util::{config, store_path, temp_store};

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

/// Every way of opening an existing store, read-write and read-only, plus the operator
/// commands: all must fail with the same kind of error and leave the file as it was.
fn assert_every_open_fails(path: &Path, is_expected: impl Fn(&OpenError) -> bool) {
    let before = bytes(path);
    let cfg = config(path);
    let opens: [(&str, Result<RedbStore, OpenError>); 3] = [
        ("open", RedbStore::open(cfg.clone())),
        ("open_existing", RedbStore::open_existing(cfg.clone())),
        ("open_read_only", RedbStore::open_read_only(cfg.clone())),
    ];
    for (how, r) in opens {
        let e = r.expect_err(how);
        assert!(is_expected(&e), "{how}: unexpected {e:?}");
        assert_eq!(e.path(), path, "{how}");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    }
    for (how, e) in [
        ("stats", ao_store::stats(&cfg).err()),
        ("check", ao_store::check(&cfg).err()),
        ("get", ao_store::get(&cfg, "x").err()),
    ] {
        match e.expect(how) {
            ao_store::Error::Open(e) => assert!(is_expected(&e), "{how}: unexpected {e:?}"),
            other => panic!("{how}: {other:?}"),
        }
    }
    match ao_store::compact(&cfg).expect_err("compact") {
        ao_store::CompactError::Open(e) => assert!(is_expected(&e), "compact: {e:?}"),
        other => panic!("compact: {other:?}"),
    }
    assert_eq!(bytes(path), before, "the file was modified");
}

/// A closed store with one message in it.
fn closed_store(dir: &Path) -> std::path::PathBuf {
    let path = store_path(dir);
    let store = RedbStore::open(config(&path)).unwrap();
    cache::write_message(&store, &Message::new().with("k", "v")).unwrap();
    store.close().unwrap();
    path
}

#[test]
fn missing_store_is_typed_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(dir.path());
    let cfg = config(&path);
    for e in [
        RedbStore::open_existing(cfg.clone()).unwrap_err(),
        RedbStore::open_read_only(cfg.clone()).unwrap_err(),
    ] {
        assert!(matches!(e, OpenError::Missing { .. }), "{e:?}");
        assert_eq!(e.path(), path);
    }
    assert!(matches!(
        ao_store::stats(&cfg),
        Err(ao_store::Error::Open(OpenError::Missing { .. }))
    ));
    assert!(matches!(
        ao_store::check(&cfg),
        Err(ao_store::Error::Open(OpenError::Missing { .. }))
    ));
    assert!(matches!(
        ao_store::compact(&cfg),
        Err(ao_store::CompactError::Open(OpenError::Missing { .. }))
    ));
    assert!(!path.exists());
    // `open` is the node's: it creates the store.
    RedbStore::open(cfg).unwrap().close().unwrap();
    assert!(path.exists());
}

#[test]
fn locked_store_is_typed_and_untouched() {
    let (_dir, store) = temp_store(Durability::Immediate);
    cache::write_message(&store, &Message::new().with("k", "v")).unwrap();
    let path = store.path().to_path_buf();
    assert_every_open_fails(&path, |e| matches!(e, OpenError::Locked { .. }));
    // The holder is unaffected.
    cache::write_message(&store, &Message::new().with("k", "w")).unwrap();
    store.close().unwrap();
    RedbStore::open_read_only(config(&path))
        .unwrap()
        .close()
        .unwrap();
}

#[test]
fn corrupt_files_are_typed_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(dir.path());
    // Not a database at all.
    let mut garbage = b"this is not a redb file\n".repeat(400);
    garbage[0] = 0xff;
    std::fs::write(&path, &garbage).unwrap();
    assert_every_open_fails(&path, |e| matches!(e, OpenError::Corrupt { .. }));
    // A store cut short.
    let good = closed_store(&dir.path().join("good"));
    let full = bytes(&good);
    for len in [10, 512, full.len() / 2] {
        std::fs::write(&path, &full[..len]).unwrap();
        assert_every_open_fails(&path, |e| matches!(e, OpenError::Corrupt { .. }));
    }
}

/// redb decodes table names as `&str` and panics on invalid UTF-8 (found by the fuzz target);
/// ao-store reports the file as corrupt instead.
#[test]
fn damaged_table_names_are_corrupt_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let good = closed_store(&dir.path().join("good"));
    let mut damaged = bytes(&good);
    let name = b"blob-refs";
    let at = damaged
        .windows(name.len())
        .position(|w| w == name)
        .expect("table name in the file");
    damaged[at] = 0xff;
    let path = store_path(dir.path());
    std::fs::write(&path, &damaged).unwrap();
    assert_every_open_fails(&path, |e| matches!(e, OpenError::Corrupt { .. }));
}

#[test]
fn newer_format_is_typed_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = closed_store(dir.path());
    {
        // What a future ao-store would leave behind.
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<'_, &[u8], &[u8]> = redb::TableDefinition::new("meta");
            let mut meta = txn.open_table(def).unwrap();
            let v = (ao_store::FORMAT_VERSION + 1).to_le_bytes();
            meta.insert(&b"format-version"[..], &v[..]).unwrap();
        }
        txn.commit().unwrap();
    }
    let expected = ao_store::FORMAT_VERSION + 1;
    assert_every_open_fails(
        &path,
        |e| matches!(e, OpenError::NewerFormat { found, .. } if *found == expected),
    );
}

#[test]
fn foreign_redb_file_is_typed_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(dir.path());
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<'_, u64, u64> = redb::TableDefinition::new("other");
            txn.open_table(def).unwrap().insert(1, 2).unwrap();
        }
        txn.commit().unwrap();
    }
    assert_every_open_fails(&path, |e| matches!(e, OpenError::NotAStore { .. }));
}
