//! # ao-wasm
//!
//! AOT-compiled execution of AO modules — above all aos, a Lua interpreter compiled to WASM —
//! on wasmtime, for the node's `wasm-64@1.0` device and the process layer.
//!
//! ## Core concepts
//!
//! * [`WasmEngine`]: one per node. It owns the wasmtime `Engine` and loads modules:
//!   [`WasmEngine::load`] compiles a module once, stores its artifact in an [`ao_core::Store`]
//!   under (blake3 of the module bytes, the engine's compatibility hash), and later loads
//!   deserialize that artifact (about a millisecond instead of hundreds).
//! * [`CompiledModule`]: a loaded module, shared by all its instances. Its calling convention is
//!   detected from its exports ([`ModuleKind`]).
//! * [`Instance`]: a live instance with a fuel budget per call and a memory limit, generic calls
//!   ([`Instance::call`]), memory access and [`Snapshot`]s.
//! * [`AosInstance`]: an aos instance driven through `handle(msgJSON, envJSON)`, for both
//!   families of aos binaries: HyperBEAM's standalone builds (`aos-2-pure*`, with HyperBEAM's
//!   deterministic WASI) and ao-loader's emscripten builds (`wasm32-unknown-emscripten2` for
//!   aos 1, `wasm32-unknown-emscripten4` and `wasm64-unknown-emscripten-draft_2024_02_15` for
//!   aos 2, whose JS runtime is emulated natively). Under aos 1 the glue's writable in-memory
//!   file system (MEMFS: `/tmp`, `/home/web_user`, `/dev`…) is emulated too, one per instance;
//!   as under ao-loader, its files are not part of memory [`Snapshot`]s.
//! * [`devices`]: `wasm-64@1.0`, `wasi@1.0` and `json-iface@1.0` as [`ao_core::Device`]s.
//!
//! ## Engine settings, and why
//!
//! * **NaN canonicalization on**: float results must be bit-identical on every node (x86 and
//!   ARM produce different NaN payloads). One visible consequence: Lua's `tostring(0/0)` is
//!   `nan` here on every machine, where V8 (ao-loader) and a wasmtime without canonicalization
//!   (the reference host `tools/aos_eval.py`) on x86 print `-nan`; `-(0/0)` is a sign-bit
//!   operation, so it is `-nan` here and `nan` there. Its cost on aos is not measurable (under
//!   0.3 % of an evaluation's instructions: the interpreter's hot paths are integer code).
//! * **Relaxed SIMD off, and deterministic if ever enabled**: its instructions may otherwise
//!   differ between CPUs.
//! * **Threads off** (wasmtime is built without its `threads` feature): shared memory makes
//!   execution order, hence results, nondeterministic.
//! * **memory64 on**: aos-2 and the wasm64 ao-loader builds use a 64-bit memory.
//! * **Exceptions on (exnref)**: aos-2-pure uses wasm exceptions for Lua's error handling.
//!   Modules in the *legacy* encoding (`try`/`catch`) are rejected on load with
//!   [`WasmError::LegacyExceptions`], which names the binaryen command that translates them.
//! * **Fuel by default, epochs on request, for the budget** ([`Budget`]): fuel counts, roughly,
//!   executed instructions, so a runaway evaluation stops at the same point on every node and
//!   the outcome (an [`WasmError::OutOfBudget`] error) is itself deterministic.
//!   [`Budget::WallClock`] (node option `wasm-budget=wall-clock`) uses epoch interruption
//!   instead (a ticker thread per engine, a deadline per call, [`WasmError::OutOfTime`]), where
//!   the point a long evaluation is stopped depends on the machine. Each call gets a fresh
//!   budget ([`Limits::fuel`] or [`Limits::time`]), and only the offending instance is stopped.
//!   The budget is the largest single cost of an evaluation, because the Lua interpreter
//!   enters a function or a loop every few instructions and a budget must look at each of
//!   them: against no budget at all (measured with a local build), wasmtime's own fuel added
//!   20–30 % to an aos evaluation and its epochs 12–20 %. So fuel is not wasmtime's: the module
//!   is rewritten before compiling to count fuel down in one global at function entries, loop
//!   heads and bulk operations (`meter.rs`), which costs 8–12 %: `return 1+1` p50 on
//!   aos-2-pure-xs 0.221–0.225 → 0.199–0.200 ms, emscripten-4 build 0.256–0.258 → 0.206–0.210
//!   ms, wasm64 build 0.344–0.349 → 0.303–0.308 ms, and below epochs on all of them. wasmtime's
//!   fuel kept the count in a value carried through every call and added to in every block.
//! * **Memory limit through a store limiter**: each instance has a byte limit (a process's
//!   `Memory-Limit`, or [`WasmConfig::memory_limit`]); growing past it is a typed
//!   [`WasmError::OutOfMemory`], not a host allocation failure.
//! * **Spectre hardening on** ([`WasmConfig::spectre_hardening`], node option
//!   `wasm-spectre-hardening`): guests are untrusted code in the node's process. On a memory64
//!   module every access is bounds-checked explicitly, and the hardening turns each check's
//!   branch into a conditional move that the access's address then depends on (13–16 % of an
//!   aos-2 evaluation). So a hardened engine runs memory64 modules whose memory stays below
//!   4 GiB (aos-2, the wasm64 ao-loader build) on a 32-bit memory instead (`narrow.rs`): guard
//!   pages bound its accesses, each 64-bit address is checked by a shift and a branch, and the
//!   module behaves exactly as before, traps included. That recovers most of the cost
//!   (aos-2-pure-xs p50 0.202–0.209 → 0.181–0.186 ms under fuel, against 0.170–0.176 ms with
//!   the hardening off). wasm32 modules (guard pages, no explicit checks) are unchanged.
//!   What the hardening closes is a speculative read of host memory by guest code; reading
//!   such a side channel needs a timer, and guests get none here (every clock import is
//!   deterministic, there are no threads), only the evaluation's total duration as seen from
//!   outside. V8 (under ao-loader) has no such masking of wasm memory accesses.
//! * **Tables initialised eagerly** (`table_lazy_init(false)`): the Lua interpreter calls
//!   through `call_indirect` constantly, and an eager table drops the lazy-init check from each
//!   (0.15–0.2 % fewer instructions per evaluation; the aos tables hold ~200 entries, so
//!   instantiation does not notice).
//! * **Default memory layout** (4 GiB reservation, signals-based traps): every aos memory's
//!   declared maximum fits the reservation, so it never moves and bounds checks compare against
//!   a constant already (`memory_may_move(false)` changes nothing); without signals-based traps
//!   each evaluation runs 14–37 % more instructions.
//! * **No wasm backtraces on traps**: ao-loader's emscripten builds unwind each `longjmp` (one
//!   per aos evaluation) as a trap, and collecting its frames would cost more than the unwind.
//!   wasmtime is also built without its `backtrace` feature, so a `wasmtime::Error` (one per
//!   guest exception or `longjmp`) never captures a Rust backtrace, even under
//!   `RUST_BACKTRACE=1`, where that capture cost 7–8 % of an evaluation.
//! * **Cranelift at `speed`**, without wasm-level inlining (measured: at most 3 % faster
//!   evaluation for four times the compile time), with parallel compilation (10–15 % shorter
//!   compiles on two cores), and a bounded guest stack ([`WasmConfig::max_wasm_stack`]) so deep
//!   recursion is a trap, not a crash. `speed_and_size` compiles the same code; `none` is 5–8 %
//!   slower to run and 20–25 % faster to compile.
//!
//! ## Dependencies
//!
//! `wasmtime` (48, AOT through Cranelift) runs the modules; `wasmparser`, at the exact version
//! wasmtime itself uses, reads a module's functions for fuel metering (`meter.rs` writes the
//! metered module by copying the original bytes around the code it adds, so no encoder is
//! needed); `blake3` names artifacts; `serde_json` builds and reads the aos JSON.
//!
//! ## AOT safety
//!
//! `Module::deserialize` is `unsafe`: it trusts its input to be a wasmtime artifact. This crate
//! calls it in exactly one function, only on bytes read from the path its own `load` wrote with
//! the output of `Module::serialize`, a path that includes the engine's compatibility hash.
//! The only other `unsafe` call is `Config::cranelift_flag_set`, used solely to turn off the
//! Spectre hardening when [`WasmConfig::spectre_hardening`] is false. `unsafe_code` is therefore
//! `deny` (not `forbid`) in this crate alone, with one `expect` on each of those two functions.
//!
//! ## Failure model
//!
//! wasmtime's error is translated into [`WasmError`] at the crate edge; no wasmtime type appears
//! in the public API. A trap, an exhausted budget, the memory limit or an `exit` stop only the
//! instance concerned and *poison* it (later calls answer [`WasmError::Poisoned`]): its memory
//! may be mid-update, so the caller restores the last [`Snapshot`] or starts afresh.
//!
//! ## Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use ao_wasm::{AosInstance, Instance, WasmConfig, WasmEngine};
//!
//! let engine = WasmEngine::new(WasmConfig::default())?;
//! let store: Arc<dyn ao_core::Store> = Arc::new(ao_core::MemoryStore::new());
//! let bytes = std::fs::read("aos-2-pure-xs.exnref.wasm").unwrap();
//! let module = engine.load(&bytes, store.as_ref())?;
//! let mut aos = AosInstance::new(&module, Instance::default_limits(&module))?;
//! let result = aos.handle(r#"{"Id":"1","Tags":[{"name":"Action","value":"Eval"}],"Data":"return 1+1"}"#,
//!                         r#"{"Process":{"Id":"P","Owner":"O","Tags":[]}}"#)?;
//! # Ok::<(), ao_wasm::WasmError>(())
//! ```

