//! A page's set of visitor hashes, in the smallest form that holds it.
//!
//! Most pages of a real site have a handful of visitors, so a set starts
//! with [`INLINE`] hashes stored in the page record itself (no heap), and
//! moves to a [`VisitorTable`] when it outgrows them. Under memory pressure
//! the tracker may turn a large table into an [`UltraLogLog`] sketch: the
//! page keeps counting, as an estimate. The enum is 24 bytes in every form.

use crate::report::Distinct;
use crate::sketch::UltraLogLog;
pub(crate) use crate::visitor_table::Insert;
use crate::visitor_table::{MIN_CAPACITY, MIN_TABLE_BYTES, VisitorTable};

/// Heap bytes of a page's set in sketch form (the boxed sketch).
pub(crate) const SKETCH_BYTES: usize =
    std::mem::size_of::<UltraLogLog>() + (1 << UltraLogLog::DEFAULT_PRECISION);

/// How many visitor hashes a page holds without a heap allocation.
pub(crate) const INLINE: usize = 2;

/// Every form also carries its page's last-recorded time (seconds since the
/// Unix epoch, the recency eviction ranks pages by): inside the variants it
/// fills what would be the enum's padding, where a field of the page
/// record would cost 8 more bytes per page.
#[derive(Debug, Clone)]
pub(crate) enum VisitorSet {
    /// Up to [`INLINE`] hashes; unused slots are 0 and come last.
    Inline(u32, [u64; INLINE]),
    /// An open-addressing table of hashes.
    Table(u32, VisitorTable),
    /// A cardinality sketch of the hashes: counts are estimates.
    Sketch(u32, Box<UltraLogLog>),
}

impl VisitorSet {
    /// An empty set last recorded at `tick`.
    pub(crate) fn new(tick: u32) -> Self {
        VisitorSet::Inline(tick, [0; INLINE])
    }

    /// When the page was last recorded.
    pub(crate) fn last_recorded(&self) -> u32 {
        match self {
            VisitorSet::Inline(last, _)
            | VisitorSet::Table(last, _)
            | VisitorSet::Sketch(last, _) => *last,
        }
    }

    /// Notes a record at `tick` (recency only moves forwards: a back-filled
    /// event does not make a page look older).
    pub(crate) fn touch(&mut self, tick: u32) {
        match self {
            VisitorSet::Inline(last, _)
            | VisitorSet::Table(last, _)
            | VisitorSet::Sketch(last, _) => {
                *last = (*last).max(tick);
            }
        }
    }

    /// Visitor hashes held exactly (0 for a sketch, which holds none). O(1).
    pub(crate) fn pairs(&self) -> usize {
        match self {
            VisitorSet::Inline(_, slots) => slots.iter().take_while(|&&h| h != 0).count(),
            VisitorSet::Table(_, table) => table.len(),
            VisitorSet::Sketch(..) => 0,
        }
    }

    /// The page's distinct visitors: exact, or the sketch's estimate with
    /// its relative standard error. O(1).
    pub(crate) fn count(&self) -> Distinct {
        match self {
            VisitorSet::Sketch(_, sketch) => Distinct {
                visitors: sketch.estimate().round() as u64,
                exact: false,
                relative_error: Some(sketch.relative_standard_error()),
            },
            exact => Distinct::exact(exact.pairs() as u64),
        }
    }

    pub(crate) fn is_sketch(&self) -> bool {
        matches!(self, VisitorSet::Sketch(..))
    }

    /// Turns the set into a sketch of the same hashes, whose estimate
    /// starts at their exact count (no jump). Returns the heap bytes held
    /// before; the sketch holds [`SKETCH_BYTES`].
    pub(crate) fn convert_to_sketch(&mut self) -> usize {
        let before = self.heap_bytes();
        let hashes: Box<dyn Iterator<Item = u64>> = match self {
            VisitorSet::Sketch(..) => return before,
            VisitorSet::Inline(_, slots) => Box::new(slots.iter().copied().filter(|&h| h != 0)),
            VisitorSet::Table(_, table) => Box::new(table.iter()),
        };
        let sketch = UltraLogLog::from_exact_set(UltraLogLog::DEFAULT_PRECISION, hashes)
            .expect("the default precision is valid");
        *self = VisitorSet::Sketch(self.last_recorded(), Box::new(sketch));
        before
    }

