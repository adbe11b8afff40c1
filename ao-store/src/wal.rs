//! The write-ahead log (log version 3): what makes a durable write cost one sequential
//! `fdatasync` instead of a redb commit that writes back scattered B-tree pages.
//!
//! With [`Durability::Immediate`](crate::Durability::Immediate) each group commit is appended
//! to the active log file as one record and `fdatasync`ed; only then is it committed to redb
//! (without an fsync), published to readers and acknowledged. Every redb commit stores the
//! sequence number of the last log record it contains (`meta/wal-applied`), in the same
//! transaction. A *checkpoint* is a durable redb commit.
//!
//! The log is two files, `<store file>.wal` and `<store file>.wal.1`, used in turn. When the
//! active one reaches [`StoreConfig::wal_bytes`](crate::StoreConfig::wal_bytes), the writer
//! syncs it, goes on in the other file from its start, and checkpoints everything logged so
//! far in the background; once that checkpoint is durable, the full file may be written over
//! at the next switch. The log makes the writer wait for a checkpoint only when the active
//! file grows to four times its size before the other one is free (with version 2's one
//! file, the writer made a checkpoint itself each time the file was full, after catching up
//! in the background). A checkpoint made on the writer's thread (when idle, on flush, on
//! close) holds every record: both files are then free, and the active one starts over. Opening the store replays the records of both files after
//! `wal-applied`, in sequence order, then empties them.
//!
//! Layout (docs/store-format.md), each file: a 16-byte header (`ao-wal\0\x03` then 8 zero
//! bytes; version 2, one file, is read the same way), then records: `len: u32 LE`, `seq: u64
//! LE`, 16 bytes of blake3 over those 12 bytes and the payload, then `len` bytes of payload (a
//! protobuf [`WalBatch`]). A file is grown with zeros a mebibyte at a time (and fsynced), so
//! an append overwrites allocated blocks and its `fdatasync` need not commit file-size
//! metadata. Reading a file stops at the first record that is torn (short or failing its
//! checksum) or whose sequence number does not follow its predecessor's: what lies beyond is
//! a stale record of an earlier cycle.

use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use ao_core::store::Op;
use bytes::Bytes;
use prost::Message as _;

use crate::error::OpenError;

/// The header: magic (with the format version in its last byte) and 8 reserved zero bytes.
pub(crate) const MAGIC: [u8; 8] = *b"ao-wal\0\x03";
/// The header of a version 2 log (one file, records as in version 3): read, never written.
const MAGIC_V2: [u8; 8] = *b"ao-wal\0\x02";
/// Length of the file header.
pub(crate) const HEADER: u64 = 16;
/// Length of a record header (`len`, `seq`, checksum).
pub(crate) const RECORD_HEADER: usize = 4 + 8 + 16;
/// The file is grown this much at a time.
const GROW: u64 = 1 << 20;
/// The smallest switch size past the header.
const MIN_RECORDS: u64 = 4 << 10;

/// The first log file of a store file (the only one of a version 2 log).
pub(crate) fn wal_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".wal");
    PathBuf::from(name)
}

/// Both log files of a store file.
pub(crate) fn wal_paths(store: &Path) -> [PathBuf; 2] {
    let first = wal_path(store);
    let mut second = first.clone().into_os_string();
    second.push(".1");
    [first, PathBuf::from(second)]
}

/// One logged group commit: the ops of every batch in it, in order.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WalBatch {
    #[prost(message, repeated, tag = "1")]
    pub(crate) ops: Vec<WalOp>,
}

/// One op of [`WalBatch`].
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WalOp {
    #[prost(oneof = "WalKind", tags = "1, 2, 3")]
    pub(crate) kind: Option<WalKind>,
}

/// The kinds of [`WalOp`] (those of [`Op`]).
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum WalKind {
    /// `Op::Write`.
    #[prost(message, tag = "1")]
    Write(WalWrite),
    /// `Op::MakeGroup`: the path.
    #[prost(string, tag = "2")]
    Group(String),
    /// `Op::MakeLink`.
    #[prost(message, tag = "3")]
    Link(WalLink),
}

