//! The content-addressed binaries (`data/<hash>`) a scheduler knows to be durable in its store.
//!
//! Every message written in HyperBEAM's cache layout writes each of its binaries at
//! `data/<b64u(sha256(bytes))>`, and most binaries of a message on a busy process were written
//! before: `"ao"`, the process ID, the signer's 512-byte key, the `ao-types` of every assignment.
//! Such a write changes nothing, but the store still logs, checks and applies it. A batch can leave
//! out the writes of binaries known to be stored ([`KnownData::skip_known`]), and of binaries it
//! writes twice; what is readable at each path stays the same.
//!
//! A binary is known once a batch that wrote it is durable ([`KnownData::learn`], after
//! [`ao_core::Store::apply`]), never from a deferred batch, which a crash may lose. Nothing is
//! ever deleted from the store, so a known binary stays there. The set is bounded: when full, it
//! starts again empty.

use std::collections::HashSet;
use std::sync::Mutex;

use ao_core::store::Op;

/// Binaries remembered before the set starts again.
const MAX_KNOWN: usize = 8192;

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct KnownData {
    paths: Mutex<HashSet<String>>,
}

fn is_data_write(op: &Op) -> Option<&str> {
    match op {
        Op::Write { path, .. } if path.starts_with("data/") => Some(path),
        _ => None,
    }
}

impl KnownData {
    /// Leaves out of `ops` the writes of binaries known to be durable, and every write of a
    /// binary after its first in the batch.
    pub(crate) fn skip_known(&self, ops: &mut Vec<Op>) {
        let known = self
            .paths
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut written: HashSet<&str> = HashSet::new();
        let mut keep = Vec::with_capacity(ops.len());
        for op in ops.iter() {
            keep.push(match is_data_write(op) {
                Some(path) => !known.contains(path) && written.insert(path),
                None => true,
            });
        }
        drop(written);
        drop(known);
        let mut flags = keep.into_iter();
        ops.retain(|_| flags.next().unwrap_or(true));
    }

    /// The binaries a batch writes, to [`KnownData::learn`] once it is durable.
    pub(crate) fn written(ops: &[Op]) -> Vec<String> {
        ops.iter()
            .filter_map(is_data_write)
            .map(str::to_owned)
            .collect()
    }

    /// Remembers binaries written by a batch the store has made durable.
    pub(crate) fn learn(&self, paths: Vec<String>) {
        let mut known = self
            .paths
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.len() + paths.len() > MAX_KNOWN {
            known.clear();
        }
        known.extend(paths);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ao_core::{MemoryStore, Message, Store, cache};

    fn message(n: i64) -> Message {
        Message::new()
            .with("data-protocol", "ao")
            .with("epoch", "0")
            .with("block-height", 0i64)
            .with("slot", n)
            .with("body", Message::new().with("action", "Eval").with("n", n))
    }

    /// Batches without the writes of known binaries read back whole, and leave the store as the
    /// full batches would.
    #[test]
    fn skipping_known_binaries_changes_nothing_readable() {
        let known = KnownData::default();
        let full = MemoryStore::new();
        let reduced = MemoryStore::new();
        let mut skipped = 0;
        for n in 0..4 {
            let (uid, ops) = cache::message_ops(&message(n)).unwrap();
            full.apply(ops.clone()).unwrap();
            let mut ops2 = ops.clone();
            known.skip_known(&mut ops2);
            skipped += ops.len() - ops2.len();
            let written = KnownData::written(&ops2);
            reduced.apply(ops2).unwrap();
            known.learn(written);
            assert_eq!(
                cache::read_message(&reduced, &uid).unwrap(),
                Some(message(n))
            );
        }
        // Within the first batch "0" repeats; afterwards most binaries are known.
        assert!(skipped > 10, "{skipped}");
        for n in 0..4 {
            let (uid, _) = cache::message_ops(&message(n)).unwrap();
            assert_eq!(
                cache::read_message(&full, &uid).unwrap(),
                cache::read_message(&reduced, &uid).unwrap()
            );
        }
        assert_eq!(
            full.children("data").unwrap(),
            reduced.children("data").unwrap()
        );
    }

    /// Nothing is learnt from a batch until it is said to be durable.
    #[test]
    fn only_learnt_binaries_are_skipped() {
        let known = KnownData::default();
        let (_, ops) = cache::message_ops(&message(1)).unwrap();
        let mut first = ops.clone();
        known.skip_known(&mut first);
        let mut second = ops.clone();
        known.skip_known(&mut second);
        assert_eq!(first.len(), second.len());
        known.learn(KnownData::written(&first));
        let mut third = ops;
        known.skip_known(&mut third);
        assert!(third.iter().all(|o| is_data_write(o).is_none()));
    }
}
