//! A page's set of visitor hashes, in the smallest form that holds it.
//!
//! Most pages of a real site have a handful of visitors, so a set starts
//! with [`INLINE`] hashes stored in the page record itself (no heap), and
//! moves to a [`VisitorTable`] when it outgrows them. Under memory pressure
//! the tracker may turn a large table into an [`UltraLogLog`] sketch: the
//! page keeps counting, as an estimate. The enum is 24 bytes in every form.

pub(crate) mod activity;
pub(crate) mod history;
pub(crate) mod horizon;
pub(crate) mod page;
pub(crate) mod timed_sketch;
pub(crate) mod timed_table;
pub(crate) mod visitor_hash;
pub(crate) mod visitor_table;

use std::ops::Range;

use crate::report::Distinct;
use crate::set::timed_sketch::{GENERATION_BYTES, MAX_GENERATIONS, TimedSketch};
use crate::set::timed_table::{MIN_TIMED_BYTES, TimedTable};
pub(crate) use crate::set::visitor_table::Insert;
use crate::set::visitor_table::{MIN_CAPACITY, MIN_TABLE_BYTES, VisitorTable};
use crate::sketch::UltraLogLog;
use crate::time::ttl::Expiry;
use crate::time::{Bucketing, Series};
use crate::tracker::ranges::Union;

/// Heap bytes of a page's set in sketch form (the boxed sketch).
const SKETCH_BYTES: usize =
    std::mem::size_of::<UltraLogLog>() + (1 << UltraLogLog::DEFAULT_PRECISION);

/// How many visitor hashes a page holds without a heap allocation.
pub(crate) const INLINE: usize = 2;

/// Every form also carries its page's last-recorded tick (the recency
/// eviction ranks pages by): inside the variants it fills what would be the
/// enum's padding, where a field of the page record would cost 8 more
/// bytes per page.
///
/// With a TTL, sets keep each visitor's latest tick too. Inline, the first
/// slot holds the most recent visitor (its tick is the page's `last`) and
/// the second's tick is stored as its age behind `last` in 24 bits that
/// would otherwise be padding; past three visitors the set is a
/// [`TimedTable`].
#[derive(Debug, Clone)]
pub(crate) enum VisitorSet {
    /// Up to [`INLINE`] hashes; unused slots are 0 and come last. The
    /// fields are the second slot's age (high 8 and low 16 bits; timed
    /// sets only), the last-recorded tick, and the slots.
    Inline(u8, u16, u32, [u64; INLINE]),
    /// An open-addressing table of hashes.
    Table(u32, VisitorTable),
    /// Hashes with their latest ticks (with a TTL).
    Timed(u32, Box<TimedTable>),
    /// A cardinality sketch of the hashes: counts are estimates.
    Sketch(u32, Box<UltraLogLog>),
    /// Sketches per generation of TTL/8 (with a TTL): estimates.
    TimedSketch(u32, Box<TimedSketch>),
}

/// What a set needs to know to answer a range besides the range.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    /// The buckets pairs may be held in now (the retention to the end of
    /// the current bucket).
    pub(crate) held: Range<u64>,
    /// The tracker's buckets.
    pub(crate) bucketing: Bucketing,
}

/// A set's answer for a range of buckets.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Between {
    pub(crate) distinct: Distinct,
    /// The buckets the count covers: the range asked, or a wider one when
    /// the set cannot tell its visits apart that finely.
    pub(crate) covered: Range<u64>,
}

/// The largest age the inline form stores: 24 bits.
const MAX_INLINE_AGE: u32 = (1 << 24) - 1;

impl VisitorSet {
    /// The distinct visitors seen in the buckets `range`.
    ///
    /// The sets keep no buckets yet (issue 12's next step), so every set
    /// answers over everything it may hold: the count of all its pairs,
    /// covering `range` widened to the held buckets and the page's latest.
    pub(crate) fn between(&self, range: Range<u64>, ask: &Ask, expiry: Option<Expiry>) -> Between {
        Between {
            distinct: self.count(expiry),
            covered: self.everything(range, ask),
        }
    }

