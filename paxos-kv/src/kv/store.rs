//! The keyspace, kept in scan order: by a fixed 64-bit hash of the key, then by the key.
//! The design, and what `SCAN` guarantees from it, is in the [module docs](super#scan).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::glob::Glob;
use super::{MAX_SCAN_COUNT, MAX_SCAN_WORK};

/// A key, with its place in the scan order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Key {
    /// [`key_hash`] of `bytes`; compared first.
    hash: u64,
    /// Shared, so that copying a map node (see [`Store`]) copies no key.
    bytes: Bytes,
}

impl Key {
    pub(super) fn new(bytes: Vec<u8>) -> Self {
        Self {
            hash: key_hash(&bytes),
            bytes: bytes.into(),
        }
    }

    /// A key with a hash of the test's choosing, to build collisions.
    #[cfg(test)]
    pub(super) fn with_hash(hash: u64, bytes: Vec<u8>) -> Self {
        Self {
            hash,
            bytes: bytes.into(),
        }
    }
}

/// The key-value map. Serialized as a map from key to value, as the `BTreeMap<Vec<u8>,
/// Vec<u8>>` it replaces was, so snapshots taken before the scan order restore unchanged
/// (the hashes are recomputed).
///
/// A persistent B-tree ([`imbl::OrdMap`]): a clone costs O(1) and shares every node,
/// and a write copies only the nodes on its path that a clone still shares. That is how
/// the state machine [freezes](paxos_core::StateMachine::freeze) its state for a
/// snapshot written on another thread while it goes on applying. Values sit behind an
/// `Arc` so that copying a node copies no value (a node holds up to 64 of them, which
/// may be a megabyte each); a value is changed in place unless a frozen copy shares it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Store {
    map: imbl::OrdMap<Key, Arc<Vec<u8>>>,
}

/// What one `SCAN` call found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ScanPage {
    /// Where the next call starts; 0 when the iteration is complete.
    pub(super) cursor: u64,
    /// The keys visited that matched.
    pub(super) keys: Vec<Vec<u8>>,
    /// How many keys the call visited.
    pub(super) visited: usize,
}

impl Store {
    /// Every key and value, in scan order (what a snapshot writes).
    pub(super) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.map
            .iter()
            .map(|(key, value)| (&key.bytes[..], value.as_slice()))
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn get(&self, key: &Key) -> Option<&Vec<u8>> {
        self.map.get(key).map(|value| &**value)
    }

    /// The value under `key`, to change in place (copied first if a frozen copy of the
    /// store shares it).
    pub(super) fn get_mut(&mut self, key: &Key) -> Option<&mut Vec<u8>> {
        self.map.get_mut(key).map(Arc::make_mut)
    }

    pub(super) fn insert(&mut self, key: Key, value: Vec<u8>) {
        self.map.insert(key, Arc::new(value));
    }

    /// Inserts `value`, returning the value it replaced.
    pub(super) fn replace(&mut self, key: Key, value: Vec<u8>) -> Option<Vec<u8>> {
        self.map
            .insert(key, Arc::new(value))
            .map(Arc::unwrap_or_clone)
    }

    /// Removes `key`; true if it was there.
    pub(super) fn remove(&mut self, key: &Key) -> bool {
        self.map.remove(key).is_some()
    }

