//! Buckets, retention, and the ranges and series queries ask about.

use std::ops::Range;
use std::time::Duration;

use super::error::TimeError;
use crate::time::clock::{LATEST_SECS, Timestamp};

/// The default bucket: one hour.
pub const DEFAULT_BUCKET: Duration = Duration::from_secs(3_600);
/// The narrowest bucket: one minute.
pub const MIN_BUCKET: Duration = Duration::from_secs(60);
/// The widest bucket: one day.
pub const MAX_BUCKET: Duration = Duration::from_secs(86_400);
/// The default limit on the points of one series.
pub const DEFAULT_MAX_POINTS: usize = 1_000;

/// How time is kept: the bucket width every event's time is rounded to,
/// how long buckets are retained, and how many points a series may have.
///
/// A bucket is a whole number of minutes that divides a day (1, 5, 15
/// minutes, 1, 2, 6 hours, a day, ...), so that days, and the steps of a
/// daily series, are whole buckets in UTC. Bucket `i` is the time
/// `[i·width, (i+1)·width)` since the Unix epoch.
///
/// ```
/// use std::time::Duration;
/// use tracker_core::{Bucketing, Timestamp};
///
/// let hourly = Bucketing::default();
/// let now = Timestamp::parse("2026-11-08T12:34:56Z", Timestamp::default())?;
/// // The week before now, widened to whole hours.
/// let range = hourly.range(Some(Timestamp::parse("-7d", now)?), None, now)?;
/// assert_eq!(range.from().to_rfc3339(), "2026-11-01T12:00:00Z");
/// assert_eq!(range.till().to_rfc3339(), "2026-11-08T13:00:00Z");
/// assert_eq!(range.bucket_count(), 7 * 24 + 1);
///
/// assert!(Bucketing::new(Duration::from_secs(7 * 60), None).is_err()); // does not divide a day
/// # Ok::<(), tracker_core::TimeError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucketing {
    /// Bucket width in seconds.
    width: u32,
    /// Retention in whole buckets, if limited.
    retention: Option<u32>,
    max_points: usize,
}

impl Default for Bucketing {
    fn default() -> Self {
        Self {
            width: DEFAULT_BUCKET.as_secs() as u32,
            retention: None,
            max_points: DEFAULT_MAX_POINTS,
        }
    }
}

impl Bucketing {
    /// Buckets of `width`, kept for `retention` (forever if `None`),
    /// rounded up to whole buckets. Errors: [`TimeError::BadBucket`] for
    /// a width outside 1 min..=1 day, not whole minutes or not dividing a
    /// day; [`TimeError::BadRetention`] for a retention shorter than a
    /// bucket or beyond what a tick holds.
    pub fn new(width: Duration, retention: Option<Duration>) -> Result<Self, TimeError> {
        let secs = width.as_secs();
        let whole = width.subsec_nanos() == 0 && secs.is_multiple_of(60);
        if !(MIN_BUCKET..=MAX_BUCKET).contains(&width) || !whole || !86_400u64.is_multiple_of(secs)
        {
            return Err(TimeError::BadBucket { width });
        }
        let width = secs as u32;
        let retention = match retention {
            None => None,
            Some(r)
                if r >= Duration::from_secs(u64::from(width)) && r.as_secs() <= MAX_RETENTION =>
            {
                let secs = r.as_secs() + u64::from(r.subsec_nanos() > 0);
                Some(secs.div_ceil(u64::from(width)) as u32)
            }
            Some(retention) => return Err(TimeError::BadRetention { retention }),
        };
        Ok(Self {
            width,
            retention,
            max_points: DEFAULT_MAX_POINTS,
        })
    }

    /// The same, with at most `max` points per series (at least 1).
    pub fn max_points(self, max: usize) -> Self {
        Self {
            max_points: max.max(1),
            ..self
        }
    }

    /// The bucket width.
    pub fn width(&self) -> Duration {
        Duration::from_secs(u64::from(self.width))
    }

    /// The retention, in whole buckets, if limited.
    pub fn retention(&self) -> Option<Duration> {
        self.retention
            .map(|buckets| Duration::from_secs(u64::from(buckets) * u64::from(self.width)))
    }