    /// Heap bytes held by the set (0 while inline).
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            VisitorSet::Inline(..) => 0,
            VisitorSet::Table(_, table) => table.heap_bytes(),
            VisitorSet::Sketch(..) => SKETCH_BYTES,
        }
    }

    /// Adds a (non-zero) visitor hash if that needs no allocation; see
    /// [`Insert`].
    #[inline]
    pub(crate) fn insert(&mut self, hash: u64) -> Insert {
        debug_assert_ne!(hash, 0);
        match self {
            VisitorSet::Table(_, table) => table.insert(hash),
            VisitorSet::Sketch(_, sketch) => Insert::Estimated {
                changed: sketch.insert(hash),
            },
            VisitorSet::Inline(_, slots) => {
                for slot in slots.iter_mut() {
                    if *slot == hash {
                        return Insert::Present;
                    }
                    if *slot == 0 {
                        *slot = hash;
                        return Insert::Added;
                    }
                }
                Insert::Grow(MIN_TABLE_BYTES)
            }
        }
    }

    /// Moves to the next larger form and adds `hash`, which must be absent
    /// (as an [`Insert::Grow`] answer said).
    pub(crate) fn grow_and_insert(&mut self, hash: u64) {
        match self {
            VisitorSet::Table(_, table) => table.grow_and_insert(hash),
            VisitorSet::Sketch(_, sketch) => {
                sketch.insert(hash);
            }
            VisitorSet::Inline(last, slots) => {
                let mut table = VisitorTable::with_capacity(MIN_CAPACITY);
                for &h in slots.iter().chain([&hash]) {
                    table.insert_growing(h);
                }
                *self = VisitorSet::Table(*last, table);
            }
        }
    }

    /// Adds `hash`, growing as needed; returns whether it was new.
    #[cfg(test)]
    pub(crate) fn insert_growing(&mut self, hash: u64) -> bool {
        let outcome = self.insert(hash);
        outcome.is_new_after(|| self.grow_and_insert(hash))
    }

    /// The hashes held, in no particular order (none for a sketch).
    #[cfg(test)]
    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = u64> + '_> {
        match self {
            VisitorSet::Inline(_, slots) => Box::new(slots.iter().copied().filter(|&h| h != 0)),
            VisitorSet::Table(_, table) => Box::new(table.iter()),
            VisitorSet::Sketch(..) => Box::new(std::iter::empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_is_24_bytes() {
        assert_eq!(std::mem::size_of::<VisitorSet>(), 24);
    }

    #[test]
    fn moves_from_inline_to_table_without_losing_members() {
        let mut set = VisitorSet::new(0);
        for h in 1..=INLINE as u64 {
            assert!(set.insert_growing(h));
            assert!(!set.insert_growing(h));
        }
        assert_eq!(set.heap_bytes(), 0);
        assert!(set.insert_growing(99));
        assert_eq!(set.heap_bytes(), 32);
        assert_eq!(set.pairs(), INLINE + 1);
        for h in (1..=INLINE as u64).chain([99]) {
            assert!(!set.insert_growing(h));
        }
        let mut all: Vec<u64> = set.iter().collect();
        all.sort_unstable();
        assert_eq!(all, vec![1, 2, 99]);
    }

    #[test]
    fn sketching_keeps_the_count_and_then_estimates() {
        let mut set = VisitorSet::new(0);
        let hasher = crate::visitor_hash::VisitorHasher::new(1);
        let hash = |i: u64| hasher.hash(&i.to_le_bytes());
        for i in 0..5_000 {
            set.insert_growing(hash(i));
        }
        let before = set.convert_to_sketch();
        assert!(before > SKETCH_BYTES);
        assert_eq!(set.heap_bytes(), SKETCH_BYTES);
        assert_eq!(set.pairs(), 0);
        let count = set.count();
        assert_eq!((count.visitors, count.exact), (5_000, false));
        assert!(count.relative_error.is_some_and(|e| e < 0.0085));
        // Seen before: the sketch cannot change.
        assert_eq!(set.insert(hash(7)), Insert::Estimated { changed: false });
        for i in 5_000..10_000 {
            set.insert(hash(i));
        }
        let estimate = set.count().visitors as f64;
        assert!(
            (estimate - 10_000.0).abs() < 10_000.0 * 0.0085 * 5.0,
            "{estimate}"
        );
    }
}
