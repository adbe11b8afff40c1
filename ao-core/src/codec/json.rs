//! `json@1.0`: TABM ⇄ JSON text (spec §5.4).

use bytes::Bytes;
use serde_json::Value as Json;

use crate::{Atom, Error, Key, Message, Result, Value};

/// The content type of this codec.
pub const CONTENT_TYPE: &str = "application/json";

/// Encodes a TABM as compact JSON: nested objects, every scalar a string, keys in order.
pub fn encode(tabm: &Message) -> Result<Vec<u8>> {
    let json = to_json(tabm, 0)?;
    serde_json::to_vec(&json).map_err(|e| Error::Unencodable(e.to_string()))
}

fn to_json(m: &Message, depth: usize) -> Result<Json> {
    if depth > crate::codec::structured::MAX_DEPTH {
        return Err(Error::TooDeep(crate::codec::structured::MAX_DEPTH));
    }
    let mut obj = serde_json::Map::with_capacity(m.len());
    for (k, v) in m.iter() {
        let j = match v {
            Value::Binary(b) => Json::String(
                std::str::from_utf8(b)
                    .map_err(|_| {
                        Error::Unencodable(format!(
                            "key {k:?} is not UTF-8 text; JSON cannot carry it"
                        ))
                    })?
                    .to_owned(),
            ),
            Value::Message(inner) => to_json(inner, depth + 1)?,
            other => {
                return Err(Error::Unencodable(format!(
                    "json@1.0 takes a TABM; key {k:?} holds a {}",
                    other.kind()
                )));
            }
        };
        obj.insert(k.as_str().to_owned(), j);
    }
    Ok(Json::Object(obj))
}

/// Decodes JSON into a message whose values keep their JSON types (numbers, atoms, lists); run
/// it through [`crate::codec::structured::from_tabm`] to apply `ao-types`.
pub fn decode(text: &[u8]) -> Result<Message> {
    let json: Json =
        serde_json::from_slice(text).map_err(|e| Error::malformed("json@1.0", e.to_string()))?;
    match from_json(json, 0)? {
        Value::Message(m) => Ok(m),
        other => Ok(Message::new().with("body", other)),
    }
}

fn from_json(j: Json, depth: usize) -> Result<Value> {
    if depth > crate::codec::structured::MAX_DEPTH {
        return Err(Error::TooDeep(crate::codec::structured::MAX_DEPTH));
    }
    Ok(match j {
        Json::Null => Value::Atom(Atom::new("null")),
        Json::Bool(b) => Value::bool(b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(
                n.as_f64()
                    .ok_or_else(|| Error::malformed("json@1.0", "number out of range"))?,
            ),
        },
        Json::String(s) => Value::Binary(Bytes::from(s)),
        Json::Array(a) => Value::List(
            a.into_iter()
                .map(|x| from_json(x, depth + 1))
                .collect::<Result<_>>()?,
        ),
        Json::Object(o) => {
            let mut m = Message::new();
            for (k, v) in o {
                let v = from_json(v, depth + 1)?;
                m.insert(Key::new(&k), v);
            }
            Value::Message(m)
        }
    })
}
