//! A stripe: one lock's share of the pages.
//!
//! # Locking design
//!
//! The tracker splits its pages over a power-of-two number of stripes by
//! bits 32.. of the URL's in-memory hash (hashbrown indexes buckets by the
//! low bits and tags them with the top seven, so the stripe choice leaves
//! both uniform within a stripe). Each stripe is an `RwLock` (from the
//! crate's `sync` shim) around a hashbrown table of [`Page`]s plus the
//! stripe's counters, padded to its own cache lines so that two cores
//! writing neighbouring stripes do not bounce one line between them.
//! Within a stripe, what every record touches shares the lock's cache
//! line (see [`Stripe`]), and values that rarely change are written only
//! when they do, so that two cores recording into one stripe move one
//! line between them per record, not four.
//!
//! - `record` hashes the URL as sent outside any lock, prefetches its
//!   stripe's lock line for writing (`prefetch_for_write`: the other core
//!   usually wrote it last, and the transfer then overlaps what follows
//!   instead of stalling the lock's compare-and-swap) and the
//!   page-table bucket it would be in (from the stripe's [`TableHint`])
//!   before hashing the visitor, and takes that hash's stripe write lock
//!   for one probe: a URL already stored (so canonical) is found there,
//!   and the visitor inserted under the same lock (the probe asks for the
//!   visitor table's lines before comparing the URL, so their misses
//!   overlap). On a miss the lock is released, the URL canonicalised, and the
//!   canonical URL's stripe write-locked to insert: two locks in turn,
//!   never together. With a TTL, every 64th record of a stripe runs a
//!   sweep step after its lock is released. All of this is to keep the
//!   hold short: a record spends most of its time under its stripe's lock,
//!   so two threads on the default 4 stripes per core find a stripe held
//!   on about one take in ten, and wait about one hold (see
//!   docs/BENCHMARKS.md, "Thread scaling (issue 18)").
//! - A write lock found held is retried with backoff for about 16 µs
//!   (`backoff::spin`: a hold is well under that), then yielding the core
//!   before each try for about 0.5 ms (`backoff::yielding`: a page table's
//!   growth), before the thread sleeps: a futex sleep and wake-up cost
//!   more than either.
//! - `distinct` does the same with read locks: the same prefetches of the
//!   lock line and the bucket before the lock, one probe (what the count
//!   reads outside the page record asked for before the URL compare), a
//!   second after canonicalising only on a miss.
//! - `record_batch` takes each stripe's write lock once for the batch's
//!   events on pages it already stores: all their lookups, then a
//!   prefetch of each insert's slots, then all their inserts, each at the
//!   bucket its lookup found (without a TTL or a
//!   budget, nothing adds or removes a page in between). It starts at its
//!   first event's stripe, and a stripe whose lock is held (`try_write`)
//!   waits until the batch's other stripes are done: two senders do not
//!   queue on the same locks in turn. Still one lock at a time. The
//!   growth of a stripe's run is booked on the (unlimited) budget once,
//!   at the end of the run. The other events (no page under the URL as
//!   sent) are canonicalised with no lock held and recorded one by one
//!   afterwards, as `record` does after its first probe.
//! - Making room under the budget happens with no lock held by the
//!   record: it visits stripes one lock at a time (first a write lock on
//!   each in turn to free its pooled table buffers, then read locks to find the
//!   largest sketch candidate, a write lock to sketch, to merge a
//!   sketched page's oldest days, or to evict). An eviction holds its
//!   stripe's lock for 16 samples and the pool, or for one scan of that
//!   stripe's pages when they are all recent (see `RECENCY_WINDOW`). The one
//!   exception is a timed set whose rebuild cut a larger horizon list
//!   than it had (see `settle`): under the record's or sweep's own stripe
//!   lock, other pages of that stripe are evicted until the growth fits
//!   (still one lock).
//! - A sweep step holds one stripe's write lock for bounded work: at most
//!   32 page-table buckets and 8,192 visitor-table slots (plus one table
//!   of up to that size done whole). A larger table is resumed by the
//!   stripe's next step where this one stopped (the stripe remembers the
//!   page and the slot), so no page, however large, holds the lock longer
//!   than a step (a few hundred microseconds), but for the step that ends
//!   a large table's pass: it may move the survivors, at most
//!   `MOVE_PAIRS`, into a table sized for them (a few milliseconds). The
//!   large allocations a step lets go of (the old table, a dead page) are
//!   freed after its lock is released (see `deferred`).
//! - `stats` and `top` visit the stripes one at a time, holding one read
//!   lock at a time, so they never block ingest on more than one stripe.
//! - No code path holds two stripe locks at once, so there is no lock order
//!   to respect and no deadlock to fear.
//! - What all stripes share is atomics only: the byte budget (on cache
//!   lines of its own), touched only
//!   when an allocation grows or shrinks (a new page or a set growing),
//!   never for a visitor already present, and reserved before allocating
//!   (one compare-and-swap that fails when the bytes do not fit); plus
//!   event counters and the eviction sampler's random state.
//!
//! Readers and writers of one page contend on its stripe only: with the
//! default 4 stripes per core, two threads recording different pages meet
//! on the same lock with probability 1/stripes. `shuttle_tests.rs` checks
//! this protocol (record, make room, evict, sweep) over many thread
//! interleavings.

use std::sync::atomic::{AtomicUsize, Ordering};

use hashbrown::HashTable;
use thin_vec::ThinVec;

use crate::prefetch::{prefetch, prefetch_address};
use crate::report::Recorded;
use crate::set::page::Page;
use crate::set::table_pool::{Pooled, TablePool};
use crate::set::{Dropped, Insert, STEP_SLOTS, VisitorSet};
use crate::split_mix::SplitMix64;
use crate::sync::{CachePadded, RwLock};
use crate::time::ttl::Expiry;
use crate::tracker::budget::MemoryBudget;

/// The URL hasher of a tracker's page tables (random seeds per process;
/// fixed under shuttle). foldhash, hashbrown's own default hasher: about
/// 16 instructions an event fewer than ahash's portable hash in the batch
/// bench (docs/BENCHMARKS.md, branch `batch6`). Its fast form suffices: a
/// string's hash ends with its terminator byte folded in by a 64 x 64-bit
/// multiply, so every output bit depends on every input bit, and the
/// stripe index and the batch's sort key (bits 32 and up) are as well
/// mixed as the page table's bucket (low bits).
#[derive(Debug, Clone)]
pub(crate) struct UrlHasher(foldhash::fast::SeedableRandomState);

impl UrlHasher {
    /// A hasher with fresh random seeds.
    // Under shuttle trackers take fixed seeds: only tests ask for these.
    #[cfg_attr(feature = "shuttle", allow(dead_code))]
    pub(crate) fn random() -> Self {
        Self(foldhash::fast::SeedableRandomState::random())
    }

    /// The same hasher in every process (for schedules that must replay).
    #[cfg(any(test, feature = "shuttle"))]
    pub(crate) fn fixed() -> Self {
        Self(foldhash::fast::SeedableRandomState::fixed())
    }

    /// The hash of `url`.
    #[inline]
    pub(crate) fn hash_one(&self, url: impl std::hash::Hash) -> u64 {
        std::hash::BuildHasher::hash_one(&self.0, url)
    }
}

/// Pages sampled per eviction; Redis's default `maxmemory-samples` is 5,
/// and more samples buy a closer approximation of true LRU.
pub(crate) const EVICTION_SAMPLES: usize = 16;
/// The recency window, in ticks (seconds) behind the stripe's latest
/// record: a page last recorded within it is never evicted while a page
/// of its stripe last recorded in an earlier tick remains. When the
/// sampled candidates (the pool and fresh samples) offer only such pages
/// but an older one may exist (the stripe's `floor` says), eviction scans
/// the stripe for the exact least recent page (fewest bytes among its
/// tick's). It does so also when the best candidate is of the floor's
/// tick but bigger than `SMALL_PAGE`: the few samples of a sparse table
/// can offer only a hot page while small pages of that tick remain (the
/// cause, measured on the eviction bench, of the hottest page's
/// evictions). Each scan raises the floor, so scans stay rare unless
/// almost every page is that recent. Making room under the budget also
/// passes over a stripe whose least recent page is within the window,
/// until every stripe has been found so, so that a stripe drained by a
/// large goal gives up its hot pages only when no stripe holds an older
/// page; then recent pages go smallest first across stripes (see
/// `Tracker::evict_until_free`). Outside the window, eviction
/// approximates LRU by sampling.
pub(crate) const RECENCY_WINDOW: u32 = 1;
/// Heap bytes of a set small enough that evicting it costs little: a
/// sampled candidate of the floor's tick this small is taken without a
/// scan (a bigger one is checked against the stripe's other pages of that
/// tick), and it is the first bar for recent pages across stripes (see
/// `Tracker::evict_until_free`).
pub(crate) const SMALL_PAGE: usize = 4096;
/// Evicted big pages a stripe remembers (see `Stripe::ghosts`).
const GHOSTS: usize = 8;
/// The weight over which a revived page evicted again keeps its ghost's
/// weight instead of halving it (see `Stripe::ghosts`): the top pages of
/// the eviction bench hold hundreds of KiB. Below it, weights fade: when
/// every mid-sized page kept its weight, stripes refused recent pages
/// (each refusal a scan) three times as often, for 10% more CPU.
const BIG_GHOST: usize = 16 * SMALL_PAGE;
/// Best eviction candidates a stripe carries from one eviction to the
/// next (Redis's eviction pool has 16 too): every eviction picks from the
/// pages of many samples, not only its own.
const EVICTION_POOL: usize = 16;

/// With a TTL, every this many records on a stripe also run a sweep step
/// (on the stripes in turn, after the record's lock is released).
const SWEEP_EVERY: u32 = 64;
/// Buckets of the page table one sweep step visits: a bounded step, a few
/// microseconds for small pages.
pub(crate) const SWEEP_BUCKETS: usize = 32;
/// Visitor-table slots one sweep step visits at most (then at most one
/// more table of up to that size, done whole): a few hundred
/// microseconds whatever the page sizes.
pub(crate) const SWEEP_SLOTS: usize = STEP_SLOTS;
/// The work a bucket of a [`Tracker::sweep`](crate::Tracker::sweep) call
/// stands for: a call over `n` buckets visits at most `n` times this many
/// slots, so `sweep(32)` is one step's worth of work (8,192 / 32; not
/// derived from [`SWEEP_SLOTS`], which unit tests make small).
pub(crate) const SLOTS_PER_BUCKET: usize = 256;

