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
pub(crate) mod table_pool;
pub(crate) mod timed_sketch;
pub(crate) mod timed_table;
pub(crate) mod union;
pub(crate) mod visitor_hash;
pub(crate) mod visitor_table;
pub(crate) mod word_table;

use std::ops::Range;
use thin_vec::ThinVec;

use crate::report::Distinct;
use crate::set::activity::Runs;
use crate::set::history::{History, HistoryInsert, Sketched};
use crate::set::timed_sketch::{GENERATION_BYTES, MAX_GENERATIONS, TimedSketch};
use crate::set::timed_table::{MIN_TIMED_BYTES, TimedTable};
use crate::set::union::Union;
pub(crate) use crate::set::visitor_table::Insert;
use crate::set::visitor_table::MOVE_PAIRS;
pub(crate) use crate::set::visitor_table::STEP_SLOTS;
use crate::set::visitor_table::TableInsert;
use crate::set::visitor_table::{MIN_CAPACITY, VisitorTable};
use crate::set::word_table::{Visit, WIDE, WordTable, Words};
use crate::sketch::UltraLogLog;
use crate::time::ttl::Expiry;
use crate::time::{Bucketing, Series};

/// Heap bytes of a page's set in sketch form before its history: the
/// boxed record and the all-time sketch's registers.
const SKETCH_BYTES: usize = std::mem::size_of::<Sketched>() + (1 << UltraLogLog::DEFAULT_PRECISION);

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
    /// An open-addressing table of hashes with their activity words. The
    /// fields are the table's pair count (high 8 and low 16 bits, in what
    /// would be padding; [`MAX_COUNTED`] means "read the table's
    /// header"), the last-recorded tick, and the table. A count
    /// (`distinct`) then reads no line of the table: for a large page that
    /// was a miss after the record's (docs/BENCHMARKS.md, "The page
    /// lookup's dependent misses").
    Table(u8, u16, u32, VisitorTable<1>),
    /// The same once a pair was seen in a second bucket: the table boxed
    /// with the page's arena of runs (its count beside it as in `Table`:
    /// the box then holds nothing a count reads).
    TableRuns(u8, u16, u32, Box<WordTable<1>>),
    /// The same with cells of [`WIDE`] words (five buckets), once the
    /// arena outweighs them (see `word_table`).
    TableWide(u8, u16, u32, Box<WideTable>),
    /// Hashes with their latest ticks and activity words (with a TTL),
    /// and the table's capacity as its last insert saw it (0 above
    /// `u16::MAX`; in the record's spare bytes): see
    /// [`prefetch_home`](Self::prefetch_home).
    Timed(u32, u16, TimedTable),
    /// A cardinality sketch of the hashes, and one per day of history:
    /// counts are estimates.
    Sketch(u32, Box<Sketched>),
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

impl Ask {
    /// The bucket width in seconds.
    pub(crate) fn width(&self) -> u32 {
        self.bucketing.width().as_secs() as u32
    }

    fn per_day(&self) -> u64 {
        u64::from(86_400 / self.width())
    }

    /// The UTC days that buckets `range` meet.
    fn days(&self, range: &Range<u64>) -> Range<u32> {
        let per_day = self.per_day();
        (range.start / per_day) as u32..range.end.div_ceil(per_day) as u32
    }

    /// The buckets of `days`.
    fn buckets_of_days(&self, days: Range<u32>) -> Range<u64> {
        u64::from(days.start) * self.per_day()..u64::from(days.end) * self.per_day()
    }
}

/// A set's answer for a range of buckets.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Between {
    pub(crate) distinct: Distinct,
    /// The buckets the count covers: the range asked, or a wider one when
    /// the set cannot tell its visits apart that finely.
    pub(crate) covered: Range<u64>,
}

/// What a sweep did to one set ([`VisitorSet::drop_expired`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dropped {
    /// Pairs dropped.
    pub(crate) pairs: usize,
    /// Table slots visited (1 for a set without a table): the work done.
    pub(crate) slots: usize,
    /// The slot the next step resumes at, while a large table's pass is
    /// not over.
    pub(crate) resume: Option<usize>,
    /// Bytes reserved for an allocation built beside the old one (a
    /// shrink when a pass ends): the caller books the set's change from
    /// its bytes before plus these.
    pub(crate) reserved: usize,
}

impl Dropped {
    /// A step over a large table's slots from `from` that dropped `pairs`
    /// and stopped at `next`: `finish` runs if that ended the pass, and
    /// returns the bytes it reserved.
    fn of_step(
        pairs: usize,
        from: usize,
        next: usize,
        slots: usize,
        finish: impl FnOnce() -> usize,
    ) -> Self {
        // Each visit either moved on or dropped a pair.
        let visited = (next.saturating_sub(from) + pairs).max(1);
        let resume = (next < slots).then_some(next);
        let reserved = if resume.is_none() { finish() } else { 0 };
        Dropped {
            pairs,
            slots: visited,
            resume,
            reserved,
        }
    }
}

/// The largest age the inline form stores: 24 bits.
const MAX_INLINE_AGE: u32 = (1 << 24) - 1;

impl VisitorSet {
    /// The distinct visitors seen in the buckets `range` (with a TTL, the
    /// live ones): exact for exact sets, one scan of their words. A
    /// sketched page cannot tell its visits apart in time: it answers
    /// over every bucket it may hold, and says so in `covered`.
    pub(crate) fn between(&self, range: Range<u64>, ask: &Ask, expiry: Option<Expiry>) -> Between {
        let width = ask.width();
        let visitors = match (self, expiry) {
            (VisitorSet::Sketch(_, sketched), _) => {
                let days = ask.days(&range);
                if !sketched.answers(&days) {
                    return Between {
                        distinct: self.count(expiry),
                        covered: self.everything(range, ask),
                    };
                }
                let (distinct, covered) = sketched.history.union(days);
                return Between {
                    distinct,
                    covered: ask.buckets_of_days(covered),
                };
            }
            (VisitorSet::TimedSketch(..), _) => {
                return Between {
                    distinct: self.count(expiry),
                    covered: self.everything(range, ask),
                };
            }
            (VisitorSet::Inline(..), _) => self
                .inline_ticks()
                .filter(|&(_, t)| expiry.is_none_or(|e| e.is_live(t)))
                .filter(|&(_, t)| range.contains(&u64::from(t / width)))
                .count() as u64,
            (VisitorSet::Table(..) | VisitorSet::TableRuns(..) | VisitorSet::TableWide(..), _) => {
                self.untimed()
                    .expect("an untimed table")
                    .count_in(range.clone())
            }
            (VisitorSet::Timed(_, _, table), Some(expiry)) => table.count_in(range.clone(), expiry),
            (VisitorSet::Timed(_, _, table), None) => {
                table.words().count_in(range.clone(), |_| true)
            }
        };
        Between {
            distinct: Distinct::exact(visitors),
            covered: range,
        }
    }

    /// `range` widened to every bucket the set may hold a pair in.
    fn everything(&self, range: Range<u64>, ask: &Ask) -> Range<u64> {
        let latest = u64::from(self.last_recorded() / ask.width()) + 1;
        range.start.min(ask.held.start)..range.end.max(ask.held.end).max(latest)
    }

    /// Adds each point's exact count of the set's visitors to `counts`
    /// (one per point of `series`), if the set can tell its visits apart
    /// by point; returns false, with `counts` unchanged, if not (the
    /// caller then asks [`between`](Self::between) for each point).
    pub(crate) fn count_points(
        &self,
        series: &Series,
        ask: &Ask,
        expiry: Option<Expiry>,
        counts: &mut [u32],
    ) -> bool {
        match (self, expiry) {
            (VisitorSet::Sketch(..) | VisitorSet::TimedSketch(..), _) => return false,
            (VisitorSet::Inline(..), _) => {
                for (_, tick) in self.inline_ticks() {
                    if expiry.is_none_or(|e| e.is_live(tick))
                        && let Some(p) = series.point_of(tick / ask.width())
                    {
                        counts[p] += 1;
                    }
                }
            }
            (VisitorSet::Table(..) | VisitorSet::TableRuns(..) | VisitorSet::TableWide(..), _) => {
                self.untimed()
                    .expect("an untimed table")
                    .count_points(series, counts)
            }
            (VisitorSet::Timed(_, _, table), Some(expiry)) => {
                table.count_points(series, expiry, counts)
            }
            (VisitorSet::Timed(_, _, table), None) => {
                table.words().count_points(series, |_| true, counts)
            }
        }
        true
    }

