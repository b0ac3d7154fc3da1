//! [`DurableTracker`]: a [`Tracker`] whose every acknowledged event
//! survives a crash.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::snapshot_file::{self, DEFAULT_KEEP, Written};
use super::tracker_snapshot::SnapshotError;
use super::{EventLog, LogEvent, LogOptions, Lsn, PersistError, Recovery};
use crate::clock::Timestamp;
use crate::config::TrackerBuilder;
use crate::error::TrackerError;
use crate::report::Recorded;
use crate::tracker::Tracker;

/// A [`Tracker`] with an event log and snapshots in a data directory
/// (`<dir>/log`, `<dir>/snapshots`).
///
/// A wrapper rather than methods on `Tracker`, so that a tracker without
/// persistence carries no log handle and pays nothing, and so that the
/// one rule durability rests on lives in one place: **an event is applied
/// to the tracker, then appended to the log, and only then acknowledged**
/// (returned from [`record`](Self::record), per the log's
/// [`SyncPolicy`](super::SyncPolicy)). Queries go to [`tracker`](Self::tracker).
///
/// Recovery loads the newest snapshot, then replays the log after it;
/// replaying an event the snapshot already holds changes nothing, because
/// recording is idempotent (with a TTL a visitor keeps its latest time).
///
/// ```
/// use tracker_core::persist::{DurableTracker, LogOptions};
/// use tracker_core::Tracker;
///
/// let dir = tempfile::tempdir()?;
/// let (durable, _) = DurableTracker::open(dir.path(), Tracker::builder(), LogOptions::default())?;
/// durable.record("alice", "https://example.com/")?;
/// durable.snapshot()?;
/// durable.record("bob", "https://example.com/")?;
/// drop(durable); // or a crash
///
/// let (durable, report) = DurableTracker::open(dir.path(), Tracker::builder(), LogOptions::default())?;
/// assert_eq!(report.replayed, 1);
/// assert_eq!(durable.tracker().distinct("https://example.com/")?.visitors, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DurableTracker {
    tracker: Tracker,
    log: EventLog,
    snapshots: PathBuf,
    /// Serialises snapshots: two at once would race on the files.
    snapshotting: Mutex<()>,
}

/// What [`DurableTracker::open`] found and did.
#[derive(Debug)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The snapshot loaded, if any.
    pub snapshot: Option<PathBuf>,
    /// The log position the snapshot covers (replay started there).
    pub snapshot_covers: Lsn,
    /// Newer snapshots that were damaged and passed over (log them).
    pub skipped_snapshots: Vec<PersistError>,
    /// The log's recovery: events read, torn tail cut, salvage.
    pub log: Recovery,
    /// Events replayed into the tracker (including stale ones).
    pub replayed: u64,
    /// Replayed events the tracker refused (for example under a smaller
    /// memory budget with [`MemoryPolicy::Reject`](crate::MemoryPolicy::Reject)):
    /// lost, worth an error in the logs.
    pub refused: u64,
    /// The first refusal's reason.
    pub first_refusal: Option<TrackerError>,
}

/// Why a [`DurableTracker`] operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum DurableError {
    /// The log or snapshot files failed (I/O, damage).
    Persist(PersistError),
    /// The snapshot's payload could not be restored.
    Snapshot(SnapshotError),
    /// The event was refused by the tracker (nothing was logged).
    Tracker(TrackerError),
    /// The log holds events but no snapshot says which hash key made
    /// their visitor hashes, and none was given: set it explicitly.
    UnknownHashKey,
}

impl fmt::Display for DurableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurableError::Persist(e) => e.fmt(f),
            DurableError::Snapshot(e) => e.fmt(f),
            DurableError::Tracker(e) => e.fmt(f),
            DurableError::UnknownHashKey => write!(
                f,
                "the event log has events but there is no snapshot to take the hash key from; set it explicitly"
            ),
        }
    }
}

impl std::error::Error for DurableError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DurableError::Persist(e) => Some(e),
            DurableError::Snapshot(e) => Some(e),
            DurableError::Tracker(e) => Some(e),
            DurableError::UnknownHashKey => None,
        }
    }
}

impl From<PersistError> for DurableError {
    fn from(e: PersistError) -> Self {
        DurableError::Persist(e)
    }
}

impl From<SnapshotError> for DurableError {
    fn from(e: SnapshotError) -> Self {
        DurableError::Snapshot(e)
    }
}

impl From<TrackerError> for DurableError {
    fn from(e: TrackerError) -> Self {
        DurableError::Tracker(e)
    }
}

