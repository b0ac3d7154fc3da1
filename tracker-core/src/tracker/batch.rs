//! [`Tracker::record_batch`]: many events, each stripe's write lock taken
//! once per batch.

use super::Tracker;
use crate::error::TrackerError;
use crate::report::Recorded;
use crate::sync;
use crate::tracker::stripe::{SWEEP_BUCKETS, StripeRecord};

/// The reusable state of [`Tracker::record_batch`]: each event's outcome
/// and the scratch space of the grouping. Keep one per sender and pass it
/// to every call: a steady stream of batches allocates nothing per event.
#[derive(Debug, Default)]
pub struct RecordBatch {
    outcomes: Vec<Result<Recorded, TrackerError>>,
    /// The events that passed the visitor checks, hashed, to be sorted by
    /// stripe.
    pending: Vec<Pending>,
    /// Events the per-stripe pass could not finish (a new page, a URL not
    /// in canonical form, no room), with their visitor hashes: recorded
    /// one by one afterwards.
    slow: Vec<(u32, u64)>,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    stripe: u32,
    index: u32,
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
        batch.outcomes.clear();
        batch.pending.clear();
        batch.slow.clear();
        if self.ttl.is_some() || self.budget.limit().is_some() || events.len() > u32::MAX as usize {
            batch.outcomes.extend(
                events
                    .iter()
                    .map(|&(visitor, url)| self.record(visitor, url)),
            );
            return;
        }
        let tick = self.config.clock.now().as_tick();
        for (index, &(visitor, url)) in events.iter().enumerate() {
            match self.check_visitor(visitor.as_bytes()) {
                Err(e) => batch.outcomes.push(Err(e)),
                Ok(()) => {
                    let url_hash = self.url_hasher.hash_one(url);
                    batch.pending.push(Pending {
                        stripe: self.stripe_index(url_hash) as u32,
                        index: index as u32,
                        // 0 marks empty slots (see `record_hashed`).
                        visitor: self.visitor_hasher.hash(visitor.as_bytes()).max(1),
                        url_hash,
                    });
                    // Overwritten below.
                    batch.outcomes.push(Ok(Recorded::Duplicate));
                }
            }
        }
        // By stripe, and in the batch's order within one.
        batch.pending.sort_unstable_by_key(|p| (p.stripe, p.index));
        let mut sweep_due = false;
        for run in batch.pending.chunk_by(|a, b| a.stripe == b.stripe) {
            let mut stripe = sync::write(&self.stripes[run[0].stripe as usize]);
            for p in run {
                let url = events[p.index as usize].1;
                match stripe.record_existing(url, p.url_hash, p.visitor, tick, None, &self.budget) {
                    StripeRecord::Done(recorded) => {
                        batch.outcomes[p.index as usize] = Ok(recorded);
                    }
                    StripeRecord::DoneSweepDue(recorded) => {
                        batch.outcomes[p.index as usize] = Ok(recorded);
                        sweep_due = true;
                    }
                    StripeRecord::NoPage
                    | StripeRecord::NeedRoom(_)
                    | StripeRecord::TableFull(_) => batch.slow.push((p.index, p.visitor)),
                }
            }
        }
        // In the batch's order, so that events of a page new to the
        // tracker count as they would one by one.
        batch.slow.sort_unstable();
        for &(index, visitor) in &batch.slow {
            let i = index as usize;
            batch.outcomes[i] = self
                .record_hashed(visitor, events[i].1, None)
                .map(|(recorded, _)| recorded);
        }
        if sweep_due {
            self.sweep(SWEEP_BUCKETS);
        }
    }
}
