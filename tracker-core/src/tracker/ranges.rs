//! Counts over time: a page's or a site's distinct visitors over a range,
//! a series of them, and the top pages over a range. The ranges come from
//! the tracker's [`Bucketing`]; what each pair remembers of its visits is
//! the visitor set's business (see the layout in `src/time`).

use std::ops::Range;
use std::time::Duration;

use crate::error::TrackerError;
use crate::report::{Distinct, RangeDistinct, RangeTop, SeriesCounts};
use crate::set::page::Page;
use crate::set::{Ask, Between};
use crate::time::clock::{TimeBound, Timestamp};
use crate::time::{Bucketing, Series, TimeRange};

use super::Tracker;
use super::partial::SitePartial;
use super::site::{host_of, site_name};
use crate::set::union::{Union, union_share};

// Each ranged method is a thin generic wrapper that converts its ends
// and calls a non-generic `*_in` twin: the body is compiled once, not once
// per combination of time types its callers use.
impl Tracker {
    /// The granularity in force: bucket width, retention and the point
    /// limit of a series.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracker_core::Tracker;
    ///
    /// let tracker = Tracker::builder().bucket(Duration::from_secs(900)).build()?;
    /// assert_eq!(tracker.bucketing().width(), Duration::from_secs(900));
    /// # Ok::<(), tracker_core::ConfigError>(())
    /// ```
    pub fn bucketing(&self) -> Bucketing {
        self.config.bucketing
    }

