//! Integration tests of `ao-core`, one module per topic.

mod fixtures;
mod hashpaths;
mod hyperpath;
mod resolver;
mod roundtrip;
mod vectors;
