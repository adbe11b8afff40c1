//! `process@1.0` (devices.md §3.5) and `genesis-wasm@1.0` (§3.22, run natively).
//!
//! | key | what it does |
//! |---|---|
//! | `schedule` | POST: schedules the request (or its `body`) — a `Process` is spawned at slot 0; GET: the schedule (`from`, `to`; see `scheduler@1.0`) |
//! | `slot` | `{process, current, timestamp, block-height, block-hash}` (`/<pid>/slot/current` is the current slot) |
//! | `compute` | with `slot`: the state after that slot (computed if needed); without: the latest computed state (or, if none, `now`) |
//! | `now` | computes up to the current slot |
//! | `results` | `results=N` (a slot or a message ID): the results of slot N, computed if needed; as JSON `{process, slot, raw}` when the request asks for JSON (aoconnect) |
//! | `push` | schedules the message and computes its slot; a `Process` is spawned. When the node has `push@1.0`, a slot with outbox messages is then handed to it (`push` with `slot`) for delivery |
//! | `snapshot` | takes and stores a snapshot; returns it |
//! | `as` | `as=execution` (or `scheduler`, `push`): the process cast to its `<name>-device`; `as=execution/compute&K=V` is a dry run |
//!
//! `schedule`, `slot` and `push` of a process whose scheduler is another node are redirected or
//! proxied there (`scheduler::remote`); a message pushed twice keeps its one slot.
//!
//! The state message returned by `compute`/`now` holds the process definition's keys (without
//! its commitments), `at-slot` and `results` (`data`, `outbox`, `raw`, `error`). Every other key
//! falls back to `message@1.0`.
//!
//! Requests reach a process in several shapes (`/<pid>~process@1.0/…` merges the request's keys
//! into the loaded process; `/<pid>/…` does not; a state returned by `compute` carries the
//! process ID privately), so the process ID is found by trying, in order: the private ID of a
//! state, the process's own ID, the base's `process`/`target`, and the request's `target` —
//! the first that names a process this node knows.

pub mod genesis;
pub mod runtime;
pub mod snapshot;

use std::sync::{Arc, Mutex, OnceLock};

use ao_core::device::BoxFuture;
use ao_core::id::{IdScope, id};
use ao_core::util::b64u;
use ao_core::wallet::Wallet;
use ao_core::{Context, Device, Error, Message, Result, Value};
use ao_wasm::{WasmConfig, WasmEngine};
use serde_json::{Value as Json, json};

use crate::meta::NodeState;
pub use runtime::{ProcessOptions, Processes, SlotResult};

/// The private key under which a state message carries its process ID.
pub const PROCESS_ID_KEY: &str = "priv-process-id";

/// The private key under which the HTTP layer records the signers it verified (the same name
/// as `ao_http::handler::VERIFIED_SIGNERS`).
const VERIFIED_SIGNERS: &str = "priv-verified-signers";

/// The process runtime shared by `process@1.0`, `scheduler@1.0` and `genesis-wasm@1.0`: an
/// `Arc<Processes>` resolver extension if the node provides one, else one built on first use
/// from the context (store, `Wallet` extension, `NodeState` options, `WasmEngine` extension).
#[derive(Default)]
pub struct RuntimeCell {
    cell: OnceLock<Arc<Processes>>,
    init: Mutex<()>,
}

impl std::fmt::Debug for RuntimeCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeCell")
            .field("initialised", &self.cell.get().is_some())
            .finish()
    }
}

impl RuntimeCell {
    /// The runtime for a resolution.
    pub fn get(&self, ctx: &Context) -> Result<Arc<Processes>> {
        if let Some(p) = ctx.extension::<Processes>() {
            return Ok(p);
        }
        if let Some(p) = self.cell.get() {
            return Ok(p.clone());
        }
        let _guard = self
            .init
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = self.cell.get() {
            return Ok(p.clone());
        }
        let store = ctx
            .store()
            .cloned()
            .ok_or_else(|| Error::Internal("processes need a store".into()))?;
        let wallet = ctx
            .extension::<Wallet>()
            .ok_or_else(|| Error::Internal("processes need the node wallet".into()))?;
        let opts = ctx
            .extension::<NodeState>()
            .map(|s| s.options())
            .unwrap_or_default();
        let options = ProcessOptions::from_options(&opts)?;
        let engine = match ctx.extension::<WasmEngine>() {
            Some(e) => (*e).clone(),
            None => WasmEngine::new(WasmConfig::default())?,
        };
        let p = Arc::new(Processes::new(store, wallet, engine, options));
        let _ = self.cell.set(p.clone());
        Ok(p)
    }
}

