//! The aos calling convention: `handle(msgJSON, envJSON) -> resultJSON` (`devices.md` §5.1).

use std::sync::Arc;

use wasmtime::Val;

use crate::engine::{CompiledModule, ModuleKind};
use crate::host::HostState;
use crate::instance::{Instance, Limits};
use crate::snapshot::Snapshot;
use crate::{Result, WasmError};

/// An instance of an aos module, driven through its JSON ABI.
///
/// * Native (HyperBEAM) builds: each string is written to `malloc(len+1)` with a NUL, then
///   `handle(msgPtr, envPtr)` is called; nothing is freed (HyperBEAM's behaviour).
/// * ao-loader emscripten builds: the strings go on the emscripten stack, as the JS glue's
///   `ccall` puts them there (`stackAlloc`), and the stack is restored afterwards; so the guest
///   heap evolves as under ao-loader. A message too large for the free stack goes to `malloc`
///   instead (where ao-loader would overflow its stack).
#[derive(Debug)]
pub struct AosInstance {
    inner: Instance,
}

impl AosInstance {
    /// A fresh instance.
    pub fn new(module: &Arc<CompiledModule>, limits: Limits) -> Result<Self> {
        check_kind(module)?;
        Ok(Self {
            inner: Instance::new(module, limits)?,
        })
    }

    /// A fresh instance put in the state of `snapshot` (a process resumed after eviction).
    pub fn restore(
        module: &Arc<CompiledModule>,
        limits: Limits,
        snapshot: &Snapshot,
    ) -> Result<Self> {
        check_kind(module)?;
        Ok(Self {
            inner: Instance::restore(module, limits, snapshot)?,
        })
    }

    /// The underlying instance.
    pub fn instance(&self) -> &Instance {
        &self.inner
    }

    /// The underlying instance, mutably.
    pub fn instance_mut(&mut self) -> &mut Instance {
        &mut self.inner
    }

    /// Captures the instance's state.
    pub fn snapshot(&mut self) -> Result<Snapshot> {
        self.inner.snapshot()
    }

    /// One evaluation: the result JSON, which must be UTF-8.
    pub fn handle(&mut self, msg_json: &str, env_json: &str) -> Result<String> {
        let out = self.handle_bytes(msg_json.as_bytes(), env_json.as_bytes())?;
        String::from_utf8(out).map_err(|e| {
            WasmError::BadResponse(format!(
                "result is not UTF-8 (at byte {})",
                e.utf8_error().valid_up_to()
            ))
        })
    }

    /// One evaluation on raw bytes (the strings must not contain NUL).
    pub fn handle_bytes(&mut self, msg: &[u8], env: &[u8]) -> Result<Vec<u8>> {
        if msg.contains(&0) || env.contains(&0) {
            return Err(WasmError::BadCall {
                name: "handle".into(),
                reason: "message and env JSON must not contain NUL bytes".into(),
            });
        }
        let kind = self.inner.module().kind();
        let ptr = self.inner.run(|store, inst| match kind {
            ModuleKind::AosEmscripten => call_on_stack(store, inst, msg, env),
            _ => call_with_malloc(store, inst, msg, env),
        })?;
        self.inner.read_cstr(ptr)
    }
}

fn check_kind(module: &CompiledModule) -> Result<()> {
    match module.kind() {
        ModuleKind::AosNative | ModuleKind::AosEmscripten => Ok(()),
        ModuleKind::Plain => Err(WasmError::Export {
            name: "handle".into(),
            reason: "not an aos module (needs exported `handle` and `malloc`)".into(),
        }),
    }
}

type Store = wasmtime::Store<HostState>;

fn func(
    store: &mut Store,
    inst: &wasmtime::Instance,
    name: &str,
) -> wasmtime::Result<wasmtime::Func> {
    inst.get_func(&mut *store, name)
        .ok_or_else(|| wasmtime::Error::msg(format!("module does not export {name:?}")))
}

fn int(v: &Val) -> u64 {
    match v {
        Val::I32(x) => u64::from(*x as u32),
        Val::I64(x) => *x as u64,
        _ => 0,
    }
}

/// A pointer-width argument for `f`'s first parameter.
fn ptr_arg(store: &Store, f: &wasmtime::Func, i: usize, v: u64) -> Val {
    match f.ty(store).params().nth(i) {
        Some(wasmtime::ValType::I64) => Val::I64(v as i64),
        _ => Val::I32(v as u32 as i32),
    }
}

