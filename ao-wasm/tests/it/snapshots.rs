//! Snapshot → drop → restore gives the same state as never evicting.

use ao_wasm::{AosInstance, Snapshot};

use crate::common::*;

const SCRIPT: [&str; 6] = [
    "X = 42",
    "Items = {} for i = 1, 200 do Items[i] = string.rep('y', i) end return #Items",
    "Send({Target='X',Data='hi',Action='Ping'}); return X",
    "X = X + 1; return tostring({}) ~= nil and X",
    "return #Items[150] .. ':' .. X",
    "error('boom')",
];

fn evict_and_resume(rel: &str) {
    let engine = engine();
    let module = load(&engine, rel);
    let mut kept = aos(&module);
    let mut evicted = aos(&module);
    for (n, code) in SCRIPT[..3].iter().enumerate() {
        let a = kept.handle(&eval_msg(n + 1, code), ENV).unwrap();
        let b = evicted.handle(&eval_msg(n + 1, code), ENV).unwrap();
        assert_eq!(a, b);
    }
    let snap = evicted.snapshot().unwrap();
    drop(evicted);
    let snap = Snapshot::from_bytes(snap.to_bytes()).unwrap();
    let mut resumed = AosInstance::restore(&module, limits(&module), &snap).unwrap();
    for (n, code) in SCRIPT.iter().enumerate().skip(3) {
        let a = kept.handle(&eval_msg(n + 1, code), ENV).unwrap();
        let b = resumed.handle(&eval_msg(n + 1, code), ENV).unwrap();
        assert_eq!(a, b, "{code}");
    }
    // Bit-identical state afterwards.
    let (sa, sb) = (kept.snapshot().unwrap(), resumed.snapshot().unwrap());
    assert!(sa == sb, "states diverged after restore");
}

#[test]
fn native_aos_evict_and_resume() {
    evict_and_resume("wasm/aos-2-pure-xs.exnref.wasm");
}

#[test]
fn emscripten4_evict_and_resume() {
    evict_and_resume("wasm/ao-loader-emscripten4-aos2.wasm");
}

#[test]
fn wasm64_emscripten_evict_and_resume() {
    evict_and_resume("wasm/ao-loader-wasm64-emscripten-aos2.wasm");
}

/// A HyperBEAM snapshot is the raw memory, one page larger than ours (WAMR's app heap): the
/// restore grows memory first, then writes it.
#[test]
fn hyperbeam_style_larger_memory_snapshot() {
    let engine = engine();
    let module = load(&engine, "wasm/aos-2-pure-xs.exnref.wasm");
    let mut a = aos(&module);
    a.handle(&eval_msg(1, "X = 1337"), ENV).unwrap();
    let mut body = a.snapshot().unwrap().memory().to_vec();
    let fresh_size = body.len();
    body.extend(std::iter::repeat_n(0u8, 65_536));
    let mut b =
        AosInstance::restore(&module, limits(&module), &Snapshot::from_memory(body)).unwrap();
    assert_eq!(b.instance().memory_size() as usize, fresh_size + 65_536);
    let r = b.handle(&eval_msg(2, "return X"), ENV).unwrap();
    assert_eq!(output_data(&r).as_deref(), Ok("1337"));
}
