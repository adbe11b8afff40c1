//! [`ScratchBackend`]: a redb storage backend whose writes never reach its base.
//!
//! Reads come from a base (a file opened read-only, or bytes in memory) overlaid with every write
//! made so far, which lives in memory. It serves two purposes:
//!
//! * `store check` runs redb's full integrity check, which may want to repair and commit, on
//!   the real file without ever modifying it;
//! * the fuzz target opens arbitrary bytes as a store, and injects I/O failures with
//!   [`ScratchBackend::fail_after`].

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const CHUNK: u64 = 4096;
const CHUNK_USIZE: usize = 4096;

#[derive(Debug)]
enum Base {
    File(File),
    Bytes(Vec<u8>),
}

impl Base {
    fn read_at(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        match self {
            #[cfg(unix)]
            Self::File(f) => std::os::unix::fs::FileExt::read_exact_at(f, out, offset),
            #[cfg(not(unix))]
            Self::File(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "scratch backends over files need unix",
            )),
            Self::Bytes(b) => {
                let start = usize::try_from(offset)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset"))?;
                let end = start
                    .checked_add(out.len())
                    .filter(|&e| e <= b.len())
                    .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
                out.copy_from_slice(&b[start..end]);
                Ok(())
            }
        }
    }
}

#[derive(Debug)]
struct Overlay {
    /// Logical length.
    len: u64,
    /// Bytes of the base still visible: the base's length, lowered by every truncation.
    base_visible: u64,
    /// Chunks written since opening, by chunk index.
    chunks: HashMap<u64, Box<[u8; CHUNK_USIZE]>>,
}

/// A copy-on-write redb backend over a read-only base. See the module docs.
///
/// Clones share their state, so a caller can keep a clone and read back what redb wrote
/// ([`ScratchBackend::contents`]) after the database is closed.
#[derive(Debug, Clone)]
pub struct ScratchBackend(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    base: Base,
    overlay: Mutex<Overlay>,
    /// Writes, syncs and resizes left before every one of them fails (`u64::MAX`: never).
    budget: AtomicU64,
}

impl ScratchBackend {
    /// Over a file (opened read-only; it is never written).
    pub fn over_file(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self::new(Base::File(file), len))
    }

    /// Over bytes in memory.
    pub fn over_bytes(bytes: Vec<u8>) -> Self {
        let len = bytes.len() as u64;
        Self::new(Base::Bytes(bytes), len)
    }

    fn new(base: Base, len: u64) -> Self {
        Self(Arc::new(Inner {
            base,
            overlay: Mutex::new(Overlay {
                len,
                base_visible: len,
                chunks: HashMap::new(),
            }),
            budget: AtomicU64::new(u64::MAX),
        }))
    }

    /// The current contents: the base overlaid with every write so far.
    pub fn contents(&self) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.0.lock()?.len)
            .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "too large"))?;
        let mut out = vec![0u8; len];
        redb::StorageBackend::read(self, 0, &mut out)?;
        Ok(out)
    }

    /// Makes every write, sync and resize fail once `n` of them have succeeded (an injected I/O
    /// failure, as a full disk or a dying device would cause).
    pub fn fail_after(self, n: u64) -> Self {
        self.0.budget.store(n, Ordering::SeqCst);
        self
    }
}

impl Inner {
    fn spend(&self) -> io::Result<()> {
        let ok = self
            .budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| match b {
                u64::MAX => Some(b),
                0 => None,
                b => Some(b - 1),
            })
            .is_ok();
        if ok {
            Ok(())
        } else {
            Err(io::Error::other("injected I/O failure"))
        }
    }

    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, Overlay>> {
        self.overlay
            .lock()
            .map_err(|_| io::Error::other("scratch backend lock poisoned"))
    }

    /// Reads one chunk's current bytes into `out` (whole chunk).
    fn load_chunk(&self, ov: &Overlay, index: u64, out: &mut [u8; CHUNK_USIZE]) -> io::Result<()> {
        if let Some(c) = ov.chunks.get(&index) {
            out.copy_from_slice(&c[..]);
            return Ok(());
        }
        out.fill(0);
        let start = index * CHUNK;
        if start < ov.base_visible {
            let n = (ov.base_visible - start).min(CHUNK);
            // n <= CHUNK, so it fits in usize.
            self.base.read_at(start, &mut out[..n as usize])?;
        }
        Ok(())
    }
}

