//! A Bloom filter of the keys of the `recent` table, so that a lookup of a key `recent` does
//! not hold (most lookups, once `recent` has been merged into the main table) costs no
//! B-tree descent there.
//!
//! Blocked: a key sets [`BITS_PER_KEY`] bits of one 64-bit word, so a lookup reads one cache
//! line. Keys are only ever added (a merge empties `recent`, and the store then starts a new
//! filter), so concurrent readers need no lock: bits are set with atomic ORs before the snapshot
//! holding the key is published, and a reader of an older snapshot at worst sees more bits set
//! than it needs (a false positive: one lookup in `recent`).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bits set per key, within one word.
const BITS_PER_KEY: u32 = 4;
/// Filter bits per key of the planned capacity: with four bits in one word, about 1 % false
/// positives at capacity.
const BITS_PER_PLANNED_KEY: u64 = 16;
/// The smallest filter, in words (8 KiB).
const MIN_WORDS: u64 = 1 << 10;
/// The largest filter, in words (32 MiB, for 16M keys): past it, false positives grow.
const MAX_WORDS: u64 = 1 << 22;

#[derive(Debug)]
pub(crate) struct KeyFilter {
    words: Box<[AtomicU64]>,
    mask: u64,
}

impl KeyFilter {
    /// A filter sized for `keys` keys.
    pub(crate) fn with_capacity(keys: u64) -> Self {
        let words = (keys.saturating_mul(BITS_PER_PLANNED_KEY) / 64)
            .clamp(MIN_WORDS, MAX_WORDS)
            .next_power_of_two();
        Self {
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            mask: words - 1,
        }
    }

    /// The word a key falls in and the bits it sets there.
    fn locate(&self, key: &[u8]) -> (usize, u64) {
        let h = foldhash::fast::FixedState::with_seed(0x5eed).hash_one(key);
        let word = (h & self.mask) as usize;
        // Bit positions from the upper bits, which the word index does not use (`mask` is
        // below 2^22).
        let mut bits = 0u64;
        let mut rest = h >> 32;
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
        let f = KeyFilter::with_capacity(10_000);
        for i in 0..10_000u32 {
            f.insert(format!("key/{i}").as_bytes());
        }
        for i in 0..10_000u32 {
            assert!(f.may_contain(format!("key/{i}").as_bytes()), "{i}");
        }
        let false_positives = (0..10_000u32)
            .filter(|i| f.may_contain(format!("other/{i}").as_bytes()))
            .count();
        // About 1 % at capacity; 5 % would mean a broken hash or layout.
        assert!(false_positives < 500, "{false_positives}");
    }

    #[test]
    fn sizes_are_bounded() {
        assert_eq!(KeyFilter::with_capacity(0).words.len() as u64, MIN_WORDS);
        assert_eq!(
            KeyFilter::with_capacity(u64::MAX).words.len() as u64,
            MAX_WORDS
        );
    }
}
