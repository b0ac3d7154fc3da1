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
//! The same rules apply when recording and when querying: white space
//! trimmed; fragment dropped; scheme and host lowercased; default port
//! (`http`/`ws` 80, `https`/`wss` 443, `ftp` 21) and empty port dropped;
//! empty path of those schemes becomes `/`; percent-escapes of unreserved
//! characters decoded, other escapes upper-cased, and bytes a browser
//! would escape (non-ASCII, space, controls, `"`, `<`, `>`, `` ` ``, `{`,
//! `}`) escaped, so
//! `/café` and `/caf%c3%a9` are one page; the query kept, stripped, or
//! reduced to allowed parameters ([`QueryPolicy`]); an empty query dropped.
//! Limits: visitor ids 1..=256 bytes, URLs 1..=2048 bytes (configurable);
//! anything else is a [`TrackerError`], never a panic.
//!
//! # Memory cost
//!
//! The tracker accounts every byte it allocates ([`Stats::bytes`]) as:
//!
//! ```text
//! bytes = 128·stripes
//!       + Σ pages  (41 / load_p + url_len)
//!       + Σ pages with 3 or more exact visitors  (8 + 8·slots)
//!       + Σ sketched pages  8,272
//! ```
//!
//! - each page is a 40-byte record plus one control byte in its stripe's
//!   hashbrown table, whose load `load_p` lies between 7/16 and 7/8
//!   (47–94 bytes per page), plus its canonical URL;
//! - a page's first 2 visitor hashes live inside the record (0 extra bytes);
//! - from the third on they move to an open-addressing table of 8-byte
//!   slots (plus an 8-byte count), filled completely up to 8 slots and
//!   kept 70–87.5% full beyond (it grows by 1.25x): 9.1–11.4 bytes per
//!   visitor, about 10 on average;
//! - a sketched page holds an [`UltraLogLog`](sketch::UltraLogLog) of 8 KiB
//!   registers plus its 80-byte header, whatever its number of visitors.
//!
//! So a million (page, visitor) pairs over a thousand pages take about
//! 11 MB, where a `HashMap<String, HashSet<String>>` takes 80 MB
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
//! not have, the [`MemoryPolicy`] acts:
//!
//! - `Sketch` (default): the largest exact sets (those of at least 16 KiB,
//!   about 1,400 visitors) become sketches, largest first; their pages keep
//!   counting, as estimates with a relative standard error of 0.727%
//!   ([`Distinct::relative_error`]). The switch adds every hash the set
//!   held and starts the estimate at the exact count: no jump. If no set is
//!   worth sketching, pages are evicted as under `Evict`.
//! - `Evict`: the least recently recorded pages go, chosen by sampling
//!   eight pages of a random stripe at a time, as Redis approximates LRU.
//!   Every page kept stays exact; a page evicted and recorded again starts
//!   from zero.
//! - `Reject`: the record fails with [`TrackerError::MemoryFull`]; every
//!   count stays exact.
//!
//! Room is made with some headroom (a thousandth of the budget, 4 KiB to
//! 1 MiB) so that a stream of records at the limit does not pay for it
//! on every record.
//!
//! # Concurrency
//!
//! Pages are spread over a power-of-two number of lock stripes (default:
//! four per core), each a `std::sync::RwLock` over its own hashbrown table,
//! padded to its own cache lines. A record takes one stripe's write lock, a
//! `distinct` one stripe's read lock; nothing takes two locks at once and
//! no global lock sits on a hot path. Recording a visitor a page already
//! has allocates nothing. The module docs of `stripe.rs` give the details.
//!
//! # Persistence
//!
//! The [`persist`] module holds the storage layer: a checksummed,
//! group-committed event log ([`persist::EventLog`]) and atomically written
//! snapshots ([`persist::snapshot_file`]), with recovery that cuts a torn
//! tail and reports any other damage as a typed [`persist::PersistError`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod budget;
mod canonical_url;
mod clock;
mod config;
mod error;
mod page;
pub mod persist;
mod report;
pub mod sketch;
mod stripe;
mod sync;
mod tracker;
mod visitor_hash;
mod visitor_set;
mod visitor_table;

pub use budget::MemoryPolicy;
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use config::{
    DEFAULT_MAX_URL_LEN, DEFAULT_MAX_VISITOR_LEN, QueryPolicy, TrackerBuilder, TrackerConfig,
    URL_LEN_CEILING, UrlOptions, VISITOR_LEN_CEILING,
};
pub use error::{ConfigError, Field, TrackerError};
pub use report::{Distinct, PageCount, Recorded, Stats};
pub use tracker::Tracker;
