//! RSA public keys and RSA-PSS verification with any salt length.

use ::rsa::BigUint;
use ::rsa::traits::PublicKeyParts as _;
use bytes::Bytes;

use super::{PssHash, pss};
use crate::util::b64u;

/// The public exponent every Arweave key uses.
pub const PUBLIC_EXPONENT: u32 = 65537;

/// Smallest modulus accepted for verification, in bits.
pub const MIN_MODULUS_BITS: usize = 1024;

/// Largest modulus accepted for verification, in bits (bounds the work an attacker can cause).
pub const MAX_MODULUS_BITS: usize = 8192;

/// An RSA public key as Arweave and HyperBEAM use it: the modulus `n` (its big-endian bytes are
/// the ANS-104 `owner` and, base64url-encoded, the httpsig `keyid`) and `e = 65537`.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    n_bytes: Bytes,
    n: BigUint,
    e: BigUint,
    e_u64: u64,
    mont: super::mont::Modulus,
}

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RsaPublicKey({} bits, {})",
            self.bits(),
            self.address_string()
        )
    }
}

/// Why an RSA key or signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RsaError {
    /// The modulus is too short, too long or even.
    #[error("unusable RSA modulus ({0} bits)")]
    BadModulus(usize),
    /// The signature is not as long as the modulus.
    #[error("signature is {got} bytes, the modulus {want}")]
    SignatureLength {
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        want: usize,
    },
    /// The signature does not verify.
    #[error("RSA-PSS signature does not verify")]
    BadSignature,
}

impl RsaPublicKey {
    /// A key from the big-endian modulus (leading zero bytes are ignored) and `e = 65537`.
    pub fn from_modulus(n: &[u8]) -> Result<Self, RsaError> {
        Self::from_components(n, &PUBLIC_EXPONENT.to_be_bytes())
    }

    /// A key from big-endian `n` and `e`.
    pub fn from_components(n: &[u8], e: &[u8]) -> Result<Self, RsaError> {
        let start = n.iter().position(|&b| b != 0).unwrap_or(n.len());
        let n_trimmed = &n[start..];
        let bits = bit_len(n_trimmed);
        if !(MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&bits)
            || n_trimmed.last().is_none_or(|b| b & 1 == 0)
        {
            return Err(RsaError::BadModulus(bits));
        }
        let e_start = e.iter().position(|&b| b != 0).unwrap_or(e.len());
        let e_bytes = &e[e_start..];
        if e_bytes.len() > 4 {
            return Err(RsaError::BadModulus(bits));
        }
        let e_u64 = e_bytes.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        if e_u64 < 3 || e_u64 & 1 == 0 {
            return Err(RsaError::BadModulus(bits));
        }
        let e = BigUint::from(e_u64);
        let n = BigUint::from_bytes_be(n_trimmed);
        let mont = super::mont::Modulus::new(&n).ok_or(RsaError::BadModulus(bits))?;
        Ok(Self {
            n_bytes: Bytes::copy_from_slice(n_trimmed),
            n,
            e,
            e_u64,
            mont,
        })
    }

    /// From an `rsa` crate key.
    pub fn from_rsa(key: &::rsa::RsaPublicKey) -> Result<Self, RsaError> {
        Self::from_components(&key.n().to_bytes_be(), &key.e().to_bytes_be())
    }

    /// The modulus, big-endian without leading zeros (512 bytes for RSA-4096).
    pub fn modulus(&self) -> &Bytes {
        &self.n_bytes
    }

    /// The public exponent.
    pub fn exponent(&self) -> &BigUint {
        &self.e
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        bit_len(&self.n_bytes)
    }

