//! The node's one wasmtime engine, and ahead-of-time compiled modules cached in the store.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ao_core::Store;
use bytes::Bytes;
use wasmtime::{Config, Engine, ExternType, InstancePre, Module, OptLevel};

use crate::host::{self, HostState};
use crate::{Result, WasmError};
use crate::{meter, narrow};

/// How an evaluation's budget is counted (see the crate documentation for the trade-off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Budget {
    /// Fuel: roughly, executed wasm instructions ([`WasmConfig::fuel_per_call`],
    /// [`crate::Limits::fuel`]), counted by code added to the module before it is compiled:
    /// 32 units per function entry or loop iteration, one per byte or element of a bulk
    /// operation (see `meter.rs`). Deterministic: a runaway evaluation stops at the same point
    /// on every node, so whether an evaluation fits its budget is itself a deterministic
    /// outcome. Costs 8–12 % of an aos evaluation (wasmtime's own fuel cost 20–30 %), less
    /// than [`Budget::WallClock`].
    #[default]
    Fuel,
    /// Wall-clock time ([`WasmConfig::time_per_call`], [`crate::Limits::time`]), through
    /// wasmtime's epoch interruption: a ticker thread advances the engine's epoch every
    /// [`EPOCH_TICK`], and an evaluation is stopped at the first loop header or function entry
    /// after its deadline. Where the limit falls depends on the machine and its load: an
    /// evaluation close to its budget may complete on one node and be stopped on another. Costs
    /// 12–20 % of an aos evaluation.
    WallClock,
}

/// The epoch ticker's period under [`Budget::WallClock`]; time budgets are rounded up to it.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Engine-wide settings. The per-instance ones ([`crate::Limits`]) default from here.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WasmConfig {
    /// How evaluations are budgeted.
    pub budget: Budget,
    /// Under [`Budget::Fuel`]: fuel (roughly: wasm instructions) one evaluation may use before
    /// it is stopped with [`WasmError::OutOfBudget`]. Boot of aos takes about 60 million; a
    /// `return 1+1` about 1.5 million.
    pub fuel_per_call: u64,
    /// Under [`Budget::WallClock`]: the time one evaluation may run before it is stopped with
    /// [`WasmError::OutOfTime`].
    pub time_per_call: Duration,
    /// Cranelift's Spectre hardening of memory and table accesses (a conditional move after
    /// every explicit bounds check), on by default. Guests are untrusted code in the node's
    /// process, which holds the node's key; turning this off makes memory64 modules (aos-2,
    /// the wasm64 ao-loader build) about 8–16 % faster and leaves a speculative side channel
    /// from guest code to host memory. Part of the artifact compatibility hash.
    pub spectre_hardening: bool,
    /// The default memory limit of an instance, in bytes (a process's `Memory-Limit` overrides
    /// it).
    pub memory_limit: u64,
    /// The most memory any instance may have, in bytes, whatever its `Memory-Limit` asks
    /// (`wasm-max-memory`): a tag is chosen by whoever spawns a process or calls
    /// `wasm-64@1.0`, the memory is the node's.
    pub max_memory_limit: u64,
    /// The maximum native stack a guest may use, in bytes.
    pub max_wasm_stack: usize,
    /// The store path prefix under which AOT artifacts are kept.
    pub artifact_prefix: String,
}

impl Default for WasmConfig {
    fn default() -> Self {
        Self {
            budget: Budget::Fuel,
            fuel_per_call: 20_000_000_000,
            time_per_call: Duration::from_secs(30),
            spectre_hardening: true,
            memory_limit: 4 << 30,
            max_memory_limit: 16 << 30,
            max_wasm_stack: 1 << 20,
            artifact_prefix: "ao-wasm/aot".to_owned(),
        }
    }
}

impl WasmConfig {
    /// Sets [`WasmConfig::fuel_per_call`].
    #[must_use]
    pub fn with_fuel_per_call(mut self, fuel: u64) -> Self {
        self.fuel_per_call = fuel;
        self
    }

