//! The error type of `ao-wasm`: wasmtime's opaque error, translated into typed variants at the
//! crate edge.

/// Result alias of this crate.
pub type Result<T, E = WasmError> = std::result::Result<T, E>;

/// Everything that can go wrong loading, instantiating or running a module.
///
/// Evaluation failures ([`WasmError::Trap`], [`WasmError::OutOfBudget`], [`WasmError::OutOfTime`],
/// [`WasmError::OutOfMemory`], [`WasmError::Exit`]) leave the instance in an unknown state: it is
/// then poisoned, and every later call answers [`WasmError::Poisoned`] until the caller restores a
/// snapshot or builds a new instance.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WasmError {
    /// The bytes are not a module this engine accepts (malformed, or a feature it does not
    /// enable).
    #[error("cannot compile module: {0}")]
    Compile(String),
    /// The module uses the legacy exception-handling encoding (`try`/`catch`), which wasmtime
    /// does not run.
    #[error(
        "module uses legacy wasm exception handling (try/catch), which wasmtime does not support; \
         translate it with binaryen: `wasm-opt --enable-memory64 --enable-exception-handling \
         --translate-to-exnref IN.wasm -o OUT.wasm`"
    )]
    LegacyExceptions,
    /// An AOT artifact could not be serialized, stored, read back or deserialized.
    #[error("AOT artifact error: {0}")]
    Artifact(String),
    /// The module's imports could not be satisfied, or instantiation failed.
    #[error("cannot link module: {0}")]
    Link(String),
    /// The module lacks an export the caller needs, or it has the wrong type.
    #[error("missing or mistyped export {name:?}: {reason}")]
    Export {
        /// The export's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Wrong arguments for a call (count or types).
    #[error("bad call of {name:?}: {reason}")]
    BadCall {
        /// The function.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The guest trapped (unreachable, out-of-bounds access, stack overflow, ...).
    #[error("wasm trap: {0}")]
    Trap(String),
    /// The evaluation used up its fuel budget.
    #[error("evaluation exceeded its budget of {budget} fuel units")]
    OutOfBudget {
        /// The budget that was exhausted.
        budget: u64,
    },
    /// The evaluation ran past its wall-clock budget ([`crate::Budget::WallClock`]).
    #[error("evaluation exceeded its time budget of {millis} ms")]
    OutOfTime {
        /// The budget that was exhausted, in milliseconds.
        millis: u64,
    },
    /// The instance tried to grow its memory beyond its limit.
    #[error("memory limit exceeded: {requested} bytes requested, limit is {limit} bytes")]
    OutOfMemory {
        /// The size the memory would have reached.
        requested: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The guest called `exit`/`proc_exit`.
    #[error("guest exited with status {0}")]
    Exit(i32),
    /// A pointer or length returned by the guest lies outside its memory, or a string is not
    /// terminated / not UTF-8.
    #[error("bad guest memory access: {0}")]
    Memory(String),
    /// The guest answered something the aos ABI does not allow.
    #[error("bad aos response: {0}")]
    BadResponse(String),
    /// An earlier evaluation failed mid-way; restore a snapshot or start a new instance.
    #[error("instance is poisoned by an earlier failure: {0}")]
    Poisoned(String),
    /// A snapshot could not be decoded or does not fit the instance.
    #[error("bad snapshot: {0}")]
    Snapshot(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] ao_core::Error),
    /// Engine configuration was rejected.
    #[error("bad engine configuration: {0}")]
    Config(String),
}

impl WasmError {
    /// Whether this failure leaves an instance unusable (it interrupted the guest mid-way).
    pub fn poisons(&self) -> bool {
        matches!(
            self,
            Self::Trap(_)
                | Self::OutOfBudget { .. }
                | Self::OutOfTime { .. }
                | Self::OutOfMemory { .. }
                | Self::Exit(_)
                | Self::Memory(_)
        )
    }
}

impl WasmError {
    /// The HTTP status of this failure when it ends a request. What the request brought (a
    /// module that does not compile or link, wrong arguments, a guest that fails or runs out of
    /// its budget, a snapshot that does not fit) is 422; the node's own failures are 500.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Compile(_)
            | Self::LegacyExceptions
            | Self::Link(_)
            | Self::Export { .. }
            | Self::BadCall { .. }
            | Self::Trap(_)
            | Self::OutOfBudget { .. }
            | Self::OutOfTime { .. }
            | Self::OutOfMemory { .. }
            | Self::Exit(_)
            | Self::Memory(_)
            | Self::BadResponse(_)
            | Self::Poisoned(_)
            | Self::Snapshot(_) => 422,
            Self::Store(e) => e.http_status(),
            Self::Artifact(_) | Self::Config(_) => 500,
        }
    }
}

impl From<WasmError> for ao_core::Error {
    fn from(e: WasmError) -> Self {
        match e {
            WasmError::Store(inner) => inner,
            other => ao_core::Error::status(other.http_status(), other.to_string()),
        }
    }
}
