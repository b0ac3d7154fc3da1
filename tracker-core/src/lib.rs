//! How many distinct visitors navigated to this page? Exactly, concurrently,
//! and in little memory.
//!
//! ```
//! use tracker_core::Tracker;
//!
//! let tracker = Tracker::new();
//! tracker.record("visitor-42", "https://example.com/pricing")?;
//! tracker.record("visitor-42", "https://example.com/pricing")?; // once
//! tracker.record("visitor-7", "HTTPS://Example.com:443/pricing#faq")?; // same page
//! let count = tracker.distinct("https://example.com/pricing")?;
//! assert_eq!(count.visitors, 2);
//! assert!(count.exact);
//! # Ok::<(), tracker_core::TrackerError>(())
//! ```
//!
//! # What is stored
//!
//! A visitor id is never stored: only its 64-bit keyed hash (XXH3-64 seeded
//! with a per-deployment key, stable across versions and platforms; see
//! [`TrackerBuilder::hash_key`]). URLs are stored in canonical form (see
//! [`Tracker::canonicalize`] and the rules below).
//!
//! **"Exact" means exact up to 64-bit hash collisions.** Two different
//! visitors of one page are counted once only if their hashes collide;
//! for a page with `n` visitors the expected number of such collisions is
//! about `n² / 2⁶⁵`: 2.7·10⁻⁸ for a million visitors, 2.7·10⁻⁴ for a
//! hundred million. (Hash value 0 is folded onto 1 to mark empty slots,
//! which adds a 2⁻⁶⁴ chance per visitor.)
//!
//! # URL canonicalisation
//!
//! The same rules apply when recording and when querying, so that one page
//! is one key however its URL was spelled (case, default port, fragment,
//! escapes, query policy, tracking parameters): they are listed in
//! [`canonical_url`]. A page is an `http(s)://` URL or a path; a
//! scheme-relative URL (`//host/path`) is
//! [`TrackerError::SchemeRelativeUrl`], anything else
//! [`TrackerError::InvalidUrl`].
//! Limits: visitor ids 1..=256 bytes, URLs 1..=2048 bytes (configurable);
//! anything else is a [`TrackerError`], never a panic.
//!
//! # Memory cost
//!
//! The tracker accounts every byte it allocates ([`Stats::bytes`]) as:
//!
//! ```text
//! bytes = 272·stripes
//!       + Σ pages  (41 / load_p + url_len)
//!       + Σ pages with 3 or more exact visitors  (8 + 12·slots)
//!       + Σ those with a visitor seen in 2 or more buckets  (48 + 4·arena)
//!       + Σ those of them with wide cells  (8·slots)
//!       + Σ sketched pages  (8,304 + history)
//!       + Σ stripes  pooled table buffers  (≤ min(32 KiB, pairs_s))
//! ```
//!
//! - each page is a 40-byte record plus one control byte in its stripe's
//!   hashbrown table, whose load `load_p` lies between 7/16 and 7/8
//!   (47–94 bytes per page), plus its canonical URL;
//! - a page's first 2 visitors live inside the record (0 extra bytes),
//!   each with its latest tick, which also names its one time bucket;
//! - from the third on they move to an open-addressing table of 12-byte
//!   slots (an 8-byte hash and a 4-byte activity word: the visitor's
//!   bucket, or where its buckets are) plus an 8-byte count (and, once a
//!   visitor of the page is seen in a second bucket, a 48-byte boxed
//!   record holding the table and the page's arena); the table is filled
//!   completely up to 8 slots and kept 68–94% full from 48 slots on (it
//!   grows by 1.375x, up to 15/16 full; below 32 slots it doubles):
//!   12.8–17.6 bytes per visitor there (15.1 on average over the growth
//!   cycle), up to twice that in small tables;
//! - the arena holds, for each visitor seen in more than one bucket, a
//!   sorted run of its buckets (`len, room, bucket...`, 4 bytes each):
//!   nothing for a visitor seen in one bucket; its second bucket moves it
//!   into a run of 2 header words and room for 4 buckets (24 bytes; up to
//!   16 buckets, 72 bytes, once the page's runs show they fill), and a
//!   full run moves to one of twice the room, leaving its old words as
//!   garbage until the arena is compacted (up to half the arena). Measured:
//!   a visitor returning on 30 days costs 318 bytes per pair
//!   (`docs/BENCHMARKS.md`);
//! - a page whose arena takes as many bytes as 8 more per slot would
//!   moves to wide cells: each slot's word becomes 12 bytes (20-byte
//!   slots), which hold up to 5 buckets less than 65,536 buckets apart,
//!   and only the visitors with more (or farther apart) keep a run, so
//!   the move never makes the page larger (a sweep moves it back when
//!   runs would take at most half the 8 bytes a slot, on a page of at
//!   most 32,768 pairs). Measured: visitors returning on 5 random
//!   days of 60 cost 24.3 bytes per pair (92 in runs);
//! - a sketched page holds an [`UltraLogLog`](sketch::UltraLogLog) of 8 KiB
//!   registers in a 112-byte record, whatever its number of visitors, plus
//!   its history: per UTC day, the day's visitors as a sorted list of
//!   hashes (8 bytes each) up to 128 of them, else a 1 KiB precision-10
//!   sketch (1,104 bytes), and 24 bytes for the day;
//! - each stripe keeps the buffers its tables (timed ones too, with a
//!   TTL) grew out of for its next growths to reuse (at most 8 of one
//!   size, none over 4 KiB, and at most a byte per pair `pairs_s` the
//!   stripe holds, up to 32 KiB in all with its 1.4 KiB of slots, when it
//!   keeps one): at most 32 KiB ·
//!   stripes for the tracker (256 KiB at the default 8 stripes of 2
//!   cores), counted here, and
//!   freed first whenever the budget needs room (see
//!   `src/set/table_pool.rs`).
//!
//! With a [TTL](#ttl-expiry) each exact visitor also keeps a 4-byte tick,
//! and the terms for pages with 3 or more visitors and sketched pages
//! become:
//!
//! ```text
//!       + Σ timed tables  (72 + 24 + 16·slots + 4·arena + 8·horizon_entries)
//!       + Σ sketched pages  (24 + 8,288·generations),  generations ≤ 9
//! ```
//!
//! - 16 bytes per slot (17.1–23.5 per visitor), a 72-byte boxed record
//!   (the table's arena and expiry horizon), the table's 24-byte header
//!   (its count, and its thin handle's length and capacity), and the
//!   horizon's list of the oldest ticks: at most one 8-byte entry per
//!   distinct second among about the oldest eighth of the visitors, so at
//!   most 1 byte per visitor;
//! - the inline form still holds 2 visitors for free: the second one's
//!   tick is kept as a 24-bit age in the record's padding.
//!
//! So a million (page, visitor) pairs over a thousand pages, each visitor
//! seen once, take about 14 MB, where a `HashMap<String, HashSet<String>>` takes 80 MB
//! (`docs/BENCHMARKS.md` has the measured figures).
//! The figure leaves out the allocator's own per-allocation overhead (a
//! few bytes per page URL and per visitor table with glibc's malloc).
//!
//! # Memory budget
//!
//! With [`TrackerBuilder::max_memory`], every allocation is reserved
//! against the budget before it is made, so the accounted bytes **never
//! exceed the budget** (zero slack). Two allocations are briefly live
//! beside what they replace without being accounted twice: a visitor table
//! while it grows into its next size, and a sketch while a table is
//! converted into it (8 KiB). When a record needs memory the budget does
//! not have, the stripes' pooled table buffers are freed first, then with
//! a [TTL](#ttl-expiry) the expired pairs and pages the sweep has not yet
//! reached (sweep steps until the room is made or one pass is done), then
//! the [`MemoryPolicy`] acts:
//!
//! - `Sketch` (default): the largest exact sets (those of at least twice a
//!   sketch's 8,304 bytes, 16,608 bytes: 1,384 slots, about 940–1,300
//!   visitors at the table's 68–94% fill; with a TTL, twice the most
//!   generations a sketch takes) become sketches, largest first; their pages keep
//!   counting, as estimates with a relative standard error of 0.727%
//!   ([`Distinct::relative_error`]). The switch adds every hash the set
//!   held and starts the estimate at the exact count: no jump. Their
//!   visitors by UTC day are kept too (for ranges); next, the oldest of
//!   those days merge, two at a time. If nothing is left to sketch or
//!   merge, pages are evicted as under `Evict`.
//! - `Evict`: the least recently recorded pages go, as Redis approximates
//!   LRU: each eviction samples 16 pages of a random stripe and weighs them
//!   with the best 16 candidates that stripe kept from earlier evictions.
//!   Recency is in whole seconds; among pages last recorded in the same
//!   second the one holding fewer bytes goes first, so a busy page is not
//!   traded for a small one. Within the last second it is exact: a page
//!   last recorded no more than a second before its stripe's latest
//!   record is never evicted while an older page of that stripe remains
//!   (when the samples offer only such pages, the stripe is scanned for
//!   its least recent page), and making room passes over stripes that
//!   hold only such pages until every stripe does; then such pages go
//!   smallest first across stripes (within a factor of two), so a stripe
//!   left with only its hot page keeps it while smaller recent pages
//!   remain elsewhere. A big page evicted and recorded again is weighed
//!   at half its old size until it holds that much, so that it is not
//!   taken again and again for a cold page of its second. Every page
//!   kept stays exact; a page evicted and recorded again starts from
//!   zero.
//! - `Reject`: the record fails with [`TrackerError::MemoryFull`]; every
//!   count stays exact.
//!
//! Room is made with some headroom (a thousandth of the budget, 4 KiB to
//! 1 MiB) so that a stream of records at the limit does not pay for it
//! on every record.
//!
//! Queries are not accounted: their working memory is transient. The one
//! that grows with the data is a site's count (`site_distinct` and the
//! ranged site answers), which gathers its exact pages' visitor hashes
//! (8 bytes each): under a budget it holds at most an eighth of it (at
//! least 16 MiB), and a site with more is counted in several passes over
//! parts of the hash space. Without a budget it holds them all at once.
//!
//! One exception to zero slack: with a [TTL](#ttl-expiry), a page's
//! expiry horizon (below) may grow by a few 8-byte entries past what its
//! record reserved. That growth is accounted, not refused, so the total
//! can pass the budget by those bytes until room is next made (under
//! `Reject`, until the sweep frees them).
//!
//! # TTL expiry
//!
//! With [`TrackerBuilder::ttl`] a visitor counts for a page until the TTL
//! has passed since that visitor's latest visit to it; then the pair
//! expires. Times are whole seconds (ticks): a pair last seen at second
//! `t` counts while `now < t + ttl` (a visit at 10.9 s is second 10: with
//! a 2 s TTL it counts until 12.0 s, so a TTL ends up to a second early
//! by the wall clock). [`distinct`](Tracker::distinct) and
//! [`top`](Tracker::top) count only live pairs, exactly; a page with no
//! live visitor drops out of `top`, and out of `stats` and memory once the
//! sweep reaches it.
//!
//! - **Event times.** [`Tracker::record`] stamps events with the tracker's
//!   [`Clock`] (injectable: [`ManualClock`] drives time in tests).
//!   [`Tracker::record_at`] takes the event's own time: an event already
//!   older than the TTL changes nothing and returns [`Recorded::Stale`]
//!   (counted in [`Stats::stale_events`]); one ahead of the clock by up to
//!   [`MAX_CLOCK_SKEW`] (60 s) counts as now; one further ahead is refused
//!   with [`TrackerError::FromTheFuture`].
//! - **Exact counts without a scan.** Each page keeps its oldest ticks
//!   sorted (its expiry horizon), so a count is
//!   `stored − expired` in O(log n); a page is rebuilt (its expired pairs
//!   dropped, its memory shrunk) about once per TTL/8 of traffic. A page
//!   whose table has more than 8,192 slots is never rebuilt whole: it
//!   keeps every distinct tick sorted (one 8-byte entry per second of the
//!   TTL at most) and the sweep drops its expired pairs in place, a
//!   bounded share per step.
//! - **Memory comes back without queries.** Lazy expiry on access (a
//!   record drops or retires its page's expired pairs first) plus an
//!   incremental sweep, as Redis's active expiry: each step visits up to
//!   32 buckets of one stripe's page table under that stripe's lock, drops
//!   expired pairs and removes dead pages, and stops once it has visited
//!   8,192 visitor-table slots; a larger table is resumed by the next
//!   step where this one stopped. A stripe knows a lower bound of its
//!   pairs' ticks (each whole pass refreshes it), and a step passes over
//!   a stripe while that tick is live: nothing there can have expired.
//!   Steps are piggy-backed on
//!   records (every 64th record of a stripe runs one, on the stripes in
//!   turn, after its own lock is released), so a busy tracker needs no
//!   thread; [`Tracker::sweep`] runs steps on demand, and
//!   [`Tracker::start_background`] runs them from a background thread on a
//!   timer (stopped when its handle drops) for trackers that go idle. No
//!   step is proportional to the data set: it visits at most 16,384
//!   slots (its 8,192, then one table up to that size done whole), a few
//!   hundred microseconds (`benches/ttl.rs`, part 3). The exception is
//!   the step that ends a pass over a large table left at most half full
//!   with at most 32,768 pairs: it moves them into a table sized for
//!   them, reading the old one whole, a few milliseconds (see
//!   `docs/BENCHMARKS.md`, "A large page past its peak").
//! - **Sketched pages honour the TTL too**, quantised: they keep one
//!   sketch per generation of TTL/8 and drop a generation once its newest
//!   visit has expired, so a visitor counts for at most TTL/8 too long.
//!
//! # Concurrency
//!
//! Pages are spread over a power-of-two number of lock stripes (default:
//! four per core), each a read-write lock over its own hash table, padded
//! to its own cache lines. A record or a `distinct` locks one stripe (two
//! in turn when the URL was not sent in canonical form), never two at
//! once; `stats` and `top` visit the stripes one lock at a time; no global
//! lock sits on a hot path, and recording a visitor a page already has
//! allocates nothing. The locks are `std::sync`'s, except in the
//! deterministic concurrency checks (feature `shuttle`).
//!
//! # Persistence
//!
//! [`persist::DurableTracker`] puts a tracker on a data directory: each
//! event is recorded, then appended to a checksummed, group-committed log,
//! then acknowledged; opening restores the newest snapshot and replays the
//! log after it. [`DurableTracker::start_background`](persist::DurableTracker::start_background)
//! runs the snapshot schedule and the TTL sweep at default [`Cadence`]s,
//! and [`close`](persist::DurableTracker::close) stops them and writes a
//! final snapshot. Visitor ids never reach the disk, only their keyed
//! 64-bit hashes. The [`persist`] module has the file formats and the
//! recovery rules.
//!
//! ```
//! use tracker_core::persist::{DurableTracker, LogOptions, FsyncPolicy};
//! use tracker_core::Tracker;
//!
//! let dir = tempfile::tempdir()?;
//! let options = LogOptions::default().sync(FsyncPolicy::Always);
//! let (durable, _) = DurableTracker::open(dir.path(), Tracker::builder(), options.clone())?;
//! durable.record("visitor-42", "https://example.com/pricing")?; // durable on return
//! drop(durable); // a crash would do
//!
//! let (durable, report) = DurableTracker::open(dir.path(), Tracker::builder(), options)?;
//! assert_eq!(report.replayed, 1);
//! assert_eq!(durable.tracker().distinct("https://example.com/pricing")?.visitors, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod background;
#[cfg(not(feature = "shuttle"))]
mod backoff;
pub mod browser;
pub mod canonical_url;
mod deferred;
mod error;
#[cfg(all(feature = "lock-stats", not(feature = "shuttle")))]
mod lock_stats;
pub mod persist;
mod prefetch;
mod report;
mod set;
pub mod sketch;
mod split_mix;
mod sync;
mod time;
mod tracker;

