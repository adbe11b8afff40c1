//! `wasm-64@1.0`: runs a WASM instance whose state lives in the message (`devices.md` §3.9).

use std::sync::Arc;

use ao_core::device::{BoxFuture, Device, DeviceInfo};
use ao_core::resolve::Context;
use ao_core::{Error, Message, Result, Value};
use bytes::Bytes;

use super::{
    WasmRuntime, get_path, input_prefix, instance_handle, output_prefix, pass, path, set_path,
    with_instance_handle,
};
use crate::{Instance, Limits, Snapshot, WasmError, WasmValue};

/// The `wasm-64@1.0` device.
///
/// * `init`: loads the image (`<input-prefix>/image`: an ID in the store, a message with a
///   `body`, or raw bytes; else the base's `body`) through the engine's AOT cache, starts an
///   instance (memory limit from `<input-prefix>/memory-limit` or `memory-limit`) and keeps its
///   handle in `priv/<prefix>/instance`.
/// * `compute` (pass 1 or no pass): calls `function` (from `body/function`, the request, or the
///   base) with `parameters`, and sets `results/<prefix>/type` (`ok`/`error`) and
///   `results/<prefix>/output` (the list of results). Imports this crate does not serve are
///   resolved through AO-Core at `<prefix>/stdlib/<module>/<func>` (a device answering with
///   `results`, a list of numbers); unresolvable ones answer 0.
/// * `snapshot`: `{body: <linear memory>}`. `normalize`: restores a missing instance from
///   `snapshot/…/body`, growing memory first. `terminate`: drops the instance.
#[derive(Debug, Clone)]
pub struct Wasm64Device {
    rt: Arc<WasmRuntime>,
}

impl Wasm64Device {
    /// The device over a shared runtime.
    pub fn new(rt: Arc<WasmRuntime>) -> Self {
        Self { rt }
    }
}

impl Device for Wasm64Device {
    fn id(&self) -> &str {
        "wasm-64@1.0"
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo::exports(["init", "compute", "snapshot", "normalize", "terminate"])
    }

    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        request: &'a Message,
        ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        let rt = &self.rt;
        Some(Box::pin(async move {
            // Guest code runs for as long as its budget allows: off the async workers.
            let out = off_the_reactor(|| -> Result<Message> {
                Ok(match key {
                    "init" => init(rt, base, ctx)?,
                    "compute" => compute(rt, base, request, ctx)?,
                    "snapshot" => snapshot(rt, base)?,
                    "normalize" => normalize(rt, base, ctx)?,
                    "terminate" => {
                        let prefix = output_prefix(base);
                        if let Some(h) = instance_handle(base, &prefix) {
                            rt.remove(&h);
                        }
                        base.clone()
                    }
                    other => return Err(Error::NotFound(other.to_owned())),
                })
            })?;
            Ok(Value::Message(out))
        }))
    }
}

fn body_bytes(v: &Value) -> Option<Bytes> {
    match v {
        Value::Binary(b) => Some(b.clone()),
        Value::Message(m) => m
            .get("body")
            .or_else(|| m.get("data"))
            .and_then(Value::as_bytes)
            .cloned(),
        _ => None,
    }
}

fn image(base: &Message, ctx: &Context) -> Result<Bytes> {
    let in_prefix = input_prefix(base);
    if let Some(v) = get_path(base, &path(&in_prefix, "image")) {
        if let Some(id) = v
            .as_str()
            .filter(|s| ao_core::key::is_id_shaped(s.as_bytes()))
        {
            let msg = ctx.load(id)?;
            return body_bytes(&Value::Message(msg))
                .ok_or_else(|| Error::BadRequest(format!("image {id} has no body")));
        }
        if let Some(b) = body_bytes(v) {
            return Ok(b);
        }
    }
    base.get("body")
        .and_then(Value::as_bytes)
        .cloned()
        .ok_or_else(|| Error::BadRequest("no WASM image: set `image` or `body`".into()))
}

fn limits(rt: &WasmRuntime, base: &Message) -> Limits {
    let c = rt.engine().config();
    let mut limits = Limits::new(c.fuel_per_call, c.memory_limit).with_time(c.time_per_call);
    let in_prefix = input_prefix(base);
    let tag = get_path(base, &path(&in_prefix, "memory-limit"))
        .or_else(|| base.get("memory-limit"))
        .and_then(Value::as_str);
    if let Some(t) = tag {
        limits = limits.with_memory_limit_tag(t);
    }
    limits
}

