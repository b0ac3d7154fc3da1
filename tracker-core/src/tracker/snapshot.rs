//! The tracker's state as a snapshot payload: [`Tracker::write_snapshot`]
//! and [`Tracker::restore_snapshot`].
//!
//! # Payload format (version [`TRACKER_PAYLOAD_VERSION`])
//!
//! The payload goes inside the checksummed container of
//! [`snapshot_file`](crate::persist::snapshot_file); it carries its own magic and
//! version so that a change of the tracker's state format is detected
//! apart from a change of the container. All integers little-endian.
//!
//! ```text
//! payload  = magic "TRKSTATE" | version: u32 | settings | page* | end
//! settings = hash_key: u64 | max_visitor_len: u64 | max_url_len: u64
//!          | query: u8 (0 keep, 1 strip, 2 allow) [| n: u32 | n × (len: u32 | UTF-8)]
//!          | ttl: u8 (0 none, 1 some) [| secs: u64 | nanos: u32]
//!          | bucket secs: u32 | retention: u8 (0 none, 1 some) [| buckets: u32]
//!                                                    (version 2 on; absent in 1)
//! page     = 1: u8 | url_len: u32 | canonical URL | last-recorded tick: u32 | set
//! set      = 0: u8 | n: u32 | n × pair                                           exact
//! pair     = visitor hash: u64 | tick: u32 | k: u32 | k × bucket: u32   (version 3 on)
//!          | visitor hash: u64 [| tick: u32 with a TTL]               (versions 1 and 2)
//!          | 1: u8 | len: u32 | UltraLogLog::to_bytes [| history]                sketch
//! history  = since day: u32 | p: u32 | p × (first day: u32 | days: u32 | period)
//!                                                              (version 3 on; absent before)
//! period   = 0: u8 | n: u32 | n × hash: u64 (sorted)  |  1: u8 | len: u32 | UltraLogLog::to_bytes
//!          | 2: u8 | g: u32 | g × (generation: u32 | len: u32 | UltraLogLog::to_bytes)
//!                                                                   per-generation sketches (TTL)
//! end      = 0: u8 | pages: u64
//! ```
//!
//! Visitor ids never reach the disk, only their keyed 64-bit hashes (all
//! the sets hold anyway). The settings are those that decide what a hash
//! or a page key means: a tracker restored under other settings would
//! count the same visitor twice or split a page in two, so restoring
//! refuses a conflict ([`SnapshotError::ConfigMismatch`]). The bucket
//! width and retention are among them: a pair's bucket is an index of
//! that width, and a retention decides what the state still holds. The
//! series point limit is a limit on queries, not on the data, and is not
//! kept.
//!
//! # Older versions
//!
//! A pair's `tick` is its latest visit's second (with a TTL, or while
//! its page holds it inline; 0 in a table without a TTL, which keeps
//! buckets only), its buckets the ones it was seen in, ascending.
//!
//! Version 4 has the layout of version 3. Version 3's day (history
//! period) and TTL-generation sketches were filled in hash order, which
//! leaves their martingale estimate biased (a day read at about half its
//! truth): reading version 3 or older drops those sketches' martingale, so
//! they answer with the ML estimate. All-time sketches start at their
//! exact count and keep theirs.
//!
//! Versions 1 and 2 (no buckets per pair) are still read. Version 1
//! carries no bucket setting, so it restores under whatever bucketing the
//! builder gives. Their pairs restore in the bucket of their tick (with a
//! TTL) or else of their page's last-recorded tick: the latest time the
//! pair can have been seen, so that a retention does not drop it early;
//! ranges before it do not count it.
//!
//! # Restoring
//!
//! The payload is decoded as it is read (`DurableTracker::open` streams it
//! from the file through [`snapshot_file::read_newest_with`](crate::persist::snapshot_file::read_newest_with),
//! which checks the checksum at the end): a restore holds the state it
//! rebuilds and a 64 KiB buffer of hashes, never a copy of the payload.
//! Exact sets are rebuilt through the ordinary insert paths (tables,
//! timed tables and their expiry horizons come out as recording would
//! build them); sketches are decoded with
//! [`UltraLogLog::from_bytes`](crate::sketch::UltraLogLog::from_bytes).
//! Every page's bytes are reserved in the memory budget before it is
//! added, so a state larger than `max_memory` is refused with
//! [`SnapshotError::MemoryFull`] rather than exceeding the budget (no
//! memory policy runs: restoring must not evict what it just restored).
//! With a TTL, pairs and generations expired by the restoring tracker's
//! clock are left out, and pages left with none are not restored.
//!
//! # Legacy pages
//!
//! A payload (or an event log, or a cluster's stream) written by an
//! earlier version may hold a page key today's URL rules (the
//! `canonical_url` module docs) would not write: one that kept user info
//! (`https://a@example.com/x`, before it was dropped), one whose host or
//! port predates the URL Standard's rules, one whose path has a `\`
//! (a byte of the path then, a `/` now), or one written before dot
//! segments were resolved and bytes escaped as Chromium escapes them
//! (urls8). It is read as the version that wrote it did (its authority up
//! to its path, a `\` in it a byte of the host or user info; its path and
//! query under the escape rules before urls8, dot segments kept), and
//! nothing stored is lost or refused for it:
//!
//! - a key the rules now rewrite in its scheme and authority (user info
//!   dropped, `https://127.1/x` now `https://127.0.0.1/x`, `[0:0::1]` now
//!   `[::1]`, `bücher.de` now `xn--bcher-kva.de`), in its path's `\`
//!   (`https://x/a\b` now `https://x/a/b`), dot segments (`/a/../b` now
//!   `/b`, the path `/a/..//b` now `/.//b`) or escapes (`/a^b?c'd` now
//!   `/a%5Eb?c%27d`, `?a=%7B` now `?a={`), into a key they also write,
//!   is re-keyed to that form once every other
//!   page is in; if a page of that form is already there (both were
//!   recorded) it stays under its old key, so that no two sets are merged
//!   (a merge could not be undone, and would be wrong for two forms that
//!   once were two pages);
//! - a key whose authority the rules now refuse (`https://x:99999/x`,
//!   `https://1.2.3.999/x`, `https://a\b/x`) and nothing else (its path
//!   may have dot segments: `https://x:99999/a/../b`), or that they would
//!   rewrite into a key they refuse (the path `/\x`, now `//x`; a key
//!   over the length limit once escaped), is kept as it is: no event can
//!   be sent under a new spelling of it, so no page of another key
//!   competes for it.
//!
//! A key whose path or query was not canonical when it was written (under
//! the rules before urls8: `https://x/a{` or `https://x/%2E` never were)
//! is damage, refused. A page
//! under an old key is still listed, and counted in the site of its
//! host as stored (which a site query no longer names when the rules
//! spell that host otherwise now: `127.1`, `bücher.de`). A query or
//! an event spelled exactly as its old key reaches it (the fast paths look
//! up the URL as sent before canonicalising; an event is then logged under
//! that key), any other spelling the canonical page. Replay (of the log,
//! or of a cluster's stream through
//! [`record_visitor_hash`](crate::Tracker::record_visitor_hash)) takes the
//! same path against the same restored state, so live counts and replayed
//! ones agree, and it takes a logged key of the second kind even when no
//! page holds it (one created after the snapshot): the log holds what an
//! earlier version accepted. The next snapshot keeps every page, and a
//! restore places them again the same way.
//!
//! The counters of [`Stats`](crate::Stats) that count events since start
//! (`evictions`, `rejections`, `stale_events`, `expirations`,
//! `expired_pages`) restart at 0: they describe a process, not the data.

