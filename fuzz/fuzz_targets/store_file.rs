//! Opens arbitrary bytes (or a valid store with bytes flipped) as an ao-store file and replays
//! arbitrary operations: every failure must be an error, never a panic. On an intact store with
//! no injected I/O failure, every operation must agree with `ao_core::MemoryStore`. The template
//! store's messages are packed records (format 3), so damaged bases reach the packed-record
//! decoder, and operations on a fresh store pack new top-level groups and unpack them when
//! written into.

#![no_main]

use std::sync::OnceLock;

use ao_core::store::Op;
use ao_core::{MemoryStore, Store};
use ao_store::{Durability, RedbStore, ScratchBackend, StoreConfig};
use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

const SEGMENTS: &[&str] = &["a", "b", "b-x", "data", "c.d", "zz", "ID"];

#[derive(Debug, Arbitrary)]
enum Base {
    /// Arbitrary bytes as the file.
    Raw(Vec<u8>),
    /// The template store with some bytes overwritten.
    Damaged(Vec<(u16, u8)>),
    /// A fresh store whose writes and syncs start failing after some number.
    Failing(u16),
    /// A fresh store, checked against the model.
    Fresh,
}

#[derive(Debug, Arbitrary)]
struct FuzzPath(Vec<u8>);

impl FuzzPath {
    fn render(&self) -> String {
        let segs: Vec<&str> = self
            .0
            .iter()
            .take(4)
            .map(|b| SEGMENTS[*b as usize % SEGMENTS.len()])
            .collect();
        segs.join("/")
    }
}

#[derive(Debug, Arbitrary)]
enum FuzzOp {
    Write(FuzzPath, Vec<u8>, bool),
    Group(FuzzPath),
    Link(FuzzPath, FuzzPath),
    Read(FuzzPath),
    Raw(FuzzPath),
    List(FuzzPath),
    Children(FuzzPath),
    Flush,
    Reopen,
    Check,
}

fn config(path: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(path).with_durability(Durability::None);
    c.page_cache_bytes = 1 << 20;
    c.cache_bytes = 16 << 10;
    // Merge the table of recent records into the main one often.
    c.recent_keys = 8;
    c.blob_threshold = 64;
    c
}

/// A small valid store, built once.
fn template() -> &'static [u8] {
    static T: OnceLock<Vec<u8>> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let store = RedbStore::open(config(&path)).unwrap();
        let msg = ao_core::Message::new()
            .with("a", "b")
            .with("big", vec![7u8; 300])
            .with("nested", ao_core::Message::new().with("x", "y"));
        ao_core::cache::write_message(&store, &msg).unwrap();
        store.make_link("data", "alias").unwrap();
        store.close().unwrap();
        std::fs::read(&path).unwrap()
    })
}

fn to_op(op: &FuzzOp) -> Option<Op> {
    Some(match op {
        FuzzOp::Write(p, v, big) => {
            let mut value = v.clone();
            if *big {
                value.resize(100, 0xab);
            }
            Op::Write {
                path: p.render(),
                value: Bytes::from(value),
            }
        }
        FuzzOp::Group(p) => Op::MakeGroup { path: p.render() },
        FuzzOp::Link(a, b) => Op::MakeLink {
            existing: a.render(),
            new: b.render(),
        },
        _ => return None,
    })
}

/// Replays the ops; with a model, asserts agreement.
fn replay(
    store: &mut RedbStore,
    reopen: &mut dyn FnMut(RedbStore) -> Option<RedbStore>,
    model: Option<&MemoryStore>,
    ops: &[FuzzOp],
) {
    for op in ops {
        if let Some(o) = to_op(op) {
            let got = store.apply(vec![o.clone()]);
            if let Some(m) = model {
                assert_eq!(got.is_ok(), m.apply(vec![o]).is_ok());
            }
            continue;
        }
        match op {
            FuzzOp::Read(p) => {
                let got = store.read(&p.render());
                if let Some(m) = model {
                    assert_eq!(got.ok(), m.read(&p.render()).ok());
                }
            }
            FuzzOp::Raw(p) => {
                let got = store.get_raw(&p.render());
                if let Some(m) = model {
                    assert_eq!(got.unwrap(), m.get_raw(&p.render()).unwrap());
                }
            }
            FuzzOp::List(p) => {
                let got = store.list(&p.render());
                if let Some(m) = model {
                    assert_eq!(got.ok(), m.list(&p.render()).ok());
                }
            }
            FuzzOp::Children(p) => {
                let got = store.children(&p.render());
                if let Some(m) = model {
                    assert_eq!(got.unwrap(), m.children(&p.render()).unwrap());
                }
            }
            FuzzOp::Flush => {
                let _ = store.flush();
            }
            FuzzOp::Check => {
                if let Ok(report) = store.check_records()
                    && model.is_some()
                {
                    assert!(report.is_ok(), "{report}");
                }
            }
            FuzzOp::Reopen => {
                let placeholder = std::mem::replace(
                    store,
                    match reopen_placeholder() {
                        Some(s) => s,
                        None => return,
                    },
                );
                match reopen(placeholder) {
                    Some(s) => {
                        let old = std::mem::replace(store, s);
                        let _ = old.close();
                    }
                    None => return,
                }
            }
            _ => {}
        }
    }
}

