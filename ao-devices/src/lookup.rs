//! `lookup@1.0` (devices.md §3.18, HyperBEAM's `dev_lookup`): `read?target=<ID>` answers the
//! message (or binary) stored at that ID, or [`ao_core::Error::NotFound`]. It shares
//! `cache@1.0`'s reader ([`crate::cache::read_target`]), including the 406 for
//! `accept: application/aos-2`.

use ao_core::device::BoxFuture;
use ao_core::{Context, Device, DeviceInfo, Message, Result, Value};

/// The `lookup@1.0` device.
#[derive(Debug, Clone, Copy, Default)]
pub struct LookupDevice;

impl Device for LookupDevice {
    fn id(&self) -> &str {
        "lookup@1.0"
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo::exports(["read"])
    }

    fn call<'a>(
        &'a self,
        key: &'a str,
        _base: &'a Message,
        request: &'a Message,
        ctx: &'a Context,
    ) -> Option<BoxFuture<'a, Result<Value>>> {
        (ao_core::key::normalize(key) == "read").then(|| -> BoxFuture<'a, Result<Value>> {
            let out = crate::cache::read_target(request, ctx, "lookup@1.0");
            Box::pin(async move { out })
        })
    }
}
