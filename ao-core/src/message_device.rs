//! `message@1.0`: the device every message has unless it names another (spec §2.4–§2.5).
//!
//! Keys: `get`, `set` (deep merge; `set-mode: explicit` for a shallow one; `unset` removes),
//! `set_path`, `remove` (`item` or `items`), `keys`, `id` (with `committers` / `commitments`
//! selectors), `committers`, `committed`, `verify` (the base's signatures, or the request's
//! `body` with `target: body`), `commit` (with the node wallet); any other key returns the
//! stored value, looked up case-insensitively. Private keys are never returned.

use crate::codec::structured::message_to_list;
use crate::device::{BoxFuture, Device};
use crate::id::{IdScope, id};
use crate::resolve::Context;
use crate::util::b64u;
use crate::verify::verify_commitment;
use crate::wallet::Wallet;
use crate::{Error, Key, Message, Result, Value};

/// The `message@1.0` device.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageDevice;

/// Keys `set` never copies from its request.
const SET_IGNORED: [&str; 9] = [
    "id",
    "commitments",
    "committers",
    "keys",
    "path",
    "set",
    "remove",
    "verify",
    "set-mode",
];

/// A resolver extension that makes `commit` refuse to sign (403).
///
/// `commit` signs its base with the node's wallet for whoever resolves it. A node that serves
/// requests from others registers this (HyperBEAM signs for anyone), or its signature would
/// vouch for content anyone chooses: a peer trusting the node's signed records, or a check
/// trusting the node's own signature, could be fooled by replaying it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RefuseCommit;

impl Device for MessageDevice {
    fn id(&self) -> &str {
        "message@1.0"
    }

    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        request: &'a Message,
        ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        Some(Box::pin(async move {
            if crate::key::normalize(key) == "commit" {
                if ctx.extension::<RefuseCommit>().is_some() {
                    return Err(Error::status(
                        403,
                        "commit: this node does not sign messages on request (its signature \
                         would then vouch for whatever anyone asks it to sign)",
                    ));
                }
                let wallet = ctx.extension::<Wallet>();
                commit(base, request, wallet.as_deref()).map(Value::Message)
            } else {
                handle(key, base, request)
            }
        }))
    }
}

/// Answers one key of `message@1.0` (synchronous: this device never waits).
pub fn handle(key: &str, base: &Message, request: &Message) -> Result<Value> {
    match crate::key::normalize(key).as_ref() {
        "get" => {
            let k = request
                .get_str("key")
                .or_else(|| request.get_str("item"))
                .ok_or_else(|| Error::BadRequest("get needs a `key`".into()))?;
            get(base, k)
        }
        "keys" => Ok(Value::List(
            base.keys().map(|k| Value::from(k.as_str())).collect(),
        )),
        "set" => set(base, request).map(Value::Message),
        "set_path" | "set-path" => {
            let v = request
                .get("value")
                .cloned()
                .ok_or_else(|| Error::BadRequest("set_path needs a `value`".into()))?;
            Ok(Value::Message(base.clone().with("path", v)))
        }
        "remove" => remove(base, request).map(Value::Message),
        "id" => Ok(Value::from(b64u(&id_of(base, request)?))),
        "committers" => Ok(Value::List(
            committers(base).into_iter().map(Value::from).collect(),
        )),
        "verify" => verify(base, request).map(Value::bool),
        "commit" => commit(base, request, None).map(Value::Message),
        "committed" => Ok(Value::List(
            crate::commitment::committed_keys(base)?
                .into_iter()
                .map(|k| Value::from(k.as_str()))
                .collect(),
        )),
        other => get(base, other),
    }
}

/// The stored value of a key; private keys are not found.
pub fn get(base: &Message, key: &str) -> Result<Value> {
    if crate::key::is_private(&crate::key::normalize(key)) {
        return Err(Error::NotFound(key.to_owned()));
    }
    base.get(key)
        .cloned()
        .ok_or_else(|| Error::NotFound(key.to_owned()))
}