/// A throwaway in-memory store to hold the place of one being reopened.
fn reopen_placeholder() -> Option<RedbStore> {
    RedbStore::open_with_backend(
        ScratchBackend::over_bytes(Vec::new()),
        config("placeholder".as_ref()),
    )
    .ok()
}

/// redb trusts some on-disk bytes and may panic on a damaged file; ao-store catches those
/// panics and reports the file as corrupt. Let them unwind to ao-store's guards (libfuzzer's
/// hook would abort first); any other panic, or a redb panic no guard catches, still aborts.
fn tolerate_redb_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.location().is_some_and(|l| l.file().contains("/redb-")) {
                abort(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    tolerate_redb_panics();
    let mut u = Unstructured::new(data);
    let Ok(base) = Base::arbitrary(&mut u) else {
        return;
    };
    let Ok(ops) = Vec::<FuzzOp>::arbitrary(&mut u) else {
        return;
    };
    let ops = &ops[..ops.len().min(64)];
    match base {
        Base::Raw(_) | Base::Damaged(_) => {
            let bytes = match base {
                Base::Raw(b) => b,
                Base::Damaged(flips) => {
                    let mut t = template().to_vec();
                    for (at, b) in flips {
                        let at = at as usize % t.len();
                        t[at] = b;
                    }
                    t
                }
                _ => unreachable!(),
            };
            // The node's own path: a real file, opened read-write and read-only, and checked.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("store.redb");
            std::fs::write(&path, &bytes).unwrap();
            let cfg = config(&path);
            let _ = ao_store::check(&cfg);
            if let Ok(s) = RedbStore::open_read_only(cfg.clone()) {
                let _ = ao_core::cache::read(&s, "ID");
                let _ = s.stats();
                let _ = s.close();
            }
            let Ok(mut store) = RedbStore::open(cfg.clone()) else {
                return;
            };
            let mut reopen = |s: RedbStore| {
                let _ = s.close();
                RedbStore::open(cfg.clone()).ok()
            };
            replay(&mut store, &mut reopen, None, ops);
            let _ = store.close();
        }
        Base::Failing(n) => {
            let backend = ScratchBackend::over_bytes(Vec::new()).fail_after(u64::from(n));
            let shared = backend.clone();
            let Ok(mut store) = RedbStore::open_with_backend(backend, config("mem".as_ref()))
            else {
                return;
            };
            let mut reopen = |s: RedbStore| {
                let _ = s.close();
                let bytes = shared.contents().ok()?;
                RedbStore::open_with_backend(
                    ScratchBackend::over_bytes(bytes),
                    config("mem".as_ref()),
                )
                .ok()
            };
            replay(&mut store, &mut reopen, None, ops);
            let _ = store.close();
        }
        Base::Fresh => {
            let backend = ScratchBackend::over_bytes(Vec::new());
            let mut shared = backend.clone();
            let mut store = RedbStore::open_with_backend(backend, config("mem".as_ref())).unwrap();
            let model = MemoryStore::new();
            let mut reopen = |s: RedbStore| {
                s.close().unwrap();
                let bytes = shared.contents().unwrap();
                let next = ScratchBackend::over_bytes(bytes);
                shared = next.clone();
                Some(RedbStore::open_with_backend(next, config("mem".as_ref())).unwrap())
            };
            replay(&mut store, &mut reopen, Some(&model), ops);
            store.close().unwrap();
        }
    }
});
