//! An open-addressing set of visitor hashes: Robin Hood linear probing over
//! a flat `[u64]`, with no per-entry metadata.
//!
//! The keys are already uniformly mixed 64-bit hashes, so the table uses
//! them as they are (identity hashing) and maps a key to its home slot with
//! a multiply-shift ("fast range": `(key * capacity) >> 64`) instead of a
//! mask. That lets the capacity be any number, so the table can grow by
//! x1.375 instead of x2 (from 48 slots on; see `next_capacity`), which
//! keeps the average load, and so the memory per visitor, high: between
//! `8 / MAX_LOAD` and `8 * GROWTH / MAX_LOAD` bytes a key (8.5 to 11.7;
//! with one 4-byte value a slot, 12.8 to 17.6), plus one 8-byte count per
//! table.
//!
//! Robin Hood ordering (a key never sits further from its home than the key
//! it passed) lets a lookup for an absent key stop early, so inserting a new
//! visitor costs about as much as finding a present one even at 7/8 load.
//! Keys of one home are kept in key order too, so every cluster is in key
//! order (homes are monotone in the key): growth then moves the keys in
//! one ordered pass with no probing, and a table's layout depends only on
//! its keys.
//! A resident's distance from home is recomputed from its value, so no
//! distance bytes are stored. Slot value 0 means empty; visitor hashes are
//! never 0 (see `visitor_hash`).

use std::ops::DerefMut;

use thin_vec::ThinVec;
use zerocopy::IntoBytes;

/// The most table slots one sweep step visits (a few hundred
/// microseconds of work): a table up to this size is rebuilt whole when
/// swept, a larger one in steps of at most this many slots, resumed where
/// the last step stopped. Unit tests use a small one, so that their
/// pages take the large tables' path too.
#[cfg(any(not(test), feature = "shuttle"))]
pub(crate) const STEP_SLOTS: usize = 8_192;
#[cfg(all(test, not(feature = "shuttle")))]
pub(crate) const STEP_SLOTS: usize = 48;
/// The most pairs the step that ends a large table's sweep pass moves
/// into an allocation sized for them (a table half the size or less, an
/// arena's live runs, a wide page's one-word cells). A move costs up to
/// about 40 ns a pair on top of reading and freeing the old table, so
/// this keeps that step under about 4 ms (docs/BENCHMARKS.md, "A large
/// page past its peak"). A page whose survivors are more keeps the slots
/// of its peak until they are not.
pub(crate) const MOVE_PAIRS: usize = 4 * STEP_SLOTS;

/// Load factor above which the table grows, as a fraction `NUM / DEN`.
const MAX_LOAD_NUM: usize = 15;
const MAX_LOAD_DEN: usize = 16;
/// The smallest table, created when a page outgrows its inline slots.
pub(crate) const MIN_CAPACITY: usize = 3;
/// Tables of at most this many slots (one cache line) may fill up
/// completely: probing all of them costs one line anyway, and most pages
/// are small, so their tables are where a slack slot costs most.
const FULL_LOAD_UP_TO: usize = 8;

/// What an insert did, or what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insert {
    /// The key was already there.
    Present,
    /// The key was already there, last seen at tick `was` (timed sets: its
    /// tick is now the later of `was` and the insert's).
    Refreshed {
        /// The key's tick before this insert.
        was: u32,
    },
    /// The key was added in place.
    Added,
    /// The key is absent and adding it needs this many more heap bytes;
    /// nothing was changed. Reserve them, then call `grow_and_insert`.
    Grow(usize),
    /// The key was there, last seen at tick `was`, and noting this visit
    /// (a bucket new to it) needs this many more heap bytes; nothing was
    /// changed. Reserve them, then call `grow_and_insert`.
    GrowKnown {
        /// The bytes needed.
        bytes: usize,
        /// The key's tick before this insert (0 without a TTL).
        was: u32,
    },
    /// The set is a sketch and counted the key; `changed` says whether the
    /// sketch visibly changed, which proves the key new (tables never
    /// answer this).
    Estimated {
        /// Whether the sketch changed.
        changed: bool,
    },
}

impl Insert {
    /// Whether the key was new, once `grow_and_insert` has run if the
    /// insert needed room: for callers that account memory elsewhere.
    #[cfg(test)]
    pub(crate) fn is_new_after(self, grow_and_insert: impl FnOnce()) -> bool {
        match self {
            Insert::Present | Insert::Refreshed { .. } => false,
            Insert::GrowKnown { .. } => {
                grow_and_insert();
                false
            }
            Insert::Added => true,
            Insert::Grow(_) => {
                grow_and_insert();
                true
            }
            Insert::Estimated { changed } => changed,
        }
    }
}

/// What [`VisitorTable::insert`] did, or what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableInsert {
    /// The key was already there, in this slot (its values unchanged).
    Present(usize),
    /// The key was added in this slot, with the values given.
    Added(usize),
    /// The key is absent and adding it needs this many more heap bytes;
    /// nothing was changed. Reserve them, then call `grow_and_insert`.
    Grow(usize),
}

/// A set of non-zero `u64` hashes, each with `AUX` `u32` values (a tick,
/// an activity word: see `TimedTable` and `WordTable`).
///
/// One allocation holds everything: a header word (`len | capacity <<
/// 32`), then the slots, each its key and then its `AUX` values, all in
/// native byte order: `8 + 4 * AUX` bytes a slot (see `stride`), so a
/// 12-byte slot's key may be unaligned, and the last word padded. The
/// handle is a single boxed slice, 16 bytes, which keeps a page's visitor
/// set, and so its page record, small.
///
/// A slot's values sit beside its key, not in a run of their own after
/// the keys, so that finding a held pair and reading or updating its
/// values touches one cache line (two for a slot across a line's end:
/// one in eight 12-byte slots, one in four 16-byte ones, which start 8
/// bytes past a multiple of 16, after the header word), and an insert's
/// displaced run moves as one `memmove`. In a run of their own, the
/// values' line cost a batched repeat visit about 16% of its time; the
/// interleaved slots cost no byte (docs/BENCHMARKS.md, "Slots with their
/// values").
///
/// The allocation's handle is `W`: a boxed slice, or for a timed table a
/// [`ThinVec`] (8 bytes: its length in its allocation's header), so that
/// the page record holds the table's handle beside its other box.
#[derive(Debug, Clone)]
pub(crate) struct VisitorTable<const AUX: usize = 0, W: TableWords = Box<[u64]>> {
    words: W,
}

/// An owned run of words a [`VisitorTable`] lives in.
pub(crate) trait TableWords:
    DerefMut<Target = [u64]> + Clone + std::fmt::Debug + Send + 'static
{
    /// Heap bytes an allocation takes besides its words.
    const HEADER: usize;
    /// Whether the handle itself holds the length (a boxed slice's fat
    /// pointer), so that the capacity is known without reading the
    /// allocation: see [`VisitorTable::capacity`].
    const LEN_IN_HANDLE: bool;
    /// `len` zero words, exactly sized.
    fn zeroed(len: usize) -> Self;
    /// No words and no allocation.
    fn empty() -> Self;
    /// Heap bytes held.
    fn heap_bytes(&self) -> usize;
}

impl TableWords for Box<[u64]> {
    const HEADER: usize = 0;
    const LEN_IN_HANDLE: bool = true;

