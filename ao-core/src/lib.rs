//! # ao-core
//!
//! The AO-Core protocol as HyperBEAM speaks it: messages, codecs, IDs, commitments, hashpaths,
//! HyperPATH parsing and resolution through devices.
//!
//! This crate depends on no runtime, storage engine, HTTP server or WASM engine: those live in
//! the crates that implement its traits ([`Store`], [`Device`]).

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
pub use error::{Error, Result};
pub use id::IdScope;
pub use key::Key;
pub use message::Message;
pub use resolve::{Context, Resolver};
pub use store::{MemoryStore, Store};
pub use value::{Atom, Value};
pub use verify::{Policy, VerifyError};
pub use wallet::{EthWallet, Wallet};
