//! Tracker settings and the builder that checks them.

use std::sync::Arc;
use std::time::Duration;

use crate::canonical_url::{QueryPolicy, URL_LEN_CEILING, UrlOptions};
use crate::error::{ConfigError, Field};
use crate::time::Bucketing;
use crate::time::clock::{Clock, SystemClock};
use crate::tracker::budget::MemoryPolicy;

/// Default longest visitor id, in bytes.
pub const DEFAULT_MAX_VISITOR_LEN: usize = 256;
/// The largest visitor-id limit a tracker accepts.
pub const VISITOR_LEN_CEILING: usize = 64 * 1024;
/// The checked settings a [`Tracker`](crate::Tracker) runs with.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// Number of lock stripes, a power of two.
    pub stripes: usize,
    /// The deployment key of the visitor hash.
    pub hash_key: u64,
    /// The longest visitor id accepted, in bytes.
    pub max_visitor_len: usize,
    /// URL canonicalisation and limits.
    pub url: UrlOptions,
    /// The clock that stamps events recorded without a time.
    pub clock: Arc<dyn Clock>,
    /// The most bytes the tracker may hold, or `None` for no limit.
    pub max_memory: Option<u64>,
    /// What happens when a record would pass `max_memory`.
    pub memory_policy: MemoryPolicy,
    /// How long a visitor counts for a page after their latest visit to
    /// it, or `None` (the default) to count forever.
    pub ttl: Option<Duration>,
    /// The bucket width times are kept at, their retention, and the
    /// point limit of a series.
    pub bucketing: Bucketing,
}

impl TrackerConfig {
    /// Bytes a tracker holds before it holds any page: its stripes, each
    /// a lock, a table header, the URL hasher and counters, padded to four cache
    /// lines, and where its page table is (for the record path's prefetch).
    pub fn fixed_bytes(&self) -> u64 {
        (self.stripes * crate::tracker::stripe::STRIPE_BYTES) as u64
    }
}

/// Builds a [`Tracker`](crate::Tracker); every setting has a default.
///
/// ```
/// use tracker_core::{QueryPolicy, Tracker};
///
/// let tracker = Tracker::builder()
///     .stripes(16)
///     .max_url_len(1024)
///     .query_policy(QueryPolicy::Strip)
///     .build()?;
/// tracker.record("v1", "https://example.com/p?utm_source=mail")?;
/// assert_eq!(tracker.distinct("https://example.com/p")?.visitors, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct TrackerBuilder {
    stripes: Option<usize>,
    hash_key: Option<u64>,
    max_visitor_len: Option<usize>,
    url: UrlOptions,
    clock: Option<Arc<dyn Clock>>,
    max_memory: Option<u64>,
    memory_policy: MemoryPolicy,
    ttl: Option<Duration>,
    bucket: Option<Duration>,
    retention: Option<Duration>,
    max_points: Option<usize>,
}

impl TrackerBuilder {
    /// Lock stripes: a power of two from 1 to 65536. Default: four per
    /// available core, rounded up to a power of two.
    pub fn stripes(mut self, stripes: usize) -> Self {
        self.stripes = Some(stripes);
        self
    }

    /// The visitor-hash key. Default: a random key. Set it to keep counts
    /// comparable with hashes made by another tracker (a restored snapshot
    /// carries its key).
    pub fn hash_key(mut self, key: u64) -> Self {
        self.hash_key = Some(key);
        self
    }

    /// The longest visitor id, in bytes (default 256).
    pub fn max_visitor_len(mut self, max: usize) -> Self {
        self.max_visitor_len = Some(max);
        self
    }

    /// The longest URL, in bytes (default 2048).
    pub fn max_url_len(mut self, max: usize) -> Self {
        self.url.max_len = max;
        self
    }

    /// What canonicalisation does with query strings (default: keep).
    pub fn query_policy(mut self, policy: QueryPolicy) -> Self {
        self.url.query = policy;
        self
    }