mod aos;
pub mod devices;
mod engine;
mod error;
mod host;
mod instance;
mod memfs;
mod meter;
mod narrow;
mod rewrite;
mod snapshot;
mod time;

pub use aos::AosInstance;
pub use engine::{
    Budget, CompiledModule, EPOCH_TICK, EngineStats, LoadOrigin, ModuleKind, WasmConfig, WasmEngine,
};
pub use error::{Result, WasmError};
pub use host::HostImports;
pub use instance::{Instance, Limits, parse_memory_limit};
pub use snapshot::Snapshot;

/// A value passed to or returned by a wasm function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WasmValue {
    /// A 32-bit integer.
    I32(i32),
    /// A 64-bit integer.
    I64(i64),
    /// A 32-bit float.
    F32(f32),
    /// A 64-bit float.
    F64(f64),
}

impl WasmValue {
    /// The value as an integer (floats are truncated).
    pub fn as_i64(&self) -> i64 {
        match self {
            Self::I32(x) => i64::from(*x),
            Self::I64(x) => *x,
            Self::F32(x) => *x as i64,
            Self::F64(x) => *x as i64,
        }
    }

    /// The value as a float.
    pub fn as_f64(&self) -> f64 {
        match self {
            Self::I32(x) => f64::from(*x),
            Self::I64(x) => *x as f64,
            Self::F32(x) => f64::from(*x),
            Self::F64(x) => *x,
        }
    }
}

/// The module as the fuel engine compiles it: `module` with fuel metering added (see
/// [`Budget::Fuel`]). A module that is not a well-formed core module is a
/// [`WasmError::Compile`]; for a valid module the result is valid too.
pub fn meter_fuel(module: &[u8]) -> Result<Vec<u8>> {
    meter::instrument(module)
}

/// The module as an engine with Spectre hardening compiles it, before any metering: a
/// memory64 module whose memory stays below 4 GiB rewritten to use a 32-bit memory with the
/// same behaviour (see `narrow.rs`), or `None` when that does not apply (the module is then
/// compiled as it is). Whatever it returns validates.
pub fn narrow_memory64(module: &[u8]) -> Option<Vec<u8>> {
    narrow::narrow(module)
}
