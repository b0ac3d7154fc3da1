//! Visitor ids derived server-side: a keyed hash of (site, client IP, user
//! agent) under a secret salt that rotates.
//!
//! The id is SipHash-1-3 (128-bit output) keyed with a 16-byte random salt,
//! written as 32 hex digits. The raw IP and user agent are only ever inputs
//! to the hash: they are not kept, and the salt never leaves memory and
//! where its source keeps it (the data directory, or a cluster's
//! JetStream), so nobody without it can test a guessed (IP, user agent)
//! pair against an id. Once a salt is forgotten, the ids it made can no
//! longer be linked to anyone.
//!
//! Rotation ([`SaltRotation`]) happens at UTC period boundaries. Only the
//! current salt and the one of the period just before exist: the previous
//! one serves events stamped in that period (back-fill), anything older
//! is hashed with the current salt. An event of a new period rotates;
//! without events, [`VisitorIds::forget_past`] (run on a timer by
//! [`VisitorIds::forget_past_every`]) drops what has aged past that, so
//! a quiet day or a restart days later keeps no older salt.
//!
//! Where salts come from:
//! - [`VisitorIds::in_memory`]: the first event of a period draws its
//!   salt; a restart draws a new one.
//! - [`VisitorIds::open`]: the same, but a new salt is written to the data
//!   directory (atomically, mode 0600) before it hashes anything, so a
//!   restart keeps the period's salt and a returning visitor is not
//!   counted again.
//! - [`VisitorIds::external`]: salts are supplied through a [`SaltFeed`]
//!   (a cluster node feeds every node the same ones, kept in JetStream),
//!   never drawn here. The supplier may also hand over the next period's
//!   salt shortly before its boundary, so deriving never waits for it;
//!   the first event of the new period promotes it. An event when the
//!   clock's period has no salt is [`SaltError::Unavailable`]: refused,
//!   rather than hashed under a salt only this process has (which would
//!   count a person once per node).
//!
//! Locking: one `RwLock` over the salts. Deriving takes the read lock;
//! the write lock is taken once per period, by the first event of a new
//! period (which draws and persists the new salt, or promotes the
//! supplied one), and by each [`SaltFeed::install`].

use std::fmt;
use std::fs::{self, File};
use std::hash::Hasher;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use siphasher::sip128::{Hasher128, SipHasher13};

use crate::background::Periodic;
use crate::persist::PersistError;
use crate::persist::storage::fs::{ensure_dir, sync_dir};
use crate::time::clock::{Clock, Timestamp};

/// The salts' file name in the data directory.
pub const SALT_FILE: &str = "visitor-salts";
const MAGIC: &[u8; 8] = b"TRKSALT1";
const ENTRY_LEN: usize = 8 + 16;

/// How often the visitor-id salt changes, at UTC boundaries.
///
/// The trade-off: a visitor is one id within a period and a new one in
/// the next, so a range longer than the period counts a returning person
/// once per period they came in. A longer period counts multi-day ranges
/// better and keeps a visitor linkable (by whoever holds the salt) for
/// longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaltRotation {
    /// A new salt every UTC day, as Plausible: multi-day ranges count a
    /// person once per day they visited.
    #[default]
    Day,
    /// A new salt every ISO week (from Monday 00:00 UTC).
    Week,
    /// A new salt every calendar month (UTC).
    Month,
    /// One salt for ever: a person is one visitor in every range, and
    /// their visits stay linkable for as long as the salt exists.
    Never,
}

impl SaltRotation {
    /// The number of the period `at` falls in; consecutive periods have
    /// consecutive numbers.
    pub fn period(self, at: Timestamp) -> u64 {
        let days = at.as_millis() / 86_400_000;
        match self {
            SaltRotation::Day => days,
            // 1970-01-01 was a Thursday: shifting by 3 starts weeks on Monday.
            SaltRotation::Week => (days + 3) / 7,
            SaltRotation::Month => {
                let (year, month) = year_month(days);
                year * 12 + month - 1
            }
            SaltRotation::Never => 0,
        }
    }

    /// When `period` starts (UTC), or `None` if it never does
    /// ([`Never`](Self::Never) has one period, 0, since ever) or is past
    /// what a [`Timestamp`] holds. Periods that began before 1970 start
    /// at 0.
    pub fn start_of(self, period: u64) -> Option<Timestamp> {
        let days = match self {
            SaltRotation::Day => Some(period),
            SaltRotation::Week => period.checked_mul(7).map(|d| d.saturating_sub(3)),
            SaltRotation::Month => {
                let (year, month) = (period / 12, period % 12 + 1);
                // Far past any timestamp; keeps the calendar arithmetic in range.
                let year = i64::try_from(year).ok().filter(|&y| y < 1 << 40)?;
                let days = crate::time::civil::days_from_civil(year, month as u32, 1);
                Some(u64::try_from(days).unwrap_or(0))
            }
            SaltRotation::Never => (period == 0).then_some(0),
        }?;
        days.checked_mul(86_400_000).map(Timestamp::from_millis)
    }