/// `process@1.0`.
#[derive(Debug, Clone, Default)]
pub struct ProcessDevice {
    rt: Arc<RuntimeCell>,
}

impl ProcessDevice {
    /// A device over a shared runtime cell.
    pub fn new(rt: Arc<RuntimeCell>) -> Self {
        Self { rt }
    }
}

/// `genesis-wasm@1.0`: the execution device of aoconnect's processes, run natively.
#[derive(Debug, Clone, Default)]
pub struct GenesisWasmDevice {
    rt: Arc<RuntimeCell>,
}

impl GenesisWasmDevice {
    /// A device over a shared runtime cell.
    pub fn new(rt: Arc<RuntimeCell>) -> Self {
        Self { rt }
    }
}

/// A value naming an ID: 32 raw bytes or 43 base64url characters.
pub(crate) fn id_value(v: &Value) -> Option<String> {
    match v {
        Value::Binary(b) if b.len() == 32 => Some(b64u(b)),
        Value::Binary(b) if b.len() == 43 => std::str::from_utf8(b).ok().map(str::to_owned),
        _ => None,
    }
}

/// The process a request is about (see the module documentation).
pub(crate) fn process_id(rt: &Processes, base: &Message, req: &Message) -> Result<String> {
    let mut candidates: Vec<String> = Vec::new();
    if let Some(v) = base.private(PROCESS_ID_KEY).and_then(id_value) {
        candidates.push(v);
    }
    if runtime::is_process_message(base) {
        if base.is_committed() {
            candidates.push(b64u(&id(base, IdScope::Signed)?));
        } else if let Some(v) = base.private(ao_core::resolve::LOADED_ID).and_then(id_value) {
            // A process spawned unsigned (on a node that does not require signatures) is named
            // by its unsigned ID, which the request's keys merged into it no longer give.
            candidates.push(v);
        }
    }
    for m in [base, req] {
        for k in ["process", "target"] {
            if let Some(v) = m.get(k).and_then(id_value) {
                candidates.push(v);
            }
        }
    }
    if base.is_committed() {
        candidates.push(b64u(&id(base, IdScope::Signed)?));
    }
    let mut tried = Vec::new();
    for c in candidates {
        if tried.contains(&c) {
            continue;
        }
        if rt.process(&c)?.is_some() {
            return Ok(c);
        }
        tried.push(c);
    }
    Err(Error::MessageNotFound(match tried.first() {
        Some(c) => format!("process {c}"),
        None => "no process named by the request".to_owned(),
    }))
}

/// Whether the request asks for a JSON reply.
pub(crate) fn wants_json(req: &Message) -> bool {
    ["require-codec", "accept-codec", "accept"].iter().any(|k| {
        req.get_str(k)
            .is_some_and(|v| v.to_ascii_lowercase().contains("json"))
    })
}

/// A reply that already is a JSON document (sent as is by the HTTP layer).
pub(crate) fn json_doc(doc: &Json) -> Value {
    Value::Message(
        Message::new()
            .with("content-type", "application/json")
            .with("body", doc.to_string()),
    )
}

fn raw_json(raw: &str) -> Json {
    serde_json::from_str(raw).unwrap_or(Json::Null)
}

/// A slot number given as an integer or decimal text.
pub(crate) fn slot_arg(v: &Value) -> Option<u64> {
    v.as_integer().and_then(|i| u64::try_from(i).ok())
}

fn method(req: &Message) -> Option<String> {
    req.get_str("method").map(str::to_ascii_uppercase)
}

