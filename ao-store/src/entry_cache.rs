//! A bounded cache of decoded entries (and of group listings) in front of redb.
//!
//! Sharded CLOCK (second-chance) eviction with a budget in bytes. The cache holds what the store
//! answers (the memtable over the snapshot), so a checkpoint, which moves entries from the
//! memtable into redb without changing any answer, leaves it valid. Coherence with the writer:
//! the writer makes a change visible (a new snapshot, or entries inserted into the memtable under
//! its lock), invalidates the keys it changed and bumps the generation, then answers its callers.
//! A reader reads the generation *before* it looks anything up and inserts what it read only if
//! that generation is still current, checked under the shard lock; so an entry read before a
//! change is either refused or removed by the invalidation that follows.

use std::collections::VecDeque;
use std::collections::hash_map::{Entry as MapEntry, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use ao_core::store::Entry;

const SHARDS: usize = 16;
/// Approximate bookkeeping bytes per cached item.
const OVERHEAD: usize = 96;

/// What is cached for a path.
#[derive(Debug, Clone)]
pub(crate) enum Cached {
    /// The raw entry at the path (`None`: nothing there).
    Entry(Option<Entry>),
    /// The children of the group at the path.
    Children(Arc<[String]>),
}

impl Cached {
    fn weight(&self) -> usize {
        match self {
            Self::Entry(Some(Entry::Binary(b))) => b.len(),
            Self::Entry(Some(Entry::Link(t))) => t.len(),
            Self::Entry(_) => 0,
            Self::Children(c) => c.iter().map(|s| s.len() + 24).sum(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Space {
    Entry,
    Children,
}

#[derive(Debug)]
struct Slot {
    value: Cached,
    weight: usize,
    /// Set by readers under the shard's read lock.
    visited: AtomicBool,
}

/// A shard's map. foldhash rather than SipHash: hashing the path is a large part of a cache hit.
type Map = HashMap<Box<str>, Slot, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
struct Shard {
    entries: Map,
    children: Map,
    clock: VecDeque<(Space, Box<str>)>,
    bytes: usize,
}

impl Shard {
    fn map(&mut self, space: Space) -> &mut Map {
        match space {
            Space::Entry => &mut self.entries,
            Space::Children => &mut self.children,
        }
    }

    fn len(&self) -> usize {
        self.entries.len() + self.children.len()
    }

    fn contains(&self, (space, key): &(Space, Box<str>)) -> bool {
        match space {
            Space::Entry => self.entries.contains_key(key),
            Space::Children => self.children.contains_key(key),
        }
    }

    fn evict_until(&mut self, budget: usize) {
        while self.bytes > budget {
            let Some(key) = self.clock.pop_front() else {
                break;
            };
            let map = self.map(key.0);
            match map.get_mut(&key.1) {
                Some(slot) if slot.visited.load(Ordering::Relaxed) => {
                    *slot.visited.get_mut() = false;
                    self.clock.push_back(key);
                }
                Some(_) => {
                    if let Some(slot) = map.remove(&key.1) {
                        self.bytes -= slot.weight;
                    }
                }
                // Invalidated earlier: a stale clock position.
                None => {}
            }
        }
        // Keep stale positions from piling up.
        if self.clock.len() > 2 * self.len() + 64 {
            let mut clock = std::mem::take(&mut self.clock);
            clock.retain(|k| self.contains(k));
            self.clock = clock;
        }
    }
}

/// The cache.
#[derive(Debug)]
pub(crate) struct EntryCache {
    shards: Box<[RwLock<Shard>]>,
    shard_budget: usize,
    hasher: foldhash::fast::RandomState,
    /// Generation of the newest published snapshot.
    generation: AtomicU64,
}

impl EntryCache {
    pub(crate) fn new(budget_bytes: u64) -> Self {
        let budget = usize::try_from(budget_bytes).unwrap_or(usize::MAX);
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            shard_budget: budget / SHARDS,
            hasher: Default::default(),
            generation: AtomicU64::new(0),
        }
    }

    fn shard(&self, space: Space, key: &str) -> &RwLock<Shard> {
        let mut h = self.hasher.build_hasher();
        space.hash(&mut h);
        key.hash(&mut h);
        // The shard index only needs the low bits.
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    pub(crate) fn enabled(&self) -> bool {
        self.shard_budget > 0
    }

    pub(crate) fn get(&self, space: Space, key: &str) -> Option<Cached> {
        if !self.enabled() {
            return None;
        }
        // A read lock: hits on hot paths (`data`, shared values) do not serialise readers.
        let shard = self.shard(space, key).read().ok()?;
        let map = match space {
            Space::Entry => &shard.entries,
            Space::Children => &shard.children,
        };
        let slot = map.get(key)?;
        if !slot.visited.load(Ordering::Relaxed) {
            slot.visited.store(true, Ordering::Relaxed);
        }
        Some(slot.value.clone())
    }

    /// Inserts what a reader read from the snapshot of generation `generation`.
    pub(crate) fn insert(&self, space: Space, key: &str, value: Cached, generation: u64) {
        if !self.enabled() {
            return;
        }
        let weight = value.weight() + key.len() + OVERHEAD;
        if weight > self.shard_budget / 4 {
            return;
        }
        let Ok(mut shard) = self.shard(space, key).write() else {
            return;
        };
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        let k: Box<str> = key.into();
        match shard.map(space).entry(k.clone()) {
            MapEntry::Occupied(mut o) => {
                let old = o.get().weight;
                o.insert(Slot {
                    value,
                    weight,
                    visited: AtomicBool::new(true),
                });
                shard.bytes = shard.bytes - old + weight;
            }
            MapEntry::Vacant(v) => {
                v.insert(Slot {
                    value,
                    weight,
                    visited: AtomicBool::new(false),
                });
                shard.bytes += weight;
                shard.clock.push_back((space, k));
            }
        }
        let budget = self.shard_budget;
        shard.evict_until(budget);
    }

    /// The current generation: a reader reads it before it looks anything up, and passes it to
    /// [`Self::insert`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Called by the writer after publishing the snapshot of generation `generation`.
    pub(crate) fn set_generation(&self, generation: u64) {
        self.generation.store(generation, Ordering::SeqCst);
    }

    /// Forgets what is cached for a path the writer changed (its entry, its listing, and its
    /// parent's listing).
    pub(crate) fn invalidate(&self, path: &str) {
        if !self.enabled() {
            return;
        }
        self.remove(Space::Entry, path);
        self.remove(Space::Children, path);
        let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
        self.remove(Space::Children, parent);
    }

    /// [`Self::invalidate`] for each of `paths`, forgetting a parent's listing once for a run
    /// of paths that share it (a message's keys, `data/…`). Forgetting it again would change
    /// nothing: the generation moved before the first call, so a reader that read before the
    /// change cannot insert in between.
    pub(crate) fn invalidate_all<'p>(&self, paths: impl IntoIterator<Item = &'p str>) {
        if !self.enabled() {
            return;
        }
        let mut last_parent = None;
        for path in paths {
            self.remove(Space::Entry, path);
            self.remove(Space::Children, path);
            let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
            if last_parent != Some(parent) {
                self.remove(Space::Children, parent);
                last_parent = Some(parent);
            }
        }
    }

    fn remove(&self, space: Space, key: &str) {
        let Ok(mut shard) = self.shard(space, key).write() else {
            return;
        };
        if let Some(slot) = shard.map(space).remove(key) {
            shard.bytes -= slot.weight;
        }
    }

    /// Bytes currently accounted.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().map(|s| s.bytes).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn stays_within_budget_and_refuses_stale_inserts() {
        let cache = EntryCache::new(16 * 4096);
        for i in 0..10_000 {
            let v = Cached::Entry(Some(Entry::Binary(Bytes::from(vec![0u8; 100]))));
            cache.insert(Space::Entry, &format!("k{i}"), v, 0);
        }
        assert!(cache.bytes() <= 16 * 4096);
        cache.insert(Space::Entry, "fresh", Cached::Entry(None), 0);
        assert!(matches!(
            cache.get(Space::Entry, "fresh"),
            Some(Cached::Entry(None))
        ));
        cache.set_generation(1);
        cache.invalidate("fresh");
        cache.insert(Space::Entry, "fresh", Cached::Entry(None), 0);
        assert!(cache.get(Space::Entry, "fresh").is_none());
    }

    #[test]
    fn invalidating_many_paths_forgets_their_entries_listings_and_parents_listings() {
        let cache = EntryCache::new(1 << 20);
        let listing = || Cached::Children(Arc::from(vec!["x".to_owned()]));
        let keys = [
            (Space::Entry, "a/x"),
            (Space::Entry, "a/y"),
            (Space::Children, "a"),
            (Space::Children, "a/x"),
            (Space::Children, "b"),
            (Space::Children, ""),
            (Space::Entry, "c"),
            (Space::Children, "a/y/z"),
        ];
        for (space, key) in keys {
            let value = match space {
                Space::Entry => Cached::Entry(None),
                Space::Children => listing(),
            };
            cache.insert(space, key, value, 0);
        }
        cache.invalidate_all(["a/x", "a/y", "b/z", "d"]);
        for (space, key) in &keys[..6] {
            assert!(cache.get(*space, key).is_none(), "{space:?} {key}");
        }
        // Neither a changed path, nor a listing of one, nor a parent's.
        assert!(cache.get(Space::Entry, "c").is_some());
        assert!(cache.get(Space::Children, "a/y/z").is_some());
    }
}
