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
//! | `process@1.0`, `genesis-wasm@1.0` | [`process`]: AO processes as supervised actors, aos run natively |
//! | `scheduler@1.0` | [`scheduler`]: the local scheduler unit (slot assignment, schedules) |

pub mod codec;
mod error;
pub mod meta;
pub mod process;
pub mod scheduler;

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
}