/// Whether a `schedule` request reads the schedule rather than adding to it.
pub(crate) fn is_schedule_read(req: &Message) -> bool {
    match method(req).as_deref() {
        Some("GET") | Some("HEAD") => true,
        Some(_) => false,
        None => !(req.is_committed() || req.get_message("body").is_some()),
    }
}

/// Keys the HTTP layer may add beside a signed item.
const ADDED_KEYS: [&str; 7] = [
    "accept",
    "accept-codec",
    "require-codec",
    "accept-bundle",
    "signing-format",
    "codec-device",
    "content-type",
];

/// Whether an ANS-104 commitment signs the message.
fn is_ans104_committed(msg: &Message) -> bool {
    msg.commitments()
        .into_iter()
        .flat_map(|c| c.iter())
        .any(|(_, c)| {
            c.as_message().and_then(|c| c.get_str("commitment-device")) == Some("ans104@1.0")
        })
}

/// The (normalised) tag names an ANS-104 commitment of the message signed.
fn signed_tag_names(msg: &Message) -> Vec<String> {
    let mut out = Vec::new();
    for c in msg.commitments().into_iter().flat_map(|c| c.iter()) {
        let Some(tags) =
            c.1.as_message()
                .and_then(|c| c.get_message("original-tags"))
        else {
            continue;
        };
        for (_, t) in tags.iter() {
            if let Some(n) = t.as_message().and_then(|t| t.get_str("name")) {
                out.push(ao_core::key::normalize(n).into_owned());
            }
        }
    }
    out
}

/// The message a `schedule`/`push` request carries: its `body` if that is a signed message, else
/// the request itself; reduced to its committed keys and verified per the node's policy
/// (`verify-requests`).
pub(crate) fn message_to_schedule(ctx: &Context, req: &Message) -> Result<Message> {
    let (candidate, from_http) = match req.get("body") {
        Some(Value::Message(b)) if b.is_committed() => (b.clone(), false),
        _ => (
            req.clone()
                .without("path")
                .without("method")
                .without(crate::scheduler::remote::HOPS_HEADER),
            req.private(VERIFIED_SIGNERS).is_some(),
        ),
    };
    let policy = ctx
        .extension::<NodeState>()
        .and_then(|s| s.options().get_str("verify-requests").map(str::to_owned))
        .unwrap_or_else(|| "if-signed".to_owned());
    if !candidate.is_committed() {
        if policy == "require-signed" {
            return Err(Error::BadRequest(
                "this node schedules only signed messages".into(),
            ));
        }
        return Ok(candidate);
    }
    // An ANS-104 item commits exactly its tags: drop what the HTTP layer added beside it (e.g.
    // the `accept` header every fetch sends) unless the item has it as a tag, so it is neither
    // stored nor scheduled as part of the message.
    let candidate = if !is_ans104_committed(&candidate) {
        candidate
    } else {
        let signed_tags = signed_tag_names(&candidate);
        let mut stripped = candidate;
        for k in ADDED_KEYS {
            if !signed_tags.iter().any(|t| t == k) {
                stripped.remove(k);
            }
        }
        stripped
    };
    let reduced = ao_core::commitment::with_only_committed(&candidate).map_err(|e| {
        let keys: Vec<&str> = candidate.keys().map(|k| k.as_str()).collect();
        Error::BadRequest(format!(
            "the message's committed keys cannot be determined ({}): {e}",
            keys.join(", ")
        ))
    })?;
    if policy != "off" && !from_http {
        ao_core::verify::verify_signatures(&reduced)?;
    }
    Ok(reduced)
}

/// The state message of a process after a slot.
pub fn state_message(process: &Message, pid: &str, r: &SlotResult) -> Message {
    process
        .clone()
        .without("commitments")
        .with("device", "process@1.0")
        .with("at-slot", r.slot as i64)
        .with("results", r.results.clone())
        .with(PROCESS_ID_KEY, pid)
}

fn slot_info(rt: &Processes, pid: &str) -> Result<Message> {
    let current = rt.scheduler().current(pid)?.map_or(-1, |s| s as i64);
    let block = rt.scheduler().block();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Ok(Message::new()
        .with("process", pid)
        .with("current", current)
        .with("timestamp", now)
        .with("block-height", block.height)
        .with("block-hash", block.hash.as_str())
        .with("wallet-address", rt.scheduler().address())
        .with("cache-control", "no-store"))
}

