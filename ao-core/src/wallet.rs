//! Signing keys (spec §6): Arweave RSA-4096 JWK wallets and secp256k1 (Ethereum) keys.
//!
//! An Arweave wallet signs with RSA-PSS (SHA-512 for HTTP message signatures, SHA-256 for
//! ANS-104 data items) with a salt as long as the digest, as HyperBEAM does. Signing goes
//! through `ring` when it accepts the key (several times faster than the `rsa` crate on
//! RSA-4096), otherwise through the `rsa` crate.

use std::fmt;
use std::path::Path;

use ::rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};
use ::rsa::{BigUint, Pss, RsaPrivateKey};
use k256::ecdsa::SigningKey;
use rand::rngs::OsRng;
use serde_json::{Map, Value as Json};

use crate::crypto::rsa::RsaPublicKey;
use crate::crypto::{PssHash, eth};
use crate::util::{b64u, b64u_decode};
use crate::{Error, Result};

/// The modulus size of new wallets.
pub const RSA_BITS: usize = 4096;

/// Which implementation makes RSA signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningBackend {
    /// `ring` (assembly Montgomery arithmetic; the default when it accepts the key).
    Ring,
    /// The pure-Rust `rsa` crate.
    RustCrypto,
}

/// An Arweave wallet: an RSA key pair, normally 4096 bits with `e = 65537`.
pub struct Wallet {
    public: RsaPublicKey,
    private: RsaPrivateKey,
    ring: Option<ring::rsa::KeyPair>,
    backend: SigningBackend,
}

impl fmt::Debug for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wallet")
            .field("address", &self.address_string())
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

fn wallet_err(reason: impl Into<String>) -> Error {
    Error::Wallet(reason.into())
}

impl Wallet {
    /// Generates a new RSA-4096 wallet (takes a few seconds).
    pub fn generate() -> Result<Self> {
        let key = RsaPrivateKey::new(&mut OsRng, RSA_BITS)
            .map_err(|e| wallet_err(format!("key generation failed: {e}")))?;
        Self::from_private(key)
    }