    /// `range` widened to every bucket the set may hold a pair in.
    fn everything(&self, range: Range<u64>, ask: &Ask) -> Range<u64> {
        let latest = u64::from(self.last_recorded()) / ask.bucketing.width().as_secs() + 1;
        range.start.min(ask.held.start)..range.end.max(ask.held.end).max(latest)
    }

    /// Adds each point's exact count of the set's visitors to `counts`
    /// (one per point of `series`), if the set can tell its visits apart
    /// by point; returns false, with `counts` unchanged, if not (the
    /// caller then asks [`between`](Self::between) for each point).
    pub(crate) fn count_points(
        &self,
        _series: &Series,
        _expiry: Option<Expiry>,
        _counts: &mut [u64],
    ) -> bool {
        false
    }

    /// Adds the visitors seen in the union's range to it: exact pairs as
    /// hashes, sketches merged; widens it where the set cannot tell.
    pub(crate) fn add_to_union(&self, union: &mut Union, ask: &Ask, expiry: Option<Expiry>) {
        union.widen(self.everything(union.range(), ask));
        match (self, expiry) {
            (VisitorSet::Sketch(_, sketch), _) => union.merge(sketch),
            (VisitorSet::TimedSketch(_, generations), Some(expiry)) => {
                for sketch in generations.live(expiry) {
                    union.merge(sketch);
                }
            }
            (VisitorSet::TimedSketch(..), None) => {}
            (set, _) => {
                for (hash, tick) in set.entries() {
                    if expiry.is_none_or(|e| e.is_live(tick)) {
                        union.push(hash);
                    }
                }
            }
        }
    }

    /// An empty set last recorded at `tick`.
    pub(crate) fn new(tick: u32) -> Self {
        VisitorSet::Inline(0, 0, tick, [0; INLINE])
    }

    /// When the page was last recorded.
    pub(crate) fn last_recorded(&self) -> u32 {
        match self {
            VisitorSet::Inline(_, _, last, _)
            | VisitorSet::Table(last, _)
            | VisitorSet::Timed(last, _)
            | VisitorSet::Sketch(last, _)
            | VisitorSet::TimedSketch(last, _) => *last,
        }
    }

    /// Notes a record at `tick` (recency only moves forwards: a back-filled
    /// event does not make a page look older).
    pub(crate) fn touch(&mut self, tick: u32) {
        match self {
            VisitorSet::Inline(_, _, last, _)
            | VisitorSet::Table(last, _)
            | VisitorSet::Timed(last, _)
            | VisitorSet::Sketch(last, _)
            | VisitorSet::TimedSketch(last, _) => {
                *last = (*last).max(tick);
            }
        }
    }

    /// Visitor hashes stored exactly, live or expired but not yet dropped
    /// (0 for a sketch, which holds none). O(1).
    pub(crate) fn pairs(&self) -> usize {
        match self {
            VisitorSet::Inline(_, _, _, slots) => slots.iter().take_while(|&&h| h != 0).count(),
            VisitorSet::Table(_, table) => table.len(),
            VisitorSet::Timed(_, table) => table.stored(),
            VisitorSet::Sketch(..) | VisitorSet::TimedSketch(..) => 0,
        }
    }

    /// The page's distinct visitors (with a TTL, the live ones at
    /// `expiry`): exact, or the sketch's estimate with its relative
    /// standard error. O(1) for every form but a timed table, which is
    /// O(log n) (see `horizon`).
    pub(crate) fn count(&self, expiry: Option<Expiry>) -> Distinct {
        match (self, expiry) {
            (VisitorSet::Sketch(_, sketch), _) => Distinct {
                visitors: sketch.estimate().round() as u64,
                exact: false,
                relative_error: Some(sketch.relative_standard_error()),
            },
            (VisitorSet::TimedSketch(_, sketch), Some(expiry)) => sketch.count(expiry),
            (VisitorSet::Timed(_, table), Some(expiry)) => {
                Distinct::exact(table.live(expiry) as u64)
            }
            (VisitorSet::Inline(..), Some(expiry)) => {
                let live = self
                    .inline_ticks()
                    .filter(|&(_, t)| expiry.is_live(t))
                    .count();
                Distinct::exact(live as u64)
            }
            (exact, _) => Distinct::exact(exact.pairs() as u64),
        }
    }

