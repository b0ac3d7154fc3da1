//! A timed page's visitors beyond the inline ones: a table of visitor
//! hashes with their latest ticks, and the [`Horizon`] that counts the live
//! ones without a scan.

use std::ops::Range;

use thin_vec::ThinVec;

use crate::set::activity::Runs;
use crate::set::horizon::Horizon;
use crate::set::visitor_table::{Insert, MIN_CAPACITY, STEP_SLOTS, VisitorTable};
use crate::set::word_table::{HoldsRuns, Visit, WordTable, Words};
use crate::time::Series;
use crate::time::ttl::Expiry;

/// Visitor hashes with the tick of each one's latest visit and its
/// activity word: a slot is 16 bytes (hash, tick, word).
///
/// Two handles, 16 bytes, held in the page record itself (see
/// `VisitorSet::Timed`): the table's, and the box of the rest. A record
/// reads both, and as neither is behind the other it waits for one miss
/// where a boxed record holding the table's handle cost two in a row.
#[derive(Debug, Clone)]
pub(crate) struct TimedTable {
    pairs: WordTable<2, ThinVec<u64>, Box<Rest>>,
}

/// What a timed table keeps besides its slots: the horizon and the arena.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rest {
    horizon: Horizon,
    runs: Runs,
}

impl HoldsRuns for Box<Rest> {
    #[inline]
    fn runs(&self) -> &Runs {
        &self.runs
    }

    #[inline]
    fn runs_mut(&mut self) -> &mut Runs {
        &mut self.runs
    }
}

/// Which value of a slot is the tick.
const TICK: usize = 0;

/// Heap bytes of a new timed table before its horizon and arena: the
/// boxed rest and the smallest table.
pub(crate) const MIN_TIMED_BYTES: usize =
    std::mem::size_of::<Rest>() + VisitorTable::<2, ThinVec<u64>>::bytes_for(MIN_CAPACITY);

impl TimedTable {
    /// A table of `pairs` (hash, tick, buckets ascending), all live under
    /// `expiry`.
    pub(crate) fn from_pairs<'a>(
        pairs: impl ExactSizeIterator<Item = (u64, u32, &'a [u32])>,
        expiry: Expiry,
    ) -> Self {
        let mut table = WordTable::new();
        table.reserve(pairs.len());
        for (hash, tick, buckets) in pairs {
            table.insert_with_buckets(hash, [tick, 0], buckets);
        }
        let mut table = Self { pairs: table };
        table.pairs.runs.horizon = table.new_horizon(expiry.oldest_live());
        table
    }

    /// Whether the table is too large to rebuild in one sweep step: it
    /// then keeps a complete horizon (which never runs out, so counting
    /// never needs a rebuild) and the sweep drops its expired pairs in
    /// bounded steps ([`sweep_step`](Self::sweep_step)).
    fn is_large(&self) -> bool {
        self.pairs.table.capacity() > STEP_SLOTS
    }

    /// The horizon a table of this size keeps: complete when large, the
    /// oldest eighth when not.
    fn new_horizon(&self, oldest_live: u32) -> Horizon {
        let ticks = self.pairs.words().pairs().map(|(_, v)| v[TICK]);
        if self.is_large() {
            Horizon::complete(ticks)
        } else {
            Horizon::cut(ticks, oldest_live)
        }
    }

    /// A bounded share of dropping the expired pairs (and, with a
    /// retention, the buckets before `oldest_bucket`) of a large table:
    /// visits at most `max` slots from `start`. Returns the pairs dropped,
    /// the slots visited and the slot to resume at, `None` once the pass
    /// is over. A table that is not large is rebuilt whole. A pass that
    /// ends may shrink the table (see [`WordTable::finish_pass`], whose
    /// `reserve` this passes on; the bytes it reserved are added to
    /// `*reserved`).
    pub(crate) fn sweep_step(
        &mut self,
        expiry: Expiry,
        oldest_bucket: u32,
        start: usize,
        max: usize,
        reserve: &mut dyn FnMut(usize) -> bool,
        reserved: &mut usize,
    ) -> (usize, usize, Option<usize>) {
        let slots = self.pairs.table.capacity();
        if !self.is_large() {
            let dirty = self.needs_rebuild(expiry) || self.expired(expiry) > 0 || oldest_bucket > 0;
            let dropped = if dirty {
                self.rebuild(expiry, oldest_bucket)
            } else {
                0
            };
            return (dropped, slots, None);
        }
        let oldest = expiry.oldest_live();
        // Every expired pair is retired first, so each one dropped just
        // leaves the expired count.
        self.pairs.runs.horizon.advance(oldest);
        if start == 0 && oldest_bucket == 0 && self.expired(expiry) == 0 {
            return (0, 1, None);
        }
        let (dropped, next) = self.pairs.retain_step(
            start,
            max,
            oldest_bucket,
            |values| values[TICK] >= oldest,
            |rest, values| rest.horizon.forget(values[TICK]),
        );
        // Each visit either moved on or dropped a pair.
        let visited = (next.saturating_sub(start) + dropped).max(1);
        if next < slots {
            return (dropped, visited, Some(next));
        }
        *reserved += self.pairs.finish_pass(reserve);
        if !self.is_large() {
            // Shrunk: back to the horizon of its size.
            self.pairs.runs.horizon = self.new_horizon(oldest);
        }
        (dropped, visited, None)
    }

