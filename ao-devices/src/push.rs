//! `push@1.0` (devices.md §3.13, HyperBEAM's `dev_push`): delivers a process's outbox.
//!
//! `push` is resolved on a process message (`process@1.0` hands it over with its `push-device`):
//!
//! * **With a `slot`:** `compute/results` is resolved on the process (as `process@1.0`) at that
//!   slot. Every outbox entry with a `target` is given `data-protocol: ao`, `variant: ao.N.1`,
//!   `type: Message` and `from-process: <origin>`, signed with the node wallet (httpsig; again as
//!   ANS-104 when the target's scheduler answers 422), and scheduled on the target process by
//!   resolving `{method: POST, path: schedule, body: <signed>}` on it, read from the store; then
//!   the new slot is pushed on the target in turn with `result-depth` one less. The answer is
//!   `{slot, process, <outbox-key>: {id, target, slot, resulted-in}, …}`, plus the full results of
//!   the slot while `result-depth` (default 1) is above 0. Entries that fail are reported in
//!   place (`{response: error, status, target, reason}`), as HyperBEAM does.
//! * **Without a `slot`:** the request itself is first scheduled on the process; a scheduled
//!   `Process` (a spawn) answers its assignment, a `Message` is then pushed at its slot.
//!
//! A target whose scheduler is on another node (its process names a remote `scheduler`, found
//! with `scheduler@1.0`'s location records, routes or a `?hint=` on the target; or its
//! `schedule` answers a 307) is pushed there: see [`remote`]. A node without an HTTP client
//! answers those with a 501 `remote-push-unsupported`. `push-mode: async` answers `202` with the
//! slot at once and pushes in a task of its own. Local recursion is bounded by the
//! resolver's depth limit, remote chains by [`remote::MAX_REMOTE_HOPS`].

pub mod remote;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ao_core::codec::structured::list_to_message;
use ao_core::device::BoxFuture;
use ao_core::id::{IdScope, id_string};
use ao_core::wallet::Wallet;
use ao_core::{Context, Device, DeviceInfo, Error, Message, Result, Value, message_device};

use crate::stack::get_path;

/// The `push@1.0` device.
#[derive(Debug, Clone, Copy, Default)]
pub struct PushDevice;

impl Device for PushDevice {
    fn id(&self) -> &str {
        "push@1.0"
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo::exports(["push"])
    }

    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        request: &'a Message,
        ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        (ao_core::key::normalize(key) == "push").then(|| -> BoxFuture<'a, Result<Value>> {
            Box::pin(async move { push(base, request, ctx).await })
        })
    }
}

const PROCESS_DEVICE: &str = "process@1.0";

/// The ID of a process: its `process` key's ID over all commitments, else the message's own.
pub fn process_id(msg: &Message) -> Result<String> {
    match msg.get("process") {
        Some(Value::Message(p)) => id_string(p, IdScope::All),
        _ => id_string(msg, IdScope::All),
    }
}

/// `msg` with `device: process@1.0` (HyperBEAM's `{as, process@1.0, Msg}`).
fn as_process(msg: &Message) -> Message {
    if msg.get_str("device") == Some(PROCESS_DEVICE) {
        msg.clone()
    } else {
        msg.clone().with("device", PROCESS_DEVICE)
    }
}

/// The error for a target whose scheduler lives on another node that this node cannot reach
/// (it has no HTTP client, or the redirect names no URL).
pub fn remote_unsupported(location: Option<&str>) -> Error {
    let mut body = Message::new()
        .with("status", 501i64)
        .with("error", "remote-push-unsupported")
        .with(
            "body",
            "push@1.0: the target's scheduler is on another node, and this node has no \
             HTTP client to reach it",
        );
    if let Some(l) = location {
        body.insert("location", l);
    }
    Error::status(501, body)
}

