//! A page's exact visitors past the inline ones, each with its activity
//! cell (and with a TTL its latest tick): a [`VisitorTable`] whose last
//! values per slot are the cell, and the page's [`Runs`] arena for the
//! pairs seen in more buckets than their cell holds. The layout is in the
//! module docs of `src/time`.
//!
//! A cell is one word, or on a page whose pairs come back often [`WIDE`]
//! words, which hold five buckets: with hour buckets, a visitor seen on
//! five days of a week keeps them all in its slot, and its return reads
//! and writes no line but the slot's (a run in the arena is a second
//! miss, which depends on the first, and the arenas' room, garbage and
//! slack push other lines out of the caches: docs/BENCHMARKS.md, "Where a
//! return in a new bucket spends its time"). A page moves to wide cells
//! when its arena outweighs them (see [`WordTable::widens`]), so the move
//! never makes it larger; a budget without room for the move grows the
//! arena instead (`VisitorSet::arena_growth`), and a sweep moves the page
//! back once its pairs no longer need the wide cells (`VisitorSet::narrow`).

use std::ops::Range;

use crate::set::activity::{AddBucket, Buckets, Runs};
use crate::set::visitor_table::{MIN_CAPACITY, MOVE_PAIRS, TableInsert, TableWords, VisitorTable};
use crate::time::Series;

/// What a visit did to a table, or what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Visit {
    /// A new pair, added.
    Added,
    /// A known pair, seen in this slot; `new_bucket` says whether the
    /// visit's bucket was new to it.
    Known { slot: usize },
    /// A new pair needs this many more heap bytes (the table grows).
    GrowTable(usize),
    /// A known pair, in this slot, seen in a new bucket that the arena
    /// needs this many more heap bytes for.
    GrowRuns { slot: usize, bytes: usize },
}

/// The words of a wide cell (five buckets: see `activity`).
pub(crate) const WIDE: usize = 3;

/// Visitor hashes with `AUX` values each, the last `C` of them the
/// activity cell, in a table whose handle is `W` (see [`TableWords`]); the
/// arena is held by `R`: itself, or a box that holds more of a timed
/// table (see `TimedTable`).
#[derive(Debug, Clone)]
pub(crate) struct WordTable<
    const AUX: usize,
    W: TableWords = Box<[u64]>,
    R: HoldsRuns = Runs,
    const C: usize = 1,
> {
    pub(crate) table: VisitorTable<AUX, W>,
    pub(crate) runs: R,
}

/// What holds a [`WordTable`]'s arena.
pub(crate) trait HoldsRuns: Default + Clone + std::fmt::Debug {
    fn runs(&self) -> &Runs;
    fn runs_mut(&mut self) -> &mut Runs;
}

impl HoldsRuns for Runs {
    #[inline]
    fn runs(&self) -> &Runs {
        self
    }

    #[inline]
    fn runs_mut(&mut self) -> &mut Runs {
        self
    }
}

impl<const AUX: usize, W: TableWords, R: HoldsRuns, const C: usize> WordTable<AUX, W, R, C> {
    /// Which value is the cell's first word.
    const CELL: usize = AUX - C;

    /// The values of a new pair seen in `bucket`, its others `before`.
    #[inline]
    pub(crate) fn new_values(before: [u32; AUX], bucket: u32) -> [u32; AUX] {
        let mut values = before;
        values[Self::CELL] = bucket;
        values[Self::CELL + 1..].fill(0);
        values
    }

    /// An empty table of the smallest size.
    pub(crate) fn new() -> Self {
        Self {
            table: VisitorTable::with_capacity(MIN_CAPACITY),
            runs: R::default(),
        }
    }