    /// The Arweave address: `sha256(n)`.
    pub fn address(&self) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::digest(&self.n_bytes).into()
    }

    /// The address in its 43-character base64url form.
    pub fn address_string(&self) -> String {
        b64u(&self.address())
    }

    /// The raw public operation `s^e mod n`, left-padded to `em_len` bytes. `None` when the
    /// signature is not smaller than `n` or the result does not fit.
    fn public_op(&self, sig: &[u8], em_len: usize) -> Option<Vec<u8>> {
        let s = BigUint::from_bytes_be(sig);
        if s >= self.n {
            return None;
        }
        self.mont.pow(&s, self.e_u64, em_len)
    }

    /// Verifies an RSASSA-PSS signature of `message` (hashed with `hash`, MGF1 with the same
    /// hash) whatever its salt length. Returns the salt length.
    pub fn verify_pss(&self, hash: PssHash, message: &[u8], sig: &[u8]) -> Result<usize, RsaError> {
        if let Some(salt) = self.verify_pss_standard_salt(hash, message, sig) {
            return Ok(salt);
        }
        self.verify_pss_digest(hash, &hash.digest(&[message]), sig)
    }

    /// The fast path of [`RsaPublicKey::verify_pss`]: `ring`'s verification (its public
    /// operation is several times faster than [`super::mont`]), which accepts only a salt as
    /// long as the digest (how Arweave wallets, aoconnect and HyperBEAM sign) and 2048–8192-bit
    /// keys. `None` when it does not accept: the any-salt path decides.
    fn verify_pss_standard_salt(&self, hash: PssHash, message: &[u8], sig: &[u8]) -> Option<usize> {
        use ring::signature::{
            RSA_PSS_2048_8192_SHA256, RSA_PSS_2048_8192_SHA512, RsaPublicKeyComponents,
        };
        if !(2048..=8192).contains(&self.bits()) {
            return None;
        }
        let alg = match hash {
            PssHash::Sha256 => &RSA_PSS_2048_8192_SHA256,
            PssHash::Sha512 => &RSA_PSS_2048_8192_SHA512,
        };
        let e = self.e_u64.to_be_bytes();
        let e = &e[e.iter().position(|&b| b != 0)?..];
        RsaPublicKeyComponents {
            n: &self.n_bytes[..],
            e,
        }
        .verify(alg, message, sig)
        .ok()?;
        Some(hash.output_len())
    }

    /// [`RsaPublicKey::verify_pss`] given `Hash(message)`.
    pub fn verify_pss_digest(
        &self,
        hash: PssHash,
        m_hash: &[u8],
        sig: &[u8],
    ) -> Result<usize, RsaError> {
        let k = self.n_bytes.len();
        if sig.len() != k {
            return Err(RsaError::SignatureLength {
                got: sig.len(),
                want: k,
            });
        }
        let em_bits = self.bits() - 1;
        let em = self
            .public_op(sig, em_bits.div_ceil(8))
            .ok_or(RsaError::BadSignature)?;
        pss::verify_any_salt(hash, m_hash, &em, em_bits).ok_or(RsaError::BadSignature)
    }
}

/// Keys kept by [`cached_key`] before the cache is emptied.
const KEY_CACHE_SIZE: usize = 512;

/// A key for modulus `n` (with `e = 65537`), from a small process-wide cache: preparing a
/// 4096-bit modulus for Montgomery arithmetic costs about as much as a fifth of a
/// verification, and requests are usually signed by a few keys.
pub fn cached_key(n: &[u8]) -> Result<std::sync::Arc<RsaPublicKey>, RsaError> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<Bytes, Arc<RsaPublicKey>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Ok(map) = cache.lock()
        && let Some(k) = map.get(n)
    {
        return Ok(k.clone());
    }
    let key = Arc::new(RsaPublicKey::from_modulus(n)?);
    if let Ok(mut map) = cache.lock() {
        if map.len() >= KEY_CACHE_SIZE {
            map.clear();
        }
        map.insert(Bytes::copy_from_slice(n), key.clone());
    }
    Ok(key)
}

fn bit_len(be: &[u8]) -> usize {
    match be.iter().position(|&b| b != 0) {
        Some(i) => (be.len() - i) * 8 - be[i].leading_zeros() as usize,
        None => 0,
    }
}
