//! A stripe's pool of visitor-table buffers, so that growing tables
//! reuse the buffers other tables of the stripe grew out of instead of
//! freeing and allocating across threads.
//!
//! # Why
//!
//! A page's table grows in steps of 1.375x (2x while small; see
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
//!   (no lock or atomic of its own). A table that grows (a new visitor)
//!   gives its old buffer to the pool and takes its new one from the pool
//!   when the pool has one of that exact length; a page moving from its
//!   inline pairs to its first table takes that from the pool too (not
//!   with a TTL: a timed page's first table comes with its horizon).
//! - Timed tables (with a TTL) are pooled the same way, in classes of
//!   their own (a slot holds two values, and the buffer is a `ThinVec`
//!   with its 16-byte header): a tracker has a TTL or not, so a pool
//!   holds buffers of one kind at a time, and the other kind is refused
//!   (see [`Pooled`]). A growth that also completes the horizon (a table
//!   becoming large) or makes room in a complete one is not pooled. Sizes are exact: tables only take the capacities on the growth
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
//!   stripe, the pool's slots included (1,432 bytes, allocated when
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
//! - Not pooled: a page's arena of runs, a timed page's horizon, and
//!   tables freed by eviction, the sweep or a rebuild (those are rare next
//!   to growth on the record path).

use thin_vec::ThinVec;

use crate::set::visitor_table::{MIN_CAPACITY, TableWords, next_capacity};

/// Most buffers of one length a pool keeps.
pub(crate) const PER_SIZE: usize = 8;
/// Largest buffer a pool keeps, in bytes: a table of up to 316 slots
/// on the growth path (231 timed).
pub(crate) const LARGEST: usize = 4096;
/// Most bytes a pool holds, its buffers and its slots together; and a
/// pool keeps a buffer only while it then holds at most a byte per pair
/// its stripe holds (less than a tenth of what a pair costs in a table:
/// the crate docs' "Memory cost"), so that a small tracker does not carry
/// 32 KiB per stripe.
pub(crate) const POOL_BYTES: usize = 32 * 1024;

/// Words of a table of `capacity` slots with `aux` values each (as
/// `visitor_table::words_for`, with `aux` an argument).
const fn words_of(aux: usize, capacity: usize) -> usize {
    1 + capacity + (aux * capacity).div_ceil(2)
}

/// Size classes of the tables with `aux` values a slot: the buffer
/// lengths, in words, on the growth path (from the smallest up to
/// [`LARGEST`] bytes). Other lengths are not pooled.
const fn class_count(aux: usize) -> usize {
    let (mut capacity, mut count) = (MIN_CAPACITY, 0);
    while words_of(aux, capacity) * 8 <= LARGEST {
        capacity = next_capacity(capacity);
        count += 1;
    }
    count
}

/// Classes of plain tables (one value a slot): the most of either kind.
const CLASSES: usize = class_count(1);
const _: () = assert!(class_count(2) <= CLASSES);

const fn class_words(aux: usize) -> [usize; CLASSES] {
    let (mut words, mut capacity, mut class) = ([0; CLASSES], MIN_CAPACITY, 0);
    while class < class_count(aux) {
        words[class] = words_of(aux, capacity);
        capacity = next_capacity(capacity);
        class += 1;
    }
    words
}

/// No class.
const NONE: u8 = u8::MAX;

/// The class of each length in words up to [`LARGEST`] bytes.
const fn class_of_words(aux: usize) -> [u8; LARGEST / 8 + 1] {
    let (mut of, mut class) = ([NONE; LARGEST / 8 + 1], 0);
    let words = class_words(aux);
    while class < class_count(aux) {
        of[words[class]] = class as u8;
        class += 1;
    }
    of
}

/// A kind of table buffer a pool keeps: a plain table's boxed slice (one
/// value a slot) or a timed table's `ThinVec` (two values a slot). A
/// pool holds buffers of one kind at a time (a tracker with a TTL grows
/// only timed tables, one without only plain ones) and refuses the other.
pub(crate) trait Pooled: TableWords {
    /// The class of each length in words.
    const CLASS_OF: &[u8; LARGEST / 8 + 1];
    /// This kind's slots in `slots`, if they are of this kind.
    fn shelves(slots: &mut Slots) -> Option<&mut Shelves<Self>>;
    /// Empty slots of this kind.
    fn new_slots() -> Slots;

