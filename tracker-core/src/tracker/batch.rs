//! [`Tracker::record_batch`]: many events, each stripe's write lock taken
//! once per batch.

use super::Tracker;
use crate::canonical_url::Keys;
use crate::error::TrackerError;
use crate::report::Recorded;
use crate::sync;
use crate::tracker::budget::MemoryBudget;
use crate::tracker::stripe::{SWEEP_BUCKETS, Stripe, StripeRecord};

/// Where a stripe run's own byte count starts (see `record_batch_with`):
/// far from both ends, so that a run that frees more than it takes counts
/// down without wrapping.
const LOCAL_BASE: u64 = 1 << 62;

/// The reusable state of [`Tracker::record_batch`]: each event's outcome
/// and the scratch space of the grouping. Keep one per sender and pass it
/// to every call: a steady stream of batches allocates nothing per event.
#[derive(Debug, Default)]
pub struct RecordBatch {
    outcomes: Vec<Result<Recorded, TrackerError>>,
    /// What each event of the batch recorded, by its index: the stripe
    /// runs write these in the sort's order, a byte each, so that a
    /// batch's stay in L1 (writing `outcomes` in that order read each old
    /// value of 32 bytes to drop it, and missed: 8% of `record_run`'s
    /// samples on the batch bench). `outcomes` is built from these and
    /// `refused` in one pass at the end.
    recorded: Vec<Recorded>,
    /// The events refused, with their errors, by index.
    refused: Vec<(u32, TrackerError)>,
    /// The events that passed the visitor checks, hashed, to be sorted by
    /// stripe and page.
    pending: Vec<Pending>,
    /// The radix sort's second buffer.
    sorted: Vec<Pending>,
    /// Each stripe's run of `pending` (from, to), in the order they are
    /// recorded.
    runs: Vec<(u32, u32)>,
    /// The runs whose lock was busy at first.
    deferred: Vec<(u32, u32)>,
    /// Events the per-stripe pass could not finish (a new page, a URL not
    /// in canonical form), with their visitor and URL hashes: recorded one
    /// by one afterwards.
    slow: Vec<(u32, u64, u64)>,
    /// Each page's run of events in the stripe run being recorded: its
    /// page-table bucket (`u32::MAX`: no such page) and where the run
    /// ends.
    located: Vec<(u32, u32)>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Pending {
    index: u32,
    /// The sort key: stripe bits, then URL hash bits.
    key: u16,
    visitor: u64,
    url_hash: u64,
}

impl RecordBatch {
    /// The outcome of every event of the last batch, in the batch's order.
    pub fn outcomes(&self) -> &[Result<Recorded, TrackerError>] {
        &self.outcomes
    }

    /// How many events of the last batch were accepted.
    pub fn accepted(&self) -> usize {
        self.outcomes.iter().filter(|o| o.is_ok()).count()
    }
}

impl Tracker {
    /// Records `(visitor, url)` events now, each with its own outcome in
    /// `batch` (a refused event never refuses its neighbours).
    ///
    /// The events are validated and hashed first, then grouped by stripe,
    /// and each stripe's write lock is taken once for all its events on
    /// pages already stored under the URL as sent; the others (a new page,
    /// a URL that needs canonicalising, an event that needs room) are
    /// recorded one by one afterwards, as [`record`](Self::record) does.
    /// Counts and refusals are those of the same events recorded one by one;
    /// only which of two events of the same pair is
    /// [`New`](Recorded::New) may differ. With a memory budget or a TTL,
    /// where the order of events decides what is evicted, sketched or
    /// expired, the batch is recorded one by one in its order.
    ///
    /// ```
    /// use tracker_core::{RecordBatch, Tracker};
    ///
    /// let tracker = Tracker::new();
    /// let mut batch = RecordBatch::default();
    /// let events = [("alice", "https://example.com/"), ("bob", ""), ("bob", "https://example.com/")];
    /// tracker.record_batch(&events, &mut batch);
    /// assert_eq!(batch.accepted(), 2);
    /// assert!(batch.outcomes()[1].is_err());
    /// assert_eq!(tracker.distinct("https://example.com/")?.visitors, 2);
    /// # Ok::<(), tracker_core::TrackerError>(())
    /// ```
    pub fn record_batch(&self, events: &[(&str, &str)], batch: &mut RecordBatch) {
        self.record_batch_with(events, batch, None::<fn(usize, u64, &str)>);
    }

