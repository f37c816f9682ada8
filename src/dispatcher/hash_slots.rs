//! An index from 64-bit key hashes to arena ids, for the server
//! transactions: open addressing with linear probing in one flat table, so
//! that a lookup reads one cache line (a general map reads a control byte
//! group, then the entry) and the line an entry lives in can be loaded
//! ahead of time ([`HashSlots::prefetch`]). With a full response cache,
//! every new transaction evicts the oldest, whose entry is long out of
//! cache: loading it one request ahead keeps that eviction off memory
//! latency.
//!
//! The hashes are keyed SipHash ([`super::index::Keys`]), so peers cannot
//! choose them to collide; the home slot is the hash's low bits. A hit is
//! confirmed against the transaction itself by the caller.

/// One slot: a hash and the id it maps to, or empty.
#[derive(Clone, Copy, Debug)]
struct Slot {
    hash: u64,
    index: u32,
    generation: u32,
}

/// `index` of an empty slot (an arena never hands out this index: it would
/// take 2^32 slots).
const EMPTY: u32 = u32::MAX;

const VACANT: Slot = Slot {
    hash: 0,
    index: EMPTY,
    generation: 0,
};

/// A map from a 64-bit hash to an `(index, generation)` arena id, at most
/// one id per hash (inserting a hash again replaces its id).
#[derive(Debug, Default)]
pub(crate) struct HashSlots {
    slots: Vec<Slot>,
    len: usize,
}

impl HashSlots {
    /// Entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes of the table.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    fn home(&self, hash: u64) -> usize {
        // The low bits of a keyed SipHash are as good as any.
        (hash as usize) & self.mask()
    }

    /// The slot holding `hash`, if any.
    fn find(&self, hash: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = self.home(hash);
        // The table is never full (at most half), so an empty slot ends
        // every probe.
        loop {
            let s = self.slots[i];
            if s.index == EMPTY {
                return None;
            }
            if s.hash == hash {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The id `hash` maps to.
    pub(crate) fn get(&self, hash: u64) -> Option<(u32, u32)> {
        self.find(hash).map(|i| {
            let s = self.slots[i];
            (s.index, s.generation)
        })
    }

    /// Maps `hash` to `id`, replacing what it mapped to.
    pub(crate) fn insert(&mut self, hash: u64, id: (u32, u32)) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.mask();
        let mut i = self.home(hash);
        loop {
            let s = &mut self.slots[i];
            if s.index == EMPTY {
                self.len += 1;
                break;
            }
            if s.hash == hash {
                break;
            }
            i = (i + 1) & mask;
        }
        self.slots[i] = Slot {
            hash,
            index: id.0,
            generation: id.1,
        };
    }

    /// Removes `hash` when it maps to `id` (a newer transaction with the
    /// same hash keeps its entry); whether it did.
    pub(crate) fn remove_if(&mut self, hash: u64, id: (u32, u32)) -> bool {
        let Some(mut hole) = self.find(hash) else {
            return false;
        };
        let s = self.slots[hole];
        if (s.index, s.generation) != id {
            return false;
        }
        self.len -= 1;
        // Backward shift: move up every later entry of the run that may
        // sit at the hole (its home is not between the hole and it), so
        // that no probe meets an empty slot before its entry.
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let next = self.slots[j];
            if next.index == EMPTY {
                break;
            }
            let home = self.home(next.hash);
            // Distance from home to j, and from the hole to j, along the
            // probe direction (with wrap-around).
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = next;
                hole = j;
            }
        }
        self.slots[hole] = VACANT;
        true
    }

    /// Starts loading the slot where `hash` is (or would be) into the
    /// cache: a hint, for a lookup or removal soon.
    pub(crate) fn prefetch(&self, hash: u64) {
        if let Some(slot) = self.slots.get(self.home(hash)) {
            super::prefetch::prefetch((slot as *const Slot).cast::<u8>());
        }
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, vec![VACANT; size]);
        self.len = 0;
        for s in old {
            if s.index != EMPTY {
                self.insert(s.hash, (s.index, s.generation));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn agrees_with_a_map_under_random_operations() {
        // Hashes from a small range, so that runs of neighbours, wrap
        // around the end and same-home collisions are common; and some
        // with only high bits differing (same home slot).
        let mut generated = crate::packet::generated::Generated::new(0x5107_5a1e);
        for round in 0..40 {
            let mut table = HashSlots::default();
            let mut model: HashMap<u64, (u32, u32)> = HashMap::new();
            let spread = [8u64, 64, 1000][round % 3];
            for step in 0..4_000u32 {
                let r = generated.next_u64();
                let hash = (r % spread) | ((r >> 60) << 40);
                let id = (step, (r >> 8) as u32 % 3);
                match r % 5 {
                    0 | 1 => {
                        table.insert(hash, id);
                        model.insert(hash, id);
                    }
                    2 => {
                        // Remove what it maps to (or a wrong id: no-op).
                        let target = if r & 64 == 0 {
                            model.get(&hash).copied().unwrap_or(id)
                        } else {
                            id
                        };
                        let expect = model.get(&hash) == Some(&target);
                        assert_eq!(table.remove_if(hash, target), expect, "{hash}");
                        if expect {
                            model.remove(&hash);
                        }
                    }
                    _ => assert_eq!(table.get(hash), model.get(&hash).copied(), "{hash}"),
                }
                assert_eq!(table.len(), model.len());
            }
            for (h, id) in &model {
                assert_eq!(table.get(*h), Some(*id));
            }
            assert!(table.slots.len() >= 2 * table.len());
        }
    }

    #[test]
    fn removal_keeps_a_wrapped_run_reachable() {
        let mut table = HashSlots::default();
        table.insert(0, (0, 0)); // grows to 16 slots
        let last = 15u64;
        // Three entries homed at the last slot wrap to 0 and 1 (0 is taken
        // by hash 0, so they land at 15, 1, 2).
        for (n, h) in [last, last + 16, last + 32].into_iter().enumerate() {
            table.insert(h, (n as u32 + 1, 0));
        }
        assert!(table.remove_if(last, (1, 0)));
        assert_eq!(table.get(last + 16), Some((2, 0)));
        assert_eq!(table.get(last + 32), Some((3, 0)));
        assert_eq!(table.get(0), Some((0, 0)));
        assert!(table.remove_if(0, (0, 0)));
        assert_eq!(table.get(last + 32), Some((3, 0)));
        assert_eq!(table.len(), 2);
    }
}
