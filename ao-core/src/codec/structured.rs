//! `structured@1.0`: rich messages ⇄ TABM with `ao-types` (spec §5.1).
//!
//! A TABM (type-annotated binary message) holds only binaries and nested TABMs; the type of every
//! other value is recorded in the `ao-types` dictionary of its level.

use bytes::Bytes;

use crate::sf::{self, BareItem, Member};
use crate::{Atom, Error, Key, Message, Result, Value};

/// How deep messages may nest before a codec gives up with [`Error::TooDeep`].
pub const MAX_DEPTH: usize = 64;

/// Keys dropped on encoding because they can be regenerated (spec §1.4, §11 item 22).
pub const REGEN_KEYS: [&str; 2] = ["unsigned_id", "content-digest"];

/// Whether a message can hold `value` under a key: a list mixing messages with other values,
/// or nesting past [`MAX_DEPTH`], it cannot.
pub fn encodes(value: &Value) -> bool {
    to_tabm(&Message::new().with("v", value.clone())).is_ok()
}

/// Converts a structured message to its TABM.
pub fn to_tabm(msg: &Message) -> Result<Message> {
    to_tabm_at(msg, 0)
}

fn to_tabm_at(msg: &Message, depth: usize) -> Result<Message> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep(MAX_DEPTH));
    }
    let mut out = Message::new();
    let mut types: Vec<(&Key, &'static str)> = Vec::new();
    {
        let fields = out.fields_mut();
        for (k, v) in msg.iter() {
            if REGEN_KEYS.contains(&k.as_str()) {
                continue;
            }
            match v {
                Value::Binary(b) if b.is_empty() => types.push((k, "empty-binary")),
                Value::Binary(b) => {
                    fields.insert(k.clone(), Value::Binary(b.clone()));
                }
                Value::List(l) if l.is_empty() => types.push((k, "empty-list")),
                Value::Message(m) if m.is_empty() => types.push((k, "empty-message")),
                Value::Message(m) => {
                    fields.insert(k.clone(), Value::Message(to_tabm_at(m, depth + 1)?));
                }
                Value::List(l) if matches!(l[0], Value::Message(_) | Value::List(_)) => {
                    types.push((k, "list"));
                    let numbered = list_to_message(l);
                    fields.insert(k.clone(), Value::Message(to_tabm_at(&numbered, depth + 1)?));
                }
                other => {
                    let (ty, text) = encode_scalar(other, depth)?;
                    types.push((k, ty));
                    fields.insert(k.clone(), Value::Binary(Bytes::from(text)));
                }
            }
        }
    }
    if !types.is_empty() {
        let mut dict = Vec::with_capacity(types.len() * 24);
        for (n, (k, ty)) in types.iter().enumerate() {
            if n > 0 {
                dict.extend_from_slice(b", ");
            }
            crate::escape::encode_types_key_into(&mut dict, k.as_str().as_bytes());
            dict.push(b'=');
            sf::write_string(&mut dict, ty.as_bytes());
        }
        out.fields_mut().insert(
            crate::key::well_known::ao_types(),
            Value::Binary(Bytes::from(dict)),
        );
    }
    Ok(out)
}

/// A list as a message numbered `1..n`.
pub fn list_to_message(list: &[Value]) -> Message {
    let mut m = Message::new();
    let fields = m.fields_mut();
    for (i, v) in list.iter().enumerate() {
        fields.insert(Key::from(i + 1), v.clone());
    }
    m
}

/// Encodes a non-binary scalar (or scalar list) as `(type, text)` (spec §5.1.1 table).
pub fn encode_scalar(v: &Value, depth: usize) -> Result<(&'static str, Vec<u8>)> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep(MAX_DEPTH));
    }
    Ok(match v {
        Value::Integer(i) => ("integer", i.to_string().into_bytes()),
        Value::Float(f) => ("float", format_float(*f)?.into_bytes()),
        Value::Atom(a) => ("atom", sf::string(a.as_str().as_bytes())),
        Value::Binary(b) => ("binary", b.to_vec()),
        Value::List(l) => {
            let mut out = Vec::new();
            for (n, e) in l.iter().enumerate() {
                if n > 0 {
                    out.extend_from_slice(b", ");
                }
                match e {
                    Value::Binary(b) => sf::write_string(&mut out, b),
                    Value::Message(_) => {
                        return Err(Error::Unencodable(
                            "a message inside a list whose first element is not a message or list"
                                .into(),
                        ));
                    }
                    other => {
                        let (ty, text) = encode_scalar(other, depth + 1)?;
                        let mut inner = Vec::with_capacity(text.len() + 16);
                        inner.extend_from_slice(b"(ao-type-");
                        inner.extend_from_slice(ty.as_bytes());
                        inner.extend_from_slice(b") ");
                        inner.extend_from_slice(&text);
                        sf::write_string(&mut out, &inner);
                    }
                }
            }
            ("list", out)
        }
        Value::Message(_) => return Err(Error::Unencodable("a message is not a scalar".into())),
    })
}

