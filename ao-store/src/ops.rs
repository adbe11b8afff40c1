//! Operator commands as library functions: [`stats`], [`get`], [`check`], [`compact`].
//!
//! Each takes the store's configuration (only `path` and the cache sizes matter), opens the
//! store itself, and never changes its contents: `stats`, `get` and `check` do not write to the
//! file at all, `compact` only rewrites its free space.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use ao_core::Value;
use ao_core::store::Entry;
use redb::ReadableTable;

use crate::StoreConfig;
use crate::backend::ScratchBackend;
use crate::error::{CompactError, Error, OpenError, ReadError};
use crate::format::{self, BLOB_REFS, HASH_LEN, Kind, META, META_FORMAT_VERSION, Record};
use crate::store::{RedbStore, Snapshot};

/// Counts and sizes of a store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The store file.
    pub path: PathBuf,
    /// Size of the file.
    pub file_bytes: u64,
    /// Size of the write-ahead log's files (`<file>.wal`, `<file>.wal.1`; 0 if there are none).
    pub log_bytes: u64,
    /// The format version in the file.
    pub format_version: u32,
    /// Entries (paths) of the store: its records (of the `entries` and `recent` tables, a key
    /// of both counted once) and the entries inside packed records.
    pub entries: u64,
    /// Records (keys) of the `entries` and `recent` tables, a key of both counted once.
    pub records: u64,
    /// Packed records (groups stored with their subtree in one record, each counted once
    /// more under `groups`).
    pub packed: u64,
    /// Binaries stored inline in their record.
    pub inline_binaries: u64,
    /// Bytes of inline binaries.
    pub inline_bytes: u64,
    /// Binaries stored in the blob table.
    pub blob_binaries: u64,
    /// Groups.
    pub groups: u64,
    /// Links.
    pub links: u64,
    /// Links inside packed records that carry a copy of their content-addressed target's
    /// bytes (format 4; each counted once more under `links`).
    pub content_copies: u64,
    /// Distinct blobs.
    pub blobs: u64,
    /// Bytes of distinct blobs.
    pub blob_bytes: u64,
    /// Bytes of all paths (the keys of the records).
    pub key_bytes: u64,
    /// Bytes of all records (as read: `recent`'s where both tables hold a key).
    pub record_bytes: u64,
    /// Bytes of the filter of the main table's keys in use (0: none; the next merge builds
    /// it).
    pub main_filter_bytes: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "store:           {}", self.path.display())?;
        writeln!(f, "file size:       {} bytes", self.file_bytes)?;
        writeln!(f, "log size:        {} bytes", self.log_bytes)?;
        writeln!(f, "format version:  {}", self.format_version)?;
        writeln!(
            f,
            "entries:         {} in {} records ({} packed)",
            self.entries, self.records, self.packed
        )?;
        writeln!(
            f,
            "  binaries:      {} inline ({} bytes), {} in blobs",
            self.inline_binaries, self.inline_bytes, self.blob_binaries
        )?;
        writeln!(f, "  groups:        {}", self.groups)?;
        writeln!(
            f,
            "  links:         {} ({} with a copy of their target)",
            self.links, self.content_copies
        )?;
        writeln!(
            f,
            "blobs:           {} ({} bytes)",
            self.blobs, self.blob_bytes
        )?;
        writeln!(
            f,
            "keys / records:  {} / {} bytes",
            self.key_bytes, self.record_bytes
        )?;
        match self.main_filter_bytes {
            0 => write!(f, "main filter:     none (built at the next merge)"),
            n => write!(f, "main filter:     {n} bytes"),
        }
    }
}

impl Stats {
    fn count(&mut self, rec: &Record) {
        self.entries += 1;
        match &rec.kind {
            Some(Kind::Inline(b)) => {
                self.inline_binaries += 1;
                self.inline_bytes += b.len() as u64;
            }
            Some(Kind::Blob(_)) => self.blob_binaries += 1,
            Some(Kind::Link(_)) => self.links += 1,
            Some(Kind::Content(_)) => {
                self.links += 1;
                self.content_copies += 1;
            }
            Some(Kind::Group(_) | Kind::Packed(_)) => self.groups += 1,
            None => {}
        }
    }
}

impl RedbStore {
    /// Writes the memtable into redb (a flush) before a scan of the database, so that the
    /// scan sees every acknowledged write. A store that cannot flush (read-only, closed,
    /// failed) is scanned as it is.
    fn checkpoint_for_scan(&self) {
        if !self.is_read_only() {
            let _ = self.flush();
        }
    }

