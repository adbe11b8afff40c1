//! [`RedbStore`]: the store, its snapshots and its group-commit writer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ao_core::store::{Entry, Op, Resolved, join, normalize_path};
use bytes::Bytes;
use redb::{Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable};

use crate::backend::ScratchBackend;
use crate::config::{Durability, StoreConfig};
use crate::entry_cache::{Cached, EntryCache, Space};
use crate::error::{Error, OpenError, ReadError, WriteError};
use crate::filter::{self, KeyFilter};
use crate::format::{
    self, BLOB_REFS, BLOBS, ENTRIES, FORMAT_VERSION, HASH_LEN, META, META_CONTENT_OVERWRITTEN,
    META_CREATED_BY, META_FORMAT_VERSION, META_WAL_APPLIED, OLDEST_FORMAT_VERSION, RECENT, Record,
    key_str,
};
use crate::main_filter;
use crate::memtable::{self, ChangeKey, MemMap, Memtable, merge_sorted};
use crate::wal::{self, Wal, WalBatch, WalOp};

/// The largest binary a write accepts (redb's limit is 3 GiB per value).
pub const MAX_VALUE_BYTES: usize = 3 << 30;

type BytesTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// A consistent view of the committed store, shared by readers until the next commit.
pub(crate) struct Snapshot {
    pub(crate) generation: u64,
    pub(crate) entries: BytesTable,
    /// The records written since the last merge into `entries` (absent before format 5,
    /// read-only).
    pub(crate) recent: Option<BytesTable>,
    /// The keys `recent` and `entries` may hold.
    pub(crate) filters: Filters,
    pub(crate) blobs: BytesTable,
    pub(crate) txn: ReadTransaction,
}

/// The filters of a snapshot's tables (`None`: that table is looked up for every key).
#[derive(Debug, Clone, Default)]
pub(crate) struct Filters {
    /// The keys `recent` may hold.
    pub(crate) recent: Option<Arc<KeyFilter>>,
    /// The keys `entries` may hold (see [`crate::main_filter`]).
    pub(crate) main: Option<Arc<KeyFilter>>,
}

impl Filters {
    /// `false`: the main table does not hold `key`.
    pub(crate) fn may_be_in_main(&self, key: &[u8]) -> bool {
        self.main.as_ref().is_none_or(|f| f.may_contain(key))
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    fn new(txn: ReadTransaction, generation: u64) -> Result<Self, ReadError> {
        let entries = txn.open_table(ENTRIES).map_err(redb::Error::from)?;
        let blobs = txn.open_table(BLOBS).map_err(redb::Error::from)?;
        // An empty `recent` (just after a merge) is not looked at.
        let recent = match txn.open_table(RECENT) {
            Ok(t) if redb::ReadableTableMetadata::len(&t).map_err(redb::Error::from)? > 0 => {
                Some(t)
            }
            Ok(_) | Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(redb::Error::from(e).into()),
        };
        Ok(Self {
            generation,
            entries,
            recent,
            filters: Filters::default(),
            blobs,
            txn,
        })
    }

    /// This snapshot with `filters` telling which keys its tables may hold.
    fn with_filters(mut self, filters: Filters) -> Self {
        self.filters = filters;
        self
    }

    /// A filter of the keys of `recent`, for `planned` keys or as many as it holds: every key
    /// read.
    fn build_filter(&self, planned: u64) -> Result<Arc<KeyFilter>, ReadError> {
        use redb::ReadableTableMetadata;
        let Some(recent) = &self.recent else {
            return Ok(Arc::new(KeyFilter::with_capacity(
                planned,
                filter::RECENT_BITS_PER_KEY,
            )));
        };
        let len = recent.len().map_err(redb::Error::from)?;
        let filter = KeyFilter::with_capacity(planned.max(len), filter::RECENT_BITS_PER_KEY);
        for item in recent.iter().map_err(redb::Error::from)? {
            let (k, _) = item.map_err(redb::Error::from)?;
            filter.insert(k.value());
        }
        Ok(Arc::new(filter))
    }

    pub(crate) fn blob(&self, hash: &[u8; HASH_LEN]) -> Result<Option<Bytes>, ReadError> {
        let v = self
            .blobs
            .get(&hash[..])
            .map_err(redb::Error::from)?
            .map(|g| Bytes::copy_from_slice(g.value()));
        Ok(v)
    }

    /// The raw value stored under exactly the key `path`: in `recent`, else in `entries`.
    pub(crate) fn raw(
        &self,
        path: &str,
    ) -> Result<Option<redb::AccessGuard<'static, &'static [u8]>>, ReadError> {
        if let Some(recent) = &self.recent
            && self
                .filters
                .recent
                .as_ref()
                .is_none_or(|f| f.may_contain(path.as_bytes()))
            && let Some(g) = recent.get(path.as_bytes()).map_err(redb::Error::from)?
        {
            return Ok(Some(g));
        }
        if !self.filters.may_be_in_main(path.as_bytes()) {
            return Ok(None);
        }
        Ok(self
            .entries
            .get(path.as_bytes())
            .map_err(redb::Error::from)?)
    }

    /// Calls `visit(key, raw record)` for every key of the store in key order: the keys of
    /// `entries` and `recent` merged, a key of `recent` in place of the same key of `entries`.
    pub(crate) fn for_each_record(
        &self,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), ReadError>,
    ) -> Result<(), ReadError> {
        let mut older = self.entries.iter().map_err(redb::Error::from)?.peekable();
        let mut newer = match &self.recent {
            Some(t) => Some(t.iter().map_err(redb::Error::from)?.peekable()),
            None => None,
        };
        loop {
            let take_newer = match (older.peek(), newer.as_mut().and_then(|n| n.peek())) {
                (None, None) => return Ok(()),
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(Ok((a, _))), Some(Ok((b, _)))) => match a.value().cmp(b.value()) {
                    std::cmp::Ordering::Less => false,
                    std::cmp::Ordering::Greater => true,
                    std::cmp::Ordering::Equal => {
                        // The same key in both: `recent`'s supersedes.
                        older.next();
                        true
                    }
                },
                // An error: take it from whichever side holds it.
                (Some(Err(_)), _) => false,
                (_, Some(Err(_))) => true,
            };
            let item = if take_newer {
                newer.as_mut().and_then(Iterator::next)
            } else {
                older.next()
            };
            let Some(item) = item else {
                return Ok(());
            };
            let (k, v) = item.map_err(redb::Error::from)?;
            visit(k.value(), v.value())?;
        }
    }

    /// The record stored under exactly the key `path`.
    fn record(&self, path: &str) -> Result<Option<Record>, ReadError> {
        let Some(guard) = self.raw(path)? else {
            return Ok(None);
        };
        Record::decode_at(path, guard.value()).map(Some)
    }

    /// Where `path` lives: its own key, or inside the packed record of its first segment.
    fn locate(&self, path: &str) -> Result<Located, ReadError> {
        if let Some(rec) = self.record(path)? {
            return Ok(Located::Key(rec));
        }
        // Packed records are top-level keys: only the first segment can hold one.
        if let Some((top, rel)) = path.split_once('/')
            && let Some(rec) = self.record(top)?
            && rec.as_packed().is_some()
        {
            return Ok(Located::Packed(rec, rel.to_owned()));
        }
        Ok(Located::Nowhere)
    }

    pub(crate) fn get_entry(&self, path: &str) -> Result<Option<Entry>, ReadError> {
        if let Some(e) = self.get_own_entry(path)? {
            return Ok(Some(e));
        }
        // Not under its own key: inside the packed record of its first segment, if any.
        if let Some((top, rel)) = path.split_once('/')
            && let Some(packed) = self.record(top)?
            && let Some(p) = packed.as_packed()
            && let Some(r) = p.find(rel)
        {
            return r.clone().into_entry(path, |h| self.blob(h)).map(Some);
        }
        Ok(None)
    }

    /// The entry under exactly the key `path` (not inside a packed record).
    pub(crate) fn get_own_entry(&self, path: &str) -> Result<Option<Entry>, ReadError> {
        let Some(guard) = self.raw(path)? else {
            return Ok(None);
        };
        // A packed record under the path's own key is a group: answered without decoding it
        // (its entries are decoded, and checked, when they are read).
        let value = guard.value();
        if is_packed_record(value) {
            return Ok(Some(Entry::Group));
        }
        Record::decode_at(path, value)?
            .into_entry(path, |h| self.blob(h))
            .map(Some)
    }

    /// Whether the key `top` holds a record that is not packed.
    pub(crate) fn holds_plain_record(&self, top: &str) -> Result<bool, ReadError> {
        Ok(self.raw(top)?.is_some_and(|g| !is_packed_record(g.value())))
    }

    /// Direct children of `path` with their entries: from a packed record, or one range scan,
    /// as [`Self::children`].
    pub(crate) fn child_entries(&self, path: &str) -> Result<Vec<(String, Entry)>, ReadError> {
        Ok(self
            .child_records(path)?
            .into_iter()
            .map(|(name, child)| (name, child.into_entry()))
            .collect())
    }

    /// Direct children of `path` with their entries, keeping the copies of content-addressed
    /// link targets that packed records hold ([`Child::Copy`]).
    pub(crate) fn child_records(&self, path: &str) -> Result<Vec<(String, Child)>, ReadError> {
        if path.is_empty() || path.contains('/') {
            if let Some((packed, rel)) = self.packed_at(path)? {
                return self.packed_children(path, &packed, &rel);
            }
        } else if let Some(guard) = self.raw(path)? {
            // A top-level path: its own record (one lookup) is packed or a plain group.
            let rec = Record::decode_at(path, guard.value())?;
            if rec.as_packed().is_some() {
                return self.packed_children(path, &rec, "");
            }
        }
        let mut out = Vec::new();
        self.scan_children(path, |child, key, value| {
            let full = key_str(key)?;
            let rec = Record::decode_at(full, value)?;
            let entry = rec.into_entry(full, |h| self.blob(h))?;
            out.push((key_str(child)?.to_owned(), Child::Entry(entry)));
            Ok(())
        })?;
        Ok(out)
    }

    fn packed_children(
        &self,
        path: &str,
        packed: &Record,
        rel: &str,
    ) -> Result<Vec<(String, Child)>, ReadError> {
        let mut out = Vec::new();
        if let Some(p) = packed.as_packed() {
            for (name, rec) in p.children(rel) {
                let child = match &rec.kind {
                    Some(format::Kind::Content(b)) => Child::Copy(b.clone()),
                    _ => {
                        let full = join(&[path, name]);
                        Child::Entry(rec.clone().into_entry(&full, |h| self.blob(h))?)
                    }
                };
                out.push((name.to_owned(), child));
            }
        }
        Ok(out)
    }

    /// Direct children of `path`: from a packed record, or a range scan over `path/` that
    /// skips the subtrees below them.
    pub(crate) fn children(&self, path: &str) -> Result<Vec<String>, ReadError> {
        if let Some((packed, rel)) = self.packed_at(path)? {
            return Ok(packed
                .as_packed()
                .map(|p| p.children(&rel).map(|(n, _)| n.to_owned()).collect())
                .unwrap_or_default());
        }
        let mut out = Vec::new();
        self.scan_children(path, |child, _, _| {
            out.push(key_str(child)?.to_owned());
            Ok(())
        })?;
        Ok(out)
    }

    /// The packed record holding the children of `path`, and `path` relative to it: `path`
    /// is a packed key itself (`rel` empty) or lies inside one.
    fn packed_at(&self, path: &str) -> Result<Option<(Record, String)>, ReadError> {
        if path.is_empty() {
            return Ok(None);
        }
        Ok(match self.locate(path)? {
            Located::Key(rec) if rec.as_packed().is_some() => Some((rec, String::new())),
            Located::Packed(rec, rel) => Some((rec, rel)),
            _ => None,
        })
    }

    /// Calls `visit(child, full key, raw record)` for each direct child of `path`, in key order:
    /// one range scan over `path/` that jumps over the subtree below each child.
    fn scan_children(
        &self,
        path: &str,
        mut visit: impl FnMut(&[u8], &[u8], &[u8]) -> Result<(), ReadError>,
    ) -> Result<(), ReadError> {
        let Some(recent) = &self.recent else {
            return scan_table(&self.entries, path, visit);
        };
        // Each table's children, merged: a child is listed where its own key is (its
        // subtree may lie in either table), from `recent` when both hold it. `recent`'s
        // (the smaller table) are collected, the main table's streamed between them.
        let mut newer = Vec::new();
        scan_table(recent, path, |c, k, v| {
            newer.push((c.to_vec(), k.to_vec(), v.to_vec()));
            Ok(())
        })?;
        if newer.is_empty() {
            return scan_table(&self.entries, path, visit);
        }
        let mut newer = newer.into_iter().peekable();
        scan_table(&self.entries, path, |c, k, v| {
            // `recent`'s children before this one, then this one unless `recent` holds it.
            while let Some((n, nk, nv)) = newer.next_if(|(n, _, _)| n.as_slice() <= c) {
                visit(&n, &nk, &nv)?;
                if n.as_slice() == c {
                    return Ok(());
                }
            }
            visit(c, k, v)
        })?;
        for (n, nk, nv) in newer {
            visit(&n, &nk, &nv)?;
        }
        Ok(())
    }
}