use std::fmt;
use std::io::{self, BufRead, Write};
use std::time::Duration;

use super::Tracker;
use crate::canonical_url::{QueryPolicy, StoredKey, stored_key};
use crate::error::{ConfigError, TrackerError};
use crate::set::activity::MAX_BUCKET_INDEX;
use crate::set::history::{History, Sketched};
use crate::set::page::Page;
use crate::set::timed_sketch::TimedSketch;
use crate::set::{Insert, VisitorSet};
use crate::sketch::UltraLogLog;
use crate::sync;
use crate::time::ttl::Expiry;
use crate::tracker::config::{TrackerBuilder, TrackerConfig};

/// The version of the tracker's state format this build writes (it also
/// reads every older version down to 1: see the module docs).
pub const TRACKER_PAYLOAD_VERSION: u32 = 4;
/// The last version whose day and TTL-generation sketches may carry a
/// biased martingale estimate (see the module docs).
const BIASED_MARTINGALE_VERSION: u32 = 3;
/// The oldest version this build still reads.
const OLDEST_PAYLOAD_VERSION: u32 = 1;

const MAGIC: &[u8; 8] = b"TRKSTATE";

/// Bytes of a payload's head that hold its hash key (see
/// [`hash_key_of`]).
pub(crate) const HASH_KEY_END: usize = MAGIC.len() + 4 + 8;

/// The hash key of the payload whose first [`HASH_KEY_END`] bytes are
/// `head`, in every payload version (magic, version, then the key), with
/// no more of it read or checked; `None` if it is no tracker state.
pub(crate) fn hash_key_of(head: &[u8]) -> Option<u64> {
    let key = head.strip_prefix(MAGIC)?.get(4..12)?;
    Some(u64::from_le_bytes(key.try_into().ok()?))
}
const FORM_EXACT: u8 = 0;
const FORM_SKETCH: u8 = 1;
const FORM_TIMED_SKETCH: u8 = 2;

