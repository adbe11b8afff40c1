//! Host functions: the imports a module gets, chosen per import by name and signature.
//!
//! Two behaviours exist for the same import names:
//!
//! * **HyperBEAM's** (native aos builds and plain modules): `dev_wasi`'s deterministic WASI
//!   (`fd_write` captured, `clock_time_get` answers errno 1 without writing a time), every other
//!   known WASI call and every `env.__syscall_*` answers 0, and unknown imports answer zeros
//!   (`devices.md` §3.9–§3.10, §5.2).
//! * **ao-loader's** (emscripten builds): the parts of the emscripten JS runtime that
//!   `@permaweb/ao-loader` 0.0.49 provides and aos reaches — `invoke_*` trampolines with
//!   setjmp/longjmp semantics, memmove, heap growth with emscripten's over-allocation rule, the
//!   deterministic `Date.now` counter ao-loader installs, UTC time conversion and `strftime`, an
//!   empty environment, and WeaveDrive answering "not available".

use std::fmt;

use wasmtime::{
    Caller, Engine, ExternType, Func, FuncType, InstancePre, Linker, Memory, Module,
    ResourceLimiter, Table, Val, ValType,
};

use crate::engine::ModuleKind;
use crate::memfs::{self, Dev, Io, MemFs};
use crate::{Limits, Result, WasmError, WasmValue};

/// Imports the embedder serves (e.g. `my_lib.mul` of `pow_calculator.wasm`).
///
/// Called for every import this crate does not implement itself. Return `None` to let the host
/// answer as HyperBEAM does for an unresolved import: zeros (and the call is counted).
pub trait HostImports: Send + 'static {
    /// Serves `module.name(args)`.
    fn call(&mut self, module: &str, name: &str, args: &[WasmValue]) -> Option<Vec<WasmValue>>;
}

impl<F> HostImports for F
where
    F: FnMut(&str, &str, &[WasmValue]) -> Option<Vec<WasmValue>> + Send + 'static,
{
    fn call(&mut self, module: &str, name: &str, args: &[WasmValue]) -> Option<Vec<WasmValue>> {
        self(module, name, args)
    }
}

/// Most bytes of guest stdout/stderr kept per instance (older output is dropped).
pub(crate) const MAX_CAPTURE: usize = 1 << 20;

/// The last [`MAX_CAPTURE`] bytes of a capture buffer (which holds up to twice as many, so that
/// dropping old output is amortised).
pub(crate) fn captured(sink: &[u8]) -> &[u8] {
    &sink[sink.len().saturating_sub(MAX_CAPTURE)..]
}

/// The emscripten runtime exports the trampolines need, found after instantiation.
#[derive(Clone)]
pub(crate) struct EmRuntime {
    pub(crate) table: Option<Table>,
    pub(crate) set_threw: Option<(Func, [Val; 2])>,
    pub(crate) stack_get: Option<Func>,
    pub(crate) stack_restore: Option<Func>,
    pub(crate) stack_alloc: Option<Func>,
    /// The emscripten-2 generation (`wasm32-unknown-emscripten2`, aos 1): JS glue with older
    /// conventions (`stackSave`/`stackAlloc`, `ccall` reserving 4 bytes per UTF-16 unit).
    pub(crate) legacy: bool,
}

/// Per-instance host state (the `T` of `wasmtime::Store<T>`).
pub(crate) struct HostState {
    pub(crate) memory: Option<Memory>,
    pub(crate) runtime: Option<EmRuntime>,
    pub(crate) memory_limit: u64,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    pub(crate) user: Option<Box<dyn HostImports>>,
    pub(crate) undefined_calls: u64,
    /// ao-loader's `Date.now` replacement: starts at 10 000 and counts up by one per call.
    pub(crate) date_now: f64,
    /// emscripten's `tempRet0` (the high half of an i64 result in the emscripten-2 ABI).
    pub(crate) temp_ret0: i32,
    /// Whether the emscripten-2 glue's `_tzset_js` has run in this instance (it runs once).
    pub(crate) tzset_done: bool,
    /// The emscripten-2 glue's in-memory file system, made on first use (not in snapshots).
    pub(crate) fs: Option<MemFs>,
    /// The metered module's fuel counter (under [`crate::Budget::Fuel`]): host functions charge
    /// the work they do for the guest to it ([`charge`]).
    pub(crate) fuel: Option<wasmtime::Global>,
}

impl fmt::Debug for HostState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostState")
            .field("memory_limit", &self.memory_limit)
            .field("stdout", &self.stdout.len())
            .field("stderr", &self.stderr.len())
            .field("undefined_calls", &self.undefined_calls)
            .finish_non_exhaustive()
    }
}

impl HostState {
    pub(crate) fn new(memory_limit: u64, user: Option<Box<dyn HostImports>>) -> Self {
        Self {
            memory: None,
            runtime: None,
            memory_limit,
            stdout: Vec::new(),
            stderr: Vec::new(),
            user,
            undefined_calls: 0,
            date_now: 10_000.0,
            temp_ret0: 0,
            tzset_done: false,
            fs: None,
            fuel: None,
        }
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        if desired as u64 > self.memory_limit {
            return Err(HostError::OutOfMemory {
                requested: desired as u64,
                limit: self.memory_limit,
            }
            .into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|m| desired <= m) && desired <= 10_000_000)
    }
}

/// Why a host function stopped the guest. Carried through wasmtime's error and translated at
/// the crate edge.
#[derive(Debug)]
pub(crate) enum HostError {
    /// `exit` / `proc_exit`.
    Exit(i32),
    /// emscripten's `_emscripten_throw_longjmp`: unwinds to the nearest `invoke_*`.
    Longjmp,
    /// `abort()` and friends.
    Abort(String),
    /// The memory limit was hit.
    OutOfMemory { requested: u64, limit: u64 },
    /// The guest handed the host a bad pointer.
    Memory(String),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exit(c) => write!(f, "exit({c})"),
            Self::Longjmp => f.write_str("longjmp"),
            Self::Abort(m) => write!(f, "abort: {m}"),
            Self::OutOfMemory { requested, limit } => {
                write!(f, "memory limit {limit} exceeded ({requested} requested)")
            }
            Self::Memory(m) => write!(f, "bad guest pointer: {m}"),
        }
    }
}

