//! A page's exact visitors past the inline ones, each with its activity
//! word (and with a TTL its latest tick): a [`VisitorTable`] whose last
//! value per slot is the word, and the page's [`Runs`] arena for the
//! pairs seen in more than one bucket. The layout is in the module docs
//! of `src/time`.

use std::ops::Range;

use crate::set::activity::{AddBucket, Runs};
use crate::set::visitor_table::{MIN_CAPACITY, TableInsert, TableWords, VisitorTable};
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

/// Visitor hashes with `AUX` values each, the last one the activity word,
/// in a table whose handle is `W` (see [`TableWords`]); the arena is
/// held by `R`: itself, or a box that holds more of a timed table (see
/// `TimedTable`).
#[derive(Debug, Clone)]
pub(crate) struct WordTable<const AUX: usize, W: TableWords = Box<[u64]>, R: HoldsRuns = Runs> {
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

impl<const AUX: usize, W: TableWords, R: HoldsRuns> WordTable<AUX, W, R> {
    /// Which value is the word.
    const WORD: usize = AUX - 1;

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

    /// Notes a visit of `hash` in `bucket`; a new pair gets `values` (its
    /// word must be `bucket`). A known pair's values other than the word
    /// are the caller's to update (see [`Visit::Known`]).
    #[inline]
    pub(crate) fn visit(&mut self, hash: u64, bucket: u32, values: [u32; AUX]) -> Visit {
        match self.table.insert(hash, values) {
            TableInsert::Added(_) => Visit::Added,
            TableInsert::Grow(bytes) => Visit::GrowTable(bytes),
            TableInsert::Present(slot) => {
                let mut word = self.table.value(slot, Self::WORD);
                // The common revisit: the pair's one bucket, no arena.
                if word == bucket {
                    return Visit::Known { slot };
                }
                match self.runs.runs_mut().add(&mut word, bucket) {
                    AddBucket::Present => Visit::Known { slot },
                    AddBucket::Added => {
                        self.table.set_value(slot, Self::WORD, word);
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
                let mut word = self.table.value(slot, Self::WORD);
                self.runs.runs_mut().add_growing(&mut word, bucket);
                self.table.set_value(slot, Self::WORD, word);
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
        let mut values = values;
        values[Self::WORD] = buckets[0];
        self.table.insert_growing(hash, values);
        if buckets.len() > 1 {
            let slot = self.table.find(hash).expect("just inserted");
            let mut word = buckets[0];
            for &bucket in &buckets[1..] {
                self.runs.runs_mut().add_growing(&mut word, bucket);
            }
            self.table.set_value(slot, Self::WORD, word);
        }
    }

    /// The pairs and their words, to read.
    pub(crate) fn words(&self) -> Words<'_, AUX, W> {
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
                runs.release(values[Self::WORD]);
                return false;
            }
            runs.retain_from(&mut values[Self::WORD], oldest)
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
                runs.retain_from(&mut values[Self::WORD], oldest)
            } else {
                runs.release(values[Self::WORD]);
                false
            };
            if !stays {
                dropped(holder, values);
            }
            stays
        })
    }