/// Why a snapshot payload could not be restored.
///
/// ```
/// use tracker_core::persist::SnapshotError;
/// use tracker_core::Tracker;
///
/// let err = Tracker::restore_snapshot(b"TRKSTATE", Tracker::builder()).unwrap_err();
/// assert_eq!(err, SnapshotError::Truncated { offset: 8 });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The payload ends in the middle of a field at this byte offset.
    Truncated {
        /// Where the missing bytes should have been.
        offset: usize,
    },
    /// The payload does not start with `TRKSTATE`: not a tracker state.
    BadMagic,
    /// The payload was written in another format version (typically by a
    /// newer release); it is never guessed at.
    UnsupportedVersion {
        /// The version in the payload.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A field holds a value no tracker writes.
    Invalid {
        /// Byte offset of the field.
        offset: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The snapshot was taken under a setting that differs from the one
    /// given: restoring would change what hashes or page keys mean.
    ConfigMismatch {
        /// The setting (`"hash_key"`, `"max_url_len"`, `"query"`, ...).
        setting: &'static str,
        /// Its value in the snapshot.
        snapshot: String,
        /// The value given.
        given: String,
    },
    /// The settings given are invalid.
    Config(ConfigError),
    /// The state does not fit the memory budget given.
    MemoryFull {
        /// Bytes the page that did not fit needed.
        needed: u64,
        /// The budget.
        limit: u64,
    },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Truncated { offset } => {
                write!(f, "snapshot payload truncated at byte {offset}")
            }
            SnapshotError::BadMagic => write!(f, "snapshot payload is not a tracker state"),
            SnapshotError::UnsupportedVersion { found, supported } => write!(
                f,
                "snapshot payload version {found} is not supported (this build reads {supported})"
            ),
            SnapshotError::Invalid { offset, reason } => {
                write!(f, "invalid snapshot payload at byte {offset}: {reason}")
            }
            SnapshotError::ConfigMismatch {
                setting,
                snapshot,
                given,
            } => write!(
                f,
                "snapshot was taken with {setting} = {snapshot}, but {given} was given"
            ),
            SnapshotError::Config(e) => write!(f, "invalid settings: {e}"),
            SnapshotError::MemoryFull { needed, limit } => write!(
                f,
                "snapshot does not fit the memory budget of {limit} bytes (a page needed {needed} more)"
            ),
        }
    }
}

impl std::error::Error for SnapshotError {}

impl From<ConfigError> for SnapshotError {
    fn from(e: ConfigError) -> Self {
        SnapshotError::Config(e)
    }
}

impl Tracker {
    /// Streams the whole state as a snapshot payload (format in the
    /// [module docs](crate::persist::tracker_snapshot)) into `out`.
    ///
    /// Stripe by stripe: each stripe's pages are encoded into a buffer
    /// under that stripe's read lock alone, then written after the lock is
    /// released, so recording goes on meanwhile (blocked on one stripe at
    /// a time, and never behind disk I/O). The snapshot is therefore not
    /// one instant: a record landing during the write may or may not be in
    /// it, which log replay makes up for (recording is idempotent).
    ///
    /// ```
    /// use tracker_core::Tracker;
    ///
    /// let tracker = Tracker::builder().hash_key(7).build()?;
    /// tracker.record("v", "https://example.com/")?;
    /// let mut payload = Vec::new();
    /// tracker.write_snapshot(&mut payload)?;
    /// let restored = Tracker::restore_snapshot(&payload, Tracker::builder())?;
    /// assert_eq!(restored.distinct("https://example.com/")?.visitors, 1);
    /// assert_eq!(restored.config().hash_key, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_snapshot(&self, out: &mut dyn Write) -> io::Result<()> {
        let config = self.config();
        let timed = config.ttl.is_some();
        let expiry = self.expiry_now();
        let mut buf = Vec::with_capacity(64 * 1024);
        let width = config.bucketing.width().as_secs() as u32;
        encode_settings(&mut buf, config);
        out.write_all(&buf)?;
        let mut pages = 0u64;
        for i in 0..self.stripe_count() {
            buf.clear();
            self.with_stripe_pages(i, |stripe_pages| {
                for page in stripe_pages {
                    if encode_page(&mut buf, page, timed, expiry, width) {
                        pages += 1;
                    }
                }
            });
            out.write_all(&buf)?;
        }
        out.write_all(&[0])?;
        out.write_all(&pages.to_le_bytes())
    }

    /// A tracker holding the state of a snapshot payload, configured by
    /// `builder`. The hash key is the snapshot's unless `builder` sets one
    /// (then they must agree); the other settings that shape hashes and
    /// page keys (visitor and URL length limits, query policy, TTL) must
    /// equal the snapshot's, else [`SnapshotError::ConfigMismatch`]. Stripes,
    /// clock, memory budget and policy are free to change.
    ///
    /// Never panics, whatever the bytes: damage is a typed
    /// [`SnapshotError`].
    ///
    /// ```
    /// use tracker_core::persist::SnapshotError;
    /// use tracker_core::Tracker;
    ///
    /// let mut payload = Vec::new();
    /// Tracker::builder().hash_key(1).build()?.write_snapshot(&mut payload)?;
    /// let err = Tracker::restore_snapshot(&payload, Tracker::builder().hash_key(2)).unwrap_err();
    /// assert!(matches!(err, SnapshotError::ConfigMismatch { setting: "hash_key", .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn restore_snapshot(
        payload: &[u8],
        builder: TrackerBuilder,
    ) -> Result<Tracker, SnapshotError> {
        Self::restore_snapshot_from(&mut &payload[..], payload.len() as u64, builder)
    }

    /// [`restore_snapshot`](Self::restore_snapshot) from a stream of `len`
    /// bytes, decoded as it is read: a restore holds no copy of the
    /// payload, only the state it rebuilds (and a buffer of at most
    /// [`CHUNK_BYTES`] for the hashes of one set at a time). A stream
    /// that ends early, or fails, is [`SnapshotError::Truncated`].
    pub(crate) fn restore_snapshot_from<R: BufRead + ?Sized>(
        source: &mut R,
        len: u64,
        builder: TrackerBuilder,
    ) -> Result<Tracker, SnapshotError> {
        let mut r = Reader {
            source,
            len: usize::try_from(len).unwrap_or(usize::MAX),
            at: 0,
            scratch: Vec::new(),
        };
        let settings = decode_settings(&mut r)?;
        let builder = if builder.has_hash_key() {
            builder
        } else {
            builder.hash_key(settings.hash_key)
        };
        let config = builder.config()?;
        settings.check_against(&config)?;
        let tracker = Tracker::with_config(config);
        let expiry = tracker.expiry_now();
        let mut pages = 0u64;
        // Legacy pages (see the module docs) with their offset and
        // canonical key, placed once every other page is in: only then is
        // it known whether their canonical key is free, whatever the order
        // of the pages in the payload.
        let mut legacy = Vec::new();
        loop {
            let at = r.at;
            match r.u8()? {
                0 => break,
                1 => {}
                other => return Err(r.invalid(at, format!("unknown record tag {other}"))),
            }
            pages += 1;
            let Some((page, rekey)) = decode_page(&mut r, &tracker, expiry, settings.version)?
            else {
                continue;
            };
            match rekey {
                Some(form) => legacy.push((at, form, page)),
                None => restore_page(&r, &tracker, at, page)?,
            }
        }
        let at = r.at;
        let count = r.u64()?;
        if count != pages {
            return Err(r.invalid(at, format!("the end says {count} pages, {pages} were read")));
        }
        if r.at != r.len {
            return Err(r.invalid(r.at, "bytes after the end".into()));
        }
        // By old key: which of two legacy pages of one canonical form
        // takes it does not depend on the stripes' order, and the same
        // old key twice is damage as any page twice is.
        legacy.sort_unstable_by(|a, b| a.2.url.cmp(&b.2.url));
        if let Some(pair) = legacy.windows(2).find(|w| w[0].2.url == w[1].2.url) {
            return Err(r.invalid(pair[1].0, "the same page twice".into()));
        }
        for (at, form, mut page) in legacy {
            let old = std::mem::replace(&mut page.url, form);
            if let Some(mut page) = insert_or_return(&r, &tracker, at, page)? {
                // Its canonical key is taken: it stays under its old one.
                page.url = old;
                restore_page(&r, &tracker, at, page)?;
            }
        }
        tracker.refresh_hints();
        Ok(tracker)
    }
}