impl std::error::Error for HostError {}

/// Translates an error out of wasmtime into the crate's typed error (`limits`: the budget the
/// failed call ran under).
pub(crate) fn translate(e: wasmtime::Error, limits: &Limits) -> WasmError {
    if let Some(h) = e.downcast_ref::<HostError>() {
        return match h {
            HostError::Exit(c) => WasmError::Exit(*c),
            HostError::Longjmp => WasmError::Trap("longjmp outside of any invoke_*".into()),
            HostError::Abort(m) => WasmError::Trap(format!("abort: {m}")),
            HostError::OutOfMemory { requested, limit } => WasmError::OutOfMemory {
                requested: *requested,
                limit: *limit,
            },
            HostError::Memory(m) => WasmError::Memory(m.clone()),
        };
    }
    if let Some(t) = e.downcast_ref::<wasmtime::Trap>() {
        match t {
            wasmtime::Trap::OutOfFuel => {
                return WasmError::OutOfBudget {
                    budget: limits.fuel,
                };
            }
            wasmtime::Trap::Interrupt => {
                return WasmError::OutOfTime {
                    millis: u64::try_from(limits.time.as_millis()).unwrap_or(u64::MAX),
                };
            }
            _ => {}
        }
        return WasmError::Trap(t.to_string());
    }
    WasmError::Trap(format!("{e:#}"))
}

/// What a given import does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Import {
    FdWrite,
    FdRead,
    ClockTimeGet,
    EnvironSizesGet,
    ProcExit,
    /// Known stub answering 0 (HyperBEAM's `[0]`).
    Zero,
    /// A syscall ao-loader's FS would refuse here: answers `-errno`.
    Errno(i32),
    Invoke,
    ThrowLongjmp,
    Memcpy,
    ResizeHeap,
    Abort,
    Exit,
    DateNow,
    One,
    TzsetJs,
    TimeToTm,
    MktimeJs,
    Strftime,
    Ioctl,
    SetTempRet0,
    GetTempRet0,
    /// emscripten 2: `_tzset_js(timezone, daylight, tzname)`, zone names `malloc`ed by the glue.
    TzsetLegacy,
    /// emscripten 2: `emscripten_get_now` reads a `process.hrtime` that ao-loader replaced by its
    /// `Date.now` counter: the counter moves and the answer is NaN.
    NowLegacy,
    /// emscripten 2: the glue's default environment ([`LEGACY_ENV`]).
    EnvironSizesLegacy,
    EnvironGetLegacy,
    /// emscripten 2: `system(cmd)`: 0 for `system(NULL)`, else -1 with errno ENOSYS (52).
    SystemLegacy,
    /// emscripten 2: a call into the glue's in-memory file system ([`crate::memfs`]).
    Fs(FsCall),
    /// Served by the embedder's [`HostImports`], else zeros.
    Other,
}

/// The file-system imports of the emscripten-2 glue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FsCall {
    Open,
    Fcntl,
    Ioctl,
    Dup3,
    Unlinkat,
    Rmdir,
    Renameat,
    Lstat,
    Write,
    Read,
    Close,
    Seek,
}

fn classify(module: &str, name: &str, kind: ModuleKind, legacy: bool) -> Import {
    let em = kind == ModuleKind::AosEmscripten;
    if em && legacy {
        match (module, name) {
            ("env", "setTempRet0") => return Import::SetTempRet0,
            ("env", "getTempRet0") => return Import::GetTempRet0,
            ("env", "_tzset_js") => return Import::TzsetLegacy,
            // The emscripten-2 glue's `_emscripten_date_now` answers 0.
            ("env", "_emscripten_date_now") => return Import::Zero,
            ("env", "emscripten_get_now") => return Import::NowLegacy,
            ("env", "system") => return Import::SystemLegacy,
            ("wasi_snapshot_preview1", "environ_sizes_get") => return Import::EnvironSizesLegacy,
            ("wasi_snapshot_preview1", "environ_get") => return Import::EnvironGetLegacy,
            // ao-loader's gas meter has no limit unless one is configured.
            ("metering", "usegas") => return Import::Zero,
            // The glue's writable in-memory file system (MEMFS).
            ("env", "__syscall_openat") => return Import::Fs(FsCall::Open),
            ("env", "__syscall_fcntl64") => return Import::Fs(FsCall::Fcntl),
            ("env", "__syscall_ioctl") => return Import::Fs(FsCall::Ioctl),
            ("env", "__syscall_dup3") => return Import::Fs(FsCall::Dup3),
            ("env", "__syscall_unlinkat") => return Import::Fs(FsCall::Unlinkat),
            ("env", "__syscall_rmdir") => return Import::Fs(FsCall::Rmdir),
            ("env", "__syscall_renameat") => return Import::Fs(FsCall::Renameat),
            ("env", "__syscall_lstat64") => return Import::Fs(FsCall::Lstat),
            ("wasi_snapshot_preview1", "fd_write") => return Import::Fs(FsCall::Write),
            ("wasi_snapshot_preview1", "fd_read") => return Import::Fs(FsCall::Read),
            ("wasi_snapshot_preview1", "fd_close") => return Import::Fs(FsCall::Close),
            ("wasi_snapshot_preview1", "fd_seek") => return Import::Fs(FsCall::Seek),
            _ => {}
        }
    }
    match (module, name) {
        ("wasi_snapshot_preview1" | "wasi_unstable", n) => match n {
            "fd_write" => Import::FdWrite,
            "fd_read" => Import::FdRead,
            "clock_time_get" => Import::ClockTimeGet,
            "environ_sizes_get" | "args_sizes_get" => Import::EnvironSizesGet,
            "proc_exit" => Import::ProcExit,
            // ao-loader's FS: no such descriptor to seek (ESPIPE on the standard streams).
            "fd_seek" if em => Import::Errno(70),
            _ => Import::Zero,
        },
        ("env", n) if n.starts_with("invoke_") => Import::Invoke,
        ("env", "_emscripten_throw_longjmp") => Import::ThrowLongjmp,
        ("env", n) if em => match n {
            "_emscripten_memcpy_js" | "emscripten_memcpy_big" => Import::Memcpy,
            "emscripten_resize_heap" => Import::ResizeHeap,
            "_abort_js" | "abort" | "__assert_fail" => Import::Abort,
            "exit" => Import::Exit,
            "emscripten_date_now" | "_emscripten_date_now" | "emscripten_get_now" => {
                Import::DateNow
            }
            "_emscripten_get_now_is_monotonic" => Import::One,
            "_tzset_js" => Import::TzsetJs,
            "_localtime_js" | "_gmtime_js" => Import::TimeToTm,
            "_mktime_js" => Import::MktimeJs,
            "strftime" => Import::Strftime,
            "__syscall_ioctl" => Import::Ioctl,
            // No file system: opening, renaming, removing or reading links finds nothing
            // (ENOENT); other descriptor operations find no descriptor (EBADF).
            "__syscall_openat"
            | "__syscall_unlinkat"
            | "__syscall_rmdir"
            | "__syscall_renameat"
            | "__syscall_readlinkat" => Import::Errno(44),
            "__syscall_fcntl64" | "__syscall_dup3" => Import::Errno(8),
            // No shell: `system(NULL)` reports none, `os.execute` fails.
            "_emscripten_system" => Import::Zero,
            // WeaveDrive is not configured: ao-loader answers null (0).
            n if n.starts_with("__asyncjs__weavedrive_") => Import::Zero,
            "metering_gasUsed" => Import::Zero,
            _ => Import::Other,
        },
        ("env", n) if n.starts_with("__syscall_") || n == "_emscripten_system" => Import::Zero,
        _ => Import::Other,
    }
}