    /// Heap bytes of the table and the arena (not of a box around them).
    #[inline]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.table.heap_bytes() + self.runs.runs().heap_bytes()
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Notes a visit of `hash` in `bucket`; a new pair gets `values` (see
    /// [`new_values`](Self::new_values)). A known pair's values other than
    /// the cell are the caller's to update (see [`Visit::Known`]).
    #[inline]
    pub(crate) fn visit(&mut self, hash: u64, bucket: u32, values: [u32; AUX]) -> Visit {
        match self.table.insert(hash, values) {
            TableInsert::Added(_) => Visit::Added,
            TableInsert::Grow(bytes) => Visit::GrowTable(bytes),
            TableInsert::Present(slot) => {
                let mut row = self.table.values(slot);
                // The common revisit: the pair's first bucket, no write.
                if row[Self::CELL] == bucket {
                    return Visit::Known { slot };
                }
                match self
                    .runs
                    .runs_mut()
                    .add(cell_mut::<AUX, C>(&mut row), bucket)
                {
                    AddBucket::Present => Visit::Known { slot },
                    AddBucket::Added => {
                        self.table.set_values(slot, row);
                        Visit::Known { slot }
                    }
                    AddBucket::Grow(bytes) => Visit::GrowRuns { slot, bytes },
                }
            }
        }
    }

    /// Carries out a visit that [`visit`](Self::visit) answered with a
    /// `Grow`, once its bytes are reserved (the table may end up holding
    /// less: see the compaction below). Returns the pair's slot if it was
    /// known.
    pub(crate) fn grow_and_visit(
        &mut self,
        hash: u64,
        bucket: u32,
        values: [u32; AUX],
    ) -> Option<usize> {
        match self.table.find(hash) {
            Some(slot) => {
                let mut row = self.table.values(slot);
                self.runs
                    .runs_mut()
                    .add_growing(cell_mut::<AUX, C>(&mut row), bucket);
                self.table.set_values(slot, row);
                // Moved runs leave garbage behind; once it is half the
                // arena, rewriting the live runs in slot order gives it
                // back (and a scan then reads the arena front to back).
                // Amortised: the garbage grew by at least what this costs.
                if self.runs.runs().garbage() * 2 > self.runs.runs().len() {
                    self.compact(true);
                }
                Some(slot)
            }
            None => {
                self.table.grow_and_insert(hash, values);
                None
            }
        }
    }

    /// Adds a pair known to be absent with its buckets (ascending,
    /// distinct, at least one), growing as needed: for building a table
    /// whose memory the caller accounts.
    pub(crate) fn insert_with_buckets(&mut self, hash: u64, values: [u32; AUX], buckets: &[u32]) {
        let mut values = Self::new_values(values, buckets[0]);
        self.table.insert_growing(hash, values);
        if buckets.len() > 1 {
            let slot = self.table.find(hash).expect("just inserted");
            for &bucket in &buckets[1..] {
                self.runs
                    .runs_mut()
                    .add_growing(cell_mut::<AUX, C>(&mut values), bucket);
            }
            self.table.set_values(slot, values);
        }
    }

    /// The pairs and their words, to read.
    pub(crate) fn words(&self) -> Words<'_, AUX, W, C> {
        Words {
            table: &self.table,
            runs: self.runs.runs(),
        }
    }

    /// Keeps the pairs `keep` accepts (by hash and values), drops from the
    /// others the buckets before `oldest` and the pairs left with none,
    /// and rewrites the arena exactly sized when it holds garbage. Returns
    /// the pairs dropped.
    pub(crate) fn retain(
        &mut self,
        oldest: u32,
        mut keep: impl FnMut(u64, &[u32; AUX]) -> bool,
    ) -> usize {
        let runs = self.runs.runs_mut();
        let dropped = self.table.retain(|hash, values| {
            if !keep(hash, values) {
                runs.release(cell::<AUX, C>(values));
                return false;
            }
            runs.retain_from(cell_mut::<AUX, C>(values), oldest)
        });
        if self.runs.runs().garbage() > 0 {
            self.compact(false);
        }
        dropped
    }

    /// A bounded share of [`retain`](Self::retain): visits at most `max`
    /// slots from `start` (see [`VisitorTable::retain_slots`]), calling
    /// `dropped` with the values of each pair that goes. Returns the pairs
    /// dropped and the slot to resume at (the capacity once the pass has
    /// reached the end). Garbage left in the arena is reclaimed by
    /// [`finish_pass`](Self::finish_pass).
    pub(crate) fn retain_step(
        &mut self,
        start: usize,
        max: usize,
        oldest: u32,
        mut keep: impl FnMut(&[u32; AUX]) -> bool,
        mut dropped: impl FnMut(&mut R, &[u32; AUX]),
    ) -> (usize, usize) {
        let holder = &mut self.runs;
        self.table.retain_slots(start, max, |_, values| {
            let runs = holder.runs_mut();
            let stays = if keep(values) {
                // False: emptied by the retention, its run garbage already.
                runs.retain_from(cell_mut::<AUX, C>(values), oldest)
            } else {
                runs.release(cell::<AUX, C>(values));
                false
            };
            if !stays {
                dropped(holder, values);
            }
            stays
        })
    }

