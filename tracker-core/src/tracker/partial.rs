//! Hooks for state kept across several trackers: a log kept outside the
//! core (a cluster's stream carries visitor hashes, never visitor ids),
//! and partial answers that merge (a site's visitors held by several
//! trackers, their statistics).
//!
//! A site's partial state is its visitors' hashes while they are few and
//! every page is exact, else a sketch with the exact hashes folded in:
//! merging two partials is a union either way (sketch merges lose
//! nothing), so a site spread over trackers that share one hash key is
//! counted as if one tracker held it.

use std::borrow::Cow;

use crate::canonical_url::Keys;
use crate::error::TrackerError;
use crate::report::{Distinct, Recorded, Stats};
use crate::set::VisitorSet;
use crate::set::history::PERIOD_PRECISION;
use crate::sketch::{SketchError, UltraLogLog};
use crate::time::clock::Timestamp;

use super::Tracker;
use super::site::site_name;
use crate::set::union::{Union, count_distinct};

impl Tracker {
    /// The keyed 64-bit hash this tracker stores for `visitor`, after the
    /// visitor checks (empty, too long): what a log kept outside the core
    /// carries instead of the id. Trackers built with the same
    /// [`hash_key`](crate::TrackerBuilder::hash_key) agree on it.
    ///
    /// ```
    /// use tracker_core::{Timestamp, Tracker};
    ///
    /// let a = Tracker::builder().hash_key(9).build()?;
    /// let b = Tracker::builder().hash_key(9).build()?;
    /// let hash = a.visitor_hash("alice")?;
    /// b.record_visitor_hash(hash, "https://example.com/", Timestamp::from_millis(0))?;
    /// b.record("alice", "https://example.com/")?;
    /// assert_eq!(b.distinct("https://example.com/")?.visitors, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn visitor_hash(&self, visitor: &str) -> Result<u64, TrackerError> {
        self.check_visitor(visitor.as_bytes())?;
        Ok(self.visitor_hasher.hash(visitor.as_bytes()))
    }

    /// Records a visitor given by its [`visitor_hash`](Self::visitor_hash)
    /// at `at`: the replay of a log kept outside the core. Idempotent like
    /// every record. Returns the outcome and the canonical URL. As a
    /// replay, it also takes a page key of an earlier version that today's
    /// URL rules refuse, as it is ("Legacy pages" in the snapshot module).
    /// With a TTL, a time further ahead of this tracker's clock than
    /// [`MAX_CLOCK_SKEW`](crate::MAX_CLOCK_SKEW), which a live event is
    /// refused for, counts as now: the event was accepted when it was
    /// logged, and the clock has been stepped back since or runs behind
    /// the logging one's.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tracker_core::{ManualClock, Timestamp, Tracker};
    ///
    /// let clock = ManualClock::new(Timestamp::from_secs(1_000_000));
    /// let tracker = Tracker::builder()
    ///     .ttl(Duration::from_secs(3_600))
    ///     .clock(Arc::new(clock))
    ///     .build()?;
    /// let hash = tracker.visitor_hash("alice")?;
    /// let logged = Timestamp::from_secs(1_000_600); // ten minutes ahead
    /// assert!(tracker.record_at("alice", "https://example.com/", logged).is_err());
    /// tracker.record_visitor_hash(hash, "https://example.com/", logged)?;
    /// assert_eq!(tracker.distinct("https://example.com/")?.visitors, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn record_visitor_hash<'a>(
        &self,
        hash: u64,
        url: &'a str,
        at: Timestamp,
    ) -> Result<(Recorded, Cow<'a, str>), TrackerError> {
        match self.record_hashed_as(hash, url, Some(at), Keys::Stored) {
            Err(TrackerError::FromTheFuture { .. }) => {
                self.record_hashed_as(hash, url, None, Keys::Stored)
            }
            outcome => outcome,
        }
    }

    /// The visitors of every page of `site` this tracker holds, as a
    /// [`SitePartial`] to merge with other trackers' (see
    /// [`site_distinct`](Self::site_distinct), which is this answer alone).
    pub fn site_partial(&self, site: &str) -> Result<SitePartial, TrackerError> {
        let site = site_name(site)?;
        let mut union = Union::new(0..0);
        self.gather_site_now(&site, &mut union);
        let (hashes, sketch, _) = union.into_parts();
        Ok(SitePartial { hashes, sketch })
    }

    /// Adds the visitors every page of `site` holds now (live, with a
    /// TTL) to `union`.
    pub(crate) fn gather_site_now(&self, site: &str, union: &mut Union) {
        let expiry = self.expiry_now();
        self.for_site_pages(site, |page| match &page.visitors {
            VisitorSet::Sketch(_, page_sketch) => union.merge(&page_sketch.all),
            VisitorSet::TimedSketch(_, generations) => {
                for sketch in expiry.iter().flat_map(|&e| generations.live(e)) {
                    union.merge(sketch);
                }
            }
            set => {
                for (hash, tick) in set.entries() {
                    if expiry.is_none_or(|e| e.is_live(tick)) {
                        union.push(hash);
                    }
                }
            }
        });
    }
}