fn status_of(msg: &Message) -> Result<i64> {
    match msg.get("status") {
        None => Ok(200),
        Some(v) => v
            .as_integer()
            .ok_or_else(|| Error::BadRequest(format!("push@1.0: a status that is a {}", v.kind()))),
    }
}

tokio::task_local! {
    /// The messages the current push (and the chain of pushes it leads to) may still deliver.
    static PUSH_BUDGET: Arc<AtomicU64>;
}

/// Takes one message from the current push's budget; `false` once it is spent. Outside a push
/// (no budget) there is no bound.
fn take_push_budget() -> bool {
    PUSH_BUDGET
        .try_with(|b| {
            b.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        })
        .unwrap_or(true)
}

/// `push`: a push started by a request gets a budget of `push-max-messages`, which the pushes
/// it leads to share (through the resolver, or in background tasks of `push-mode: async`).
async fn push(base: &Message, request: &Message, ctx: &Context) -> Result<Value> {
    if PUSH_BUDGET.try_with(|_| ()).is_ok() {
        return push_budgeted(base, request, ctx).await;
    }
    let max = ctx.extension::<crate::process::Processes>().map_or_else(
        || crate::process::ProcessOptions::default().push_max_messages,
        |p| p.options().push_max_messages,
    );
    PUSH_BUDGET
        .scope(
            Arc::new(AtomicU64::new(max)),
            push_budgeted(base, request, ctx),
        )
        .await
}

async fn push_budgeted(base: &Message, request: &Message, ctx: &Context) -> Result<Value> {
    let pid = process_id(base)?;
    let process = as_process(base);
    if request.get("slot").is_some() {
        return push_with_mode(&process, &pid, request, ctx).await;
    }
    let assignment = match schedule_initial(&process, request, ctx).await {
        Ok(a) => a,
        // Pushed on the process's remote scheduler: its reply is the answer.
        Err(Error::Status { status, body }) if status < 400 => return Ok(body),
        Err(e) => return Err(e),
    };
    let body = match assignment.get("body") {
        Some(Value::Message(b)) => b.clone(),
        _ => match request.get("body") {
            Some(Value::Message(b)) => b.clone(),
            _ => request.clone(),
        },
    };
    let ty = body
        .get_str("type")
        .or_else(|| get_path(&body, "body/type").and_then(Value::as_str));
    match ty {
        Some("Process") => Ok(Value::Message(assignment)),
        Some("Message") => push_with_mode(&process, &pid, &assignment, ctx).await,
        other => Err(Error::BadRequest(format!(
            "push@1.0: the scheduled message has type {other:?}, not Message or Process"
        ))),
    }
}

async fn schedule_initial(process: &Message, request: &Message, ctx: &Context) -> Result<Message> {
    let req = request
        .clone()
        .with("path", "schedule")
        .with("method", "POST");
    let scheduled = match ctx.resolve(process.clone(), req).await {
        Err(Error::Status {
            status: 307,
            body: Value::Message(m),
        }) => Value::Message(m),
        other => other?,
    };
    match scheduled {
        Value::Message(m) => match status_of(&m)? {
            200 => Ok(m),
            307 => Err(forward_initial(process, request, &m, ctx).await),
            s => Err(Error::status(
                u16::try_from(s).unwrap_or(500),
                Value::Message(m),
            )),
        },
        other => Err(Error::BadRequest(format!(
            "push@1.0: schedule answered a {}, not an assignment",
            other.kind()
        ))),
    }
}

/// The initial message of a push whose process's scheduler redirected elsewhere: pushed
/// there as it is (signed by its sender). The peer's answer comes back as a status "error"
/// carrying the reply, so the caller answers it unchanged.
async fn forward_initial(
    process: &Message,
    request: &Message,
    redirect: &Message,
    ctx: &Context,
) -> Error {
    let location = redirect.get_str("location");
    let (Some(client), Some(base)) = (
        ctx.extension::<crate::relay::Client>(),
        location.and_then(remote::base_url),
    ) else {
        return remote_unsupported(location);
    };
    let pid = match process_id(process) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let msg = match request.get("body") {
        Some(Value::Message(b)) if b.is_committed() => b.clone(),
        _ => request.clone().without("path").without("method"),
    };
    let out = crate::relay::Outbound::new(
        "POST",
        base,
        format!("/{pid}~process@1.0/push"),
        crate::scheduler::location::outbound_message(&msg),
    );
    match client.send(out).await {
        Ok(reply) => Error::status(reply.status, reply.value),
        Err(e) => e.into(),
    }
}

