//! A sketched page's visitors by period: what keeps range answers for a
//! page whose exact set the memory budget turned into a sketch (the
//! degradation of the time-bucket layout, in the module docs of
//! `src/time`).
//!
//! A period starts as one UTC day; the budget may merge the oldest two
//! into one (lossless in count, coarser in time). Each keeps its visitors
//! exactly, as a sorted list of hashes, while that is no bigger than its
//! sketch (128 hashes), then as an UltraLogLog of precision 10: 1 KiB and
//! a relative standard error of 2.4% for any union of periods, since
//! merging sketches loses nothing. (An 8 KiB sketch per hourly bucket
//! would cost 192 KiB a page a day.)

use std::ops::Range;

use crate::report::Distinct;
use crate::sketch::UltraLogLog;

/// The precision of a period's sketch.
pub(crate) const PERIOD_PRECISION: u8 = 10;
/// Heap bytes of a period's sketch.
pub(crate) const PERIOD_SKETCH_BYTES: usize =
    std::mem::size_of::<UltraLogLog>() + (1 << PERIOD_PRECISION);
/// The most hashes a period keeps exactly: as many bytes as its registers.
pub(crate) const EXACT_UP_TO: usize = (1 << PERIOD_PRECISION) / std::mem::size_of::<u64>();

#[derive(Debug, Clone)]
enum Visitors {
    /// Sorted, distinct, exactly sized.
    Exact(Box<[u64]>),
    Sketch(Box<UltraLogLog>),
}

impl Visitors {
    fn heap_bytes(&self) -> usize {
        match self {
            Visitors::Exact(hashes) => std::mem::size_of_val(&**hashes),
            Visitors::Sketch(_) => PERIOD_SKETCH_BYTES,
        }
    }
}

/// The visitors of the days `first..first + days`.
#[derive(Debug, Clone)]
struct Period {
    first: u32,
    days: u32,
    visitors: Visitors,
}

impl Period {
    fn days(&self) -> Range<u32> {
        self.first..self.first + self.days
    }
}

/// What adding a visitor did, or what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HistoryInsert {
    /// Known already (exactly), or taken in by a sketch.
    Done,
    /// Needs this many more heap bytes; nothing was changed. Reserve them,
    /// then call [`History::insert_growing`].
    Grow(usize),
}

/// A page's periods, ascending and not overlapping.
#[derive(Debug, Clone, Default)]
pub(crate) struct History {
    periods: Box<[Period]>,
}

