//! Reading the shared gold vectors (`../shared/fixtures` beside the project root).

use std::path::PathBuf;

use ao_core::{Atom, Message, Value};
use bytes::Bytes;
use serde_json::Value as Json;

/// The fixtures folder.
pub(crate) fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
}

/// A vector file as JSON.
pub(crate) fn vectors(name: &str) -> Json {
    let path = dir().join("vectors").join(name);
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&text).expect("vector file is JSON")
}

const TAGS: [&str; 6] = ["int", "float", "atom", "repeat", "b64", "map"];

/// Decodes the typed JSON encoding of fixtures/README.md §3.1 into a value.
pub(crate) fn value(j: &Json) -> Value {
    match j {
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(a) => Value::List(a.iter().map(value).collect()),
        Json::Object(o) if o.len() == 1 && TAGS.contains(&o.keys().next().unwrap().as_str()) => {
            let (tag, v) = o.iter().next().unwrap();
            match tag.as_str() {
                "int" => Value::Integer(v.as_i64().unwrap()),
                "float" => Value::Float(match v {
                    Json::String(s) => s.parse().unwrap(),
                    n => n.as_f64().unwrap(),
                }),
                "atom" => Value::Atom(Atom::new(v.as_str().unwrap())),
                "repeat" => {
                    let s = v[0].as_str().unwrap();
                    let n = v[1].as_u64().unwrap() as usize;
                    Value::Binary(Bytes::from(s.repeat(n)))
                }
                "b64" => Value::from(
                    ao_core::util::b64_std_decode(v.as_str().unwrap().as_bytes()).unwrap(),
                ),
                "map" => Value::Message(message(v)),
                _ => unreachable!(),
            }
        }
        Json::Object(_) => Value::Message(message(j)),
        other => panic!("unexpected JSON in a vector: {other}"),
    }
}

/// Decodes a typed-JSON map into a message.
pub(crate) fn message(j: &Json) -> Message {
    let mut m = Message::new();
    for (k, v) in j.as_object().expect("a map") {
        m.insert(k.as_str(), value(v));
    }
    m
}

/// A JSON object of strings as a TABM of binaries (nested objects become nested messages).
pub(crate) fn tabm(j: &Json) -> Message {
    let mut m = Message::new();
    for (k, v) in j.as_object().expect("a map") {
        match v {
            Json::String(s) => m.insert(k.as_str(), s.as_str()),
            Json::Object(_) => m.insert(k.as_str(), tabm(v)),
            other => panic!("unexpected TABM value {other}"),
        }
    }
    m
}

/// A wallet from `fixtures/wallets/`, loaded once per test binary.
pub(crate) fn wallet(name: &str) -> std::sync::Arc<ao_core::Wallet> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<ao_core::Wallet>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap();
    map.entry(name.to_owned())
        .or_insert_with(|| {
            let path = dir().join("wallets").join(name);
            Arc::new(ao_core::Wallet::load(&path).unwrap_or_else(|e| panic!("{name}: {e}")))
        })
        .clone()
}

/// A captured client request from `fixtures/clients/`.
pub(crate) fn client(name: &str) -> Json {
    let path = dir().join("clients").join(name);
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&text).expect("client capture is JSON")
}