/// Committer addresses of a message's commitments, sorted and de-duplicated.
pub fn committers(base: &Message) -> Vec<String> {
    let mut out: Vec<String> = base
        .commitments()
        .into_iter()
        .flat_map(|c| c.iter())
        .filter_map(|(_, c)| c.as_message()?.get_str("committer").map(str::to_owned))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `id` with HyperBEAM's selectors (spec §4.2): by default every commitment; `committers: all`
/// only signatures; `commitments: none` (or `committers: []`) none; a list of committers theirs.
pub fn id_of(base: &Message, request: &Message) -> Result<[u8; 32]> {
    let committers_sel = request.get("committers");
    let commitments_sel = request.get_str("commitments");
    match (committers_sel, commitments_sel) {
        (None, None | Some("all")) => id(base, IdScope::All),
        (None, Some("none")) => id(base, IdScope::Unsigned),
        (Some(Value::Binary(b)), _) if &b[..] == b"none" => match commitments_sel {
            Some("none") => id(base, IdScope::Unsigned),
            _ => id(base, IdScope::All),
        },
        (Some(Value::Binary(b)), _) if &b[..] == b"all" => id(base, IdScope::Signed),
        (Some(Value::List(l)), _) => {
            let wanted: Vec<&str> = l.iter().filter_map(Value::as_str).collect();
            if wanted.is_empty() {
                return id(base, IdScope::Unsigned);
            }
            let commitments = base.commitments().cloned().unwrap_or_default();
            let mut kept = Message::new();
            for (cid, c) in commitments.iter() {
                if c.as_message()
                    .and_then(|m| m.get_str("committer"))
                    .is_some_and(|a| wanted.contains(&a))
                {
                    kept.fields_mut().insert(cid.clone(), c.clone());
                }
            }
            for w in &wanted {
                if !committers(base).iter().any(|c| c == w) {
                    return Err(Error::BadRequest(format!(
                        "{w:?} has not committed to this message"
                    )));
                }
            }
            id(&base.clone().with("commitments", kept), IdScope::All)
        }
        (Some(Value::Binary(b)), _) => {
            let a = String::from_utf8_lossy(b).into_owned();
            id_of(
                base,
                &Message::new().with("committers", Value::List(vec![Value::from(a)])),
            )
        }
        _ => Err(Error::BadRequest("malformed id selectors".into())),
    }
}

/// `set`: merges the request's keys into the base (spec §2.5).
pub fn set(base: &Message, request: &Message) -> Result<Message> {
    let explicit = request.get_str("set-mode") == Some("explicit");
    let mut out = base.clone();
    let mut changed_committed = false;
    let committed = if base.is_committed() {
        crate::commitment::committed_keys(base).unwrap_or_default()
    } else {
        Vec::new()
    };
    for (k, v) in request.iter() {
        if SET_IGNORED.contains(&k.as_str()) {
            continue;
        }
        if matches!(v, Value::Atom(a) if a.as_str() == "undefined") {
            continue;
        }
        if committed.iter().any(|c| c == k) && base.get(k.as_str()) != Some(v) {
            changed_committed = true;
        }
        deep_set(&mut out, k.as_str(), v.clone(), explicit, 0)?;
    }
    if changed_committed {
        out.remove("commitments");
    }
    Ok(out)
}

fn deep_set(
    msg: &mut Message,
    path: &str,
    value: Value,
    explicit: bool,
    depth: usize,
) -> Result<()> {
    if depth > crate::codec::structured::MAX_DEPTH {
        return Err(Error::TooDeep(crate::codec::structured::MAX_DEPTH));
    }
    let (head, rest) = match path.split_once('/') {
        Some((h, r)) if !h.is_empty() => (h, Some(r)),
        _ => (path, None),
    };
    let key = Key::new(head);
    if let Some(rest) = rest.filter(|r| !r.is_empty()) {
        let mut child = match msg.get(key.as_str()) {
            Some(Value::Message(m)) => m.clone(),
            _ => Message::new(),
        };
        deep_set(&mut child, rest, value, explicit, depth + 1)?;
        if child.is_empty() {
            msg.remove(key.as_str());
        } else {
            msg.insert(key, child);
        }
        return Ok(());
    }
    match value {
        Value::Atom(a) if a.as_str() == "unset" => {
            msg.remove(key.as_str());
        }
        Value::Message(new) if !explicit => {
            let merged = match msg.get(key.as_str()) {
                Some(Value::Message(old)) => deep_merge(old, &new, depth + 1)?,
                _ => new,
            };
            msg.insert(key, merged);
        }
        v => msg.insert(key, v),
    }
    Ok(())
}

fn deep_merge(old: &Message, new: &Message, depth: usize) -> Result<Message> {
    let mut out = old.clone();
    for (k, v) in new.iter() {
        deep_set(&mut out, k.as_str(), v.clone(), false, depth)?;
    }
    Ok(out)
}

/// `remove`: drops `item` or every key of `items`.
pub fn remove(base: &Message, request: &Message) -> Result<Message> {
    let mut out = base.clone();
    let items: Vec<String> = match (request.get("item"), request.get("items")) {
        (Some(Value::Binary(b)), _) => vec![String::from_utf8_lossy(b).into_owned()],
        (_, Some(Value::List(l))) => l
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        (_, Some(Value::Message(m))) => message_to_list(m)?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => return Err(Error::BadRequest("remove needs `item` or `items`".into())),
    };
    for item in items {
        out.remove(&item);
    }
    Ok(out)
}

/// `verify` (spec §4.7): checks the signature commitments of the base, or of the request's
/// `body` when the request has `target: body`. `committers` (a list of addresses) restricts
/// the check to theirs; `commitments: all` also checks the HMAC commitment. A message with no
/// selected commitment verifies (as `hb_message:verify`). Returns `false` for a signature that
/// does not verify; malformed selectors are errors.
pub fn verify(base: &Message, request: &Message) -> Result<bool> {
    let target = match request.get_str("target") {
        Some("body") => match request.get("body") {
            Some(Value::Message(m)) => m,
            Some(_) => return Ok(false),
            None => {
                return Err(Error::BadRequest(
                    "verify with target body needs a body".into(),
                ));
            }
        },
        Some("self") | None => base,
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "verify: unknown target {other:?} (self or body)"
            )));
        }
    };
    let Some(commitments) = target.commitments() else {
        return Ok(true);
    };
    let wanted: Option<Vec<&str>> = match request.get("committers") {
        Some(Value::List(l)) => Some(l.iter().filter_map(Value::as_str).collect()),
        Some(Value::Binary(b)) if &b[..] != b"all" => {
            Some(vec![std::str::from_utf8(b).map_err(|_| {
                Error::BadRequest("committers is not text".into())
            })?])
        }
        _ => None,
    };
    let include_hmac = request.get_str("commitments") == Some("all");
    for (id, c) in commitments.iter() {
        let Value::Message(c) = c else { continue };
        let selected = match (c.get_str("committer"), &wanted) {
            (Some(a), Some(w)) => w.contains(&a),
            (Some(_), None) => true,
            (None, _) => include_hmac && c.get_str("alg") == Some("hmac-sha256"),
        };
        if !selected {
            continue;
        }
        match verify_commitment(target, id.as_str()) {
            Ok(()) => {}
            Err(Error::Verification(_) | Error::Ans104(_)) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// `commit`: signs the base with the node's wallet, as `httpsig@1.0` (default) or `ans104@1.0`
/// (request key `commitment-device`). Without a wallet the request is refused.
pub fn commit(base: &Message, request: &Message, wallet: Option<&Wallet>) -> Result<Message> {
    let wallet = wallet
        .ok_or_else(|| Error::BadRequest("commit: this node has no wallet to sign with".into()))?;
    match request.get_str("commitment-device") {
        None | Some(crate::commitment::HTTPSIG_DEVICE) => crate::signature::commit(base, wallet),
        Some(crate::ans104::DEVICE) => crate::ans104::commit(base, wallet),
        Some(other) => Err(Error::BadRequest(format!(
            "commit: unsupported commitment device {other:?}"
        ))),
    }
}
