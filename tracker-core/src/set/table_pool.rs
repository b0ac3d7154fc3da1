//! A stripe's pool of visitor-table buffers, so that growing tables
//! reuse the buffers other tables of the stripe grew out of instead of
//! freeing and allocating across threads.
//!
//! # Why
//!
//! A page's table grows in steps of 1.25x (2x while small; see
//! `visitor_table.rs`): each
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
//!   more to rehash than to allocate), at most a byte per pair the stripe
//!   holds when a buffer is kept (so a small tracker pools little: the
//!   memory bench's 100k pairs over 1k pages took 16% more bytes per
//!   pair with 32 KiB per stripe), and at most [`POOL_BYTES`] bytes per
//!   stripe, the pool's slots included (2,968 bytes, allocated when
//!   it keeps its first buffer): `32 KiB · stripes` for a tracker (256
//!   KiB at the default 8 stripes of 2 cores).
//! - **Cheap**: a class is found from a buffer's length through a table
//!   built at compile time, and each class is a stack of [`PER_SIZE`]
//!   slots, so taking and keeping cost a few instructions: a first
//!   version (a list sorted by length, binary-searched) cost more
//!   instructions than the malloc and free it saved (callgrind, 200k
//!   uniform events on one thread: +5%).
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

use crate::set::visitor_table::{MIN_CAPACITY, next_capacity, words_for};

/// Most buffers of one length a pool keeps.
pub(crate) const PER_SIZE: usize = 8;
/// Largest buffer a pool keeps, in bytes: a table of up to 282 slots.
pub(crate) const LARGEST: usize = 4096;
/// Most bytes a pool holds, its buffers and its slots together; and a
/// pool keeps a buffer only while it then holds at most a byte per pair
/// its stripe holds (less than a tenth of the tables' 12.8-16 bytes per
/// pair), so that a small tracker does not carry 32 KiB per stripe.
pub(crate) const POOL_BYTES: usize = 32 * 1024;

/// Size classes: the buffer lengths, in words, of the tables on the
/// growth path (one value per slot), from the smallest up to [`LARGEST`]
/// bytes. Other lengths are not pooled.
const CLASS_WORDS: [usize; CLASSES] = class_words();
const CLASSES: usize = class_count();
/// No class.
const NONE: u8 = u8::MAX;
/// The class of each length in words up to [`LARGEST`] bytes.
const CLASS_OF: [u8; LARGEST / 8 + 1] = class_of_words();

const fn class_count() -> usize {
    let (mut capacity, mut count) = (MIN_CAPACITY, 0);
    while words_for::<1>(capacity) * 8 <= LARGEST {
        capacity = next_capacity(capacity);
        count += 1;
    }
    count
}

const fn class_words() -> [usize; CLASSES] {
    let (mut words, mut capacity, mut class) = ([0; CLASSES], MIN_CAPACITY, 0);
    while class < CLASSES {
        words[class] = words_for::<1>(capacity);
        capacity = next_capacity(capacity);
        class += 1;
    }
    words
}

const fn class_of_words() -> [u8; LARGEST / 8 + 1] {
    let (mut of, mut class) = ([NONE; LARGEST / 8 + 1], 0);
    while class < CLASSES {
        of[CLASS_WORDS[class]] = class as u8;
        class += 1;
    }
    of
}

/// The class of a buffer `words` long, if it has one.
fn class_of(words: usize) -> Option<usize> {
    match CLASS_OF.get(words) {
        Some(&class) if class != NONE => Some(class as usize),
        _ => None,
    }
}

/// The pooled buffers, [`PER_SIZE`] slots per class; the first `counts`
/// of a class's slots are full.
#[derive(Debug)]
struct Slots {
    counts: [u8; CLASSES],
    buffers: [[Option<Box<[u64]>>; PER_SIZE]; CLASSES],
}

/// Heap bytes of a pool's slots.
const SLOTS_BYTES: usize = std::mem::size_of::<Slots>();

/// Table buffers kept for reuse; see the module docs. 16 bytes, so that
/// a stripe keeps to its four cache lines; every operation is O(1).
#[derive(Debug, Default)]
pub(crate) struct TablePool {
    /// No allocation until the first buffer is kept, and after a drain.
    slots: Option<Box<Slots>>,
    /// Heap bytes held: the buffers and the slots (at most
    /// [`POOL_BYTES`], so 32 bits hold it).
    bytes: u32,
}

