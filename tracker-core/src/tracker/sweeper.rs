//! A background thread that runs the expiry sweep on a timer.
//!
//! Records already run small sweep steps as they go (see
//! [`Tracker::sweep`]), which is enough while traffic flows. When it stops,
//! nothing would give expired memory back; the sweeper covers that. It
//! holds only a weak reference, so it never keeps a tracker alive, and it
//! stops (and is joined) when its handle is dropped.

use std::sync::Arc;
use std::time::Duration;

use crate::Tracker;
use crate::background::Periodic;

/// The handle of a running sweeper thread; dropping it stops the thread.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use tracker_core::Tracker;
///
/// let tracker = Arc::new(Tracker::builder().ttl(Duration::from_secs(3_600)).build()?);
/// let sweeper = tracker.spawn_sweeper(Duration::from_millis(100), 4_096);
/// tracker.record("v", "/a")?;
/// drop(sweeper); // stops and joins the thread
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Sweeper {
    _thread: Periodic,
}

impl Tracker {
    /// Starts a thread that runs [`sweep`](Self::sweep) over `buckets`
    /// buckets every `every`, until the returned handle is dropped or the
    /// tracker is. Each call holds one stripe lock at a time for one
    /// bounded step (32 buckets, 8,192 visitor-table slots), so readers
    /// and writers wait a few hundred microseconds at most.
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration, buckets: usize) -> Sweeper {
        Sweeper {
            _thread: Periodic::spawn("tracker-sweeper", every, self, move |tracker: &Tracker| {
                tracker.sweep(buckets);
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ManualClock, Timestamp};

    #[test]
    fn reclaims_expired_pages_without_records_and_stops_on_drop() {
        let clock = ManualClock::new(Timestamp::from_millis(0));
        let tracker = Arc::new(
            Tracker::builder()
                .ttl(Duration::from_secs(5))
                .clock(Arc::new(clock.clone()))
                .build()
                .unwrap(),
        );
        for i in 0..500 {
            tracker.record("v", &format!("/{i}")).unwrap();
        }
        let sweeper = tracker.spawn_sweeper(Duration::from_millis(1), 64);
        clock.advance(Duration::from_secs(5));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while tracker.stats().pages > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(tracker.stats().pages, 0);
        drop(sweeper);
        // The thread is gone: only this test holds the tracker.
        assert_eq!(Arc::strong_count(&tracker), 1);
    }
}