    /// Counts and sizes of the committed store (a full scan).
    pub fn stats(&self) -> Result<Stats, ReadError> {
        crate::store::guard_read("", || self.stats_unguarded())
    }

    fn stats_unguarded(&self) -> Result<Stats, ReadError> {
        self.checkpoint_for_scan();
        let snap = self.snapshot()?;
        let mut s = Stats {
            path: self.path().to_path_buf(),
            file_bytes: std::fs::metadata(self.path()).map_or(0, |m| m.len()),
            log_bytes: crate::wal::wal_paths(self.path())
                .iter()
                .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
                .sum(),
            format_version: read_version(&snap)?,
            main_filter_bytes: snap
                .filters
                .main
                .as_ref()
                .map_or(0, |f| f.len_words() as u64 * 8),
            ..Stats::default()
        };
        snap.for_each_record(|k, v| {
            let key = format::key_str(k)?;
            s.records += 1;
            s.key_bytes += k.len() as u64;
            s.record_bytes += v.len() as u64;
            let rec = Record::decode_at(key, v)?;
            s.count(&rec);
            if let Some(p) = rec.as_packed() {
                s.packed += 1;
                for (_, r) in p.iter() {
                    s.count(r);
                }
            }
            Ok(())
        })?;
        for item in snap.blobs.iter().map_err(redb::Error::from)? {
            let (_, v) = item.map_err(redb::Error::from)?;
            s.blobs += 1;
            s.blob_bytes += v.value().len() as u64;
        }
        Ok(s)
    }

    /// Checks the logical consistency of the committed store (a full scan): records decode,
    /// keys are normalised paths whose parents exist, blobs match their hashes and their
    /// reference counts. Returns the problems found (empty: consistent).
    pub fn check_records(&self) -> Result<CheckReport, ReadError> {
        crate::store::guard_read("", || self.check_unguarded())
    }

    fn check_unguarded(&self) -> Result<CheckReport, ReadError> {
        self.checkpoint_for_scan();
        let snap = self.snapshot()?;
        let mut report = CheckReport {
            path: self.path().to_path_buf(),
            ..CheckReport::default()
        };
        let mut refs: HashMap<[u8; HASH_LEN], u64> = HashMap::new();
        let mut prev: Option<Vec<u8>> = None;
        snap.for_each_record(|raw, value| {
            report.entries += 1;
            let Ok(key) = std::str::from_utf8(raw) else {
                report.problem(format!(
                    "key {:?} is not UTF-8",
                    String::from_utf8_lossy(raw)
                ));
                return Ok(());
            };
            if key.is_empty() || key.split('/').any(str::is_empty) {
                report.problem(format!("key {key:?} is not a normalised path"));
            }
            if let Some((parent, _)) = key.rsplit_once('/') {
                match snap.raw(parent)? {
                    None => report.problem(format!("{key:?} has no parent entry {parent:?}")),
                    Some(g) => {
                        if Record::decode_at(parent, g.value())
                            .is_ok_and(|r| r.as_packed().is_some())
                        {
                            report.problem(format!(
                                "{key:?} is a key below the packed record {parent:?}"
                            ));
                        }
                    }
                }
            }
            match Record::decode_at(key, value) {
                Err(e) => report.problem(e.to_string()),
                Ok(rec) => {
                    check_record(&snap, key, &rec, &mut refs, &mut report)?;
                    if let Some(p) = rec.as_packed() {
                        report.entries += p.entries.len() as u64;
                        for (rel, r) in p.iter() {
                            let full = format!("{key}/{rel}");
                            if let Some((parent, _)) = rel.rsplit_once('/')
                                && p.find(parent).is_none()
                            {
                                report.problem(format!(
                                    "{full:?} has no parent entry in its packed record"
                                ));
                            }
                            check_record(&snap, &full, r, &mut refs, &mut report)?;
                        }
                    }
                }
            }
            if prev.as_deref().is_some_and(|p| p >= raw) {
                report.problem(format!("key {key:?} is out of order"));
            }
            prev = Some(raw.to_vec());
            Ok(())
        })?;
        for item in snap.blobs.iter().map_err(redb::Error::from)? {
            let (k, v) = item.map_err(redb::Error::from)?;
            report.blobs += 1;
            let Ok(hash) = <[u8; HASH_LEN]>::try_from(k.value()) else {
                report.problem(format!("blob key of {} bytes", k.value().len()));
                continue;
            };
            if *blake3::hash(v.value()).as_bytes() != hash {
                report.problem(format!(
                    "blob {} does not match its hash",
                    format::hex(&hash)
                ));
            }
            if !refs.contains_key(&hash) {
                report.problem(format!(
                    "blob {} is referenced by nothing",
                    format::hex(&hash)
                ));
            }
        }
        let counts = snap.txn.open_table(BLOB_REFS).map_err(redb::Error::from)?;
        let mut counted = 0usize;
        for item in counts.iter().map_err(redb::Error::from)? {
            let (k, v) = item.map_err(redb::Error::from)?;
            counted += 1;
            let Ok(hash) = <[u8; HASH_LEN]>::try_from(k.value()) else {
                report.problem(format!("reference count key of {} bytes", k.value().len()));
                continue;
            };
            let expected = refs.get(&hash).copied().unwrap_or(0);
            match format::decode_count(v.value()) {
                Some(n) if n == expected => {}
                Some(n) => report.problem(format!(
                    "blob {} counts {n} references, {expected} exist",
                    format::hex(&hash)
                )),
                None => report.problem(format!(
                    "blob {} has a malformed reference count",
                    format::hex(&hash)
                )),
            }
        }
        if counted != refs.len() {
            report.problem(format!(
                "{} blobs are referenced, {counted} have reference counts",
                refs.len()
            ));
        }
        // The filter of the main table must let every key of it through.
        if let Some(filter) = &snap.filters.main {
            for item in snap.entries.iter().map_err(redb::Error::from)? {
                let (k, _) = item.map_err(redb::Error::from)?;
                if !filter.may_contain(k.value()) {
                    report.problem(format!(
                        "the main table's filter leaves out its key {:?}",
                        String::from_utf8_lossy(k.value())
                    ));
                }
            }
        }
        if report.blobs != refs.len() as u64 {
            report.problem(format!(
                "{} blobs are referenced, {} are stored",
                refs.len(),
                report.blobs
            ));
        }
        Ok(report)
    }
}

