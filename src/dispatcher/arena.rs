//! A slab with generations: ids of removed entries never reach the entry
//! that reuses their slot. Slots live in fixed-size pages, so growing never
//! moves existing entries (no large copy when a million deliveries are
//! pending) and the spare capacity is at most one page.

/// Slots per page.
const PAGE: usize = 256;

/// Storage with O(1) insert, lookup and remove by `(index, generation)`.
#[derive(Debug)]
pub(crate) struct Arena<T> {
    pages: Vec<Box<[Slot<T>]>>,
    /// Slots handed out so far (the next fresh index).
    used: usize,
    free: Vec<u32>,
    len: usize,
}

#[derive(Debug)]
struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

impl<T> Default for Arena<T> {
    fn default() -> Self {
        Arena {
            pages: Vec::new(),
            used: 0,
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Arena<T> {
    fn slot(&self, index: u32) -> Option<&Slot<T>> {
        let i = index as usize;
        self.pages.get(i / PAGE).map(|p| &p[i % PAGE])
    }

    fn slot_mut(&mut self, index: u32) -> Option<&mut Slot<T>> {
        let i = index as usize;
        self.pages.get_mut(i / PAGE).map(|p| &mut p[i % PAGE])
    }

    /// Starts loading slot `index` into the cache: a hint, for a slot that
    /// will be read soon and is likely out of cache.
    pub(crate) fn prefetch(&self, index: u32) {
        if let Some(slot) = self.slot(index) {
            let start = (slot as *const Slot<T>).cast::<u8>();
            let mut offset = 0;
            while offset < std::mem::size_of::<Slot<T>>() {
                super::prefetch::prefetch(start.wrapping_add(offset));
                offset += 64;
            }
        }
    }

    pub(crate) fn insert(&mut self, value: T) -> (u32, u32) {
        self.len += 1;
        if let Some(i) = self.free.pop() {
            if let Some(slot) = self.slot_mut(i) {
                slot.value = Some(value);
                return (i, slot.generation);
            }
        }
        if self.used == self.pages.len() * PAGE {
            self.pages.push(
                (0..PAGE)
                    .map(|_| Slot {
                        generation: 0,
                        value: None,
                    })
                    .collect(),
            );
        }
        let i = self.used as u32;
        self.used += 1;
        match self.slot_mut(i) {
            Some(slot) => {
                slot.value = Some(value);
                (i, slot.generation)
            }
            // Unreachable: the page was just made.
            None => (i, 0),
        }
    }

    pub(crate) fn get(&self, index: u32, generation: u32) -> Option<&T> {
        self.slot(index)
            .filter(|s| s.generation == generation)?
            .value
            .as_ref()
    }

    pub(crate) fn get_mut(&mut self, index: u32, generation: u32) -> Option<&mut T> {
        self.slot_mut(index)
            .filter(|s| s.generation == generation)?
            .value
            .as_mut()
    }

    pub(crate) fn remove(&mut self, index: u32, generation: u32) -> Option<T> {
        let slot = self
            .slot_mut(index)
            .filter(|s| s.generation == generation)?;
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        self.len -= 1;
        Some(value)
    }

    /// Removes and drops the value where it lies (a `remove` whose result
    /// is not wanted would move it out first); false when it is not there.
    pub(crate) fn discard(&mut self, index: u32, generation: u32) -> bool {
        let Some(slot) = self
            .slot_mut(index)
            .filter(|s| s.generation == generation && s.value.is_some())
        else {
            return false;
        };
        slot.value = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        self.len -= 1;
        true
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, u32, &T)> {
        self.pages
            .iter()
            .flat_map(|p| p.iter())
            .take(self.used)
            .enumerate()
            .filter_map(|(i, s)| s.value.as_ref().map(|v| (i as u32, s.generation, v)))
    }

    /// Heap bytes of the slot pages (not of what the values own).
    pub(crate) fn table_bytes(&self) -> usize {
        self.pages.len() * PAGE * std::mem::size_of::<Slot<T>>()
            + self.pages.capacity() * std::mem::size_of::<Box<[Slot<T>]>>()
            + self.free.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_ids_miss() {
        let mut a = Arena::default();
        let (i, g) = a.insert("one");
        assert_eq!(a.remove(i, g), Some("one"));
        let (i2, g2) = a.insert("two");
        assert_eq!(i2, i);
        assert_ne!(g2, g);
        assert_eq!(a.get(i, g), None);
        assert_eq!(a.get(i2, g2), Some(&"two"));
        assert_eq!(a.remove(i, g), None);
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn pages_grow_without_moving() {
        let mut a = Arena::default();
        let ids: Vec<(u32, u32)> = (0..1000).map(|n| a.insert(n)).collect();
        assert_eq!(a.len(), 1000);
        for (n, (i, g)) in ids.iter().enumerate() {
            assert_eq!(a.get(*i, *g), Some(&n));
        }
        assert_eq!(a.iter().count(), 1000);
        assert_eq!(a.get(5000, 0), None);
        for (i, g) in &ids[..500] {
            a.remove(*i, *g);
        }
        assert_eq!(a.iter().map(|(_, _, v)| *v).min(), Some(500));
    }
}
