//! The keyed 64-bit visitor hash: the only form in which a visitor id is
//! ever kept.
//!
//! The function is XXH3-64 with the per-deployment key as its seed. XXH3 is
//! a published, frozen algorithm (its output is specified byte for byte and
//! identical on every platform and endianness), so hashes stay comparable
//! across versions of this crate and can be persisted. `ahash` and std's
//! SipHash make no such promise, which is why they only key in-memory maps.
//!
//! The seed keeps ids of one deployment from being linkable to another's
//! hashes and makes it costly to aim many ids at one slot. It is not a
//! cryptographic MAC: a visitor id that needs secrecy must be pseudonymised
//! before it reaches the tracker.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Hashes visitor ids under one deployment key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VisitorHasher {
    key: u64,
}

impl VisitorHasher {
    pub(crate) fn new(key: u64) -> Self {
        Self { key }
    }

    /// The visitor's hash; never 0, because 0 marks an empty slot in the
    /// visitor tables. Folding 0 onto 1 adds a 2^-64 chance of a collision.
    #[inline]
    pub(crate) fn hash(&self, visitor: &[u8]) -> u64 {
        xxh3_64_with_seed(visitor, self.key).max(1)
    }
}

/// A fresh random deployment key.
///
/// std's `RandomState` is seeded from the operating system's random source
/// once per process and then varied per instance; hashing a counter with a
/// fresh instance yields unpredictable 64-bit keys without adding a
/// dependency on a random-number crate for this one use.
pub(crate) fn random_key() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    RandomState::new().hash_one(CALLS.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the function: a change here would silently split every persisted
    /// count in two, so these values must never change. They come from the
    /// reference C implementation (through Python's `xxhash` package), not
    /// from this crate, and cover the short, medium and long code paths.
    #[test]
    fn hash_is_stable() {
        assert_eq!(xxh3_64_with_seed(b"", 0), 0x2D06_8005_38D3_94C2);
        let h = VisitorHasher::new(0x5eed);
        assert_eq!(h.hash(b"visitor-1"), 0xD571_B1CA_E1DF_680C);
        assert_eq!(h.hash("visiteur-é".as_bytes()), 0xDBFF_4635_CB41_5EA4);
        let long: Vec<u8> = (0..=255u8).chain(*b"visitor").collect();
        assert_eq!(h.hash(&long), 0xB5E2_AC0D_8907_A1D3);
    }

    #[test]
    fn keys_differ_and_change_the_hash() {
        let (a, b) = (random_key(), random_key());
        assert_ne!(a, b);
        assert_ne!(
            VisitorHasher::new(a).hash(b"v"),
            VisitorHasher::new(b).hash(b"v")
        );
    }
}
