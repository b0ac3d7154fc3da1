//! The [`Tracker`]: validation and routing in front of the stripes.

mod admit;
pub(crate) mod batch;
pub(crate) mod budget;
pub(crate) mod config;
pub(crate) mod partial;
pub(crate) mod ranges;
#[cfg(all(test, feature = "shuttle"))]
mod shuttle_tests;
pub(crate) mod site;
pub mod snapshot;
pub(crate) mod stripe;
pub(crate) mod sweeper;

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

use crate::canonical_url::{Keys, canonicalize, page_key};
use crate::deferred::Deferring;
use crate::error::{ConfigError, Field, TrackerError};
use crate::prefetch::prefetch_for_write;
use crate::report::{Distinct, PageCount, Recorded, Stats};
use crate::set::page::Page;
use crate::set::union::union_hashes;
use crate::set::visitor_hash::VisitorHasher;
use crate::sync::{self, AtomicU64, AtomicUsize, CachePadded, Ordering, RwLock};
use crate::time::TimeError;
use crate::time::clock::Timestamp;
use crate::time::ttl::{Expiry, MAX_CLOCK_SKEW, ttl_ticks};
use budget::{MemoryBudget, MemoryPolicy};
use config::{TrackerBuilder, TrackerConfig};
use stripe::{
    EVICTION_SAMPLES, SLOTS_PER_BUCKET, SWEEP_BUCKETS, SWEEP_SLOTS, Stripe, StripeRecord,
    SweepStep, TableHint, UrlHasher,
};

/// Counts distinct visitors per page; share it between threads by
/// reference or in an `Arc`.
///
/// ```
/// use tracker_core::Tracker;
///
/// let tracker = Tracker::new();
/// tracker.record("alice", "https://example.com/pricing")?;
/// tracker.record("bob", "https://EXAMPLE.com/pricing#plans")?;
/// tracker.record("alice", "https://example.com/pricing")?; // counted once
/// assert_eq!(tracker.distinct("https://example.com/pricing")?.visitors, 2);
/// # Ok::<(), tracker_core::TrackerError>(())
/// ```
pub struct Tracker {
    stripes: Box<[CachePadded<RwLock<Stripe>>]>,
    /// Where each stripe's page table is, for a record to prefetch its
    /// bucket before taking the lock (see [`TableHint`]).
    hints: Box<[TableHint]>,
    /// `stripes.len() - 1`.
    stripe_mask: usize,
    visitor_hasher: VisitorHasher,
    /// Keys the in-memory page tables; randomly seeded per tracker, never
    /// persisted.
    url_hasher: UrlHasher,
    /// Bytes held by all stripes, plus the tracker's fixed overhead.
    budget: MemoryBudget,
    evictions: AtomicU64,
    rejections: AtomicU64,
    /// State of the random picks eviction samples with.
    random: AtomicU64,
    /// The TTL in ticks, if there is one.
    ttl: Option<u32>,
    /// Events ignored for being older than the TTL.
    stale_events: AtomicU64,
    /// The stripe the next explicit sweep step starts at.
    sweep_stripe: AtomicUsize,
    /// The most hashes a site answer gathers at once (see
    /// `union_hashes`).
    union_hashes: usize,
    config: TrackerConfig,
}

/// How often a record retries after making room, in case other threads
/// took the room first.
const ROOM_ATTEMPTS: usize = 8;

impl Tracker {
    /// A tracker with the default settings.
    pub fn new() -> Self {
        Self::with_config(
            TrackerBuilder::default()
                .config()
                .expect("the default configuration is valid"),
        )
    }

    /// A builder to change settings from their defaults.
    pub fn builder() -> TrackerBuilder {
        TrackerBuilder::default()
    }

    /// A tracker with checked settings (see [`TrackerBuilder::config`]).
    pub fn with_config(config: TrackerConfig) -> Self {
        crate::prefetch::detect_prefetchw();
        // Under shuttle the seeds are fixed, so that a failing schedule
        // replays exactly (pages land on the same stripes).
        #[cfg(feature = "shuttle")]
        let url_hasher = UrlHasher::fixed();
        #[cfg(not(feature = "shuttle"))]
        let url_hasher = UrlHasher::random();
        let stripes: Box<[_]> = (0..config.stripes)
            .map(|_| {
                CachePadded(RwLock::new(Stripe::new(
                    url_hasher.clone(),
                    config.bucketing.width().as_secs() as u32,
                )))
            })
            .collect();
        Self {
            hints: stripes.iter().map(|_| TableHint::default()).collect(),
            stripe_mask: stripes.len() - 1,
            stripes,
            visitor_hasher: VisitorHasher::new(config.hash_key),
            url_hasher,
            budget: MemoryBudget::new(config.max_memory, config.fixed_bytes())
                .evicting(config.memory_policy != MemoryPolicy::Reject),
            evictions: AtomicU64::new(0),
            rejections: AtomicU64::new(0),
            random: AtomicU64::new(config.hash_key),
            ttl: config.ttl.map(ttl_ticks),
            stale_events: AtomicU64::new(0),
            sweep_stripe: AtomicUsize::new(0),
            union_hashes: union_hashes(config.max_memory),
            config,
        }
    }