/// `schedule` POST: spawn or schedule; returns the assignment.
pub(crate) async fn schedule_post(
    rt: &Arc<Processes>,
    ctx: &Context,
    base: &Message,
    req: &Message,
) -> Result<Value> {
    let msg = message_to_schedule(ctx, req)?;
    if runtime::is_process_message(&msg) {
        return Ok(Value::Message(rt.spawn(msg).await?.assignment));
    }
    let pid = match msg.get("target").and_then(id_value) {
        Some(t) if rt.process(&t)?.is_some() => t,
        Some(t) => return Err(Error::MessageNotFound(format!("process {t}"))),
        None => process_id(rt, base, req)?,
    };
    Ok(Value::Message(rt.schedule(&pid, msg).await?.assignment))
}

fn results_reply(pid: &str, r: &SlotResult, req: &Message) -> Value {
    if wants_json(req) {
        json_doc(&json!({"process": pid, "slot": r.slot, "raw": raw_json(&r.raw)}))
    } else {
        Value::Message(r.results.clone())
    }
}

async fn compute(rt: &Arc<Processes>, base: &Message, req: &Message) -> Result<Value> {
    let pid = process_id(rt, base, req)?;
    let process = rt
        .process(&pid)?
        .ok_or_else(|| Error::MessageNotFound(format!("process {pid}")))?;
    let r = match req.get("slot") {
        Some(v) => {
            let slot = slot_arg(v)
                .ok_or_else(|| Error::BadRequest(format!("slot must be a number, not {v:?}")))?;
            rt.compute(&pid, slot).await?
        }
        None => match rt.latest(&pid).await? {
            Some(r) => r,
            None => rt.now(&pid).await?,
        },
    };
    Ok(Value::Message(state_message(&process, &pid, &r)))
}

async fn results(rt: &Arc<Processes>, base: &Message, req: &Message) -> Result<Value> {
    let pid = process_id(rt, base, req)?;
    let r = match req.get("results") {
        Some(v) if slot_arg(v).is_some() => rt.compute(&pid, slot_arg(v).unwrap_or(0)).await?,
        Some(v) if id_value(v).is_some() => {
            let mid = id_value(v).unwrap_or_default();
            let slot = rt
                .scheduler()
                .slot_of(&pid, &mid)?
                .ok_or_else(|| Error::MessageNotFound(format!("message {mid} in {pid}")))?;
            rt.compute(&pid, slot).await?
        }
        Some(v) if !v.is_true() => {
            return Err(Error::BadRequest(format!(
                "results= takes a slot or a message ID, not {v:?}"
            )));
        }
        _ => match base.get("at-slot").and_then(slot_arg) {
            Some(s) => rt.compute(&pid, s).await?,
            None => match rt.latest(&pid).await? {
                Some(r) => r,
                None => rt.now(&pid).await?,
            },
        },
    };
    Ok(results_reply(&pid, &r, req))
}