fn start(rt: &WasmRuntime, base: &Message, ctx: &Context) -> Result<Instance> {
    let bytes = image(base, ctx)?;
    let module = match ctx.store() {
        Some(store) => rt.engine().load(&bytes, store.as_ref())?,
        None => rt.engine().compile(&bytes)?,
    };
    Ok(Instance::new(&module, limits(rt, base))?)
}

fn init(rt: &WasmRuntime, base: &Message, ctx: &Context) -> Result<Message> {
    let prefix = output_prefix(base);
    if let Some(old) = instance_handle(base, &prefix) {
        rt.remove(&old);
    }
    let inst = start(rt, base, ctx)?;
    let handle = rt.insert(inst);
    Ok(with_instance_handle(base.clone(), &prefix, &handle))
}

fn live(rt: &WasmRuntime, base: &Message, prefix: &str) -> Result<Arc<std::sync::Mutex<Instance>>> {
    instance_handle(base, prefix)
        .and_then(|h| rt.get(&h))
        .ok_or_else(|| {
            Error::BadRequest("no live WASM instance: run `init` (or `normalize`)".into())
        })
}

fn to_wasm(v: &Value) -> Option<WasmValue> {
    match v {
        Value::Integer(i) => Some(WasmValue::I64(*i)),
        Value::Float(f) => Some(WasmValue::F64(*f)),
        Value::Binary(_) => v.as_integer().map(WasmValue::I64),
        _ => None,
    }
}

fn from_wasm(v: &WasmValue) -> Value {
    match v {
        WasmValue::I32(x) => Value::Integer(i64::from(*x)),
        WasmValue::I64(x) => Value::Integer(*x),
        WasmValue::F32(x) => Value::Float(f64::from(*x)),
        WasmValue::F64(x) => Value::Float(*x),
    }
}

fn first<'a>(base: &'a Message, request: &'a Message, key: &str) -> Option<&'a Value> {
    get_path(request, &path("body", key))
        .or_else(|| request.get(key))
        .or_else(|| base.get(key))
}

fn compute(rt: &WasmRuntime, base: &Message, request: &Message, ctx: &Context) -> Result<Message> {
    let base = normalize(rt, base, ctx)?;
    if pass(&base) != 1 {
        return Ok(base);
    }
    let prefix = output_prefix(&base);
    let function = first(&base, request, "function")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::BadRequest("compute needs a `function`".into()))?
        .to_owned();
    let params: Vec<WasmValue> = match first(&base, request, "parameters") {
        Some(Value::List(l)) => l
            .iter()
            .map(|v| {
                to_wasm(v)
                    .ok_or_else(|| Error::BadRequest(format!("parameter {v:?} is not a number")))
            })
            .collect::<Result<_>>()?,
        Some(Value::Message(m)) => ao_core::codec::structured::message_to_list(m)?
            .iter()
            .map(|v| {
                to_wasm(v)
                    .ok_or_else(|| Error::BadRequest(format!("parameter {v:?} is not a number")))
            })
            .collect::<Result<_>>()?,
        Some(other) => {
            vec![to_wasm(other).ok_or_else(|| Error::BadRequest("bad parameters".into()))?]
        }
        None => Vec::new(),
    };
    let inst = live(rt, &base, &prefix)?;
    let mut inst = inst
        .lock()
        .map_err(|_| Error::Internal("WASM instance lock poisoned".into()))?;
    inst.set_imports(Some(Box::new(StdlibImports {
        resolver: ctx.resolver().clone(),
        state: base.clone(),
        prefix: prefix.clone(),
    })));
    inst.clear_output();
    let outcome = inst.call(&function, &params);
    inst.set_imports(None);
    let (stdout, stderr) = (inst.stdout().to_vec(), inst.stderr().to_vec());
    drop(inst);
    let mut state = append_vfs(base, "stdout", &stdout);
    state = append_vfs(state, "stderr", &stderr);
    let results_path = path("results", &prefix);
    Ok(match outcome {
        Ok(values) => {
            let state = set_path(state, &path(&results_path, "type"), Value::from("ok"));
            set_path(
                state,
                &path(&results_path, "output"),
                Value::List(values.iter().map(from_wasm).collect()),
            )
        }
        Err(e @ (WasmError::BadCall { .. } | WasmError::Export { .. })) => {
            return Err(Error::BadRequest(e.to_string()));
        }
        Err(e) => {
            let state = set_path(state, &path(&results_path, "type"), Value::from("error"));
            set_path(
                state,
                &path(&results_path, "error"),
                Value::from(e.to_string()),
            )
        }
    })
}

