//! The aos execution path: the message and env JSON of an evaluation, and the result JSON back
//! into messages (devices.md §3.11, §5.1), as ao's CU and HyperBEAM's `json-iface@1.0` do.
//!
//! Processes spawned by aoconnect name `execution-device: genesis-wasm@1.0`, which HyperBEAM
//! serves by delegating to a Node CU. This node runs them natively instead: the process's
//! `Module` (or `image`) names a stored module message whose body is the WASM, loaded through
//! [`ao_wasm::WasmEngine`] and evaluated with [`ao_wasm::AosInstance::handle`].
//!
//! * **Message JSON**: `Id` (over the signatures), `Owner` (the signer's address), `From`
//!   (`from-process`, else the owner), `Target`, `Anchor`, `Data`, `Signature`, `Tags` (the
//!   ANS-104 item's original tags in order, then any other key Header-Cased), `Module`,
//!   `Block-Height` (integer), `Timestamp` (the assignment's, in ms, as the CU passes it),
//!   `Hash-Chain`, `Epoch`, `Nonce` (the slot).
//! * **Env JSON**: `{"Process": {Id, Owner, Tags}, "Module": {Id, Owner, Tags}}`.
//! * **Result**: `{"ok": true, "response": {Output, Messages, Spawns, Assignments, Error}}`;
//!   `response` is kept verbatim as the slot's `raw` result (what aoconnect reads), and also
//!   turned into `data` and an `outbox` of messages (`"1"`, `"2"`…) for HyperPATH reads.

use ao_core::codec::structured;
use ao_core::id::{IdScope, id};
use ao_core::util::b64u;
use ao_core::{Atom, Error, Key, Message, Result, Value};
use serde_json::{Map, Value as Json, json};

/// Keys that are never passed as tags.
const NOT_TAGS: [&str; 12] = [
    "id",
    "anchor",
    "owner",
    "data",
    "target",
    "signature",
    "commitments",
    "path",
    "method",
    "body",
    "ao-types",
    "from-process",
];

/// `data-protocol` → `Data-Protocol`.
pub fn header_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// A value as tag text.
fn text(v: &Value) -> String {
    match v {
        Value::Binary(b) => match std::str::from_utf8(b) {
            Ok(s) => s.to_owned(),
            Err(_) if b.len() == 32 => b64u(b),
            Err(_) => String::from_utf8_lossy(b).into_owned(),
        },
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Atom(a) => a.as_str().to_owned(),
        other => structured::encode_scalar(other, 0)
            .map(|(_, t)| String::from_utf8_lossy(&t).into_owned())
            .unwrap_or_default(),
    }
}

/// An ID-valued key (`target`, `anchor`): 32 raw bytes become base64url.
fn id_text(v: &Value) -> String {
    match v {
        // 32 bytes are raw ID bytes (an ANS-104 item's target or anchor), even when they
        // happen to be UTF-8.
        Value::Binary(b) if b.len() == 32 => b64u(b),
        other => text(other),
    }
}

/// The first signature commitment of a message: its ID and fields.
fn first_signature(msg: &Message) -> Option<(&Key, &Message)> {
    msg.commitments()?
        .iter()
        .filter_map(|(k, v)| v.as_message().map(|m| (k, m)))
        .find(|(_, m)| m.contains("committer"))
}

/// The address of a message's first signer.
pub fn owner_of(msg: &Message) -> Option<String> {
    first_signature(msg).and_then(|(_, c)| c.get_str("committer").map(str::to_owned))
}

/// The tags of a message in the order its signer saw them (ANS-104 `original-tags`), followed
/// by any other public key, Header-Cased.
pub fn tags_of(msg: &Message) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    if let Some((_, c)) = first_signature(msg)
        && let Some(orig) = c.get_message("original-tags")
    {
        for i in 1..=orig.len() {
            let Some(t) = orig.get_message(&i.to_string()) else {
                continue;
            };
            let name = t.get("name").map(text).unwrap_or_default();
            let value = t.get("value").map(text).unwrap_or_default();
            seen.push(ao_core::key::normalize(&name).into_owned());
            out.push((name, value));
        }
    }
    for (k, v) in msg.iter() {
        if NOT_TAGS.contains(&k.as_str()) || seen.iter().any(|s| s == k.as_str()) {
            continue;
        }
        if matches!(v, Value::Message(_)) {
            continue;
        }
        out.push((header_case(k.as_str()), text(v)));
    }
    out
}