    /// Adds the visitors seen in the union's range to it: exact pairs as
    /// hashes, sketches merged (widening the union to all they hold).
    pub(crate) fn add_to_union(&self, union: &mut Union, ask: &Ask, expiry: Option<Expiry>) {
        let range = union.range();
        let live = |tick: u32| expiry.is_none_or(|e| e.is_live(tick));
        match (self, expiry) {
            (VisitorSet::Sketch(_, sketched), _) => {
                let days = ask.days(&range);
                if sketched.answers(&days) {
                    let mut sketches = Vec::new();
                    let covered = sketched.history.add_to(
                        days,
                        |h| union.push(h),
                        |s| sketches.push(s.clone()),
                    );
                    for sketch in &sketches {
                        union.merge(sketch);
                    }
                    union.widen(ask.buckets_of_days(covered));
                } else {
                    union.widen(self.everything(range, ask));
                    union.merge(&sketched.all);
                }
            }
            (VisitorSet::TimedSketch(_, generations), _) => {
                union.widen(self.everything(range, ask));
                for sketch in expiry.iter().flat_map(|&e| generations.live(e)) {
                    union.merge(sketch);
                }
            }
            (VisitorSet::Inline(..), _) => {
                for (hash, tick) in self.inline_ticks() {
                    if live(tick) && range.contains(&u64::from(tick / ask.width())) {
                        union.push(hash);
                    }
                }
            }
            (VisitorSet::Table(..) | VisitorSet::TableRuns(..) | VisitorSet::TableWide(..), _) => {
                self.untimed()
                    .expect("an untimed table")
                    .hashes_in(range, |h| union.push(h))
            }
            (VisitorSet::Timed(_, _, table), Some(expiry)) => {
                table.hashes_in(range, expiry, |h| union.push(h))
            }
            (VisitorSet::Timed(_, _, table), None) => {
                table.words().hashes_in(range, |_| true, |h| union.push(h))
            }
        }
    }

    /// A sketched page's history (without a TTL), to merge its oldest
    /// days under memory pressure.
    pub(crate) fn history_mut(&mut self) -> Option<&mut History> {
        match self {
            VisitorSet::Sketch(_, sketched) => Some(&mut sketched.history),
            _ => None,
        }
    }

    /// The first day of a sketched page's history whose two oldest
    /// periods merging would free memory.
    pub(crate) fn mergeable_since(&self) -> Option<u32> {
        match self {
            VisitorSet::Sketch(_, sketched) if sketched.history.merge_frees() => {
                sketched.history.oldest_day()
            }
            _ => None,
        }
    }

