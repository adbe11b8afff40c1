//! The memtable: acknowledged writes that the write-ahead log holds but redb does not yet.
//!
//! With a write-ahead log, a group commit is durable once its log record is `fdatasync`ed. The
//! writer then applies the group's ops to the memtable (a sorted map of the resulting entries,
//! computed with the semantics of [`ao_core::store::apply_to_map`] over what the store already
//! holds) and answers its callers; reads consult the memtable before redb. A *checkpoint*
//! later writes the whole memtable into redb in one transaction, which amortises redb's
//! per-commit cost over many groups. The writer first *freezes* it (readers go on reading it,
//! under the new empty memtable, until the checkpoint publishes the snapshot holding it), so
//! a checkpoint runs on its own thread while groups keep being logged and applied.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher as _;
use std::sync::RwLock;

use ao_core::store::Entry;

/// Approximate bookkeeping bytes per memtable entry (the map node, the key, the entry, the
/// path's hash).
const OVERHEAD: u64 = 120;

/// A memtable key: the path, with its first 16 bytes also held inline as a big-endian
/// number. Keys order exactly as their paths do bytewise, but a search of the map compares
/// the inline numbers and only reads a path's bytes (another cache line, often another
/// cache miss) when their first 16 bytes are equal: content-addressed paths (`data/<hash>`,
/// message IDs) differ within them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathKey {
    head: u128,
    path: Box<str>,
}

impl PathKey {
    pub(crate) fn new(path: impl Into<Box<str>>) -> Self {
        let path = path.into();
        Self {
            head: head_of(&path),
            path,
        }
    }

    #[cfg(test)]
    pub(crate) fn as_str(&self) -> &str {
        &self.path
    }
}

/// The first 16 bytes of `path` (zero-padded) as a big-endian number.
#[expect(
    clippy::big_endian_bytes,
    reason = "in memory only, never stored: big-endian makes the number order as the bytes do"
)]
fn head_of(path: &str) -> u128 {
    let mut head = [0u8; 16];
    let n = path.len().min(16);
    head[..n].copy_from_slice(&path.as_bytes()[..n]);
    u128::from_be_bytes(head)
}

/// A key of the map as its search sees it, so that a search by a borrowed path ([`PathRef`])
/// compares the inline heads too (a search by `&str` reads every visited key's path).
trait KeyView {
    fn head(&self) -> u128;
    fn path(&self) -> &str;
}

impl KeyView for PathKey {
    fn head(&self) -> u128 {
        self.head
    }
    fn path(&self) -> &str {
        &self.path
    }
}

/// A path to search the map by, its head computed once.
struct PathRef<'a> {
    head: u128,
    path: &'a str,
}

impl KeyView for PathRef<'_> {
    fn head(&self) -> u128 {
        self.head
    }
    fn path(&self) -> &str {
        self.path
    }
}

impl<'a> Borrow<dyn KeyView + 'a> for PathKey {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

/// [`PathKey`]'s order.
impl Ord for dyn KeyView + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        self.head()
            .cmp(&other.head())
            .then_with(|| self.path().as_bytes().cmp(other.path().as_bytes()))
    }
}

impl PartialOrd for dyn KeyView + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.head() == other.head() && self.path() == other.path()
    }
}

impl Eq for dyn KeyView + '_ {}

/// The entry at `path` in a map keyed by [`PathKey`]s.
pub(crate) fn lookup<'m, V>(map: &'m BTreeMap<PathKey, V>, path: &str) -> Option<&'m V> {
    let key = PathRef {
        head: head_of(path),
        path,
    };
    map.get(&key as &dyn KeyView)
}

/// The key of a sorted map of changes (the memtable's [`PathKey`]s, or the `String`s of a
/// group committed without a log), with its fastest lookup.
pub(crate) trait ChangeKey: Borrow<str> + Ord + Sized {
    /// The entry at `path` in `map`.
    fn find<'m>(map: &'m BTreeMap<Self, Entry>, path: &str) -> Option<&'m Entry>;
}

impl ChangeKey for PathKey {
    fn find<'m>(map: &'m BTreeMap<Self, Entry>, path: &str) -> Option<&'m Entry> {
        lookup(map, path)
    }
}

impl ChangeKey for String {
    fn find<'m>(map: &'m BTreeMap<Self, Entry>, path: &str) -> Option<&'m Entry> {
        map.get(path)
    }
}

/// Bytewise order of the paths: zero-padding the first 16 bytes never orders a path after
/// one it precedes (a shorter path's padding is at most the byte the longer one has there),
/// and equal heads fall back to the paths themselves.
impl Ord for PathKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.head
            .cmp(&other.head)
            .then_with(|| self.path.as_bytes().cmp(other.path.as_bytes()))
    }
}

impl PartialOrd for PathKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Lookups by `&str` use `str`'s order, which is the keys' own (see [`Ord`]).
impl Borrow<str> for PathKey {
    fn borrow(&self) -> &str {
        &self.path
    }
}

