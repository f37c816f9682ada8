//! A slab with generations: ids of removed entries never reach the entry
//! that reuses their slot.

/// Storage with O(1) insert, lookup and remove by `(index, generation)`.
#[derive(Debug)]
pub(crate) struct Arena<T> {
    slots: Vec<Slot<T>>,
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
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Arena<T> {
    pub(crate) fn insert(&mut self, value: T) -> (u32, u32) {
        self.len += 1;
        if let Some(i) = self.free.pop() {
            let slot = &mut self.slots[i as usize];
            slot.value = Some(value);
            return (i, slot.generation);
        }
        self.slots.push(Slot {
            generation: 0,
            value: Some(value),
        });
        ((self.slots.len() - 1) as u32, 0)
    }

    pub(crate) fn get(&self, index: u32, generation: u32) -> Option<&T> {
        self.slots
            .get(index as usize)
            .filter(|s| s.generation == generation)?
            .value
            .as_ref()
    }

    pub(crate) fn get_mut(&mut self, index: u32, generation: u32) -> Option<&mut T> {
        self.slots
            .get_mut(index as usize)
            .filter(|s| s.generation == generation)?
            .value
            .as_mut()
    }

    pub(crate) fn remove(&mut self, index: u32, generation: u32) -> Option<T> {
        let slot = self
            .slots
            .get_mut(index as usize)
            .filter(|s| s.generation == generation)?;
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        self.len -= 1;
        Some(value)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, u32, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.value.as_ref().map(|v| (i as u32, s.generation, v)))
    }

    /// Heap bytes of the slot table (not of what the values own).
    pub(crate) fn table_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot<T>>() + self.free.capacity() * 4
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
}
