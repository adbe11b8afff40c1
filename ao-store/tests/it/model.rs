//! Model-based test: random sequences of writes, groups, links, reads, lists and reopenings,
//! replayed on a store and on a `BTreeMap` model, must agree. Run on `RedbStore` and on
//! `ao_core::MemoryStore` alike.

use std::collections::BTreeMap;

use ao_core::store::{Entry, Kind, MAX_LINK_HOPS, Op, apply_to_map, join};
use ao_core::{MemoryStore, Store};
use ao_store::{Durability, RedbStore};
use bytes::Bytes;
use proptest::prelude::*;

use crate::util::{config, store_path};

/// The model: a sorted map of entries, with resolution written independently of ao-core's.
#[derive(Debug, Default)]
struct Model(BTreeMap<String, Entry>);

impl Model {
    fn apply(&mut self, ops: &[Op]) -> bool {
        let valid = ops.iter().all(|op| match op {
            Op::Write { path, .. } => !join(&[path]).is_empty(),
            _ => true,
        });
        if valid {
            for op in ops {
                apply_to_map(&mut self.0, op.clone()).unwrap();
            }
        }
        valid
    }

    fn resolve(&self, path: &str) -> Option<String> {
        let mut todo: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while !todo.is_empty() {
            let seg = todo.remove(0);
            done.push(seg);
            if let Some(Entry::Link(target)) = self.0.get(&done.join("/")) {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return None;
                }
                let mut next: Vec<String> = target
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                next.append(&mut todo);
                todo = next;
                done.clear();
            }
        }
        Some(done.join("/"))
    }

    fn children(&self, path: &str) -> Vec<String> {
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let mut out: Vec<String> = self
            .0
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter_map(|rest| rest.split('/').next())
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[derive(Debug, Clone)]
enum Action {
    Apply(Vec<Op>),
    GetRaw(String),
    Read(String),
    Kind(String),
    List(String),
    Children(String),
    Reopen,
}

fn segment() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "b-x", "b.y", "c", "data", "zz"]).prop_map(String::from)
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 1..4).prop_map(|s| s.join("/"))
}

/// Paths as callers may write them: sometimes with stray slashes.
fn messy_path() -> impl Strategy<Value = String> {
    (path(), 0..4u8).prop_map(|(p, how)| match how {
        0 => format!("/{p}"),
        1 => format!("{p}/"),
        2 => p.replacen('/', "//", 1),
        _ => p,
    })
}

fn value() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..16),
        // At least the test configuration's blob threshold (256): stored in the blob table.
        1 => (0u8..4, 256usize..400).prop_map(|(b, n)| vec![b; n]),
    ]
    .prop_map(Bytes::from)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (messy_path(), value()).prop_map(|(path, value)| Op::Write { path, value }),
        1 => Just(Op::Write { path: "/".into(), value: Bytes::from_static(b"bad") }),
        2 => messy_path().prop_map(|path| Op::MakeGroup { path }),
        3 => (path(), messy_path()).prop_map(|(existing, new)| Op::MakeLink { existing, new }),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => prop::collection::vec(op(), 1..5).prop_map(Action::Apply),
        2 => path().prop_map(Action::GetRaw),
        3 => path().prop_map(Action::Read),
        2 => path().prop_map(Action::Kind),
        2 => path().prop_map(Action::List),
        2 => prop_oneof![path(), Just(String::new())].prop_map(Action::Children),
        1 => Just(Action::Reopen),
    ]
}

/// Replays `actions` on a store (reopened by `reopen`) and on the model.
fn replay<S: Store>(
    mut store: S,
    mut reopen: impl FnMut(S) -> S,
    actions: &[Action],
) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for (step, action) in actions.iter().enumerate() {
        match action {
            Action::Apply(ops) => {
                let expected_ok = model.apply(ops);
                let got = store.apply(ops.clone());
                prop_assert_eq!(
                    got.is_ok(),
                    expected_ok,
                    "step {}: {:?}: {:?}",
                    step,
                    ops,
                    got
                );
            }
            Action::GetRaw(p) => {
                prop_assert_eq!(
                    store.get_raw(p).unwrap(),
                    model.0.get(p).cloned(),
                    "step {}",
                    step
                );
            }
            Action::Read(p) => match model.resolve(p) {
                None => prop_assert!(store.read(p).is_err(), "step {}: cycle", step),
                Some(r) => {
                    let expected = match model.0.get(&r) {
                        Some(Entry::Binary(b)) => Some(b.clone()),
                        _ => None,
                    };
                    prop_assert_eq!(store.read(p).unwrap(), expected, "step {}: {}", step, p);
                    prop_assert_eq!(store.resolve(p).unwrap(), r);
                }
            },
            Action::Kind(p) => match model.resolve(p) {
                None => prop_assert!(store.kind(p).is_err()),
                Some(r) => {
                    let expected = match model.0.get(&r) {
                        Some(Entry::Binary(_)) => Some(Kind::Binary),
                        Some(Entry::Group) => Some(Kind::Group),
                        _ => None,
                    };
                    prop_assert_eq!(store.kind(p).unwrap(), expected, "step {}", step);
                }
            },
            Action::List(p) => match model.resolve(p) {
                None => prop_assert!(store.list(p).is_err()),
                Some(r) => {
                    let expected = match model.0.get(&r) {
                        Some(Entry::Group) => Some(model.children(&r)),
                        _ => None,
                    };
                    prop_assert_eq!(store.list(p).unwrap(), expected, "step {}", step);
                }
            },
            Action::Children(p) => {
                prop_assert_eq!(
                    store.children(p).unwrap(),
                    model.children(p),
                    "step {}",
                    step
                );
            }
            Action::Reopen => store = reopen(store),
        }
    }
    // Everything agrees at the end, entry by entry.
    let reopened = reopen(store);
    for (k, v) in &model.0 {
        let got = reopened.get_raw(k).unwrap();
        prop_assert_eq!(got.as_ref(), Some(v), "final {}", k);
    }
    prop_assert_eq!(reopened.children("").unwrap(), model.children(""));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn redb_store_agrees_with_the_model(
        actions in prop::collection::vec(action(), 1..60),
        durability in prop_oneof![Just(Durability::None), Just(Durability::Eventual), Just(Durability::Immediate)],
        cache_bytes in prop_oneof![Just(0u64), Just(4096u64), Just(1u64 << 20)],
        // 1: a background checkpoint after every group, so reads meet frozen memtables.
        memtable_bytes in prop_oneof![Just(1u64), Just(600u64), Just(32u64 << 20)],
        // 0 and 3: the `recent` table is merged into the main one at most commits, so reads
        // meet keys in both; 1M: never.
        recent_keys in prop_oneof![Just(0u64), Just(3u64), Just(1u64 << 20)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(&store_path(dir.path())).with_durability(durability);
        cfg.cache_bytes = cache_bytes;
        cfg.memtable_bytes = memtable_bytes;
        cfg.recent_keys = recent_keys;
        let store = RedbStore::open(cfg.clone()).unwrap();
        replay(store, |s| {
            s.close().unwrap();
            // The store is consistent at every reopening.
            let report = ao_store::check(&cfg).unwrap();
            assert!(report.is_ok(), "{report}");
            RedbStore::open(cfg.clone()).unwrap()
        }, &actions)?;
    }

    #[test]
    fn memory_store_agrees_with_the_model(actions in prop::collection::vec(action(), 1..60)) {
        replay(MemoryStore::new(), |s| s, &actions)?;
    }
}
