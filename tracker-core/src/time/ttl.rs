//! Time-to-live: when a (page, visitor) pair stops counting.
//!
//! Times are stored as ticks, whole seconds since the Unix epoch in a
//! `u32` (good until 2106). A pair whose latest visit was at tick `t` is
//! **live at tick `now` while `now < t + ttl`**, and expired from tick
//! `t + ttl` on. Equivalently, the live pairs at `now` are those whose tick
//! is at least [`Expiry::oldest_live`] `= now + 1 - ttl`.
//!
//! An event whose own time is already expired when it arrives changes
//! nothing (it is counted as stale); an event from further in the future
//! than [`MAX_CLOCK_SKEW`] is refused, and one within it is recorded at
//! the tracker's `now`, so that no pair ever lives past `now + ttl`.

use std::time::Duration;

/// How far ahead of the tracker's clock an event's time may be. Within it
/// the event counts as happening now (senders' clocks drift a little);
/// beyond it the event is refused as [`TrackerError::FromTheFuture`].
///
/// [`TrackerError::FromTheFuture`]: crate::TrackerError::FromTheFuture
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The longest TTL: about 68 years, so that tick arithmetic never wraps.
pub const MAX_TTL: Duration = Duration::from_secs(i32::MAX as u64);

/// The expiry rule at one moment: the clock's tick and the TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expiry {
    /// The current tick.
    pub(crate) now: u32,
    /// The TTL in ticks (seconds), at least 1.
    pub(crate) ttl: u32,
}

impl Expiry {
    /// The smallest tick still live at `now`.
    #[inline]
    pub(crate) fn oldest_live(self) -> u32 {
        (u64::from(self.now) + 1).saturating_sub(u64::from(self.ttl)) as u32
    }

    /// Whether a pair last seen at `tick` is live.
    #[inline]
    pub(crate) fn is_live(self, tick: u32) -> bool {
        tick >= self.oldest_live()
    }

    /// The width of a sketch generation: TTL/8 rounded up, at least a tick.
    /// A sketched page forgets visitors a whole generation at a time, so a
    /// visitor may count up to this much longer than the TTL.
    pub(crate) fn generation_ticks(self) -> u32 {
        self.ttl.div_ceil(8).max(1)
    }
}

/// The TTL in whole seconds, rounded up (the tick is a second).
pub(crate) fn ttl_ticks(ttl: Duration) -> u32 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_lives_for_exactly_ttl_ticks() {
        let at = |now| Expiry { now, ttl: 10 };
        for now in 100..110 {
            assert!(at(now).is_live(100), "{now}");
        }
        assert!(!at(110).is_live(100));
        assert_eq!(at(110).oldest_live(), 101);
        // Early in time nothing can have expired.
        assert_eq!(at(3).oldest_live(), 0);
    }

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_ticks(Duration::from_millis(1)), 1);
        assert_eq!(ttl_ticks(Duration::from_secs(2)), 2);
        assert_eq!(ttl_ticks(Duration::from_millis(2_001)), 3);
        assert_eq!(Expiry { now: 0, ttl: 80 }.generation_ticks(), 10);
        assert_eq!(Expiry { now: 0, ttl: 3 }.generation_ticks(), 1);
    }
}
