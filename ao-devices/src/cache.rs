//! `cache@1.0` (devices.md §3.18, HyperBEAM's `dev_cache`): reads and writes the node's store.
//!
//! * `read?target=<ID or path>`: the stored message (or binary) at an ID, a commitment ID or a
//!   deep path (`ID/key`, `data/<hash>`); [`Error::NotFound`] when absent.
//! * `write` (trusted writers only): `type: single` (the default) writes the request's `body`
//!   and answers `{status: 200, path}`; `type: batch` writes every entry of `body` that way and
//!   answers their results under the same keys. A binary goes to its content address
//!   `data/<hash>`, a message to its ID (an extension: HyperBEAM's device writes only binaries).
//!   With `location`, the written item is also linked there. `operation: link` links
//!   `destination` to `source` instead.
//! * `link?source=&destination=` (trusted writers only): the same link.
//!
//! A trusted writer is a signer of the request listed in the node option `cache_writers`
//! (or `cache-writers`): a signer the HTTP layer verified (the request's private
//! `priv-verified-signers`), or any committer whose commitment verifies on the request itself.
//! Others are refused with a 403. `accept: application/aos-2` (a JSON rendering from
//! json-iface) is not served here and answers a 406.

use ao_core::device::BoxFuture;
use ao_core::{Context, Device, DeviceInfo, Error, Message, Result, Store, Value};

use crate::meta::NodeState;

/// Where the HTTP layer records the signers it verified (`ao_http::handler::VERIFIED_SIGNERS`).
pub const VERIFIED_SIGNERS: &str = "priv-verified-signers";

/// The `cache@1.0` device.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheDevice;

impl Device for CacheDevice {
    fn id(&self) -> &str {
        "cache@1.0"
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo::exports(["read", "write", "link"])
    }

    fn call<'a>(
        &'a self,
        key: &'a str,
        _base: &'a Message,
        request: &'a Message,
        ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        let out = match ao_core::key::normalize(key).as_ref() {
            "read" => read(request, ctx),
            "write" => write(request, ctx),
            "link" => link(request, ctx),
            _ => return None,
        };
        Some(Box::pin(async move { out }))
    }
}

fn store(ctx: &Context) -> Result<&dyn Store> {
    ctx.store()
        .map(AsRef::as_ref)
        .ok_or_else(|| Error::Internal("this node has no store".into()))
}

fn text<'m>(request: &'m Message, key: &str, device: &str) -> Result<&'m str> {
    match request.get(key) {
        Some(v) => v.as_str().ok_or_else(|| {
            Error::BadRequest(format!("{device}: {key} is a {}, not text", v.kind()))
        }),
        None => Err(Error::BadRequest(format!(
            "{device}: the request needs `{key}`"
        ))),
    }
}

/// `read` of `cache@1.0` and `lookup@1.0`: the item at the request's `target`.
pub fn read_target(request: &Message, ctx: &Context, device: &str) -> Result<Value> {
    let target = text(request, "target", device)?;
    if request.get_str("accept") == Some("application/aos-2") {
        return Err(Error::status(
            406,
            format!("{device}: accept application/aos-2 is not served by this node"),
        ));
    }
    let store = store(ctx)?;
    // A group is read whole, so only a message's own group is: the node's index groups
    // (`data`, `computed/<pid>`, `assignments/<pid>`, …) grow with the store, and reading one
    // would load all of it. A message lives under its ID (a link to it resolves there).
    let (resolved, entry) = store.resolve_entry(target)?;
    if matches!(entry, Some(ao_core::store::Entry::Group)) && !is_message_group(&resolved) {
        return Err(Error::BadRequest(format!(
            "{device}: {target:?} is an index of the node's store, not a message: \
             read a message by its ID, or one entry below the index"
        )));
    }
    ao_core::cache::read(store, target)?
        .ok_or_else(|| Error::NotFound(format!("{device}: nothing stored at {target:?}")))
}

/// Whether a resolved group path is (inside) a message stored by ID: its first segment is
/// ID-shaped.
fn is_message_group(resolved: &str) -> bool {
    let first = resolved.split('/').next().unwrap_or("");
    ao_core::key::is_id_shaped(first.as_bytes())
}

