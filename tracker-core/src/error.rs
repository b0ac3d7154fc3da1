//! The typed errors of the core.

use std::fmt;

use crate::time::TimeError;

/// Which input field an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// The visitor id.
    Visitor,
    /// The page URL.
    Url,
    /// A site (a host) given to a query.
    Site,
}

impl Field {
    /// The field's name as users spell it (`"visitor"`, `"url"`).
    pub fn name(self) -> &'static str {
        match self {
            Field::Visitor => "visitor",
            Field::Url => "url",
            Field::Site => "site",
        }
    }
}

/// Why the tracker refused a call. Refusals never change stored data.
///
/// ```
/// use tracker_core::{Field, Tracker, TrackerError};
///
/// let tracker = Tracker::new();
/// assert_eq!(
///     tracker.record("", "https://example.com/"),
///     Err(TrackerError::Empty { field: Field::Visitor })
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrackerError {
    /// The field was empty (for a URL: empty after trimming white space).
    Empty {
        /// The empty field.
        field: Field,
    },
    /// The field is longer than the configured limit.
    TooLong {
        /// The over-long field.
        field: Field,
        /// Its length in bytes. For a URL: as sent (white space trimmed)
        /// when that is over the limit, a fragment included; else its
        /// canonical form's, which escapes can make longer.
        len: usize,
        /// The configured maximum in bytes.
        max: usize,
    },
    /// The field's bytes are not valid UTF-8 (only URLs must be text).
    InvalidUtf8 {
        /// The offending field.
        field: Field,
    },
    /// Recording needs more memory than the budget has, and the policy
    /// ([`MemoryPolicy::Reject`](crate::MemoryPolicy::Reject)) or the budget
    /// (too small to hold this page at all) refuses to make room.
    MemoryFull {
        /// Bytes the record needed.
        needed: u64,
        /// The configured budget.
        limit: u64,
    },
    /// The URL is not a page: pages are `http://` or `https://` URLs with a
    /// host, or paths starting with `/` (not `javascript:`, `data:`,
    /// `file:`, ...).
    InvalidUrl,
    /// The site is not one: a site is a host (`example.com`), a
    /// `host:port`, or an `http://` or `https://` URL whose host is
    /// meant. Its [`code`](TrackerError::code) is `invalid_url`, as for a
    /// page of another scheme; only the message names the site.
    InvalidSite,
    /// The URL is scheme-relative (`//host/path`, or `\\host\path`): a
    /// browser resolves it against the scheme of the page it is on, which
    /// the tracker does not know, so it is no page (and not the path
    /// `//host/path` of another). Its [`code`](TrackerError::code) is
    /// `invalid_url`; only the message says why.
    SchemeRelativeUrl,
    /// A [`PageQuery`](crate::PageQuery)'s cursor is not where a listing
    /// can stop: listings stop at a page, and every page is an `http://`
    /// or `https://` URL or a path starting with `/`.
    InvalidCursor,
    /// With a TTL, the event's time is further ahead of the tracker's clock
    /// than [`MAX_CLOCK_SKEW`](crate::MAX_CLOCK_SKEW) allows.
    FromTheFuture {
        /// How far ahead of the clock the event was, in milliseconds.
        ahead_ms: u64,
    },
    /// A time, range or series given to a query was refused; its
    /// [`code`](TrackerError::code) is the [`TimeError`]'s.
    Time(TimeError),
}

impl From<TimeError> for TrackerError {
    fn from(e: TimeError) -> Self {
        TrackerError::Time(e)
    }
}

impl TrackerError {
    /// A stable, machine-readable code for the error (`"empty"`, ...), for
    /// services that map errors onto their own wire format.
    pub fn code(&self) -> &'static str {
        match self {
            TrackerError::Empty { .. } => "empty",
            TrackerError::TooLong { .. } => "too_long",
            TrackerError::InvalidUtf8 { .. } => "invalid_utf8",
            TrackerError::MemoryFull { .. } => "memory_full",
            // The URL rules' one code (SPEC's), the message saying which.
            TrackerError::InvalidUrl
            | TrackerError::InvalidSite
            | TrackerError::SchemeRelativeUrl => "invalid_url",
            TrackerError::InvalidCursor => "invalid_cursor",
            TrackerError::FromTheFuture { .. } => "from_the_future",
            TrackerError::Time(e) => e.code(),
        }
    }
}

