//! A pair's activity: which buckets it was seen in, as a *cell* of one or
//! more 32-bit words in its table slot plus, for the pairs seen in more
//! buckets than the cell holds, a sorted run of buckets in its page's
//! arena ([`Runs`]). The layout and why it was chosen are in the module
//! docs of `src/time`.
//!
//! A cell is the last values a
//! [`WordTable`](super::word_table::WordTable) keeps per slot: one word on
//! most pages, [`WIDE`](super::word_table::WIDE) words on a page whose
//! pairs come back often. Its first word says which form it is in:
//! - high bit clear: the cell holds the buckets itself. The first word is
//!   the earliest; each further word holds two 16-bit gaps to the next
//!   ones (low half first), 0 for none, so a cell of `C` words holds up
//!   to `2C - 1` buckets that are less than 65,536 buckets apart (seven
//!   years of hours). A one-word cell is the pair's one bucket.
//! - high bit ([`MULTI`]) set: the rest is a run's offset in the arena,
//!   and the cell's other words are 0.
//!
//! Gaps rather than buckets keep a wide slot at 20 bytes for five
//! buckets: a wide page's bytes are what its returns wait on when its
//! lines fall out of the caches (docs/BENCHMARKS.md, "Wide cells").

use std::ops::{Deref, Range};

use crate::time::Series;

/// The first word's high bit: set, the rest is a run's offset in the
/// arena; clear, the cell holds the buckets.
pub(crate) const MULTI: u32 = 1 << 31;
/// The largest bucket index a cell holds (2³¹ minutes reach year 6053).
pub(crate) const MAX_BUCKET_INDEX: u32 = MULTI - 1;

/// The room a run starts with when a pair outgrows a one-word cell, in
/// an arena whose pairs have not shown that they come back more often.
const FIRST_RUN: u32 = 4;
/// The most room a first run starts with (see `Runs::first_room`).
const MAX_FIRST_RUN: u32 = 16;
/// Runs started before the first room may grow: a few pairs say little.
const FIRST_RUNS_TO_JUDGE: u8 = 8;
/// A run's header: its length and its room, in words.
const HEADER: usize = 2;
/// The most buckets a cell holds: `2C - 1` for the widest cell used.
const MAX_PLACES: usize = 7;

/// The buckets a cell of `C` words holds at most.
const fn places(c: usize) -> usize {
    2 * c - 1
}

/// A cell's buckets, read out of it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CellBuckets {
    buckets: [u32; MAX_PLACES],
    len: u8,
}

impl CellBuckets {
    /// The buckets of `cell`, which holds them (not a run).
    #[inline]
    fn of<const C: usize>(cell: &[u32; C]) -> Self {
        const { assert!(places(C) <= MAX_PLACES) };
        let mut buckets = [0; MAX_PLACES];
        buckets[0] = cell[0];
        let mut len = 1;
        for &word in &cell[1..] {
            for gap in [word & 0xFFFF, word >> 16] {
                if gap != 0 {
                    buckets[len] = buckets[len - 1] + gap;
                    len += 1;
                }
            }
        }
        CellBuckets {
            buckets,
            len: len as u8,
        }
    }

    /// The cell of `C` words that holds `buckets` (ascending, distinct,
    /// at least one), if they fit.
    #[inline]
    fn encode<const C: usize>(buckets: &[u32]) -> Option<[u32; C]> {
        if buckets.len() > places(C) {
            return None;
        }
        let mut cell = [0; C];
        cell[0] = buckets[0];
        for (k, pair) in buckets.windows(2).enumerate() {
            let gap = pair[1] - pair[0];
            if gap > 0xFFFF {
                return None;
            }
            cell[1 + k / 2] |= gap << (16 * (k % 2));
        }
        Some(cell)
    }
}

impl Deref for CellBuckets {
    type Target = [u32];

