//! Format 4: a packed link to a small content-addressed binary (`data/<hash>`) carries a copy
//! of it, so a message is read in one lookup; the copy never disagrees with its target.

use ao_core::store::MemoryStore;
use ao_core::{Message, Store, cache};
use ao_store::{Durability, RedbStore};
use bytes::Bytes;

use crate::util::{config, store_path};

/// Writes the same messages to `store`, then gives the content-addressed path of one of
/// their values other bytes (which no node does, but the store API allows) and returns the
/// IDs and what the messages read as afterwards.
fn write_then_overwrite(store: &dyn Store) -> (Vec<String>, Vec<Option<Message>>) {
    let ids: Vec<String> = (0..10)
        .map(|i| cache::write_message(store, &message_with(i, &format!("hello {i}"))).unwrap())
        .collect();
    let hello = cache::data_path(b"hello 3");
    store
        .write(&hello, Bytes::from_static(b"not hello"))
        .unwrap();
    let read = ids
        .iter()
        .map(|id| cache::read_message(store, id).unwrap())
        .collect();
    (ids, read)
}

fn message_with(i: u64, text: &str) -> Message {
    Message::new()
        .with("data", text.to_string())
        .with("i", i as i64)
}

#[test]
fn packed_messages_carry_copies_and_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(dir.path());
    let store = RedbStore::open(config(&path).with_durability(Durability::None)).unwrap();
    let msgs: Vec<Message> = (0..50)
        .map(|i| message_with(i, &format!("hello {i}")))
        .collect();
    let ids: Vec<String> = msgs
        .iter()
        .map(|m| cache::write_message(&store, m).unwrap())
        .collect();
    store.close().unwrap();

    let store = RedbStore::open(config(&path)).unwrap();
    let stats = store.stats().unwrap();
    assert!(stats.content_copies >= 50, "{stats}");
    for (id, m) in ids.iter().zip(&msgs) {
        assert_eq!(cache::read_message(&store, id).unwrap().as_ref(), Some(m));
    }
    // A copy is still a link for every other reader: its target is where the bytes are.
    let data = store.get_raw(&format!("{}/data", ids[7])).unwrap();
    assert_eq!(
        data,
        Some(ao_core::store::Entry::Link(cache::data_path(b"hello 7")))
    );
    store.close().unwrap();
    let report = ao_store::check(&config(&path)).unwrap();
    assert!(report.is_ok(), "{report}");
}

#[test]
fn an_overwritten_target_is_read_through_the_link_as_in_the_memory_store() {
    let (ids, expected) = write_then_overwrite(&MemoryStore::default());
    assert_ne!(
        expected[3],
        Some(message_with(3, "hello 3")),
        "the model reads the new bytes through the link"
    );
    assert_eq!(expected[4], Some(message_with(4, "hello 4")));
    for durability in [Durability::None, Durability::Immediate] {
        let dir = tempfile::tempdir().unwrap();
        let path = store_path(dir.path());
        let store = RedbStore::open(config(&path).with_durability(durability)).unwrap();
        let (got_ids, got) = write_then_overwrite(&store);
        assert_eq!(got_ids, ids);
        assert_eq!(got, expected, "{durability:?}");
        store.close().unwrap();
        let store = RedbStore::open(config(&path)).unwrap();
        let reread: Vec<Option<Message>> = ids
            .iter()
            .map(|id| cache::read_message(&store, id).unwrap())
            .collect();
        assert_eq!(reread, expected, "{durability:?}, reopened");
        store.close().unwrap();
        let report = ao_store::check(&config(&path)).unwrap();
        assert!(report.is_ok(), "{report}");
    }
}
