//! Integration tests of ao-wasm against the real fixture modules.

mod aot;
mod common;
mod devices;
mod differential;
mod isolation;
mod loader_formats;
mod native_aos;
mod plain;
mod snapshots;