async fn push(rt: &Arc<Processes>, ctx: &Context, base: &Message, req: &Message) -> Result<Value> {
    // HyperBEAM's push with a `slot` (how `push@1.0` carries a pushed message on, at the slot
    // it was given on its target): that slot's outbox is delivered, nothing is scheduled.
    if let Some(slot) = req.get("slot") {
        let slot = slot
            .as_integer()
            .and_then(|s| u64::try_from(s).ok())
            .ok_or_else(|| Error::BadRequest(format!("push: the slot is a {}", slot.kind())))?;
        let pid = process_id(rt, base, req)?;
        let r = rt.compute(&pid, slot).await?;
        let depth = req.get("result-depth").and_then(Value::as_integer);
        let mut reply = Message::new()
            .with("process", pid.as_str())
            .with("slot", slot as i64)
            .with("results", r.results.clone());
        if let Some(d) = deliver_outbox(rt, ctx, &pid, &r, depth).await {
            reply.insert("pushed", d);
        }
        return Ok(Value::Message(reply));
    }
    let msg = message_to_schedule(ctx, req)?;
    if runtime::is_process_message(&msg) {
        if wants_json(req) {
            let a = rt.spawn_durable(msg).await?;
            return Ok(json_doc(&json!({"process": a.process, "slot": a.slot})));
        }
        return Ok(Value::Message(rt.spawn(msg).await?.assignment));
    }
    let pid = match msg.get("target").and_then(id_value) {
        Some(t) if rt.process(&t)?.is_some() => t,
        Some(t) => return Err(Error::MessageNotFound(format!("process {t}"))),
        None => process_id(rt, base, req)?,
    };
    // A message delivered again (a retried push) keeps its slot, and its outbox is not sent twice.
    // The reply carries the slot and the result, not the assignment: no need to wait for its
    // signature.
    let (a, fresh, computing) = crate::scheduler::remote::schedule_once(rt, &pid, msg).await?;
    let r = match computing {
        Some(c) => Processes::computed(&pid, c).await?,
        None => rt.compute(&pid, a.slot).await?,
    };
    let depth = req.get("result-depth").and_then(Value::as_integer);
    let delivered = match fresh {
        true => deliver_outbox(rt, ctx, &pid, &r, depth).await,
        false => None,
    };
    if wants_json(req) {
        return Ok(json_doc(&json!({
            "process": pid,
            "slot": a.slot,
            "id": a.message_id,
            "raw": raw_json(&r.raw),
        })));
    }
    let mut reply = Message::new()
        .with("process", pid.as_str())
        .with("slot", a.slot as i64)
        .with("id", a.message_id.as_str())
        .with("results", r.results.clone());
    if let Some(d) = delivered {
        reply.insert("pushed", d);
    }
    Ok(Value::Message(reply))
}

/// Hands a computed slot with outbox messages to `push@1.0`, when the node has it, for
/// delivery (HyperBEAM's `push` with a `slot`), with the request's `result-depth` (a push
/// from another node carries its remaining depth). The message is scheduled and computed whatever
/// happens here: a delivery failure is logged and reported, not returned as the push's error.
async fn deliver_outbox(
    rt: &Arc<Processes>,
    ctx: &Context,
    pid: &str,
    r: &SlotResult,
    result_depth: Option<i64>,
) -> Option<Value> {
    let outbox = r.results.get_message("outbox")?;
    if outbox.is_empty() || ctx.resolver().registry().get("push@1.0").is_none() {
        return None;
    }
    let process = rt.process(pid).ok()??;
    let mut request = Message::new()
        .with("path", "push")
        .with("slot", r.slot as i64)
        .with("process", pid);
    if let Some(d) = result_depth {
        request.insert("result-depth", d);
    }
    match ctx
        .resolve(process.with("device", "push@1.0"), request)
        .await
    {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(process = pid, slot = r.slot, error = %e, "push@1.0 could not deliver the outbox");
            Some(Value::Message(
                Message::new()
                    .with("status", i64::from(e.http_status()))
                    .with("error", e.to_string()),
            ))
        }
    }
}

async fn as_view(rt: &Arc<Processes>, base: &Message, req: &Message) -> Result<Value> {
    let pid = process_id(rt, base, req)?;
    let process = rt
        .process(&pid)?
        .ok_or_else(|| Error::MessageNotFound(format!("process {pid}")))?;
    let which = req
        .get_str("as")
        .unwrap_or("execution")
        .to_ascii_lowercase();
    let default = match which.as_str() {
        "execution" => "genesis-wasm@1.0",
        "scheduler" => "scheduler@1.0",
        "push" => "push@1.0",
        _ => "",
    };
    let device = process
        .get_str(&format!("{which}-device"))
        .unwrap_or(default)
        .to_owned();
    if device.is_empty() {
        return Err(Error::NotFound(format!("{which}-device")));
    }
    Ok(Value::Message(
        process
            .without("commitments")
            .with("device", device)
            .with(PROCESS_ID_KEY, pid),
    ))
}

/// The message of a dry run: the request's keys (its signed item plus the path's `K=V` tags).
fn dry_run_message(req: &Message) -> Message {
    req.clone().without("path").without("method")
}

