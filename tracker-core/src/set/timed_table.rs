//! A timed page's visitors beyond the inline ones: a table of visitor
//! hashes with their latest ticks, and the [`Horizon`] that counts the live
//! ones without a scan.

use crate::set::horizon::Horizon;
use crate::set::visitor_table::{Insert, MIN_CAPACITY, TickTable};
use crate::time::ttl::Expiry;

/// Visitor hashes with the tick of each one's latest visit.
#[derive(Debug, Clone)]
pub(crate) struct TimedTable {
    table: TickTable,
    horizon: Horizon,
}

/// Heap bytes of a new timed table before its horizon: the boxed record
/// and the smallest table.
pub(crate) const MIN_TIMED_BYTES: usize =
    std::mem::size_of::<TimedTable>() + TickTable::bytes_for(MIN_CAPACITY);

impl TimedTable {
    /// A table of `pairs` (hash, tick), all live under `expiry`.
    pub(crate) fn from_pairs(pairs: &[(u64, u32)], expiry: Expiry) -> Self {
        let mut table = TickTable::with_capacity(MIN_CAPACITY);
        table.reserve(pairs.len());
        for &(hash, tick) in pairs {
            table.insert_growing(hash, tick);
        }
        let horizon = Horizon::cut(table.ticks(), expiry.oldest_live());
        Self { table, horizon }
    }

    /// Pairs stored, live or not yet dropped.
    pub(crate) fn stored(&self) -> usize {
        self.table.len()
    }

    /// Live pairs under `expiry`: O(log n) while the horizon covers the
    /// oldest live tick, a scan of the ticks once it does not (until the
    /// next write or sweep rebuilds the page).
    pub(crate) fn live(&self, expiry: Expiry) -> usize {
        let oldest = expiry.oldest_live();
        let expired = if self.horizon.covers(oldest) {
            self.horizon.expired_at(oldest)
        } else {
            self.table.count_older_than(oldest)
        };
        self.table.len() - expired
    }

    /// Whether the next [`expire`](Self::expire) must rebuild the page.
    pub(crate) fn needs_rebuild(&self, expiry: Expiry) -> bool {
        !self.horizon.covers(expiry.oldest_live())
    }

    /// Pairs expired and not yet dropped.
    pub(crate) fn expired(&self, expiry: Expiry) -> usize {
        self.table.len() - self.live(expiry)
    }

    /// Brings the page up to `expiry`: retires expired horizon entries, or
    /// once the horizon is exhausted drops the expired pairs and cuts a new
    /// one. Returns the pairs dropped.
    pub(crate) fn expire(&mut self, expiry: Expiry) -> usize {
        let oldest = expiry.oldest_live();
        if self.horizon.covers(oldest) {
            self.horizon.advance(oldest);
            0
        } else {
            self.rebuild(expiry)
        }
    }

    /// Drops every expired pair and cuts a new horizon. Returns the pairs
    /// dropped.
    pub(crate) fn rebuild(&mut self, expiry: Expiry) -> usize {
        let oldest = expiry.oldest_live();
        let dropped = self.table.drop_older_than(oldest);
        self.horizon = Horizon::cut(self.table.ticks(), oldest);
        dropped
    }

    /// Adds `hash` at `tick` (the set must be up to `expiry`'s time, see
    /// [`expire`](Self::expire)); see [`Insert`].
    #[inline]
    pub(crate) fn insert(&mut self, hash: u64, tick: u32) -> Insert {
        let outcome = self.table.insert(hash, tick);
        match outcome {
            Insert::Refreshed { was } if tick > was => {
                self.horizon.forget(was);
                self.horizon.note(tick);
            }
            Insert::Added => {
                self.horizon.note(tick);
            }
            _ => {}
        }
        outcome
    }

    /// Sizes the table for `len` pairs (see `VisitorTable::reserve`).
    pub(crate) fn reserve(&mut self, len: usize) {
        self.table.reserve(len);
    }

    /// Grows the table and adds `hash`, which must be absent.
    pub(crate) fn grow_and_insert(&mut self, hash: u64, tick: u32) {
        self.table.grow_and_insert(hash, tick);
        self.horizon.note(tick);
    }

    /// Heap bytes: the boxed record, the table and the horizon's list.
    pub(crate) fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.table.heap_bytes() + self.horizon.heap_bytes()
    }

    /// The pairs with their ticks, in table order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.table.entries()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Against a map of each hash's latest tick, with time moving on:
        /// live counts, drops and the stored set agree.
        #[test]
        fn behaves_like_a_map_of_latest_ticks(
            ops in proptest::collection::vec((1u64..40, 0u32..6, 0u32..4), 1..300),
            ttl in 1u32..20,
        ) {
            let mut now = 1_000;
            let expiry = |now| Expiry { now, ttl };
            let mut model: HashMap<u64, u32> = HashMap::new();
            let mut table = TimedTable::from_pairs(&[], expiry(now));
            for (hash, back, step) in ops {
                now += step;
                let e = expiry(now);
                let tick = now.saturating_sub(back).max(e.oldest_live());
                let dropped = table.expire(e);
                let before = model.len();
                if dropped > 0 {
                    model.retain(|_, &mut t| e.is_live(t));
                    prop_assert_eq!(before - model.len(), dropped);
                }
                let outcome = table.insert(hash, tick);
                if matches!(outcome, Insert::Grow(_)) {
                    table.grow_and_insert(hash, tick);
                }
                let latest = model.entry(hash).or_insert(tick);
                *latest = (*latest).max(tick);
                let live = model.values().filter(|&&t| e.is_live(t)).count();
                prop_assert_eq!(table.live(e), live);
                prop_assert_eq!(table.stored(), model.len());
            }
            let later = expiry(now + ttl);
            prop_assert_eq!(table.live(later), 0);
            prop_assert_eq!(table.rebuild(later), model.len());
            prop_assert_eq!(table.stored(), 0);
        }
    }
}