    /// The settings this tracker runs with.
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Records that `visitor` visited `url` now (by the tracker's clock).
    ///
    /// Idempotent: recording the same pair again changes no count and
    /// returns [`Recorded::Duplicate`]. Errors leave the tracker unchanged.
    pub fn record(&self, visitor: &str, url: &str) -> Result<Recorded, TrackerError> {
        self.record_checked(visitor.as_bytes(), url, None)
    }

    /// Records a visit that happened at `at` (for replay and back-fill):
    /// a [`Timestamp`] or a [`SystemTime`](std::time::SystemTime).
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use tracker_core::{Timestamp, Tracker};
    ///
    /// let tracker = Tracker::new();
    /// let at = Timestamp::from_millis(1_700_000_000_000);
    /// assert!(tracker.record_at("v", "https://example.com/", at)?.is_new());
    /// let yesterday = SystemTime::now() - Duration::from_secs(86_400);
    /// assert!(tracker.record_at("w", "https://example.com/", yesterday)?.is_new());
    /// # Ok::<(), tracker_core::TrackerError>(())
    /// ```
    pub fn record_at(
        &self,
        visitor: &str,
        url: &str,
        at: impl Into<Timestamp>,
    ) -> Result<Recorded, TrackerError> {
        self.record_checked(visitor.as_bytes(), url, Some(at.into()))
    }

    /// Records a visit given as raw bytes, as read off a wire. The visitor
    /// id may be any bytes; the URL must be UTF-8.
    ///
    /// ```
    /// use tracker_core::{Field, Timestamp, Tracker, TrackerError};
    ///
    /// let tracker = Tracker::new();
    /// let at = Timestamp::from_millis(0);
    /// assert!(tracker.record_bytes_at(&[0xff, 0x00], b"/home", at).is_ok());
    /// assert_eq!(
    ///     tracker.record_bytes_at(b"v", &[0xff], at),
    ///     Err(TrackerError::InvalidUtf8 { field: Field::Url })
    /// );
    /// # Ok::<(), tracker_core::TrackerError>(())
    /// ```
    pub fn record_bytes_at(
        &self,
        visitor: &[u8],
        url: &[u8],
        at: Timestamp,
    ) -> Result<Recorded, TrackerError> {
        let url = std::str::from_utf8(url)
            .map_err(|_| TrackerError::InvalidUtf8 { field: Field::Url })?;
        self.record_checked(visitor, url, Some(at))
    }

    /// The record path shared by every entry point, once the URL is text.
    #[inline]
    fn record_checked(
        &self,
        visitor: &[u8],
        url: &str,
        at: Option<Timestamp>,
    ) -> Result<Recorded, TrackerError> {
        self.check_visitor(visitor)?;
        // The page's bucket is asked for first, so that hashing the
        // visitor overlaps its miss.
        let raw_hash = self.prefetch_page(url);
        let visitor = self.visitor_hasher.hash(visitor);
        self.record_prefetched(visitor, url, raw_hash, at, Keys::Live)
            .map(|(recorded, _)| recorded)
    }

    /// The hash of `url` as sent, with the bucket its page would be in
    /// prefetched (see [`TableHint`]).
    #[inline]
    fn prefetch_page(&self, url: &str) -> u64 {
        let raw_hash = self.url_hasher.hash_one(url);
        let index = self.stripe_index(raw_hash);
        // The lock's line first: the other core usually wrote it last, and
        // its transfer is the longest wait of the record (issue 18).
        prefetch_for_write(&*self.stripes[index]);
        self.hints[index].prefetch(raw_hash);
        raw_hash
    }

    /// The page key of `url` under `keys`: its canonical form and that
    /// form's hash, `raw_hash` (the hash of `url` as sent) when
    /// canonicalising left it as it was.
    fn page_key<'a>(
        &self,
        url: &'a str,
        raw_hash: u64,
        keys: Keys,
    ) -> Result<(Cow<'a, str>, u64), TrackerError> {
        let form = page_key(url, &self.config.url, keys)?;
        let hash = if form == url {
            raw_hash
        } else {
            self.url_hasher.hash_one(&*form)
        };
        Ok((form, hash))
    }