    /// Whether the set has no live visitor at `expiry`.
    pub(crate) fn is_dead(&self, expiry: Expiry) -> bool {
        match self {
            VisitorSet::TimedSketch(_, sketch) => sketch.is_empty(expiry),
            VisitorSet::Sketch(..) => false,
            _ => self.count(Some(expiry)).visitors == 0,
        }
    }

    pub(crate) fn is_sketch(&self) -> bool {
        matches!(self, VisitorSet::Sketch(..) | VisitorSet::TimedSketch(..))
    }

    /// The inline pairs with their ticks (timed sets).
    fn inline_ticks(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        let (age, last, slots) = match self {
            VisitorSet::Inline(high, low, last, slots) => (age(*high, *low), *last, &slots[..]),
            _ => (0, 0, &[][..]),
        };
        slots
            .iter()
            .zip([last, last.wrapping_sub(age)])
            .filter(|&(&h, _)| h != 0)
            .map(|(&h, t)| (h, t))
    }

    /// Brings a timed set up to `expiry`'s time: drops expired inline
    /// visitors, and lets a table retire or drop its expired ones (see
    /// [`TimedTable::expire`]). Returns the pairs dropped.
    pub(crate) fn expire(&mut self, expiry: Expiry) -> usize {
        match self {
            VisitorSet::Timed(_, table) => table.expire(expiry),
            VisitorSet::TimedSketch(_, sketch) => {
                sketch.expire(expiry);
                0
            }
            VisitorSet::Inline(high, low, last, slots) => {
                let second = last.wrapping_sub(age(*high, *low));
                let mut dropped = 0;
                if slots[1] != 0 && !expiry.is_live(second) {
                    slots[1] = 0;
                    (*high, *low) = (0, 0);
                    dropped += 1;
                }
                // The first slot is the most recent: the second went first.
                if slots[0] != 0 && !expiry.is_live(*last) {
                    slots[0] = 0;
                    dropped += 1;
                }
                dropped
            }
            _ => 0,
        }
    }

    /// Drops every expired pair now (a sweep's work); returns how many.
    pub(crate) fn drop_expired(&mut self, expiry: Expiry) -> usize {
        match self {
            // An exhausted horizon is checked first: counting the expired
            // pairs would then scan the table that the rebuild scans again.
            VisitorSet::Timed(_, table)
                if table.needs_rebuild(expiry) || table.expired(expiry) > 0 =>
            {
                table.rebuild(expiry)
            }
            _ => self.expire(expiry),
        }
    }

    /// Turns the set into a sketch of the same hashes, whose estimate
    /// starts at their exact count (no jump); with a TTL (`expiry`), into
    /// per-generation sketches of the live ones. Returns the heap bytes
    /// held before.
    pub(crate) fn convert_to_sketch(&mut self, expiry: Option<Expiry>) -> usize {
        let before = self.heap_bytes();
        let last = self.last_recorded();
        if let Some(expiry) = expiry {
            if !self.is_sketch() {
                let sketch = TimedSketch::from_pairs(self.entries(), expiry);
                *self = VisitorSet::TimedSketch(last, Box::new(sketch));
            }
            return before;
        }
        let hashes: Box<dyn Iterator<Item = u64>> = match self {
            VisitorSet::Sketch(..) | VisitorSet::Timed(..) | VisitorSet::TimedSketch(..) => {
                return before;
            }
            VisitorSet::Inline(_, _, _, slots) => {
                Box::new(slots.iter().copied().filter(|&h| h != 0))
            }
            VisitorSet::Table(_, table) => Box::new(table.iter()),
        };
        let sketch = UltraLogLog::from_exact_set(UltraLogLog::DEFAULT_PRECISION, hashes)
            .expect("the default precision is valid");
        *self = VisitorSet::Sketch(last, Box::new(sketch));
        before
    }

    /// Whether an exact set growing from `before` to `after` heap bytes
    /// (from 0 for a set restored whole) has just become worth turning
    /// into a sketch under memory pressure: the sketch frees at least half
    /// of it. With a TTL (`timed`) a sketched page may need a sketch per
    /// generation, so the bar is twice what the most generations take.
    pub(crate) fn became_sketch_worthy(before: usize, after: usize, timed: bool) -> bool {
        let worthy = if timed {
            2 * MAX_GENERATIONS * GENERATION_BYTES
        } else {
            2 * SKETCH_BYTES
        };
        before < worthy && after >= worthy
    }