    /// One `SCAN` call: visits the keys from hash `cursor` on, in scan order, whole hash
    /// values at a time, until it has visited at least `count` keys (taken as 1 to
    /// [`MAX_SCAN_COUNT`]) or done [`MAX_SCAN_WORK`], and returns those that match
    /// `pattern` and the hash of the first key not visited (0 at the end).
    pub(super) fn scan(&self, cursor: u64, pattern: Option<&Glob>, count: usize) -> ScanPage {
        let count = count.clamp(1, MAX_SCAN_COUNT);
        let from = Key {
            hash: cursor,
            bytes: Bytes::new(),
        };
        let mut page = ScanPage {
            cursor: 0,
            keys: Vec::new(),
            visited: 0,
        };
        let cost_per_byte = pattern.map_or(1, Glob::cost_per_byte);
        let mut work = 0usize;
        let mut hash = None;
        for key in self.map.range(from..).map(|(key, _)| key) {
            if hash != Some(key.hash) {
                if page.visited >= count || work >= MAX_SCAN_WORK {
                    // At least one hash value was visited, all below this one: nonzero.
                    debug_assert!(key.hash > cursor || page.visited == 0);
                    page.cursor = key.hash;
                    return page;
                }
                hash = Some(key.hash);
            }
            page.visited += 1;
            work = work.saturating_add(key.bytes.len().saturating_mul(cost_per_byte));
            if pattern.is_none_or(|p| p.matches(&key.bytes)) {
                page.keys.push(key.bytes.to_vec());
            }
        }
        page
    }

    /// Inserts under a hash of the test's choosing.
    #[cfg(test)]
    fn insert_with_hash(&mut self, hash: u64, key: &[u8]) {
        self.insert(Key::with_hash(hash, key.to_vec()), Vec::new());
    }

    #[cfg(test)]
    fn remove_with_hash(&mut self, hash: u64, key: &[u8]) {
        self.map.remove(&Key::with_hash(hash, key.to_vec()));
    }
}

impl Serialize for Store {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            self.map
                .iter()
                .map(|(key, value)| (&key.bytes[..], &value[..])),
        )
    }
}

impl<'de> Deserialize<'de> for Store {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StoreVisitor;
        impl<'de> Visitor<'de> for StoreVisitor {
            type Value = Store;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from keys to values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Store, A::Error> {
                let mut store = Store::default();
                while let Some((key, value)) = entries.next_entry::<Vec<u8>, Vec<u8>>()? {
                    store.insert(Key::new(key), value);
                }
                Ok(store)
            }
        }
        deserializer.deserialize_map(StoreVisitor)
    }
}

/// The scan order's hash: SipHash-1-3 with the all-zero key. It must give the same value on
/// every replica and every build, forever (a cursor handed out by one node is resumed by
/// another, maybe after an upgrade), so it is written out here rather than taken from std,
/// whose `DefaultHasher` may change. The key is public: the hash spreads keys, it does not
/// keep secrets. SipHash rather than the simpler FNV-1a because FNV's whole state is its
/// 64-bit output, so one pair of colliding keys extends to any number of them (append the
/// same bytes); SipHash's state is 256 bits, and more than a few keys on one hash value
/// cost an attacker about 2^60 tries.
fn key_hash(bytes: &[u8]) -> u64 {
    siphash::<1, 3>(0, 0, bytes)
}

