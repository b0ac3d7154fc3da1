//! A page's set of visitor hashes, in the smallest form that holds it.
//!
//! Most pages of a real site have a handful of visitors, so a set starts
//! with [`INLINE`] hashes stored in the page record itself (no heap), and
//! moves to a [`VisitorTable`] when it outgrows them. The enum is 32 bytes
//! either way. A later form (a cardinality sketch under memory pressure)
//! slots in as one more variant.

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

    /// Adds a (non-zero) visitor hash; returns whether it was new.
    #[inline]
    pub(crate) fn insert(&mut self, hash: u64) -> bool {
        debug_assert_ne!(hash, 0);
        match self {
            VisitorSet::Table(table) => table.insert(hash),
            VisitorSet::Inline(slots) => {
                for slot in slots.iter_mut() {
                    if *slot == hash {
                        return false;
                    }
                    if *slot == 0 {
                        *slot = hash;
                        return true;
                    }
                }
                let mut table = VisitorTable::with_capacity(MIN_CAPACITY);
                for &h in slots.iter() {
                    table.insert(h);
                }
                table.insert(hash);
                *self = VisitorSet::Table(table);
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
            assert!(set.insert(h));
            assert!(!set.insert(h));
        }
        assert_eq!(set.heap_bytes(), 0);
        assert!(set.insert(99));
        assert_eq!(set.heap_bytes(), 64);
        assert_eq!(set.len(), INLINE + 1);
        for h in (1..=INLINE as u64).chain([99]) {
            assert!(!set.insert(h));
        }
        let mut all: Vec<u64> = set.iter().collect();
        all.sort_unstable();
        assert_eq!(all, vec![1, 2, 3, 99]);
    }
}