/// A sorted map of entries shared by the writer (which alone modifies it) and readers.
#[derive(Debug, Default)]
pub(crate) struct Memtable {
    map: RwLock<MemMap>,
}

/// The memtable's entries, sorted by path, with the set of the paths' hashes: most lookups
/// are of paths the memtable does not hold (new messages, or paths redb holds), and a set
/// of hashes answers those without the string comparisons of a search of the sorted map
/// (paths share long prefixes).
#[derive(Debug, Default)]
pub(crate) struct MemMap {
    entries: BTreeMap<PathKey, Entry>,
    hashes: HashSet<u64, foldhash::fast::FixedState>,
}

/// The hash of a path (fixed seed: a memtable and its frozen predecessor share it, so a
/// lookup through both hashes once).
fn path_hash(path: &str) -> u64 {
    foldhash::fast::FixedState::default().hash_one(path)
}

impl MemMap {
    /// An empty map.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The entry at `path`.
    pub(crate) fn get(&self, path: &str) -> Option<&Entry> {
        self.get_hashed(path, path_hash(path))
    }

    /// [`Self::get`] given the path's hash.
    fn get_hashed(&self, path: &str, hash: u64) -> Option<&Entry> {
        if !self.hashes.contains(&hash) {
            return None;
        }
        lookup(&self.entries, path)
    }

    /// Sets `path` to `entry`.
    pub(crate) fn insert(&mut self, path: String, entry: Entry) {
        self.hashes.insert(path_hash(&path));
        self.entries.insert(PathKey::new(path), entry);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, sorted by path.
    pub(crate) fn entries(&self) -> &BTreeMap<PathKey, Entry> {
        &self.entries
    }
}

/// The entry at `path` in the newer map, else in the older one (a memtable and the frozen
/// one under it), hashing the path once.
pub(crate) fn get_in<'m>(
    newer: &'m MemMap,
    older: Option<&'m MemMap>,
    path: &str,
) -> Option<&'m Entry> {
    if newer.is_empty() && older.is_none_or(MemMap::is_empty) {
        return None;
    }
    let hash = path_hash(path);
    newer
        .get_hashed(path, hash)
        .or_else(|| older.and_then(|o| o.get_hashed(path, hash)))
}

impl Memtable {
    /// The entry at exactly `path`, if the memtable holds one.
    pub(crate) fn get(&self, path: &str) -> Option<Entry> {
        let map = self.map.read().ok()?;
        if map.is_empty() {
            return None;
        }
        map.get(path).cloned()
    }

    /// The direct children of `path` the memtable holds, with their entries, in name order.
    pub(crate) fn child_entries(&self, path: &str) -> Vec<(String, Entry)> {
        let Ok(map) = self.map.read() else {
            return Vec::new();
        };
        if map.is_empty() {
            return Vec::new();
        }
        direct_children(&map.entries, path)
            .map(|(child, e)| (child.to_owned(), e.clone()))
            .collect()
    }

    /// The writer's handle: the map, locked for writing.
    pub(crate) fn write(&self) -> std::sync::RwLockWriteGuard<'_, MemMap> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The map, locked for reading (the checkpoint).
    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, MemMap> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// The bytes an entry at `path` is accounted for.
pub(crate) fn weight(path: &str, entry: &Entry) -> u64 {
    let payload = match entry {
        Entry::Binary(b) => b.len(),
        Entry::Link(t) => t.len(),
        Entry::Group => 0,
    };
    (path.len() + payload) as u64 + OVERHEAD
}

/// The direct children of `path` in a sorted map: the keys `path/<child>`, skipping the
/// subtree below each child with one seek (every key under `path/<child>/` sorts before
/// `path/<child>0`).
fn direct_children<'m, K: Borrow<str> + Ord>(
    map: &'m BTreeMap<K, Entry>,
    path: &str,
) -> impl Iterator<Item = (&'m str, &'m Entry)> + 'm {
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let mut start = prefix.clone();
    let mut done = false;
    std::iter::from_fn(move || {
        while !done {
            let Some((k, e)) = map
                .range::<str, _>((
                    std::ops::Bound::Included(start.as_str()),
                    std::ops::Bound::Unbounded,
                ))
                .next()
            else {
                done = true;
                return None;
            };
            let k: &str = k.borrow();
            let Some(rest) = k.strip_prefix(prefix.as_str()) else {
                done = true;
                return None;
            };
            match rest.find('/') {
                None => {
                    // The next candidate is the first key after this one.
                    start = format!("{k}\0");
                    if rest.is_empty() {
                        continue;
                    }
                    return Some((rest, e));
                }
                Some(i) => {
                    start = format!("{prefix}{}0", &rest[..i]);
                }
            }
        }
        None
    })
}