fn read(request: &Message, ctx: &Context) -> Result<Value> {
    read_target(request, ctx, "cache@1.0")
}

/// The node's trusted cache writers (never the node itself: [`NodeState::authorizers`]).
fn cache_writers(ctx: &Context) -> Vec<String> {
    let Some(state) = ctx.extension::<NodeState>() else {
        return Vec::new();
    };
    let options = state.options();
    let list = options
        .get("cache_writers")
        .or_else(|| options.get("cache-writers"));
    let writers = match list {
        Some(Value::List(l)) => l
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(Value::Message(m)) => m
            .iter()
            .filter_map(|(_, v)| v.as_str().map(str::to_owned))
            .collect(),
        Some(Value::Binary(b)) => String::from_utf8_lossy(b)
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        _ => Vec::new(),
    };
    state.authorizers(writers)
}

/// Whether a signer of the request is a trusted writer.
pub fn is_trusted_writer(request: &Message, ctx: &Context) -> bool {
    let writers = cache_writers(ctx);
    if writers.is_empty() {
        return false;
    }
    if let Some(Value::List(signers)) = request.private(VERIFIED_SIGNERS)
        && signers
            .iter()
            .filter_map(Value::as_str)
            .any(|s| writers.iter().any(|w| w == s))
    {
        return true;
    }
    let Some(commitments) = request.commitments() else {
        return false;
    };
    commitments.iter().any(|(id, c)| {
        c.as_message()
            .and_then(|c| c.get_str("committer"))
            .is_some_and(|a| writers.iter().any(|w| w == a))
            && ao_core::verify::verify_commitment(request, id.as_str()).is_ok()
    })
}

fn refused() -> Error {
    Error::status(
        403,
        Message::new()
            .with("status", 403i64)
            .with("body", "Not authorized to write to the cache."),
    )
}

fn invalid(body: &str) -> Error {
    Error::status(
        400,
        Message::new().with("status", 400i64).with("body", body),
    )
}

fn write(request: &Message, ctx: &Context) -> Result<Value> {
    if !is_trusted_writer(request, ctx) {
        return Err(refused());
    }
    let store = store(ctx)?;
    match request.get_str("type").unwrap_or("single") {
        "single" => write_single(request, store).map(Value::Message),
        "batch" => {
            let body = request
                .get_message("body")
                .ok_or_else(|| invalid("A batch write needs a body of items."))?;
            let mut out = Message::new();
            for (k, item) in body.iter() {
                let item = match item {
                    Value::Message(m) => m.clone(),
                    other => Message::new().with("body", other.clone()),
                };
                out.insert(k.clone(), write_single(&item, store)?);
            }
            Ok(Value::Message(out))
        }
        _ => Err(invalid("Invalid write type.")),
    }
}

fn write_single(item: &Message, store: &dyn Store) -> Result<Message> {
    match item.get_str("operation").unwrap_or("write") {
        "write" => {
            let path = match item.get("body") {
                None => return Err(invalid("No body to write.")),
                Some(Value::Binary(b)) => ao_core::cache::write_binary(store, b.clone())?,
                Some(Value::Message(m)) => ao_core::cache::write_message(store, m)?,
                Some(other) => {
                    return Err(invalid(&format!("Cannot write a {} body.", other.kind())));
                }
            };
            if let Some(location) = item.get("location") {
                let location = location
                    .as_str()
                    .ok_or_else(|| invalid("The location is not a path."))?;
                store.make_link(&path, location)?;
            }
            Ok(Message::new()
                .with("status", 200i64)
                .with("path", path.as_str()))
        }
        "link" => {
            let source = text(item, "source", "cache@1.0")?;
            let destination = text(item, "destination", "cache@1.0")?;
            store.make_link(source, destination)?;
            Ok(Message::new().with("status", 200i64))
        }
        _ => Err(invalid("Invalid write type.")),
    }
}

fn link(request: &Message, ctx: &Context) -> Result<Value> {
    if !is_trusted_writer(request, ctx) {
        return Err(refused());
    }
    let item = Message::new()
        .with("operation", "link")
        .with("source", text(request, "source", "cache@1.0")?)
        .with("destination", text(request, "destination", "cache@1.0")?);
    write_single(&item, store(ctx)?).map(Value::Message)
}