    /// The most points a series may have.
    pub fn point_limit(&self) -> usize {
        self.max_points
    }

    /// The bucket `at` falls in (the last a `u32` holds for a time past
    /// that: far past the last time held, never wrapped round to 1970).
    pub fn bucket_of(&self, at: Timestamp) -> u32 {
        let bucket = at.as_millis() / 1000 / u64::from(self.width);
        u32::try_from(bucket).unwrap_or(u32::MAX)
    }

    /// The end of the bucket holding the last second held
    /// ([`LATEST_SECS`]): no range or series point ends past it.
    fn end_of_time(&self) -> u64 {
        (LATEST_SECS + 1).div_ceil(u64::from(self.width))
    }

    /// When bucket `bucket` starts.
    pub fn start_of(&self, bucket: u32) -> Timestamp {
        Timestamp::from_millis(u64::from(bucket) * u64::from(self.width) * 1000)
    }

    /// The oldest bucket retained at `now` (0 without a retention): the
    /// retention ends with the current bucket.
    pub fn oldest_retained(&self, now: Timestamp) -> u32 {
        let current = self.bucket_of(now);
        match self.retention {
            // In u64: the clock may stand in the last bucket a u32 holds.
            Some(buckets) => (u64::from(current) + 1).saturating_sub(u64::from(buckets)) as u32,
            None => 0,
        }
    }

