//! A live instance of a compiled module: calls under a fuel budget and a memory limit, memory
//! access, and snapshots.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{ExternType, Mutability, Store, Val};

use crate::engine::{Budget, CompiledModule, EPOCH_TICK, ModuleKind};
use crate::host::{self, EmRuntime, HostImports, HostState};
use crate::meter;
use crate::snapshot::Snapshot;
use crate::{Result, WasmError, WasmValue};

/// Per-instance limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Fuel one call (one evaluation) may use, when the engine counts fuel ([`Budget::Fuel`]).
    pub fuel: u64,
    /// Time one call may run, when the engine budgets wall-clock time ([`Budget::WallClock`]);
    /// rounded up to [`EPOCH_TICK`].
    pub time: Duration,
    /// The most bytes the instance's memory may grow to.
    pub memory_bytes: u64,
}

impl Limits {
    /// Limits built from explicit values (and a time budget of 30 s).
    pub fn new(fuel: u64, memory_bytes: u64) -> Self {
        Self {
            fuel,
            time: Duration::from_secs(30),
            memory_bytes,
        }
    }

    /// Sets the time budget per call.
    #[must_use]
    pub fn with_time(mut self, time: Duration) -> Self {
        self.time = time;
        self
    }

    /// The epoch deadline, in ticks beyond the current epoch, for the time budget.
    fn epoch_ticks(&self) -> u64 {
        let tick = EPOCH_TICK.as_nanos();
        // One extra tick: the current one may be about to end.
        u64::try_from(self.time.as_nanos().div_ceil(tick) + 1).unwrap_or(u64::MAX)
    }

    /// Sets the memory limit from a process's `Memory-Limit` value (`"1-gb"`, `"512-mb"`,
    /// `"65536"`…); an unparsable value leaves the limit unchanged.
    #[must_use]
    pub fn with_memory_limit_tag(mut self, tag: &str) -> Self {
        if let Some(bytes) = parse_memory_limit(tag) {
            self.memory_bytes = bytes;
        }
        self
    }

    /// Sets the memory limit in bytes.
    #[must_use]
    pub fn with_memory_bytes(mut self, bytes: u64) -> Self {
        self.memory_bytes = bytes;
        self
    }

    /// Sets the fuel budget per call.
    #[must_use]
    pub fn with_fuel(mut self, fuel: u64) -> Self {
        self.fuel = fuel;
        self
    }
}

