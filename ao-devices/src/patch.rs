//! `patch@1.0` (devices.md §3.12, HyperBEAM's `dev_patch`): moves data inside a message.
//!
//! * `patches` (and `compute`, so it can sit in an execution stack): every message in the source
//!   whose `method` is `PATCH` or whose `device` is `patch@1.0` is merged (without its `method`)
//!   into the target; the other entries stay in the source.
//! * `all`: the whole source value is merged into the target and the source is removed.
//! * `init`, `normalize` and `snapshot` answer the base unchanged (execution-device hooks).
//!
//! The source path is the first of `patch-from` (request, then base) and `from` (request, then
//! base), `/` by default; a `base:` or `req:` prefix on it says which message it is read from
//! (the base by default). The target path is found the same way from `patch-to` / `to`, and is
//! always in the base. A missing source is [`Error::NotFound`], which a stack treats as "this
//! device has nothing to do" — so a stack carrying `patch-from: /results/outbox` leaves states
//! without results alone, and merges the `PATCH` messages of an execution's outbox into the
//! state (at its root by default), where they are readable at plain GET paths.
//!
//! One deliberate difference from HyperBEAM: with a `req:` source, HyperBEAM builds its result
//! on the request (dropping the base); here the result is always the base, patched.

use ao_core::device::BoxFuture;
use ao_core::{Context, Device, DeviceInfo, Error, Message, Result, Value, message_device};

use crate::stack::get_path;

/// The `patch@1.0` device.
#[derive(Debug, Clone, Copy, Default)]
pub struct PatchDevice;

impl Device for PatchDevice {
    fn id(&self) -> &str {
        "patch@1.0"
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo::exports(["init", "normalize", "snapshot", "compute", "patches", "all"])
    }

    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        request: &'a Message,
        _ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        let out = match ao_core::key::normalize(key).as_ref() {
            "init" | "normalize" | "snapshot" => Ok(base.clone()),
            "compute" | "patches" => apply(Mode::Patches, base, request),
            "all" => apply(Mode::All, base, request),
            _ => return None,
        };
        Some(Box::pin(async move { out.map(Value::Message) }))
    }
}

/// Which entries of the source move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only `PATCH` messages.
    Patches,
    /// The whole source.
    All,
}

/// The first of `patch-<name>` then `<name>`, each from the request then the base.
fn option<'m>(base: &'m Message, request: &'m Message, name: &str) -> Result<Option<&'m str>> {
    let patch_name = format!("patch-{name}");
    let found = [
        request.get(&patch_name),
        base.get(&patch_name),
        request.get(name),
        base.get(name),
    ]
    .into_iter()
    .flatten()
    .next();
    match found {
        None => Ok(None),
        Some(v) => v.as_str().map(Some).ok_or_else(|| {
            Error::BadRequest(format!(
                "patch@1.0: {patch_name} is a {}, not a path",
                v.kind()
            ))
        }),
    }
}

/// `path` with empty parts dropped (`""` is the root).
fn clean(path: &str) -> String {
    path.split('/')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether an entry of the source is a patch.
fn is_patch(v: &Value) -> bool {
    match v {
        Value::Message(m) => {
            m.get_str("method") == Some("PATCH") || m.get_str("device") == Some("patch@1.0")
        }
        _ => false,
    }
}

/// Applies `mode` with the paths the base and request name.
pub fn apply(mode: Mode, base: &Message, request: &Message) -> Result<Message> {
    let raw_from = option(base, request, "from")?.unwrap_or("/");
    let trimmed = raw_from.trim_start_matches('/');
    let (from_request, from) = if let Some(rest) = trimmed.strip_prefix("req:") {
        (true, clean(rest))
    } else if let Some(rest) = trimmed.strip_prefix("base:") {
        (false, clean(rest))
    } else {
        (false, clean(trimmed))
    };
    let to = clean(option(base, request, "to")?.unwrap_or("/"));
    let from_msg = if from_request { request } else { base };
    let source: Value = if from.is_empty() {
        Value::Message(from_msg.clone())
    } else {
        get_path(from_msg, &from)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("patch@1.0: no source at {raw_from:?}")))?
    };
    let (to_write, remaining) = match mode {
        Mode::All => (source, None),
        Mode::Patches => {
            let Value::Message(source) = source else {
                return Err(Error::BadRequest(format!(
                    "patch@1.0: the source at {raw_from:?} is a {}, not a message",
                    source.kind()
                )));
            };
            let mut patches = Message::new();
            let mut rest = Message::new();
            for (k, v) in source.iter() {
                if is_patch(v) {
                    patches.fields_mut().insert(k.clone(), v.clone());
                } else {
                    rest.fields_mut().insert(k.clone(), v.clone());
                }
            }
            let mut merged = Message::new();
            for (_, patch) in patches.iter() {
                if let Value::Message(p) = patch {
                    merged = message_device::set(&merged, &p.clone().without("method"))?;
                }
            }
            (Value::Message(merged), Some((patches, rest)))
        }
    };
    // Take the patches out of the source (only the base is returned, so a source in the
    // request needs no change).
    let mut out = base.clone();
    if !from_request {
        if from.is_empty() {
            match &remaining {
                Some((patches, _)) => {
                    for k in patches.keys() {
                        out.remove(k.as_str());
                    }
                }
                None => out = Message::new(),
            }
        } else {
            let new_source = match remaining {
                Some((_, rest)) => Value::Message(rest),
                None => Value::atom("unset"),
            };
            out = message_device::set(
                &out,
                &Message::new()
                    .with(from.as_str(), new_source)
                    .with("set-mode", "explicit"),
            )?;
        }
    }
    // Merge what moves into the target.
    if to.is_empty() {
        match to_write {
            Value::Message(m) => message_device::set(&out, &m),
            other => Err(Error::BadRequest(format!(
                "patch@1.0: cannot merge a {} at the root of the message",
                other.kind()
            ))),
        }
    } else {
        message_device::set(&out, &Message::new().with(to.as_str(), to_write))
    }
}