    /// Ends a pass of [`retain_step`](Self::retain_step)s: gives back what
    /// the pass freed when that costs at most `bound` moves (the survivors
    /// into a table half the size or less, the arena's live runs once it
    /// is half garbage); otherwise the table keeps its size until it does.
    /// The new allocation is built beside the old one, so its bytes are
    /// asked of `reserve` first (nothing is rebuilt if it refuses).
    /// Returns the bytes reserved.
    pub(crate) fn finish_pass(
        &mut self,
        bound: usize,
        reserve: &mut dyn FnMut(usize) -> bool,
    ) -> usize {
        let mut reserved = 0;
        if self.table.oversized() && self.table.len() <= bound {
            let bytes = self.table.shrunk_bytes();
            if reserve(bytes) {
                self.table.shrink_to_fit();
                reserved += bytes;
            }
        }
        let live = self.runs.runs().len() - self.runs.runs().garbage();
        if self.runs.runs().garbage() * 2 > self.runs.runs().len() && live <= bound {
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
            .map(|&slot| self.table.value(slot, Self::WORD))
            .collect();
        self.runs.runs_mut().compact(words.iter_mut(), keep_room);
        for (slot, word) in slots.into_iter().zip(words) {
            self.table.set_value(slot, Self::WORD, word);
        }
    }

    /// Sizes the table for `len` pairs (see `VisitorTable::reserve`).
    pub(crate) fn reserve(&mut self, len: usize) {
        self.table.reserve(len);
    }
}

/// A table's pairs with their words, and the arena their runs are in (an
/// empty one for a table whose every pair was seen in one bucket).
pub(crate) struct Words<'a, const AUX: usize, W: TableWords = Box<[u64]>> {
    pub(crate) table: &'a VisitorTable<AUX, W>,
    pub(crate) runs: &'a Runs,
}

// By hand: a derive would ask `W: Copy` of the handle behind the reference.
impl<const AUX: usize, W: TableWords> Clone for Words<'_, AUX, W> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<const AUX: usize, W: TableWords> Copy for Words<'_, AUX, W> {}

/// How many slots ahead of the one read a scan over a table's words asks
/// for the pair's run ([`Runs::prefetch_run`](super::activity::Runs::prefetch_run)).
const RUNS_AHEAD: usize = 16;

impl<'a, const AUX: usize, W: TableWords> Words<'a, AUX, W> {
    const WORD: usize = AUX - 1;

    /// Pairs that `live` accepts (by their values) seen in `range`: one
    /// scan of the words.
    pub(crate) fn count_in(&self, range: Range<u64>, live: impl Fn(&[u32; AUX]) -> bool) -> u64 {
        let mut n = 0;
        let mut ahead = self.runs_ahead();
        for (i, word) in self.table.value_run(Self::WORD).enumerate() {
            if let Some(word) = ahead.as_mut().and_then(Iterator::next) {
                self.runs.prefetch_run(word);
            }
            if self.table.is_occupied(i)
                && self.runs.seen_in(word, range.clone())
                && (AUX == 1 || live(&self.values(i)))
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
        for (i, word) in self.table.value_run(Self::WORD).enumerate() {
            if let Some(word) = ahead.as_mut().and_then(Iterator::next) {
                self.runs.prefetch_run(word);
            }
            if self.table.is_occupied(i) && (AUX == 1 || live(&self.values(i))) {
                self.runs.count_points(word, series, counts);
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
                self.runs.prefetch_run(self.table.value(slot, Self::WORD));
            }
            if self.runs.seen_in(values[Self::WORD], range.clone()) && live(&values) {
                f(hash);
            }
        }
    }

    /// The words `RUNS_AHEAD` slots on, for a scan over every slot to
    /// prefetch runs with; none when no pair has a run (a page whose pairs
    /// were each seen in one bucket scans as fast as before).
    fn runs_ahead(&self) -> Option<impl Iterator<Item = u32> + 'a> {
        let table = self.table;
        (self.runs.len() > 0).then(|| table.value_run(Self::WORD).skip(RUNS_AHEAD))
    }

    fn values(&self, slot: usize) -> [u32; AUX] {
        std::array::from_fn(|k| self.table.value(slot, k))
    }

    /// The pairs with their values, in table order; a pair's buckets are
    /// [`buckets`](Self::buckets) of its word.
    pub(crate) fn pairs(self) -> impl Iterator<Item = (u64, [u32; AUX])> + Clone + 'a {
        self.table.entries()
    }

    /// The buckets of the pair whose word is `word`, ascending.
    pub(crate) fn buckets<'w>(&self, word: &'w u32) -> &'w [u32]
    where
        'a: 'w,
    {
        self.runs.buckets(word)
    }
}
