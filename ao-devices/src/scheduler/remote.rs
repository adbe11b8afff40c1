//! Requests about processes whose scheduler is on another node (devices.md §3.6, step 4).
//!
//! `process@1.0` and `scheduler@1.0` ask [`intercept`] before serving `schedule` (POST and
//! GET), `slot` and `push` for a process. When [`find_server`] says the process's scheduler is
//! remote:
//!
//! * with `scheduler-follow-redirects` false, the answer is a 307 whose `location` is the same
//!   request on the scheduler's node;
//! * otherwise (the default) this node proxies the request there and answers the peer's reply:
//!   `POST <url>/<pid>~process@1.0/schedule` (a `Process` goes to `/~scheduler@1.0/schedule`),
//!   `GET <url>/<pid>~process@1.0/slot`, `GET <url>/<pid>~process@1.0/schedule?from&to`, and
//!   `POST <url>/<pid>~process@1.0/push` (a `Process` to `/push`). The signed message goes
//!   as it was signed (an ANS-104 item as an item); `accept`, `accept-codec` and
//!   `require-codec` go along, so the peer answers in the form the client asked for.
//!
//! A `Process` definition that passes through this node is also cached here, so later
//! requests naming it (and pushes to it) find its scheduler. A peer that cannot be reached
//! gives 502, one that does not answer in time 504. Proxied requests count their hops in a
//! `scheduler-proxy-hops` header; after [`MAX_PROXY_HOPS`] (records pointing in a circle) the
//! answer is 508.
//!
//! [`schedule_once`] schedules a message unless the process already holds it: a message
//! delivered twice (a retried push whose first reply was lost) keeps its one slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use ao_core::id::{IdScope, id};
use ao_core::util::b64u;
use ao_core::{Context, Error, Message, Result, Value};

use super::location::{Remote, Server, find_server, outbound_message};
use super::server::Assigned;
use crate::meta::NodeState;
use crate::process::runtime::is_process_message;
use crate::process::{Processes, id_value, message_to_schedule, process_id, slot_arg};
use crate::relay::{self, Outbound, Reply};

/// What a request asks of a process's scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `schedule` POST.
    SchedulePost,
    /// `schedule` GET.
    ScheduleRead,
    /// `slot`.
    Slot,
    /// `process@1.0` `push`.
    Push,
}

/// Request keys that steer the form of a reply, passed on to the peer as headers.
const REPLY_KEYS: [&str; 3] = ["accept", "accept-codec", "require-codec"];

/// The header counting how many nodes have proxied a request already.
pub const HOPS_HEADER: &str = "scheduler-proxy-hops";

/// Most proxy hops a request takes: location records that point in a circle end here (508).
pub const MAX_PROXY_HOPS: i64 = 4;

/// `scheduler-follow-redirects` (default true).
pub fn follow_redirects(ctx: &Context) -> bool {
    ctx.extension::<NodeState>()
        .and_then(|s| s.options().get("scheduler-follow-redirects").cloned())
        .is_none_or(|v| v.is_true())
}

/// The process a request is about, without verifying anything: `(pid, process, whether the
/// request carries the process itself, hint)`. `None` when it names no known process.
fn about(
    rt: &Processes,
    action: Action,
    base: &Message,
    req: &Message,
) -> Option<(String, Message, bool, Option<String>)> {
    let hint = req.get_str("hint").map(str::to_owned);
    if matches!(action, Action::SchedulePost | Action::Push) {
        let candidate = match req.get("body") {
            Some(Value::Message(b)) if b.is_committed() => b,
            _ => req,
        };
        if is_process_message(candidate) {
            if !candidate.is_committed() {
                return None;
            }
            let pid = b64u(&id(candidate, IdScope::Signed).ok()?);
            return Some((pid, candidate.clone(), true, hint));
        }
        if let Some(t) = candidate.get("target") {
            let raw = id_value(t).or_else(|| t.as_str().map(str::to_owned))?;
            let (pid, target_hint) = relay::split_hint(&raw);
            let process = rt.process(pid).ok()??;
            return Some((pid.to_owned(), process, false, target_hint.or(hint)));
        }
    }
    let pid = process_id(rt, base, req).ok()?;
    let process = rt.process(&pid).ok()??;
    Some((pid, process, false, hint))
}