/// The tracker's side of the codec: its stripes, one lock at a time.
impl Tracker {
    /// The number of stripes.
    fn stripe_count(&self) -> usize {
        self.stripes.len()
    }

    /// Calls `f` with stripe `i`'s pages under that stripe's read lock
    /// only: how a snapshot streams the state one stripe at a time.
    fn with_stripe_pages<R>(
        &self,
        i: usize,
        f: impl FnOnce(&mut dyn Iterator<Item = &Page>) -> R,
    ) -> R {
        let stripe = sync::read(&self.stripes[i]);
        f(&mut stripe.pages())
    }

    /// Adds a page rebuilt from a snapshot, with its bytes reserved in the
    /// budget first. Returns the page back if one of its URL is already
    /// present. Errors: [`TrackerError::MemoryFull`] if it does not fit
    /// the budget (no policy runs: restoring must not evict what it just
    /// restored).
    fn insert_restored(&self, page: Page) -> Result<Option<Page>, TrackerError> {
        let url_hash = self.url_hasher.hash_one(&*page.url);
        let mut stripe = sync::write(self.stripe(url_hash));
        if stripe.contains(&page.url, url_hash) {
            return Ok(Some(page));
        }
        stripe
            .insert_restored(url_hash, page, self.ttl.is_some(), &self.budget)
            .map_err(|needed| TrackerError::MemoryFull {
                needed: needed as u64,
                limit: self.budget.limit().unwrap_or(u64::MAX),
            })?;
        Ok(None)
    }
}

/// [`Tracker::insert_restored`] for the page read at `at`, its error as a
/// [`SnapshotError`]; the page comes back if its URL is taken.
fn insert_or_return<R: BufRead + ?Sized>(
    r: &Reader<'_, R>,
    tracker: &Tracker,
    at: usize,
    page: Page,
) -> Result<Option<Page>, SnapshotError> {
    tracker.insert_restored(page).map_err(|e| match e {
        TrackerError::MemoryFull { needed, limit } => SnapshotError::MemoryFull { needed, limit },
        e => r.invalid(at, e.to_string()),
    })
}

/// Adds the page read at `at`; its URL already present is damage.
fn restore_page<R: BufRead + ?Sized>(
    r: &Reader<'_, R>,
    tracker: &Tracker,
    at: usize,
    page: Page,
) -> Result<(), SnapshotError> {
    match insert_or_return(r, tracker, at, page)? {
        None => Ok(()),
        Some(_) => Err(r.invalid(at, "the same page twice".into())),
    }
}

