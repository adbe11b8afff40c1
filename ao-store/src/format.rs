//! The on-disk format (documented byte by byte in `docs/store-format.md`).
//!
//! Every table maps bytes to bytes (`&[u8]` → `&[u8]`): redb would panic decoding a corrupt
//! `&str` or `u64`, so this crate validates and decodes them itself.
//!
//! * `entries`: UTF-8 path → a protobuf [`Record`]: inline bytes, a reference to a blob, a link
//!   or a group. One ordered table, so the children of a group are a range scan over `path/`.
//! * `recent` (since version 5): the same, for the records written since they were last merged
//!   into `entries`. A key in `recent` supersedes the same key in `entries`; checkpoints write
//!   here, into a tree a fraction of the size of `entries`, and a checkpoint merges the whole
//!   table into `entries` once it has grown to [`StoreConfig::recent_keys`](crate::StoreConfig)
//!   and a quarter of `entries`. IDs are hashes, so every checkpoint's keys land in random
//!   leaves: this way each leaf of the large tree is rewritten once per merge instead of once
//!   per checkpoint.
//! * `blobs`: 32-byte blake3 hash → the bytes of a binary at least
//!   [`StoreConfig::blob_threshold`](crate::StoreConfig::blob_threshold) long, stored once
//!   however many paths hold it.
//! * `blob-refs`: 32-byte blake3 hash → 8-byte little-endian `u64` count of the
//!   records that reference the blob. A blob is deleted when its count falls to zero.
//! * `main-filter`: the stored Bloom filter of the keys of `entries` (see
//!   [`crate::main_filter`]), written by each merge.
//! * `meta`: ASCII name → bytes. `format-version` is a 4-byte little-endian `u32`;
//!   `wal-applied` (since version 2) the 8-byte little-endian `u64` sequence number of the last
//!   write-ahead log record the database holds (see [`crate::wal`]); `content-overwritten`
//!   (since version 4, present only once it happens) marks that a content-addressed path was
//!   given other contents, so that the copies of [`Kind::Content`] records are no longer used.

use ao_core::store::Entry;
use bytes::Bytes;
use prost::Message as _;
use redb::TableDefinition;

use crate::error::ReadError;

/// The version of the format this build writes and reads.
pub const FORMAT_VERSION: u32 = 5;

/// The oldest format version this build opens (older stores are migrated when opened
/// read-write, and read as they are when opened read-only).
pub(crate) const OLDEST_FORMAT_VERSION: u32 = 1;

/// Path → record.
pub(crate) const ENTRIES: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("entries");
/// Path → record, for the records written since the last merge into `entries` (format 5): a
/// key here supersedes the same key there.
pub(crate) const RECENT: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("recent");
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
/// `meta` key present (value `01`) once a path the content-addressed copies rely on (`data`,
/// `data/<hash>` or below) was given an entry other than the binary its name is the hash of
/// (version 4).
pub(crate) const META_CONTENT_OVERWRITTEN: &[u8] = b"content-overwritten";
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
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4, 5, 6")]
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
    /// A group with its whole subtree inside the record (format 3): no key of `entries` starts
    /// with `<key>/`.
    #[prost(message, tag = "5")]
    Packed(Packed),
    /// A link to the content-addressed path of these bytes (`data/<b64u(sha256(bytes))>`,
    /// [`ao_core::cache::data_path`]) with a copy of the binary there (format 4; only inside a
    /// packed record). The writer stores it only after checking that the path holds exactly
    /// these bytes and `data` is a group; a later change of either sets the `meta` record
    /// `content-overwritten` in the same transaction, after which readers follow the link
    /// instead of using the copy.
    #[prost(bytes = "bytes", tag = "6")]
    Content(Bytes),
}

/// Binaries up to this long are copied into the packed records that link to them.
pub(crate) const CONTENT_COPY_LIMIT: usize = 1024;

/// Whether giving `path` the entry `entry` breaks the promise of [`Kind::Content`] records:
/// `data` becomes something other than a group, or `data/<name>` something other than the
/// binary whose data path it is, or a path below `data/<name>` is written.
pub(crate) fn overwrites_content(path: &str, entry: &Entry) -> bool {
    let Some(rest) = path.strip_prefix("data") else {
        return false;
    };
    if rest.is_empty() {
        return *entry != Entry::Group;
    }
    let Some(name) = rest.strip_prefix('/') else {
        return false;
    };
    if name.contains('/') {
        return true;
    }
    match entry {
        Entry::Binary(b) => ao_core::cache::data_path(b) != path,
        _ => true,
    }
}

/// A packed subtree: every entry below the record's key, by path relative to it.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Packed {
    /// Sorted by `path` (bytewise), without duplicates.
    #[prost(message, repeated, tag = "1")]
    pub(crate) entries: Vec<PackedEntry>,
}

/// One entry of a [`Packed`] subtree.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PackedEntry {
    /// The normalised path below the packed record's key (`a`, `a/b`, …).
    #[prost(string, tag = "1")]
    pub(crate) path: String,
    /// What it holds: a binary (inline or blob), a link or a group; never packed.
    #[prost(message, optional, tag = "2")]
    pub(crate) record: Option<Record>,
}

impl Packed {
    /// The record at `rel` (a path relative to the packed key).
    pub(crate) fn find(&self, rel: &str) -> Option<&Record> {
        self.entries
            .binary_search_by(|e| e.path.as_bytes().cmp(rel.as_bytes()))
            .ok()
            .and_then(|i| self.entries[i].record.as_ref())
    }

