//! A stripe's pool of visitor-table buffers, so that growing tables
//! reuse the buffers other tables of the stripe grew out of instead of
//! freeing and allocating across threads.
//!
//! # Why
//!
//! A page's table grows in steps of 1.25x (see `visitor_table.rs`): each
//! step allocates the next size and frees the old buffer. On a tracker
//! shared by threads, the thread that frees a table is whichever records
//! the visitor that outgrows it, usually not the one that allocated it.
//! glibc's malloc gives such a block back to the allocating thread's
//! arena under that arena's mutex once the freeing thread's own cache of
//! that size is full, and grows and trims the arenas' heaps (`mprotect`)
//! under it: the scaling bench's two threads blocked on those mutexes 13
//! times per 1,000 events (`strace -f -c`: 18k `futex` and 19k `mprotect`
//! calls in one run), where its stripe locks made them wait 0.03% of the
//! time (issue 18; `docs/BENCHMARKS.md`, "Thread scaling"). The library
//! cannot choose its users' allocator, so it recycles its own buffers.
//!
//! # Design
//!
//! - Each stripe owns one pool, used only under the stripe's write lock
//!   (no lock or atomic of its own). A table that grows (a new visitor,
//!   no TTL) gives its old buffer to the pool and takes its new one from
//!   the pool when the pool has one of that exact length; a page moving
//!   from its inline pairs to its first table takes that from the pool
//!   too. Sizes are exact: tables only take the capacities on the growth
//!   path, so a size class is a length, and a recycled table is the same
//!   as a new one (its buffer zeroed), byte for byte in the accounting.
//! - Under a steady stream the pages of a stripe are at many sizes at
//!   once, so some page leaves a size about as often as another reaches
//!   it: a simulation of the scaling bench's uniform workload (100k
//!   pages, 2M events, 8 stripes) found the growths taking 73% of their
//!   buffers from the pool (frees to the allocator down from 1.02M to
//!   0.21M), 77% under Zipf (0.29M down to 16k).
//! - **Bounded**: at most [`PER_SIZE`] buffers of one length, buffers of
//!   at most [`LARGEST`] bytes (bigger tables grow rarely and cost far
//!   more to rehash than to allocate), and at most [`POOL_BYTES`] bytes
//!   per stripe, the pool's list included: `32 KiB · stripes` for a
//!   tracker (256 KiB at the default 8 stripes of 2 cores).
//! - **Accounted**: pooled buffers stay in the memory budget (they were
//!   accounted as tables, and a buffer moving between a table and the
//!   pool changes nothing); a growth reserves only what it allocates
//!   afresh. When a reservation fails, the stripe drains its pool first
//!   and books the growth as without one, and making room under the
//!   budget drains every stripe's pool before it sketches or evicts a
//!   page, whatever the policy. So `stats().bytes` counts the pool, and
//!   the budget is never exceeded because of it.
//! - Not pooled: timed tables (their handle is a `ThinVec`), a page's
//!   arena of runs, and tables freed by eviction, the sweep or a rebuild
//!   (those are rare next to growth on the record path).

use thin_vec::ThinVec;

/// Most buffers of one length a pool keeps.
pub(crate) const PER_SIZE: usize = 8;
/// Most buffers a pool keeps in all (its list's fixed capacity).
pub(crate) const BUFFERS: usize = 64;
/// Largest buffer a pool keeps, in bytes: a table of up to 340 slots.
pub(crate) const LARGEST: usize = 4096;
/// Most bytes a pool holds, its buffers and its list together.
pub(crate) const POOL_BYTES: usize = 32 * 1024;
/// Heap bytes of a pool's list: its length and capacity, then the
/// buffers' handles.
const LIST_BYTES: usize =
    2 * std::mem::size_of::<usize>() + BUFFERS * std::mem::size_of::<Box<[u64]>>();

/// Table buffers kept for reuse; see the module docs. 16 bytes, so that
/// a stripe keeps to its four cache lines.
#[derive(Debug, Default)]
pub(crate) struct TablePool {
    /// The buffers, sorted by length. No allocation until the first is
    /// kept and after a drain; then room for exactly [`BUFFERS`].
    buffers: ThinVec<Box<[u64]>>,
    /// Heap bytes held: the buffers and the list's allocation (at most
    /// [`POOL_BYTES`]).
    bytes: u32,
}

