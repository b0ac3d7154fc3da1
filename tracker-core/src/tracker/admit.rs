//! Whether a visit's own time is one the tracker counts yet, for
//! services that take times from their clients (`POST /events` with
//! `time`).

use crate::error::TrackerError;
use crate::time::TimeError;
use crate::time::clock::Timestamp;
use crate::time::ttl::{Expiry, MAX_CLOCK_SKEW};

use super::Tracker;

impl Tracker {
    /// Checks a visit time a client sent before it is recorded, and
    /// returns the time to record it at: the tracker's clock for a time
    /// ahead of it by at most [`MAX_CLOCK_SKEW`] (a sender's clock that
    /// runs a little fast; at its own time such a visit could fall in a
    /// bucket after the current one, which no open range reaches yet),
    /// else the time itself. Refused as [`TrackerError::FromTheFuture`]
    /// if it is further ahead than that. (With a TTL, [`record_at`](Self::record_at)
    /// refuses such a time itself; without one it takes any time not
    /// older than the retention, as a replay or a test clock needs.)
    /// With a TTL, a time already expired is refused too, as
    /// [`TimeError::BeforeTtl`]: `record_at` takes it and changes nothing
    /// (a replayed log holds such times), so a service that acknowledged
    /// it would acknowledge an event that counts nowhere.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracker_core::{TimeError, Timestamp, Tracker, TrackerError};
    ///
    /// let tracker = Tracker::new();
    /// let now = Timestamp::from(std::time::SystemTime::now());
    /// let week_ago = Timestamp::parse("-7d", now)?;
    /// assert_eq!(tracker.check_time(week_ago)?, week_ago);
    /// let ahead = now.saturating_add(Duration::from_secs(30));
    /// assert!(tracker.check_time(ahead)? <= ahead);
    /// assert!(tracker.check_time(Timestamp::parse("1970-01-01", now)?).is_ok());
    /// assert!(matches!(
    ///     tracker.check_time(Timestamp::parse("2106-01-01", now)?),
    ///     Err(TrackerError::FromTheFuture { .. })
    /// ));
    /// let hourly = Tracker::builder().ttl(Duration::from_secs(3600)).build()?;
    /// assert!(hourly.check_time(Timestamp::parse("-59m", now)?).is_ok());
    /// assert!(matches!(
    ///     hourly.check_time(Timestamp::parse("-61m", now)?),
    ///     Err(TrackerError::Time(TimeError::BeforeTtl { .. }))
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_time(&self, at: Timestamp) -> Result<Timestamp, TrackerError> {
        let now = self.config.clock.now();
        if at > now.saturating_add(MAX_CLOCK_SKEW) {
            return Err(TrackerError::FromTheFuture {
                ahead_ms: at.as_millis() - now.as_millis(),
            });
        }
        if let Some(ttl) = self.ttl {
            // As `timed_event` reads a time against the TTL.
            let expiry = Expiry {
                now: now.as_tick(),
                ttl,
            };
            if !expiry.is_live(at.min(now).as_tick()) {
                let oldest = Timestamp::from_millis(u64::from(expiry.oldest_live()) * 1000);
                return Err(TimeError::BeforeTtl { at, oldest }.into());
            }
        }
        Ok(at.min(now))
    }
}