/// Parses an AO `Memory-Limit` value: a number of bytes, optionally with a `-kb`, `-mb`, `-gb`
/// or `-tb` unit (case-insensitive; a space or no separator is also accepted).
pub fn parse_memory_limit(tag: &str) -> Option<u64> {
    let t = tag.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let unit = unit.trim_start_matches(['-', ' ', '_']);
    let mult: u64 = match unit {
        "" | "b" => 1,
        "kb" | "k" | "kib" => 1 << 10,
        "mb" | "m" | "mib" => 1 << 20,
        "gb" | "g" | "gib" => 1 << 30,
        "tb" | "t" | "tib" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A live instance.
pub struct Instance {
    module: Arc<CompiledModule>,
    store: Store<HostState>,
    instance: wasmtime::Instance,
    limits: Limits,
    poisoned: Option<String>,
    last_fuel_used: u64,
    /// Under [`Budget::Fuel`]: the metered module's fuel-left global.
    fuel: Option<wasmtime::Global>,
}

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance")
            .field("module", &self.module)
            .field("limits", &self.limits)
            .field("poisoned", &self.poisoned)
            .field("host", self.store.data())
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// Instantiates a module with only the host's own imports (unknown imports answer zeros).
    pub fn new(module: &Arc<CompiledModule>, limits: Limits) -> Result<Self> {
        Self::build(module, limits, None)
    }

    /// Instantiates a module whose unknown imports are served by `imports`.
    pub fn with_imports(
        module: &Arc<CompiledModule>,
        limits: Limits,
        imports: impl HostImports,
    ) -> Result<Self> {
        Self::build(module, limits, Some(Box::new(imports)))
    }

    /// The default limits of a module's engine.
    pub fn default_limits(module: &CompiledModule) -> Limits {
        let c = module.engine().config();
        Limits::new(c.fuel_per_call, c.memory_limit).with_time(c.time_per_call)
    }

    fn build(
        module: &Arc<CompiledModule>,
        limits: Limits,
        user: Option<Box<dyn HostImports>>,
    ) -> Result<Self> {
        let engine = module.engine().wasmtime();
        // No instance has more memory than the node allows, whatever its tag asked.
        let mut limits = limits;
        limits.memory_bytes = limits
            .memory_bytes
            .min(module.engine().config().max_memory_limit);
        let mut store = Store::new(engine, HostState::new(limits.memory_bytes, user));
        store.limiter(|s| s as &mut dyn wasmtime::ResourceLimiter);
        // Under fuel, instantiation (a start function) runs on the count the module was
        // metered with.
        set_budget(&mut store, module.engine().config().budget, &limits, None)?;
        let instance =
            module
                .pre
                .instantiate(&mut store)
                .map_err(|e| match host::translate(e, &limits) {
                    WasmError::Trap(m) => WasmError::Link(m),
                    other => other,
                })?;
        let memory = instance.get_memory(&mut store, "memory").or_else(|| {
            module.module.exports().find_map(|e| match e.ty() {
                ExternType::Memory(_) => instance.get_memory(&mut store, e.name()),
                _ => None,
            })
        });
        let set_threw = instance.get_func(&mut store, "setThrew").map(|f| {
            let ty = f.ty(&store);
            let mut args = [Val::I32(1), Val::I32(0)];
            for (a, t) in args.iter_mut().zip(ty.params()) {
                if matches!(t, wasmtime::ValType::I64) {
                    *a = Val::I64(val_as_i64(a));
                }
            }
            (f, args)
        });
        // The stack helpers under their current names, or the emscripten-2 ones.
        let export = |store: &mut Store<HostState>, names: [&str; 2]| {
            names
                .into_iter()
                .find_map(|n| instance.get_func(&mut *store, n))
        };
        let runtime = EmRuntime {
            table: instance.get_table(&mut store, "__indirect_function_table"),
            set_threw,
            stack_get: export(&mut store, ["emscripten_stack_get_current", "stackSave"]),
            stack_restore: export(&mut store, ["_emscripten_stack_restore", "stackRestore"]),
            stack_alloc: export(&mut store, ["_emscripten_stack_alloc", "stackAlloc"]),
            legacy: host::is_legacy_emscripten(&module.module),
        };
        let fuel = match module.engine().config().budget {
            Budget::Fuel => Some(
                instance
                    .get_global(&mut store, meter::FUEL_EXPORT)
                    .ok_or_else(|| {
                        WasmError::Link("the metered module has no fuel counter".into())
                    })?,
            ),
            Budget::WallClock => None,
        };
        let state = store.data_mut();
        state.memory = memory;
        state.fuel = fuel;
        state.runtime = Some(runtime);
        let mut me = Self {
            module: Arc::clone(module),
            store,
            instance,
            limits,
            poisoned: None,
            last_fuel_used: 0,
            fuel,
        };
        if module.kind() == ModuleKind::AosEmscripten {
            // The emscripten runtime's start-up, as ao-loader's glue runs it. The emscripten-2
            // glue then runs `main` too; the newer ones do not.
            let legacy = host::is_legacy_emscripten(&module.module);
            me.run(|store, inst| {
                for name in ["emscripten_stack_init", "__wasm_call_ctors"] {
                    if let Some(f) = inst.get_func(&mut *store, name) {
                        f.call(&mut *store, &[], &mut [])?;
                    }
                }
                if legacy {
                    call_main_legacy(store, inst)?;
                }
                Ok(())
            })?;
        }
        Ok(me)
    }

    /// The module.
    pub fn module(&self) -> &Arc<CompiledModule> {
        &self.module
    }

    /// The limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Why the instance is unusable, if an earlier call failed mid-way.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    /// Fuel the last call used (0 unless the engine counts fuel).
    pub fn last_fuel_used(&self) -> u64 {
        self.last_fuel_used
    }

    /// Calls of imports nobody implements (answered with zeros), so far.
    pub fn undefined_calls(&self) -> u64 {
        self.store.data().undefined_calls
    }

    /// What the guest wrote to stdout (the last MiB).
    pub fn stdout(&self) -> &[u8] {
        host::captured(&self.store.data().stdout)
    }

    /// What the guest wrote to stderr and other descriptors (the last MiB).
    pub fn stderr(&self) -> &[u8] {
        host::captured(&self.store.data().stderr)
    }

    /// Clears the captured stdout and stderr.
    pub fn clear_output(&mut self) {
        let s = self.store.data_mut();
        s.stdout.clear();
        s.stderr.clear();
    }

    /// Runs guest code under a fresh budget, translating and recording failures.
    pub(crate) fn run<R>(
        &mut self,
        f: impl FnOnce(&mut Store<HostState>, &wasmtime::Instance) -> wasmtime::Result<R>,
    ) -> Result<R> {
        if let Some(why) = &self.poisoned {
            return Err(WasmError::Poisoned(why.clone()));
        }
        let kind = self.module.engine().config().budget;
        set_budget(&mut self.store, kind, &self.limits, self.fuel)?;
        let out = f(&mut self.store, &self.instance);
        let mut out_of_fuel = false;
        if let Some(g) = self.fuel {
            let left = match g.get(&mut self.store) {
                Val::I64(left) => u64::try_from(left).unwrap_or(0),
                _ => 0,
            };
            self.last_fuel_used = self.limits.fuel.saturating_sub(left);
            // The metering leaves the counter at zero when it stops an evaluation.
            out_of_fuel = left == 0;
        }
        out.map_err(|e| {
            let err = if out_of_fuel {
                WasmError::OutOfBudget {
                    budget: self.limits.fuel,
                }
            } else {
                host::translate(e, &self.limits)
            };
            if err.poisons() {
                self.poisoned = Some(err.to_string());
            }
            err
        })
    }

    /// Calls an exported function.
    pub fn call(&mut self, name: &str, args: &[WasmValue]) -> Result<Vec<WasmValue>> {
        let func = self
            .instance
            .get_func(&mut self.store, name)
            .ok_or_else(|| WasmError::Export {
                name: name.to_owned(),
                reason: "no such exported function".into(),
            })?;
        let ty = func.ty(&self.store);
        if ty.params().len() != args.len() {
            return Err(WasmError::BadCall {
                name: name.to_owned(),
                reason: format!(
                    "takes {} arguments, {} given",
                    ty.params().len(),
                    args.len()
                ),
            });
        }
        // Integers and floats are converted to the declared width (AO-Core values carry no
        // width); an integer where a float is declared, or the reverse, is refused.
        let mut params = Vec::with_capacity(args.len());
        for (i, (a, t)) in args.iter().zip(ty.params()).enumerate() {
            let v = match (a, &t) {
                (WasmValue::I32(x), wasmtime::ValType::I32) => Val::I32(*x),
                (WasmValue::I64(x), wasmtime::ValType::I32) => Val::I32(*x as i32),
                (WasmValue::I32(x), wasmtime::ValType::I64) => Val::I64(i64::from(*x)),
                (WasmValue::I64(x), wasmtime::ValType::I64) => Val::I64(*x),
                (WasmValue::F32(x), wasmtime::ValType::F32) => Val::F32(x.to_bits()),
                (WasmValue::F64(x), wasmtime::ValType::F32) => Val::F32((*x as f32).to_bits()),
                (WasmValue::F32(x), wasmtime::ValType::F64) => Val::F64(f64::from(*x).to_bits()),
                (WasmValue::F64(x), wasmtime::ValType::F64) => Val::F64(x.to_bits()),
                _ => {
                    return Err(WasmError::BadCall {
                        name: name.to_owned(),
                        reason: format!("argument {i} should be {t}"),
                    });
                }
            };
            params.push(v);
        }
        let mut results = vec![Val::I32(0); ty.results().len()];
        self.run(|store, _| func.call(store, &params, &mut results))?;
        Ok(results.iter().map(to_public).collect())
    }

    fn memory(&self) -> Result<wasmtime::Memory> {
        self.store.data().memory.ok_or_else(|| WasmError::Export {
            name: "memory".into(),
            reason: "the module exports no memory".into(),
        })
    }

    /// The memory's size in bytes (0 without a memory).
    pub fn memory_size(&self) -> u64 {
        self.store
            .data()
            .memory
            .map_or(0, |m| m.data_size(&self.store) as u64)
    }

    /// Reads guest memory.
    pub fn read_memory(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let data = self.memory()?.data(&self.store);
        let range = bounds(data.len(), offset, len)?;
        Ok(data[range].to_vec())
    }

    /// Writes guest memory.
    pub fn write_memory(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let mem = self.memory()?;
        let data = mem.data_mut(&mut self.store);
        let range = bounds(data.len(), offset, bytes.len() as u64)?;
        data[range].copy_from_slice(bytes);
        Ok(())
    }

    /// Copies `bytes` plus a NUL into memory obtained from the guest's exported `malloc`, and
    /// returns the address (HyperBEAM's `write` closure; nothing is ever freed).
    pub fn write_cstring(&mut self, bytes: &[u8]) -> Result<u64> {
        if bytes.contains(&0) {
            return Err(WasmError::BadCall {
                name: "malloc".into(),
                reason: "string contains a NUL byte".into(),
            });
        }
        let ptr_is_64 = self.module.is_memory64();
        let size = bytes.len() as i64 + 1;
        let arg = if ptr_is_64 {
            WasmValue::I64(size)
        } else {
            WasmValue::I32(size as i32)
        };
        let out = self.call("malloc", &[arg])?;
        let ptr = match out.first() {
            Some(WasmValue::I32(p)) => u64::from(*p as u32),
            Some(WasmValue::I64(p)) => *p as u64,
            _ => 0,
        };
        if ptr == 0 {
            return Err(WasmError::Memory(format!("malloc({size}) failed")));
        }
        let mut with_nul = Vec::with_capacity(bytes.len() + 1);
        with_nul.extend_from_slice(bytes);
        with_nul.push(0);
        self.write_memory(ptr, &with_nul)?;
        Ok(ptr)
    }

    /// Replaces the embedder's import handler (e.g. one bound to the current AO-Core state).
    pub fn set_imports(&mut self, imports: Option<Box<dyn HostImports>>) {
        self.store.data_mut().user = imports;
    }

    /// Reads the NUL-terminated string at `ptr`.
    pub fn read_cstr(&self, ptr: u64) -> Result<Vec<u8>> {
        let data = self.memory()?.data(&self.store);
        let start = bounds(data.len(), ptr, 0)?.start;
        let rest = &data[start..];
        let n = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| WasmError::Memory(format!("unterminated string at {ptr}")))?;
        Ok(rest[..n].to_vec())
    }

    /// Captures the instance's state: all of linear memory, every exported mutable global, the
    /// emscripten stack pointer when the module exports it, and the host's own counters.
    pub fn snapshot(&mut self) -> Result<Snapshot> {
        if let Some(why) = &self.poisoned {
            return Err(WasmError::Poisoned(why.clone()));
        }
        let memory = match self.store.data().memory {
            Some(m) => bytes::Bytes::copy_from_slice(m.data(&self.store)),
            None => bytes::Bytes::new(),
        };
        let mut globals = Vec::new();
        let names: Vec<String> = self
            .module
            .module
            .exports()
            .filter_map(|e| match e.ty() {
                // The step counter is the budget's, not the guest's state.
                ExternType::Global(g)
                    if g.mutability() == Mutability::Var && e.name() != meter::FUEL_EXPORT =>
                {
                    Some(e.name().to_owned())
                }
                _ => None,
            })
            .collect();
        for name in names {
            if let Some(g) = self.instance.get_global(&mut self.store, &name) {
                globals.push((name, to_public(&g.get(&mut self.store))));
            }
        }
        let stack_pointer = match self.store.data().runtime.as_ref().and_then(|r| r.stack_get) {
            Some(f) => {
                let mut out = [Val::I64(0)];
                self.run(|store, _| f.call(store, &[], &mut out))?;
                Some(to_public(&out[0]))
            }
            None => None,
        };
        Ok(Snapshot::new(
            memory,
            globals,
            stack_pointer,
            self.store.data().date_now,
        ))
    }

    /// A fresh instance of `module` put in the state of `snapshot`.
    pub fn restore(
        module: &Arc<CompiledModule>,
        limits: Limits,
        snapshot: &Snapshot,
    ) -> Result<Self> {
        let mut inst = Self::new(module, limits)?;
        inst.apply_snapshot(snapshot)?;
        Ok(inst)
    }

    /// Like [`Instance::restore`], with imports served by `imports`.
    pub fn restore_with_imports(
        module: &Arc<CompiledModule>,
        limits: Limits,
        imports: impl HostImports,
        snapshot: &Snapshot,
    ) -> Result<Self> {
        let mut inst = Self::with_imports(module, limits, imports)?;
        inst.apply_snapshot(snapshot)?;
        Ok(inst)
    }

    /// Writes a snapshot into this instance: grows memory to the snapshot's size first (a
    /// HyperBEAM snapshot may be larger than a fresh instance), copies it from offset 0, then
    /// sets the globals and stack pointer. The instance must not be larger than the snapshot.
    pub fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<()> {
        let bytes = snapshot.memory();
        if let Some(mem) = self.store.data().memory {
            let current = mem.data_size(&self.store) as u64;
            let wanted = bytes.len() as u64;
            if wanted > current {
                let pages = (wanted - current).div_ceil(65_536);
                mem.grow(&mut self.store, pages).map_err(|e| {
                    match host::translate(e, &self.limits) {
                        e @ WasmError::OutOfMemory { .. } => e,
                        other => WasmError::Snapshot(format!("cannot grow memory: {other}")),
                    }
                })?;
            }
            let data = mem.data_mut(&mut self.store);
            if data.len() as u64 > wanted && wanted > 0 {
                // A snapshot shorter than the instance (e.g. one taken before the memory grew,
                // restored into a larger instance): the rest is zero, as it was then.
                data[bytes.len()..].fill(0);
            }
            data[..bytes.len()].copy_from_slice(bytes);
        } else if !bytes.is_empty() {
            return Err(WasmError::Snapshot(
                "snapshot has memory but the module exports none".into(),
            ));
        }
        for (name, value) in snapshot.globals() {
            let g = self
                .instance
                .get_global(&mut self.store, name)
                .ok_or_else(|| WasmError::Snapshot(format!("no exported global {name:?}")))?;
            g.set(&mut self.store, host::from_public(value))
                .map_err(|e| WasmError::Snapshot(format!("global {name:?}: {e:#}")))?;
        }
        if let (Some(sp), Some(f)) = (
            snapshot.stack_pointer(),
            self.store
                .data()
                .runtime
                .as_ref()
                .and_then(|r| r.stack_restore),
        ) {
            let arg = host::from_public(&sp);
            self.run(|store, _| f.call(store, &[arg], &mut []))?;
        }
        if let Some(t) = snapshot.date_now() {
            self.store.data_mut().date_now = t;
        }
        self.poisoned = None;
        Ok(())
    }
}

