//! The store as the resolver sees it (spec §8.1), and an in-memory implementation.
//!
//! A store is a tree of `/`-separated paths. Each path is a *binary* (raw bytes), a *group* (a
//! directory whose children are the paths one segment below it) or a *link* (an alias of another
//! path). Links may stand at any prefix of a path and are followed segment by segment.
//!
//! The trait is synchronous: reads are microseconds (an in-memory map, or redb's memory-mapped
//! B-tree behind a cache), and a boxed future per read would cost more than the read itself.
//! Durable writes go through [`Store::apply`], one atomic batch per call, which a store may
//! commit together with other callers' batches (group commit).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::RwLock;

use bytes::Bytes;

use crate::{Error, Result};

/// How many links [`Store::resolve`] follows before reporting a cycle.
pub const MAX_LINK_HOPS: usize = 64;

/// What a path holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Raw bytes (HyperBEAM's `simple`).
    Binary,
    /// A group of children (HyperBEAM's `composite`).
    Group,
}

/// One write in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Writes bytes at a path (creating the groups above it).
    Write {
        /// Where.
        path: String,
        /// What.
        value: Bytes,
    },
    /// Creates an empty group (and the groups above it).
    MakeGroup {
        /// Where.
        path: String,
    },
    /// Makes `new` an alias of `existing`. A no-op when they are equal.
    MakeLink {
        /// The target.
        existing: String,
        /// The alias.
        new: String,
    },
}

/// A key-value store with groups and links.
pub trait Store: Send + Sync + Debug + 'static {
    /// Applies a batch of writes atomically. When this returns `Ok`, the batch is as durable as
    /// the store is configured to make it.
    fn apply(&self, ops: Vec<Op>) -> Result<()>;

    /// Applies a batch of *derived* writes atomically: data the node can recompute if a crash
    /// loses it (computed results, state snapshots, caches). The store may answer before the
    /// batch is durable, but the batch stays atomic, is visible to reads when this returns, and
    /// is never made durable before a batch applied earlier. Stores that do not distinguish
    /// (the default) apply it like [`Store::apply`].
    fn apply_deferred(&self, ops: Vec<Op>) -> Result<()> {
        self.apply(ops)
    }

    /// The raw entry at exactly `path`, without following links.
    fn get_raw(&self, path: &str) -> Result<Option<Entry>>;

    /// The names of the direct children of the group at exactly `path` (links not followed).
    fn children(&self, path: &str) -> Result<Vec<String>>;

    /// The direct children of the group at exactly `path` with their raw entries (links not
    /// followed), in the order of [`Store::children`]. One call instead of one
    /// [`Store::get_raw`] per child: a store that keeps children together (redb's range scan)
    /// reads them at once.
    fn child_entries(&self, path: &str) -> Result<Vec<(String, Entry)>> {
        let mut out = Vec::new();
        for child in self.children(path)? {
            if let Some(entry) = self.get_raw(&join(&[path, &child]))? {
                out.push((child, entry));
            }
        }
        Ok(out)
    }

    /// The direct children of the group at exactly `path` with their links followed, in the
    /// order of [`Store::children`]: each child's binary, or the resolved path of its group. A
    /// child whose link leads nowhere is left out. The default is one
    /// [`Store::child_entries`] call plus one [`Store::resolve_entry`] per link; a store that
    /// keeps a copy of a content-addressed link target beside the link answers most of them
    /// from one read.
    fn resolved_children(&self, path: &str) -> Result<Vec<(String, Resolved)>> {
        let mut out = Vec::new();
        for (child, entry) in self.child_entries(path)? {
            // `path` is resolved, so only the child itself can be a link.
            let (resolved, entry) = match entry {
                Entry::Link(target) => self.resolve_entry(&target)?,
                entry => (join(&[path, &child]), Some(entry)),
            };
            match entry {
                Some(Entry::Binary(b)) => out.push((child, Resolved::Binary(b))),
                Some(Entry::Group) => out.push((child, Resolved::Group(resolved))),
                Some(Entry::Link(_)) | None => {}
            }
        }
        Ok(out)
    }

    /// Follows links segment by segment and returns the final path.
    fn resolve(&self, path: &str) -> Result<String> {
        resolve_links(self, path)
    }

    /// Follows links like [`Store::resolve`] and returns the final path with its raw entry (a
    /// link never: the final path has no link at any prefix). A store may answer both from one
    /// walk instead of a `resolve` and a `get_raw`.
    fn resolve_entry(&self, path: &str) -> Result<(String, Option<Entry>)> {
        let resolved = self.resolve(path)?;
        let entry = self.get_raw(&resolved)?;
        Ok((resolved, entry))
    }

    /// Reads the bytes at a path, following links. A group or a missing path is `None`.
    fn read(&self, path: &str) -> Result<Option<Bytes>> {
        Ok(match self.resolve_entry(path)?.1 {
            Some(Entry::Binary(b)) => Some(b),
            _ => None,
        })
    }

    /// What a path holds, following links.
    fn kind(&self, path: &str) -> Result<Option<Kind>> {
        Ok(match self.resolve_entry(path)?.1 {
            Some(Entry::Binary(_)) => Some(Kind::Binary),
            Some(Entry::Group) => Some(Kind::Group),
            Some(Entry::Link(_)) | None => None,
        })
    }

    /// The children of a group, following links. `None` if the path is not a group.
    fn list(&self, path: &str) -> Result<Option<Vec<String>>> {
        let (p, entry) = self.resolve_entry(path)?;
        match entry {
            Some(Entry::Group) => Ok(Some(self.children(&p)?)),
            _ => Ok(None),
        }
    }

    /// Writes one binary.
    fn write(&self, path: &str, value: Bytes) -> Result<()> {
        self.apply(vec![Op::Write {
            path: path.to_owned(),
            value,
        }])
    }

    /// Creates one group.
    fn make_group(&self, path: &str) -> Result<()> {
        self.apply(vec![Op::MakeGroup {
            path: path.to_owned(),
        }])
    }

    /// Creates one link.
    fn make_link(&self, existing: &str, new: &str) -> Result<()> {
        self.apply(vec![Op::MakeLink {
            existing: existing.to_owned(),
            new: new.to_owned(),
        }])
    }
}