    /// The class of a buffer `words` long, if it has one.
    fn class_of(words: usize) -> Option<usize> {
        match Self::CLASS_OF.get(words) {
            Some(&class) if class != NONE => Some(class as usize),
            _ => None,
        }
    }
}

impl Pooled for Box<[u64]> {
    const CLASS_OF: &[u8; LARGEST / 8 + 1] = &class_of_words(1);

    fn shelves(slots: &mut Slots) -> Option<&mut Shelves<Self>> {
        match slots {
            Slots::Plain(shelves) => Some(shelves),
            Slots::Timed(_) => None,
        }
    }

    fn new_slots() -> Slots {
        Slots::Plain(Shelves::default())
    }
}

impl Pooled for ThinVec<u64> {
    const CLASS_OF: &[u8; LARGEST / 8 + 1] = &class_of_words(2);

    fn shelves(slots: &mut Slots) -> Option<&mut Shelves<Self>> {
        match slots {
            Slots::Timed(shelves) => Some(shelves),
            Slots::Plain(_) => None,
        }
    }

    fn new_slots() -> Slots {
        Slots::Timed(Shelves::default())
    }
}

/// The pooled buffers of one kind, [`PER_SIZE`] slots per class; the
/// first `counts` of a class's slots are full.
#[derive(Debug)]
pub(crate) struct Shelves<W> {
    counts: [u8; CLASSES],
    buffers: [[Option<W>; PER_SIZE]; CLASSES],
}

impl<W> Default for Shelves<W> {
    fn default() -> Self {
        Self {
            counts: [0; CLASSES],
            buffers: std::array::from_fn(|_| std::array::from_fn(|_| None)),
        }
    }
}

