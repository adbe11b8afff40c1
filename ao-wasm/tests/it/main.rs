//! Integration tests of ao-wasm against the real fixture modules.

mod common;
mod loader_formats;
mod native_aos;
