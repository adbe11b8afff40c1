//! Integration tests of `ao-core`, one module per topic.

mod ans104;
mod cache;
mod clients;
mod commitments;
mod fixtures;
mod hashpaths;
mod hyperpath;
mod resolver;
mod roundtrip;
mod signing_roundtrip;
mod vectors;
mod wallets;