impl DurableTracker {
    /// Opens the data directory `dir` (created if missing): restores the
    /// newest valid snapshot under `builder`'s settings (see
    /// [`Tracker::restore_snapshot`] for which must agree), replays the
    /// log after it, and reports what it found.
    ///
    /// On a first start (no snapshot) it writes one at once, so that the
    /// hash key is on disk before any event whose hash depends on it.
    ///
    /// Errors: [`DurableError::Snapshot`] for a snapshot that conflicts
    /// with `builder` or cannot be decoded; [`DurableError::Persist`] for
    /// I/O and damage beyond a torn tail; [`DurableError::UnknownHashKey`]
    /// for a log without a snapshot and no explicit key.
    pub fn open(
        dir: impl AsRef<Path>,
        builder: TrackerBuilder,
        options: LogOptions,
    ) -> Result<(DurableTracker, RecoveryReport), DurableError> {
        let dir = dir.as_ref();
        let snapshots = dir.join("snapshots");
        let explicit_key = builder.has_hash_key();
        let (tracker, snapshot, covers, skipped) = match snapshot_file::read_newest(&snapshots)? {
            Some(snap) => {
                let tracker = Tracker::restore_snapshot(&snap.payload, builder)?;
                (tracker, Some(snap.path), snap.covers, snap.skipped)
            }
            None => (
                builder
                    .build()
                    .map_err(|e| DurableError::Snapshot(e.into()))?,
                None,
                Lsn(0),
                Vec::new(),
            ),
        };
        let (mut replayed, mut refused, mut first_refusal) = (0, 0, None);
        let (log, recovery) =
            EventLog::open_replaying(dir.join("log"), options, covers, |_, event| {
                replayed += 1;
                let at = Some(Timestamp::from_millis(event.at_millis));
                if let Err(e) = tracker.record_hashed(event.visitor_hash, event.url, at) {
                    refused += 1;
                    first_refusal.get_or_insert(e);
                }
            })?;
        if snapshot.is_none() && replayed > 0 && !explicit_key {
            return Err(DurableError::UnknownHashKey);
        }
        let durable = DurableTracker {
            tracker,
            log,
            snapshots,
            snapshotting: Mutex::new(()),
        };
        if snapshot.is_none() {
            durable.snapshot()?;
        }
        let report = RecoveryReport {
            snapshot,
            snapshot_covers: covers,
            skipped_snapshots: skipped,
            log: recovery,
            replayed,
            refused,
            first_refusal,
        };
        Ok((durable, report))
    }

    /// Records that `visitor` visited `url` now: into the tracker, then
    /// into the log; returns once the log's sync policy says the event is
    /// durable. Every event is logged, duplicates too: with a TTL a
    /// duplicate refreshes the visitor's time, and without one a duplicate
    /// may be another thread's event not yet appended, which this one's
    /// acknowledgement must not outrun. Stale events (older than the TTL)
    /// change nothing and are not logged.
    ///
    /// Errors: [`DurableError::Tracker`] (invalid input, memory full;
    /// nothing logged); [`DurableError::Persist`] if the append failed:
    /// the event is counted in memory but not durable, so the caller must
    /// not acknowledge it.
    pub fn record(&self, visitor: &str, url: &str) -> Result<Recorded, DurableError> {
        let now = self.tracker.config().clock.now();
        let hash = self.tracker.hash_visitor(visitor.as_bytes())?;
        let (recorded, page) = self.tracker.record_hashed(hash, url, Some(now))?;
        if recorded != Recorded::Stale {
            self.log.append(&LogEvent {
                visitor_hash: hash,
                at_millis: now.as_millis(),
                url: &page,
            })?;
        }
        Ok(recorded)
    }

    /// Writes a snapshot and drops the log segments no kept snapshot
    /// needs: rotates the log, writes the state as covering everything
    /// before the rotation, then removes the segments before what the
    /// oldest kept snapshot covers.
    ///
    /// Records go on meanwhile. One recorded between the rotation and the
    /// snapshot's read of its stripe is both in the snapshot and after the
    /// covered position in the log: replayed once more at recovery, which
    /// changes nothing.
    pub fn snapshot(&self) -> Result<Written, DurableError> {
        let _one_at_a_time = self
            .snapshotting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let covers = self.log.rotate()?;
        let written = snapshot_file::write_atomic(&self.snapshots, covers, DEFAULT_KEEP, |w| {
            self.tracker.write_snapshot(w)
        })?;
        self.log.remove_segments_before(written.keep_log_from)?;
        Ok(written)
    }

    /// The tracker, for queries (`distinct`, `top`, `stats`). Recording
    /// through it directly would bypass the log.
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// The event log (its position, an explicit sync).
    pub fn log(&self) -> &EventLog {
        &self.log
    }
}

impl fmt::Debug for DurableTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableTracker")
            .field("tracker", &self.tracker)
            .field("log_end", &self.log.end())
            .field("snapshots", &self.snapshots)
            .finish_non_exhaustive()
    }
}