    fn zeroed(len: usize) -> Self {
        vec![0; len].into_boxed_slice()
    }

    fn empty() -> Self {
        Box::new([])
    }

    fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&**self)
    }
}

impl TableWords for ThinVec<u64> {
    /// Its length and capacity.
    const HEADER: usize = 2 * std::mem::size_of::<usize>();
    const LEN_IN_HANDLE: bool = false;

    fn zeroed(len: usize) -> Self {
        // `extend` from an iterator of known length writes each word
        // without a capacity check; `resize` checked one per word (a
        // growth's fresh buffer of 300 words cost 1,500 instructions).
        let mut words = ThinVec::with_capacity(len);
        words.extend(std::iter::repeat_n(0, len));
        words
    }

    fn empty() -> Self {
        ThinVec::new()
    }

    fn heap_bytes(&self) -> usize {
        match self.capacity() {
            0 => 0,
            n => Self::HEADER + n * std::mem::size_of::<u64>(),
        }
    }
}

impl<const AUX: usize, W: TableWords> VisitorTable<AUX, W> {
    /// Bytes of a slot: its key and its values.
    const STRIDE: usize = stride::<AUX>();

    /// An empty table with room for `capacity` slots (at least the minimum).
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(MIN_CAPACITY);
        let mut words = W::zeroed(words_for::<AUX>(capacity));
        words[0] = (capacity as u64) << 32;
        Self { words }
    }

    /// A stand-in with no slots and no allocation, for a table moved out
    /// of its place; never probed.
    pub(crate) fn placeholder() -> Self {
        Self { words: W::empty() }
    }

    /// Heap bytes of a table of `capacity` slots.
    pub(crate) const fn bytes_for(capacity: usize) -> usize {
        let capacity = if capacity < MIN_CAPACITY {
            MIN_CAPACITY
        } else {
            capacity
        };
        W::HEADER + words_for::<AUX>(capacity) * std::mem::size_of::<u64>()
    }

    pub(crate) fn len(&self) -> usize {
        (self.words[0] & u64::from(u32::MAX)) as usize
    }

    /// Slots. A table's words are exactly `words_for(capacity)`, so the
    /// handle's length gives it (`1 + c + ceil(AUX * c / 2)` words: `c` is
    /// `2 * (words - 1) / (2 + AUX)`, rounded down) where the handle holds
    /// that length: the home slot's address then depends on no load from
    /// the allocation, and the misses on its header and the home slot
    /// overlap instead of following one another.
    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        if AUX == 0 || W::LEN_IN_HANDLE {
            let capacity = 2 * (self.words.len() - 1) / (2 + AUX);
            debug_assert_eq!(capacity as u64, self.words[0] >> 32);
            capacity
        } else {
            (self.words[0] >> 32) as usize
        }
    }

    /// The bytes of the slots, from slot 0 on (with the allocation's
    /// padding after the last, if any).
    #[inline]
    fn slot_bytes(&self) -> &[u8] {
        &self.words.as_bytes()[HEADER_BYTES..]
    }

    #[inline]
    fn slot_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.words.as_mut_bytes()[HEADER_BYTES..]
    }

    /// The bytes of exactly the table's `capacity` slots.
    #[inline]
    fn slots_in(&self, capacity: usize) -> &[u8] {
        &self.slot_bytes()[..capacity * Self::STRIDE]
    }

    /// The key in slot `i` (0: empty).
    #[inline]
    fn slot(&self, i: usize) -> u64 {
        key_at::<AUX>(self.slot_bytes(), i)
    }

    #[inline]
    fn set_slot(&mut self, i: usize, key: u64) {
        let at = i * Self::STRIDE;
        self.slot_bytes_mut()[at..at + KEY_BYTES].copy_from_slice(&key.to_ne_bytes());
    }

    /// Writes `key` and its `values` into slot `i`.
    #[inline]
    fn set_entry(&mut self, i: usize, key: u64, values: [u32; AUX]) {
        let at = i * Self::STRIDE;
        put_entry(
            &mut self.slot_bytes_mut()[at..at + Self::STRIDE],
            key,
            values,
        );
    }

    /// Copies slot `from`'s key and values into slot `to`.
    #[inline]
    fn copy_slot(&mut self, from: usize, to: usize) {
        let stride = Self::STRIDE;
        self.slot_bytes_mut()
            .copy_within(from * stride..(from + 1) * stride, to * stride);
    }

    /// Value `k` of slot `i`.
    #[inline]
    pub(crate) fn value(&self, i: usize, k: usize) -> u32 {
        value_at::<AUX>(self.slot_bytes(), i, k)
    }

    /// Sets value `k` of slot `i`.
    #[inline]
    pub(crate) fn set_value(&mut self, i: usize, k: usize, value: u32) {
        let at = value_offset::<AUX>(i, k);
        self.slot_bytes_mut()[at..at + VALUE_BYTES].copy_from_slice(&value.to_ne_bytes());
    }

    /// The values of slot `i`.
    #[inline]
    pub(crate) fn values(&self, i: usize) -> [u32; AUX] {
        values_at::<AUX>(self.slot_bytes(), i)
    }

    /// Sets the values of slot `i`.
    #[inline]
    pub(crate) fn set_values(&mut self, i: usize, values: [u32; AUX]) {
        let at = value_offset::<AUX>(i, 0);
        put_values(
            &mut self.slot_bytes_mut()[at..at + AUX * VALUE_BYTES],
            values,
        );
    }

    /// Heap bytes held: exactly the one allocation.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.words.heap_bytes()
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        home_in(key, self.capacity())
    }

    /// How far slot `slot` is from `key`'s home, going forwards with
    /// wrap-around.
    #[inline]
    fn distance(&self, key: u64, slot: usize) -> usize {
        let home = self.home(key);
        if slot >= home {
            slot - home
        } else {
            slot + self.capacity() - home
        }
    }

    #[inline]
    fn next(&self, slot: usize) -> usize {
        if slot + 1 == self.capacity() {
            0
        } else {
            slot + 1
        }
    }

    fn needs_growth(&self) -> bool {
        !fits(self.len() + 1, self.capacity())
    }

    /// The capacity the table grows to: the next step that fits one more
    /// key (from a full small table, a step may not be enough).
    pub(crate) fn grown_capacity(&self) -> usize {
        let mut capacity = next_capacity(self.capacity());
        while !fits(self.len() + 1, capacity) {
            capacity = next_capacity(capacity);
        }
        capacity
    }

    /// Where `key` is (`Ok`), or the slot a new `key` goes to (`Err`).
    /// Stops at the key, an empty slot, the first resident closer to its
    /// home than we are to ours (Robin Hood: `key` cannot be further), or
    /// the first of our home with a greater key: keys of one home are kept
    /// in order, so that every cluster is in key order and a rebuild
    /// places each key with no probe (see `rebuild_into`).
    #[inline(always)]
    fn probe(&self, key: u64) -> Result<usize, usize> {
        debug_assert_ne!(key, 0);
        let capacity = self.capacity();
        let home = home_in(key, capacity);
        // Up to the end of the table, the Robin Hood test needs no
        // distances: a lesser resident has a home at or before ours, so it
        // is at least as far from it (we pass it); a greater one has a
        // home at or after ours, so it is at most as far (we stop), unless
        // it wrapped round the end (its home is after its slot: then it
        // is further, and we pass it).
        // A lesser resident (an empty slot, 0, is one) is passed with one
        // test besides the emptiness.
        let run = &self.slots_in(capacity)[home * Self::STRIDE..];
        for (slot, bytes) in (home..).zip(run.chunks_exact(Self::STRIDE)) {
            let resident = key_of(bytes);
            if resident >= key {
                if resident == key {
                    return Ok(slot);
                }
                if home_in(resident, capacity) <= slot {
                    return Err(slot);
                }
            } else if resident == 0 {
                return Err(slot);
            }
        }
        // The probe wraps round the end: distances from here on.
        let mut slot = 0;
        let mut dist = capacity - home;
        loop {
            let resident = self.slot(slot);
            if resident == key {
                return Ok(slot);
            }
            if resident == 0 {
                return Err(slot);
            }
            let theirs = self.distance(resident, slot);
            if theirs < dist || (theirs == dist && resident > key) {
                return Err(slot);
            }
            slot = self.next(slot);
            dist += 1;
        }
    }

    /// Prefetches the lines an insert of `key` reads first: its home
    /// slot's (its key and values) and the next one (the probe walks on
    /// past residents).
    #[inline]
    pub(crate) fn prefetch(&self, key: u64) {
        self.prefetch_each([key]);
    }

    /// [`prefetch`](Self::prefetch) of each of `keys`, reading the
    /// table's size once.
    #[inline]
    pub(crate) fn prefetch_each(&self, keys: impl IntoIterator<Item = u64>) {
        // A placeholder has no header to read a capacity from.
        if self.words.is_empty() {
            return;
        }
        let capacity = self.capacity();
        let slots = self.slots_in(capacity);
        let last = slots.len() - 1;
        for key in keys {
            let at = home_in(key, capacity) * Self::STRIDE;
            crate::prefetch::prefetch(&slots[at]);
            crate::prefetch::prefetch(&slots[(at + LINE_BYTES).min(last)]);
        }
    }

    /// Prefetches the home slot of `key` (its key and values) in a table
    /// of `capacity` slots, which the caller remembers from before (so the
    /// address needs no load from the allocation). A `capacity` no longer
    /// the table's only prefetches the wrong lines (or none past the end).
    #[inline]
    pub(crate) fn prefetch_home(&self, key: u64, capacity: usize) {
        let at = home_in(key, capacity) * Self::STRIDE;
        let bytes = self.words.as_bytes();
        // The slot's first and last byte: a slot may straddle two lines.
        for at in [HEADER_BYTES + at, HEADER_BYTES + at + Self::STRIDE - 1] {
            if let Some(byte) = bytes.get(at) {
                crate::prefetch::prefetch(byte);
            }
        }
    }

    /// Prefetches the table's header (its length and capacity), which
    /// [`prefetch`](Self::prefetch) reads.
    #[inline]
    pub(crate) fn prefetch_header(&self) {
        if let Some(header) = self.words.first() {
            crate::prefetch::prefetch(header);
        }
    }

    /// Whether `key` is in the set.
    #[cfg(test)]
    pub(crate) fn contains(&self, key: u64) -> bool {
        self.probe(key).is_ok()
    }

    /// The slot of `key`, if present.
    #[inline]
    pub(crate) fn find(&self, key: u64) -> Option<usize> {
        self.probe(key).ok()
    }

    /// Adds `key` with `values` if that needs no allocation; see
    /// [`TableInsert`]. A present key keeps its values.
    #[inline]
    pub(crate) fn insert(&mut self, key: u64, values: [u32; AUX]) -> TableInsert {
        match self.probe(key) {
            Ok(slot) => TableInsert::Present(slot),
            Err(_) if self.needs_growth() => {
                let grown = Self::bytes_for(self.grown_capacity());
                TableInsert::Grow(grown - self.heap_bytes())
            }
            Err(slot) => {
                self.displace_from(slot, key, values);
                self.words[0] += 1;
                TableInsert::Added(slot)
            }
        }
    }

    /// Grows the table by one step and adds `key`, which must be absent
    /// (as a [`TableInsert::Grow`] answer said).
    pub(crate) fn grow_and_insert(&mut self, key: u64, values: [u32; AUX]) {
        let fresh = Self::with_capacity(self.grown_capacity());
        self.rebuild_into(fresh, Some((key, values)));
    }

    /// Grows the table at once to the capacity `len` keys would grow it
    /// to, for building a table from keys known in advance.
    ///
    /// Keys taken from another table arrive sorted by home slot (homes
    /// are the keys' top bits). Into a table that grows as they come,
    /// the first ones, all with low homes, pile up in its low slots at
    /// more than one key per slot, and every insert probes past the pile:
    /// quadratic, minutes for a million-key page. At the final size they
    /// spread as in the table they came from.
    pub(crate) fn reserve(&mut self, len: usize) {
        let capacity = capacity_for(len);
        if capacity > self.capacity() {
            drop(self.rebuild(capacity));
        }
    }

    /// Adds `entries`, distinct keys with their values, to this empty
    /// table, which must have room for them all: in key order, each at its
    /// home or just past the one before, as a rebuild places them (only
    /// keys that run off the end are probed). Sorts `entries`.
    pub(crate) fn place_sorted(&mut self, entries: &mut [(u64, [u32; AUX])]) {
        debug_assert_eq!(self.len(), 0);
        debug_assert!(fits(entries.len(), self.capacity()));
        entries.sort_unstable_by_key(|&(key, _)| key);
        let capacity = self.capacity();
        let slots = &mut self.slot_bytes_mut()[..capacity * Self::STRIDE];
        let mut order = InOrder::default();
        let placed = entries
            .iter()
            .take_while(|&&(key, from)| order.place(slots, capacity, key, from))
            .count();
        self.words[0] += placed as u64;
        for &(key, values) in &entries[placed..] {
            self.place_new(key, values);
        }
    }

    /// Adds `key`, growing as needed; returns whether it was new. For
    /// building tables whose memory is accounted by the caller.
    pub(crate) fn insert_growing(&mut self, key: u64, values: [u32; AUX]) -> bool {
        match self.insert(key, values) {
            TableInsert::Present(_) => false,
            TableInsert::Added(_) => true,
            TableInsert::Grow(_) => {
                self.grow_and_insert(key, values);
                true
            }
        }
    }

    /// Places `key`, known to be absent, at `slot`, pushing the residents
    /// from there on one step further, as far as the next empty slot. The
    /// run moves as a block (a `memmove` of its keys, then of its values)
    /// rather than one swap per slot: near the maximum load
    /// the run averages tens of slots.
    #[inline(always)]
    fn displace_from(&mut self, slot: usize, key: u64, values: [u32; AUX]) {
        // An insert is only made with room, so there is an empty slot.
        let capacity = self.capacity();
        let slots = self.slots_in(capacity);
        let first_empty = |slots: &[u8]| {
            // Four keys to a test and a branch: the run to the next empty
            // slot averages tens of slots near the maximum load.
            let mut quads = slots.chunks_exact(4 * Self::STRIDE);
            let mut skipped = 0;
            for quad in quads.by_ref() {
                let empty = |i| key_at::<AUX>(quad, i) == 0;
                if empty(0) | empty(1) | empty(2) | empty(3) {
                    break;
                }
                skipped += 4;
            }
            slots[skipped * Self::STRIDE..]
                .chunks_exact(Self::STRIDE)
                .position(|bytes| key_of(bytes) == 0)
                .map(|n| skipped + n)
        };
        let empty = match first_empty(&slots[slot * Self::STRIDE..]) {
            Some(n) => slot + n,
            None => first_empty(slots).unwrap_or(slot),
        };
        if empty < slot {
            // The run wraps round the end: its part at the start moves on,
            // the last slot's resident to slot 0, then the rest.
            let last = capacity - 1;
            self.shift_on(0, empty);
            self.copy_slot(last, 0);
            self.shift_on(slot, last);
        } else {
            self.shift_on(slot, empty);
        }
        self.set_entry(slot, key, values);
    }

    /// Moves the entries of slots `from..to` one slot on, to
    /// `from + 1..to + 1` (which must not wrap).
    #[inline(always)]
    fn shift_on(&mut self, from: usize, to: usize) {
        // One `memmove` of the slots' bytes, keys and values together (a
        // loop over slots cost about 130 instructions an insert near the
        // maximum load, a `memmove` a few dozen).
        let stride = Self::STRIDE;
        self.slot_bytes_mut()
            .copy_within(from * stride..to * stride, (from + 1) * stride);
    }

    /// Inserts a key known to be absent, with room known to be there.
    fn place_new(&mut self, key: u64, values: [u32; AUX]) {
        let slot = self.probe(key).unwrap_err();
        self.displace_from(slot, key, values);
        self.words[0] += 1;
    }

    /// Moves the entries into a new allocation of `capacity` slots (which
    /// must fit them).
    ///
    /// Read in slot order, the old table holds its keys in key order
    /// (Robin Hood keeps each cluster in order of home, and `probe` keys
    /// of one home in key order), but for the residents at its start that
    /// wrapped round the end, the greatest keys, read last; and a key's
    /// home is monotone in the key at any capacity. So every key goes at
    /// its new home or just past the last one placed, with no probe, in
    /// one pass that reads the old table and writes the new one in order.
    /// Only keys that run off the new table's end are placed as any insert
    /// is. Returns the old table.
    fn rebuild(&mut self, capacity: usize) -> Self {
        self.rebuild_into(Self::with_capacity(capacity), None)
    }

    /// [`rebuild`](Self::rebuild) into `fresh`, an empty table (zeroed),
    /// adding `new` (a key absent from the table, with its values) on the
    /// way; returns the old table.
    fn rebuild_into(&mut self, fresh: Self, new: Option<(u64, [u32; AUX])>) -> Self {
        let old_capacity = self.capacity();
        let wrapped = (0..old_capacity)
            .map(|i| (i, self.slot(i)))
            .take_while(|&(i, key)| key != 0 && home_in(key, old_capacity) > i)
            .count();
        // Slot `i` is number `(i - wrapped) mod old_capacity` in key order.
        let order_of = |i: usize| (i + old_capacity - wrapped) % old_capacity.max(1);
        // The new key goes where its insert would have put it, so in key
        // order just before that slot's resident; at the end if it wraps
        // round to the slot after the last wrapped one.
        let new_at = new.map_or(old_capacity, |(key, _)| {
            let slot = self.probe(key).unwrap_err();
            if slot == wrapped && home_in(key, old_capacity) > slot {
                old_capacity
            } else {
                order_of(slot)
            }
        });
        let old = std::mem::replace(self, fresh);
        let old_slots = old.slots_in(old_capacity);
        let capacity = self.capacity();
        let bytes = &mut self.slot_bytes_mut()[..capacity * Self::STRIDE];
        // The old slots of key-order numbers `from..to`, in order.
        let slots = |from: usize, to: usize| {
            let (a, b) = (from + wrapped, to + wrapped);
            if b <= old_capacity {
                [(a, b), (0, 0)]
            } else if a >= old_capacity {
                [(a - old_capacity, b - old_capacity), (0, 0)]
            } else {
                [(a, old_capacity), (0, b - old_capacity)]
            }
        };
        let mut order = InOrder::default();
        // The key-order number of the first key not placed (one ran off
        // the new table's end), and whether the new key is placed.
        let mut stopped = old_capacity;
        let mut new_placed = new.is_none();
        'placing: {
            for (from, to) in slots(0, new_at) {
                if let Some(i) = order.place_slots::<AUX>(bytes, old_slots, from, to) {
                    stopped = order_of(i);
                    break 'placing;
                }
            }
            if let Some((key, from)) = new {
                if !order.place(bytes, capacity, key, from) {
                    stopped = new_at;
                    break 'placing;
                }
                new_placed = true;
            }
            for (from, to) in slots(new_at, old_capacity) {
                if let Some(i) = order.place_slots::<AUX>(bytes, old_slots, from, to) {
                    stopped = order_of(i);
                    break 'placing;
                }
            }
        }
        // Every key is counted here, those placed below too.
        self.words[0] += old.len() as u64 + u64::from(new.is_some());
        // The keys that ran off the end (or out of order, which `probe`
        // never leaves): placed as any insert is.
        let mut place_late = |key: u64, values: [u32; AUX]| {
            let slot = self.probe(key).unwrap_err();
            self.displace_from(slot, key, values);
        };
        for (from, to) in slots(stopped, old_capacity) {
            for i in from..to {
                let key = old.slot(i);
                if key != 0 {
                    place_late(key, old.values(i));
                }
            }
        }
        if let Some((key, values)) = new
            && !new_placed
        {
            place_late(key, values);
        }
        old
    }

    /// Keeps the entries `keep` accepts (which may change their values),
    /// moving them into an allocation sized for them if that is smaller.
    /// Returns how many were dropped.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(u64, &mut [u32; AUX]) -> bool) -> usize {
        let mut dropped = 0;
        for i in 0..self.capacity() {
            let key = self.slot(i);
            if key == 0 {
                continue;
            }
            let mut values = self.values(i);
            if keep(key, &mut values) {
                self.set_values(i, values);
            } else {
                // Marked for the rebuild below: a zero key is empty.
                self.set_slot(i, 0);
                dropped += 1;
            }
        }
        if dropped > 0 {
            // Emptied slots break probe chains: rebuild from what is left.
            let len = self.len() - dropped;
            let capacity = capacity_for(len).min(self.capacity());
            let old = std::mem::replace(self, Self::with_capacity(capacity));
            for (key, values) in old.entries() {
                self.place_new(key, values);
            }
        }
        dropped
    }

    /// Visits at most `max` slots from `start` on, in table order, and
    /// deletes in place the entries `keep` rejects (`keep` may change the
    /// values of those it keeps): a bounded share of a retain, for tables
    /// too large to rebuild in one go. Deletion shifts the entries after
    /// the hole back (Robin Hood's backward shift), so probe chains stay
    /// whole and the allocation stays as it is. Returns the entries
    /// deleted and the slot to resume at (the capacity once the pass has
    /// reached the end). Entries moved across the resume point between
    /// calls (by inserts) may be visited twice or not at all in one pass.
    pub(crate) fn retain_slots(
        &mut self,
        start: usize,
        max: usize,
        mut keep: impl FnMut(u64, &mut [u32; AUX]) -> bool,
    ) -> (usize, usize) {
        let capacity = self.capacity();
        let (mut slot, mut visited, mut dropped) = (start.min(capacity), 0, 0);
        while slot < capacity && visited < max {
            visited += 1;
            let key = self.slot(slot);
            if key == 0 {
                slot += 1;
                continue;
            }
            let mut values = self.values(slot);
            if keep(key, &mut values) {
                self.set_values(slot, values);
                slot += 1;
            } else {
                // The slot now holds the next entry of the chain, if any:
                // visited again without moving on.
                self.remove_at(slot);
                dropped += 1;
            }
        }
        (dropped, slot)
    }

    /// Deletes the entry in `hole`: the entries after it that are not at
    /// their home move back one slot, up to the first empty or homed one.
    fn remove_at(&mut self, mut hole: usize) {
        for _ in 0..self.capacity() {
            let next = self.next(hole);
            let key = self.slot(next);
            if key == 0 || self.distance(key, next) == 0 {
                break;
            }
            self.copy_slot(next, hole);
            hole = next;
        }
        self.set_slot(hole, 0);
        self.words[0] -= 1;
    }

    /// Whether a table of `len` keys would take at most half the slots it
    /// has: worth moving into a smaller allocation.
    pub(crate) fn oversized(&self) -> bool {
        capacity_for(self.len()) * 2 <= self.capacity() && self.capacity() > MIN_CAPACITY
    }

    /// Heap bytes of the allocation [`shrink_to_fit`](Self::shrink_to_fit)
    /// builds beside this one.
    pub(crate) fn shrunk_bytes(&self) -> usize {
        Self::bytes_for(capacity_for(self.len()).min(self.capacity()))
    }

    /// Moves the entries into an allocation sized for them. The old one
    /// goes to [`defer`](crate::deferred::defer): a sweep frees it once its
    /// lock is released.
    pub(crate) fn shrink_to_fit(&mut self) {
        let old = self.rebuild(capacity_for(self.len()).min(self.capacity()));
        let bytes = old.heap_bytes();
        crate::deferred::defer(old, bytes);
    }

    /// The keys, in table order.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.capacity())
            .map(|i| self.slot(i))
            .filter(|&k| k != 0)
    }

    /// The header word and each slot's key, in table order: what two
    /// tables of the same keys laid out alike share.
    #[cfg(test)]
    fn key_layout(&self) -> Vec<u64> {
        let keys = (0..self.capacity()).map(|i| self.slot(i));
        std::iter::once(self.words[0]).chain(keys).collect()
    }

    /// The keys with their values, in table order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u64, [u32; AUX])> + Clone + '_ {
        (0..self.capacity()).filter_map(|i| {
            let key = self.slot(i);
            (key != 0).then(|| (key, self.values(i)))
        })
    }

    /// The slots holding keys, in table order.
    pub(crate) fn occupied(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.capacity()).filter(|&i| self.slot(i) != 0)
    }

    /// Value `k` of every slot, empty ones included (their value is
    /// meaningless): for scans that read one value of every entry, with
    /// [`is_occupied`](Self::is_occupied).
    pub(crate) fn value_run(&self, k: usize) -> impl Iterator<Item = u32> + '_ {
        let at = value_offset::<AUX>(0, k);
        self.slots_in(self.capacity())
            .chunks_exact(Self::STRIDE)
            .map(move |slot| value_of(&slot[at..]))
    }

    /// The values of every slot, empty ones included (their values are
    /// meaningless): for scans that read them all, with
    /// [`is_occupied`](Self::is_occupied).
    pub(crate) fn value_rows(&self) -> impl Iterator<Item = [u32; AUX]> + '_ {
        self.slots_in(self.capacity())
            .chunks_exact(Self::STRIDE)
            .map(|slot| values_at::<AUX>(slot, 0))
    }

    /// A table of the same keys in the same slots with `A2` values a slot,
    /// all 0 (for the caller to set): a page's table moved to wider or
    /// narrower slots with no probing, the layout depending only on the
    /// keys and the capacity.
    pub(crate) fn relaid<const A2: usize>(&self) -> VisitorTable<A2, W> {
        let capacity = self.capacity();
        let mut table = VisitorTable::<A2, W>::with_capacity(capacity);
        table.words[0] = self.words[0];
        for i in 0..capacity {
            table.set_slot(i, self.slot(i));
        }
        table
    }

    /// Whether slot `i` holds a key.
    #[inline]
    pub(crate) fn is_occupied(&self, i: usize) -> bool {
        self.slot(i) != 0
    }
}

