//! A cache-line prefetch hint, so that misses overlap instead of stalling
//! one after another:
//! - the batch record asks for each event's page-table bucket, then for
//!   the lines its inserts will touch, some events ahead (see
//!   `Tracker::record_batch`);
//! - a record or a `distinct` asks for its page's bucket before taking
//!   the stripe's lock (see `TableHint`), and for the set's lines it reads
//!   next while it compares the page's URL (`VisitorSet::prefetch_insert`,
//!   `VisitorSet::prefetch_count`);
//! - a record with a TTL asks for its timed table's home slot before the
//!   table's header arrives (`VisitorSet::prefetch_home`);
//! - a range or series scan over a page's table asks for each pair's run
//!   of buckets some slots ahead (`Runs::prefetch_run`);
//! - a record or a `distinct` asks for its stripe's lock line, to write
//!   (a read lock writes it too), as soon as it knows the stripe
//!   ([`prefetch_for_write`]).
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

/// Asks the CPU for the cache line holding `at` in the state a write
/// needs (x86 `PREFETCHW`): a record prefetches its stripe's lock line
/// as soon as it knows the stripe (issue 18). That line was usually last
/// written by the other core; a read prefetch would bring a shared copy,
/// and the lock's compare-and-swap would still wait for the other core to
/// give its copy up. A hint like [`prefetch`]: it never faults and changes
/// no value. Where the CPU lacks the instruction (see [`detect_prefetchw`]),
/// before that ran, and under Miri, it is a read prefetch.
#[inline(always)]
pub(crate) fn prefetch_for_write<T>(at: &T) {
    let address = at as *const T as usize;
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if PREFETCHW.load(std::sync::atomic::Ordering::Relaxed) {
        // SAFETY: PREFETCHW, which the flag above proves the CPU has,
        // reads no value into the program, writes none, and never faults,
        // whatever the address; it changes no register and no flag.
        // (`_mm_prefetch::<_MM_HINT_ET0>` emits it only in a build with
        // the `prfchw` target feature on, which the default x86_64 target
        // is not, and std cannot detect that feature on stable Rust.)
        unsafe {
            std::arch::asm!(
                "prefetchw [{}]",
                in(reg) address,
                options(nostack, preserves_flags, readonly)
            );
        }
        return;
    }
    prefetch_address(address);
}

/// Whether the CPU has `PREFETCHW`, once [`detect_prefetchw`] ran (a
/// plain `std` atomic even under `shuttle`: it orders nothing).
#[cfg(all(target_arch = "x86_64", not(miri)))]
static PREFETCHW: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks the CPU whether it has `PREFETCHW` (CPUID `0x8000_0001`, ECX bit
/// 8, "3DNowPrefetch"; an x86_64 CPU without it may fault on it), for
/// [`prefetch_for_write`]. Called when a tracker is built, so that the
/// record path reads a flag and calls nothing.
pub(crate) fn detect_prefetchw() {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        use std::arch::x86_64::__cpuid;
        // SAFETY: CPUID is in every x86_64 CPU; leaf 0x8000_0001 is asked
        // only when leaf 0x8000_0000 says it exists. (`unsafe` for the
        // older compilers `rust-version` allows; newer ones made `__cpuid`
        // safe.)
        #[allow(unused_unsafe)]
        let has = unsafe {
            __cpuid(0x8000_0000).eax >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & (1 << 8) != 0
        };
        PREFETCHW.store(has, std::sync::atomic::Ordering::Relaxed);
    }
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
        prefetch_for_write(&words[9]);
        detect_prefetchw();
        prefetch_for_write(&words[10]);
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        if let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") {
            assert_eq!(
                PREFETCHW.load(std::sync::atomic::Ordering::Relaxed),
                info.contains(" 3dnowprefetch")
            );
        }
        // Addresses that are no live memory: never a fault.
        for address in [0, 8, usize::MAX, words.as_ptr() as usize + (1 << 40)] {
            prefetch_address(address);
        }
        assert!(words.iter().all(|&w| w == 7));
    }
}