    fn code(self) -> u8 {
        match self {
            SaltRotation::Day => 1,
            SaltRotation::Week => 2,
            SaltRotation::Month => 3,
            SaltRotation::Never => 4,
        }
    }

    /// The name used on the command line (`day`, `week`, ...).
    pub fn name(self) -> &'static str {
        match self {
            SaltRotation::Day => "day",
            SaltRotation::Week => "week",
            SaltRotation::Month => "month",
            SaltRotation::Never => "never",
        }
    }
}

/// The (year, month 1..=12) of a day number since 1970-01-01, by the
/// proleptic Gregorian calendar (days to civil date, in 400-year eras).
fn year_month(days: u64) -> (u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let m = (5 * day_of_year + 2) / 153; // 0 = March
    let month = if m < 10 { m + 3 } else { m - 9 };
    (year_of_era + era * 400 + u64::from(month <= 2), month)
}

#[derive(Clone, Copy, PartialEq, Eq, Default)]
struct Salt {
    period: u64,
    key: [u8; 16],
}

#[derive(Default, Clone, Copy)]
struct Salts {
    current: Option<Salt>,
    previous: Option<Salt>,
    /// Only with an external source: the next period's salt, supplied
    /// ahead of its boundary.
    next: Option<Salt>,
}

impl Salts {
    /// The salt for an event in `period`, if no new salt is needed: the
    /// current one, the previous one for its own period, and the current
    /// one for anything older (or when the clock went back).
    fn for_period(&self, period: u64) -> Option<Salt> {
        let current = self.current?;
        match self.previous {
            Some(previous) if previous.period == period => Some(previous),
            _ if current.period >= period => Some(current),
            _ => None,
        }
    }

    /// Whether the clock's period `now` has its salt (or a later one,
    /// when the clock went back).
    fn serves(&self, now: u64) -> bool {
        self.current.is_some_and(|c| c.period >= now)
    }

    /// Those of `held` that belong around the clock's period `now`: its
    /// own salt, the one before, and the one after; the rest are dropped.
    fn around(held: impl IntoIterator<Item = Salt>, now: u64) -> Salts {
        let mut out = Salts::default();
        for salt in held {
            if salt.period == now {
                out.current = Some(salt);
            } else if salt.period.checked_add(1) == Some(now) {
                out.previous = Some(salt);
            } else if now.checked_add(1) == Some(salt.period) {
                out.next = Some(salt);
            }
        }
        out
    }

    fn held(&self) -> impl Iterator<Item = Salt> {
        [self.previous, self.current, self.next]
            .into_iter()
            .flatten()
    }
}

/// A salt's 16 secret bytes, as a [`SaltFeed`] supplier keeps them. Its
/// `Debug` never shows them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SaltKey([u8; 16]);

impl SaltKey {
    /// A new random salt from the operating system.
    ///
    /// Errors: the system's random source failed.
    pub fn random() -> Result<Self, SaltError> {
        let mut key = [0; 16];
        getrandom::fill(&mut key).map_err(|e| {
            SaltError::Persist(PersistError::io(
                Path::new("getrandom"),
                "draw a salt from",
                std::io::Error::other(e.to_string()),
            ))
        })?;
        Ok(Self(key))
    }

    /// A salt from its bytes (as [`to_bytes`](Self::to_bytes) gave them).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The salt's bytes, to keep where the supplier keeps salts.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

impl fmt::Debug for SaltKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SaltKey(..)")
    }
}

/// Why no visitor id was derived. Never shows a salt.
#[derive(Debug)]
pub enum SaltError {
    /// The first event of a new period could not draw or persist the new
    /// salt; nothing was derived (retry).
    Persist(PersistError),
    /// Salts come from a [`SaltFeed`] and none was supplied for the
    /// clock's period (a cluster node that could not reach JetStream at
    /// the boundary); nothing was derived (retry once it is).
    Unavailable {
        /// The period without a salt.
        period: u64,
    },
}

impl fmt::Display for SaltError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaltError::Persist(e) => write!(f, "visitor-id salt: {e}"),
            SaltError::Unavailable { period } => write!(
                f,
                "no visitor-id salt supplied for the current period ({period}) yet"
            ),
        }
    }
}

impl std::error::Error for SaltError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SaltError::Persist(e) => Some(e),
            SaltError::Unavailable { .. } => None,
        }
    }
}

impl From<PersistError> for SaltError {
    fn from(e: PersistError) -> Self {
        SaltError::Persist(e)
    }
}

/// Where a [`VisitorIds`] keeps its salts.
#[derive(Debug, Clone)]
enum Source {
    Memory,
    File(PathBuf),
    External,
}