/// The checks of one record (stored under its key or inside a packed one): its blob exists
/// with the recorded length (and is counted), its link target is normalised.
fn check_record(
    snap: &Snapshot,
    key: &str,
    rec: &Record,
    refs: &mut HashMap<[u8; HASH_LEN], u64>,
    report: &mut CheckReport,
) -> Result<(), ReadError> {
    if let Some(h) = rec.blob_hash() {
        *refs.entry(h).or_default() += 1;
        match (snap.blob(&h)?, &rec.kind) {
            (None, _) => report.problem(format!("{key:?} references a missing blob")),
            (Some(b), Some(Kind::Blob(r))) if b.len() as u64 != r.len => report.problem(format!(
                "{key:?}: blob is {} bytes, the record says {}",
                b.len(),
                r.len
            )),
            _ => {}
        }
    }
    if let Some(Kind::Link(t)) = &rec.kind
        && ao_core::store::join(&[t]) != *t
    {
        report.problem(format!("link {key:?} has unnormalised target {t:?}"));
    }
    // A copy of a content-addressed target must match it (unless copies are no longer used).
    if let Some(Kind::Content(b)) = &rec.kind
        && !content_overwritten(snap)?
    {
        let target = ao_core::cache::data_path(b);
        if snap.get_entry("data")? != Some(Entry::Group) {
            report.problem(format!(
                "{key:?} copies {target:?} but \"data\" is not a group"
            ));
        } else if snap.get_entry(&target)? != Some(Entry::Binary(b.clone())) {
            report.problem(format!(
                "{key:?} holds a copy that {target:?} does not hold"
            ));
        }
    }
    Ok(())
}

fn content_overwritten(snap: &Snapshot) -> Result<bool, ReadError> {
    let meta = snap.txn.open_table(META).map_err(redb::Error::from)?;
    let v = meta
        .get(format::META_CONTENT_OVERWRITTEN)
        .map_err(redb::Error::from)?;
    Ok(v.is_some())
}