    /// [`record_batch`](Self::record_batch), calling `accepted(index,
    /// visitor hash, canonical URL)` for each event recorded (not
    /// [`Stale`](Recorded::Stale)), in no particular order and with no
    /// lock held: what the durable batch logs. `None` skips the pass over
    /// the outcomes that finds them.
    pub(crate) fn record_batch_with(
        &self,
        events: &[(&str, &str)],
        batch: &mut RecordBatch,
        mut accepted: Option<impl FnMut(usize, u64, &str)>,
    ) {
        batch.outcomes.clear();
        batch.pending.clear();
        batch.slow.clear();
        batch.refused.clear();
        if self.ttl.is_some() || self.budget.limit().is_some() || events.len() > u32::MAX as usize {
            for (index, &(visitor, url)) in events.iter().enumerate() {
                let outcome = self.hash_visitor(visitor.as_bytes()).and_then(|hash| {
                    let (recorded, page) = self.record_hashed(hash, url, None)?;
                    if recorded != Recorded::Stale
                        && let Some(accepted) = accepted.as_mut()
                    {
                        accepted(index, hash, &page);
                    }
                    Ok(recorded)
                });
                batch.outcomes.push(outcome);
            }
            return;
        }
        let tick = self.config.clock.now().as_tick();
        for (index, &(visitor, url)) in events.iter().enumerate() {
            match self.check_visitor(visitor.as_bytes()) {
                Err(e) => batch.refused.push((index as u32, e)),
                Ok(()) => {
                    let url_hash = self.url_hasher.hash_one(url);
                    batch.pending.push(Pending {
                        index: index as u32,
                        key: self.sort_key(url_hash),
                        // 0 marks empty slots (see `record_hashed`).
                        visitor: self.visitor_hasher.hash(visitor.as_bytes()).max(1),
                        url_hash,
                    });
                }
            }
        }
        // Overwritten for every event recorded (never an outcome without
        // a TTL): `Stale` marks the ones not recorded yet.
        batch.recorded.clear();
        batch.recorded.resize(events.len(), Recorded::Stale);
        // The first event's stripe goes first: two threads sending batches
        // at once start on different stripes.
        let first = batch
            .pending
            .first()
            .map_or(0, |p| self.stripe_index(p.url_hash));
        sort_by_stripe_and_page(&mut batch.pending, &mut batch.sorted);
        batch.runs.clear();
        let mut from = 0;
        for run in batch
            .pending
            .chunk_by(|a, b| self.stripe_index(a.url_hash) == self.stripe_index(b.url_hash))
        {
            batch.runs.push((from as u32, (from + run.len()) as u32));
            from += run.len();
        }
        let stripe_of = |batch: &RecordBatch, (from, _): (u32, u32)| {
            self.stripe_index(batch.pending[from as usize].url_hash)
        };
        let pivot = batch
            .runs
            .partition_point(|&run| stripe_of(batch, run) < first);
        batch.runs.rotate_left(pivot);
        // A run whose lock another thread holds waits until the others are
        // done, so that two senders do not queue on the same locks in turn.
        batch.deferred.clear();
        let mut sweep_due = false;
        for i in 0..batch.runs.len() {
            let run = batch.runs[i];
            let index = stripe_of(batch, run);
            match sync::try_write(&self.stripes[index]) {
                Some(mut stripe) => {
                    sweep_due |= self.record_run(&mut stripe, index, batch, run, events, tick)
                }
                None => batch.deferred.push(run),
            }
        }
        for i in 0..batch.deferred.len() {
            let run = batch.deferred[i];
            let index = stripe_of(batch, run);
            let mut stripe = sync::write(&self.stripes[index]);
            sweep_due |= self.record_run(&mut stripe, index, batch, run, events, tick);
        }
        let RecordBatch {
            outcomes,
            recorded,
            refused,
            pending,
            slow,
            ..
        } = batch;
        if let Some(accepted) = accepted.as_mut() {
            for p in pending.iter() {
                let i = p.index as usize;
                if recorded[i] != Recorded::Stale {
                    // Stored under the URL as sent: it is canonical (or a
                    // legacy key: see "Legacy pages" in snapshot.rs).
                    accepted(i, p.visitor, events[i].1);
                }
            }
        }
        // In the batch's order, so that events of a page new to the
        // tracker count as they would one by one.
        slow.sort_unstable();
        // Most are a page new to the tracker, whose lookup misses and
        // whose insert writes a bucket not read before: asked for all at
        // once, those lines come while the first events canonicalise
        // (about 2% of a batch's time on the batch bench's stream:
        // docs/BENCHMARKS.md, "Slots with their values").
        for &(_, _, url_hash) in slow.iter() {
            self.hints[self.stripe_index(url_hash)].prefetch_each([url_hash]);
        }
        let first_slow_refusal = refused.len();
        for &(index, visitor, url_hash) in slow.iter() {
            let i = index as usize;
            match self.record_missed(visitor, events[i].1, url_hash, tick) {
                Ok((outcome, page)) => {
                    if outcome != Recorded::Stale
                        && let Some(accepted) = accepted.as_mut()
                    {
                        accepted(i, visitor, &page);
                    }
                    recorded[i] = outcome;
                }
                Err(e) => refused.push((index, e)),
            }
        }
        if sweep_due {
            self.sweep(SWEEP_BUCKETS);
        }
        // Both runs of refusals are in index order (`slow` is sorted).
        if first_slow_refusal > 0 && first_slow_refusal < refused.len() {
            refused.sort_by_key(|&(index, _)| index);
        }
        // Between two refusals, a plain copy of what was recorded.
        let mut from = 0;
        for (index, e) in refused.drain(..) {
            let index = index as usize;
            outcomes.extend(recorded[from..index].iter().map(|&r| Ok(r)));
            outcomes.push(Err(e));
            from = index + 1;
        }
        outcomes.extend(recorded[from..].iter().map(|&r| Ok(r)));
    }