/// A raw store entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Bytes.
    Binary(Bytes),
    /// A link to another path.
    Link(String),
    /// A group.
    Group,
}

/// A child of a group with its links followed ([`Store::resolved_children`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// The bytes the child resolves to.
    Binary(Bytes),
    /// The child resolves to a group: its path (with no link at any prefix).
    Group(String),
}

/// Normalises a path: `/`-joined, empty segments removed.
pub fn join(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for p in parts {
        for seg in p.split('/').filter(|s| !s.is_empty()) {
            if !out.is_empty() {
                out.push('/');
            }
            out.push_str(seg);
        }
    }
    out
}

/// [`join`] of one owned path, which it returns as it is when it is already normalised (no
/// empty segment): what stores do with the paths of the ops they apply, most of which are.
pub fn normalize_path(path: String) -> String {
    let normal = !path.starts_with('/') && !path.ends_with('/') && !path.contains("//");
    if normal { path } else { join(&[&path]) }
}

/// Segment-wise link resolution shared by every store.
pub fn resolve_links<S: Store + ?Sized>(store: &S, path: &str) -> Result<String> {
    let mut segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let mut hops = 0;
    let mut i = 0;
    let mut prefix = String::new();
    while i < segments.len() {
        let candidate = if prefix.is_empty() {
            segments[i].clone()
        } else {
            format!("{prefix}/{}", segments[i])
        };
        match store.get_raw(&candidate)? {
            Some(Entry::Link(target)) => {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(Error::Store(format!("link cycle resolving {path:?}")));
                }
                // Restart from the link target with the remaining segments appended.
                let mut rest: Vec<String> = target
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                rest.extend(segments.drain(i + 1..));
                segments = rest;
                prefix.clear();
                i = 0;
            }
            _ => {
                prefix = candidate;
                i += 1;
            }
        }
    }
    Ok(prefix)
}

/// An in-memory store: a sorted map behind a lock. Used by tests and by embedders who need no
/// durability.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: RwLock<BTreeMap<String, Entry>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Applies one op to a sorted map of entries (shared by in-memory implementations and tests).
pub fn apply_to_map(map: &mut BTreeMap<String, Entry>, op: Op) -> Result<()> {
    fn ensure_parents(map: &mut BTreeMap<String, Entry>, path: &str) {
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            let parent = &path[..end + i];
            if !matches!(map.get(parent), Some(Entry::Link(_))) {
                map.insert(parent.to_owned(), Entry::Group);
            }
            end += i + 1;
        }
    }
    match op {
        Op::Write { path, value } => {
            let path = join(&[&path]);
            if path.is_empty() {
                return Err(Error::Store("empty path".into()));
            }
            ensure_parents(map, &path);
            map.insert(path, Entry::Binary(value));
        }
        Op::MakeGroup { path } => {
            let path = join(&[&path]);
            if path.is_empty() {
                return Ok(());
            }
            ensure_parents(map, &path);
            if !matches!(map.get(&path), Some(Entry::Group)) {
                map.insert(path, Entry::Group);
            }
        }
        Op::MakeLink { existing, new } => {
            let (existing, new) = (join(&[&existing]), join(&[&new]));
            if existing == new || new.is_empty() {
                return Ok(());
            }
            ensure_parents(map, &new);
            map.insert(new, Entry::Link(existing));
        }
    }
    Ok(())
}