fn read_version(snap: &Snapshot) -> Result<u32, ReadError> {
    let meta = snap.txn.open_table(META).map_err(redb::Error::from)?;
    let v = meta
        .get(META_FORMAT_VERSION)
        .map_err(redb::Error::from)?
        .and_then(|g| format::decode_version(g.value()));
    v.ok_or_else(|| ReadError::Corrupt {
        key: "meta/format-version".into(),
        reason: "missing or malformed".into(),
    })
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckReport {
    /// The store file.
    pub path: PathBuf,
    /// The store was not closed cleanly (a crash): opening it read-write recovers it to its last
    /// durable commit. The check ran on that recovered state.
    pub needs_recovery: bool,
    /// Entries checked.
    pub entries: u64,
    /// Blobs checked.
    pub blobs: u64,
    /// Problems found (the first [`CheckReport::MAX_PROBLEMS`]).
    pub problems: Vec<String>,
    /// Problems found in all.
    pub problem_count: u64,
}

impl CheckReport {
    /// How many problems are kept in [`CheckReport::problems`].
    pub const MAX_PROBLEMS: usize = 100;

    /// Whether the store is consistent.
    pub fn is_ok(&self) -> bool {
        self.problem_count == 0
    }

    fn problem(&mut self, p: String) {
        self.problem_count += 1;
        if self.problems.len() < Self::MAX_PROBLEMS {
            self.problems.push(p);
        }
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "store:    {}", self.path.display())?;
        if self.needs_recovery {
            writeln!(
                f,
                "note:     not closed cleanly; the next read-write open recovers it to its last durable commit (checked as such)"
            )?;
        }
        writeln!(f, "entries:  {}", self.entries)?;
        writeln!(f, "blobs:    {}", self.blobs)?;
        if self.is_ok() {
            write!(f, "result:   ok")
        } else {
            writeln!(f, "result:   {} problem(s)", self.problem_count)?;
            for p in &self.problems {
                writeln!(f, "  - {p}")?;
            }
            Ok(())
        }
    }
}

/// Counts and sizes of the store (opened read-only).
pub fn stats(config: &StoreConfig) -> Result<Stats, Error> {
    let store = RedbStore::open_read_only(config.clone())?;
    let stats = store.stats()?;
    store.close()?;
    Ok(stats)
}

/// Reads a message or binary by ID or path (`ID/key/subkey`), from the store opened read-only.
pub fn get(config: &StoreConfig, id_or_path: &str) -> Result<Option<Value>, Error> {
    let store = RedbStore::open_read_only(config.clone())?;
    let value = ao_core::cache::read(&store, id_or_path)?;
    store.close()?;
    Ok(value)
}

/// Checks the store's integrity without modifying it: redb's own check (every page checksum,
/// the allocator state) on a copy-on-write view of the file, then [`RedbStore::check_records`].
///
/// A file redb cannot open is an [`OpenError`] (corrupt, locked…); a file that opens but holds
/// inconsistent records is a report with problems.
pub fn check(config: &StoreConfig) -> Result<CheckReport, Error> {
    let path = config.path.clone();
    // Refuse a store a node holds, and classify unreadable files, with a read-only open.
    let needs_recovery = match RedbStore::open_read_only(config.clone()) {
        Ok(store) => {
            store.close()?;
            false
        }
        Err(OpenError::NeedsRecovery { .. }) => true,
        Err(e) => return Err(e.into()),
    };
    let file = std::fs::File::open(&path).map_err(|source| OpenError::Io {
        path: path.clone(),
        source,
    })?;
    let backend = ScratchBackend::over_file(file).map_err(|source| OpenError::Io {
        path: path.clone(),
        source,
    })?;
    let mut scratch_config = config.clone();
    scratch_config.verify_on_open = true;
    let store = RedbStore::open_with_backend(backend, scratch_config)?;
    let mut report = store.check_records()?;
    report.needs_recovery = needs_recovery;
    // Closing commits to the scratch overlay only.
    let _ = store.close();
    Ok(report)
}

/// The result of [`compact`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactReport {
    /// File size before.
    pub bytes_before: u64,
    /// File size after.
    pub bytes_after: u64,
}

/// Compacts the store file (the store must not be open elsewhere).
pub fn compact(config: &StoreConfig) -> Result<CompactReport, CompactError> {
    let path = config.path.clone();
    // Validates the store (and recovers it after a crash) before touching it.
    let store = RedbStore::open_existing(config.clone())?;
    store.close().map_err(|e| match e {
        Error::Open(o) => CompactError::Open(o),
        other => CompactError::Compaction {
            path: path.clone(),
            source: redb::Error::Corrupted(other.to_string()),
        },
    })?;
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let bytes_before = size(&path);
    let run = || -> Result<(), CompactError> {
        let mut db = redb::Builder::new()
            .open(&path)
            .map_err(|e| OpenError::from_redb(&path, e))?;
        loop {
            match db.compact() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    return Err(CompactError::Compaction {
                        path: path.clone(),
                        source: e.into(),
                    });
                }
            }
        }
        db.close().map_err(|e| CompactError::Compaction {
            path: path.clone(),
            source: e.into(),
        })
    };
    crate::store::guard_read("", || Ok(run())).map_err(|e| CompactError::Compaction {
        path: path.clone(),
        source: redb::Error::Corrupted(e.to_string()),
    })??;
    Ok(CompactReport {
        bytes_before,
        bytes_after: size(&path),
    })
}
