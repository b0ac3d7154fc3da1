//! What the tracker answers: counts, rankings and statistics.

use crate::time::{Series, TimeRange};

/// The outcome of recording an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The visitor had not been counted for this page before.
    New,
    /// The pair was already counted; the count is unchanged.
    Duplicate,
    /// The page counts its visitors in a sketch, which took the visitor in
    /// without visibly changing: it may or may not have been new.
    Sketched,
    /// With a TTL, the event's time was already more than the TTL ago: it
    /// would have expired on arrival, so it changed nothing (it is counted
    /// in [`Stats::stale_events`]).
    Stale,
}

impl Recorded {
    /// Whether the event added a visitor to the page's count.
    pub fn is_new(self) -> bool {
        self == Recorded::New
    }
}

/// The number of distinct visitors of a page.
///
/// ```
/// use tracker_core::Tracker;
///
/// let tracker = Tracker::new();
/// tracker.record("alice", "https://example.com/")?;
/// let count = tracker.distinct("https://example.com/")?;
/// assert_eq!((count.visitors, count.exact, count.relative_error), (1, true, None));
/// # Ok::<(), tracker_core::TrackerError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Distinct {
    /// Distinct visitors retained for the page (0 for an unknown page).
    pub visitors: u64,
    /// Whether `visitors` is exact (up to 64-bit hash collisions, see the
    /// crate docs) rather than an estimate.
    pub exact: bool,
    /// For an estimate, its relative standard error; `None` when exact.
    pub relative_error: Option<f64>,
}

impl Distinct {
    pub(crate) fn exact(visitors: u64) -> Self {
        Self {
            visitors,
            exact: true,
            relative_error: None,
        }
    }

    /// [`visitors`](Self::visitors), by the name the HTTP answers give it
    /// (`distinct_visitors`).
    ///
    /// ```
    /// use tracker_core::Tracker;
    ///
    /// let tracker = Tracker::new();
    /// tracker.record("alice", "/")?;
    /// let count = tracker.distinct("/")?;
    /// assert_eq!((count.distinct_visitors(), count.error()), (1, None));
    /// # Ok::<(), tracker_core::TrackerError>(())
    /// ```
    pub fn distinct_visitors(&self) -> u64 {
        self.visitors
    }

    /// [`relative_error`](Self::relative_error), by the name the HTTP
    /// answers give it (`error`): `None` when exact.
    pub fn error(&self) -> Option<f64> {
        self.relative_error
    }
}

/// A count over a bucket-aligned range: the answer of
/// [`Tracker::distinct_between`](crate::Tracker::distinct_between) and
/// one point of a series.
///
/// `range` is the range the count covers: the one asked for, widened to
/// whole buckets, or wider still when the tracker could not tell visits
/// apart more finely (a sketched page answers whole UTC days).
///
/// ```
/// use tracker_core::{Timestamp, Tracker};
///
/// let tracker = Tracker::new();
/// let at = Timestamp::parse("2026-11-02T10:20:00Z", Timestamp::default())?;
/// tracker.record_at("alice", "https://example.com/", at)?;
/// let (from, till) = (Timestamp::parse("2026-11-02", at)?, Timestamp::parse("2026-11-03", at)?);
/// let day = tracker.distinct_between("https://example.com/", Some(from), Some(till))?;
/// assert_eq!((day.range.from(), day.range.till()), (from, till));
/// assert_eq!((day.distinct.visitors, day.distinct.exact), (1, true));
/// assert_eq!((day.visitors, day.exact), (1, true)); // the same, through `Deref`
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RangeDistinct {
    /// The bucket-aligned range the count covers.
    pub range: TimeRange,
    /// Distinct visitors seen in it.
    pub distinct: Distinct,
}

/// A series: the (extended) range it covers and its step, one point per
/// step, in order (see [`Tracker::series`](crate::Tracker::series)).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesCounts {
    /// The range, extended to whole steps, and the step.
    pub series: Series,
    /// One count per step.
    pub points: Vec<RangeDistinct>,
}

