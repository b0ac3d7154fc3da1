//! Durability: the files under a tracker's state, their formats, group
//! commit and recovery, and [`DurableTracker`], the tracker on top.
//!
//! Two layers, in two private modules re-exported here:
//!
//! - **storage** knows files, not trackers: the event log (segments,
//!   frames, group commit, fsync policies, torn-tail recovery, the disk
//!   and file-system seams the fault tests inject into) and the snapshot
//!   container ([`snapshot_file`]), whose payload is opaque bytes;
//! - **durable** is what is specific to a tracker: [`DurableTracker`]
//!   (record = apply, log, acknowledge; open = snapshot + replay; the
//!   directory lock; [`close`](DurableTracker::close)), the snapshot
//!   schedule ([`SnapshotSchedule`]) and the [`Background`] jobs. The
//!   payload it stores is the tracker's own state codec
//!   ([`tracker_snapshot`]), which lives with the tracker's data.
//!
//! Two kinds of file live in a data directory (the caller chooses the
//! directories; one each is the usual layout):
//!
//! - the **event log** ([`EventLog`]): every event is appended before it
//!   is acknowledged, in segment files `log-<20-digit LSN>.seg`;
//! - **snapshots** ([`snapshot_file`]): the whole state at a log position,
//!   `snapshot-<20-digit LSN>.snap`, written atomically.
//!
//! Recovery reads the newest valid snapshot, then replays the log from the
//! position it covers. Replaying an event the snapshot already holds is
//! harmless because recording is idempotent. The snapshot payload is
//! opaque here: encoding the tracker's state is the caller's business.
//!
//! Every byte read back is checked (CRC-32C per frame, per header and per
//! snapshot payload). Damage never panics and is never silently used: a
//! torn tail of the log is cut and reported, anything else is a typed
//! [`PersistError`] naming the file and offset (see [`Recovery`] and
//! [`LogOptions::salvage`] for the exact rule).
//!
//! # File formats
//!
//! All integers little-endian; CRC-32C is the Castagnoli CRC (as in ext4
//! and iSCSI). Each header carries a format version: a file of another
//! version is [`PersistError::UnsupportedVersion`], never guessed at.
//!
//! Event-log segment `log-<20-digit start LSN>.seg`
//! ([`LOG_FORMAT_VERSION`]):
//!
//! ```text
//! header  (32 bytes) = magic "TRKEVLOG" | version: u32 | 0: u32
//!                    | start LSN: u64 | CRC-32C of the 24 bytes before: u32 | 0: u32
//! frames             = frame*
//! frame              = payload length: u32 | CRC-32C of (length bytes ++ payload): u32 | payload
//! payload            = visitor_hash: u64 | at_millis: u64 | canonical URL: UTF-8, the rest
//! ```
//!
//! The LSN of a frame is its segment's start LSN plus its offset in the
//! file; the next segment starts at the LSN where the previous one ends.
//! The checksum covers the length so that zero bytes never pass as a frame.
//! The last segment may end in zero bytes after its last frame: space
//! written ahead under `FsyncPolicy::Always` (see [`EventLog`]), which
//! recovery reads as the end of the log ([`Recovery::zero_tail`]).
//!
//! Snapshot `snapshot-<20-digit covered LSN>.snap`
//! ([`snapshot_file::SNAPSHOT_FORMAT_VERSION`]):
//!
//! ```text
//! header  (40 bytes) = magic "TRKSNAPS" | version: u32 | 0: u32 | covered LSN: u64
//!                    | payload length: u64 | CRC-32C of the payload: u32
//!                    | CRC-32C of the 36 bytes before: u32
//! payload            = opaque bytes from the caller
//! ```
//!
//! A whole cycle:
//!
//! ```
//! use tracker_core::persist::{snapshot_file, EventLog, LogEvent, LogOptions, Lsn};
//!
//! let dir = tempfile::tempdir()?;
//! let (log_dir, snap_dir) = (dir.path().join("log"), dir.path().join("snapshots"));
//!
//! // Running: log every event, then snapshot at a rotation.
//! let (log, _) = EventLog::open(&log_dir, LogOptions::default())?;
//! log.append(&LogEvent { visitor_hash: 7, at_millis: 1, url: "https://example.com/" })?;
//! let covers = log.rotate()?;
//! let written = snapshot_file::write_atomic(&snap_dir, covers, 2, |w| w.write_all(b"state"))?;
//! log.remove_segments_before(written.keep_log_from)?;
//! log.append(&LogEvent { visitor_hash: 8, at_millis: 2, url: "https://example.com/" })?;
//! drop(log);
//!
//! // Restarting: newest snapshot, then the log after it.
//! let snapshot = snapshot_file::read_newest(&snap_dir)?.expect("one was written");
//! assert_eq!(snapshot.payload, b"state");
//! let mut replayed = 0;
//! let (_log, recovery) = EventLog::open_replaying(&log_dir, LogOptions::default(), snapshot.covers, |_, _| {
//!     replayed += 1
//! })?;
//! assert_eq!(replayed, 1);
//! assert!(recovery.torn_tail.is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod durable;
pub(crate) mod storage;

pub use crate::tracker::snapshot as tracker_snapshot;
pub use crate::tracker::snapshot::{SnapshotError, TRACKER_PAYLOAD_VERSION};
pub use durable::lifecycle::{Background, Cadence};
pub use durable::snapshotter::{SnapshotSchedule, Snapshotter};
pub use durable::{
    DurableBatch, DurableError, DurableStatus, DurableTracker, RecoveryReport, SnapshotInfo,
    Submitted,
};
pub use storage::snapshot_file;
pub use storage::{
    Append, EventLog, FsyncPolicy, LOG_FORMAT_VERSION, LogEvent, LogOptions, Loss, Lsn,
    PersistError, Recovery, SyncPolicy,
};