/// Bytes one stripe takes before it holds a page (see the memory formula),
/// padded lock and [`TableHint`] included.
pub(crate) const STRIPE_BYTES: usize =
    size_of::<CachePadded<RwLock<Stripe>>>() + size_of::<TableHint>();

/// The fields are in declared order (`repr(C)`), grouped by how a record
/// uses them (issue 18): two cores recording into one stripe in turn move
/// every cache line that a record writes from one core to the other, and
/// each line the other core wrote makes this one's next read of it miss.
/// So what every record reads or writes sits on the lock's own cache line
/// (the lock is 16 bytes, these fields the 48 after it: see
/// `hot_fields_share_the_lock_line`), what a record only reads, or writes
/// only when it changes, on the next line, and what only growth, eviction,
/// sketching and the sweep touch after them.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Stripe {
    // The lock's line: read or written by every record.
    pages: HashTable<Page>,
    /// Distinct pairs held by this stripe's pages.
    pairs: u64,
    /// The latest tick recorded in this stripe: its "now" for eviction.
    /// Written only when it rises, as are the tick bounds below: a store
    /// of an unchanged value still takes the line from the other core.
    newest: u32,
    /// Records since the last piggy-backed sweep step.
    records_since_sweep: u32,
    // Read by every record; written rarely (a tick bound moving, a pass).
    /// The bucket width in seconds (the tracker's).
    width: u32,
    /// No pair of this stripe has a tick below this (with a TTL): while
    /// it is live, nothing here has expired and a sweep step has nothing
    /// to do (see [`Stripe::sweep`]). Lowered by every record, raised by
    /// each whole sweep pass to the lowest bound its pages gave.
    oldest_tick: u32,
    /// The lowest tick bound seen by the sweep pass under way, records
    /// included.
    pass_oldest: u32,
    /// No page of this stripe was last recorded before this tick (a lower
    /// bound, raised by the scans of `least_recent`, lowered by a page
    /// created at an older tick).
    floor: u32,
    /// The tracker's URL hasher (every stripe has a copy of the same one):
    /// pages do not store their hash, so resizing rehashes their URLs.
    hasher: UrlHasher,
    /// The page-table bucket the next sweep step starts at.
    sweep_cursor: usize,
    /// Where the sweep stopped inside a large page's table: the low bits
    /// of the page's URL address (0 for none; a page found there with
    /// other bits starts its pass afresh, a rare false match only shortens
    /// one pass) and the slot to resume at (see [`Stripe::sweep`]). Two
    /// `u32`s, so that the stripe keeps to its cache lines.
    resume_url: u32,
    resume_slot: u32,
    // Touched by growth, eviction, sketching and the sweep only.
    /// URL hashes of the pages whose exact set is worth sketching (see
    /// [`VisitorSet::became_sketch_worthy`]): the candidates of the sketch policy,
    /// kept as sets cross the threshold so that pressure needs no scan.
    sketch_worthy: Vec<u64>,
    /// Pages whose visitors are a sketch.
    sketched: u64,
    /// The visitors those sketches stand for: the sum of their
    /// [`VisitorSet::sketch_tally`], moved by each change to a sketch, so
    /// that `stats` needs no scan for the exact share.
    sketched_visitors: u64,
    /// Pairs that expired (dropped, or revived by a new visit), since start.
    expired: u64,
    /// Pages removed because no visitor was live, since start.
    expired_pages: u64,
    /// The eviction pool: the best candidates seen so far, as (bucket,
    /// URL address). Entries are re-checked when used (their page may have
    /// been recorded, swept, evicted or moved since), so nothing else needs
    /// to maintain it.
    eviction_pool: Vec<(usize, usize)>,
    /// Pages evicted while bigger than `SMALL_PAGE`, as (URL hash, weight,
    /// URL address): address 0 while the page is gone, its new URL's
    /// address once recorded again. Until it holds its weight again, a
    /// revived page is weighed at it, so that it is not mistaken for a
    /// cold page of its second and evicted again and again while small.
    /// The weight is half the page's at its first eviction (a page that
    /// stays cold fades); evicted again before it regrew, a page weighed
    /// over `BIG_GHOST` keeps it. (Weight only orders pages within the
    /// recency window: a cold page still goes first once it is older.)
    /// (A thin handle, as the pool's: the stripe keeps to four cache
    /// lines.)
    ghosts: ThinVec<(u64, usize, usize)>,
    /// Picks the pages sampled when eviction runs under this stripe's lock
    /// on its own (see `settle`), so that it touches no shared state.
    random: SplitMix64,
    /// Pages evicted to book a timed set's growth (see `settle`).
    evicted_to_settle: u64,
    /// Buffers its pages' tables grew out of, for the next growths to
    /// reuse (see `set/table_pool.rs`).
    pool: TablePool,
    /// Whether the sweep pass under way can see every page (no rehash of
    /// the page table has moved pages since it began).
    pass_whole: bool,
}

/// Where a stripe's page table is, published outside the stripe's lock
/// so that a record can ask for its URL's bucket before it takes the lock
/// (issue 18): that miss then overlaps the lock's own (its cache line
/// usually comes from the other core) instead of following it while the
/// lock is held, and every nanosecond under the lock is one the other
/// thread may wait.
///
/// hashbrown keeps a table's buckets just below its control bytes
/// (bucket `i` at `ctrl - (i + 1) × size_of::<Page>()`) and starts a
/// probe at bucket `hash & mask`; it offers no way to read `ctrl`, so the
/// stripe computes it from a page's address and bucket index when the
/// table moves (`Stripe::table_address`;
/// `table_hint_finds_the_buckets` checks the layout against the hashbrown
/// in use). The two words are written, relaxed, under the stripe's lock
/// when the table is not the size they say (see `Tracker::refresh_hint`),
/// and read with no lock: a stale or torn pair only prefetches the wrong
/// line ([`prefetch_address`] never faults).
///
/// Plain `std` atomics even under the `shuttle` feature: a hint orders
/// nothing, so it is no scheduling point worth exploring.
#[derive(Debug, Default)]
pub(crate) struct TableHint {
    /// The control bytes' address; 0 before the table has one.
    ctrl: AtomicUsize,
    /// The table's buckets, less one.
    mask: AtomicUsize,
}

impl TableHint {
    /// Publishes the table's place, from [`Stripe::table_address`].
    pub(crate) fn publish(&self, (ctrl, mask): (usize, usize)) {
        self.ctrl.store(ctrl, Ordering::Relaxed);
        self.mask.store(mask, Ordering::Relaxed);
    }

    /// The place last published, as given to [`publish`](Self::publish).
    #[cfg(test)]
    pub(crate) fn place(&self) -> (usize, usize) {
        (
            self.ctrl.load(Ordering::Relaxed),
            self.mask.load(Ordering::Relaxed),
        )
    }

    /// The buckets of the table last published (0 for none).
    pub(crate) fn buckets(&self) -> usize {
        match self.ctrl.load(Ordering::Relaxed) {
            0 => 0,
            _ => self.mask.load(Ordering::Relaxed) + 1,
        }
    }

    /// Prefetches the control group and the first bucket a probe for
    /// `url_hash` reads, where the table was last published.
    #[inline]
    pub(crate) fn prefetch(&self, url_hash: u64) {
        self.prefetch_each([url_hash]);
    }

    /// [`prefetch`](Self::prefetch) of each of `url_hashes`, reading the
    /// place once.
    #[inline]
    pub(crate) fn prefetch_each(&self, url_hashes: impl IntoIterator<Item = u64>) {
        let ctrl = self.ctrl.load(Ordering::Relaxed);
        if ctrl == 0 {
            return;
        }
        let mask = self.mask.load(Ordering::Relaxed);
        for url_hash in url_hashes {
            let home = url_hash as usize & mask;
            let bucket = ctrl.wrapping_sub((home + 1) * size_of::<Page>());
            prefetch_address(ctrl.wrapping_add(home));
            prefetch_address(bucket);
            prefetch_address(bucket.wrapping_add(size_of::<Page>() - 1));
        }
    }
}

/// Lowers `bound` to `tick`, writing only when that changes it (see
/// `Stripe::newest`).
#[inline]
fn lower(bound: &mut u32, tick: u32) {
    if tick < *bound {
        *bound = tick;
    }
}

/// Raises `bound` to `tick`, writing only when that changes it.
#[inline]
fn raise(bound: &mut u32, tick: u32) {
    if tick > *bound {
        *bound = tick;
    }
}

/// Moves `total` from a set's tally `before` a change (`None`: it was
/// exact) to its tally now.
#[inline]
fn retally(total: &mut u64, before: Option<u64>, set: &VisitorSet) {
    if let Some(now) = set.sketch_tally() {
        *total = *total + now - before.unwrap_or(0);
    }
}

/// Grows `set` by a growth [`VisitorSet::pooled_growth`] (or
/// [`VisitorSet::pooled_timed_growth`], `W` the kind of buffer) described,
/// from `old` to `new` heap bytes, by `grow` (which is given the new
/// buffer if the pool has one, and returns the buffer grown out of), the
/// old buffer kept in `pool` if it has room for a stripe of `pairs` pairs
/// (see `set/table_pool.rs`). Books in `budget` only what is allocated
/// afresh or given back to the allocator. Returns false, with nothing
/// changed, if that does not fit the budget.
fn grow_pooled<W: Pooled>(
    (pool, pairs): (&mut TablePool, u64),
    set: &mut VisitorSet,
    budget: &MemoryBudget,
    (old, new): (usize, usize),
    grow: impl FnOnce(&mut VisitorSet, Option<W>) -> Option<W>,
) -> bool {
    let spare = pool.take::<W>((new - W::HEADER) / 8);
    let fresh = if spare.is_some() { 0 } else { new };
    // The list's bytes when the pool would keep the old buffer (none from
    // an inline set: no buffer is 0 bytes).
    let kept = pool.cost_to_keep::<W>(old, pairs);
    let (debit, credit) = match kept {
        Some(list) => (fresh + list, 0),
        None => (fresh, old),
    };
    if debit > credit && !budget.try_reserve(debit - credit) {
        if let Some(spare) = spare {
            // Back where it was: it fits again.
            let _ = pool.keep(spare, u64::MAX);
        }
        return false;
    }
    if let Some(grown_out) = grow(set, spare)
        && let Some(list) = kept
        && pool.keep(grown_out, pairs).is_err()
    {
        // Not kept after all (cost_to_keep said it would be): freed.
        budget.release(old + list);
    }
    if credit > debit {
        budget.release(credit - debit);
    }
    true
}

