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
//! | `relay@1.0` | [`relay`]: `call`/`cast` to peers, the forwarding request hook; the [`relay::PeerClient`] trait |
//! | `router@1.0` | [`router`]: the `routes` table, strategies, `route`/`match`, the `preprocess` hook |

pub mod codec;
mod error;
pub mod meta;
pub mod relay;
pub mod router;

pub use error::{Error, Result};

use ao_core::DeviceRegistryBuilder;

/// Every built-in device of this crate, added to a registry builder (which already holds
/// `message@1.0`).
pub fn builtin() -> DeviceRegistryBuilder {
    DeviceRegistryBuilder::new()
        .register(meta::MetaDevice)
        .register(codec::CodecDevice::Json)
        .register(codec::CodecDevice::Flat)
        .register(codec::CodecDevice::Structured)
        .register(codec::CodecDevice::Httpsig)
        .register(relay::RelayDevice)
        .register(router::RouterDevice)
}