/// `Op::Write`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WalWrite {
    #[prost(string, tag = "1")]
    pub(crate) path: String,
    #[prost(bytes = "bytes", tag = "2")]
    pub(crate) value: Bytes,
}

/// `Op::MakeLink`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WalLink {
    #[prost(string, tag = "1")]
    pub(crate) existing: String,
    #[prost(string, tag = "2")]
    pub(crate) new: String,
}

impl WalOp {
    pub(crate) fn from_op(op: &Op) -> Self {
        let kind = match op {
            Op::Write { path, value } => WalKind::Write(WalWrite {
                path: path.clone(),
                value: value.clone(),
            }),
            Op::MakeGroup { path } => WalKind::Group(path.clone()),
            Op::MakeLink { existing, new } => WalKind::Link(WalLink {
                existing: existing.clone(),
                new: new.clone(),
            }),
        };
        Self { kind: Some(kind) }
    }

    pub(crate) fn into_op(self) -> Option<Op> {
        Some(match self.kind? {
            WalKind::Write(w) => Op::Write {
                path: w.path,
                value: w.value,
            },
            WalKind::Group(path) => Op::MakeGroup { path },
            WalKind::Link(l) => Op::MakeLink {
                existing: l.existing,
                new: l.new,
            },
        })
    }
}

fn checksum(head: &[u8], payload: &[u8]) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(head);
    h.update(payload);
    let mut out = [0; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

/// Encodes one record.
pub(crate) fn encode_record(seq: u64, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(RECORD_HEADER + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    let sum = checksum(&out[..12], payload);
    out.extend_from_slice(&sum);
    out.extend_from_slice(payload);
    out
}

/// The records of a log file's bytes: `(seq, batch)` in order, and where the valid part ends.
/// A record whose checksum holds but whose payload does not decode is corruption.
pub(crate) fn parse(bytes: &[u8]) -> Result<(Vec<(u64, WalBatch)>, u64), String> {
    let mut out: Vec<(u64, WalBatch)> = Vec::new();
    let mut off = HEADER as usize;
    while let Some(head) = bytes.get(off..off + RECORD_HEADER) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let mut seq_bytes = [0; 8];
        seq_bytes.copy_from_slice(&head[4..12]);
        let seq = u64::from_le_bytes(seq_bytes);
        let Some(payload) = bytes.get(off + RECORD_HEADER..off + RECORD_HEADER + len) else {
            break;
        };
        if checksum(&head[..12], payload) != head[12..] {
            break;
        }
        if out
            .last()
            .is_some_and(|(prev, _)| seq != prev.wrapping_add(1))
        {
            break;
        }
        let batch = WalBatch::decode(payload)
            .map_err(|e| format!("log record {seq} does not decode: {e}"))?;
        out.push((seq, batch));
        off += RECORD_HEADER + len;
    }
    Ok((out, off as u64))
}

/// The records after `applied`, checked to follow it and each other without a gap.
pub(crate) fn pending(
    records: Vec<(u64, WalBatch)>,
    applied: u64,
) -> Result<Vec<(u64, WalBatch)>, String> {
    let pending: Vec<_> = records.into_iter().filter(|(s, _)| *s > applied).collect();
    let mut expected = applied.wrapping_add(1);
    for (seq, _) in &pending {
        if *seq != expected {
            return Err(if expected == applied.wrapping_add(1) {
                format!(
                    "the log resumes at record {seq} but the database holds records up to {applied}"
                )
            } else {
                format!("the log skips from record {} to record {seq}", expected - 1)
            });
        }
        expected = seq.wrapping_add(1);
    }
    Ok(pending)
}

/// Reads the log files without modifying them: the records of both, in sequence order. A
/// missing file has no records.
pub(crate) fn read(store: &Path) -> Result<Vec<(u64, WalBatch)>, OpenError> {
    let mut records = Vec::new();
    for path in wal_paths(store) {
        records.extend(read_file(path)?);
    }
    // Each file's records are consecutive: sorting orders the two runs.
    records.sort_by_key(|(seq, _)| *seq);
    Ok(records)
}

/// The records of one log file.
fn read_file(path: PathBuf) -> Result<Vec<(u64, WalBatch)>, OpenError> {
    let mut bytes = Vec::new();
    match File::open(&path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes).map_err(|source| OpenError::Io {
                path: path.clone(),
                source,
            })?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(OpenError::Io { path, source }),
    }
    if (bytes.len() as u64) < HEADER {
        // Created but never written past its header: no record was ever acknowledged.
        return Ok(Vec::new());
    }
    if bytes[..8] != MAGIC && bytes[..8] != MAGIC_V2 {
        return Err(OpenError::Corrupt {
            path,
            reason: "the write-ahead log has an unknown header".into(),
        });
    }
    parse(&bytes)
        .map(|(records, _)| records)
        .map_err(|reason| OpenError::Corrupt { path, reason })
}

