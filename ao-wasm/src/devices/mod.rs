//! AO-Core devices backed by this crate: `wasm-64@1.0`, `wasi@1.0` and `json-iface@1.0`
//! (`devices.md` §3.9–§3.11).
//!
//! As in HyperBEAM, the live instance is not part of the message: the state keeps an instance
//! handle in `priv/<prefix>/instance`, and the devices share a [`WasmRuntime`] holding the
//! instances by handle (HyperBEAM keeps an Erlang pid there).
//!
//! WASM runs synchronously inside the device's future: the caller (the process layer) is
//! expected to resolve compute steps on a thread that may block (e.g. `spawn_blocking`).
//!
//! `genesis-wasm@1.0` is not here: it delegates to an external Node CU (`devices.md` §3.22).

mod json_iface;
mod wasi;
mod wasm64;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ao_core::{Message, Value};

pub use json_iface::JsonIfaceDevice;
pub use wasi::WasiDevice;
pub use wasm64::Wasm64Device;

use crate::{Instance, WasmEngine};

/// The live instances of the WASM devices, shared by them.
pub struct WasmRuntime {
    engine: WasmEngine,
    instances: Mutex<HashMap<String, Arc<Mutex<Instance>>>>,
    next: AtomicU64,
}

impl fmt::Debug for WasmRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.instances.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("WasmRuntime")
            .field("engine", &self.engine)
            .field("instances", &n)
            .finish()
    }
}

impl WasmRuntime {
    /// A runtime over the node's engine.
    pub fn new(engine: WasmEngine) -> Arc<Self> {
        Arc::new(Self {
            engine,
            instances: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &WasmEngine {
        &self.engine
    }

    /// The three devices, sharing this runtime.
    pub fn devices(self: &Arc<Self>) -> (Wasm64Device, WasiDevice, JsonIfaceDevice) {
        (
            Wasm64Device::new(Arc::clone(self)),
            WasiDevice,
            JsonIfaceDevice::new(Arc::clone(self)),
        )
    }

    /// How many instances are live.
    pub fn live_instances(&self) -> usize {
        self.instances.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn insert(&self, instance: Instance) -> String {
        let handle = format!(
            "wasm-instance-{}",
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        if let Ok(mut m) = self.instances.lock() {
            // Instances are made by requests and live until `terminate`: the oldest go first
            // beyond a bound (a later call on an evicted handle is a 404).
            while m.len() >= MAX_INSTANCES {
                let oldest = m.keys().min_by_key(|h| handle_number(h)).cloned();
                match oldest {
                    Some(h) => m.remove(&h),
                    None => break,
                };
            }
            m.insert(handle.clone(), Arc::new(Mutex::new(instance)));
        }
        handle
    }

    fn get(&self, handle: &str) -> Option<Arc<Mutex<Instance>>> {
        self.instances.lock().ok()?.get(handle).cloned()
    }

    fn remove(&self, handle: &str) {
        if let Ok(mut m) = self.instances.lock() {
            m.remove(handle);
        }
    }
}

/// The most `wasm-64@1.0` instances kept live at once.
pub const MAX_INSTANCES: usize = 64;

/// The counter in a handle `wasm-instance-<n>`.
fn handle_number(handle: &str) -> u64 {
    handle
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `<prefix>/<rest>` with empty parts dropped.
fn path(prefix: &str, rest: &str) -> String {
    ao_core::store::join(&[prefix, rest])
}

/// The output prefix of a stack member (`output-prefix`, default empty).
fn output_prefix(base: &Message) -> String {
    base.get_str("output-prefix").unwrap_or("").to_owned()
}

/// The input prefix of a stack member (`input-prefix`, default empty).
fn input_prefix(base: &Message) -> String {
    base.get_str("input-prefix").unwrap_or("").to_owned()
}

/// Looks up `a/b/c` through nested messages.
fn get_path<'a>(msg: &'a Message, p: &str) -> Option<&'a Value> {
    let mut parts = p.split('/').filter(|s| !s.is_empty());
    let first = parts.next()?;
    let mut cur = msg.get(first)?;
    for part in parts {
        cur = match cur {
            Value::Message(m) => m.get(part)?,
            Value::List(l) => {
                let i: usize = part.parse().ok()?;
                l.get(i.checked_sub(1)?)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

/// Sets `a/b/c`, creating or extending nested messages.
fn set_path(msg: Message, p: &str, value: Value) -> Message {
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    fn go(mut msg: Message, parts: &[&str], value: Value) -> Message {
        match parts {
            [] => msg,
            [last] => msg.with(*last, value),
            [first, rest @ ..] => {
                let inner = match msg.get(first) {
                    Some(Value::Message(m)) => m.clone(),
                    _ => Message::new(),
                };
                msg.insert(*first, go(inner, rest, value));
                msg
            }
        }
    }
    go(msg, &parts, value)
}

/// The stack pass (1 when unset).
fn pass(base: &Message) -> i64 {
    base.get("pass").and_then(Value::as_integer).unwrap_or(1)
}

/// The instance handle kept in the state.
fn instance_handle(base: &Message, prefix: &str) -> Option<String> {
    base.private(&path("priv", &path(prefix, "instance")))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn with_instance_handle(mut base: Message, prefix: &str, handle: &str) -> Message {
    base.insert(path("priv", &path(prefix, "instance")).as_str(), handle);
    base
}