/// Calls `visit(child, full key, raw record)` for each direct child of `path` among the keys
/// of `table`, in key order: one range scan over `path/` that jumps over the subtree below
/// each child.
fn scan_table(
    table: &BytesTable,
    path: &str,
    mut visit: impl FnMut(&[u8], &[u8], &[u8]) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let mut start = prefix.clone().into_bytes();
    'seek: loop {
        let range = table
            .range::<&[u8]>(start.as_slice()..)
            .map_err(redb::Error::from)?;
        for item in range {
            let (k, v) = item.map_err(redb::Error::from)?;
            let key = k.value();
            let Some(rest) = key.strip_prefix(prefix.as_bytes()) else {
                break 'seek;
            };
            match rest.iter().position(|&b| b == b'/') {
                None => {
                    if !rest.is_empty() {
                        visit(rest, key, v.value())?;
                    }
                }
                Some(i) => {
                    // A key below the child `rest[..i]`: jump past that child's subtree.
                    // Every key under `child/` sorts before `child0` ('0' follows '/').
                    let mut next = prefix.clone().into_bytes();
                    next.extend_from_slice(&rest[..i]);
                    next.push(b'0');
                    start = next;
                    continue 'seek;
                }
            }
        }
        break;
    }
    Ok(())
}

/// Whether a stored record is exactly one packed field (`2a`, its length as a varint, then
/// that many bytes), as the writer encodes a packed record.
fn is_packed_record(value: &[u8]) -> bool {
    let Some((&0x2a, rest)) = value.split_first() else {
        return false;
    };
    let mut len: u64 = 0;
    for (i, &b) in rest.iter().enumerate().take(10) {
        len |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (rest.len() - i - 1) as u64 == len;
        }
    }
    false
}

/// A child of a group as stored: its entry, or (inside a packed record) a link to a
/// content-addressed path with a copy of the bytes there.
#[derive(Debug, Clone)]
pub(crate) enum Child {
    Entry(Entry),
    Copy(Bytes),
}

impl Child {
    /// The entry as [`ao_core::Store::get_raw`] answers it: a copy is a link.
    fn into_entry(self) -> Entry {
        match self {
            Self::Entry(e) => e,
            Self::Copy(b) => Entry::Link(ao_core::cache::data_path(&b)),
        }
    }
}

/// Where a path's record is.
enum Located {
    /// Under its own key.
    Key(Record),
    /// Inside this packed record, at this relative path (possibly absent from it).
    Packed(Record, String),
    /// Neither.
    Nowhere,
}

/// Reads the format version (`None`: an empty database, no tables).
fn check_meta(txn: &ReadTransaction, path: &Path) -> Result<Option<u32>, OpenError> {
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => {
            let any = txn
                .list_tables()
                .map_err(|e| OpenError::from_storage(path, e))?
                .next()
                .is_some();
            if any {
                return Err(OpenError::NotAStore {
                    path: path.to_path_buf(),
                    reason: "it has tables but no \"meta\" table".into(),
                });
            }
            return Ok(None);
        }
        Err(e) => return Err(OpenError::from_storage(path, e)),
    };
    let version = meta
        .get(META_FORMAT_VERSION)
        .map_err(|e| OpenError::from_storage(path, e))?
        .ok_or_else(|| OpenError::NotAStore {
            path: path.to_path_buf(),
            reason: "no format-version record".into(),
        })?;
    let version = format::decode_version(version.value()).ok_or_else(|| OpenError::Corrupt {
        path: path.to_path_buf(),
        reason: "malformed format-version record".into(),
    })?;
    if version > FORMAT_VERSION {
        return Err(OpenError::NewerFormat {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if version < OLDEST_FORMAT_VERSION {
        return Err(OpenError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("format version {version}"),
        });
    }
    for table in [ENTRIES, BLOBS, BLOB_REFS] {
        txn.open_table(table)
            .map_err(|e| OpenError::from_storage(path, e))?;
    }
    if version >= 5 {
        txn.open_table(RECENT)
            .map_err(|e| OpenError::from_storage(path, e))?;
    }
    if version >= 2 {
        read_applied(txn, path)?;
    }
    Ok(Some(version))
}

/// Whether `meta/content-overwritten` is set (format 4).
fn read_content_overwritten(txn: &ReadTransaction, path: &Path) -> Result<bool, OpenError> {
    let meta = txn
        .open_table(META)
        .map_err(|e| OpenError::from_storage(path, e))?;
    let v = meta
        .get(META_CONTENT_OVERWRITTEN)
        .map_err(|e| OpenError::from_storage(path, e))?;
    Ok(v.is_some())
}

/// The sequence number of the last log record the database holds (0 before format version 2).
fn read_applied(txn: &ReadTransaction, path: &Path) -> Result<u64, OpenError> {
    let meta = txn
        .open_table(META)
        .map_err(|e| OpenError::from_storage(path, e))?;
    let applied = meta
        .get(META_WAL_APPLIED)
        .map_err(|e| OpenError::from_storage(path, e))?;
    let version = meta
        .get(META_FORMAT_VERSION)
        .map_err(|e| OpenError::from_storage(path, e))?
        .and_then(|v| format::decode_version(v.value()))
        .unwrap_or(0);
    match applied {
        None if version < 2 => Ok(0),
        None => Err(OpenError::Corrupt {
            path: path.to_path_buf(),
            reason: "no wal-applied record".into(),
        }),
        Some(v) => format::decode_seq(v.value()).ok_or_else(|| OpenError::Corrupt {
            path: path.to_path_buf(),
            reason: "malformed wal-applied record".into(),
        }),
    }
}

/// How many write-ahead log records the database does not hold yet (checking that the log
/// follows the database).
fn pending_log_records(txn: &ReadTransaction, path: &Path) -> Result<usize, OpenError> {
    let applied = read_applied(txn, path)?;
    let records = wal::read(path)?;
    let pending = wal::pending(records, applied).map_err(|reason| OpenError::Corrupt {
        path: wal::wal_path(path),
        reason,
    })?;
    Ok(pending.len())
}

/// Fails with [`OpenError::NeedsRecovery`] when the write-ahead log holds records the database
/// does not (the store was not closed cleanly): a read-only open would miss them.
fn check_log_applied(txn: &ReadTransaction, path: &Path) -> Result<(), OpenError> {
    if pending_log_records(txn, path)? == 0 {
        Ok(())
    } else {
        Err(OpenError::NeedsRecovery {
            path: path.to_path_buf(),
        })
    }
}

/// Upgrades a store of an older format to this one, in one transaction: the
/// `format-version` record, and from format 1 the `wal-applied` record (format 2 adds the
/// write-ahead log, format 3 packed records, format 4 content copies, format 5 the `recent`
/// table, created empty; the records already there stay valid as they are).
fn migrate(db: &Database, path: &Path, from: u32) -> Result<(), OpenError> {
    if from == FORMAT_VERSION {
        return Ok(());
    }
    let err = |e: redb::Error| OpenError::from_storage(path, e);
    let mut txn = db.begin_write().map_err(|e| err(e.into()))?;
    txn.set_durability(redb::Durability::Immediate)
        .map_err(|e| err(e.into()))?;
    {
        let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
        meta.insert(
            META_FORMAT_VERSION,
            &format::encode_version(FORMAT_VERSION)[..],
        )
        .map_err(|e| err(e.into()))?;
        if from < 2 {
            meta.insert(META_WAL_APPLIED, &format::encode_seq(0)[..])
                .map_err(|e| err(e.into()))?;
        }
        txn.open_table(RECENT).map_err(|e| err(e.into()))?;
    }
    txn.commit().map_err(|e| err(e.into()))
}

/// Applies the write-ahead log records the database does not hold yet (after a crash), in one
/// durable transaction. Returns the sequence number of the last record the database then holds
/// and how many records were replayed. The log itself is not modified.
fn replay(db: &Database, config: &StoreConfig) -> Result<(u64, u64), OpenError> {
    let path = &config.path;
    let err = |e: redb::Error| OpenError::from_storage(path, e);
    let applied = {
        let txn = db.begin_read().map_err(|e| err(e.into()))?;
        read_applied(&txn, path)?
    };
    let log = wal::wal_path(path);
    let pending = wal::pending(wal::read(path)?, applied).map_err(|reason| OpenError::Corrupt {
        path: log.clone(),
        reason,
    })?;
    let Some(&(last, _)) = pending.last() else {
        return Ok((applied, 0));
    };
    let count = pending.len() as u64;
    // The entries the records produce over what the database holds, then one transaction.
    let snap = db
        .begin_read()
        .map_err(ReadError::from_redb)
        .and_then(|txn| Snapshot::new(txn, 0))
        .map_err(|e| open_read_error(path, e))?;
    let memo = WriterMemo::default();
    let empty = MemMap::new();
    let mut changes = MemWriter::new(&empty, None, &snap, &memo);
    for (seq, batch) in pending {
        for op in batch.ops {
            let corrupt = |reason: String| OpenError::Corrupt {
                path: log.clone(),
                reason: format!("replaying log record {seq}: {reason}"),
            };
            let op = op
                .into_op()
                .ok_or_else(|| corrupt("an op of no known kind".into()))?;
            changes.apply(op).map_err(|e| corrupt(e.to_string()))?;
        }
    }
    let changes = changes.into_changes();
    drop(snap);
    let mut txn = db.begin_write().map_err(|e| err(e.into()))?;
    txn.set_durability(redb::Durability::Immediate)
        .map_err(|e| err(e.into()))?;
    {
        TxnWriter::open(&txn, config.blob_threshold)
            .and_then(|mut w| w.write_entries(&changes))
            .map_err(|e| OpenError::Corrupt {
                path: log.clone(),
                reason: format!("replaying the log: {e}"),
            })?;
        let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
        meta.insert(META_WAL_APPLIED, &format::encode_seq(last)[..])
            .map_err(|e| err(e.into()))?;
    }
    txn.commit().map_err(|e| err(e.into()))?;
    Ok((last, count))
}

/// Creates the tables and the format-version record of a new store.
fn initialise(db: &Database, path: &Path) -> Result<(), OpenError> {
    let err = |e: redb::Error| OpenError::from_storage(path, e);
    let txn = db.begin_write().map_err(|e| err(e.into()))?;
    {
        let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
        meta.insert(
            META_FORMAT_VERSION,
            &format::encode_version(FORMAT_VERSION)[..],
        )
        .map_err(|e| err(e.into()))?;
        meta.insert(META_WAL_APPLIED, &format::encode_seq(0)[..])
            .map_err(|e| err(e.into()))?;
        let created_by = concat!("ao-store ", env!("CARGO_PKG_VERSION"));
        meta.insert(META_CREATED_BY, created_by.as_bytes())
            .map_err(|e| err(e.into()))?;
        for table in [ENTRIES, RECENT, BLOBS, BLOB_REFS] {
            txn.open_table(table).map_err(|e| err(e.into()))?;
        }
    }
    txn.commit().map_err(|e| err(e.into()))
}

/// A batch's reply channel.
type Reply = SyncSender<Result<(), WriteError>>;

enum Request {
    /// A batch; `deferred`: answer without waiting for the log's `fdatasync`
    /// ([`ao_core::Store::apply_deferred`]).
    Apply {
        ops: Vec<Op>,
        reply: Reply,
        deferred: bool,
    },
    Flush {
        reply: Reply,
    },
}

/// What the store holds its database through.
enum Handle {
    /// Read-write: the writer thread owns the database.
    Writer {
        tx: Sender<Request>,
        thread: JoinHandle<Result<(), WriteError>>,
    },
    /// Read-only.
    ReadOnly(ReadOnlyDatabase),
}

/// What readers read: the last checkpointed snapshot of redb, overlaid with the memtable of
/// the acknowledged writes not yet checkpointed (and, while a checkpoint writes it into redb
/// in the background, the frozen memtable it writes). Published together, so a reader never
/// sees a memtable without the snapshot it overlays.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub(crate) snap: Arc<Snapshot>,
    pub(crate) mem: Arc<Memtable>,
    /// The memtable a running checkpoint writes into redb: newer than `snap`, older than `mem`.
    pub(crate) frozen: Option<Arc<Memtable>>,
}

