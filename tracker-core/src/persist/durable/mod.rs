//! [`DurableTracker`]: a [`Tracker`] whose every acknowledged event
//! survives a crash.

pub(crate) mod lifecycle;
pub(crate) mod snapshotter;

use std::fmt;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::storage::frame;
use super::storage::fs::ensure_dir;
use super::storage::segment::HEADER_LEN;
use super::storage::snapshot_file::{self, DEFAULT_KEEP, ReadError, Written};
use super::storage::{
    Append, EventLog, FsyncPolicy, LogEvent, LogOptions, Lsn, PersistError, Recovery,
};
use crate::error::TrackerError;
use crate::report::Recorded;
use crate::sync::{Mutex, lock};
use crate::time::TimeError;
use crate::time::clock::{TimeBound, Timestamp};
use crate::tracker::Tracker;
use crate::tracker::batch::RecordBatch;
use crate::tracker::config::TrackerBuilder;
use crate::tracker::snapshot::{HASH_KEY_END, SnapshotError, hash_key_of};

/// A [`Tracker`] with an event log and snapshots in a data directory
/// (`<dir>/log`, `<dir>/snapshots`, and `<dir>/LOCK`, locked while open so
/// that a second process cannot write the same files).
///
/// A wrapper rather than methods on `Tracker`, so that a tracker without
/// persistence carries no log handle and pays nothing, and so that the
/// one rule durability rests on lives in one place: **an event is applied
/// to the tracker, then appended to the log, and only then acknowledged**
/// (returned from [`record`](Self::record), per the log's
/// [`FsyncPolicy`]). Queries go to [`tracker`](Self::tracker).
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
    /// Shared so that a TTL sweeper can hold it too.
    tracker: Arc<Tracker>,
    log: EventLog,
    snapshots: PathBuf,
    /// Serialises snapshots: two at once would race on the files.
    snapshotting: Mutex<()>,
    /// What the last snapshots did; a separate lock from `snapshotting`, so
    /// that reading it never waits for a snapshot being written.
    history: Mutex<SnapshotHistory>,
    /// Held (with its advisory lock) until drop.
    _dir_lock: File,
}

/// An event applied by [`DurableTracker::submit`], on its way to the log.
#[derive(Debug)]
#[non_exhaustive]
pub struct Submitted {
    /// What the tracker did with it.
    pub recorded: Recorded,
    /// Completes once the event is as durable as the fsync policy says.
    pub durable: Append,
}

/// The reusable buffers of [`DurableTracker::submit_batch`] and the
/// outcome of each event of the last batch, in order.
#[derive(Debug, Default)]
pub struct DurableBatch {
    frames: Vec<u8>,
    outcomes: Vec<Result<Recorded, DurableError>>,
    /// The in-memory batch's scratch space.
    recorded: RecordBatch,
}

impl DurableBatch {
    /// Each event's outcome, in the order given.
    pub fn outcomes(&self) -> &[Result<Recorded, DurableError>] {
        &self.outcomes
    }

    /// How many events were accepted.
    pub fn accepted(&self) -> usize {
        self.outcomes.iter().filter(|o| o.is_ok()).count()
    }
}

/// What [`DurableTracker::status`] reports: the log and the snapshots.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DurableStatus {
    /// The data directory.
    pub dir: PathBuf,
    /// When appends are synced.
    pub sync: FsyncPolicy,
    /// The position the next append will get.
    pub log_end: Lsn,
    /// Log bytes appended after what the newest snapshot covers: what a
    /// restart would replay.
    pub log_bytes_since_snapshot: u64,
    /// The newest snapshot written or loaded by this process.
    pub last_snapshot: Option<SnapshotInfo>,
    /// Snapshots written by this process.
    pub snapshots_written: u64,
    /// Snapshots this process tried to write and failed.
    pub snapshot_failures: u64,
}

/// One snapshot, as [`DurableStatus::last_snapshot`] describes it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// The log position it covers.
    pub covers: Lsn,
    /// When it was written (or, for the one loaded at open, loaded).
    pub at: SystemTime,
    /// Payload bytes (0 for the one loaded at open: not re-measured).
    pub payload_bytes: u64,
    /// How long writing it took (zero for the one loaded at open).
    pub took: Duration,
}

