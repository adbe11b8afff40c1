//! `stack@1.0`: runs a key over a stack of devices (devices.md §3.7, HyperBEAM's `dev_stack`).
//!
//! The devices are named by `device-stack`, a numbered message (`1..n`) or a list of device
//! names. Every key except `set` and `keys` (which stay with `message@1.0`) is run over the stack;
//! with `stack-keys` only those keys are, the others falling back to `message@1.0`.
//!
//! * **Fold mode** (the default; `mode` is read from the request, then the base): `pass` is set to
//!   1 and each device in turn resolves the same request against the running state, with the
//!   state's `device` swapped to that member (plus `device-key`, its `input-prefix` /
//!   `output-prefix` from `input-prefixes/<i>` / `output-prefixes/<i>`, and the `previous-*` keys).
//!   The outcome of each member steers the fold:
//!   * a message: continue with the next device;
//!   * [`Error::NotFound`]: the member does not answer the key; skip it;
//!   * any other value: return it as the result at once;
//!   * [`Flow::Skip`]: end the fold with the state carried;
//!   * [`Flow::Pass`]: increment `pass` and restart from device 1 with the state carried;
//!   * another error: per `error-strategy` (request, then base): `throw` (the default) returns
//!     the member's error unchanged; `stop` answers a 400 `stack_call_failed` message naming the
//!     device. Two strategies beyond HyperBEAM's: `continue` skips the failing device as if it
//!     did not answer the key, and `ignore` ends the fold with the state reached before it.
//!
//!   At the end the original `device`, the prefixes (from `previous-input-prefix` /
//!   `previous-output-prefix`) and `pass` are restored and `device-key` is removed. As in
//!   HyperBEAM, the `previous-*` keys stay in the state.
//! * **Map mode** (`mode: Map`): every device resolves the request against the same input, and
//!   the results are collected under each device's key in `device-stack`; failures are dropped.
//! * **`transform/<name>/<key>`**: resolves `<key>` with the single member `<name>`.
//!
//! A fold that passes more than [`MAX_PASSES`] times is stopped with a 508.

use ao_core::device::BoxFuture;
use ao_core::message_device;
use ao_core::{Context, Device, DeviceInfo, Error, Flow, Message, Result, Value};

/// The most passes one fold may make before it is refused (HyperBEAM has no bound).
pub const MAX_PASSES: i64 = 1024;

/// Private marker on the message `transform` returns: the next key names a member.
const TRANSFORM_MARK: &str = "priv/stack-transform";

/// Keys of `device-stack` that never name a member (HyperBEAM's `?AO_CORE_KEYS`).
const CORE_KEYS: [&str; 3] = ["path", "hashpath", "priv"];

/// The `stack@1.0` device.
#[derive(Debug, Clone, Copy, Default)]
pub struct StackDevice;

impl Device for StackDevice {
    fn id(&self) -> &str {
        "stack@1.0"
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo::all().excluding(["set", "keys"])
    }

    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        request: &'a Message,
        ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        let key = ao_core::key::normalize(key).into_owned();
        if base.private(TRANSFORM_MARK).is_some() {
            let mut plain = base.clone();
            let mut private = plain.private_fields().clone();
            private.remove(TRANSFORM_MARK);
            plain.set_private_fields(private);
            return Some(Box::pin(async move {
                match transform(&plain, &key, Value::from(key.as_str()))? {
                    Some(m) => Ok(Value::Message(m)),
                    None => Err(Error::NotFound(format!("device-stack/{key}"))),
                }
            }));
        }
        if key == "info" || !stack_exports(base, &key) {
            return None;
        }
        if key == "transform" {
            let mut marked = base.clone();
            marked.insert(TRANSFORM_MARK, true);
            return Some(Box::pin(async move { Ok(Value::Message(marked)) }));
        }
        Some(Box::pin(async move {
            match mode(base, request)? {
                Mode::Fold => fold(base, request, ctx).await,
                Mode::Map => map(base, request, ctx).await,
            }
        }))
    }
}

/// Whether `stack-keys` (when present) lets `key` through.
fn stack_exports(base: &Message, key: &str) -> bool {
    let names: Vec<String> = match base.get("stack-keys") {
        None => return true,
        Some(Value::List(l)) => l.iter().filter_map(|v| v.as_str().map(norm)).collect(),
        Some(Value::Message(m)) => m.iter().filter_map(|(_, v)| v.as_str().map(norm)).collect(),
        Some(Value::Binary(b)) => String::from_utf8_lossy(b)
            .split(',')
            .map(|s| norm(s.trim()))
            .collect(),
        Some(_) => return true,
    };
    names.iter().any(|k| k == key)
}

