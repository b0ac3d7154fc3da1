//! The storage layer: the event log and the snapshot container. Nothing
//! here knows what a tracker is; the formats are in the
//! [`persist`](crate::persist) docs.

mod commit;
mod disk;
mod error;
mod event_log;
#[cfg(test)]
mod fault_tests;
pub(crate) mod frame;
pub(crate) mod fs;
mod lsn;
mod recovery;
pub(crate) mod segment;
pub mod snapshot_file;

pub use commit::Append;
pub use error::PersistError;
pub use event_log::{EventLog, FsyncPolicy, LogOptions, SyncPolicy};
pub use frame::LogEvent;
pub use lsn::Lsn;
pub use recovery::{Loss, Recovery};
pub use segment::LOG_FORMAT_VERSION;
