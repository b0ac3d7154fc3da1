//! Per-lock counters of the stripe locks, built only with the
//! `lock-stats` feature (off by default, so the normal build pays nothing):
//! how often each stripe's lock was taken, how often a taker found it held
//! and had to wait, and how long each write lock was held. The scaling
//! bench reads them (`cargo bench -p tracker-benches --bench scaling
//! --features lock-stats`) to separate lock waits from cache and memory
//! effects.
//!
//! `sync::RwLock` becomes [`StatsLock`] with the feature: every take first
//! tries without blocking (a failure is a wait), and a write guard reads
//! the clock when taken and when dropped. That adds two clock reads (about
//! 20-40 ns each) to every write and inflates the hold times it measures by
//! about one read; the counters are atomics on the lock's own cache lines,
//! updated while the lock is held.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLockReadGuard, RwLockWriteGuard, TryLockError};
use std::time::Instant;

/// Buckets of the hold-time histogram: bucket `i` counts holds of
/// `2^(i-1)` to `2^i - 1` nanoseconds (bucket 0: under 1 ns), the last one
/// everything longer.
pub const HOLD_BUCKETS: usize = 40;

/// What one stripe lock saw since its tracker was built (see
/// [`Tracker::lock_stats`](crate::Tracker::lock_stats)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockStats {
    /// Write locks taken.
    pub writes: u64,
    /// Write locks that were held by another thread when asked for, so
    /// the taker waited (spun or blocked).
    pub write_waits: u64,
    /// Time those waits took, nanoseconds summed (from the failed try to
    /// the lock taken).
    pub write_wait_ns: u64,
    /// Those waits' times, a log2 histogram as
    /// [`hold_histogram`](Self::hold_histogram).
    pub wait_histogram: [u64; HOLD_BUCKETS],
    /// Read locks taken.
    pub reads: u64,
    /// Read locks that waited for a writer.
    pub read_waits: u64,
    /// Write-lock hold times, nanoseconds summed.
    pub hold_ns: u64,
    /// Write-lock hold times, a log2 histogram (see [`HOLD_BUCKETS`]).
    pub hold_histogram: [u64; HOLD_BUCKETS],
}

impl LockStats {
    /// The hold time, in nanoseconds, that at least `quantile` (0 to 1) of
    /// the write locks were held within: the upper bound of the histogram
    /// bucket it falls in, so within a factor of two.
    ///
    /// ```
    /// # #[cfg(feature = "lock-stats")] {
    /// use tracker_core::Tracker;
    ///
    /// let tracker = Tracker::new();
    /// tracker.record("v", "/a")?;
    /// let stats = &tracker.lock_stats()[0..];
    /// let writes: u64 = stats.iter().map(|s| s.writes).sum();
    /// assert!(writes >= 1);
    /// assert!(stats.iter().any(|s| s.hold_quantile_ns(0.5) > 0));
    /// # }
    /// # Ok::<(), tracker_core::TrackerError>(())
    /// ```
    pub fn hold_quantile_ns(&self, quantile: f64) -> u64 {
        quantile_ns(&self.hold_histogram, quantile)
    }

    /// The wait, in nanoseconds, that at least `quantile` (0 to 1) of the
    /// write locks that waited ([`write_waits`](Self::write_waits)) got
    /// the lock within, as [`hold_quantile_ns`](Self::hold_quantile_ns);
    /// 0 when none waited.
    pub fn wait_quantile_ns(&self, quantile: f64) -> u64 {
        quantile_ns(&self.wait_histogram, quantile)
    }
}

/// The upper bound of the bucket of `histogram` (see [`HOLD_BUCKETS`])
/// that `quantile` of its counts fall within; 0 for an empty one.
fn quantile_ns(histogram: &[u64; HOLD_BUCKETS], quantile: f64) -> u64 {
    let total: u64 = histogram.iter().sum();
    let want = (total as f64 * quantile).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, &n) in histogram.iter().enumerate() {
        seen += n;
        if seen >= want {
            return (1u64 << i).saturating_sub(1).max(1);
        }
    }
    0
}