/// The open log of a read-write store (owned by the writer thread).
#[derive(Debug)]
pub(crate) struct Wal {
    files: [LogFile; 2],
    /// The file records are appended to.
    active: usize,
    /// Where the next record goes in the active file.
    offset: u64,
    /// Switch files once `offset` reaches this.
    limit: u64,
    /// Whether every record of the other file is durable in redb, so that it may be written
    /// over.
    other_free: bool,
    /// The thread that `fdatasync`s the active file while the writer goes on (started on the
    /// first sync after a switch; `None` before, or when it could not be started).
    syncer: Option<Syncer>,
}

/// One of the two files.
#[derive(Debug)]
struct LogFile {
    file: File,
    path: PathBuf,
    /// The file's length (zero-filled beyond the records).
    allocated: u64,
}

impl LogFile {
    /// Opens (creating if needed) a log file and empties it, with a version 3 header.
    fn open_empty(path: PathBuf) -> Result<Self, OpenError> {
        let io = |source| OpenError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut header = [0u8; HEADER as usize];
        header[..8].copy_from_slice(&MAGIC);
        if len < HEADER {
            // New (or never written past its header): write the header, and make the file's
            // directory entry durable, since acknowledged records will live in it.
            file.write_all_at(&header, 0).map_err(io)?;
            file.sync_all().map_err(io)?;
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            return Ok(Self {
                file,
                path,
                allocated: HEADER,
            });
        }
        let mut current = [0u8; HEADER as usize];
        file.read_exact_at(&mut current, 0).map_err(io)?;
        if len > HEADER || current != header {
            // Every record is in the database now: keep the header only, so that nothing of
            // an earlier life of the file (whatever it holds) can follow a new record. A
            // version 2 header differs in its last magic byte only: rewriting it in place
            // never leaves a torn header.
            file.set_len(HEADER).map_err(io)?;
            if current != header {
                file.write_all_at(&header, 0).map_err(io)?;
            }
            file.sync_all().map_err(io)?;
        }
        Ok(Self {
            file,
            path,
            allocated: HEADER,
        })
    }
}