/// What a sweep step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepStep {
    /// Page-table buckets visited.
    pub buckets: u64,
    /// Expired pairs dropped.
    pub pairs_dropped: u64,
    /// Pages removed because none of their visitors was live.
    pub pages_removed: u64,
    /// Visitor-table slots visited: the step's work, bounded whatever
    /// the page sizes.
    pub slots: u64,
}

/// What recording did in a stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StripeRecord {
    /// Recorded.
    Done(Recorded),
    /// Recorded, and this stripe has seen enough records since the last
    /// piggy-backed sweep step that one is due (with a TTL): the tracker
    /// runs it once the lock is released, on the next stripe in turn, so
    /// that stripes no record reaches are swept too.
    DoneSweepDue(Recorded),
    /// Recording needs this many more bytes than the budget has left;
    /// nothing was changed.
    NeedRoom(usize),
    /// The page table is full and its growth does not fit the budget;
    /// evicting a page of this stripe frees a slot without growing.
    TableFull(usize),
    /// The stripe has no such page (from `record_existing` only).
    NoPage,
}

impl Stripe {
    pub(crate) fn new(hasher: UrlHasher, width: u32) -> Self {
        Self {
            width,
            pages: HashTable::new(),
            hasher,
            pairs: 0,
            sketch_worthy: Vec::new(),
            sketched: 0,
            sketched_visitors: 0,
            expired: 0,
            expired_pages: 0,
            sweep_cursor: 0,
            resume_url: 0,
            resume_slot: 0,
            records_since_sweep: 0,
            oldest_tick: u32::MAX,
            pass_oldest: u32::MAX,
            pass_whole: true,
            eviction_pool: Vec::new(),
            ghosts: ThinVec::new(),
            random: SplitMix64(0),
            evicted_to_settle: 0,
            newest: 0,
            floor: 0,
            pool: TablePool::default(),
        }
    }

    fn hash(&self, url: &str) -> u64 {
        self.hasher.hash_one(url)
    }

    /// Records `visitor` on the page `url` if the stripe has that page.
    /// Allocates only when the page's set must grow, and only after
    /// reserving the bytes in `budget`. With a TTL (`expiry`), the page
    /// first drops or retires its expired visitors (lazy expiry on access).
    #[inline]
    pub(crate) fn record_existing(
        &mut self,
        url: &str,
        url_hash: u64,
        visitor: u64,
        tick: u32,
        expiry: Option<Expiry>,
        budget: &MemoryBudget,
    ) -> StripeRecord {
        // A candidate's table lines are asked for before its URL is
        // compared (a false candidate, 1 in 128 per slot probed, only
        // wastes the prefetch).
        let same = |p: &Page| {
            p.visitors.prefetch_insert(visitor);
            *p.url == *url
        };
        let Some(bucket) = self.pages.find_bucket_index(url_hash, same) else {
            return StripeRecord::NoPage;
        };
        self.record_at(bucket, url_hash, visitor, tick, expiry, budget)
    }

    /// The page-table bucket a lookup of `url_hash` tries first (its first
    /// tag match, whatever its URL), its page record prefetched; `None` if
    /// no page has the tag, so none has the hash. Then
    /// [`prefetch_candidate`](Self::prefetch_candidate) asks for the
    /// page's URL and set header, and [`find_from`](Self::find_from)
    /// compares the URL: the batch takes each step for all of a run's
    /// pages before the next, so that their misses overlap instead of
    /// stalling one page after another. (The table hint prefetches the
    /// bucket where the probe starts, but a page often sits past it, in
    /// the first free bucket when it was added: reading the record here
    /// stalled, 16% of `record_run`'s samples on the batch bench.)
    #[inline]
    pub(crate) fn candidate(&self, url_hash: u64) -> Option<usize> {
        let bucket = self.pages.find_bucket_index(url_hash, |_| true)?;
        if let Some(page) = self.pages.get_bucket(bucket) {
            let at = std::ptr::from_ref(page) as usize;
            prefetch_address(at);
            prefetch_address(at + size_of::<Page>() - 1);
        }
        Some(bucket)
    }

    /// Prefetches the URL and set header of the page in `bucket` (a
    /// [`candidate`](Self::candidate), whose record this reads).
    #[inline]
    pub(crate) fn prefetch_candidate(&self, bucket: usize) {
        if let Some(page) = self.pages.get_bucket(bucket) {
            let url = page.url.as_bytes();
            if let (Some(first), Some(last)) = (url.first(), url.last()) {
                prefetch(first);
                prefetch(last);
            }
            page.visitors.prefetch_header();
        }
    }

    /// The page-table bucket of the page `url`, if the stripe has it,
    /// given the [`candidate`](Self::candidate) of its hash (with no page
    /// added or removed since).
    #[inline]
    pub(crate) fn find_from(
        &self,
        url: &str,
        url_hash: u64,
        candidate: Option<usize>,
    ) -> Option<usize> {
        let bucket = candidate?;
        match self.pages.get_bucket(bucket) {
            Some(page) if *page.url == *url => Some(bucket),
            // Another page with the same tag came first (1 in 128 a slot).
            _ => self.pages.find_bucket_index(url_hash, |p| *p.url == *url),
        }
    }

    /// Prefetches where an insert of each of `visitors` into the page in
    /// `bucket` starts.
    #[inline]
    pub(crate) fn prefetch_at(&self, bucket: usize, visitors: impl IntoIterator<Item = u64>) {
        if let Some(page) = self.pages.get_bucket(bucket) {
            page.visitors.prefetch_each(visitors);
        }
    }

    /// [`record_existing`](Self::record_existing) on the page in `bucket`
    /// (from [`find_from`](Self::find_from), with no page added or removed
    /// since); `NoPage` if the bucket is empty.
    #[inline]
    pub(crate) fn record_at(
        &mut self,
        bucket: usize,
        url_hash: u64,
        visitor: u64,
        tick: u32,
        expiry: Option<Expiry>,
        budget: &MemoryBudget,
    ) -> StripeRecord {
        let Some(page) = self.pages.get_bucket_mut(bucket) else {
            return StripeRecord::NoPage;
        };
        let tally = page.visitors.sketch_tally();
        // With a TTL the page first drops or retires its expired visitors.
        // That may change its bytes (a rebuild cuts a new horizon list), and
        // so may a growth below: then `booked` holds the bytes the budget
        // has for the set, reconciled with what it holds afterwards.
        let mut booked = None;
        if let Some(expiry) = expiry {
            page.visitors.prefetch_home(visitor);
            let (dropped, before) = page.visitors.expire_sized(expiry, 0);
            self.pairs -= dropped as u64;
            self.expired += dropped as u64;
            booked = before;
        }
        let mut reserved = 0;
        let recorded = match page.visitors.insert(visitor, tick, self.width, expiry) {
            Insert::Present => Recorded::Duplicate,
            Insert::Refreshed { was } if expiry.is_none_or(|e| e.is_live(was)) => {
                Recorded::Duplicate
            }
            Insert::Refreshed { .. } => {
                // Expired but not yet dropped: the visit revives the pair.
                self.expired += 1;
                Recorded::New
            }
            Insert::Added => {
                self.pairs += 1;
                Recorded::New
            }
            grow @ (Insert::GrowKnown { mut bytes, .. } | Insert::Grow(mut bytes)) => {
                let held = page.visitors.heap_bytes();
                let (pool, width) = ((&mut self.pool, self.pairs), self.width);
                let grown = match grow {
                    Insert::Grow(_) if expiry.is_none() => {
                        page.visitors.pooled_growth().is_some_and(|sizes| {
                            grow_pooled(pool, &mut page.visitors, budget, sizes, |set, spare| {
                                set.grow_pooled(visitor, tick, width, spare)
                            })
                        })
                    }
                    Insert::Grow(_) => page.visitors.pooled_timed_growth().is_some_and(|sizes| {
                        grow_pooled::<ThinVec<u64>>(
                            pool,
                            &mut page.visitors,
                            budget,
                            sizes,
                            |set, spare| set.grow_timed_pooled(visitor, tick, width, spare),
                        )
                    }),
                    _ => false,
                };
                if grown && expiry.is_some() {
                    // Booked (the set's growth and the pool's change): what
                    // `settle` reconciles below is a rebuild by `expire`.
                    reserved = bytes;
                }
                if !grown {
                    let mut room = budget.try_reserve(bytes);
                    let mut in_arena = false;
                    if !room
                        && let Some(arena) = page.visitors.arena_growth(visitor, tick, self.width)
                    {
                        // A move to wide cells the budget has no room for
                        // as it is: the run grows in the arena instead.
                        (bytes, in_arena) = (arena, true);
                        room = budget.try_reserve(bytes);
                    }
                    // The pool's buffers go before the record asks for room.
                    if !room
                        && (self.pool.bytes() == 0 || {
                            budget.release(self.pool.drain());
                            !budget.try_reserve(bytes)
                        })
                    {
                        retally(&mut self.sketched_visitors, tally, &page.visitors);
                        if let Some(before) = booked {
                            let (held, keep) =
                                (page.visitors.heap_bytes(), page.url.as_ptr() as usize);
                            self.settle(budget, before, held, keep);
                        }
                        return StripeRecord::NeedRoom(bytes);
                    }
                    reserved = bytes;
                    if expiry.is_some() {
                        booked.get_or_insert(held);
                    }
                    if in_arena {
                        page.visitors.grow_in_arena(visitor, tick, self.width);
                    } else {
                        page.visitors
                            .grow_and_insert(visitor, tick, self.width, expiry);
                    }
                }
                match grow {
                    // A known visitor in a new bucket: its run grew.
                    Insert::GrowKnown { was, .. } => {
                        let after = page.visitors.heap_bytes();
                        if expiry.is_none() && after < held + bytes {
                            // The arena was compacted: less than reserved is held.
                            budget.release(held + bytes - after);
                        }
                        if VisitorSet::became_sketch_worthy(held, after, expiry.is_some()) {
                            self.sketch_worthy.push(url_hash);
                        }
                        if expiry.is_none_or(|e| e.is_live(was)) {
                            Recorded::Duplicate
                        } else {
                            self.expired += 1;
                            Recorded::New
                        }
                    }
                    // A new visitor: the table grew.
                    _ if page.visitors.is_sketch() => {
                        // A sketched page with a TTL started a new generation.
                        Recorded::Sketched
                    }
                    _ => {
                        if VisitorSet::became_sketch_worthy(held, held + bytes, expiry.is_some()) {
                            self.sketch_worthy.push(url_hash);
                        }
                        self.pairs += 1;
                        Recorded::New
                    }
                }
            }
            Insert::Estimated { changed: true } => Recorded::New,
            Insert::Estimated { changed: false } => Recorded::Sketched,
        };
        page.visitors.touch(tick);
        retally(&mut self.sketched_visitors, tally, &page.visitors);
        raise(&mut self.newest, tick);
        if expiry.is_none() {
            return StripeRecord::Done(recorded);
        }
        // `note_tick`, on fields apart from the page borrowed: only the
        // sweep with a TTL reads them.
        lower(&mut self.oldest_tick, tick);
        lower(&mut self.pass_oldest, tick);
        if let Some(before) = booked {
            let (held, keep) = (page.visitors.heap_bytes(), page.url.as_ptr() as usize);
            self.settle(budget, before + reserved, held, keep);
        }
        self.records_since_sweep += 1;
        if self.records_since_sweep >= SWEEP_EVERY {
            self.records_since_sweep = 0;
            return StripeRecord::DoneSweepDue(recorded);
        }
        StripeRecord::Done(recorded)
    }

