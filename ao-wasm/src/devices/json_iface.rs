//! `json-iface@1.0`: the aos JSON ABI over `wasm-64@1.0` (`devices.md` §3.11).

use std::sync::Arc;

use ao_core::device::{BoxFuture, Device, DeviceInfo};
use ao_core::id::{IdScope, id_string};
use ao_core::resolve::Context;
use ao_core::util::b64u;
use ao_core::{Error, Message, Result, Value};
use serde_json::{Map, Value as Json};

use super::{WasmRuntime, get_path, instance_handle, output_prefix, pass, path, set_path};

/// The `json-iface@1.0` device.
///
/// * `init`: sets `function: handle`.
/// * `compute`, pass 1: writes the message JSON (from the request's `body`, the assignment's
///   message) and the env JSON (`{"Process": …}` from the base's `process`) into the instance
///   with `malloc`, and sets `parameters: [msgPtr, envPtr]`.
/// * `compute`, pass 2: reads the string at `results/<prefix>/output/1`, and sets
///   `results/{data, outbox, patches}` from `Output.data` (or `Error`) and `Messages`.
///   `Spawns` and `Assignments` are dropped, as in HyperBEAM.
#[derive(Debug, Clone)]
pub struct JsonIfaceDevice {
    rt: Arc<WasmRuntime>,
}

impl JsonIfaceDevice {
    /// The device over the runtime shared with `wasm-64@1.0`.
    pub fn new(rt: Arc<WasmRuntime>) -> Self {
        Self { rt }
    }
}

impl Device for JsonIfaceDevice {
    fn id(&self) -> &str {
        "json-iface@1.0"
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo::exports(["init", "compute"])
    }

    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        request: &'a Message,
        _ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        let rt = &self.rt;
        Some(Box::pin(async move {
            match key {
                "init" => Ok(Value::Message(base.clone().with("function", "handle"))),
                "compute" if pass(base) == 1 => prepare(rt, base, request).map(Value::Message),
                "compute" => results(rt, base).map(Value::Message),
                other => Err(Error::NotFound(other.to_owned())),
            }
        }))
    }
}

/// `data-protocol` → `Data-Protocol`.
pub(crate) fn header_case(key: &str) -> String {
    key.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Float(f) => ao_core::codec::structured::format_float(*f).ok(),
        Value::Atom(a) => Some(a.as_str().to_owned()),
        _ => None,
    }
}

/// The first signature commitment (one naming a committer).
fn signer(msg: &Message) -> Option<&Message> {
    msg.commitments()?
        .iter()
        .find_map(|(_, c)| c.as_message().filter(|c| c.contains("committer")))
}

/// The aos JSON of a message (`devices.md` §3.11 step 1).
pub(crate) fn message_json(msg: &Message) -> Result<Map<String, Json>> {
    let mut out = Map::new();
    out.insert("Id".into(), Json::from(id_string(msg, IdScope::Signed)?));
    let commitment = signer(msg);
    let owner = commitment
        .and_then(|c| c.get_str("committer"))
        .unwrap_or("")
        .to_owned();
    out.insert(
        "Anchor".into(),
        Json::from(msg.get("anchor").and_then(text).unwrap_or_default()),
    );
    out.insert("Owner".into(), Json::from(owner.clone()));
    out.insert(
        "From".into(),
        Json::from(msg.get("from-process").and_then(text).unwrap_or(owner)),
    );
    let original = commitment
        .and_then(|c| c.get("original-tags"))
        .and_then(Value::as_message);
    let mut tags = Vec::new();
    match original {
        Some(orig) => {
            for (_, t) in orig.iter() {
                if let Value::Message(t) = t {
                    let (Some(n), Some(v)) = (t.get("name"), t.get("value")) else {
                        continue;
                    };
                    tags.push(serde_json::json!({"name": text(n), "value": text(v)}));
                }
            }
        }
        None => {
            const SKIP: [&str; 7] = [
                "id",
                "anchor",
                "owner",
                "data",
                "target",
                "signature",
                "commitments",
            ];
            for (k, v) in msg.iter() {
                if SKIP.contains(&k.as_str()) {
                    continue;
                }
                if let Some(v) = text(v) {
                    tags.push(serde_json::json!({"name": header_case(k.as_str()), "value": v}));
                }
            }
        }
    }
    out.insert("Tags".into(), Json::Array(tags));
    out.insert(
        "Target".into(),
        Json::from(msg.get("target").and_then(text).unwrap_or_default()),
    );
    out.insert(
        "Data".into(),
        Json::from(msg.get("data").and_then(text).unwrap_or_default()),
    );
    if let Some(sig) = commitment
        .and_then(|c| c.get("signature"))
        .and_then(Value::as_bytes)
        && sig.len() == 512
    {
        out.insert("Signature".into(), Json::from(b64u(sig)));
    }
    Ok(out)
}