/// A thread that `fdatasync`s the log on request, so that the writer computes a group's
/// changes while the group's record goes to disk ([`Wal::append_while`]).
#[derive(Debug)]
struct Syncer {
    /// `None` only while dropping (which ends the thread).
    start: Option<std::sync::mpsc::SyncSender<()>>,
    done: std::sync::mpsc::Receiver<std::io::Result<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    /// A syncer of `file` (a handle of its own on the same file), or `None` when no thread
    /// could be started.
    fn start(file: &File) -> Option<Self> {
        let file = file.try_clone().ok()?;
        let (start, requests) = std::sync::mpsc::sync_channel::<()>(1);
        let (results, done) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("ao-store-log-sync".into())
            .spawn(move || {
                while requests.recv().is_ok() {
                    if results.send(file.sync_data()).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        Some(Self {
            start: Some(start),
            done,
            thread: Some(thread),
        })
    }

    /// Asks the thread to sync the file; `false` when it is gone.
    fn start_sync(&self) -> bool {
        self.start.as_ref().is_some_and(|s| s.send(()).is_ok())
    }

    /// The outcome of the sync [`Self::start_sync`] asked for.
    fn wait(&self) -> std::io::Result<()> {
        self.done
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("the log's sync thread is gone")))
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        // Closing the channel ends the thread; it holds a handle on the file until then.
        self.start = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Wal {
    /// Opens (creating if needed) the log files of `store` for appending from the first one's
    /// start, emptying both: call only after their records were replayed and made durable in
    /// redb.
    pub(crate) fn open(store: &Path, limit: u64) -> Result<Self, OpenError> {
        let [first, second] = wal_paths(store);
        Ok(Self {
            files: [LogFile::open_empty(first)?, LogFile::open_empty(second)?],
            active: 0,
            offset: HEADER,
            limit: limit.max(HEADER + MIN_RECORDS),
            other_free: true,
            syncer: None,
        })
    }

    /// The active file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.files[self.active].path
    }

    /// Appends one record and, with `sync`, waits until it is on disk (`fdatasync`), running
    /// `meanwhile` on this thread while the record is being synced (by the syncer thread). A
    /// record appended without `sync` (a deferred batch) becomes durable with the next
    /// `fdatasync`. `meanwhile` runs whatever happens to the record; on an error the record is
    /// not part of the log (the next one is written over it).
    pub(crate) fn append_while<T>(
        &mut self,
        record: &[u8],
        sync: bool,
        meanwhile: impl FnOnce() -> T,
    ) -> (std::io::Result<()>, T) {
        let end = self.offset + record.len() as u64;
        if let Err(e) = self.write(record) {
            return (Err(e), meanwhile());
        }
        if !sync {
            self.offset = end;
            return (Ok(()), meanwhile());
        }
        if self.syncer.is_none() {
            self.syncer = Syncer::start(&self.files[self.active].file);
        }
        let value;
        let synced = match self.syncer.as_ref().filter(|s| s.start_sync()) {
            Some(syncer) => {
                value = meanwhile();
                syncer.wait()
            }
            None => {
                // No sync thread: sync here.
                self.syncer = None;
                value = meanwhile();
                self.files[self.active].file.sync_data()
            }
        };
        if synced.is_ok() {
            self.offset = end;
        }
        (synced, value)
    }

    /// Writes one record at the end of the log, without syncing it or taking it into the log.
    fn write(&mut self, record: &[u8]) -> std::io::Result<()> {
        let end = self.offset + record.len() as u64;
        let f = &mut self.files[self.active];
        if end > f.allocated {
            // Grow with zeros (read back as a torn record), and make the new length durable
            // once, so that the appends into it need only `fdatasync`.
            let target = end.div_ceil(GROW) * GROW;
            let zeros = vec![0u8; (target - f.allocated) as usize];
            f.file.write_all_at(&zeros, f.allocated)?;
            f.file.sync_all()?;
            f.allocated = target;
        }
        f.file.write_all_at(record, self.offset)
    }

    /// Whether the active file is due for a switch.
    pub(crate) fn full(&self) -> bool {
        self.offset >= self.limit
    }

    /// Whether the active file has grown to four times the size at which it is
    /// [`Self::full`] (while the checkpoint that frees the other one runs).
    pub(crate) fn overfull(&self) -> bool {
        self.offset >= self.limit.saturating_mul(4)
    }

    /// Whether the active file is at least half way to [`Self::full`].
    pub(crate) fn half_full(&self) -> bool {
        self.offset >= self.limit / 2
    }

    /// Whether the other file may be written over ([`Self::switch`]).
    pub(crate) fn can_switch(&self) -> bool {
        self.other_free
    }

    /// Makes the other file the active one, from its start: the records of the file left are
    /// synced first (deferred ones included), and it stays in use until a checkpoint started
    /// after this holds them ([`Self::checkpointed`]). Only when [`Self::can_switch`].
    pub(crate) fn switch(&mut self) -> std::io::Result<()> {
        debug_assert!(self.other_free);
        self.files[self.active].file.sync_data()?;
        // The syncer holds the old file: the next sync starts one on the new file.
        self.syncer = None;
        self.active ^= 1;
        self.offset = HEADER;
        self.other_free = false;
        Ok(())
    }

    /// After a durable checkpoint started after the last [`Self::switch`]: the other file's
    /// records are all in redb.
    pub(crate) fn checkpointed(&mut self) {
        self.other_free = true;
    }

    /// After a durable checkpoint of every record logged: both files are free, and the next
    /// record goes to the active file's start.
    pub(crate) fn reset(&mut self) {
        self.offset = HEADER;
        self.other_free = true;
    }

    /// After the last checkpoint of a clean close: leave empty files (so that a copy of the
    /// database file alone, restored later beside the log, is not refused for a gap).
    pub(crate) fn truncate(&mut self) -> std::io::Result<()> {
        self.syncer = None;
        for f in &mut self.files {
            f.file.set_len(HEADER)?;
            f.file.sync_all()?;
            f.allocated = HEADER;
        }
        self.offset = HEADER;
        self.other_free = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(path: &str) -> WalBatch {
        WalBatch {
            ops: vec![WalOp::from_op(&Op::Write {
                path: path.into(),
                value: Bytes::from_static(b"v"),
            })],
        }
    }

    fn file(records: &[(u64, &WalBatch)]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend([0; 8]);
        for (seq, b) in records {
            bytes.extend(encode_record(*seq, &b.encode_to_vec()));
        }
        bytes
    }

    #[test]
    fn records_round_trip_and_stop_at_torn_or_stale_records() {
        let (a, b, c) = (batch("a"), batch("b"), batch("c"));
        let bytes = file(&[(5, &a), (6, &b)]);
        let (records, end) = parse(&bytes).unwrap();
        assert_eq!(records, vec![(5, a.clone()), (6, b.clone())]);
        assert_eq!(end, bytes.len() as u64);
        // A torn last record is not read.
        let torn = &bytes[..bytes.len() - 1];
        assert_eq!(parse(torn).unwrap().0, vec![(5, a.clone())]);
        // A flipped bit fails the checksum.
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(parse(&flipped).unwrap().0, vec![(5, a.clone())]);
        // A stale record (an earlier cycle's sequence) ends the log.
        let stale = file(&[(5, &a), (6, &b), (2, &c)]);
        assert_eq!(parse(&stale).unwrap().0.len(), 2);
        // Zero fill is a torn record.
        let mut zeros = bytes.clone();
        zeros.extend([0; 64]);
        assert_eq!(parse(&zeros).unwrap().0.len(), 2);
    }

    #[test]
    fn pending_records_must_follow_the_database() {
        let (a, b) = (batch("a"), batch("b"));
        let records = vec![(5, a), (6, b.clone())];
        assert_eq!(pending(records.clone(), 4).unwrap().len(), 2);
        assert_eq!(pending(records.clone(), 5).unwrap(), vec![(6, b)]);
        assert!(pending(records.clone(), 6).unwrap().is_empty());
        assert!(pending(records.clone(), 9).unwrap().is_empty());
        assert!(pending(records, 3).is_err());
    }

    #[test]
    fn appended_records_read_back_in_order_with_or_without_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s.redb");
        let mut wal = Wal::open(&store, 1 << 20).unwrap();
        let batches: Vec<_> = (0..5).map(|i| batch(&format!("p{i}"))).collect();
        let mut ran = 0;
        for (i, b) in batches.iter().enumerate() {
            let rec = encode_record(i as u64 + 1, &b.encode_to_vec());
            // Deferred (unsynced) and synced records interleave; `meanwhile` runs once each.
            let (logged, n) = wal.append_while(&rec, i % 2 == 0, || {
                ran += 1;
                ran
            });
            logged.unwrap();
            assert_eq!(n, i + 1);
        }
        assert_eq!(ran, batches.len());
        let want: Vec<_> = batches
            .into_iter()
            .enumerate()
            .map(|(i, b)| (i as u64 + 1, b))
            .collect();
        assert_eq!(read(&store).unwrap(), want);
        // After a checkpoint the next record goes to the start and ends the log.
        wal.reset();
        let again = batch("again");
        let rec = encode_record(9, &again.encode_to_vec());
        wal.append_while(&rec, true, || ()).0.unwrap();
        assert_eq!(read(&store).unwrap(), vec![(9, again)]);
    }

    #[test]
    fn records_of_both_files_read_back_in_sequence_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s.redb");
        let [first, second] = wal_paths(&store);
        assert_eq!(second.file_name().unwrap(), "s.redb.wal.1");
        let b: Vec<_> = (0..8).map(|i| batch(&format!("p{i}"))).collect();
        // The second file holds the older run, the first the newer one, followed by a stale
        // record of an earlier cycle.
        std::fs::write(&second, file(&[(3, &b[3]), (4, &b[4])])).unwrap();
        std::fs::write(&first, file(&[(5, &b[5]), (6, &b[6]), (1, &b[1])])).unwrap();
        let records = read(&store).unwrap();
        let seqs: Vec<u64> = records.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, [3, 4, 5, 6]);
        assert_eq!(records[2].1, b[5]);
        assert_eq!(pending(records.clone(), 2).unwrap().len(), 4);
        assert_eq!(pending(records, 4).unwrap().len(), 2);
        // A gap between the files is corruption, as is a run that does not follow the
        // database.
        std::fs::write(&second, file(&[(2, &b[2]), (3, &b[3])])).unwrap();
        let gap = pending(read(&store).unwrap(), 1).unwrap_err();
        assert!(gap.contains("skips from record 3 to record 5"), "{gap}");
        assert!(pending(read(&store).unwrap(), 0).is_err());
        // A version 2 log (one file) reads the same way.
        let mut v2 = file(&[(7, &b[7])]);
        v2[..8].copy_from_slice(b"ao-wal\0\x02");
        std::fs::remove_file(&second).unwrap();
        std::fs::write(&first, v2).unwrap();
        assert_eq!(read(&store).unwrap(), vec![(7, b[7].clone())]);
        // Opening empties both files, with this version's header.
        std::fs::write(&second, file(&[(8, &b[0])])).unwrap();
        let wal = Wal::open(&store, 1).unwrap();
        assert!(read(&store).unwrap().is_empty());
        for path in [&first, &second] {
            let bytes = std::fs::read(path).unwrap();
            assert_eq!(bytes.len() as u64, HEADER);
            assert_eq!(bytes[..8], MAGIC);
        }
        drop(wal);
    }