    /// Query parameters dropped from page identity (default:
    /// [`TRACKING_PARAMS`](crate::TRACKING_PARAMS); empty keeps them all).
    pub fn drop_params(mut self, params: Vec<String>) -> Self {
        self.url.drop_params = params;
        self
    }

    /// Whether `/docs/` and `/docs` are one page (default: no).
    pub fn fold_trailing_slash(mut self, fold: bool) -> Self {
        self.url.fold_trailing_slash = fold;
        self
    }

    /// The clock for events recorded without a time (default: the system
    /// clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The most bytes the tracker may hold (default: no limit). Tables, URL
    /// strings, visitor sets and sketches all count; the crate docs give
    /// the formula. Must leave room for the stripes themselves.
    ///
    /// ```
    /// use tracker_core::{MemoryPolicy, Tracker, TrackerError};
    ///
    /// let tracker = Tracker::builder()
    ///     .stripes(1)
    ///     .max_memory(1_000)
    ///     .memory_policy(MemoryPolicy::Reject)
    ///     .build()?;
    /// tracker.record("v", "/a")?;
    /// let long = format!("/{}", "x".repeat(2_000));
    /// assert!(matches!(
    ///     tracker.record("v", &long),
    ///     Err(TrackerError::MemoryFull { .. })
    /// ));
    /// assert_eq!(tracker.distinct("/a")?.visitors, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_memory(mut self, bytes: u64) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// What happens when a record would pass the memory limit (default:
    /// [`MemoryPolicy::Sketch`]).
    pub fn memory_policy(mut self, policy: MemoryPolicy) -> Self {
        self.memory_policy = policy;
        self
    }

