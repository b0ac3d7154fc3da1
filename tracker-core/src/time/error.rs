//! [`TimeError`]: why a time, a duration, a range or a series was refused.

use std::fmt;
use std::time::Duration;

use crate::time::clock::Timestamp;

/// Why a time, a duration, a range or a series was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeError {
    /// Not a time in any accepted form.
    Malformed {
        /// The text given.
        text: String,
    },
    /// A time before 1970 or after 2106-02-07T06:28:15Z.
    OutOfRange {
        /// The text given.
        text: String,
    },
    /// Not a duration such as `4h` or `30d`.
    BadDuration {
        /// The text given.
        text: String,
    },
    /// A range whose end comes before its start.
    Reversed {
        /// The start given.
        from: Timestamp,
        /// The end given.
        till: Timestamp,
    },
    /// A series step that is not a whole multiple of the bucket.
    BadStep {
        /// The step given.
        step: Duration,
        /// The bucket width.
        bucket: Duration,
    },
    /// A series with more points than the limit.
    TooManyPoints {
        /// Points the series would have.
        points: u64,
        /// The limit.
        max: usize,
    },
    /// A bucket width outside 1 min..=1 day, or one that is not whole
    /// minutes dividing a day.
    BadBucket {
        /// The width given.
        width: Duration,
    },
    /// A retention shorter than a bucket or longer than a tick holds.
    BadRetention {
        /// The retention given.
        retention: Duration,
    },
    /// An event's time is older than the retention: nothing that old is
    /// kept.
    BeforeRetention {
        /// The event's time.
        at: Timestamp,
        /// The start of the oldest bucket retained.
        oldest: Timestamp,
    },
    /// With a TTL, an event's time is already expired: it would count
    /// neither in the TTL window nor in any bucket.
    BeforeTtl {
        /// The event's time.
        at: Timestamp,
        /// The oldest time still live.
        oldest: Timestamp,
    },
}

impl TimeError {
    /// A stable, machine-readable code for the error.
    ///
    /// ```
    /// use tracker_core::{TimeError, Timestamp};
    ///
    /// let err = Timestamp::parse("yesterday", Timestamp::default()).unwrap_err();
    /// assert_eq!(err.code(), "bad_time");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            TimeError::Malformed { .. } => "bad_time",
            TimeError::OutOfRange { .. } => "time_out_of_range",
            TimeError::BadDuration { .. } => "bad_duration",
            TimeError::Reversed { .. } => "reversed_range",
            TimeError::BadStep { .. } => "bad_step",
            TimeError::TooManyPoints { .. } => "too_many_points",
            TimeError::BadBucket { .. } => "bad_bucket",
            TimeError::BadRetention { .. } => "bad_retention",
            TimeError::BeforeRetention { .. } => "before_retention",
            TimeError::BeforeTtl { .. } => "before_ttl",
        }
    }
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeError::Malformed { text } => write!(
                f,
                "`{text}` is not a time (use RFC 3339 such as 2026-11-01T00:00:00Z, a date \
                 such as 2026-11-01, unix seconds, `now`, or a duration ago such as -7d)"
            ),
            TimeError::OutOfRange { text } => write!(
                f,
                "`{text}` is outside the times held (1970-01-01 to 2106-02-07)"
            ),
            TimeError::BadDuration { text } => write!(
                f,
                "`{text}` is not a duration (use whole numbers with ms, s, m, h, d or w, \
                 such as 4h, 30d or 1h30m)"
            ),
            TimeError::Reversed { from, till } => write!(
                f,
                "the range ends ({}) before it starts ({})",
                till.to_rfc3339(),
                from.to_rfc3339()
            ),
            TimeError::BadStep { step, bucket } => write!(
                f,
                "a step of {} s is not a whole multiple of the {} s bucket",
                step.as_secs_f64(),
                bucket.as_secs()
            ),
            TimeError::TooManyPoints { points, max } => write!(
                f,
                "the series would have {points} points, more than the limit of {max}; \
                 use a longer step or a shorter range"
            ),
            TimeError::BadBucket { width } => write!(
                f,
                "a bucket of {} s is not a whole number of minutes from 1 min to 1 day that divides a day",
                width.as_secs_f64()
            ),
            TimeError::BadRetention { retention } => write!(
                f,
                "a retention of {} s is shorter than a bucket or longer than 136 years",
                retention.as_secs_f64()
            ),
            TimeError::BeforeRetention { at, oldest } => write!(
                f,
                "{} is older than the retention, which starts at {}",
                at.to_rfc3339(),
                oldest.to_rfc3339()
            ),
            TimeError::BeforeTtl { at, oldest } => write!(
                f,
                "{} is older than the TTL window, which starts at {}: it would expire on arrival",
                at.to_rfc3339(),
                oldest.to_rfc3339()
            ),
        }
    }
}

impl std::error::Error for TimeError {}
