//! The in-memory file system that the emscripten-2 glue of `@permaweb/ao-loader` 0.0.49 gives
//! aos 1 (`wasm32-unknown-emscripten2`): emscripten's MEMFS with its default tree (`/tmp`,
//! `/home/web_user`, `/dev` with `null`, `tty`, `tty1`, `random`, `urandom`, `shm/tmp` and the
//! `stdin`/`stdout`/`stderr` links, `/proc/self/fd`), the standard streams open as descriptors
//! 0–2, and the same errno answers (emscripten numbering: ENOENT 44, EISDIR 31, ENOTDIR 54,
//! ENOTEMPTY 55, EBADF 8, ESPIPE 70, EINVAL 28, EEXIST 20, EACCES 2 when a path goes through a
//! file).
//!
//! The files live in the instance's host state, one file system per instance; as under
//! ao-loader they are **not** part of memory snapshots (a restored instance starts with the
//! default tree). The emscripten-4 glue has no writable file system; its modules never reach
//! this one.
//!
//! Not modelled: reads of `/dev/random` and `/dev/urandom` (random bytes under ao-loader) give
//! zeros here, so evaluation stays deterministic; duplicated descriptors (`dup3`, `F_DUPFD`)
//! copy the position rather than sharing it; `/proc/self/fd` is an empty directory; node
//! timestamps are the glue's `Date.now` counter at the time of the `stat`.

use std::collections::BTreeMap;

/// An errno value (emscripten numbering, positive).
pub(crate) type Errno = i32;

const ENOENT: Errno = 44;
const EISDIR: Errno = 31;
const ENOTDIR: Errno = 54;
const ENOTEMPTY: Errno = 55;
const EBADF: Errno = 8;
const ESPIPE: Errno = 70;
const EINVAL: Errno = 28;
const EEXIST: Errno = 20;
const EACCES: Errno = 2;
const EPERM: Errno = 63;
const ELOOP: Errno = 32;
const EBUSY: Errno = 10;
const EXDEV: Errno = 75;
const EMFILE: Errno = 33;
const EIO: Errno = 29;
const ENOTTY: Errno = 59;
const ENOSPC: Errno = 51;

/// The most bytes the regular files of one instance's file system hold together: writes past
/// it fail with `ENOSPC` (the files live in host memory, outside the guest's memory limit).
pub(crate) const MAX_FILE_BYTES: u64 = 64 << 20;

const O_ACCMODE: i32 = 2_097_155;
const O_CREAT: i32 = 64;
const O_EXCL: i32 = 128;
const O_TRUNC: i32 = 512;
const O_APPEND: i32 = 1024;
const O_DIRECTORY: i32 = 65_536;
const O_NOFOLLOW: i32 = 131_072;

const ROOT: usize = 0;
const MAX_FDS: i32 = 4096;

/// A character device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dev {
    Null,
    /// `/dev/tty`: the program's stdout (and stdin).
    Tty,
    /// `/dev/tty1`: the program's stderr.
    Tty1,
    Random,
}

#[derive(Debug)]
enum Kind {
    Dir(BTreeMap<Vec<u8>, usize>),
    File(Vec<u8>),
    Dev(Dev),
    Link(Vec<u8>),
}

#[derive(Debug)]
struct Node {
    parent: usize,
    ino: u32,
    mode: u32,
    kind: Kind,
    /// A mount point (`/proc/self/fd`): cannot be removed or renamed, a different mount.
    mount: bool,
}

#[derive(Debug, Clone)]
struct Stream {
    node: usize,
    flags: i32,
    pos: u64,
    /// The absolute path the descriptor was opened under (the base of `*at` calls).
    path: Vec<Vec<u8>>,
}

/// What a read or write on a descriptor touches.
pub(crate) enum Io<'a> {
    /// A regular file's bytes (and, for writes, the position to write at).
    File(&'a mut Vec<u8>, &'a mut u64),
    Dev(Dev),
}

/// Attributes for `stat`.
pub(crate) struct Stat {
    pub(crate) dev: u32,
    pub(crate) ino: u32,
    pub(crate) mode: u32,
    pub(crate) size: u64,
}

/// One instance's file system.
#[derive(Debug)]
pub(crate) struct MemFs {
    nodes: Vec<Option<Node>>,
    streams: BTreeMap<i32, Stream>,
}

