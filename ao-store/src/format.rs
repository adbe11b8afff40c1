//! The on-disk format (documented byte by byte in `docs/store-format.md`).
//!
//! Every table maps bytes to bytes (`&[u8]` → `&[u8]`): redb would panic decoding a corrupt
//! `&str` or `u64`, so this crate validates and decodes them itself.
//!
//! * `entries`: UTF-8 path → a protobuf [`Record`]: inline bytes, a reference to a blob, a link
//!   or a group. One ordered table, so the children of a group are a range scan over `path/`.
//! * `blobs`: 32-byte blake3 hash → the bytes of a binary at least
//!   [`StoreConfig::blob_threshold`](crate::StoreConfig::blob_threshold) long, stored once
//!   however many paths hold it.
//! * `blob-refs`: 32-byte blake3 hash → 8-byte little-endian `u64` count of the
//!   records that reference the blob. A blob is deleted when its count falls to zero.
//! * `meta`: ASCII name → bytes. `format-version` is a 4-byte little-endian `u32`;
//!   `wal-applied` (since version 2) the 8-byte little-endian `u64` sequence number of the last
//!   write-ahead log record the database holds (see [`crate::wal`]).

use ao_core::store::Entry;
use bytes::Bytes;
use prost::Message as _;
use redb::TableDefinition;

use crate::error::ReadError;

/// The version of the format this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest format version this build opens (older stores are migrated when opened
/// read-write, and read as they are when opened read-only).
pub(crate) const OLDEST_FORMAT_VERSION: u32 = 1;

/// Path → record.
pub(crate) const ENTRIES: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("entries");
/// blake3 → blob bytes.
pub(crate) const BLOBS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("blobs");
/// blake3 → reference count.
pub(crate) const BLOB_REFS: TableDefinition<'static, &[u8], &[u8]> =
    TableDefinition::new("blob-refs");
/// Store metadata.
pub(crate) const META: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("meta");

/// `meta` key of the format version.
pub(crate) const META_FORMAT_VERSION: &[u8] = b"format-version";
/// `meta` key of the sequence number of the last write-ahead log record applied (version 2).
pub(crate) const META_WAL_APPLIED: &[u8] = b"wal-applied";
/// `meta` key naming the software that created the store (informational).
pub(crate) const META_CREATED_BY: &[u8] = b"created-by";

/// Length of a blob hash.
pub(crate) const HASH_LEN: usize = 32;

/// Encodes the format version as stored in `meta`.
pub(crate) fn encode_version(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

/// Encodes a blob reference count.
pub(crate) fn encode_count(n: u64) -> [u8; 8] {
    n.to_le_bytes()
}

/// Encodes a log sequence number (`wal-applied`).
pub(crate) fn encode_seq(n: u64) -> [u8; 8] {
    n.to_le_bytes()
}

/// Decodes a log sequence number.
pub(crate) fn decode_seq(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// Decodes a blob reference count.
pub(crate) fn decode_count(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// A stored key as a path.
pub(crate) fn key_str(key: &[u8]) -> Result<&str, ReadError> {
    std::str::from_utf8(key).map_err(|_| ReadError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: "key is not UTF-8".into(),
    })
}

/// Decodes the stored format version.
pub(crate) fn decode_version(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// One record of the `entries` table.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Record {
    /// What the path holds.
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4")]
    pub(crate) kind: Option<Kind>,
}

/// The kinds of record.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum Kind {
    /// A binary stored in the record itself.
    #[prost(bytes = "bytes", tag = "1")]
    Inline(Bytes),
    /// A binary stored in the `blobs` table.
    #[prost(message, tag = "2")]
    Blob(BlobRef),
    /// A link to another path.
    #[prost(string, tag = "3")]
    Link(String),
    /// A group.
    #[prost(message, tag = "4")]
    Group(GroupMarker),
}

/// A reference to a blob.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct BlobRef {
    /// blake3 of the bytes (32 bytes).
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) hash: Vec<u8>,
    /// Length of the bytes.
    #[prost(uint64, tag = "2")]
    pub(crate) len: u64,
}

/// A group has no payload: its children are the keys below it.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GroupMarker {}

impl Record {
    pub(crate) fn group() -> Self {
        Self {
            kind: Some(Kind::Group(GroupMarker {})),
        }
    }

    pub(crate) fn link(target: String) -> Self {
        Self {
            kind: Some(Kind::Link(target)),
        }
    }

    pub(crate) fn inline(value: Bytes) -> Self {
        Self {
            kind: Some(Kind::Inline(value)),
        }
    }

