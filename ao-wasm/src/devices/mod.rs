//! AO-Core devices backed by this crate.
