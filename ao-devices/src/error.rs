//! The error type of `ao-devices`.

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors building the devices' shared state (resolution errors are [`ao_core::Error`]s).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A node option has a value of the wrong kind.
    #[error("node option {key:?}: {reason}")]
    Option {
        /// The option.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A protocol-level failure.
    #[error(transparent)]
    Core(#[from] ao_core::Error),
}