/// Serves the request on the process's remote scheduler (see the module documentation), or
/// `None` when the scheduler is this node (or the request names no known process).
pub async fn intercept(
    ctx: &Context,
    rt: &Arc<Processes>,
    action: Action,
    base: &Message,
    req: &Message,
) -> Option<Result<Value>> {
    let (pid, process, is_spawn, hint) = about(rt, action, base, req)?;
    let remote = match find_server(ctx, &process, hint.as_deref()) {
        Ok(Server::Local) => return None,
        Ok(Server::Remote(r)) => r,
        Err(e) => return Some(Err(e)),
    };
    Some(remote_request(ctx, rt, &remote, action, &pid, is_spawn, req).await)
}

fn path_for(action: Action, pid: &str, is_spawn: bool, req: &Message) -> String {
    match (action, is_spawn) {
        (Action::SchedulePost, true) => "/~scheduler@1.0/schedule".to_owned(),
        (Action::Push, true) => "/push".to_owned(),
        (Action::SchedulePost, false) => format!("/{pid}~process@1.0/schedule"),
        (Action::Push, false) => format!("/{pid}~process@1.0/push"),
        (Action::Slot, _) => format!("/{pid}~process@1.0/slot"),
        (Action::ScheduleRead, _) => {
            let mut q = Vec::new();
            for k in ["from", "to"] {
                if let Some(n) = req.get(k).and_then(slot_arg) {
                    q.push(format!("{k}+integer={n}"));
                }
            }
            if q.is_empty() {
                format!("/{pid}~process@1.0/schedule")
            } else {
                format!("/{pid}~process@1.0/schedule?{}", q.join("&"))
            }
        }
    }
}

async fn remote_request(
    ctx: &Context,
    rt: &Arc<Processes>,
    remote: &Remote,
    action: Action,
    pid: &str,
    is_spawn: bool,
    req: &Message,
) -> Result<Value> {
    let hops = req
        .get(HOPS_HEADER)
        .and_then(Value::as_integer)
        .unwrap_or(0);
    if hops >= MAX_PROXY_HOPS {
        return Err(Error::status(
            508,
            format!(
                "the request for process {pid} was proxied {hops} times between schedulers; \
                 their location records point in a circle"
            ),
        ));
    }
    let path = path_for(action, pid, is_spawn, req);
    let posting = matches!(action, Action::SchedulePost | Action::Push);
    let message = if posting {
        let msg = message_to_schedule(ctx, req)?;
        if is_spawn {
            // Keep the definition: requests naming this process find its scheduler from it.
            ao_core::cache::write_message(rt.store().as_ref(), &msg)?;
        }
        Some(msg)
    } else {
        None
    };
    if !follow_redirects(ctx) {
        // An error status, so the resolution stops here and the client gets the redirect.
        return Err(Error::status(
            307,
            Value::Message(remote.redirect(Some(&path))),
        ));
    }
    let mut out = match &message {
        Some(m) => Outbound::new("POST", remote.url.as_str(), path, outbound_message(m)),
        None => Outbound::new("GET", remote.url.as_str(), path, Message::new()),
    };
    for k in REPLY_KEYS {
        if let Some(v) = req.get_str(k) {
            out = out.header(k, v);
        }
    }
    out = out.header(HOPS_HEADER, (hops + 1).to_string());
    if action == Action::Push
        && let Some(d) = req.get("result-depth").and_then(Value::as_integer)
    {
        out = out.header("result-depth", d.to_string());
    }
    tracing::debug!(process = pid, peer = %remote.url, path = %out.path, "proxying to the process's scheduler");
    let reply = relay::Client::of(ctx)?.send(out).await?;
    reply_value(reply, crate::process::wants_json(req))
}