    /// An untimed table's pairs and cells.
    fn untimed(&self) -> Option<Untimed<'_>> {
        match self {
            VisitorSet::Table(.., table) => Some(Untimed::Narrow(Words {
                table,
                runs: &NO_RUNS,
            })),
            VisitorSet::TableRuns(.., table) => Some(Untimed::Narrow(table.words())),
            VisitorSet::TableWide(.., table) => Some(Untimed::Wide(table.words())),
            _ => None,
        }
    }

    /// The `Table` form of `table`, last recorded at `last`.
    fn table(last: u32, table: VisitorTable<1>) -> Self {
        let (high, low) = split_count(table.len());
        VisitorSet::Table(high, low, last, table)
    }

    /// An empty set last recorded at `tick`.
    pub(crate) fn new(tick: u32) -> Self {
        VisitorSet::Inline(0, 0, tick, [0; INLINE])
    }

    /// When the page was last recorded.
    pub(crate) fn last_recorded(&self) -> u32 {
        match self {
            VisitorSet::Inline(_, _, last, _)
            | VisitorSet::Table(_, _, last, _)
            | VisitorSet::TableRuns(_, _, last, _)
            | VisitorSet::TableWide(_, _, last, _)
            | VisitorSet::Timed(last, _, _)
            | VisitorSet::Sketch(last, _)
            | VisitorSet::TimedSketch(last, _) => *last,
        }
    }

    /// Prefetches where an insert of `hash` starts (see
    /// [`VisitorTable::prefetch`]).
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        match self {
            VisitorSet::Table(.., table) => table.prefetch(hash),
            VisitorSet::TableRuns(.., table) => table.table.prefetch(hash),
            VisitorSet::TableWide(.., table) => table.table.prefetch(hash),
            VisitorSet::Timed(_, _, table) => table.prefetch(hash),
            _ => {}
        }
    }

    /// [`prefetch`](Self::prefetch) of each of `hashes`, telling the
    /// set's kind apart once.
    #[inline]
    pub(crate) fn prefetch_each(&self, hashes: impl IntoIterator<Item = u64>) {
        match self {
            VisitorSet::Table(.., table) => table.prefetch_each(hashes),
            VisitorSet::TableRuns(.., table) => table.table.prefetch_each(hashes),
            VisitorSet::TableWide(.., table) => table.table.prefetch_each(hashes),
            VisitorSet::Timed(_, _, table) => hashes.into_iter().for_each(|h| table.prefetch(h)),
            _ => {}
        }
    }

    /// Prefetches a timed table's lines an insert of `hash` reads first
    /// (its home slot's key and values) at the capacity the record last
    /// saw, before the table's header (which holds its capacity) arrives:
    /// so those misses overlap the header's instead of following it, as a
    /// boxed table's do (its handle holds its length; a timed table's is
    /// thin). A capacity changed since only wastes the prefetch.
    #[inline]
    pub(crate) fn prefetch_home(&self, hash: u64) {
        if let VisitorSet::Timed(_, seen, table) = self
            && *seen > 0
        {
            table.prefetch_home(hash, usize::from(*seen));
        }
    }

    /// Prefetches what [`prefetch`](Self::prefetch) reads first: a table's
    /// header.
    #[inline]
    pub(crate) fn prefetch_header(&self) {
        match self {
            VisitorSet::Table(.., table) => table.prefetch_header(),
            VisitorSet::TableRuns(.., table) => table.table.prefetch_header(),
            VisitorSet::TableWide(.., table) => table.table.prefetch_header(),
            VisitorSet::Timed(_, _, table) => table.prefetch_header(),
            _ => {}
        }
    }

    /// Prefetches the line [`count`](Self::count) reads first outside the
    /// page record: none for an inline set or an untimed table (its count
    /// is beside it), a sketch's box, a timed table's header.
    #[inline]
    pub(crate) fn prefetch_count(&self) {
        match self {
            VisitorSet::Inline(..)
            | VisitorSet::Table(..)
            | VisitorSet::TableRuns(..)
            | VisitorSet::TableWide(..) => {}
            VisitorSet::Sketch(_, sketched) => crate::prefetch::prefetch(&**sketched),
            VisitorSet::TimedSketch(_, sketch) => crate::prefetch::prefetch(&**sketch),
            VisitorSet::Timed(..) => self.prefetch_header(),
        }
    }

    /// Prefetches the lines an insert of `hash` reads first (the table's
    /// header and the slots from its home), from the handle alone: what
    /// `Stripe::record_existing` asks for while its probe compares the
    /// page's URL, so that the two sets of misses overlap instead of
    /// following each other under the stripe's lock (issue 18).
    #[inline]
    pub(crate) fn prefetch_insert(&self, hash: u64) {
        self.prefetch_header();
        match self {
            // The capacity from the page record, not the thin table's
            // header: the addresses do not wait for that load (only the
            // bounds checks read it, and their branch is predicted).
            VisitorSet::Timed(..) => self.prefetch_home(hash),
            _ => self.prefetch(hash),
        }
    }

    /// Notes a record at `tick` (recency only moves forwards: a back-filled
    /// event does not make a page look older). The inline form keeps its
    /// most recent visitor's tick there already.
    pub(crate) fn touch(&mut self, tick: u32) {
        match self {
            VisitorSet::Inline(..) => {}
            VisitorSet::Table(_, _, last, _)
            | VisitorSet::TableRuns(_, _, last, _)
            | VisitorSet::TableWide(_, _, last, _)
            | VisitorSet::Timed(last, _, _)
            | VisitorSet::Sketch(last, _)
            | VisitorSet::TimedSketch(last, _) => {
                // Written only when it moves: the page's table bucket then
                // stays clean, so that another core's probe past it does
                // not have to take its cache line back (issue 18).
                if tick > *last {
                    *last = tick;
                }
            }
        }
    }

    /// Visitor hashes stored exactly, live or expired but not yet dropped
    /// (0 for a sketch, which holds none). O(1).
    pub(crate) fn pairs(&self) -> usize {
        match self {
            VisitorSet::Inline(_, _, _, slots) => slots.iter().take_while(|&&h| h != 0).count(),
            VisitorSet::Table(high, low, _, table) => counted(*high, *low, table),
            VisitorSet::TableRuns(high, low, _, table) => counted(*high, *low, &table.table),
            VisitorSet::TableWide(high, low, _, table) => counted(*high, *low, &table.table),
            VisitorSet::Timed(_, _, table) => table.stored(),
            VisitorSet::Sketch(..) | VisitorSet::TimedSketch(..) => 0,
        }
    }

    /// The page's distinct visitors (with a TTL, the live ones at
    /// `expiry`): exact, or the sketch's estimate with its relative
    /// standard error. O(1) for every form but a timed table, which is
    /// O(log n) (see `horizon`).
    pub(crate) fn count(&self, expiry: Option<Expiry>) -> Distinct {
        match (self, expiry) {
            (VisitorSet::Sketch(_, sketched), _) => Distinct {
                visitors: sketched.all.estimate().round() as u64,
                exact: false,
                relative_error: Some(sketched.all.relative_standard_error()),
            },
            (VisitorSet::TimedSketch(_, sketch), Some(expiry)) => sketch.count(expiry),
            (VisitorSet::Timed(_, _, table), Some(expiry)) => {
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

    /// For a sketched set, the visitors its sketches stand for, as the
    /// stripe's tally of estimated visitors counts them (`None` for an
    /// exact set): the all-time estimate, or with a TTL the sum of the
    /// generations' estimates (a visitor of two generations counts twice).
    /// O(1) per sketch while it keeps its martingale estimate (a sketch
    /// restored from a payload without one pays an O(m) estimate).
    #[inline]
    pub(crate) fn sketch_tally(&self) -> Option<u64> {
        match self {
            VisitorSet::Sketch(_, sketched) => Some(sketched.all.estimate().round() as u64),
            VisitorSet::TimedSketch(_, sketch) => Some(sketch.tally()),
            _ => None,
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

    /// The inline pairs with their latest ticks.
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
    pub(crate) fn expire(&mut self, expiry: Expiry, oldest_bucket: u32) -> usize {
        match self {
            VisitorSet::Timed(_, _, table) => table.expire(expiry, oldest_bucket),
            VisitorSet::TimedSketch(_, sketch) => {
                sketch.expire(expiry);
                0
            }
            VisitorSet::Inline(..) => self.retain_inline(|tick| expiry.is_live(tick)),
            _ => 0,
        }
    }

    /// [`expire`](Self::expire), and the set's heap bytes before it if
    /// it may have changed them (`None`: the set is inline, or nothing
    /// was due): a record with nothing due reads no more of a timed
    /// table than its insert does.
    #[inline]
    pub(crate) fn expire_sized(
        &mut self,
        expiry: Expiry,
        oldest_bucket: u32,
    ) -> (usize, Option<usize>) {
        match self {
            VisitorSet::Inline(..) => (self.expire(expiry, oldest_bucket), None),
            VisitorSet::Timed(_, _, table) if table.is_up_to(expiry) => (0, None),
            _ => {
                let before = self.heap_bytes();
                (self.expire(expiry, oldest_bucket), Some(before))
            }
        }
    }

    /// A lower bound on the tick of every pair the set holds (`u32::MAX`
    /// for none; 0 when it cannot tell, or an expired pair waits to be
    /// dropped), for the stripe's bound on what a sweep can find (see
    /// `Stripe::sweep`). A timed sketch's is the start of its oldest
    /// generation, which expires later than any of its visits.
    pub(crate) fn oldest_tick(&self, expiry: Expiry) -> u32 {
        match self {
            VisitorSet::Inline(..) => self
                .inline_ticks()
                .map(|(_, t)| t)
                .min()
                .unwrap_or(u32::MAX),
            VisitorSet::Timed(_, _, table) => table.oldest_tick(),
            VisitorSet::TimedSketch(_, sketch) => sketch.oldest_tick(expiry),
            _ => 0,
        }
    }

    /// Keeps the inline pairs whose tick `keep` accepts; returns how many
    /// went.
    fn retain_inline(&mut self, keep: impl Fn(u32) -> bool) -> usize {
        let VisitorSet::Inline(high, low, last, slots) = self else {
            return 0;
        };
        let second = last.wrapping_sub(age(*high, *low));
        let mut dropped = 0;
        if slots[1] != 0 && !keep(second) {
            slots[1] = 0;
            (*high, *low) = (0, 0);
            dropped += 1;
        }
        if slots[0] != 0 && !keep(*last) {
            dropped += 1;
            // The second (if left) becomes the first.
            slots[0] = std::mem::take(&mut slots[1]);
            if slots[0] != 0 {
                *last = second;
                (*high, *low) = (0, 0);
            }
        }
        dropped
    }

    /// A sweep's work on the set, bounded: drops the expired pairs, and
    /// with a retention the buckets before `oldest_bucket` and the pairs
    /// left with none. A table of at most [`STEP_SLOTS`] slots is done
    /// whole; a larger one visits at most `max` slots from slot `from`
    /// and says where to resume (see [`Dropped`]).
    pub(crate) fn drop_expired(
        &mut self,
        expiry: Option<Expiry>,
        oldest_bucket: u32,
        width: u32,
        from: usize,
        max: usize,
        reserve: &mut dyn FnMut(usize) -> bool,
    ) -> Dropped {
        let retained = |tick: u32| tick / width >= oldest_bucket;
        let whole = |pairs: usize, slots: usize| Dropped {
            pairs,
            slots: slots.max(1),
            resume: None,
            reserved: 0,
        };
        match (self, expiry) {
            (VisitorSet::Timed(_, _, table), Some(expiry)) => {
                let mut reserved = 0;
                let (pairs, slots, resume) =
                    table.sweep_step(expiry, oldest_bucket, from, max, reserve, &mut reserved);
                Dropped {
                    pairs,
                    slots,
                    resume,
                    reserved,
                }
            }
            (set @ VisitorSet::Inline(..), _) => whole(
                set.retain_inline(|t| retained(t) && expiry.is_none_or(|e| e.is_live(t))),
                1,
            ),
            (VisitorSet::Table(high, low, _, table), None) if oldest_bucket > 0 => {
                let slots = table.capacity();
                if slots <= STEP_SLOTS {
                    let pairs = table.retain(|_, &mut [bucket]| bucket >= oldest_bucket);
                    (*high, *low) = split_count(table.len());
                    return whole(pairs, slots);
                }
                let (pairs, next) =
                    table.retain_slots(from, max, |_, &mut [bucket]| bucket >= oldest_bucket);
                (*high, *low) = split_count(table.len());
                Dropped::of_step(pairs, from, next, slots, || {
                    let bytes = table.shrunk_bytes();
                    if table.oversized() && table.len() <= MOVE_PAIRS && reserve(bytes) {
                        table.shrink_to_fit();
                        return bytes;
                    }
                    0
                })
            }
            (set, None)
                if oldest_bucket > 0
                    && matches!(set, VisitorSet::TableRuns(..) | VisitorSet::TableWide(..)) =>
            {
                let mut dropped = match set {
                    VisitorSet::TableRuns(high, low, _, table) => {
                        retain_runs(table, (high, low), oldest_bucket, from, max, reserve)
                    }
                    VisitorSet::TableWide(high, low, _, table) => {
                        retain_runs(table, (high, low), oldest_bucket, from, max, reserve)
                    }
                    _ => unreachable!("guarded"),
                };
                if dropped.resume.is_none() {
                    dropped.reserved += set.narrow(reserve);
                }
                dropped
            }
            (VisitorSet::Sketch(_, sketched), None) => {
                // The all-time sketch cannot forget; the days can.
                sketched
                    .history
                    .drop_before(oldest_bucket / (86_400 / width));
                whole(0, 1)
            }
            (set, Some(expiry)) => whole(set.expire(expiry, oldest_bucket), 1),
            _ => whole(0, 1),
        }
    }

    /// Moves an untimed table form whose pairs need less than its cells
    /// back to a narrower form, at the end of a sweep's pass: wide cells
    /// to one-word cells once the runs its pairs would need then take at
    /// most half the bytes the wide cells add (so that returns do not move
    /// it back at once: see `WordTable::widens`), and a table with no run
    /// left to the plain form. Only a table of at most [`MOVE_PAIRS`]
    /// pairs, as every move a pass's end makes; the new allocation's bytes
    /// are asked of `reserve` first, and nothing moves if it refuses.
    /// Returns the bytes reserved.
    fn narrow(&mut self, reserve: &mut dyn FnMut(usize) -> bool) -> usize {
        match self {
            VisitorSet::TableWide(high, low, last, table) if table.table.len() <= MOVE_PAIRS => {
                let capacity = table.table.capacity();
                let plain = VisitorTable::<1>::bytes_for(capacity);
                let wider = VisitorTable::<WIDE>::bytes_for(capacity) - plain;
                let runs = table.recelled_words::<1>() * std::mem::size_of::<u32>();
                let bytes = match runs {
                    0 => plain,
                    runs => plain + WORD_TABLE_BYTES + runs,
                };
                if 2 * runs > wider || !reserve(bytes) {
                    return 0;
                }
                let (high, low, last) = (*high, *low, *last);
                let narrow = WordTable::take(table).recelled::<1, 1>();
                *self = match runs {
                    0 => VisitorSet::Table(high, low, last, narrow.table),
                    _ => VisitorSet::TableRuns(high, low, last, Box::new(narrow)),
                };
                bytes
            }
            VisitorSet::TableRuns(high, low, last, table)
                if table.runs.len() == table.runs.garbage() =>
            {
                // Its cells hold one bucket each, as the plain form's do.
                let plain = std::mem::replace(&mut table.table, VisitorTable::placeholder());
                *self = VisitorSet::Table(*high, *low, *last, plain);
                0
            }
            _ => 0,
        }
    }

    /// Turns the set into a sketch of the same hashes, whose estimate
    /// starts at their exact count (no jump); with a TTL (`expiry`), into
    /// per-generation sketches of the live ones. Returns the heap bytes
    /// held before.
    pub(crate) fn convert_to_sketch(&mut self, expiry: Option<Expiry>, width: u32) -> usize {
        let before = self.heap_bytes();
        let last = self.last_recorded();
        if let Some(expiry) = expiry {
            if !self.is_sketch() {
                let sketch = TimedSketch::from_pairs(self.entries(), expiry);
                *self = VisitorSet::TimedSketch(last, Box::new(sketch));
            }
            return before;
        }
        if self.is_sketch() {
            return before;
        }
        let sketched = self.sketched(width);
        *self = VisitorSet::Sketch(last, Box::new(sketched));
        before
    }

    /// The sketch form of an exact set without a TTL: the all-time
    /// sketch and the history of every pair's days.
    fn sketched(&self, width: u32) -> Sketched {
        let all = UltraLogLog::from_exact_set(
            UltraLogLog::DEFAULT_PRECISION,
            self.entries().map(|(h, _)| h),
        )
        .expect("the default precision is valid");
        let per_day = 86_400 / width;
        let mut history = History::default();
        let mut per_day_count = std::collections::BTreeMap::<u32, u64>::new();
        self.for_each_pair(width, |hash, _, buckets| {
            let mut last_day = None;
            for &bucket in buckets {
                let day = bucket / per_day;
                if last_day != Some(day) {
                    history.insert_growing(day, hash);
                    *per_day_count.entry(day).or_default() += 1;
                    last_day = Some(day);
                }
            }
        });
        history.set_exact_counts(|day| per_day_count.get(&day).copied().unwrap_or(0));
        Sketched {
            all,
            history,
            since: 0,
        }
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
    pub(crate) fn sketched_bytes(&self, expiry: Option<Expiry>, width: u32) -> usize {
        match expiry {
            Some(expiry) => TimedSketch::bytes_for(self.entries().map(|(_, t)| t), expiry),
            None => SKETCH_BYTES + self.sketched(width).history.heap_bytes(),
        }
    }

    /// Heap bytes held by the set (0 while inline).
    #[inline]
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            VisitorSet::Inline(..) => 0,
            VisitorSet::Table(.., table) => table.heap_bytes(),
            VisitorSet::TableRuns(.., table) => WORD_TABLE_BYTES + table.heap_bytes(),
            VisitorSet::TableWide(.., table) => WIDE_TABLE_BYTES + table.heap_bytes(),
            VisitorSet::Timed(_, _, table) => table.heap_bytes(),
            VisitorSet::Sketch(_, sketched) => SKETCH_BYTES + sketched.history.heap_bytes(),
            VisitorSet::TimedSketch(_, sketch) => sketch.heap_bytes(),
        }
    }

    /// Adds a (non-zero) visitor hash seen at `tick` (in bucket `tick /
    /// width`) if that needs no allocation; see [`Insert`]. With a TTL
    /// (`expiry`), the set must be up to its time (see
    /// [`expire`](Self::expire)). A known pair answers `Refreshed` with
    /// its previous tick.
    #[inline(always)]
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        tick: u32,
        width: u32,
        expiry: Option<Expiry>,
    ) -> Insert {
        debug_assert_ne!(hash, 0);
        let bucket = tick / width;
        match self {
            VisitorSet::Table(high, low, _, table) => match table.insert(hash, [bucket]) {
                TableInsert::Added(_) => {
                    count_one_more(high, low);
                    Insert::Added
                }
                TableInsert::Grow(bytes) => Insert::Grow(bytes),
                TableInsert::Present(slot) if table.value(slot, 0) == bucket => Insert::Present,
                // A second bucket: the table takes on an arena.
                TableInsert::Present(_) => Insert::GrowKnown {
                    bytes: WORD_TABLE_BYTES + Runs::FIRST_RUN_BYTES,
                    was: 0,
                },
            },
            VisitorSet::TableRuns(high, low, _, table) => match table.visit(hash, bucket, [bucket])
            {
                // Moving to wide cells instead (see `grow_and_insert`).
                Visit::GrowRuns { bytes, .. } if table.widens::<WIDE>() => Insert::GrowKnown {
                    bytes: WIDE_TABLE_BYTES + table.recelled_bytes::<WIDE>(bytes / 4),
                    was: 0,
                },
                visit => visited(visit, high, low),
            },
            VisitorSet::TableWide(high, low, _, table) => visited(
                table.visit(hash, bucket, WideTable::new_values([0; WIDE], bucket)),
                high,
                low,
            ),
            VisitorSet::Timed(_, seen, table) => {
                let outcome = table.insert(hash, tick, bucket);
                *seen = u16::try_from(table.capacity()).unwrap_or(0);
                outcome
            }
            VisitorSet::Sketch(_, sketched) => {
                match sketched.history.insert(bucket / (86_400 / width), hash) {
                    HistoryInsert::Done => Insert::Estimated {
                        changed: sketched.all.insert(hash),
                    },
                    HistoryInsert::Grow(bytes) => Insert::Grow(bytes),
                }
            }
            // A change in one generation's sketch does not prove the
            // visitor new to the page (another generation may have it).
            VisitorSet::TimedSketch(_, sketch) => {
                match expiry.and_then(|e| sketch.insert(hash, tick, e)) {
                    Some(_) => Insert::Estimated { changed: false },
                    None => Insert::Grow(GENERATION_BYTES),
                }
            }
            VisitorSet::Inline(high, low, last, slots) => {
                let timed = expiry.is_some();
                match inline_visit(age(*high, *low), *last, slots, hash, tick, width) {
                    Ok((outcome, (age, last_tick, new_slots))) => {
                        (*high, *low) = split_age(age);
                        *last = last_tick;
                        *slots = new_slots;
                        outcome
                    }
                    Err(Insert::Grow(_)) => Insert::Grow(inline_to_table_bytes(timed, false)),
                    Err(Insert::GrowKnown { was, .. }) => Insert::GrowKnown {
                        bytes: inline_to_table_bytes(timed, was / width != bucket),
                        was,
                    },
                    Err(other) => other,
                }
            }
        }
    }

    /// The heap bytes before and after the growth a new visitor asked for
    /// (an insert answered `Grow`, no TTL), when that growth moves a plain
    /// table into a larger buffer or an inline set into its first table
    /// (0 bytes before): such a buffer can come from a
    /// [`TablePool`](table_pool::TablePool) ([`grow_pooled`](Self::grow_pooled)).
    /// `None` for any other form.
    pub(crate) fn pooled_growth(&self) -> Option<(usize, usize)> {
        match self {
            VisitorSet::Inline(..) => Some((0, VisitorTable::<1>::bytes_for(MIN_CAPACITY))),
            VisitorSet::Table(.., table) => Some((table.heap_bytes(), table.grown_bytes())),
            _ => None,
        }
    }

    /// Carries out a growth [`pooled_growth`](Self::pooled_growth)
    /// described, in `spare` (a buffer of its new size from a pool) or a
    /// new buffer, and adds `hash`, which must be absent. Returns the
    /// buffer grown out of (none from an inline set). Another form grows
    /// as [`grow_and_insert`](Self::grow_and_insert) would, and `spare`
    /// comes back unused.
    pub(crate) fn grow_pooled(
        &mut self,
        hash: u64,
        tick: u32,
        width: u32,
        spare: Option<Box<[u64]>>,
    ) -> Option<Box<[u64]>> {
        let bucket = tick / width;
        match self {
            VisitorSet::Table(high, low, _, table) => {
                let grown_out = table.grow_into(hash, [bucket], spare);
                count_one_more(high, low);
                Some(grown_out)
            }
            VisitorSet::Inline(..) => {
                let last = self.last_recorded().max(tick);
                let table = self.inline_table(width, spare, Some((hash, bucket)));
                *self = VisitorSet::table(last, table);
                None
            }
            _ => {
                self.grow_and_insert(hash, tick, width, None);
                spare
            }
        }
    }

    /// [`pooled_growth`](Self::pooled_growth) for a timed set: the heap
    /// bytes of its table before and after the growth a new visitor asked
    /// for, when that growth only moves the table to a larger buffer (see
    /// [`TimedTable::pooled_growth`]). `None` for any other form.
    pub(crate) fn pooled_timed_growth(&self) -> Option<(usize, usize)> {
        match self {
            VisitorSet::Timed(_, _, table) => table.pooled_growth(),
            _ => None,
        }
    }

    /// Carries out a growth [`pooled_timed_growth`](Self::pooled_timed_growth)
    /// described, in `spare` or a new buffer, and adds `hash` (absent) at
    /// `tick`; returns the buffer grown out of. Another form grows as
    /// [`grow_and_insert`](Self::grow_and_insert) would (without a TTL's
    /// expiry, which only a timed sketch reads), and `spare` comes back
    /// unused.
    pub(crate) fn grow_timed_pooled(
        &mut self,
        hash: u64,
        tick: u32,
        width: u32,
        spare: Option<ThinVec<u64>>,
    ) -> Option<ThinVec<u64>> {
        match self {
            VisitorSet::Timed(_, _, table) => {
                Some(table.grow_pooled(hash, tick, tick / width, spare))
            }
            _ => {
                self.grow_and_insert(hash, tick, width, None);
                spare
            }
        }
    }

    /// An inline set's pairs in a table of the smallest size, in `spare`
    /// (a pooled buffer of that size) or a new buffer.
    /// With `new`, a visitor absent from the set and its bucket, added.
    fn inline_table(
        &self,
        width: u32,
        spare: Option<Box<[u64]>>,
        new: Option<(u64, u32)>,
    ) -> VisitorTable<1> {
        let mut table = VisitorTable::in_buffer(MIN_CAPACITY, spare);
        let mut entries = [(0, [0]); INLINE + 1];
        let mut n = 0;
        for (h, t) in self.inline_ticks() {
            entries[n] = (h, [t / width]);
            n += 1;
        }
        if let Some((h, bucket)) = new {
            entries[n] = (h, [bucket]);
            n += 1;
        }
        table.place_sorted(&mut entries[..n]);
        table
    }

    /// The bytes the visit of a known pair `hash` at `tick` takes with its
    /// page's arena grown, when [`insert`](Self::insert) answered
    /// `GrowKnown` for a move to wide cells instead (see
    /// `WordTable::widens`); `None` for any other answer. The move is a
    /// speed-up, not room the visit needs: a record whose budget has no
    /// room for it takes this way ([`grow_in_arena`](Self::grow_in_arena))
    /// rather than refusing the visit or making room at other pages'
    /// expense.
    pub(crate) fn arena_growth(&mut self, hash: u64, tick: u32, width: u32) -> Option<usize> {
        let VisitorSet::TableRuns(.., table) = self else {
            return None;
        };
        if !table.widens::<WIDE>() {
            return None;
        }
        let bucket = tick / width;
        // Changes nothing: the same visit as `insert`'s, which needed room.
        match table.visit(hash, bucket, [bucket]) {
            Visit::GrowRuns { bytes, .. } => Some(bytes),
            _ => {
                debug_assert!(false, "not an insert that moves to wide cells");
                None
            }
        }
    }

    /// Carries out the visit [`arena_growth`](Self::arena_growth) priced,
    /// its bytes reserved: the run grows in the arena, the page keeps its
    /// cells.
    pub(crate) fn grow_in_arena(&mut self, hash: u64, tick: u32, width: u32) {
        if let VisitorSet::TableRuns(high, low, _, table) = self {
            let bucket = tick / width;
            table.grow_and_visit(hash, bucket, [bucket]);
            (*high, *low) = split_count(table.len());
        } else {
            debug_assert!(false, "no arena to grow");
        }
    }

    /// Carries out an insert answered with `Grow` or `GrowKnown` (its
    /// bytes reserved): moves to the next larger form, or grows the
    /// table or arena, and notes the visit.
    pub(crate) fn grow_and_insert(
        &mut self,
        hash: u64,
        tick: u32,
        width: u32,
        expiry: Option<Expiry>,
    ) {
        let bucket = tick / width;
        match self {
            VisitorSet::Table(high, low, last, table) => {
                if table.find(hash).is_none() {
                    table.grow_and_insert(hash, [bucket]);
                    count_one_more(high, low);
                    return;
                }
                let last = *last;
                let table = std::mem::replace(table, VisitorTable::placeholder());
                let mut boxed = Box::new(WordTable {
                    table,
                    runs: Runs::default(),
                });
                boxed.grow_and_visit(hash, bucket, [bucket]);
                let (high, low) = split_count(boxed.len());
                *self = VisitorSet::TableRuns(high, low, last, boxed);
            }
            VisitorSet::TableRuns(high, low, last, table) => {
                // A known pair whose run must grow on a page whose arena
                // outweighs wide cells: the page moves to them (`insert`
                // asked for the bytes; `grow_in_arena` is the way without).
                if table.table.find(hash).is_some() && table.widens::<WIDE>() {
                    let (high, low, last) = (*high, *low, *last);
                    let mut wide = Box::new(WordTable::take(table).recelled::<WIDE, WIDE>());
                    wide.grow_and_visit(hash, bucket, WideTable::new_values([0; WIDE], bucket));
                    *self = VisitorSet::TableWide(high, low, last, wide);
                    return;
                }
                // A new pair, or a known one's run grown.
                self.grow_in_arena(hash, tick, width);
            }
            VisitorSet::TableWide(high, low, _, table) => {
                table.grow_and_visit(hash, bucket, WideTable::new_values([0; WIDE], bucket));
                (*high, *low) = split_count(table.len());
            }
            VisitorSet::Timed(_, _, table) => table.grow_and_insert(hash, tick, bucket),
            VisitorSet::Sketch(_, sketched) => {
                sketched
                    .history
                    .insert_growing(bucket / (86_400 / width), hash);
                sketched.all.insert(hash);
            }
            VisitorSet::TimedSketch(_, sketch) => {
                if let Some(expiry) = expiry {
                    sketch.insert_growing(hash, tick, expiry);
                }
            }
            VisitorSet::Inline(..) => {
                let last = self.last_recorded().max(tick);
                match expiry {
                    None => {
                        *self = VisitorSet::table(last, self.inline_table(width, None, None));
                        // The table has room for a third pair; a known one
                        // in a second bucket boxes it with an arena.
                        if let Insert::Grow(_) | Insert::GrowKnown { .. } =
                            self.insert(hash, tick, width, None)
                        {
                            self.grow_and_insert(hash, tick, width, None);
                        }
                    }
                    Some(expiry) => {
                        let pairs: Vec<(u64, u32)> = self.inline_ticks().collect();
                        let buckets: Vec<[u32; 1]> =
                            pairs.iter().map(|&(_, t)| [t / width]).collect();
                        let mut table = TimedTable::from_pairs(
                            pairs
                                .iter()
                                .zip(&buckets)
                                .map(|(&(h, t), b)| (h, t, &b[..])),
                            expiry,
                        );
                        if let Insert::Grow(_) | Insert::GrowKnown { .. } =
                            table.insert(hash, tick, bucket)
                        {
                            table.grow_and_insert(hash, tick, bucket);
                        }
                        *self = VisitorSet::Timed(last, 0, table);
                    }
                }
            }
        }
    }

    /// Sizes a table form for `len` pairs in all, so that pairs known in
    /// advance (a snapshot's) go in without growth steps; see
    /// [`VisitorTable::reserve`] for why that matters. Other forms are
    /// left as they are.
    pub(crate) fn reserve(&mut self, len: usize) {
        match self {
            VisitorSet::Table(.., table) => table.reserve(len),
            VisitorSet::TableRuns(.., table) => table.reserve(len),
            VisitorSet::TableWide(.., table) => table.reserve(len),
            VisitorSet::Timed(_, _, table) => table.reserve(len),
            _ => {}
        }
    }

    /// Adds `hash`, growing as needed; returns whether it was new.
    #[cfg(test)]
    pub(crate) fn insert_growing(&mut self, hash: u64) -> bool {
        let outcome = self.insert(hash, 0, 60, None);
        outcome.is_new_after(|| self.grow_and_insert(hash, 0, 60, None))
    }

    /// The hashes held with their latest ticks (0 for a table without a
    /// TTL, which keeps buckets only), in no particular order (none for a
    /// sketch).
    pub(crate) fn entries(&self) -> Box<dyn Iterator<Item = (u64, u32)> + '_> {
        match self {
            VisitorSet::Inline(..) => Box::new(self.inline_ticks()),
            VisitorSet::Table(..) | VisitorSet::TableRuns(..) | VisitorSet::TableWide(..) => {
                self.untimed().expect("an untimed table").hashes()
            }
            VisitorSet::Timed(_, _, table) => Box::new(table.entries()),
            VisitorSet::Sketch(..) | VisitorSet::TimedSketch(..) => Box::new(std::iter::empty()),
        }
    }

    /// Calls `f` with every exact pair: its hash, its latest tick (see
    /// [`entries`](Self::entries)) and its buckets, ascending.
    pub(crate) fn for_each_pair(&self, width: u32, mut f: impl FnMut(u64, u32, &[u32])) {
        match self {
            VisitorSet::Inline(..) => {
                for (h, t) in self.inline_ticks() {
                    f(h, t, &[t / width]);
                }
            }
            VisitorSet::Table(..) | VisitorSet::TableRuns(..) | VisitorSet::TableWide(..) => {
                self.untimed()
                    .expect("an untimed table")
                    .for_each(|h, buckets| f(h, 0, buckets));
            }
            VisitorSet::Timed(_, _, table) => {
                let words = table.words();
                for (h, values) in words.pairs() {
                    f(h, values[0], &words.buckets(&values));
                }
            }
            VisitorSet::Sketch(..) | VisitorSet::TimedSketch(..) => {}
        }
    }

    /// The hashes held, in no particular order (none for a sketch).
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries().map(|(h, _)| h)
    }
}