    /// The heap bytes [`convert_to_sketch`](Self::convert_to_sketch) would
    /// leave the set holding.
    pub(crate) fn sketched_bytes(&self, expiry: Option<Expiry>) -> usize {
        match expiry {
            Some(expiry) => TimedSketch::bytes_for(self.entries().map(|(_, t)| t), expiry),
            None => SKETCH_BYTES,
        }
    }

    /// Heap bytes held by the set (0 while inline).
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            VisitorSet::Inline(..) => 0,
            VisitorSet::Table(_, table) => table.heap_bytes(),
            VisitorSet::Timed(_, table) => table.heap_bytes(),
            VisitorSet::Sketch(..) => SKETCH_BYTES,
            VisitorSet::TimedSketch(_, sketch) => sketch.heap_bytes(),
        }
    }

    /// Adds a (non-zero) visitor hash seen at `tick` if that needs no
    /// allocation; see [`Insert`]. With a TTL (`expiry`), the set must be
    /// up to its time (see [`expire`](Self::expire)); a revisit answers
    /// `Refreshed` with the visitor's previous tick.
    #[inline]
    pub(crate) fn insert(&mut self, hash: u64, tick: u32, expiry: Option<Expiry>) -> Insert {
        debug_assert_ne!(hash, 0);
        match self {
            VisitorSet::Table(_, table) => table.insert(hash, tick),
            VisitorSet::Timed(_, table) => table.insert(hash, tick),
            VisitorSet::Sketch(_, sketch) => Insert::Estimated {
                changed: sketch.insert(hash),
            },
            // A change in one generation's sketch does not prove the
            // visitor new to the page (another generation may have it).
            VisitorSet::TimedSketch(_, sketch) => {
                match expiry.and_then(|e| sketch.insert(hash, tick, e)) {
                    Some(_) => Insert::Estimated { changed: false },
                    None => Insert::Grow(GENERATION_BYTES),
                }
            }
            VisitorSet::Inline(high, low, last, slots) => match expiry {
                None => insert_inline(slots, hash),
                Some(expiry) => insert_inline_timed(high, low, last, slots, hash, tick, expiry),
            },
        }
    }

    /// Moves to the next larger form and adds `hash`, which must be absent
    /// (as an [`Insert::Grow`] answer said).
    pub(crate) fn grow_and_insert(&mut self, hash: u64, tick: u32, expiry: Option<Expiry>) {
        match self {
            VisitorSet::Table(_, table) => table.grow_and_insert(hash, tick),
            VisitorSet::Timed(_, table) => table.grow_and_insert(hash, tick),
            VisitorSet::Sketch(_, sketch) => {
                sketch.insert(hash);
            }
            VisitorSet::TimedSketch(_, sketch) => {
                if let Some(expiry) = expiry {
                    sketch.insert_growing(hash, tick, expiry);
                }
            }
            VisitorSet::Inline(_, _, last, slots) => match expiry {
                None => {
                    let mut table = VisitorTable::with_capacity(MIN_CAPACITY);
                    for &h in slots.iter().chain([&hash]) {
                        table.insert_growing(h, 0);
                    }
                    *self = VisitorSet::Table(*last, table);
                }
                Some(expiry) => {
                    let last = *last;
                    let mut pairs: Vec<(u64, u32)> = self.inline_ticks().collect();
                    pairs.push((hash, tick));
                    let table = TimedTable::from_pairs(&pairs, expiry);
                    *self = VisitorSet::Timed(last.max(tick), Box::new(table));
                }
            },
        }
    }

    /// Sizes a table form for `len` pairs in all, so that pairs known in
    /// advance (a snapshot's) go in without growth steps; see
    /// [`VisitorTable::reserve`] for why that matters. Other forms are
    /// left as they are.
    pub(crate) fn reserve(&mut self, len: usize) {
        match self {
            VisitorSet::Table(_, table) => table.reserve(len),
            VisitorSet::Timed(_, table) => table.reserve(len),
            _ => {}
        }
    }

    /// Adds `hash`, growing as needed; returns whether it was new.
    #[cfg(test)]
    pub(crate) fn insert_growing(&mut self, hash: u64) -> bool {
        let outcome = self.insert(hash, 0, None);
        outcome.is_new_after(|| self.grow_and_insert(hash, 0, None))
    }

    /// The hashes held with their ticks (0 without a TTL), in no
    /// particular order (none for a sketch).
    pub(crate) fn entries(&self) -> Box<dyn Iterator<Item = (u64, u32)> + '_> {
        match self {
            VisitorSet::Inline(..) => Box::new(self.inline_ticks()),
            VisitorSet::Table(_, table) => Box::new(table.entries()),
            VisitorSet::Timed(_, table) => Box::new(table.entries()),
            VisitorSet::Sketch(..) | VisitorSet::TimedSketch(..) => Box::new(std::iter::empty()),
        }
    }

    /// The hashes held, in no particular order (none for a sketch).
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries().map(|(h, _)| h)
    }
}

