//! A pair's activity: which buckets it was seen in, as one 32-bit word
//! per pair plus, for the pairs seen in more than one bucket, a sorted run
//! of buckets in its page's arena ([`Runs`]). The layout and why it was
//! chosen are in the module docs of `src/time`.
//! The words are the last value a
//! [`WordTable`](super::word_table::WordTable) keeps per slot.

use std::ops::Range;

use crate::time::Series;

/// The word's high bit: set, the rest is a run's offset in the arena;
/// clear, the rest is the pair's one bucket.
pub(crate) const MULTI: u32 = 1 << 31;
/// The largest bucket index a word holds (2³¹ minutes reach year 6053).
pub(crate) const MAX_BUCKET_INDEX: u32 = MULTI - 1;

/// The room a run starts with when a pair is seen in a second bucket, in
/// an arena whose pairs have not shown that they come back more often.
const FIRST_RUN: u32 = 4;
/// The most room a first run starts with (see `Runs::first_room`).
const MAX_FIRST_RUN: u32 = 16;
/// Runs started before the first room may grow: a few pairs say little.
const FIRST_RUNS_TO_JUDGE: u8 = 8;
/// A run's header: its length and its room, in words.
const HEADER: usize = 2;

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

    /// Notes that the pair with word `word` is gone: its run, if any, is
    /// garbage now.
    pub(crate) fn release(&mut self, word: u32) {
        if word & MULTI != 0 {
            let at = (word & !MULTI) as usize;
            self.garbage += HEADER as u32 + self.arena[at + 1];
        }
    }

    /// The buckets of the pair whose word is `word`, ascending.
    pub(crate) fn buckets<'a>(&'a self, word: &'a u32) -> &'a [u32] {
        if *word & MULTI == 0 {
            std::slice::from_ref(word)
        } else {
            let at = (*word & !MULTI) as usize;
            &self.arena[at + HEADER..at + HEADER + self.arena[at] as usize]
        }
    }

    /// Prefetches the start of the run of the pair whose word is `word`
    /// (its header and the line after it), which [`seen_in`](Self::seen_in)
    /// and [`count_points`](Self::count_points) read; nothing for a
    /// one-bucket word. The scans over a table ask for the run of a pair
    /// some slots ahead: runs lie in the arena in the order they grew, not
    /// in slot order, so without it every run is a miss waited for in turn.
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
    pub(crate) fn seen_in(&self, word: u32, range: Range<u64>) -> bool {
        if word & MULTI == 0 {
            return range.contains(&u64::from(word));
        }
        let run = self.buckets(&word);
        let first = run.partition_point(|&b| u64::from(b) < range.start);
        first < run.len() && u64::from(run[first]) < range.end
    }

    /// Adds one to `counts[p]` for every point `p` of `series` the pair
    /// was seen in (once per point, however many of its buckets fall in).
    #[inline]
    pub(crate) fn count_points(&self, word: u32, series: &Series, counts: &mut [u32]) {
        if word & MULTI == 0 {
            if let Some(p) = series.point_of(word) {
                counts[p] += 1;
            }
            return;
        }
        let range = series.range().buckets();
        let step = u64::from(series.step_buckets());
        let run = self.buckets(&word);
        let start = run.partition_point(|&b| u64::from(b) < range.start);
        // Sorted: one division per point, a comparison per bucket.
        let mut next_point = 0;
        for &b in &run[start..] {
            let b = u64::from(b);
            if b >= range.end {
                break;
            }
            if b >= next_point {
                let p = (b - range.start) / step;
                counts[p as usize] += 1;
                next_point = range.start + (p + 1) * step;
            }
        }
    }

    /// Notes that the pair with word `*word` was seen in `bucket`
    /// (at most [`MAX_BUCKET_INDEX`]) if that needs no allocation.
    #[inline]
    pub(crate) fn add(&mut self, word: &mut u32, bucket: u32) -> AddBucket {
        debug_assert!(bucket <= MAX_BUCKET_INDEX);
        if *word == bucket {
            return AddBucket::Present;
        }
        let needed = if *word & MULTI == 0 {
            HEADER + self.first_room as usize
        } else {
            let at = (*word & !MULTI) as usize;
            let (len, room) = (self.arena[at] as usize, self.arena[at + 1]);
            let run = &mut self.arena[at + HEADER..at + HEADER + room as usize];
            // Time mostly moves forward: a later bucket than the last goes
            // at the end, with no search and nothing to shift.
            let pos = if bucket > run[len - 1] {
                len
            } else {
                match run[..len].binary_search(&bucket) {
                    Ok(_) => return AddBucket::Present,
                    Err(pos) => pos,
                }
            };
            if len < room as usize {
                run.copy_within(pos..len, pos + 1);
                run[pos] = bucket;
                self.arena[at] += 1;
                return AddBucket::Added;
            }
            HEADER + 2 * room as usize
        };
        if self.arena.len() + needed <= self.arena.capacity() {
            self.append_run(word, bucket, needed);
            return AddBucket::Added;
        }
        let grown = self.grown_capacity(needed);
        AddBucket::Grow((grown - self.arena.capacity()) * std::mem::size_of::<u32>())
    }

    /// Adds `bucket` after an [`AddBucket::Grow`] answer, growing the
    /// arena by the bytes it named.
    pub(crate) fn add_growing(&mut self, word: &mut u32, bucket: u32) {
        if let AddBucket::Grow(_) = self.add(word, bucket) {
            let needed = self.needed(word).expect("a Grow answer needs a new run");
            let mut arena = Vec::with_capacity(self.grown_capacity(needed));
            arena.extend_from_slice(&self.arena);
            self.arena = arena;
            self.append_run(word, bucket, needed);
        }
    }

    /// The arena words a new run for the pair would take, if it needs one.
    fn needed(&self, word: &u32) -> Option<usize> {
        if *word & MULTI == 0 {
            return Some(HEADER + self.first_room as usize);
        }
        let at = (*word & !MULTI) as usize;
        (self.arena[at] == self.arena[at + 1]).then(|| HEADER + 2 * self.arena[at + 1] as usize)
    }

    /// The capacity the arena grows to for `needed` more words: by a
    /// quarter at least.
    fn grown_capacity(&self, needed: usize) -> usize {
        let capacity = self.arena.capacity();
        (self.arena.len() + needed).max(capacity + capacity / 4)
    }

    /// Writes the pair's buckets and `bucket` (absent) as a new run of
    /// `size` words at the arena's end, which has room (so nothing
    /// allocates), and points the word at it.
    fn append_run(&mut self, word: &mut u32, bucket: u32, size: usize) {
        let at = self.arena.len();
        let room = (size - HEADER) as u32;
        if *word & MULTI == 0 {
            let (a, b) = ((*word).min(bucket), (*word).max(bucket));
            self.arena.extend_from_slice(&[2, room, a, b]);
            self.started = self.started.saturating_add(1);
            self.balance = self.balance.saturating_sub(1);
        } else {
            let old = (*word & !MULTI) as usize;
            let (len, old_room) = (self.arena[old] as usize, self.arena[old + 1] as usize);
            if old_room == usize::from(self.first_room) {
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
        *word = MULTI | at as u32;
    }

    /// Drops the buckets before `oldest` from the pair; returns false if
    /// none is left (the pair should go). A run left with one bucket
    /// becomes a single word again.
    pub(crate) fn retain_from(&mut self, word: &mut u32, oldest: u32) -> bool {
        if *word & MULTI == 0 {
            return *word >= oldest;
        }
        let at = (*word & !MULTI) as usize;
        let run = self.buckets(word);
        let cut = run.partition_point(|&b| b < oldest);
        let left = run.len() - cut;
        match left {
            0 | 1 => {
                let last = run.last().copied();
                self.garbage += HEADER as u32 + self.arena[at + 1];
                if left == 1 {
                    *word = last.expect("a run is never empty");
                }
                left == 1
            }
            _ => {
                let len = run.len();
                self.arena
                    .copy_within(at + HEADER + cut..at + HEADER + len, at + HEADER);
                self.arena[at] = left as u32;
                true
            }
        }
    }

    /// Rewrites every run in the order of `words` (a page's slots), so a
    /// scan reads the arena front to back, and gives the garbage back:
    /// exactly sized, or with `keep_room` each with the room it had, so
    /// that runs still growing go on growing in place (and in order)
    /// instead of moving to the end again. Returns the heap bytes freed.
    pub(crate) fn compact<'w>(
        &mut self,
        words: impl Iterator<Item = &'w mut u32>,
        keep_room: bool,
    ) -> usize {
        let before = self.heap_bytes();
        let live = self.arena.len() - self.garbage();
        let mut arena = Vec::with_capacity(live);
        for word in words.filter(|w| **w & MULTI != 0) {
            let run = self.buckets(word);
            let room = if keep_room {
                self.arena[(*word & !MULTI) as usize + 1]
            } else {
                run.len() as u32
            };
            let at = arena.len() as u32;
            arena.extend_from_slice(&[run.len() as u32, room]);
            arena.extend_from_slice(run);
            arena.resize(at as usize + HEADER + room as usize, 0);
            *word = MULTI | at;
        }
        arena.shrink_to_fit();
        self.arena = arena;
        self.garbage = 0;
        before - self.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Bucketing;
    use crate::time::clock::Timestamp;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::time::Duration;

    fn add(runs: &mut Runs, word: &mut u32, bucket: u32) -> bool {
        match runs.add(word, bucket) {
            AddBucket::Present => false,
            AddBucket::Added => true,
            AddBucket::Grow(bytes) => {
                let before = runs.heap_bytes();
                runs.add_growing(word, bucket);
                assert_eq!(runs.heap_bytes() - before, bytes, "Grow named the bytes");
                true
            }
        }
    }

    #[test]
    fn a_repeat_in_the_same_bucket_writes_nothing() {
        let mut runs = Runs::default();
        let mut word = 100;
        assert_eq!(runs.add(&mut word, 100), AddBucket::Present);
        assert_eq!((word, runs.heap_bytes()), (100, 0));
        assert!(add(&mut runs, &mut word, 90));
        assert_eq!(runs.buckets(&word), [90, 100]);
        assert_eq!(runs.add(&mut word, 90), AddBucket::Present);
    }

    #[test]
    fn runs_start_with_more_room_once_pairs_keep_coming_back() {
        let mut runs = Runs::default();
        let room = |runs: &Runs, word: u32| runs.arena[(word & !MULTI) as usize + 1];
        // Pairs seen in 6 buckets each, in time order (appended at the end).
        let mut words: Vec<u32> = vec![0; 16];
        for bucket in 0..6 {
            for word in &mut words {
                if bucket == 0 {
                    *word = 0;
                } else {
                    assert!(add(&mut runs, word, bucket));
                }
            }
        }
        assert_eq!(room(&runs, words[0]), 8, "the first runs filled and moved");
        assert_eq!(runs.first_room, 8, "most runs filled their first room");
        let mut word = 7;
        assert!(add(&mut runs, &mut word, 9));
        assert_eq!(room(&runs, word), 8);
        assert_eq!(runs.buckets(&word), [7, 9]);
        for word in &words {
            assert_eq!(runs.buckets(word), [0, 1, 2, 3, 4, 5]);
        }
    }

    proptest! {
        /// Against a set of buckets per pair: every range and series
        /// answer, retention and compaction agree.
        #[test]
        fn behaves_like_sets_of_buckets(
            visits in proptest::collection::vec((0usize..12, 0u32..40), 1..300),
            ranges in proptest::collection::vec((0u64..45, 0u64..45), 1..6),
            oldest in 0u32..45,
            step in 1u64..8,
        ) {
            let mut runs = Runs::default();
            let mut words: Vec<Option<u32>> = vec![None; 12];
            let mut model: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); 12];
            for (pair, bucket) in visits {
                let new = model[pair].insert(bucket);
                match &mut words[pair] {
                    None => words[pair] = Some(bucket),
                    Some(word) => prop_assert_eq!(add(&mut runs, word, bucket), new),
                }
            }
            let check = |runs: &Runs, words: &[Option<u32>], model: &[BTreeSet<u32>]| -> Result<(), TestCaseError> {
                for (word, buckets) in words.iter().zip(model) {
                    let Some(word) = word else { continue };
                    let held: Vec<u32> = runs.buckets(word).to_vec();
                    prop_assert_eq!(&held, &buckets.iter().copied().collect::<Vec<_>>());
                    for &(a, b) in &ranges {
                        let range = a.min(b)..a.max(b);
                        let expected = buckets.iter().any(|&x| range.contains(&u64::from(x)));
                        prop_assert_eq!(runs.seen_in(*word, range), expected);
                    }
                }
                // A series from bucket 3, `step` buckets a point.
                let bucketing = Bucketing::new(Duration::from_secs(60), None).unwrap().max_points(100);
                let minute = |b: u64| Timestamp::from_millis(b * 60_000);
                let range = bucketing.range(Some(minute(3)), Some(minute(41)), minute(50)).unwrap();
                let series = bucketing.series(range, Duration::from_secs(60 * step)).unwrap();
                let mut counts = vec![0; series.points().len()];
                for word in words.iter().flatten() {
                    runs.count_points(*word, &series, &mut counts);
                }
                let expected: Vec<u32> = series
                    .points()
                    .iter()
                    .map(|point| {
                        let r = point.buckets();
                        model
                            .iter()
                            .zip(words)
                            .filter(|(b, w)| w.is_some() && b.iter().any(|&x| r.contains(&u64::from(x))))
                            .count() as u32
                    })
                    .collect();
                prop_assert_eq!(counts, expected);
                Ok(())
            };
            check(&runs, &words, &model)?;
            // Retention, then compaction: the same answers, no garbage.
            for (word, buckets) in words.iter_mut().zip(model.iter_mut()) {
                if let Some(w) = word {
                    let kept = runs.retain_from(w, oldest);
                    buckets.retain(|&b| b >= oldest);
                    prop_assert_eq!(kept, !buckets.is_empty());
                    if !kept {
                        *word = None;
                    }
                }
            }
            check(&runs, &words, &model)?;
            // Compacted keeping each run's room: the same answers.
            runs.compact(words.iter_mut().flatten(), true);
            prop_assert_eq!(runs.garbage(), 0);
            check(&runs, &words, &model)?;
            let before = runs.heap_bytes();
            let freed = runs.compact(words.iter_mut().flatten(), false);
            prop_assert_eq!(before - runs.heap_bytes(), freed);
            prop_assert_eq!(runs.garbage(), 0);
            check(&runs, &words, &model)?;
            let exact: usize = words
                .iter()
                .flatten()
                .filter(|w| **w & MULTI != 0)
                .map(|w| HEADER + runs.buckets(w).len())
                .sum();
            prop_assert_eq!(runs.heap_bytes(), exact * 4);
        }
    }
}