    #[test]
    fn switching_files_keeps_every_record_not_yet_checkpointed() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s.redb");
        // The smallest log: it is full after 4 KiB of records.
        let mut wal = Wal::open(&store, 1).unwrap();
        let payload = batch(&"x".repeat(1000)).encode_to_vec();
        let seq = std::cell::Cell::new(0);
        let append = |wal: &mut Wal, sync: bool| {
            seq.set(seq.get() + 1);
            let rec = encode_record(seq.get(), &payload);
            wal.append_while(&rec, sync, || ()).0.unwrap();
            seq.get()
        };
        while !wal.full() {
            append(&mut wal, false);
        }
        let first_run = seq.get();
        assert!(wal.can_switch());
        wal.switch().unwrap();
        assert!(!wal.can_switch());
        assert!(wal.path().ends_with("s.redb.wal.1"));
        for _ in 0..5 {
            append(&mut wal, true);
        }
        // Nothing checkpointed yet: every record of both files.
        let seqs: Vec<u64> = read(&store).unwrap().iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (1..=first_run + 5).collect::<Vec<_>>());
        // A checkpoint holding the first file frees it; the next switch writes over it, and
        // its older records are never read after the new ones.
        wal.checkpointed();
        while !wal.full() {
            append(&mut wal, false);
        }
        let second_run_end = seq.get();
        wal.switch().unwrap();
        assert!(wal.path().ends_with("s.redb.wal"));
        let last = append(&mut wal, true);
        let records = read(&store).unwrap();
        let seqs: Vec<u64> = records.iter().map(|(s, _)| *s).collect();
        let mut want: Vec<u64> = (first_run + 1..=second_run_end).collect();
        want.push(last);
        assert_eq!(seqs, want);
        assert_eq!(pending(records, first_run).unwrap().len(), want.len());
        // A clean close leaves both files empty.
        wal.truncate().unwrap();
        assert!(read(&store).unwrap().is_empty());
    }

    #[test]
    fn the_record_layout_is_as_documented() {
        let rec = encode_record(7, b"xyz");
        assert_eq!(rec[..4], [3, 0, 0, 0]);
        assert_eq!(rec[4..12], [7, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(rec[12..28], checksum(&rec[..12], b"xyz"));
        assert_eq!(&rec[28..], b"xyz");
        assert_eq!(&MAGIC, b"ao-wal\0\x03");
    }
}
