//! Errors, and the one place they become HTTP responses.

use ao_core::Value;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Failures of the server itself (binding, configuration).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid.
    #[error("invalid HTTP configuration: {0}")]
    Config(String),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Why a request could not be answered normally. Each kind maps to one status; client errors
/// carry their reason to the client, internal errors are logged and answered generically.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request body is larger than the limit (413).
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The request target is longer than the limit (414).
    #[error("request target longer than {limit} bytes")]
    UriTooLong {
        /// The limit.
        limit: usize,
    },
    /// The request names a codec this node cannot decode (422).
    #[error("unsupported codec {0:?}")]
    UnsupportedCodec(String),
    /// The request could not be decoded (400).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// Resolution took longer than the request timeout (504).
    #[error("request timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The node must be initialised first (503).
    #[error("Node must be initialized before use.")]
    NotInitialized,
    /// Resolution failed.
    #[error(transparent)]
    Resolve(#[from] ao_core::Error),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge { .. } => 413,
            Self::UriTooLong { .. } => 414,
            Self::UnsupportedCodec(_) => 422,
            Self::Malformed(_) => 400,
            Self::Timeout(_) => 504,
            Self::NotInitialized => 503,
            Self::Resolve(e) => e.http_status(),
        }
    }

    /// Whether this is the node's fault (logged, answered without details).
    pub fn is_internal(&self) -> bool {
        self.status() >= 500
            && !matches!(
                self,
                Self::Timeout(_)
                    | Self::NotInitialized
                    | Self::Resolve(ao_core::Error::Status { .. })
            )
    }

    /// The body told to the client.
    pub fn public_body(&self, request_id: u64) -> Value {
        match self {
            Self::Resolve(ao_core::Error::Status { body, .. }) => body.clone(),
            e if e.is_internal() => Value::from(format!("internal error (request {request_id})")),
            e => Value::from(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        assert_eq!(ApiError::TooLarge { limit: 1 }.status(), 413);
        assert_eq!(ApiError::UnsupportedCodec("x".into()).status(), 422);
        assert_eq!(
            ApiError::Resolve(ao_core::Error::NotFound("k".into())).status(),
            404
        );
        assert_eq!(
            ApiError::Resolve(ao_core::Error::Path("bad".into())).status(),
            400
        );
        let internal = ApiError::Resolve(ao_core::Error::Internal("secret detail".into()));
        assert_eq!(internal.status(), 500);
        assert!(internal.is_internal());
        assert_eq!(
            internal.public_body(7),
            Value::from("internal error (request 7)")
        );
        let device = ApiError::Resolve(ao_core::Error::status(500, "device said so"));
        assert!(!device.is_internal());
        assert_eq!(device.public_body(1), Value::from("device said so"));
    }
}