    /// The direct children of `rel` (`""`: of the packed key itself) with their records, in
    /// name order.
    pub(crate) fn children<'p>(
        &'p self,
        rel: &str,
    ) -> impl Iterator<Item = (&'p str, &'p Record)> + 'p {
        let prefix = if rel.is_empty() {
            String::new()
        } else {
            format!("{rel}/")
        };
        self.entries.iter().filter_map(move |e| {
            let name = e.path.strip_prefix(prefix.as_str())?;
            if name.is_empty() || name.contains('/') {
                return None;
            }
            Some((name, e.record.as_ref()?))
        })
    }

    /// Every (relative path, record), in path order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Record)> {
        self.entries
            .iter()
            .filter_map(|e| Some((e.path.as_str(), e.record.as_ref()?)))
    }
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

    /// A packed subtree of (relative path, record) entries, sorted by path.
    pub(crate) fn packed(entries: Vec<(String, Record)>) -> Self {
        Self {
            kind: Some(Kind::Packed(Packed {
                entries: entries
                    .into_iter()
                    .map(|(path, record)| PackedEntry {
                        path,
                        record: Some(record),
                    })
                    .collect(),
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
        rec.validate(false).map_err(corrupt)?;
        Ok(rec)
    }

    /// Checks what decoding alone does not: a kind, 32-byte blob hashes, and for a packed
    /// record entries that are well formed, sorted and not themselves packed.
    fn validate(&self, inside_packed: bool) -> Result<(), String> {
        match &self.kind {
            None => Err("record of no known kind".into()),
            Some(Kind::Blob(b)) if b.hash.len() != HASH_LEN => {
                Err(format!("blob hash of {} bytes", b.hash.len()))
            }
            Some(Kind::Packed(_)) if inside_packed => Err("a packed record inside another".into()),
            Some(Kind::Content(_)) if !inside_packed => {
                Err("a content link outside a packed record".into())
            }
            Some(Kind::Packed(p)) => {
                let mut prev: Option<&str> = None;
                for e in &p.entries {
                    if e.path.is_empty() || e.path.split('/').any(str::is_empty) {
                        return Err(format!(
                            "packed entry {:?} is not a normalised path",
                            e.path
                        ));
                    }
                    if prev.is_some_and(|q| q.as_bytes() >= e.path.as_bytes()) {
                        return Err(format!("packed entry {:?} is out of order", e.path));
                    }
                    prev = Some(&e.path);
                    let Some(r) = &e.record else {
                        return Err(format!("packed entry {:?} has no record", e.path));
                    };
                    r.validate(true)
                        .map_err(|reason| format!("packed entry {:?}: {reason}", e.path))?;
                }
                Ok(())
            }
            Some(_) => Ok(()),
        }
    }

    /// The blob this record references, if any.
    pub(crate) fn blob_hash(&self) -> Option<[u8; HASH_LEN]> {
        match &self.kind {
            Some(Kind::Blob(b)) => b.hash.as_slice().try_into().ok(),
            _ => None,
        }
    }

    /// A content-addressed link with a copy of its target's bytes.
    pub(crate) fn content(value: Bytes) -> Self {
        Self {
            kind: Some(Kind::Content(value)),
        }
    }

    /// The packed subtree, if this is a packed record.
    pub(crate) fn as_packed(&self) -> Option<&Packed> {
        match &self.kind {
            Some(Kind::Packed(p)) => Some(p),
            _ => None,
        }
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
            Some(Kind::Content(b)) => Entry::Link(ao_core::cache::data_path(&b)),
            Some(Kind::Group(_) | Kind::Packed(_)) => Entry::Group,
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
        assert_eq!(encode_version(3), [3, 0, 0, 0]);
        // A packed message: `I` = group {a: link to "d", b: {c: "x"}}.
        let packed = Record::packed(vec![
            ("a".into(), Record::link("d".into())),
            ("b".into(), Record::group()),
            ("b/c".into(), Record::inline(Bytes::from_static(b"x"))),
        ]);
        let bytes = packed.encode();
        assert_eq!(
            bytes,
            [
                0x2a, 0x1f, // field 5 (packed), 31 bytes
                0x0a, 0x08, 0x0a, 0x01, b'a', 0x12, 0x03, 0x1a, 0x01, b'd', // a → link "d"
                0x0a, 0x07, 0x0a, 0x01, b'b', 0x12, 0x02, 0x22, 0x00, // b → group
                0x0a, 0x0a, 0x0a, 0x03, b'b', b'/', b'c', 0x12, 0x03, 0x0a, 0x01, b'x', // b/c
            ]
        );
        let decoded = Record::decode_at("I", &bytes).unwrap();
        let p = decoded.as_packed().unwrap();
        assert_eq!(
            p.find("b/c"),
            Some(&Record::inline(Bytes::from_static(b"x")))
        );
        assert_eq!(p.find("c"), None);
        let top: Vec<_> = p.children("").map(|(n, _)| n).collect();
        assert_eq!(top, ["a", "b"]);
        let below: Vec<_> = p.children("b").map(|(n, _)| n).collect();
        assert_eq!(below, ["c"]);
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
            // packed: an entry without a record; entries out of order; a packed entry inside.
            &[0x2a, 0x05, 0x0a, 0x03, 0x0a, 0x01, b'a'],
            &[
                0x2a, 0x12, 0x0a, 0x07, 0x0a, 0x01, b'b', 0x12, 0x02, 0x22, 0x00, 0x0a, 0x07, 0x0a,
                0x01, b'a', 0x12, 0x02, 0x22, 0x00,
            ],
            &[
                0x2a, 0x09, 0x0a, 0x07, 0x0a, 0x01, b'a', 0x12, 0x02, 0x2a, 0x00,
            ],
        ] {
            assert!(Record::decode_at("k", bad).is_err(), "{bad:?}");
        }
    }
}