/// Erlang's `float_to_binary/1` text (`~.20e`): `1.50000000000000000000e+00`.
pub fn format_float(f: f64) -> Result<String> {
    if !f.is_finite() {
        return Err(Error::Unencodable(format!("non-finite float {f}")));
    }
    let s = format!("{f:.20e}");
    let (mantissa, exp) = s.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("exponent is an integer");
    let sign = if exp < 0 { '-' } else { '+' };
    Ok(format!("{mantissa}e{sign}{:02}", exp.unsigned_abs()))
}

/// Parses a float the way Erlang's `binary_to_float/1` accepts it: digits on both sides of a
/// `.`, an optional exponent.
pub fn parse_float(text: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(text).ok()?;
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.')?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !digits(frac) {
        return None;
    }
    if let Some(e) = exp
        && !digits(e.strip_prefix(['-', '+']).unwrap_or(e))
    {
        return None;
    }
    s.parse().ok()
}

/// Converts a TABM back to a structured message (spec §5.1.3), then drops `#tx` default-valued
/// keys (spec §1.5). Private keys (spec §1.3: a name starting with `priv`) are dropped, as
/// HyperBEAM's `structured.from` does: nothing received can set a message's private area or
/// stand in the public one under a private name.
pub fn from_tabm(tabm: &Message) -> Result<Message> {
    from_tabm_at(tabm, 0)
}

fn from_tabm_at(tabm: &Message, depth: usize) -> Result<Message> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep(MAX_DEPTH));
    }
    let types = match tabm.get("ao-types") {
        Some(Value::Binary(b)) => parse_types(b)?,
        Some(_) => {
            return Err(Error::malformed(
                "structured@1.0",
                "ao-types is not a binary",
            ));
        }
        None => Vec::new(),
    };
    // Indexed when long: fields × types comparisons were quadratic in a hostile message.
    let indexed: Option<std::collections::HashMap<&Key, &str>> = (types.len() > 16).then(|| {
        let mut m = std::collections::HashMap::with_capacity(types.len());
        for (k, t) in &types {
            m.entry(k).or_insert(t.as_str());
        }
        m
    });
    let type_of = |k: &Key| match &indexed {
        Some(m) => m.get(k).copied(),
        None => types
            .iter()
            .find(|(tk, _)| tk == k)
            .map(|(_, t)| t.as_str()),
    };
    let mut out = Message::new();
    {
        let fields = out.fields_mut();
        for (k, ty) in &types {
            if k.is_private() {
                continue;
            }
            let v = match ty.as_str() {
                "empty-binary" => Value::Binary(Bytes::new()),
                "empty-list" => Value::List(Vec::new()),
                "empty-message" => Value::Message(Message::new()),
                _ => continue,
            };
            fields.insert(k.clone(), v);
        }
        for (k, v) in tabm.iter() {
            if k == "ao-types" || k.is_private() {
                continue;
            }
            let value = match (v, type_of(k)) {
                (Value::Binary(b), Some(ty)) if !ty.starts_with("empty-") => decode_value(ty, b)?,
                (Value::Message(m), ty) => {
                    let inner = from_tabm_at(m, depth + 1)?;
                    if ty == Some("list") {
                        Value::List(message_to_list(&inner)?)
                    } else {
                        Value::Message(inner)
                    }
                }
                (other, _) => other.clone(),
            };
            fields.insert(k.clone(), value);
        }
    }
    Ok(filter_default_keys(out))
}

fn parse_types(text: &[u8]) -> Result<Vec<(Key, String)>> {
    let dict = sf::parse_dictionary(text)?;
    let mut out = Vec::with_capacity(dict.len());
    for (k, m) in dict {
        let key = Key::from_utf8(&crate::escape::decode(k.as_bytes()))?;
        let ty = match m.as_item().map(|i| &i.bare) {
            Some(b) => b
                .as_text()
                .ok_or_else(|| Error::sf(text, "ao-types member is not a string or token"))?,
            None => return Err(Error::sf(text, "ao-types member is an inner list")),
        };
        out.push((key, String::from_utf8_lossy(ty).to_lowercase()));
    }
    Ok(out)
}

/// An ordered list from a message numbered `1..n` (every number must be present).
pub fn message_to_list(m: &Message) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(m.len());
    for i in 1..=m.len() {
        match m.get(&i.to_string()) {
            Some(v) => out.push(v.clone()),
            None => {
                return Err(Error::malformed(
                    "structured@1.0",
                    format!("list element {i} missing"),
                ));
            }
        }
    }
    Ok(out)
}

fn truncated(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(80)]).into_owned()
}

