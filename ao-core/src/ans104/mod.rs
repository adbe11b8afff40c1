//! `ans104@1.0`: ANS-104 data items and their conversion to and from messages (spec §5.5).
//!
//! * [`item`] — the binary layout, signature data, IDs, signing and verification.
//! * [`avro`] — tags in Avro form.
//! * [`deep_hash`] — Arweave's deep hash.
//! * [`codec`] — item ⇄ TABM, including HyperBEAM's nested bundles.

pub mod avro;
pub mod codec;
pub mod deep_hash;
pub mod item;

pub use avro::Tag;
pub use codec::{commit, commit_eth, decode, encode, from_item, to_item, verify_commitment};
pub use item::{DataItem, SignatureType};

/// The commitment device name.
pub const DEVICE: &str = "ans104@1.0";

/// The content type of serialised items.
pub const CONTENT_TYPE: &str = "application/ans104";

/// Why bytes are not a valid data item, or an item cannot be converted or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Ans104Error {
    /// The input ends inside a field.
    #[error("truncated in {0}")]
    Truncated(&'static str),
    /// A signature type this node does not know.
    #[error("unknown signature type {0}")]
    UnknownSignatureType(u16),
    /// A target or anchor presence byte other than 0 or 1.
    #[error("presence byte of {field} is {byte}, not 0 or 1")]
    BadPresenceByte {
        /// The field.
        field: &'static str,
        /// The byte found.
        byte: u8,
    },
    /// A length field larger than the input (or negative).
    #[error("{field} length {len} exceeds the input")]
    AbsurdLength {
        /// The field.
        field: &'static str,
        /// The length claimed.
        len: u64,
    },
    /// The tag count in the header disagrees with the Avro data.
    #[error("header declares {declared} tags, the tag bytes hold {found}")]
    TagCountMismatch {
        /// Declared in the header.
        declared: u64,
        /// Found (or at least found) in the Avro data.
        found: u64,
    },
    /// Bytes left over after the Avro tag array.
    #[error("{0} bytes after the tag array")]
    TrailingTagBytes(usize),
    /// A malformed Avro varint.
    #[error("malformed varint in tags")]
    BadVarint,
    /// More than 128 tags, or a name over 1024 or a value over 3072 bytes.
    #[error("tags exceed the ANS-104 limits")]
    TagLimits,
    /// The item is not signed.
    #[error("the item is not signed")]
    Unsigned,
    /// The signature does not verify.
    #[error("the item's signature does not verify")]
    BadSignature,
    /// A malformed HyperBEAM bundle in the data.
    #[error("malformed bundle: {0}")]
    Bundle(String),
    /// A message this codec cannot express as an item.
    #[error("cannot encode as ANS-104: {0}")]
    Unencodable(String),
}
