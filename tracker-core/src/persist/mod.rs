//! Durability: the files under a tracker's state, their formats, group
//! commit and recovery.
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
//! Every byte read back is checked (CRC-32C per record, per header and per
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
//! records            = frame*
//! frame              = payload length: u32 | CRC-32C of (length bytes ++ payload): u32 | payload
//! payload            = visitor_hash: u64 | at_millis: u64 | canonical URL: UTF-8, the rest
//! ```
//!
//! The LSN of a frame is its segment's start LSN plus its offset in the
//! file; the next segment starts at the LSN where the previous one ends.
//! The checksum covers the length so that zero bytes never pass as a frame.
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

mod disk;
mod durable;
mod error;
mod event_log;
#[cfg(test)]
mod fault_tests;
// Shared with the browser salt store (`crate::browser`).
pub(crate) mod fs;
mod record;
mod recovery;
mod segment;
pub mod snapshot_file;
mod snapshotter;
pub mod tracker_snapshot;

pub use durable::{DurableError, DurableStatus, DurableTracker, RecoveryReport, SnapshotInfo};
pub use error::PersistError;
pub use event_log::{EventLog, LogOptions, SyncPolicy};
pub use record::LogEvent;
pub use recovery::{Loss, Recovery};
pub use segment::LOG_FORMAT_VERSION;
pub use snapshotter::{SnapshotSchedule, Snapshotter};
pub use tracker_snapshot::{SnapshotError, TRACKER_PAYLOAD_VERSION};

use std::fmt;

/// A position in the event log: a byte offset over all its segments
/// (segment start plus offset in the segment). Positions only grow, so
/// "everything before `Lsn(x)`" is a well-defined set of events.
///
/// ```
/// use tracker_core::persist::Lsn;
///
/// assert!(Lsn(10) < Lsn(11));
/// assert_eq!(Lsn(42).to_string(), "42");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