    /// Records an already-hashed visitor at `at` (now if `None`), for
    /// replaying the event log, where only the hash is kept. The URL is
    /// canonicalised as usual (free when it already is canonical, as a
    /// logged one is). Crate-internal: a hash from outside would bypass
    /// the visitor checks and the deployment key.
    ///
    /// Returns the outcome with the canonical URL, so that the durable
    /// path logs exactly the page key it recorded under.
    pub(crate) fn record_hashed<'a>(
        &self,
        visitor: u64,
        url: &'a str,
        at: Option<Timestamp>,
    ) -> Result<(Recorded, Cow<'a, str>), TrackerError> {
        self.record_hashed_as(visitor, url, at, Keys::Live)
    }

    /// [`record_hashed`](Self::record_hashed) taking `keys`: with
    /// [`Keys::Stored`], an event replayed from a log or a stream, which
    /// also takes the keys of earlier versions that today's rules refuse
    /// (see "Legacy pages" in snapshot.rs).
    pub(crate) fn record_hashed_as<'a>(
        &self,
        visitor: u64,
        url: &'a str,
        at: Option<Timestamp>,
        keys: Keys,
    ) -> Result<(Recorded, Cow<'a, str>), TrackerError> {
        let raw_hash = self.prefetch_page(url);
        self.record_prefetched(visitor, url, raw_hash, at, keys)
    }

    /// [`record_hashed`](Self::record_hashed) once [`prefetch_page`](Self::prefetch_page)
    /// gave `raw_hash`, the hash of `url` as sent.
    #[inline]
    fn record_prefetched<'a>(
        &self,
        visitor: u64,
        url: &'a str,
        raw_hash: u64,
        at: Option<Timestamp>,
        keys: Keys,
    ) -> Result<(Recorded, Cow<'a, str>), TrackerError> {
        // 0 marks empty slots; the hasher never yields it, but a replayed
        // hash comes off the disk.
        let visitor = visitor.max(1);
        if let Some(at) = at {
            self.check_retained_as(url, at, keys)?;
        }
        let (tick, expiry) = match self.ttl {
            None => (
                at.unwrap_or_else(|| self.config.clock.now()).as_tick(),
                None,
            ),
            Some(ttl) => match self.timed_event(url, at, ttl, keys)? {
                Some(timed) => timed,
                None => return Ok((Recorded::Stale, Cow::Borrowed(url))),
            },
        };
        // Fast path: the URL as sent is already a page's key. Stored keys are
        // canonical and canonical form is a fixed point (canonicalising it
        // changes nothing), so a match needs no canonicalisation. (A legacy
        // page restored under its old key matches too: see "Legacy pages"
        // in snapshot.rs.)
        let mut outcome = sync::write(self.stripe(raw_hash)).record_existing(
            url,
            raw_hash,
            visitor,
            tick,
            expiry,
            &self.budget,
        );
        let mut canonical = None;
        let mut attempts = 0;
        loop {
            let done = match outcome {
                StripeRecord::Done(recorded) => Some(recorded),
                StripeRecord::DoneSweepDue(recorded) => {
                    self.sweep(SWEEP_BUCKETS);
                    Some(recorded)
                }
                _ => None,
            };
            if let Some(recorded) = done {
                // Without a canonical form computed, the URL matched a
                // stored key, which is canonical.
                let page = match canonical {
                    Some((form, _)) => form,
                    None => Cow::Borrowed(url),
                };
                return Ok((recorded, page));
            }
            match outcome {
                StripeRecord::Done(_) | StripeRecord::DoneSweepDue(_) => {}
                StripeRecord::NoPage => {}
                StripeRecord::NeedRoom(needed) | StripeRecord::TableFull(needed) => {
                    // No lock is held here: making room visits other stripes.
                    attempts += 1;
                    let table_full = matches!(outcome, StripeRecord::TableFull(_));
                    let room = match &canonical {
                        // A stripe with no page to evict (its table not yet
                        // allocated) can only grow: make room elsewhere.
                        Some((_, url_hash)) if table_full => {
                            self.free_a_slot(*url_hash) || self.make_room(needed)
                        }
                        _ => self.make_room(needed),
                    };
                    if attempts > ROOM_ATTEMPTS || !room {
                        self.rejections.fetch_add(1, Ordering::Relaxed);
                        return Err(TrackerError::MemoryFull {
                            needed: needed as u64,
                            limit: self.budget.limit().unwrap_or(u64::MAX),
                        });
                    }
                }
            }
            let (canonical, url_hash) = match &canonical {
                Some(known) => known,
                None => canonical.insert(self.page_key(url, raw_hash, keys)?),
            };
            outcome = self.record_new(canonical, *url_hash, visitor, tick, expiry);
        }
    }

    /// [`Stripe::record`] of the canonical URL `url` under its stripe's
    /// lock (the one record that can add a page, so grow the table: see
    /// [`refresh_hint`](Self::refresh_hint)).
    fn record_new(
        &self,
        url: &str,
        url_hash: u64,
        visitor: u64,
        tick: u32,
        expiry: Option<Expiry>,
    ) -> StripeRecord {
        let index = self.stripe_index(url_hash);
        let mut stripe = sync::write(&self.stripes[index]);
        let outcome = stripe.record(url, url_hash, visitor, tick, expiry, &self.budget);
        self.refresh_hint(index, &stripe);
        outcome
    }

    /// Publishes where stripe `index`'s page table is now (nowhere when it
    /// is empty) if its [`TableHint`] says another size, for a caller
    /// holding its lock: after a record added a page (the table grew), a
    /// sweep step (the table was emptied and given back), and a restore
    /// (which fills tables without the record path).
    fn refresh_hint(&self, index: usize, stripe: &Stripe) {
        let hint = &self.hints[index];
        if stripe.buckets() != hint.buckets() {
            hint.publish(stripe.table_address().unwrap_or((0, 0)));
        }
    }

    /// [`refresh_hint`](Self::refresh_hint) of every stripe.
    pub(crate) fn refresh_hints(&self) {
        for (index, stripe) in self.stripes.iter().enumerate() {
            self.refresh_hint(index, &sync::read(stripe));
        }
    }

    /// With a TTL: the tick an event at `at` (or now) is recorded at and
    /// the expiry rule now, or `None` for an event already expired (stale,
    /// counted). Refuses events too far in the future; ones within the
    /// allowed skew count as now. Stale and refused events still have
    /// their URL checked, so bad input is an error whatever its time.
    fn timed_event(
        &self,
        url: &str,
        at: Option<Timestamp>,
        ttl: u32,
        keys: Keys,
    ) -> Result<Option<(u32, Option<Expiry>)>, TrackerError> {
        let now = self.config.clock.now();
        let at = at.unwrap_or(now);
        let expiry = Expiry {
            now: now.as_tick(),
            ttl,
        };
        if at > now.saturating_add(MAX_CLOCK_SKEW) {
            page_key(url, &self.config.url, keys)?;
            return Err(TrackerError::FromTheFuture {
                ahead_ms: at.as_millis() - now.as_millis(),
            });
        }
        let tick = at.min(now).as_tick();
        if !expiry.is_live(tick) {
            page_key(url, &self.config.url, keys)?;
            self.stale_events.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        Ok(Some((tick, Some(expiry))))
    }

    /// Refuses an event at `at` older than the retention
    /// ([`TimeError::BeforeRetention`]; its URL checked first, so that
    /// bad input is an error whatever its time), as
    /// [`record_at`](Self::record_at) would: for a service that
    /// acknowledges an event before a tracker records it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracker_core::{Timestamp, Tracker};
    ///
    /// let tracker = Tracker::builder().retention(Duration::from_secs(86_400)).build()?;
    /// assert!(tracker.check_retained("/a", Timestamp::from_millis(0)).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_retained(&self, url: &str, at: Timestamp) -> Result<(), TrackerError> {
        self.check_retained_as(url, at, Keys::Live)
    }

    /// [`check_retained`](Self::check_retained), taking `keys`.
    fn check_retained_as(&self, url: &str, at: Timestamp, keys: Keys) -> Result<(), TrackerError> {
        let bucketing = self.config.bucketing;
        if bucketing.retention().is_none() {
            return Ok(());
        }
        let oldest = bucketing.start_of(bucketing.oldest_retained(self.config.clock.now()));
        if at < oldest {
            page_key(url, &self.config.url, keys)?;
            return Err(TimeError::BeforeRetention { at, oldest }.into());
        }
        Ok(())
    }

    /// The expiry rule at the clock's current time, with a TTL.
    fn expiry_now(&self) -> Option<Expiry> {
        let ttl = self.ttl?;
        Some(Expiry {
            now: self.config.clock.now().as_tick(),
            ttl,
        })
    }

    /// Runs the expiry sweep over about `buckets` page-table buckets
    /// (stripe by stripe, each lock held for one step: at most 32 of them
    /// and 8,192 visitor-table slots, see the crate docs): drops expired
    /// visitors there (with a retention, buckets older than it) and
    /// removes pages left with none live, giving their memory back. A
    /// bucket stands for 256 slots of work too, so a call does at most
    /// `buckets × 256` slots' worth, and a page too large for one step is
    /// resumed by the next. Without a TTL or a retention it does nothing.
    ///
    /// Records already run small sweep steps as they go (see the crate
    /// docs); call this from a timer to reclaim memory while no records
    /// arrive, or use [`start_background`](Self::start_background).
    ///
    /// ```
    /// use std::{sync::Arc, time::Duration};
    /// use tracker_core::{ManualClock, Timestamp, Tracker};
    ///
    /// let clock = ManualClock::new(Timestamp::from_millis(0));
    /// let tracker = Tracker::builder()
    ///     .ttl(Duration::from_secs(10))
    ///     .clock(Arc::new(clock.clone()))
    ///     .build()?;
    /// tracker.record("v", "/a")?;
    /// clock.advance(Duration::from_secs(10));
    /// let step = tracker.sweep(1_000);
    /// assert_eq!(step.pages_removed, 1);
    /// assert_eq!(tracker.stats().pages, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sweep(&self, buckets: usize) -> SweepStep {
        let expiry = self.expiry_now();
        let bucketing = self.config.bucketing;
        if expiry.is_none() && bucketing.retention().is_none() {
            return SweepStep::default();
        }
        let oldest_bucket = bucketing.oldest_retained(self.config.clock.now());
        self.sweep_with(expiry, oldest_bucket, buckets)
    }

    /// [`sweep`](Self::sweep) by `expiry` and, unless 0, `oldest_bucket`.
    fn sweep_with(&self, expiry: Option<Expiry>, oldest_bucket: u32, buckets: usize) -> SweepStep {
        let mut total = SweepStep::default();
        let mut left = buckets as u64;
        let mut work = left.saturating_mul(SLOTS_PER_BUCKET as u64);
        let mut empty_in_a_row = 0;
        while left > 0 && work > 0 && empty_in_a_row < self.stripes.len() {
            let i = self.sweep_stripe.fetch_add(1, Ordering::Relaxed) & self.stripe_mask;
            let chunk = left.min(SWEEP_BUCKETS as u64) as usize;
            let slots = work.min(SWEEP_SLOTS as u64) as usize;
            // What the step lets go of is freed after its lock (see
            // `deferred`).
            let deferring = Deferring::open();
            let mut stripe = sync::write(&self.stripes[i]);
            let step = stripe.sweep(expiry, oldest_bucket, chunk, slots, &self.budget);
            self.refresh_hint(i, &stripe);
            drop(stripe);
            drop(deferring);
            if step.buckets == 0 {
                empty_in_a_row += 1;
                continue;
            }
            empty_in_a_row = 0;
            left -= step.buckets;
            work = work.saturating_sub(step.slots);
            total.buckets += step.buckets;
            total.pairs_dropped += step.pairs_dropped;
            total.pages_removed += step.pages_removed;
            total.slots += step.slots;
        }
        total
    }

    /// Page-table buckets over all stripes: what one full sweep pass
    /// visits.
    pub fn sweep_pass_buckets(&self) -> usize {
        self.stripes.iter().map(|s| sync::read(s).buckets()).sum()
    }

    /// Frees memory by the configured policy until `needed` bytes fit, and
    /// some more so that a stream of records at the limit does not pay for
    /// this on every one. Returns whether room was made, so that a retry
    /// may succeed: false only when the policy forbids freeing or nothing
    /// more can be freed. Whether `needed` bytes still fit when it returns
    /// is not the answer: other threads' records may have taken the room
    /// in between, which their retries bound (see `ROOM_ATTEMPTS`).
    fn make_room(&self, needed: usize) -> bool {
        let Some(limit) = self.budget.limit() else {
            return true;
        };
        let headroom = (limit / 1024).clamp(4096, 1 << 20) as usize;
        let goal = (needed + headroom) as u64;
        if needed as u64 > limit.saturating_sub(self.config.fixed_bytes()) {
            return false;
        }
        // Pooled table buffers hold no count: they go first, whatever the
        // policy.
        for stripe in self.stripes.iter() {
            let freed = sync::write(stripe).drain_pool();
            self.budget.release(freed);
        }
        if self.budget.free() >= goal {
            return true;
        }
        // Expired pairs count for nothing: they go before the policy
        // refuses, sketches or evicts live ones.
        self.reclaim_expired(goal);
        if self.budget.free() >= goal {
            return true;
        }
        let reached = match self.config.memory_policy {
            MemoryPolicy::Reject => false,
            MemoryPolicy::Evict => self.evict_until_free(goal),
            MemoryPolicy::Sketch => {
                self.sketch_until_free(goal);
                self.merge_days_until_free(goal);
                self.evict_until_free(goal)
            }
        };
        reached || self.budget.free() >= needed as u64
    }

    /// With a TTL, runs sweep steps (by the TTL alone, not the retention)
    /// until `goal` bytes are free or one pass over the stripes is done:
    /// what an idle sweeper has not reclaimed yet. A stripe whose oldest
    /// tick is still live is passed over without a scan, so this costs a
    /// lock per stripe while nothing has expired.
    fn reclaim_expired(&self, goal: u64) {
        let Some(expiry) = self.expiry_now() else {
            return;
        };
        let pass = self.sweep_pass_buckets() as u64;
        let mut swept = 0;
        while self.budget.free() < goal && swept < pass {
            let step = self.sweep_with(Some(expiry), 0, SWEEP_BUCKETS);
            if step.buckets == 0 {
                return;
            }
            swept += step.buckets;
        }
    }

    /// Merges the oldest days of sketched pages' histories (lossless in
    /// count, coarser in time), a stripe at a time in turn, until `goal`
    /// bytes are free or no history can shrink so.
    fn merge_days_until_free(&self, goal: u64) {
        let mut stripe = 0;
        let mut idle = 0;
        while self.budget.free() < goal && idle < self.stripes.len() {
            match sync::write(&self.stripes[stripe]).merge_oldest_days() {
                Some(freed) => {
                    self.budget.release(freed);
                    idle = 0;
                }
                None => idle += 1,
            }
            stripe = (stripe + 1) & self.stripe_mask;
        }
    }

    /// Turns the largest exact sets into sketches, largest first, until
    /// `goal` bytes are free or no set is worth sketching. Finding the
    /// largest visits each stripe's short candidate list, one read lock at
    /// a time; converting takes that one stripe's write lock.
    fn sketch_until_free(&self, goal: u64) {
        while self.budget.free() < goal {
            let largest = self
                .stripes
                .iter()
                .enumerate()
                .filter_map(|(i, stripe)| {
                    let (bytes, url_hash) = sync::read(stripe).largest_sketch_worthy()?;
                    Some((bytes, url_hash, i))
                })
                .max();
            let Some((_, url_hash, i)) = largest else {
                return;
            };
            // The page may have gone or changed between the two locks; then
            // `sketch_page` frees nothing and the next round looks again.
            let expiry = self.expiry_now();
            if let Some(freed) = sync::write(&self.stripes[i]).sketch_page(url_hash, expiry) {
                self.budget.release(freed);
            }
        }
    }

    /// Makes free slots in the full page table of `url_hash`'s stripe so
    /// that a new page fits without the table growing past the budget:
    /// with a TTL first sweeps expired pages out, then reclaims its
    /// tombstones if it has any (under every policy: nothing is lost),
    /// else evicts a few of its oldest pages (see
    /// [`Stripe::evict_for_slots`]). Returns whether it freed a slot (the
    /// policy may forbid evicting, or the stripe may have no page).
    fn free_a_slot(&self, url_hash: u64) -> bool {
        // Expired pages leave tombstones once swept; reclaiming them loses
        // nothing, so every policy may.
        self.reclaim_expired(u64::MAX);
        let mut stripe = sync::write(self.stripe(url_hash));
        if stripe.reclaim_tombstones() {
            return true;
        }
        if self.config.memory_policy == MemoryPolicy::Reject {
            return false;
        }
        let (freed, evicted) = stripe.evict_for_slots(|| self.next_random());
        drop(stripe);
        self.budget.release(freed);
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
        evicted > 0
    }

    /// Evicts sampled least-recently-recorded pages, one stripe lock at a
    /// time, until `goal` bytes are free (true) or no stripe has a page
    /// left (false).
    ///
    /// Each eviction starts at a random stripe; an empty stripe passes on to
    /// the next one, so giving up means every stripe was seen empty in a
    /// row, never that random picks kept landing on empty ones. A stripe
    /// whose least recent page is within the recency window passes on too,
    /// until every stripe has (see `stripe::RECENCY_WINDOW`): a large goal
    /// (a hot page's table growing) would otherwise drain the hot page's
    /// stripe of its small pages and then take the hot page, while older
    /// pages remain elsewhere. Then recent pages go, but only those below
    /// a bar in bytes (first just past `stripe::SMALL_PAGE`), raised after
    /// each round of stripes that found none to just past the smallest
    /// page refused (twice the bar when no refusal said its size), so
    /// that across stripes recent pages go smallest first: a stripe
    /// left holding only its hot page keeps it while smaller pages remain
    /// elsewhere.
    fn evict_until_free(&self, goal: u64) -> bool {
        let random_stripe = || (self.next_random() >> 32) as usize & self.stripe_mask;
        let mut stripe = random_stripe();
        let mut refused_in_a_row = 0;
        // Recent pages go only below this many heap bytes (0: none).
        let mut recent_below = 0usize;
        let mut smallest_refused = usize::MAX;
        while self.budget.free() < goal {
            if refused_in_a_row == self.stripes.len() {
                if recent_below == usize::MAX {
                    return false;
                }
                recent_below = if smallest_refused == 0 || smallest_refused == usize::MAX {
                    recent_below.saturating_mul(2)
                } else {
                    smallest_refused.saturating_add(1)
                }
                .max(stripe::SMALL_PAGE + 1);
                (refused_in_a_row, smallest_refused) = (0, usize::MAX);
            }
            let evicted = sync::write(&self.stripes[stripe]).evict_sampled_below(
                || self.next_random(),
                EVICTION_SAMPLES,
                0,
                recent_below,
            );
            match evicted {
                Ok(freed) => {
                    self.budget.release(freed);
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                    refused_in_a_row = 0;
                    stripe = random_stripe();
                }
                Err(spared) => {
                    smallest_refused = smallest_refused.min(spared);
                    refused_in_a_row += 1;
                    stripe = (stripe + 1) & self.stripe_mask;
                }
            }
        }
        true
    }

    /// A pseudo-random number (SplitMix64 over a shared counter): cheap,
    /// lock-free, and good enough to sample pages with.
    fn next_random(&self) -> u64 {
        let mut z = self
            .random
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The number of distinct visitors of `url` (after canonicalisation).
    /// An unknown page has 0. At most two hash probes (the URL as sent,
    /// then its canonical form), each under one read lock; the count is
    /// O(1), or with a TTL O(log n) in the page's visitors (its expiry
    /// horizon is searched).
    ///
    /// With a retention this is the count of the pairs the page holds: a
    /// pair whose buckets all left the retention still counts until the
    /// sweep next reaches its page (at most one sweep pass), and a
    /// sketched page's all-time estimate never forgets. For the visitors
    /// of the retention exactly, ask
    /// [`distinct_between`](Self::distinct_between)`(url, None, None)`
    /// (one scan of the page); ranged answers are always exact for exact
    /// pages. Why it is so: "Retention and TTL" in the `time` module docs.
    pub fn distinct(&self, url: &str) -> Result<Distinct, TrackerError> {
        self.distinct_of_page(url).map(|(_, count)| count)
    }

    /// [`distinct`](Self::distinct), with the canonical URL the count is
    /// for: free when the URL was sent in canonical form.
    ///
    /// ```
    /// use tracker_core::Tracker;
    ///
    /// let tracker = Tracker::new();
    /// tracker.record("v", "https://example.com/a")?;
    /// let (page, count) = tracker.distinct_of_page("HTTPS://EXAMPLE.com/a#top")?;
    /// assert_eq!((&*page, count.visitors), ("https://example.com/a", 1));
    /// # Ok::<(), tracker_core::TrackerError>(())
    /// ```
    pub fn distinct_of_page<'a>(
        &self,
        url: &'a str,
    ) -> Result<(Cow<'a, str>, Distinct), TrackerError> {
        let expiry = self.expiry_now();
        let (page, count) = self.with_page_of(url, |page| page.visitors.count(expiry))?;
        Ok((page, count.unwrap_or(Distinct::exact(0))))
    }

    /// `f` of the page `url` (after canonicalisation) under its stripe's
    /// read lock, or `None` for an unknown page.
    fn with_page<R>(&self, url: &str, f: impl Fn(&Page) -> R) -> Result<Option<R>, TrackerError> {
        self.with_page_of(url, f).map(|(_, answer)| answer)
    }

    /// [`with_page`](Self::with_page), with the canonical URL: at most
    /// two hash probes (the URL as sent, then its canonical form), each
    /// under one read lock.
    fn with_page_of<'a, R>(
        &self,
        url: &'a str,
        f: impl Fn(&Page) -> R,
    ) -> Result<(Cow<'a, str>, Option<R>), TrackerError> {
        // The same fast path as `record_checked`: a stored key is canonical.
        // The lock line and the bucket are asked for together (a read
        // lock writes its line too), so their misses overlap instead of
        // following each other.
        let raw_hash = self.prefetch_page(url);
        if let Some(answer) = sync::read(self.stripe(raw_hash)).with_page(url, raw_hash, &f) {
            return Ok((Cow::Borrowed(url), Some(answer)));
        }
        let canonical = canonicalize(url, &self.config.url)?;
        let answer = if canonical == url {
            None
        } else {
            let url_hash = self.url_hasher.hash_one(&*canonical);
            sync::read(self.stripe(url_hash)).with_page(&canonical, url_hash, &f)
        };
        Ok((canonical, answer))
    }

    /// The `k` pages with the most distinct visitors, most first; ties are
    /// broken by URL, ascending.
    ///
    /// Visits every page once (O(pages + k log k)), one stripe lock at a
    /// time: meant for dashboards, not for every request.
    ///
    /// ```
    /// use tracker_core::Tracker;
    ///
    /// let tracker = Tracker::new();
    /// for (visitor, url) in [("a", "/x"), ("b", "/x"), ("a", "/y")] {
    ///     tracker.record(visitor, url)?;
    /// }
    /// let top = tracker.top(1);
    /// assert_eq!((top[0].url.as_str(), top[0].distinct.visitors), ("/x", 2));
    /// # Ok::<(), tracker_core::TrackerError>(())
    /// ```
    pub fn top(&self, k: usize) -> Vec<PageCount> {
        self.top_matching(k, |_| true)
    }

    /// [`top`](Self::top) among the pages whose URL `keep` accepts.
    fn top_matching(&self, k: usize, keep: impl Fn(&str) -> bool) -> Vec<PageCount> {
        let expiry = self.expiry_now();
        self.top_by(k, keep, |page| page.visitors.count(expiry))
    }

    /// The `k` pages `keep` accepts with the highest `count`, ranked as
    /// [`top`](Self::top) ranks them.
    fn top_by(
        &self,
        k: usize,
        keep: impl Fn(&str) -> bool,
        mut count: impl FnMut(&Page) -> Distinct,
    ) -> Vec<PageCount> {
        if k == 0 {
            return Vec::new();
        }
        // A min-heap of the best k so far: its top is the row to beat.
        let mut best: BinaryHeap<Reverse<Ranked>> = BinaryHeap::new();
        for stripe in self.stripes.iter() {
            let stripe = sync::read(stripe);
            for page in stripe.pages().filter(|page| keep(&page.url)) {
                let distinct = count(page);
                if distinct.visitors == 0 {
                    // Every visitor expired; the sweep will remove it.
                    continue;
                }
                if best.len() == k {
                    let Some(Reverse(worst)) = best.peek() else {
                        continue;
                    };
                    let key = (distinct.visitors, Reverse(&*page.url));
                    if key <= (worst.0.distinct.visitors, Reverse(worst.0.url.as_str())) {
                        continue;
                    }
                    best.pop();
                }
                best.push(Reverse(Ranked(PageCount {
                    url: page.url.to_string(),
                    distinct,
                })));
            }
        }
        best.into_sorted_vec()
            .into_iter()
            .map(|Reverse(Ranked(row))| row)
            .collect()
    }

    /// Each stripe lock's takes, waits and write hold times since the
    /// tracker was built, one entry per stripe (only with the
    /// `lock-stats` feature; see [`LockStats`](crate::LockStats)).
    #[cfg(all(feature = "lock-stats", not(feature = "shuttle")))]
    pub fn lock_stats(&self) -> Vec<crate::LockStats> {
        self.stripes.iter().map(|s| s.stats()).collect()
    }

    /// What the tracker holds. Visits each stripe once, under its read lock.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats {
            stripes: self.stripes.len() as u64,
            bytes: self.budget.held(),
            max_bytes: self.budget.limit(),
            evictions: self.evictions.load(Ordering::Relaxed),
            rejections: self.rejections.load(Ordering::Relaxed),
            stale_events: self.stale_events.load(Ordering::Relaxed),
            ..Stats::default()
        };
        for stripe in self.stripes.iter() {
            let stripe = sync::read(stripe);
            stats.expirations += stripe.expired();
            stats.expired_pages += stripe.expired_pages();
            stats.pages += stripe.page_count() as u64;
            stats.sketched_pages += stripe.sketched();
            stats.sketched_visitors += stripe.sketched_visitors();
            stats.pairs += stripe.pairs();
            stats.evictions += stripe.evicted_to_settle();
        }
        stats.exact_pages = stats.pages - stats.sketched_pages;
        stats
    }

    /// The canonical form of `url`: the page key it is counted under.
    ///
    /// ```
    /// use tracker_core::Tracker;
    ///
    /// let tracker = Tracker::new();
    /// assert_eq!(
    ///     tracker.canonicalize(" HTTPS://Example.com:443/caf%c3%a9#top ")?,
    ///     "https://example.com/caf%C3%A9"
    /// );
    /// # Ok::<(), tracker_core::TrackerError>(())
    /// ```
    pub fn canonicalize<'a>(&self, url: &'a str) -> Result<Cow<'a, str>, TrackerError> {
        canonicalize(url, &self.config.url)
    }

    /// Checks and hashes a visitor id as recording does.
    pub(crate) fn hash_visitor(&self, visitor: &[u8]) -> Result<u64, TrackerError> {
        self.check_visitor(visitor)?;
        Ok(self.visitor_hasher.hash(visitor))
    }

    /// Heap bytes held, recounted from every stripe's pages (for tests of
    /// the incremental accounting).
    #[cfg(test)]
    pub(crate) fn recount_bytes(&self) -> u64 {
        let held: usize = self
            .stripes
            .iter()
            .map(|s| sync::read(s).recount_bytes())
            .sum();
        self.config.fixed_bytes() + held as u64
    }

    /// The sketched pages' tally, recounted from every stripe (for tests of
    /// the running one in `stats`).
    #[cfg(test)]
    pub(crate) fn recount_sketched_visitors(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| sync::read(s).recount_sketched_visitors())
            .sum()
    }

    fn check_visitor(&self, visitor: &[u8]) -> Result<(), TrackerError> {
        let max = self.config.max_visitor_len;
        if visitor.is_empty() {
            Err(TrackerError::Empty {
                field: Field::Visitor,
            })
        } else if visitor.len() > max {
            Err(TrackerError::TooLong {
                field: Field::Visitor,
                len: visitor.len(),
                max,
            })
        } else {
            Ok(())
        }
    }

    #[inline]
    fn stripe(&self, url_hash: u64) -> &RwLock<Stripe> {
        &self.stripes[self.stripe_index(url_hash)]
    }

    /// The index of the stripe holding the page of `url_hash`.
    fn stripe_index(&self, url_hash: u64) -> usize {
        (url_hash >> 32) as usize & self.stripe_mask
    }
}

