//! Bloom filters of the keys of the two record tables, so that a lookup of a key a table does
//! not hold costs no B-tree descent there.
//!
//! * The filter of `recent` lives in memory only: it is built when the store opens and
//!   starts over empty at each merge.
//! * The filter of `entries` (the main table) is stored in the database (see
//!   [`crate::main_filter`]): most keys a write looks up are new (message IDs, content
//!   hashes), and without it each is a descent of the largest tree.
//!
//! Blocked: a key sets [`BITS_PER_KEY`] bits of one 64-bit word, so a lookup reads one cache
//! line. Keys are only ever added (a merge empties `recent`, and the store then starts a new
//! filter; keys are never removed from `entries`), so concurrent readers need no lock: bits are
//! set with atomic ORs before the snapshot holding the key is published, and a reader of an
//! older snapshot at worst sees more bits set than it needs (a false positive: one lookup).
//!
//! The hash is [`key_hash`], defined here rather than taken from a hashing crate: the main
//! table's filter is stored, so its hash must never change (`docs/store-format.md`).

use std::sync::atomic::{AtomicU64, Ordering};

/// Bits set per key, within one word.
const BITS_PER_KEY: u32 = 4;
/// Filter bits per key of the planned capacity of `recent`'s filter: with four bits in one
/// word, about 1 % false positives at capacity.
pub(crate) const RECENT_BITS_PER_KEY: u64 = 16;
/// The smallest filter, in words (8 KiB).
const MIN_WORDS: u64 = 1 << 10;
/// The largest filter, in words (256 MiB, for 128M keys at 16 bits): past it, false positives
/// grow.
const MAX_WORDS: u64 = 1 << 25;

/// The 64-bit hash of a key the filters use (stored filters depend on it: it never changes).
///
/// The key is read as little-endian 8-byte words (the last one zero-padded); starting from
/// `SEED ^ len * M`, each word is mixed in as `h = (h ^ w) * M; h ^= h >> 29`, and the result
/// goes through the 64-bit finaliser of MurmurHash3.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    const SEED: u64 = 0x5eed_0a0c_0de5_7023;
    const M: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = SEED ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(M);
        h ^= h >> 29;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(M);
        h ^= h >> 29;
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[derive(Debug)]
pub(crate) struct KeyFilter {
    words: Box<[AtomicU64]>,
}

impl KeyFilter {
    /// A filter for `keys` keys at `bits_per_key` bits each.
    pub(crate) fn with_capacity(keys: u64, bits_per_key: u64) -> Self {
        let words = (keys.saturating_mul(bits_per_key) / 64).clamp(MIN_WORDS, MAX_WORDS);
        Self {
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The filter whose words are `words`.
    pub(crate) fn from_words(words: impl IntoIterator<Item = u64>) -> Self {
        Self {
            words: words.into_iter().map(AtomicU64::new).collect(),
        }
    }

    /// The number of 64-bit words.
    pub(crate) fn len_words(&self) -> usize {
        self.words.len()
    }

    /// The words, in order.
    pub(crate) fn words(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().map(|w| w.load(Ordering::Relaxed))
    }

    /// The word a key falls in (the hash's high bits, scaled to the word count) and the bits
    /// it sets there (four 6-bit positions from the hash's low 24 bits).
    fn locate(&self, key: &[u8]) -> (usize, u64) {
        let h = key_hash(key);
        let word = ((u128::from(h) * self.words.len() as u128) >> 64) as usize;
        let mut bits = 0u64;
        let mut rest = h;
        for _ in 0..BITS_PER_KEY {
            bits |= 1 << (rest & 63);
            rest >>= 6;
        }
        (word, bits)
    }

    pub(crate) fn insert(&self, key: &[u8]) {
        let (word, bits) = self.locate(key);
        self.words[word].fetch_or(bits, Ordering::Relaxed);
    }

    /// `false`: the key was never inserted.
    pub(crate) fn may_contain(&self, key: &[u8]) -> bool {
        let (word, bits) = self.locate(key);
        self.words[word].load(Ordering::Relaxed) & bits == bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_keys_are_found_and_most_others_are_not() {
        for bits in [RECENT_BITS_PER_KEY, crate::main_filter::BITS_PER_KEY] {
            let f = KeyFilter::with_capacity(100_000, bits);
            for i in 0..100_000u32 {
                f.insert(format!("key/{i}").as_bytes());
            }
            for i in 0..100_000u32 {
                assert!(f.may_contain(format!("key/{i}").as_bytes()), "{i}");
            }
            let false_positives = (0..100_000u32)
                .filter(|i| f.may_contain(format!("other/{i}").as_bytes()))
                .count();
            // At capacity: about 1 % with 16 bits a key, 3 % with 12; twice that would mean
            // a broken hash or layout.
            let bound = if bits >= 16 { 2_000 } else { 6_000 };
            assert!(false_positives < bound, "{bits} bits: {false_positives}");
        }
    }

    #[test]
    fn sizes_are_bounded() {
        assert_eq!(
            KeyFilter::with_capacity(0, 16).len_words() as u64,
            MIN_WORDS
        );
        assert_eq!(
            KeyFilter::with_capacity(u64::MAX, 16).len_words() as u64,
            MAX_WORDS
        );
    }

    /// The hash is part of the stored format: these values (computed by an independent
    /// implementation of the description of [`key_hash`]) must never change.
    #[test]
    fn the_key_hash_is_stable() {
        for (key, hash) in [
            (&b""[..], 0x8dbd_5b31_9770_317e_u64),
            (b"data", 0xc470_89d6_c030_5eec),
            (b"data/abc", 0x6aed_dc21_917e_2694),
            (
                b"4s4SlSDGx1YuVLqD3Yr2aNk7NVZqpDnPUxqmwkVRfRw/type",
                0x7e5d_1ac4_7029_1392,
            ),
        ] {
            assert_eq!(key_hash(key), hash, "{:?}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn words_round_trip() {
        let f = KeyFilter::with_capacity(1_000, 16);
        f.insert(b"a/b");
        let g = KeyFilter::from_words(f.words());
        assert!(g.may_contain(b"a/b"));
        assert_eq!(g.len_words(), f.len_words());
    }
}
