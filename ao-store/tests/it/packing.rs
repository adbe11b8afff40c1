//! Packed records (format 3): a message written in one batch is one redb key, and the store
//! still answers every path exactly as `ao_core::MemoryStore` does, also after writes into,
//! under and over a packed subtree, and after reopening.

use ao_core::store::Op;
use ao_core::{MemoryStore, Message, Store, cache};
use ao_store::{Durability, RedbStore};
use bytes::Bytes;

use crate::util::{config, sample_message, store_path};

/// Compares the whole tree (every path reachable by listing from the root, plus a path below
/// each that does not exist) on both stores: raw entries and children.
fn assert_same_tree(store: &RedbStore, model: &MemoryStore, step: &str) {
    let mut todo = vec![String::new()];
    let mut seen = 0;
    while let Some(path) = todo.pop() {
        let children = model.children(&path).unwrap();
        assert_eq!(
            store.children(&path).unwrap(),
            children,
            "{step}: children of {path:?}"
        );
        assert_eq!(
            store.child_entries(&path).unwrap(),
            model.child_entries(&path).unwrap(),
            "{step}: child entries of {path:?}"
        );
        if !path.is_empty() {
            assert_eq!(
                store.get_raw(&path).unwrap(),
                model.get_raw(&path).unwrap(),
                "{step}: {path:?}"
            );
            let missing = format!("{path}/no-such-key");
            assert_eq!(
                store.get_raw(&missing).unwrap(),
                None,
                "{step}: {missing:?}"
            );
            seen += 1;
        }
        for c in children {
            todo.push(ao_core::store::join(&[&path, &c]));
        }
    }
    assert!(seen > 0);
}

fn apply_both(store: &RedbStore, model: &MemoryStore, ops: Vec<Op>) {
    model.apply(ops.clone()).unwrap();
    store.apply(ops).unwrap();
}

fn write(path: &str, value: &str) -> Op {
    Op::Write {
        path: path.into(),
        value: Bytes::from(value.to_owned()),
    }
}

#[test]
fn packed_messages_answer_like_the_model_through_writes_into_them_and_reopening() {
    // `recent_keys` 0: checkpoints merge the `recent` table into the main one, so packed
    // records are unpacked from one table into the other.
    for (durability, recent_keys) in [
        (Durability::Immediate, 1 << 20),
        (Durability::None, 1 << 20),
        (Durability::Immediate, 0),
        (Durability::None, 0),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = store_path(dir.path());
        let mut cfg = config(&path).with_durability(durability);
        cfg.memtable_bytes = 2048;
        cfg.recent_keys = recent_keys;
        let store = RedbStore::open(cfg.clone()).unwrap();
        let model = MemoryStore::new();
        let step = format!("{durability:?}, recent_keys {recent_keys}");

        // Messages (nested, with a list and, for 0, a blob) in one batch each.
        let mut ids = Vec::new();
        for i in [0, 1, 2] {
            let (id, ops) = cache::message_ops(&sample_message(i)).unwrap();
            apply_both(&store, &model, ops);
            ids.push(id);
        }
        store.flush().unwrap();
        let stats = store.stats().unwrap();
        assert!(stats.packed >= 3, "{step}: {stats}");
        assert!(stats.records < stats.entries, "{step}: {stats}");
        assert_same_tree(&store, &model, &format!("{step} messages"));
        let nested = match store.get_raw(&format!("{}/nested", ids[0])).unwrap() {
            Some(ao_core::store::Entry::Link(t)) => t,
            other => panic!("{other:?}"),
        };

        // Writes into and under a packed message, a link inside it, and a write over another
        // (its subtree stays readable by path, as in the model).
        apply_both(
            &store,
            &model,
            vec![
                write(&format!("{}/extra/deep", ids[0]), "v"),
                Op::MakeLink {
                    existing: "data".into(),
                    new: format!("{}/alias", ids[0]),
                },
                write(&format!("{nested}/x"), "changed"),
            ],
        );
        apply_both(&store, &model, vec![write(&ids[1], "now a binary")]);
        apply_both(
            &store,
            &model,
            vec![Op::MakeGroup {
                path: ids[1].clone(),
            }],
        );
        // A new group too large to pack, and one written across several batches.
        let big: Vec<Op> = (0..400)
            .map(|k| write(&format!("big/{k:04}"), &"x".repeat(60)))
            .collect();
        apply_both(&store, &model, big);
        for k in 0..5 {
            apply_both(&store, &model, vec![write(&format!("grown/{k}"), "g")]);
        }
        assert_same_tree(&store, &model, &format!("{step} after writes"));
        assert_eq!(
            cache::read_message(&store, &ids[2]).unwrap(),
            Some(sample_message(2)),
            "{step}"
        );
        assert!(store.check_records().unwrap().is_ok(), "{step}");
        store.close().unwrap();

        let store = RedbStore::open(cfg).unwrap();
        assert_same_tree(&store, &model, &format!("{step} reopened"));
        let report = store.check_records().unwrap();
        assert!(report.is_ok(), "{step}: {report}");
        store.close().unwrap();
    }
}

#[test]
fn a_small_message_is_two_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(config(&store_path(dir.path()))).unwrap();
    // The first write packs `data` too (a new top-level group); the second unpacks it.
    for from in ["me", "them"] {
        let msg = Message::new()
            .with("type", "Message")
            .with("nested", Message::new().with("from", from));
        cache::write_message(&store, &msg).unwrap();
        store.flush().unwrap();
    }
    let before = store.stats().unwrap();
    let other = Message::new()
        .with("type", "Message")
        .with("nested", Message::new().with("from", "you"));
    let id = cache::write_message(&store, &other).unwrap();
    let after = store.stats().unwrap();
    // The message's group and its nested message's group, packed, and the one new binary.
    assert_eq!(after.records - before.records, 3, "{after}");
    assert_eq!(after.packed - before.packed, 2, "{after}");
    assert_eq!(cache::read_message(&store, &id).unwrap(), Some(other));
    store.close().unwrap();
}