/// Direct children of `path` in a sorted map of entries, sorted and without duplicates.
pub fn children_in_map(map: &BTreeMap<String, Entry>, path: &str) -> Vec<String> {
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    // A set, not "skip if equal to the last one": descendants of `b` (`b/…`) sort after a
    // sibling such as `b-x` ('-' < '/'), so first segments do not arrive grouped.
    let mut out = std::collections::BTreeSet::new();
    for (k, _) in map.range(prefix.clone()..) {
        let Some(rest) = k.strip_prefix(&prefix) else {
            break;
        };
        let child = rest.split('/').next().unwrap_or(rest);
        if !child.is_empty() {
            out.insert(child);
        }
    }
    out.into_iter().map(str::to_owned).collect()
}

/// Checks a batch before applying any of it, so that an invalid batch changes nothing.
pub fn validate_ops(ops: &[Op]) -> Result<()> {
    for op in ops {
        if let Op::Write { path, .. } = op
            && join(&[path]).is_empty()
        {
            return Err(Error::Store("empty path".into()));
        }
    }
    Ok(())
}

impl Store for MemoryStore {
    fn apply(&self, ops: Vec<Op>) -> Result<()> {
        validate_ops(&ops)?;
        let mut map = self
            .entries
            .write()
            .map_err(|_| Error::Store("lock poisoned".into()))?;
        for op in ops {
            apply_to_map(&mut map, op)?;
        }
        Ok(())
    }

    fn get_raw(&self, path: &str) -> Result<Option<Entry>> {
        let map = self
            .entries
            .read()
            .map_err(|_| Error::Store("lock poisoned".into()))?;
        Ok(map.get(path).cloned())
    }

    fn children(&self, path: &str) -> Result<Vec<String>> {
        let map = self
            .entries
            .read()
            .map_err(|_| Error::Store("lock poisoned".into()))?;
        Ok(children_in_map(&map, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path of up to seven characters over `a`, `b` and `/`: `normalize_path` gives
    /// what `join` does.
    #[test]
    fn normalize_path_is_join() {
        let mut paths = vec![String::new()];
        let mut frontier = paths.clone();
        for _ in 0..7 {
            frontier = frontier
                .iter()
                .flat_map(|p| ["a", "b", "/"].map(|c| format!("{p}{c}")))
                .collect();
            paths.extend(frontier.iter().cloned());
        }
        for p in paths {
            assert_eq!(normalize_path(p.clone()), join(&[&p]), "{p:?}");
        }
        assert_eq!(join(&["/a//b/", "", "c/"]), "a/b/c");
    }

    #[test]
    fn links_resolve_at_any_prefix() {
        let s = MemoryStore::new();
        s.write("group/a/b", Bytes::from_static(b"x")).unwrap();
        s.make_link("group", "alias").unwrap();
        s.make_link("alias/a", "deep").unwrap();
        assert_eq!(s.read("alias/a/b").unwrap().unwrap(), "x");
        assert_eq!(s.read("deep/b").unwrap().unwrap(), "x");
        assert_eq!(s.kind("alias").unwrap(), Some(Kind::Group));
        assert_eq!(s.list("alias").unwrap().unwrap(), vec!["a".to_owned()]);
        s.make_link("loop1", "loop2").unwrap();
        s.make_link("loop2", "loop1").unwrap();
        assert!(s.read("loop1/x").is_err());
    }

    #[test]
    fn children_are_unique_when_siblings_sort_between_a_child_and_its_subtree() {
        let s = MemoryStore::new();
        s.write("a/b/c", Bytes::from_static(b"1")).unwrap();
        s.write("a/b-x", Bytes::from_static(b"2")).unwrap();
        assert_eq!(
            s.children("a").unwrap(),
            vec!["b".to_owned(), "b-x".to_owned()]
        );
    }

    #[test]
    fn an_invalid_batch_changes_nothing() {
        let s = MemoryStore::new();
        let ops = vec![
            Op::Write {
                path: "x".into(),
                value: Bytes::from_static(b"1"),
            },
            Op::Write {
                path: "/".into(),
                value: Bytes::from_static(b"2"),
            },
        ];
        assert!(s.apply(ops).is_err());
        assert_eq!(s.get_raw("x").unwrap(), None);
    }
}