/// Top pages over a range (see
/// [`Tracker::top_between`](crate::Tracker::top_between)).
#[derive(Debug, Clone, PartialEq)]
pub struct RangeTop {
    /// The bucket-aligned range the counts cover.
    pub range: TimeRange,
    /// The pages, most visitors first; ties by URL, ascending.
    pub pages: Vec<PageCount>,
}

/// One row of [`Tracker::top`](crate::Tracker::top).
#[derive(Debug, Clone, PartialEq)]
pub struct PageCount {
    /// The page's canonical URL.
    pub url: String,
    /// Its distinct visitors.
    pub distinct: Distinct,
}

// The answers that label a count or a list read as that count or list
// (`range.visitors`, `top.len()`, `series[0].exact`): what they hold
// besides is the range or step, read by name.
impl std::ops::Deref for RangeDistinct {
    type Target = Distinct;
    fn deref(&self) -> &Distinct {
        &self.distinct
    }
}

impl std::ops::Deref for PageCount {
    type Target = Distinct;
    fn deref(&self) -> &Distinct {
        &self.distinct
    }
}

impl std::ops::Deref for RangeTop {
    type Target = [PageCount];
    fn deref(&self) -> &[PageCount] {
        &self.pages
    }
}

impl std::ops::Deref for SeriesCounts {
    type Target = [RangeDistinct];
    fn deref(&self) -> &[RangeDistinct] {
        &self.points
    }
}

/// A snapshot of what the tracker holds.
///
/// Taken stripe by stripe, so under concurrent ingest the figures may mix
/// moments a few microseconds apart; each one is exact for its stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Pages tracked. With a TTL this includes pages whose visitors all
    /// expired but that the sweep has not reached yet.
    pub pages: u64,
    /// Distinct (page, visitor) pairs held exactly. With a TTL this
    /// includes expired pairs not yet dropped (their memory is still held).
    pub pairs: u64,
    /// Bytes held, as accounted by the tracker (see the crate docs for the
    /// formula and what it leaves out).
    pub bytes: u64,
    /// Lock stripes.
    pub stripes: u64,
    /// The memory budget in bytes, if one is set.
    pub max_bytes: Option<u64>,
    /// Pages evicted to stay within the budget, since start.
    pub evictions: u64,
    /// Records refused for lack of memory, since start.
    pub rejections: u64,
    /// Pages whose count is an estimate from a sketch.
    pub sketched_pages: u64,
    /// Pages counted exactly: `pages - sketched_pages`.
    pub exact_pages: u64,
    /// The visitors of the sketched pages, as their sketches estimate
    /// them (with a TTL, summed over each page's generations). Kept as a
    /// running tally, moved on each change to a sketch, so reading it
    /// costs one add per stripe.
    pub sketched_visitors: u64,
    /// With a TTL: (page, visitor) pairs that expired, since start.
    pub expirations: u64,
    /// With a TTL: pages removed because none of their visitors was live,
    /// since start.
    pub expired_pages: u64,
    /// With a TTL: events ignored because their time was already more than
    /// the TTL ago, since start.
    pub stale_events: u64,
}

impl Stats {
    /// How much of the data is exact: the share of the held visitors of
    /// pages (`pairs + sketched_visitors`) that are counted exactly
    /// (`pairs`), from 0 to 1; 1 when nothing is held. A sketched page
    /// answers time ranges from its sketched history too, so this is also
    /// the share of the held pairs whose ranged answers are exact.
    ///
    /// ```
    /// use tracker_core::Tracker;
    ///
    /// let tracker = Tracker::new();
    /// assert_eq!(tracker.stats().exact_share(), 1.0);
    /// tracker.record("ada", "https://example.com/")?;
    /// assert_eq!(tracker.stats().exact_share(), 1.0);
    /// # Ok::<(), tracker_core::TrackerError>(())
    /// ```
    pub fn exact_share(&self) -> f64 {
        let held = self.pairs + self.sketched_visitors;
        if held == 0 {
            1.0
        } else {
            self.pairs as f64 / held as f64
        }
    }
}