/// The settings a payload was written under.
struct Settings {
    hash_key: u64,
    max_visitor_len: u64,
    max_url_len: u64,
    query: QueryPolicy,
    ttl: Option<Duration>,
    /// Bucket width in seconds and retention in buckets; `None` from a
    /// version-1 payload, which kept no buckets.
    bucketing: Option<(u32, Option<u32>)>,
    /// The payload's format version.
    version: u32,
}

impl Settings {
    fn check_against(&self, config: &TrackerConfig) -> Result<(), SnapshotError> {
        fn differ(
            setting: &'static str,
            snapshot: impl fmt::Debug,
            given: impl fmt::Debug,
        ) -> SnapshotError {
            SnapshotError::ConfigMismatch {
                setting,
                snapshot: format!("{snapshot:?}"),
                given: format!("{given:?}"),
            }
        }
        if self.hash_key != config.hash_key {
            // The keys themselves are secrets of the deployment: not shown.
            return Err(differ("hash_key", "<snapshot key>", "<another key>"));
        }
        if self.max_visitor_len != config.max_visitor_len as u64 {
            return Err(differ(
                "max_visitor_len",
                self.max_visitor_len,
                config.max_visitor_len,
            ));
        }
        if self.max_url_len != config.url.max_len as u64 {
            return Err(differ("max_url_len", self.max_url_len, config.url.max_len));
        }
        if self.query != config.url.query {
            return Err(differ("query", &self.query, &config.url.query));
        }
        if self.ttl != config.ttl {
            return Err(differ("ttl", self.ttl, config.ttl));
        }
        if let Some((width, retention)) = self.bucketing {
            let given = &config.bucketing;
            let secs = Duration::from_secs;
            if secs(width.into()) != given.width() {
                return Err(differ("bucket", secs(width.into()), given.width()));
            }
            let retention = retention.map(|b| secs(u64::from(b) * u64::from(width)));
            if retention != given.retention() {
                return Err(differ("retention", retention, given.retention()));
            }
        }
        Ok(())
    }
}

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

/// Lengths written are bounded by the configuration (URLs at most 1 MiB,
/// sets by memory) far below `u32::MAX`; saturating keeps a writer bug
/// from wrapping silently (the reader would then refuse the payload).
fn put_len(buf: &mut Vec<u8>, len: usize) {
    put_u32(buf, u32::try_from(len).unwrap_or(u32::MAX));
}

fn encode_settings(buf: &mut Vec<u8>, config: &TrackerConfig) {
    buf.extend_from_slice(MAGIC);
    put_u32(buf, TRACKER_PAYLOAD_VERSION);
    put_u64(buf, config.hash_key);
    put_u64(buf, config.max_visitor_len as u64);
    put_u64(buf, config.url.max_len as u64);
    match &config.url.query {
        QueryPolicy::Keep => buf.push(0),
        QueryPolicy::Strip => buf.push(1),
        QueryPolicy::Allow(names) => {
            buf.push(2);
            put_len(buf, names.len());
            for name in names {
                put_len(buf, name.len());
                buf.extend_from_slice(name.as_bytes());
            }
        }
    }
    match config.ttl {
        None => buf.push(0),
        Some(ttl) => {
            buf.push(1);
            put_u64(buf, ttl.as_secs());
            put_u32(buf, ttl.subsec_nanos());
        }
    }
    let bucketing = &config.bucketing;
    let width = bucketing.width().as_secs();
    // Width and retention come from a checked `Bucketing`: a width of at
    // most a day, a retention of whole buckets that fits a tick.
    put_u32(buf, width as u32);
    match bucketing.retention() {
        None => buf.push(0),
        Some(r) => {
            buf.push(1);
            put_u32(buf, (r.as_secs() / width) as u32);
        }
    }
}

/// Appends `page`; returns false (writing nothing) for a timed page with
/// no live pair left, which restoring would drop anyway.
fn encode_page(
    buf: &mut Vec<u8>,
    page: &Page,
    timed: bool,
    expiry: Option<Expiry>,
    width: u32,
) -> bool {
    let live = |tick: u32| expiry.is_none_or(|e| e.is_live(tick));
    let start = buf.len();
    buf.push(1);
    put_len(buf, page.url.len());
    buf.extend_from_slice(page.url.as_bytes());
    put_u32(buf, page.visitors.last_recorded());
    match &page.visitors {
        VisitorSet::Sketch(_, sketched) => {
            buf.push(FORM_SKETCH);
            let bytes = sketched.all.to_bytes();
            put_len(buf, bytes.len());
            buf.extend_from_slice(&bytes);
            put_u32(buf, sketched.since);
            put_len(buf, sketched.history.periods().count());
            for (first, days, visitors) in sketched.history.periods() {
                put_u32(buf, first);
                put_u32(buf, days);
                match visitors {
                    Ok(hashes) => {
                        buf.push(0);
                        put_len(buf, hashes.len());
                        for &hash in hashes {
                            put_u64(buf, hash);
                        }
                    }
                    Err(sketch) => {
                        buf.push(1);
                        let bytes = sketch.to_bytes();
                        put_len(buf, bytes.len());
                        buf.extend_from_slice(&bytes);
                    }
                }
            }
        }
        VisitorSet::TimedSketch(_, sketch) => {
            buf.push(FORM_TIMED_SKETCH);
            put_len(buf, sketch.generations().len());
            for (generation, sketch) in sketch.generations() {
                put_u32(buf, *generation);
                let bytes = sketch.to_bytes();
                put_len(buf, bytes.len());
                buf.extend_from_slice(&bytes);
            }
        }
        exact => {
            buf.push(FORM_EXACT);
            let count_at = buf.len();
            put_u32(buf, 0);
            let mut n = 0u32;
            exact.for_each_pair(width, |hash, tick, buckets| {
                if live(tick) {
                    put_u64(buf, hash);
                    put_u32(buf, tick);
                    put_len(buf, buckets.len());
                    for &bucket in buckets {
                        put_u32(buf, bucket);
                    }
                    n += 1;
                }
            });
            if timed && n == 0 {
                buf.truncate(start);
                return false;
            }
            buf[count_at..count_at + 4].copy_from_slice(&n.to_le_bytes());
        }
    }
    true
}

