//! HyperBEAM's cache layout (spec §8.3) on both stores: the `hb_cache`/`hb_store` tests of
//! spec §10.1, written once against `&dyn Store`.

use ao_core::id::{IdScope, id_string};
use ao_core::store::Kind;
use ao_core::util::b64u;
use ao_core::{MemoryStore, Message, Store, Value, cache};
use ao_store::{Durability, layout};
use bytes::Bytes;

use crate::util::temp_store;

/// A 43-character b64url ID derived from a label, for hand-made commitments (real signing is
/// ao-core's business).
fn fake_id(label: &str) -> String {
    b64u(blake3::hash(label.as_bytes()).as_bytes())
}

/// Runs every case on a store.
fn all_cases(store: &dyn Store) {
    stores_a_binary(store);
    stores_an_empty_message(store);
    stores_an_unsigned_message(store);
    stores_a_signed_message_readable_by_every_id(store);
    reads_deep_keys_of_a_nested_signed_message(store);
    stores_a_list_message(store);
    resolves_links_recursive_links_and_directory_links(store);
    computed_slots_and_hashpaths(store);
}

#[test]
fn cache_layout_on_memory_store() {
    all_cases(&MemoryStore::new());
}

#[test]
fn cache_layout_on_redb_store() {
    let (_dir, store) = temp_store(Durability::Immediate);
    all_cases(&store);
    // And once more after a reopen, reading what the first pass wrote.
    let cfg = store.config().clone();
    store.close().unwrap();
    let store = ao_store::RedbStore::open(cfg.clone()).unwrap();
    all_cases(&store);
    store.close().unwrap();
    assert!(ao_store::check(&cfg).unwrap().is_ok());
}

fn stores_a_binary(store: &dyn Store) {
    let bin = Bytes::from_static(b"Simple unsigned data item");
    let path = cache::write_binary(store, bin.clone()).unwrap();
    assert_eq!(path, cache::data_path(&bin));
    assert!(path.starts_with("data/"));
    assert_eq!(cache::read(store, &path).unwrap(), Some(Value::Binary(bin)));
    // A large binary (blob table in the redb store).
    let big = Bytes::from(vec![42u8; 100_000]);
    let path = cache::write_binary(store, big.clone()).unwrap();
    assert_eq!(store.read(&path).unwrap(), Some(big));
}

fn stores_an_empty_message(store: &dyn Store) {
    let empty = Message::new();
    let id = cache::write_message(store, &empty).unwrap();
    assert_eq!(store.kind(&id).unwrap(), Some(Kind::Group));
    assert_eq!(cache::read_message(store, &id).unwrap(), Some(empty));
}

fn stores_an_unsigned_message(store: &dyn Store) {
    let msg = Message::new()
        .with("hello", "world")
        .with("count", 42i64)
        .with("ratio", 0.5f64)
        .with("flag", true)
        .with("payload", vec![0u8, 1, 2, 255]);
    let id = cache::write_message(store, &msg).unwrap();
    assert_eq!(id, id_string(&msg, IdScope::All).unwrap());
    assert_eq!(cache::read_message(store, &id).unwrap(), Some(msg.clone()));
    // Each key is a link to the content-addressed binary.
    assert_eq!(
        store.get_raw(&format!("{id}/hello")).unwrap(),
        Some(ao_core::store::Entry::Link(cache::data_path(b"world")))
    );
    assert_eq!(
        store.read(&format!("{id}/hello")).unwrap().unwrap(),
        "world"
    );
    // Writing it again changes nothing.
    assert_eq!(cache::write_message(store, &msg).unwrap(), id);
    assert_eq!(cache::read_message(store, &id).unwrap(), Some(msg));
    assert_eq!(
        cache::read_message(store, &fake_id("absent")).unwrap(),
        None
    );
}

/// A message with two commitments (an HMAC one keyed by the unsigned ID, and a signature with a
/// `committer` whose input covers every key), as HyperBEAM writes signed messages.
fn signed_ish(msg: Message) -> (Message, String, String) {
    let unsigned = id_string(&msg, IdScope::Unsigned).unwrap();
    let sig_id = fake_id(&format!("signature over {unsigned}"));
    // The signature's input names every key: only committed keys are stored.
    let components: Vec<String> = msg.keys().map(|k| format!("\"{}\"", k.as_str())).collect();
    let input = format!("sig=({});alg=\"rsa-pss-sha512\"", components.join(" "));
    let commitments = Message::new()
        .with(
            unsigned.as_str(),
            Message::new()
                .with("commitment-device", "httpsig@1.0")
                .with("type", "hmac-sha256")
                .with("signature", unsigned.as_str()),
        )
        .with(
            sig_id.as_str(),
            Message::new()
                .with("commitment-device", "httpsig@1.0")
                .with("type", "rsa-pss-sha512")
                .with("committer", fake_id("committer").as_str())
                .with("signature-input", input.as_str())
                .with("signature", b64u(&[7u8; 512]).as_str()),
        );
    (msg.with("commitments", commitments), unsigned, sig_id)
}

