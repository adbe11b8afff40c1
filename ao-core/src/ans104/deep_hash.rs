//! Arweave's deep hash (SHA-384 over a tree of blobs and lists, spec §5.5.2).

use sha2::{Digest as _, Sha384};

/// A node of the structure a deep hash is taken over.
#[derive(Debug, Clone, Copy)]
pub enum Chunk<'a> {
    /// A byte string.
    Blob(&'a [u8]),
    /// A list of nodes.
    List(&'a [Chunk<'a>]),
}

/// `deep_hash(blob) = sha384(sha384("blob" ‖ len) ‖ sha384(blob))`;
/// `deep_hash(list) = fold(acc = sha384("list" ‖ count); acc = sha384(acc ‖ deep_hash(item)))`.
pub fn deep_hash(chunk: Chunk<'_>) -> [u8; 48] {
    match chunk {
        Chunk::Blob(b) => blob(b),
        Chunk::List(items) => list(items.iter().map(|c| deep_hash(*c))),
    }
}

/// The deep hash of one blob.
pub fn blob(data: &[u8]) -> [u8; 48] {
    let tag = Sha384::digest(format!("blob{}", data.len()).as_bytes());
    let body = Sha384::digest(data);
    let mut h = Sha384::new();
    h.update(tag);
    h.update(body);
    h.finalize().into()
}

/// The deep hash of a list whose items' deep hashes are given.
pub fn list(item_hashes: impl ExactSizeIterator<Item = [u8; 48]>) -> [u8; 48] {
    let mut acc: [u8; 48] = Sha384::digest(format!("list{}", item_hashes.len()).as_bytes()).into();
    for h in item_hashes {
        let mut s = Sha384::new();
        s.update(acc);
        s.update(h);
        acc = s.finalize().into();
    }
    acc
}

/// The deep hash of a list of blobs.
pub fn list_of_blobs(blobs: &[&[u8]]) -> [u8; 48] {
    list(blobs.iter().map(|b| blob(b)))
}
