//! Whether a visit's own time is one the tracker counts yet, for
//! services that take times from their clients (`POST /events` with
//! `time`).

use crate::error::TrackerError;
use crate::time::clock::Timestamp;
use crate::time::ttl::MAX_CLOCK_SKEW;

use super::Tracker;

impl Tracker {
    /// Checks a visit time a client sent before it is recorded: refused
    /// as [`TrackerError::FromTheFuture`] if it is further ahead of the
    /// tracker's clock than [`MAX_CLOCK_SKEW`], since its bucket would
    /// count in no range yet. (With a TTL, [`record_at`](Self::record_at)
    /// refuses such a time itself; without one it takes any time not
    /// older than the retention, as a replay or a test clock needs.)
    ///
    /// ```
    /// use tracker_core::{Timestamp, Tracker, TrackerError};
    ///
    /// let tracker = Tracker::new();
    /// let now = Timestamp::from(std::time::SystemTime::now());
    /// assert!(tracker.check_time(Timestamp::parse("-7d", now)?).is_ok());
    /// assert!(tracker.check_time(Timestamp::parse("1970-01-01", now)?).is_ok());
    /// assert!(matches!(
    ///     tracker.check_time(Timestamp::parse("2106-01-01", now)?),
    ///     Err(TrackerError::FromTheFuture { .. })
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_time(&self, at: Timestamp) -> Result<(), TrackerError> {
        let now = self.config.clock.now();
        if at > now.saturating_add(MAX_CLOCK_SKEW) {
            return Err(TrackerError::FromTheFuture {
                ahead_ms: at.as_millis() - now.as_millis(),
            });
        }
        Ok(())
    }
}