    /// Ends a pass of [`retain_step`](Self::retain_step)s: gives back what
    /// the pass freed when that moves at most [`MOVE_PAIRS`]: the
    /// survivors into a table half the size or less, the arena's live runs
    /// once it is half garbage; otherwise the table keeps its size until
    /// it does. The new allocation is built beside the old one, so its
    /// bytes are asked of `reserve` first (nothing is rebuilt if it
    /// refuses). Returns the bytes reserved.
    pub(crate) fn finish_pass(&mut self, reserve: &mut dyn FnMut(usize) -> bool) -> usize {
        let mut reserved = 0;
        if self.table.oversized() && self.table.len() <= MOVE_PAIRS {
            let bytes = self.table.shrunk_bytes();
            if reserve(bytes) {
                self.table.shrink_to_fit();
                reserved += bytes;
            }
        }
        let live = self.runs.runs().len() - self.runs.runs().garbage();
        if self.runs.runs().garbage() * 2 > self.runs.runs().len() && live <= MOVE_PAIRS {
            let bytes = live * std::mem::size_of::<u32>();
            if reserve(bytes) {
                self.compact(false);
                reserved += bytes;
            }
        }
        reserved
    }

    /// Rewrites every run in slot order (see `Runs::compact`).
    pub(crate) fn compact(&mut self, keep_room: bool) {
        let slots: Vec<usize> = self.table.occupied().collect();
        let mut words: Vec<u32> = slots
            .iter()
            .map(|&slot| self.table.value(slot, Self::CELL))
            .collect();
        self.runs.runs_mut().compact(words.iter_mut(), keep_room);
        for (slot, word) in slots.into_iter().zip(words) {
            self.table.set_value(slot, Self::CELL, word);
        }
    }

    /// Sizes the table for `len` pairs (see `VisitorTable::reserve`).
    pub(crate) fn reserve(&mut self, len: usize) {
        self.table.reserve(len);
    }
}

impl<const AUX: usize, W: TableWords, const C: usize> WordTable<AUX, W, Runs, C> {
    /// Moves the table out of `place`, leaving an empty stand-in (no
    /// slots, no allocation), to be built into another form.
    pub(crate) fn take(place: &mut Self) -> Self {
        std::mem::replace(
            place,
            WordTable {
                table: VisitorTable::placeholder(),
                runs: Runs::default(),
            },
        )
    }

    /// Whether a page whose arena must grow should move to cells of
    /// [`WIDE`] words (`A2` values a slot) instead: once its arena takes as
    /// many bytes as the wider slots would add, so that the move never
    /// makes it larger.
    pub(crate) fn widens<const A2: usize>(&self) -> bool {
        let capacity = self.table.capacity();
        let wider = VisitorTable::<A2, W>::bytes_for(capacity)
            .saturating_sub(VisitorTable::<AUX, W>::bytes_for(capacity));
        C < WIDE && self.runs.heap_bytes() >= wider
    }

    /// At most the heap bytes [`recelled`](Self::recelled) into `A2`
    /// values a slot holds, and a growth of one run after it (of
    /// `needed` arena words): its table, and its arena (no more than the
    /// live runs of this one, grown once by a quarter).
    pub(crate) fn recelled_bytes<const A2: usize>(&self, needed: usize) -> usize {
        let live = self.runs.len() - self.runs.garbage();
        VisitorTable::<A2, W>::bytes_for(self.table.capacity())
            + (live + live / 4 + needed) * std::mem::size_of::<u32>()
    }

    /// The arena words this table recelled into cells of `C2` words would
    /// hold (see [`recelled`](Self::recelled)): the runs of the pairs
    /// whose buckets do not fit such a cell.
    pub(crate) fn recelled_words<const C2: usize>(&self) -> usize {
        self.table
            .value_rows()
            .enumerate()
            .filter(|&(slot, _)| self.table.is_occupied(slot))
            .map(|(_, row)| self.runs.recell_words::<C, C2>(cell(&row)))
            .sum()
    }

    /// The same pairs with cells of `C2` words (the values before the
    /// cell kept), in the same slots: a pair whose buckets fit its new
    /// cell holds them there, a longer one keeps its run in a new arena.
    pub(crate) fn recelled<const A2: usize, const C2: usize>(
        mut self,
    ) -> WordTable<A2, W, Runs, C2> {
        const { assert!(AUX - C == A2 - C2, "the same values before the cell") };
        let mut table = self.table.relaid::<A2>();
        let mut arena = Vec::new();
        for (slot, row) in self.table.value_rows().enumerate() {
            if self.table.is_occupied(slot) {
                let mut values = [0; A2];
                values[..A2 - C2].copy_from_slice(&row[..Self::CELL]);
                values[A2 - C2..]
                    .copy_from_slice(&self.runs.recell::<C, C2>(cell(&row), &mut arena));
                table.set_values(slot, values);
            }
        }
        self.runs.take_arena(arena);
        WordTable {
            table,
            runs: self.runs,
        }
    }
}