impl History {
    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.periods)
            + self
                .periods
                .iter()
                .map(|p| p.visitors.heap_bytes())
                .sum::<usize>()
    }

    /// The days covered, oldest first.
    #[cfg(test)]
    pub(crate) fn days(&self) -> impl Iterator<Item = Range<u32>> + '_ {
        self.periods.iter().map(Period::days)
    }

    fn find(&self, day: u32) -> Result<usize, usize> {
        let i = self.periods.partition_point(|p| p.days().end <= day);
        match self.periods.get(i) {
            Some(p) if p.first <= day => Ok(i),
            _ => Err(i),
        }
    }

    /// Adds visitor `hash` seen on `day` if that needs no allocation.
    pub(crate) fn insert(&mut self, day: u32, hash: u64) -> HistoryInsert {
        let Ok(i) = self.find(day) else {
            let bytes = std::mem::size_of::<Period>() + std::mem::size_of::<u64>();
            return HistoryInsert::Grow(bytes);
        };
        match &mut self.periods[i].visitors {
            Visitors::Sketch(sketch) => {
                sketch.insert(hash);
                HistoryInsert::Done
            }
            Visitors::Exact(hashes) => match hashes.binary_search(&hash) {
                Ok(_) => HistoryInsert::Done,
                Err(_) if hashes.len() < EXACT_UP_TO => {
                    HistoryInsert::Grow(std::mem::size_of::<u64>())
                }
                Err(_) => HistoryInsert::Grow(PERIOD_SKETCH_BYTES - EXACT_UP_TO * 8),
            },
        }
    }

    /// Sets each sketched period's estimate to the exact number of
    /// distinct hashes `count(day)` put in it: for a history built from an
    /// exact set in table order (by hash), whose inserts would bias the
    /// estimate (see `UltraLogLog::set_exact_count`). Each period is one
    /// day then.
    pub(crate) fn set_exact_counts(&mut self, count: impl Fn(u32) -> u64) {
        for period in self.periods.iter_mut() {
            if let Visitors::Sketch(sketch) = &mut period.visitors {
                sketch.set_exact_count(count(period.first));
            }
        }
    }

    /// Adds `hash` after a [`HistoryInsert::Grow`] answer.
    pub(crate) fn insert_growing(&mut self, day: u32, hash: u64) {
        if let HistoryInsert::Grow(_) = self.insert(day, hash) {
            match self.find(day) {
                Err(i) => {
                    let mut periods = std::mem::take(&mut self.periods).into_vec();
                    periods.insert(
                        i,
                        Period {
                            first: day,
                            days: 1,
                            visitors: Visitors::Exact(Box::new([hash])),
                        },
                    );
                    self.periods = periods.into_boxed_slice();
                }
                Ok(i) => {
                    let visitors = &mut self.periods[i].visitors;
                    if let Visitors::Exact(hashes) = visitors
                        && let Err(at) = hashes.binary_search(&hash)
                    {
                        *visitors = with_hash(hashes, at, hash);
                    }
                }
            }
        }
    }

    /// The visitors of the periods that meet `days`, and the days those
    /// periods cover (`days` widened to whole periods; empty if none
    /// meets it): exact while every period met is, else an estimate.
    pub(crate) fn union(&self, days: Range<u32>) -> (Distinct, Range<u32>) {
        let met: Vec<&Period> = self
            .periods
            .iter()
            .filter(|p| p.first < days.end && days.start < p.days().end)
            .collect();
        let covered = match (met.first(), met.last()) {
            (Some(first), Some(last)) => first.first.min(days.start)..last.days().end.max(days.end),
            _ => days,
        };
        (union_of(met.iter().map(|p| &p.visitors)), covered)
    }

    /// The periods, oldest first: first day, days, and visitors (sorted
    /// hashes, or a sketch), for the snapshot.
    pub(crate) fn periods(&self) -> impl Iterator<Item = (u32, u32, Result<&[u64], &UltraLogLog>)> {
        self.periods.iter().map(|p| {
            let visitors = match &p.visitors {
                Visitors::Exact(hashes) => Ok(&hashes[..]),
                Visitors::Sketch(sketch) => Err(&**sketch),
            };
            (p.first, p.days, visitors)
        })
    }

    /// A history of `periods` as [`periods`](Self::periods) gives them,
    /// checked: ascending and apart, exact ones sorted, distinct and at
    /// most [`EXACT_UP_TO`], sketches of [`PERIOD_PRECISION`].
    pub(crate) fn from_periods(
        periods: Vec<(u32, u32, Result<Vec<u64>, UltraLogLog>)>,
    ) -> Result<Self, String> {
        let mut end = 0u32;
        let mut checked = Vec::with_capacity(periods.len());
        for (first, days, visitors) in periods {
            if days == 0 || first < end || first.checked_add(days).is_none() {
                return Err(format!(
                    "period of {days} days from day {first} out of order"
                ));
            }
            end = first + days;
            let visitors = match visitors {
                Ok(hashes) => {
                    if hashes.is_empty()
                        || hashes.len() > EXACT_UP_TO
                        || hashes.windows(2).any(|w| w[0] >= w[1])
                    {
                        return Err("a period's hashes are not sorted and few".into());
                    }
                    Visitors::Exact(hashes.into_boxed_slice())
                }
                Err(sketch) if sketch.precision() == PERIOD_PRECISION => {
                    Visitors::Sketch(Box::new(sketch))
                }
                Err(sketch) => {
                    return Err(format!("period sketch precision {}", sketch.precision()));
                }
            };
            checked.push(Period {
                first,
                days,
                visitors,
            });
        }
        Ok(Self {
            periods: checked.into_boxed_slice(),
        })
    }

    /// Calls `exact` with the hashes and `sketch` with the sketches of the
    /// periods that meet `days`; returns the days those periods cover, as
    /// [`union`](Self::union) does.
    pub(crate) fn add_to(
        &self,
        days: Range<u32>,
        mut exact: impl FnMut(u64),
        mut sketch: impl FnMut(&UltraLogLog),
    ) -> Range<u32> {
        let mut covered = days.clone();
        for period in self
            .periods
            .iter()
            .filter(|p| p.first < days.end && days.start < p.days().end)
        {
            covered = covered.start.min(period.first)..covered.end.max(period.days().end);
            match &period.visitors {
                Visitors::Exact(hashes) => hashes.iter().copied().for_each(&mut exact),
                Visitors::Sketch(s) => sketch(s),
            }
        }
        covered
    }

    /// The first day held, if any.
    pub(crate) fn oldest_day(&self) -> Option<u32> {
        self.periods.first().map(|p| p.first)
    }

    /// Whether [`merge_oldest`](Self::merge_oldest) would free memory:
    /// always when a sketch is involved; for two exact periods, unless
    /// their union just passes [`EXACT_UP_TO`] and its sketch outweighs
    /// both lists. Computed without allocating.
    pub(crate) fn merge_frees(&self) -> bool {
        let [a, b, ..] = &self.periods[..] else {
            return false;
        };
        let merged = match (&a.visitors, &b.visitors) {
            (Visitors::Exact(x), Visitors::Exact(y)) => {
                let union = sorted_union_len(x, y);
                if union <= EXACT_UP_TO {
                    union * std::mem::size_of::<u64>()
                } else {
                    PERIOD_SKETCH_BYTES
                }
            }
            _ => PERIOD_SKETCH_BYTES,
        };
        merged + std::mem::size_of::<Period>()
            < a.visitors.heap_bytes() + b.visitors.heap_bytes() + 2 * std::mem::size_of::<Period>()
    }

    /// Merges the two oldest periods into one (under memory pressure:
    /// the budget's second step). Returns the heap bytes held before and
    /// after (equal with fewer than two periods: nothing to merge).
    pub(crate) fn merge_oldest(&mut self) -> (usize, usize) {
        let before = self.heap_bytes();
        if self.periods.len() < 2 {
            return (before, before);
        }
        let mut periods = std::mem::take(&mut self.periods).into_vec();
        let second = periods.remove(1);
        let first = &mut periods[0];
        let merged = merge(&first.visitors, &second.visitors);
        first.days = second.days().end - first.first;
        first.visitors = merged;
        self.periods = periods.into_boxed_slice();
        (before, self.heap_bytes())
    }

    /// Drops the periods that end at or before `day` (retention). Returns
    /// the heap bytes freed.
    pub(crate) fn drop_before(&mut self, day: u32) -> usize {
        let before = self.heap_bytes();
        let gone = self.periods.partition_point(|p| p.days().end <= day);
        if gone > 0 {
            self.periods = self.periods[gone..].to_vec().into_boxed_slice();
        }
        before - self.heap_bytes()
    }
}

