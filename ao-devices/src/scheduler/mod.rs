//! `scheduler@1.0` (devices.md §3.6), local only: this node is the scheduler unit (SU) of the
//! processes whose `scheduler` is its address, or that name none.
//!
//! | key | what it does |
//! |---|---|
//! | `schedule` POST | assigns the next slot to the request (or its `body`): only its committed keys, verified per `verify-requests` (400 otherwise); a `Process` gets slot 0. Answers the signed assignment; the slot is durable before it is signed |
//! | `schedule` GET | `target` (or the base process), `from` (default 0), `to` (default the current slot), at most 1000 assignments, `continues` when cut, each signed (it waits for the background signer); `accept: application/aos-2` gives the legacy JSON form |
//! | `slot` | `{process, current, timestamp, block-height, block-hash, wallet-address}` |
//! | `status` | `{address, processes: [IDs with a live scheduler actor]}` |
//! | `location` | GET `address=` (default this node): the cached location record (404 for an unknown address); POST: a new record for this node (signed by the operator) or a peer's signed record, see [`location`] |
//! | `checkpoint` | a no-op, as in HyperBEAM |
//!
//! For a process whose scheduler is on another node, `schedule` and `slot` are redirected or
//! proxied there ([`remote`]). Slot assignment itself lives in [`server`].

pub(crate) mod known_data;
pub mod location;
pub mod remote;
pub mod server;
pub(crate) mod signer;

use std::sync::Arc;

use ao_core::device::BoxFuture;
use ao_core::util::b64u;
use ao_core::{Context, Device, Error, Message, Result, Value};
use serde_json::{Value as Json, json};

use crate::process::genesis::{owner_of, tags_of};
use crate::process::{
    Processes, RuntimeCell, id_value, is_schedule_read, json_doc, process_id, schedule_post,
    slot_arg,
};

/// Most assignments one `schedule` GET returns.
pub const SCHEDULE_LIMIT: u64 = 1000;

/// `scheduler@1.0`.
#[derive(Debug, Clone, Default)]
pub struct SchedulerDevice {
    rt: Arc<RuntimeCell>,
}

impl SchedulerDevice {
    /// A device over a shared runtime cell.
    pub fn new(rt: Arc<RuntimeCell>) -> Self {
        Self { rt }
    }
}

fn wants_aos2(req: &Message) -> bool {
    ["accept", "accept-codec", "require-codec"].iter().any(|k| {
        req.get_str(k)
            .is_some_and(|v| v.to_ascii_lowercase().contains("aos-2"))
    })
}

fn json_struct(m: &Message) -> Json {
    let tags: Vec<Json> = tags_of(m)
        .into_iter()
        .map(|(n, v)| json!({"name": n, "value": v}))
        .collect();
    let id = ao_core::id::id(m, ao_core::IdScope::Signed)
        .map(|i| b64u(&i))
        .unwrap_or_default();
    let text = |k: &str| -> String {
        match m.get(k) {
            Some(v) => id_value(v).unwrap_or_else(|| v.as_str().unwrap_or_default().to_owned()),
            None => String::new(),
        }
    };
    json!({
        "Id": id,
        "Owner": owner_of(m).unwrap_or_default(),
        "Target": text("target"),
        "Anchor": text("anchor"),
        "Tags": tags,
        "Data": m.get("data").and_then(Value::as_str).unwrap_or_default(),
    })
}

fn assignment_struct(a: &Message, address: &str) -> Json {
    let int = |k: &str| {
        a.get(k)
            .and_then(Value::as_integer)
            .unwrap_or(0)
            .to_string()
    };
    let body_id = a
        .get_message("body")
        .and_then(|b| ao_core::id::id(b, ao_core::IdScope::Signed).ok())
        .map(|i| b64u(&i))
        .unwrap_or_default();
    let id = ao_core::id::id(a, ao_core::IdScope::Signed)
        .map(|i| b64u(&i))
        .unwrap_or_default();
    let tag = |n: &str, v: String| json!({"name": n, "value": v});
    json!({
        "Id": id,
        "Owner": address,
        "Target": "",
        "Anchor": "",
        "Data": "",
        "Tags": [
            tag("Process", a.get_str("process").unwrap_or_default().to_owned()),
            tag("Epoch", a.get_str("epoch").unwrap_or("0").to_owned()),
            tag("Nonce", int("slot")),
            tag("Slot", int("slot")),
            tag("Hash-Chain", a.get_str("hash-chain").unwrap_or_default().to_owned()),
            tag("Block-Height", int("block-height")),
            tag("Timestamp", int("timestamp")),
            tag("Message", body_id),
        ],
    })
}