/// Merges two lists of children sorted by name; on equal names `newer` wins.
pub(crate) fn merge_sorted<T>(
    older: Vec<(String, T)>,
    newer: Vec<(String, T)>,
) -> Vec<(String, T)> {
    if newer.is_empty() {
        return older;
    }
    let mut out = Vec::with_capacity(older.len() + newer.len());
    let mut a = older.into_iter().peekable();
    let mut b = newer.into_iter().peekable();
    loop {
        match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => match x.0.as_bytes().cmp(y.0.as_bytes()) {
                std::cmp::Ordering::Less => out.extend(a.next()),
                std::cmp::Ordering::Greater => out.extend(b.next()),
                std::cmp::Ordering::Equal => {
                    a.next();
                    out.extend(b.next());
                }
            },
            (Some(_), None) => out.extend(a.next()),
            (None, Some(_)) => out.extend(b.next()),
            (None, None) => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn direct_children_skip_subtrees_and_keep_name_order() {
        let mut map = BTreeMap::new();
        let long = "a/0123456789abcdef-long";
        for k in [
            "a", "a/b", "a/b/c", "a/b/c/d", "a/b-x", "a/c", long, "ab", "b",
        ] {
            map.insert(PathKey::new(k), Entry::Group);
        }
        let names: Vec<_> = direct_children(&map, "a").map(|(c, _)| c).collect();
        assert_eq!(names, ["0123456789abcdef-long", "b", "b-x", "c"]);
        let root: Vec<_> = direct_children(&map, "").map(|(c, _)| c).collect();
        assert_eq!(root, ["a", "ab", "b"]);
        assert_eq!(direct_children(&map, "b").count(), 0);
        assert_eq!(map.get(long), Some(&Entry::Group));
        assert_eq!(map.get("a/0123456789abcdef-lonG"), None);
    }

    /// Paths over a small alphabet (with `\0`, `/` and bytes above ASCII), so that long
    /// shared prefixes, prefixes of one another and zero bytes at the padding's place occur.
    fn path() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::collection::vec(
            proptest::sample::select(vec!['\0', '/', '0', 'a', 'b', '\u{7f}', 'é']),
            0..24,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    use proptest::prelude::*;

    proptest! {
        /// Keys order exactly as their paths do (the `Borrow<str>` contract), and lookups by
        /// `&str` and by [`lookup`] find them.
        #[test]
        fn path_keys_order_as_their_paths(a in path(), b in path(), more in proptest::collection::vec(path(), 0..40)) {
            prop_assert_eq!(
                PathKey::new(a.as_str()).cmp(&PathKey::new(b.as_str())),
                a.as_bytes().cmp(b.as_bytes())
            );
            prop_assert_eq!(PathKey::new(a.as_str()) == PathKey::new(b.as_str()), a == b);
            let keyed: BTreeMap<PathKey, usize> =
                more.iter().enumerate().map(|(i, p)| (PathKey::new(p.as_str()), i)).collect();
            let plain: BTreeMap<&str, usize> =
                more.iter().enumerate().map(|(i, p)| (p.as_str(), i)).collect();
            prop_assert!(keyed.keys().map(PathKey::as_str).eq(plain.keys().copied()));
            for p in more.iter().chain([&a]) {
                prop_assert_eq!(keyed.get(p.as_str()), plain.get(p.as_str()));
                prop_assert_eq!(lookup(&keyed, p), plain.get(p.as_str()));
                prop_assert!(keyed
                    .range::<str, _>((std::ops::Bound::Included(p.as_str()), std::ops::Bound::Unbounded))
                    .map(|(k, _)| k.as_str())
                    .eq(plain.range::<&str, _>(p.as_str()..).map(|(k, _)| *k)));
            }
        }
    }

    #[test]
    fn lookups_find_the_newer_map_first_and_miss_what_neither_holds() {
        let bin = |s: &'static str| Entry::Binary(Bytes::from_static(s.as_bytes()));
        let (mut newer, mut older) = (MemMap::new(), MemMap::new());
        assert_eq!(get_in(&newer, Some(&older), "a"), None);
        older.insert("a".into(), bin("old"));
        older.insert("b".into(), bin("old"));
        newer.insert("b".into(), bin("new"));
        assert_eq!(get_in(&newer, Some(&older), "a"), Some(&bin("old")));
        assert_eq!(get_in(&newer, Some(&older), "b"), Some(&bin("new")));
        assert_eq!(get_in(&newer, None, "a"), None);
        assert_eq!(get_in(&newer, Some(&older), "c"), None);
        assert_eq!(older.get("b"), Some(&bin("old")));
        assert_eq!(older.entries().len(), 2);
    }

    #[test]
    fn merge_prefers_the_newer_entry() {
        let bin = |s: &'static str| Entry::Binary(Bytes::from_static(s.as_bytes()));
        let older = vec![("a".into(), bin("1")), ("c".into(), bin("3"))];
        let newer = vec![("b".into(), bin("2")), ("c".into(), bin("new"))];
        let merged = merge_sorted(older, newer);
        assert_eq!(
            merged,
            vec![
                ("a".into(), bin("1")),
                ("b".into(), bin("2")),
                ("c".into(), bin("new"))
            ]
        );
    }
}
