//! # ao-devices
//!
//! The built-in devices of the node, each implemented through [`ao_core::Device`] and listed in
//! one place, [`builtin`]. The node (`hb-cli`) adds the devices of other crates (WASM execution
//! from `ao-wasm`, the metrics page from `ao-http`) to the same registry.
//!
//! | Device | Module |
//! |---|---|
//! | `meta@1.0` | [`meta`]: the node message (options, address), its operator-signed updates, build info |
//! | `json@1.0`, `flat@1.0`, `structured@1.0`, `httpsig@1.0` | [`codec`]: codecs as devices (`serialize`, `deserialize`) |
//! | `stack@1.0` | [`stack`]: runs a key over a stack of devices (fold with passes, map) |
//! | `multipass@1.0` | [`multipass`]: makes a stack run again until `passes` is reached |
//! | `dedup@1.0` | [`dedup`]: drops messages a process has already seen |
//! | `patch@1.0` | [`patch`]: moves `PATCH` messages of results into the process state |
//! | `push@1.0` | [`push`]: signs outbox messages and schedules them on their target processes, here or on the targets' scheduler nodes |
//! | `cache@1.0`, `lookup@1.0` | [`cache`], [`lookup`]: read the store; write it as a trusted writer |
//! | `process@1.0`, `genesis-wasm@1.0` | [`process`]: AO processes as supervised actors, aos run natively |
//! | `scheduler@1.0` | [`scheduler`]: the local scheduler unit (slot assignment, schedules), location records, redirects and proxying to remote schedulers |
//! | `relay@1.0` | [`relay`]: `call`/`cast` to peers, the forwarding request hook; the [`relay::PeerClient`] trait |
//! | `router@1.0` | [`router`]: the `routes` table, strategies, `route`/`match`, the `preprocess` hook |

pub mod cache;
pub mod codec;
pub mod dedup;
mod error;
pub mod lookup;
pub mod meta;
pub mod multipass;
pub mod patch;
pub mod process;
pub mod push;
pub mod relay;
pub mod router;
pub mod scheduler;
pub mod stack;

pub use error::{Error, Result};

use ao_core::DeviceRegistryBuilder;

/// Every built-in device of this crate, added to a registry builder (which already holds
/// `message@1.0`).
pub fn builtin() -> DeviceRegistryBuilder {
    let processes = std::sync::Arc::new(process::RuntimeCell::default());
    DeviceRegistryBuilder::new()
        .register(process::ProcessDevice::new(processes.clone()))
        .register(process::GenesisWasmDevice::new(processes.clone()))
        .register(scheduler::SchedulerDevice::new(processes))
        .register(meta::MetaDevice)
        .register(codec::CodecDevice::Json)
        .register(codec::CodecDevice::Flat)
        .register(codec::CodecDevice::Structured)
        .register(codec::CodecDevice::Httpsig)
        .register(stack::StackDevice)
        .register(multipass::MultipassDevice)
        .register(dedup::DedupDevice)
        .register(patch::PatchDevice)
        .register(push::PushDevice)
        .register(cache::CacheDevice)
        .register(lookup::LookupDevice)
        .register(relay::RelayDevice)
        .register(router::RouterDevice)
}