/// The parameters [`dispatch`] reads by position for an import: a module declaring fewer is
/// refused when it is linked (the guest chooses the declaration).
fn min_params(which: Import) -> usize {
    match which {
        Import::FdWrite | Import::FdRead | Import::TzsetJs | Import::Strftime => 4,
        Import::Memcpy | Import::TzsetLegacy => 3,
        Import::EnvironSizesGet
        | Import::TimeToTm
        | Import::EnvironSizesLegacy
        | Import::EnvironGetLegacy => 2,
        Import::ProcExit
        | Import::Exit
        | Import::Invoke
        | Import::ResizeHeap
        | Import::MktimeJs
        | Import::SetTempRet0
        | Import::SystemLegacy
        | Import::Ioctl => 1,
        Import::Zero
        | Import::One
        | Import::Errno(_)
        | Import::ClockTimeGet
        | Import::ThrowLongjmp
        | Import::Abort
        | Import::DateNow
        | Import::GetTempRet0
        | Import::NowLegacy
        | Import::Fs(_)
        | Import::Other => 0,
    }
}

/// Builds the module-specific linker and pre-instantiates the module.
pub(crate) fn link(
    engine: &Engine,
    module: &Module,
    kind: ModuleKind,
) -> Result<InstancePre<HostState>> {
    let mut linker: Linker<HostState> = Linker::new(engine);
    let legacy = is_legacy_emscripten(module);
    for imp in module.imports() {
        let ExternType::Func(ty) = imp.ty() else {
            return Err(WasmError::Link(format!(
                "import {}.{} is not a function; only function imports are supported",
                imp.module(),
                imp.name()
            )));
        };
        let which = classify(imp.module(), imp.name(), kind, legacy);
        let need = min_params(which);
        if ty.params().len() < need {
            return Err(WasmError::Link(format!(
                "import {}.{} declares {} parameters; this host function takes {need}",
                imp.module(),
                imp.name(),
                ty.params().len()
            )));
        }
        let ptr64 = ty.params().any(|p| matches!(p, ValType::I64));
        let (m, n) = (imp.module().to_owned(), imp.name().to_owned());
        let ty2: FuncType = ty.clone();
        linker
            .func_new(
                imp.module(),
                imp.name(),
                ty,
                move |caller, params, results| {
                    dispatch(which, ptr64, &m, &n, &ty2, caller, params, results)
                },
            )
            .map_err(|e| WasmError::Link(format!("{e:#}")))?;
    }
    linker
        .instantiate_pre(module)
        .map_err(|e| WasmError::Link(format!("{e:#}")))
}

/// The environment the emscripten-2 glue gives the program (`getEnvStrings`, with the program
/// name it uses outside node).
const LEGACY_ENV: [&str; 7] = [
    "USER=web_user",
    "LOGNAME=web_user",
    "PATH=/",
    "PWD=/",
    "HOME=/home/web_user",
    "LANG=C.UTF-8",
    "_=./this.program",
];

/// Whether an emscripten module is of the emscripten-2 generation (aos 1): it exports the old
/// stack helpers (`stackAlloc`) rather than `_emscripten_stack_alloc`.
pub(crate) fn is_legacy_emscripten(module: &Module) -> bool {
    module.get_export("stackAlloc").is_some()
        && module.get_export("_emscripten_stack_alloc").is_none()
}

fn val_u64(v: &Val) -> u64 {
    match v {
        Val::I32(x) => u64::from(*x as u32),
        Val::I64(x) => *x as u64,
        _ => 0,
    }
}

fn val_i64(v: &Val) -> i64 {
    match v {
        Val::I32(x) => i64::from(*x),
        Val::I64(x) => *x,
        _ => 0,
    }
}

fn zero_of(t: &ValType) -> Val {
    match t {
        ValType::I32 => Val::I32(0),
        ValType::I64 => Val::I64(0),
        ValType::F32 => Val::F32(0),
        ValType::F64 => Val::F64(0),
        _ => Val::null_extern_ref(),
    }
}