    /// Pairs stored, live or not yet dropped.
    pub(crate) fn stored(&self) -> usize {
        self.pairs.len()
    }

    /// Live pairs under `expiry`: O(log n) while the horizon covers the
    /// oldest live tick, a scan of the ticks once it does not (until the
    /// next write or sweep rebuilds the page).
    pub(crate) fn live(&self, expiry: Expiry) -> usize {
        let oldest = expiry.oldest_live();
        let expired = if self.pairs.runs.horizon.covers(oldest) {
            self.pairs.runs.horizon.expired_at(oldest)
        } else {
            self.pairs
                .words()
                .pairs()
                .filter(|(_, v)| v[TICK] < oldest)
                .count()
        };
        self.pairs.len() - expired
    }

    /// Whether the next [`expire`](Self::expire) must rebuild the page.
    pub(crate) fn needs_rebuild(&self, expiry: Expiry) -> bool {
        !self.pairs.runs.horizon.covers(expiry.oldest_live())
    }

    /// Pairs expired and not yet dropped.
    pub(crate) fn expired(&self, expiry: Expiry) -> usize {
        self.pairs.len() - self.live(expiry)
    }

    /// A lower bound on the tick of every stored pair (0 while retired,
    /// expired pairs wait to be dropped): until it expires, a sweep has
    /// nothing to do here. Reads the record only.
    pub(crate) fn oldest_tick(&self) -> u32 {
        if self.pairs.runs.horizon.retired() > 0 {
            0
        } else {
            self.pairs.runs.horizon.next()
        }
    }

    /// Whether nothing is due at `expiry`: no pair to retire, no rebuild
    /// (so [`expire`](Self::expire) would change nothing).
    #[inline]
    pub(crate) fn is_up_to(&self, expiry: Expiry) -> bool {
        expiry.oldest_live() <= self.pairs.runs.horizon.next()
    }

    /// Brings the page up to `expiry`: retires expired horizon entries, or
    /// once the horizon is exhausted drops the expired pairs and cuts a new
    /// one. Returns the pairs dropped. While nothing is due (the oldest
    /// live tick is at most the horizon's `next`) it reads only the
    /// record, not the list.
    #[inline]
    pub(crate) fn expire(&mut self, expiry: Expiry, oldest_bucket: u32) -> usize {
        let oldest = expiry.oldest_live();
        if self.pairs.runs.horizon.covers(oldest) {
            self.pairs.runs.horizon.advance(oldest);
            0
        } else {
            self.rebuild(expiry, oldest_bucket)
        }
    }

    /// Drops every expired pair, and the buckets before `oldest_bucket`
    /// (retention) of the others, and cuts a new horizon. Returns the
    /// pairs dropped.
    pub(crate) fn rebuild(&mut self, expiry: Expiry, oldest_bucket: u32) -> usize {
        let oldest = expiry.oldest_live();
        let dropped = self
            .pairs
            .retain(oldest_bucket, |_, values| values[TICK] >= oldest);
        self.pairs.runs.horizon = self.new_horizon(oldest);
        dropped
    }