/// `schedule`, `slot` and `push` of a process whose scheduler is on another node go there
/// (`scheduler::remote`).
async fn remote_first(
    ctx: &Context,
    rt: &Arc<Processes>,
    key: &str,
    base: &Message,
    req: &Message,
) -> Option<Result<Value>> {
    use crate::scheduler::remote::{Action, intercept};
    let action = match key {
        "schedule" if is_schedule_read(req) => Action::ScheduleRead,
        "schedule" => Action::SchedulePost,
        "slot" => Action::Slot,
        "push" => Action::Push,
        _ => return None,
    };
    intercept(ctx, rt, action, base, req).await
}

impl Device for ProcessDevice {
    fn id(&self) -> &str {
        "process@1.0"
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
            "schedule"
                | "slot"
                | "compute"
                | "now"
                | "results"
                | "push"
                | "snapshot"
                | "as"
                | "init"
        ) {
            return None;
        }
        Some(Box::pin(async move {
            let rt = self.rt.get(ctx)?;
            if let Some(r) = remote_first(ctx, &rt, &key, base, req).await {
                return r;
            }
            match key.as_str() {
                "schedule" if is_schedule_read(req) => {
                    let pid = process_id(&rt, base, req)?;
                    crate::scheduler::schedule_read(&rt, &pid, req).await
                }
                "schedule" => schedule_post(&rt, ctx, base, req).await,
                "slot" => {
                    let pid = process_id(&rt, base, req)?;
                    Ok(Value::Message(slot_info(&rt, &pid)?))
                }
                "compute" => compute(&rt, base, req).await,
                "now" => {
                    let pid = process_id(&rt, base, req)?;
                    let process = rt
                        .process(&pid)?
                        .ok_or_else(|| Error::MessageNotFound(format!("process {pid}")))?;
                    let r = rt.now(&pid).await?;
                    Ok(Value::Message(state_message(&process, &pid, &r)))
                }
                "results" => results(&rt, base, req).await,
                "push" => push(&rt, ctx, base, req).await,
                "snapshot" => {
                    let pid = process_id(&rt, base, req)?;
                    let (slot, bytes) = rt.snapshot(&pid).await?;
                    Ok(Value::Message(
                        Message::new()
                            .with("type", "snapshot")
                            .with("process", pid.as_str())
                            .with("slot", slot as i64)
                            .with("encoding", "ao-process-snapshot-1")
                            .with("cache-control", "store")
                            .with("body", bytes),
                    ))
                }
                "as" => as_view(&rt, base, req).await,
                _ => {
                    // `init`: make sure the process is known and its actor exists.
                    let pid = process_id(&rt, base, req)?;
                    rt.scheduler().current(&pid)?;
                    Ok(Value::Message(base.clone()))
                }
            }
        }))
    }
}

impl Device for GenesisWasmDevice {
    fn id(&self) -> &str {
        "genesis-wasm@1.0"
    }

    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        req: &'a Message,
        ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        let key = ao_core::key::normalize(key).into_owned();
        match key.as_str() {
            "init" | "normalize" | "snapshot" => {
                Some(Box::pin(async move { Ok(Value::Message(base.clone())) }))
            }
            "compute" => Some(Box::pin(async move {
                let rt = self.rt.get(ctx)?;
                let pid = process_id(&rt, base, req)?;
                if let Some(v) = req.get("slot") {
                    let slot = slot_arg(v).ok_or_else(|| {
                        Error::BadRequest(format!("slot must be a number, not {v:?}"))
                    })?;
                    let r = rt.compute(&pid, slot).await?;
                    return Ok(results_reply(&pid, &r, req));
                }
                let ev = rt.dry_run(&pid, dry_run_message(req)).await?;
                if wants_json(req) {
                    return Ok(json_doc(&json!({"process": pid, "raw": raw_json(&ev.raw)})));
                }
                let mut m = Message::new()
                    .with("data", ev.data)
                    .with("outbox", ev.outbox)
                    .with("raw", ev.raw.as_str());
                if let Some(e) = ev.error {
                    m.insert("error", e);
                }
                Ok(Value::Message(m))
            })),
            _ => None,
        }
    }
}