/// A peer's reply as a local result. When the client asked for JSON, the peer's JSON reply
/// (which the outbound client decodes into a message) is given back as a JSON document;
/// otherwise the message keeps the peer's status.
pub fn reply_value(reply: Reply, json: bool) -> Result<Value> {
    match (&reply.value, json) {
        (Value::Message(m), true) => {
            let mut doc = to_json(&Value::Message(m.clone()));
            if let Some(o) = doc.as_object_mut() {
                o.remove("status");
            }
            let mut out = crate::process::json_doc(&doc);
            if let Value::Message(m) = &mut out
                && reply.status != 200
            {
                m.insert("status", i64::from(reply.status));
            }
            Ok(out)
        }
        _ => reply.into_result(),
    }
}

/// A value as plain JSON: integers and floats as numbers, text as strings, lists as arrays,
/// messages as objects (without their commitments).
fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as Json;
    match v {
        Value::Integer(i) => Json::from(*i),
        Value::Float(f) => Json::from(*f),
        Value::List(l) => Json::Array(l.iter().map(to_json).collect()),
        Value::Message(m) => Json::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "commitments")
                .map(|(k, v)| (k.as_str().to_owned(), to_json(v)))
                .collect(),
        ),
        other => match other.as_str() {
            Some(s) => Json::String(s.to_owned()),
            None => match other {
                Value::Binary(b) => Json::String(ao_core::util::b64u(b)),
                _ => Json::Null,
            },
        },
    }
}

/// Schedules a message and starts computing its slot while the slot is being written.
async fn schedule_and_compute(
    rt: &Arc<Processes>,
    pid: &str,
    message: Message,
) -> Result<(Assigned, bool, Option<Computing>)> {
    rt.process(pid)?
        .ok_or_else(|| Error::MessageNotFound(format!("process {pid}")))?;
    // The scheduler asks the executor for the slot as soon as it is assigned.
    let (computing, on_assigned) = rt.compute_on_assign(pid)?;
    let outcome = rt
        .scheduler()
        .schedule_early(pid, message, on_assigned)
        .await?;
    let assigned = outcome
        .await
        .map_err(|_| Error::Internal(format!("the scheduler of {pid} dropped a request")))??;
    Ok((assigned, true, Some(computing)))
}

type InFlight = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

/// The result of a slot being computed.
pub(crate) type Computing = tokio::sync::oneshot::Receiver<Result<Arc<crate::process::SlotResult>>>;

/// Schedules `message` on `pid` unless `pid` already holds it; the assignment (durable), and
/// whether it is new. Deliveries of one message are serialised, so concurrent duplicates get
/// one slot. A new slot is computed while it is being written: its computation is returned too
/// (await it with [`Processes::computed`]).
pub async fn schedule_once(
    rt: &Arc<Processes>,
    pid: &str,
    message: Message,
) -> Result<(Assigned, bool, Option<Computing>)> {
    static IN_FLIGHT: OnceLock<InFlight> = OnceLock::new();
    let message_id = b64u(&id(&message, IdScope::Signed)?);
    let key = format!("{pid}/{message_id}");
    let map = IN_FLIGHT.get_or_init(Default::default);
    let gate = map
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(key.clone())
        .or_default()
        .clone();
    let result = {
        let _held = gate.lock().await;
        match rt.scheduler().slot_of(pid, &message_id)? {
            Some(slot) => {
                let assignment = rt.scheduler().assignment(pid, slot)?.ok_or_else(|| {
                    Error::Store(format!("assignment {slot} of {pid} is missing"))
                })?;
                Ok((
                    Assigned {
                        process: pid.to_owned(),
                        slot,
                        message_id,
                        assignment,
                        // Durable; its signature may still be on its way.
                        signed: false,
                    },
                    false,
                    None,
                ))
            }
            None => schedule_and_compute(rt, pid, message).await,
        }
    };
    let mut m = map
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if Arc::strong_count(&gate) <= 2 {
        m.remove(&key);
    }
    result
}
