//! The dispatcher's indexes: keys hashed with a per-dispatcher SipHash,
//! maps from a key to the deliveries that have it, and the by-destination
//! list used when the network reports a destination unreachable.

use std::collections::HashMap;

use crate::packet::Method;

use super::types::DeliveryId;

/// Hashes the strings the indexes are keyed on: SipHash with keys random
/// per dispatcher (peers choose Call-IDs and branches, so a fixed hash
/// could be flooded). Indexes hold the 8-byte hash, not the string; a hit
/// is confirmed against the delivery itself.
pub(super) struct Keys(pub(super) std::collections::hash_map::RandomState);

impl Keys {
    pub(super) fn of(&self, s: &str) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = self.0.build_hasher();
        h.write(s.as_bytes());
        h.finish()
    }

    /// The same as `of(&format!("{call_id} {number}"))` (a packet's tid),
    /// without building the string: the hasher takes the pieces in turn.
    pub(super) fn of_tid(&self, call_id: &str, number: u32) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = self.0.build_hasher();
        h.write(call_id.as_bytes());
        h.write(b" ");
        let mut digits = [0u8; 20];
        h.write(crate::packet::decimal(u64::from(number), &mut digits));
        h.finish()
    }

    pub(super) fn of_transaction(&self, branch: &str, method: &Method) -> u64 {
        use std::hash::BuildHasher;
        self.0.hash_one((branch, method.as_str()))
    }
}

/// A hasher for keys that already are hashes.
#[derive(Default)]
pub(super) struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed with it; keep it total anyway.
        for b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(*b) ^ (self.0 >> 56);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub(super) type HashIndex<V> = HashMap<u64, V, std::hash::BuildHasherDefault<PassThrough>>;

/// The deliveries waiting for a first answer from one destination (for
/// ICMP errors). Removal is lazy: a removed delivery stays in `ids` until
/// the list is compacted, which happens when it holds twice as many ids as
/// are live, so add and remove are O(1) amortized whatever the number of
/// deliveries to one next hop.
pub(super) struct DstIndex {
    pub(super) ids: Vec<DeliveryId>,
    pub(super) live: usize,
}

/// A map from a hashed key to the deliveries that have it. Most keys name
/// one delivery: that one sits in `first` (16 bytes an entry); the others,
/// if any, in `more`.
#[derive(Default)]
pub(super) struct MultiIndex {
    first: HashIndex<DeliveryId>,
    more: HashIndex<Vec<DeliveryId>>,
}

impl MultiIndex {
    pub(super) fn add(&mut self, key: u64, id: DeliveryId) {
        match self.first.entry(key) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(id);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.more.entry(key).or_default().push(id)
            }
        }
    }

    pub(super) fn remove(&mut self, key: u64, id: DeliveryId) {
        if self.first.get(&key) == Some(&id) {
            let next = self.more.get_mut(&key).and_then(Vec::pop);
            if self.more.get(&key).is_some_and(Vec::is_empty) {
                self.more.remove(&key);
            }
            match next {
                Some(n) => {
                    self.first.insert(key, n);
                }
                None => {
                    self.first.remove(&key);
                }
            }
        } else if let Some(v) = self.more.get_mut(&key) {
            if let Some(pos) = v.iter().position(|x| *x == id) {
                v.swap_remove(pos);
            }
            if v.is_empty() {
                self.more.remove(&key);
            }
        }
    }

    pub(super) fn get(&self, key: u64) -> impl Iterator<Item = DeliveryId> + '_ {
        self.first
            .get(&key)
            .copied()
            .into_iter()
            .chain(self.more.get(&key).into_iter().flatten().copied())
    }

    pub(super) fn len(&self) -> usize {
        self.first.len()
    }
}

#[cfg(test)]
mod index_tests {
    use super::*;

    #[test]
    fn multi_index_keeps_every_id_of_a_key() {
        let id = |i| DeliveryId {
            index: i,
            generation: 0,
        };
        let mut m = MultiIndex::default();
        m.add(7, id(1));
        m.add(7, id(2));
        m.add(7, id(3));
        m.add(9, id(4));
        let mut got: Vec<u32> = m.get(7).map(|d| d.index).collect();
        got.sort();
        assert_eq!(got, vec![1, 2, 3]);
        m.remove(7, id(1));
        let mut got: Vec<u32> = m.get(7).map(|d| d.index).collect();
        got.sort();
        assert_eq!(got, vec![2, 3]);
        m.remove(7, id(3));
        m.remove(7, id(2));
        assert_eq!(m.get(7).count(), 0);
        assert!(m.more.is_empty());
        assert_eq!(m.len(), 1);
        m.remove(9, id(5));
        assert_eq!(
            m.get(9).count(),
            1,
            "removing an id that is not there changes nothing"
        );
    }
}
