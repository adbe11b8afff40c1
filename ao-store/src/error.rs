//! Errors: one enum per kind of operation, and the superset [`Error`].
//!
//! Every error that concerns the store file names it, and every open error says what the
//! operator can do about it. Nothing here is ever "fixed" silently: a store that cannot be opened
//! as it is stays exactly as it was.

use std::path::PathBuf;
use std::sync::Arc;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a store file could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// There is no store file (only when opening an existing store: read-only, or for an
    /// operator command).
    #[error("no store at {}: check --data-dir (a node creates the store on first start)", path.display())]
    Missing {
        /// The store file.
        path: PathBuf,
    },
    /// Another process (or this one) holds the store open.
    #[error(
        "store {} is locked by another process: stop the node using this data directory first",
        path.display()
    )]
    Locked {
        /// The store file.
        path: PathBuf,
    },
    /// The file is not a readable redb database, or its records do not decode.
    #[error("store {} is corrupt: {reason} (left untouched; restore it from a backup)", path.display())]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A valid redb database that is not an ao-store (no format-version record).
    #[error("{} is a redb database but not an ao-store: {reason} (left untouched)", path.display())]
    NotAStore {
        /// The store file.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The store was written by a newer ao-store.
    #[error(
        "store {} has format version {found}, newer than the {supported} this node understands: upgrade the node",
        path.display()
    )]
    NewerFormat {
        /// The store file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The redb file format of the store is one this redb cannot open.
    #[error(
        "store {} uses redb file format {found}, which this build cannot open: migrate it with the redb release that wrote it",
        path.display()
    )]
    RedbFormat {
        /// The store file.
        path: PathBuf,
        /// The redb file format version found.
        found: u8,
    },
    /// The store was not closed cleanly and a read-only open cannot recover it.
    #[error(
        "store {} was not closed cleanly: open it read-write once (start the node, or run `store compact`) to recover it",
        path.display()
    )]
    NeedsRecovery {
        /// The store file.
        path: PathBuf,
    },
    /// An I/O error reading or creating the file.
    #[error("cannot open store {}: {source}", path.display())]
    Io {
        /// The store file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Any other failure inside redb while opening.
    #[error("cannot open store {}: {source}", path.display())]
    Storage {
        /// The store file.
        path: PathBuf,
        /// redb's error.
        #[source]
        source: redb::Error,
    },
}

impl OpenError {
    /// The store file the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Self::Missing { path }
            | Self::Locked { path }
            | Self::Corrupt { path, .. }
            | Self::NotAStore { path, .. }
            | Self::NewerFormat { path, .. }
            | Self::RedbFormat { path, .. }
            | Self::NeedsRecovery { path }
            | Self::Io { path, .. }
            | Self::Storage { path, .. } => path,
        }
    }

    /// Classifies one of redb's open errors.
    pub(crate) fn from_redb(path: &std::path::Path, err: redb::DatabaseError) -> Self {
        let path = path.to_path_buf();
        match err {
            redb::DatabaseError::DatabaseAlreadyOpen
            | redb::DatabaseError::LockProtocolMismatch => Self::Locked { path },
            redb::DatabaseError::RepairAborted => Self::NeedsRecovery { path },
            redb::DatabaseError::UpgradeRequired(found) => Self::RedbFormat { path, found },
            redb::DatabaseError::Storage(redb::StorageError::Corrupted(reason)) => {
                Self::Corrupt { path, reason }
            }
            redb::DatabaseError::Storage(redb::StorageError::Io(source)) => {
                if source.kind() == std::io::ErrorKind::NotFound {
                    Self::Missing { path }
                } else if source.kind() == std::io::ErrorKind::UnexpectedEof {
                    // A file shorter than its header claims.
                    Self::Corrupt {
                        path,
                        reason: format!("truncated file ({source})"),
                    }
                } else if source.kind() == std::io::ErrorKind::InvalidData {
                    // redb's "Not a redb database: magic number mismatch", and the like.
                    Self::Corrupt {
                        path,
                        reason: source.to_string(),
                    }
                } else {
                    Self::Io { path, source }
                }
            }
            other => Self::Storage {
                path,
                source: other.into(),
            },
        }
    }

    /// Classifies a redb error met while reading the store's own tables during open.
    pub(crate) fn from_storage(path: &std::path::Path, err: impl Into<redb::Error>) -> Self {
        let path = path.to_path_buf();
        match err.into() {
            redb::Error::Corrupted(reason) => Self::Corrupt { path, reason },
            // Only asked for after the meta table was found: a store table is missing.
            redb::Error::TableDoesNotExist(table) => Self::Corrupt {
                path,
                reason: format!("table {table:?} is missing"),
            },
            redb::Error::TableTypeMismatch { table, .. }
            | redb::Error::TableIsMultimap(table)
            | redb::Error::TableIsNotMultimap(table) => Self::NotAStore {
                path,
                reason: format!("table {table:?} has an unexpected type"),
            },
            source => Self::Storage { path, source },
        }
    }
}