/// With `wasi@1.0` in the stack, guest output lands in the state's VFS, as `dev_wasi` puts it.
fn append_vfs(state: Message, file: &str, bytes: &[u8]) -> Message {
    if bytes.is_empty() || !state.contains("vfs") {
        return state;
    }
    let p = format!("vfs/dev/{file}");
    let mut old = get_path(&state, &p)
        .and_then(Value::as_bytes)
        .map(|b| b.to_vec())
        .unwrap_or_default();
    old.extend_from_slice(bytes);
    let fd = if file == "stdout" { "1" } else { "2" };
    let offset = old.len() as i64;
    let state = set_path(state, &p, Value::from(old));
    set_path(
        state,
        &format!("file-descriptors/{fd}/offset"),
        Value::Integer(offset),
    )
}

fn snapshot(rt: &WasmRuntime, base: &Message) -> Result<Message> {
    let prefix = output_prefix(base);
    let inst = live(rt, base, &prefix)?;
    let mut inst = inst
        .lock()
        .map_err(|_| Error::Internal("WASM instance lock poisoned".into()))?;
    let snap = inst.snapshot()?;
    Ok(Message::new().with("body", snap.memory().clone()))
}

fn snapshot_body(base: &Message) -> Option<Bytes> {
    match base.get("snapshot")? {
        Value::Message(m) => m
            .get("body")
            .and_then(Value::as_bytes)
            .cloned()
            .or_else(|| {
                m.iter().find_map(|(_, v)| match v {
                    Value::Message(inner) => inner.get("body").and_then(Value::as_bytes).cloned(),
                    _ => None,
                })
            }),
        Value::Binary(b) => Some(b.clone()),
        _ => None,
    }
}

fn normalize(rt: &WasmRuntime, base: &Message, ctx: &Context) -> Result<Message> {
    let prefix = output_prefix(base);
    if instance_handle(base, &prefix)
        .and_then(|h| rt.get(&h))
        .is_some()
    {
        return Ok(base.clone());
    }
    let Some(body) = snapshot_body(base) else {
        return Ok(base.clone());
    };
    let mut inst = start(rt, base, ctx)?;
    inst.apply_snapshot(&Snapshot::from_memory(body))?;
    let handle = rt.insert(inst);
    Ok(with_instance_handle(
        base.clone().without("snapshot"),
        &prefix,
        &handle,
    ))
}

/// Serves imports by resolving `<prefix>/stdlib/<module>/<func>` against the state.
struct StdlibImports {
    resolver: ao_core::Resolver,
    state: Message,
    prefix: String,
}

impl crate::HostImports for StdlibImports {
    fn call(&mut self, module: &str, name: &str, args: &[WasmValue]) -> Option<Vec<WasmValue>> {
        let lib = get_path(
            &self.state,
            &path(&self.prefix, &format!("stdlib/{module}")),
        )?;
        let Value::Message(lib) = lib else {
            return None;
        };
        let lib = lib.clone().with("state", self.state.clone());
        let request = Message::new()
            .with("path", name)
            .with("args", Value::List(args.iter().map(from_wasm).collect()));
        // Imports are synchronous for the guest: the device answering one must answer at once
        // (see `answer_now`), and an import's answer may call into WASM again only so deep (each
        // level is a resolution on this thread's stack, outside the guest's stack limit).
        let depth = IMPORT_DEPTH.with(|d| {
            d.set(d.get() + 1);
            d.get()
        });
        let out = if depth > MAX_IMPORT_DEPTH {
            None
        } else {
            answer_now(self.resolver.resolve(lib, request))
        };
        IMPORT_DEPTH.with(|d| d.set(d.get() - 1));
        let out = out?.ok()?;
        let results = match &out {
            Value::Message(m) => m.get("results")?.clone(),
            other => other.clone(),
        };
        let list = match results {
            Value::List(l) => l,
            one => vec![one],
        };
        Some(list.iter().filter_map(to_wasm).collect())
    }
}

/// Runs synchronous work that may last (a guest's evaluation) without holding an async worker
/// of a multi-threaded tokio runtime: the runtime hands the worker's other tasks to another
/// thread meanwhile (`block_in_place`). Elsewhere (no runtime, a current-thread one, a blocking
/// thread) it just runs.
fn off_the_reactor<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// How deep import calls may nest (an import answered by WASM that calls an import…).
const MAX_IMPORT_DEPTH: u32 = 8;

thread_local! {
    /// Import calls in progress on this thread.
    static IMPORT_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// The output of a future that completes without waiting (import devices compute their
/// answer), or `None` for one that would wait (on I/O, a timer, another task): it is not
/// spun on, since what it waits for may need this very thread, and an import has no answer
/// to give while it waits.
fn answer_now<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}
