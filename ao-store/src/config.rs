//! Store configuration: the `store` section of the node configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When a committed batch reaches the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Every group commit is on disk before its callers are answered: an `Ok` from
    /// [`ao_core::Store::apply`] survives a crash or power loss. The group is appended to the
    /// write-ahead log and `fdatasync`ed; redb is fsynced at checkpoints (see
    /// [`StoreConfig::wal_bytes`]).
    #[default]
    Immediate,
    /// Group commits are visible at once and fsynced at least every
    /// [`StoreConfig::sync_interval_ms`] (and on [`flush`](crate::RedbStore::flush) and
    /// [`close`](crate::RedbStore::close)). A crash loses at most that interval; the store stays
    /// consistent.
    Eventual,
    /// Nothing is fsynced until [`flush`](crate::RedbStore::flush) or
    /// [`close`](crate::RedbStore::close). A crash returns the store to its last flush.
    None,
}

/// Configuration of a [`RedbStore`](crate::RedbStore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The store file (`<data-dir>/store.redb`).
    pub path: PathBuf,
    /// When commits reach the disk.
    pub durability: Durability,
    /// Bytes of the in-memory cache of decoded entries in front of redb.
    pub cache_bytes: u64,
    /// Bytes of redb's own page cache.
    pub page_cache_bytes: u64,
    /// With [`Durability::Eventual`], the longest time a commit waits for its fsync.
    pub sync_interval_ms: u64,
    /// The most operations one group commit takes before committing.
    pub max_batch_ops: usize,
    /// Binaries at least this long are stored once in the blob table, keyed by blake3, however
    /// many paths hold them.
    pub blob_threshold: u64,
    /// Verify every page checksum when opening (reads the whole file; slow on large stores).
    pub verify_on_open: bool,
    /// With [`Durability::Immediate`], the size each of the write-ahead log's two files
    /// (`<path>.wal`, `<path>.wal.1`) reaches before the writer goes on in the other one and
    /// checkpoints in the background (at least 4 KiB past the header; a file grows to four
    /// times this while the checkpoint that frees the other one runs). It bounds the replay
    /// after a crash. `0` turns the log off: every group commit is then an fsynced redb
    /// commit.
    pub wal_bytes: u64,
    /// With the write-ahead log, the bytes of acknowledged writes kept in memory (the
    /// memtable, which reads consult first) before a checkpoint writes them into redb in one
    /// transaction, in the background. Larger values amortise redb's commit cost over more
    /// writes (and, since message IDs are hashes that land in random B-tree leaves, rewrite
    /// fewer leaves per message: 64 MiB sustained 8–18 % more durable writes than 32 MiB on a
    /// 1M-message store); while a checkpoint runs a second memtable fills, and the writer waits
    /// for the checkpoint when that one reaches twice this size.
    pub memtable_bytes: u64,
    /// The keys the `recent` table holds before a checkpoint merges it into the main table
    /// (it also waits until `recent` holds a quarter as many keys as the main table). A larger
    /// value rewrites the main table's leaves less often, and costs readers a lookup in a
    /// larger `recent` table first.
    pub recent_keys: u64,
    /// With the write-ahead log, how long the writer waits without a write before it
    /// checkpoints the memtable durably (and empties the log). `0`: only at the size limits,
    /// on flush and on close.
    pub checkpoint_idle_ms: u64,
    /// Testing only: abort the process right after this many log records are on disk, before
    /// redb commits the last one (a crash between the log and the database).
    #[doc(hidden)]
    #[serde(skip)]
    pub crash_after_log_records: Option<u64>,
    /// Testing only: report the append of the log record this many records after opening as
    /// failed, after it is on disk (a failed `fdatasync` whose pages were written all the same).
    #[doc(hidden)]
    #[serde(skip)]
    pub fail_log_record: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("hb-data").join(crate::STORE_FILE),
            durability: Durability::Immediate,
            cache_bytes: 64 << 20,
            page_cache_bytes: 256 << 20,
            sync_interval_ms: 1000,
            max_batch_ops: 200_000,
            blob_threshold: 4096,
            verify_on_open: false,
            wal_bytes: 128 << 20,
            memtable_bytes: 64 << 20,
            recent_keys: 1 << 20,
            checkpoint_idle_ms: 200,
            crash_after_log_records: None,
            fail_log_record: None,
        }
    }
}

impl StoreConfig {
    /// The default configuration for a store at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// The store file inside a data directory.
    pub fn in_data_dir(dir: impl Into<PathBuf>) -> Self {
        Self::new(dir.into().join(crate::STORE_FILE))
    }

    /// Sets the durability.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets the size of the entry cache.
    pub fn with_cache_bytes(mut self, bytes: u64) -> Self {
        self.cache_bytes = bytes;
        self
    }

    pub(crate) fn sync_interval(&self) -> Duration {
        Duration::from_millis(self.sync_interval_ms.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserialises_from_node_config() {
        let cfg: StoreConfig = serde_json::from_str(
            r#"{"path": "/var/hb/store.redb", "durability": "eventual", "cache_bytes": 1024}"#,
        )
        .unwrap();
        assert_eq!(cfg.path, PathBuf::from("/var/hb/store.redb"));
        assert_eq!(cfg.durability, Durability::Eventual);
        assert_eq!(cfg.cache_bytes, 1024);
        assert_eq!(cfg.blob_threshold, StoreConfig::default().blob_threshold);
        assert!(serde_json::from_str::<StoreConfig>(r#"{"durabilty": "none"}"#).is_err());
    }
}
