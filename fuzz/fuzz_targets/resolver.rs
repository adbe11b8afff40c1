//! The resolver over arbitrary messages and paths: the first line is a HyperPATH, the rest a
//! message in flat text used as the base. Resolution succeeds or fails with a typed error.
#![no_main]

use ao_core::{Message, Resolver, Value, codec, path};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (first, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(hyperpath) = std::str::from_utf8(first) else { return };
    let base = codec::from_flat(rest).unwrap_or_default();
    let resolver = Resolver::basic();
    // Resolve the path against the base message...
    let _ = futures::executor::block_on(resolver.resolve(base.clone(), Message::new().with("path", hyperpath)));
    // ...and as a full HyperPATH with the base's keys as request keys.
    let mut singleton = base.clone();
    singleton.insert("path", Value::from(hyperpath));
    if let Ok(steps) = path::from_singleton(&singleton, &path::Limits::default()) {
        let _ = futures::executor::block_on(resolver.context().resolve_steps(steps));
    }
});
