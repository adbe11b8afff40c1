//! `dedup@1.0` (devices.md §3.16, HyperBEAM's `dev_dedup`): drops messages a process has seen.
//!
//! Every key but `keys` and `set` (left to `message@1.0`) is handled. On the first pass of a
//! stack (`pass` 1 or unset) the ID of the request (over all its commitments) is looked up in
//! the state's `dedup` list: if present, the call ends with [`Flow::Skip`](ao_core::Flow), which
//! ends the stack's fold for this message; otherwise the ID is put at the head of the list. On
//! later passes the base is returned unchanged. The list lives in the process state and grows
//! without bound, as in HyperBEAM.

use ao_core::device::BoxFuture;
use ao_core::id::{IdScope, id};
use ao_core::util::b64u;
use ao_core::{Context, Device, DeviceInfo, Error, Message, Result, Value, message_device};

/// The `dedup@1.0` device.
#[derive(Debug, Clone, Copy, Default)]
pub struct DedupDevice;

impl Device for DedupDevice {
    fn id(&self) -> &str {
        "dedup@1.0"
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo::all().excluding(["set", "keys"])
    }

    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        request: &'a Message,
        _ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        if key == "info" {
            return None;
        }
        Some(Box::pin(
            async move { dedup(base, request).map(Value::Message) },
        ))
    }
}

fn dedup(base: &Message, request: &Message) -> Result<Message> {
    if crate::stack::pass(base) != 1 {
        return Ok(base.clone());
    }
    let seen_id = Value::from(b64u(&id(request, IdScope::All)?));
    let seen: Vec<Value> = match base.get("dedup") {
        None => Vec::new(),
        Some(Value::List(l)) => l.clone(),
        Some(Value::Message(m)) => ao_core::codec::structured::message_to_list(m)?,
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "dedup@1.0: the state's dedup is a {}, not a list",
                other.kind()
            )));
        }
    };
    if seen.contains(&seen_id) {
        return Err(Error::skip(base.clone()));
    }
    let mut list = Vec::with_capacity(seen.len() + 1);
    list.push(seen_id);
    list.extend(seen);
    message_device::set(base, &Message::new().with("dedup", Value::List(list)))
}
