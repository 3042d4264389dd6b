//! The search's memory: the set of linearized operations and the cache of visited
//! configurations.
//!
//! A configuration is (set of linearized operations, register state). Two paths of the search
//! that reach the same configuration have the same future, so the second is pruned (Lowe's
//! improvement to Wing & Gong, as in Porcupine).
//!
//! Operations are numbered with the ones of known outcome first, in call order, then the ones of
//! unknown outcome, each part starting on a word boundary. In a depth-first search over a
//! history with bounded concurrency the known part of the set is "all ones up to a frontier, a
//! short window, then zeros", and the unknown part is short, so a configuration is stored as a
//! compact, canonical encoding rather than a full bitset: the cache stays small for long
//! histories.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The set of linearized operations as a bitset, with an incrementally maintained hash
/// (Zobrist: the xor of one pseudo-random word per member) and the bounds its encoding needs.
#[derive(Debug)]
pub(crate) struct LinearizedSet {
    words: Vec<u64>,
    /// Words `[0, known_words)` hold the known-outcome operations, the rest the unknown ones.
    known_words: usize,
    /// Number of leading all-ones words in the known part.
    known_full: usize,
    /// One past the last nonzero word of the known part (at least `known_full`).
    known_end: usize,
    /// One past the last nonzero word of the unknown part (at least `known_words`).
    unknown_end: usize,
    hash: u64,
}

impl LinearizedSet {
    /// An empty set over `known_words * 64` known-outcome bits followed by unknown-outcome bits,
    /// `total_words` words in all.
    pub(crate) fn new(known_words: usize, total_words: usize) -> Self {
        debug_assert!(known_words <= total_words);
        Self {
            words: vec![0; total_words],
            known_words,
            known_full: 0,
            known_end: 0,
            unknown_end: known_words,
            hash: 0,
        }
    }

    /// Adds `bit`, which must be absent.
    pub(crate) fn insert(&mut self, bit: usize) {
        let (w, mask) = (bit / 64, 1u64 << (bit % 64));
        debug_assert_eq!(self.words[w] & mask, 0, "bit {bit} already set");
        self.words[w] |= mask;
        self.hash ^= zobrist(bit);
        if w < self.known_words {
            self.known_end = self.known_end.max(w + 1);
            while self.known_full < self.known_words && self.words[self.known_full] == u64::MAX {
                self.known_full += 1;
            }
        } else {
            self.unknown_end = self.unknown_end.max(w + 1);
        }
    }

    /// Removes `bit`, which must be present.
    pub(crate) fn remove(&mut self, bit: usize) {
        let (w, mask) = (bit / 64, 1u64 << (bit % 64));
        debug_assert_ne!(self.words[w] & mask, 0, "bit {bit} not set");
        self.words[w] &= !mask;
        self.hash ^= zobrist(bit);
        if w < self.known_words {
            self.known_full = self.known_full.min(w);
            while self.known_end > self.known_full && self.words[self.known_end - 1] == 0 {
                self.known_end -= 1;
            }
        } else {
            while self.unknown_end > self.known_words && self.words[self.unknown_end - 1] == 0 {
                self.unknown_end -= 1;
            }
        }
    }

    /// Hash of the configuration (this set, `state`).
    pub(crate) fn hash_with(&self, state: Option<u64>) -> u64 {
        let state_hash = match state {
            None => 0x6a09_e667_f3bc_c908,
            Some(v) => splitmix64(v ^ 0xbb67_ae85_84ca_a73b),
        };
        self.hash ^ state_hash
    }

    /// Writes the canonical encoding of this set into `out` (cleared first): equal sets, and
    /// only equal sets, have equal encodings.
    pub(crate) fn encode(&self, out: &mut Vec<u64>) {
        out.clear();
        let full = self.known_full;
        let end = self.known_end.max(full);
        out.push(full as u64);
        out.push((end - full) as u64);
        out.extend_from_slice(&self.words[full..end]);
        out.extend_from_slice(&self.words[self.known_words..self.unknown_end]);
    }
}

/// Visited configurations, bounded in bytes. Once full it stops remembering: that only costs
/// pruning (the search may revisit configurations), never correctness.
#[derive(Debug)]
pub(crate) struct Cache {
    /// Configuration hash -> index of the newest entry with that hash.
    heads: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    entries: Vec<Entry>,
    /// Encodings of all entries, back to back.
    arena: Vec<u64>,
    bytes_max: usize,
    full: bool,
}

