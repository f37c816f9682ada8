//! A vector in fixed-size pages: growing never moves what is stored (no
//! multi-megabyte copy stalls the loop when a million timers are pending)
//! and spare capacity is at most one page.

use std::ops::{Index, IndexMut};

/// Elements per page (a power of two).
const SHIFT: usize = 10;
const PAGE: usize = 1 << SHIFT;
const MASK: usize = PAGE - 1;

/// A growable array of `T` in pages of 1,024 elements.
#[derive(Clone, Debug)]
pub(crate) struct PagedVec<T> {
    pages: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for PagedVec<T> {
    fn default() -> Self {
        PagedVec {
            pages: Vec::new(),
            len: 0,
        }
    }
}

impl<T> PagedVec<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push(&mut self, value: T) {
        if self.len == self.pages.len() * PAGE {
            self.pages.push(Vec::with_capacity(PAGE));
        }
        if let Some(page) = self.pages.last_mut() {
            page.push(value);
            self.len += 1;
        }
    }

    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        self.pages.get(i >> SHIFT)?.get(i & MASK)
    }

    /// Elements the pages can hold.
    pub(crate) fn capacity(&self) -> usize {
        self.pages.len() * PAGE
    }

    /// Makes room for `n` elements in all (best effort: never panics).
    pub(crate) fn reserve_total(&mut self, n: usize) {
        let pages = n.div_ceil(PAGE);
        let _ = self
            .pages
            .try_reserve_exact(pages.saturating_sub(self.pages.len()));
    }
}

impl<T> Index<usize> for PagedVec<T> {
    type Output = T;
    #[inline]
    fn index(&self, i: usize) -> &T {
        &self.pages[i >> SHIFT][i & MASK]
    }
}

impl<T> IndexMut<usize> for PagedVec<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.pages[i >> SHIFT][i & MASK]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_hold_what_is_pushed() {
        let mut v = PagedVec::default();
        for i in 0..5000u32 {
            v.push(i);
        }
        assert_eq!(v.len(), 5000);
        assert_eq!(v[0], 0);
        assert_eq!(v[1023], 1023);
        assert_eq!(v[1024], 1024);
        assert_eq!(v[4999], 4999);
        assert_eq!(v.get(5000), None);
        v[2048] = 7;
        assert_eq!(v.get(2048), Some(&7));
        assert_eq!(v.capacity(), 5 * 1024);
    }
}
