//! An open-addressing set of visitor hashes: Robin Hood linear probing over
//! a flat `[u64]`, with no per-entry metadata.
//!
//! The keys are already uniformly mixed 64-bit hashes, so the table uses
//! them as they are (identity hashing) and maps a key to its home slot with
//! a multiply-shift ("fast range": `(key * capacity) >> 64`) instead of a
//! mask. That lets the capacity be any number, so the table can grow by
//! x1.5 instead of x2, which keeps the average load, and so the memory per
//! visitor, high: between `8 / MAX_LOAD` and `8 * GROWTH / MAX_LOAD` bytes.
//!
//! Robin Hood ordering (a key never sits further from its home than the key
//! it passed) lets a lookup for an absent key stop early, so inserting a new
//! visitor costs about as much as finding a present one even at 7/8 load.
//! A resident's distance from home is recomputed from its value, so no
//! distance bytes are stored. Slot value 0 means empty; visitor hashes are
//! never 0 (see `visitor_hash`).

/// Load factor above which the table grows, as a fraction `NUM / DEN`.
const MAX_LOAD_NUM: usize = 7;
const MAX_LOAD_DEN: usize = 8;
/// The smallest table, created when a page outgrows its inline slots.
pub(crate) const MIN_CAPACITY: usize = 8;

/// What an insert did, or what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insert {
    /// The key was already there.
    Present,
    /// The key was added in place.
    Added,
    /// The key is absent and adding it needs this many more heap bytes;
    /// nothing was changed. Reserve them, then call `grow_and_insert`.
    Grow(usize),
    /// The set is a sketch and counted the key; `changed` says whether the
    /// sketch visibly changed, which proves the key new (tables never
    /// answer this).
    Estimated {
        /// Whether the sketch changed.
        changed: bool,
    },
}

/// A set of non-zero `u64` hashes.
#[derive(Debug, Clone)]
pub(crate) struct VisitorTable {
    slots: Box<[u64]>,
    len: usize,
}

impl VisitorTable {
    /// An empty table with room for `capacity` slots (at least the minimum).
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            slots: vec![0; capacity.max(MIN_CAPACITY)].into_boxed_slice(),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes held: exactly the slot array.
    pub(crate) fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        ((u128::from(key) * self.slots.len() as u128) >> 64) as usize
    }

    /// How far slot `slot` is from `key`'s home, going forwards with
    /// wrap-around.
    #[inline]
    fn distance(&self, key: u64, slot: usize) -> usize {
        let home = self.home(key);
        if slot >= home {
            slot - home
        } else {
            slot + self.slots.len() - home
        }
    }

    #[inline]
    fn next(&self, slot: usize) -> usize {
        if slot + 1 == self.slots.len() {
            0
        } else {
            slot + 1
        }
    }

    fn needs_growth(&self) -> bool {
        (self.len + 1) * MAX_LOAD_DEN > self.slots.len() * MAX_LOAD_NUM
    }

    /// Whether `key` is in the set.
    #[cfg(test)]
    pub(crate) fn contains(&self, key: u64) -> bool {
        debug_assert_ne!(key, 0);
        let mut slot = self.home(key);
        let mut dist = 0;
        loop {
            let resident = self.slots[slot];
            if resident == key {
                return true;
            }
            if resident == 0 || self.distance(resident, slot) < dist {
                return false;
            }
            slot = self.next(slot);
            dist += 1;
        }
    }

    /// Adds `key` if that needs no allocation; see [`Insert`].
    #[inline]
    pub(crate) fn insert(&mut self, key: u64) -> Insert {
        debug_assert_ne!(key, 0);
        let mut slot = self.home(key);
        let mut dist = 0;
        // Phase 1: a lookup, which stops at the key, an empty slot, or the
        // first resident closer to its home than we are to ours.
        loop {
            let resident = self.slots[slot];
            if resident == key {
                return Insert::Present;
            }
            if resident == 0 || self.distance(resident, slot) < dist {
                break;
            }
            slot = self.next(slot);
            dist += 1;
        }
        if self.needs_growth() {
            let grown = next_capacity(self.slots.len()) * std::mem::size_of::<u64>();
            return Insert::Grow(grown - self.heap_bytes());
        }
        self.displace_from(slot, key);
        self.len += 1;
        Insert::Added
    }

    /// Grows the table by one step and adds `key`, which must be absent
    /// (as an [`Insert::Grow`] answer said).
    pub(crate) fn grow_and_insert(&mut self, key: u64) {
        self.grow();
        self.place_new(key);
    }

    /// Adds `key`, growing as needed; returns whether it was new. For
    /// building tables whose memory is accounted by the caller.
    pub(crate) fn insert_growing(&mut self, key: u64) -> bool {
        match self.insert(key) {
            Insert::Present => false,
            Insert::Added => true,
            Insert::Grow(_) => {
                self.grow_and_insert(key);
                true
            }
            Insert::Estimated { changed } => changed,
        }
    }

    /// Places `key`, known to be absent, at `slot`, pushing the residents
    /// from there on one step further, as far as the next empty slot.
    fn displace_from(&mut self, mut slot: usize, mut carried: u64) {
        loop {
            let resident = std::mem::replace(&mut self.slots[slot], carried);
            if resident == 0 {
                return;
            }
            carried = resident;
            slot = self.next(slot);
        }
    }

    /// Inserts a key known to be absent, with room known to be there.
    fn place_new(&mut self, key: u64) {
        let mut slot = self.home(key);
        let mut dist = 0;
        loop {
            let resident = self.slots[slot];
            if resident == 0 || self.distance(resident, slot) < dist {
                break;
            }
            slot = self.next(slot);
            dist += 1;
        }
        self.displace_from(slot, key);
        self.len += 1;
    }

    fn grow(&mut self) {
        let grown = vec![0; next_capacity(self.slots.len())].into_boxed_slice();
        let old = std::mem::replace(&mut self.slots, grown);
        self.len = 0;
        for key in old.iter().copied().filter(|&k| k != 0) {
            self.place_new(key);
        }
    }

    /// The keys, in table order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().copied().filter(|&k| k != 0)
    }
}