    /// Loads a JWK (`kty: RSA`; `n`, `e`, `d` required; `p`, `q` recovered when absent, as
    /// HyperBEAM only reads `n` and `d`).
    pub fn from_jwk(json: &[u8]) -> Result<Self> {
        let jwk: Json = serde_json::from_slice(json)
            .map_err(|e| wallet_err(format!("JWK is not JSON: {e}")))?;
        let field = |name: &str| -> Result<Option<BigUint>> {
            match jwk.get(name) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) => b64u_decode(s.as_bytes())
                    .map(|b| Some(BigUint::from_bytes_be(&b)))
                    .ok_or_else(|| wallet_err(format!("JWK field {name:?} is not base64url"))),
                Some(_) => Err(wallet_err(format!("JWK field {name:?} is not a string"))),
            }
        };
        match jwk.get("kty").and_then(Json::as_str) {
            Some("RSA") => {}
            other => return Err(wallet_err(format!("unsupported JWK kty {other:?}"))),
        }
        let n = field("n")?.ok_or_else(|| wallet_err("JWK has no n"))?;
        let e = field("e")?.unwrap_or_else(|| BigUint::from(65537u32));
        let d = field("d")?.ok_or_else(|| wallet_err("JWK has no d (not a private key)"))?;
        let primes = match (field("p")?, field("q")?) {
            (Some(p), Some(q)) => vec![p, q],
            _ => Vec::new(),
        };
        let key = RsaPrivateKey::from_components(n, e, d, primes)
            .map_err(|e| wallet_err(format!("inconsistent RSA key: {e}")))?;
        Self::from_private(key)
    }

    /// Reads a JWK file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| wallet_err(format!("cannot read {}: {e}", path.display())))?;
        Self::from_jwk(&bytes)
    }

    /// Loads the wallet at `path`, or generates one and saves it there (HyperBEAM's
    /// `priv_key_location` behaviour).
    pub fn load_or_generate(path: &Path) -> Result<Self> {
        if path.exists() {
            Self::load(path)
        } else {
            let w = Self::generate()?;
            w.save(path)?;
            Ok(w)
        }
    }

    /// Writes the wallet as a JWK, readable only by its owner on Unix (mode 0600).
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write as _;
        let io = |e: std::io::Error| wallet_err(format!("cannot write {}: {e}", path.display()));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut file = opts.open(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io)?;
        }
        file.write_all(&self.to_jwk()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// The JWK text (`kty, e, n, d, p, q, dp, dq, qi`).
    pub fn to_jwk(&self) -> Vec<u8> {
        let k = &self.private;
        let b = |x: &BigUint| Json::String(b64u(&x.to_bytes_be()));
        let mut m = Map::new();
        m.insert("kty".into(), Json::String("RSA".into()));
        m.insert("e".into(), b(k.e()));
        m.insert("n".into(), b(k.n()));
        m.insert("d".into(), b(k.d()));
        if let [p, q] = k.primes() {
            let (dp, dq, qi) = crt(k.d(), p, q);
            m.insert("p".into(), b(p));
            m.insert("q".into(), b(q));
            m.insert("dp".into(), b(&dp));
            m.insert("dq".into(), b(&dq));
            m.insert("qi".into(), b(&qi));
        }
        serde_json::to_vec(&Json::Object(m)).unwrap_or_default()
    }

    fn from_private(private: RsaPrivateKey) -> Result<Self> {
        let public = RsaPublicKey::from_rsa(&private.to_public_key())
            .map_err(|e| wallet_err(e.to_string()))?;
        let ring = ring_key(&private);
        let backend = if ring.is_some() {
            SigningBackend::Ring
        } else {
            SigningBackend::RustCrypto
        };
        Ok(Self {
            public,
            private,
            ring,
            backend,
        })
    }

    /// The public key.
    pub fn public_key(&self) -> &RsaPublicKey {
        &self.public
    }

    /// The raw address `sha256(n)`.
    pub fn address(&self) -> [u8; 32] {
        self.public.address()
    }

    /// The 43-character address.
    pub fn address_string(&self) -> String {
        self.public.address_string()
    }

    /// The backend [`Wallet::sign`] uses.
    pub fn backend(&self) -> SigningBackend {
        self.backend
    }

    /// Chooses the signing backend; `Ring` falls back to `RustCrypto` if `ring` rejected the
    /// key.
    pub fn set_backend(&mut self, backend: SigningBackend) {
        self.backend = match backend {
            SigningBackend::Ring if self.ring.is_none() => SigningBackend::RustCrypto,
            b => b,
        };
    }

    /// Signs `message` with RSASSA-PSS, MGF1 with the same hash, salt length = digest length.
    pub fn sign(&self, hash: PssHash, message: &[u8]) -> Result<Vec<u8>> {
        if let (SigningBackend::Ring, Some(kp)) = (self.backend, &self.ring) {
            let alg: &'static dyn ring::signature::RsaEncoding = match hash {
                PssHash::Sha256 => &ring::signature::RSA_PSS_SHA256,
                PssHash::Sha512 => &ring::signature::RSA_PSS_SHA512,
            };
            let mut sig = vec![0u8; kp.public().modulus_len()];
            kp.sign(alg, &ring::rand::SystemRandom::new(), message, &mut sig)
                .map_err(|_| Error::Internal("ring failed to sign".into()))?;
            return Ok(sig);
        }
        self.sign_with_salt(hash, message, hash.output_len())
    }

    /// Signs with the `rsa` crate and an explicit salt length (Node clients use the maximum,
    /// `modulus bytes - digest length - 2`).
    pub fn sign_with_salt(
        &self,
        hash: PssHash,
        message: &[u8],
        salt_len: usize,
    ) -> Result<Vec<u8>> {
        let digest = hash.digest(&[message]);
        let padding = match hash {
            PssHash::Sha256 => Pss::new_with_salt::<sha2::Sha256>(salt_len),
            PssHash::Sha512 => Pss::new_with_salt::<sha2::Sha512>(salt_len),
        };
        self.private
            .sign_with_rng(&mut OsRng, padding, &digest)
            .map_err(|e| Error::Internal(format!("RSA signing failed: {e}")))
    }
}