/// The supplier's handle on the salts of [`VisitorIds::external`]: what
/// it installs is what ids are derived with. Cheap to clone; its `Debug`
/// never shows a salt.
#[derive(Clone)]
pub struct SaltFeed {
    rotation: SaltRotation,
    clock: Arc<dyn Clock>,
    salts: Arc<RwLock<Salts>>,
}

impl fmt::Debug for SaltFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaltFeed")
            .field("rotation", &self.rotation)
            .finish_non_exhaustive()
    }
}

impl SaltFeed {
    /// The rotation of the ids this feeds.
    pub fn rotation(&self) -> SaltRotation {
        self.rotation
    }

    /// The ids' clock reading.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Whether the salt of `period` is held.
    pub fn holds(&self, period: u64) -> bool {
        read(&self.salts).held().any(|s| s.period == period)
    }

    /// Makes `key` the salt of `period` if that period is the clock's,
    /// the one before or the one after (else returns `false` and keeps
    /// nothing). Salts of periods before the previous one are dropped.
    pub fn install(&self, period: u64, key: SaltKey) -> bool {
        let now = self.rotation.period(self.clock.now());
        let fresh = Salt { period, key: key.0 };
        let mut salts = self.salts.write().unwrap_or_else(PoisonError::into_inner);
        let kept = Salts::around(
            salts.held().filter(|s| s.period != period).chain([fresh]),
            now,
        );
        *salts = kept;
        kept.held().any(|s| s == fresh)
    }
}

/// A derived visitor id: 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VisitorId([u8; 32]);

impl VisitorId {
    /// The id as text, to pass to [`Tracker::record`](crate::Tracker::record).
    pub fn as_str(&self) -> &str {
        // Only hex digits are ever written into it.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for VisitorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VisitorId({})", self.as_str())
    }
}

/// Derives visitor ids for events that come without one.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tracker_core::browser::{SaltRotation, VisitorIds};
/// use tracker_core::{ManualClock, Timestamp};
///
/// let clock = ManualClock::new(Timestamp::from_millis(0));
/// let ids = VisitorIds::in_memory(SaltRotation::Day, Arc::new(clock.clone()));
/// let ip = "203.0.113.7".parse()?;
/// let morning = ids.derive("example.com", ip, "Mozilla/5.0")?;
/// clock.advance(Duration::from_secs(12 * 3600));
/// assert_eq!(ids.derive("example.com", ip, "Mozilla/5.0")?, morning);
/// assert_ne!(ids.derive("example.org", ip, "Mozilla/5.0")?, morning);
/// clock.advance(Duration::from_secs(12 * 3600)); // the next UTC day
/// assert_ne!(ids.derive("example.com", ip, "Mozilla/5.0")?, morning);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct VisitorIds {
    rotation: SaltRotation,
    clock: Arc<dyn Clock>,
    source: Source,
    /// Shared with the [`SaltFeed`] of external ids.
    salts: Arc<RwLock<Salts>>,
}

impl fmt::Debug for VisitorIds {
    /// Never shows the salts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VisitorIds")
            .field("rotation", &self.rotation)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl VisitorIds {
    /// Salts kept in memory only: a restart starts a new salt, so everyone
    /// who returns after it counts again.
    pub fn in_memory(rotation: SaltRotation, clock: Arc<dyn Clock>) -> Self {
        Self::with(rotation, clock, Source::Memory, Salts::default())
    }

    /// Salts supplied from outside through [`feed`](Self::feed), never
    /// drawn here: what a cluster node installs, the same on every node.
    /// Until the clock's period has one, deriving is
    /// [`SaltError::Unavailable`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tracker_core::browser::{SaltError, SaltKey, SaltRotation, VisitorIds};
    /// use tracker_core::{ManualClock, Timestamp};
    ///
    /// let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
    /// let ids = VisitorIds::external(SaltRotation::Day, clock);
    /// let ip = "203.0.113.7".parse()?;
    /// let unsupplied = ids.derive("example.com", ip, "Mozilla/5.0");
    /// assert!(matches!(unsupplied, Err(SaltError::Unavailable { period: 0 })));
    /// let feed = ids.feed().expect("external ids have a feed");
    /// feed.install(0, SaltKey::from_bytes([7; 16]));
    /// assert!(ids.derive("example.com", ip, "Mozilla/5.0").is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn external(rotation: SaltRotation, clock: Arc<dyn Clock>) -> Self {
        Self::with(rotation, clock, Source::External, Salts::default())
    }

    fn with(rotation: SaltRotation, clock: Arc<dyn Clock>, source: Source, salts: Salts) -> Self {
        Self {
            rotation,
            clock,
            source,
            salts: Arc::new(RwLock::new(salts)),
        }
    }

