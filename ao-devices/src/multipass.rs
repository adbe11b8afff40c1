//! `multipass@1.0` (devices.md §3.8, HyperBEAM's `dev_multipass`): makes a stack run again.
//!
//! Every key but `keys` and `set` (left to `message@1.0`) answers the base unchanged: with a
//! [`Flow::Pass`](ao_core::Flow) status while `pass < passes`, so that `stack@1.0` restarts from
//! its first device, and as a plain result once `passes` is reached. Both default to 1.

use ao_core::device::BoxFuture;
use ao_core::{Context, Device, DeviceInfo, Error, Message, Result, Value};

/// The `multipass@1.0` device.
#[derive(Debug, Clone, Copy, Default)]
pub struct MultipassDevice;

impl Device for MultipassDevice {
    fn id(&self) -> &str {
        "multipass@1.0"
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo::all().excluding(["set", "keys"])
    }

    fn call<'a>(
        &'a self,
        key: &'a str,
        base: &'a Message,
        _request: &'a Message,
        _ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        if key == "info" {
            return None;
        }
        Some(Box::pin(async move {
            let passes = integer(base, "passes")?;
            let pass = integer(base, "pass")?;
            if pass < passes {
                Err(Error::pass(base.clone()))
            } else {
                Ok(Value::Message(base.clone()))
            }
        }))
    }
}

/// An integer key of the base (1 when absent); anything but an integer is an error.
fn integer(base: &Message, key: &str) -> Result<i64> {
    match base.get(key) {
        None => Ok(1),
        Some(v) => v.as_integer().ok_or_else(|| {
            Error::BadRequest(format!(
                "multipass@1.0: {key} is a {}, not an integer",
                v.kind()
            ))
        }),
    }
}