impl View {
    fn new(snap: Snapshot) -> Self {
        Self {
            snap: Arc::new(snap),
            mem: Arc::default(),
            frozen: None,
        }
    }

    /// The entry at exactly `path`: the memtable's, else the frozen memtable's, else redb's.
    fn get_entry(&self, path: &str) -> Result<Option<Entry>, ReadError> {
        if let Some(e) = self.mem.get(path) {
            return Ok(Some(e));
        }
        if let Some(e) = self.frozen.as_ref().and_then(|f| f.get(path)) {
            return Ok(Some(e));
        }
        self.snap.get_entry(path)
    }

    /// The children both memtables hold, the newer winning.
    fn mem_children(&self, path: &str) -> Vec<(String, Entry)> {
        let new = self.mem.child_entries(path);
        match &self.frozen {
            Some(f) => merge_sorted(f.child_entries(path), new),
            None => new,
        }
    }

    fn child_entries(&self, path: &str) -> Result<Vec<(String, Entry)>, ReadError> {
        let old = self.snap.child_entries(path)?;
        Ok(merge_sorted(old, self.mem_children(path)))
    }

    fn child_records(&self, path: &str) -> Result<Vec<(String, Child)>, ReadError> {
        let old = self.snap.child_records(path)?;
        let new = self.mem_children(path);
        if new.is_empty() {
            return Ok(old);
        }
        let new = new.into_iter().map(|(c, e)| (c, Child::Entry(e))).collect();
        Ok(merge_sorted(old, new))
    }

    fn children(&self, path: &str) -> Result<Vec<String>, ReadError> {
        let old = self.snap.children(path)?;
        let new = self.mem_children(path);
        if new.is_empty() {
            return Ok(old);
        }
        let old = old.into_iter().map(|c| (c, ())).collect();
        let new = new.into_iter().map(|(c, _)| (c, ())).collect();
        Ok(merge_sorted(old, new)
            .into_iter()
            .map(|(c, ())| c)
            .collect())
    }
}

#[derive(Debug)]
struct Shared {
    view: RwLock<Option<View>>,
    cache: EntryCache,
    /// Set (never cleared) once a content-addressed path was given other contents
    /// (`meta/content-overwritten`): the copies in packed records are then not used. Set
    /// before the change is visible to readers.
    content_overwritten: AtomicBool,
}

/// A batch submitted with [`RedbStore::submit`], not yet acknowledged.
#[derive(Debug)]
#[must_use = "a write is acknowledged only when `wait` returns Ok"]
pub struct PendingWrite {
    answer: Receiver<Result<(), WriteError>>,
}

impl PendingWrite {
    /// Waits until the batch is committed (durable with [`Durability::Immediate`]).
    pub fn wait(self) -> Result<(), WriteError> {
        self.answer.recv().map_err(|_| WriteError::Closed)?
    }
}

/// The durable store: redb behind a group-commit writer thread and a read cache.
///
/// Implements [`ao_core::Store`]; HyperBEAM's cache layout comes from [`ao_core::cache`] on
/// top. Cheap to share behind an `Arc`; every method takes `&self`.
///
/// * Writes ([`ao_core::Store::apply`]) go to one writer thread, which takes the batches of
///   every caller waiting at that moment as one group. With [`Durability::Immediate`] (and the
///   write-ahead log) the group is one log record and one `fdatasync`, then it is applied to
///   the memtable and every caller is answered: `Ok` means the batch is on disk. Checkpoints
///   write the memtable into redb in one transaction. Without the log, the group is one redb
///   transaction.
/// * Reads use the memtable over the snapshot published by the last checkpoint or commit (no
///   transaction per read), behind a bounded cache of decoded entries and group listings.
pub struct RedbStore {
    path: PathBuf,
    shared: Arc<Shared>,
    handle: Mutex<Option<Handle>>,
    /// Cloned per call so `apply` does not hold the handle's lock while waiting.
    tx: RwLock<Option<Sender<Request>>>,
    config: StoreConfig,
    /// Write-ahead log records replayed when opening.
    replayed: u64,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .field("durability", &self.config.durability)
            .finish_non_exhaustive()
    }
}

fn builder(config: &StoreConfig) -> redb::Builder {
    let mut b = redb::Builder::new();
    b.set_cache_size(usize::try_from(config.page_cache_bytes).unwrap_or(usize::MAX));
    b.set_check_integrity_on_open(config.verify_on_open);
    b
}

impl RedbStore {
    /// Opens the store at `config.path` read-write, creating it (and its directory) if missing.
    ///
    /// A store that cannot be opened as it is (locked, corrupt, newer format, not a store) is an
    /// error and is left untouched. A store that was not closed cleanly is recovered by redb (to
    /// its last durable commit).
    pub fn open(config: StoreConfig) -> Result<Self, OpenError> {
        let path = config.path.clone();
        guard_open(&path, || Self::open_rw(config, true))
    }

    /// Opens an existing store read-write ([`OpenError::Missing`] if there is none).
    pub fn open_existing(config: StoreConfig) -> Result<Self, OpenError> {
        let path = config.path.clone();
        guard_open(&path, || Self::open_rw(config, false))
    }