    #[inline]
    fn deref(&self) -> &[u32] {
        &self.buckets[..usize::from(self.len)]
    }
}

/// A pair's buckets, ascending: its run in the arena, or read out of its
/// cell.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Buckets<'a> {
    Run(&'a [u32]),
    Cell(CellBuckets),
}

impl Deref for Buckets<'_> {
    type Target = [u32];

    #[inline]
    fn deref(&self) -> &[u32] {
        match self {
            Buckets::Run(run) => run,
            Buckets::Cell(cell) => cell,
        }
    }
}

/// What adding a bucket to a pair did, or what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddBucket {
    /// The pair was already seen in that bucket: nothing was written.
    Present,
    /// Added in place.
    Added,
    /// The arena needs this many more heap bytes; nothing was changed.
    /// Reserve them, then call [`Runs::add_growing`].
    Grow(usize),
}

/// The runs of one page's multi-bucket pairs: `[len, room, bucket...]`,
/// buckets ascending, 32 bits each. A run that fills moves to the end at
/// twice the room, leaving garbage that [`compact`](Runs::compact)
/// reclaims.
#[derive(Debug, Clone)]
pub(crate) struct Runs {
    arena: Vec<u32>,
    /// Words of the arena no word refers to any more (offsets are 31
    /// bits, so this fits; small fields keep a page's table as large as
    /// before these counters).
    garbage: u32,
    /// The room a new run starts with: [`FIRST_RUN`], doubled (up to
    /// [`MAX_FIRST_RUN`]) once half the runs started at it have filled
    /// it, so that on a page whose visitors come back often a run does
    /// not move (and leave garbage) on its way to its usual length.
    first_room: u8,
    /// Since `first_room` last changed: runs started (saturating), and
    /// twice the runs that filled a room of `first_room` less the runs
    /// started (at least 0: half of them filled).
    started: u8,
    balance: i16,
}

impl Default for Runs {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl Runs {
    /// An empty arena (allocates nothing).
    pub(crate) const EMPTY: Runs = Runs {
        arena: Vec::new(),
        garbage: 0,
        first_room: FIRST_RUN as u8,
        started: 0,
        balance: 0,
    };

    /// Heap bytes an empty arena takes on for its first run.
    pub(crate) const FIRST_RUN_BYTES: usize = (HEADER + FIRST_RUN as usize) * 4;

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.arena.capacity() * std::mem::size_of::<u32>()
    }

    /// Arena words in use or garbage.
    pub(crate) fn len(&self) -> usize {
        self.arena.len()
    }

    /// Arena words no pair uses (moved runs).
    pub(crate) fn garbage(&self) -> usize {
        self.garbage as usize
    }

    /// Notes that the pair whose cell is `cell` is gone: its run, if any,
    /// is garbage now.
    pub(crate) fn release<const C: usize>(&mut self, cell: &[u32; C]) {
        if cell[0] & MULTI != 0 {
            let at = (cell[0] & !MULTI) as usize;
            self.garbage += HEADER as u32 + self.arena[at + 1];
        }
    }