/// A row of `top`, ordered by count, then by URL in reverse (so that among
/// equal counts the smallest URL ranks highest).
struct Ranked(PageCount);

impl Ranked {
    fn key(&self) -> (u64, Reverse<&str>) {
        (self.0.distinct.visitors, Reverse(self.0.url.as_str()))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl TrackerBuilder {
    /// The tracker, or why the settings are refused.
    pub fn build(self) -> Result<Tracker, ConfigError> {
        Ok(Tracker::with_config(self.config()?))
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("stats", &self.stats())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Tracker>();
    }

    /// The memory formula in the crate docs counts 272 bytes per stripe:
    /// four cache lines for the lock, the page table header, the URL
    /// hasher and the counters, and the page table's [`TableHint`]. (The
    /// `lock-stats` build adds its counters to the lock.)
    #[test]
    #[cfg(not(feature = "lock-stats"))]
    fn a_stripe_takes_four_cache_lines_and_a_hint() {
        assert_eq!(stripe::STRIPE_BYTES, 256 + 16);
    }

    #[test]
    fn bytes_stay_equal_to_a_recount() {
        let tracker = Tracker::builder().stripes(4).build().unwrap();
        for i in 0..5_000u32 {
            let url = format!("https://example.com/{}", i % 97);
            tracker.record(&format!("v{}", i % 1013), &url).unwrap();
        }
        assert_eq!(tracker.stats().bytes, tracker.recount_bytes());
    }

    /// Visitors returning on many days grow, move and compact their runs;
    /// the count stays equal to a recount, with and without a TTL.
    #[test]
    fn bytes_stay_equal_to_a_recount_with_returning_visitors() {
        use crate::ManualClock;
        use std::time::Duration;
        for ttl in [None, Some(Duration::from_secs(400 * 86_400))] {
            let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
            let mut builder = Tracker::builder()
                .stripes(2)
                .clock(std::sync::Arc::new(clock.clone()));
            if let Some(ttl) = ttl {
                builder = builder.ttl(ttl);
            }
            let tracker = builder.build().unwrap();
            for day in 0..40 {
                for v in 0..300u32 {
                    if (v + day) % 3 != 0 {
                        let url = format!("/p{}", v % 4);
                        tracker.record(&format!("v{v}"), &url).unwrap();
                    }
                }
                clock.advance(Duration::from_secs(86_400));
                assert_eq!(
                    tracker.stats().bytes,
                    tracker.recount_bytes(),
                    "{ttl:?} {day}"
                );
            }
        }
    }

    /// Sketching, evicting and compacting keep the incremental count equal
    /// to a recount, and within the budget.
    #[test]
    fn accounting_survives_memory_pressure() {
        for policy in [MemoryPolicy::Sketch, MemoryPolicy::Evict] {
            let tracker = Tracker::builder()
                .stripes(2)
                .max_memory(120_000)
                .memory_policy(policy)
                .build()
                .unwrap();
            for i in 0..40_000u32 {
                let page = if i % 3 == 0 { i % 7 } else { i % 1_500 };
                let url = format!("https://example.com/{page}");
                tracker.record(&format!("v{}", i % 9_000), &url).unwrap();
                if i % 997 == 0 {
                    let stats = tracker.stats();
                    assert_eq!(stats.bytes, tracker.recount_bytes(), "{policy:?}");
                    assert_eq!(stats.sketched_visitors, tracker.recount_sketched_visitors());
                }
            }
            let stats = tracker.stats();
            assert_eq!(stats.bytes, tracker.recount_bytes(), "{policy:?}");
            assert_eq!(stats.sketched_visitors, tracker.recount_sketched_visitors());
            assert!(stats.bytes <= 120_000);
            assert!(stats.evictions > 0 || stats.sketched_pages > 0, "{stats:?}");
            assert_eq!(stats.exact_pages, stats.pages - stats.sketched_pages);
            if stats.sketched_pages > 0 {
                assert!(stats.exact_share() < 1.0, "{stats:?}");
            }
        }
    }

    /// With a TTL, expiry, sweeping, sketching generations and evicting
    /// keep the count equal to a recount and within the budget, and
    /// sketched pages expire too.
    #[test]
    fn accounting_survives_ttl_and_pressure() {
        use crate::ManualClock;
        use std::time::Duration;
        for policy in [MemoryPolicy::Sketch, MemoryPolicy::Evict] {
            let clock = ManualClock::new(Timestamp::from_millis(1_000_000_000));
            let tracker = Tracker::builder()
                .stripes(2)
                .max_memory(700_000)
                .memory_policy(policy)
                .ttl(Duration::from_secs(800))
                .clock(std::sync::Arc::new(clock.clone()))
                .build()
                .unwrap();
            for i in 0..150_000u32 {
                let page = if i % 2 == 0 { i % 3 } else { i % 4_000 };
                let url = format!("https://example.com/{page}");
                tracker.record(&format!("v{}", i % 60_000), &url).unwrap();
                if i % 500 == 0 {
                    clock.advance(Duration::from_secs(7));
                }
                if i % 4_999 == 0 {
                    let stats = tracker.stats();
                    assert_eq!(stats.bytes, tracker.recount_bytes(), "{policy:?} {i}");
                    assert_eq!(stats.sketched_visitors, tracker.recount_sketched_visitors());
                    assert!(stats.bytes <= 700_000, "{policy:?} {stats:?}");
                }
            }
            let stats = tracker.stats();
            assert!(stats.expirations > 0, "{stats:?}");
            if policy == MemoryPolicy::Sketch {
                assert!(stats.sketched_pages > 0, "{stats:?}");
                let hot = tracker.distinct("https://example.com/0").unwrap();
                assert!(!hot.exact && hot.visitors > 0, "{hot:?}");
            }
            clock.advance(Duration::from_secs(900));
            while tracker.sweep(1 << 20).buckets > 0 && tracker.stats().pages > 0 {}
            let stats = tracker.stats();
            assert_eq!((stats.pages, stats.sketched_pages), (0, 0), "{stats:?}");
            assert_eq!((stats.sketched_visitors, stats.exact_share()), (0, 1.0));
            assert_eq!(stats.bytes, tracker.recount_bytes());
            assert_eq!(stats.bytes, tracker.config().fixed_bytes());
        }
    }

    /// The place each stripe's hint gives is its page table's: after
    /// records, after a sweep empties the stripe and a new table is
    /// made, and after a restore (which fills tables without records).
    #[test]
    fn table_hints_follow_the_page_tables() {
        use crate::ManualClock;
        use std::time::Duration;
        let hinted = |tracker: &Tracker| {
            for (index, stripe) in tracker.stripes.iter().enumerate() {
                let stripe = sync::read(stripe);
                let place = stripe.table_address().unwrap_or((0, 0));
                assert_eq!(tracker.hints[index].place(), place, "stripe {index}");
            }
        };
        let clock = ManualClock::new(Timestamp::from_millis(1_000_000_000));
        let tracker = Tracker::builder()
            .stripes(1)
            .ttl(Duration::from_secs(60))
            .clock(std::sync::Arc::new(clock.clone()))
            .build()
            .unwrap();
        tracker.record("v", "https://example.com/a").unwrap();
        hinted(&tracker);
        clock.advance(Duration::from_secs(120));
        while tracker.sweep(1 << 10).buckets > 0 && tracker.stats().pages > 0 {}
        assert_eq!(tracker.stats().pages, 0);
        hinted(&tracker);
        tracker.record("v", "https://example.com/b").unwrap();
        hinted(&tracker);
        let mut payload = Vec::new();
        tracker.write_snapshot(&mut payload).unwrap();
        let again = Tracker::builder()
            .stripes(1)
            .ttl(Duration::from_secs(60))
            .clock(std::sync::Arc::new(clock.clone()));
        let restored = Tracker::restore_snapshot(&payload, again).unwrap();
        assert_ne!(restored.hints[0].place(), (0, 0));
        hinted(&restored);
    }

    /// Pages far larger than a sweep step (unit tests use 48 slots) are
    /// swept in resumed steps while visitors arrive, return and expire,
    /// with and without a retention: every count equals a model of the
    /// latest visit of each pair, at every moment, and no step visits
    /// more than its slots.
    #[test]
    fn large_pages_swept_in_steps_count_exactly() {
        use crate::ManualClock;
        use std::collections::HashMap;
        use std::time::Duration;
        let (ttl, retention) = (600u64, 1_200u64);
        for (timed, retained) in [(true, false), (true, true), (false, true)] {
            let clock = ManualClock::new(Timestamp::from_millis(1_000_000_000));
            let mut builder = Tracker::builder()
                .stripes(2)
                .clock(std::sync::Arc::new(clock.clone()));
            if timed {
                builder = builder.ttl(Duration::from_secs(ttl));
            }
            if retained {
                builder = builder
                    .bucket(Duration::from_secs(60))
                    .retention(Duration::from_secs(retention));
            }
            let tracker = builder.build().unwrap();
            let case = (timed, retained);
            let mut latest: [HashMap<u32, u64>; 3] = Default::default();
            let mut now = 0u64;
            let mut state = 7u64;
            for i in 0..40_000u32 {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let page = (state >> 60) as usize % 3;
                let visitor = (state >> 33) as u32 % (300 + 400 * page as u32);
                let url = format!("https://example.com/{page}");
                tracker.record(&format!("v{visitor}"), &url).unwrap();
                latest[page].insert(visitor, now);
                if i % 97 == 0 {
                    clock.advance(Duration::from_secs(13));
                    now += 13;
                    let step = tracker.sweep(1);
                    assert!(step.slots <= 2 * SLOTS_PER_BUCKET as u64 + 48, "{step:?}");
                }
                if i % 1_013 == 0 {
                    for (page, pairs) in latest.iter().enumerate().filter(|_| timed) {
                        let live = pairs.values().filter(|&&t| t + ttl > now).count();
                        let url = format!("https://example.com/{page}");
                        let counted = tracker.distinct(&url).map_or(0, |d| d.visitors);
                        assert_eq!(counted, live as u64, "{case:?} {i} page {page}");
                    }
                    assert_eq!(tracker.stats().bytes, tracker.recount_bytes());
                }
            }
            // Passes to the end drop every expired pair and nothing else
            // (the retention's bucket edge is within a minute).
            for _ in 0..10_000 {
                tracker.sweep(32);
            }
            let held = |age: u64| -> u64 {
                let stays = |t: u64| t + age > now;
                latest
                    .iter()
                    .map(|p| p.values().filter(|&&t| stays(t)).count() as u64)
                    .sum()
            };
            let pairs = tracker.stats().pairs;
            if timed {
                assert_eq!(pairs, held(ttl), "{case:?}");
            } else {
                assert!(pairs >= held(retention - 60) && pairs <= held(retention + 60));
                assert!(pairs < held(u64::MAX / 2), "the retention dropped pairs");
            }
            assert_eq!(tracker.stats().bytes, tracker.recount_bytes());
            // A few visitors come back, the rest expire: passes that end
            // move the large tables into small ones (reserved first).
            let before = tracker.stats().bytes;
            clock.advance(Duration::from_secs(retention.max(ttl) + 120));
            for page in 0..3 {
                for visitor in 0..5 {
                    let url = format!("https://example.com/{page}");
                    tracker.record(&format!("back{visitor}"), &url).unwrap();
                }
            }
            for _ in 0..10_000 {
                tracker.sweep(32);
            }
            assert_eq!(tracker.stats().pairs, 15, "{case:?}");
            assert_eq!(tracker.stats().bytes, tracker.recount_bytes());
            assert!(tracker.stats().bytes < before / 4, "{case:?}");
            clock.advance(Duration::from_secs(retention + 120));
            while tracker.sweep(1 << 20).buckets > 0 && tracker.stats().pages > 0 {}
            assert_eq!(tracker.stats().bytes, tracker.config().fixed_bytes());
        }
    }

    #[test]
    fn visitor_limits() {
        let tracker = Tracker::builder().max_visitor_len(4).build().unwrap();
        assert!(tracker.record("abcd", "/").is_ok());
        assert_eq!(
            tracker.record("abcde", "/"),
            Err(TrackerError::TooLong {
                field: Field::Visitor,
                len: 5,
                max: 4
            })
        );
        assert_eq!(tracker.stats().pairs, 1);
    }
}