impl MemFs {
    /// The bytes the regular files hold, together (bounded by [`MAX_FILE_BYTES`]).
    pub(crate) fn file_bytes(&self) -> u64 {
        self.nodes
            .iter()
            .flatten()
            .map(|n| match &n.kind {
                Kind::File(d) => d.len() as u64,
                _ => 0,
            })
            .sum()
    }
}

/// A path as absolute, normalized components (`.` and `..` resolved, `..` at the root dropped).
fn normalize(base: &[Vec<u8>], path: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = if path.first() == Some(&b'/') {
        Vec::new()
    } else {
        base.to_vec()
    };
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            p => out.push(p.to_vec()),
        }
    }
    out
}

/// Whether `a` is `b` or one of its ancestors.
fn is_prefix(a: &[Vec<u8>], b: &[Vec<u8>]) -> bool {
    a.len() <= b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

impl MemFs {
    /// The tree the glue builds at start-up, with stdin, stdout and stderr open.
    pub(crate) fn new() -> Self {
        let mut fs = Self {
            nodes: vec![Some(Node {
                parent: ROOT,
                ino: 1,
                mode: 0o40777,
                kind: Kind::Dir(BTreeMap::new()),
                mount: false,
            })],
            streams: BTreeMap::new(),
        };
        let dir = |fs: &mut Self, p, n: &str| fs.add(p, n, 0o40777, Kind::Dir(BTreeMap::new()));
        dir(&mut fs, ROOT, "tmp");
        let home = dir(&mut fs, ROOT, "home");
        dir(&mut fs, home, "web_user");
        let dev = dir(&mut fs, ROOT, "dev");
        fs.add(dev, "null", 0o20666, Kind::Dev(Dev::Null));
        fs.add(dev, "tty", 0o20666, Kind::Dev(Dev::Tty));
        fs.add(dev, "tty1", 0o20666, Kind::Dev(Dev::Tty1));
        fs.add(dev, "random", 0o20555, Kind::Dev(Dev::Random));
        fs.add(dev, "urandom", 0o20555, Kind::Dev(Dev::Random));
        let shm = dir(&mut fs, dev, "shm");
        dir(&mut fs, shm, "tmp");
        let proc = dir(&mut fs, ROOT, "proc");
        let this = dir(&mut fs, proc, "self");
        let fd = dir(&mut fs, this, "fd");
        if let Some(n) = fs.nodes[fd].as_mut() {
            n.mount = true;
        }
        for (name, target) in [
            ("stdin", "/dev/tty"),
            ("stdout", "/dev/tty"),
            ("stderr", "/dev/tty1"),
        ] {
            fs.add(dev, name, 0o120777, Kind::Link(target.as_bytes().to_vec()));
        }
        for (path, flags) in [("/dev/stdin", 0), ("/dev/stdout", 1), ("/dev/stderr", 1)] {
            // Cannot fail on the tree just built.
            let _ = fs.open(-100, path.as_bytes(), flags, 0);
        }
        fs
    }

    fn add(&mut self, parent: usize, name: &str, mode: u32, kind: Kind) -> usize {
        self.add_node(parent, name.as_bytes().to_vec(), mode, kind)
    }

    fn add_node(&mut self, parent: usize, name: Vec<u8>, mode: u32, kind: Kind) -> usize {
        let id = self.nodes.len();
        self.nodes.push(Some(Node {
            parent,
            ino: id as u32 + 1,
            mode,
            kind,
            mount: false,
        }));
        if let Some(Kind::Dir(entries)) = self.nodes[parent].as_mut().map(|n| &mut n.kind) {
            entries.insert(name, id);
        }
        id
    }

    fn node(&self, id: usize) -> &Node {
        self.nodes[id].as_ref().expect("a live node")
    }

    fn node_mut(&mut self, id: usize) -> &mut Node {
        self.nodes[id].as_mut().expect("a live node")
    }

    /// `name` in directory `dir`: EACCES when `dir` is not a directory.
    fn child(&self, dir: usize, name: &[u8]) -> Result<usize, Errno> {
        match &self.node(dir).kind {
            Kind::Dir(entries) => entries.get(name).copied().ok_or(ENOENT),
            _ => Err(EACCES),
        }
    }

    /// Walks `comps` from the root, following links in every component but the last (and in
    /// the last when `follow`).
    fn lookup(&self, comps: &[Vec<u8>], follow: bool, depth: u32) -> Result<usize, Errno> {
        if depth > 8 {
            return Err(ELOOP);
        }
        let mut cur = ROOT;
        for (i, name) in comps.iter().enumerate() {
            cur = self.child(cur, name)?;
            if (i + 1 < comps.len() || follow)
                && let Kind::Link(target) = &self.node(cur).kind
            {
                let at = normalize(&comps[..i], target);
                cur = self.lookup(&at, true, depth + 1)?;
            }
        }
        Ok(cur)
    }

    /// The directory a `*at` call's relative path starts from.
    fn base(&self, dirfd: i32, path: &[u8]) -> Result<Vec<Vec<u8>>, Errno> {
        if path.is_empty() {
            return Err(ENOENT);
        }
        if path[0] == b'/' || dirfd == -100 {
            return Ok(Vec::new());
        }
        Ok(self.streams.get(&dirfd).ok_or(EBADF)?.path.clone())
    }

    fn path_of(&self, mut id: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while id != ROOT {
            let parent = self.node(id).parent;
            if let Kind::Dir(entries) = &self.node(parent).kind
                && let Some((name, _)) = entries.iter().find(|(_, c)| **c == id)
            {
                out.push(name.clone());
            }
            id = parent;
        }
        out.reverse();
        out
    }

    fn is_dir(&self, id: usize) -> bool {
        matches!(self.node(id).kind, Kind::Dir(_))
    }

    /// `openat(dirfd, path, flags, mode)`: the new descriptor.
    pub(crate) fn open(
        &mut self,
        dirfd: i32,
        path: &[u8],
        flags: i32,
        mode: u32,
    ) -> Result<i32, Errno> {
        let comps = normalize(&self.base(dirfd, path)?, path);
        let mut flags = flags;
        let mut node = self.lookup(&comps, flags & O_NOFOLLOW == 0, 0).ok();
        let mut created = false;
        if flags & O_CREAT != 0 {
            match node {
                Some(_) if flags & O_EXCL != 0 => return Err(EEXIST),
                Some(_) => {}
                None => {
                    let (name, parent_path) = comps.split_last().ok_or(EINVAL)?;
                    let parent = self.lookup(parent_path, true, 0)?;
                    if !self.is_dir(parent) {
                        return Err(EPERM);
                    }
                    let mode = (mode & 0o7777) | 0o100000;
                    node = Some(self.add_node(parent, name.clone(), mode, Kind::File(Vec::new())));
                    created = true;
                }
            }
        }
        let node = node.ok_or(ENOENT)?;
        let kind = &self.node(node).kind;
        if matches!(kind, Kind::Dev(_)) {
            flags &= !O_TRUNC;
        }
        if flags & O_DIRECTORY != 0 && !matches!(kind, Kind::Dir(_)) {
            return Err(ENOTDIR);
        }
        if !created {
            match kind {
                Kind::Link(_) => return Err(ELOOP),
                Kind::Dir(_) if flags & 3 != 0 || flags & O_TRUNC != 0 => return Err(EISDIR),
                _ => {}
            }
            if flags & O_TRUNC != 0 {
                match &mut self.node_mut(node).kind {
                    Kind::File(data) => data.clear(),
                    _ => return Err(EINVAL),
                }
            }
        }
        flags &= !(O_EXCL | O_TRUNC | O_NOFOLLOW);
        let fd = self.next_fd(0)?;
        let path = self.path_of(node);
        self.streams.insert(
            fd,
            Stream {
                node,
                flags,
                pos: 0,
                path,
            },
        );
        Ok(fd)
    }

    fn next_fd(&self, from: i32) -> Result<i32, Errno> {
        (from.max(0)..=MAX_FDS)
            .find(|fd| !self.streams.contains_key(fd))
            .ok_or(EMFILE)
    }

    fn stream(&self, fd: i32) -> Result<&Stream, Errno> {
        self.streams.get(&fd).ok_or(EBADF)
    }

    /// `fd_close`.
    pub(crate) fn close(&mut self, fd: i32) -> Result<(), Errno> {
        self.streams.remove(&fd).map(|_| ()).ok_or(EBADF)
    }

    /// What a read (`write == false`) or write on `fd` goes to; a write in append mode moves
    /// to the end first.
    pub(crate) fn io(&mut self, fd: i32, write: bool) -> Result<Io<'_>, Errno> {
        let s = self.streams.get_mut(&fd).ok_or(EBADF)?;
        let acc = s.flags & O_ACCMODE;
        if (write && acc == 0) || (!write && acc == 1) {
            return Err(EBADF);
        }
        let append = s.flags & O_APPEND != 0;
        let node = self.nodes[s.node].as_mut().ok_or(EBADF)?;
        match &mut node.kind {
            Kind::Dir(_) => Err(EISDIR),
            Kind::Link(_) => Err(EINVAL),
            Kind::Dev(d) => {
                if write && *d == Dev::Random {
                    return Err(EIO);
                }
                Ok(Io::Dev(*d))
            }
            Kind::File(data) => {
                if write && append {
                    s.pos = data.len() as u64;
                }
                Ok(Io::File(data, &mut s.pos))
            }
        }
    }

    /// `fd_seek`: the new position.
    pub(crate) fn seek(&mut self, fd: i32, offset: i64, whence: i32) -> Result<u64, Errno> {
        let s = self.streams.get(&fd).ok_or(EBADF)?;
        let node = self.node(s.node);
        let size = match &node.kind {
            Kind::File(data) => data.len() as i64,
            Kind::Dir(_) => 0,
            _ => return Err(ESPIPE),
        };
        let base = match whence {
            0 => 0,
            1 => s.pos as i64,
            2 => size,
            _ => return Err(EINVAL),
        };
        let pos = offset.checked_add(base).filter(|p| *p >= 0).ok_or(EINVAL)?;
        if let Some(s) = self.streams.get_mut(&fd) {
            s.pos = pos as u64;
        }
        Ok(pos as u64)
    }

    /// Whether `fd` is open on a terminal (`Err(EBADF)` when not open).
    pub(crate) fn is_tty(&self, fd: i32) -> Result<bool, Errno> {
        let s = self.stream(fd)?;
        Ok(matches!(
            self.node(s.node).kind,
            Kind::Dev(Dev::Tty | Dev::Tty1)
        ))
    }

    /// `fcntl(fd, F_GETFL)`.
    pub(crate) fn flags(&self, fd: i32) -> Result<i32, Errno> {
        Ok(self.stream(fd)?.flags)
    }

    /// `fcntl(fd, F_SETFL, arg)`: the glue ORs the flags in.
    pub(crate) fn add_flags(&mut self, fd: i32, arg: i32) -> Result<(), Errno> {
        self.streams.get_mut(&fd).ok_or(EBADF)?.flags |= arg;
        Ok(())
    }

    /// `F_DUPFD` (`exact == false`: the lowest free descriptor ≥ `to`) and `dup3` (`exact`).
    pub(crate) fn dup(&mut self, fd: i32, to: i32, exact: bool) -> Result<i32, Errno> {
        let s = self.stream(fd)?.clone();
        let new = if exact {
            if to == fd {
                return Err(EINVAL);
            }
            self.streams.remove(&to);
            to
        } else {
            self.next_fd(to)?
        };
        self.streams.insert(new, s);
        Ok(new)
    }

    /// The parent directory and the name of the last component, as the glue's
    /// `lookupPath(path, {parent: true})` and `lookupNode` find them.
    fn parent_and_node(&self, comps: &[Vec<u8>]) -> Result<(usize, usize), Errno> {
        let (name, parent_path) = comps.split_last().ok_or(ENOENT)?;
        let parent = self.lookup(parent_path, true, 0)?;
        Ok((parent, self.child(parent, name)?))
    }

    fn detach(&mut self, parent: usize, node: usize) {
        if let Some(Kind::Dir(entries)) = self.nodes[parent].as_mut().map(|n| &mut n.kind) {
            entries.retain(|_, c| *c != node);
        }
    }

    /// Drops a node that is no longer in the tree unless a descriptor still uses it.
    fn release(&mut self, node: usize) {
        if !self.streams.values().any(|s| s.node == node) {
            self.nodes[node] = None;
        }
    }

    /// `unlinkat(dirfd, path, 0)`.
    pub(crate) fn unlink(&mut self, dirfd: i32, path: &[u8]) -> Result<(), Errno> {
        let comps = normalize(&self.base(dirfd, path)?, path);
        let (parent, node) = self.parent_and_node(&comps)?;
        if self.is_dir(node) {
            return Err(EISDIR);
        }
        self.detach(parent, node);
        self.release(node);
        Ok(())
    }

    /// `rmdir(path)` / `unlinkat(dirfd, path, AT_REMOVEDIR)`.
    pub(crate) fn rmdir(&mut self, dirfd: i32, path: &[u8]) -> Result<(), Errno> {
        let comps = normalize(&self.base(dirfd, path)?, path);
        let (parent, node) = self.parent_and_node(&comps)?;
        match &self.node(node).kind {
            Kind::Dir(entries) => {
                if self.node(node).mount {
                    return Err(EBUSY);
                }
                if !entries.is_empty() {
                    return Err(ENOTEMPTY);
                }
            }
            _ => return Err(ENOTDIR),
        }
        self.detach(parent, node);
        self.release(node);
        Ok(())
    }

    /// `renameat(olddirfd, old, newdirfd, new)`.
    pub(crate) fn rename(
        &mut self,
        (old_fd, old): (i32, &[u8]),
        (new_fd, new): (i32, &[u8]),
    ) -> Result<(), Errno> {
        let old = normalize(&self.base(old_fd, old)?, old);
        let new = normalize(&self.base(new_fd, new)?, new);
        let (old_name, old_dir_path) = old.split_last().ok_or(ENOENT)?;
        let (new_name, new_dir_path) = new.split_last().ok_or(ENOENT)?;
        let old_dir = self.lookup(old_dir_path, true, 0)?;
        let new_dir = self.lookup(new_dir_path, true, 0)?;
        if self.node(old_dir).mount != self.node(new_dir).mount {
            return Err(EXDEV);
        }
        let node = self.child(old_dir, old_name)?;
        if is_prefix(&old, new_dir_path) {
            return Err(EINVAL);
        }
        if is_prefix(&new, old_dir_path) {
            return Err(ENOTEMPTY);
        }
        if !self.is_dir(new_dir) {
            return Err(ENOTDIR);
        }
        let target = self.child(new_dir, new_name).ok();
        if target == Some(node) {
            return Ok(());
        }
        let is_dir = self.is_dir(node);
        if let Some(t) = target {
            match (is_dir, &self.node(t).kind) {
                (true, Kind::Dir(_)) | (false, Kind::File(_) | Kind::Dev(_) | Kind::Link(_)) => {}
                (true, _) => return Err(ENOTDIR),
                (false, _) => return Err(EISDIR),
            }
        }
        if self.node(node).mount || target.is_some_and(|t| self.node(t).mount) {
            return Err(EBUSY);
        }
        if target.is_some_and(|t| matches!(&self.node(t).kind, Kind::Dir(e) if !e.is_empty())) {
            return Err(ENOTEMPTY);
        }
        self.detach(old_dir, node);
        if let Some(t) = target {
            self.detach(new_dir, t);
            self.release(t);
        }
        self.node_mut(node).parent = new_dir;
        if let Kind::Dir(entries) = &mut self.node_mut(new_dir).kind {
            entries.insert(new_name.clone(), node);
        }
        Ok(())
    }

    /// `lstat(path)`: ENOTDIR when the path goes through a file (as the glue's `doStat` turns
    /// that lookup failure into).
    pub(crate) fn lstat(&self, path: &[u8]) -> Result<Stat, Errno> {
        let comps = normalize(&[], path);
        let node = match self.lookup(&comps, false, 0) {
            Err(EACCES) => return Err(ENOTDIR),
            r => r?,
        };
        let n = self.node(node);
        let size = match &n.kind {
            Kind::Dir(_) => 4096,
            Kind::File(d) => d.len() as u64,
            Kind::Link(t) => t.len() as u64,
            Kind::Dev(_) => 0,
        };
        let dev = if matches!(n.kind, Kind::Dev(_)) {
            n.ino
        } else {
            1
        };
        Ok(Stat {
            dev,
            ino: n.ino,
            mode: n.mode,
            size,
        })
    }

    /// `ioctl` on a descriptor that is not a terminal, or on none.
    pub(crate) const ENOTTY: Errno = ENOTTY;
    pub(crate) const ENOSPC: Errno = ENOSPC;
}