pub use canonical_url::{
    DEFAULT_MAX_URL_LEN, QueryPolicy, TRACKING_PARAMS, URL_LEN_CEILING, UrlOptions, origin_of,
    site_of,
};
pub use error::{ConfigError, Field, TrackerError};
#[cfg(all(feature = "lock-stats", not(feature = "shuttle")))]
pub use lock_stats::{HOLD_BUCKETS, LockStats};
#[doc(no_inline)]
pub use persist::{Background, Cadence};
pub use report::{Distinct, PageCount, RangeDistinct, RangeTop, Recorded, SeriesCounts, Stats};
pub use time::clock::{Clock, ManualClock, SystemClock, TimeBound, Timestamp};
pub use time::ttl::{MAX_CLOCK_SKEW, MAX_TTL};
pub use time::{
    Bucketing, DEFAULT_BUCKET, DEFAULT_MAX_POINTS, MAX_BUCKET, MIN_BUCKET, Series, TimeError,
    TimeRange,
};
pub use tracker::Tracker;
pub use tracker::batch::RecordBatch;
pub use tracker::budget::MemoryPolicy;
pub use tracker::config::{
    DEFAULT_MAX_VISITOR_LEN, TrackerBuilder, TrackerConfig, VISITOR_LEN_CEILING,
};
pub use tracker::partial::SitePartial;
pub use tracker::site::{MAX_SITE_LEN, PageList, PageQuery, site_name};
pub use tracker::stripe::SweepStep;
pub use tracker::sweeper::Sweeper;

/// The cache-line prefetch hint the batch record issues, for the benches'
/// layout prototypes (`benches/slot_layout.rs`), so that they prefetch as
/// the core does without `unsafe` of their own. Not part of the API.
#[doc(hidden)]
#[inline(always)]
pub fn __prefetch<T>(at: &T) {
    prefetch::prefetch(at);
}