    /// Salts kept in `dir` ([`SALT_FILE`]), read now if the file exists.
    /// Nothing is written until the first id is derived, so a process that
    /// fails to start (say, the directory is locked by another) changes
    /// nothing. Salts written under another rotation are discarded.
    ///
    /// Errors: the file cannot be read, or is damaged
    /// ([`PersistError::Corrupt`] / [`PersistError::BadMagic`]: delete it to
    /// start with a new salt).
    pub fn open(
        dir: &Path,
        rotation: SaltRotation,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, PersistError> {
        let file = dir.join(SALT_FILE);
        let salts = match fs::read(&file) {
            Ok(bytes) => decode(&file, &bytes, rotation)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Salts::default(),
            Err(e) => return Err(PersistError::io(&file, "read", e)),
        };
        Ok(Self::with(rotation, clock, Source::File(file), salts))
    }

    /// The rotation period.
    pub fn rotation(&self) -> SaltRotation {
        self.rotation
    }

    /// The handle that supplies the salts of [`external`](Self::external)
    /// ids; `None` for ids that draw their own.
    pub fn feed(&self) -> Option<SaltFeed> {
        matches!(self.source, Source::External).then(|| SaltFeed {
            rotation: self.rotation,
            clock: self.clock.clone(),
            salts: self.salts.clone(),
        })
    }

    /// The id of a visitor of `site` (the page's host) from `ip` with
    /// `user_agent`, now by the clock.
    ///
    /// Errors: the first event of a new period could not persist the new
    /// salt, or an external source has not supplied it
    /// ([`SaltError`]); nothing was derived (retry).
    pub fn derive(&self, site: &str, ip: IpAddr, user_agent: &str) -> Result<VisitorId, SaltError> {
        self.derive_bytes(site, ip, user_agent.as_bytes())
    }

    /// [`derive`](Self::derive) of a user agent given as its bytes: the
    /// same id as for its text. For a caller that knows the bytes are
    /// text without checking them again (see
    /// [`BotFilter::lets_through`](crate::browser::BotFilter::lets_through)).
    pub fn derive_bytes(
        &self,
        site: &str,
        ip: IpAddr,
        user_agent: &[u8],
    ) -> Result<VisitorId, SaltError> {
        let now = self.clock.now();
        self.derive_between(now, now, site, ip, user_agent)
    }

    /// [`derive`](Self::derive) for an event stamped `at`: the previous
    /// period's salt for an event of that period, the current salt for
    /// anything else (a salt is never made for a past or future period).
    pub fn derive_at(
        &self,
        at: Timestamp,
        site: &str,
        ip: IpAddr,
        user_agent: &str,
    ) -> Result<VisitorId, SaltError> {
        self.derive_bytes_at(at, site, ip, user_agent.as_bytes())
    }

    /// [`derive_at`](Self::derive_at) of a user agent given as its bytes
    /// (see [`derive_bytes`](Self::derive_bytes)).
    pub fn derive_bytes_at(
        &self,
        at: Timestamp,
        site: &str,
        ip: IpAddr,
        user_agent: &[u8],
    ) -> Result<VisitorId, SaltError> {
        self.derive_between(at, self.clock.now(), site, ip, user_agent)
    }

    /// The id of an event stamped `at`, the clock reading `now`.
    fn derive_between(
        &self,
        at: Timestamp,
        now: Timestamp,
        site: &str,
        ip: IpAddr,
        user_agent: &[u8],
    ) -> Result<VisitorId, SaltError> {
        let now = self.rotation.period(now);
        let period = self.rotation.period(at).min(now);
        let found = {
            let salts = read(&self.salts);
            if salts.serves(now) {
                salts.for_period(period)
            } else {
                None
            }
        };
        let salt = match found {
            Some(salt) => salt,
            None => {
                let salts = self.rotate(now)?;
                // The clock's period now has a salt, which serves `period`
                // (at most the clock's) if the previous one does not.
                salts
                    .for_period(period)
                    .or(salts.current)
                    .unwrap_or_default()
            }
        };
        Ok(hash(&salt.key, site, ip, user_agent))
    }

    /// Drops the salts of periods before the one before the clock's (from
    /// a file, rewriting it without them first). Rotation drops them only
    /// when an event comes; this keeps the promise that no older salt
    /// exists across quiet periods, and after a restart. Returns whether
    /// any was dropped.
    ///
    /// Errors: the file could not be rewritten ([`SaltError::Persist`]);
    /// nothing was dropped (retry).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tracker_core::browser::{SaltRotation, VisitorIds};
    /// use tracker_core::{ManualClock, Timestamp};
    ///
    /// let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
    /// let ids = VisitorIds::in_memory(SaltRotation::Day, clock.clone());
    /// let ip = "203.0.113.7".parse()?;
    /// let first = ids.derive("example.com", ip, "Mozilla/5.0")?;
    /// clock.advance(Duration::from_secs(86_400));
    /// assert!(!ids.forget_past()?, "yesterday's salt serves back-fill");
    /// clock.advance(Duration::from_secs(86_400));
    /// assert!(ids.forget_past()?, "the day before yesterday's is gone");
    /// let back_filled = ids.derive_at(Timestamp::from_millis(0), "example.com", ip, "Mozilla/5.0")?;
    /// assert_ne!(back_filled, first);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn forget_past(&self) -> Result<bool, SaltError> {
        let now = self.rotation.period(self.clock.now());
        // Kept: the clock's period and the one before (and, after the
        // clock went back, later ones, as `for_period` serves them).
        let kept = |salt: Option<Salt>| salt.filter(|s| s.period.saturating_add(1) >= now);
        let mut salts = self.salts.write().unwrap_or_else(PoisonError::into_inner);
        let left = Salts {
            current: kept(salts.current),
            previous: kept(salts.previous),
            next: salts.next,
        };
        if left.held().count() == salts.held().count() {
            return Ok(false);
        }
        if let Source::File(file) = &self.source {
            write(file, &left, self.rotation)?;
        }
        *salts = left;
        Ok(true)
    }