fn norm(s: &str) -> String {
    ao_core::key::normalize(s).into_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Fold,
    Map,
}

fn mode(base: &Message, request: &Message) -> Result<Mode> {
    let raw = request.get("mode").or_else(|| base.get("mode"));
    match raw {
        None => Ok(Mode::Fold),
        Some(v) => match v.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("fold") => Ok(Mode::Fold),
            Some("map") => Ok(Mode::Map),
            _ => Err(Error::BadRequest(format!(
                "stack@1.0: unknown mode {v:?} (Fold or Map)"
            ))),
        },
    }
}

/// How a fold reacts to a member's error (HyperBEAM's `error_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    Throw,
    Stop,
    Continue,
    Ignore,
}

fn strategy(base: &Message, request: &Message) -> Result<Strategy> {
    let raw = request
        .get("error-strategy")
        .or_else(|| base.get("error-strategy"));
    let Some(v) = raw else {
        return Ok(Strategy::Throw);
    };
    let text = match v {
        Value::Atom(a) => a.as_str().to_owned(),
        other => other.as_str().unwrap_or("").to_owned(),
    };
    match text.to_ascii_lowercase().as_str() {
        "throw" => Ok(Strategy::Throw),
        "stop" => Ok(Strategy::Stop),
        "continue" => Ok(Strategy::Continue),
        "ignore" => Ok(Strategy::Ignore),
        _ => Err(Error::BadRequest(format!(
            "stack@1.0: unknown error-strategy {v:?} (throw, stop, continue or ignore)"
        ))),
    }
}

/// The name of member `index` of the message's `device-stack`, if there is one.
///
/// A missing `device-stack`, or one that is neither a message nor a list, and a member that is
/// not a device name, are errors.
pub fn member(msg: &Message, index: &str) -> Result<Option<String>> {
    let stack = msg
        .get("device-stack")
        .ok_or_else(|| Error::BadRequest("stack@1.0: the message has no device-stack".into()))?;
    let entry = match stack {
        Value::Message(m) => m.get(index),
        Value::List(l) => index
            .parse::<usize>()
            .ok()
            .filter(|i| *i >= 1)
            .and_then(|i| l.get(i - 1)),
        other => {
            return Err(Error::BadRequest(format!(
                "stack@1.0: device-stack is a {}, not a message or list of device names",
                other.kind()
            )));
        }
    };
    match entry {
        None => Ok(None),
        Some(Value::Binary(b)) => match std::str::from_utf8(b) {
            Ok(name) if !name.is_empty() => Ok(Some(name.to_owned())),
            _ => Err(Error::BadRequest(format!(
                "stack@1.0: device-stack/{index} is not a device name"
            ))),
        },
        Some(other) => Err(Error::BadRequest(format!(
            "stack@1.0: device-stack/{index} is a {}, not a device name",
            other.kind()
        ))),
    }
}

/// The keys of `device-stack`, in order (map mode).
fn member_keys(msg: &Message) -> Result<Vec<String>> {
    match msg.get("device-stack") {
        Some(Value::Message(m)) => Ok(m
            .keys()
            .map(|k| k.as_str().to_owned())
            .filter(|k| !CORE_KEYS.contains(&k.as_str()))
            .collect()),
        Some(Value::List(l)) => Ok((1..=l.len()).map(|i| i.to_string()).collect()),
        Some(other) => Err(Error::BadRequest(format!(
            "stack@1.0: device-stack is a {}, not a message or list of device names",
            other.kind()
        ))),
        None => Err(Error::BadRequest(
            "stack@1.0: the message has no device-stack".into(),
        )),
    }
}

fn undefined() -> Value {
    Value::atom("undefined")
}

fn unset() -> Value {
    Value::atom("unset")
}

/// `msg` with member `index` of its stack as its device (HyperBEAM's `transform/3`), or `None`
/// when the stack has no such member. `device_key` is what `device-key` is set to (an integer
/// in fold mode, the key in map mode).
pub fn transform(msg: &Message, index: &str, device_key: Value) -> Result<Option<Message>> {
    let Some(name) = member(msg, index)? else {
        return Ok(None);
    };
    let prefix_of = |group: &str| {
        get_path(msg, &format!("{group}/{index}"))
            .cloned()
            .unwrap_or_else(undefined)
    };
    let current = |key: &str| msg.get(key).cloned().unwrap_or_else(undefined);
    let mut req = Message::new()
        .with("device", name.as_str())
        .with("device-key", device_key)
        .with("input-prefix", prefix_of("input-prefixes"))
        .with("output-prefix", prefix_of("output-prefixes"))
        .with("previous-input-prefix", current("input-prefix"))
        .with("previous-output-prefix", current("output-prefix"));
    if let Some(dev) = msg.get("device") {
        req.insert("previous-device", dev.clone());
    }
    message_device::set(msg, &req).map(Some)
}

