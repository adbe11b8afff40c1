//! Cryptographic primitives for commitments (spec §4.6–§4.7, §5.5.2, §6).
//!
//! * [`pss`] — EMSA-PSS encoding and an any-salt-length verification (RFC 8017 §9.1), as
//!   HyperBEAM's `rsa_pss.erl` does it.
//! * [`rsa`] — RSA public keys with a fast public operation.
//! * [`eth`] — Keccak-256, EIP-55 addresses and EIP-191 secp256k1 signatures.

pub mod eth;
mod mont;
pub mod pss;
pub mod rsa;

/// The digest an RSA-PSS signature is made with (MGF1 uses the same one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PssHash {
    /// SHA-256: ANS-104 data items (signature type 1).
    Sha256,
    /// SHA-512: HTTP message signatures (`rsa-pss-sha512`).
    Sha512,
}

impl PssHash {
    /// The digest length in bytes (and HyperBEAM's salt length when signing).
    pub const fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// Hashes the concatenation of `parts`.
    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        use sha2::Digest;
        match self {
            Self::Sha256 => {
                let mut h = sha2::Sha256::new();
                for p in parts {
                    h.update(p);
                }
                h.finalize().to_vec()
            }
            Self::Sha512 => {
                let mut h = sha2::Sha512::new();
                for p in parts {
                    h.update(p);
                }
                h.finalize().to_vec()
            }
        }
    }
}
