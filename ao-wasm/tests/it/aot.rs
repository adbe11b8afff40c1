//! Ahead-of-time compilation: compile once, then deserialize the stored artifact.

use ao_core::Store;
use ao_wasm::{EngineStats, LoadOrigin};

use crate::common::*;

#[test]
fn second_load_is_a_deserialize() {
    let store = ao_core::MemoryStore::new();
    let bytes = fixture("wasm/aos-2-pure-xs.exnref.wasm");

    let first = engine();
    let m1 = first.load(&bytes, &store).unwrap();
    assert_eq!(m1.origin(), LoadOrigin::Compiled);
    assert_eq!(
        first.stats(),
        EngineStats {
            compiled: 1,
            deserialized: 0,
            memory_hits: 0
        }
    );
    let artifact_path = first.artifact_path(&m1.hash());
    assert!(artifact_path.contains(first.compatibility()));
    assert!(store.read(&artifact_path).unwrap().is_some());
    // While it is live, the same engine shares it.
    let again = first.load(&bytes, &store).unwrap();
    assert!(std::sync::Arc::ptr_eq(&again, &m1));
    assert_eq!(first.stats().memory_hits, 1);

    // A restarted node (a new engine, the same store) deserializes instead of compiling.
    let second = engine();
    assert_eq!(second.compatibility(), first.compatibility());
    let m2 = second.load(&bytes, &store).unwrap();
    assert_eq!(m2.origin(), LoadOrigin::Deserialized);
    assert_eq!(
        second.stats(),
        EngineStats {
            compiled: 0,
            deserialized: 1,
            memory_hits: 0
        }
    );
    let r = aos(&m2).handle(&eval_msg(1, "return 1+1"), ENV).unwrap();
    assert_eq!(output_data(&r).as_deref(), Ok("2"));

    // Dropping every handle forgets it in memory; the next load deserializes again.
    drop((m1, again));
    let m1b = first.load(&bytes, &store).unwrap();
    assert_eq!(m1b.origin(), LoadOrigin::Deserialized);
}

#[test]
fn damaged_artifact_is_recompiled() {
    let store = ao_core::MemoryStore::new();
    let bytes = fixture("wasm/test.wasm");
    let e = engine();
    let path = e.artifact_path(blake3_of(&bytes));
    store
        .write(&path, bytes::Bytes::from_static(b"not an artifact"))
        .unwrap();
    let m = e.load(&bytes, &store).unwrap();
    assert_eq!(m.origin(), LoadOrigin::Compiled);
    assert_eq!(e.stats().deserialized, 0);
    // The good artifact replaced the damaged one.
    let m2 = engine().load(&bytes, &store).unwrap();
    assert_eq!(m2.origin(), LoadOrigin::Deserialized);
}

fn blake3_of(bytes: &[u8]) -> &'static [u8; 32] {
    Box::leak(Box::new(*blake3::hash(bytes).as_bytes()))
}
