//! The visitors of several pages gathered into one count: a site is a
//! union of its pages, never a sum. Kept in the set layer because each
//! kind of set adds itself to it ([`VisitorSet::add_to_union`](super::VisitorSet::add_to_union)).

use std::ops::{Range, RangeInclusive};

use crate::report::Distinct;
use crate::sketch::UltraLogLog;

/// The fewest exact hashes a counting union ([`Union::counting`]) may
/// hold at once: 16 MiB. See [`union_hashes`].
pub(crate) const UNION_HASHES: usize = 1 << 21;

/// The most exact hashes a site answer's union holds at once under a
/// memory budget of `limit` bytes: an eighth of the budget at 8 bytes a
/// hash ([`count_distinct`] needs no more), at least [`UNION_HASHES`],
/// rounded down to a power of two (so that the union's buffer, doubling
/// as it grows, stops at it). A site with more in a range is counted in
/// passes over parts of the hash space, so that a query's working memory,
/// which the budget does not account, stays in proportion to the budget
/// (the pages' pairs are bounded by it too, so a site never needs more
/// than about twenty passes). Without a budget there is no bound.
pub(crate) fn union_hashes(limit: Option<u64>) -> usize {
    let Some(limit) = limit else {
        return usize::MAX;
    };
    let eighth = usize::try_from(limit / 64).unwrap_or(usize::MAX);
    1 << eighth.max(UNION_HASHES).ilog2()
}

/// Each of `unions` counting unions' share of a cap of `cap` hashes
/// (see [`union_hashes`]): a power of two (or no bound), at least one.
pub(crate) fn union_share(cap: usize, unions: usize) -> usize {
    if cap == usize::MAX {
        return cap;
    }
    1 << (cap / unions.max(1)).max(1).ilog2()
}

/// The visitors of several pages in one range, gathered for a site: the
/// exact pages' hashes (with repeats across pages), sketched pages merged
/// into one sketch, and the range the gathered visitors cover (widened
/// when a page could only answer a wider one).
///
/// A counting union gathers at most its cap at a time: when it
/// is full it keeps only the lower half of its part of the hash space,
/// leaving the upper half for a later pass ([`count_with`](Self::count_with)).
/// Parts are disjoint sets of hash values, so their distinct counts add
/// up exactly.
#[derive(Debug)]
pub(crate) struct Union {
    covered: Range<u64>,
    hashes: Vec<u64>,
    sketch: Option<UltraLogLog>,
    /// The hash values this pass gathers (every one in a first pass).
    keep: RangeInclusive<u64>,
    /// The most hashes held at once (`usize::MAX`: no bound, for a union
    /// handed on whole, [`into_parts`](Self::into_parts)).
    cap: usize,
    /// Parts of the hash space split off, each for a pass of its own.
    pending: Vec<RangeInclusive<u64>>,
    /// The distinct hashes of the parts already counted (no sketch).
    counted: u64,
    /// The passes done before this one.
    passes: u32,
}

impl Union {
    /// A union of every hash at once, to hand on whole.
    pub(crate) fn new(range: Range<u64>) -> Self {
        Self {
            covered: range,
            hashes: Vec::new(),
            sketch: None,
            keep: 0..=u64::MAX,
            cap: usize::MAX,
            pending: Vec::new(),
            counted: 0,
            passes: 0,
        }
    }

    /// A union to count, holding at most `cap` hashes at a time (a power
    /// of two, or `usize::MAX`: see [`union_hashes`]): gather into it and
    /// [`finish`](Self::finish) it if it is not [split](Self::is_split),
    /// else [`count_with`](Self::count_with) a fresh one.
    pub(crate) fn counting(range: Range<u64>, cap: usize) -> Self {
        debug_assert!(cap.is_power_of_two() || cap == usize::MAX);
        Self {
            cap,
            ..Self::new(range)
        }
    }

    /// The buckets asked about.
    pub(crate) fn range(&self) -> Range<u64> {
        self.covered.clone()
    }

    /// Widens what the union covers to include `buckets`.
    pub(crate) fn widen(&mut self, buckets: Range<u64>) {
        self.covered = self.covered.start.min(buckets.start)..self.covered.end.max(buckets.end);
    }

    /// Adds an exact visitor (if its hash is in this pass's part).
    #[inline]
    pub(crate) fn push(&mut self, hash: u64) {
        if !self.keep.contains(&hash) {
            return;
        }
        if self.hashes.len() >= self.cap {
            self.make_room();
            if !self.keep.contains(&hash) {
                return;
            }
        }
        self.hashes.push(hash);
    }

    /// Halves a full union's part of the hash space until at most half of
    /// it is full (the hashes are uniformly mixed: each halving keeps
    /// about half of them), leaving the dropped halves for later passes.
    /// Allocates nothing. A part down to one value holds that value's
    /// repeats only: one of them is kept.
    fn make_room(&mut self) {
        while self.hashes.len() > self.cap / 2 {
            let (low, high) = (*self.keep.start(), *self.keep.end());
            if low == high {
                self.hashes.truncate(1);
                return;
            }
            let middle = low + (high - low) / 2;
            self.pending.push(middle + 1..=high);
            self.keep = low..=middle;
            self.hashes.retain(|&h| h <= middle);
        }
    }