/// Sets the first result to an integer, in the result's width.
fn set_int(results: &mut [Val], v: i64) {
    if let Some(r) = results.first_mut() {
        *r = match r {
            Val::I64(_) => Val::I64(v),
            Val::F64(_) => Val::F64((v as f64).to_bits()),
            _ => Val::I32(v as i32),
        };
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

pub(crate) fn from_public(v: &WasmValue) -> Val {
    match v {
        WasmValue::I32(x) => Val::I32(*x),
        WasmValue::I64(x) => Val::I64(*x),
        WasmValue::F32(x) => Val::F32(x.to_bits()),
        WasmValue::F64(x) => Val::F64(x.to_bits()),
    }
}

/// Guest memory access from inside a host function.
struct Mem<'a> {
    data: &'a mut [u8],
}

impl Mem<'_> {
    fn range(&self, ptr: u64, len: u64) -> wasmtime::Result<std::ops::Range<usize>> {
        let end = ptr.checked_add(len);
        match end {
            Some(end) if end <= self.data.len() as u64 => Ok(ptr as usize..end as usize),
            _ => Err(HostError::Memory(format!(
                "{len} bytes at {ptr} outside a memory of {} bytes",
                self.data.len()
            ))
            .into()),
        }
    }
    fn read(&self, ptr: u64, len: u64) -> wasmtime::Result<&[u8]> {
        let r = self.range(ptr, len)?;
        Ok(&self.data[r])
    }
    fn write(&mut self, ptr: u64, bytes: &[u8]) -> wasmtime::Result<()> {
        let r = self.range(ptr, bytes.len() as u64)?;
        self.data[r].copy_from_slice(bytes);
        Ok(())
    }
    fn u(&self, ptr: u64, size: u64) -> wasmtime::Result<u64> {
        let b = self.read(ptr, size)?;
        let mut buf = [0u8; 8];
        buf[..b.len()].copy_from_slice(b);
        Ok(u64::from_le_bytes(buf))
    }
    fn put(&mut self, ptr: u64, v: u64, size: usize) -> wasmtime::Result<()> {
        let bytes = v.to_le_bytes();
        self.write(ptr, &bytes[..size])
    }
    fn i32_at(&self, ptr: u64) -> wasmtime::Result<i32> {
        Ok(self.u(ptr, 4)? as u32 as i32)
    }
    fn cstr(&self, ptr: u64) -> wasmtime::Result<&[u8]> {
        let start = self.range(ptr, 0)?.start;
        let rest = &self.data[start..];
        let n = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| HostError::Memory(format!("unterminated string at {ptr}")))?;
        Ok(&rest[..n])
    }
}

fn memory<'a>(
    caller: &'a mut Caller<'_, HostState>,
) -> wasmtime::Result<(Mem<'a>, &'a mut HostState)> {
    let mem = caller
        .data()
        .memory
        .ok_or_else(|| HostError::Memory("module has no exported memory".into()))?;
    let (data, state) = mem.data_and_store_mut(caller);
    Ok((Mem { data }, state))
}