/// A pool's slots, of the kind of the first buffer it kept.
// The pool boxes the whole enum, once: boxing the larger variant as well
// would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Slots {
    Plain(Shelves<Box<[u64]>>),
    Timed(Shelves<ThinVec<u64>>),
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

    /// A buffer of kind `W` `words` long, if the pool has one; its
    /// contents are whatever its last table left.
    pub(crate) fn take<W: Pooled>(&mut self, words: usize) -> Option<W> {
        let class = W::class_of(words)?;
        let shelves = W::shelves(self.slots.as_mut()?)?;
        let count = &mut shelves.counts[class];
        *count = count.checked_sub(1)?;
        let buffer = shelves.buffers[class][usize::from(*count)].take()?;
        self.bytes -= (W::HEADER + words * 8) as u32;
        Some(buffer)
    }

    /// The class of a buffer of kind `W` of `bytes` and what keeping it
    /// would add to the budget (the slots' allocation when the pool has
    /// none yet), if the pool would keep it for a stripe holding `pairs`
    /// pairs.
    fn room_for<W: Pooled>(&mut self, bytes: usize, pairs: u64) -> Option<(usize, usize)> {
        let words = bytes.checked_sub(W::HEADER)?;
        let class = W::class_of(words / 8).filter(|_| words.is_multiple_of(8))?;
        let held = self.bytes();
        let (slots, count) = match &mut self.slots {
            None => (SLOTS_BYTES, 0),
            Some(slots) => (0, usize::from(W::shelves(slots)?.counts[class])),
        };
        let limit = usize::try_from(pairs).map_or(POOL_BYTES, |pairs| pairs.min(POOL_BYTES));
        (count < PER_SIZE && held + slots + bytes <= limit).then_some((class, slots))
    }

    /// The bytes keeping a buffer of kind `W` of `bytes` would add to the
    /// budget (the slots' allocation when the pool has none yet), or
    /// `None` if the pool of a stripe holding `pairs` pairs would not
    /// keep it (see [`POOL_BYTES`]).
    pub(crate) fn cost_to_keep<W: Pooled>(&mut self, bytes: usize, pairs: u64) -> Option<usize> {
        self.room_for::<W>(bytes, pairs).map(|(_, slots)| slots)
    }

    /// Keeps `buffer` for reuse if [`cost_to_keep`](Self::cost_to_keep)
    /// says so (its bytes reserved), else gives it back.
    pub(crate) fn keep<W: Pooled>(&mut self, buffer: W, pairs: u64) -> Result<(), W> {
        let bytes = buffer.heap_bytes();
        let Some((class, added)) = self.room_for::<W>(bytes, pairs) else {
            return Err(buffer);
        };
        let slots = self.slots.get_or_insert_with(|| Box::new(W::new_slots()));
        let Some(shelves) = W::shelves(slots) else {
            return Err(buffer);
        };
        let count = &mut shelves.counts[class];
        shelves.buffers[class][usize::from(*count)] = Some(buffer);
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
    use crate::set::visitor_table::{VisitorTable, words_for};

    /// Pairs enough for the pool's own bound.
    const ALL: u64 = u64::MAX;
    /// The classes of plain and timed tables, in words.
    const PLAIN: [usize; CLASSES] = class_words(1);
    const TIMED: [usize; CLASSES] = class_words(2);

    fn buffer(words: usize) -> Box<[u64]> {
        vec![7; words].into_boxed_slice()
    }

    fn timed(words: usize) -> ThinVec<u64> {
        let mut buffer = ThinVec::with_capacity(words);
        buffer.resize(words, 7);
        buffer
    }

    #[test]
    fn classes_are_the_growth_path_up_to_the_largest() {
        assert_eq!(PLAIN[0], words_for::<1>(MIN_CAPACITY));
        assert_eq!(TIMED[0], words_for::<2>(MIN_CAPACITY));
        assert!(PLAIN.is_sorted());
        let last = PLAIN[CLASSES - 1];
        assert!(last * 8 <= LARGEST);
        assert_eq!(CLASSES, 11);
        // The module docs quote it: the plain kind's slots and a tag.
        assert_eq!(SLOTS_BYTES, 1_432);
        assert_eq!(<Box<[u64]>>::class_of(last), Some(CLASSES - 1));
        assert_eq!(<Box<[u64]>>::class_of(last + 1), None);
        assert_eq!(<Box<[u64]>>::class_of(LARGEST / 8 + 1), None);
        // Timed: 3 to 231 slots; the next (316) is past the largest.
        let timed = class_count(2);
        assert_eq!(timed, 10);
        assert!(TIMED[..timed].is_sorted());
        assert_eq!(TIMED[timed - 1], words_for::<2>(231));
        assert_eq!(<ThinVec<u64>>::class_of(TIMED[timed - 1]), Some(timed - 1));
        assert_eq!(<ThinVec<u64>>::class_of(words_for::<2>(316)), None);
        assert_eq!(<ThinVec<u64>>::class_of(0), None);
    }

    #[test]
    fn keeps_within_its_bounds_and_counts_its_bytes() {
        let (a, b) = (PLAIN[5], PLAIN[6]);
        let mut pool = TablePool::default();
        assert_eq!(
            pool.cost_to_keep::<Box<[u64]>>(a * 8, ALL),
            Some(SLOTS_BYTES)
        );
        assert_eq!(
            pool.cost_to_keep::<Box<[u64]>>(a * 8 + 8, ALL),
            None,
            "not a class"
        );
        assert!(pool.keep(buffer(a), ALL).is_ok());
        assert_eq!(pool.bytes(), SLOTS_BYTES + a * 8);
        assert_eq!(pool.cost_to_keep::<Box<[u64]>>(a * 8, ALL), Some(0));
        for _ in 1..PER_SIZE {
            assert!(pool.keep(buffer(a), ALL).is_ok());
        }
        // One class full; another still fits; off the classes never does.
        assert!(pool.keep(buffer(a), ALL).is_err());
        assert!(pool.keep(buffer(b), ALL).is_ok());
        assert!(pool.keep(buffer(a + 1), ALL).is_err());
        assert_eq!(pool.bytes(), SLOTS_BYTES + PER_SIZE * a * 8 + b * 8);
        assert_eq!(pool.take::<Box<[u64]>>(b).map(|x| x.len()), Some(b));
        assert_eq!(pool.take::<Box<[u64]>>(b), None);
        assert_eq!(pool.take::<Box<[u64]>>(a + 1), None);
        assert_eq!(pool.bytes(), SLOTS_BYTES + PER_SIZE * a * 8);
        assert_eq!(pool.drain(), SLOTS_BYTES + PER_SIZE * a * 8);
        assert_eq!(pool.bytes(), 0);
        assert!(pool.slots.is_none());
    }

    #[test]
    fn total_bytes_stay_under_the_bound() {
        let mut pool = TablePool::default();
        for &words in PLAIN.iter().rev() {
            for _ in 0..PER_SIZE {
                let _ = pool.keep(buffer(words), ALL);
                assert!(pool.bytes() <= POOL_BYTES);
            }
        }
        assert!(pool.bytes() > POOL_BYTES - LARGEST);
        // Taken back out, every buffer has its length.
        for &words in &PLAIN {
            while let Some(b) = pool.take::<Box<[u64]>>(words) {
                assert_eq!(b.len(), words);
            }
        }
        assert_eq!(pool.bytes(), SLOTS_BYTES);
    }

    #[test]
    fn keeps_at_most_a_byte_per_pair() {
        let words = PLAIN[10];
        let mut pool = TablePool::default();
        let pairs = (SLOTS_BYTES + 2 * words * 8) as u64;
        assert!(pool.keep(buffer(words), pairs).is_ok());
        assert!(pool.keep(buffer(words), pairs).is_ok());
        assert!(pool.keep(buffer(words), pairs).is_err());
        assert_eq!(pool.bytes() as u64, pairs);
        assert_eq!(pool.cost_to_keep::<Box<[u64]>>(words * 8, 0), None);
    }

    /// Timed buffers: the table's own bytes (header included) in and out,
    /// each back at its length and capacity, and a pool of one kind
    /// refuses the other.
    #[test]
    fn timed_buffers_come_back_at_their_size() {
        let mut pool = TablePool::default();
        let table = VisitorTable::<2, ThinVec<u64>>::with_capacity(MIN_CAPACITY);
        let bytes = VisitorTable::<2, ThinVec<u64>>::bytes_for(MIN_CAPACITY);
        let words = TIMED[0];
        assert_eq!(timed(words).heap_bytes(), bytes);
        assert_eq!(table.heap_bytes(), bytes);
        assert_eq!(
            pool.cost_to_keep::<ThinVec<u64>>(bytes, ALL),
            Some(SLOTS_BYTES)
        );
        assert_eq!(
            pool.cost_to_keep::<ThinVec<u64>>(bytes - 16, ALL),
            None,
            "no header"
        );
        for &words in &TIMED[..class_count(2)] {
            assert!(pool.keep(timed(words), ALL).is_ok());
        }
        assert!(pool.keep(timed(TIMED[0] + 1), ALL).is_err(), "not a class");
        // Timed slots now: a plain buffer is refused, none is handed out.
        assert!(pool.keep(buffer(PLAIN[0]), ALL).is_err());
        assert_eq!(pool.cost_to_keep::<Box<[u64]>>(PLAIN[0] * 8, ALL), None);
        assert!(pool.take::<Box<[u64]>>(PLAIN[0]).is_none());
        let held: usize = TIMED[..class_count(2)].iter().map(|w| 16 + w * 8).sum();
        assert_eq!(pool.bytes(), SLOTS_BYTES + held);
        for &words in &TIMED[..class_count(2)] {
            let b = pool.take::<ThinVec<u64>>(words).expect("kept");
            assert_eq!((b.len(), b.capacity()), (words, words));
            assert!(pool.take::<ThinVec<u64>>(words).is_none());
        }
        assert_eq!(pool.bytes(), SLOTS_BYTES);
        assert_eq!(pool.drain(), SLOTS_BYTES);
        // Drained, it takes either kind again.
        assert!(pool.keep(buffer(PLAIN[0]), ALL).is_ok());
    }
}
