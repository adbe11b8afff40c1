//! Integration tests of ao-store, one module per topic.

mod cache_layout;
mod content_copies;
mod crash;
mod durability;
mod migration;
mod model;
mod open_errors;
mod operator;
mod packing;
mod recent;
mod util;