/// Heap bytes of an untimed table's boxed record (table handle and arena).
const WORD_TABLE_BYTES: usize = std::mem::size_of::<WordTable<1>>();

/// An untimed table with cells of [`WIDE`] places.
type WideTable = WordTable<WIDE, Box<[u64]>, Runs, WIDE>;

/// Heap bytes of a [`WideTable`]'s boxed record.
const WIDE_TABLE_BYTES: usize = std::mem::size_of::<WideTable>();

/// An untimed table's pairs and cells, in either width.
#[derive(Clone, Copy)]
enum Untimed<'a> {
    Narrow(Words<'a, 1>),
    Wide(Words<'a, WIDE, Box<[u64]>, WIDE>),
}

impl<'a> Untimed<'a> {
    /// Pairs seen in `range`.
    fn count_in(self, range: Range<u64>) -> u64 {
        match self {
            Untimed::Narrow(words) => words.count_in(range, |_| true),
            Untimed::Wide(words) => words.count_in(range, |_| true),
        }
    }

    /// See [`Words::count_points`].
    fn count_points(self, series: &Series, counts: &mut [u32]) {
        match self {
            Untimed::Narrow(words) => words.count_points(series, |_| true, counts),
            Untimed::Wide(words) => words.count_points(series, |_| true, counts),
        }
    }

    /// Calls `f` with every pair seen in `range`.
    fn hashes_in(self, range: Range<u64>, f: impl FnMut(u64)) {
        match self {
            Untimed::Narrow(words) => words.hashes_in(range, |_| true, f),
            Untimed::Wide(words) => words.hashes_in(range, |_| true, f),
        }
    }

    /// The pairs with tick 0 (see [`VisitorSet::entries`]).
    fn hashes(self) -> Box<dyn Iterator<Item = (u64, u32)> + 'a> {
        match self {
            Untimed::Narrow(words) => Box::new(words.pairs().map(|(h, _)| (h, 0))),
            Untimed::Wide(words) => Box::new(words.pairs().map(|(h, _)| (h, 0))),
        }
    }

    /// Calls `f` with every pair and its buckets, ascending.
    fn for_each(self, mut f: impl FnMut(u64, &[u32])) {
        match self {
            Untimed::Narrow(words) => {
                for (h, values) in words.pairs() {
                    f(h, &words.buckets(&values));
                }
            }
            Untimed::Wide(words) => {
                for (h, values) in words.pairs() {
                    f(h, &words.buckets(&values));
                }
            }
        }
    }
}