    /// [`record_at`](Self::record_at) of each of `visitors` on the page in
    /// `bucket`, with no TTL, telling `done` the outcome of the `i`th:
    /// what a batch's run of one page's events costs. The insert that
    /// needs no growth (nearly all of them) is taken here, and the page's
    /// recency, sketch tally and pair count, and the stripe's newest tick,
    /// are settled once for the run instead of per event. A growth into a
    /// larger buffer is taken here too; any other (with an arena, or one
    /// the budget refuses) goes through `record_at` whole.
    #[inline]
    pub(crate) fn record_run_at(
        &mut self,
        bucket: usize,
        url_hash: u64,
        visitors: impl IntoIterator<Item = u64>,
        tick: u32,
        budget: &MemoryBudget,
        mut done: impl FnMut(usize, StripeRecord),
    ) {
        let mut visitors = visitors.into_iter().enumerate();
        loop {
            let Some(page) = self.pages.get_bucket_mut(bucket) else {
                visitors.for_each(|(i, _)| done(i, StripeRecord::NoPage));
                return;
            };
            let tally = page.visitors.sketch_tally();
            let mut added = 0;
            let mut grow = None;
            for (i, visitor) in visitors.by_ref() {
                let recorded = match page.visitors.insert(visitor, tick, self.width, None) {
                    // Without a TTL every known pair is a duplicate.
                    Insert::Present | Insert::Refreshed { .. } => Recorded::Duplicate,
                    Insert::Added => {
                        added += 1;
                        Recorded::New
                    }
                    Insert::Estimated { changed: true } => Recorded::New,
                    Insert::Estimated { changed: false } => Recorded::Sketched,
                    // A table or inline set moving to a larger buffer (as
                    // `record_at` grows it, without its second probe).
                    Insert::Grow(bytes)
                        if let Some(sizes) = page.visitors.pooled_growth()
                            && grow_pooled(
                                (&mut self.pool, self.pairs + added),
                                &mut page.visitors,
                                budget,
                                sizes,
                                |set, spare| set.grow_pooled(visitor, tick, self.width, spare),
                            ) =>
                    {
                        if VisitorSet::became_sketch_worthy(sizes.0, sizes.0 + bytes, false) {
                            self.sketch_worthy.push(url_hash);
                        }
                        added += 1;
                        Recorded::New
                    }
                    Insert::Grow(_) | Insert::GrowKnown { .. } => {
                        grow = Some((i, visitor));
                        break;
                    }
                };
                done(i, StripeRecord::Done(recorded));
            }
            page.visitors.touch(tick);
            retally(&mut self.sketched_visitors, tally, &page.visitors);
            self.pairs += added;
            raise(&mut self.newest, tick);
            let Some((i, visitor)) = grow else {
                return;
            };
            done(
                i,
                self.record_at(bucket, url_hash, visitor, tick, None, budget),
            );
        }
    }

    /// One step of the incremental sweep: visits the next `buckets` buckets
    /// of the page table (wrapping around), drops the expired visitors of
    /// the pages there (with a retention, their buckets before
    /// `oldest_bucket` too), and removes pages left with none live. The
    /// work is bounded by visitor-table slots too: the step ends once
    /// `slots` are visited. A table of at most [`STEP_SLOTS`] slots is
    /// done whole; a larger one gets what is left of `slots`, and the next
    /// step resumes it where this one stopped (a page whose visitors have
    /// all expired is removed whole, with no scan). So a step visits at
    /// most `slots + STEP_SLOTS` slots, whatever the page sizes; the step
    /// that ends a large table's pass may also move its survivors (see
    /// `MOVE_PAIRS`).
    ///
    /// With a TTL (and no retention) a step first asks the stripe's
    /// `oldest_tick`: while that tick is live no pair here has expired,
    /// so there is nothing to drop and no page is dead, and the step ends
    /// there, reporting the buckets as visited, without touching a page.
    /// This is what keeps the piggy-backed steps off the record path
    /// while nothing expires. Each whole pass raises the bound to the
    /// lowest of its pages' (see [`VisitorSet::oldest_tick`]) and of the
    /// ticks recorded meanwhile.
    pub(crate) fn sweep(
        &mut self,
        expiry: Option<Expiry>,
        oldest_bucket: u32,
        buckets: usize,
        slots: usize,
        budget: &MemoryBudget,
    ) -> SweepStep {
        let total = self.pages.num_buckets();
        let mut step = SweepStep::default();
        if let Some(expiry) = expiry
            && oldest_bucket == 0
            && expiry.oldest_live() <= self.oldest_tick
            && !self.pages.is_empty()
        {
            step.buckets = buckets.min(total) as u64;
            return step;
        }
        while step.buckets < buckets.min(total) as u64 && step.slots < slots as u64 {
            let bucket = self.sweep_cursor % total;
            step.buckets += 1;
            let resume = (std::mem::take(&mut self.resume_url), self.resume_slot);
            self.sweep_cursor = bucket + 1;
            let Ok(mut entry) = self.pages.get_bucket_entry(bucket) else {
                continue;
            };
            let page = entry.get_mut();
            let url = (page.url.as_ptr() as usize as u32).max(1);
            // A resume point is the page's own (the table may have moved
            // pages since; a stale one would only shorten one pass).
            let from = if resume.0 == url {
                resume.1 as usize
            } else {
                0
            };
            let before = page.visitors.heap_bytes();
            let tally = page.visitors.sketch_tally();
            let dead_now = expiry.is_some_and(|e| page.visitors.is_dead(e));
            let dropped = if dead_now {
                Dropped {
                    pairs: 0,
                    slots: 1,
                    resume: None,
                    reserved: 0,
                }
            } else {
                let left = slots - step.slots as usize;
                let mut reserve = |bytes| budget.try_reserve(bytes);
                page.visitors.drop_expired(
                    expiry,
                    oldest_bucket,
                    self.width,
                    from,
                    left,
                    &mut reserve,
                )
            };
            retally(&mut self.sketched_visitors, tally, &page.visitors);
            step.slots += dropped.slots as u64;
            if let Some(next) = dropped.resume {
                // Table capacities fit in 32 bits (see `VisitorTable`).
                (self.resume_url, self.resume_slot) = (url, next as u32);
                self.sweep_cursor = bucket;
            }
            let dead = dead_now
                || match expiry {
                    Some(expiry) => page.visitors.is_dead(expiry),
                    None => !page.visitors.is_sketch() && page.visitors.pairs() == 0,
                };
            if !dead && let Some(expiry) = expiry {
                self.pass_oldest = self.pass_oldest.min(page.visitors.oldest_tick(expiry));
            }
            let (held, keep) = (page.visitors.heap_bytes(), page.url.as_ptr() as usize);
            self.settle(budget, before + dropped.reserved, held, keep);
            let dropped = dropped.pairs as u64;
            self.pairs -= dropped;
            self.expired += dropped;
            step.pairs_dropped += dropped;
            if dead && let Ok(entry) = self.pages.get_bucket_entry(bucket) {
                let (page, _) = entry.remove();
                // Pairs stored when it died expired with it.
                let expired = page.visitors.pairs() as u64;
                self.expired += expired;
                step.pairs_dropped += expired;
                budget.release(self.forget_removed(&page));
                let bytes = page.visitors.heap_bytes();
                crate::deferred::defer(page, bytes);
                self.expired_pages += 1;
                step.pages_removed += 1;
                self.resume_url = 0;
                self.sweep_cursor = bucket + 1;
            }
            if self.sweep_cursor == total {
                self.end_pass();
            }
        }
        if self.pages.is_empty() && self.pages.allocation_size() > 0 {
            // An emptied stripe gives its table back too, so that a
            // tracker whose pages all expired returns to its empty size.
            budget.release(self.pages.allocation_size() + self.pool.drain());
            self.pages = HashTable::new();
            self.sketch_worthy = Vec::new();
            self.oldest_tick = u32::MAX;
            self.pass_whole = false;
        }
        step
    }

    /// A record or restore put a pair at `tick` here.
    #[inline]
    fn note_tick(&mut self, tick: u32) {
        lower(&mut self.oldest_tick, tick);
        lower(&mut self.pass_oldest, tick);
    }

    /// The sweep has just visited the last bucket: a pass that saw every
    /// page knows the stripe's oldest tick. The next pass starts afresh.
    fn end_pass(&mut self) {
        if self.pass_whole {
            self.oldest_tick = self.pass_oldest;
        }
        self.pass_oldest = u32::MAX;
        self.pass_whole = true;
    }

    /// Pairs expired since start.
    pub(crate) fn expired(&self) -> u64 {
        self.expired
    }

    /// Pages removed for having no live visitor, since start.
    pub(crate) fn expired_pages(&self) -> u64 {
        self.expired_pages
    }

