//! The typed errors of the persistence layer.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a persistence operation failed.
///
/// Every error names the file it is about, and, for damaged content, the
/// byte offset inside that file, so that an operator can look at it.
/// No file content, however damaged, makes the layer panic.
///
/// ```
/// use tracker_core::persist::PersistError;
///
/// let err = PersistError::Corrupt {
///     file: "log/log-00000000000000000000.seg".into(),
///     offset: 96,
///     reason: "frame checksum mismatch".into(),
/// };
/// assert_eq!(
///     err.to_string(),
///     "corrupt file log/log-00000000000000000000.seg at byte 96: frame checksum mismatch"
/// );
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum PersistError {
    /// An operating-system call failed.
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// What was being done (`"create"`, `"write"`, `"fsync"`, ...).
        op: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// A file's content is damaged: a frame or header does not check out.
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the first damaged frame or header in the file.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// A file does not start with the expected magic bytes: it is not one
    /// of ours (or its first bytes are destroyed).
    BadMagic {
        /// The file.
        file: PathBuf,
    },
    /// A file was written in a format version this build cannot read
    /// (typically by a newer release). Nothing falls back past it silently.
    UnsupportedVersion {
        /// The file.
        file: PathBuf,
        /// The version found in its header.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A snapshot's payload does not match the checksum in its header, and
    /// no older valid snapshot could be used instead.
    ChecksumMismatch {
        /// The file.
        file: PathBuf,
        /// The checksum stored in the header.
        expected: u32,
        /// The checksum of the bytes read.
        found: u32,
    },
    /// The event log is missing events that recovery needs: its oldest
    /// segment starts after the position the snapshot covers.
    Gap {
        /// The directory of the log.
        dir: PathBuf,
        /// First position needed.
        needed: u64,
        /// First position the log holds.
        first_available: u64,
    },
    /// An event cannot be logged (its URL is longer than a frame may hold).
    EventTooLarge {
        /// The encoded size of the event in bytes.
        len: usize,
        /// The largest encoded size accepted.
        max: usize,
    },
    /// An earlier write or fsync failed in a way that leaves the log's
    /// state on disk unknown (see "Failures" on
    /// [`EventLog`](crate::persist::EventLog)): the log
    /// refuses further appends until it is reopened, which re-reads and
    /// repairs what is on disk.
    Failed {
        /// The first failure, as text.
        cause: String,
    },
}

impl PersistError {
    /// Wraps an I/O error with the path and operation it came from.
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        PersistError::Io {
            path: path.into(),
            op,
            source,
        }
    }

    /// A copy to hand to each appender of a failed group commit: errors
    /// are not `Clone` because `io::Error` is not, so the source is
    /// rebuilt from its kind and message.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            PersistError::Io { path, op, source } => PersistError::Io {
                path: path.clone(),
                op,
                source: io::Error::new(source.kind(), source.to_string()),
            },
            PersistError::Failed { cause } => PersistError::Failed {
                cause: cause.clone(),
            },
            other => PersistError::Failed {
                cause: other.to_string(),
            },
        }
    }
}

impl fmt::Display for PersistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PersistError::Io { path, op, source } => {
                write!(f, "cannot {op} {}: {source}", path.display())
            }
            PersistError::Corrupt {
                file,
                offset,
                reason,
            } => write!(
                f,
                "corrupt file {} at byte {offset}: {reason}",
                file.display()
            ),
            PersistError::BadMagic { file } => {
                write!(f, "{} is not a tracker file (bad magic)", file.display())
            }
            PersistError::UnsupportedVersion {
                file,
                found,
                supported,
            } => write!(
                f,
                "{} has format version {found}, this build supports version {supported}",
                file.display()
            ),
            PersistError::ChecksumMismatch {
                file,
                expected,
                found,
            } => write!(
                f,
                "{}: checksum mismatch (header says {expected:#010x}, content has {found:#010x})",
                file.display()
            ),
            PersistError::Gap {
                dir,
                needed,
                first_available,
            } => write!(
                f,
                "event log {} starts at position {first_available} but recovery needs it from {needed}",
                dir.display()
            ),
            PersistError::EventTooLarge { len, max } => {
                write!(f, "event of {len} bytes exceeds the frame limit of {max}")
            }
            PersistError::Failed { cause } => {
                write!(f, "event log failed earlier and must be reopened: {cause}")
            }
        }
    }
}

impl std::error::Error for PersistError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PersistError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