/// A sketched page: its all-time sketch (what `distinct` reads, O(1))
/// and its history by day (what ranges read).
#[derive(Debug, Clone)]
pub(crate) struct Sketched {
    pub(crate) all: UltraLogLog,
    pub(crate) history: History,
    /// The first day from which `history` holds every visit: 0 for a page
    /// sketched from its exact pairs; for one restored from a payload
    /// that kept no history, the day it was restored.
    pub(crate) since: u32,
}

impl Sketched {
    /// Whether the history answers `days` (else only the all-time sketch
    /// can, over everything).
    pub(crate) fn answers(&self, days: &Range<u32>) -> bool {
        days.start >= self.since || days.is_empty()
    }
}

/// `hashes` with `hash` inserted at `at`: exact while that fits, else
/// the sketch of them all.
fn with_hash(hashes: &[u64], at: usize, hash: u64) -> Visitors {
    if hashes.len() < EXACT_UP_TO {
        let mut grown = Vec::with_capacity(hashes.len() + 1);
        grown.extend_from_slice(&hashes[..at]);
        grown.push(hash);
        grown.extend_from_slice(&hashes[at..]);
        Visitors::Exact(grown.into_boxed_slice())
    } else {
        sketch_of(hashes.iter().copied().chain([hash]))
    }
}