/// Part of a site's visitors: exact hashes (repeats allowed), and a
/// sketch once any page is sketched or the partial was
/// [`compact`](Self::compact)ed. Merging is a union.
///
/// ```
/// use tracker_core::Tracker;
///
/// let a = Tracker::builder().hash_key(3).build()?;
/// let b = Tracker::builder().hash_key(3).build()?;
/// a.record("alice", "https://example.com/")?;
/// b.record("alice", "https://example.com/pricing")?;
/// b.record("bob", "https://example.com/pricing")?;
/// let mut site = a.site_partial("example.com")?;
/// site.merge(b.site_partial("example.com")?)?;
/// assert_eq!(site.distinct().visitors, 2); // a union, not 3
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct SitePartial {
    /// Exact visitor hashes, possibly repeated.
    pub hashes: Vec<u64>,
    /// The union of sketched visitors, if any.
    pub sketch: Option<UltraLogLog>,
}

impl SitePartial {
    /// Adds `other`'s visitors (a union). Sketches of different
    /// precisions (partials from differently built trackers) do not merge:
    /// an error, and `self` keeps only its own sketch.
    pub fn merge(&mut self, other: SitePartial) -> Result<(), SketchError> {
        if let Some(sketch) = &other.sketch {
            self.merge_sketch(sketch)?;
        }
        self.hashes.extend(other.hashes);
        Ok(())
    }

    /// The precision of the sketches in a partial over a range (a
    /// sketched page's days, see
    /// [`site_partial_between`](Tracker::site_partial_between)): what
    /// [`compact_to`](Self::compact_to) folds a ranged partial into, so
    /// that partials of one range from several trackers merge.
    pub const RANGE_PRECISION: u8 = PERIOD_PRECISION;

    /// Folds the hashes into the sketch once there are more than
    /// `max_hashes` (8 bytes each) or a sketch exists: what is sent over a
    /// network stays at most a sketch's size, and the answer becomes an
    /// estimate. A new sketch has the default precision, that of the
    /// all-time partials of [`site_partial`](Tracker::site_partial).
    pub fn compact(&mut self, max_hashes: usize) {
        self.compact_to(max_hashes, UltraLogLog::DEFAULT_PRECISION);
    }

    /// [`compact`](Self::compact) into a new sketch of `precision`
    /// ([`RANGE_PRECISION`](Self::RANGE_PRECISION) for a ranged partial),
    /// if a sketch is needed and there is none.
    ///
    /// ```
    /// use tracker_core::SitePartial;
    ///
    /// let mut part = SitePartial { hashes: (1..=100).collect(), sketch: None };
    /// part.compact_to(10, SitePartial::RANGE_PRECISION);
    /// assert_eq!(part.sketch.unwrap().precision(), SitePartial::RANGE_PRECISION);
    /// ```
    ///
    /// # Panics
    ///
    /// If `precision` is not a valid sketch precision.
    pub fn compact_to(&mut self, max_hashes: usize, precision: u8) {
        if self.hashes.len() <= max_hashes && self.sketch.is_none() {
            return;
        }
        let sketch = self
            .sketch
            .get_or_insert_with(|| UltraLogLog::new(precision).expect("a valid sketch precision"));
        sketch.absorb(&mut self.hashes);
        self.hashes.clear();
    }

    /// The distinct visitors: exact without a sketch, else an estimate
    /// with its relative standard error.
    pub fn distinct(mut self) -> Distinct {
        match self.sketch {
            None => Distinct::exact(count_distinct(self.hashes) as u64),
            Some(mut union) => {
                union.absorb(&mut self.hashes);
                Distinct {
                    visitors: union.estimate().round() as u64,
                    exact: false,
                    relative_error: Some(union.relative_standard_error()),
                }
            }
        }
    }

    fn merge_sketch(&mut self, other: &UltraLogLog) -> Result<(), SketchError> {
        match &mut self.sketch {
            Some(union) => union.merge(other),
            None => {
                self.sketch = Some(other.clone());
                Ok(())
            }
        }
    }
}

impl Stats {
    /// Adds `other`'s figures to these (trackers that hold disjoint pages,
    /// such as a cluster's partitions); the budget becomes the sum of the
    /// budgets set.
    pub fn add(&mut self, other: &Stats) {
        self.pages += other.pages;
        self.pairs += other.pairs;
        self.bytes += other.bytes;
        self.stripes += other.stripes;
        self.max_bytes = match (self.max_bytes, other.max_bytes) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        self.evictions += other.evictions;
        self.rejections += other.rejections;
        self.sketched_pages += other.sketched_pages;
        self.expirations += other.expirations;
        self.expired_pages += other.expired_pages;
        self.stale_events += other.stale_events;
        self.exact_pages += other.exact_pages;
        self.sketched_visitors += other.sketched_visitors;
    }
}
