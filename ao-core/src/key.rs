//! Message keys: normalisation (spec §1.2) and the private-key rule (§1.3).

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// Byte lengths that make a key or path segment "look like an ID" (32 raw bytes, a 42-byte
/// Ethereum address, a 43-character base64url ID). Decided purely by length (spec §11 item 1).
pub const ID_SHAPED_LENGTHS: [usize; 3] = [32, 42, 43];

/// Whether `s` is ID-shaped: exactly 32, 42 or 43 bytes long, whatever its characters.
#[inline]
pub fn is_id_shaped(s: &[u8]) -> bool {
    ID_SHAPED_LENGTHS.contains(&s.len())
}

/// Whether a (normalised) key is private: it starts with the four bytes `priv`.
#[inline]
pub fn is_private(key: &str) -> bool {
    key.as_bytes().starts_with(b"priv")
}

/// Normalises a key as HyperBEAM's `hb_ao:normalize_key/1` does for binaries.
///
/// ID-shaped keys are returned unchanged. Other keys are lowercased code point by code point,
/// without the context-dependent final-sigma rule of `str::to_lowercase` (`ΣΑΣ` → `σασ`).
pub fn normalize(key: &str) -> std::borrow::Cow<'_, str> {
    if is_id_shaped(key.as_bytes()) {
        return std::borrow::Cow::Borrowed(key);
    }
    if key.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        return std::borrow::Cow::Borrowed(key);
    }
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        out.extend(c.to_lowercase());
    }
    std::borrow::Cow::Owned(out)
}

/// Keys the codecs use on every message, allocated once.
pub mod well_known {
    use super::Key;
    use std::sync::LazyLock;

    static AO_TYPES: LazyLock<Key> = LazyLock::new(|| Key::new("ao-types"));
    static PATH: LazyLock<Key> = LazyLock::new(|| Key::new("path"));

    /// `ao-types`.
    pub fn ao_types() -> Key {
        AO_TYPES.clone()
    }

    /// `path`.
    pub fn path() -> Key {
        PATH.clone()
    }
}

/// A normalised message key. Cheap to clone (a reference-counted string).
///
/// Keys order by their bytes, which is the order HyperBEAM iterates maps of up to 32 keys in.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Arc<str>);

impl Key {
    /// Builds a key, normalising it (spec §1.2).
    pub fn new(key: &str) -> Self {
        match normalize(key) {
            std::borrow::Cow::Borrowed(s) => Self(Arc::from(s)),
            std::borrow::Cow::Owned(s) => Self(Arc::from(s)),
        }
    }

    /// Builds a key from UTF-8 bytes, normalising it. Non-UTF-8 keys are rejected (HyperBEAM
    /// crashes on them).
    pub fn from_utf8(key: &[u8]) -> Result<Self, crate::Error> {
        std::str::from_utf8(key)
            .map(Self::new)
            .map_err(|_| crate::Error::InvalidKey(String::from_utf8_lossy(key).into_owned()))
    }

    /// The key text.
    #[inline]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this key is private (§1.3).
    #[inline]
    pub fn is_private(&self) -> bool {
        is_private(&self.0)
    }

    /// Whether this key is ID-shaped (§1.2).
    #[inline]
    pub fn is_id_shaped(&self) -> bool {
        is_id_shaped(self.0.as_bytes())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Key {
    fn from(s: String) -> Self {
        match normalize(&s) {
            std::borrow::Cow::Borrowed(_) => Self(Arc::from(s)),
            std::borrow::Cow::Owned(n) => Self(Arc::from(n)),
        }
    }
}

impl From<&String> for Key {
    fn from(s: &String) -> Self {
        Self::new(s)
    }
}

impl From<&Key> for Key {
    fn from(k: &Key) -> Self {
        k.clone()
    }
}

impl From<i64> for Key {
    fn from(n: i64) -> Self {
        Self(Arc::from(n.to_string()))
    }
}

impl From<usize> for Key {
    fn from(n: usize) -> Self {
        Self(Arc::from(n.to_string()))
    }
}

impl PartialEq<str> for Key {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Key {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_rules() {
        assert_eq!(Key::new("Hello-World").as_str(), "hello-world");
        assert_eq!(
            Key::new("ABCDEFGHIJKLMNOPQRSTUVWXYZ012345").as_str(),
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
        );
        assert_eq!(Key::new("ΣΑΣ").as_str(), "σασ");
        assert_eq!(Key::new("İ").as_str(), "i\u{307}");
        assert!(is_private("private_key"));
        assert!(!is_private("xpriv"));
    }
}