    /// The range `[from, till)` widened to whole buckets (`from` rounded
    /// down, `till` up; `[t, t)` stays empty). An open `from` is the
    /// oldest retained bucket, one older than that is raised to it
    /// (nothing older is held); an open `till` is the end of the current
    /// bucket. Times past the last one held (a `Timestamp` made in code,
    /// not parsed) end the range there. Errors: [`TimeError::Reversed`]
    /// when `till` is before `from`.
    pub fn range(
        &self,
        from: Option<Timestamp>,
        till: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<TimeRange, TimeError> {
        if let (Some(from), Some(till)) = (from, till)
            && till < from
        {
            return Err(TimeError::Reversed { from, till });
        }
        let oldest = self.oldest_retained(now);
        let first = from.map_or(oldest, |from| self.bucket_of(from).max(oldest));
        let end = match till {
            // `[t, t)` holds no time: widening it would count a bucket.
            Some(till) if from == Some(till) => u64::from(first),
            Some(till) => self.bucket_ceiling(till),
            None => u64::from(self.bucket_of(now)) + 1,
        };
        let last = self.end_of_time();
        let start = u64::from(first).min(last);
        Ok(TimeRange {
            start,
            end: end.clamp(start, last),
            width: self.width,
        })
    }

    /// The series of `range` in points of `step`: the range is extended
    /// to a whole number of steps, each point starting `step` after the
    /// previous one. Errors: [`TimeError::BadStep`] for a step that is
    /// not a whole, non-zero multiple of the bucket;
    /// [`TimeError::TooManyPoints`] past the limit;
    /// [`TimeError::OutOfRange`] for a step or a last point that ends past
    /// the last time held (2106-02-07).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracker_core::{Bucketing, TimeError, Timestamp};
    ///
    /// let hourly = Bucketing::default();
    /// let now = Timestamp::parse("2026-11-08T12:00:00Z", Timestamp::default())?;
    /// let from = Timestamp::parse("2026-11-01", now)?;
    /// let range = hourly.range(Some(from), Some(Timestamp::parse("2026-11-08", now)?), now)?;
    /// let days = hourly.series(range, Duration::from_secs(86_400))?;
    /// assert_eq!(days.points().len(), 7);
    /// assert_eq!(days.points()[1].from().to_rfc3339(), "2026-11-02T00:00:00Z");
    /// assert!(matches!(
    ///     hourly.series(range, Duration::from_secs(90 * 60)),
    ///     Err(TimeError::BadStep { .. })
    /// ));
    /// # Ok::<(), TimeError>(())
    /// ```
    pub fn series(&self, range: TimeRange, step: Duration) -> Result<Series, TimeError> {
        self.series_on(range, step, range.start)
    }

    /// [`series`](Self::series) with its points on the grid of `from`:
    /// when the retention raised the range's start past `from`'s bucket,
    /// the points still start a whole number of steps after `from` (a
    /// daily series from a date keeps UTC days), the first one cut to
    /// start where the range does. Otherwise the same as `series`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracker_core::{Bucketing, Timestamp};
    ///
    /// let month = Bucketing::new(Duration::from_secs(3_600), Some(Duration::from_secs(30 * 86_400)))?;
    /// let now = Timestamp::parse("2026-11-30T12:30:00Z", Timestamp::default())?;
    /// let from = Timestamp::parse("2026-10-01", now)?;
    /// let range = month.range(Some(from), Some(now), now)?;
    /// let days = month.series_from(range, Duration::from_secs(86_400), from)?;
    /// let points = days.points();
    /// assert_eq!(points[0].from().to_rfc3339(), "2026-10-31T13:00:00Z");
    /// assert_eq!(points[0].till().to_rfc3339(), "2026-11-01T00:00:00Z");
    /// assert_eq!(points[1].from().to_rfc3339(), "2026-11-01T00:00:00Z");
    /// # Ok::<(), tracker_core::TimeError>(())
    /// ```
    pub fn series_from(
        &self,
        range: TimeRange,
        step: Duration,
        from: Timestamp,
    ) -> Result<Series, TimeError> {
        let anchor = u64::from(self.bucket_of(from));
        let step_buckets = step.as_secs() / u64::from(self.width);
        let origin = if range.is_empty() || step_buckets == 0 || anchor >= range.start {
            range.start
        } else {
            anchor + (range.start - anchor) / step_buckets * step_buckets
        };
        self.series_on(range, step, origin)
    }

    /// The series of `range` whose points are whole steps from `origin`
    /// (at most `range.start`, less than a step before it).
    fn series_on(
        &self,
        range: TimeRange,
        step: Duration,
        origin: u64,
    ) -> Result<Series, TimeError> {
        let width = u64::from(self.width);
        let secs = step.as_secs();
        if step.subsec_nanos() != 0 || secs == 0 || !secs.is_multiple_of(width) {
            return Err(TimeError::BadStep {
                step,
                bucket: self.width(),
            });
        }
        let step_buckets = secs / width;
        let points = (range.end - origin).div_ceil(step_buckets);
        if points > self.max_points as u64 {
            return Err(TimeError::TooManyPoints {
                points,
                max: self.max_points,
            });
        }
        // No point may end past the bucket holding the last second a tick
        // holds, and so no step be longer (which keeps it a `u32`), even
        // in a series of no points.
        let last = self.end_of_time();
        let end = points
            .checked_mul(step_buckets)
            .and_then(|span| span.checked_add(origin));
        match (end, u32::try_from(step_buckets)) {
            (Some(end), Ok(step_buckets)) if end <= last && u64::from(step_buckets) <= last => {
                Ok(Series {
                    range: TimeRange { end, ..range },
                    step_buckets,
                    origin,
                })
            }
            _ => Err(TimeError::OutOfRange {
                text: format!("{} steps of {secs} s", points.max(1)),
            }),
        }
    }

    /// `range` with its start raised, if need be, so that a series of
    /// `step` over it has at most [`point_limit`](Self::point_limit)
    /// points: the latest ones. For a series whose `from` is open, which
    /// would otherwise reach back to the oldest retained bucket (1970
    /// without a retention) and exceed the limit. A step that is not a
    /// whole multiple of the bucket leaves `range` as it is, for
    /// [`series`](Self::series) to refuse.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracker_core::{Bucketing, Timestamp};
    ///
    /// let hourly = Bucketing::default().max_points(7);
    /// let now = Timestamp::parse("2026-11-08T12:00:00Z", Timestamp::default())?;
    /// let everything = hourly.range(None, None, now)?;
    /// let week = hourly.latest_steps(everything, Duration::from_secs(86_400));
    /// assert_eq!(week.from().to_rfc3339(), "2026-11-01T13:00:00Z");
    /// assert_eq!(week.till(), everything.till());
    /// # Ok::<(), tracker_core::TimeError>(())
    /// ```
    pub fn latest_steps(&self, range: TimeRange, step: Duration) -> TimeRange {
        let width = u64::from(self.width);
        let secs = step.as_secs();
        if step.subsec_nanos() != 0 || secs == 0 || !secs.is_multiple_of(width) {
            return range;
        }
        let reach = (self.max_points as u64).saturating_mul(secs / width);
        TimeRange {
            start: range.start.max(range.end.saturating_sub(reach)),
            ..range
        }
    }

    /// The series of `range` with `from` open: the latest steps the
    /// point limit allows ([`latest_steps`](Self::latest_steps)), on a
    /// grid that ends where the range does (the current bucket's end for
    /// an open `till`), the first point cut to start with the range when
    /// the retention holds less than whole steps. Before, such a range
    /// was cut into steps from its start, and the last point reached
    /// past its end, into the future. Errors as [`series`](Self::series).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracker_core::{Bucketing, Timestamp};
    ///
    /// let kept = Bucketing::new(Duration::from_secs(3_600), Some(Duration::from_secs(10 * 86_400)))?;
    /// let now = Timestamp::parse("2026-11-30T12:30:00Z", Timestamp::default())?;
    /// let weeks = kept.latest_series(kept.range(None, None, now)?, Duration::from_secs(7 * 86_400))?;
    /// let points = weeks.points();
    /// assert_eq!(points.len(), 2);
    /// assert_eq!(points[0].from().to_rfc3339(), "2026-11-20T13:00:00Z");
    /// assert_eq!(points[1].from().to_rfc3339(), "2026-11-23T13:00:00Z");
    /// assert_eq!(points[1].till().to_rfc3339(), "2026-11-30T13:00:00Z");
    /// # Ok::<(), tracker_core::TimeError>(())
    /// ```
    pub fn latest_series(&self, range: TimeRange, step: Duration) -> Result<Series, TimeError> {
        let range = self.latest_steps(range, step);
        let step_buckets = step.as_secs() / u64::from(self.width);
        let span = range
            .bucket_count()
            .checked_next_multiple_of(step_buckets.max(1));
        match span.and_then(|span| range.end.checked_sub(span)) {
            Some(origin) if step_buckets > 0 && !range.is_empty() => {
                self.series_on(range, step, origin)
            }
            // A grid that would start before 1970: from the range's start.
            _ => self.series(range, step),
        }
    }

    /// The first bucket boundary at or after `at`.
    fn bucket_ceiling(&self, at: Timestamp) -> u64 {
        (at.as_millis()).div_ceil(u64::from(self.width) * 1000)
    }
}

/// The longest retention: what a tick holds, about 136 years.
const MAX_RETENTION: u64 = u32::MAX as u64;

/// A half-open range of whole buckets, `[from, till)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// The first bucket, and the one after the last; `u64` so that the
    /// end of the last bucket a tick holds fits.
    start: u64,
    end: u64,
    width: u32,
}