    fn open_rw(config: StoreConfig, create: bool) -> Result<Self, OpenError> {
        let path = config.path.clone();
        let len = match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => {
                return Err(OpenError::Io {
                    path,
                    source: std::io::Error::other("is a directory"),
                });
            }
            Ok(m) => Some(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(OpenError::Io { path, source }),
        };
        match len {
            None if !create => return Err(OpenError::Missing { path }),
            None => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|source| OpenError::Io {
                        path: path.clone(),
                        source,
                    })?;
                }
            }
            // Validate read-only first, so that a store we will refuse is never opened for
            // writing (which alone changes the file's header). A store that needs recovery
            // cannot be opened read-only; the read-write open below recovers it, then checks it.
            Some(len) if len > 0 => match builder(&config).open_read_only(&path) {
                Ok(db) => {
                    let checked = db
                        .begin_read()
                        .map_err(|e| OpenError::from_storage(&path, e))
                        .and_then(|txn| {
                            check_meta(&txn, &path)?;
                            pending_log_records(&txn, &path)
                        });
                    let closed = db.close();
                    checked?;
                    closed.map_err(|e| OpenError::from_redb(&path, e))?;
                }
                Err(redb::DatabaseError::RepairAborted) => {
                    // Not closed cleanly (or damaged): rehearse the recovery on a scratch copy,
                    // so a file recovery cannot make sense of is refused, not "repaired".
                    match rehearse_recovery(&config) {
                        OpenError::NeedsRecovery { .. } => {}
                        e => return Err(e),
                    }
                }
                Err(e) => return Err(OpenError::from_redb(&path, e)),
            },
            Some(_) => {}
        }
        let db = if len.is_some() && !create {
            builder(&config).open(&path)
        } else {
            builder(&config).create(&path)
        }
        .map_err(|e| OpenError::from_redb(&path, e))?;
        Self::start(db, config, true)
    }

    /// Opens a store over a [`ScratchBackend`] (arbitrary bytes, possibly failing): used by the
    /// fuzz target and by [`check`](crate::check). Nothing reaches the backend's base.
    pub fn open_with_backend(
        backend: ScratchBackend,
        config: StoreConfig,
    ) -> Result<Self, OpenError> {
        let path = config.path.clone();
        guard_open(&path, || {
            let db = builder(&config)
                .create_with_backend(backend)
                .map_err(|e| OpenError::from_redb(&path, e))?;
            // No log: nothing may reach the files behind the backend.
            Self::start(db, config, false)
        })
    }

    /// Opens an existing store read-only: writes fail with [`WriteError::ReadOnly`]. Fails with
    /// [`OpenError::Locked`] while a node has it open.
    pub fn open_read_only(config: StoreConfig) -> Result<Self, OpenError> {
        let path = config.path.clone();
        guard_open(&path, || Self::open_ro(config))
    }

    fn open_ro(config: StoreConfig) -> Result<Self, OpenError> {
        let path = config.path.clone();
        match std::fs::metadata(&path) {
            Ok(m) if m.len() == 0 => {
                return Err(OpenError::NotAStore {
                    path,
                    reason: "empty file".into(),
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OpenError::Missing { path });
            }
            Err(source) => return Err(OpenError::Io { path, source }),
        }
        let db = match builder(&config).open_read_only(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::RepairAborted) => return Err(rehearse_recovery(&config)),
            Err(e) => return Err(OpenError::from_redb(&path, e)),
        };
        let txn = db
            .begin_read()
            .map_err(|e| OpenError::from_storage(&path, e))?;
        if check_meta(&txn, &path)?.is_none() {
            return Err(OpenError::NotAStore {
                path,
                reason: "an empty redb database".into(),
            });
        }
        check_log_applied(&txn, &path)?;
        let overwritten = read_content_overwritten(&txn, &path)?;
        let snapshot = Snapshot::new(txn, 1).map_err(|e| open_read_error(&path, e))?;
        let main = main_filter::load(&snapshot.txn).map_err(|e| open_read_error(&path, e))?;
        let snapshot = snapshot.with_filters(Filters {
            recent: None,
            main: main.map(Arc::new),
        });
        Ok(Self {
            path,
            shared: Arc::new(Shared {
                view: RwLock::new(Some(View::new(snapshot))),
                cache: EntryCache::new(config.cache_bytes),
                content_overwritten: AtomicBool::new(overwritten),
            }),
            handle: Mutex::new(Some(Handle::ReadOnly(db))),
            tx: RwLock::new(None),
            config,
            replayed: 0,
        })
    }

    /// Starts the writer on an opened database: initialises or migrates it, replays the log,
    /// and with `log` (a store file, not a backend) opens the log for appending.
    fn start(db: Database, config: StoreConfig, log: bool) -> Result<Self, OpenError> {
        let path = config.path.clone();
        let ready = db
            .begin_read()
            .map_err(|e| OpenError::from_storage(&path, e))
            .and_then(|txn| check_meta(&txn, &path))
            .and_then(|version| match version {
                Some(v) => migrate(&db, &path, v),
                None => initialise(&db, &path),
            })
            .and_then(|()| replay(&db, &config))
            .and_then(|(seq, replayed)| {
                let wal =
                    if log && config.durability == Durability::Immediate && config.wal_bytes > 0 {
                        Some(Wal::open(&path, config.wal_bytes)?)
                    } else {
                        None
                    };
                let txn = db
                    .begin_read()
                    .map_err(|e| OpenError::from_storage(&path, e))?;
                let overwritten = read_content_overwritten(&txn, &path)?;
                let snap = Snapshot::new(txn, 1).map_err(|e| open_read_error(&path, e))?;
                let filters = filter_capacity(&snap.entries, config.recent_keys)
                    .map_err(ReadError::from_redb)
                    .and_then(|planned| snap.build_filter(planned))
                    .and_then(|recent| {
                        Ok(Filters {
                            recent: Some(recent),
                            main: main_filter::load(&snap.txn)?.map(Arc::new),
                        })
                    })
                    .map_err(|e| open_read_error(&path, e))?;
                Ok((snap.with_filters(filters), seq, replayed, wal, overwritten))
            });
        let (snapshot, seq, replayed, wal, overwritten) = match ready {
            Ok(s) => s,
            Err(e) => {
                // Close without committing anything; the open error is what matters.
                let _ = db.close();
                return Err(e);
            }
        };
        let shared = Arc::new(Shared {
            view: RwLock::new(Some(View::new(snapshot))),
            cache: EntryCache::new(config.cache_bytes),
            content_overwritten: AtomicBool::new(overwritten),
        });
        shared.cache.set_generation(1);
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            db: Arc::new(db),
            rx,
            shared: shared.clone(),
            config: config.clone(),
            generation: 1,
            pending_since: None,
            wal,
            seq,
            frozen_seq: seq,
            logged: 0,
            mem_bytes: 0,
            poisoned: None,
            in_flight: None,
            memo: WriterMemo::default(),
        };
        let thread = std::thread::Builder::new()
            .name("ao-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|source| OpenError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            path,
            shared,
            handle: Mutex::new(Some(Handle::Writer {
                tx: tx.clone(),
                thread,
            })),
            tx: RwLock::new(Some(tx)),
            config,
            replayed,
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Whether writes are refused.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self.handle.lock().ok().as_deref(),
            Some(Some(Handle::ReadOnly(_)))
        )
    }

    /// The last checkpointed snapshot of redb (without the memtable).
    pub(crate) fn snapshot(&self) -> Result<Arc<Snapshot>, ReadError> {
        Ok(self.view()?.snap)
    }

    fn view(&self) -> Result<View, ReadError> {
        self.shared
            .view
            .read()
            .map_err(|_| ReadError::Closed)?
            .clone()
            .ok_or(ReadError::Closed)
    }

    fn sender(&self) -> Result<Sender<Request>, WriteError> {
        match self.tx.read().map_err(|_| WriteError::Closed)?.as_ref() {
            Some(tx) => Ok(tx.clone()),
            None if self.is_read_only() => Err(WriteError::ReadOnly),
            None => Err(WriteError::Closed),
        }
    }

    /// Applies a batch atomically (see [`ao_core::Store::apply`]), with this crate's error.
    pub fn apply_batch(&self, ops: Vec<Op>) -> Result<(), WriteError> {
        self.submit(ops)?.wait()
    }

    /// Hands a batch to the writer without waiting for it: a caller may keep several batches
    /// in flight (they are committed in submission order, each atomically) and wait for each
    /// with [`PendingWrite::wait`]. A batch is acknowledged (durable, with
    /// [`Durability::Immediate`]) only when its `wait` returns `Ok`.
    pub fn submit(&self, ops: Vec<Op>) -> Result<PendingWrite, WriteError> {
        self.submit_as(ops, false)
    }

    /// Applies a batch of derived data (see [`ao_core::Store::apply_deferred`]), with this
    /// crate's error: atomic, visible to reads and ordered after every batch submitted before
    /// it when this returns, but not waiting for an fsync. With [`Durability::Immediate`] its
    /// log record is written but not `fdatasync`ed; the next durable group's `fdatasync` (or a
    /// checkpoint) makes it durable, so a crash loses at most the deferred batches at the end
    /// of the log, never a batch acknowledged as durable.
    pub fn apply_deferred_batch(&self, ops: Vec<Op>) -> Result<(), WriteError> {
        self.submit_as(ops, true)?.wait()
    }

    fn submit_as(&self, ops: Vec<Op>, deferred: bool) -> Result<PendingWrite, WriteError> {
        validate(&ops)?;
        let (reply, answer) = mpsc::sync_channel(1);
        if ops.is_empty() {
            let _ = reply.send(Ok(()));
        } else {
            self.sender()?
                .send(Request::Apply {
                    ops,
                    reply,
                    deferred,
                })
                .map_err(|_| WriteError::Closed)?;
        }
        Ok(PendingWrite { answer })
    }

    /// How many write-ahead log records opening the store replayed into the database (records
    /// of acknowledged writes that a crash kept out of redb).
    pub fn replayed_log_records(&self) -> u64 {
        self.replayed
    }

    /// Makes every write acknowledged so far durable (an fsync), whatever the durability.
    pub fn flush(&self) -> Result<(), WriteError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.sender()?
            .send(Request::Flush { reply })
            .map_err(|_| WriteError::Closed)?;
        answer.recv().map_err(|_| WriteError::Closed)?
    }

    /// Flushes, stops the writer and closes the database. Later calls fail with `Closed`.
    /// Closing twice is harmless.
    pub fn close(&self) -> Result<(), Error> {
        // Dropping the last sender lets the writer drain its queue and stop.
        if let Ok(mut tx) = self.tx.write() {
            tx.take();
        }
        let handle = self.handle.lock().ok().and_then(|mut h| h.take());
        let result = match handle {
            None => Ok(()),
            Some(Handle::ReadOnly(db)) => {
                self.drop_snapshot();
                db.close()
                    .map_err(|e| OpenError::from_redb(&self.path, e).into())
            }
            Some(Handle::Writer { tx, thread }) => {
                drop(tx);
                match thread.join() {
                    Ok(r) => r.map_err(Error::from),
                    Err(_) => Err(WriteError::Closed.into()),
                }
            }
        };
        self.drop_snapshot();
        result
    }

    fn drop_snapshot(&self) {
        if let Ok(mut s) = self.shared.view.write() {
            s.take();
        }
    }

    /// The raw entry at exactly `path` (see [`ao_core::Store::get_raw`]), with this crate's
    /// error.
    pub fn entry(&self, path: &str) -> Result<Option<Entry>, ReadError> {
        // The generation is read first: see entry_cache's coherence argument.
        let generation = self.shared.cache.generation();
        if let Some(Cached::Entry(e)) = self.shared.cache.get(Space::Entry, path) {
            return Ok(e);
        }
        let view = self.view()?;
        let e = guard_read(path, || view.get_entry(path))?;
        self.shared
            .cache
            .insert(Space::Entry, path, Cached::Entry(e.clone()), generation);
        Ok(e)
    }

    /// The children of exactly `path` (see [`ao_core::Store::children`]), with this crate's
    /// error.
    pub fn child_names(&self, path: &str) -> Result<Vec<String>, ReadError> {
        let generation = self.shared.cache.generation();
        if let Some(Cached::Children(c)) = self.shared.cache.get(Space::Children, path) {
            return Ok(c.to_vec());
        }
        let view = self.view()?;
        let c = guard_read(path, || view.children(path))?;
        self.shared.cache.insert(
            Space::Children,
            path,
            Cached::Children(c.clone().into()),
            generation,
        );
        Ok(c)
    }
}

/// The message of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// redb trusts some on-disk bytes (table names, page layouts) and can panic on a damaged file.
/// A panic while opening becomes [`OpenError::Corrupt`]; nothing was written by then that a
/// normal failed open would not have written.
fn guard_open<T>(path: &Path, f: impl FnOnce() -> Result<T, OpenError>) -> Result<T, OpenError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(OpenError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("redb failed on damaged data: {}", panic_message(p.as_ref())),
        })
    })
}

/// Like [`guard_open`], for reads: a panic reading damaged pages becomes [`ReadError::Corrupt`].
pub(crate) fn guard_read<T>(
    key: &str,
    f: impl FnOnce() -> Result<T, ReadError>,
) -> Result<T, ReadError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(ReadError::Corrupt {
            key: key.to_owned(),
            reason: format!("redb failed on damaged data: {}", panic_message(p.as_ref())),
        })
    })
}

/// Runs redb's crash recovery on a copy-on-write view of a store that was not closed cleanly:
/// [`OpenError::NeedsRecovery`] if it succeeds (a read-write open will recover the store), the
/// error that makes the store unopenable otherwise. The file is not modified.
fn rehearse_recovery(config: &StoreConfig) -> OpenError {
    let path = &config.path;
    let backend = match std::fs::File::open(path).and_then(ScratchBackend::over_file) {
        Ok(b) => b,
        Err(source) => {
            return OpenError::Io {
                path: path.clone(),
                source,
            };
        }
    };
    let mut cfg = config.clone();
    cfg.page_cache_bytes = cfg.page_cache_bytes.min(16 << 20);
    let rehearsal = builder(&cfg)
        .create_with_backend(backend)
        .map_err(|e| OpenError::from_redb(path, e))
        .and_then(|db| {
            let checked = db
                .begin_read()
                .map_err(|e| OpenError::from_storage(path, e))
                .and_then(|txn| check_meta(&txn, path));
            drop(db);
            checked
        });
    match rehearsal {
        Ok(_) => OpenError::NeedsRecovery { path: path.clone() },
        // The rehearsal is itself a read-write open: "needs recovery" cannot come back.
        Err(e) => e,
    }
}