async fn push_with_mode(
    process: &Message,
    pid: &str,
    assignment: &Message,
    ctx: &Context,
) -> Result<Value> {
    let mode = [
        assignment.get("push-mode"),
        process.get("push-mode"),
        get_path(process, "process/push-mode"),
    ]
    .into_iter()
    .flatten()
    .next()
    .and_then(Value::as_str)
    .unwrap_or("sync");
    match mode {
        "sync" => do_push(process, pid, assignment, ctx)
            .await
            .map(Value::Message),
        "async" => push_in_background(process, pid, assignment, ctx),
        other => Err(Error::BadRequest(format!(
            "push@1.0: unknown push-mode {other:?} (sync or async)"
        ))),
    }
}

/// `push-mode: async`: the push runs as a task of its own and the caller is answered at once
/// with `202`, the process and the slot (HyperBEAM spawns the push and answers the spawned
/// process's handle, which no client can use). Failures of the push are logged. Without a
/// tokio runtime (a node embedding the resolver in a plain executor) this is a 501.
fn push_in_background(
    process: &Message,
    pid: &str,
    assignment: &Message,
    ctx: &Context,
) -> Result<Value> {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return Err(Error::status(
            501,
            "push@1.0: push-mode async needs a runtime this node does not run devices on",
        ));
    };
    let mut reply = Message::new()
        .with("status", 202i64)
        .with("process", pid)
        .with("push-mode", "async");
    if let Some(slot) = assignment.get("slot") {
        reply.insert("slot", slot.clone());
    }
    let (process, pid, assignment, ctx) = (
        process.clone(),
        pid.to_owned(),
        assignment.clone(),
        ctx.clone(),
    );
    // The background push spends the budget of the push that started it.
    let budget = PUSH_BUDGET.try_with(Arc::clone).ok();
    runtime.spawn(async move {
        let work = async {
            if let Err(e) = do_push(&process, &pid, &assignment, &ctx).await {
                tracing::warn!(process = %pid, error = %e, "asynchronous push failed");
            }
        };
        match budget {
            Some(b) => PUSH_BUDGET.scope(b, work).await,
            None => work.await,
        }
    });
    Ok(Value::Message(reply))
}

/// Where an outbox entry came from.
struct Origin<'a> {
    process: &'a str,
    depth: i64,
}

async fn do_push(
    process: &Message,
    pid: &str,
    assignment: &Message,
    ctx: &Context,
) -> Result<Message> {
    let slot = assignment
        .get("slot")
        .cloned()
        .ok_or_else(|| Error::BadRequest("push@1.0: the assignment has no slot".into()))?;
    let depth = match assignment.get("result-depth") {
        None => 1,
        Some(v) => v.as_integer().ok_or_else(|| {
            Error::BadRequest(format!("push@1.0: result-depth is a {}", v.kind()))
        })?,
    };
    let results = ctx
        .resolve(
            process.clone(),
            Message::new()
                .with("path", "compute/results")
                .with("slot", slot.clone()),
        )
        .await?;
    let results = match results {
        Value::Message(m) => m,
        Value::List(l) => list_to_message(&l),
        _ => Message::new(),
    };
    let mut out = Message::new();
    let outbox = match results.get("outbox") {
        Some(Value::Message(m)) => m.clone(),
        Some(Value::List(l)) => list_to_message(l),
        _ => Message::new(),
    };
    if !outbox.is_empty() {
        let wallet = ctx.extension::<Wallet>().ok_or_else(|| {
            Error::Internal("push@1.0 needs the node wallet to sign pushed messages".into())
        })?;
        let origin = Origin {
            process: pid,
            depth,
        };
        for (key, entry) in outbox.iter() {
            let pushed = match entry {
                Value::Message(m) if m.get("target").is_some() => {
                    push_entry(m, &origin, &wallet, ctx).await
                }
                other => Message::new()
                    .with("response", "error")
                    .with("status", 422i64)
                    .with("outbox-index", key.as_str())
                    .with("reason", "No target process found.")
                    .with("message", other.clone()),
            };
            out.insert(key.clone(), pushed);
        }
    }
    if depth > 0 {
        for (k, v) in results.iter() {
            out.insert(k.clone(), v.clone());
        }
    }
    out.insert("slot", slot);
    out.insert("process", pid);
    Ok(out)
}