fn prepare(rt: &WasmRuntime, base: &Message, request: &Message) -> Result<Message> {
    let prefix = output_prefix(base);
    let msg = match request.get("body") {
        Some(Value::Message(m)) => m.clone(),
        _ => request.clone(),
    };
    let process = base
        .get_message("process")
        .cloned()
        .unwrap_or_else(|| base.clone());
    let mut m = message_json(&msg)?;
    if let Some(image) = process.get("image").and_then(text) {
        m.insert("Module".into(), Json::from(image));
    }
    if let Some(h) = request.get("block-height").and_then(Value::as_integer) {
        m.insert("Block-Height".into(), Json::from(h));
    }
    let env = serde_json::json!({ "Process": Json::Object(message_json(&process)?) });
    let (m, env) = (Json::Object(m).to_string(), env.to_string());
    let inst = instance_handle(base, &prefix)
        .and_then(|h| rt.get(&h))
        .ok_or_else(|| Error::BadRequest("json-iface needs a live wasm-64@1.0 instance".into()))?;
    let mut inst = inst
        .lock()
        .map_err(|_| Error::Internal("WASM instance lock poisoned".into()))?;
    let mp = inst.write_cstring(m.as_bytes())?;
    let ep = inst.write_cstring(env.as_bytes())?;
    Ok(base.clone().with("function", "handle").with(
        "parameters",
        Value::List(vec![Value::Integer(mp as i64), Value::Integer(ep as i64)]),
    ))
}

fn json_to_value(j: &Json) -> Value {
    match j {
        Json::Null => Value::atom("null"),
        Json::Bool(b) => Value::bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(a) => Value::List(a.iter().map(json_to_value).collect()),
        // Private keys (spec §1.3) are dropped: what a module answers never reaches a
        // message's private area.
        Json::Object(o) => Value::Message(
            o.iter()
                .filter(|(k, _)| !ao_core::Key::new(k.as_str()).is_private())
                .map(|(k, v)| (k.as_str(), json_to_value(v)))
                .collect(),
        ),
    }
}

/// A module's JSON value as a message value a message can encode: a shape none encodes (a list
/// mixing messages with other values, nesting past the depth limit) is kept as its JSON text.
fn storable_value(j: &Json) -> Value {
    let value = json_to_value(j);
    match ao_core::codec::structured::encodes(&value) {
        true => value,
        false => Value::from(j.to_string()),
    }
}

/// An outbox message (`devices.md` §3.11 step 4).
fn outbox_message(j: &Json, process_id: &str, image: &str) -> Message {
    let mut out = Message::new();
    if let Json::Object(o) = j {
        for (k, v) in o {
            if k.eq_ignore_ascii_case("tags") || ao_core::Key::new(k).is_private() {
                continue;
            }
            out.insert(k.to_lowercase().as_str(), storable_value(v));
        }
        if let Some(Json::Array(tags)) = o.get("Tags").or_else(|| o.get("tags")) {
            for t in tags {
                if let (Some(n), Some(v)) = (t["name"].as_str(), t.get("value"))
                    && !ao_core::Key::new(n).is_private()
                {
                    out.insert(n.to_lowercase().as_str(), storable_value(v));
                }
            }
        }
    }
    for k in ["from-process", "from-image", "anchor", "tags"] {
        out.remove(k);
    }
    out.with("from-process", process_id)
        .with("from-image", image)
}

