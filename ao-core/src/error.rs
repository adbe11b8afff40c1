//! The error type of `ao-core`.

use crate::{Message, Value};

/// A non-`ok`, non-failure status a device may end a call with (HyperBEAM's `{skip, M}` and
/// `{pass, M}`). Like every non-`ok` status it stops a resolution chain; `stack@1.0` reads it to
/// steer its fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// `skip`: stop the current pass of the stack and return the state carried.
    Skip,
    /// `pass`: run the stack again from its first device with the state carried.
    Pass,
}

impl std::fmt::Display for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Skip => "skip",
            Self::Pass => "pass",
        })
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while decoding, encoding, parsing or resolving.
///
/// Each variant maps to an HTTP status ([`Error::http_status`]): malformed input is a 4xx, a
/// missing message or key is a 404, and only [`Error::Internal`] is a 500.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key that is not valid UTF-8 (HyperBEAM crashes on these).
    #[error("invalid key {0:?}: keys must be UTF-8")]
    InvalidKey(String),
    /// Malformed structured-field text (RFC 8941 with HyperBEAM's relaxations).
    #[error("malformed structured field {input:?}: {reason}")]
    StructuredField {
        /// The offending text (truncated).
        input: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// An `ao-types` entry names a type this node does not know.
    #[error("unknown ao-types type {0:?}")]
    UnknownType(String),
    /// A typed value could not be decoded as its type.
    #[error("cannot decode {value:?} as {ty}")]
    BadTypedValue {
        /// The declared type.
        ty: String,
        /// The text (truncated).
        value: String,
    },
    /// A value this codec cannot represent.
    #[error("cannot encode: {0}")]
    Unencodable(String),
    /// A malformed multipart body.
    #[error("malformed multipart body: {0}")]
    Multipart(&'static str),
    /// Malformed codec input (flat, JSON, httpsig, ANS-104…).
    #[error("malformed {codec} input: {reason}")]
    Malformed {
        /// The codec.
        codec: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Two flat paths collide (`a` and `a/b` both set to binaries).
    #[error("path collision at {0:?}")]
    PathCollision(String),
    /// A malformed HyperPATH.
    #[error("malformed path: {0}")]
    Path(String),
    /// A message or value nested deeper than the configured limit.
    #[error("nesting deeper than the limit of {0}")]
    TooDeep(usize),
    /// A key is not present.
    #[error("key {0:?} not found")]
    NotFound(String),
    /// A message needed to resolve the request is not in the store.
    #[error("message necessary to resolve request not found: {0}")]
    MessageNotFound(String),
    /// The requested device is not loaded on this node.
    #[error("device {0:?} is not loadable on this node")]
    DeviceNotLoadable(String),
    /// A device ended the resolution with a non-ok status (HyperBEAM's `{Status, Body}`).
    #[error("{status}: {body:?}")]
    Status {
        /// HTTP-style status (400 for `error`, 404 for `not_found`, 500 for `failure`, …).
        status: u16,
        /// The body the device returned.
        body: Value,
    },
    /// A device ended its call with `skip` or `pass`, carrying the state so far. Only a stack
    /// interprets it; anywhere else it is an unhandled status (HTTP 500, as in HyperBEAM).
    #[error("unhandled {flow} status from a device")]
    Flow {
        /// Which status.
        flow: Flow,
        /// The state the device returned with it.
        state: Message,
    },
    /// A request that is well-formed but not acceptable (bad argument, wrong type…).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A signature or commitment problem.
    #[error("commitment error: {0}")]
    Commitment(String),
    /// A commitment or request that does not verify (or a request that must be signed and is
    /// not).
    #[error("verification failed: {0}")]
    Verification(#[from] crate::verify::VerifyError),
    /// Malformed ANS-104 data, or a message that cannot be expressed as a data item.
    #[error("ANS-104: {0}")]
    Ans104(#[from] crate::ans104::Ans104Error),
    /// A wallet that cannot be loaded, generated or saved.
    #[error("wallet error: {0}")]
    Wallet(String),
    /// A store failure.
    #[error("store error: {0}")]
    Store(String),
    /// A bug or an unexpected failure inside the node.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The HTTP status this error is answered with (spec §2.7).
    pub fn http_status(&self) -> u16 {
        match self {
            Self::NotFound(_) | Self::MessageNotFound(_) | Self::DeviceNotLoadable(_) => 404,
            Self::Status { status, .. } => *status,
            Self::UnknownType(_) => 422,
            Self::Store(_) | Self::Internal(_) | Self::Wallet(_) | Self::Flow { .. } => 500,
            _ => 400,
        }
    }

    /// A device-signalled error with a text body.
    pub fn status(status: u16, body: impl Into<Value>) -> Self {
        Self::Status {
            status,
            body: body.into(),
        }
    }

    /// A `skip` status carrying `state`.
    pub fn skip(state: Message) -> Self {
        Self::Flow {
            flow: Flow::Skip,
            state,
        }
    }

    /// A `pass` status carrying `state`.
    pub fn pass(state: Message) -> Self {
        Self::Flow {
            flow: Flow::Pass,
            state,
        }
    }

    pub(crate) fn sf(input: &[u8], reason: &'static str) -> Self {
        let mut s = String::from_utf8_lossy(&input[..input.len().min(120)]).into_owned();
        if input.len() > 120 {
            s.push('…');
        }
        Self::StructuredField { input: s, reason }
    }

    pub(crate) fn malformed(codec: &'static str, reason: impl Into<String>) -> Self {
        Self::Malformed {
            codec,
            reason: reason.into(),
        }
    }
}