#[derive(Debug)]
struct Entry {
    /// Older entry with the same hash, or `u32::MAX`.
    next: u32,
    state: Option<u64>,
    start: usize,
    len: usize,
}

/// Bytes one cache entry costs besides its encoding (entry, map slot and slack).
const ENTRY_OVERHEAD_BYTES: usize = size_of::<Entry>() + 2 * size_of::<(u64, u32)>();

impl Cache {
    /// An empty cache that grows to at most about `bytes_max` bytes.
    pub(crate) fn new(bytes_max: usize) -> Self {
        Self {
            heads: HashMap::default(),
            entries: Vec::new(),
            arena: Vec::new(),
            bytes_max,
            full: false,
        }
    }

    /// Records the configuration (`encoding`, `state`) with hash `hash`. Returns `false` if it
    /// was already recorded (the caller should not explore it again).
    pub(crate) fn insert(&mut self, hash: u64, encoding: &[u64], state: Option<u64>) -> bool {
        let head = self.heads.get(&hash).copied().unwrap_or(u32::MAX);
        let mut at = head;
        while at != u32::MAX {
            let entry = &self.entries[at as usize];
            if entry.state == state && &self.arena[entry.start..entry.start + entry.len] == encoding
            {
                return false;
            }
            at = entry.next;
        }
        if self.full || self.bytes() + ENTRY_OVERHEAD_BYTES + 8 * encoding.len() > self.bytes_max {
            self.full = true;
            return true;
        }
        let Ok(index) = u32::try_from(self.entries.len()) else {
            self.full = true;
            return true;
        };
        self.entries.push(Entry {
            next: head,
            state,
            start: self.arena.len(),
            len: encoding.len(),
        });
        self.arena.extend_from_slice(encoding);
        self.heads.insert(hash, index);
        true
    }

    /// Approximate bytes held.
    fn bytes(&self) -> usize {
        self.entries.len() * ENTRY_OVERHEAD_BYTES + self.arena.len() * 8
    }
}

/// The configuration hashes are already well mixed; hashing them again is wasted work.
#[derive(Debug, Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
}

/// The Zobrist word of one bit.
fn zobrist(bit: usize) -> u64 {
    splitmix64(bit as u64)
}

/// SplitMix64's output function: a cheap, well-mixed bijection on `u64`.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(set: &LinearizedSet) -> Vec<u64> {
        let mut out = Vec::new();
        set.encode(&mut out);
        out
    }

    #[test]
    fn encoding_is_canonical_whatever_the_insertion_order() {
        // 130 known bits (3 words) and 70 unknown bits (2 words).
        let mut a = LinearizedSet::new(3, 5);
        let mut b = LinearizedSet::new(3, 5);
        let bits: Vec<usize> = (0..64).chain([70, 129, 192, 200, 255]).collect();
        for &bit in &bits {
            a.insert(bit);
        }
        for &bit in bits.iter().rev() {
            b.insert(bit);
        }
        // Detour: b gains and loses extra bits.
        for bit in [65, 130, 254] {
            b.insert(bit);
            b.remove(bit);
        }
        assert_eq!(encoded(&a), encoded(&b));
        assert_eq!(a.hash_with(Some(1)), b.hash_with(Some(1)));
        assert_eq!(encoded(&a)[..2], [1, 2]);
    }

    #[test]
    fn different_sets_encode_differently() {
        let mut a = LinearizedSet::new(2, 3);
        let mut b = LinearizedSet::new(2, 3);
        a.insert(3);
        b.insert(128 + 3);
        assert_ne!(encoded(&a), encoded(&b));
        a.remove(3);
        b.remove(128 + 3);
        assert_eq!(encoded(&a), encoded(&b));
        assert_eq!(encoded(&a), [0, 0]);
    }

    #[test]
    fn cache_detects_repeats_and_respects_its_bound() {
        let mut cache = Cache::new(1 << 20);
        assert!(cache.insert(7, &[0, 1, 5], Some(3)));
        assert!(!cache.insert(7, &[0, 1, 5], Some(3)));
        assert!(cache.insert(7, &[0, 1, 5], None), "same hash, other state");
        assert!(cache.insert(7, &[0, 1, 6], Some(3)), "same hash, other set");

        let mut tiny = Cache::new(0);
        assert!(tiny.insert(1, &[0, 0], None));
        assert!(
            tiny.insert(1, &[0, 0], None),
            "a full cache forgets, it never prunes wrongly"
        );
        assert_eq!(tiny.bytes(), 0);
    }
}
