//! The ANS-104 data item: binary layout, signature data, IDs, signing and verification
//! (spec §5.5.1–§5.5.2).

use bytes::{BufMut as _, Bytes};
use sha2::{Digest as _, Sha256};

use super::avro::{self, Tag};
use super::{Ans104Error, deep_hash};
use crate::crypto::{PssHash, eth};
use crate::util::b64u;
use crate::wallet::{EthWallet, Wallet};
use crate::{Error, Result};

/// Most tags a valid item may carry (checked on verification, as `ar_bundles` does).
pub const MAX_TAGS: usize = 128;
/// Longest tag name, in bytes.
pub const MAX_TAG_NAME: usize = 1024;
/// Longest tag value, in bytes.
pub const MAX_TAG_VALUE: usize = 3072;

/// The signature schemes this node reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureType {
    /// Type 1: Arweave RSA-4096, RSA-PSS with SHA-256 over the deep hash.
    Arweave,
    /// Type 3: Ethereum secp256k1, EIP-191 `personal_sign` over the deep hash.
    Ethereum,
}

impl SignatureType {
    /// From the 2-byte little-endian code.
    pub fn from_code(code: u16) -> Option<Self> {
        match code {
            1 => Some(Self::Arweave),
            3 => Some(Self::Ethereum),
            _ => None,
        }
    }

    /// The numeric code.
    pub const fn code(self) -> u16 {
        match self {
            Self::Arweave => 1,
            Self::Ethereum => 3,
        }
    }

    /// Signature length in bytes.
    pub const fn signature_len(self) -> usize {
        match self {
            Self::Arweave => 512,
            Self::Ethereum => eth::SIGNATURE_LEN,
        }
    }

    /// Owner (public key) length in bytes.
    pub const fn owner_len(self) -> usize {
        match self {
            Self::Arweave => 512,
            Self::Ethereum => eth::PUBLIC_KEY_LEN,
        }
    }
}

/// An ANS-104 data item.
///
/// An unsigned item has an all-zero signature and owner of its type's lengths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataItem {
    /// The signature scheme.
    pub signature_type: SignatureType,
    /// The signature (zeros when unsigned).
    pub signature: Bytes,
    /// The owner's public key (zeros when unsigned).
    pub owner: Bytes,
    /// The optional 32-byte target.
    pub target: Option<[u8; 32]>,
    /// The optional 32-byte anchor (`last_tx`).
    pub anchor: Option<[u8; 32]>,
    /// The tags, in order.
    pub tags: Vec<Tag>,
    /// The data.
    pub data: Bytes,
}

impl Default for DataItem {
    fn default() -> Self {
        Self::new(Vec::new(), Bytes::new())
    }
}

struct Cursor<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<Bytes, Ans104Error> {
        if self.buf.len() - self.pos < n {
            return Err(Ans104Error::Truncated(field));
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    fn u64_le(&mut self, field: &'static str) -> Result<u64, Ans104Error> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Ok(u64::from_le_bytes(a))
    }

    fn optional_id(&mut self, field: &'static str) -> Result<Option<[u8; 32]>, Ans104Error> {
        match self.take(1, field)?[0] {
            0 => Ok(None),
            1 => {
                let b = self.take(32, field)?;
                let mut id = [0u8; 32];
                id.copy_from_slice(&b);
                Ok(Some(id))
            }
            byte => Err(Ans104Error::BadPresenceByte { field, byte }),
        }
    }
}

impl DataItem {
    /// An unsigned Arweave-type item.
    pub fn new(tags: Vec<Tag>, data: impl Into<Bytes>) -> Self {
        let t = SignatureType::Arweave;
        Self {
            signature_type: t,
            signature: Bytes::from(vec![0u8; t.signature_len()]),
            owner: Bytes::from(vec![0u8; t.owner_len()]),
            target: None,
            anchor: None,
            tags,
            data: data.into(),
        }
    }

    /// Parses the binary form. Errors are typed; nothing is allocated in proportion to a length
    /// field the input does not back.
    pub fn parse(buf: &Bytes) -> Result<Self, Ans104Error> {
        let mut c = Cursor { buf, pos: 0 };
        let code = c.take(2, "signature type")?;
        let code = u16::from_le_bytes([code[0], code[1]]);
        let signature_type =
            SignatureType::from_code(code).ok_or(Ans104Error::UnknownSignatureType(code))?;
        let signature = c.take(signature_type.signature_len(), "signature")?;
        let owner = c.take(signature_type.owner_len(), "owner")?;
        let target = c.optional_id("target")?;
        let anchor = c.optional_id("anchor")?;
        let count = c.u64_le("tag count")?;
        let len = c.u64_le("tag bytes length")?;
        let remaining = buf.len() - c.pos;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= remaining)
            .ok_or(Ans104Error::AbsurdLength {
                field: "tag bytes",
                len,
            })?;
        let tag_bytes = c.take(len, "tags")?;
        let tags = avro::decode(&tag_bytes, count)?;
        let data = buf.slice(c.pos..);
        Ok(Self {
            signature_type,
            signature,
            owner,
            target,
            anchor,
            tags,
            data,
        })
    }