/// A value at a `/`-separated path of nested messages (empty parts ignored).
pub fn get_path<'m>(msg: &'m Message, path: &str) -> Option<&'m Value> {
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    let first = parts.next()?;
    let mut current = msg.get(first)?;
    for part in parts {
        current = match current {
            Value::Message(m) => m.get(part)?,
            Value::List(l) => part
                .parse::<usize>()
                .ok()
                .filter(|i| *i >= 1)
                .and_then(|i| l.get(i - 1))?,
            _ => return None,
        };
    }
    Some(current)
}

/// The `input-prefix` a stack member should read from (empty when unset).
pub fn input_prefix(msg: &Message) -> &str {
    msg.get_str("input-prefix").unwrap_or("")
}

/// The `output-prefix` a stack member should write under (empty when unset).
pub fn output_prefix(msg: &Message) -> &str {
    msg.get_str("output-prefix").unwrap_or("")
}

/// The stack pass a member is running in (1 when unset).
pub fn pass(msg: &Message) -> i64 {
    msg.get("pass").and_then(Value::as_integer).unwrap_or(1)
}

async fn fold(base: &Message, request: &Message, ctx: &Context) -> Result<Value> {
    let strategy = strategy(base, request)?;
    let init_device = base.get("device").cloned().unwrap_or_else(undefined);
    let starting_pass = base.get("pass").cloned().unwrap_or_else(unset);
    let prepared = message_device::set(base, &Message::new().with("pass", 1i64))?;
    let result = match fold_from(prepared, request, ctx, strategy).await? {
        Value::Message(m) => m,
        raw => return Ok(raw),
    };
    let restore = Message::new()
        .with("device", init_device)
        .with(
            "input-prefix",
            result
                .get("previous-input-prefix")
                .cloned()
                .unwrap_or_else(undefined),
        )
        .with(
            "output-prefix",
            result
                .get("previous-output-prefix")
                .cloned()
                .unwrap_or_else(undefined),
        )
        .with("device-key", unset())
        .with("device-stack-previous", unset())
        .with("pass", starting_pass);
    message_device::set(&result, &restore).map(Value::Message)
}

async fn fold_from(
    mut state: Message,
    request: &Message,
    ctx: &Context,
    strategy: Strategy,
) -> Result<Value> {
    let mut dev: i64 = 1;
    loop {
        let index = dev.to_string();
        let Some(transformed) = transform(&state, &index, Value::Integer(dev))? else {
            return Ok(Value::Message(state));
        };
        match ctx.resolve(transformed.clone(), request.clone()).await {
            Ok(Value::Message(next)) => {
                state = next;
                dev += 1;
            }
            Ok(raw) => return Ok(raw),
            Err(Error::NotFound(_)) => {
                state = transformed;
                dev += 1;
            }
            Err(Error::Flow {
                flow: Flow::Skip,
                state: next,
            }) => return Ok(Value::Message(next)),
            Err(Error::Flow {
                flow: Flow::Pass,
                state: next,
            }) => {
                let passes = pass(&next) + 1;
                if passes > MAX_PASSES {
                    return Err(Error::status(
                        508,
                        Message::new()
                            .with("status", 508i64)
                            .with("error", "too-many-passes")
                            .with(
                                "body",
                                format!("stack@1.0: more than {MAX_PASSES} passes over the stack"),
                            ),
                    ));
                }
                state = message_device::set(&next, &Message::new().with("pass", passes))?;
                dev = 1;
            }
            Err(err) => match strategy {
                Strategy::Throw => return Err(err),
                Strategy::Stop => {
                    let device = member(&state, &index)?.unwrap_or_default();
                    return Err(Error::status(
                        400,
                        Message::new()
                            .with("status", 400i64)
                            .with("error", "stack_call_failed")
                            .with("device-key", dev)
                            .with("device", device)
                            .with("reason", err.to_string())
                            .with("reason-status", i64::from(err.http_status())),
                    ));
                }
                Strategy::Continue => {
                    state = transformed;
                    dev += 1;
                }
                Strategy::Ignore => return Ok(Value::Message(state)),
            },
        }
    }
}

async fn map(base: &Message, request: &Message, ctx: &Context) -> Result<Value> {
    let mut out = Message::new();
    for key in member_keys(base)? {
        let Some(transformed) = transform(base, &key, Value::from(key.as_str()))? else {
            continue;
        };
        if let Ok(v) = ctx.resolve(transformed, request.clone()).await {
            out.insert(key.as_str(), v);
        }
    }
    Ok(Value::Message(out))
}