/// The emscripten-2 glue's `callMain([])`: `argv` = `["./this.program", NULL]` on the stack
/// (which it leaves allocated), then `main(1, argv)`; its exit status is ignored (the runtime is
/// kept alive). Under node the glue would pass the node script's own path and arguments; the
/// program name outside node is used instead, so the instance does not depend on how a process
/// was started.
fn call_main_legacy(
    store: &mut Store<HostState>,
    inst: &wasmtime::Instance,
) -> wasmtime::Result<()> {
    let (Some(alloc), Some(main)) = (
        inst.get_func(&mut *store, "stackAlloc"),
        inst.get_func(&mut *store, "main"),
    ) else {
        return Ok(());
    };
    let stack_alloc = |store: &mut Store<HostState>, size: i32| -> wasmtime::Result<u64> {
        let mut out = [Val::I32(0)];
        alloc.call(&mut *store, &[Val::I32(size)], &mut out)?;
        Ok(u64::from(out[0].unwrap_i32() as u32))
    };
    const PROGRAM: &[u8] = b"./this.program\0";
    let argv = stack_alloc(store, 8)?;
    let name = stack_alloc(store, PROGRAM.len() as i32)?;
    let memory = store
        .data()
        .memory
        .ok_or_else(|| wasmtime::Error::msg("module exports no memory"))?;
    let data = memory.data_mut(&mut *store);
    let (a, n) = (argv as usize, name as usize);
    if n + PROGRAM.len() > data.len() || a + 8 > data.len() {
        return Err(wasmtime::Error::msg("stackAlloc answered outside memory"));
    }
    data[n..n + PROGRAM.len()].copy_from_slice(PROGRAM);
    data[a..a + 4].copy_from_slice(&(name as u32).to_le_bytes());
    data[a + 4..a + 8].fill(0);
    let mut out = [Val::I32(0)];
    match main.call(&mut *store, &[Val::I32(1), Val::I32(argv as i32)], &mut out) {
        Ok(()) => Ok(()),
        // `exit()` from `main` ends the program, not the runtime.
        Err(e)
            if matches!(
                e.downcast_ref::<host::HostError>(),
                Some(host::HostError::Exit(_))
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Gives the store a fresh budget for the next call.
fn set_budget(
    store: &mut Store<HostState>,
    kind: Budget,
    limits: &Limits,
    fuel: Option<wasmtime::Global>,
) -> Result<()> {
    match kind {
        Budget::Fuel => match fuel {
            Some(g) => g
                .set(
                    &mut *store,
                    Val::I64(i64::try_from(limits.fuel).unwrap_or(i64::MAX)),
                )
                .map_err(|e| WasmError::Config(format!("{e:#}"))),
            None => Ok(()),
        },
        Budget::WallClock => {
            store.set_epoch_deadline(limits.epoch_ticks());
            Ok(())
        }
    }
}

fn val_as_i64(v: &Val) -> i64 {
    match v {
        Val::I32(x) => i64::from(*x),
        Val::I64(x) => *x,
        _ => 0,
    }
}

fn to_public(v: &Val) -> WasmValue {
    match v {
        Val::I32(x) => WasmValue::I32(*x),
        Val::I64(x) => WasmValue::I64(*x),
        Val::F32(x) => WasmValue::F32(f32::from_bits(*x)),
        Val::F64(x) => WasmValue::F64(f64::from_bits(*x)),
        _ => WasmValue::I32(0),
    }
}

fn bounds(size: usize, offset: u64, len: u64) -> Result<std::ops::Range<usize>> {
    match offset.checked_add(len) {
        Some(end) if end <= size as u64 => Ok(offset as usize..end as usize),
        _ => Err(WasmError::Memory(format!(
            "{len} bytes at {offset} outside a memory of {size} bytes"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_memory_limit;

    #[test]
    fn memory_limit_tags() {
        assert_eq!(parse_memory_limit("1-gb"), Some(1 << 30));
        assert_eq!(parse_memory_limit("512-MB"), Some(512 << 20));
        assert_eq!(parse_memory_limit("65536"), Some(65_536));
        assert_eq!(parse_memory_limit("16 kb"), Some(16 << 10));
        assert_eq!(parse_memory_limit("lots"), None);
    }
}