fn tags_json(tags: &[(String, String)]) -> Json {
    Json::Array(
        tags.iter()
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect(),
    )
}

fn data_text(msg: &Message) -> String {
    match msg.get("data").or_else(|| msg.get("body")) {
        Some(Value::Message(_)) | None => String::new(),
        Some(v) => text(v),
    }
}

/// What the env JSON says about a process and its module.
#[derive(Debug, Clone)]
pub struct ProcessEnv {
    /// The process ID.
    pub pid: String,
    /// The module ID.
    pub module_id: String,
    /// The env JSON passed with every evaluation.
    pub env_json: String,
}

impl ProcessEnv {
    /// The env of `process` running `module` (the stored module message).
    pub fn new(pid: &str, process: &Message, module_id: &str, module: &Message) -> Self {
        let env = json!({
            "Process": {
                "Id": pid,
                "Owner": owner_of(process).unwrap_or_default(),
                "Tags": tags_json(&tags_of(process)),
            },
            "Module": {
                "Id": module_id,
                "Owner": owner_of(module).unwrap_or_default(),
                "Tags": tags_json(&tags_of(module)),
            },
        });
        Self {
            pid: pid.to_owned(),
            module_id: module_id.to_owned(),
            env_json: env.to_string(),
        }
    }
}

/// The message JSON of one evaluation: `body` is the scheduled message, `assignment` its
/// assignment (absent for a dry run).
pub fn message_json(
    body: &Message,
    assignment: Option<&Message>,
    env: &ProcessEnv,
) -> Result<String> {
    let msg_id = b64u(&id(body, IdScope::Signed)?);
    let owner = owner_of(body).unwrap_or_default();
    let from = body
        .get("from-process")
        .map(id_text)
        .unwrap_or_else(|| owner.clone());
    let signature = first_signature(body)
        .and_then(|(_, c)| c.get("signature"))
        .and_then(Value::as_bytes)
        .map(|b| {
            if b.len() == 512 {
                b64u(b)
            } else {
                String::from_utf8_lossy(b).into_owned()
            }
        });
    let mut m = Map::new();
    m.insert("Id".into(), Json::String(msg_id));
    m.insert("Owner".into(), Json::String(owner));
    m.insert("From".into(), Json::String(from));
    m.insert(
        "Target".into(),
        Json::String(
            body.get("target")
                .map(id_text)
                .unwrap_or_else(|| env.pid.clone()),
        ),
    );
    m.insert(
        "Anchor".into(),
        Json::String(body.get("anchor").map(id_text).unwrap_or_default()),
    );
    if let Some(s) = signature {
        m.insert("Signature".into(), Json::String(s));
    }
    m.insert("Tags".into(), tags_json(&tags_of(body)));
    m.insert("Data".into(), Json::String(data_text(body)));
    m.insert("Module".into(), Json::String(env.module_id.clone()));
    match assignment {
        Some(a) => {
            let int = |k: &str| a.get(k).and_then(Value::as_integer).unwrap_or(0);
            m.insert("Block-Height".into(), Json::from(int("block-height")));
            m.insert(
                "Timestamp".into(),
                Json::String(int("timestamp").to_string()),
            );
            m.insert("Nonce".into(), Json::String(int("slot").to_string()));
            m.insert("Epoch".into(), Json::String("0".into()));
            if let Some(h) = a.get_str("hash-chain") {
                m.insert("Hash-Chain".into(), Json::String(h.to_owned()));
            }
        }
        None => {
            m.insert("Block-Height".into(), Json::from(0));
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            m.insert("Timestamp".into(), Json::String(now.to_string()));
        }
    }
    Ok(Json::Object(m).to_string())
}