impl<const AUX: usize, W: TableWords> VisitorTable<AUX, W> {
    /// An empty table of `capacity` slots in `spare`, a buffer of
    /// [`bytes_for(capacity)`](Self::bytes_for) bytes taken from a
    /// [`TablePool`](super::table_pool::TablePool), or in a new one.
    pub(crate) fn in_buffer(capacity: usize, spare: Option<W>) -> Self {
        match spare {
            Some(mut words) => {
                let capacity = capacity.max(MIN_CAPACITY);
                debug_assert_eq!(words.len(), words_for::<AUX>(capacity));
                words.fill(0);
                words[0] = (capacity as u64) << 32;
                Self { words }
            }
            None => Self::with_capacity(capacity),
        }
    }

    /// Bytes of the allocation [`grow_into`](Self::grow_into) moves to.
    pub(crate) fn grown_bytes(&self) -> usize {
        Self::bytes_for(self.grown_capacity())
    }

    /// [`grow_and_insert`](Self::grow_and_insert) into `spare` (see
    /// [`in_buffer`](Self::in_buffer)); returns the buffer grown out of.
    pub(crate) fn grow_into(&mut self, key: u64, values: [u32; AUX], spare: Option<W>) -> W {
        let capacity = self.grown_capacity();
        let fresh = Self::in_buffer(capacity, spare);
        self.rebuild_into(fresh, Some((key, values))).words
    }
}