fn age(high: u8, low: u16) -> u32 {
    (u32::from(high) << 16) | u32::from(low)
}

fn split_age(age: u32) -> (u8, u16) {
    let age = age.min(MAX_INLINE_AGE);
    ((age >> 16) as u8, age as u16)
}

/// [`VisitorSet::insert`] for the inline form without a TTL.
#[inline]
fn insert_inline(slots: &mut [u64; INLINE], hash: u64) -> Insert {
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

/// [`VisitorSet::insert`] for the inline form with a TTL: keeps the most
/// recent visitor first, the other's tick as its age behind it.
fn insert_inline_timed(
    high: &mut u8,
    low: &mut u16,
    last: &mut u32,
    slots: &mut [u64; INLINE],
    hash: u64,
    tick: u32,
    expiry: Expiry,
) -> Insert {
    let second = last.wrapping_sub(age(*high, *low));
    if slots[0] == hash {
        let was = *last;
        if tick > was {
            *last = tick;
            if slots[1] != 0 {
                (*high, *low) = split_age(tick - second);
            }
        }
        return Insert::Refreshed { was };
    }
    if slots[1] == hash {
        let was = second;
        if tick > *last {
            slots.swap(0, 1);
            (*high, *low) = split_age(tick - *last);
            *last = tick;
        } else if tick > was {
            (*high, *low) = split_age(*last - tick);
        }
        return Insert::Refreshed { was };
    }
    if slots[0] == 0 {
        slots[0] = hash;
        *last = tick;
        (*high, *low) = (0, 0);
        return Insert::Added;
    }
    // Two live ticks differ by less than the TTL; past 2^24 s (194 days)
    // that may not fit the age, so long TTLs keep one visitor inline.
    if slots[1] == 0 && expiry.ttl <= MAX_INLINE_AGE / 2 {
        if tick >= *last {
            slots[1] = slots[0];
            slots[0] = hash;
            (*high, *low) = split_age(tick - *last);
            *last = tick;
        } else {
            slots[1] = hash;
            (*high, *low) = split_age(*last - tick);
        }
        return Insert::Added;
    }
    Insert::Grow(MIN_TIMED_BYTES)
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
        let hasher = crate::set::visitor_hash::VisitorHasher::new(1);
        let hash = |i: u64| hasher.hash(&i.to_le_bytes());
        for i in 0..5_000 {
            set.insert_growing(hash(i));
        }
        let before = set.convert_to_sketch(None);
        assert!(before > SKETCH_BYTES);
        assert_eq!(set.heap_bytes(), SKETCH_BYTES);
        assert_eq!(set.pairs(), 0);
        let count = set.count(None);
        assert_eq!((count.visitors, count.exact), (5_000, false));
        assert!(count.relative_error.is_some_and(|e| e < 0.0085));
        // Seen before: the sketch cannot change.
        assert_eq!(
            set.insert(hash(7), 0, None),
            Insert::Estimated { changed: false }
        );
        for i in 5_000..10_000 {
            set.insert(hash(i), 0, None);
        }
        let estimate = set.count(None).visitors as f64;
        assert!(
            (estimate - 10_000.0).abs() < 10_000.0 * 0.0085 * 5.0,
            "{estimate}"
        );
    }
}