/// `schedule` GET for `pid`: signed assignments only (it waits for the signer).
pub(crate) async fn schedule_read(rt: &Processes, pid: &str, req: &Message) -> Result<Value> {
    let arg = |k: &str| -> Result<Option<u64>> {
        match req.get(k) {
            None => Ok(None),
            Some(v) => slot_arg(v)
                .map(Some)
                .ok_or_else(|| Error::BadRequest(format!("{k} must be a slot number"))),
        }
    };
    let current = rt.scheduler().current(pid)?;
    let from = arg("from")?.unwrap_or(0);
    let to = match (arg("to")?, current) {
        (Some(t), Some(c)) => t.min(c),
        (None, Some(c)) => c,
        (_, None) => 0,
    };
    let mut assignments = Vec::new();
    let mut continues = false;
    if current.is_some() && from <= to {
        let last = to.min(from.saturating_add(SCHEDULE_LIMIT - 1));
        continues = last < to;
        rt.scheduler().signed_through(pid, last).await?;
        for s in from..=last {
            let a = ao_core::cache::read_message(
                rt.store().as_ref(),
                &server::assignment_path(pid, s),
            )?
            .ok_or_else(|| Error::Store(format!("assignment {s} of {pid} is missing")))?;
            assignments.push((s, a));
        }
    }
    let block = rt.scheduler().block();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    if wants_aos2(req) {
        let address = rt.scheduler().address();
        let edges: Vec<Json> = assignments
            .iter()
            .map(|(s, a)| {
                json!({
                    "cursor": s.to_string(),
                    "node": {
                        "message": a.get_message("body").map(json_struct).unwrap_or(Json::Null),
                        "assignment": assignment_struct(a, address),
                    }
                })
            })
            .collect();
        return Ok(json_doc(&json!({
            "page_info": {
                "process": pid,
                "has_next_page": continues,
                "timestamp": now,
                "block-height": block.height,
                "block-hash": block.hash,
            },
            "edges": edges,
        })));
    }
    let mut list = Message::new();
    for (s, a) in assignments {
        list.insert(s.to_string(), a);
    }
    Ok(Value::Message(
        Message::new()
            .with("type", "schedule")
            .with("process", pid)
            .with("continues", continues)
            .with("timestamp", now)
            .with("block-height", block.height)
            .with("block-hash", block.hash.as_str())
            .with("assignments", list),
    ))
}

impl Device for SchedulerDevice {
    fn id(&self) -> &str {
        "scheduler@1.0"
    }

    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        req: &'a Message,
        ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        let key = ao_core::key::normalize(key).into_owned();
        if !matches!(
            key.as_str(),
            "schedule" | "slot" | "status" | "location" | "checkpoint"
        ) {
            return None;
        }
        Some(Box::pin(async move {
            let rt = self.rt.get(ctx)?;
            let action = match key.as_str() {
                "schedule" if is_schedule_read(req) => Some(remote::Action::ScheduleRead),
                "schedule" => Some(remote::Action::SchedulePost),
                "slot" => Some(remote::Action::Slot),
                _ => None,
            };
            if let Some(action) = action
                && let Some(r) = remote::intercept(ctx, &rt, action, base, req).await
            {
                return r;
            }
            match key.as_str() {
                "schedule" if is_schedule_read(req) => {
                    let pid = process_id(&rt, base, req)?;
                    schedule_read(&rt, &pid, req).await
                }
                "schedule" => schedule_post(&rt, ctx, base, req).await,
                "slot" => {
                    let pid = process_id(&rt, base, req)?;
                    let current = rt.scheduler().current(&pid)?.map_or(-1, |s| s as i64);
                    Ok(Value::Message(
                        Message::new()
                            .with("process", pid.as_str())
                            .with("current", current)
                            .with("block-height", rt.scheduler().block().height)
                            .with("block-hash", rt.scheduler().block().hash.as_str())
                            .with("cache-control", "no-store"),
                    ))
                }
                "status" => Ok(Value::Message(
                    Message::new()
                        .with("address", rt.scheduler().address())
                        .with(
                            "processes",
                            Value::List(
                                rt.scheduler().live().into_iter().map(Value::from).collect(),
                            ),
                        ),
                )),
                "location"
                    if req
                        .get_str("method")
                        .is_some_and(|m| m.eq_ignore_ascii_case("POST")) =>
                {
                    location::post(ctx, req).await
                }
                "location" => location::get(ctx, req),
                _ => Ok(Value::Message(base.clone())),
            }
        }))
    }
}