    /// Sets [`WasmConfig::budget`].
    #[must_use]
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }

    /// Sets [`WasmConfig::time_per_call`].
    #[must_use]
    pub fn with_time_per_call(mut self, time: Duration) -> Self {
        self.time_per_call = time;
        self
    }

    /// Sets [`WasmConfig::spectre_hardening`].
    #[must_use]
    pub fn with_spectre_hardening(mut self, on: bool) -> Self {
        self.spectre_hardening = on;
        self
    }

    /// Sets [`WasmConfig::memory_limit`].
    #[must_use]
    pub fn with_memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// The defaults overridden by node options: `wasm-budget` (`fuel` or `wall-clock`, the
    /// [`Budget`]), `process-fuel` ([`WasmConfig::fuel_per_call`]), `process-time-ms`
    /// ([`WasmConfig::time_per_call`], in milliseconds), `wasm-spectre-hardening` (`true` or
    /// `false`, [`WasmConfig::spectre_hardening`]) and `wasm-max-memory` (bytes, or a
    /// `Memory-Limit` form such as `16-gb`: [`WasmConfig::max_memory_limit`]). A value of the
    /// wrong form is a
    /// [`WasmError::Config`] naming the option.
    pub fn from_options(opts: &ao_core::Message) -> Result<Self> {
        let mut c = Self::default();
        if let Some(v) = opts.get("wasm-budget") {
            c.budget = match option_text(v) {
                Some("fuel") => Budget::Fuel,
                Some("wall-clock") => Budget::WallClock,
                _ => {
                    return Err(WasmError::Config(
                        "node option wasm-budget must be `fuel` or `wall-clock`".into(),
                    ));
                }
            };
        }
        if let Some(n) = positive_option(opts, "process-fuel")? {
            c.fuel_per_call = n;
        }
        if let Some(n) = positive_option(opts, "process-time-ms")? {
            c.time_per_call = Duration::from_millis(n);
        }
        if let Some(v) = opts.get("wasm-spectre-hardening") {
            c.spectre_hardening = match option_text(v) {
                Some("true") => true,
                Some("false") => false,
                _ => {
                    return Err(WasmError::Config(
                        "node option wasm-spectre-hardening must be `true` or `false`".into(),
                    ));
                }
            };
        }
        if let Some(v) = opts.get("wasm-max-memory") {
            c.max_memory_limit = v
                .as_integer()
                .and_then(|i| u64::try_from(i).ok())
                .or_else(|| option_text(v).and_then(crate::instance::parse_memory_limit))
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    WasmError::Config(
                        "node option wasm-max-memory must be a number of bytes or a size such as `16-gb`".into(),
                    )
                })?;
        }
        Ok(c)
    }
}

/// A node option given as a string or an atom, trimmed.
fn option_text(v: &ao_core::Value) -> Option<&str> {
    v.as_str()
        .or_else(|| v.as_atom().map(|a| a.as_str()))
        .map(str::trim)
}

/// A node option that must be a positive integer, if present.
fn positive_option(opts: &ao_core::Message, key: &str) -> Result<Option<u64>> {
    match opts.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .filter(|&n| n > 0)
            .map(Some)
            .ok_or_else(|| {
                WasmError::Config(format!("node option {key} must be a positive integer"))
            }),
    }
}

/// How a [`CompiledModule`] was obtained by [`WasmEngine::load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadOrigin {
    /// Compiled by Cranelift (and its artifact stored).
    Compiled,
    /// Deserialized from an artifact found in the store.
    Deserialized,
}

/// Counters of what [`WasmEngine::load`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Modules compiled.
    pub compiled: u64,
    /// Modules deserialized from stored artifacts.
    pub deserialized: u64,
    /// Loads answered from the in-memory cache.
    pub memory_hits: u64,
}

/// Which calling convention a module follows (detected from its exports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// HyperBEAM's standalone aos builds (aos-2-pure*): `malloc` + `handle`, WASI stubs.
    AosNative,
    /// ao-loader emscripten builds (`wasm32-unknown-emscripten2`, `wasm32-unknown-emscripten4`,
    /// `wasm64-unknown-emscripten-draft_2024_02_15`): the emscripten JS runtime is emulated.
    AosEmscripten,
    /// Anything else: exported functions are called directly.
    Plain,
}

/// A compiled module, ready to instantiate. Shared (`Arc`) by every instance of it.
pub struct CompiledModule {
    pub(crate) module: Module,
    pub(crate) pre: InstancePre<HostState>,
    pub(crate) engine: WasmEngine,
    hash: [u8; 32],
    origin: LoadOrigin,
    kind: ModuleKind,
    memory64: bool,
}

impl fmt::Debug for CompiledModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledModule")
            .field("hash", &blake3::Hash::from(self.hash).to_hex().as_str())
            .field("origin", &self.origin)
            .field("kind", &self.kind)
            .field("memory64", &self.memory64)
            .finish()
    }
}

impl CompiledModule {
    /// The blake3 hash of the module's bytes.
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// How the module was first obtained (a later load that finds it live in the engine shares
    /// this handle; see [`EngineStats::memory_hits`]).
    pub fn origin(&self) -> LoadOrigin {
        self.origin
    }