/// The outcome of one evaluation.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// `Output.data` (or the `Error`), as a value.
    pub data: Value,
    /// The `Error`, when the evaluation failed inside the module.
    pub error: Option<String>,
    /// The response object (`{Output, Messages, Spawns, Assignments, Error}`), as JSON text.
    pub raw: String,
    /// `Messages` as a numbered map of messages.
    pub outbox: Message,
}

/// A JSON value as a message value (keys normalised; private keys, spec §1.3, dropped: what a
/// module answers never reaches a message's private area).
pub fn json_to_value(j: &Json) -> Value {
    match j {
        Json::Null => Value::Atom(Atom::new("null")),
        Json::Bool(b) => Value::bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(a) => Value::List(a.iter().map(json_to_value).collect()),
        Json::Object(o) => {
            let mut m = Message::new();
            for (k, v) in o {
                let k = Key::new(k);
                if !k.is_private() {
                    m.insert(k, json_to_value(v));
                }
            }
            Value::Message(m)
        }
    }
}

/// A module's JSON value as a message value the store can hold: a shape no message encodes (a
/// list mixing messages with other values, nesting past the depth limit) is kept as its JSON
/// text, so one odd outbox message cannot make a slot's result unstorable.
pub fn storable_value(j: &Json) -> Value {
    let value = json_to_value(j);
    match ao_core::codec::structured::encodes(&value) {
        true => value,
        false => Value::from(j.to_string()),
    }
}

fn outbox_message(j: &Json, env: &ProcessEnv) -> Message {
    let mut m = Message::new();
    if let Json::Object(o) = j {
        for (k, v) in o {
            if k.eq_ignore_ascii_case("tags") || Key::new(k).is_private() {
                continue;
            }
            // aos JSON-encodes table `Data`; like HyperBEAM, an object becomes a browsable
            // message (`results/outbox/1/data/<key>`). The `raw` result keeps the text.
            let value = match v {
                Json::String(s) if k.eq_ignore_ascii_case("data") && s.starts_with('{') => {
                    match serde_json::from_str::<Json>(s) {
                        Ok(obj @ Json::Object(_)) => match storable_value(&obj) {
                            Value::Message(m) => Value::Message(m),
                            _ => json_to_value(v),
                        },
                        _ => json_to_value(v),
                    }
                }
                _ => storable_value(v),
            };
            m.insert(Key::new(k), value);
        }
        if let Some(Json::Array(tags)) = o.get("Tags").or_else(|| o.get("tags")) {
            for t in tags {
                if let (Some(n), Some(v)) = (t.get("name"), t.get("value")) {
                    let name = n
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| n.to_string());
                    let name = Key::new(&name);
                    if !name.is_private() {
                        m.insert(name, storable_value(v));
                    }
                }
            }
        }
    }
    for k in ["from-process", "from-image", "anchor", "tags"] {
        m.remove(k);
    }
    m.with("from-process", env.pid.as_str())
        .with("from-image", env.module_id.as_str())
}

/// Parses what `handle` returned.
pub fn parse_result(out: &str, env: &ProcessEnv) -> Result<Evaluation> {
    let parsed: Json = serde_json::from_str(out)
        .map_err(|e| Error::status(500, format!("the module answered non-JSON: {e}")))?;
    let ok = parsed.get("ok").and_then(Json::as_bool).unwrap_or(true);
    let response = parsed.get("response").cloned().unwrap_or(Json::Null);
    let mut response = match response {
        Json::Object(o) => o,
        other if !ok => {
            let mut o = Map::new();
            o.insert(
                "Error".into(),
                match other {
                    Json::String(s) => Json::String(s),
                    j => Json::String(j.to_string()),
                },
            );
            o
        }
        _ => {
            return Err(Error::status(
                500,
                "the module's answer has no response object",
            ));
        }
    };
    response.remove("Memory");
    for (k, default) in [
        ("Messages", json!([])),
        ("Spawns", json!([])),
        ("Assignments", json!([])),
    ] {
        response.entry(k).or_insert(default);
    }
    let error = match response.get("Error") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let data = match response.get("Output") {
        Some(Json::Object(o)) if o.contains_key("data") => storable_value(&o["data"]),
        Some(Json::String(s)) => Value::from(s.as_str()),
        _ => match &error {
            Some(e) => Value::from(e.as_str()),
            None => Value::from(""),
        },
    };
    let mut outbox = Message::new();
    if let Some(Json::Array(msgs)) = response.get("Messages") {
        for (i, j) in msgs.iter().enumerate() {
            outbox.insert(
                Key::new(&(i + 1).to_string()),
                Value::Message(outbox_message(j, env)),
            );
        }
    }
    Ok(Evaluation {
        data,
        error,
        raw: Json::Object(response).to_string(),
        outbox,
    })
}