fn write(store: &mut Store, at: u64, bytes: &[u8]) -> wasmtime::Result<()> {
    let mem = store
        .data()
        .memory
        .ok_or_else(|| wasmtime::Error::msg("module exports no memory"))?;
    let data = mem.data_mut(&mut *store);
    let end = usize::try_from(at)
        .ok()
        .and_then(|a| a.checked_add(bytes.len() + 1))
        .unwrap_or(usize::MAX);
    if at == 0 || end > data.len() {
        return Err(wasmtime::Error::msg(format!(
            "guest allocation {at} of {} bytes outside memory",
            bytes.len() + 1
        )));
    }
    data[at as usize..end - 1].copy_from_slice(bytes);
    data[end - 1] = 0;
    Ok(())
}

fn call_handle(
    store: &mut Store,
    inst: &wasmtime::Instance,
    m: u64,
    e: u64,
) -> wasmtime::Result<u64> {
    let handle = func(store, inst, "handle")?;
    let args = [ptr_arg(store, &handle, 0, m), ptr_arg(store, &handle, 1, e)];
    let mut out = [Val::I64(0)];
    handle.call(&mut *store, &args, &mut out)?;
    Ok(int(&out[0]))
}

fn malloc(store: &mut Store, inst: &wasmtime::Instance, bytes: &[u8]) -> wasmtime::Result<u64> {
    let malloc = func(store, inst, "malloc")?;
    let arg = ptr_arg(store, &malloc, 0, bytes.len() as u64 + 1);
    let mut out = [Val::I64(0)];
    malloc.call(&mut *store, &[arg], &mut out)?;
    let p = int(&out[0]);
    write(store, p, bytes)?;
    Ok(p)
}

fn call_with_malloc(
    store: &mut Store,
    inst: &wasmtime::Instance,
    msg: &[u8],
    env: &[u8],
) -> wasmtime::Result<u64> {
    let m = malloc(store, inst, msg)?;
    let e = malloc(store, inst, env)?;
    call_handle(store, inst, m, e)
}

/// emscripten's `ccall` with two `string` arguments.
fn call_on_stack(
    store: &mut Store,
    inst: &wasmtime::Instance,
    msg: &[u8],
    env: &[u8],
) -> wasmtime::Result<u64> {
    let rt = store
        .data()
        .runtime
        .clone()
        .ok_or_else(|| wasmtime::Error::msg("emscripten runtime not set up"))?;
    let (Some(get), Some(restore), Some(alloc)) = (rt.stack_get, rt.stack_restore, rt.stack_alloc)
    else {
        return call_with_malloc(store, inst, msg, env);
    };
    let free = match inst.get_func(&mut *store, "emscripten_stack_get_free") {
        Some(f) => {
            let mut out = [Val::I64(0)];
            f.call(&mut *store, &[], &mut out)?;
            int(&out[0])
        }
        None => 0,
    };
    // Leave the guest at least half of its stack (and 16 KiB) for the evaluation itself.
    let per_byte = if rt.legacy { 4 } else { 1 };
    let need = (msg.len() as u64 + env.len() as u64) * per_byte + 64;
    if need > free / 2 || free.saturating_sub(need) < 16 << 10 {
        return call_with_malloc(store, inst, msg, env);
    }
    let mut sp = [Val::I64(0)];
    get.call(&mut *store, &[], &mut sp)?;
    let on_stack = |store: &mut Store, bytes: &[u8]| -> wasmtime::Result<u64> {
        // `stringToUTF8OnStack` reserves the UTF-8 length plus the NUL; the emscripten-2
        // `ccall` reserves four bytes per UTF-16 unit of the JS string, plus the NUL.
        let size = if rt.legacy {
            let units: usize = String::from_utf8_lossy(bytes)
                .chars()
                .map(char::len_utf16)
                .sum();
            units as u64 * 4 + 1
        } else {
            bytes.len() as u64 + 1
        };
        let arg = ptr_arg(store, &alloc, 0, size);
        let mut out = [Val::I64(0)];
        alloc.call(&mut *store, &[arg], &mut out)?;
        let p = int(&out[0]);
        write(store, p, bytes)?;
        Ok(p)
    };
    let m = on_stack(store, msg)?;
    let e = on_stack(store, env)?;
    let r = call_handle(store, inst, m, e)?;
    restore.call(&mut *store, &sp, &mut [])?;
    Ok(r)
}
