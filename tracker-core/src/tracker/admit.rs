//! Whether a visit's own time is one the tracker keeps, for services that
//! take times from their clients (`POST /events` with `time`).

use crate::error::TrackerError;
use crate::time::TimeError;
use crate::time::clock::Timestamp;
use crate::time::ttl::MAX_CLOCK_SKEW;

use super::Tracker;

impl Tracker {
    /// Checks a visit time a client sent before it is recorded: refused
    /// if it is further ahead of the tracker's clock than
    /// [`MAX_CLOCK_SKEW`] ([`TrackerError::FromTheFuture`]: its bucket
    /// would count in no range yet) or before the oldest bucket the
    /// retention keeps ([`TimeError::BeforeRetention`]: it would count in
    /// no range at all). [`record_at`](Self::record_at) itself takes any
    /// time, as a replay needs.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracker_core::{Timestamp, Tracker, TrackerError};
    ///
    /// let tracker = Tracker::builder().retention(Duration::from_secs(30 * 86_400)).build()?;
    /// let now = Timestamp::from(std::time::SystemTime::now());
    /// assert!(tracker.check_time(Timestamp::parse("-7d", now)?).is_ok());
    /// let refused = |text| tracker.check_time(Timestamp::parse(text, now).unwrap()).unwrap_err();
    /// assert_eq!(refused("-31d").code(), "before_retention");
    /// assert!(matches!(refused("2106-01-01"), TrackerError::FromTheFuture { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_time(&self, at: Timestamp) -> Result<(), TrackerError> {
        let now = self.config.clock.now();
        if at > now.saturating_add(MAX_CLOCK_SKEW) {
            return Err(TrackerError::FromTheFuture {
                ahead_ms: at.as_millis() - now.as_millis(),
            });
        }
        let bucketing = self.bucketing();
        let oldest = bucketing.oldest_retained(now);
        if bucketing.bucket_of(at) < oldest {
            return Err(TimeError::BeforeRetention {
                at,
                oldest: bucketing.start_of(oldest),
            }
            .into());
        }
        Ok(())
    }
}
