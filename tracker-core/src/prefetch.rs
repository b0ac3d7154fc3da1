//! A cache-line prefetch hint, so that misses overlap instead of stalling
//! one after another:
//! - the batch record asks for each event's page-table bucket, then for
//!   the lines its inserts will touch, some events ahead (see
//!   `Tracker::record_batch`);
//! - a record asks for its page's bucket before taking the stripe's lock
//!   (see `TableHint`), and for the visitor table's lines while it
//!   compares the page's URL (`VisitorSet::prefetch_insert`);
//! - a record with a TTL asks for its timed table's home slot before the
//!   table's header arrives (`VisitorSet::prefetch_home`).
//!
//! On targets without the instruction it does nothing.
#![allow(unsafe_code)]

/// Asks the CPU to bring the cache line holding `at` into every level of
/// its cache. A hint: it never faults and changes no value.
#[inline(always)]
pub(crate) fn prefetch<T>(at: &T) {
    prefetch_address(at as *const T as usize);
}

/// [`prefetch`] of whatever is at `address` now, which need not be live
/// memory: the record path asks for a page-table bucket at an address
/// computed, before taking the stripe's lock, from where the table was
/// when last published (see `TableHint`), and the table may have moved.
#[inline(always)]
pub(crate) fn prefetch_address(address: usize) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    // SAFETY: `_mm_prefetch` is `unsafe` only for its `#[target_feature(enable
    // = "sse")]`, which the cfg above proves enabled (SSE is in every x86_64
    // baseline). PREFETCHT0 reads no value into the program and never
    // faults, whatever the address: mapped or not, freed or live.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::without_provenance(address));
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let _ = address;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prefetching changes nothing it points at. Also run, with the
    /// batch tests, under AddressSanitizer: `RUSTFLAGS=-Zsanitizer=address
    /// cargo +nightly test -p tracker-core --target x86_64-unknown-linux-gnu
    /// --lib -- prefetch batch` (and `--test it -- batch`).
    #[test]
    fn prefetch_is_only_a_hint() {
        let words = vec![7u64; 64];
        for word in &words {
            prefetch(word);
        }
        prefetch(&words);
        // Addresses that are no live memory: never a fault.
        for address in [0, 8, usize::MAX, words.as_ptr() as usize + (1 << 40)] {
            prefetch_address(address);
        }
        assert!(words.iter().all(|&w| w == 7));
    }
}