    /// Adds a sketch's visitors (lossless), in a first pass only (a later
    /// one gathers another part of the same pages). Sketches of different
    /// precisions (a page's all-time sketch, another page's day sketches)
    /// meet at the coarser one: reducing a sketch is exact.
    pub(crate) fn merge(&mut self, other: &UltraLogLog) {
        if self.passes > 0 {
            return;
        }
        let Some(union) = &mut self.sketch else {
            self.sketch = Some(other.clone());
            return;
        };
        if union.precision() > other.precision() {
            *union = union
                .reduce(other.precision())
                .expect("reducing to a valid, lower precision");
        }
        let merged = if other.precision() > union.precision() {
            union.merge(&other.reduce(union.precision()).expect("a lower precision"))
        } else {
            union.merge(other)
        };
        merged.expect("both sketches are at the union's precision now");
    }

    /// Whether the union left parts of the hash space for later passes.
    pub(crate) fn is_split(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Gathers into the union with `gather` (which adds the pages'
    /// visitors), again for each part a pass left for later, and finishes
    /// it: the count and the range it covers.
    pub(crate) fn count_with(
        mut self,
        mut gather: impl FnMut(&mut Union),
    ) -> (Distinct, Range<u64>) {
        gather(&mut self);
        while self.next_pass() {
            gather(&mut self);
        }
        self.finish()
    }

    /// Counts this pass's part and readies the next pass, if a part is
    /// left: then the pages are to be gathered again.
    fn next_pass(&mut self) -> bool {
        let Some(part) = self.pending.pop() else {
            return false;
        };
        let mut hashes = std::mem::take(&mut self.hashes);
        match &mut self.sketch {
            None => self.counted += count_distinct(hashes) as u64,
            Some(sketch) => sketch.absorb(&mut hashes),
        }
        self.keep = part;
        self.passes += 1;
        true
    }

    /// The gathered hashes (with repeats), the merged sketch and the range
    /// they cover: the union left unfinished, to merge with others.
    pub(crate) fn into_parts(self) -> (Vec<u64>, Option<UltraLogLog>, Range<u64>) {
        debug_assert!(self.passes == 0 && self.pending.is_empty(), "a whole union");
        (self.hashes, self.sketch, self.covered)
    }

    /// The count and the range it covers, once no part is left for a
    /// later pass.
    pub(crate) fn finish(mut self) -> (Distinct, Range<u64>) {
        debug_assert!(self.pending.is_empty(), "every part gathered");
        let distinct = match self.sketch {
            None => Distinct::exact(self.counted + count_distinct(self.hashes) as u64),
            Some(mut union) => {
                union.absorb(&mut self.hashes);
                if self.passes > 0 {
                    // Absorbed part by part, in an order that depends on
                    // the hashes: the martingale would be biased.
                    union.drop_martingale();
                }
                Distinct {
                    visitors: union.estimate().round() as u64,
                    exact: false,
                    relative_error: Some(union.relative_standard_error()),
                }
            }
        };
        (distinct, self.covered)
    }
}

/// How many different values `hashes` holds. The hashes are uniformly
/// mixed, so their top byte splits them into 256 parts of about equal
/// size: one pass moves each into its part, then each part, small enough
/// to stay in cache, is sorted and its runs counted. A hash set over all
/// of them would miss the cache on nearly every insert (about 3x slower
/// at 2M). The parts are made in place (each misplaced hash swapped to
/// the next free slot of its own part), so that counting needs no memory
/// beyond the hashes: a site answer's working memory is its union's
/// hashes ([`union_hashes`]).
pub(crate) fn count_distinct(mut hashes: Vec<u64>) -> usize {
    if hashes.len() < 1 << 12 {
        hashes.sort_unstable();
        hashes.dedup();
        return hashes.len();
    }
    let part = |hash: u64| (hash >> 56) as usize;
    let mut starts = [0usize; 257];
    for &hash in &hashes {
        starts[part(hash) + 1] += 1;
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut next = starts;
    for p in 0..256 {
        // The parts before `p` are complete, so each hash met here
        // belongs to `p` or a later part.
        while next[p] < starts[p + 1] {
            let home = part(hashes[next[p]]);
            if home != p {
                hashes.swap(next[p], next[home]);
            }
            next[home] += 1;
        }
    }
    starts
        .windows(2)
        .map(|bounds| {
            let part = &mut hashes[bounds[0]..bounds[1]];
            part.sort_unstable();
            part.len() - part.windows(2).filter(|w| w[0] == w[1]).count()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` uniform hashes, as visitor hashes are, from `seed`.
    fn uniform(n: usize, seed: u64) -> Vec<u64> {
        let mut state = seed;
        (0..n).map(|_| test_support::xorshift(&mut state)).collect()
    }

    #[test]
    fn sketches_of_different_precisions_meet_at_the_coarser() {
        let hashes = uniform(100_001, 7);
        let mix = |i: u64| hashes[i as usize];
        let mut all_time = UltraLogLog::new(13).unwrap();
        let mut day = UltraLogLog::new(10).unwrap();
        // 0..60k on one page's all-time sketch, 40k..100k on another's day.
        (0..60_000).for_each(|i| _ = all_time.insert(mix(i)));
        (40_000..100_000).for_each(|i| _ = day.insert(mix(i)));
        for order in [[&all_time, &day], [&day, &all_time]] {
            let mut union = Union::new(0..1);
            union.merge(order[0]);
            union.merge(order[1]);
            union.push(mix(100_000));
            let (distinct, _) = union.finish();
            assert!(!distinct.exact);
            let error = (distinct.visitors as f64 - 100_001.0).abs() / 100_001.0;
            assert!(
                error < 5.0 * distinct.relative_error.unwrap(),
                "{distinct:?}"
            );
        }
    }

    /// A union's cap in these tests.
    const CAP: usize = 64;

    /// Feeds `hashes` into a counting union on every pass, as the site
    /// answers gather their pages again; returns its count and passes.
    fn count_in_passes(hashes: &[u64], sketch: Option<&UltraLogLog>) -> (Distinct, u32) {
        let mut passes = 0;
        let (distinct, _) = Union::counting(0..1, CAP).count_with(|union| {
            passes += 1;
            if let Some(sketch) = sketch {
                union.merge(sketch);
            }
            for &hash in hashes {
                union.push(hash);
                assert!(union.hashes.capacity() <= CAP, "bounded");
            }
        });
        (distinct, passes)
    }

    proptest::proptest! {
        /// A union counted in passes over parts of the hash space counts
        /// exactly what one set would, holding at most its cap.
        #[test]
        fn passes_count_exactly(
            distinct in 0usize..600,
            repeats in proptest::collection::vec(0usize..600, 0..400),
            seed in 1u64..u64::MAX,
        ) {
            let values = uniform(distinct, seed);
            let mut hashes = values.clone();
            hashes.extend(repeats.iter().filter(|_| distinct > 0).map(|&r| values[r % distinct]));
            let (counted, passes) = count_in_passes(&hashes, None);
            proptest::prop_assert_eq!(counted, Distinct::exact(distinct as u64));
            // More than the cap needs more than one pass.
            proptest::prop_assert!(distinct <= CAP || passes > 1);
        }
    }

    /// With a sketched page, the parts' hashes all go into the one sketch:
    /// its registers end as if absorbed at once, and the answer is the ML
    /// estimate (the martingale would be biased by the parts' order).
    #[test]
    fn passes_with_a_sketch_absorb_every_part() {
        let hashes = uniform(5_000, 5);
        let mut page = UltraLogLog::default();
        hashes[..2_000].iter().for_each(|&h| _ = page.insert(h));
        let (counted, passes) = count_in_passes(&hashes[1_000..], Some(&page));
        assert!(passes > 1);
        let mut whole = page.clone();
        whole.absorb(&mut hashes[2_000..].to_vec());
        whole.drop_martingale();
        assert_eq!(counted.visitors, whole.estimate().round() as u64);
        assert_eq!(
            counted.relative_error,
            Some(whole.relative_standard_error())
        );
        let error = (counted.visitors as f64 - 5_000.0).abs() / 5_000.0;
        assert!(error < 5.0 * counted.relative_error.unwrap(), "{counted:?}");
    }

    #[test]
    fn the_cap_is_an_eighth_of_the_budget() {
        assert_eq!(union_hashes(None), usize::MAX);
        assert_eq!(union_hashes(Some(8 << 20)), UNION_HASHES);
        assert_eq!(union_hashes(Some(128 << 20)), UNION_HASHES);
        // 1 GiB: 128 MiB of hashes; 1.5 GiB rounds down to the same.
        assert_eq!(union_hashes(Some(1 << 30)), 1 << 24);
        assert_eq!(union_hashes(Some(3 << 29)), 1 << 24);
        assert_eq!(union_hashes(Some(u64::MAX)), 1 << (u64::MAX / 64).ilog2());
    }

    #[test]
    fn shares_split_the_cap() {
        assert_eq!(union_share(usize::MAX, 30), usize::MAX);
        assert_eq!(union_share(1 << 21, 1), 1 << 21);
        assert_eq!(union_share(1 << 21, 0), 1 << 21);
        // 30 points: 69,905 each, rounded down to 65,536.
        assert_eq!(union_share(1 << 21, 30), 1 << 16);
        assert_eq!(union_share(64, 1_000), 1);
    }

    #[test]
    fn distinct_counts_small_and_large() {
        let mix = |i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
        for n in [0u64, 1, 100, 5_000, 50_000] {
            // Every value three times, in an order that is not sorted.
            let hashes: Vec<u64> = (0..3 * n).map(|i| mix(i % n.max(1))).collect();
            let hashes = if n == 0 { Vec::new() } else { hashes };
            assert_eq!(count_distinct(hashes), n as usize, "{n}");
        }
    }
}
