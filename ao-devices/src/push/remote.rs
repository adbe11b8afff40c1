//! Pushing to a process whose scheduler is on another node (devices.md §3.13, HyperBEAM's
//! `remote_schedule_result`).
//!
//! The signed outbox message is POSTed to `<scheduler>/<target>~process@1.0/push` with a
//! `result-depth` header one below the pushing slot's, so the target's node schedules it,
//! computes it and pushes its own outbox on in turn. The request goes through the durable
//! outbox ([`crate::relay::outbox`]): when the peer cannot take it (down, too slow, 5xx) it is
//! kept in the store and retried by the node until the peer takes it, and the entry reports
//! `{response: queued, status: <502|504|5xx>, outbox: <key>}`. The message is signed once, so a
//! retry carries the same message ID and the receiving node schedules it once
//! ([`crate::scheduler::remote::schedule_once`]).
//!
//! A chain of pushes between nodes stops after [`MAX_REMOTE_HOPS`] hops below depth 0 (508),
//! as two processes answering each other forever would otherwise never stop.

use ao_core::id::{IdScope, id_string};
use ao_core::{Context, Error, Message, Value};

use super::entry_error;
use crate::relay::{self, Outbound, outbox};
use crate::scheduler::location::outbound_message;

/// How far below depth 0 a chain of remote pushes may go.
pub const MAX_REMOTE_HOPS: i64 = 16;

/// The base URL (`scheme://host[:port]`) of a scheduler URL or redirect location.
pub fn base_url(location: &str) -> Option<String> {
    relay::split_url(location).ok().map(|(peer, _)| peer)
}

/// Pushes an already signed message to `target` on the node at `base` (see the module
/// documentation); the outbox entry's report.
pub async fn push_signed(
    ctx: &Context,
    base: &str,
    target: &str,
    signed: &Message,
    depth: i64,
) -> Message {
    if ctx.extension::<relay::Client>().is_none() {
        return entry_error(target, &super::remote_unsupported(Some(base)));
    }
    if depth < -MAX_REMOTE_HOPS {
        return entry_error(
            target,
            &Error::status(
                508,
                format!(
                    "push@1.0: more than {MAX_REMOTE_HOPS} pushes between nodes below depth 0; \
                     stopping the chain"
                ),
            ),
        );
    }
    let id = match id_string(signed, IdScope::All) {
        Ok(id) => id,
        Err(e) => return entry_error(target, &e),
    };
    let out = Outbound::new(
        "POST",
        base,
        format!("/{target}~process@1.0/push"),
        outbound_message(signed),
    )
    .header("result-depth", (depth - 1).to_string());
    let reply = match outbox::send_durable(ctx, out).await {
        Ok(r) => r,
        Err(e) => return entry_error(target, &e),
    };
    let value = match reply.value {
        Value::Message(m) => m,
        other => Message::new().with("body", other),
    };
    if reply.status == 202 && value.contains("outbox") {
        tracing::warn!(%target, peer = base, "push queued in the outbox: the target's node cannot take it now");
        return Message::new()
            .with("response", "queued")
            .with(
                "status",
                value
                    .get("peer-status")
                    .cloned()
                    .unwrap_or(Value::from(502i64)),
            )
            .with("id", id)
            .with("target", target)
            .with("node", base)
            .with(
                "outbox",
                value.get("outbox").cloned().unwrap_or(Value::from("")),
            )
            .with(
                "reason",
                value.get("body").cloned().unwrap_or(Value::from("")),
            );
    }
    if reply.status >= 400 {
        return entry_error(target, &Error::status(reply.status, Value::Message(value)));
    }
    let mut resulted = value;
    if depth - 1 <= 0 {
        resulted.remove("results");
    }
    let mut entry = Message::new()
        .with("id", id)
        .with("target", target)
        .with("node", base);
    if let Some(slot) = resulted.get("slot").cloned() {
        entry.insert("slot", slot);
    }
    entry.insert("resulted-in", resulted);
    entry
}