    /// Records the events `run` of `batch.pending` (one stripe's, number
    /// `index`) under that stripe's write lock, `stripe`; the events it cannot finish
    /// (no page under the URL as sent) go to `batch.slow`. Returns whether
    /// a sweep step is due.
    fn record_run(
        &self,
        stripe: &mut Stripe,
        index: usize,
        batch: &mut RecordBatch,
        (from, to): (u32, u32),
        events: &[(&str, &str)],
        tick: u32,
    ) -> bool {
        let RecordBatch {
            recorded,
            pending,
            slow,
            located,
            ..
        } = batch;
        let run = &pending[from as usize..to as usize];
        // Without a limit the budget only counts (for `stats`): the run
        // books its growth on a count of its own, added to the shared one
        // once at its end, so that two threads' growths do not pass the
        // shared count's cache line between their cores once per growth.
        let local = MemoryBudget::new(None, LOCAL_BASE);
        // Every lookup of the run first, in three passes, then a prefetch
        // of where each event's insert starts, then every insert. A page's
        // events are adjacent: it is looked up once. The first pass finds
        // each page's candidate bucket (its hash's first tag match) and
        // prefetches its record; the second reads the records and
        // prefetches each page's URL and set header; the third compares
        // the URLs, whose lines the second asked for all at once (compared
        // in the probe, each URL's miss stalled the lookups behind it:
        // 11-14% of the batch's time, see docs/BENCHMARKS.md, "The
        // page's URL asked for before it is compared"). The fourth pass
        // reads the set headers to find each visitor's slot; the fifth
        // records the page's events in one call
        // (`Stripe::record_run_at`), which settles the page's and the
        // stripe's bookkeeping once for them. The lookups and prefetches
        // do not depend on one another, so their cache misses (page-table
        // slot, URL, set header, visitor slots) overlap instead of
        // stalling one insert after another, and the inserts find their
        // lines in cache.
        // Prefetch instructions, not plain reads: a read that misses holds
        // up retirement behind it, a prefetch does not (in the same passes,
        // plain reads measured 4% less time per event than main's batch,
        // prefetches 11%: see docs/BENCHMARKS.md).
        // First of all, each event's page-table control group and bucket
        // (where the table is now: the hint is published under this lock),
        // which the lookups read before the page's URL.
        self.hints[index].prefetch_each(run.iter().map(|p| p.url_hash));
        located.clear();
        let mut at = 0;
        while at < run.len() {
            let (url_hash, url) = (run[at].url_hash, events[run[at].index as usize].1);
            let end = at
                + 1
                + run[at + 1..]
                    .iter()
                    .take_while(|p| p.url_hash == url_hash && events[p.index as usize].1 == url)
                    .count();
            let candidate = stripe
                .candidate(url_hash)
                .map_or(u32::MAX, |bucket| bucket as u32);
            located.push((candidate, end as u32));
            at = end;
        }
        // Then each candidate's record is read, its URL and set header
        // asked for.
        for &(bucket, _) in located.iter() {
            if bucket != u32::MAX {
                stripe.prefetch_candidate(bucket as usize);
            }
        }
        // Then each candidate's URL is compared, its line now on its way.
        let mut at = 0;
        for (bucket, end) in located.iter_mut() {
            let page = &run[at..*end as usize];
            at = *end as usize;
            let candidate = (*bucket != u32::MAX).then_some(*bucket as usize);
            let url = events[page[0].index as usize].1;
            *bucket = stripe
                .find_from(url, page[0].url_hash, candidate)
                .map_or(u32::MAX, |bucket| bucket as u32);
        }
        let mut at = 0;
        for &(bucket, end) in located.iter() {
            let page = &run[at..end as usize];
            if bucket != u32::MAX {
                stripe.prefetch_at(bucket as usize, page.iter().map(|p| p.visitor));
            }
            at = end as usize;
        }
        let mut sweep_due = false;
        let mut at = 0;
        for &(bucket, end) in located.iter() {
            let page = &run[at..end as usize];
            at = end as usize;
            if bucket == u32::MAX {
                slow.extend(page.iter().map(|p| (p.index, p.visitor, p.url_hash)));
                continue;
            }
            let visitors = page.iter().map(|p| p.visitor);
            let url_hash = page[0].url_hash;
            stripe.record_run_at(
                bucket as usize,
                url_hash,
                visitors,
                tick,
                &local,
                |i, done| {
                    let p = &page[i];
                    match done {
                        StripeRecord::Done(outcome) => recorded[p.index as usize] = outcome,
                        StripeRecord::DoneSweepDue(outcome) => {
                            recorded[p.index as usize] = outcome;
                            sweep_due = true;
                        }
                        StripeRecord::NoPage
                        | StripeRecord::NeedRoom(_)
                        | StripeRecord::TableFull(_) => slow.push((p.index, p.visitor, p.url_hash)),
                    }
                },
            );
        }
        match local.held().checked_sub(LOCAL_BASE) {
            Some(grown) => self.budget.force_reserve(grown as usize),
            None => self.budget.release((LOCAL_BASE - local.held()) as usize),
        }
        sweep_due
    }