impl TimeRange {
    /// The buckets `buckets`, as wide as this range's.
    pub(crate) fn with_buckets(self, buckets: Range<u64>) -> Self {
        Self {
            start: buckets.start,
            end: buckets.end,
            width: self.width,
        }
    }

    /// Where the range starts (a bucket boundary).
    pub fn from(&self) -> Timestamp {
        Timestamp::from_millis(self.start * u64::from(self.width) * 1000)
    }

    /// Where the range ends, excluded (a bucket boundary).
    pub fn till(&self) -> Timestamp {
        Timestamp::from_millis(self.end * u64::from(self.width) * 1000)
    }

    /// The bucket indices it covers.
    pub fn buckets(&self) -> Range<u64> {
        self.start..self.end
    }

    /// How many buckets it covers.
    pub fn bucket_count(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether it covers no bucket.
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }

    /// Whether bucket `bucket` is inside.
    #[inline]
    pub fn contains(&self, bucket: u32) -> bool {
        (self.start..self.end).contains(&u64::from(bucket))
    }
}

/// Consecutive points of equal width over a range of buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Series {
    range: TimeRange,
    step_buckets: u32,
    /// Where the grid of points starts: the range's start, or up to a
    /// step before it when the first point is cut short (see
    /// [`Bucketing::series_from`]).
    origin: u64,
}