/// A failed read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The store has been closed.
    #[error("the store is closed")]
    Closed,
    /// A record does not decode: the file was altered outside redb, or a bug wrote it.
    #[error("corrupt record at {key:?}: {reason}")]
    Corrupt {
        /// The key of the record.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// redb failed.
    #[error("read failed: {0}")]
    Storage(#[from] redb::Error),
}

/// A failed write (a batch passed to [`ao_core::Store::apply`], or a flush).
///
/// A batch that fails is not committed. Cloneable because one group commit answers many callers.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The batch is invalid (checked before anything is written).
    #[error("invalid write: {0}")]
    Invalid(String),
    /// The store was opened read-only.
    #[error("the store is open read-only")]
    ReadOnly,
    /// The store has been closed (or its writer stopped after an earlier failure).
    #[error("the store is closed")]
    Closed,
    /// A record read back during the write does not decode.
    #[error("corrupt record at {key:?}: {reason}")]
    Corrupt {
        /// The key of the record.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// redb failed to write or commit; nothing of the batch is committed.
    #[error("commit failed: {0}")]
    Storage(Arc<redb::Error>),
    /// Writing or syncing the write-ahead log failed; the batch is not committed.
    #[error("write-ahead log {} failed: {source}", path.display())]
    Log {
        /// The log file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: Arc<std::io::Error>,
    },
}

impl WriteError {
    pub(crate) fn storage(err: impl Into<redb::Error>) -> Self {
        Self::Storage(Arc::new(err.into()))
    }
}

impl From<ReadError> for WriteError {
    fn from(err: ReadError) -> Self {
        match err {
            ReadError::Closed => Self::Closed,
            ReadError::Corrupt { key, reason } => Self::Corrupt { key, reason },
            ReadError::Storage(e) => Self::Storage(Arc::new(e)),
        }
    }
}

/// A failed compaction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompactError {
    /// The store could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// redb's compaction failed; the file is still a valid store.
    #[error("compaction of {} failed: {source}", path.display())]
    Compaction {
        /// The store file.
        path: PathBuf,
        /// redb's error.
        #[source]
        source: redb::Error,
    },
}

/// Any ao-store error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Opening.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Reading.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Writing.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Compacting.
    #[error(transparent)]
    Compact(#[from] CompactError),
    /// An error from the protocol layer (decoding a stored message).
    #[error(transparent)]
    Core(#[from] ao_core::Error),
}

/// Renders an error with its chain of sources.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl From<ReadError> for ao_core::Error {
    fn from(err: ReadError) -> Self {
        Self::Store(chain(&err))
    }
}

impl From<WriteError> for ao_core::Error {
    fn from(err: WriteError) -> Self {
        Self::Store(chain(&err))
    }
}

impl From<OpenError> for ao_core::Error {
    fn from(err: OpenError) -> Self {
        Self::Store(chain(&err))
    }
}

impl From<Error> for ao_core::Error {
    fn from(err: Error) -> Self {
        match err {
            Error::Core(e) => e,
            other => Self::Store(chain(&other)),
        }
    }
}