/// `(d mod (p-1), d mod (q-1), q^-1 mod p)`.
fn crt(d: &BigUint, p: &BigUint, q: &BigUint) -> (BigUint, BigUint, BigUint) {
    let one = BigUint::from(1u32);
    let two = BigUint::from(2u32);
    let dp = d % (p - &one);
    let dq = d % (q - &one);
    // p is prime, so q^(p-2) = q^-1 (mod p).
    let qi = q.modpow(&(p - &two), p);
    (dp, dq, qi)
}

/// A `ring` key pair for the same key, if `ring` accepts it (it wants the primes ordered and
/// consistent CRT values).
fn ring_key(key: &RsaPrivateKey) -> Option<ring::rsa::KeyPair> {
    let [p, q] = key.primes() else { return None };
    let try_order = |p: &BigUint, q: &BigUint| {
        let (dp, dq, qi) = crt(key.d(), p, q);
        let (n, e, d) = (
            key.n().to_bytes_be(),
            key.e().to_bytes_be(),
            key.d().to_bytes_be(),
        );
        let (p, q, dp, dq, qi) = (
            p.to_bytes_be(),
            q.to_bytes_be(),
            dp.to_bytes_be(),
            dq.to_bytes_be(),
            qi.to_bytes_be(),
        );
        ring::rsa::KeyPair::from_components(&ring::rsa::KeyPairComponents {
            public_key: ring::rsa::PublicKeyComponents {
                n: &n[..],
                e: &e[..],
            },
            d: &d[..],
            p: &p[..],
            q: &q[..],
            dP: &dp[..],
            dQ: &dq[..],
            qInv: &qi[..],
        })
        .ok()
    };
    try_order(p, q).or_else(|| try_order(q, p))
}

/// A secp256k1 key, signing ANS-104 items as type 3 (Ethereum, EIP-191).
#[derive(Clone)]
pub struct EthWallet {
    key: SigningKey,
}

impl fmt::Debug for EthWallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EthWallet")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

impl EthWallet {
    /// A random key.
    pub fn generate() -> Self {
        Self {
            key: SigningKey::random(&mut OsRng),
        }
    }

    /// A key from its 32 secret bytes.
    pub fn from_secret(bytes: &[u8]) -> Result<Self> {
        SigningKey::from_slice(bytes)
            .map(|key| Self { key })
            .map_err(|_| wallet_err("not a valid secp256k1 secret key"))
    }

    /// The uncompressed public key (65 bytes, `04 ‖ x ‖ y`): the ANS-104 owner.
    pub fn public_key(&self) -> Vec<u8> {
        self.key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    /// The EIP-55 checksummed address (`0x…`, 42 characters).
    pub fn address(&self) -> String {
        eth::address(&self.public_key()).unwrap_or_default()
    }

    /// Signs `message` EIP-191 style (65 bytes `r ‖ s ‖ v`).
    pub fn sign(&self, message: &[u8]) -> Result<[u8; 65]> {
        eth::sign_personal(&self.key, message).map_err(|e| Error::Internal(e.to_string()))
    }
}

/// The httpsig signature name of an address: `http-sig-` + hex of address bytes 1..=8
/// (spec §4.1; byte 0 is skipped).
pub fn signature_name(address: &[u8; 32]) -> String {
    let mut s = String::from("http-sig-");
    for b in &address[1..9] {
        s.push_str(&format!("{b:02x}"));
    }
    s
}
