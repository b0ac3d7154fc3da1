//! The byte budget: one shared count of accounted bytes, grown only by
//! reservations that fit under the limit.
//!
//! Every allocation the tracker makes is reserved here *before* it happens,
//! by its exact size where that is known (a visitor table's next size, a
//! URL, a sketch) or by an upper bound that is corrected right after (a
//! page table's growth, whose exact size is hashbrown's business). A
//! reservation that does not fit fails and allocates nothing, so the
//! accounted total never exceeds the limit: the slack is zero for the
//! accounted bytes. What the allocator itself adds per allocation is not
//! accounted (see the crate docs).
//!
//! The count is one atomic, touched only when memory grows or shrinks,
//! never for a visitor a page already has. It has its cache lines to
//! itself: unpadded it shared them with the tracker's fields that every
//! record reads (the stripes, the hashers, the TTL), so each growth on one
//! core made the other core's next record miss them (issue 18, the scaling
//! bench).

use crate::sync::{AtomicU64, CachePadded, Ordering};

/// What the tracker does when recording would take it over its memory
/// budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryPolicy {
    /// Turn the largest exact visitor sets into sketches (their pages keep
    /// counting, as estimates with a stated error); if that does not free
    /// enough, evict the least recently recorded pages.
    #[default]
    Sketch,
    /// Evict the least recently recorded pages (sampled, as Redis
    /// approximates LRU); every page kept stays exact.
    Evict,
    /// Refuse the record with [`TrackerError::MemoryFull`]; every count
    /// stays exact.
    ///
    /// [`TrackerError::MemoryFull`]: crate::TrackerError::MemoryFull
    Reject,
}

#[derive(Debug)]
pub(crate) struct MemoryBudget {
    /// The most bytes that may be accounted; `u64::MAX` when unlimited.
    limit: u64,
    held: CachePadded<AtomicU64>,
    /// Whether the policy lets bookings make room by evicting pages.
    may_evict: bool,
}

impl MemoryBudget {
    pub(crate) fn new(limit: Option<u64>, fixed: u64) -> Self {
        Self {
            limit: limit.unwrap_or(u64::MAX),
            held: CachePadded(AtomicU64::new(fixed)),
            may_evict: false,
        }
    }

    /// The same budget, whose bookings may evict pages to stay under the
    /// limit when `may` (every policy but `Reject`).
    pub(crate) fn evicting(mut self, may: bool) -> Self {
        self.may_evict = may;
        self
    }

    pub(crate) fn may_evict(&self) -> bool {
        self.may_evict
    }

    /// Accounts `bytes` more if they fit under the limit; returns whether
    /// they did. Nothing is accounted when they do not.
    #[inline]
    pub(crate) fn try_reserve(&self, bytes: usize) -> bool {
        let bytes = bytes as u64;
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    /// Accounts `bytes` more even past the limit: only for an allocation
    /// that already happened and outgrew its reservation, which the
    /// reservation bounds are built to prevent.
    pub(crate) fn force_reserve(&self, bytes: usize) {
        self.held.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Gives back `bytes` accounted earlier.
    #[inline]
    pub(crate) fn release(&self, bytes: usize) {
        self.held.fetch_sub(bytes as u64, Ordering::Relaxed);
    }

    /// Bytes that can still be reserved.
    pub(crate) fn free(&self) -> u64 {
        self.limit.saturating_sub(self.held())
    }

    pub(crate) fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    pub(crate) fn limit(&self) -> Option<u64> {
        (self.limit != u64::MAX).then_some(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_never_pass_the_limit() {
        let budget = MemoryBudget::new(Some(100), 10);
        assert!(budget.try_reserve(90));
        assert!(!budget.try_reserve(1));
        assert_eq!(budget.held(), 100);
        budget.release(50);
        assert!(!budget.try_reserve(51));
        assert!(budget.try_reserve(50));
        assert_eq!(budget.held(), 100);
        let unlimited = MemoryBudget::new(None, 0);
        assert!(unlimited.try_reserve(usize::MAX));
        assert!(!unlimited.try_reserve(usize::MAX));
        assert_eq!(unlimited.limit(), None);
    }
}