/// A rebuild's placing of keys in increasing order into a zeroed table.
#[derive(Default)]
struct InOrder {
    /// Slots from here on are empty.
    free: usize,
    /// The greatest key placed.
    last: u64,
}

impl InOrder {
    /// Places `key` with `from` (its values) at its home in the table of
    /// `capacity` slots, `slots` (their bytes), or just past the last key
    /// placed; false, placing nothing, if `key` is not greater than that
    /// one or would run off the end.
    #[inline]
    fn place<const AUX: usize>(
        &mut self,
        slots: &mut [u8],
        capacity: usize,
        key: u64,
        from: [u32; AUX],
    ) -> bool {
        let at = home_in(key, capacity).max(self.free);
        if key <= self.last || at >= capacity {
            return false;
        }
        let stride = stride::<AUX>();
        put_entry(&mut slots[at * stride..(at + 1) * stride], key, from);
        (self.free, self.last) = (at + 1, key);
        true
    }

    /// Places the entries of slots `from..to` of the table whose slots
    /// are `old_slots` (their bytes) in order into the table of `slots`,
    /// as [`place`](Self::place) does; stops at the first it cannot place
    /// and returns its slot.
    #[inline]
    fn place_slots<const AUX: usize>(
        &mut self,
        slots: &mut [u8],
        old_slots: &[u8],
        from: usize,
        to: usize,
    ) -> Option<usize> {
        // A local copy of the placing state, written back once at the end
        // (the loop keeps it in registers, not memory).
        let mut order = InOrder {
            free: self.free,
            last: self.last,
        };
        let stride = stride::<AUX>();
        let capacity = slots.len() / stride;
        let stopped = (from..to)
            .zip(old_slots[from * stride..to * stride].chunks_exact(stride))
            .filter(|&(_, old)| key_of(old) != 0)
            .find(|&(_, old)| {
                !order.place::<AUX>(slots, capacity, key_of(old), values_at::<AUX>(old, 0))
            });
        (self.free, self.last) = (order.free, order.last);
        stopped.map(|(i, _)| i)
    }
}