    /// Expire each (page, visitor) pair `ttl` after that visitor's latest
    /// visit to that page (default: never). Times are kept in whole
    /// seconds; a TTL with a fraction of a second is rounded up. See the
    /// crate docs for the rules on stale and future events.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracker_core::{ManualClock, Timestamp, Tracker};
    ///
    /// let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    /// let tracker = Tracker::builder()
    ///     .ttl(Duration::from_secs(60))
    ///     .clock(std::sync::Arc::new(clock.clone()))
    ///     .build()?;
    /// tracker.record("v", "/a")?;
    /// clock.advance(Duration::from_secs(59));
    /// assert_eq!(tracker.distinct("/a")?.visitors, 1);
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(tracker.distinct("/a")?.visitors, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The width of the time buckets visits are kept at (default one hour,
    /// [`DEFAULT_BUCKET`](crate::DEFAULT_BUCKET)): whole minutes from one
    /// minute to a day that divide a day. Ranges and series are answered
    /// in whole buckets.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracker_core::{ConfigError, Tracker};
    ///
    /// let config = Tracker::builder()
    ///     .bucket(Duration::from_secs(15 * 60))
    ///     .retention(Duration::from_secs(90 * 86_400))
    ///     .config()?;
    /// assert_eq!(config.bucketing.width(), Duration::from_secs(900));
    /// assert!(matches!(
    ///     Tracker::builder().bucket(Duration::from_secs(7 * 60)).config(),
    ///     Err(ConfigError::Time(_))
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bucket(mut self, width: Duration) -> Self {
        self.bucket = Some(width);
        self
    }

    /// How long buckets are kept (default: forever), rounded up to whole
    /// buckets; at least one bucket.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
    }

    /// The most points one series may have (default
    /// [`DEFAULT_MAX_POINTS`](crate::DEFAULT_MAX_POINTS); at least 1).
    pub fn max_points(mut self, max: usize) -> Self {
        self.max_points = Some(max);
        self
    }

    /// The checked configuration.
    pub fn config(self) -> Result<TrackerConfig, ConfigError> {
        let stripes = self.stripes.unwrap_or_else(default_stripes);
        if !stripes.is_power_of_two() || stripes > 65536 {
            return Err(ConfigError::Stripes(stripes));
        }
        let max_visitor_len = self.max_visitor_len.unwrap_or(DEFAULT_MAX_VISITOR_LEN);
        check_limit(Field::Visitor, max_visitor_len, VISITOR_LEN_CEILING)?;
        check_limit(Field::Url, self.url.max_len, URL_LEN_CEILING)?;
        if let Some(ttl) = self.ttl
            && (ttl.is_zero() || ttl > crate::MAX_TTL)
        {
            return Err(ConfigError::Ttl(ttl));
        }
        let bucketing = Bucketing::new(
            self.bucket.unwrap_or(crate::time::DEFAULT_BUCKET),
            self.retention,
        )
        .map_err(ConfigError::Time)?
        .max_points(self.max_points.unwrap_or(crate::time::DEFAULT_MAX_POINTS));
        let config = TrackerConfig {
            stripes,
            hash_key: self
                .hash_key
                .unwrap_or_else(crate::set::visitor_hash::random_key),
            max_visitor_len,
            url: self.url,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            max_memory: self.max_memory,
            memory_policy: self.memory_policy,
            ttl: self.ttl,
            bucketing,
        };
        if let Some(max) = config.max_memory
            && max < config.fixed_bytes()
        {
            return Err(ConfigError::MemoryTooSmall {
                max,
                min: config.fixed_bytes(),
            });
        }
        Ok(config)
    }

    /// Whether a hash key was set explicitly (restoring a snapshot adopts
    /// the snapshot's key otherwise).
    pub(crate) fn has_hash_key(&self) -> bool {
        self.hash_key.is_some()
    }
}

fn check_limit(field: Field, max: usize, ceiling: usize) -> Result<(), ConfigError> {
    if (1..=ceiling).contains(&max) {
        Ok(())
    } else {
        Err(ConfigError::Limit {
            field,
            max,
            ceiling,
        })
    }
}

/// Four stripes per core keeps the chance that two busy threads want the
/// same stripe low without making `stats` and `top` visit many locks.
fn default_stripes() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores * 4).next_power_of_two().min(65536)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_settings() {
        let b = TrackerBuilder::default;
        assert_eq!(
            b().stripes(0).config().unwrap_err(),
            ConfigError::Stripes(0)
        );
        assert_eq!(
            b().stripes(12).config().unwrap_err(),
            ConfigError::Stripes(12)
        );
        assert_eq!(
            b().stripes(1 << 17).config().unwrap_err(),
            ConfigError::Stripes(1 << 17)
        );
        assert!(matches!(
            b().max_visitor_len(0).config(),
            Err(ConfigError::Limit {
                field: Field::Visitor,
                ..
            })
        ));
        assert!(matches!(
            b().max_url_len(URL_LEN_CEILING + 1).config(),
            Err(ConfigError::Limit {
                field: Field::Url,
                ..
            })
        ));
        // 8 stripes of 272 bytes (more with the `lock-stats` counters).
        let min = 8 * crate::tracker::stripe::STRIPE_BYTES as u64;
        assert_eq!(
            b().stripes(8).max_memory(min - 1).config().unwrap_err(),
            ConfigError::MemoryTooSmall { max: min - 1, min }
        );
        assert!(b().stripes(8).max_memory(min).config().is_ok());
        assert!(matches!(
            b().bucket(Duration::from_secs(59)).config(),
            Err(ConfigError::Time(_))
        ));
        assert!(matches!(
            b().retention(Duration::from_secs(60)).config(),
            Err(ConfigError::Time(_))
        ));
        let ok = b().config().unwrap();
        assert_eq!(ok.bucketing, crate::Bucketing::default());
        assert!(ok.stripes.is_power_of_two());
        assert_eq!(ok.max_visitor_len, 256);
        assert_eq!(ok.url.max_len, 2048);
    }
}