fn next_capacity(capacity: usize) -> usize {
    capacity + capacity / 2
}

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

    #[test]
    fn grows_by_half_and_stays_under_max_load() {
        let mut t = VisitorTable::with_capacity(MIN_CAPACITY);
        for i in 0..100_000 {
            assert!(t.insert_growing(mix(i)));
            assert!(t.len() * MAX_LOAD_DEN <= t.slots.len() * MAX_LOAD_NUM);
        }
        assert_eq!(t.len(), 100_000);
        let bytes_per_key = t.heap_bytes() as f64 / t.len() as f64;
        assert!(bytes_per_key < 8.0 * 1.5 * 8.0 / 7.0, "{bytes_per_key}");
        for i in 0..100_000 {
            assert!(t.contains(mix(i)));
            assert!(!t.insert_growing(mix(i)));
        }
        assert!(!t.contains(mix(100_001)));
    }

    #[test]
    fn keys_homed_at_the_end_wrap_around() {
        let mut t = VisitorTable::with_capacity(MIN_CAPACITY);
        for k in [u64::MAX, u64::MAX - 1, u64::MAX - 2, u64::MAX - 3] {
            assert!(t.insert_growing(k));
        }
        for k in [u64::MAX, u64::MAX - 1, u64::MAX - 2, u64::MAX - 3] {
            assert!(t.contains(k));
        }
        assert!(t.insert_growing(1));
        assert!(t.contains(1));
        assert!(!t.contains(2));
    }

    proptest! {
        #[test]
        fn behaves_like_a_hash_set(keys in proptest::collection::vec(
            prop_oneof![1u64..64, any::<u64>().prop_map(|k| k.max(1)), Just(u64::MAX)],
            0..400,
        )) {
            let mut table = VisitorTable::with_capacity(MIN_CAPACITY);
            let mut model = HashSet::new();
            for k in keys {
                prop_assert_eq!(table.insert_growing(k), model.insert(k));
                prop_assert_eq!(table.len(), model.len());
            }
            let mut held: Vec<u64> = table.iter().collect();
            held.sort_unstable();
            let mut expected: Vec<u64> = model.into_iter().collect();
            expected.sort_unstable();
            prop_assert_eq!(held, expected);
        }
    }
}