/// Bytes of the header word (the length and the capacity).
const HEADER_BYTES: usize = std::mem::size_of::<u64>();
/// Bytes of a slot's key.
const KEY_BYTES: usize = std::mem::size_of::<u64>();
/// Bytes of one of a slot's values.
const VALUE_BYTES: usize = std::mem::size_of::<u32>();
/// The cache line, for prefetching the line after a slot's.
const LINE_BYTES: usize = 64;

/// Bytes of a slot with `AUX` values: its key, then its values.
const fn stride<const AUX: usize>() -> usize {
    KEY_BYTES + AUX * VALUE_BYTES
}

/// The key in the first bytes of `slot` (a slot's bytes), in native
/// byte order (a slot of 12 bytes leaves it unaligned: x86 and ARM load
/// it as one word).
#[inline]
fn key_of(slot: &[u8]) -> u64 {
    u64::from_ne_bytes(slot[..KEY_BYTES].try_into().expect("eight bytes"))
}

/// The key of slot `i` in `slots`, the bytes of a table's slots.
#[inline]
fn key_at<const AUX: usize>(slots: &[u8], i: usize) -> u64 {
    key_of(&slots[i * stride::<AUX>()..])
}

/// The value in the first bytes of `bytes`, in native byte order.
#[inline]
fn value_of(bytes: &[u8]) -> u32 {
    u32::from_ne_bytes(bytes[..VALUE_BYTES].try_into().expect("four bytes"))
}

