//! HyperBEAM's cache layout on top of any [`Store`] (spec §8.3).
//!
//! * A binary is written once, content-addressed, at `data/<b64u(sha256(bytes))>`.
//! * A message is a group named by its ID over all commitments; each key is a link to the
//!   binary's data path or to the nested message's group, so a deep key (`ID/a/b`) is read
//!   without loading the whole message.
//! * Each commitment ID is a link to the message's group, so a signed message is found by its
//!   unsigned ID and by every commitment ID.
//! * A nested message holding a `signature` (a commitment) is a group named by
//!   `b64u(sha256(ID ‖ signature))`: its ID leaves the signature out, and two commitments of
//!   one signer over the same keys must not share a group.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::codec::structured;
use crate::id::{IdScope, id};
use crate::store::{Entry, Op, Resolved, join};
use crate::util::b64u;
use crate::{Error, Key, Message, Result, Store, Value};

/// The data path of a binary: `data/<b64u(sha256(bytes))>`.
pub fn data_path(bytes: &[u8]) -> String {
    format!("data/{}", b64u(&Sha256::digest(bytes)))
}

/// The ops that write a message, and the message's ID (its group's name).
pub fn message_ops(msg: &Message) -> Result<(String, Vec<Op>)> {
    // Only what is committed is stored (HyperBEAM's `with_only_committed`, spec §8.3 step 1):
    // a key added to a signed message after signing is not part of the message.
    let committed;
    let msg = if msg.is_committed() {
        committed = crate::commitment::with_only_committed(msg)?;
        &committed
    } else {
        msg
    };
    let tabm = structured::to_tabm(msg)?;
    let mut ops = Vec::new();
    let uid = write_tabm(&tabm, &mut ops, 0)?;
    if let Some(commitments) = msg.commitments() {
        for alt in commitments.keys() {
            if alt.as_str() != uid {
                ops.push(Op::MakeLink {
                    existing: uid.clone(),
                    new: alt.as_str().to_owned(),
                });
            }
        }
    }
    Ok((uid, ops))
}

fn write_tabm(tabm: &Message, ops: &mut Vec<Op>, depth: usize) -> Result<String> {
    if depth > structured::MAX_DEPTH {
        return Err(Error::TooDeep(structured::MAX_DEPTH));
    }
    let mut uid = b64u(&id(tabm, IdScope::All)?);
    // A nested unsigned message's ID leaves its `signature` out (the httpsig encoding carries
    // signatures in commitments), so two commitments differing only in their signatures (the
    // same signer over the same keys) share an ID; with one group they would overwrite each
    // other's signature. Such a group is named by a hash over the ID and the signature.
    if depth > 0
        && tabm.commitments().is_none()
        && let Some(Value::Binary(sig)) = tabm.get("signature")
    {
        let mut h = Sha256::new();
        h.update(uid.as_bytes());
        h.update(sig);
        uid = b64u(&h.finalize());
    }
    ops.push(Op::MakeGroup { path: uid.clone() });
    for (k, v) in tabm.iter() {
        let target = match v {
            Value::Binary(b) => {
                let path = data_path(b);
                ops.push(Op::Write {
                    path: path.clone(),
                    value: b.clone(),
                });
                path
            }
            Value::Message(m) => write_tabm(m, ops, depth + 1)?,
            other => {
                return Err(Error::Unencodable(format!(
                    "cache: key {k:?} holds a {} after TABM conversion",
                    other.kind()
                )));
            }
        };
        ops.push(Op::MakeLink {
            existing: target,
            new: join(&[&uid, k.as_str()]),
        });
    }
    Ok(uid)
}

/// Writes a message as one atomic batch and returns its ID.
pub fn write_message(store: &dyn Store, msg: &Message) -> Result<String> {
    let (uid, ops) = message_ops(msg)?;
    store.apply(ops)?;
    Ok(uid)
}

/// Writes a binary at its data path and returns that path.
pub fn write_binary(store: &dyn Store, bytes: Bytes) -> Result<String> {
    let path = data_path(&bytes);
    store.write(&path, bytes)?;
    Ok(path)
}

/// Reads a message or binary by ID or path (`ID/key/subkey` reads deep). A group becomes a
/// structured message; a binary is returned as is.
pub fn read(store: &dyn Store, path: &str) -> Result<Option<Value>> {
    // The resolved path has no link at any prefix, so its raw entry is what it holds.
    let (resolved, entry) = store.resolve_entry(path)?;
    match entry {
        Some(Entry::Binary(b)) => Ok(Some(Value::Binary(b))),
        Some(Entry::Group) => {
            let tabm = read_group(store, &resolved, 0)?;
            Ok(Some(Value::Message(structured::from_tabm(&tabm)?)))
        }
        Some(Entry::Link(_)) | None => Ok(None),
    }
}

/// Reads a message by ID or path; a binary there is an error.
pub fn read_message(store: &dyn Store, path: &str) -> Result<Option<Message>> {
    match read(store, path)? {
        None => Ok(None),
        Some(Value::Message(m)) => Ok(Some(m)),
        Some(_) => Err(Error::BadRequest(format!(
            "{path:?} is a binary, not a message"
        ))),
    }
}

/// Reads the group at `path`, which must be resolved (no link at any prefix) and a group:
/// one [`Store::resolved_children`] call per group.
fn read_group(store: &dyn Store, path: &str, depth: usize) -> Result<Message> {
    if depth > structured::MAX_DEPTH {
        return Err(Error::Store(format!(
            "links nest deeper than {} at {path:?} (a cycle?)",
            structured::MAX_DEPTH
        )));
    }
    let mut out = Message::new();
    for (child, resolved) in store.resolved_children(path)? {
        let value = match resolved {
            Resolved::Binary(b) => Value::Binary(b),
            Resolved::Group(p) => Value::Message(read_group(store, &p, depth + 1)?),
        };
        out.fields_mut()
            .insert(Key::from_utf8(child.as_bytes())?, value);
    }
    Ok(out)
}