#[derive(Debug)]
struct SnapshotHistory {
    last: Option<SnapshotInfo>,
    /// Opening counts as one: the state was just loaded or first written.
    last_attempt: Instant,
    last_failed: bool,
    written: u64,
    failed: u64,
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
    /// Another process (or another `DurableTracker` in this one) has the
    /// data directory open.
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
    /// The snapshots directory holds snapshots made under different hash
    /// keys: one was copied in from another data directory. Restoring the
    /// newest and replaying this log into it would count garbage.
    ForeignSnapshot {
        /// The newest valid snapshot.
        newest: PathBuf,
        /// A snapshot whose hash key differs from the newest's.
        other: PathBuf,
    },
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
            DurableError::Locked { dir } => write!(
                f,
                "the data directory {} is in use by another process",
                dir.display()
            ),
            DurableError::ForeignSnapshot { newest, other } => write!(
                f,
                "the snapshots {} and {} were made under different hash keys: one comes from another data directory; remove it",
                newest.display(),
                other.display()
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
            DurableError::UnknownHashKey
            | DurableError::Locked { .. }
            | DurableError::ForeignSnapshot { .. } => None,
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
    /// Errors: [`DurableError::Locked`] when another process has `dir`
    /// open; [`DurableError::Snapshot`] for a snapshot that conflicts
    /// with `builder` or cannot be decoded; [`DurableError::Persist`] for
    /// I/O and damage beyond a torn tail; [`DurableError::UnknownHashKey`]
    /// for a log without a snapshot and no explicit key;
    /// [`DurableError::ForeignSnapshot`] when the snapshots disagree on
    /// the hash key (one was copied in from another data directory).
    pub fn open(
        dir: impl AsRef<Path>,
        builder: TrackerBuilder,
        options: LogOptions,
    ) -> Result<(DurableTracker, RecoveryReport), DurableError> {
        let dir = dir.as_ref();
        let dir_lock = lock_dir(dir)?;
        let snapshots = dir.join("snapshots");
        let explicit_key = builder.has_hash_key();
        // Decoded as it is read: the open holds the state it rebuilds,
        // never a copy of the file beside it.
        let restored = snapshot_file::read_newest_with(&snapshots, |payload, len| {
            Tracker::restore_snapshot_from(payload, len, builder.clone())
        });
        let restored = match restored {
            Ok(restored) => restored,
            Err(ReadError::Persist(e)) => return Err(e.into()),
            Err(ReadError::Decode(e)) => return Err(e.into()),
        };
        let (tracker, snapshot, covers, skipped) = match restored {
            Some(snap) => {
                check_same_deployment(&snapshots, &snap.path, snap.value.config().hash_key)?;
                (snap.value, Some(snap.path), snap.covers, snap.skipped)
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
                let at = Timestamp::from_millis(event.at_millis);
                match tracker.record_visitor_hash(event.visitor_hash, event.url, at) {
                    // Aged out of the retention since it was logged.
                    Ok(_) | Err(TrackerError::Time(TimeError::BeforeRetention { .. })) => {}
                    Err(e) => {
                        refused += 1;
                        first_refusal.get_or_insert(e);
                    }
                }
            })?;
        if snapshot.is_none() && replayed > 0 && !explicit_key {
            return Err(DurableError::UnknownHashKey);
        }
        let history = SnapshotHistory {
            last: snapshot.as_ref().map(|_| SnapshotInfo {
                covers,
                at: SystemTime::now(),
                payload_bytes: 0,
                took: Duration::ZERO,
            }),
            last_attempt: Instant::now(),
            last_failed: false,
            written: 0,
            failed: 0,
        };
        let durable = DurableTracker {
            tracker: Arc::new(tracker),
            log,
            snapshots,
            snapshotting: Mutex::new(()),
            history: Mutex::new(history),
            _dir_lock: dir_lock,
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
        let submitted = self.submit(visitor, url)?;
        submitted.durable.wait()?;
        Ok(submitted.recorded)
    }

    /// Records as [`record`](Self::record) does, without waiting for the
    /// log: the event is applied and its position in the log fixed when
    /// this returns; acknowledge it only once [`Submitted::durable`]
    /// completes (await it from async code: no thread waits meanwhile).
    ///
    /// ```
    /// use tracker_core::persist::{DurableTracker, LogOptions};
    /// use tracker_core::{Recorded, Tracker};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let (durable, _) = DurableTracker::open(dir.path(), Tracker::builder(), LogOptions::default())?;
    /// let submitted = durable.submit("alice", "https://example.com/")?;
    /// assert_eq!(submitted.recorded, Recorded::New);
    /// submitted.durable.wait()?; // or `.await`
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit(&self, visitor: &str, url: &str) -> Result<Submitted, DurableError> {
        self.submit_at(visitor, url, None)
    }

    /// [`record`](Self::record) of a visit that happened at `at` (a
    /// [`Timestamp`] or a [`SystemTime`](std::time::SystemTime), or an
    /// `Option<Timestamp>`: now if `None`), for back-fill: as
    /// [`Tracker::record_at`] takes it (an event older than the retention
    /// is refused), logged with its time.
    ///
    /// ```
    /// use tracker_core::persist::{DurableTracker, LogOptions};
    /// use tracker_core::{Timestamp, Tracker};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let (durable, _) = DurableTracker::open(dir.path(), Tracker::builder(), LogOptions::default())?;
    /// let at = Timestamp::parse("2026-11-02T09:00:00Z", Timestamp::default())?;
    /// assert!(durable.record_at("alice", "https://example.com/", Some(at))?.is_new());
    /// assert!(durable.record_at("bob", "https://example.com/", at)?.is_new());
    /// let day = durable.tracker().distinct_between("https://example.com/", at, None)?;
    /// assert_eq!(day.distinct.visitors, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn record_at(
        &self,
        visitor: &str,
        url: &str,
        at: impl TimeBound,
    ) -> Result<Recorded, DurableError> {
        // Converted here, so that what follows is compiled once, not per
        // time type of the callers.
        let submitted = self.submit_at_time(visitor, url, at.time_bound())?;
        submitted.durable.wait()?;
        Ok(submitted.recorded)
    }

    /// [`submit`](Self::submit) of a visit that happened at `at` (now if
    /// `None`); see [`record_at`](Self::record_at).
    pub fn submit_at(
        &self,
        visitor: &str,
        url: &str,
        at: impl TimeBound,
    ) -> Result<Submitted, DurableError> {
        self.submit_at_time(visitor, url, at.time_bound())
    }

    fn submit_at_time(
        &self,
        visitor: &str,
        url: &str,
        at: Option<Timestamp>,
    ) -> Result<Submitted, DurableError> {
        let at = at.unwrap_or_else(|| self.tracker.config().clock.now());
        let hash = self.tracker.hash_visitor(visitor.as_bytes())?;
        let (recorded, page) = self.tracker.record_hashed(hash, url, Some(at))?;
        let durable = if recorded == Recorded::Stale {
            Append::ready(Ok(self.log.end()))
        } else {
            self.log.submit(&[LogEvent {
                visitor_hash: hash,
                at_millis: at.as_millis(),
                url: &page,
            }])
        };
        Ok(Submitted { recorded, durable })
    }

    /// Records a batch of `(visitor, url)` events now, through
    /// [`Tracker::record_batch`] (the same counts and refusals as
    /// [`record`](Self::record) one by one), each with its own outcome in
    /// `batch` (a refused event never refuses its neighbours), and appends
    /// all the accepted ones to the log as one contiguous write (in stripe
    /// order, not the batch's: replaying them counts the same).
    /// Acknowledge them only once the returned [`Append`] completes; if it
    /// fails, none of the batch is durable (all are counted in memory).
    ///
    /// `batch` is reused from call to call, so a steady stream of batches
    /// allocates nothing per event (one list of the events per batch).
    ///
    /// ```
    /// use tracker_core::persist::{DurableBatch, DurableTracker, LogOptions};
    /// use tracker_core::Tracker;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let (durable, _) = DurableTracker::open(dir.path(), Tracker::builder(), LogOptions::default())?;
    /// let mut batch = DurableBatch::default();
    /// let events = [("alice", "https://example.com/"), ("bob", ""), ("bob", "https://example.com/")];
    /// durable.submit_batch(events, &mut batch).wait()?;
    /// assert_eq!(batch.accepted(), 2);
    /// assert!(batch.outcomes()[1].is_err());
    /// assert_eq!(durable.tracker().distinct("https://example.com/")?.visitors, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit_batch<'e>(
        &self,
        events: impl IntoIterator<Item = (&'e str, &'e str)>,
        batch: &mut DurableBatch,
    ) -> Append {
        batch.frames.clear();
        batch.outcomes.clear();
        // One allocation per batch: `record_batch` takes a slice.
        let events: Vec<(&str, &str)> = events.into_iter().collect();
        let at_millis = self.tracker.config().clock.now().as_millis();
        let mut failed = Vec::new();
        let frames = &mut batch.frames;
        self.tracker.record_batch_with(
            &events,
            &mut batch.recorded,
            Some(|index, visitor_hash, url: &str| {
                let event = LogEvent {
                    visitor_hash,
                    at_millis,
                    url,
                };
                if let Err(e) = frame::encode(frames, &event) {
                    failed.push((index, e));
                }
            }),
        );
        batch.outcomes.extend(
            batch
                .recorded
                .outcomes()
                .iter()
                .map(|o| o.clone().map_err(DurableError::from)),
        );
        for (index, e) in failed {
            batch.outcomes[index] = Err(e.into());
        }
        self.log.submit_encoded(&batch.frames)
    }

