//! Values held by message keys (spec §1.1).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::Message;

/// A symbol. `true`, `false` and `null` are atoms too (spec §11 item 9).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Atom(Arc<str>);

impl Atom {
    /// Builds an atom from its name.
    pub fn new(name: &str) -> Self {
        Self(Arc::from(name))
    }

    /// The atom's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, ":{}", self.0)
    }
}

/// A value of a message key.
///
/// This is the structured (`structured@1.0`) form that devices see. Codecs convert it to and from
/// TABM, where every value is a binary or a nested message.
#[derive(Clone, PartialEq)]
pub enum Value {
    /// Bytes. Cheap to clone and slice.
    Binary(Bytes),
    /// An integer. HyperBEAM integers are unbounded, but only 15 digits survive its decoder.
    Integer(i64),
    /// A float (encoded in Erlang's `~.20e` text form).
    Float(f64),
    /// A symbol, including `true`, `false` and `null`.
    Atom(Atom),
    /// An ordered list.
    List(Vec<Value>),
    /// A nested message.
    Message(Message),
}

impl Value {
    /// The atom `true`.
    pub fn r#true() -> Self {
        Self::Atom(Atom::new("true"))
    }

    /// The atom `false`.
    pub fn r#false() -> Self {
        Self::Atom(Atom::new("false"))
    }

    /// A boolean as an atom.
    pub fn bool(b: bool) -> Self {
        if b { Self::r#true() } else { Self::r#false() }
    }

    /// An atom value.
    pub fn atom(name: &str) -> Self {
        Self::Atom(Atom::new(name))
    }

    /// The bytes, if this is a binary.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Self::Binary(b) => Some(b),
            _ => None,
        }
    }

    /// The text, if this is a UTF-8 binary.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Binary(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The nested message, if any.
    pub fn as_message(&self) -> Option<&Message> {
        match self {
            Self::Message(m) => Some(m),
            _ => None,
        }
    }

    /// The integer, if this is one, or a binary holding a decimal integer.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Self::Integer(i) => Some(*i),
            Self::Binary(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
            _ => None,
        }
    }

    /// The atom, if any.
    pub fn as_atom(&self) -> Option<&Atom> {
        match self {
            Self::Atom(a) => Some(a),
            _ => None,
        }
    }

    /// Whether this is the atom (or binary) `true`.
    pub fn is_true(&self) -> bool {
        match self {
            Self::Atom(a) => a.as_str() == "true",
            Self::Binary(b) => &b[..] == b"true",
            _ => false,
        }
    }

    /// A short name of the variant, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Binary(_) => "binary",
            Self::Integer(_) => "integer",
            Self::Float(_) => "float",
            Self::Atom(_) => "atom",
            Self::List(_) => "list",
            Self::Message(_) => "message",
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Binary(b) => match std::str::from_utf8(b) {
                Ok(s) if b.len() <= 256 => fmt::Debug::fmt(s, f),
                Ok(s) => write!(
                    f,
                    "{:?}…({} bytes)",
                    &s[..s.floor_char_boundary(64)],
                    b.len()
                ),
                Err(_) => write!(f, "<{} bytes>", b.len()),
            },
            Self::Integer(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x:?}"),
            Self::Atom(a) => fmt::Debug::fmt(a, f),
            Self::List(l) => f.debug_list().entries(l).finish(),
            Self::Message(m) => fmt::Debug::fmt(m, f),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::Binary(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::Binary(Bytes::from(s))
    }
}

impl From<&[u8]> for Value {
    fn from(s: &[u8]) -> Self {
        Self::Binary(Bytes::copy_from_slice(s))
    }
}

impl From<Vec<u8>> for Value {
    fn from(s: Vec<u8>) -> Self {
        Self::Binary(Bytes::from(s))
    }
}

impl From<Bytes> for Value {
    fn from(b: Bytes) -> Self {
        Self::Binary(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Self::Integer(i)
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Self::Float(x)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Self::bool(b)
    }
}

impl From<Atom> for Value {
    fn from(a: Atom) -> Self {
        Self::Atom(a)
    }
}

impl From<Message> for Value {
    fn from(m: Message) -> Self {
        Self::Message(m)
    }
}

impl From<Vec<Value>> for Value {
    fn from(l: Vec<Value>) -> Self {
        Self::List(l)
    }
}