    /// Where the page table is, for a [`TableHint`]: its control bytes'
    /// address and bucket mask, computed from the address and bucket
    /// index of any page it holds; `None` for an empty stripe.
    pub(crate) fn table_address(&self) -> Option<(usize, usize)> {
        let url = &self.pages.iter().next()?.url;
        let hash = self.hasher.hash_one(&**url);
        let index = self.pages.find_bucket_index(hash, |p| p.url == *url)?;
        let page = self.pages.get_bucket(index)?;
        let ctrl = page as *const Page as usize + (index + 1) * size_of::<Page>();
        Some((ctrl, self.pages.num_buckets() - 1))
    }

    /// Buckets of the page table: what a full sweep pass visits.
    pub(crate) fn buckets(&self) -> usize {
        self.pages.num_buckets()
    }

    /// Records `visitor` on the page `url`, creating the page if needed.
    pub(crate) fn record(
        &mut self,
        url: &str,
        url_hash: u64,
        visitor: u64,
        tick: u32,
        expiry: Option<Expiry>,
        budget: &MemoryBudget,
    ) -> StripeRecord {
        match self.record_existing(url, url_hash, visitor, tick, expiry, budget) {
            StripeRecord::NoPage => {}
            done_or_full => return done_or_full,
        }
        // A new page costs its URL, plus the page table's growth when the
        // table is full. hashbrown decides that growth's exact size, so
        // reserve a bound first and give back the difference after.
        let table_before = self.pages.allocation_size();
        let table_grows = self.pages.len() == self.pages.capacity();
        let bound = url.len()
            + if table_grows {
                table_growth_bound(table_before)
            } else {
                0
            };
        if !budget.try_reserve(bound) {
            return if table_grows {
                StripeRecord::TableFull(bound)
            } else {
                StripeRecord::NeedRoom(bound)
            };
        }
        let mut page = Page::new(url, tick);
        if let Some(ghost) = self.ghosts.iter_mut().find(|g| g.0 == url_hash && g.2 == 0) {
            ghost.2 = page.url.as_ptr() as usize;
        }
        raise(&mut self.newest, tick);
        lower(&mut self.floor, tick);
        self.note_tick(tick);
        self.pass_whole &= !table_grows;
        page.visitors.insert(visitor, tick, self.width, expiry);
        let hasher = &self.hasher;
        self.pages
            .insert_unique(url_hash, page, |p| hasher.hash_one(&*p.url));
        let grown = self.pages.allocation_size() - table_before + url.len();
        debug_assert!(grown <= bound, "grew {grown}, bound {bound}");
        if grown <= bound {
            budget.release(bound - grown);
        } else {
            budget.force_reserve(grown - bound);
        }
        self.pairs += 1;
        StripeRecord::Done(Recorded::New)
    }

    /// Evicts the least recently recorded page among `samples` pages picked
    /// at random and the candidates kept from earlier evictions (Redis's
    /// approximated LRU with its eviction pool), using `random` for the
    /// picks. Among pages last recorded in the same tick the one holding
    /// fewer bytes goes first, so a page with many visitors is never
    /// traded for a small one recorded as recently. Returns the bytes
    /// freed, or `None` if the stripe has no page but the one whose URL is
    /// at address `keep` (0 for none).
    pub(crate) fn evict_sampled(
        &mut self,
        random: impl FnMut() -> u64,
        samples: usize,
        keep: usize,
    ) -> Option<usize> {
        self.evict_sampled_below(random, samples, keep, usize::MAX)
            .ok()
    }

    /// [`Stripe::evict_sampled`], but a victim within the recency window is
    /// taken only if its set holds fewer than `recent_below` heap bytes
    /// (0: no recent page goes). A refusal is `Err` of the bytes the
    /// spared victim holds (0 if not known, `usize::MAX` if the stripe has
    /// no page to offer), so that the caller can raise the bar
    /// just enough: across stripes, small recent pages go before big ones
    /// (see `Tracker::evict_until_free`).
    pub(crate) fn evict_sampled_below(
        &mut self,
        mut random: impl FnMut() -> u64,
        samples: usize,
        keep: usize,
        recent_below: usize,
    ) -> Result<usize, usize> {
        // Every page is at least `floor` recent: all within the window.
        let all_recent = self.floor.saturating_add(RECENCY_WINDOW) >= self.newest;
        if self.pages.is_empty() {
            return Err(usize::MAX);
        }
        if recent_below == 0 && all_recent {
            // Not scanned: the victim's size is unknown, so the next bar
            // is the lowest one.
            return Err(0);
        }
        // Candidates are named by bucket and checked by their URL's
        // address, so that no URL is hashed: a bucket whose page has moved
        // (the table was rebuilt) or gone no longer matches and is dropped.
        let (pages, ghosts) = (&self.pages, &self.ghosts);
        let key = |(bucket, url): (usize, usize)| {
            let page = pages.get_bucket(bucket)?;
            (page.url.as_ptr() as usize == url && url != keep).then(|| {
                let weight = Self::weight(ghosts, page);
                (page.visitors.last_recorded(), weight, bucket, url)
            })
        };
        // The pool's pages as they are now, plus fresh samples: random
        // buckets until `samples` pages are seen; a sparse table (after
        // many evictions) may need several probes per page.
        let mut candidates: Vec<(u32, usize, usize, usize)> =
            self.eviction_pool.iter().filter_map(|&c| key(c)).collect();
        let buckets = pages.num_buckets();
        let (mut seen, mut probes) = (0, 0);
        while seen < samples && probes < samples * 16 {
            probes += 1;
            let bucket = ((u128::from(random()) * buckets as u128) >> 64) as usize;
            if let Some(page) = pages.get_bucket(bucket) {
                seen += 1;
                let url = page.url.as_ptr() as usize;
                if url != keep && !candidates.iter().any(|c| c.2 == bucket) {
                    let weight = Self::weight(ghosts, page);
                    candidates.push((page.visitors.last_recorded(), weight, bucket, url));
                }
            }
        }
        candidates.sort_unstable();
        let victim = match candidates.first() {
            // Within the recency window: the exact least recent page (the
            // fewest bytes among its tick's) instead, unless the candidate
            // is of the floor's tick and small. A few samples of a sparse
            // table can offer only a hot page while small pages of the same
            // tick remain (see `RECENCY_WINDOW`).
            Some(&(last, bytes, bucket, _))
                if last.saturating_add(RECENCY_WINDOW) >= self.newest
                    && (last > self.floor || bytes > SMALL_PAGE) =>
            {
                self.least_recent(keep).unwrap_or(bucket)
            }
            Some(&(_, _, bucket, _)) => bucket,
            None => (0..buckets)
                .find(|&b| {
                    pages
                        .get_bucket(b)
                        .is_some_and(|p| p.url.as_ptr() as usize != keep)
                })
                .ok_or(usize::MAX)?,
        };
        let page = self.pages.get_bucket(victim).ok_or(usize::MAX)?;
        let (last, bytes) = (
            page.visitors.last_recorded(),
            Self::weight(&self.ghosts, page),
        );
        if bytes >= recent_below && last.saturating_add(RECENCY_WINDOW) >= self.newest {
            return Err(bytes);
        }

        self.eviction_pool.clear();
        self.eviction_pool.extend(
            candidates
                .iter()
                .skip(1)
                .take(EVICTION_POOL)
                .map(|&(_, _, bucket, url)| (bucket, url)),
        );
        let (page, _) = self
            .pages
            .get_bucket_entry(victim)
            .map_err(|_| usize::MAX)?
            .remove();
        if bytes > SMALL_PAGE {
            // Half its weight, so that a page that stays cold fades; a
            // big revived page evicted before it regrew keeps its weight
            // (see `Stripe::ghosts`). A full list gives up its lightest
            // entry, if lighter.
            let kept = if bytes > page.visitors.heap_bytes() && bytes > BIG_GHOST {
                bytes
            } else {
                bytes / 2
            };
            let lightest = (0..self.ghosts.len()).min_by_key(|&i| self.ghosts[i].1);
            match lightest {
                Some(i) if self.ghosts.len() == GHOSTS => {
                    if self.ghosts[i].1 < kept {
                        self.ghosts[i] = (self.hash(&page.url), kept, 0);
                    }
                }
                _ => self.ghosts.push((self.hash(&page.url), kept, 0)),
            }
        }
        Ok(self.forget_removed(&page))
    }

    /// The bytes eviction weighs `page` at: its set's, or more if it is a
    /// revived ghost.
    fn weight(ghosts: &[(u64, usize, usize)], page: &Page) -> usize {
        let bytes = page.visitors.heap_bytes();
        let url = page.url.as_ptr() as usize;
        ghosts
            .iter()
            .find(|g| g.2 == url)
            .map_or(bytes, |g| g.1.max(bytes))
    }

    /// The bucket of the least recently recorded page but the one whose
    /// URL is at address `keep` (the fewest bytes first among ties), by a
    /// scan of the stripe; raises `floor` to the oldest tick found.
    fn least_recent(&mut self, keep: usize) -> Option<usize> {
        let mut oldest = u32::MAX;
        let mut best: Option<(u32, usize, usize)> = None;
        for bucket in 0..self.pages.num_buckets() {
            let Some(page) = self.pages.get_bucket(bucket) else {
                continue;
            };
            let key = (page.visitors.last_recorded(), page.visitors.heap_bytes());
            oldest = oldest.min(key.0);
            // The weight is never below the set's bytes, so only a page
            // that beats the best on those needs its weight looked up.
            let beats = |key: (u32, usize)| best.is_none_or(|b| key < (b.0, b.1));
            if page.url.as_ptr() as usize != keep && beats(key) {
                let key = (key.0, Self::weight(&self.ghosts, page));
                if beats(key) {
                    best = Some((key.0, key.1, bucket));
                }
            }
        }
        self.floor = self.floor.max(oldest.min(self.newest));
        best.map(|b| b.2)
    }