impl redb::StorageBackend for ScratchBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.0.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.0.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.0.spend()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.0.write(offset, data)
    }
}

impl Inner {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.lock()?.len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let ov = self.lock()?;
        let end = offset
            .checked_add(out.len() as u64)
            .filter(|&e| e <= ov.len)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        // Fast path: entirely within the untouched base.
        let first = offset / CHUNK;
        let last = end.div_ceil(CHUNK);
        if end <= ov.base_visible && (first..last).all(|i| !ov.chunks.contains_key(&i)) {
            return self.base.read_at(offset, out);
        }
        let mut chunk = [0u8; CHUNK_USIZE];
        let mut pos = offset;
        let mut written = 0usize;
        while pos < end {
            let index = pos / CHUNK;
            self.load_chunk(&ov, index, &mut chunk)?;
            let within = (pos % CHUNK) as usize;
            let n = (CHUNK_USIZE - within).min(out.len() - written);
            out[written..written + n].copy_from_slice(&chunk[within..within + n]);
            written += n;
            pos += n as u64;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.spend()?;
        let mut ov = self.lock()?;
        if len < ov.len {
            ov.base_visible = ov.base_visible.min(len);
            let keep = len.div_ceil(CHUNK);
            ov.chunks.retain(|&i, _| i < keep);
            // Zero the tail of a partial last chunk, so growing again reads zeros.
            if !len.is_multiple_of(CHUNK) {
                let index = len / CHUNK;
                let mut chunk = [0u8; CHUNK_USIZE];
                self.load_chunk(&ov, index, &mut chunk)?;
                chunk[(len % CHUNK) as usize..].fill(0);
                ov.chunks.insert(index, Box::new(chunk));
            }
        }
        ov.len = len;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.spend()?;
        let mut ov = self.lock()?;
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        if end > ov.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write past the end of the storage",
            ));
        }
        let mut pos = offset;
        let mut read = 0usize;
        while pos < end {
            let index = pos / CHUNK;
            let mut chunk = [0u8; CHUNK_USIZE];
            self.load_chunk(&ov, index, &mut chunk)?;
            let within = (pos % CHUNK) as usize;
            let n = (CHUNK_USIZE - within).min(data.len() - read);
            chunk[within..within + n].copy_from_slice(&data[read..read + n]);
            ov.chunks.insert(index, Box::new(chunk));
            read += n;
            pos += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::StorageBackend as _;

    #[test]
    fn overlay_reads_writes_and_truncates() {
        let b = ScratchBackend::over_bytes((0..10_000u32).map(|i| i as u8).collect());
        let mut out = [0u8; 10];
        b.read(4090, &mut out).unwrap();
        assert_eq!(out[0], (4090u32 % 256) as u8);
        b.write(4095, &[1, 2, 3]).unwrap();
        b.read(4094, &mut out[..5]).unwrap();
        assert_eq!(
            out[..5],
            [(4094u32 % 256) as u8, 1, 2, 3, (4098u32 % 256) as u8]
        );
        b.set_len(5000).unwrap();
        b.set_len(9000).unwrap();
        b.read(4999, &mut out[..2]).unwrap();
        assert_eq!(out[..2], [(4999u32 % 256) as u8, 0]);
        assert!(b.read(8999, &mut out[..2]).is_err());
        let f = ScratchBackend::over_bytes(vec![0; 10]).fail_after(1);
        f.write(0, &[1]).unwrap();
        assert!(f.write(0, &[1]).is_err());
        assert!(f.sync_data().is_err());
        let shared = b.clone();
        b.write(0, &[9]).unwrap();
        assert_eq!(shared.contents().unwrap()[0], 9);
        assert_eq!(shared.contents().unwrap().len(), 9000);
    }
}