impl TablePool {
    /// Heap bytes held (accounted in the budget).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes as usize
    }

    /// A buffer `words` long, if the pool has one; its contents are
    /// whatever its last table left.
    pub(crate) fn take(&mut self, words: usize) -> Option<Box<[u64]>> {
        let class = class_of(words)?;
        let slots = self.slots.as_mut()?;
        let count = &mut slots.counts[class];
        *count = count.checked_sub(1)?;
        let buffer = slots.buffers[class][usize::from(*count)].take()?;
        self.bytes -= (words * 8) as u32;
        Some(buffer)
    }

    /// The class of a buffer of `bytes` and what keeping it would add to
    /// the budget (the slots' allocation when the pool has none yet), if
    /// the pool would keep it for a stripe holding `pairs` pairs.
    fn room_for(&self, bytes: usize, pairs: u64) -> Option<(usize, usize)> {
        let class = class_of(bytes / 8).filter(|_| bytes.is_multiple_of(8))?;
        let (slots, count) = match &self.slots {
            None => (SLOTS_BYTES, 0),
            Some(slots) => (0, usize::from(slots.counts[class])),
        };
        let limit = usize::try_from(pairs).map_or(POOL_BYTES, |pairs| pairs.min(POOL_BYTES));
        (count < PER_SIZE && self.bytes() + slots + bytes <= limit).then_some((class, slots))
    }

    /// The bytes keeping a buffer of `bytes` would add to the budget (the
    /// slots' allocation when the pool has none yet), or `None` if the
    /// pool of a stripe holding `pairs` pairs would not keep it (see
    /// [`POOL_BYTES`]).
    pub(crate) fn cost_to_keep(&self, bytes: usize, pairs: u64) -> Option<usize> {
        self.room_for(bytes, pairs).map(|(_, slots)| slots)
    }

    /// Keeps `buffer` for reuse if [`cost_to_keep`](Self::cost_to_keep)
    /// says so (its bytes reserved), else gives it back.
    pub(crate) fn keep(&mut self, buffer: Box<[u64]>, pairs: u64) -> Result<(), Box<[u64]>> {
        let bytes = buffer.len() * 8;
        let Some((class, added)) = self.room_for(bytes, pairs) else {
            return Err(buffer);
        };
        let slots = self.slots.get_or_insert_with(|| {
            Box::new(Slots {
                counts: [0; CLASSES],
                buffers: [const { [const { None }; PER_SIZE] }; CLASSES],
            })
        });
        let count = &mut slots.counts[class];
        slots.buffers[class][usize::from(*count)] = Some(buffer);
        *count += 1;
        self.bytes += (added + bytes) as u32;
        Ok(())
    }

    /// Frees every buffer and the slots; returns the bytes freed, for the
    /// caller to release from the budget.
    pub(crate) fn drain(&mut self) -> usize {
        self.slots = None;
        std::mem::take(&mut self.bytes) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs enough for the pool's own bound.
    const ALL: u64 = u64::MAX;

    fn buffer(words: usize) -> Box<[u64]> {
        vec![7; words].into_boxed_slice()
    }

    #[test]
    fn classes_are_the_growth_path_up_to_the_largest() {
        assert_eq!(CLASS_WORDS[0], words_for::<1>(MIN_CAPACITY));
        assert!(CLASS_WORDS.is_sorted());
        let last = CLASS_WORDS[CLASSES - 1];
        assert!(last * 8 <= LARGEST);
        assert_eq!(CLASSES, 13);
        assert_eq!(class_of(last), Some(CLASSES - 1));
        assert_eq!(class_of(last + 1), None);
        assert_eq!(class_of(LARGEST / 8 + 1), None);
    }

    #[test]
    fn keeps_within_its_bounds_and_counts_its_bytes() {
        let (a, b) = (CLASS_WORDS[5], CLASS_WORDS[6]);
        let mut pool = TablePool::default();
        assert_eq!(pool.cost_to_keep(a * 8, ALL), Some(SLOTS_BYTES));
        assert_eq!(pool.cost_to_keep(a * 8 + 8, ALL), None, "not a class");
        assert!(pool.keep(buffer(a), ALL).is_ok());
        assert_eq!(pool.bytes(), SLOTS_BYTES + a * 8);
        assert_eq!(pool.cost_to_keep(a * 8, ALL), Some(0));
        for _ in 1..PER_SIZE {
            assert!(pool.keep(buffer(a), ALL).is_ok());
        }
        // One class full; another still fits; off the classes never does.
        assert!(pool.keep(buffer(a), ALL).is_err());
        assert!(pool.keep(buffer(b), ALL).is_ok());
        assert!(pool.keep(buffer(a + 1), ALL).is_err());
        assert_eq!(pool.bytes(), SLOTS_BYTES + PER_SIZE * a * 8 + b * 8);
        assert_eq!(pool.take(b).map(|x| x.len()), Some(b));
        assert_eq!(pool.take(b), None);
        assert_eq!(pool.take(a + 1), None);
        assert_eq!(pool.bytes(), SLOTS_BYTES + PER_SIZE * a * 8);
        assert_eq!(pool.drain(), SLOTS_BYTES + PER_SIZE * a * 8);
        assert_eq!(pool.bytes(), 0);
        assert!(pool.slots.is_none());
    }

    #[test]
    fn total_bytes_stay_under_the_bound() {
        let mut pool = TablePool::default();
        for &words in CLASS_WORDS.iter().rev() {
            for _ in 0..PER_SIZE {
                let _ = pool.keep(buffer(words), ALL);
                assert!(pool.bytes() <= POOL_BYTES);
            }
        }
        assert!(pool.bytes() > POOL_BYTES - LARGEST);
        // Taken back out, every buffer has its length.
        for &words in &CLASS_WORDS {
            while let Some(b) = pool.take(words) {
                assert_eq!(b.len(), words);
            }
        }
        assert_eq!(pool.bytes(), SLOTS_BYTES);
    }

    #[test]
    fn keeps_at_most_a_byte_per_pair() {
        let words = CLASS_WORDS[10];
        let mut pool = TablePool::default();
        let pairs = (SLOTS_BYTES + 2 * words * 8) as u64;
        assert!(pool.keep(buffer(words), pairs).is_ok());
        assert!(pool.keep(buffer(words), pairs).is_ok());
        assert!(pool.keep(buffer(words), pairs).is_err());
        assert_eq!(pool.bytes() as u64, pairs);
        assert_eq!(pool.cost_to_keep(words * 8, 0), None);
    }
}