/// The counters, as atomics.
#[derive(Debug)]
struct Counters {
    writes: AtomicU64,
    write_waits: AtomicU64,
    write_wait_ns: AtomicU64,
    wait_histogram: [AtomicU64; HOLD_BUCKETS],
    reads: AtomicU64,
    read_waits: AtomicU64,
    hold_ns: AtomicU64,
    hold_histogram: [AtomicU64; HOLD_BUCKETS],
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            writes: AtomicU64::new(0),
            write_waits: AtomicU64::new(0),
            write_wait_ns: AtomicU64::new(0),
            wait_histogram: std::array::from_fn(|_| AtomicU64::new(0)),
            reads: AtomicU64::new(0),
            read_waits: AtomicU64::new(0),
            hold_ns: AtomicU64::new(0),
            hold_histogram: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

fn nanos_since(start: Instant) -> u64 {
    start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64
}

/// The histogram bucket of a time of `ns` nanoseconds.
fn bucket_of(ns: u64) -> usize {
    ((u64::BITS - ns.leading_zeros()) as usize).min(HOLD_BUCKETS - 1)
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// A `std` reader-writer lock that counts its takes, waits and write hold
/// times.
#[derive(Debug, Default)]
pub(crate) struct StatsLock<T> {
    lock: std::sync::RwLock<T>,
    counters: Counters,
}

/// A write guard of a [`StatsLock`]: notes the hold time when dropped.
pub(crate) struct StatsWriteGuard<'a, T> {
    guard: RwLockWriteGuard<'a, T>,
    counters: &'a Counters,
    taken: Instant,
}

impl<T> StatsLock<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            lock: std::sync::RwLock::new(value),
            counters: Counters::default(),
        }
    }

    /// Takes the write lock (poisoning ignored, as `sync` does).
    pub(crate) fn write(&self) -> StatsWriteGuard<'_, T> {
        self.try_write().unwrap_or_else(|| {
            let asked = Instant::now();
            let guard = crate::backoff::write(&self.lock);
            bump(&self.counters.write_waits, 1);
            let waited = nanos_since(asked);
            bump(&self.counters.write_wait_ns, waited);
            bump(&self.counters.wait_histogram[bucket_of(waited)], 1);
            self.taken(guard)
        })
    }

    /// Takes the write lock if it is free now (`None` otherwise, counted as
    /// neither a take nor a wait: the caller comes back later).
    pub(crate) fn try_write(&self) -> Option<StatsWriteGuard<'_, T>> {
        crate::backoff::try_write(&self.lock).map(|guard| self.taken(guard))
    }

    /// Counts a take and starts timing its hold.
    fn taken<'a>(&'a self, guard: RwLockWriteGuard<'a, T>) -> StatsWriteGuard<'a, T> {
        bump(&self.counters.writes, 1);
        StatsWriteGuard {
            guard,
            counters: &self.counters,
            taken: Instant::now(),
        }
    }

    /// Takes a read lock (poisoning ignored).
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
        let guard = match self.lock.try_read() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                bump(&self.counters.read_waits, 1);
                self.lock.read().unwrap_or_else(PoisonError::into_inner)
            }
        };
        bump(&self.counters.reads, 1);
        guard
    }

    /// The counters so far.
    pub(crate) fn stats(&self) -> LockStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LockStats {
            writes: load(&c.writes),
            write_waits: load(&c.write_waits),
            write_wait_ns: load(&c.write_wait_ns),
            wait_histogram: std::array::from_fn(|i| load(&c.wait_histogram[i])),
            reads: load(&c.reads),
            read_waits: load(&c.read_waits),
            hold_ns: load(&c.hold_ns),
            hold_histogram: std::array::from_fn(|i| load(&c.hold_histogram[i])),
        }
    }
}

impl<T> Drop for StatsWriteGuard<'_, T> {
    fn drop(&mut self) {
        let held = nanos_since(self.taken);
        bump(&self.counters.hold_ns, held);
        bump(&self.counters.hold_histogram[bucket_of(held)], 1);
    }
}

impl<T> std::ops::Deref for StatsWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> std::ops::DerefMut for StatsWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_quantiles_read_the_wait_histogram() {
        let mut stats = LockStats {
            writes: 10,
            write_waits: 0,
            write_wait_ns: 0,
            wait_histogram: [0; HOLD_BUCKETS],
            reads: 0,
            read_waits: 0,
            hold_ns: 0,
            hold_histogram: [0; HOLD_BUCKETS],
        };
        stats.hold_histogram[3] = 10;
        assert_eq!(stats.wait_quantile_ns(1.0), 0, "none waited");
        // 99 waits of 512 to 1023 ns, one of 2^20 or more.
        stats.wait_histogram[10] = 99;
        stats.wait_histogram[21] = 1;
        assert_eq!(stats.wait_quantile_ns(0.5), 1023);
        assert_eq!(stats.wait_quantile_ns(0.99), 1023);
        assert_eq!(stats.wait_quantile_ns(1.0), (1 << 21) - 1);
        assert_eq!(stats.hold_quantile_ns(1.0), 7);
    }
}
