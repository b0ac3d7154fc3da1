//! The visitors of several pages gathered into one count: a site is a
//! union of its pages, never a sum. Kept in the set layer because each
//! kind of set adds itself to it ([`VisitorSet::add_to_union`](super::VisitorSet::add_to_union)).

use std::ops::Range;

use crate::report::Distinct;
use crate::sketch::UltraLogLog;

/// The visitors of several pages in one range, gathered for a site: the
/// exact pages' hashes (with repeats across pages), sketched pages merged
/// into one sketch, and the range the gathered visitors cover (widened
/// when a page could only answer a wider one).
#[derive(Debug)]
pub(crate) struct Union {
    covered: Range<u64>,
    hashes: Vec<u64>,
    sketch: Option<UltraLogLog>,
}

impl Union {
    pub(crate) fn new(range: Range<u64>) -> Self {
        Self {
            covered: range,
            hashes: Vec::new(),
            sketch: None,
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

    /// Adds an exact visitor.
    pub(crate) fn push(&mut self, hash: u64) {
        self.hashes.push(hash);
    }

    /// Adds a sketch's visitors (lossless). Sketches of different
    /// precisions (a page's all-time sketch, another page's day sketches)
    /// meet at the coarser one: reducing a sketch is exact.
    pub(crate) fn merge(&mut self, other: &UltraLogLog) {
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

    /// The gathered hashes (with repeats), the merged sketch and the range
    /// they cover: the union left unfinished, to merge with others.
    pub(crate) fn into_parts(self) -> (Vec<u64>, Option<UltraLogLog>, Range<u64>) {
        (self.hashes, self.sketch, self.covered)
    }

    /// The count and the range it covers.
    pub(crate) fn finish(mut self) -> (Distinct, Range<u64>) {
        let distinct = match self.sketch {
            None => Distinct::exact(count_distinct(self.hashes) as u64),
            Some(mut union) => {
                union.absorb(&mut self.hashes);
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
/// size: one pass scatters them, then each part, small enough to stay in
/// cache, is sorted and its runs counted. A hash set over all of them
/// would miss the cache on nearly every insert (about 3x slower at 2M).
pub(crate) fn count_distinct(hashes: Vec<u64>) -> usize {
    if hashes.len() < 1 << 12 {
        let mut hashes = hashes;
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
    let mut parted = vec![0u64; hashes.len()];
    for &hash in &hashes {
        parted[next[part(hash)]] = hash;
        next[part(hash)] += 1;
    }
    drop(hashes);
    starts
        .windows(2)
        .map(|bounds| {
            let part = &mut parted[bounds[0]..bounds[1]];
            part.sort_unstable();
            part.len() - part.windows(2).filter(|w| w[0] == w[1]).count()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sketches_of_different_precisions_meet_at_the_coarser() {
        // Uniform hashes, as visitor hashes are.
        let mut state = 7;
        let hashes: Vec<u64> = (0..100_001)
            .map(|_| test_support::xorshift(&mut state))
            .collect();
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