    /// Runs [`forget_past`](Self::forget_past) every `every` on a thread
    /// of its own until the handle is dropped; a failed run is retried at
    /// the next. The thread shares these ids' salts.
    pub fn forget_past_every(&self, every: Duration) -> SaltForgetting {
        let ids = Arc::new(VisitorIds {
            rotation: self.rotation,
            clock: self.clock.clone(),
            source: self.source.clone(),
            salts: self.salts.clone(),
        });
        let thread = Periodic::spawn("tracker-salts", every, &ids, |ids| {
            let _ = ids.forget_past();
        });
        SaltForgetting {
            _thread: thread,
            _ids: ids,
        }
    }

    /// Makes `period` (the clock's) have a salt: draws and persists one,
    /// or with an external source promotes the one supplied ahead (else
    /// [`SaltError::Unavailable`]). Returns the salts then in force.
    fn rotate(&self, period: u64) -> Result<Salts, SaltError> {
        let mut salts = self.salts.write().unwrap_or_else(PoisonError::into_inner);
        if salts.serves(period) {
            return Ok(*salts); // another event rotated meanwhile
        }
        if let Source::External = self.source {
            let next = Salts::around(salts.held(), period);
            *salts = next;
            return match next.current {
                Some(_) => Ok(next),
                None => Err(SaltError::Unavailable { period }),
            };
        }
        let fresh = Salt {
            period,
            key: SaltKey::random()?.0,
        };
        let previous = salts
            .current
            .filter(|c| c.period.checked_add(1) == Some(period));
        let next = Salts {
            current: Some(fresh),
            previous,
            next: None,
        };
        if let Source::File(file) = &self.source {
            write(file, &next, self.rotation)?;
        }
        *salts = next;
        Ok(next)
    }
}

/// The thread of [`VisitorIds::forget_past_every`]; dropping it stops
/// the thread.
#[derive(Debug)]
pub struct SaltForgetting {
    _thread: Periodic,
    /// What the thread holds weakly: it runs while this handle lives.
    _ids: Arc<VisitorIds>,
}

fn read(salts: &RwLock<Salts>) -> std::sync::RwLockReadGuard<'_, Salts> {
    salts.read().unwrap_or_else(PoisonError::into_inner)
}