    pub(crate) fn blob(hash: [u8; HASH_LEN], len: u64) -> Self {
        Self {
            kind: Some(Kind::Blob(BlobRef {
                hash: hash.to_vec(),
                len,
            })),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// Decodes and validates a record.
    pub(crate) fn decode_at(key: &str, bytes: &[u8]) -> Result<Self, ReadError> {
        let corrupt = |reason: String| ReadError::Corrupt {
            key: key.to_owned(),
            reason,
        };
        let rec = Self::decode(bytes).map_err(|e| corrupt(format!("undecodable record: {e}")))?;
        match &rec.kind {
            None => Err(corrupt("record of no known kind".into())),
            Some(Kind::Blob(b)) if b.hash.len() != HASH_LEN => {
                Err(corrupt(format!("blob hash of {} bytes", b.hash.len())))
            }
            Some(_) => Ok(rec),
        }
    }

    /// The blob this record references, if any.
    pub(crate) fn blob_hash(&self) -> Option<[u8; HASH_LEN]> {
        match &self.kind {
            Some(Kind::Blob(b)) => b.hash.as_slice().try_into().ok(),
            _ => None,
        }
    }

    pub(crate) fn is_group(&self) -> bool {
        matches!(self.kind, Some(Kind::Group(_)))
    }

    pub(crate) fn is_link(&self) -> bool {
        matches!(self.kind, Some(Kind::Link(_)))
    }

    /// The entry this record describes; `blob` fetches a blob's bytes.
    pub(crate) fn into_entry(
        self,
        key: &str,
        blob: impl FnOnce(&[u8; HASH_LEN]) -> Result<Option<Bytes>, ReadError>,
    ) -> Result<Entry, ReadError> {
        Ok(match self.kind {
            Some(Kind::Inline(b)) => Entry::Binary(b),
            Some(Kind::Link(t)) => Entry::Link(t),
            Some(Kind::Group(_)) => Entry::Group,
            Some(Kind::Blob(r)) => {
                let hash: [u8; HASH_LEN] =
                    r.hash
                        .as_slice()
                        .try_into()
                        .map_err(|_| ReadError::Corrupt {
                            key: key.to_owned(),
                            reason: "bad blob hash".into(),
                        })?;
                let bytes = blob(&hash)?.ok_or_else(|| ReadError::Corrupt {
                    key: key.to_owned(),
                    reason: format!("missing blob {}", hex(&hash)),
                })?;
                if bytes.len() as u64 != r.len {
                    return Err(ReadError::Corrupt {
                        key: key.to_owned(),
                        reason: format!(
                            "blob {} is {} bytes, the record says {}",
                            hex(&hash),
                            bytes.len(),
                            r.len
                        ),
                    });
                }
                Entry::Binary(bytes)
            }
            None => {
                return Err(ReadError::Corrupt {
                    key: key.to_owned(),
                    reason: "record of no known kind".into(),
                });
            }
        })
    }
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte layouts promised by docs/store-format.md.
    #[test]
    fn records_encode_as_documented() {
        assert_eq!(Record::group().encode(), [0x22, 0x00]);
        assert_eq!(
            Record::inline(Bytes::from_static(b"hi")).encode(),
            [0x0a, 0x02, b'h', b'i']
        );
        assert_eq!(Record::inline(Bytes::new()).encode(), [0x0a, 0x00]);
        assert_eq!(
            Record::link("a/b".into()).encode(),
            [0x1a, 0x03, b'a', b'/', b'b']
        );
        let blob = Record::blob([7; 32], 300).encode();
        let mut expected = vec![0x12, 37, 0x0a, 32];
        expected.extend([7; 32]);
        expected.extend([0x10, 0xac, 0x02]);
        assert_eq!(blob, expected);
        assert_eq!(encode_version(2), [2, 0, 0, 0]);
        assert_eq!(encode_seq(258), [2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode_seq(&[2, 1, 0, 0, 0, 0, 0, 0]), Some(258));
        assert_eq!(decode_version(&[1, 0, 0, 0]), Some(1));
        assert_eq!(decode_version(&[1, 0, 0]), None);
    }

    #[test]
    fn garbage_records_are_errors() {
        for bad in [
            &[][..],
            &[0xff],
            &[0x0a, 0x05, 1],
            &[0x12, 0x02, 0x0a, 0x00],
        ] {
            assert!(Record::decode_at("k", bad).is_err(), "{bad:?}");
        }
    }
}
