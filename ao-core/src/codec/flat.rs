//! `flat@1.0`: TABM ⇄ a flat map of `/`-joined paths, and its `key: value` text form (spec §5.3).

use bytes::Bytes;

use crate::{Error, Key, Message, Result, Value};

/// Flattens a TABM into `(path, binary)` pairs, sorted by path bytes.
pub fn flatten(tabm: &Message) -> Result<Vec<(String, Bytes)>> {
    let mut out = Vec::new();
    flatten_into(tabm, "", &mut out, 0)?;
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(out)
}

fn flatten_into(
    m: &Message,
    prefix: &str,
    out: &mut Vec<(String, Bytes)>,
    depth: usize,
) -> Result<()> {
    if depth > crate::codec::structured::MAX_DEPTH {
        return Err(Error::TooDeep(crate::codec::structured::MAX_DEPTH));
    }
    for (k, v) in m.iter() {
        let path = if prefix.is_empty() {
            k.as_str().to_owned()
        } else {
            format!("{prefix}/{k}")
        };
        match v {
            Value::Binary(b) => out.push((path, b.clone())),
            Value::Message(inner) => flatten_into(inner, &path, out, depth + 1)?,
            other => {
                return Err(Error::Unencodable(format!(
                    "flat@1.0 takes a TABM; {path:?} holds a {}",
                    other.kind()
                )));
            }
        }
    }
    Ok(())
}

/// Builds a nested TABM from `(path, value)` pairs; `a/b` nests. Maps at the same path merge;
/// any other collision is [`Error::PathCollision`].
pub fn unflatten(entries: impl IntoIterator<Item = (String, Value)>) -> Result<Message> {
    let mut root = Message::new();
    for (path, value) in entries {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if segments.is_empty() {
            return Err(Error::malformed("flat@1.0", "empty path"));
        }
        if segments.len() > crate::codec::structured::MAX_DEPTH {
            return Err(Error::TooDeep(crate::codec::structured::MAX_DEPTH));
        }
        insert_path(&mut root, &segments, value, &path)?;
    }
    Ok(root)
}

fn insert_path(m: &mut Message, segments: &[&str], value: Value, full: &str) -> Result<()> {
    let key = Key::new(segments[0]);
    let fields = m.fields_mut();
    if segments.len() == 1 {
        match (fields.get_mut(&key), value) {
            (None, v) => {
                fields.insert(key, v);
            }
            (Some(Value::Message(existing)), Value::Message(new)) => {
                for (k, v) in new.iter() {
                    insert_path(existing, &[k.as_str()], v.clone(), full)?;
                }
            }
            _ => return Err(Error::PathCollision(full.to_owned())),
        }
        return Ok(());
    }
    let child = fields
        .entry(key)
        .or_insert_with(|| Value::Message(Message::new()));
    match child {
        Value::Message(inner) => insert_path(inner, &segments[1..], value, full),
        _ => Err(Error::PathCollision(full.to_owned())),
    }
}

/// The text form: one `path: value` line per leaf, in path order, each ending in LF.
pub fn serialize(tabm: &Message) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for (path, value) in flatten(tabm)? {
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(&value);
        out.push(b'\n');
    }
    Ok(out)
}

/// Parses the text form. Each line is split at its first `": "` (HyperBEAM drops lines whose
/// value contains `": "`; this node keeps them — spec §11 item 20, "may fix"). Lines without a
/// separator are skipped, as HyperBEAM does.
pub fn deserialize(text: &[u8]) -> Result<Message> {
    let mut entries = Vec::new();
    // Lines end at LF only; a CR belongs to the value (as in HyperBEAM), so any value without
    // an LF round-trips.
    for line in text.split(|&b| b == b'\n') {
        let Some(i) = line.windows(2).position(|w| w == b": ") else {
            continue;
        };
        let key = std::str::from_utf8(&line[..i])
            .map_err(|_| Error::InvalidKey(String::from_utf8_lossy(&line[..i]).into_owned()))?;
        entries.push((
            key.to_owned(),
            Value::Binary(Bytes::copy_from_slice(&line[i + 2..])),
        ));
    }
    unflatten(entries)
}