    /// The detected calling convention.
    pub fn kind(&self) -> ModuleKind {
        self.kind
    }

    /// Whether the module's memory is 64-bit.
    pub fn is_memory64(&self) -> bool {
        self.memory64
    }

    /// Whether this is an emscripten build of the emscripten-2 generation (aos 1, ao-loader's
    /// `wasm32-unknown-emscripten2`).
    pub fn is_legacy_emscripten(&self) -> bool {
        self.kind == ModuleKind::AosEmscripten && host::is_legacy_emscripten(&self.module)
    }

    /// The engine this module belongs to.
    pub fn engine(&self) -> &WasmEngine {
        &self.engine
    }

    /// Names of the exported functions.
    pub fn exported_functions(&self) -> Vec<String> {
        self.module
            .exports()
            .filter(|e| matches!(e.ty(), ExternType::Func(_)))
            .map(|e| e.name().to_owned())
            .collect()
    }

    /// Imports as `module.name` strings.
    pub fn imports(&self) -> Vec<String> {
        self.module
            .imports()
            .map(|i| format!("{}.{}", i.module(), i.name()))
            .collect()
    }
}

struct EngineInner {
    engine: Engine,
    config: WasmConfig,
    compat: String,
    loaded: Mutex<HashMap<[u8; 32], Weak<CompiledModule>>>,
    compiled: AtomicU64,
    deserialized: AtomicU64,
    memory_hits: AtomicU64,
}

/// The node's wasmtime engine: one per node, cheap to clone (shared).
#[derive(Clone)]
pub struct WasmEngine {
    inner: Arc<EngineInner>,
}

impl fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmEngine")
            .field("config", &self.inner.config)
            .field("compat", &self.inner.compat)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Feeds `Hash` output into blake3, so the engine compatibility hash is a stable 32-byte value.
struct Blake3Hasher(blake3::Hasher);