/// Value `k` of slot `i` in `slots`.
#[inline]
fn value_at<const AUX: usize>(slots: &[u8], i: usize, k: usize) -> u32 {
    value_of(&slots[value_offset::<AUX>(i, k)..])
}

/// Where value `k` of slot `i` starts in a table's slots.
#[inline]
const fn value_offset<const AUX: usize>(i: usize, k: usize) -> usize {
    i * stride::<AUX>() + KEY_BYTES + k * VALUE_BYTES
}

/// Writes `key` and its `values` into `slot`, a slot's bytes.
#[inline]
fn put_entry<const AUX: usize>(slot: &mut [u8], key: u64, values: [u32; AUX]) {
    slot[..KEY_BYTES].copy_from_slice(&key.to_ne_bytes());
    put_values(&mut slot[KEY_BYTES..], values);
}

/// Writes `values` into `row`, a slot's bytes after its key (one bounds
/// check for the row, then none per value).
#[inline]
fn put_values<const AUX: usize>(row: &mut [u8], values: [u32; AUX]) {
    let row = &mut row[..AUX * VALUE_BYTES];
    for (k, value) in values.into_iter().enumerate() {
        row[k * VALUE_BYTES..(k + 1) * VALUE_BYTES].copy_from_slice(&value.to_ne_bytes());
    }
}

/// The values of slot `i` in `slots`.
#[inline]
fn values_at<const AUX: usize>(slots: &[u8], i: usize) -> [u32; AUX] {
    let at = value_offset::<AUX>(i, 0);
    // One bounds check for the row, not one per value.
    let row = &slots[at..at + AUX * VALUE_BYTES];
    std::array::from_fn(|k| value_of(&row[k * VALUE_BYTES..]))
}

/// The home slot of `key` in a table of `capacity` slots (multiply-shift).
#[inline]
fn home_in(key: u64, capacity: usize) -> usize {
    ((u128::from(key) * capacity as u128) >> 64) as usize
}

/// Words of a table of `capacity` slots: the header, then the slots'
/// keys and values, rounded up to a whole word.
pub(crate) const fn words_for<const AUX: usize>(capacity: usize) -> usize {
    1 + capacity + (AUX * capacity).div_ceil(2)
}

/// The smallest capacity on the growth path that holds `len` keys.
fn capacity_for(len: usize) -> usize {
    let mut capacity = MIN_CAPACITY;
    while !fits(len, capacity) {
        capacity = next_capacity(capacity);
    }
    capacity
}

/// Whether `len` keys may live in `capacity` slots.
fn fits(len: usize, capacity: usize) -> bool {
    if capacity <= FULL_LOAD_UP_TO {
        len <= capacity
    } else {
        len * MAX_LOAD_DEN <= capacity * MAX_LOAD_NUM
    }
}

/// Grows by three eighths (x1.375): a growth moves every key, about
/// `1 / (GROWTH - 1)` moves per key over a table's life (2.7 here, 4 at
/// x1.25, 2 at x1.5), and a table just grown is `MAX_LOAD / GROWTH`
/// full (68% here) and fills up to `MAX_LOAD`, so a larger step costs
/// memory: averaged over the growth cycle, `12 (GROWTH - 1) / (MAX_LOAD
/// ln GROWTH)` bytes a pair for a plain table's 12-byte slots (14.3 at
/// x1.25, 15.1 here, 15.8 at x1.5). With the pages' own bytes on top,
/// x1.375 keeps that average half a byte under the 16 B a pair target
/// (the memory bench's row of page sizes spread over several steps:
/// 15.46 B; 16.17 at x1.5), and takes 6% fewer instructions per event
/// than x1.25 in the batch bench (`docs/BENCHMARKS.md`, "Growth by three
/// eighths"). Below [`DOUBLE_BELOW`] slots it doubles
/// instead: a small table's growth costs mostly its fixed part (a buffer,
/// the pool, the budget), and most pages are small, so small steps there
/// (3, 4, 5, ... 27) made half of all growths for a few slack slots per
/// page.
pub(crate) const fn next_capacity(capacity: usize) -> usize {
    if capacity < DOUBLE_BELOW {
        2 * capacity
    } else {
        capacity + capacity / 4 + capacity / 8
    }
}