fn sketch_of(hashes: impl Iterator<Item = u64>) -> Visitors {
    let sketch = UltraLogLog::from_exact_set(PERIOD_PRECISION, hashes)
        .expect("the period precision is valid");
    Visitors::Sketch(Box::new(sketch))
}

/// How many distinct values two sorted, distinct lists hold together.
fn sorted_union_len(a: &[u64], b: &[u64]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
        n += 1;
    }
    n + (a.len() - i) + (b.len() - j)
}

/// Two periods' visitors together: exact (sorted, distinct) while that
/// fits, else a sketch.
fn merge(a: &Visitors, b: &Visitors) -> Visitors {
    match (a, b) {
        (Visitors::Exact(a), Visitors::Exact(b)) => {
            let mut all: Vec<u64> = a.iter().chain(b.iter()).copied().collect();
            all.sort_unstable();
            all.dedup();
            if all.len() <= EXACT_UP_TO {
                Visitors::Exact(all.into_boxed_slice())
            } else {
                sketch_of(all.into_iter())
            }
        }
        (Visitors::Sketch(s), other) | (other, Visitors::Sketch(s)) => {
            let mut union = (**s).clone();
            add_to(&mut union, other);
            Visitors::Sketch(Box::new(union))
        }
    }
}

fn add_to(sketch: &mut UltraLogLog, visitors: &Visitors) {
    match visitors {
        Visitors::Exact(hashes) => sketch.absorb(&mut hashes.to_vec()),
        Visitors::Sketch(other) => sketch
            .merge(other)
            .expect("every period sketch has one precision"),
    }
}