    /// The key `sort_by_stripe_and_page`
    /// sorts on: the stripe's bits, then the URL hash's top bits.
    fn sort_key(&self, url_hash: u64) -> u16 {
        let bits = self.stripes.len().trailing_zeros();
        debug_assert!(bits <= 16, "at most 65,536 stripes");
        let stripe = self.stripe_index(url_hash) as u64;
        ((stripe << (16 - bits)) | url_hash.checked_shr(48 + bits).unwrap_or(0)) as u16
    }

    /// Records an event the batch's locked pass missed (its page not
    /// stored under the URL as sent, `url_hash`): canonicalises the URL
    /// and records it in its stripe, skipping the probe under the URL as
    /// sent that [`record_hashed`](Self::record_hashed) would repeat. No
    /// budget or TTL here (the batch is the loop then).
    fn record_missed<'a>(
        &self,
        visitor: u64,
        url: &'a str,
        url_hash: u64,
        tick: u32,
    ) -> Result<(Recorded, std::borrow::Cow<'a, str>), TrackerError> {
        let (form, hash) = self.page_key(url, url_hash, Keys::Live)?;
        match self.record_new(&form, hash, visitor, tick, None) {
            StripeRecord::Done(recorded) | StripeRecord::DoneSweepDue(recorded) => {
                Ok((recorded, form))
            }
            // Room is never short without a budget; the full path decides.
            _ => self.record_hashed(visitor, url, None),
        }
    }
}

/// Sorts `pending` by stripe and, within a stripe, by the top bits of
/// the URL hash (their `key`), keeping the batch's order among equal
/// keys: each stripe's events become one run, and a page's events
/// adjacent in it. Two stable counting passes over the 16-bit key,
/// linear in the batch; `sorted` is the scratch buffer.
fn sort_by_stripe_and_page(pending: &mut Vec<Pending>, sorted: &mut Vec<Pending>) {
    sorted.clear();
    sorted.resize(pending.len(), Pending::default());
    let mut counts = [0usize; 257];
    for shift in [0, 8] {
        counts.fill(0);
        for p in pending.iter() {
            counts[usize::from((p.key >> shift) as u8) + 1] += 1;
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        for p in pending.iter() {
            let at = &mut counts[usize::from((p.key >> shift) as u8)];
            sorted[*at] = *p;
            *at += 1;
        }
        std::mem::swap(pending, sorted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch books every byte its stripe runs grew (on their own
    /// counts) on the shared budget: the stats agree with a recount.
    #[test]
    fn batches_account_every_byte() {
        let tracker = Tracker::builder().stripes(4).build().unwrap();
        let mut batch = RecordBatch::default();
        let ids: Vec<String> = (0..3_000).map(|v| format!("v{v}")).collect();
        let urls: Vec<String> = (0..40)
            .map(|p| format!("https://example.com/{p}"))
            .collect();
        for round in 0..6 {
            let events: Vec<(&str, &str)> = (0..500)
                .map(|i| {
                    let v = (i * 7 + round * 500) % ids.len();
                    (ids[v].as_str(), urls[(i * i + round) % urls.len()].as_str())
                })
                .collect();
            tracker.record_batch(&events, &mut batch);
            assert_eq!(batch.accepted(), events.len());
            assert_eq!(tracker.stats().bytes, tracker.recount_bytes());
        }
    }
}