    /// The buckets of the pair whose cell is `cell`, ascending.
    #[inline]
    pub(crate) fn buckets<const C: usize>(&self, cell: &[u32; C]) -> Buckets<'_> {
        if cell[0] & MULTI == 0 {
            Buckets::Cell(CellBuckets::of(cell))
        } else {
            Buckets::Run(self.run(cell[0]))
        }
    }

    /// The run a cell's first word `word` (with [`MULTI`]) points at.
    #[inline]
    fn run(&self, word: u32) -> &[u32] {
        let at = (word & !MULTI) as usize;
        &self.arena[at + HEADER..at + HEADER + self.arena[at] as usize]
    }

    /// Prefetches the start of the run of the pair whose cell starts with
    /// `word` (its header and the line after it), which
    /// [`seen_in`](Self::seen_in) and [`count_points`](Self::count_points)
    /// read; nothing for a cell that holds its buckets. The scans over a
    /// table ask for the run of a pair some slots ahead: runs lie in the
    /// arena in the order they grew, not in slot order, so without it
    /// every run is a miss waited for in turn.
    #[inline]
    pub(crate) fn prefetch_run(&self, word: u32) {
        if word & MULTI != 0 {
            let at = (word & !MULTI) as usize;
            // A word of an emptied slot may be stale: only words inside
            // the arena are asked for (a hint either way).
            if let Some(header) = self.arena.get(at) {
                crate::prefetch::prefetch(header);
            }
            if let Some(next) = self.arena.get(at + 16) {
                crate::prefetch::prefetch(next);
            }
        }
    }

    /// Whether the pair was seen in a bucket of `range`.
    #[inline]
    pub(crate) fn seen_in<const C: usize>(&self, cell: &[u32; C], range: Range<u64>) -> bool {
        if C == 1 && cell[0] & MULTI == 0 {
            return range.contains(&u64::from(cell[0]));
        }
        let run = self.buckets(cell);
        let first = run.partition_point(|&b| u64::from(b) < range.start);
        first < run.len() && u64::from(run[first]) < range.end
    }

    /// Adds one to `counts[p]` for every point `p` of `series` the pair
    /// was seen in (once per point, however many of its buckets fall in).
    #[inline]
    pub(crate) fn count_points<const C: usize>(
        &self,
        cell: &[u32; C],
        series: &Series,
        counts: &mut [u32],
    ) {
        if C == 1 && cell[0] & MULTI == 0 {
            if let Some(p) = series.point_of(cell[0]) {
                counts[p] += 1;
            }
            return;
        }
        let range = series.range().buckets();
        let (origin, step) = (series.origin(), u64::from(series.step_buckets()));
        let run = self.buckets(cell);
        let start = run.partition_point(|&b| u64::from(b) < range.start);
        // Sorted: one division per point, a comparison per bucket.
        let mut next_point = 0;
        for &b in &run[start..] {
            let b = u64::from(b);
            if b >= range.end {
                break;
            }
            if b >= next_point {
                let p = (b - origin) / step;
                counts[p as usize] += 1;
                next_point = origin + (p + 1) * step;
            }
        }
    }

    /// Notes that the pair whose cell is `cell` was seen in `bucket` (at
    /// most [`MAX_BUCKET_INDEX`]) if that needs no allocation: in the cell
    /// while the buckets fit it, else in the pair's run.
    #[inline]
    pub(crate) fn add<const C: usize>(&mut self, cell: &mut [u32; C], bucket: u32) -> AddBucket {
        debug_assert!(bucket <= MAX_BUCKET_INDEX);
        if cell[0] == bucket {
            return AddBucket::Present;
        }
        if cell[0] & MULTI == 0 {
            if C > 1 {
                let held = CellBuckets::of(cell);
                let Some(pos) = insertion_point(&held, bucket) else {
                    return AddBucket::Present;
                };
                let mut more = [0; MAX_PLACES + 1];
                more[..pos].copy_from_slice(&held[..pos]);
                more[pos] = bucket;
                more[pos + 1..=held.len()].copy_from_slice(&held[pos..]);
                if let Some(fits) = CellBuckets::encode(&more[..=held.len()]) {
                    *cell = fits;
                    return AddBucket::Added;
                }
            }
        } else {
            let at = (cell[0] & !MULTI) as usize;
            let (len, room) = (self.arena[at] as usize, self.arena[at + 1]);
            let run = &mut self.arena[at + HEADER..at + HEADER + room as usize];
            let Some(pos) = insertion_point(&run[..len], bucket) else {
                return AddBucket::Present;
            };
            if len < room as usize {
                run.copy_within(pos..len, pos + 1);
                run[pos] = bucket;
                self.arena[at] += 1;
                return AddBucket::Added;
            }
        }
        let needed = self.new_run(cell);
        if self.arena.len() + needed <= self.arena.capacity() {
            self.append_run(cell, bucket, needed);
            return AddBucket::Added;
        }
        let grown = self.grown_capacity(needed);
        AddBucket::Grow((grown - self.arena.capacity()) * std::mem::size_of::<u32>())
    }

    /// Adds `bucket` after an [`AddBucket::Grow`] answer, growing the
    /// arena by the bytes it named.
    pub(crate) fn add_growing<const C: usize>(&mut self, cell: &mut [u32; C], bucket: u32) {
        if let AddBucket::Grow(_) = self.add(cell, bucket) {
            let needed = self.new_run(cell);
            let mut arena = Vec::with_capacity(self.grown_capacity(needed));
            arena.extend_from_slice(&self.arena);
            self.arena = arena;
            self.append_run(cell, bucket, needed);
        }
    }

    /// The arena words the pair's next run takes, when its buckets and
    /// one more no longer fit where they are (its cell, or its run).
    fn new_run<const C: usize>(&self, cell: &[u32; C]) -> usize {
        if cell[0] & MULTI == 0 {
            return HEADER + self.start_room(places(C)) as usize;
        }
        HEADER + 2 * self.arena[(cell[0] & !MULTI) as usize + 1] as usize
    }

    /// The room a run starts with for a pair that outgrows a cell of
    /// `places` buckets: the first room, and a power of two above the
    /// buckets the run starts with, so that it does not move again at
    /// once.
    #[inline]
    fn start_room(&self, places: usize) -> u32 {
        u32::from(self.first_room).max((places as u32 + 1).next_power_of_two())
    }

    /// The capacity the arena grows to for `needed` more words: by a
    /// quarter at least.
    fn grown_capacity(&self, needed: usize) -> usize {
        let capacity = self.arena.capacity();
        (self.arena.len() + needed).max(capacity + capacity / 4)
    }

    /// Writes the pair's buckets and `bucket` (absent) as a new run of
    /// `size` words at the arena's end, which has room (so nothing
    /// allocates), and points the cell at it.
    fn append_run<const C: usize>(&mut self, cell: &mut [u32; C], bucket: u32, size: usize) {
        let at = self.arena.len();
        let room = (size - HEADER) as u32;
        if cell[0] & MULTI == 0 {
            let held = CellBuckets::of(cell);
            let pos = held.partition_point(|&b| b < bucket);
            self.arena.extend_from_slice(&[held.len() as u32 + 1, room]);
            self.arena.extend_from_slice(&held[..pos]);
            self.arena.push(bucket);
            self.arena.extend_from_slice(&held[pos..]);
            self.started = self.started.saturating_add(1);
            self.balance = self.balance.saturating_sub(1);
        } else {
            let old = (cell[0] & !MULTI) as usize;
            let (len, old_room) = (self.arena[old] as usize, self.arena[old + 1] as usize);
            if old_room == self.start_room(places(C)) as usize {
                self.balance = self.balance.saturating_add(2);
                if self.balance >= 0
                    && self.started >= FIRST_RUNS_TO_JUDGE
                    && u32::from(self.first_room) < MAX_FIRST_RUN
                {
                    self.first_room *= 2;
                    (self.started, self.balance) = (0, 0);
                }
            }
            let start = old + HEADER;
            let pos = self.arena[start..start + len].partition_point(|&b| b < bucket);
            self.arena.extend_from_slice(&[len as u32 + 1, room]);
            self.arena.extend_from_within(start..start + pos);
            self.arena.push(bucket);
            self.arena.extend_from_within(start + pos..start + len);
            self.garbage += (HEADER + old_room) as u32;
        }
        self.arena.resize(at + size, 0);
        *cell = [0; C];
        cell[0] = MULTI | at as u32;
    }

    /// Drops the buckets before `oldest` from the pair; returns false if
    /// none is left (the pair should go, its cell as it was). A run whose
    /// buckets left fit the cell moves back into it.
    pub(crate) fn retain_from<const C: usize>(&mut self, cell: &mut [u32; C], oldest: u32) -> bool {
        if cell[0] & MULTI == 0 {
            if C == 1 {
                return cell[0] >= oldest;
            }
            let held = CellBuckets::of(cell);
            let cut = held.partition_point(|&b| b < oldest);
            if cut == held.len() {
                return false;
            }
            *cell = CellBuckets::encode(&held[cut..]).expect("fewer buckets, the same gaps");
            return true;
        }
        let at = (cell[0] & !MULTI) as usize;
        let len = self.arena[at] as usize;
        let run = at + HEADER..at + HEADER + len;
        let cut = self.arena[run.clone()].partition_point(|&b| b < oldest);
        if cut == len {
            self.release(cell);
            return false;
        }
        if let Some(fits) = CellBuckets::encode(&self.arena[run.start + cut..run.end]) {
            self.release(cell);
            *cell = fits;
            return true;
        }
        self.arena.copy_within(run.start + cut..run.end, run.start);
        self.arena[at] = (len - cut) as u32;
        true
    }

    /// Rewrites every run in the order of `words` (the first words of a
    /// page's cells, in slot order), so a scan reads the arena front to
    /// back, and gives the garbage back: exactly sized, or with
    /// `keep_room` each with the room it had, so that runs still growing
    /// go on growing in place (and in order) instead of moving to the end
    /// again. Returns the heap bytes freed.
    pub(crate) fn compact<'w>(
        &mut self,
        words: impl Iterator<Item = &'w mut u32>,
        keep_room: bool,
    ) -> usize {
        let before = self.heap_bytes();
        let live = self.arena.len() - self.garbage();
        let mut arena = Vec::with_capacity(live);
        for word in words.filter(|w| **w & MULTI != 0) {
            let at = (*word & !MULTI) as usize;
            let len = self.arena[at] as usize;
            let room = if keep_room {
                self.arena[at + 1] as usize
            } else {
                len
            };
            *word = MULTI
                | push_run(
                    &mut arena,
                    &self.arena[at + HEADER..at + HEADER + len],
                    room,
                );
        }
        self.take_arena(arena);
        before - self.heap_bytes()
    }

    /// The cell of `TO` words for the pair whose cell (of this arena) is
    /// `cell`: its buckets if they fit, else a run in `arena` (with the
    /// room it had, or a power of two), a new arena that
    /// [`take_arena`](Self::take_arena) then makes this one's.
    #[inline]
    pub(crate) fn recell<const C: usize, const TO: usize>(
        &self,
        cell: &[u32; C],
        arena: &mut Vec<u32>,
    ) -> [u32; TO] {
        let buckets = self.buckets(cell);
        CellBuckets::encode::<TO>(&buckets).unwrap_or_else(|| {
            let mut new = [0; TO];
            new[0] = MULTI | push_run(arena, &buckets, self.moved_room(cell, &buckets));
            new
        })
    }

    /// The arena words [`recell`](Self::recell) into `TO` words takes for
    /// the pair whose cell is `cell`: none if its buckets fit, else its
    /// run's header and room.
    #[inline]
    pub(crate) fn recell_words<const C: usize, const TO: usize>(&self, cell: &[u32; C]) -> usize {
        let buckets = self.buckets(cell);
        if CellBuckets::encode::<TO>(&buckets).is_some() {
            return 0;
        }
        HEADER + self.moved_room(cell, &buckets)
    }

    /// The room of the run [`recell`](Self::recell) writes for the pair
    /// whose cell is `cell` and buckets `buckets`, when they do not fit
    /// the new cell: the room its run had, or a power of two.
    #[inline]
    fn moved_room<const C: usize>(&self, cell: &[u32; C], buckets: &Buckets) -> usize {
        match buckets {
            Buckets::Run(_) => self.arena[(cell[0] & !MULTI) as usize + 1] as usize,
            Buckets::Cell(held) => held.len().next_power_of_two(),
        }
    }

    /// Replaces the arena with `arena`, built by [`recell`](Self::recell)
    /// or [`compact`](Self::compact) (shrunk to fit, no garbage).
    pub(crate) fn take_arena(&mut self, mut arena: Vec<u32>) {
        arena.shrink_to_fit();
        self.arena = arena;
        self.garbage = 0;
    }
}