/// The process ID part of a target (before any `?hint=` or `&…`).
pub fn split_target(raw: &str) -> &str {
    raw.split(['?', '&']).next().unwrap_or(raw)
}

pub(crate) fn entry_error(target: &str, err: &Error) -> Message {
    let mut m = Message::new()
        .with("response", "error")
        .with("status", i64::from(err.http_status()))
        .with("target", target)
        .with("reason", err.to_string());
    if let Error::Status { body, .. } = err {
        m.insert("details", body.clone());
    }
    m
}

async fn push_entry(
    entry: &Message,
    origin: &Origin<'_>,
    wallet: &Wallet,
    ctx: &Context,
) -> Message {
    let raw_target = match entry.get("target") {
        Some(Value::Binary(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => {
            return Message::new()
                .with("response", "error")
                .with("status", 422i64)
                .with("reason", "The target is not a process ID.");
        }
    };
    let target = split_target(&raw_target).to_owned();
    if !take_push_budget() {
        return Message::new()
            .with("response", "error")
            .with("status", 429i64)
            .with("target", target.as_str())
            .with(
                "reason",
                "This push has delivered as many messages as push-max-messages allows.",
            );
    }
    let (_, hint) = crate::relay::split_hint(&raw_target);
    let target_base = match ctx.load(&target) {
        Ok(m) => m,
        // Not known here, but the target says where its scheduler is.
        Err(Error::MessageNotFound(_) | Error::NotFound(_))
            if hint.as_deref().is_some_and(|h| h.starts_with("http")) =>
        {
            Message::new().with("scheduler", raw_target.as_str())
        }
        Err(Error::MessageNotFound(_) | Error::NotFound(_)) => {
            return Message::new()
                .with("response", "error")
                .with("status", 404i64)
                .with("target", target.as_str())
                .with("reason", "Could not access target process!");
        }
        Err(e) => return entry_error(&target, &e),
    };
    let target_process = {
        let mut p = as_process(&target_base);
        if p.get("process").is_none() {
            p.insert("process", target_base.clone());
        }
        p
    };
    use crate::scheduler::location::{Server, find_server};
    match find_server(ctx, &target_base, hint.as_deref()) {
        Ok(Server::Local) => {}
        Ok(Server::Remote(r)) => {
            return match prepare(entry, origin, wallet) {
                Ok(signed) => {
                    remote::push_signed(ctx, &r.url, &target, &signed, origin.depth).await
                }
                Err(e) => entry_error(&target, &e),
            };
        }
        Err(e) => return entry_error(&target, &e),
    }
    let (signed, assignment) = match schedule_result(&target_process, entry, origin, wallet, ctx)
        .await
    {
        Ok(Scheduled::Here(signed, assignment)) => (signed, assignment),
        Ok(Scheduled::Elsewhere(signed, location)) => {
            return match remote::base_url(&location) {
                Some(base) => remote::push_signed(ctx, &base, &target, &signed, origin.depth).await,
                None => entry_error(&target, &remote_unsupported(Some(&location))),
            };
        }
        Err(e) => return entry_error(&target, &e),
    };
    let Some(next_slot) = assignment.get("slot").cloned() else {
        return entry_error(
            &target,
            &Error::BadRequest("the target's schedule answered no slot".into()),
        );
    };
    let pushed = match assignment.get("body") {
        Some(Value::Message(b)) => b.clone(),
        _ => signed,
    };
    let pushed_id = match id_string(&pushed, IdScope::All) {
        Ok(id) => id,
        Err(e) => return entry_error(&target, &e),
    };
    let downstream = ctx
        .resolve(
            target_process,
            Message::new()
                .with("path", "push")
                .with("slot", next_slot.clone())
                .with("result-depth", origin.depth - 1),
        )
        .await;
    match downstream {
        Ok(d) => Message::new()
            .with("id", pushed_id)
            .with("target", target.as_str())
            .with("slot", next_slot)
            .with("resulted-in", d),
        Err(e) => entry_error(&target, &e),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Httpsig,
    Ans104,
}

/// The outbox entry as it is pushed, signed with the node wallet (httpsig).
fn prepare(entry: &Message, origin: &Origin<'_>, wallet: &Wallet) -> Result<Message> {
    ao_core::signature::commit(&to_sign(entry, origin)?, wallet)
}

fn to_sign(entry: &Message, origin: &Origin<'_>) -> Result<Message> {
    let mut to_sign = message_device::set(
        entry,
        &Message::new()
            .with("data-protocol", "ao")
            .with("variant", "ao.N.1")
            .with("type", "Message")
            .with("from-process", origin.process),
    )?;
    to_sign.set_hashpath(None);
    Ok(to_sign)
}

/// Where a pushed message went.
enum Scheduled {
    /// Scheduled by this node: the signed message and its assignment.
    Here(Message, Message),
    /// The target's scheduler redirected (307): the signed message and the `location`.
    Elsewhere(Message, String),
}

/// Signs the entry and schedules it on the target.
async fn schedule_result(
    target_process: &Message,
    entry: &Message,
    origin: &Origin<'_>,
    wallet: &Wallet,
    ctx: &Context,
) -> Result<Scheduled> {
    let to_sign = to_sign(entry, origin)?;
    let mut codec = Codec::Httpsig;
    loop {
        let signed = match codec {
            Codec::Httpsig => ao_core::signature::commit(&to_sign, wallet)?,
            Codec::Ans104 => ao_core::ans104::commit(&to_sign, wallet)?,
        };
        let req = Message::new()
            .with("method", "POST")
            .with("path", "schedule")
            .with("body", signed.clone());
        match ctx.resolve(target_process.clone(), req).await {
            Ok(Value::Message(m)) => {
                return match status_of(&m)? {
                    200 => Ok(Scheduled::Here(signed, m)),
                    307 => match m.get_str("location") {
                        Some(l) => Ok(Scheduled::Elsewhere(signed, l.to_owned())),
                        None => Err(remote_unsupported(None)),
                    },
                    422 if codec == Codec::Httpsig => {
                        codec = Codec::Ans104;
                        continue;
                    }
                    s => Err(Error::status(
                        u16::try_from(s).unwrap_or(500),
                        Value::Message(m),
                    )),
                };
            }
            Ok(other) => {
                return Err(Error::BadRequest(format!(
                    "the target's schedule answered a {}, not an assignment",
                    other.kind()
                )));
            }
            Err(e) if e.http_status() == 422 && codec == Codec::Httpsig => {
                codec = Codec::Ans104;
            }
            Err(Error::Status {
                status: 307,
                body: Value::Message(m),
            }) => {
                return match m.get_str("location") {
                    Some(l) => Ok(Scheduled::Elsewhere(signed, l.to_owned())),
                    None => Err(remote_unsupported(None)),
                };
            }
            Err(e) => return Err(e),
        }
    }
}