/// Most bytes of visitor hashes read from the stream at once.
const CHUNK_BYTES: usize = 64 * 1024;

/// A cursor over the payload stream whose every read is checked against
/// the payload's length.
struct Reader<'a, R: BufRead + ?Sized> {
    source: &'a mut R,
    /// The payload's length.
    len: usize,
    /// Bytes read so far.
    at: usize,
    /// What [`take`](Self::take) returns, reused.
    scratch: Vec<u8>,
}

impl<R: BufRead + ?Sized> Reader<'_, R> {
    /// Fills `out` from the stream.
    fn fill(&mut self, out: &mut [u8]) -> Result<(), SnapshotError> {
        let truncated = SnapshotError::Truncated { offset: self.at };
        let end = self
            .at
            .checked_add(out.len())
            .filter(|&end| end <= self.len)
            .ok_or(truncated.clone())?;
        self.source.read_exact(out).map_err(|_| truncated)?;
        self.at = end;
        Ok(())
    }

    /// The next `n` bytes, in the reused scratch buffer.
    fn take(&mut self, n: usize) -> Result<&[u8], SnapshotError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.resize(n, 0);
        let filled = self.fill(&mut scratch);
        self.scratch = scratch;
        filled.map(|()| &self.scratch[..])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut out = [0; N];
        self.fill(&mut out)?;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A count of items of at least `item_len` bytes each, checked against
    /// the bytes left so that a damaged count cannot make us allocate
    /// more than the payload could hold.
    fn count(&mut self, item_len: usize) -> Result<usize, SnapshotError> {
        let at = self.at;
        let n = self.u32()? as usize;
        if n.saturating_mul(item_len) > self.len - self.at {
            return Err(SnapshotError::Truncated { offset: at });
        }
        Ok(n)
    }

    fn text(&mut self) -> Result<String, SnapshotError> {
        let n = self.count(1)?;
        let at = self.at;
        let mut bytes = vec![0; n];
        self.fill(&mut bytes)?;
        String::from_utf8(bytes).map_err(|_| self.invalid(at, "text is not UTF-8".into()))
    }

    fn invalid(&self, offset: usize, reason: String) -> SnapshotError {
        SnapshotError::Invalid { offset, reason }
    }
}

fn decode_settings<R: BufRead + ?Sized>(r: &mut Reader<'_, R>) -> Result<Settings, SnapshotError> {
    if r.take(MAGIC.len()).map_err(|_| SnapshotError::BadMagic)? != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = r.u32()?;
    if !(OLDEST_PAYLOAD_VERSION..=TRACKER_PAYLOAD_VERSION).contains(&version) {
        return Err(SnapshotError::UnsupportedVersion {
            found: version,
            supported: TRACKER_PAYLOAD_VERSION,
        });
    }
    let hash_key = r.u64()?;
    let max_visitor_len = r.u64()?;
    let max_url_len = r.u64()?;
    let at = r.at;
    let query = match r.u8()? {
        0 => QueryPolicy::Keep,
        1 => QueryPolicy::Strip,
        2 => {
            let n = r.count(4)?;
            let mut names = Vec::with_capacity(n);
            for _ in 0..n {
                names.push(r.text()?);
            }
            QueryPolicy::Allow(names)
        }
        other => return Err(r.invalid(at, format!("unknown query policy {other}"))),
    };
    let at = r.at;
    let ttl = match r.u8()? {
        0 => None,
        1 => {
            let secs = r.u64()?;
            let at = r.at;
            let nanos = r.u32()?;
            if nanos >= 1_000_000_000 {
                return Err(r.invalid(at, format!("{nanos} nanoseconds")));
            }
            Some(Duration::new(secs, nanos))
        }
        other => return Err(r.invalid(at, format!("unknown TTL tag {other}"))),
    };
    let bucketing = if version >= 2 {
        let width = r.u32()?;
        let at = r.at;
        let retention = match r.u8()? {
            0 => None,
            1 => Some(r.u32()?),
            other => return Err(r.invalid(at, format!("unknown retention tag {other}"))),
        };
        Some((width, retention))
    } else {
        None
    };
    Ok(Settings {
        hash_key,
        max_visitor_len,
        max_url_len,
        query,
        ttl,
        bucketing,
        version,
    })
}

/// The key a legacy page is re-keyed to (see the module docs).
type CanonicalKey = Box<str>;