/// The capacity below which tables double (3, 6, 12, 24, 48, then steps
/// of x1.375: 66, 90, 123, ...). On the batch bench's Zipf stream this
/// halved the number of growths for about 6% more table memory there; at
/// 1,000 visitors a page (the memory target's shape) the path still ends
/// in a step of x1.375. Doubling up to 128 slots as well saved only 2%
/// of the batch's instructions and took the memory bench's 100k pairs
/// over 1k pages (100 a page) from 16.4 to 25.5 B a pair.
const DOUBLE_BELOW: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn mix(i: u64) -> u64 {
        // SplitMix64's finaliser: a bijection, so distinct inputs stay distinct.
        let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)).max(1)
    }

    /// The longest distance from home of any key.
    fn worst_distance(t: &VisitorTable<0>) -> usize {
        (0..t.capacity())
            .filter(|&slot| t.slot(slot) != 0)
            .map(|slot| t.distance(t.slot(slot), slot))
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn keys_in_table_order_spread_out_in_a_reserved_table() {
        let mut source = VisitorTable::<0>::with_capacity(MIN_CAPACITY);
        for i in 0..20_000 {
            source.insert_growing(mix(i), []);
        }
        // Half of them, as a restore is half-way through its page.
        let half = source.len() / 2;
        let copy = |reserve: bool| {
            let mut t = VisitorTable::<0>::with_capacity(MIN_CAPACITY);
            if reserve {
                t.reserve(source.len());
            }
            for key in source.iter().take(half) {
                assert!(t.insert_growing(key, []));
            }
            t
        };
        let reserved = copy(true);
        assert_eq!(
            reserved.capacity(),
            source.capacity(),
            "the size growth reaches"
        );
        let reserved = worst_distance(&reserved);
        assert!(reserved <= worst_distance(&source) + 8);
        // What reserving avoids: grown as the sorted keys come, the table
        // piles them up far from home, and every insert probes past the
        // pile (a 10M-pair snapshot took minutes to restore).
        let grown = worst_distance(&copy(false));
        assert!(
            grown > 100 * reserved.max(1),
            "grown {grown}, reserved {reserved}"
        );
    }

    #[test]
    fn grows_in_steps_and_stays_under_max_load() {
        let mut t = VisitorTable::<0>::with_capacity(MIN_CAPACITY);
        for i in 0..100_000 {
            assert!(t.insert_growing(mix(i), []));
            assert!(fits(t.len(), t.capacity()));
        }
        assert_eq!(t.len(), 100_000);
        let bytes_per_key = t.heap_bytes() as f64 / t.len() as f64;
        // 8 bytes a key at most `MAX_LOAD / GROWTH` full.
        assert!(bytes_per_key < 8.0 * 1.375 * 16.0 / 15.0, "{bytes_per_key}");
        for i in 0..100_000 {
            assert!(t.contains(mix(i)));
            assert!(!t.insert_growing(mix(i), []));
        }
        assert!(!t.contains(mix(100_001)));
    }

    #[test]
    fn keys_homed_at_the_end_wrap_around() {
        let mut t = VisitorTable::<0>::with_capacity(MIN_CAPACITY);
        for k in [u64::MAX, u64::MAX - 1, u64::MAX - 2, u64::MAX - 3] {
            assert!(t.insert_growing(k, []));
        }
        for k in [u64::MAX, u64::MAX - 1, u64::MAX - 2, u64::MAX - 3] {
            assert!(t.contains(k));
        }
        assert!(t.insert_growing(1, []));
        assert!(t.contains(1));
        assert!(!t.contains(2));
    }

    /// A growth places its new key where its probe in the old table
    /// said, wherever that is in key order: first, among the keys that
    /// wrapped round the end, or after them (a key that wraps too); the
    /// table is then the one its keys alone make.
    #[test]
    fn growth_places_the_new_key_in_key_order_across_the_wrap() {
        let near_end = |n: u64| u64::MAX - n;
        let sets: [&[u64]; 3] = [
            &[near_end(0), near_end(1), near_end(2), 1, 2, 3],
            &[near_end(5), near_end(9), 7, 1 << 62, near_end(1), 5],
            &[1, 2, 3, 4, 5, 6],
        ];
        let layout = |t: &VisitorTable<1>| (t.key_layout(), t.entries().collect::<Vec<_>>());
        for keys in sets {
            for (n, &new) in keys.iter().enumerate() {
                let mut grown = VisitorTable::<1>::with_capacity(MIN_CAPACITY);
                for &k in keys.iter().filter(|&&k| k != new) {
                    grown.insert_growing(k, [k as u32]);
                }
                while !grown.needs_growth() {
                    let filler = mix(grown.len() as u64 + 1000 * n as u64);
                    grown.insert_growing(filler, [filler as u32]);
                }
                let mut all: Vec<u64> = grown.iter().collect();
                all.push(new);
                grown.grow_and_insert(new, [new as u32]);
                let mut expected = VisitorTable::<1>::with_capacity(MIN_CAPACITY);
                expected.reserve(all.len());
                for &k in all.iter().rev() {
                    expected.insert_growing(k, [k as u32]);
                }
                assert_eq!(
                    layout(&grown),
                    layout(&expected),
                    "keys {keys:?}, new {new}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn behaves_like_a_hash_set(keys in proptest::collection::vec(
            prop_oneof![1u64..64, any::<u64>().prop_map(|k| k.max(1)), Just(u64::MAX)],
            0..400,
        )) {
            let mut table = VisitorTable::<0>::with_capacity(MIN_CAPACITY);
            let mut model = HashSet::new();
            for k in keys {
                prop_assert_eq!(table.insert_growing(k, []), model.insert(k));
                prop_assert_eq!(table.len(), model.len());
            }
            let mut held: Vec<u64> = table.iter().collect();
            held.sort_unstable();
            let mut expected: Vec<u64> = model.into_iter().collect();
            expected.sort_unstable();
            prop_assert_eq!(held, expected);
        }

        /// Keys of one home are kept in key order, so a table's layout is
        /// a function of its keys alone: inserting the same keys in
        /// another order, growing on the way or not, and deleting some in
        /// steps, give the same words.
        #[test]
        fn layout_depends_only_on_the_keys(
            keys in proptest::collection::hash_set(
                prop_oneof![1u64..64, any::<u64>().prop_map(|k| k.max(1)), Just(u64::MAX)],
                0..400,
            ),
            seed in any::<u64>(),
            modulus in 2u64..5,
        ) {
            let keys: Vec<u64> = keys.into_iter().collect();
            let mut shuffled = keys.clone();
            shuffled.sort_by_key(|&k| mix(k ^ seed));
            let mut grown = VisitorTable::<1>::with_capacity(MIN_CAPACITY);
            for &k in &keys {
                grown.insert_growing(k, [k as u32]);
            }
            let mut reserved = VisitorTable::<1>::with_capacity(MIN_CAPACITY);
            reserved.reserve(keys.len());
            for &k in &shuffled {
                reserved.insert_growing(k, [k as u32]);
            }
            // The header and slots, and the values of the occupied ones
            // (an emptied slot's values are left as they were).
            let layout = |t: &VisitorTable<1>| {
                (t.key_layout(), t.entries().collect::<Vec<_>>())
            };
            prop_assert_eq!(layout(&grown), layout(&reserved));
            let reject = |k: u64| k.is_multiple_of(modulus);
            let mut at = 0;
            while at < grown.capacity() {
                at = grown.retain_slots(at, 7, |k, _| !reject(k)).1;
            }
            let mut kept = VisitorTable::<1>::with_capacity(MIN_CAPACITY);
            kept.reserve(keys.len());
            for &k in shuffled.iter().filter(|&&k| !reject(k)) {
                kept.insert_growing(k, [k as u32]);
            }
            prop_assert_eq!(layout(&grown), layout(&kept));
        }

        /// Placing keys in order into an empty table gives the table
        /// inserting them one by one gives.
        #[test]
        fn placing_in_order_is_inserting(
            keys in proptest::collection::hash_set(
                prop_oneof![1u64..64, any::<u64>().prop_map(|k| k.max(1)), Just(u64::MAX)],
                0..40,
            ),
        ) {
            let keys: Vec<u64> = keys.into_iter().collect();
            let capacity = capacity_for(keys.len());
            let mut inserted = VisitorTable::<1>::with_capacity(capacity);
            for &k in &keys {
                inserted.insert_growing(k, [k as u32]);
            }
            let mut placed = VisitorTable::<1>::with_capacity(capacity);
            let mut entries: Vec<(u64, [u32; 1])> = keys.iter().map(|&k| (k, [k as u32])).collect();
            placed.place_sorted(&mut entries);
            let layout = |t: &VisitorTable<1>| {
                (t.key_layout(), t.entries().collect::<Vec<_>>())
            };
            prop_assert_eq!(layout(&placed), layout(&inserted));
        }

        /// Growing into a recycled buffer, whatever it held, gives the
        /// table growing into a new one gives.
        #[test]
        fn growth_into_a_used_buffer_ignores_its_contents(
            keys in proptest::collection::hash_set(any::<u64>().prop_map(|k| k.max(1)), 1..300),
            junk in any::<u64>(),
        ) {
            let keys: Vec<u64> = keys.into_iter().collect();
            let (last, rest) = keys.split_last().unwrap();
            let mut fresh = VisitorTable::<1>::with_capacity(MIN_CAPACITY);
            for &k in rest {
                fresh.insert_growing(k, [k as u32]);
            }
            let mut recycled = fresh.clone();
            if !fresh.needs_growth() {
                return Ok(());
            }
            fresh.grow_and_insert(*last, [*last as u32]);
            let spare = vec![junk | 1; fresh.words.len()].into_boxed_slice();
            recycled.grow_into(*last, [*last as u32], Some(spare));
            let layout = |t: &VisitorTable<1>| {
                (t.key_layout(), t.entries().collect::<Vec<_>>())
            };
            prop_assert_eq!(layout(&fresh), layout(&recycled));
        }

        /// A table with values keeps each key's values through the
        /// displacements and growth of later inserts.
        #[test]
        fn values_follow_their_keys(keys in proptest::collection::vec(
            prop_oneof![1u64..64, any::<u64>().prop_map(|k| k.max(1)), Just(u64::MAX)],
            0..400,
        )) {
            let mut table = VisitorTable::<2>::with_capacity(MIN_CAPACITY);
            let mut model = std::collections::HashMap::new();
            for k in keys {
                let values = [k as u32, (k >> 32) as u32 ^ 0xA5A5];
                let new = !model.contains_key(&k);
                prop_assert_eq!(table.insert_growing(k, values), new);
                model.entry(k).or_insert(values);
            }
            prop_assert_eq!(table.len(), model.len());
            for (&k, &values) in &model {
                let slot = table.find(k).unwrap();
                prop_assert_eq!([table.value(slot, 0), table.value(slot, 1)], values);
            }
        }

        /// With one value a slot (12 bytes: keys unaligned, some slots
        /// across a line's end), each key keeps its value through inserts,
        /// growth, updates and deletion in steps, and the scans that read
        /// every slot's values (`value_run`, `value_rows`) and the move to
        /// other values (`relaid`) see each key's values in its slot.
        #[test]
        fn twelve_byte_slots_keep_keys_and_values_together(
            keys in proptest::collection::vec(
                prop_oneof![1u64..64, any::<u64>().prop_map(|k| k.max(1)), Just(u64::MAX)],
                0..400,
            ),
            modulus in 2u64..5,
        ) {
            let mut table = VisitorTable::<1>::with_capacity(MIN_CAPACITY);
            let mut model = std::collections::HashMap::new();
            for k in keys {
                let value = (k >> 7) as u32 ^ 0x5A5A_A5A5;
                prop_assert_eq!(table.insert_growing(k, [value]), !model.contains_key(&k));
                let slot = table.find(k).unwrap();
                // Every other key's value is bumped in place.
                if k % 2 == 0 {
                    table.set_value(slot, 0, value.wrapping_add(1));
                }
                model.insert(k, [table.value(slot, 0)]);
            }
            let reject = |k: u64| k.is_multiple_of(modulus);
            let mut at = 0;
            while at < table.capacity() {
                at = table.retain_slots(at, 5, |k, _| !reject(k)).1;
            }
            model.retain(|&k, _| !reject(k));
            let entries: std::collections::HashMap<u64, [u32; 1]> = table.entries().collect();
            prop_assert_eq!(&entries, &model);
            let runs: Vec<u32> = table.value_run(0).collect();
            let rows: Vec<[u32; 1]> = table.value_rows().collect();
            prop_assert_eq!(runs.len(), table.capacity());
            let wide = table.relaid::<2>();
            for slot in table.occupied() {
                let key = table.slot(slot);
                prop_assert_eq!([runs[slot]], model[&key]);
                prop_assert_eq!(rows[slot], model[&key]);
                prop_assert_eq!(wide.find(key), Some(slot));
                prop_assert_eq!(wide.values(slot), [0, 0]);
            }
            prop_assert_eq!(wide.len(), model.len());
        }

        /// Deleting in steps of a few slots, with inserts between steps:
        /// every key stays findable, deleted keys are gone, and a pass
        /// deletes every rejected key that was there before it started
        /// and not moved by the inserts.
        #[test]
        fn retain_in_steps_keeps_probe_chains_whole(
            keys in proptest::collection::vec(
                prop_oneof![1u64..64, any::<u64>().prop_map(|k| k.max(1)), Just(u64::MAX)],
                0..300,
            ),
            later in proptest::collection::vec(any::<u64>().prop_map(|k| k.max(1)), 0..40),
            step in 1usize..20,
            modulus in 2u64..5,
        ) {
            let mut table = VisitorTable::<1>::with_capacity(MIN_CAPACITY);
            let mut model = HashSet::new();
            for &k in &keys {
                table.insert_growing(k, [k as u32]);
                model.insert(k);
            }
            let reject = |k: u64| k.is_multiple_of(modulus);
            let (mut at, mut later) = (0, later.into_iter());
            loop {
                let (dropped, next) = table.retain_slots(at, step, |k, v| {
                    assert_eq!(v[0], k as u32);
                    !reject(k)
                });
                let before = model.len();
                // What was deleted is what the model loses of the keys
                // the step could reach.
                model.retain(|&k| table.contains(k));
                prop_assert_eq!(before - model.len(), dropped);
                prop_assert_eq!(table.len(), model.len());
                for &k in &model {
                    prop_assert!(table.contains(k));
                    prop_assert_eq!(table.value(table.find(k).unwrap(), 0), k as u32);
                }
                if next >= table.capacity() {
                    break;
                }
                at = next;
                if let Some(k) = later.next()
                    && !reject(k)
                    && !table.needs_growth()
                {
                    table.insert(k, [k as u32]);
                    model.insert(k);
                }
            }
            // An insert may move a key across the resume point (wrapping
            // round the end); a pass with no inserts misses none.
            let (dropped, next) = table.retain_slots(0, usize::MAX, |k, _| !reject(k));
            prop_assert_eq!(next, table.capacity());
            prop_assert_eq!(table.len(), model.len() - dropped);
            prop_assert!(table.iter().all(|k| !reject(k)));
        }
    }
}