    /// See [`VisitorTable::prefetch`].
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        self.pairs.table.prefetch(hash);
    }

    /// See [`VisitorTable::prefetch_home`].
    #[inline]
    pub(crate) fn prefetch_home(&self, hash: u64, capacity: usize) {
        self.pairs.table.prefetch_home(hash, capacity);
    }

    /// Slots of the table.
    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.pairs.table.capacity()
    }

    /// See [`VisitorTable::prefetch_header`].
    #[inline]
    pub(crate) fn prefetch_header(&self) {
        self.pairs.table.prefetch_header();
    }

    /// Adds `hash` at `tick` in `bucket` (the set must be up to
    /// `expiry`'s time, see [`expire`](Self::expire)); see [`Insert`]. A
    /// known pair's tick moves forwards.
    #[inline]
    pub(crate) fn insert(&mut self, hash: u64, tick: u32, bucket: u32) -> Insert {
        if self.pairs.runs.horizon.needs_room_for(tick) {
            // A complete horizon's list is full: it grows like the table,
            // reserved first, or it would end and the page's counts scan.
            let bytes = Horizon::ROOM_BYTES;
            return match self.pairs.table.find(hash) {
                Some(slot) => Insert::GrowKnown {
                    bytes,
                    was: self.pairs.table.value(slot, TICK),
                },
                None => Insert::Grow(bytes),
            };
        }
        match self.pairs.visit(hash, bucket, [tick, bucket]) {
            Visit::Added => {
                self.pairs.runs.horizon.note(tick);
                Insert::Added
            }
            Visit::GrowTable(bytes) => Insert::Grow(bytes),
            Visit::GrowRuns { slot, bytes } => Insert::GrowKnown {
                bytes,
                was: self.pairs.table.value(slot, TICK),
            },
            Visit::Known { slot } => Insert::Refreshed {
                was: self.refresh(slot, tick),
            },
        }
    }

    /// Moves the tick of the pair in `slot` forwards to `tick`; returns
    /// the tick it had.
    #[inline]
    fn refresh(&mut self, slot: usize, tick: u32) -> u32 {
        let was = self.pairs.table.value(slot, TICK);
        if tick > was {
            self.pairs.table.set_value(slot, TICK, tick);
            self.pairs.runs.horizon.forget(was);
            self.pairs.runs.horizon.note(tick);
        }
        was
    }

    /// Sizes the table for `len` pairs (see `VisitorTable::reserve`).
    pub(crate) fn reserve(&mut self, len: usize) {
        self.pairs.reserve(len);
        self.complete_if_large();
    }

    /// A table that has just grown large takes on a complete horizon (one
    /// scan, when the growth itself has just moved every pair).
    fn complete_if_large(&mut self) {
        if self.is_large() && !self.pairs.runs.horizon.is_complete() {
            self.pairs.runs.horizon =
                Horizon::complete(self.pairs.words().pairs().map(|(_, v)| v[TICK]));
        }
    }

    /// The table's heap bytes before and after the growth an insert of a
    /// new visitor asked for (`Insert::Grow`), when that growth only moves
    /// the table into its next size (so the new buffer may come from a
    /// [`TablePool`](super::table_pool::TablePool), see
    /// [`grow_pooled`](Self::grow_pooled)): the horizon is cut, not
    /// complete (a complete one's list may be what asked for room), and
    /// the grown table is not large (which would complete it).
    pub(crate) fn pooled_growth(&self) -> Option<(usize, usize)> {
        let table = &self.pairs.table;
        (!self.pairs.runs.horizon.is_complete() && table.grown_capacity() <= STEP_SLOTS)
            .then(|| (table.heap_bytes(), table.grown_bytes()))
    }

    /// Carries out a growth [`pooled_growth`](Self::pooled_growth)
    /// described, into `spare` (a buffer of its new size from a pool) or a
    /// new buffer, adding `hash` (absent) at `tick` in `bucket`, as
    /// [`grow_and_insert`](Self::grow_and_insert) would. Returns the
    /// buffer grown out of.
    pub(crate) fn grow_pooled(
        &mut self,
        hash: u64,
        tick: u32,
        bucket: u32,
        spare: Option<ThinVec<u64>>,
    ) -> ThinVec<u64> {
        debug_assert!(self.pooled_growth().is_some());
        let old = self.pairs.table.grow_into(hash, [tick, bucket], spare);
        self.pairs.runs.horizon.note(tick);
        old
    }

    /// Carries out an insert answered with a `Grow`, once its bytes are
    /// reserved.
    pub(crate) fn grow_and_insert(&mut self, hash: u64, tick: u32, bucket: u32) {
        if self.pairs.runs.horizon.needs_room_for(tick) {
            self.pairs.runs.horizon.make_room();
            // With room in the list the visit may need nothing more.
            if !matches!(
                self.insert(hash, tick, bucket),
                Insert::Grow(_) | Insert::GrowKnown { .. }
            ) {
                return;
            }
        }
        match self.pairs.grow_and_visit(hash, bucket, [tick, bucket]) {
            Some(slot) => {
                self.refresh(slot, tick);
            }
            None => {
                self.pairs.runs.horizon.note(tick);
                self.complete_if_large();
            }
        }
    }

    /// Heap bytes: the boxed rest, the table, the arena and the
    /// horizon's list.
    #[inline]
    pub(crate) fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Rest>() + self.pairs.heap_bytes() + self.pairs.runs.horizon.heap_bytes()
    }

    /// The pairs with their ticks, in table order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.pairs.words().pairs().map(|(h, v)| (h, v[TICK]))
    }

    /// The pairs with their ticks and words, in table order.
    pub(crate) fn words(&self) -> Words<'_, 2, ThinVec<u64>> {
        self.pairs.words()
    }

    /// Live pairs seen in `range`.
    pub(crate) fn count_in(&self, range: Range<u64>, expiry: Expiry) -> u64 {
        self.pairs
            .words()
            .count_in(range, |v| expiry.is_live(v[TICK]))
    }

    /// Counts live pairs per point of `series`.
    pub(crate) fn count_points(&self, series: &Series, expiry: Expiry, counts: &mut [u32]) {
        self.pairs
            .words()
            .count_points(series, |v| expiry.is_live(v[TICK]), counts);
    }

    /// Calls `f` with every live pair seen in `range`.
    pub(crate) fn hashes_in(&self, range: Range<u64>, expiry: Expiry, f: impl FnMut(u64)) {
        self.pairs
            .words()
            .hashes_in(range, |v| expiry.is_live(v[TICK]), f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// A large table's horizon stays complete however many new seconds
    /// its writes bring (its list grows, reserved, when full), so the
    /// sweep's per-step counts never scan the table. Before, the first
    /// new second past a full list ended the horizon: counts of a page of
    /// 1M pairs then scanned it at every sweep step (5.9 ms a step).
    #[test]
    fn a_large_tables_horizon_stays_complete_as_seconds_pass() {
        let ttl = 3_600;
        let mut now = 10_000;
        let mut table = TimedTable::from_pairs(std::iter::empty(), Expiry { now, ttl });
        let mut grown = 0;
        let mut record = |table: &mut TimedTable, hash: u64, now: u32| {
            let outcome = table.insert(hash, now, now / 60);
            if let Insert::Grow(bytes) | Insert::GrowKnown { bytes, .. } = outcome {
                grown += bytes;
                table.grow_and_insert(hash, now, now / 60);
            }
        };
        let mut hash = 1u64;
        while !table.is_large() {
            hash += 1;
            record(&mut table, hash.wrapping_mul(0x9E37_79B9_7F4A_7C15), now);
        }
        assert!(table.pairs.runs.horizon.is_complete());
        // Two hundred seconds, each bringing new pairs and a revisit.
        for _ in 0..200 {
            now += 1;
            for _ in 0..5 {
                hash += 1;
                record(&mut table, hash.wrapping_mul(0x9E37_79B9_7F4A_7C15), now);
            }
            record(&mut table, 2u64.wrapping_mul(0x9E37_79B9_7F4A_7C15), now);
            assert!(table.pairs.runs.horizon.is_complete(), "at {now}");
        }
        assert!(grown > 0);
        let later = Expiry {
            now: now + 100,
            ttl: 3_600 + 100 - 150,
        };
        assert!(table.pairs.runs.horizon.covers(later.oldest_live()));
    }

    proptest! {
        /// Against a map of each hash's latest tick, with time moving on:
        /// live counts, drops and the stored set agree.
        #[test]
        fn behaves_like_a_map_of_latest_ticks(
            ops in proptest::collection::vec((1u64..40, 0u32..6, 0u32..4), 1..300),
            ttl in 1u32..20,
        ) {
            let mut now = 1_000;
            let expiry = |now| Expiry { now, ttl };
            let mut model: HashMap<u64, u32> = HashMap::new();
            let mut table = TimedTable::from_pairs(std::iter::empty(), expiry(now));
            for (hash, back, step) in ops {
                now += step;
                let e = expiry(now);
                let tick = now.saturating_sub(back).max(e.oldest_live());
                let dropped = table.expire(e, 0);
                let before = model.len();
                if dropped > 0 {
                    model.retain(|_, &mut t| e.is_live(t));
                    prop_assert_eq!(before - model.len(), dropped);
                }
                // Buckets of ten seconds.
                let outcome = table.insert(hash, tick, tick / 10);
                if matches!(outcome, Insert::Grow(_) | Insert::GrowKnown { .. }) {
                    table.grow_and_insert(hash, tick, tick / 10);
                }
                let latest = model.entry(hash).or_insert(tick);
                *latest = (*latest).max(tick);
                let live = model.values().filter(|&&t| e.is_live(t)).count();
                prop_assert_eq!(table.live(e), live);
                prop_assert_eq!(table.stored(), model.len());
            }
            let later = expiry(now + ttl);
            prop_assert_eq!(table.live(later), 0);
            prop_assert_eq!(table.rebuild(later, 0), model.len());
            prop_assert_eq!(table.stored(), 0);
        }
    }
}
