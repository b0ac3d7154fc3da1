//! The storage layer: the event log and the snapshot container. Nothing
//! here knows what a tracker is; the formats are in the
//! [`persist`](crate::persist) docs.

mod disk;
mod error;
mod event_log;
#[cfg(test)]
mod fault_tests;
mod frame;
pub(crate) mod fs;
mod recovery;
pub(crate) mod segment;
pub mod snapshot_file;

pub use error::PersistError;
pub use event_log::{EventLog, FsyncPolicy, LogOptions, SyncPolicy};
pub use frame::LogEvent;
pub use recovery::{Loss, Recovery};
pub use segment::LOG_FORMAT_VERSION;

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