/// A sweep's share of an untimed table with runs, whose count fields are
/// `count` (see [`VisitorSet::drop_expired`]).
fn retain_runs<const AUX: usize, const C: usize>(
    table: &mut WordTable<AUX, Box<[u64]>, Runs, C>,
    (high, low): (&mut u8, &mut u16),
    oldest_bucket: u32,
    from: usize,
    max: usize,
    reserve: &mut dyn FnMut(usize) -> bool,
) -> Dropped {
    let slots = table.table.capacity();
    if slots <= STEP_SLOTS {
        let pairs = table.retain(oldest_bucket, |_, _| true);
        (*high, *low) = split_count(table.len());
        return Dropped {
            pairs,
            slots: slots.max(1),
            resume: None,
            reserved: 0,
        };
    }
    let (pairs, next) = table.retain_step(from, max, oldest_bucket, |_| true, |_, _| {});
    (*high, *low) = split_count(table.len());
    Dropped::of_step(pairs, from, next, slots, || table.finish_pass(reserve))
}

/// The arena of a table none of whose pairs has a run.
static NO_RUNS: Runs = Runs::EMPTY;

/// Heap bytes an inline set takes on as a table: the record, the
/// smallest table, and with `runs` the first run of a pair seen in a
/// second bucket. (A timed table's horizon is reconciled after, as every
/// timed write's is.)
fn inline_to_table_bytes(timed: bool, runs: bool) -> usize {
    match (timed, runs) {
        (true, runs) => MIN_TIMED_BYTES + if runs { Runs::FIRST_RUN_BYTES } else { 0 },
        (false, false) => VisitorTable::<1>::bytes_for(MIN_CAPACITY),
        (false, true) => {
            VisitorTable::<1>::bytes_for(MIN_CAPACITY) + WORD_TABLE_BYTES + Runs::FIRST_RUN_BYTES
        }
    }
}