impl Series {
    /// The whole range the points cover.
    pub fn range(&self) -> TimeRange {
        self.range
    }

    /// Buckets per point.
    pub fn step_buckets(&self) -> u32 {
        self.step_buckets
    }

    /// The step.
    pub fn step(&self) -> Duration {
        Duration::from_secs(u64::from(self.step_buckets) * u64::from(self.range.width))
    }

    /// Where the grid of points starts (a bucket index): the range's
    /// start, or before it when the first point is cut short.
    #[inline]
    pub(crate) fn origin(&self) -> u64 {
        self.origin
    }

    /// Where the grid of points starts: the first point's start, or
    /// before it when that point is cut short (by the retention). A
    /// series asked again with this as its `from` has the same points.
    pub fn grid_from(&self) -> Timestamp {
        Timestamp::from_millis(self.origin * u64::from(self.range.width) * 1000)
    }

    /// The point bucket `bucket` falls in, if any.
    #[inline]
    pub fn point_of(&self, bucket: u32) -> Option<usize> {
        let bucket = u64::from(bucket);
        self.range
            .contains(bucket as u32)
            .then(|| ((bucket - self.origin) / u64::from(self.step_buckets)) as usize)
    }

    /// The points, in order (the first cut to start with the range).
    pub fn points(&self) -> Vec<TimeRange> {
        let step = u64::from(self.step_buckets);
        (self.origin..self.range.end)
            .step_by(step as usize)
            .map(|start| TimeRange {
                start: start.max(self.range.start),
                end: start + step,
                ..self.range
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text, Timestamp::default()).unwrap()
    }

    #[test]
    fn bucket_widths() {
        for ok in [60, 300, 900, HOUR, 6 * HOUR, 86_400] {
            assert!(
                Bucketing::new(Duration::from_secs(ok), None).is_ok(),
                "{ok}"
            );
        }
        for bad in [0, 1, 59, 90, 7 * 60, 5 * HOUR, 2 * 86_400] {
            assert!(
                matches!(
                    Bucketing::new(Duration::from_secs(bad), None),
                    Err(TimeError::BadBucket { .. })
                ),
                "{bad}"
            );
        }
        assert!(Bucketing::new(Duration::from_millis(60_500), None).is_err());
        let hourly = Bucketing::new(Duration::from_secs(HOUR), None).unwrap();
        assert!(Bucketing::new(hourly.width(), Some(Duration::from_secs(60))).is_err());
        let kept = Bucketing::new(hourly.width(), Some(Duration::from_secs(90 * 60))).unwrap();
        assert_eq!(kept.retention(), Some(Duration::from_secs(2 * HOUR)));
    }

    #[test]
    fn ranges_widen_to_whole_buckets_and_clip_to_retention() {
        let now = at("2026-11-08T12:30:00Z");
        let hourly = Bucketing::default();
        let range = hourly
            .range(
                Some(at("2026-11-08T10:59:59Z")),
                Some(at("2026-11-08T11:00:01Z")),
                now,
            )
            .unwrap();
        assert_eq!(range.from(), at("2026-11-08T10:00:00Z"));
        assert_eq!(range.till(), at("2026-11-08T12:00:00Z"));
        // A boundary stays where it is; an empty range stays empty.
        let range = hourly.range(
            Some(at("2026-11-08T10:00:00Z")),
            Some(at("2026-11-08T10:00:00Z")),
            now,
        );
        assert!(range.unwrap().is_empty());
        // Off a boundary too: `[t, t)` is empty, not t's whole bucket.
        let mid = at("2026-11-08T10:20:00Z");
        let range = hourly.range(Some(mid), Some(mid), now).unwrap();
        assert!(range.is_empty(), "{range:?}");
        assert_eq!(range.from(), at("2026-11-08T10:00:00Z"));
        assert!(matches!(
            hourly.range(Some(now), Some(at("2026-11-08T12:29:59Z")), now),
            Err(TimeError::Reversed { .. })
        ));
        // Open ends: everything held, up to the end of the current bucket.
        let all = hourly.range(None, None, now).unwrap();
        assert_eq!(
            (all.from(), all.till()),
            (Timestamp::default(), at("2026-11-08T13:00:00Z"))
        );
        let week = Bucketing::new(hourly.width(), Some(Duration::from_secs(7 * 86_400))).unwrap();
        let kept = week.range(Some(at("2026-01-01")), None, now).unwrap();
        assert_eq!(kept.from(), at("2026-11-01T13:00:00Z"));
        assert_eq!(kept.bucket_count(), 7 * 24);
        // Entirely before the retention: empty, at its start.
        let old = week
            .range(Some(at("2026-01-01")), Some(at("2026-01-02")), now)
            .unwrap();
        assert!(old.is_empty() && old.from() == at("2026-11-01T13:00:00Z"));
    }

    #[test]
    fn series_steps_and_limits() {
        let now = at("2026-11-30T00:00:00Z");
        let hourly = Bucketing::default().max_points(31);
        let month = hourly
            .range(Some(at("2026-11-01")), Some(now), now)
            .unwrap();
        let days = hourly.series(month, Duration::from_secs(86_400)).unwrap();
        assert_eq!(days.points().len(), 29);
        assert_eq!(
            days.point_of(hourly.bucket_of(at("2026-11-03T23:59:59Z"))),
            Some(2)
        );
        assert_eq!(days.point_of(hourly.bucket_of(now)), None);
        // Four-hour windows of a day and a half: the last one is whole.
        let range = hourly
            .range(
                Some(at("2026-11-01")),
                Some(at("2026-11-02T14:00:00Z")),
                now,
            )
            .unwrap();
        let windows = hourly.series(range, Duration::from_secs(4 * HOUR)).unwrap();
        assert_eq!(windows.points().len(), 10);
        assert_eq!(windows.range().till(), at("2026-11-02T16:00:00Z"));
        assert!(matches!(
            hourly.series(month, Duration::from_secs(HOUR)),
            Err(TimeError::TooManyPoints {
                points: 696,
                max: 31
            })
        ));
        for bad in [
            Duration::ZERO,
            Duration::from_secs(1_800),
            Duration::from_millis(3_600_001),
        ] {
            assert!(
                matches!(hourly.series(month, bad), Err(TimeError::BadStep { .. })),
                "{bad:?}"
            );
        }
    }

    /// A step or a series reaching past the last time held is refused,
    /// never cut to a `u32` (a step of 2^32 buckets was a step of 0 and a
    /// panic, 2^32 + 1 a step of one bucket), even over no points.
    #[test]
    fn series_past_the_times_held_are_refused() {
        let now = at("2026-11-30T00:00:00Z");
        for width in [60, HOUR, 86_400] {
            let b = Bucketing::new(Duration::from_secs(width), None).unwrap();
            let all = b.range(None, None, now).unwrap();
            let empty = b.range(Some(now), Some(now), now).unwrap();
            let buckets = |n: u64| Duration::from_secs(n * width);
            for range in [all, empty] {
                for n in [1 << 32, (1 << 32) + 1, 3 << 32, u64::MAX / 86_400 / 2] {
                    assert!(
                        matches!(
                            b.series(range, buckets(n)),
                            Err(TimeError::OutOfRange { .. })
                        ),
                        "{width} s buckets, step {n}, {range:?}"
                    );
                }
            }
            // The longest step whose one point ends where times end.
            let last = (1u64 << 32).div_ceil(width);
            let whole = b.series(all, buckets(last)).unwrap();
            assert_eq!(
                (whole.points().len(), whole.step_buckets()),
                (1, last as u32)
            );
            assert!(b.series(all, buckets(last + 1)).is_err());
            assert!(b.series(empty, buckets(last)).unwrap().points().is_empty());
            // A series whose last point would end past the last time.
            let end = b
                .range(Some(at("2106-02-01")), None, now.max(at("2106-02-01")))
                .unwrap();
            assert!(matches!(
                b.series(end, Duration::from_secs(86_400 * 30)),
                Err(TimeError::OutOfRange { .. })
            ));
        }
    }
}