fn open_read_error(path: &Path, e: ReadError) -> OpenError {
    match e {
        ReadError::Storage(e) => OpenError::from_storage(path, e),
        ReadError::Corrupt { key, reason } => OpenError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("{key:?}: {reason}"),
        },
        ReadError::Closed => OpenError::Corrupt {
            path: path.to_path_buf(),
            reason: "closed while opening".into(),
        },
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Checks a batch before it reaches the writer: nothing of an invalid batch is written.
fn validate(ops: &[Op]) -> Result<(), WriteError> {
    for op in ops {
        if let Op::Write { path, value } = op {
            if join(&[path]).is_empty() {
                return Err(WriteError::Invalid("write to an empty path".into()));
            }
            if value.len() > MAX_VALUE_BYTES {
                return Err(WriteError::Invalid(format!(
                    "a binary of {} bytes at {path:?} exceeds the limit of {MAX_VALUE_BYTES}",
                    value.len()
                )));
            }
        }
    }
    Ok(())
}

impl ao_core::Store for RedbStore {
    fn apply(&self, ops: Vec<Op>) -> ao_core::Result<()> {
        Ok(self.apply_batch(ops)?)
    }

    fn apply_deferred(&self, ops: Vec<Op>) -> ao_core::Result<()> {
        Ok(self.apply_deferred_batch(ops)?)
    }

    fn get_raw(&self, path: &str) -> ao_core::Result<Option<Entry>> {
        Ok(self.entry(path)?)
    }

    fn children(&self, path: &str) -> ao_core::Result<Vec<String>> {
        Ok(self.child_names(path)?)
    }

    /// As [`ao_core::store::resolve_links`], without allocating per segment when no prefix of
    /// the path is a link (the common case: `data/<hash>`, an ID); otherwise the general walk.
    fn resolve(&self, path: &str) -> ao_core::Result<String> {
        Ok(self.resolve_entry(path)?.0)
    }

    /// One walk: the entry of the last segment is the answer's entry.
    fn resolve_entry(&self, path: &str) -> ao_core::Result<(String, Option<Entry>)> {
        let mut resolved = String::with_capacity(path.len());
        let mut last = None;
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            if !resolved.is_empty() {
                resolved.push('/');
            }
            resolved.push_str(seg);
            match self.entry(&resolved)? {
                Some(Entry::Link(_)) => {
                    let resolved = ao_core::store::resolve_links(self, path)?;
                    let entry = self.entry(&resolved)?;
                    return Ok((resolved, entry));
                }
                e => last = e,
            }
        }
        Ok((resolved, last))
    }

    fn child_entries(&self, path: &str) -> ao_core::Result<Vec<(String, Entry)>> {
        let view = self.view()?;
        Ok(guard_read(path, || view.child_entries(path))?)
    }

    /// One read of the group's record: a child stored as a copy of its content-addressed
    /// target is answered from it (unless `content-overwritten`), other links are resolved.
    fn resolved_children(&self, path: &str) -> ao_core::Result<Vec<(String, Resolved)>> {
        // Read before the view: a change that sets it is visible only after it is set.
        let trust_copies = !self.shared.content_overwritten.load(Ordering::SeqCst);
        let view = self.view()?;
        let children = guard_read(path, || view.child_records(path))?;
        drop(view);
        let mut out = Vec::with_capacity(children.len());
        for (name, child) in children {
            let (resolved, entry) = match child {
                Child::Copy(b) if trust_copies => {
                    out.push((name, Resolved::Binary(b)));
                    continue;
                }
                Child::Copy(b) => self.resolve_entry(&ao_core::cache::data_path(&b))?,
                Child::Entry(Entry::Link(target)) => self.resolve_entry(&target)?,
                Child::Entry(entry) => (join(&[path, &name]), Some(entry)),
            };
            match entry {
                Some(Entry::Binary(b)) => out.push((name, Resolved::Binary(b))),
                Some(Entry::Group) => out.push((name, Resolved::Group(resolved))),
                Some(Entry::Link(_)) | None => {}
            }
        }
        Ok(out)
    }
}

/// The writer thread.
struct Writer {
    /// Shared with the checkpoint running in the background, if any.
    db: Arc<Database>,
    rx: Receiver<Request>,
    shared: Arc<Shared>,
    config: StoreConfig,
    generation: u64,
    /// Set while commits that are not yet durable in redb exist.
    pending_since: Option<Instant>,
    /// The write-ahead log (with [`Durability::Immediate`]). With a log, acknowledged groups
    /// go to the memtable and reach redb at checkpoints.
    wal: Option<Wal>,
    /// Sequence number of the last log record written (and held by redb or the memtable).
    seq: u64,
    /// The last log record the last checkpoint (running or done) holds: a record after it
    /// that changed nothing still needs a checkpoint to record it in `wal-applied` before the
    /// log may start over.
    frozen_seq: u64,
    /// Log records written since opening (for the `crash_after_log_records` test hook).
    logged: u64,
    /// Bytes the memtable holds (approximately).
    mem_bytes: u64,
    /// Set when a commit failed after its log record was written: the database no longer
    /// matches the log, so the writer refuses everything until the store is reopened (which
    /// replays the log).
    poisoned: Option<WriteError>,
    /// The checkpoint writing the frozen memtable into redb on its own thread, and whether it
    /// commits durably.
    in_flight: Option<(JoinHandle<Result<(), WriteError>>, bool)>,
    /// What the writer learnt about the snapshot (see [`WriterMemo`]).
    memo: WriterMemo,
}

/// What the writer learnt about the database while computing groups, kept across groups.
#[derive(Debug, Default)]
struct WriterMemo {
    /// Entries the database holds at paths no change touched since (a change in the
    /// memtable shadows them; a path is forgotten when a change to it is applied).
    known: std::cell::RefCell<HashMap<String, Entry, foldhash::fast::RandomState>>,
    /// Top-level keys that hold an unpacked record: never packed later (only a new group is
    /// packed, and keys are never removed), so a path below one is only looked up under its
    /// own key.
    plain_tops: std::cell::RefCell<HashSet<String, foldhash::fast::RandomState>>,
}

impl WriterMemo {
    /// Bounds on the memo's sizes: beyond them it starts over.
    const KNOWN: usize = 1 << 16;
    const TOPS: usize = 1 << 12;

    fn forget(&self, path: &str) {
        self.known.borrow_mut().remove(path);
    }
}

impl Writer {
    fn run(mut self) -> Result<(), WriteError> {
        let mut failed: Option<WriteError> = None;
        loop {
            let deadline = match (self.config.durability, self.pending_since) {
                _ if self.wal.is_some()
                    && (self.mem_bytes > 0
                        || self.in_flight.is_some()
                        || self.pending_since.is_some())
                    && self.config.checkpoint_idle_ms > 0 =>
                {
                    Some(Instant::now() + Duration::from_millis(self.config.checkpoint_idle_ms))
                }
                (Durability::Eventual, Some(since)) => Some(since + self.config.sync_interval()),
                _ => None,
            };
            let first = match deadline {
                Some(deadline) => match self
                    .rx
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                {
                    Ok(r) => Some(r),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.rx.recv() {
                    Ok(r) => Some(r),
                    Err(_) => break,
                },
            };
            let mut batch = Vec::new();
            let mut ops = 0;
            if let Some(first) = first {
                ops += first.len();
                batch.push(first);
                while ops < self.config.max_batch_ops {
                    match self.rx.try_recv() {
                        Ok(r) => {
                            ops += r.len();
                            batch.push(r);
                        }
                        Err(_) => break,
                    }
                }
            }
            let result = if self.wal.is_some() {
                if batch.is_empty() {
                    // Idle: checkpoint (durably, which lets the log start over).
                    self.checkpoint(true)
                } else {
                    self.commit_logged(&mut batch)
                }
            } else {
                let flush =
                    batch.is_empty() || batch.iter().any(|r| matches!(r, Request::Flush { .. }));
                let durable = match self.config.durability {
                    // Without a log every commit is an fsynced redb commit, except a group of
                    // deferred batches only.
                    Durability::Immediate => {
                        flush
                            || batch.iter().any(|r| {
                                matches!(
                                    r,
                                    Request::Apply {
                                        deferred: false,
                                        ..
                                    }
                                )
                            })
                    }
                    Durability::Eventual => {
                        flush
                            || self
                                .pending_since
                                .is_some_and(|s| s.elapsed() >= self.config.sync_interval())
                    }
                    Durability::None => flush,
                };
                self.commit(&mut batch, durable)
            };
            if let Err(e) = &result {
                failed.get_or_insert_with(|| e.clone());
            }
            for r in batch {
                let reply = match r {
                    Request::Apply { reply, .. } | Request::Flush { reply } => reply,
                };
                let _ = reply.send(result.clone());
            }
            if let Some(wal) = &self.wal {
                let result = if wal.full() {
                    // Switch log files once the other one is free (a durable checkpoint since
                    // the last switch holds its records) and no checkpoint runs, then
                    // checkpoint durably in the background what the full file holds. Until
                    // then the full file grows; at four times its size the writer waits.
                    let overfull = wal.overfull();
                    self.reap(overfull).and_then(|()| {
                        if self.in_flight.is_some() {
                            return Ok(());
                        }
                        let Some(wal) = self.wal.as_mut().filter(|w| w.can_switch()) else {
                            // No checkpoint since the switch holds the other file (the one
                            // started then could not be): one here frees both.
                            return self.checkpoint(true);
                        };
                        match wal.switch() {
                            Ok(()) => self.start_checkpoint(true),
                            Err(e) => {
                                let e = WriteError::Log {
                                    path: wal.path().to_path_buf(),
                                    source: Arc::new(e),
                                };
                                self.poisoned = Some(e.clone());
                                Err(e)
                            }
                        }
                    })
                } else if self.mem_bytes >= self.config.memtable_bytes {
                    // In the background, durably once the active log file is half full
                    // (which frees the other one early: the next switch need not wait).
                    let durable = wal.half_full();
                    self.reap(self.mem_bytes >= 2 * self.config.memtable_bytes)
                        .and_then(|()| match self.in_flight {
                            None => self.start_checkpoint(durable),
                            Some(_) => Ok(()),
                        })
                } else {
                    self.reap(false)
                };
                if let Err(e) = result {
                    failed.get_or_insert_with(|| e.clone());
                }
            }
        }
        // Shutdown: make everything durable, empty the log, then close.
        let mut result = if self.wal.is_some() {
            self.checkpoint(true)
        } else {
            self.commit(&mut Vec::new(), true)
        };
        if let (Ok(()), Some(wal)) = (&result, self.wal.as_mut()) {
            result = wal.truncate().map_err(|e| WriteError::Log {
                path: wal.path().to_path_buf(),
                source: Arc::new(e),
            });
        }
        if let Ok(mut s) = self.shared.view.write() {
            s.take();
        }
        let _ = self.reap(true);
        let closed = match Arc::try_unwrap(self.db) {
            Ok(db) => db.close().map_err(WriteError::storage),
            Err(_) => Err(WriteError::Closed),
        };
        if result.is_ok() {
            result = closed;
        }
        match failed {
            // Report the first failure at close too: the caller should know the store saw one.
            Some(e) if result.is_ok() => Err(e),
            _ => result,
        }
    }

    fn view(&self) -> Result<View, WriteError> {
        self.shared
            .view
            .read()
            .ok()
            .and_then(|v| v.clone())
            .ok_or(WriteError::Closed)
    }

    /// Publishes `view` to readers.
    fn publish(&self, view: Option<View>) {
        if let Ok(mut s) = self.shared.view.write() {
            *s = view;
        }
    }

    /// With a log: appends the group's ops as one record (`fdatasync`ed unless every batch of
    /// the group is deferred), applies them to the memtable, and checkpoints on a flush.
    fn commit_logged(&mut self, batch: &mut [Request]) -> Result<(), WriteError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        let flush = batch.iter().any(|r| matches!(r, Request::Flush { .. }));
        let sync = batch.iter().any(|r| {
            matches!(
                r,
                Request::Apply {
                    deferred: false,
                    ..
                }
            )
        });
        let ops: Vec<Op> = batch
            .iter_mut()
            .filter_map(|r| match r {
                Request::Apply { ops, .. } => Some(std::mem::take(ops)),
                Request::Flush { .. } => None,
            })
            .flatten()
            .collect();
        if !ops.is_empty() {
            let record = WalBatch {
                ops: ops.iter().map(WalOp::from_op).collect(),
            };
            let seq = self.seq + 1;
            let bytes = wal::encode_record(seq, &prost::Message::encode_to_vec(&record));
            let view = self.view()?;
            // The group's changes are computed while its record is being synced; readers see
            // them only once it is on disk.
            let memo = &self.memo;
            let changes = |ops| group_changes(&view, memo, ops);
            let changes = match self.wal.as_mut() {
                Some(wal) => {
                    let (mut logged, changes) = wal.append_while(&bytes, sync, || changes(ops));
                    if self.config.fail_log_record == Some(self.logged + 1) {
                        // Test hook (see `StoreConfig::fail_log_record`), once.
                        self.config.fail_log_record = None;
                        logged = logged.and(Err(std::io::Error::other("injected log failure")));
                    }
                    if let Err(e) = logged {
                        // The record may be on disk all the same (a failed `fdatasync` says
                        // nothing of the pages): were the writer to go on, a later record
                        // could take its sequence number in the other log file. Stop until a
                        // reopen replays the log.
                        let e = WriteError::Log {
                            path: wal.path().to_path_buf(),
                            source: Arc::new(e),
                        };
                        self.poisoned = Some(e.clone());
                        return Err(e);
                    }
                    changes
                }
                None => changes(ops),
            };
            self.seq = seq;
            self.logged += 1;
            if self.config.crash_after_log_records == Some(self.logged) {
                // Test hook: die between the log and the database, as a crash would.
                std::process::abort();
            }
            if let Err(e) = changes.and_then(|c| self.publish_changes(&view, c)) {
                // The log holds a group readers cannot see: stop until a reopen replays it.
                self.poisoned = Some(e.clone());
                return Err(e);
            }
        }
        if flush {
            self.checkpoint(true)?;
        }
        Ok(())
    }

