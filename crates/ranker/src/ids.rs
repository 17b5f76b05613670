//! External `u64` ids ↔ dense `u32` indices.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes one `u64` id with SplitMix64's finaliser: every input bit reaches
/// every output bit, at a few cycles where SipHash takes tens. (Ids come from
/// model files and logs; a lookup of an unknown id cannot slow the table.)
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let mut z = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
}

/// A bijection between external ids and dense indices `0..len`, in insertion order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdMap {
    ids: Vec<u64>,
    index: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
}

impl IdMap {
    /// An empty map.
    pub fn new() -> IdMap {
        IdMap::default()
    }

    /// From distinct ids in index order (duplicates keep their first index).
    pub fn from_ids(ids: Vec<u64>) -> IdMap {
        let mut m = IdMap {
            ids: Vec::with_capacity(ids.len()),
            index: HashMap::with_capacity_and_hasher(ids.len(), Default::default()),
        };
        for id in ids {
            m.insert(id);
        }
        m
    }

    /// The index of `id`, adding it if new.
    pub fn insert(&mut self, id: u64) -> u32 {
        let next = self.ids.len() as u32;
        let ids = &mut self.ids;
        *self.index.entry(id).or_insert_with(|| {
            ids.push(id);
            next
        })
    }

    /// The index of `id`, if known.
    pub fn get(&self, id: u64) -> Option<u32> {
        self.index.get(&id).copied()
    }

    /// The id at `index`.
    pub fn id(&self, index: u32) -> u64 {
        self.ids[index as usize]
    }

    /// All ids in index order.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}