/// Reads one page (after its tag) and rebuilds it, with the canonical key
/// of a legacy page (see the module docs); `None` for a timed page with
/// nothing live any more.
fn decode_page<R: BufRead + ?Sized>(
    r: &mut Reader<'_, R>,
    tracker: &Tracker,
    expiry: Option<Expiry>,
    version: u32,
) -> Result<Option<(Page, Option<CanonicalKey>)>, SnapshotError> {
    let at = r.at;
    let url = r.text()?;
    let rekey = match stored_key(&url, &tracker.config().url) {
        Some(StoredKey::Canonical | StoredKey::Kept) => None,
        Some(StoredKey::Rekey(form)) => Some(form.into()),
        // Damage, or URL settings that are not kept in the snapshot
        // (dropped parameters, trailing-slash folding) changed since: say
        // so, or an operator who changed them reads a damaged file.
        None => {
            return Err(r.invalid(
                at,
                format!(
                    "a page URL that is not canonical under the URL settings given ({url}): \
                     were the dropped query parameters or trailing-slash folding changed \
                     since this snapshot?"
                ),
            ));
        }
    };
    let last = r.u32()?;
    let form_at = r.at;
    let visitors = match (r.u8()?, expiry) {
        (FORM_EXACT, _) if version >= 3 => decode_pairs(r, last, expiry, tracker)?,
        (FORM_EXACT, _) => decode_exact(r, last, expiry, tracker)?,
        (FORM_SKETCH, None) => {
            let bytes_at = r.at;
            let n = r.count(1)?;
            let all = decode_sketch(r.take(n)?).map_err(|e| r.invalid(bytes_at, e))?;
            let (history, since) = if version >= 3 {
                decode_history(r, version)?
            } else {
                // Nothing of the page's past is known by day: ranges from
                // today on have it all.
                let bucketing = tracker.bucketing();
                let today = bucketing.bucket_of(tracker.config().clock.now())
                    / (86_400 / bucketing.width().as_secs() as u32);
                (History::default(), today)
            };
            VisitorSet::Sketch(
                last,
                Box::new(Sketched {
                    all,
                    history,
                    since,
                }),
            )
        }
        (FORM_TIMED_SKETCH, Some(expiry)) => {
            let n = r.count(9)?;
            let mut generations = Vec::with_capacity(n);
            for _ in 0..n {
                let gen_at = r.at;
                let generation = r.u32()?;
                let len = r.count(1)?;
                let mut sketch = decode_sketch(r.take(len)?).map_err(|e| r.invalid(gen_at, e))?;
                if version <= BIASED_MARTINGALE_VERSION {
                    sketch.drop_martingale();
                }
                if generations.last().is_some_and(|&(g, _)| g >= generation) {
                    return Err(r.invalid(gen_at, "generations out of order".into()));
                }
                generations.push((generation, sketch));
            }
            let mut sketch = TimedSketch::from_generations(generations);
            sketch.expire(expiry);
            VisitorSet::TimedSketch(last, Box::new(sketch))
        }
        (form, _) => {
            let why = format!(
                "visitor set form {form} with{} a TTL",
                if expiry.is_some() { "" } else { "out" }
            );
            return Err(r.invalid(form_at, why));
        }
    };
    if expiry.is_some_and(|e| visitors.is_dead(e)) {
        return Ok(None);
    }
    let page = Page {
        url: url.into(),
        visitors,
    };
    Ok(Some((page, rekey)))
}

/// Rebuilds an exact set of a version-1 or -2 payload (hashes, and with
/// a TTL ticks) by inserting its hashes as recording would, so tables
/// and horizons come out in their ordinary shape. A pair without a tick
/// is placed at its page's last-recorded one (see the module docs).
fn decode_exact<R: BufRead + ?Sized>(
    r: &mut Reader<'_, R>,
    last: u32,
    expiry: Option<Expiry>,
    tracker: &Tracker,
) -> Result<VisitorSet, SnapshotError> {
    let item = if expiry.is_some() { 12 } else { 8 };
    let n = r.count(item)?;
    let mut set = Restoring::new(last, n, expiry, tracker);
    let mut left = n;
    while left > 0 {
        let batch = left.min(CHUNK_BYTES / item);
        left -= batch;
        let start = r.at;
        for (i, entry) in r.take(batch * item)?.chunks_exact(item).enumerate() {
            let mut word = [0; 8];
            word.copy_from_slice(&entry[..8]);
            let hash = u64::from_le_bytes(word);
            if hash == 0 {
                let reason = "visitor hash 0".into();
                return Err(SnapshotError::Invalid {
                    offset: start + i * item,
                    reason,
                });
            }
            let tick = match expiry {
                Some(_) => u32::from_le_bytes([entry[8], entry[9], entry[10], entry[11]]),
                None => last,
            };
            set.pair(hash, tick, &[tick / set.width]);
        }
    }
    Ok(set.finish())
}

