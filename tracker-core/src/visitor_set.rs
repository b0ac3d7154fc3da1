//! A page's set of visitor hashes, in the smallest form that holds it.
//!
//! Most pages of a real site have a handful of visitors, so a set starts
//! with [`INLINE`] hashes stored in the page record itself (no heap), and
//! moves to a [`VisitorTable`] when it outgrows them. The enum is 32 bytes
//! either way. A later form (a cardinality sketch under memory pressure)
//! slots in as one more variant.

pub(crate) use crate::visitor_table::Insert;
use crate::visitor_table::{MIN_CAPACITY, VisitorTable};

/// How many visitor hashes a page holds without a heap allocation.
pub(crate) const INLINE: usize = 3;

#[derive(Debug, Clone)]
pub(crate) enum VisitorSet {
    /// Up to [`INLINE`] hashes; unused slots are 0 and come last.
    Inline([u64; INLINE]),
    /// An open-addressing table of hashes.
    Table(VisitorTable),
}

impl Default for VisitorSet {
    fn default() -> Self {
        VisitorSet::Inline([0; INLINE])
    }
}

impl VisitorSet {
    /// Distinct visitors held. O(1) for the table; at most [`INLINE`] reads
    /// inline.
    pub(crate) fn len(&self) -> usize {
        match self {
            VisitorSet::Inline(slots) => slots.iter().take_while(|&&h| h != 0).count(),
            VisitorSet::Table(table) => table.len(),
        }
    }

    /// Heap bytes held by the set (0 while inline).
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            VisitorSet::Inline(_) => 0,
            VisitorSet::Table(table) => table.heap_bytes(),
        }
    }

    /// Adds a (non-zero) visitor hash if that needs no allocation; see
    /// [`Insert`].
    #[inline]
    pub(crate) fn insert(&mut self, hash: u64) -> Insert {
        debug_assert_ne!(hash, 0);
        match self {
            VisitorSet::Table(table) => table.insert(hash),
            VisitorSet::Inline(slots) => {
                for slot in slots.iter_mut() {
                    if *slot == hash {
                        return Insert::Present;
                    }
                    if *slot == 0 {
                        *slot = hash;
                        return Insert::Added;
                    }
                }
                Insert::Grow(MIN_CAPACITY * std::mem::size_of::<u64>())
            }
        }
    }

    /// Moves to the next larger form and adds `hash`, which must be absent
    /// (as an [`Insert::Grow`] answer said).
    pub(crate) fn grow_and_insert(&mut self, hash: u64) {
        match self {
            VisitorSet::Table(table) => table.grow_and_insert(hash),
            VisitorSet::Inline(slots) => {
                let mut table = VisitorTable::with_capacity(MIN_CAPACITY);
                for &h in slots.iter().chain([&hash]) {
                    table.insert_growing(h);
                }
                *self = VisitorSet::Table(table);
            }
        }
    }

    /// Adds `hash`, growing as needed; returns whether it was new.
    #[cfg(test)]
    pub(crate) fn insert_growing(&mut self, hash: u64) -> bool {
        match self.insert(hash) {
            Insert::Present => false,
            Insert::Added => true,
            Insert::Grow(_) => {
                self.grow_and_insert(hash);
                true
            }
        }
    }

    /// The hashes held, in no particular order.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = u64> + '_> {
        match self {
            VisitorSet::Inline(slots) => Box::new(slots.iter().copied().filter(|&h| h != 0)),
            VisitorSet::Table(table) => Box::new(table.iter()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_is_32_bytes() {
        assert_eq!(std::mem::size_of::<VisitorSet>(), 32);
    }

    #[test]
    fn moves_from_inline_to_table_without_losing_members() {
        let mut set = VisitorSet::default();
        for h in 1..=INLINE as u64 {
            assert!(set.insert_growing(h));
            assert!(!set.insert_growing(h));
        }
        assert_eq!(set.heap_bytes(), 0);
        assert!(set.insert_growing(99));
        assert_eq!(set.heap_bytes(), 64);
        assert_eq!(set.len(), INLINE + 1);
        for h in (1..=INLINE as u64).chain([99]) {
            assert!(!set.insert_growing(h));
        }
        let mut all: Vec<u64> = set.iter().collect();
        all.sort_unstable();
        assert_eq!(all, vec![1, 2, 3, 99]);
    }
}