fn stores_a_signed_message_readable_by_every_id(store: &dyn Store) {
    let (msg, unsigned, sig_id) = signed_ish(Message::new().with("a", "b").with("count", 42i64));
    let id = cache::write_message(store, &msg).unwrap();
    assert_eq!(id, id_string(&msg, IdScope::All).unwrap());
    assert_ne!(id, unsigned);
    for by in [&id, &unsigned, &sig_id] {
        let read = cache::read_message(store, by).unwrap().unwrap();
        assert_eq!(read, msg, "read by {by}");
        assert_eq!(read.commitments().unwrap().len(), 2);
    }
    assert_eq!(store.read(&format!("{sig_id}/a")).unwrap().unwrap(), "b");
}

fn reads_deep_keys_of_a_nested_signed_message(store: &dyn Store) {
    let inner = Message::new().with("d", "deep value").with("n", 7i64);
    let (msg, unsigned, sig_id) = signed_ish(
        Message::new()
            .with(
                "a",
                Message::new().with("b", Message::new().with("c", inner.clone())),
            )
            .with("top", "level"),
    );
    let id = cache::write_message(store, &msg).unwrap();
    for by in [&id, &unsigned, &sig_id] {
        assert_eq!(
            store.read(&format!("{by}/a/b/c/d")).unwrap().unwrap(),
            "deep value"
        );
        assert_eq!(
            cache::read_message(store, &format!("{by}/a/b/c")).unwrap(),
            Some(inner.clone())
        );
        assert_eq!(
            cache::read(store, &format!("/{by}//a/b/c/n")).unwrap(),
            Some(Value::Binary(Bytes::from_static(b"7"))),
            "a deep scalar is its TABM binary"
        );
    }
    // A deep key is a group of its own: listing it does not list the whole message.
    assert_eq!(
        store.list(&format!("{id}/a/b")).unwrap().unwrap(),
        vec!["c".to_owned()]
    );
    assert_eq!(cache::read_message(store, &id).unwrap(), Some(msg));
}

fn stores_a_list_message(store: &dyn Store) {
    let msg = Message::new()
        .with(
            "items",
            Value::List(vec![
                Value::from(1i64),
                Value::from("two"),
                Value::from(3.5f64),
            ]),
        )
        .with(
            "records",
            Value::List(vec![
                Value::Message(Message::new().with("three", 3i64)),
                Value::Message(Message::new().with("four", "4")),
            ]),
        )
        .with("empty", Value::List(vec![]));
    let id = cache::write_message(store, &msg).unwrap();
    assert_eq!(cache::read_message(store, &id).unwrap(), Some(msg));
}

fn resolves_links_recursive_links_and_directory_links(store: &dyn Store) {
    store
        .write("test-dir/file", Bytes::from_static(b"contents"))
        .unwrap();
    store
        .write("test-dir/sub/inner", Bytes::from_static(b"inner"))
        .unwrap();
    // A link to a binary.
    store.make_link("test-dir/file", "test-link").unwrap();
    assert_eq!(store.read("test-link").unwrap().unwrap(), "contents");
    // A link to a link.
    store.make_link("test-link", "test-link-2").unwrap();
    assert_eq!(store.read("test-link-2").unwrap().unwrap(), "contents");
    assert_eq!(store.resolve("test-link-2").unwrap(), "test-dir/file");
    // A link to a directory, read through.
    store.make_link("test-dir", "dir-link").unwrap();
    assert_eq!(store.read("dir-link/sub/inner").unwrap().unwrap(), "inner");
    assert_eq!(store.kind("dir-link").unwrap(), Some(Kind::Group));
    assert_eq!(
        store.list("dir-link").unwrap().unwrap(),
        vec!["file".to_owned(), "sub".to_owned()]
    );
    // A link inside a linked directory.
    store.make_link("dir-link/sub", "sub-link").unwrap();
    assert_eq!(store.read("sub-link/inner").unwrap().unwrap(), "inner");
    // Linking a path to itself is a no-op; a cycle is an error, not a hang.
    store.make_link("test-link", "test-link").unwrap();
    assert_eq!(store.read("test-link").unwrap().unwrap(), "contents");
    store.make_link("cycle-a", "cycle-b").unwrap();
    store.make_link("cycle-b", "cycle-a").unwrap();
    assert!(store.read("cycle-a/x").is_err());
    assert_eq!(store.read("nothing/here").unwrap(), None);
}

fn computed_slots_and_hashpaths(store: &dyn Store) {
    let pid = fake_id("process");
    for slot in [0u64, 1, 2, 9, 10] {
        let state = Message::new()
            .with("slot", slot as i64)
            .with("results", "ok");
        let id = layout::write_computed(store, &pid, slot, &state).unwrap();
        assert_eq!(
            layout::read_computed(store, &pid, slot).unwrap(),
            Some(state.clone())
        );
        assert_eq!(
            cache::read_message(store, &layout::computed_id_path(&pid, &id)).unwrap(),
            Some(state)
        );
    }
    assert_eq!(layout::latest_computed_slot(store, &pid).unwrap(), Some(10));
    assert_eq!(layout::read_computed(store, &pid, 3).unwrap(), None);
    // A hashpath `<base>/<leaf>` linked to its result.
    let result = cache::write_message(store, &Message::new().with("out", "put")).unwrap();
    let hashpath = format!("{}/{}", fake_id("base"), fake_id("leaf"));
    layout::link_hashpath(store, &hashpath, &result).unwrap();
    assert_eq!(
        cache::read_message(store, &hashpath)
            .unwrap()
            .unwrap()
            .get_str("out"),
        Some("put")
    );
    let path = layout::compiled_module_path(b"\0asm", b"engine");
    assert!(path.starts_with("wasm/compiled/"));
}