/// Decodes a binary of a given `ao-types` type (spec §5.1.3 `decode_value`).
pub fn decode_value(ty: &str, text: &[u8]) -> Result<Value> {
    let bad = || Error::BadTypedValue {
        ty: ty.to_owned(),
        value: truncated(text),
    };
    Ok(match ty {
        "integer" => match sf::parse_item(text) {
            Ok(sf::Item {
                bare: BareItem::Integer(i),
                params,
            }) if params.is_empty() => Value::Integer(i),
            _ => return Err(bad()),
        },
        "float" => Value::Float(parse_float(text).ok_or_else(bad)?),
        "atom" => match sf::parse_item(text).map_err(|_| bad())?.bare {
            BareItem::String(s) => {
                Value::Atom(Atom::new(&String::from_utf8(s).map_err(|_| bad())?))
            }
            BareItem::Token(t) => Value::Atom(Atom::new(&t)),
            BareItem::Boolean(b) => Value::bool(b),
            _ => return Err(bad()),
        },
        "list" => {
            let members = sf::parse_list(text)?;
            let mut out = Vec::with_capacity(members.len());
            for m in members {
                let Member::Item(item) = m else {
                    return Err(bad());
                };
                out.push(decode_list_item(item.bare)?);
            }
            Value::List(out)
        }
        "map" => {
            let mut m = Message::new();
            for (k, member) in sf::parse_dictionary(text)? {
                let Member::Item(item) = member else {
                    return Err(bad());
                };
                m.insert(Key::new(&k), bare_to_value(item.bare)?);
            }
            Value::Message(m)
        }
        "binary" => Value::Binary(Bytes::copy_from_slice(text)),
        "empty-binary" => Value::Binary(Bytes::new()),
        "empty-list" => Value::List(Vec::new()),
        "empty-message" => Value::Message(Message::new()),
        other => return Err(Error::UnknownType(other.to_owned())),
    })
}

fn decode_list_item(bare: BareItem) -> Result<Value> {
    if let BareItem::String(s) = &bare
        && let Some(rest) = s.strip_prefix(b"(ao-type-")
        && let Some(close) = rest.windows(2).position(|w| w == b") ")
    {
        let ty = String::from_utf8_lossy(&rest[..close]).to_lowercase();
        return decode_value(&ty, &rest[close + 2..]);
    }
    bare_to_value(bare)
}

fn bare_to_value(bare: BareItem) -> Result<Value> {
    Ok(match bare {
        BareItem::String(s) => Value::Binary(Bytes::from(s)),
        BareItem::Token(t) => Value::Atom(Atom::new(&t)),
        BareItem::Integer(i) => Value::Integer(i),
        BareItem::Decimal(d) => Value::Float(d),
        BareItem::Boolean(b) => Value::bool(b),
        BareItem::Bytes(b) => Value::Binary(Bytes::from(b)),
    })
}

/// Drops keys named like fields of HyperBEAM's `#tx{}` record that hold that field's default
/// (spec §1.5, §11 item 7).
pub fn filter_default_keys(mut msg: Message) -> Message {
    let is_default = |k: &str, v: &Value| -> bool {
        match (k, v) {
            ("data" | "target" | "last_tx" | "data_root", Value::Binary(b)) => b.is_empty(),
            ("quantity" | "data_size" | "reward" | "denomination", Value::Integer(0)) => true,
            ("tags" | "data_tree", Value::List(l)) => l.is_empty(),
            ("id" | "unsigned_id", Value::Binary(b)) => b.len() == 32 && b.iter().all(|&x| x == 0),
            ("owner" | "signature", Value::Binary(b)) => {
                b.len() == 512 && b.iter().all(|&x| x == 0)
            }
            ("format", Value::Atom(a)) => a.as_str() == "ans104",
            ("manifest", Value::Atom(a)) => a.as_str() == "undefined",
            _ => false,
        }
    };
    let drop: Vec<Key> = msg
        .iter()
        .filter(|(k, v)| is_default(k.as_str(), v))
        .map(|(k, _)| k.clone())
        .collect();
    if !drop.is_empty() {
        let fields = msg.fields_mut();
        for k in drop {
            fields.remove(&k);
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_text() {
        assert_eq!(format_float(1.5).unwrap(), "1.50000000000000000000e+00");
        assert_eq!(format_float(-0.0).unwrap(), "-0.00000000000000000000e+00");
        assert_eq!(format_float(1e123).unwrap(), "9.99999999999999977710e+122");
        assert_eq!(format_float(1e-5).unwrap(), "1.00000000000000008180e-05");
        assert!(parse_float(b"2.5").is_some());
        assert!(parse_float(b"3").is_none());
        assert!(parse_float(b".5").is_none());
        assert!(parse_float(b"1e5").is_none());
    }

    /// Every field of a message with many typed keys gets its own type (the types are looked
    /// up through an index beyond a few).
    #[test]
    fn many_typed_fields_decode() {
        let n = 50_000;
        let mut tabm = Message::new();
        let mut types = Vec::new();
        for i in 0..n {
            tabm.insert(
                format!("k{i}").as_str(),
                Value::Binary(i.to_string().into()),
            );
            types.push(format!("k{i}=\"integer\""));
        }
        tabm.insert("ao-types", Value::Binary(types.join(", ").into()));
        let m = from_tabm(&tabm).unwrap();
        assert_eq!(m.len(), n);
        for i in [0, 17, 49_999] {
            assert_eq!(
                m.get(&format!("k{i}")).and_then(Value::as_integer),
                Some(i as i64)
            );
        }
    }
}