/// Where `bucket` goes in the ascending `buckets` (not empty), or `None`
/// if it is there. Time mostly moves forward: a later bucket than the
/// last goes at the end, with no search.
#[inline]
fn insertion_point(buckets: &[u32], bucket: u32) -> Option<usize> {
    if bucket > buckets[buckets.len() - 1] {
        return Some(buckets.len());
    }
    buckets.binary_search(&bucket).err()
}

/// Appends a run of `buckets` with `room` places (at least their number)
/// to `arena`; returns its offset.
fn push_run(arena: &mut Vec<u32>, buckets: &[u32], room: usize) -> u32 {
    let at = arena.len();
    arena.extend_from_slice(&[buckets.len() as u32, room as u32]);
    arena.extend_from_slice(buckets);
    arena.resize(at + HEADER + room, 0);
    at as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Bucketing;
    use crate::time::clock::Timestamp;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::time::Duration;

    fn add<const C: usize>(runs: &mut Runs, cell: &mut [u32; C], bucket: u32) -> bool {
        match runs.add(cell, bucket) {
            AddBucket::Present => false,
            AddBucket::Added => true,
            AddBucket::Grow(bytes) => {
                let before = runs.heap_bytes();
                runs.add_growing(cell, bucket);
                assert_eq!(runs.heap_bytes() - before, bytes, "Grow named the bytes");
                true
            }
        }
    }

    /// A new pair's cell, seen in `bucket`.
    fn cell<const C: usize>(bucket: u32) -> [u32; C] {
        let mut cell = [0; C];
        cell[0] = bucket;
        cell
    }

    #[test]
    fn a_repeat_in_the_same_bucket_writes_nothing() {
        let mut runs = Runs::default();
        let mut word = [100];
        assert_eq!(runs.add(&mut word, 100), AddBucket::Present);
        assert_eq!((word[0], runs.heap_bytes()), (100, 0));
        assert!(add(&mut runs, &mut word, 90));
        assert_eq!(*runs.buckets(&word), [90, 100]);
        assert_eq!(runs.add(&mut word, 90), AddBucket::Present);
    }

    /// A wide cell takes buckets until they no longer fit, with no arena;
    /// the next moves them all into a run, and retention brings them back
    /// into the cell.
    #[test]
    fn a_wide_cell_holds_its_buckets_until_they_do_not_fit() {
        let mut runs = Runs::default();
        let mut wide = cell::<2>(50);
        assert!(add(&mut runs, &mut wide, 10));
        assert!(add(&mut runs, &mut wide, 70));
        assert!(!add(&mut runs, &mut wide, 10));
        assert_eq!(wide, [10, 40 | 20 << 16], "the first bucket and two gaps");
        assert_eq!(*runs.buckets(&wide), [10, 50, 70]);
        assert_eq!(runs.heap_bytes(), 0);
        assert!(add(&mut runs, &mut wide, 60));
        assert_ne!(wide[0] & MULTI, 0);
        assert_eq!(wide[1], 0);
        assert_eq!(*runs.buckets(&wide), [10, 50, 60, 70]);
        assert_eq!(
            runs.arena[1], 4,
            "a run starts with room for a power of two"
        );
        assert!(runs.retain_from(&mut wide, 20));
        assert_eq!(*runs.buckets(&wide), [50, 60, 70]);
        assert_eq!(wide[0] & MULTI, 0, "back in the cell");
        assert_eq!(runs.garbage(), runs.len());
        assert!(runs.retain_from(&mut wide, 65));
        assert_eq!(wide, [70, 0]);
        assert!(!runs.retain_from(&mut wide, 71));
        // A gap of more than 16 bits takes a run, with places left.
        let mut far = cell::<3>(7);
        assert!(add(&mut runs, &mut far, 7 + 0x1_0000));
        assert_ne!(far[0] & MULTI, 0);
        assert_eq!(*runs.buckets(&far), [7, 7 + 0x1_0000]);
        let mut near = cell::<3>(7);
        assert!(add(&mut runs, &mut near, 7 + 0xFFFF));
        assert_eq!(near, [7, 0xFFFF, 0]);
    }

    #[test]
    fn runs_start_with_more_room_once_pairs_keep_coming_back() {
        let mut runs = Runs::default();
        let room = |runs: &Runs, word: u32| runs.arena[(word & !MULTI) as usize + 1];
        // Pairs seen in 6 buckets each, in time order (appended at the end).
        let mut words: Vec<[u32; 1]> = vec![[0]; 16];
        for bucket in 1..6 {
            for word in &mut words {
                assert!(add(&mut runs, word, bucket));
            }
        }
        assert_eq!(
            room(&runs, words[0][0]),
            8,
            "the first runs filled and moved"
        );
        assert_eq!(runs.first_room, 8, "most runs filled their first room");
        let mut word = [7];
        assert!(add(&mut runs, &mut word, 9));
        assert_eq!(room(&runs, word[0]), 8);
        assert_eq!(*runs.buckets(&word), [7, 9]);
        for word in &words {
            assert_eq!(*runs.buckets(word), [0, 1, 2, 3, 4, 5]);
        }
    }

    /// Answers of `cells` against `model`, a set of buckets per pair:
    /// membership in each of `ranges` and a series from bucket 3, `step`
    /// buckets a point.
    fn agree<const C: usize>(
        runs: &Runs,
        cells: &[Option<[u32; C]>],
        model: &[BTreeSet<u32>],
        ranges: &[(u64, u64)],
        step: u64,
    ) -> Result<(), TestCaseError> {
        for (cell, buckets) in cells.iter().zip(model) {
            let Some(cell) = cell else { continue };
            let held: Vec<u32> = runs.buckets(cell).to_vec();
            prop_assert_eq!(&held, &buckets.iter().copied().collect::<Vec<_>>());
            for &(a, b) in ranges {
                let range = a.min(b)..a.max(b);
                let expected = buckets.iter().any(|&x| range.contains(&u64::from(x)));
                prop_assert_eq!(runs.seen_in(cell, range), expected);
            }
        }
        let bucketing = Bucketing::new(Duration::from_secs(60), None)
            .unwrap()
            .max_points(100);
        let minute = |b: u64| Timestamp::from_millis(b * 60_000);
        let range = bucketing
            .range(Some(minute(3)), Some(minute(41)), minute(50))
            .unwrap();
        let series = bucketing
            .series(range, Duration::from_secs(60 * step))
            .unwrap();
        let mut counts = vec![0; series.points().len()];
        for cell in cells.iter().flatten() {
            runs.count_points(cell, &series, &mut counts);
        }
        let expected: Vec<u32> = series
            .points()
            .iter()
            .map(|point| {
                let r = point.buckets();
                model
                    .iter()
                    .zip(cells)
                    .filter(|(b, c)| c.is_some() && b.iter().any(|&x| r.contains(&u64::from(x))))
                    .count() as u32
            })
            .collect();
        prop_assert_eq!(counts, expected);
        Ok(())
    }

    /// The property below for cells of `C` places moved to cells of `TO`.
    fn behaves_like_sets_of_buckets_in<const C: usize, const TO: usize>(
        visits: &[(usize, u32)],
        ranges: &[(u64, u64)],
        oldest: u32,
        step: u64,
    ) -> Result<(), TestCaseError> {
        let mut runs = Runs::default();
        let mut cells: Vec<Option<[u32; C]>> = vec![None; 12];
        let mut model: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); 12];
        for &(pair, bucket) in visits {
            let new = model[pair].insert(bucket);
            match &mut cells[pair] {
                None => cells[pair] = Some(cell(bucket)),
                Some(cell) => prop_assert_eq!(add(&mut runs, cell, bucket), new),
            }
        }
        agree(&runs, &cells, &model, ranges, step)?;
        // Retention, then compaction: the same answers, no garbage.
        for (cell, buckets) in cells.iter_mut().zip(model.iter_mut()) {
            if let Some(c) = cell {
                let kept = runs.retain_from(c, oldest);
                buckets.retain(|&b| b >= oldest);
                prop_assert_eq!(kept, !buckets.is_empty());
                if !kept {
                    *cell = None;
                }
            }
        }
        agree(&runs, &cells, &model, ranges, step)?;
        // Compacted keeping each run's room: the same answers.
        runs.compact(cells.iter_mut().flatten().map(|c| &mut c[0]), true);
        prop_assert_eq!(runs.garbage(), 0);
        agree(&runs, &cells, &model, ranges, step)?;
        let before = runs.heap_bytes();
        let freed = runs.compact(cells.iter_mut().flatten().map(|c| &mut c[0]), false);
        prop_assert_eq!(before - runs.heap_bytes(), freed);
        prop_assert_eq!(runs.garbage(), 0);
        agree(&runs, &cells, &model, ranges, step)?;
        let exact: usize = cells
            .iter()
            .flatten()
            .filter(|c| c[0] & MULTI != 0)
            .map(|c| HEADER + runs.buckets(c).len())
            .sum();
        prop_assert_eq!(runs.heap_bytes(), exact * 4);
        // Moved to cells of `TO` places: the same answers, and buckets go
        // on being added.
        let mut arena = Vec::new();
        let mut cells: Vec<Option<[u32; TO]>> = cells
            .iter()
            .map(|c| c.map(|c| runs.recell(&c, &mut arena)))
            .collect();
        runs.take_arena(arena);
        agree(&runs, &cells, &model, ranges, step)?;
        for (pair, cell) in cells.iter_mut().enumerate() {
            if let Some(cell) = cell {
                prop_assert!(add(&mut runs, cell, 44));
                model[pair].insert(44);
            }
        }
        agree(&runs, &cells, &model, ranges, step)
    }

    proptest! {
        /// Against a set of buckets per pair, for cells of 1 to 3 words:
        /// every range and series answer, retention, compaction and the
        /// move to cells of another width agree. Buckets up to 70,000
        /// apart, so that some gaps do not fit a cell.
        #[test]
        fn behaves_like_sets_of_buckets(
            shape in 0usize..6,
            visits in proptest::collection::vec(
                (0usize..12, prop_oneof![0u32..40, 70_000u32..70_040]),
                1..300,
            ),
            ranges in proptest::collection::vec(
                prop_oneof![(0u64..45, 0u64..45), (0u64..70_050, 0u64..70_050)],
                1..6,
            ),
            oldest in prop_oneof![0u32..45, 69_990u32..70_050],
            step in 1u64..8,
        ) {
            let run = match shape {
                0 => behaves_like_sets_of_buckets_in::<1, 1>,
                1 => behaves_like_sets_of_buckets_in::<1, 3>,
                2 => behaves_like_sets_of_buckets_in::<3, 1>,
                3 => behaves_like_sets_of_buckets_in::<3, 3>,
                4 => behaves_like_sets_of_buckets_in::<2, 3>,
                _ => behaves_like_sets_of_buckets_in::<3, 2>,
            };
            run(&visits, &ranges, oldest, step)?;
        }
    }
}