/// The cell of a slot's values `row`: its last `C`.
#[inline]
fn cell<const AUX: usize, const C: usize>(row: &[u32; AUX]) -> &[u32; C] {
    row[AUX - C..]
        .try_into()
        .expect("a cell is the last C values")
}

/// [`cell`], to write.
#[inline]
fn cell_mut<const AUX: usize, const C: usize>(row: &mut [u32; AUX]) -> &mut [u32; C] {
    (&mut row[AUX - C..])
        .try_into()
        .expect("a cell is the last C values")
}

/// A table's pairs with their cells, and the arena their runs are in (an
/// empty one for a table whose every pair was seen in one bucket).
pub(crate) struct Words<'a, const AUX: usize, W: TableWords = Box<[u64]>, const C: usize = 1> {
    pub(crate) table: &'a VisitorTable<AUX, W>,
    pub(crate) runs: &'a Runs,
}

// By hand: a derive would ask `W: Copy` of the handle behind the reference.
impl<const AUX: usize, W: TableWords, const C: usize> Clone for Words<'_, AUX, W, C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<const AUX: usize, W: TableWords, const C: usize> Copy for Words<'_, AUX, W, C> {}

/// How many slots ahead of the one read a scan over a table's cells asks
/// for the pair's run ([`Runs::prefetch_run`](super::activity::Runs::prefetch_run)).
const RUNS_AHEAD: usize = 16;

impl<'a, const AUX: usize, W: TableWords, const C: usize> Words<'a, AUX, W, C> {
    const CELL: usize = AUX - C;

    /// Pairs that `live` accepts (by their values) seen in `range`: one
    /// scan of the values.
    pub(crate) fn count_in(&self, range: Range<u64>, live: impl Fn(&[u32; AUX]) -> bool) -> u64 {
        let mut n = 0;
        let mut ahead = self.runs_ahead();
        for (i, row) in self.table.value_rows().enumerate() {
            if let Some(word) = ahead.as_mut().and_then(Iterator::next) {
                self.runs.prefetch_run(word);
            }
            if self.table.is_occupied(i)
                && self.runs.seen_in(cell::<AUX, C>(&row), range.clone())
                && (AUX == C || live(&row))
            {
                n += 1;
            }
        }
        n
    }

    /// Adds one to `counts[p]` for every pair `live` accepts seen in
    /// point `p` of `series`.
    pub(crate) fn count_points(
        &self,
        series: &Series,
        live: impl Fn(&[u32; AUX]) -> bool,
        counts: &mut [u32],
    ) {
        let mut ahead = self.runs_ahead();
        for (i, row) in self.table.value_rows().enumerate() {
            if let Some(word) = ahead.as_mut().and_then(Iterator::next) {
                self.runs.prefetch_run(word);
            }
            if self.table.is_occupied(i) && (AUX == C || live(&row)) {
                self.runs.count_points(cell::<AUX, C>(&row), series, counts);
            }
        }
    }

    /// Calls `f` with every pair `live` accepts seen in `range`.
    pub(crate) fn hashes_in(
        &self,
        range: Range<u64>,
        live: impl Fn(&[u32; AUX]) -> bool,
        mut f: impl FnMut(u64),
    ) {
        // `entries` goes over the occupied slots: so does the look-ahead.
        let mut ahead = (self.runs.len() > 0).then(|| self.table.occupied().skip(RUNS_AHEAD));
        for (hash, values) in self.table.entries() {
            if let Some(slot) = ahead.as_mut().and_then(Iterator::next) {
                self.runs.prefetch_run(self.table.value(slot, Self::CELL));
            }
            if self.runs.seen_in(cell::<AUX, C>(&values), range.clone()) && live(&values) {
                f(hash);
            }
        }
    }

    /// The cells' first words `RUNS_AHEAD` slots on, for a scan over every
    /// slot to prefetch runs with; none when no pair has a run (a page
    /// whose pairs each fit their cells scans as fast as before).
    fn runs_ahead(&self) -> Option<impl Iterator<Item = u32> + 'a> {
        let table = self.table;
        (self.runs.len() > 0).then(|| table.value_run(Self::CELL).skip(RUNS_AHEAD))
    }

    /// The pairs with their values, in table order; a pair's buckets are
    /// [`buckets`](Self::buckets) of its values.
    pub(crate) fn pairs(self) -> impl Iterator<Item = (u64, [u32; AUX])> + Clone + 'a {
        self.table.entries()
    }

    /// The buckets of the pair whose values are `values`, ascending.
    pub(crate) fn buckets(&self, values: &[u32; AUX]) -> Buckets<'a> {
        self.runs.buckets(cell::<AUX, C>(values))
    }
}
