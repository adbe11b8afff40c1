//! Shared helpers.

use std::path::{Path, PathBuf};

use ao_core::{Message, Value};
use ao_store::{Durability, RedbStore, StoreConfig};

/// A small-footprint configuration for a store at `path`.
pub(crate) fn config(path: &Path) -> StoreConfig {
    let mut c = StoreConfig::new(path);
    c.page_cache_bytes = 8 << 20;
    c.cache_bytes = 1 << 20;
    c.blob_threshold = 256;
    c
}

/// A fresh store in a temporary directory.
pub(crate) fn temp_store(durability: Durability) -> (tempfile::TempDir, RedbStore) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        RedbStore::open(config(&store_path(dir.path())).with_durability(durability)).unwrap();
    (dir, store)
}

pub(crate) fn store_path(dir: &Path) -> PathBuf {
    dir.join(ao_store::STORE_FILE)
}

/// A deterministic message for index `i`: scalars, a nested message, a list, and every tenth
/// one a binary large enough for the blob table.
pub(crate) fn sample_message(i: u64) -> Message {
    let mut m = Message::new()
        .with("index", i as i64)
        .with("name", format!("message-{i}"))
        .with(
            "nested",
            Message::new()
                .with("x", format!("y{}", i % 7))
                .with("deeper", Message::new().with("leaf", "z")),
        )
        .with(
            "list",
            Value::List(vec![
                Value::from(1i64),
                Value::from("two"),
                Value::from(i as i64),
            ]),
        );
    if i.is_multiple_of(10) {
        m.insert("data", vec![(i % 251) as u8; 1000 + (i as usize % 500)]);
    }
    m
}