impl Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        let h = self.0.finalize();
        u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or([0; 8]))
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl WasmEngine {
    /// Builds the engine. See the crate documentation for the reason behind each setting.
    pub fn new(config: WasmConfig) -> Result<Self> {
        let mut c = Config::new();
        c.wasm_memory64(true)
            .wasm_exceptions(true)
            .wasm_relaxed_simd(false)
            .relaxed_simd_deterministic(true)
            .cranelift_nan_canonicalization(true)
            .cranelift_opt_level(OptLevel::Speed)
            .table_lazy_init(false)
            // Fuel is metered by the module itself (`meter.rs`), not by wasmtime.
            .consume_fuel(false)
            .epoch_interruption(config.budget == Budget::WallClock)
            // Traps carry no wasm backtrace: the emscripten builds unwind every `longjmp` (one
            // per aos evaluation) as a trap, and collecting frames for each costs ~10 µs.
            .wasm_backtrace_max_frames(None)
            .max_wasm_stack(config.max_wasm_stack);
        if !config.spectre_hardening {
            disable_spectre_hardening(&mut c);
        }
        let engine = Engine::new(&c).map_err(|e| WasmError::Config(format!("{e:#}")))?;
        if config.budget == Budget::WallClock {
            start_epoch_ticker(&engine)?;
        }
        let mut hasher = Blake3Hasher(blake3::Hasher::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        // The artifact is of the narrowed module (when it applies).
        hasher.write(narrow::VERSION.as_bytes());
        if config.budget == Budget::Fuel {
            // The artifact is of the metered module: a different compilation of the same bytes.
            hasher.write(meter::VERSION.as_bytes());
        }
        let compat = hasher.0.finalize().to_hex()[..32].to_owned();
        Ok(Self {
            inner: Arc::new(EngineInner {
                engine,
                config,
                compat,
                loaded: Mutex::new(HashMap::new()),
                compiled: AtomicU64::new(0),
                deserialized: AtomicU64::new(0),
                memory_hits: AtomicU64::new(0),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &WasmConfig {
        &self.inner.config
    }

    pub(crate) fn wasmtime(&self) -> &Engine {
        &self.inner.engine
    }

    /// What [`WasmEngine::load`] has done so far.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            compiled: self.inner.compiled.load(Ordering::Relaxed),
            deserialized: self.inner.deserialized.load(Ordering::Relaxed),
            memory_hits: self.inner.memory_hits.load(Ordering::Relaxed),
        }
    }

    /// A short hex digest of this engine's compatibility hash (wasmtime version, target and
    /// compilation settings): artifacts are only shared between engines with equal digests.
    pub fn compatibility(&self) -> &str {
        &self.inner.compat
    }

    /// The store path of the AOT artifact of a module with this content hash.
    pub fn artifact_path(&self, module_hash: &[u8; 32]) -> String {
        format!(
            "{}/{}/{}",
            self.inner.config.artifact_prefix,
            self.inner.compat,
            blake3::Hash::from(*module_hash).to_hex()
        )
    }

    /// Loads a module: from this engine's memory if it is live, else by deserializing the
    /// artifact stored under (module hash, engine compatibility), else by compiling it and
    /// storing its artifact.
    pub fn load(&self, bytes: &[u8], store: &dyn Store) -> Result<Arc<CompiledModule>> {
        let hash = *blake3::hash(bytes).as_bytes();
        if let Some(m) = self.live(&hash) {
            return Ok(m);
        }
        let path = self.artifact_path(&hash);
        if let Some(artifact) = store.read(&path)? {
            // A damaged or stale artifact is replaced, not fatal.
            if let Ok(module) = self.deserialize_own_artifact(&artifact) {
                self.inner.deserialized.fetch_add(1, Ordering::Relaxed);
                return self.finish(module, hash, LoadOrigin::Deserialized);
            }
        }
        let module = self.compile_module(bytes)?;
        let artifact = module
            .serialize()
            .map_err(|e| WasmError::Artifact(format!("{e:#}")))?;
        store.write(&path, Bytes::from(artifact))?;
        self.finish(module, hash, LoadOrigin::Compiled)
    }

    /// Compiles a module without any artifact cache.
    pub fn compile(&self, bytes: &[u8]) -> Result<Arc<CompiledModule>> {
        let hash = *blake3::hash(bytes).as_bytes();
        let module = self.compile_module(bytes)?;
        self.finish(module, hash, LoadOrigin::Compiled)
    }

    fn live(&self, hash: &[u8; 32]) -> Option<Arc<CompiledModule>> {
        let loaded = self.inner.loaded.lock().ok()?;
        let m = loaded.get(hash)?.upgrade()?;
        self.inner.memory_hits.fetch_add(1, Ordering::Relaxed);
        Some(m)
    }

    fn compile_module(&self, bytes: &[u8]) -> Result<Module> {
        // Without Spectre hardening wasmtime's own checks of 64-bit addresses cost less.
        let narrowed = if self.inner.config.spectre_hardening {
            narrow::narrow(bytes)
        } else {
            None
        };
        let bytes = narrowed.as_deref().unwrap_or(bytes);
        let metered;
        let bytes = if self.inner.config.budget == Budget::Fuel {
            metered = meter::instrument(bytes)?;
            &metered[..]
        } else {
            bytes
        };
        let module = Module::from_binary(&self.inner.engine, bytes).map_err(|e| {
            let text = format!("{e:#}");
            if text.contains("legacy_exceptions") {
                WasmError::LegacyExceptions
            } else {
                WasmError::Compile(text)
            }
        })?;
        self.inner.compiled.fetch_add(1, Ordering::Relaxed);
        Ok(module)
    }

    /// Deserializes an artifact read from this node's store.
    #[expect(
        unsafe_code,
        reason = "Module::deserialize is unsafe; this is the crate's single call (see SAFETY)"
    )]
    fn deserialize_own_artifact(&self, artifact: &[u8]) -> Result<Module> {
        // SAFETY: `Module::deserialize` requires bytes produced by `Module::serialize` or
        // `Engine::precompile_module` of a compatible wasmtime. The only bytes passed here are
        // read from the store path built by `artifact_path`, which is written exclusively by
        // `load` with the output of our own `Module::serialize`; the path contains this engine's
        // `precompile_compatibility_hash`, so an artifact of another wasmtime version or
        // configuration lives under another path and is never read; and wasmtime itself checks
        // the version and configuration embedded in the artifact and returns `Err` on mismatch.
        // The store is this node's own, not writable by peers or clients.
        unsafe { Module::deserialize(&self.inner.engine, artifact) }
            .map_err(|e| WasmError::Artifact(format!("{e:#}")))
    }

    fn finish(
        &self,
        module: Module,
        hash: [u8; 32],
        origin: LoadOrigin,
    ) -> Result<Arc<CompiledModule>> {
        let kind = detect_kind(&module);
        let memory64 = module.get_export(narrow::MARKER_EXPORT).is_some()
            || module.exports().any(|e| match e.ty() {
                ExternType::Memory(m) => m.is_64(),
                _ => false,
            })
            || module.imports().any(|i| match i.ty() {
                ExternType::Memory(m) => m.is_64(),
                _ => false,
            });
        let pre = host::link(&self.inner.engine, &module, kind)?;
        let compiled = Arc::new(CompiledModule {
            module,
            pre,
            engine: self.clone(),
            hash,
            origin,
            kind,
            memory64,
        });
        if let Ok(mut loaded) = self.inner.loaded.lock() {
            loaded.retain(|_, w| w.strong_count() > 0);
            loaded.insert(hash, Arc::downgrade(&compiled));
        }
        Ok(compiled)
    }
}

/// Turns off Cranelift's Spectre hardening of heap and table accesses ([`WasmConfig::spectre_hardening`]).
#[expect(
    unsafe_code,
    reason = "raw Cranelift flags can only be set through an unsafe wasmtime call (see SAFETY)"
)]
fn disable_spectre_hardening(c: &mut Config) {
    for flag in [
        "enable_heap_access_spectre_mitigation",
        "enable_table_access_spectre_mitigation",
    ] {
        // SAFETY: `cranelift_flag_set` is unsafe because an arbitrary flag could make Cranelift
        // emit code that breaks wasmtime's invariants. These two flags only remove the
        // conditional move that hardens an explicit bounds check against *speculative*
        // execution; the architectural bounds check (and its trap) stays, so memory safety of
        // guest accesses is unchanged. Both flags are booleans that Cranelift knows (an unknown
        // flag or value makes `Engine::new` fail, not misbehave).
        unsafe {
            c.cranelift_flag_set(flag, "false");
        }
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
fn start_epoch_ticker(engine: &Engine) -> Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("ao-wasm-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .map(drop)
        .map_err(|e| WasmError::Config(format!("cannot start the epoch ticker: {e}")))
}

fn detect_kind(module: &Module) -> ModuleKind {
    let has = |name: &str| module.get_export(name).is_some();
    if has("handle") && has("malloc") {
        if has("emscripten_stack_init") && has("setThrew") {
            ModuleKind::AosEmscripten
        } else {
            ModuleKind::AosNative
        }
    } else {
        ModuleKind::Plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ao_core::Message;

    #[test]
    fn node_options_choose_the_budget() {
        let c = WasmConfig::from_options(&Message::new()).unwrap();
        assert_eq!(c.budget, Budget::Fuel);
        assert_eq!(c.fuel_per_call, WasmConfig::default().fuel_per_call);

        let opts = Message::new()
            .with("wasm-budget", "wall-clock")
            .with("process-time-ms", "250")
            .with("process-fuel", 5_000_i64);
        let c = WasmConfig::from_options(&opts).unwrap();
        assert_eq!(c.budget, Budget::WallClock);
        assert_eq!(c.time_per_call, Duration::from_millis(250));
        assert_eq!(c.fuel_per_call, 5_000);

        let c = WasmConfig::from_options(&Message::new().with("wasm-budget", "fuel")).unwrap();
        assert_eq!(c.budget, Budget::Fuel);
    }

    #[test]
    fn node_option_turns_spectre_hardening_off() {
        assert!(
            WasmConfig::from_options(&Message::new())
                .unwrap()
                .spectre_hardening
        );
        let off = Message::new().with("wasm-spectre-hardening", "false");
        let c = WasmConfig::from_options(&off).unwrap();
        assert!(!c.spectre_hardening);
        assert_eq!(c.budget, Budget::Fuel, "the budget is a separate choice");
        let on = Message::new().with("wasm-spectre-hardening", "true");
        assert!(WasmConfig::from_options(&on).unwrap().spectre_hardening);
        // The setting is part of the artifact compatibility hash: an engine without the
        // hardening never deserializes an artifact compiled with it, or the reverse.
        let hardened = WasmEngine::new(WasmConfig::default()).unwrap();
        let plain = WasmEngine::new(WasmConfig::from_options(&off).unwrap()).unwrap();
        assert_ne!(hardened.compatibility(), plain.compatibility());
    }

    #[test]
    fn bad_budget_options_are_named_in_the_error() {
        for (key, value) in [
            ("wasm-budget", "epochs"),
            ("process-time-ms", "0"),
            ("process-time-ms", "soon"),
            ("process-fuel", "-1"),
            ("wasm-spectre-hardening", "off"),
        ] {
            let err = WasmConfig::from_options(&Message::new().with(key, value)).unwrap_err();
            assert!(
                matches!(&err, WasmError::Config(m) if m.contains(key)),
                "{key}={value}: {err}"
            );
        }
    }
}