/// The largest pair count the untimed table forms ([`VisitorSet::Table`],
/// [`VisitorSet::TableRuns`], [`VisitorSet::TableWide`]) keep beside
/// their table (24 bits); a table
/// that holds this many or more is counted from its header.
const MAX_COUNTED: u32 = (1 << 24) - 1;

/// The pair count of an untimed table form from its two count fields.
#[inline]
fn counted<const AUX: usize>(high: u8, low: u16, table: &VisitorTable<AUX>) -> usize {
    match age(high, low) {
        MAX_COUNTED => table.len(),
        count => {
            debug_assert_eq!(count as usize, table.len(), "a table's count beside it");
            count as usize
        }
    }
}

/// An untimed table form's count fields for `len` pairs.
fn split_count(len: usize) -> (u8, u16) {
    split_age(len.min(MAX_COUNTED as usize) as u32)
}

/// What a visit to an untimed table form with runs did, as an insert's
/// outcome; a pair it added is counted in the form's count fields.
#[inline]
fn visited(visit: Visit, high: &mut u8, low: &mut u16) -> Insert {
    match visit {
        Visit::Added => {
            count_one_more(high, low);
            Insert::Added
        }
        Visit::Known { .. } => Insert::Present,
        Visit::GrowTable(bytes) => Insert::Grow(bytes),
        Visit::GrowRuns { bytes, .. } => Insert::GrowKnown { bytes, was: 0 },
    }
}