    /// Books a set's change in `budget`: `accounted` bytes are in the
    /// budget, the set (of the page whose URL is at address `keep`) now
    /// holds `held`. A timed set can outgrow its reservation when its
    /// horizon list is cut anew by a rebuild (a write never grows the
    /// list: see `Horizon::note`); those bytes are already allocated, so
    /// they are booked whatever happens, but if the budget allows
    /// eviction, other pages of this stripe go first until they fit, so
    /// that the accounted total never passes the limit. Under `Reject`
    /// it may: by at most the horizon lists, each at most one 8-byte
    /// entry per stored pair of its page (a timed slot is 16 bytes), and
    /// only when a rebuild (expiry or retention) cut it. Reserving first
    /// would mean sizing the cut before the scan that makes it, or
    /// refusing a rebuild that gives memory back.
    fn settle(&mut self, budget: &MemoryBudget, accounted: usize, held: usize, keep: usize) {
        // The common case on a timed record: nothing changed, and the
        // shared counter is left alone (no atomic write per record).
        if held == accounted {
            return;
        }
        if held < accounted {
            budget.release(accounted - held);
            return;
        }
        let grown = held - accounted;
        let mut random = SplitMix64(self.random.0);
        while !budget.try_reserve(grown) {
            let freed = if budget.may_evict() {
                self.evict_sampled(|| random.next(), EVICTION_SAMPLES, keep)
            } else {
                None
            };
            let Some(freed) = freed else {
                budget.force_reserve(grown);
                break;
            };
            budget.release(freed);
            self.evicted_to_settle += 1;
        }
        self.random = random;
    }

    /// Frees the buffers pooled for table growth; returns their bytes,
    /// for the caller to release.
    pub(crate) fn drain_pool(&mut self) -> usize {
        self.pool.drain()
    }

    /// Pages evicted to book a timed set's growth, since start.
    pub(crate) fn evicted_to_settle(&self) -> u64 {
        self.evicted_to_settle
    }

    /// The stripe's bookkeeping for a page taken out of its table (evicted,
    /// or removed by the sweep): its pairs, its sketch, its place among the
    /// sketch candidates. Returns the heap bytes the page held, for the
    /// caller to release.
    fn forget_removed(&mut self, page: &Page) -> usize {
        let url = page.url.as_ptr() as usize;
        self.ghosts.retain(|g| g.2 != url);
        self.pairs -= page.visitors.pairs() as u64;
        if let Some(tally) = page.visitors.sketch_tally() {
            self.sketched -= 1;
            self.sketched_visitors -= tally;
        } else if !self.sketch_worthy.is_empty() {
            // Whatever the set's size now: a timed set may have shrunk
            // below the bar since it became a candidate.
            self.forget_sketch_worthy(self.hash(&page.url));
        }
        page.heap_bytes()
    }

    fn forget_sketch_worthy(&mut self, url_hash: u64) {
        if let Some(i) = self.sketch_worthy.iter().position(|&h| h == url_hash) {
            self.sketch_worthy.swap_remove(i);
        }
    }

    /// The largest exact set of this stripe worth sketching: its heap bytes
    /// and its page's URL hash.
    pub(crate) fn largest_sketch_worthy(&self) -> Option<(usize, u64)> {
        self.sketch_worthy
            .iter()
            .filter_map(|&hash| {
                let page = self.pages.find(hash, |p| self.hash(&p.url) == hash)?;
                Some((page.visitors.heap_bytes(), hash))
            })
            .max()
    }

    /// Turns the exact set of the page `url_hash` into a sketch (its count
    /// continues from the exact one; with a TTL, per-generation sketches).
    /// Returns the heap bytes freed, or `None` if the page is gone, already
    /// a sketch, or would not shrink.
    pub(crate) fn sketch_page(&mut self, url_hash: u64, expiry: Option<Expiry>) -> Option<usize> {
        self.forget_sketch_worthy(url_hash);
        let hasher = &self.hasher;
        let page = self
            .pages
            .find_mut(url_hash, |p| hasher.hash_one(&*p.url) == url_hash)?;
        let before = page.visitors.heap_bytes();
        if page.visitors.is_sketch() || page.visitors.sketched_bytes(expiry, self.width) >= before {
            return None;
        }
        let pairs = page.visitors.pairs() as u64;
        page.visitors.convert_to_sketch(expiry, self.width);
        let after = page.visitors.heap_bytes();
        self.pairs -= pairs;
        self.sketched += 1;
        retally(&mut self.sketched_visitors, Some(0), &page.visitors);
        Some(before - after)
    }

    /// The budget's second step: merges the two oldest days of history
    /// of the sketched page of this stripe whose history starts earliest
    /// (of those a merge shrinks). Returns the bytes freed, or `None` if
    /// no page here has such days. Scans the stripe's pages, only when it
    /// has a sketched one.
    pub(crate) fn merge_oldest_days(&mut self) -> Option<usize> {
        if self.sketched == 0 {
            return None;
        }
        let (_, url) = self
            .pages
            .iter()
            .filter_map(|p| Some((p.visitors.mergeable_since()?, &*p.url)))
            .min()?;
        let url_hash = self.hash(url);
        let url = url.to_owned();
        let page = self.pages.find_mut(url_hash, |p| *p.url == *url)?;
        let (before, after) = page.visitors.history_mut()?.merge_oldest();
        Some(before - after)
    }

    pub(crate) fn sketched(&self) -> u64 {
        self.sketched
    }

    /// The visitors of the stripe's sketched pages, as their sketches
    /// estimate them (see `sketched_visitors`).
    pub(crate) fn sketched_visitors(&self) -> u64 {
        self.sketched_visitors
    }

    /// Makes free slots in a full page table with no tombstones, without
    /// growing it: evicts a 32nd of the stripe's pages (at least one), each
    /// chosen as any eviction is, then reclaims their slots. Growing
    /// instead and evicting elsewhere would need the growth to fit once
    /// pages are gone, which page tables (never shrunk by eviction) can
    /// prevent. The 32nd amortises the table rebuild over that many new
    /// pages. Returns the bytes freed and the pages evicted.
    pub(crate) fn evict_for_slots(&mut self, mut random: impl FnMut() -> u64) -> (usize, u64) {
        let target = (self.pages.len() / 32).max(1) as u64;
        let (mut freed, mut evicted) = (0, 0);
        while evicted < target {
            let Some(bytes) = self.evict_sampled(&mut random, EVICTION_SAMPLES, 0) else {
                break;
            };
            freed += bytes;
            evicted += 1;
        }
        self.reclaim_tombstones();
        (freed, evicted)
    }

    /// Makes free slots in a full page table without growing it or
    /// evicting anything, if it can: hashbrown leaves tombstones where
    /// pages were removed (evicted or swept), and a table whose free slots
    /// are all tombstones grows on the next insert however few pages it
    /// holds. Rebuilding it in its own allocation turns them back into free
    /// slots. Returns whether there were any.
    pub(crate) fn reclaim_tombstones(&mut self) -> bool {
        let buckets = self.pages.num_buckets();
        // hashbrown's load factor: 7/8 of the buckets (all but one below 8).
        let slots = if buckets < 8 {
            buckets.saturating_sub(1)
        } else {
            buckets / 8 * 7
        };
        if self.pages.len() >= slots {
            return false;
        }
        // Draining keeps the allocation and resets every slot to empty;
        // re-inserting fewer pages than it holds never reallocates.
        let kept: Vec<Page> = self.pages.drain().collect();
        self.pass_whole = false;
        let hasher = &self.hasher;
        for page in kept {
            let hash = hasher.hash_one(&*page.url);
            self.pages
                .insert_unique(hash, page, |p| hasher.hash_one(&*p.url));
        }
        true
    }

    /// `f` of the page, or `None` if the stripe does not have it.
    #[inline]
    pub(crate) fn with_page<R>(
        &self,
        url: &str,
        url_hash: u64,
        f: impl FnOnce(&Page) -> R,
    ) -> Option<R> {
        // Every caller reads the set: what a count reads outside the record
        // is asked for before the URL is compared, so that the two misses
        // overlap instead of following each other.
        let same = |p: &Page| {
            p.visitors.prefetch_count();
            *p.url == *url
        };
        self.pages.find(url_hash, same).map(f)
    }

    /// Adds a page rebuilt from a snapshot, reserving its bytes (URL, set,
    /// and the page table's growth) in `budget` first. Returns the bytes
    /// missing when they do not fit; the page is then dropped, nothing
    /// changed. The caller guarantees the page is not already present.
    pub(crate) fn insert_restored(
        &mut self,
        url_hash: u64,
        page: Page,
        timed: bool,
        budget: &MemoryBudget,
    ) -> Result<(), usize> {
        let table_before = self.pages.allocation_size();
        let table_grows = self.pages.len() == self.pages.capacity();
        let set_bytes = page.visitors.heap_bytes();
        let bound = page.heap_bytes()
            + if table_grows {
                table_growth_bound(table_before)
            } else {
                0
            };
        if !budget.try_reserve(bound) {
            return Err(bound);
        }
        self.pairs += page.visitors.pairs() as u64;
        if let Some(tally) = page.visitors.sketch_tally() {
            self.sketched += 1;
            self.sketched_visitors += tally;
        } else {
            if VisitorSet::became_sketch_worthy(0, set_bytes, timed) {
                self.sketch_worthy.push(url_hash);
            }
        }
        let held = page.heap_bytes();
        let last = page.visitors.last_recorded();
        // Without a TTL the bound is never read.
        let expiry = Expiry { now: last, ttl: 1 };
        self.note_tick(page.visitors.oldest_tick(expiry));
        self.pass_whole &= !table_grows;
        self.floor = self.floor.min(last);
        self.newest = self.newest.max(last);
        let hasher = &self.hasher;
        self.pages
            .insert_unique(url_hash, page, |p| hasher.hash_one(&*p.url));
        let grown = self.pages.allocation_size() - table_before + held;
        if grown <= bound {
            budget.release(bound - grown);
        } else {
            budget.force_reserve(grown - bound);
        }
        Ok(())
    }

    /// Whether the stripe has the page `url`.
    pub(crate) fn contains(&self, url: &str, url_hash: u64) -> bool {
        self.pages.find(url_hash, |p| *p.url == *url).is_some()
    }

    pub(crate) fn pages(&self) -> impl Iterator<Item = &Page> {
        self.pages.iter()
    }

    pub(crate) fn page_count(&self) -> usize {
        self.pages.len()
    }

    pub(crate) fn pairs(&self) -> u64 {
        self.pairs
    }

    /// Heap bytes held, counted from the table and its pages: what the
    /// budget's incremental count must agree with.
    #[cfg(test)]
    pub(crate) fn recount_bytes(&self) -> usize {
        self.pages.allocation_size()
            + self.pages().map(Page::heap_bytes).sum::<usize>()
            + self.pool.bytes()
    }

    /// The sketched pages' tally, recounted (for tests of the running one).
    #[cfg(test)]
    pub(crate) fn recount_sketched_visitors(&self) -> u64 {
        self.pages().filter_map(|p| p.visitors.sketch_tally()).sum()
    }
}