#[expect(
    clippy::too_many_arguments,
    reason = "the fixed shape of a dynamic host function plus its classification"
)]
fn dispatch(
    which: Import,
    ptr64: bool,
    module: &str,
    name: &str,
    ty: &FuncType,
    mut caller: Caller<'_, HostState>,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    for (r, t) in results.iter_mut().zip(ty.results()) {
        *r = zero_of(&t);
    }
    let w: u64 = if ptr64 { 8 } else { 4 };
    match which {
        Import::Zero => {}
        Import::One => set_int(results, 1),
        Import::Errno(e) => set_int(results, -i64::from(e)),
        Import::FdWrite => {
            let fd = val_i64(&params[0]);
            let (iovs, n, retptr) = (
                val_u64(&params[1]),
                val_u64(&params[2]),
                val_u64(&params[3]),
            );
            let mut fuel_left = fuel_of(&mut caller);
            let written = (|| {
                let (mut mem, state) = memory(&mut caller)?;
                let mut total = 0u64;
                for i in 0..n {
                    let base = i
                        .checked_mul(2 * w)
                        .and_then(|o| iovs.checked_add(o))
                        .ok_or_else(|| HostError::Memory(format!("iovec {i} at {iovs}")))?;
                    let (p, len) = (mem.u(base, w)?, mem.u(base.saturating_add(w), w)?);
                    charge_fuel(&mut fuel_left, len.saturating_add(1))?;
                    let data = mem.read(p, len)?;
                    let sink = if fd == 1 {
                        &mut state.stdout
                    } else {
                        &mut state.stderr
                    };
                    capture(sink, data);
                    total = total.saturating_add(len);
                }
                mem.put(retptr, total, w as usize)?;
                if total > 0 && fd <= 2 {
                    // ao-loader's TTY stamps the node with `Date.now()` on every write.
                    state.date_now += 1.0;
                }
                wasmtime::Result::<()>::Ok(())
            })();
            settle_fuel(&mut caller, fuel_left)?;
            written?;
        }
        Import::FdRead => {
            let retptr = val_u64(&params[3]);
            let (mut mem, _) = memory(&mut caller)?;
            mem.put(retptr, 0, w as usize)?;
        }
        Import::ClockTimeGet => {
            // HyperBEAM's dev_wasi: errno 1, nothing written (time is not an input).
            set_int(results, 1);
        }
        Import::EnvironSizesGet => {
            let (a, b) = (val_u64(&params[0]), val_u64(&params[1]));
            let (mut mem, _) = memory(&mut caller)?;
            mem.put(a, 0, w as usize)?;
            mem.put(b, 0, w as usize)?;
        }
        Import::ProcExit | Import::Exit => {
            return Err(HostError::Exit(val_i64(&params[0]) as i32).into());
        }
        Import::Abort => {
            return Err(HostError::Abort(format!("{module}.{name}")).into());
        }
        Import::ThrowLongjmp => return Err(HostError::Longjmp.into()),
        Import::Invoke => invoke(&mut caller, params, results)?,
        Import::Memcpy => {
            let (dst, src, n) = (
                val_u64(&params[0]),
                val_u64(&params[1]),
                val_u64(&params[2]),
            );
            charge(&mut caller, n.saturating_add(1))?;
            let (mem, _) = memory(&mut caller)?;
            let from = mem.range(src, n)?;
            mem.range(dst, n)?;
            mem.data.copy_within(from, dst as usize);
        }
        Import::ResizeHeap => {
            let ok = resize_heap(&mut caller, val_u64(&params[0]), ptr64)?;
            set_int(results, i64::from(ok));
        }
        Import::DateNow => {
            let state = caller.data_mut();
            let now = state.date_now;
            state.date_now += 1.0;
            if let Some(r) = results.first_mut() {
                *r = Val::F64(now.to_bits());
            }
        }
        Import::TzsetJs => {
            // UTC: no offset, no daylight saving, both zone names "UTC".
            let (tz, daylight, std_name, dst_name) = (
                val_u64(&params[0]),
                val_u64(&params[1]),
                val_u64(&params[2]),
                val_u64(&params[3]),
            );
            let (mut mem, _) = memory(&mut caller)?;
            mem.put(tz, 0, w as usize)?;
            mem.put(daylight, 0, 4)?;
            mem.write(std_name, b"UTC\0")?;
            mem.write(dst_name, b"UTC\0")?;
        }
        Import::TimeToTm => {
            // (time_low, time_high, tm) on wasm32, (time, tm) on wasm64.
            // (time_t *time, tm) in the emscripten-2 glue.
            let legacy = caller.data().runtime.as_ref().is_some_and(|rt| rt.legacy);
            let (mut mem, _) = memory(&mut caller)?;
            let (time, tm) = if params.len() == 3 {
                let lo = val_u64(&params[0]);
                let hi = val_u64(&params[1]);
                ((hi << 32 | lo) as i64, val_u64(&params[2]))
            } else if legacy {
                (
                    i64::from(mem.i32_at(val_u64(&params[0]))?),
                    val_u64(&params[1]),
                )
            } else {
                (val_i64(&params[0]), val_u64(&params[1]))
            };
            write_tm(&mut mem, tm, time, ptr64)?;
        }
        Import::MktimeJs => {
            let tm = val_u64(&params[0]);
            let (mut mem, _) = memory(&mut caller)?;
            let secs = crate::time::timegm(&read_tm(&mem, tm)?);
            write_tm(&mut mem, tm, secs, ptr64)?;
            set_int(results, secs);
        }
        Import::Strftime => {
            let (s, max, fmt, tm) = (
                val_u64(&params[0]),
                val_u64(&params[1]),
                val_u64(&params[2]),
                val_u64(&params[3]),
            );
            let (mem, _) = memory(&mut caller)?;
            let format = mem.cstr(fmt)?.to_vec();
            let t = read_tm(&mem, tm)?;
            let (gmtoff, zone_ptr) = if ptr64 {
                (mem.u(tm + 40, 8)? as i64, mem.u(tm + 48, 8)?)
            } else {
                (i64::from(mem.i32_at(tm + 36)?), mem.u(tm + 40, 4)?)
            };
            let zone = if zone_ptr == 0 {
                Vec::new()
            } else {
                mem.cstr(zone_ptr)?.to_vec()
            };
            // The format and zone were scanned; the output is at most `max` bytes.
            charge(&mut caller, (format.len() + zone.len()) as u64 + 1)?;
            let out = crate::time::strftime(&format, &t, gmtoff, &zone, max);
            match out.filter(|o| (o.len() as u64) < max) {
                Some(out) => {
                    charge(&mut caller, out.len() as u64)?;
                    let (mut mem, _) = memory(&mut caller)?;
                    mem.write(s, &out)?;
                    mem.write(s + out.len() as u64, &[0])?;
                    set_int(results, out.len() as i64);
                }
                None => set_int(results, 0),
            }
        }
        Import::SetTempRet0 => caller.data_mut().temp_ret0 = val_i64(&params[0]) as i32,
        Import::GetTempRet0 => set_int(results, i64::from(caller.data().temp_ret0)),
        Import::NowLegacy => {
            caller.data_mut().date_now += 1.0;
            if let Some(r) = results.first_mut() {
                *r = Val::F64(f64::NAN.to_bits());
            }
        }
        Import::EnvironSizesLegacy => {
            let (count, size) = (val_u64(&params[0]), val_u64(&params[1]));
            let total: usize = LEGACY_ENV.iter().map(|s| s.len() + 1).sum();
            let (mut mem, _) = memory(&mut caller)?;
            mem.put(count, LEGACY_ENV.len() as u64, 4)?;
            mem.put(size, total as u64, 4)?;
        }
        Import::EnvironGetLegacy => {
            let (environ, buf) = (val_u64(&params[0]), val_u64(&params[1]));
            let (mut mem, _) = memory(&mut caller)?;
            let mut at = buf;
            for (i, var) in LEGACY_ENV.iter().enumerate() {
                mem.put(environ + 4 * i as u64, at, 4)?;
                mem.write(at, var.as_bytes())?;
                mem.write(at + var.len() as u64, &[0])?;
                at += var.len() as u64 + 1;
            }
        }
        Import::SystemLegacy => {
            if val_u64(&params[0]) == 0 {
                set_int(results, 0);
            } else {
                set_errno(&mut caller, 52)?;
                set_int(results, -1);
            }
        }
        Import::TzsetLegacy => {
            if !caller.data().tzset_done {
                caller.data_mut().tzset_done = true;
                let (tz, daylight, names) = (
                    val_u64(&params[0]),
                    val_u64(&params[1]),
                    val_u64(&params[2]),
                );
                // Node under TZ=UTC: no offset, no daylight saving; both names are the zone's
                // long name, each copied into a fresh `malloc` block.
                const ZONE: &[u8] = b"Coordinated Universal Time\0";
                let winter = guest_malloc(&mut caller, ZONE.len() as u64)?;
                let summer = guest_malloc(&mut caller, ZONE.len() as u64)?;
                let (mut mem, _) = memory(&mut caller)?;
                mem.write(winter, ZONE)?;
                mem.write(summer, ZONE)?;
                mem.put(tz, 0, 4)?;
                mem.put(daylight, 0, 4)?;
                mem.put(names, summer, 4)?;
                mem.put(names + 4, winter, 4)?;
            }
        }
        Import::Ioctl => {
            // TCGETS / TIOCGWINSZ on the standard streams (ttys in ao-loader) succeed.
            let fd = val_i64(&params[0]);
            set_int(results, if (0..=2).contains(&fd) { 0 } else { -8 });
        }
        Import::Fs(call) => fs_call(call, &mut caller, params, results)?,
        Import::Other => {
            let args: Vec<WasmValue> = params.iter().map(to_public).collect();
            let state = caller.data_mut();
            let answer = state
                .user
                .as_mut()
                .and_then(|u| u.call(module, name, &args));
            match answer {
                Some(vals) => {
                    // Numbers are converted to the declared result width.
                    for (r, v) in results.iter_mut().zip(&vals) {
                        *r = match r {
                            Val::I32(_) => Val::I32(v.as_i64() as i32),
                            Val::I64(_) => Val::I64(v.as_i64()),
                            Val::F32(_) => Val::F32((v.as_f64() as f32).to_bits()),
                            Val::F64(_) => Val::F64(v.as_f64().to_bits()),
                            _ => from_public(v),
                        };
                    }
                }
                None => state.undefined_calls += 1,
            }
        }
    }
    Ok(())
}