/// Counts the pair an untimed table form's table just added.
#[inline]
fn count_one_more(high: &mut u8, low: &mut u16) {
    // A compare and an add on the common path; at `MAX_COUNTED` it stays.
    if *low != u16::MAX {
        *low += 1;
    } else if *high != u8::MAX {
        (*high, *low) = (*high + 1, 0);
    }
}

fn age(high: u8, low: u16) -> u32 {
    (u32::from(high) << 16) | u32::from(low)
}

fn split_age(age: u32) -> (u8, u16) {
    debug_assert!(age <= MAX_INLINE_AGE);
    ((age >> 16) as u8, age as u16)
}

/// What the inline form holds: the second slot's age, the first slot's
/// (latest) tick, and the slots.
type InlineForm = (u32, u32, [u64; INLINE]);

/// A visit of `hash` at `tick` to an inline set (the most recent visitor
/// first, the other's tick as its age behind it; each visitor seen in the
/// one bucket of its tick): the outcome and the new form, or the
/// `Grow`/`GrowKnown` outcome (bytes to be filled in) when the set must
/// become a table: a third visitor, a known one seen in a second bucket,
/// or two ticks too far apart for the age.
fn inline_visit(
    age: u32,
    last: u32,
    slots: &[u64; INLINE],
    hash: u64,
    tick: u32,
    width: u32,
) -> Result<(Insert, InlineForm), Insert> {
    let mut pairs = [(slots[0], last), (slots[1], last.wrapping_sub(age))];
    let outcome = match pairs.iter().position(|&(h, _)| h == hash) {
        Some(k) => {
            let was = pairs[k].1;
            if was / width != tick / width {
                return Err(Insert::GrowKnown { bytes: 0, was });
            }
            pairs[k].1 = was.max(tick);
            Insert::Refreshed { was }
        }
        None => match pairs.iter().position(|&(h, _)| h == 0) {
            Some(k) => {
                pairs[k] = (hash, tick);
                Insert::Added
            }
            None => return Err(Insert::Grow(0)),
        },
    };
    // The most recent first; an empty second slot has no age.
    if pairs[1].0 != 0 && pairs[1].1 > pairs[0].1 {
        pairs.swap(0, 1);
    }
    let age = if pairs[1].0 == 0 {
        0
    } else {
        pairs[0].1 - pairs[1].1
    };
    if age > MAX_INLINE_AGE {
        return Err(match outcome {
            Insert::Refreshed { was } => Insert::GrowKnown { bytes: 0, was },
            _ => Insert::Grow(0),
        });
    }
    Ok((outcome, (age, pairs[0].1, [pairs[0].0, pairs[1].0])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_is_24_bytes() {
        assert_eq!(std::mem::size_of::<VisitorSet>(), 24);
    }

    /// An untimed table's count beside it follows every insert and growth
    /// (`pairs` checks it against the header in debug builds), the move to
    /// a table with runs, sweeps of the retention, and saturates into
    /// reading the header.
    #[test]
    fn a_tables_count_beside_it_follows_the_table() {
        let width = 60;
        let mut set = VisitorSet::new(0);
        for i in 1..=2_000u64 {
            let hash = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            // Half the pairs in bucket 0, half in bucket 1.
            let tick = if i % 2 == 0 { 0 } else { width };
            if let Insert::Grow(_) = set.insert(hash, tick, width, None) {
                set.grow_and_insert(hash, tick, width, None);
            }
            assert!(matches!(set, VisitorSet::Table(..)) || i <= INLINE as u64);
            assert_eq!(set.count(None).visitors, i);
        }
        let sweep = |set: &mut VisitorSet, oldest_bucket| {
            let mut from = 0;
            loop {
                let step = set.drop_expired(None, oldest_bucket, width, from, 64, &mut |_| true);
                assert_eq!(set.pairs(), set.entries().count());
                match step.resume {
                    Some(next) => from = next,
                    None => break,
                }
            }
        };
        sweep(&mut set, 1);
        assert_eq!(set.count(None).visitors, 1_000);
        // Known pairs seen in bucket 2 box the table with runs; new ones
        // there and the sweeps keep its count too.
        for i in 1..=1_500u64 {
            let hash = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            match set.insert(hash, 2 * width, width, None) {
                Insert::Grow(_) | Insert::GrowKnown { .. } => {
                    set.grow_and_insert(hash, 2 * width, width, None)
                }
                _ => {}
            }
            assert!(matches!(set, VisitorSet::TableRuns(..)));
            // The odd ones stayed: the even ones come back as new.
            assert_eq!(set.count(None).visitors, 1_000 + i / 2);
        }
        sweep(&mut set, 2);
        assert_eq!(set.count(None).visitors, 1_500);
        let mut small = VisitorTable::<1>::with_capacity(8);
        small.insert(1, [0]);
        assert_eq!(counted(u8::MAX, u16::MAX, &small), 1);
        let (mut high, mut low) = split_count(MAX_COUNTED as usize - 1);
        count_one_more(&mut high, &mut low);
        count_one_more(&mut high, &mut low);
        assert_eq!(age(high, low), MAX_COUNTED);
        assert_eq!(split_count(usize::MAX), (u8::MAX, u16::MAX));
    }

    /// A page whose visitors come back in other buckets moves to wide
    /// cells once its arena outweighs them: the move makes it no larger
    /// and changes no answer, a pair with up to [`WIDE`] buckets then
    /// keeps them in its slot (no arena), a longer one in a run, and the
    /// retention's sweeps move buckets back into the cells.
    #[test]
    fn a_page_of_returning_visitors_moves_to_wide_cells() {
        use std::collections::{BTreeMap, BTreeSet};
        let width = 3_600;
        let hash = |i: u64| (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut set = VisitorSet::new(0);
        let mut model = BTreeMap::<u64, BTreeSet<u32>>::new();
        let mut widened = false;
        let mut visit = |set: &mut VisitorSet, i: u64, bucket: u32| {
            let before = (set.heap_bytes(), matches!(set, VisitorSet::TableRuns(..)));
            let mut asked = 0;
            if let Insert::Grow(bytes) | Insert::GrowKnown { bytes, .. } =
                set.insert(hash(i), bucket * width, width, None)
            {
                asked = bytes;
                set.grow_and_insert(hash(i), bucket * width, width, None);
            }
            model.entry(hash(i)).or_default().insert(bucket);
            if before.1 && matches!(set, VisitorSet::TableWide(..)) {
                assert!(
                    set.heap_bytes() <= before.0,
                    "the move made the page larger"
                );
                // What the record reserves covers the new allocations,
                // built while the old ones are still held.
                let VisitorSet::TableWide(.., table) = &set else {
                    unreachable!()
                };
                assert!(asked >= WIDE_TABLE_BYTES + table.heap_bytes());
                widened = true;
            }
        };
        // 300 visitors on the hours of 5 days, then 30 of them on 3 more.
        for day in 0..5 {
            for i in 0..300 {
                visit(&mut set, i, day * 24 + (i % 24) as u32);
            }
        }
        let VisitorSet::TableWide(.., table) = &set else {
            panic!("a wide table");
        };
        assert_eq!(
            table.runs.heap_bytes(),
            0,
            "5 buckets a pair fit their cells"
        );
        for day in 5..8 {
            for i in 0..30 {
                visit(&mut set, i, day * 24 + 1);
            }
        }
        // Four of the others come back on days 8 and 9, ten new ones on
        // day 8.
        for i in 30..34 {
            visit(&mut set, i, 8 * 24 + 3);
            visit(&mut set, i, 9 * 24 + 3);
        }
        for i in 300..310 {
            visit(&mut set, i, 8 * 24 + 2);
        }
        assert!(widened);
        let check = |set: &VisitorSet, model: &BTreeMap<u64, BTreeSet<u32>>| {
            let mut held = BTreeMap::new();
            set.for_each_pair(width, |h, _, buckets| {
                assert!(buckets.is_sorted());
                held.insert(h, buckets.iter().copied().collect::<BTreeSet<u32>>());
            });
            assert_eq!(&held, model);
            for range in [0..24, 20..50, 100..200, 110..121, 0..1_000] {
                let expected = model
                    .values()
                    .filter(|b| b.iter().any(|&b| range.contains(&u64::from(b))))
                    .count() as u64;
                let untimed = set.untimed().expect("an untimed table");
                assert_eq!(untimed.count_in(range), expected);
            }
        };
        check(&set, &model);
        // A sweep from day 3: pairs keep 2 to 5 buckets, in their cells.
        let oldest = 3 * 24;
        set.drop_expired(None, oldest, width, 0, usize::MAX, &mut |_| true);
        for buckets in model.values_mut() {
            buckets.retain(|&b| b >= oldest);
        }
        model.retain(|_, b| !b.is_empty());
        check(&set, &model);
        let VisitorSet::TableWide(.., table) = &set else {
            panic!("still a wide table");
        };
        assert_eq!(
            table.runs.heap_bytes(),
            0,
            "the runs moved back into the cells"
        );
        assert_eq!(set.pairs(), model.len());
        // A sweep from day 7: four pairs keep two buckets, 40 one. Their
        // runs would take less than half of what the wide cells add: the
        // page moves back to one-word cells.
        let sweep = |set: &mut VisitorSet, model: &mut BTreeMap<u64, BTreeSet<u32>>, oldest| {
            let before = set.heap_bytes();
            let mut asked = 0;
            let dropped = set.drop_expired(None, oldest, width, 0, usize::MAX, &mut |bytes| {
                asked += bytes;
                true
            });
            assert_eq!(dropped.reserved, asked);
            for buckets in model.values_mut() {
                buckets.retain(|&b| b >= oldest);
            }
            model.retain(|_, b| !b.is_empty());
            check(set, model);
            assert_eq!(set.pairs(), model.len());
            (before, asked)
        };
        let (before, asked) = sweep(&mut set, &mut model, 7 * 24);
        let VisitorSet::TableRuns(.., table) = &set else {
            panic!("one-word cells again");
        };
        assert!(table.runs.heap_bytes() > 0, "the four keep runs");
        assert!(asked >= WORD_TABLE_BYTES + table.heap_bytes());
        assert!(set.heap_bytes() < before);
        // From day 9, the four have one bucket each: the plain form.
        sweep(&mut set, &mut model, 9 * 24);
        assert!(matches!(set, VisitorSet::Table(..)), "no runs left");
        assert_eq!(set.pairs(), 4);
    }

    /// A timed set's record keeps its table's capacity as its last insert
    /// saw it, and a stale one (after a growth, or past the table's end)
    /// only prefetches: nothing panics, nothing changes.
    #[test]
    fn a_timed_records_capacity_follows_its_table() {
        let expiry = Expiry {
            now: 10_000,
            ttl: 3_600,
        };
        let mut set = VisitorSet::new(expiry.now);
        let hash = |i: u64| (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for i in 0..1_000 {
            if set
                .insert(hash(i), expiry.now, 60, Some(expiry))
                .is_new_after(|| {
                    set.grow_and_insert(hash(i), expiry.now, 60, Some(expiry));
                })
            {
                let VisitorSet::Timed(_, seen, table) = &set else {
                    continue;
                };
                // Just grown: the record saw the table before the growth.
                assert!(usize::from(*seen) <= table.capacity());
            }
            set.prefetch_home(hash(i));
        }
        assert_eq!(set.insert(hash(0), expiry.now, 60, Some(expiry)), {
            Insert::Refreshed { was: expiry.now }
        });
        let VisitorSet::Timed(_, seen, table) = &set else {
            panic!("a timed table");
        };
        assert_eq!(usize::from(*seen), table.capacity());
        for stale in [1, u16::MAX] {
            if let VisitorSet::Timed(_, seen, _) = &mut set {
                *seen = stale;
            }
            set.prefetch_home(hash(3));
        }
        assert_eq!(set.pairs(), 1_000);
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
        assert_eq!(set.heap_bytes(), 48);
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
        let before = set.convert_to_sketch(None, 60);
        assert!(before > SKETCH_BYTES);
        // One day of history: a period sketch.
        let day = crate::set::history::PERIOD_SKETCH_BYTES;
        assert!(set.heap_bytes() > SKETCH_BYTES + day);
        assert!(set.heap_bytes() < SKETCH_BYTES + day + 64);
        assert_eq!(set.pairs(), 0);
        let count = set.count(None);
        assert_eq!((count.visitors, count.exact), (5_000, false));
        assert!(count.relative_error.is_some_and(|e| e < 0.0085));
        // Seen before: the sketch cannot change.
        assert_eq!(
            set.insert(hash(7), 0, 60, None),
            Insert::Estimated { changed: false }
        );
        for i in 5_000..10_000 {
            set.insert(hash(i), 0, 60, None);
        }
        let estimate = set.count(None).visitors as f64;
        assert!(
            (estimate - 10_000.0).abs() < 10_000.0 * 0.0085 * 5.0,
            "{estimate}"
        );
    }
}