    /// Inserts a group's changes (computed by [`group_changes`] over `view`) into the
    /// memtable atomically: the cache is invalidated before the memtable's lock is released
    /// (so no reader sees part of the group).
    fn publish_changes(
        &mut self,
        view: &View,
        changes: BTreeMap<String, Entry>,
    ) -> Result<(), WriteError> {
        if changes.is_empty() {
            return Ok(());
        }
        if changes
            .iter()
            .any(|(path, entry)| format::overwrites_content(path, entry))
        {
            // Before the change is visible: readers stop using the copies first.
            self.shared
                .content_overwritten
                .store(true, Ordering::SeqCst);
        }
        let mut map = view.mem.write();
        for (path, entry) in &changes {
            self.mem_bytes += memtable::weight(path, entry);
            self.memo.forget(path);
            map.insert(path.clone(), entry.clone());
        }
        // The generation first: a reader that read the memtable before this group and inserts
        // after an invalidation below is then refused (see entry_cache).
        self.generation += 1;
        self.shared.cache.set_generation(self.generation);
        self.shared
            .cache
            .invalidate_all(changes.keys().map(String::as_str));
        drop(map);
        Ok(())
    }

    /// Writes the whole memtable into redb in one transaction (durable or not) on this
    /// thread, after the checkpoint running in the background, if any; then publishes the new
    /// snapshot. A durable checkpoint lets the log start over.
    fn checkpoint(&mut self, durable: bool) -> Result<(), WriteError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        self.reap(true)?;
        let view = self.view()?;
        if view.mem.read().is_empty()
            && self.frozen_seq == self.seq
            && !(durable && self.pending_since.is_some())
        {
            if durable && let Some(wal) = &mut self.wal {
                wal.reset();
            }
            return Ok(());
        }
        let frozen = self.freeze()?;
        let result = write_checkpoint(
            &self.db,
            &self.shared,
            &frozen,
            self.seq,
            durable,
            Limits::of(&self.config),
            self.generation,
        );
        self.checkpointed(result, durable)?;
        if durable && let Some(wal) = &mut self.wal {
            // Every record of the log is durable in redb now.
            wal.reset();
        }
        Ok(())
    }

    /// Moves the memtable aside (readers keep reading it, as the frozen memtable, until the
    /// checkpoint publishes the snapshot holding it) and starts an empty one.
    fn freeze(&mut self) -> Result<Arc<Memtable>, WriteError> {
        let mut guard = self.shared.view.write().map_err(|_| WriteError::Closed)?;
        let view = guard.as_mut().ok_or(WriteError::Closed)?;
        debug_assert!(view.frozen.is_none(), "one checkpoint at a time");
        let frozen = std::mem::take(&mut view.mem);
        view.frozen = Some(frozen.clone());
        self.mem_bytes = 0;
        self.frozen_seq = self.seq;
        Ok(frozen)
    }

    /// Starts a checkpoint of the memtable on its own thread: the writer goes on logging and
    /// answering groups meanwhile (the log keeps every record until a durable checkpoint made
    /// by [`Self::checkpoint`] holds it).
    fn start_checkpoint(&mut self, durable: bool) -> Result<(), WriteError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        let frozen = self.freeze()?;
        let (db, shared) = (self.db.clone(), self.shared.clone());
        let (seq, limits, generation) = (self.seq, Limits::of(&self.config), self.generation);
        let spawned = std::thread::Builder::new()
            .name("ao-store-checkpoint".into())
            .spawn(move || {
                write_checkpoint(&db, &shared, &frozen, seq, durable, limits, generation)
            });
        match spawned {
            Ok(handle) => {
                self.in_flight = Some((handle, durable));
                Ok(())
            }
            Err(_) => {
                // No thread to spare: checkpoint here.
                let frozen = self.view()?.frozen.ok_or(WriteError::Closed)?;
                let result = write_checkpoint(
                    &self.db,
                    &self.shared,
                    &frozen,
                    seq,
                    durable,
                    limits,
                    generation,
                );
                self.checkpointed(result, durable)
            }
        }
    }

    /// Collects the background checkpoint once it has finished (with `wait`, waits for it).
    fn reap(&mut self, wait: bool) -> Result<(), WriteError> {
        let finished = self
            .in_flight
            .as_ref()
            .is_some_and(|(h, _)| wait || h.is_finished());
        if !finished {
            return Ok(());
        }
        let Some((handle, durable)) = self.in_flight.take() else {
            return Ok(());
        };
        let result = handle.join().unwrap_or_else(|payload| {
            Err(WriteError::Corrupt {
                key: String::new(),
                reason: format!(
                    "the checkpoint panicked: {}",
                    panic_message(payload.as_ref())
                ),
            })
        });
        self.checkpointed(result, durable)
    }

    /// Books a finished checkpoint: a failure stops the writer (the log holds what redb may
    /// lack: a reopen replays it).
    fn checkpointed(
        &mut self,
        result: Result<(), WriteError>,
        durable: bool,
    ) -> Result<(), WriteError> {
        match result {
            Ok(()) => {
                if durable {
                    self.pending_since = None;
                    // Checkpoints run one at a time and a switch waits for none to run, so
                    // this one started after the last switch: it holds the other file.
                    if let Some(wal) = &mut self.wal {
                        wal.checkpointed();
                    }
                } else {
                    self.pending_since.get_or_insert_with(Instant::now);
                }
                Ok(())
            }
            Err(e) => {
                self.poisoned = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Without a log: commits the ops of every request in one transaction, publishes the new
    /// snapshot and invalidates the cache. Requests' ops are taken.
    fn commit(&mut self, batch: &mut [Request], durable: bool) -> Result<(), WriteError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        let txn = begin_write(&self.db, durable)?;
        // The entries the group produces over the published snapshot (which is what the
        // database holds: this thread publishes every commit), then one transaction.
        let changes = {
            let view = self.view()?;
            let empty = MemMap::new();
            let mut w = MemWriter::new(&empty, None, &view.snap, &self.memo);
            for r in batch.iter_mut() {
                if let Request::Apply { ops, .. } = r {
                    for op in std::mem::take(ops) {
                        w.apply(op)?;
                    }
                }
            }
            w.into_changes()
        };
        let mut filters = self.view()?.snap.filters.clone();
        match TxnWriter::open(&txn, self.config.blob_threshold)
            .map(|w| w.with_filters(filters.clone()))
            .and_then(|mut w| w.write_entries(&changes))
            .and_then(|overwritten| {
                if let Some(fresh) = merge_recent(&txn, self.config.recent_keys, &filters)? {
                    filters = fresh;
                }
                Ok(overwritten)
            }) {
            // Before the snapshot holding the change is published.
            Ok(true) => self
                .shared
                .content_overwritten
                .store(true, Ordering::SeqCst),
            Ok(false) => {}
            Err(e) => {
                let _ = txn.abort();
                return Err(e);
            }
        }
        let touched: Vec<String> = changes.into_keys().collect();
        if touched.is_empty() && !(durable && self.pending_since.is_some()) {
            // Nothing changed and nothing waits for an fsync: no commit needed.
            let _ = txn.abort();
            return Ok(());
        }
        txn.commit().map_err(WriteError::storage)?;
        if durable {
            self.pending_since = None;
        } else {
            self.pending_since.get_or_insert_with(Instant::now);
        }
        if touched.is_empty() {
            return Ok(());
        }
        // Publish, then invalidate (see entry_cache's coherence argument).
        self.generation += 1;
        let snap = self
            .db
            .begin_read()
            .map_err(ReadError::from_redb)
            .and_then(|txn| Snapshot::new(txn, self.generation))
            .map(|snap| snap.with_filters(filters));
        let snap = match snap {
            Ok(s) => s,
            Err(e) => {
                // Committed but unreadable: stop serving stale reads.
                self.publish(None);
                return Err(e.into());
            }
        };
        self.publish(Some(View::new(snap)));
        self.shared.cache.set_generation(self.generation);
        for path in &touched {
            self.memo.forget(path);
            self.shared.cache.invalidate(path);
        }
        Ok(())
    }
}

/// The entries a group's ops produce over `view`'s memtables and snapshot (see
/// [`MemWriter`]), on the writer thread.
fn group_changes(
    view: &View,
    memo: &WriterMemo,
    ops: Vec<Op>,
) -> Result<BTreeMap<String, Entry>, WriteError> {
    let base = view.mem.read();
    let frozen = view.frozen.as_ref().map(|f| f.read());
    let mut w = MemWriter::new(&base, frozen.as_deref(), &view.snap, memo);
    for op in ops {
        w.apply(op)?;
    }
    Ok(w.into_changes())
}

/// A write transaction, fsynced on commit when `durable`.
fn begin_write(db: &Database, durable: bool) -> Result<redb::WriteTransaction, WriteError> {
    let mut txn = db.begin_write().map_err(WriteError::storage)?;
    txn.set_durability(if durable {
        redb::Durability::Immediate
    } else {
        redb::Durability::None
    })
    .map_err(WriteError::storage)?;
    Ok(txn)
}

/// What a checkpoint needs of the configuration.
#[derive(Debug, Clone, Copy)]
struct Limits {
    blob_threshold: u64,
    recent_keys: u64,
}

impl Limits {
    fn of(config: &StoreConfig) -> Self {
        Self {
            blob_threshold: config.blob_threshold,
            recent_keys: config.recent_keys,
        }
    }
}

/// Merges the `recent` table into the main one, in the transaction `txn`, once it holds at
/// least `recent_keys` keys and a quarter as many as the main table: each record replaces the
/// main table's record under its key (blob reference counts already count the records as they
/// are read, `recent` superseding), and `recent` starts over empty. The filter of the main
/// table (`filters.main`, given the merged keys) is stored with it (see [`main_filter`]).
/// Returns the filters of the tables after the merge, when it merged.
fn merge_recent(
    txn: &redb::WriteTransaction,
    recent_keys: u64,
    filters: &Filters,
) -> Result<Option<Filters>, WriteError> {
    use redb::ReadableTableMetadata;
    let planned = {
        let recent = txn.open_table(RECENT).map_err(WriteError::storage)?;
        let mut main = txn.open_table(ENTRIES).map_err(WriteError::storage)?;
        let n = recent.len().map_err(WriteError::storage)?;
        if n == 0 || n < recent_keys || n < main.len().map_err(WriteError::storage)? / 4 {
            return Ok(None);
        }
        for item in recent.iter().map_err(WriteError::storage)? {
            let (k, v) = item.map_err(WriteError::storage)?;
            main.insert(k.value(), v.value())
                .map_err(WriteError::storage)?;
            // Readers of the snapshot before the merge share this filter: a key added early
            // is at worst a false positive for them.
            if let Some(f) = &filters.main {
                f.insert(k.value());
            }
        }
        filter_capacity(&main, recent_keys).map_err(WriteError::storage)?
    };
    let main = main_filter::store_after_merge(txn, filters.main.clone())?;
    txn.delete_table(RECENT).map_err(WriteError::storage)?;
    txn.open_table(RECENT).map_err(WriteError::storage)?;
    Ok(Some(Filters {
        recent: Some(Arc::new(KeyFilter::with_capacity(
            planned,
            filter::RECENT_BITS_PER_KEY,
        ))),
        main: Some(main),
    }))
}

/// The keys to plan the filter of `recent` for, given the main table: the size at which it is
/// merged, and half as many again (the checkpoint that merges it adds a memtable's worth), at
/// most 3M (a larger `recent` is merely filtered less well).
fn filter_capacity(
    main: &impl redb::ReadableTableMetadata,
    recent_keys: u64,
) -> Result<u64, redb::StorageError> {
    let merged_at = recent_keys.max(main.len()? / 4).min(2 << 20);
    Ok(merged_at + merged_at / 2)
}

/// A checkpoint: writes the frozen memtable (every log record up to `seq`) into redb in one
/// transaction, durable or not, then publishes the snapshot holding it in place of the frozen
/// memtable. The entries readers see are the same before and after: the cache stays valid.
fn write_checkpoint(
    db: &Database,
    shared: &Shared,
    frozen: &Arc<Memtable>,
    seq: u64,
    durable: bool,
    limits: Limits,
    generation: u64,
) -> Result<(), WriteError> {
    let txn = begin_write(db, durable)?;
    let mut filters = shared
        .view
        .read()
        .map_err(|_| WriteError::Closed)?
        .as_ref()
        .ok_or(WriteError::Closed)?
        .snap
        .filters
        .clone();
    let written = (|| {
        TxnWriter::open(&txn, limits.blob_threshold)?
            .with_filters(filters.clone())
            .write_entries(frozen.read().entries())?;
        if let Some(fresh) = merge_recent(&txn, limits.recent_keys, &filters)? {
            filters = fresh;
        }
        let mut meta = txn.open_table(META).map_err(WriteError::storage)?;
        meta.insert(META_WAL_APPLIED, &format::encode_seq(seq)[..])
            .map_err(WriteError::storage)?;
        Ok::<(), WriteError>(())
    })();
    if let Err(e) = written {
        let _ = txn.abort();
        return Err(e);
    }
    txn.commit().map_err(WriteError::storage)?;
    let snap = db
        .begin_read()
        .map_err(ReadError::from_redb)
        .and_then(|txn| Snapshot::new(txn, generation))
        .map(|snap| snap.with_filters(filters));
    let mut guard = shared.view.write().map_err(|_| WriteError::Closed)?;
    match (snap, guard.as_mut()) {
        (Ok(snap), Some(view)) => {
            if view.frozen.as_ref().is_some_and(|f| Arc::ptr_eq(f, frozen)) {
                view.snap = Arc::new(snap);
                view.frozen = None;
            }
            Ok(())
        }
        (Ok(_), None) => Err(WriteError::Closed),
        (Err(e), _) => {
            // Committed but unreadable: stop serving reads.
            *guard = None;
            Err(e.into())
        }
    }
}

/// Computes the entries a group's ops produce over the memtable and the snapshot, with the
/// semantics of [`ao_core::store::apply_to_map`]; entries equal to what is already there are
/// left out.
struct MemWriter<'a> {
    base: &'a MemMap,
    /// The memtable a background checkpoint is writing into redb (under `base`).
    frozen: Option<&'a MemMap>,
    snap: &'a Snapshot,
    memo: &'a WriterMemo,
    /// Paths the snapshot was found not to hold.
    absent: std::cell::RefCell<HashSet<String, foldhash::fast::RandomState>>,
    /// The group's changes so far.
    pending: BTreeMap<String, Entry>,
}