/// Calls the guest's exported `malloc` from inside a host function.
fn guest_malloc(caller: &mut Caller<'_, HostState>, size: u64) -> wasmtime::Result<u64> {
    let malloc = caller
        .get_export("malloc")
        .and_then(|e| e.into_func())
        .ok_or_else(|| HostError::Abort("the module exports no malloc".into()))?;
    let arg = match malloc.ty(&*caller).params().next() {
        Some(ValType::I64) => Val::I64(size as i64),
        _ => Val::I32(size as i32),
    };
    let mut out = [Val::I64(0)];
    malloc.call(&mut *caller, &[arg], &mut out)?;
    Ok(val_u64(&out[0]))
}

/// Sets the guest's `errno` through its exported `__errno_location` (if any).
fn set_errno(caller: &mut Caller<'_, HostState>, errno: u64) -> wasmtime::Result<()> {
    let Some(loc) = caller
        .get_export("__errno_location")
        .and_then(|e| e.into_func())
    else {
        return Ok(());
    };
    let mut out = [Val::I64(0)];
    loc.call(&mut *caller, &[], &mut out)?;
    let (mut mem, _) = memory(caller)?;
    mem.put(val_u64(&out[0]), errno, 4)
}

/// Appends guest output to a capture buffer, which keeps (at least) the last [`MAX_CAPTURE`]
/// bytes ([`captured`]): old output is dropped once the buffer holds twice that, so each byte
/// is moved at most once more, however the guest splits its writes.
fn capture(sink: &mut Vec<u8>, data: &[u8]) {
    if data.len() >= MAX_CAPTURE {
        sink.clear();
        sink.extend_from_slice(&data[data.len() - MAX_CAPTURE..]);
        return;
    }
    sink.extend_from_slice(data);
    if sink.len() > 2 * MAX_CAPTURE {
        let excess = sink.len() - MAX_CAPTURE;
        sink.drain(..excess);
    }
}

/// The fuel left, under [`crate::Budget::Fuel`].
fn fuel_of(caller: &mut Caller<'_, HostState>) -> Option<i64> {
    let g = caller.data().fuel?;
    match g.get(&mut *caller) {
        Val::I64(left) => Some(left),
        _ => Some(0),
    }
}

/// Takes `units` from a fuel count read by [`fuel_of`] (to be written back with
/// [`settle_fuel`]); out of fuel, the count is left at zero and the call traps, as the
/// metering's own check does.
fn charge_fuel(left: &mut Option<i64>, units: u64) -> wasmtime::Result<()> {
    if let Some(l) = left {
        let units = i64::try_from(units).unwrap_or(i64::MAX);
        if *l < units {
            *l = 0;
            return Err(HostError::Abort("out of fuel in a host call".into()).into());
        }
        *l -= units;
    }
    Ok(())
}

/// Writes back a fuel count taken down by [`charge_fuel`].
fn settle_fuel(caller: &mut Caller<'_, HostState>, left: Option<i64>) -> wasmtime::Result<()> {
    if let (Some(g), Some(l)) = (caller.data().fuel, left) {
        g.set(&mut *caller, Val::I64(l))?;
    }
    Ok(())
}

/// Charges host work done for the guest (bytes copied, scanned or written) to its fuel, one
/// unit per byte as the metering charges `memory.copy`: a host call costs what it does, so one
/// call cannot do unbounded work. Nothing under a wall-clock budget.
fn charge(caller: &mut Caller<'_, HostState>, units: u64) -> wasmtime::Result<()> {
    let mut left = fuel_of(caller);
    let charged = charge_fuel(&mut left, units);
    settle_fuel(caller, left)?;
    charged
}

