//! The message: a map of normalised keys to values (spec §1).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::{Key, Value};

/// An AO-Core message.
///
/// A message is an immutable, reference-counted sorted map, so cloning is a reference-count
/// increment and passing messages between resolution steps copies nothing. Mutating methods copy
/// the map only when it is shared (`Arc::make_mut`).
///
/// Private keys (those starting with `priv`, spec §1.3) live apart from the public fields: no
/// codec sees them and no ID covers them. The hashpath of the resolution that produced the
/// message (spec §3) is kept in its own slot.
///
/// Equality compares the public fields only.
#[derive(Clone, Default)]
pub struct Message {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    fields: BTreeMap<Key, Value>,
    private: BTreeMap<Key, Value>,
    hashpath: Option<Arc<str>>,
    /// Memoised unsigned ID (`id(M, none)`); reset on every mutation.
    unsigned_id: OnceLock<[u8; 32]>,
}

impl Clone for Inner {
    fn clone(&self) -> Self {
        Self {
            fields: self.fields.clone(),
            private: self.private.clone(),
            hashpath: self.hashpath.clone(),
            unsigned_id: OnceLock::new(),
        }
    }
}

impl Message {
    /// An empty message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a message from key/value pairs; keys are normalised.
    pub fn from_pairs<K, V, I>(pairs: I) -> Self
    where
        K: Into<Key>,
        V: Into<Value>,
        I: IntoIterator<Item = (K, V)>,
    {
        let mut m = Self::new();
        for (k, v) in pairs {
            m.insert(k, v);
        }
        m
    }

    fn inner_mut(&mut self) -> &mut Inner {
        let inner = Arc::make_mut(&mut self.inner);
        inner.unsigned_id = OnceLock::new();
        inner
    }

    /// Number of public keys.
    pub fn len(&self) -> usize {
        self.inner.fields.len()
    }

    /// Whether the message has no public keys.
    pub fn is_empty(&self) -> bool {
        self.inner.fields.is_empty()
    }

    /// Looks a key up: exactly first, then by its normalised form (HyperBEAM's case-insensitive
    /// lookup). Private keys are found with [`Message::private`].
    pub fn get(&self, key: &str) -> Option<&Value> {
        if let Some(v) = self.inner.fields.get(key) {
            return Some(v);
        }
        match crate::key::normalize(key) {
            std::borrow::Cow::Owned(n) => self.inner.fields.get(n.as_str()),
            std::borrow::Cow::Borrowed(_) => None,
        }
    }

    /// Whether a public key is present.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The value of a key as text, if it is a UTF-8 binary.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// The value of a key as a nested message.
    pub fn get_message(&self, key: &str) -> Option<&Message> {
        self.get(key).and_then(Value::as_message)
    }

    /// Sets a key (normalised). Private keys go to the private area.
    pub fn insert(&mut self, key: impl Into<Key>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        let inner = self.inner_mut();
        if key.is_private() {
            inner.private.insert(key, value);
        } else {
            inner.fields.insert(key, value);
        }
    }

    /// Builder form of [`Message::insert`].
    #[must_use]
    pub fn with(mut self, key: impl Into<Key>, value: impl Into<Value>) -> Self {
        self.insert(key, value);
        self
    }

    /// Removes a public key, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let k = Key::new(key);
        if !self.inner.fields.contains_key(&k) {
            return None;
        }
        self.inner_mut().fields.remove(&k)
    }

    /// Builder form of [`Message::remove`].
    #[must_use]
    pub fn without(mut self, key: &str) -> Self {
        self.remove(key);
        self
    }

    /// Iterates the public keys and values in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Key, &Value)> + ExactSizeIterator {
        self.inner.fields.iter()
    }

    /// The public keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &Key> + ExactSizeIterator {
        self.inner.fields.keys()
    }

    /// The public fields as a map.
    pub fn fields(&self) -> &BTreeMap<Key, Value> {
        &self.inner.fields
    }

    /// Mutable access to the public fields. Keys inserted this way must already be normalised
    /// and public.
    pub fn fields_mut(&mut self) -> &mut BTreeMap<Key, Value> {
        &mut self.inner_mut().fields
    }

    /// Looks up a private key (e.g. `priv`).
    pub fn private(&self, key: &str) -> Option<&Value> {
        self.inner.private.get(key)
    }

    /// The private area.
    pub fn private_fields(&self) -> &BTreeMap<Key, Value> {
        &self.inner.private
    }

    /// Sets or clears the private area wholesale (used to carry it across conversions).
    pub fn set_private_fields(&mut self, private: BTreeMap<Key, Value>) {
        self.inner_mut().private = private;
    }

    /// The hashpath of the resolution that produced this message (`priv/hashpath`).
    pub fn hashpath(&self) -> Option<&str> {
        self.inner.hashpath.as_deref()
    }

    /// Sets or clears the hashpath. This does not change the message's IDs.
    pub fn set_hashpath(&mut self, hashpath: Option<Arc<str>>) {
        // The hashpath is not covered by the unsigned ID, so keep the memoised value.
        let inner = Arc::make_mut(&mut self.inner);
        inner.hashpath = hashpath;
    }

    /// The `commitments` map, if any.
    pub fn commitments(&self) -> Option<&Message> {
        self.get_message("commitments")
    }

    /// Whether the message carries any commitment.
    pub fn is_committed(&self) -> bool {
        self.commitments().is_some_and(|c| !c.is_empty())
    }

    /// The memoised unsigned ID, computing it with `f` the first time.
    pub(crate) fn cached_unsigned_id(
        &self,
        f: impl FnOnce() -> crate::Result<[u8; 32]>,
    ) -> crate::Result<[u8; 32]> {
        if let Some(id) = self.inner.unsigned_id.get() {
            return Ok(*id);
        }
        let id = f()?;
        let _ = self.inner.unsigned_id.set(id);
        Ok(id)
    }

    /// Whether two handles share the same storage (a cheap identity test).
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.inner.fields == other.inner.fields
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_map();
        d.entries(self.inner.fields.iter());
        if let Some(hp) = &self.inner.hashpath {
            d.entry(&"priv/hashpath", hp);
        }
        d.finish()
    }
}

impl<K: Into<Key>, V: Into<Value>> FromIterator<(K, V)> for Message {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self::from_pairs(iter)
    }
}

/// Builds a [`Message`] from `key => value` pairs.
///
/// ```
/// let m = ao_core::msg! { "a" => "b", "count" => 42i64 };
/// assert_eq!(m.get("count"), Some(&ao_core::Value::Integer(42)));
/// ```
#[macro_export]
macro_rules! msg {
    () => { $crate::Message::new() };
    ($($k:expr => $v:expr),+ $(,)?) => {{
        let mut m = $crate::Message::new();
        $( m.insert($k, $v); )+
        m
    }};
}
