//! ao-wasm