impl TablePool {
    /// Heap bytes held (accounted in the budget).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes as usize
    }

    /// The range of buffers `words` long.
    fn of_len(&self, words: usize) -> std::ops::Range<usize> {
        let start = self.buffers.partition_point(|b| b.len() < words);
        let end = self.buffers.partition_point(|b| b.len() <= words);
        start..end
    }

    /// A buffer `words` long, if the pool has one; its contents are
    /// whatever its last table left.
    pub(crate) fn take(&mut self, words: usize) -> Option<Box<[u64]>> {
        let at = self.of_len(words);
        if at.is_empty() {
            return None;
        }
        let buffer = self.buffers.remove(at.start);
        self.bytes -= (words * 8) as u32;
        Some(buffer)
    }

    /// The bytes keeping a buffer of `bytes` would add to the budget (the
    /// list's allocation when the pool has none yet), or `None` if the
    /// pool would not keep it.
    pub(crate) fn cost_to_keep(&self, bytes: usize) -> Option<usize> {
        let list = if self.buffers.capacity() == 0 {
            LIST_BYTES
        } else {
            0
        };
        let fits = bytes <= LARGEST
            && self.buffers.len() < BUFFERS
            && self.of_len(bytes / 8).len() < PER_SIZE
            && self.bytes() + list + bytes <= POOL_BYTES;
        fits.then_some(list)
    }

    /// Keeps `buffer` for reuse if [`cost_to_keep`](Self::cost_to_keep)
    /// says so (its bytes reserved), else gives it back.
    pub(crate) fn keep(&mut self, buffer: Box<[u64]>) -> Result<(), Box<[u64]>> {
        let bytes = buffer.len() * 8;
        let Some(list) = self.cost_to_keep(bytes) else {
            return Err(buffer);
        };
        if list > 0 {
            self.buffers.reserve_exact(BUFFERS);
        }
        let at = self.buffers.partition_point(|b| b.len() < buffer.len());
        self.buffers.insert(at, buffer);
        // At most POOL_BYTES: fits in 32 bits.
        self.bytes += (list + bytes) as u32;
        Ok(())
    }

    /// Frees every buffer and the list; returns the bytes freed, for the
    /// caller to release from the budget.
    pub(crate) fn drain(&mut self) -> usize {
        self.buffers = ThinVec::new();
        std::mem::take(&mut self.bytes) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(words: usize) -> Box<[u64]> {
        vec![7; words].into_boxed_slice()
    }

    #[test]
    fn keeps_within_its_bounds_and_counts_its_bytes() {
        let mut pool = TablePool::default();
        assert_eq!(pool.cost_to_keep(80), Some(LIST_BYTES));
        assert!(pool.keep(buffer(10)).is_ok());
        assert_eq!(pool.bytes(), LIST_BYTES + 80);
        assert_eq!(pool.cost_to_keep(80), Some(0));
        for _ in 1..PER_SIZE {
            assert!(pool.keep(buffer(10)).is_ok());
        }
        // One length full; another still fits; too large never does.
        assert!(pool.keep(buffer(10)).is_err());
        assert!(pool.keep(buffer(12)).is_ok());
        assert!(pool.keep(buffer(LARGEST / 8 + 1)).is_err());
        assert_eq!(pool.bytes(), LIST_BYTES + PER_SIZE * 80 + 96);
        assert_eq!(
            (pool.of_len(12).len(), pool.of_len(10).len()),
            (1, PER_SIZE)
        );
        assert!(pool.of_len(11).is_empty());
        assert_eq!(pool.take(12).map(|b| b.len()), Some(12));
        assert_eq!(pool.take(12), None);
        assert_eq!(pool.bytes(), LIST_BYTES + PER_SIZE * 80);
        assert_eq!(pool.drain(), LIST_BYTES + PER_SIZE * 80);
        assert_eq!((pool.bytes(), pool.buffers.capacity()), (0, 0));
    }

    #[test]
    fn total_bytes_stay_under_the_bound() {
        let mut pool = TablePool::default();
        for words in (1..=LARGEST / 8).rev() {
            for _ in 0..PER_SIZE {
                let _ = pool.keep(buffer(words));
                assert!(pool.bytes() <= POOL_BYTES);
                assert!(pool.buffers.len() <= BUFFERS);
            }
        }
        assert!(pool.bytes() > POOL_BYTES - LARGEST);
        assert!(pool.buffers.is_sorted_by_key(|b| b.len()));
    }
}