/// An upper bound on how much a hashbrown table whose allocation is
/// `before` bytes grows when it next resizes. It at most doubles its
/// buckets (each a page slot and a control byte; a fixed tail of control
/// bytes, one SIMD group wide, does not double), and its first allocation
/// is four buckets.
fn table_growth_bound(before: usize) -> usize {
    const FIRST: usize = 4 * (std::mem::size_of::<Page>() + 1) + 16;
    before + FIRST
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table's place computed from one page predicts every page's
    /// bucket address, and most pages sit in the bucket a probe starts
    /// at or the next: the hashbrown layout `TableHint` relies on.
    #[test]
    fn table_hint_finds_the_buckets() {
        let mut stripe = Stripe::new(UrlHasher::random(), 60);
        let budget = MemoryBudget::new(None, 0);
        let urls: Vec<String> = (0..3_000).map(|i| format!("https://e.com/{i}")).collect();
        for url in &urls {
            stripe.record(url, stripe.hash(url), 1, 0, None, &budget);
        }
        let (ctrl, mask) = stripe.table_address().unwrap();
        assert_eq!(mask + 1, stripe.pages.num_buckets());
        let mut near_home = 0;
        for url in &urls {
            let hash = stripe.hash(url);
            let index = stripe
                .pages
                .find_bucket_index(hash, |p| *p.url == **url)
                .unwrap();
            let page = stripe.pages.get_bucket(index).unwrap();
            assert_eq!(
                page as *const Page as usize,
                ctrl - (index + 1) * size_of::<Page>()
            );
            let home = hash as usize & mask;
            near_home += usize::from(index.wrapping_sub(home) & mask <= 1);
        }
        assert!(
            near_home * 2 > urls.len(),
            "{near_home} of {} near home",
            urls.len()
        );
        let hint = TableHint::default();
        hint.prefetch(1);
        assert_eq!(hint.buckets(), 0);
        hint.publish((ctrl, mask));
        assert_eq!(hint.buckets(), mask + 1);
        hint.prefetch(stripe.hash(&urls[7]));
    }

    /// What every record reads or writes shares the lock's cache line
    /// (see [`Stripe`]), and the stripe keeps to four lines. (The
    /// `lock-stats` lock is larger; shuttle's is another type.)
    #[test]
    #[cfg(not(any(feature = "lock-stats", feature = "shuttle")))]
    fn hot_fields_share_the_lock_line() {
        use std::mem::offset_of;
        let padded = CachePadded(RwLock::new(Stripe::new(UrlHasher::random(), 60)));
        let block = &padded as *const _ as usize;
        let data = &*crate::sync::read(&padded) as *const Stripe as usize;
        let end = data - block + offset_of!(Stripe, records_since_sweep) + 4;
        assert!(end <= 64, "the hot fields end at byte {end}");
        assert_eq!(offset_of!(Stripe, pages), 0);
        assert_eq!(size_of::<CachePadded<RwLock<Stripe>>>(), 256);
    }

    /// A lookup's candidate is the first page with its hash's tag,
    /// whatever its URL: `find_from` finds each page of that hash behind
    /// it, none for a URL absent, and none where no page has the tag.
    #[test]
    fn lookups_find_pages_behind_another_pages_candidate() {
        let mut stripe = Stripe::new(UrlHasher::random(), 60);
        let budget = MemoryBudget::new(None, 0);
        // Three URLs under one hash (forced: no resize rehashes them).
        let hash = 0x0123_4567_89ab_cdef;
        let urls = ["https://e.com/a", "https://e.com/b", "https://e.com/c"];
        for url in urls {
            stripe.record(url, hash, 1, 0, None, &budget);
        }
        assert_eq!(stripe.page_count(), 3);
        let candidate = stripe.candidate(hash);
        assert!(candidate.is_some());
        for url in urls {
            let bucket = stripe.find_from(url, hash, candidate).unwrap();
            assert_eq!(&*stripe.pages.get_bucket(bucket).unwrap().url, url);
        }
        assert_eq!(stripe.find_from("https://e.com/d", hash, candidate), None);
        // Another tag (hashbrown's: the top seven bits).
        let other = hash | 0xfe00_0000_0000_0000;
        assert_eq!(stripe.candidate(other), None);
        assert_eq!(stripe.find_from(urls[0], other, None), None);
    }

    #[test]
    fn accounting_matches_a_recount() {
        let mut stripe = Stripe::new(UrlHasher::random(), 60);
        let budget = MemoryBudget::new(None, 0);
        for page in 0..50u64 {
            let url = format!("https://example.com/{page}");
            for visitor in 1..=page * 3 + 1 {
                let hash = stripe.hash(&url);
                let done = stripe.record(&url, hash, visitor, 0, None, &budget);
                assert_eq!(done, StripeRecord::Done(Recorded::New));
            }
        }
        let recount = stripe.recount_bytes();
        assert!(recount > stripe.pages.allocation_size());
        assert_eq!(budget.held() as usize, recount);
        assert_eq!(stripe.pairs(), (0..50).map(|p| p * 3 + 1).sum::<u64>());

        // Evicting gives back exactly what each page held.
        let mut state = 1u64;
        let mut random = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state
        };
        while let Some(freed) = stripe.evict_sampled(&mut random, 5, 0) {
            budget.release(freed);
        }
        assert_eq!(stripe.pairs(), 0);
        // The buffers the tables grew out of stay pooled, and accounted.
        let pooled = stripe.pool.bytes();
        assert!(pooled > 0);
        assert_eq!(
            stripe.recount_bytes(),
            stripe.pages.allocation_size() + pooled
        );
        assert_eq!(budget.held() as usize, stripe.recount_bytes());
        budget.release(stripe.pool.drain());
        assert_eq!(budget.held() as usize, stripe.pages.allocation_size());
    }

    proptest::proptest! {
        /// Tables grown into recycled buffers (dirty from their last
        /// table) count exactly what a model counts, while pages come,
        /// grow and are evicted; the budget agrees with a recount, the
        /// pool included, and the pool stays within its bound.
        #[test]
        fn counts_stay_exact_with_recycled_tables(
            ops in proptest::collection::vec((0u64..6, 1u64..120, 0u8..40), 1..1_500),
        ) {
            use crate::set::table_pool::POOL_BYTES;
            use std::collections::{HashMap, HashSet};
            let mut stripe = Stripe::new(UrlHasher::random(), 60);
            let budget = MemoryBudget::new(None, 0);
            let mut model: HashMap<u64, HashSet<u64>> = HashMap::new();
            let mut random = SplitMix64(7);
            let mut evicted = 0;
            for (page, visitor, evict) in ops {
                if evict == 0 {
                    evicted += 1;
                    // Evicts some page; the model forgets whichever went.
                    if let Some(freed) = stripe.evict_sampled(|| random.next(), 4, 0) {
                        budget.release(freed);
                        model.retain(|page, _| {
                            let url = format!("https://example.com/{page}");
                            stripe.with_page(&url, stripe.hash(&url), |_| ()).is_some()
                        });
                    }
                    continue;
                }
                // Pages far apart in size, so that buffers move between them.
                let visitor = visitor * (page + 1);
                let url = format!("https://example.com/{page}");
                let hash = stripe.hash(&url);
                let done = stripe.record(&url, hash, visitor, 0, None, &budget);
                let new = model.entry(page).or_default().insert(visitor);
                let expected = if new { Recorded::New } else { Recorded::Duplicate };
                proptest::prop_assert_eq!(done, StripeRecord::Done(expected));
                let held = stripe.with_page(&url, hash, |p| p.visitors.pairs());
                proptest::prop_assert_eq!(held, Some(model[&page].len()));
                proptest::prop_assert!(stripe.pool.bytes() <= POOL_BYTES);
                if evicted == 0 {
                    // A byte per pair at most, until an eviction.
                    proptest::prop_assert!(stripe.pool.bytes() as u64 <= stripe.pairs());
                }
            }
            proptest::prop_assert_eq!(budget.held() as usize, stripe.recount_bytes());
            let pairs: usize = model.values().map(HashSet::len).sum();
            proptest::prop_assert_eq!(stripe.pairs(), pairs as u64);
        }
    }

    proptest::proptest! {
        // Each case records its filler page first: fewer cases than the
        // default keep the test a few seconds long.
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 48,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// With a TTL, timed tables grown into recycled buffers (dirty
        /// from their last table) count exactly the live pairs of a model
        /// of latest ticks while time passes and sweeps drop expired
        /// pairs and pages; the budget agrees with a recount, the pool
        /// included, and the pool keeps only timed buffers within its
        /// bound.
        #[test]
        fn timed_counts_stay_exact_with_recycled_tables(
            ops in proptest::collection::vec((0u64..6, 1u64..100, 0u8..40), 1..1_000),
        ) {
            use crate::set::table_pool::POOL_BYTES;
            use std::collections::HashMap;
            let ttl = 200;
            let mut stripe = Stripe::new(UrlHasher::random(), 60);
            let budget = MemoryBudget::new(None, 0);
            let mut model: HashMap<u64, HashMap<u64, u32>> = HashMap::new();
            let mut now = 1_000u32;
            let url = |page: u64| format!("https://example.com/{page}");
            // Pairs enough for the pool to keep buffers (a byte per pair),
            // until they expire.
            let filler = url(99);
            for visitor in 1..=3_000 {
                let expiry = Some(Expiry { now, ttl });
                stripe.record(&filler, stripe.hash(&filler), visitor, now, expiry, &budget);
            }
            for (page, visitor, op) in ops {
                let expiry = Expiry { now, ttl };
                match op {
                    0 => now += 23,
                    1 => {
                        for _ in 0..4 {
                            stripe.sweep(Some(expiry), 0, 32, 1 << 16, &budget);
                        }
                    }
                    _ => {
                        // Pages far apart in size, so that buffers move
                        // between them.
                        let visitor = visitor * (page + 1);
                        let hash = stripe.hash(&url(page));
                        let done = stripe.record(&url(page), hash, visitor, now, Some(expiry), &budget);
                        let was = model.entry(page).or_default().insert(visitor, now);
                        let new = was.is_none_or(|was| !expiry.is_live(was));
                        let expected = if new { Recorded::New } else { Recorded::Duplicate };
                        proptest::prop_assert!(matches!(
                            done,
                            StripeRecord::Done(r) | StripeRecord::DoneSweepDue(r) if r == expected
                        ), "{done:?}, expected {expected:?}");
                    }
                }
                let expiry = Expiry { now, ttl };
                for (&page, pairs) in &model {
                    let live = pairs.values().filter(|&&t| expiry.is_live(t)).count() as u64;
                    let counted = stripe
                        .with_page(&url(page), stripe.hash(&url(page)), |p| {
                            p.visitors.count(Some(expiry)).visitors
                        })
                        .unwrap_or(0);
                    proptest::prop_assert_eq!(counted, live, "page {}", page);
                }
                proptest::prop_assert!(stripe.pool.bytes() <= POOL_BYTES);
                proptest::prop_assert!(stripe.pool.take::<Box<[u64]>>(6).is_none());
                proptest::prop_assert_eq!(budget.held() as usize, stripe.recount_bytes());
            }
            let expiry = Some(Expiry { now, ttl });
            let live = if now < 1_000 + ttl { 3_000 } else { 0 };
            let counted = stripe.with_page(&filler, stripe.hash(&filler), |p| {
                p.visitors.count(expiry).visitors
            });
            proptest::prop_assert_eq!(counted.unwrap_or(0), live);
        }
    }

    /// Timed tables' growths leave their buffers in the pool (a TTL
    /// tracker pools as one without does), accounted, and take them
    /// back: the pool hands back buffers of the size asked for.
    #[test]
    fn timed_tables_grow_through_the_pool() {
        let mut stripe = Stripe::new(UrlHasher::random(), 60);
        let budget = MemoryBudget::new(None, 0);
        let expiry = Some(Expiry {
            now: 5_000,
            ttl: 3_600,
        });
        let mut taken = 0;
        for page in 0..50u64 {
            let url = format!("https://example.com/{page}");
            for visitor in 1..=page * 3 + 1 {
                let pooled = stripe.pool.bytes();
                let hash = stripe.hash(&url);
                let done = stripe.record(&url, hash, visitor, 5_000, expiry, &budget);
                assert!(matches!(
                    done,
                    StripeRecord::Done(Recorded::New) | StripeRecord::DoneSweepDue(Recorded::New)
                ));
                taken += usize::from(stripe.pool.bytes() < pooled);
            }
        }
        assert!(stripe.pool.bytes() > 0, "timed buffers kept");
        assert!(taken > 0, "and taken back");
        assert_eq!(budget.held() as usize, stripe.recount_bytes());
        let pages = stripe.pages().count();
        for page in stripe.pages() {
            assert_eq!(
                page.visitors.count(expiry).visitors,
                page.visitors.pairs() as u64
            );
        }
        assert_eq!(pages, 50);
        assert_eq!(stripe.pairs(), (0..50).map(|p| p * 3 + 1).sum::<u64>());
        budget.release(stripe.pool.drain());
        assert_eq!(budget.held() as usize, stripe.recount_bytes());
    }

    /// Pages last recorded in the same tick go smallest first, so a page
    /// of the largest size (visitor tables grow in steps) outlives the
    /// others.
    #[test]
    fn ties_in_recency_keep_the_largest_page() {
        let mut stripe = Stripe::new(UrlHasher::fixed(), 60);
        let budget = MemoryBudget::new(None, 0);
        let url = |page: u64| format!("https://example.com/{page}");
        for page in 0..50u64 {
            for visitor in 1..=page * 3 + 1 {
                let hash = stripe.hash(&url(page));
                stripe.record(&url(page), hash, visitor, 7, None, &budget);
            }
        }
        let largest = stripe.pages().map(|p| p.visitors.heap_bytes()).max();
        let mut state = 1u64;
        let mut random = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state
        };
        for _ in 0..49 {
            budget.release(
                stripe
                    .evict_sampled(&mut random, EVICTION_SAMPLES, 0)
                    .unwrap(),
            );
        }
        let left: Vec<usize> = stripe.pages().map(|p| p.visitors.heap_bytes()).collect();
        assert_eq!(left, [largest.unwrap()]);
    }

    /// A big page evicted and recorded again is weighed at half its old
    /// size: small pages of its second go before it, not it again.
    #[test]
    fn a_revived_big_page_outlasts_small_pages_of_its_second() {
        let mut stripe = Stripe::new(UrlHasher::fixed(), 60);
        let budget = MemoryBudget::new(None, 0);
        let url = |page: u64| format!("https://example.com/{page}");
        let record = |stripe: &mut Stripe, page: u64, visitor: u64| {
            let hash = stripe.hash(&url(page));
            stripe.record(&url(page), hash, visitor, 7, None, &budget);
        };
        for visitor in 1..=5_000 {
            record(&mut stripe, 0, visitor);
        }
        assert!(stripe.pages().next().unwrap().visitors.heap_bytes() > 2 * SMALL_PAGE);
        let mut random = SplitMix64(5);
        stripe
            .evict_sampled(|| random.next(), EVICTION_SAMPLES, 0)
            .unwrap();
        record(&mut stripe, 0, 1);
        for page in 1..40 {
            record(&mut stripe, page, page);
            record(&mut stripe, page, page + 1);
        }
        for _ in 1..40 {
            stripe
                .evict_sampled(|| random.next(), EVICTION_SAMPLES, 0)
                .unwrap();
        }
        let left: Vec<&str> = stripe.pages().map(|p| &*p.url).collect();
        assert_eq!(left, [url(0)]);
    }

    /// A revived page evicted again before it regrew keeps its ghost's
    /// weight: evicted and revived many times under lasting pressure, it
    /// still outlasts the small pages of its second (a halving per
    /// eviction let it fade to their size, measured on the eviction bench
    /// as one top-10 page lost 82 to 297 times).
    #[test]
    fn a_page_revived_again_and_again_keeps_its_weight() {
        let mut stripe = Stripe::new(UrlHasher::fixed(), 60);
        let budget = MemoryBudget::new(None, 0);
        let url = |page: u64| format!("https://example.com/{page}");
        let record = |stripe: &mut Stripe, page: u64, visitor: u64| {
            let hash = stripe.hash(&url(page));
            stripe.record(&url(page), hash, visitor, 7, None, &budget);
        };
        for visitor in 1..=10_000 {
            record(&mut stripe, 0, visitor);
        }
        assert!(stripe.pages().next().unwrap().visitors.heap_bytes() > 2 * BIG_GHOST);
        let mut random = SplitMix64(5);
        for _ in 0..12 {
            // Alone in its stripe, it is the one page eviction can take.
            stripe
                .evict_sampled(|| random.next(), EVICTION_SAMPLES, 0)
                .unwrap();
            record(&mut stripe, 0, 1);
            record(&mut stripe, 0, 2);
            record(&mut stripe, 0, 3);
        }
        for page in 1..40 {
            record(&mut stripe, page, page);
            record(&mut stripe, page, page + 1);
            record(&mut stripe, page, page + 2);
        }
        for _ in 1..40 {
            stripe
                .evict_sampled(|| random.next(), EVICTION_SAMPLES, 0)
                .unwrap();
        }
        let left: Vec<&str> = stripe.pages().map(|p| &*p.url).collect();
        assert_eq!(left, [url(0)]);
    }

    /// A return that would move its page to wide cells, under a budget
    /// with no room for the move, grows the page's arena instead: it is
    /// recorded (the move is a speed-up, not room the visit needs), the
    /// page keeps its cells, and the budget holds what the stripe holds.
    #[test]
    fn a_move_to_wide_cells_without_room_grows_the_arena() {
        let url = "https://example.com/";
        // 3,000 visitors in bucket 0, each back in buckets 1 to 4.
        let visits = (0..5u32).flat_map(|bucket| (1..=3_000u64).map(move |v| (v, bucket * 60)));
        let is_wide = |stripe: &Stripe| {
            stripe
                .pages()
                .any(|p| matches!(p.visitors, VisitorSet::TableWide(..)))
        };
        let mut roomy = Stripe::new(UrlHasher::fixed(), 60);
        let hash = roomy.hash(url);
        let budget = MemoryBudget::new(None, 0);
        for (visitor, tick) in visits.clone() {
            let done = roomy.record(url, hash, visitor, tick, None, &budget);
            assert!(matches!(done, StripeRecord::Done(_)), "{done:?}");
        }
        assert!(is_wide(&roomy), "with room, the page moves");
        // 64 KiB of room at every visit: enough for any growth of the
        // arena, never for the move (a table of 20-byte slots).
        let mut tight = Stripe::new(UrlHasher::fixed(), 60);
        let mut held = 0;
        for (visitor, tick) in visits {
            let budget = MemoryBudget::new(Some(held + (64 << 10)), held);
            let done = tight.record(url, hash, visitor, tick, None, &budget);
            let expected = if tick == 0 {
                Recorded::New
            } else {
                Recorded::Duplicate
            };
            assert_eq!(
                done,
                StripeRecord::Done(expected),
                "visitor {visitor} at {tick}"
            );
            held = budget.held();
        }
        assert!(!is_wide(&tight));
        assert_eq!(held as usize, tight.recount_bytes());
        assert_eq!(tight.pairs(), 3_000);
        let count = |stripe: &Stripe| stripe.with_page(url, hash, |p| p.visitors.count(None));
        assert_eq!(count(&tight), count(&roomy));
    }

    #[test]
    fn a_refused_reservation_changes_nothing() {
        let mut stripe = Stripe::new(UrlHasher::random(), 60);
        let budget = MemoryBudget::new(Some(2_000), 0);
        let url = "https://example.com/";
        let hash = stripe.hash(url);
        for visitor in 1..=2 {
            assert!(matches!(
                stripe.record(url, hash, visitor, 0, None, &budget),
                StripeRecord::Done(_)
            ));
        }
        let held = budget.held();
        assert!(held > 0);
        // The third visitor needs a table; the budget has no room for it.
        let tight = MemoryBudget::new(Some(held), held);
        assert_eq!(
            stripe.record(url, hash, 3, 9, None, &tight),
            StripeRecord::NeedRoom(48)
        );
        assert_eq!(
            stripe.with_page(url, hash, |p| p.visitors.count(None).visitors),
            Some(2)
        );
        assert_eq!(
            stripe.pages().next().map(|p| p.visitors.last_recorded()),
            Some(0)
        );
        // A second page fits the table's free slots: it needs its URL only.
        assert_eq!(
            stripe.record(
                "https://example.com/b",
                stripe.hash("https://example.com/b"),
                1,
                0,
                None,
                &tight
            ),
            StripeRecord::NeedRoom(21)
        );
    }
}