fn union_of<'a>(sets: impl Iterator<Item = &'a Visitors> + Clone) -> Distinct {
    // Starts from the first sketch, as a site's union does, so that a page
    // and its one-page site answer with one estimator: a sketch merged into
    // an empty one loses its martingale, a clone keeps it.
    let first = sets.clone().find_map(|v| match v {
        Visitors::Sketch(sketch) => Some((v, sketch)),
        Visitors::Exact(_) => None,
    });
    let Some((first, base)) = first else {
        let mut all: Vec<u64> = sets
            .flat_map(|v| match v {
                Visitors::Exact(hashes) => hashes.iter().copied(),
                Visitors::Sketch(_) => [].iter().copied(),
            })
            .collect();
        all.sort_unstable();
        all.dedup();
        return Distinct::exact(all.len() as u64);
    };
    let mut union = (**base).clone();
    for visitors in sets.filter(|&v| !std::ptr::eq(v, first)) {
        add_to(&mut union, visitors);
    }
    Distinct {
        visitors: union.estimate().round() as u64,
        exact: false,
        relative_error: Some(union.relative_standard_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::set::visitor_hash::VisitorHasher;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn insert(history: &mut History, day: u32, hash: u64) {
        if let HistoryInsert::Grow(bytes) = history.insert(day, hash) {
            let before = history.heap_bytes();
            history.insert_growing(day, hash);
            assert_eq!(history.heap_bytes() - before, bytes, "Grow named the bytes");
        }
    }

    #[test]
    fn a_period_sketch_has_the_stated_error() {
        let error = crate::sketch::relative_standard_error(PERIOD_PRECISION);
        assert!((error - 0.0238).abs() < 0.0005, "{error}");
        assert_eq!(
            PERIOD_SKETCH_BYTES,
            std::mem::size_of::<UltraLogLog>() + 1024
        );
    }

    /// Large days become sketches; any union of them is within 5
    /// standard errors, marked inexact, and merging keeps it.
    #[test]
    fn sketched_days_estimate_their_union() {
        let hasher = VisitorHasher::new(3);
        let mut history = History::default();
        // Day d holds visitors 1000·d .. 1000·d + 3000: overlapping.
        for day in 0..10u32 {
            for v in 0..3_000u64 {
                insert(
                    &mut history,
                    day,
                    hasher.hash(&(u64::from(day) * 1_000 + v).to_le_bytes()),
                );
            }
        }
        let (count, covered) = history.union(2..6);
        let truth = 6_000.0; // 2000 .. 8000
        let error = count.relative_error.unwrap();
        assert!(!count.exact && covered == (2..6));
        assert!(
            (count.visitors as f64 - truth).abs() <= 5.0 * error * truth,
            "{count:?}"
        );
        let held = history.heap_bytes();
        assert!(held < 10 * (PERIOD_SKETCH_BYTES + 64), "{held}");
        let (before, after) = history.merge_oldest();
        assert_eq!((before, after), (held, history.heap_bytes()));
        assert!(after < before);
        // Days 0 and 1 are one period now: a range on day 1 covers both.
        let (_, covered) = history.union(1..2);
        assert_eq!(covered, 0..2);
        assert_eq!(history.drop_before(5), after - history.heap_bytes());
        assert_eq!(history.days().next(), Some(5..6));
    }

    /// A merge that would grow the history (two exact days whose union
    /// just passes the exact limit) is not offered; the others shrink it.
    #[test]
    fn merges_are_offered_only_where_they_free_memory() {
        let mut history = History::default();
        for h in 1..=65u64 {
            insert(&mut history, 0, h);
            insert(&mut history, 1, 1_000 + h);
        }
        assert!(
            !history.merge_frees(),
            "130 hashes: a sketch outweighs both lists"
        );
        let mut overlapping = History::default();
        for h in 1..=65u64 {
            insert(&mut overlapping, 0, h);
            insert(&mut overlapping, 1, h + 10);
        }
        assert!(overlapping.merge_frees());
        let (before, after) = overlapping.merge_oldest();
        assert!(after < before);
        assert_eq!(overlapping.union(0..2).0.visitors, 75);
        assert_eq!(sorted_union_len(&[1, 3, 5], &[2, 3, 6, 7]), 6);
    }

    proptest! {
        /// Small days stay exact: unions equal a model's, through merges
        /// and retention.
        #[test]
        fn small_days_are_exact(
            visits in proptest::collection::vec((0u32..12, 1u64..60), 0..300),
            ranges in proptest::collection::vec((0u32..14, 0u32..14), 1..5),
            merges in 0usize..4,
            keep_from in 0u32..14,
        ) {
            let mut history = History::default();
            let mut model: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
            for &(day, hash) in &visits {
                insert(&mut history, day, hash);
                model.entry(day).or_default().insert(hash);
            }
            let recount = |h: &History| h.heap_bytes();
            for _ in 0..merges {
                let (_, after) = history.merge_oldest();
                prop_assert_eq!(after, recount(&history));
            }
            history.drop_before(keep_from);
            for &(a, b) in &ranges {
                let days = a.min(b)..a.max(b);
                let (count, covered) = history.union(days.clone());
                prop_assert!(covered.start <= days.start && days.end <= covered.end);
                let expected: BTreeSet<u64> = model
                    .range(covered.clone())
                    .filter(|&(&day, _)| history.days().any(|p| p.contains(&day)))
                    .flat_map(|(_, v)| v.iter().copied())
                    .collect();
                // At most 59 different hashes: every period stays exact.
                prop_assert!(count.exact);
                prop_assert_eq!(count.visitors, expected.len() as u64);
            }
        }
    }
}