/// `invoke_<sig>(index, args…)`: calls table entry `index`; a longjmp unwinding through it
/// restores the stack pointer and sets `__THREW__` via `setThrew(1, 0)` (emscripten's JS
/// trampoline). Real traps propagate, as in ao-loader, which rethrows anything but a longjmp.
fn invoke(
    caller: &mut Caller<'_, HostState>,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let rt = caller
        .data()
        .runtime
        .clone()
        .ok_or_else(|| HostError::Abort("invoke_* before the runtime was set up".into()))?;
    let table = rt
        .table
        .ok_or_else(|| HostError::Abort("invoke_* without __indirect_function_table".into()))?;
    let index = val_u64(&params[0]);
    let func = table
        .get(&mut *caller, index)
        .and_then(|r| r.as_func().flatten().copied())
        .ok_or_else(|| HostError::Abort(format!("invoke_*: no function at table index {index}")))?;
    let sp = match rt.stack_get {
        Some(f) => {
            let mut out = [Val::I64(0)];
            f.call(&mut *caller, &[], &mut out)?;
            Some(out[0])
        }
        None => None,
    };
    match func.call(&mut *caller, &params[1..], results) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.downcast_ref::<HostError>(), Some(HostError::Longjmp)) => {
            if let (Some(restore), Some(sp)) = (rt.stack_restore, sp) {
                restore.call(&mut *caller, &[sp], &mut [])?;
            }
            let (set_threw, args) = rt.set_threw.ok_or(e)?;
            set_threw.call(&mut *caller, &args, &mut [])?;
            for r in results.iter_mut() {
                *r = match r {
                    Val::I64(_) => Val::I64(0),
                    Val::F32(_) => Val::F32(0),
                    Val::F64(_) => Val::F64(0),
                    _ => Val::I32(0),
                };
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// emscripten's `emscripten_resize_heap`: grow to at least `requested` bytes, over-allocating
/// by 20 % (then 10 %, 5 %, 2.5 %) capped at +96 MiB, as ao-loader's glue does.
fn resize_heap(
    caller: &mut Caller<'_, HostState>,
    requested: u64,
    ptr64: bool,
) -> wasmtime::Result<bool> {
    let Some(mem) = caller.data().memory else {
        return Ok(false);
    };
    let old = mem.data_size(&*caller) as f64;
    let requested = requested as f64;
    let legacy = caller.data().runtime.as_ref().is_some_and(|rt| rt.legacy);
    // The glue's `getHeapMax()`.
    let heap_max: f64 = if ptr64 {
        17_179_869_184.0
    } else if legacy {
        524_288_000.0
    } else {
        4_294_901_760.0
    };
    if requested > heap_max {
        return Ok(false);
    }
    let declared_max = mem.ty(&*caller).maximum().map(|p| p as f64 * 65_536.0);
    let align_up = |x: f64, m: f64| x + (m - x % m) % m;
    let mut cut_down = 1.0;
    while cut_down <= 4.0 {
        let over = (old * (1.0 + 0.2 / cut_down)).min(requested + 100_663_296.0);
        let new_size = heap_max.min(align_up(requested.max(over), 65_536.0));
        let pages = ((new_size - old + 65_535.0) / 65_536.0).trunc() as u64;
        if declared_max.is_some_and(|max| new_size > max) {
            // Beyond the memory's declared maximum: `grow` would fail; skip building its error.
            cut_down *= 2.0;
            continue;
        }
        match mem.grow(&mut *caller, pages) {
            Ok(_) => return Ok(true),
            Err(e) if e.downcast_ref::<HostError>().is_some() => return Err(e),
            Err(_) => {}
        }
        cut_down *= 2.0;
    }
    Ok(false)
}

/// Reads `struct tm`'s nine `int` fields.
fn read_tm(mem: &Mem<'_>, tm: u64) -> wasmtime::Result<[i32; 9]> {
    let mut t = [0i32; 9];
    for (i, f) in t.iter_mut().enumerate() {
        *f = mem.i32_at(tm + 4 * i as u64)?;
    }
    Ok(t)
}

/// Fills `struct tm` for a UTC time (the JS glue's `_gmtime_js`/`_localtime_js` with TZ=UTC).
fn write_tm(mem: &mut Mem<'_>, tm: u64, time: i64, ptr64: bool) -> wasmtime::Result<()> {
    let f = crate::time::gmtime(time);
    for (i, v) in f.iter().enumerate() {
        mem.put(tm + 4 * i as u64, *v as u32 as u64, 4)?;
    }
    // tm_gmtoff (a `long`) follows tm_isdst: 0 for UTC.
    let gmtoff = if ptr64 { 40 } else { 36 };
    mem.put(tm + gmtoff, 0, if ptr64 { 8 } else { 4 })?;
    Ok(())
}

/// A file-system import of the emscripten-2 glue. The `__syscall_*` imports answer `-errno`,
/// the WASI `fd_*` ones `errno`.
/// A call into the in-memory file system, its reads and writes charged to the fuel by the byte.
fn fs_call(
    call: FsCall,
    caller: &mut Caller<'_, HostState>,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let mut fuel = fuel_of(caller);
    let out = fs_call_charged(call, caller, params, results, &mut fuel);
    settle_fuel(caller, fuel)?;
    out
}

fn fs_call_charged(
    call: FsCall,
    caller: &mut Caller<'_, HostState>,
    params: &[Val],
    results: &mut [Val],
    fuel: &mut Option<i64>,
) -> wasmtime::Result<()> {
    let arg = |i: usize| params.get(i).map_or(0, val_i64);
    let (mut mem, state) = memory(caller)?;
    let HostState {
        fs,
        stdout,
        stderr,
        date_now,
        ..
    } = state;
    let fs = fs.get_or_insert_with(MemFs::new);
    let mut errno_after = None;
    let fd = arg(0) as i32;
    let answer: std::result::Result<i64, i32> = match call {
        FsCall::Open => {
            let path = mem.cstr(arg(1) as u32 as u64)?.to_vec();
            let varargs = arg(3) as u32 as u64;
            let mode = if varargs == 0 {
                0
            } else {
                mem.u(varargs, 4)? as u32
            };
            fs.open(fd, &path, arg(2) as i32, mode).map(i64::from)
        }
        FsCall::Fcntl => {
            let varargs = arg(2) as u32 as u64;
            let next = |mem: &Mem<'_>| mem.u(varargs, 4).map(|v| v as u32 as i32);
            match (fs.flags(fd), arg(1)) {
                (Err(e), _) => Err(e),
                (Ok(_), 0) => match next(&mem)? {
                    a if a < 0 => Err(28),
                    a => fs.dup(fd, a, false).map(i64::from),
                },
                (Ok(_), 1 | 2 | 6 | 7) => Ok(0),
                (Ok(flags), 3) => Ok(i64::from(flags)),
                (Ok(_), 4) => {
                    let a = next(&mem)?;
                    fs.add_flags(fd, a).map(|()| 0)
                }
                (Ok(_), 5) => {
                    let at = next(&mem)? as u32 as u64;
                    mem.put(at, 2, 2)?;
                    Ok(0)
                }
                (Ok(_), 9) => {
                    errno_after = Some(28);
                    Ok(-1)
                }
                _ => Err(28),
            }
        }
        FsCall::Ioctl => match (fs.is_tty(fd), arg(1)) {
            (Err(e), _) => Err(e),
            (Ok(tty), 21505..=21512 | 21523 | 21524) => {
                if tty {
                    Ok(0)
                } else {
                    Err(MemFs::ENOTTY)
                }
            }
            (Ok(true), 21519) => {
                let at = mem.u(arg(2) as u32 as u64, 4)?;
                mem.put(at, 0, 4)?;
                Ok(0)
            }
            (Ok(true), 21520) => Err(28),
            (Ok(_), 21519 | 21520 | 21531) => Err(MemFs::ENOTTY),
            (Ok(_), op) => return Err(HostError::Abort(format!("bad ioctl syscall {op}")).into()),
        },
        FsCall::Dup3 => fs.dup(fd, arg(1) as i32, true).map(i64::from),
        FsCall::Unlinkat => {
            let path = mem.cstr(arg(1) as u32 as u64)?.to_vec();
            match arg(2) {
                0 => fs.unlink(fd, &path).map(|()| 0),
                512 => fs.rmdir(fd, &path).map(|()| 0),
                _ => return Err(HostError::Abort("Invalid flags passed to unlinkat".into()).into()),
            }
        }
        FsCall::Rmdir => {
            let path = mem.cstr(arg(0) as u32 as u64)?.to_vec();
            fs.rmdir(-100, &path).map(|()| 0)
        }
        FsCall::Renameat => {
            let old = mem.cstr(arg(1) as u32 as u64)?.to_vec();
            let new = mem.cstr(arg(3) as u32 as u64)?.to_vec();
            fs.rename((fd, &old), (arg(2) as i32, &new)).map(|()| 0)
        }
        FsCall::Lstat => {
            let path = mem.cstr(arg(0) as u32 as u64)?.to_vec();
            match fs.lstat(&path) {
                Ok(st) => {
                    let buf = arg(1) as u32 as u64;
                    let secs = (*date_now / 1000.0) as u32 as u64;
                    let blocks = st.size.div_ceil(4096);
                    let words: [(u64, u64, usize); 17] = [
                        (0, u64::from(st.dev), 4),
                        (4, 0, 4),
                        (8, u64::from(st.ino), 4),
                        (12, u64::from(st.mode), 4),
                        (16, 1, 4),
                        (20, 0, 4),
                        (24, 0, 4),
                        (28, 0, 4),
                        (32, 0, 4),
                        (40, st.size, 8),
                        (48, 4096, 4),
                        (52, blocks, 4),
                        (56, secs, 8),
                        (64, secs, 8),
                        (72, secs, 8),
                        (80, u64::from(st.ino), 8),
                        (60, 0, 4),
                    ];
                    for (off, v, size) in words {
                        mem.put(buf + off, v, size)?;
                    }
                    Ok(0)
                }
                Err(e) => Err(e),
            }
        }
        FsCall::Close => fs.close(fd).map(|()| 0),
        FsCall::Seek => {
            let (offset, whence, out) = if params.len() == 5 {
                let (lo, hi) = (arg(1) as u32 as u64, arg(2) as u32 as u64);
                ((hi << 32 | lo) as i64, arg(3), arg(4))
            } else {
                (arg(1), arg(2), arg(3))
            };
            match fs.seek(fd, offset, whence as i32) {
                Ok(pos) => {
                    mem.put(out as u32 as u64, pos, 8)?;
                    Ok(0)
                }
                Err(e) => Err(e),
            }
        }
        FsCall::Read | FsCall::Write => {
            let write = call == FsCall::Write;
            let (iovs, n, retptr) = (
                arg(1) as u32 as u64,
                arg(2) as u32 as u64,
                arg(3) as u32 as u64,
            );
            // What the files may still grow by.
            let mut room = memfs::MAX_FILE_BYTES.saturating_sub(fs.file_bytes());
            match fs.io(fd, write) {
                Err(e) => Err(e),
                Ok(io) => {
                    let mut total = 0u64;
                    let mut io = io;
                    let mut full = false;
                    for i in 0..n {
                        let (p, len) = (mem.u(iovs + 8 * i, 4)?, mem.u(iovs + 8 * i + 4, 4)?);
                        charge_fuel(fuel, len.saturating_add(1))?;
                        let done = match (&mut io, write) {
                            (Io::File(data, pos), true) => {
                                let src = mem.read(p, len)?;
                                let at = **pos;
                                let end = at.saturating_add(src.len() as u64);
                                let growth = end.saturating_sub(data.len() as u64);
                                if growth > room {
                                    full = true;
                                    break;
                                }
                                room -= growth;
                                let (at, end) = (at as usize, end as usize);
                                if data.len() < end {
                                    data.resize(end, 0);
                                }
                                data[at..end].copy_from_slice(src);
                                **pos = end as u64;
                                len
                            }
                            (Io::File(data, pos), false) => {
                                let at = (**pos as usize).min(data.len());
                                let k = (data.len() - at).min(len as usize);
                                mem.write(p, &data[at..at + k])?;
                                **pos += k as u64;
                                k as u64
                            }
                            (Io::Dev(Dev::Null), true) => len,
                            (Io::Dev(Dev::Tty | Dev::Tty1), false)
                            | (Io::Dev(Dev::Null), false) => 0,
                            (Io::Dev(Dev::Random), false) => {
                                let r = mem.range(p, len)?;
                                mem.data[r].fill(0);
                                len
                            }
                            (Io::Dev(d), true) => {
                                let data = mem.read(p, len)?;
                                let sink = if *d == Dev::Tty {
                                    &mut *stdout
                                } else {
                                    &mut *stderr
                                };
                                capture(sink, data);
                                len
                            }
                        };
                        total += done;
                        if !write && done < len {
                            break;
                        }
                    }
                    if write && total > 0 && matches!(io, Io::Dev(Dev::Tty | Dev::Tty1)) {
                        // ao-loader's TTY stamps the node with `Date.now()` on every write.
                        *date_now += 1.0;
                    }
                    if full && total == 0 {
                        Err(memfs::MemFs::ENOSPC)
                    } else {
                        mem.put(retptr, total, 4)?;
                        Ok(0)
                    }
                }
            }
        }
    };
    let wasi = matches!(
        call,
        FsCall::Write | FsCall::Read | FsCall::Close | FsCall::Seek
    );
    let v = match answer {
        Ok(v) => v,
        Err(e) if wasi => i64::from(e),
        Err(e) => -i64::from(e),
    };
    if let Some(e) = errno_after {
        set_errno(caller, e)?;
    }
    set_int(results, v);
    Ok(())
}