/// The `raw` result object of an evaluation that did not complete (a trap, an exhausted budget):
/// an AO error result, as the CU reports one.
pub fn failure(reason: &str) -> Evaluation {
    let raw = json!({
        "Output": {},
        "Messages": [],
        "Spawns": [],
        "Assignments": [],
        "Error": reason,
    });
    Evaluation {
        data: Value::from(reason),
        error: Some(reason.to_owned()),
        raw: raw.to_string(),
        outbox: Message::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a module answers never reaches a message's private area (where the node records
    /// what it verified): private keys and tags of an outbox message are dropped.
    #[test]
    fn a_module_cannot_set_private_keys_on_its_outbox() {
        let env = ProcessEnv {
            pid: "P".into(),
            module_id: "M".into(),
            env_json: "{}".into(),
        };
        let out = json!({"ok": true, "response": {
            "Output": {"data": "x"},
            "Messages": [{
                "Target": "T",
                "priv-verified-signers": ["forged"],
                "Data": "{\"priv\":1,\"kept\":2}",
                "Tags": [
                    {"name": "Priv-Process-Id", "value": "Q"},
                    {"name": "Action", "value": "Ping"}
                ]
            }]
        }});
        let ev = parse_result(&out.to_string(), &env).unwrap();
        let m = ev.outbox.get_message("1").unwrap();
        assert!(m.private_fields().is_empty(), "{:?}", m.private_fields());
        assert!(m.keys().all(|k| !k.is_private()));
        assert_eq!(m.get_str("action"), Some("Ping"));
        assert_eq!(m.get_str("target"), Some("T"));
        let data = m.get_message("data").unwrap();
        assert!(data.private_fields().is_empty() && data.contains("kept"));
    }

    /// What a module answers in shapes no message encodes (a list mixing a number and an
    /// object, in `Data`, a tag or `Output.data`) is kept as JSON text: the slot's result stays
    /// storable (it failed to encode, and the batch of results it was flushed with was lost).
    #[test]
    fn unencodable_answers_are_kept_as_text() {
        let env = ProcessEnv {
            pid: "P".into(),
            module_id: "M".into(),
            env_json: "{}".into(),
        };
        let out = json!({"ok": true, "response": {
            "Output": {"data": [1, {"a": 1}]},
            "Messages": [{
                "Target": "T",
                "Data": "{\"x\":[1,{\"a\":1}]}",
                "Odd": [1, {"a": 1}],
                "Tags": [{"name": "Shape", "value": [3, {"b": 2}]}]
            }]
        }});
        let ev = parse_result(&out.to_string(), &env).unwrap();
        let m = ev.outbox.get_message("1").unwrap();
        assert_eq!(m.get_str("data"), Some("{\"x\":[1,{\"a\":1}]}"));
        assert_eq!(m.get_str("odd"), Some("[1,{\"a\":1}]"));
        assert_eq!(m.get_str("shape"), Some("[3,{\"b\":2}]"));
        assert_eq!(ev.data, Value::from("[1,{\"a\":1}]"));
        let results = Message::new()
            .with("data", ev.data)
            .with("outbox", ev.outbox);
        ao_core::cache::message_ops(&results).unwrap();
    }
}