impl<'a> MemWriter<'a> {
    fn new(
        base: &'a MemMap,
        frozen: Option<&'a MemMap>,
        snap: &'a Snapshot,
        memo: &'a WriterMemo,
    ) -> Self {
        Self {
            base,
            frozen,
            snap,
            memo,
            absent: Default::default(),
            pending: BTreeMap::new(),
        }
    }

    fn current(&self, path: &str) -> Result<Option<Entry>, WriteError> {
        if let Some(e) = self
            .pending
            .get(path)
            .or_else(|| memtable::get_in(self.base, self.frozen, path))
        {
            return Ok(Some(e.clone()));
        }
        if let Some(e) = self.memo.known.borrow().get(path) {
            return Ok(Some(e.clone()));
        }
        // Below a path the snapshot does not hold, it holds nothing (a key implies its
        // ancestors, and packed records only hold paths below their own key).
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            if self.absent.borrow().contains(&path[..end + i]) {
                return Ok(None);
            }
            end += i + 1;
        }
        let e = guard_read(path, || self.lookup(path))?;
        match &e {
            // Only what exists is remembered (shared binaries such as `data/…` are looked up
            // again and again); absent paths are about to be written.
            Some(e) => {
                let mut known = self.memo.known.borrow_mut();
                if known.len() >= WriterMemo::KNOWN {
                    known.clear();
                }
                known.insert(path.to_owned(), e.clone());
            }
            None => {
                self.absent.borrow_mut().insert(path.to_owned());
            }
        }
        Ok(e)
    }

    /// The snapshot's entry at `path`; below a top-level key known to hold an unpacked record,
    /// one lookup of the path's own key.
    fn lookup(&self, path: &str) -> Result<Option<Entry>, ReadError> {
        let Some((top, _)) = path.split_once('/') else {
            return self.snap.get_entry(path);
        };
        if !self.memo.plain_tops.borrow().contains(top) {
            if !self.snap.holds_plain_record(top)? {
                return self.snap.get_entry(path);
            }
            let mut tops = self.memo.plain_tops.borrow_mut();
            if tops.len() >= WriterMemo::TOPS {
                tops.clear();
            }
            tops.insert(top.to_owned());
        }
        self.snap.get_own_entry(path)
    }

    fn set(&mut self, path: &str, entry: Entry) -> Result<(), WriteError> {
        if self.current(path)?.as_ref() == Some(&entry) {
            return Ok(());
        }
        self.pending.insert(path.to_owned(), entry);
        Ok(())
    }

    /// [`Self::set`] for a written binary: the path holds it afterwards whatever it held
    /// before, so the snapshot is not asked. An equal entry the memtables or the memo hold is
    /// left alone; an equal one only the snapshot holds is written again (a checkpoint
    /// rewrites the record; a lookup would cost every write, most of which are of new
    /// content-addressed values).
    fn set_written(&mut self, path: &str, entry: Entry) {
        let held = self
            .pending
            .get(path)
            .or_else(|| memtable::get_in(self.base, self.frozen, path))
            .cloned()
            .or_else(|| self.memo.known.borrow().get(path).cloned());
        if held.as_ref() != Some(&entry) {
            self.pending.insert(path.to_owned(), entry);
        }
    }

    fn ensure_parents(&mut self, path: &str) -> Result<(), WriteError> {
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            let parent = &path[..end + i];
            match self.current(parent)? {
                Some(Entry::Group | Entry::Link(_)) => {}
                _ => self.set(parent, Entry::Group)?,
            }
            end += i + 1;
        }
        Ok(())
    }

    fn apply(&mut self, op: Op) -> Result<(), WriteError> {
        match op {
            Op::Write { path, value } => {
                let path = normalize_path(path);
                if path.is_empty() {
                    return Err(WriteError::Invalid("write to an empty path".into()));
                }
                self.ensure_parents(&path)?;
                self.set_written(&path, Entry::Binary(value));
                Ok(())
            }
            Op::MakeGroup { path } => {
                let path = normalize_path(path);
                if path.is_empty() {
                    return Ok(());
                }
                self.ensure_parents(&path)?;
                self.set(&path, Entry::Group)
            }
            Op::MakeLink { existing, new } => {
                let (existing, new) = (normalize_path(existing), normalize_path(new));
                if existing == new || new.is_empty() {
                    return Ok(());
                }
                self.ensure_parents(&new)?;
                self.set(&new, Entry::Link(existing))
            }
        }
    }

    fn into_changes(self) -> BTreeMap<String, Entry> {
        self.pending
    }
}

impl Request {
    fn len(&self) -> usize {
        match self {
            Self::Apply { ops, .. } => ops.len(),
            Self::Flush { .. } => 0,
        }
    }
}

impl ReadError {
    fn from_redb(e: impl Into<redb::Error>) -> Self {
        Self::Storage(e.into())
    }
}

type WTable<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;

/// Whether `bytes` may be stored as a copy of the content-addressed `target`: small enough,
/// and `target` is their data path.
fn is_copy_of(bytes: &Bytes, target: &str) -> bool {
    bytes.len() <= format::CONTENT_COPY_LIMIT && ao_core::cache::data_path(bytes) == target
}

/// The largest packed record: a new top-level group whose subtree encodes larger is stored one
/// key per entry.
pub(crate) const PACK_LIMIT: usize = 16 << 10;

/// Writes the entries a [`MemWriter`] computed into one write transaction. A new top-level
/// group is stored with its whole subtree as one packed record (a message written by
/// `ao_core::cache` becomes one key); a packed record is unpacked into one key per entry
/// before anything is written at or under its key. Blob reference counts are kept right.
struct TxnWriter<'t> {
    /// The main table: read, never written (see [`merge_recent`]).
    entries: WTable<'t>,
    /// Where every record is written.
    recent: WTable<'t>,
    /// The filters of the tables' keys; `recent`'s is given each key written there.
    filters: Filters,
    blobs: WTable<'t>,
    refs: WTable<'t>,
    meta: WTable<'t>,
    threshold: u64,
    /// Whether `data` is a group, once looked up (see [`Self::content_copy`]).
    data_is_group: Option<bool>,
    /// The copies [`Self::content_copy`] found in the database, by target path: the values
    /// many messages share (`data/<hash of "Message">`…) are looked up once per transaction.
    copies: HashMap<String, Option<Bytes>, foldhash::fast::RandomState>,
}

impl<'t> TxnWriter<'t> {
    fn open(txn: &'t redb::WriteTransaction, threshold: u64) -> Result<Self, WriteError> {
        Ok(Self {
            entries: txn.open_table(ENTRIES).map_err(WriteError::storage)?,
            recent: txn.open_table(RECENT).map_err(WriteError::storage)?,
            filters: Filters::default(),
            blobs: txn.open_table(BLOBS).map_err(WriteError::storage)?,
            refs: txn.open_table(BLOB_REFS).map_err(WriteError::storage)?,
            meta: txn.open_table(META).map_err(WriteError::storage)?,
            threshold,
            data_is_group: None,
            copies: HashMap::default(),
        })
    }

    /// This writer, skipping lookups of the keys `filters` rule out, and adding every key it
    /// writes to `filters.recent`.
    fn with_filters(mut self, filters: Filters) -> Self {
        self.filters = filters;
        self
    }

