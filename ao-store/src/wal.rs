//! The write-ahead log (format version 2): what makes a durable write cost one sequential
//! `fdatasync` instead of a redb commit that writes back scattered B-tree pages.
//!
//! With [`Durability::Immediate`](crate::Durability::Immediate) each group commit is appended
//! to `<store file>.wal` as one record and `fdatasync`ed; only then is it committed to redb
//! (without an fsync), published to readers and acknowledged. Every redb commit stores the
//! sequence number of the last log record it contains (`meta/wal-applied`), in the same
//! transaction. A *checkpoint* (a durable redb commit) happens when the log reaches
//! [`StoreConfig::wal_bytes`](crate::StoreConfig::wal_bytes), on flush and on close; the log
//! is then reused from its start. Opening the store replays the records after `wal-applied`,
//! then empties the log.
//!
//! Layout (docs/store-format.md): a 16-byte header (`ao-wal\0\x02` then 8 zero bytes), then
//! records: `len: u32 LE`, `seq: u64 LE`, 16 bytes of blake3 over those 12 bytes and the
//! payload, then `len` bytes of payload (a protobuf [`WalBatch`]). The file is grown with
//! zeros a mebibyte at a time (and fsynced), so an append overwrites allocated blocks and its
//! `fdatasync` need not commit file-size metadata. Reading stops at the first record that is
//! torn (short or failing its checksum) or whose sequence number does not follow its
//! predecessor's: what lies beyond is a stale record of an earlier cycle.

use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use ao_core::store::Op;
use bytes::Bytes;
use prost::Message as _;

use crate::error::OpenError;

/// The header: magic (with the format version in its last byte) and 8 reserved zero bytes.
pub(crate) const MAGIC: [u8; 8] = *b"ao-wal\0\x02";
/// Length of the file header.
pub(crate) const HEADER: u64 = 16;
/// Length of a record header (`len`, `seq`, checksum).
pub(crate) const RECORD_HEADER: usize = 4 + 8 + 16;
/// The file is grown this much at a time.
const GROW: u64 = 1 << 20;

/// The log file of a store file.
pub(crate) fn wal_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".wal");
    PathBuf::from(name)
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

/// The records after `applied`, checked to follow it without a gap.
pub(crate) fn pending(
    records: Vec<(u64, WalBatch)>,
    applied: u64,
) -> Result<Vec<(u64, WalBatch)>, String> {
    let pending: Vec<_> = records.into_iter().filter(|(s, _)| *s > applied).collect();
    match pending.first() {
        Some((first, _)) if *first != applied + 1 => Err(format!(
            "the log resumes at record {first} but the database holds records up to {applied}"
        )),
        _ => Ok(pending),
    }
}

/// Reads a log file without modifying it. A missing file has no records.
pub(crate) fn read(store: &Path) -> Result<Vec<(u64, WalBatch)>, OpenError> {
    let path = wal_path(store);
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
    if bytes[..8] != MAGIC {
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
    file: File,
    path: PathBuf,
    /// Where the next record goes.
    offset: u64,
    /// The file's length (zero-filled beyond the records).
    allocated: u64,
    /// Checkpoint once `offset` reaches this.
    limit: u64,
    /// The thread that `fdatasync`s the log while the writer goes on (started on the first
    /// sync; `None` before, or when it could not be started).
    syncer: Option<Syncer>,
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
    /// Opens (creating if needed) the log of `store` for appending from its start, emptying it:
    /// call only after its records were replayed and made durable in redb.
    pub(crate) fn open(store: &Path, limit: u64) -> Result<Self, OpenError> {
        let path = wal_path(store);
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
            file.write_all_at(&header, 0).map_err(io)?;
            file.sync_all().map_err(io)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            }
        } else if len > HEADER {
            // Every record is in the database now: start from an empty log, so that nothing
            // of an earlier life of the file (whatever it holds) can follow a new record.
            file.set_len(HEADER).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        Ok(Self {
            file,
            offset: HEADER,
            allocated: HEADER,
            limit: limit.max(HEADER + GROW),
            path,
            syncer: None,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
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
            self.syncer = Syncer::start(&self.file);
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
                self.file.sync_data()
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
        if end > self.allocated {
            // Grow with zeros (read back as a torn record), and make the new length durable
            // once, so that the appends into it need only `fdatasync`.
            let target = end.div_ceil(GROW) * GROW;
            let zeros = vec![0u8; (target - self.allocated) as usize];
            self.file.write_all_at(&zeros, self.allocated)?;
            self.file.sync_all()?;
            self.allocated = target;
        }
        self.file.write_all_at(record, self.offset)
    }

    /// Whether the log is due for a checkpoint.
    pub(crate) fn full(&self) -> bool {
        self.offset >= self.limit
    }

    /// Whether the log has grown to four times the size at which it is [`Self::full`] (while
    /// checkpoints in the background catch up with it).
    pub(crate) fn overfull(&self) -> bool {
        self.offset >= self.limit.saturating_mul(4)
    }

    /// Whether the log is at least half way to [`Self::full`].
    pub(crate) fn half_full(&self) -> bool {
        self.offset >= self.limit / 2
    }

    /// After the last checkpoint of a clean close: leave an empty log (so that a copy of the
    /// database file alone, restored later beside this log, is not refused for a gap).
    pub(crate) fn truncate(&mut self) -> std::io::Result<()> {
        self.file.set_len(HEADER)?;
        self.file.sync_all()?;
        self.offset = HEADER;
        self.allocated = HEADER;
        Ok(())
    }

    /// After a checkpoint: the next record goes to the start again.
    pub(crate) fn reset(&mut self) {
        self.offset = HEADER;
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
    fn the_record_layout_is_as_documented() {
        let rec = encode_record(7, b"xyz");
        assert_eq!(rec[..4], [3, 0, 0, 0]);
        assert_eq!(rec[4..12], [7, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(rec[12..28], checksum(&rec[..12], b"xyz"));
        assert_eq!(&rec[28..], b"xyz");
        assert_eq!(&MAGIC, b"ao-wal\0\x02");
    }
}
