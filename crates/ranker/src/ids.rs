//! External `u64` ids ↔ dense `u32` indices.

use std::collections::HashMap;

/// A bijection between external ids and dense indices `0..len`, in insertion order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdMap {
    ids: Vec<u64>,
    index: HashMap<u64, u32>,
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
            index: HashMap::with_capacity(ids.len()),
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