    /// Writes a record into `recent` (its key into the filter first), returning the record
    /// `recent` held there.
    fn insert_recent(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, WriteError> {
        if let Some(f) = &self.filters.recent {
            f.insert(key);
        }
        Ok(self
            .recent
            .insert(key, value)
            .map_err(WriteError::storage)?
            .map(|g| g.value().to_vec()))
    }

    /// Stores `changes` (path → the entry it now holds; the ancestors a write creates are
    /// entries of their own).
    ///
    /// Returns whether a change gave a content-addressed path other contents
    /// ([`format::overwrites_content`]); `meta/content-overwritten` is then set too.
    fn write_entries<K: ChangeKey>(
        &mut self,
        changes: &BTreeMap<K, Entry>,
    ) -> Result<bool, WriteError> {
        // What this call writes is no longer what an earlier call of the transaction found.
        if !self.copies.is_empty() {
            for path in changes.keys() {
                self.copies.remove(path.borrow());
            }
        }
        if changes.contains_key("data") {
            self.data_is_group = None;
        }
        let overwritten = changes
            .iter()
            .any(|(path, entry)| format::overwrites_content(path.borrow(), entry));
        if overwritten {
            self.meta
                .insert(META_CONTENT_OVERWRITTEN, &[1u8][..])
                .map_err(WriteError::storage)?;
        }
        // Top-level keys packed by this call, and those known to hold no packed record.
        let mut packed: HashSet<&str, foldhash::fast::RandomState> = HashSet::default();
        let mut plain: HashSet<&str, foldhash::fast::RandomState> = HashSet::default();
        for (path, entry) in changes {
            let path: &str = path.borrow();
            let top = path.split('/').next().unwrap_or(path);
            if packed.contains(top) {
                continue;
            }
            if !plain.contains(top) {
                // A group new at `top` is stored packed with its subtree. Most such groups are
                // new messages, so (once the main table is found not to hold the key) the
                // packed record is inserted first, and the key's previous record, if it had
                // one after all, put back (one descent of the tree instead of a lookup and an
                // insert).
                let existing = if path == top
                    && *entry == Entry::Group
                    && !self.in_main(top)?
                    && let Some((encoded, blobs)) = self.packed_record(top, changes)?
                {
                    let old = self.insert_recent(top.as_bytes(), &encoded)?;
                    match old {
                        // A new group: nothing exists below it yet (keys are never removed,
                        // and a key below another implies that one), so its subtree is in
                        // `changes`.
                        None => {
                            for (hash, bytes) in blobs {
                                self.incref(&hash, bytes)?;
                            }
                            packed.insert(top);
                            continue;
                        }
                        Some(old) => {
                            self.insert_recent(top.as_bytes(), &old)?;
                            Some(Record::decode_at(top, &old)?)
                        }
                    }
                } else {
                    self.record(top)?
                };
                if let Some(rec) = existing
                    && rec.as_packed().is_some()
                {
                    self.unpack(top, &rec)?;
                }
                plain.insert(top);
            }
            self.put_entry(path, entry)?;
        }
        Ok(overwritten)
    }

    /// The bytes a packed link to `target` may carry a copy of ([`format::Kind::Content`]):
    /// those `target` holds, if it is a content-addressed path (`data` a group, `target` the
    /// data path of the small binary it holds) once `changes` are written.
    fn content_copy<K: ChangeKey>(
        &mut self,
        target: &str,
        changes: &BTreeMap<K, Entry>,
    ) -> Result<Option<Bytes>, WriteError> {
        if !target.starts_with("data/") {
            return Ok(None);
        }
        let bytes = match K::find(changes, target) {
            Some(Entry::Binary(b)) if is_copy_of(b, target) => b.clone(),
            Some(_) => return Ok(None),
            None => match self.copies.get(target) {
                Some(found) => match found {
                    Some(b) => b.clone(),
                    None => return Ok(None),
                },
                None => {
                    let found = match self.record(target)?.and_then(|r| r.kind) {
                        Some(format::Kind::Inline(b)) if is_copy_of(&b, target) => Some(b),
                        _ => None,
                    };
                    self.copies.insert(target.to_owned(), found.clone());
                    match found {
                        Some(b) => b,
                        None => return Ok(None),
                    }
                }
            },
        };
        let data_is_group = match self.data_is_group {
            Some(g) => g,
            None => {
                let g = match K::find(changes, "data") {
                    Some(e) => *e == Entry::Group,
                    None => matches!(
                        self.record("data")?.and_then(|r| r.kind),
                        Some(format::Kind::Group(_) | format::Kind::Packed(_))
                    ),
                };
                self.data_is_group = Some(g);
                g
            }
        };
        Ok(data_is_group.then_some(bytes))
    }

    /// The record and, for a blob, the bytes to store under its hash.
    fn record_for<'e>(&self, entry: &'e Entry) -> (Record, Option<&'e Bytes>) {
        match entry {
            Entry::Binary(value) if value.len() as u64 >= self.threshold.max(1) => {
                let hash = *blake3::hash(value).as_bytes();
                (Record::blob(hash, value.len() as u64), Some(value))
            }
            Entry::Binary(value) => (Record::inline(value.clone()), None),
            Entry::Link(target) => (Record::link(target.clone()), None),
            Entry::Group => (Record::group(), None),
        }
    }

    /// The packed record of the new top-level group `top` and its subtree from `changes`, and
    /// the blobs it references, unless it would exceed [`PACK_LIMIT`].
    #[expect(clippy::type_complexity, reason = "a private helper's pair")]
    fn packed_record<'c, K: ChangeKey>(
        &mut self,
        top: &str,
        changes: &'c BTreeMap<K, Entry>,
    ) -> Result<Option<(Vec<u8>, Vec<([u8; HASH_LEN], &'c Bytes)>)>, WriteError> {
        use std::ops::Bound;
        let (prefix, end) = (format!("{top}/"), format!("{top}0"));
        let mut subtree = Vec::new();
        let mut blobs = Vec::new();
        let mut size = 0;
        for (path, entry) in changes.range::<str, _>((
            Bound::Included(prefix.as_str()),
            Bound::Excluded(end.as_str()),
        )) {
            let path: &str = path.borrow();
            let rel = &path[prefix.len()..];
            let (rec, blob) = match entry {
                Entry::Link(target) => match self.content_copy(target, changes)? {
                    Some(bytes) => (Record::content(bytes), None),
                    None => self.record_for(entry),
                },
                _ => self.record_for(entry),
            };
            size += rel.len() + prost::Message::encoded_len(&rec);
            if size > PACK_LIMIT {
                return Ok(None);
            }
            if let (Some(hash), Some(bytes)) = (rec.blob_hash(), blob) {
                blobs.push((hash, bytes));
            }
            subtree.push((rel.to_owned(), rec));
        }
        let encoded = Record::packed(subtree).encode();
        if encoded.len() > PACK_LIMIT {
            return Ok(None);
        }
        Ok(Some((encoded, blobs)))
    }

    /// Replaces the packed record at `top` by a group record and one key per entry (the same
    /// records, a content copy becoming its plain link: blob reference counts do not change).
    fn unpack(&mut self, top: &str, rec: &Record) -> Result<(), WriteError> {
        let Some(p) = rec.as_packed() else {
            return Ok(());
        };
        self.insert_recent(top.as_bytes(), &Record::group().encode())?;
        for (rel, r) in p.iter() {
            let key = format!("{top}/{rel}");
            // A copy lives only in packed records: under its own key it is the plain link.
            let encoded = match &r.kind {
                Some(format::Kind::Content(b)) => {
                    Record::link(ao_core::cache::data_path(b)).encode()
                }
                _ => r.encode(),
            };
            self.insert_recent(key.as_bytes(), &encoded)?;
        }
        Ok(())
    }

    fn put_entry(&mut self, path: &str, entry: &Entry) -> Result<(), WriteError> {
        let (rec, blob) = self.record_for(entry);
        self.put(path, rec, blob)
    }

    /// The record stored at `path`: in `recent`, else in the main table.
    fn record(&self, path: &str) -> Result<Option<Record>, WriteError> {
        let key = path.as_bytes();
        if self
            .filters
            .recent
            .as_ref()
            .is_none_or(|f| f.may_contain(key))
            && let Some(g) = self.recent.get(key).map_err(WriteError::storage)?
        {
            return Ok(Some(Record::decode_at(path, g.value())?));
        }
        match self.main_raw(path)? {
            Some(v) => Ok(Some(Record::decode_at(path, &v)?)),
            None => Ok(None),
        }
    }

    /// The record the main table holds at `path` (a key its filter rules out is not looked
    /// up).
    fn main_get(
        &self,
        path: &str,
    ) -> Result<Option<redb::AccessGuard<'_, &'static [u8]>>, WriteError> {
        if !self.filters.may_be_in_main(path.as_bytes()) {
            return Ok(None);
        }
        self.entries
            .get(path.as_bytes())
            .map_err(WriteError::storage)
    }

    /// The raw record the main table holds at `path`.
    fn main_raw(&self, path: &str) -> Result<Option<Vec<u8>>, WriteError> {
        Ok(self.main_get(path)?.map(|g| g.value().to_vec()))
    }

    /// Whether the main table holds a record at `path`.
    fn in_main(&self, path: &str) -> Result<bool, WriteError> {
        Ok(self.main_get(path)?.is_some())
    }

    /// Stores a (non-packed) record, keeping blob reference counts right: the new record's
    /// blob gains a reference before the replaced record's loses one.
    fn put(&mut self, path: &str, rec: Record, blob: Option<&Bytes>) -> Result<(), WriteError> {
        let encoded = rec.encode();
        if let (Some(hash), Some(bytes)) = (rec.blob_hash(), blob) {
            self.incref(&hash, bytes)?;
        }
        let old = match self.insert_recent(path.as_bytes(), &encoded)? {
            Some(old) => Some(old),
            None => self.main_raw(path)?,
        };
        if let Some(old) = &old
            && let Some(hash) = Record::decode_at(path, old)?.blob_hash()
        {
            self.decref(&hash)?;
        }
        Ok(())
    }

    fn count(&self, hash: &[u8; HASH_LEN]) -> Result<u64, WriteError> {
        match self.refs.get(&hash[..]).map_err(WriteError::storage)? {
            None => Ok(0),
            Some(g) => format::decode_count(g.value()).ok_or_else(|| WriteError::Corrupt {
                key: format::hex(hash),
                reason: "malformed blob reference count".into(),
            }),
        }
    }

    fn incref(&mut self, hash: &[u8; HASH_LEN], bytes: &Bytes) -> Result<(), WriteError> {
        let n = self.count(hash)?;
        if n == 0 {
            self.blobs
                .insert(&hash[..], bytes.as_ref())
                .map_err(WriteError::storage)?;
        }
        self.refs
            .insert(&hash[..], &format::encode_count(n + 1)[..])
            .map_err(WriteError::storage)?;
        Ok(())
    }

    fn decref(&mut self, hash: &[u8; HASH_LEN]) -> Result<(), WriteError> {
        match self.count(hash)? {
            0 => Err(WriteError::Corrupt {
                key: format::hex(hash),
                reason: "a record references a blob with no reference count".into(),
            }),
            1 => {
                self.refs.remove(&hash[..]).map_err(WriteError::storage)?;
                self.blobs.remove(&hash[..]).map_err(WriteError::storage)?;
                Ok(())
            }
            n => {
                self.refs
                    .insert(&hash[..], &format::encode_count(n - 1)[..])
                    .map_err(WriteError::storage)?;
                Ok(())
            }
        }
    }
}
