//! # ao-store
//!
//! The durable, crash-safe store of the node: an implementation of [`ao_core::Store`] on
//! [redb](https://docs.rs/redb), with HyperBEAM's cache layout ([`ao_core::cache`]) on top.
//!
//! ## Core concepts
//!
//! * **One ordered table** maps each path to a record: a binary, a group or a link (spec §8.5).
//!   The children of a group are a range scan; links are resolved segment by segment. A new
//!   top-level group written with its subtree (a message written by [`ao_core::cache`]) is
//!   *packed* into one record under its key, which serves every path below it, and unpacked
//!   into one key per path the first time something is written into it.
//!   Records are protobuf (prost), versioned by a `format-version` record, and documented byte
//!   by byte in `docs/store-format.md`. Large binaries are stored once, keyed by blake3.
//! * **Group commit behind a write-ahead log.** One writer thread owns the database. Batches
//!   from every caller waiting at once form one group: with [`Durability::Immediate`] the group
//!   is appended to the write-ahead log (two files used in turn, `<file>.wal` and
//!   `<file>.wal.1`) and `fdatasync`ed (on a thread of its
//!   own, while the writer computes the entries the group produces), then applied to the
//!   in-memory *memtable* that reads consult first, then all its callers are answered: an `Ok`
//!   from [`ao_core::Store::apply`] means on disk. Checkpoints write the memtable into redb in
//!   one transaction (amortising redb's commit over many groups), on a thread of their own
//!   while the writer goes on with a fresh memtable; opening the store replays what a crash
//!   kept out of redb. [`RedbStore::submit`] lets a caller keep several batches in
//!   flight; [`ao_core::Store::apply_deferred`] answers without waiting for the `fdatasync`.
//! * **Reads** never wait for the writer: they use the memtable (and the frozen memtable a
//!   running checkpoint writes) over the snapshot the last checkpoint published, behind a bounded cache of decoded entries kept coherent with the
//!   writes.
//! * **Open errors are typed** ([`OpenError`]): missing, locked, corrupt, newer format… each
//!   names the file, and a file that is refused is left byte-for-byte untouched.
//! * **Operator commands** ([`stats`], [`get`], [`check`], [`compact`]) for `hb store …`.
//!
//! ## Example
//!
//! ```
//! use ao_core::{Message, Store, cache};
//! use ao_store::{RedbStore, StoreConfig};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = RedbStore::open(StoreConfig::in_data_dir(dir.path())).unwrap();
//! let msg = Message::new().with("a", "b").with("nested", Message::new().with("x", "y"));
//! let id = cache::write_message(&store, &msg).unwrap();
//! assert_eq!(cache::read_message(&store, &id).unwrap().unwrap(), msg);
//! assert_eq!(store.read(&format!("{id}/nested/x")).unwrap().unwrap(), "y");
//! store.close().unwrap();
//! ```

#![deny(clippy::host_endian_bytes, clippy::big_endian_bytes)]

mod backend;
mod config;
mod entry_cache;
mod error;
mod filter;
mod format;
pub mod layout;
mod main_filter;
mod memtable;
mod ops;
mod store;
mod wal;

pub use backend::ScratchBackend;
pub use config::{Durability, StoreConfig};
pub use error::{CompactError, Error, OpenError, ReadError, Result, WriteError};
pub use format::FORMAT_VERSION;
pub use ops::{CheckReport, CompactReport, Stats, check, compact, get, stats};
pub use store::{MAX_VALUE_BYTES, PendingWrite, RedbStore};

/// The name of the store file inside a data directory.
pub const STORE_FILE: &str = "store.redb";
