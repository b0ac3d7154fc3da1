//! [`Lsn`]: a position in the event log.

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