fn hash(key: &[u8; 16], site: &str, ip: IpAddr, user_agent: &[u8]) -> VisitorId {
    let ip = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
    .octets();
    // Lengths first, so no two different inputs feed the same bytes.
    let (site_len, ua_len) = (
        (site.len() as u64).to_le_bytes(),
        (user_agent.len() as u64).to_le_bytes(),
    );
    let parts: [&[u8]; 5] = [&site_len, site.as_bytes(), &ip, &ua_len, user_agent];
    let mut h = SipHasher13::new_with_key(key);
    // One write of the whole input when it fits a stack buffer (most
    // events): SipHash's buffering of a partial block costs on every
    // write. The stream of bytes, and so the id, is the same either way.
    let mut buf = [0u8; 384];
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len <= buf.len() {
        let mut at = 0;
        for part in parts {
            buf[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        h.write(&buf[..len]);
    } else {
        for part in parts {
            h.write(part);
        }
    }
    let digest = h.finish128().as_bytes();
    let mut out = [0; 32];
    for (pair, &b) in out.chunks_exact_mut(2).zip(&digest) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
    }
    VisitorId(out)
}

/// The two lowercase hex digits of each byte: one load a byte of the
/// digest instead of two shifts, masks and loads.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let digits = b"0123456789abcdef";
    let mut table = [[0; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [digits[i >> 4], digits[i & 15]];
        i += 1;
    }
    table
};

/// ```text
/// magic "TRKSALT1" | rotation: u8 | count: u8
/// | count x (period: u64 LE | key: 16 bytes) | CRC-32C of the bytes before: u32 LE
/// ```
fn encode(salts: &Salts, rotation: SaltRotation) -> Vec<u8> {
    let entries: Vec<Salt> = salts.current.into_iter().chain(salts.previous).collect();
    let mut out = Vec::with_capacity(10 + entries.len() * ENTRY_LEN + 4);
    out.extend_from_slice(MAGIC);
    out.push(rotation.code());
    out.push(entries.len() as u8);
    for salt in entries {
        out.extend_from_slice(&salt.period.to_le_bytes());
        out.extend_from_slice(&salt.key);
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode(file: &Path, bytes: &[u8], rotation: SaltRotation) -> Result<Salts, PersistError> {
    let corrupt = |offset: usize, reason: &str| PersistError::Corrupt {
        file: file.to_path_buf(),
        offset: offset as u64,
        reason: reason.into(),
    };
    if !bytes.starts_with(MAGIC) {
        return Err(PersistError::BadMagic {
            file: file.to_path_buf(),
        });
    }
    let Some((body, crc)) = bytes.split_last_chunk::<4>() else {
        return Err(corrupt(0, "shorter than a header"));
    };
    if body.len() < 10 || crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
        return Err(corrupt(0, "checksum mismatch"));
    }
    let count = usize::from(body[9]);
    if count > 2 || body.len() != 10 + count * ENTRY_LEN {
        return Err(corrupt(9, "wrong number of salts"));
    }
    if body[8] != rotation.code() {
        // Written under another rotation: its periods mean something else.
        return Ok(Salts::default());
    }
    let mut entries = body[10..].chunks_exact(ENTRY_LEN).map(|e| {
        let (period, key) = e.split_at(8);
        Salt {
            period: u64::from_le_bytes(period.try_into().unwrap_or_default()),
            key: key.try_into().unwrap_or_default(),
        }
    });
    Ok(Salts {
        current: entries.next(),
        previous: entries.next(),
        next: None,
    })
}

/// Writes the salts to `file` atomically: a temporary file (mode 0600)
/// synced, renamed over the old one, and the directory synced.
fn write(file: &Path, salts: &Salts, rotation: SaltRotation) -> Result<(), PersistError> {
    let dir = file.parent().unwrap_or(Path::new("."));
    ensure_dir(dir)?;
    let tmp = file.with_extension("tmp");
    let tmp = tmp.as_path();
    let io = |op| move |e| PersistError::io(tmp, op, e);
    let mut options = File::options();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(tmp).map_err(io("create"))?;
    out.write_all(&encode(salts, rotation))
        .map_err(io("write"))?;
    out.sync_all().map_err(io("fsync"))?;
    drop(out);
    fs::rename(tmp, file).map_err(io("rename"))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::clock::ManualClock;
    use std::time::Duration;

    const DAY: u64 = 86_400_000;

    fn at(millis: u64) -> Timestamp {
        Timestamp::from_millis(millis)
    }

    #[test]
    fn periods_follow_utc_calendar() {
        use SaltRotation::*;
        assert_eq!(Day.period(at(DAY - 1)), 0);
        assert_eq!(Day.period(at(DAY)), 1);
        // 1970-01-04 was a Sunday, 1970-01-05 a Monday.
        assert_eq!(Week.period(at(3 * DAY)), 0);
        assert_eq!(Week.period(at(4 * DAY)), 1);
        assert_eq!(Week.period(at(10 * DAY)), 1);
        assert_eq!(Week.period(at(11 * DAY)), 2);
        assert_eq!(year_month(0), (1970, 1));
        assert_eq!(year_month(31), (1970, 2));
        // 2024-02-29 is day 19782, 2024-03-01 day 19783.
        assert_eq!(year_month(19_782), (2024, 2));
        assert_eq!(year_month(19_783), (2024, 3));
        assert_eq!(Month.period(at(19_783 * DAY)), 2024 * 12 + 2);
        assert_eq!(Never.period(at(u64::MAX)), 0);
    }

    #[test]
    fn rotation_with_a_manual_clock() {
        let clock = ManualClock::new(at(100 * DAY + 1));
        let ids = VisitorIds::in_memory(SaltRotation::Day, Arc::new(clock.clone()));
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let id = |ids: &VisitorIds| ids.derive("site.test", ip, "UA").unwrap();
        let day1 = id(&ids);
        clock.advance(Duration::from_millis(DAY - 2));
        assert_eq!(id(&ids), day1, "same day, same id");
        clock.advance(Duration::from_millis(1));
        let day2 = id(&ids);
        assert_ne!(day2, day1, "next day, another id");
        // The previous day's salt still serves that day's events...
        assert_eq!(
            ids.derive_at(at(100 * DAY), "site.test", ip, "UA").unwrap(),
            day1
        );
        // ...but nothing older, and nothing in the future gets a salt.
        assert_eq!(ids.derive_at(at(0), "site.test", ip, "UA").unwrap(), day2);
        assert_eq!(
            ids.derive_at(at(500 * DAY), "site.test", ip, "UA").unwrap(),
            day2
        );
        // Two days on, day 1's salt is gone for good.
        clock.advance(Duration::from_millis(2 * DAY));
        id(&ids);
        let salts = ids.salts.read().unwrap();
        assert_eq!(salts.current.map(|s| s.period), Some(103));
        assert!(
            salts.previous.is_none(),
            "only the current salt and the day before's"
        );
    }

    #[test]
    fn periods_start_where_they_begin() {
        use SaltRotation::*;
        let months = [1970 * 12 + 1, 2024 * 12 + 1, 2024 * 12 + 11, 2400 * 12];
        for (rotation, periods) in [
            (Day, [1, 2, 500, 24_300]),
            (Week, [1, 2, 500, 24_300]),
            (Month, months),
        ] {
            for period in periods {
                let start = rotation.start_of(period).unwrap();
                assert_eq!(rotation.period(start), period, "{rotation:?} {period}");
                let before = Timestamp::from_millis(start.as_millis() - 1);
                assert_eq!(rotation.period(before), period - 1, "{rotation:?} {period}");
            }
        }
        assert_eq!(Week.start_of(0), Some(at(0)));
        assert_eq!(Month.start_of(5), Some(at(0)), "before 1970");
        assert_eq!(Never.start_of(0), Some(at(0)));
        assert_eq!(Never.start_of(1), None);
        assert_eq!(Day.start_of(u64::MAX), None);
        assert_eq!(Month.start_of(u64::MAX), None);
    }

    #[test]
    fn external_salts_are_only_what_was_supplied() {
        let clock = ManualClock::new(at(100 * DAY + 1));
        let ids = VisitorIds::external(SaltRotation::Day, Arc::new(clock.clone()));
        let twin = VisitorIds::external(SaltRotation::Day, Arc::new(clock.clone()));
        assert!(
            VisitorIds::in_memory(SaltRotation::Day, Arc::new(clock.clone()))
                .feed()
                .is_none()
        );
        let (feed, twin_feed) = (ids.feed().unwrap(), twin.feed().unwrap());
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let id = |ids: &VisitorIds| ids.derive("site.test", ip, "UA");
        assert!(matches!(
            id(&ids),
            Err(SaltError::Unavailable { period: 100 })
        ));
        // Too old and too far ahead are refused; the previous day is kept.
        assert!(!feed.install(98, SaltKey::from_bytes([1; 16])));
        assert!(!feed.install(102, SaltKey::from_bytes([1; 16])));
        assert!(feed.install(99, SaltKey::from_bytes([2; 16])));
        assert!(id(&ids).is_err(), "the previous day's salt is not today's");
        for f in [&feed, &twin_feed] {
            assert!(f.install(100, SaltKey::from_bytes([3; 16])));
        }
        let day100 = id(&ids).unwrap();
        assert_eq!(id(&twin).unwrap(), day100, "same salt, same id");
        assert_ne!(
            ids.derive_at(at(99 * DAY), "site.test", ip, "UA").unwrap(),
            day100,
            "the previous day's events keep its salt"
        );
        // The next day's salt, supplied ahead, serves from its boundary on.
        assert!(feed.install(101, SaltKey::from_bytes([4; 16])));
        assert_eq!(id(&ids).unwrap(), day100);
        clock.advance(Duration::from_millis(DAY));
        let day101 = id(&ids).unwrap();
        assert_ne!(day101, day100);
        assert_eq!(
            ids.derive_at(at(100 * DAY), "site.test", ip, "UA").unwrap(),
            day100
        );
        assert!(!feed.holds(99), "two days back is forgotten");
        // A boundary without the next salt refuses; it never draws its own.
        assert!(matches!(
            id(&twin),
            Err(SaltError::Unavailable { period: 101 })
        ));
        clock.advance(Duration::from_millis(DAY));
        assert!(matches!(
            id(&ids),
            Err(SaltError::Unavailable { period: 102 })
        ));
        assert!(feed.holds(101) && !feed.holds(100));
        assert!(!format!("{feed:?} {ids:?} {:?}", SaltKey::from_bytes([4; 16])).contains('4'));
    }

    #[test]
    fn ids_are_pinned() {
        // Salts persist across restarts (and upgrades) within their
        // period, so the derivation must never change: a changed id would
        // count a returning visitor again. Values from the first version.
        let key = [7; 16];
        let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            hash(&key, "example.com", v4, ua.as_bytes()).as_str(),
            "6987a45ec8660021ee6c8f1286baaea6"
        );
        assert_eq!(
            hash(&key, "", v6, b"").as_str(),
            "5e614d9bde5a6a4182e05197af4b0c4c"
        );
        let long = "x".repeat(1000);
        assert_eq!(
            hash(&key, "example.com", v4, long.as_bytes()).as_str(),
            "ef339a26b795ba10bee2bee6d393d4a2"
        );
    }

    #[test]
    fn inputs_are_separated() {
        let key = [7; 16];
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_ne!(hash(&key, "ab", ip, b"c"), hash(&key, "a", ip, b"bc"));
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(hash(&key, "s", v4, b"u"), hash(&key, "s", mapped, b"u"));
        assert_ne!(hash(&[8; 16], "s", v4, b"u"), hash(&key, "s", v4, b"u"));
        assert!(
            hash(&key, "s", v4, b"u")
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
        );
    }

    #[test]
    fn salts_survive_a_restart_and_stay_in_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(at(42 * DAY + 12 * 3_600_000));
        let ip: IpAddr = "192.0.2.33".parse().unwrap();
        let ua = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0";
        let open = |rotation| VisitorIds::open(dir.path(), rotation, Arc::new(clock.clone()));
        let ids = open(SaltRotation::Day).unwrap();
        assert!(
            !dir.path().join(SALT_FILE).exists(),
            "nothing written before use"
        );
        let before = ids.derive("site.test", ip, ua).unwrap();
        drop(ids);
        let again = open(SaltRotation::Day).unwrap();
        assert_eq!(again.derive("site.test", ip, ua).unwrap(), before);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(SALT_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let bytes = fs::read(dir.path().join(SALT_FILE)).unwrap();
        assert_eq!(bytes.len(), 10 + ENTRY_LEN + 4);
        for needle in [ip.to_string().as_bytes(), ua.as_bytes(), b"site.test"] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        }
        // Another rotation does not reuse the day's salt.
        let weekly = open(SaltRotation::Week).unwrap();
        assert_ne!(weekly.derive("site.test", ip, ua).unwrap(), before);
    }

    /// A salt past the previous period is dropped from memory and from
    /// its file without an event to rotate it (a quiet stretch, or a
    /// restart days later), by a call and by the timer.
    #[test]
    fn past_salts_are_forgotten_without_an_event() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(SALT_FILE);
        let clock = ManualClock::new(at(42 * DAY + 12 * 3_600_000));
        let open = || VisitorIds::open(dir.path(), SaltRotation::Day, Arc::new(clock.clone()));
        let ip: IpAddr = "192.0.2.33".parse().unwrap();
        let ua = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0";
        let ids = open().unwrap();
        let first = ids.derive("site.test", ip, ua).unwrap();
        let salts_in_file = || fs::read(&file).unwrap()[9];
        assert_eq!(salts_in_file(), 1);
        clock.advance(Duration::from_millis(DAY));
        assert!(!ids.forget_past().unwrap(), "the previous day's salt stays");
        assert_eq!(salts_in_file(), 1);
        clock.advance(Duration::from_millis(DAY));
        assert!(ids.forget_past().unwrap());
        assert_eq!(salts_in_file(), 0, "gone from the file");
        assert!(!ids.forget_past().unwrap());
        let back_filled = ids.derive_at(at(42 * DAY), "site.test", ip, ua).unwrap();
        assert_ne!(back_filled, first, "gone from memory");

        // A restart days later: the timer drops the file's old salt.
        drop(ids);
        clock.advance(Duration::from_millis(3 * DAY));
        let ids = open().unwrap();
        assert_eq!(salts_in_file(), 1);
        let forgetting = ids.forget_past_every(Duration::from_millis(5));
        let start = std::time::Instant::now();
        while salts_in_file() != 0 {
            assert!(start.elapsed() < Duration::from_secs(30), "not forgotten");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(forgetting);
    }

    #[test]
    fn damaged_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(at(DAY)));
        let ids = VisitorIds::open(dir.path(), SaltRotation::Day, clock.clone()).unwrap();
        ids.derive("s", "10.0.0.1".parse().unwrap(), "u").unwrap();
        let path = dir.path().join(SALT_FILE);
        let good = fs::read(&path).unwrap();
        let reopen = || VisitorIds::open(dir.path(), SaltRotation::Day, clock.clone());
        for cut in 0..good.len() {
            fs::write(&path, &good[..cut]).unwrap();
            assert!(reopen().is_err(), "cut at {cut}");
        }
        let mut flipped = good.clone();
        flipped[12] ^= 1;
        fs::write(&path, &flipped).unwrap();
        assert!(matches!(reopen(), Err(PersistError::Corrupt { .. })));
        fs::write(&path, b"not ours at all").unwrap();
        assert!(matches!(reopen(), Err(PersistError::BadMagic { .. })));
    }
}