    /// The distinct visitors of `url` (after canonicalisation) seen in
    /// `[from, till)`, widened to whole buckets (see [`Bucketing::range`]
    /// for open ends and the retention). The answer says which range it
    /// covers. An unknown page has 0. Each end is a [`TimeBound`]: a
    /// [`Timestamp`], a [`SystemTime`](std::time::SystemTime), or an
    /// `Option<Timestamp>` (`None` leaves it open); so are the ends of the
    /// other ranged queries.
    ///
    /// Errors: the URL's, and [`TrackerError::Time`] for a reversed range.
    ///
    /// ```
    /// use tracker_core::{Timestamp, Tracker};
    ///
    /// let tracker = Tracker::new();
    /// let monday = Timestamp::parse("2026-11-02T09:00:00Z", Timestamp::default())?;
    /// tracker.record_at("alice", "https://example.com/", monday)?;
    /// let all = tracker.distinct_between("https://example.com/", None, None)?;
    /// assert_eq!(all.distinct.visitors, 1);
    /// assert!(tracker.distinct_between("/", Some(monday), Some(Timestamp::default())).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn distinct_between(
        &self,
        url: &str,
        from: impl TimeBound,
        till: impl TimeBound,
    ) -> Result<RangeDistinct, TrackerError> {
        self.distinct_between_in(url, from.time_bound(), till.time_bound())
    }

    fn distinct_between_in(
        &self,
        url: &str,
        from: Option<Timestamp>,
        till: Option<Timestamp>,
    ) -> Result<RangeDistinct, TrackerError> {
        let range = self
            .bucketing()
            .range(from, till, self.config.clock.now())?;
        let answer = self.with_page(url, |page| self.page_between(page, range))?;
        Ok(answer.unwrap_or(RangeDistinct {
            range,
            distinct: Distinct::exact(0),
        }))
    }

    /// The distinct visitors of `url` per `step` over `[from, till)`: the
    /// range widened to whole buckets and extended to whole steps (see
    /// [`Bucketing::series`]), one point per step. With `from` open, the
    /// latest steps the point limit allows ([`Bucketing::latest_steps`]).
    ///
    /// Errors: the URL's, and [`TrackerError::Time`] for a reversed
    /// range, a step that is not a whole multiple of the bucket, or more
    /// points than [`Bucketing::point_limit`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracker_core::{Timestamp, Tracker};
    ///
    /// let tracker = Tracker::new();
    /// let day = |d| Timestamp::parse(d, Timestamp::default());
    /// tracker.record_at("alice", "/a", day("2026-11-02")?)?;
    /// let week = tracker.series("/a", Some(day("2026-11-02")?), Some(day("2026-11-09")?), Duration::from_secs(86_400))?;
    /// assert_eq!(week.points.len(), 7);
    /// assert_eq!(week.series.step(), Duration::from_secs(86_400));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn series(
        &self,
        url: &str,
        from: impl TimeBound,
        till: impl TimeBound,
        step: Duration,
    ) -> Result<SeriesCounts, TrackerError> {
        self.series_in(url, from.time_bound(), till.time_bound(), step)
    }

    fn series_in(
        &self,
        url: &str,
        from: Option<Timestamp>,
        till: Option<Timestamp>,
        step: Duration,
    ) -> Result<SeriesCounts, TrackerError> {
        let series = self.series_of(from, till, step)?;
        let answer = self.with_page(url, |page| self.page_series(page, &series))?;
        Ok(answer.unwrap_or_else(|| SeriesCounts {
            points: series
                .points()
                .into_iter()
                .map(|range| RangeDistinct {
                    range,
                    distinct: Distinct::exact(0),
                })
                .collect(),
            series,
        }))
    }

    /// The `k` pages with the most distinct visitors seen in `[from,
    /// till)`, ordered as [`top`](Self::top) orders them; pages with none
    /// are left out. Visits every page, one stripe lock at a time.
    ///
    /// ```
    /// use tracker_core::{Timestamp, Tracker};
    ///
    /// let tracker = Tracker::new();
    /// let at = Timestamp::parse("2026-11-02T09:00:00Z", Timestamp::default())?;
    /// for (visitor, url) in [("a", "/x"), ("b", "/x"), ("a", "/y")] {
    ///     tracker.record_at(visitor, url, at)?;
    /// }
    /// let top = tracker.top_between(1, None, None)?;
    /// assert_eq!((top.pages[0].url.as_str(), top.pages[0].distinct.visitors), ("/x", 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn top_between(
        &self,
        k: usize,
        from: impl TimeBound,
        till: impl TimeBound,
    ) -> Result<RangeTop, TrackerError> {
        self.top_between_in(k, from.time_bound(), till.time_bound())
    }

    fn top_between_in(
        &self,
        k: usize,
        from: Option<Timestamp>,
        till: Option<Timestamp>,
    ) -> Result<RangeTop, TrackerError> {
        let range = self
            .bucketing()
            .range(from, till, self.config.clock.now())?;
        Ok(self.top_between_matching(k, range, |_| true))
    }

    /// The distinct visitors of every page of `site` together (a union,
    /// as [`site_distinct`](Self::site_distinct)) seen in `[from, till)`.
    ///
    /// ```
    /// use tracker_core::{Timestamp, Tracker};
    ///
    /// let tracker = Tracker::new();
    /// let at = Timestamp::parse("2026-11-02T09:00:00Z", Timestamp::default())?;
    /// tracker.record_at("alice", "https://example.com/", at)?;
    /// tracker.record_at("alice", "https://example.com/pricing", at)?;
    /// tracker.record_at("bob", "https://example.com/docs", at)?;
    /// let site = tracker.site_distinct_between("example.com", None, None)?;
    /// assert_eq!(site.distinct.visitors, 2); // alice once, bob
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn site_distinct_between(
        &self,
        site: &str,
        from: impl TimeBound,
        till: impl TimeBound,
    ) -> Result<RangeDistinct, TrackerError> {
        self.site_distinct_between_in(site, from.time_bound(), till.time_bound())
    }

    fn site_distinct_between_in(
        &self,
        site: &str,
        from: Option<Timestamp>,
        till: Option<Timestamp>,
    ) -> Result<RangeDistinct, TrackerError> {
        let site = site_name(site)?;
        let range = self
            .bucketing()
            .range(from, till, self.config.clock.now())?;
        let mut answer = self.site_points(&site, vec![range]);
        Ok(answer.pop().expect("one range, one answer"))
    }

    /// [`series`](Self::series) for every page of `site` together: each
    /// point a union of the site's visitors in it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracker_core::{Timestamp, Tracker};
    ///
    /// let tracker = Tracker::new();
    /// let day = |d| Timestamp::parse(d, Timestamp::default());
    /// tracker.record_at("alice", "https://a.com/1", day("2026-11-02")?)?;
    /// tracker.record_at("alice", "https://a.com/2", day("2026-11-03")?)?;
    /// let days = tracker.site_series("a.com", Some(day("2026-11-02")?), Some(day("2026-11-04")?), Duration::from_secs(86_400))?;
    /// assert_eq!(days.points.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn site_series(
        &self,
        site: &str,
        from: impl TimeBound,
        till: impl TimeBound,
        step: Duration,
    ) -> Result<SeriesCounts, TrackerError> {
        self.site_series_in(site, from.time_bound(), till.time_bound(), step)
    }

    fn site_series_in(
        &self,
        site: &str,
        from: Option<Timestamp>,
        till: Option<Timestamp>,
        step: Duration,
    ) -> Result<SeriesCounts, TrackerError> {
        let site = site_name(site)?;
        let series = self.series_of(from, till, step)?;
        let points = self.site_points(&site, series.points());
        Ok(SeriesCounts { series, points })
    }

    /// [`site_distinct_between`](Self::site_distinct_between) as a
    /// [`SitePartial`] to merge with other trackers' (a cluster's
    /// partitions), with the range the visitors cover.
    ///
    /// ```
    /// use tracker_core::{Timestamp, Tracker};
    ///
    /// // Trackers that merge share one hash key.
    /// let a = Tracker::builder().hash_key(3).build()?;
    /// let b = Tracker::builder().hash_key(3).build()?;
    /// let at = Timestamp::parse("2026-11-02T09:00:00Z", Timestamp::default())?;
    /// a.record_at("alice", "https://a.com/1", at)?;
    /// b.record_at("alice", "https://a.com/2", at)?;
    /// let (_, mut site) = a.site_partial_between("a.com", None, None)?;
    /// site.merge(b.site_partial_between("a.com", None, None)?.1)?;
    /// assert_eq!(site.distinct().visitors, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn site_partial_between(
        &self,
        site: &str,
        from: impl TimeBound,
        till: impl TimeBound,
    ) -> Result<(TimeRange, SitePartial), TrackerError> {
        self.site_partial_between_in(site, from.time_bound(), till.time_bound())
    }

    fn site_partial_between_in(
        &self,
        site: &str,
        from: Option<Timestamp>,
        till: Option<Timestamp>,
    ) -> Result<(TimeRange, SitePartial), TrackerError> {
        let site = site_name(site)?;
        let range = self
            .bucketing()
            .range(from, till, self.config.clock.now())?;
        let mut answer = self.site_point_partials(&site, vec![range]);
        Ok(answer.pop().expect("one range, one answer"))
    }

    /// [`site_series`](Self::site_series) as one [`SitePartial`] per
    /// point, to merge point by point with other trackers'.
    pub fn site_series_partials(
        &self,
        site: &str,
        from: impl TimeBound,
        till: impl TimeBound,
        step: Duration,
    ) -> Result<(Series, Vec<(TimeRange, SitePartial)>), TrackerError> {
        self.site_series_partials_in(site, from.time_bound(), till.time_bound(), step)
    }

    fn site_series_partials_in(
        &self,
        site: &str,
        from: Option<Timestamp>,
        till: Option<Timestamp>,
        step: Duration,
    ) -> Result<(Series, Vec<(TimeRange, SitePartial)>), TrackerError> {
        let site = site_name(site)?;
        let series = self.series_of(from, till, step)?;
        let points = self.site_point_partials(&site, series.points());
        Ok((series, points))
    }

    /// [`top_between`](Self::top_between) among the pages of `site`.
    ///
    /// ```
    /// use tracker_core::{Timestamp, Tracker};
    ///
    /// let tracker = Tracker::new();
    /// let at = Timestamp::parse("2026-11-02T09:00:00Z", Timestamp::default())?;
    /// tracker.record_at("a", "https://a.com/x", at)?;
    /// tracker.record_at("a", "https://b.com/y", at)?;
    /// let top = tracker.top_of_site_between(5, "b.com", None, None)?;
    /// assert_eq!(top.pages.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn top_of_site_between(
        &self,
        k: usize,
        site: &str,
        from: impl TimeBound,
        till: impl TimeBound,
    ) -> Result<RangeTop, TrackerError> {
        self.top_of_site_between_in(k, site, from.time_bound(), till.time_bound())
    }

    fn top_of_site_between_in(
        &self,
        k: usize,
        site: &str,
        from: Option<Timestamp>,
        till: Option<Timestamp>,
    ) -> Result<RangeTop, TrackerError> {
        let site = site_name(site)?;
        let range = self
            .bucketing()
            .range(from, till, self.config.clock.now())?;
        Ok(self.top_between_matching(k, range, |url| host_of(url) == Some(&*site)))
    }

    /// The series a query asks for, checked; an open `from` reaches back
    /// no further than the point limit allows, the points ending with the
    /// range. A given `from` sets the
    /// grid of points even where the retention starts the range later,
    /// so that a daily series from a date keeps UTC days.
    fn series_of(
        &self,
        from: Option<Timestamp>,
        till: Option<Timestamp>,
        step: Duration,
    ) -> Result<Series, TrackerError> {
        let bucketing = self.bucketing();
        let range = bucketing.range(from, till, self.config.clock.now())?;
        Ok(match from {
            Some(from) => bucketing.series_from(range, step, from)?,
            None => bucketing.latest_series(range, step)?,
        })
    }

    /// The buckets the tracker may hold pairs in now: from the oldest
    /// retained to the end of the current one.
    fn held(&self) -> Range<u64> {
        let bucketing = self.bucketing();
        let now = self.config.clock.now();
        u64::from(bucketing.oldest_retained(now))..u64::from(bucketing.bucket_of(now)) + 1
    }

    /// One page's count over `range`.
    fn page_between(&self, page: &Page, range: TimeRange) -> RangeDistinct {
        let Between { distinct, covered } =
            page.visitors
                .between(range.buckets(), &self.ask(), self.expiry_now());
        RangeDistinct {
            range: range.with_buckets(covered),
            distinct,
        }
    }

    /// One page's series.
    fn page_series(&self, page: &Page, series: &Series) -> SeriesCounts {
        let points = series.points();
        let expiry = self.expiry_now();
        let mut counts = vec![0u32; points.len()];
        let points = if page
            .visitors
            .count_points(series, &self.ask(), expiry, &mut counts)
        {
            points
                .into_iter()
                .zip(counts)
                .map(|(range, visitors)| RangeDistinct {
                    range,
                    distinct: Distinct::exact(u64::from(visitors)),
                })
                .collect()
        } else {
            points
                .into_iter()
                .map(|point| self.page_between(page, point))
                .collect()
        };
        SeriesCounts {
            series: *series,
            points,
        }
    }

    /// What sets need to know to answer a range.
    fn ask(&self) -> Ask {
        Ask {
            held: self.held(),
            bucketing: self.bucketing(),
        }
    }

    /// The visitors of the pages of `site` in each of `points`, each a
    /// union.
    fn site_points(&self, site: &str, points: Vec<TimeRange>) -> Vec<RangeDistinct> {
        // Every point in one scan of the pages, each union holding its
        // share of the bound (see `union_hashes`); a point whose visitors
        // need more is counted again alone, with the whole bound, in
        // passes, once the others are finished and freed. So a query's
        // working memory stays within the bound, and a small site's
        // series scans the pages once.
        let share = union_share(self.union_hashes, points.len());
        let mut unions: Vec<Union> = points
            .iter()
            .map(|point| Union::counting(point.buckets(), share))
            .collect();
        self.gather_site(site, &mut unions);
        let counts: Vec<Option<(Distinct, Range<u64>)>> = unions
            .into_iter()
            .map(|union| (!union.is_split()).then(|| union.finish()))
            .collect();
        points
            .into_iter()
            .zip(counts)
            .map(|(point, count)| {
                let (distinct, covered) = count.unwrap_or_else(|| {
                    Union::counting(point.buckets(), self.union_hashes)
                        .count_with(|union| self.gather_site(site, std::slice::from_mut(union)))
                });
                RangeDistinct {
                    range: point.with_buckets(covered),
                    distinct,
                }
            })
            .collect()
    }

    /// [`site_points`](Self::site_points) left unfinished: each point's
    /// range (as covered) and its visitors as a [`SitePartial`].
    pub(crate) fn site_point_partials(
        &self,
        site: &str,
        points: Vec<TimeRange>,
    ) -> Vec<(TimeRange, SitePartial)> {
        let mut unions: Vec<Union> = points
            .iter()
            .map(|point| Union::new(point.buckets()))
            .collect();
        self.gather_site(site, &mut unions);
        points
            .into_iter()
            .zip(unions)
            .map(|(point, union)| {
                let (hashes, sketch, covered) = union.into_parts();
                (point.with_buckets(covered), SitePartial { hashes, sketch })
            })
            .collect()
    }

    /// Adds the visitors of the pages of `site` to each of `unions`.
    fn gather_site(&self, site: &str, unions: &mut [Union]) {
        let ask = self.ask();
        let expiry = self.expiry_now();
        self.for_site_pages(site, |page| {
            for union in unions.iter_mut() {
                page.visitors.add_to_union(union, &ask, expiry);
            }
        });
    }

    /// The top `k` pages `keep` accepts over `range`; the answer's range
    /// is the widest any count covers.
    fn top_between_matching(
        &self,
        k: usize,
        range: TimeRange,
        keep: impl Fn(&str) -> bool,
    ) -> RangeTop {
        let mut covered = range.buckets();
        let pages = self.top_by(k, keep, |page| {
            let answer = self.page_between(page, range);
            let wider = answer.range.buckets();
            covered = covered.start.min(wider.start)..covered.end.max(wider.end);
            answer.distinct
        });
        RangeTop {
            range: range.with_buckets(covered),
            pages,
        }
    }
}
