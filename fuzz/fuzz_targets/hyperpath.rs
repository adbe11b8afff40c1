//! The HyperPATH parser: any path either parses or fails with a typed error, and a parse
//! survives `to_singleton` → `from_singleton` without panicking.
#![no_main]

use ao_core::path::{self, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let limits = Limits::default();
    if let Ok(steps) = path::parse(text, &limits)
        && let Ok(singleton) = path::to_singleton(&steps)
    {
        let _ = path::from_singleton(&singleton, &limits);
    }
});