impl fmt::Display for TrackerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrackerError::Empty { field } => write!(f, "{} must not be empty", field.name()),
            TrackerError::TooLong { field, len, max } => write!(
                f,
                "{} is {len} bytes long, more than the limit of {max}",
                field.name()
            ),
            TrackerError::InvalidUtf8 { field } => {
                write!(f, "{} is not valid UTF-8", field.name())
            }
            TrackerError::MemoryFull { needed, limit } => write!(
                f,
                "memory budget of {limit} bytes is full ({needed} more bytes needed)"
            ),
            TrackerError::InvalidUrl => f.write_str(
                "url must be an http:// or https:// URL with a host, or a path starting with /",
            ),
            TrackerError::InvalidSite => f.write_str(
                "site must be a host (example.com), a host:port, or an http:// or https:// URL",
            ),
            TrackerError::SchemeRelativeUrl => f.write_str(
                "url is scheme-relative (//host/...), which names no scheme: send the full http:// or https:// URL, or a path starting with a single /",
            ),
            TrackerError::InvalidCursor => f.write_str(
                "cursor must be the next_cursor of a previous listing: a page's http:// or https:// URL, or its path starting with /",
            ),
            TrackerError::FromTheFuture { ahead_ms } => write!(
                f,
                "the event's time is {} ahead of the tracker's clock, more than the {} s allowed",
                Ahead(*ahead_ms),
                crate::MAX_CLOCK_SKEW.as_secs()
            ),
            TrackerError::Time(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TrackerError {}

/// How far ahead an event's time was, in the largest unit that keeps it
/// readable: a year's worth of milliseconds says little to a reader.
struct Ahead(u64);

impl fmt::Display for Ahead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (86_400_000, "days"),
            (3_600_000, "hours"),
            (60_000, "minutes"),
            (1_000, "s"),
        ];
        match UNITS.iter().find(|&&(ms, _)| self.0 >= ms) {
            Some(&(ms, unit)) => write!(f, "{:.1} {unit}", self.0 as f64 / ms as f64),
            None => write!(f, "{} ms", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A time far ahead is told in days, not in a run of milliseconds.
    #[test]
    fn how_far_ahead_is_told_in_a_readable_unit() {
        let told = |ahead_ms| TrackerError::FromTheFuture { ahead_ms }.to_string();
        assert!(
            told(97_203_156_228).contains("is 1125.0 days ahead"),
            "{}",
            told(97_203_156_228)
        );
        assert!(told(5_400_000).contains("is 1.5 hours ahead"));
        assert!(told(61_000).contains("is 1.0 minutes ahead"));
        assert!(told(60_500).contains("is 1.0 minutes ahead"));
        assert!(told(2_500).contains("is 2.5 s ahead"));
        assert!(told(7).contains("is 7 ms ahead"));
    }
}

/// Why a [`TrackerBuilder`](crate::TrackerBuilder) refused its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The stripe count must be a power of two between 1 and 65536.
    Stripes(usize),
    /// The memory limit is below what the stripes alone take.
    MemoryTooSmall {
        /// The refused limit.
        max: u64,
        /// The least limit accepted.
        min: u64,
    },
    /// A length limit must be at least 1 and at most the hard ceiling.
    Limit {
        /// The limited field.
        field: Field,
        /// The refused limit.
        max: usize,
        /// The largest limit accepted.
        ceiling: usize,
    },
    /// The TTL must be more than zero (it counts in whole seconds, rounded
    /// up) and at most [`MAX_TTL`](crate::MAX_TTL).
    Ttl(std::time::Duration),
    /// The bucket width or retention is refused (see
    /// [`Bucketing::new`](crate::Bucketing::new)).
    Time(TimeError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Stripes(n) => {
                write!(f, "stripes must be a power of two from 1 to 65536, got {n}")
            }
            ConfigError::MemoryTooSmall { max, min } => write!(
                f,
                "max_memory must be at least {min} bytes (the stripes alone), got {max}"
            ),
            ConfigError::Limit {
                field,
                max,
                ceiling,
            } => write!(
                f,
                "the {} length limit must be from 1 to {ceiling} bytes, got {max}",
                field.name()
            ),
            ConfigError::Ttl(ttl) => write!(
                f,
                "ttl must be more than zero and at most {} s, got {ttl:?}",
                crate::MAX_TTL.as_secs()
            ),
            ConfigError::Time(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ConfigError {}
