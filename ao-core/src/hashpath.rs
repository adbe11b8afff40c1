//! Hashpaths: the proof of how a result was reached (spec §3).

use sha2::{Digest, Sha256};

use crate::id::{IdScope, id};
use crate::util::{b64u, b64u_decode};
use crate::{Error, Message, Result, Value};

/// The hashing algorithm named by a base message's `hashpath-alg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// `sha256(a ‖ b)` (the default).
    #[default]
    Sha256Chain,
    /// `(int(a) + int(sha256(a ‖ b))) mod 2^256` (experimental in HyperBEAM).
    Accumulate256,
}

impl Algorithm {
    /// The algorithm a message asks for.
    pub fn of(msg: &Message) -> Self {
        match msg.get_str("hashpath-alg") {
            Some("accumulate-256") => Self::Accumulate256,
            _ => Self::Sha256Chain,
        }
    }

    fn combine(self, a: &[u8], b: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(a);
        h.update(b);
        let digest: [u8; 32] = h.finalize().into();
        match self {
            Self::Sha256Chain => digest,
            Self::Accumulate256 => {
                let mut out = [0u8; 32];
                let mut carry = 0u16;
                for i in (0..32).rev() {
                    let ai = a.get(i).copied().unwrap_or(0) as u16;
                    let s = ai + digest[i] as u16 + carry;
                    out[i] = s as u8;
                    carry = s >> 8;
                }
                out
            }
        }
    }
}

/// The current hashpath of a base message: its `priv/hashpath`, else its ID over all
/// commitments.
pub fn hashpath_of(msg: &Message) -> Result<String> {
    match msg.hashpath() {
        Some(hp) => Ok(hp.to_owned()),
        None => Ok(b64u(&id(msg, IdScope::All)?)),
    }
}

/// The current hashpath of a binary value: `b64u(sha256(bytes))`.
pub fn hashpath_of_binary(bytes: &[u8]) -> String {
    b64u(&Sha256::digest(bytes))
}

/// The leaf a request contributes: its first path part when it is "just a path", else its ID
/// (which covers its own `path`).
pub fn leaf_of(req: &Message) -> Result<String> {
    let only_path = req.iter().all(|(k, _)| k == "path" || k == "hashpath");
    if only_path && let Some(Value::Binary(p)) = req.get("path") {
        let text = std::str::from_utf8(p).map_err(|_| Error::Path("path is not UTF-8".into()))?;
        let first = text.split('/').find(|s| !s.is_empty()).unwrap_or("");
        return Ok(first.to_owned());
    }
    Ok(b64u(&id(req, IdScope::All)?))
}

/// The hashpath of resolving `req` against `base`.
pub fn hashpath(base: &Message, req: &Message) -> Result<String> {
    extend(&hashpath_of(base)?, &leaf_of(req)?, Algorithm::of(base))
}

/// Extends a current hashpath with a leaf.
pub fn extend(current: &str, leaf: &str, alg: Algorithm) -> Result<String> {
    let mut parts = current.split('/').filter(|s| !s.is_empty());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(only), None, None) => Ok(format!("{only}/{leaf}")),
        (Some(a), Some(b), None) => {
            let a = b64u_decode(a.as_bytes())
                .filter(|a| a.len() == 32)
                .ok_or_else(|| Error::Path(format!("hashpath base {a:?} is not an ID")))?;
            let b_native;
            let b = if b.len() == 43 {
                b_native = b64u_decode(b.as_bytes())
                    .ok_or_else(|| Error::Path(format!("hashpath leaf {b:?} is not an ID")))?;
                &b_native[..]
            } else {
                b.as_bytes()
            };
            Ok(format!("{}/{leaf}", b64u(&alg.combine(&a, b))))
        }
        _ => Err(Error::Path(format!("malformed hashpath {current:?}"))),
    }
}

/// Recomputes a chain of resolutions and checks that it ends in `expected`.
pub fn verify(base: &Message, requests: &[Message], expected: &str) -> Result<bool> {
    let alg = Algorithm::of(base);
    let mut current = hashpath_of(base)?;
    for req in requests {
        current = extend(&current, &leaf_of(req)?, alg)?;
    }
    Ok(current == expected)
}