    /// Parses from a byte slice (copies it once).
    pub fn parse_slice(buf: &[u8]) -> Result<Self, Ans104Error> {
        Self::parse(&Bytes::copy_from_slice(buf))
    }

    /// The binary form.
    pub fn serialize(&self) -> Vec<u8> {
        let tags = avro::encode(&self.tags);
        let mut out = Vec::with_capacity(
            2 + self.signature.len() + self.owner.len() + 66 + 16 + tags.len() + self.data.len(),
        );
        out.put_u16_le(self.signature_type.code());
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&self.owner);
        for field in [&self.target, &self.anchor] {
            match field {
                Some(id) => {
                    out.push(1);
                    out.extend_from_slice(id);
                }
                None => out.push(0),
            }
        }
        out.put_u64_le(self.tags.len() as u64);
        out.put_u64_le(tags.len() as u64);
        out.extend_from_slice(&tags);
        out.extend_from_slice(&self.data);
        out
    }

    /// The Avro-encoded tags.
    pub fn tag_bytes(&self) -> Vec<u8> {
        avro::encode(&self.tags)
    }

    /// The 48-byte message that is signed: the deep hash of
    /// `["dataitem", "1", <type>, owner, target, anchor, tags, data]`.
    pub fn signature_data(&self) -> [u8; 48] {
        self.signature_data_with_owner(&self.owner)
    }

    fn signature_data_with_owner(&self, owner: &[u8]) -> [u8; 48] {
        let ty = self.signature_type.code().to_string();
        let tags = self.tag_bytes();
        deep_hash::list_of_blobs(&[
            b"dataitem",
            b"1",
            ty.as_bytes(),
            owner,
            self.target.as_ref().map_or(&[][..], |t| &t[..]),
            self.anchor.as_ref().map_or(&[][..], |a| &a[..]),
            &tags,
            &self.data,
        ])
    }

    /// Whether the item carries a (non-zero) signature.
    pub fn is_signed(&self) -> bool {
        self.signature.iter().any(|&b| b != 0)
    }

    /// The item ID, `sha256(signature)`; 32 zero bytes for an unsigned item (as HyperBEAM).
    pub fn id(&self) -> [u8; 32] {
        if self.is_signed() {
            Sha256::digest(&self.signature).into()
        } else {
            [0u8; 32]
        }
    }

    /// The unsigned ID: `sha256` of the signature data with an all-zero owner.
    pub fn unsigned_id(&self) -> [u8; 32] {
        let zeros = vec![0u8; self.signature_type.owner_len()];
        Sha256::digest(self.signature_data_with_owner(&zeros)).into()
    }

    /// The signer's address: `b64u(sha256(owner))` for Arweave keys, the EIP-55 address for
    /// Ethereum keys. `None` when unsigned.
    pub fn committer(&self) -> Option<String> {
        if !self.is_signed() {
            return None;
        }
        match self.signature_type {
            SignatureType::Arweave => Some(b64u(&Sha256::digest(&self.owner))),
            SignatureType::Ethereum => eth::address(&self.owner).ok(),
        }
    }

    /// Signs as type 1 with an RSA-4096 wallet (RSA-PSS-SHA256, salt 32).
    pub fn sign(&mut self, wallet: &Wallet) -> Result<()> {
        let owner = wallet.public_key().modulus().clone();
        if owner.len() != SignatureType::Arweave.owner_len() {
            return Err(Error::Wallet(format!(
                "ANS-104 type 1 needs an RSA-4096 key, this one has {} bytes",
                owner.len()
            )));
        }
        self.signature_type = SignatureType::Arweave;
        self.owner = owner;
        let sig = wallet.sign(PssHash::Sha256, &self.signature_data())?;
        self.signature = Bytes::from(sig);
        Ok(())
    }

    /// Signs as type 3 with a secp256k1 key.
    pub fn sign_eth(&mut self, wallet: &EthWallet) -> Result<()> {
        self.signature_type = SignatureType::Ethereum;
        self.owner = Bytes::from(wallet.public_key());
        let sig = wallet.sign(&self.signature_data())?;
        self.signature = Bytes::copy_from_slice(&sig);
        Ok(())
    }

    /// Verifies the signature (any PSS salt length for type 1) and the tag limits.
    pub fn verify(&self) -> Result<(), Ans104Error> {
        if !self.is_signed() {
            return Err(Ans104Error::Unsigned);
        }
        if self.tags.len() > MAX_TAGS
            || self
                .tags
                .iter()
                .any(|t| t.name.len() > MAX_TAG_NAME || t.value.len() > MAX_TAG_VALUE)
        {
            return Err(Ans104Error::TagLimits);
        }
        let data = self.signature_data();
        let ok = match self.signature_type {
            SignatureType::Arweave => crate::crypto::rsa::cached_key(&self.owner)
                .ok()
                .is_some_and(|k| {
                    k.verify_pss(PssHash::Sha256, &data, &self.signature)
                        .is_ok()
                }),
            SignatureType::Ethereum => {
                eth::verify_personal(&self.owner, &data, &self.signature).is_ok()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Ans104Error::BadSignature)
        }
    }
}