fn results(rt: &WasmRuntime, base: &Message) -> Result<Message> {
    let prefix = output_prefix(base);
    let res = path("results", &prefix);
    if get_path(base, &path(&res, "type")).and_then(Value::as_str) == Some("error") {
        return Err(Error::status(500, "WASM execution error."));
    }
    let ptr = match get_path(base, &path(&res, "output")) {
        Some(Value::List(l)) => l.first().and_then(Value::as_integer),
        _ => None,
    }
    .ok_or_else(|| Error::BadRequest("no WASM result pointer".into()))?;
    let inst = instance_handle(base, &prefix)
        .and_then(|h| rt.get(&h))
        .ok_or_else(|| Error::BadRequest("json-iface needs a live wasm-64@1.0 instance".into()))?;
    let bytes = inst
        .lock()
        .map_err(|_| Error::Internal("WASM instance lock poisoned".into()))?
        .read_cstr(ptr as u64)?;
    let parsed: Json = serde_json::from_slice(&bytes).map_err(|e| Error::Malformed {
        codec: "aos-json",
        reason: e.to_string(),
    })?;
    let r = &parsed["response"];
    let process = base.get_message("process").cloned().unwrap_or_default();
    let process_id = id_string(&process, IdScope::Signed)?;
    let image = process.get("image").and_then(text).unwrap_or_default();
    let (data, outbox) = if let Some(d) = r["Output"].get("data") {
        let mut outbox = Message::new();
        if let Some(Json::Array(msgs)) = r.get("Messages") {
            for (i, m) in msgs.iter().enumerate() {
                outbox.insert(
                    (i + 1).to_string().as_str(),
                    outbox_message(m, &process_id, &image),
                );
            }
        }
        (json_to_value(d), outbox)
    } else if let Some(e) = r.get("Error") {
        (json_to_value(e), Message::new())
    } else {
        return Err(Error::status(
            500,
            format!("aos response has neither Output.data nor Error: {r}"),
        ));
    };
    let patches = match r.get("patches").or_else(|| r.get("Patches")) {
        Some(Json::Array(p)) => Value::List(p.iter().map(json_to_value).collect()),
        _ => Value::List(Vec::new()),
    };
    let state = set_path(base.clone(), "results/data", data);
    let state = set_path(state, "results/outbox", Value::Message(outbox));
    Ok(set_path(state, "results/patches", patches))
}

#[cfg(test)]
mod tests {
    use super::{header_case, outbox_message};

    /// What a module answers never reaches a message's private area: private keys and tags of
    /// an outbox message are dropped, the others kept.
    #[test]
    fn a_module_cannot_set_private_keys_on_its_outbox() {
        let j = serde_json::json!({
            "Target": "T",
            "priv-verified-signers": ["forged"],
            "Data": {"priv": 1, "kept": 2},
            "Tags": [{"name": "Priv-X", "value": "y"}, {"name": "Action", "value": "Ping"}]
        });
        let m = outbox_message(&j, "P", "I");
        assert!(m.private_fields().is_empty(), "{:?}", m.private_fields());
        assert!(m.keys().all(|k| !k.is_private()));
        assert_eq!(m.get_str("action"), Some("Ping"));
        let data = m.get_message("data").unwrap();
        assert!(data.private_fields().is_empty() && data.contains("kept"));
    }

    #[test]
    fn header_casing() {
        assert_eq!(header_case("data-protocol"), "Data-Protocol");
        assert_eq!(header_case("action"), "Action");
        assert_eq!(header_case("x--y"), "X--Y");
    }
}