/// Rebuilds an exact set of a version-3 payload: pairs with their ticks
/// and buckets.
fn decode_pairs<R: BufRead + ?Sized>(
    r: &mut Reader<'_, R>,
    last: u32,
    expiry: Option<Expiry>,
    tracker: &Tracker,
) -> Result<VisitorSet, SnapshotError> {
    let n = r.count(16)?;
    let mut set = Restoring::new(last, n, expiry, tracker);
    let mut buckets = Vec::new();
    for _ in 0..n {
        let at = r.at;
        let hash = r.u64()?;
        if hash == 0 {
            return Err(r.invalid(at, "visitor hash 0".into()));
        }
        let tick = r.u32()?;
        let at = r.at;
        let k = r.count(4)?;
        buckets.clear();
        buckets.extend(
            r.take(k * 4)?
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        if k == 0 || buckets.windows(2).any(|w| w[0] >= w[1]) || buckets[k - 1] > MAX_BUCKET_INDEX {
            return Err(r.invalid(at, "buckets empty, out of order or too large".into()));
        }
        // A table without a TTL keeps no tick: its latest bucket's start
        // stands for it.
        let tick = if tick == 0 {
            buckets[k - 1].saturating_mul(set.width)
        } else {
            tick
        };
        set.pair(hash, tick, &buckets);
    }
    Ok(set.finish())
}

/// An exact set being restored through the ordinary insert paths.
struct Restoring {
    set: VisitorSet,
    last: u32,
    len: usize,
    expiry: Option<Expiry>,
    width: u32,
    oldest_bucket: u32,
}

impl Restoring {
    fn new(last: u32, len: usize, expiry: Option<Expiry>, tracker: &Tracker) -> Self {
        let bucketing = tracker.bucketing();
        Self {
            set: VisitorSet::new(last),
            last,
            len,
            expiry,
            width: bucketing.width().as_secs() as u32,
            oldest_bucket: bucketing.oldest_retained(tracker.config().clock.now()),
        }
    }

    /// Adds a pair last seen at `tick`, in `buckets` (ascending): left
    /// out if expired, or if every bucket has left the retention.
    fn pair(&mut self, hash: u64, tick: u32, buckets: &[u32]) {
        // As recording does: a time ahead of the clock counts as now.
        let tick = match self.expiry {
            Some(e) => tick.min(e.now),
            None => tick,
        };
        if self.expiry.is_some_and(|e| !e.is_live(tick)) {
            return;
        }
        let kept = &buckets[buckets.partition_point(|&b| b < self.oldest_bucket)..];
        let Some((&latest, earlier)) = kept.split_last() else {
            return;
        };
        // The latest visit first, at its tick (in its bucket), then one
        // visit at the start of each earlier bucket: ticks only move
        // forwards, so those add buckets alone.
        let latest_tick = if tick / self.width == latest {
            tick
        } else {
            latest.saturating_mul(self.width)
        };
        self.visit(hash, latest_tick);
        for &bucket in earlier {
            self.visit(hash, bucket.saturating_mul(self.width));
        }
    }

    fn visit(&mut self, hash: u64, tick: u32) {
        if let Insert::Grow(_) | Insert::GrowKnown { .. } =
            self.set.insert(hash, tick, self.width, self.expiry)
        {
            self.set
                .grow_and_insert(hash, tick, self.width, self.expiry);
            // Once a table, at its final size at once: the hashes come in
            // table order, which a growing table handles quadratically.
            self.set.reserve(self.len);
        }
    }

    /// The set, with the page's recency from the snapshot (the inline
    /// form keeps its newest visitor's tick as that, which the inserts
    /// set).
    fn finish(mut self) -> VisitorSet {
        self.set.touch(self.last);
        self.set
    }
}

/// Reads a sketched page's history (version 3 on) and the day it is
/// complete from.
fn decode_history<R: BufRead + ?Sized>(
    r: &mut Reader<'_, R>,
    version: u32,
) -> Result<(History, u32), SnapshotError> {
    let since = r.u32()?;
    let at = r.at;
    let n = r.count(9)?;
    let mut periods = Vec::with_capacity(n);
    for _ in 0..n {
        let first = r.u32()?;
        let days = r.u32()?;
        let kind_at = r.at;
        let visitors = match r.u8()? {
            0 => {
                let len = r.count(8)?;
                let hashes = r
                    .take(len * 8)?
                    .chunks_exact(8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect();
                Ok(hashes)
            }
            1 => {
                let len = r.count(1)?;
                let bytes_at = r.at;
                let mut sketch = UltraLogLog::from_bytes(r.take(len)?)
                    .map_err(|e| r.invalid(bytes_at, e.to_string()))?;
                if version <= BIASED_MARTINGALE_VERSION {
                    sketch.drop_martingale();
                }
                Err(sketch)
            }
            other => return Err(r.invalid(kind_at, format!("unknown period form {other}"))),
        };
        periods.push((first, days, visitors));
    }
    let history = History::from_periods(periods).map_err(|e| r.invalid(at, e))?;
    Ok((history, since))
}

/// A sketch as the tracker keeps them: only the default precision (the
/// memory accounting and generation merges rely on it).
fn decode_sketch(bytes: &[u8]) -> Result<UltraLogLog, String> {
    let sketch = UltraLogLog::from_bytes(bytes).map_err(|e| e.to_string())?;
    if sketch.precision() != UltraLogLog::DEFAULT_PRECISION {
        return Err(format!("sketch precision {}", sketch.precision()));
    }
    Ok(sketch)
}