    /// [`submit_batch`](Self::submit_batch) of `(visitor, url, at)`
    /// events, each at its own time (now if `None`), logged with it as
    /// [`submit_at`](Self::submit_at) logs one. A batch with no time of its
    /// own is `submit_batch`'s; one with times is recorded event by event.
    pub fn submit_batch_at<'e>(
        &self,
        events: impl IntoIterator<Item = (&'e str, &'e str, Option<Timestamp>)>,
        batch: &mut DurableBatch,
    ) -> Append {
        let events: Vec<(&str, &str, Option<Timestamp>)> = events.into_iter().collect();
        if events.iter().all(|&(_, _, at)| at.is_none()) {
            return self.submit_batch(events.iter().map(|&(v, u, _)| (v, u)), batch);
        }
        batch.frames.clear();
        batch.outcomes.clear();
        let now = self.tracker.config().clock.now();
        // One by one: `record_batch` records every event at one time.
        for (visitor, url, at) in events {
            let outcome = self.apply(visitor, url, at.unwrap_or(now), &mut batch.frames);
            batch.outcomes.push(outcome);
        }
        self.log.submit_encoded(&batch.frames)
    }

    /// [`submit_batch`](Self::submit_batch), waiting for the log.
    pub fn record_batch<'e>(
        &self,
        events: impl IntoIterator<Item = (&'e str, &'e str)>,
        batch: &mut DurableBatch,
    ) -> Result<(), DurableError> {
        self.submit_batch(events, batch).wait()?;
        Ok(())
    }

    /// Applies one event of a batch, at `at`, and encodes its log frame.
    fn apply(
        &self,
        visitor: &str,
        url: &str,
        at: Timestamp,
        frames: &mut Vec<u8>,
    ) -> Result<Recorded, DurableError> {
        let hash = self.tracker.hash_visitor(visitor.as_bytes())?;
        let (recorded, page) = self.tracker.record_hashed(hash, url, Some(at))?;
        if recorded != Recorded::Stale {
            let event = LogEvent {
                visitor_hash: hash,
                at_millis: at.as_millis(),
                url: &page,
            };
            frame::encode(frames, &event)?;
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
        let _one_at_a_time = lock(&self.snapshotting);
        let started = Instant::now();
        let result = self.write_snapshot();
        let mut history = lock(&self.history);
        history.last_attempt = started;
        history.last_failed = result.is_err();
        match &result {
            Ok((covers, written)) => {
                history.written += 1;
                history.last = Some(SnapshotInfo {
                    covers: *covers,
                    at: SystemTime::now(),
                    payload_bytes: written.payload_len,
                    took: started.elapsed(),
                });
            }
            Err(_) => history.failed += 1,
        }
        result.map(|(_, written)| written)
    }

    fn write_snapshot(&self) -> Result<(Lsn, Written), DurableError> {
        let covers = self.log.rotate()?;
        let written = snapshot_file::write_atomic(&self.snapshots, covers, DEFAULT_KEEP, |w| {
            self.tracker.write_snapshot(w)
        })?;
        self.log.remove_segments_before(written.keep_log_from)?;
        Ok((covers, written))
    }

    /// Whether a snapshot is due under `schedule`: `every` has passed since
    /// the last attempt, or the log has grown by `log_bytes` since the last
    /// snapshot (not retried on size alone after a failure, so a full disk
    /// is retried every `every`, not in a loop). Never when nothing was
    /// logged since the last snapshot.
    pub(crate) fn snapshot_due(&self, every: Duration, log_bytes: u64) -> bool {
        let history = lock(&self.history);
        let pending = self.log_bytes_since_snapshot(&history);
        if pending == 0 {
            return false;
        }
        let waited = history.last_attempt.elapsed() >= every;
        waited || (!history.last_failed && pending >= log_bytes)
    }

    fn log_bytes_since_snapshot(&self, history: &SnapshotHistory) -> u64 {
        let covered = history.last.as_ref().map_or(0, |s| s.covers.0);
        // A rotation leaves a fresh segment's header past what a snapshot
        // covers; that is not an event.
        (self.log.end().0.saturating_sub(covered)).saturating_sub(HEADER_LEN as u64)
    }

    /// The log's position, the last snapshot, and the counts of snapshots
    /// written and failed: what a service reports about durability.
    ///
    /// ```
    /// use tracker_core::persist::{DurableTracker, LogOptions};
    /// use tracker_core::Tracker;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let (durable, _) = DurableTracker::open(dir.path(), Tracker::builder(), LogOptions::default())?;
    /// assert_eq!(durable.status().snapshots_written, 1, "the first start writes one");
    /// durable.record("alice", "https://example.com/")?;
    /// assert!(durable.status().log_bytes_since_snapshot > 0);
    /// durable.snapshot()?;
    /// assert_eq!(durable.status().log_bytes_since_snapshot, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn status(&self) -> DurableStatus {
        let history = lock(&self.history);
        DurableStatus {
            dir: self
                .snapshots
                .parent()
                .map_or_else(PathBuf::new, Path::to_path_buf),
            sync: self.log.policy(),
            log_end: self.log.end(),
            log_bytes_since_snapshot: self.log_bytes_since_snapshot(&history),
            last_snapshot: history.last.clone(),
            snapshots_written: history.written,
            snapshot_failures: history.failed,
        }
    }

    /// The tracker, for queries (`distinct`, `top`, `stats`) and for a TTL
    /// [`sweeper`](Tracker::spawn_sweeper). Recording through it directly
    /// would bypass the log.
    pub fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }

    /// The event log (its position, an explicit sync).
    pub fn log(&self) -> &EventLog {
        &self.log
    }
}

/// Refuses a snapshots directory where another snapshot than `newest`
/// was made under another hash key than `key`: every snapshot of one data
/// directory carries its one key, so such a file was copied in from
/// another deployment, and which of the two belongs here is for an
/// operator to say. (Otherwise this log would be replayed into the
/// other's state, or set aside as covered by it.)
fn check_same_deployment(snapshots: &Path, newest: &Path, key: u64) -> Result<(), DurableError> {
    for (other, head) in snapshot_file::payload_heads(snapshots, newest, HASH_KEY_END)? {
        if hash_key_of(&head).is_some_and(|theirs| theirs != key) {
            return Err(DurableError::ForeignSnapshot {
                newest: newest.to_path_buf(),
                other,
            });
        }
    }
    Ok(())
}

/// Creates `dir` and takes the exclusive advisory lock on `dir/LOCK`, so
/// that two processes never append to one log (their LSNs would collide)
/// or snapshot over each other. The OS releases it when the process dies,
/// so a crash never leaves a stale lock behind.
fn lock_dir(dir: &Path) -> Result<File, DurableError> {
    ensure_dir(dir)?;
    let path = dir.join("LOCK");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| PersistError::io(&path, "create", e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(DurableError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(PersistError::io(&path, "lock", e).into()),
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