/// SipHash-c-d (Aumasson and Bernstein, 2012) of `bytes` under the key `(k0, k1)`.
fn siphash<const C: usize, const D: usize>(k0: u64, k1: u64, bytes: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let little_endian = |b: &[u8]| b.iter().rev().fold(0u64, |n, &b| n << 8 | u64::from(b));
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        compress::<C>(&mut v, little_endian(word));
    }
    let length = (bytes.len() & 0xff) as u64;
    compress::<C>(&mut v, length << 56 | little_endian(words.remainder()));
    v[2] ^= 0xff;
    for _ in 0..D {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn compress<const C: usize>(v: &mut [u64; 4], word: u64) {
    v[3] ^= word;
    for _ in 0..C {
        sip_round(v);
    }
    v[0] ^= word;
}

fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    /// Runs a whole scan; returns each call's page.
    fn scan_all(store: &Store, pattern: Option<&Glob>, count: usize) -> Vec<ScanPage> {
        let mut pages: Vec<ScanPage> = Vec::new();
        let mut cursor = 0;
        loop {
            let page = store.scan(cursor, pattern, count);
            cursor = page.cursor;
            pages.push(page);
            if cursor == 0 {
                return pages;
            }
        }
    }

    #[test]
    fn keys_sharing_a_hash_are_never_split() {
        let mut store = Store::default();
        for i in 0..5u8 {
            store.insert_with_hash(10, &[b'a', i]);
        }
        store.insert_with_hash(3, b"x");
        store.insert_with_hash(20, b"y");
        let sizes = |count| -> Vec<(u64, usize)> {
            let pages = scan_all(&store, None, count);
            pages.iter().map(|p| (p.cursor, p.visited)).collect()
        };
        // From 0: x (hash 3), then the five keys of hash 10 at once, then y.
        assert_eq!(sizes(1), [(10, 1), (20, 5), (0, 1)]);
        // One key short of `count` after x: the call takes all of hash 10.
        assert_eq!(sizes(2), [(20, 6), (0, 1)]);
        let pages = scan_all(&store, None, 1000);
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].keys.len(), 7);
    }

    /// Hash 0 is visited from cursor 0 and never makes a cursor; a call that visits the
    /// last hash value, `u64::MAX`, ends the scan.
    #[test]
    fn the_extreme_hash_values() {
        let mut store = Store::default();
        store.insert_with_hash(0, b"zero-a");
        store.insert_with_hash(0, b"zero-b");
        store.insert_with_hash(u64::MAX, b"max");
        let pages = scan_all(&store, None, 1);
        let sizes: Vec<_> = pages.iter().map(|p| (p.cursor, p.visited)).collect();
        assert_eq!(sizes, [(u64::MAX, 2), (0, 1)]);
        assert_eq!(store.scan(u64::MAX, None, 1).keys, [b"max".to_vec()]);
        store.remove_with_hash(u64::MAX, b"max");
        assert_eq!(store.scan(u64::MAX, None, 1).visited, 0);
        assert_eq!(store.scan(u64::MAX, None, 1).cursor, 0);
    }

    #[test]
    fn a_call_stops_after_max_scan_work() {
        let mut store = Store::default();
        let long = vec![b'k'; MAX_SCAN_WORK / 4];
        for i in 0..10u64 {
            let mut key = long.clone();
            key.push(i as u8);
            store.insert_with_hash(i, &key);
        }
        let pages = scan_all(&store, None, MAX_SCAN_COUNT);
        assert_eq!(pages.len(), 3);
        assert_eq!(pages[0].visited, 4);
        // A pattern of 4 tokens: each key costs 4 times its length.
        let pattern = Glob::new(b"k*??");
        let pages = scan_all(&store, Some(&pattern), MAX_SCAN_COUNT);
        assert_eq!(pages.len(), 10);
        assert!(pages.iter().all(|p| p.visited == 1 && p.keys.len() == 1));
    }

    /// Something done to the keyspace between two calls, to a key (hash, name).
    #[derive(Clone, Debug)]
    enum Change {
        Insert(u64, u8),
        Remove(u64, u8),
    }

    /// Hashes from a small set, to make collisions, with both extremes.
    fn hash() -> impl Strategy<Value = u64> + Clone {
        prop_oneof![0u64..6, Just(u64::MAX), Just(u64::MAX - 1), Just(1 << 63)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Redis's guarantee with many keys per hash value and writes between calls: a
        /// key present from the first call to the last is returned exactly once; the
        /// cursor is 0 only at the end and grows; each call stops at the first hash value
        /// after `count` keys; and a MATCH only filters what was visited.
        #[test]
        fn scan_guarantees_with_collisions(
            initial in proptest::collection::vec((hash(), 0u8..8), 0..40),
            changes in proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![
                        (hash(), 0u8..8).prop_map(|(h, k)| Change::Insert(h, k)),
                        (hash(), 0u8..8).prop_map(|(h, k)| Change::Remove(h, k)),
                    ],
                    0..4,
                ),
                0..20,
            ),
            count in 1usize..6,
            filtered in any::<bool>(),
        ) {
            // Unique per (hash, k); the pattern looks at `k` only.
            let name = |h: u64, k: u8| [&[b'a' + k][..], &h.to_be_bytes()].concat();
            let glob = Glob::new(b"[a-d]*");
            let pattern = filtered.then_some(&glob);
            let mut store = Store::default();
            for &(h, k) in &initial {
                store.insert_with_hash(h, &name(h, k));
            }
            let mut throughout: BTreeSet<(u64, u8)> = initial.iter().copied().collect();
            let mut seen: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
            let mut cursor = 0;
            for call in 0.. {
                let before: Vec<Key> = store.map.keys().cloned().collect();
                let page = store.scan(cursor, pattern, count);
                // What it visited: the keys in [cursor, page.cursor) in scan order, whole.
                let visited: Vec<&Key> = before
                    .iter()
                    .filter(|k| k.hash >= cursor && (page.cursor == 0 || k.hash < page.cursor))
                    .collect();
                prop_assert_eq!(page.visited, visited.len());
                if page.cursor != 0 {
                    prop_assert!(page.cursor > cursor);
                    prop_assert!(before.iter().any(|k| k.hash == page.cursor));
                    let last = visited.last().map(|k| k.hash);
                    let in_last = visited.iter().filter(|k| Some(k.hash) == last).count();
                    prop_assert!(page.visited - in_last < count, "went on past count");
                    prop_assert!(page.visited >= count);
                }
                let matching: Vec<Vec<u8>> = visited
                    .iter()
                    .filter(|k| pattern.is_none_or(|p| p.matches(&k.bytes)))
                    .map(|k| k.bytes.to_vec())
                    .collect();
                prop_assert_eq!(&page.keys, &matching);
                for key in page.keys {
                    *seen.entry(key).or_default() += 1;
                }
                if page.cursor == 0 {
                    break;
                }
                cursor = page.cursor;
                for change in changes.get(call).into_iter().flatten() {
                    match *change {
                        Change::Insert(h, k) => store.insert_with_hash(h, &name(h, k)),
                        Change::Remove(h, k) => {
                            store.remove_with_hash(h, &name(h, k));
                            throughout.remove(&(h, k));
                        }
                    }
                }
                prop_assert!(call < 1000, "the scan does not end");
            }
            for &(h, k) in &throughout {
                if pattern.is_none_or(|p| p.matches(&name(h, k))) {
                    prop_assert_eq!(seen.get(&name(h, k)), Some(&1), "hash {} key {}", h, k);
                }
            }
            prop_assert!(seen.values().all(|&n| n == 1), "a key returned twice");
        }
    }

    /// The reference vectors of SipHash-2-4 (the paper's appendix and the reference
    /// implementation's `vectors.h`: key 00..0f, message 00..len-1), then the scan order's
    /// own values, which must never change.
    #[test]
    fn the_hash_is_fixed() {
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let message: Vec<u8> = (0..15).collect();
        assert_eq!(siphash::<2, 4>(k0, k1, &[]), 0x726f_db47_dd0e_0e31);
        assert_eq!(
            siphash::<2, 4>(k0, k1, &message[..1]),
            0x74f8_39c5_93dc_67fd
        );
        assert_eq!(siphash::<2, 4>(k0, k1, &message), 0xa129_ca61_49be_45e5);
        for (key, hash) in SCAN_ORDER_VECTORS {
            assert_eq!(key_hash(key.as_bytes()), hash, "{key:?}");
        }
    }

    /// Cross-checked, when written, against std's `DefaultHasher::new()` (SipHash-1-3 with
    /// the zero key today) and its deprecated `SipHasher` (SipHash-2-4) for every length
    /// from 0 to 63.
    const SCAN_ORDER_VECTORS: [(&str, u64); 5] = [
        ("", 0xd1fb_a762_150c_532c),
        ("a", 0x4074_48d2_b89b_1813),
        ("key", 0xdf61_b30b_6842_17c0),
        ("user:1000", 0x887d_7c14_b4f1_2be0),
        ("0123456789abcdef-longer-than-16", 0x89d4_1c78_89a2_9231),
    ];
}
