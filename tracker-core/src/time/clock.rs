//! Time: the [`Timestamp`] events carry and the [`Clock`] that stamps
//! events recorded without one. Injectable so tests can drive time by hand.

use crate::sync::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The latest time a tick can hold: 2106-02-07T06:28:15Z (`u32::MAX` s).
pub(super) const LATEST_SECS: u64 = u32::MAX as u64;

/// A point in time: milliseconds since the Unix epoch (UTC).
///
/// ```
/// use tracker_core::Timestamp;
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let t = Timestamp::from_millis(1_700_000_000_123);
/// assert_eq!(t.as_millis(), 1_700_000_000_123);
/// assert_eq!(Timestamp::from(UNIX_EPOCH + Duration::from_secs(2)).as_millis(), 2_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The timestamp `millis` milliseconds after the Unix epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the Unix epoch, saturated to 32 bits (good until
    /// the year 2106): the coarse tick stored per page.
    pub(crate) fn as_tick(self) -> u32 {
        u32::try_from(self.0 / 1000).unwrap_or(u32::MAX)
    }

    /// This timestamp moved forwards by `by`, saturating.
    pub fn saturating_add(self, by: Duration) -> Self {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(by))
    }
}

impl Timestamp {
    /// The timestamp `secs` whole seconds after the Unix epoch (unix
    /// time, as an event's `time` is sent), saturating.
    ///
    /// ```
    /// use tracker_core::Timestamp;
    ///
    /// let t = Timestamp::from_secs(1_793_491_200);
    /// assert_eq!(t.to_rfc3339(), "2026-11-01T00:00:00Z");
    /// assert_eq!(t.as_secs(), 1_793_491_200);
    /// ```
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    /// Whole seconds since the Unix epoch (rounded down).
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// The operating system's time now (`SystemTime::now()`), to the
    /// millisecond. Not a tracker's clock: a tracker given another
    /// [`Clock`] (a [`ManualClock`] in tests) stamps and ranges events by
    /// that one, which `tracker.config().clock.now()` reads.
    pub fn now() -> Self {
        SystemTime::now().into()
    }
}

impl From<Timestamp> for SystemTime {
    /// A time past what `SystemTime` holds (possible off Linux, where it
    /// may be 32-bit seconds or 100 ns ticks) becomes the latest time the
    /// crate reads (2106-02-07).
    fn from(time: Timestamp) -> Self {
        UNIX_EPOCH
            .checked_add(Duration::from_millis(time.0))
            .unwrap_or_else(|| UNIX_EPOCH + Duration::from_secs(LATEST_SECS))
    }
}

/// A time as the tracker's methods take it: a [`Timestamp`] or a
/// [`SystemTime`], or, for an end of a range or a durable record's time,
/// an `Option<Timestamp>` (`None`: open, or now).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tracker_core::{Timestamp, Tracker};
///
/// let tracker = Tracker::new();
/// let hour_ago = SystemTime::now() - Duration::from_secs(3_600);
/// tracker.record_at("alice", "/pricing", hour_ago)?;
/// tracker.record_at("bob", "/pricing", Timestamp::now())?;
/// let day = Duration::from_secs(86_400);
/// assert_eq!(tracker.distinct_between("/pricing", SystemTime::now() - day, None)?.visitors, 2);
/// assert_eq!(tracker.distinct_between("/pricing", None, SystemTime::now() - day)?.visitors, 0);
/// assert_eq!(tracker.distinct_between("/pricing", Some(Timestamp::from(hour_ago)), None)?.visitors, 2);
/// # Ok::<(), tracker_core::TrackerError>(())
/// ```
///
/// Sealed: implemented for these three only. A bare `None` works because
/// `Option<Timestamp>` is the only `Option` it is implemented for; an
/// `Option<SystemTime>` impl would leave `None`'s type ambiguous (write
/// `time.map(Timestamp::from)` instead).
///
/// ```compile_fail
/// // Sealed: no impl outside the crate.
/// struct Mine;
/// impl tracker_core::TimeBound for Mine {
///     fn time_bound(self) -> Option<tracker_core::Timestamp> {
///         None
///     }
/// }
/// ```
pub trait TimeBound: sealed::Sealed {
    /// The time, or `None` for an open end (or now).
    fn time_bound(self) -> Option<Timestamp>;
}

mod sealed {
    /// Keeps [`TimeBound`](super::TimeBound) to this module's impls.
    pub trait Sealed {}
    impl Sealed for super::Timestamp {}
    impl Sealed for std::time::SystemTime {}
    impl Sealed for Option<super::Timestamp> {}
}

impl TimeBound for Timestamp {
    fn time_bound(self) -> Option<Timestamp> {
        Some(self)
    }
}

impl TimeBound for SystemTime {
    fn time_bound(self) -> Option<Timestamp> {
        Some(self.into())
    }
}

impl TimeBound for Option<Timestamp> {
    fn time_bound(self) -> Option<Timestamp> {
        self
    }
}

impl From<SystemTime> for Timestamp {
    /// Times before the epoch become the epoch.
    fn from(time: SystemTime) -> Self {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A source of the current time for events recorded without their own.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The operating system's wall clock.
///
/// On Linux it reads the kernel's coarse real-time clock
/// (`CLOCK_REALTIME_COARSE`), which is as correct as the precise one but
/// only advances once per scheduler tick (1–4 ms): ample for the second
/// ticks the tracker stores, and several times cheaper to read, which
/// matters when every `record` reads it.
///
/// ```
/// use tracker_core::{Clock, SystemClock, Timestamp};
/// use std::time::SystemTime;
///
/// let precise = Timestamp::from(SystemTime::now()).as_millis();
/// let coarse = SystemClock.now().as_millis();
/// assert!(coarse.abs_diff(precise) < 1_000);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[cfg(target_os = "linux")]
    fn now(&self) -> Timestamp {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        let secs = u64::try_from(now.tv_sec).unwrap_or(0);
        let millis = u64::try_from(now.tv_nsec / 1_000_000).unwrap_or(0);
        Timestamp(secs.saturating_mul(1000).saturating_add(millis))
    }

    #[cfg(not(target_os = "linux"))]
    fn now(&self) -> Timestamp {
        SystemTime::now().into()
    }
}

/// A clock that moves only when told to; clones share the same time.
///
/// ```
/// use tracker_core::{Clock, ManualClock, Timestamp};
/// use std::time::Duration;
///
/// let clock = ManualClock::new(Timestamp::from_millis(0));
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(shared.now(), Timestamp::from_millis(5_000));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock standing at `start` (a [`Timestamp`] or a [`SystemTime`]).
    pub fn new(start: impl Into<Timestamp>) -> Self {
        Self(Arc::new(AtomicU64::new(start.into().as_millis())))
    }

    /// Moves the clock forwards by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(by))
            });
    }

    /// Sets the clock to `to` (which may be in the past).
    pub fn set(&self, to: impl Into<Timestamp>) {
        self.0.store(to.into().as_millis(), Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_system_time() {
        for millis in [0, 1, 1_793_491_200_250, LATEST_SECS * 1000 + 999] {
            let t = Timestamp::from_millis(millis);
            assert_eq!(Timestamp::from(SystemTime::from(t)), t, "{millis}");
        }
        // Past what every platform's `SystemTime` holds: no panic, and
        // never earlier than the latest time the crate reads.
        let far = Timestamp::from(SystemTime::from(Timestamp::from_millis(u64::MAX)));
        assert!(far >= Timestamp::from_secs(LATEST_SECS));
    }
}
