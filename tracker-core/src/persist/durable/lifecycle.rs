//! A tracker's life in a process: its background jobs at default cadences
//! ([`Background`], [`Cadence`]) and a clean exit
//! ([`DurableTracker::close`]), so that an embedding program does not
//! have to work out the order itself.

use std::sync::Arc;
use std::time::Duration;

use super::snapshotter::{SnapshotSchedule, Snapshotter};
use super::{DurableError, DurableTracker};
use crate::persist::storage::snapshot_file::Written;
use crate::tracker::Tracker;
use crate::tracker::sweeper::Sweeper;

/// How often the background jobs run.
///
/// ```
/// use std::time::Duration;
/// use tracker_core::persist::{Cadence, SnapshotSchedule};
///
/// let cadence = Cadence::default()
///     .sweep(Duration::from_secs(1), 1_024)
///     .snapshots(SnapshotSchedule::default().every(Duration::from_secs(60)));
/// assert_eq!(cadence.sweep_every(), Duration::from_secs(1));
/// assert_eq!(Cadence::default().sweep_buckets(), 4_096);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    sweep_every: Duration,
    sweep_buckets: usize,
    snapshots: SnapshotSchedule,
}

impl Default for Cadence {
    /// The expiry sweep every 100 ms over 4,096 page-table buckets: up to
    /// 40,960 pages a second, in steps that each hold one stripe lock for
    /// at most 32 buckets. Snapshots on [`SnapshotSchedule::default`].
    fn default() -> Self {
        Cadence {
            sweep_every: Duration::from_millis(100),
            sweep_buckets: 4_096,
            snapshots: SnapshotSchedule::default(),
        }
    }
}

impl Cadence {
    /// Runs [`Tracker::sweep`] over `buckets` buckets every `every`.
    pub fn sweep(mut self, every: Duration, buckets: usize) -> Self {
        self.sweep_every = every;
        self.sweep_buckets = buckets;
        self
    }

    /// Snapshots a durable tracker on `schedule`.
    pub fn snapshots(mut self, schedule: SnapshotSchedule) -> Self {
        self.snapshots = schedule;
        self
    }

    /// How often the sweep runs.
    pub fn sweep_every(&self) -> Duration {
        self.sweep_every
    }

    /// Page-table buckets each sweep visits.
    pub fn sweep_buckets(&self) -> usize {
        self.sweep_buckets
    }

    /// When snapshots are written.
    pub fn snapshot_schedule(&self) -> SnapshotSchedule {
        self.snapshots
    }
}

/// The background jobs of one tracker, as one handle: the expiry
/// [`Sweeper`] (with a TTL: records sweep as they go, the thread gives
/// memory back once they stop) and, for a [`DurableTracker`], the
/// [`Snapshotter`]. Dropping the handle stops and joins both (a snapshot
/// being written is finished first).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tracker_core::persist::Cadence;
/// use tracker_core::Tracker;
///
/// let tracker = Arc::new(Tracker::builder().ttl(Duration::from_secs(3_600)).build()?);
/// let background = tracker.start_background(Cadence::default());
/// assert!(background.is_sweeping());
/// tracker.record("v", "/a")?;
/// drop(background); // stops and joins the sweeper
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "dropping the handle stops the jobs"]
pub struct Background {
    sweeper: Option<Sweeper>,
    snapshotter: Option<Snapshotter>,
}

impl Background {
    /// Whether a sweeper runs (the tracker has a TTL).
    pub fn is_sweeping(&self) -> bool {
        self.sweeper.is_some()
    }

    /// Whether a snapshotter runs (the tracker is durable).
    pub fn is_snapshotting(&self) -> bool {
        self.snapshotter.is_some()
    }
}

impl Tracker {
    /// Starts the jobs an in-memory tracker needs: the expiry sweeper at
    /// `cadence` if the tracker has a TTL, nothing otherwise. They hold
    /// only a weak reference, and stop when the handle is dropped.
    pub fn start_background(self: &Arc<Self>, cadence: Cadence) -> Background {
        Background {
            sweeper: self
                .config()
                .ttl
                .map(|_| self.spawn_sweeper(cadence.sweep_every, cadence.sweep_buckets)),
            snapshotter: None,
        }
    }
}

impl DurableTracker {
    /// Starts the jobs a durable tracker needs: the expiry sweeper (with a
    /// TTL) and the snapshotter, at `cadence`. Each snapshot's outcome
    /// goes to `on_snapshot` (to log it: the core does no logging of its
    /// own). End with [`close`](Self::close).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tracker_core::persist::{Cadence, DurableTracker, LogOptions};
    /// use tracker_core::Tracker;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let (durable, _) = DurableTracker::open(dir.path(), Tracker::builder(), LogOptions::default())?;
    /// let durable = Arc::new(durable);
    /// let background = durable.start_background(Cadence::default(), |result| {
    ///     if let Err(e) = result {
    ///         eprintln!("snapshot failed: {e}");
    ///     }
    /// });
    /// durable.record("alice", "https://example.com/")?;
    /// let written = durable.close(background)?;
    /// assert!(written.is_some(), "the log grew, so closing snapshots");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start_background<F>(self: &Arc<Self>, cadence: Cadence, on_snapshot: F) -> Background
    where
        F: FnMut(Result<&Written, &DurableError>) + Send + 'static,
    {
        let mut background = self.tracker().start_background(cadence);
        background.snapshotter = Some(self.spawn_snapshotter(cadence.snapshots, on_snapshot));
        background
    }

    /// Closes the tracker for a clean exit: stops `background` first, so
    /// that no job runs beside what follows (a snapshot in progress is
    /// finished), then writes a final snapshot if anything was logged since
    /// the last one, so that the next start replays nothing. Returns that
    /// snapshot, or `None` when the newest one already held everything.
    ///
    /// A failed snapshot loses nothing: the log still holds every event,
    /// and the next start replays it. The tracker stays usable; events
    /// recorded after `close` are logged as usual, but no longer covered
    /// by a final snapshot.
    pub fn close(&self, background: Background) -> Result<Option<Written>, DurableError> {
        drop(background);
        if self.status().log_bytes_since_snapshot == 0 {
            return Ok(None);
        }
        self.snapshot().map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::storage::LogOptions;

    #[test]
    fn close_snapshots_only_what_the_log_added() {
        let dir = tempfile::tempdir().unwrap();
        let open = || DurableTracker::open(dir.path(), Tracker::builder(), LogOptions::default());
        let (durable, _) = open().unwrap();
        let durable = Arc::new(durable);
        let background = durable.start_background(Cadence::default(), |_| {});
        assert!(background.is_snapshotting() && !background.is_sweeping());
        assert!(durable.close(background).unwrap().is_none(), "nothing new");

        let background = durable.start_background(Cadence::default(), |_| {});
        durable.record("v", "https://example.com/").unwrap();
        assert!(durable.close(background).unwrap().is_some());
        // The jobs are gone: only this test holds the tracker.
        assert_eq!(Arc::strong_count(&durable), 1);
        drop(durable);

        let (durable, report) = open().unwrap();
        assert_eq!(report.replayed, 0, "the final snapshot held everything");
        let count = durable.tracker().distinct("https://example.com/").unwrap();
        assert_eq!(count.visitors, 1);
    }
}
