//! # ao-core
//!
//! The AO-Core protocol as HyperBEAM speaks it: messages, codecs, IDs, commitments, hashpaths,
//! HyperPATH parsing, and resolution through devices.
//!
//! ```
//! use std::sync::Arc;
//! use ao_core::{BoxFuture, Context, Device, DeviceRegistry, MemoryStore, Message, Resolver, Result, Value, cache, msg};
//!
//! /// `greeter@1.0`: `hello` greets the message's `name`; other keys are its stored values.
//! struct Greeter;
//!
//! impl Device for Greeter {
//!     fn id(&self) -> &str {
//!         "greeter@1.0"
//!     }
//!     fn call<'a>(&'a self, key: &'a str, base: &'a Message, _req: &'a Message, _ctx: &'a Context)
//!         -> Option<BoxFuture<'a, Result<Value>>>
//!     {
//!         (key == "hello").then(|| -> BoxFuture<'a, Result<Value>> {
//!             Box::pin(async move {
//!                 let name = base.get_str("name").unwrap_or("world");
//!                 Ok(Value::Message(msg! { "greeting" => format!("Hello, {name}!") }))
//!             })
//!         })
//!     }
//! }
//!
//! # fn main() -> ao_core::Result<()> {
//! let store = Arc::new(MemoryStore::new());
//! let resolver = Resolver::builder(DeviceRegistry::builder().register(Greeter).build())
//!     .store(store.clone())
//!     .build();
//! let id = cache::write_message(store.as_ref(), &msg! { "device" => "greeter@1.0", "name" => "AO" })?;
//!
//! let result = futures::executor::block_on(resolver.resolve_path(&format!("/{id}/hello")))?;
//! let greeting = result.as_message().expect("a message");
//! assert_eq!(greeting.get_str("greeting"), Some("Hello, AO!"));
//! // The hashpath proves how the result was reached: `<ID of the base>/hello`.
//! assert_eq!(greeting.hashpath(), Some(format!("{id}/hello").as_str()));
//! # Ok(())
//! # }
//! ```
//!
//! ## Core concepts
//!
//! * [`Message`]: an immutable, cheaply cloned map of normalised [`Key`]s to [`Value`]s; private
//!   keys and the hashpath live apart from the public fields.
//! * [`codec`]: `structured@1.0` (values ⇄ TABM with `ao-types`), `httpsig@1.0`, `flat@1.0`,
//!   `json@1.0`, byte-compatible with HyperBEAM.
//! * [`id`]: the unsigned ID (an HMAC over the httpsig signature base) and IDs over commitments;
//!   [`hashpath`]: the proof chain of a resolution.
//! * [`path`]: the HyperPATH parser (`/ID~process@1.0/compute&slot+integer=3`) and its inverse.
//! * [`Device`] and [`DeviceRegistry`]: what gives a message behaviour; [`Resolver`] applies
//!   requests through them; `message@1.0` ([`message_device`]) is always present.
//! * [`Store`]: the storage the resolver loads messages from; [`cache`] lays messages out in it as
//!   HyperBEAM does; [`MemoryStore`] is the in-memory implementation.
//!
//! ## Dependencies
//!
//! No runtime, storage engine, HTTP server or WASM engine: those live in the crates that
//! implement this crate's traits. Foreign types in the API: `bytes::Bytes` for binary values
//! (sliced from request bodies and stores without copying), and boxed `std::future::Future`s
//! for device calls. Hashing uses `sha2`/`hmac` (the protocol's SHA-256 and HMAC-SHA256).

pub mod ans104;
pub mod cache;
pub mod codec;
pub mod commitment;
pub mod crypto;
pub mod device;
mod error;
pub mod escape;
pub mod hashpath;
pub mod id;
pub mod key;
mod message;
pub mod message_device;
pub mod path;
pub mod resolve;
pub mod sf;
pub mod signature;
pub mod store;
pub mod util;
mod value;
pub mod verify;
pub mod wallet;

pub use device::{BoxFuture, Device, DeviceInfo, DeviceRegistry, DeviceRegistryBuilder};
pub use error::{Error, Flow, Result};
pub use id::IdScope;
pub use key::Key;
pub use message::Message;
pub use resolve::{Context, Resolver};
pub use store::{MemoryStore, Store};
pub use value::{Atom, Value};
pub use verify::{Policy, VerifyError};
pub use wallet::{EthWallet, Wallet};
