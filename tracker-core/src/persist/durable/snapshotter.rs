//! [`Snapshotter`]: a background thread that snapshots a
//! [`DurableTracker`] on a schedule, so that a restart replays a bounded
//! stretch of log.

use std::sync::Arc;
use std::time::Duration;

use super::super::storage::snapshot_file::Written;
use super::{DurableError, DurableTracker};
use crate::background::Periodic;

/// When a [`Snapshotter`] writes a snapshot: once `every` has passed since
/// the last one, or as soon as the log has grown by `log_bytes` since it,
/// whichever comes first, and never while nothing new was logged.
///
/// Time bounds how stale the newest snapshot gets on a quiet service; size
/// bounds restart time on a busy one (a restart replays the log after the
/// snapshot, about 40 bytes per event plus the URL).
///
/// ```
/// use std::time::Duration;
/// use tracker_core::persist::SnapshotSchedule;
///
/// let schedule = SnapshotSchedule::default().every(Duration::from_secs(60)).log_bytes(64 << 20);
/// assert_eq!(schedule.check_every(), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSchedule {
    every: Duration,
    log_bytes: u64,
}

impl Default for SnapshotSchedule {
    /// Every 5 minutes, or after 256 MiB of log.
    fn default() -> Self {
        SnapshotSchedule {
            every: Duration::from_secs(300),
            log_bytes: 256 << 20,
        }
    }
}

impl SnapshotSchedule {
    /// The longest time between snapshots while events arrive.
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// The log growth that triggers a snapshot before `every` has passed.
    pub fn log_bytes(mut self, bytes: u64) -> Self {
        self.log_bytes = bytes;
        self
    }

    /// How often the thread looks at the log: every second, or `every` if
    /// shorter (the size trigger is not worth a tighter loop).
    pub fn check_every(&self) -> Duration {
        self.every
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(1))
    }
}

/// The handle of a running snapshot thread; dropping it stops the thread
/// (after the snapshot in progress, if any).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tracker_core::persist::{DurableTracker, LogOptions, SnapshotSchedule};
/// use tracker_core::Tracker;
///
/// let dir = tempfile::tempdir()?;
/// let (durable, _) = DurableTracker::open(dir.path(), Tracker::builder(), LogOptions::default())?;
/// let durable = Arc::new(durable);
/// let schedule = SnapshotSchedule::default().every(Duration::from_millis(5));
/// let snapshotter = durable.spawn_snapshotter(schedule, |result| {
///     if let Err(e) = result {
///         eprintln!("snapshot failed: {e}");
///     }
/// });
/// durable.record("alice", "https://example.com/")?;
/// while durable.status().log_bytes_since_snapshot > 0 {
///     std::thread::sleep(Duration::from_millis(1));
/// }
/// drop(snapshotter);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Snapshotter {
    _thread: Periodic,
}

impl DurableTracker {
    /// Starts a thread that calls [`snapshot`](Self::snapshot) whenever
    /// `schedule` says one is due, and hands each outcome to `on_done`
    /// (to log it: the core does no logging of its own). It holds a weak
    /// reference and stops when the handle or the tracker is dropped.
    pub fn spawn_snapshotter<F>(
        self: &Arc<Self>,
        schedule: SnapshotSchedule,
        mut on_done: F,
    ) -> Snapshotter
    where
        F: FnMut(Result<&Written, &DurableError>) + Send + 'static,
    {
        let tick = move |durable: &DurableTracker| {
            if durable.snapshot_due(schedule.every, schedule.log_bytes) {
                on_done(durable.snapshot().as_ref());
            }
        };
        Snapshotter {
            _thread: Periodic::spawn("tracker-snapshotter", schedule.check_every(), self, tick),
        }
    }
}
