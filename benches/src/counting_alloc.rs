//! A global allocator that counts live and peak heap bytes, so memory
//! figures are measured rather than estimated.
//!
//! It counts the bytes *requested*; the system allocator adds its own
//! per-block overhead (8 to 24 bytes per small block for glibc), which that
//! figure leaves out. That flatters designs made of many small blocks, such
//! as the naive map's strings, so ratios on requested bytes are
//! conservative. Beside it, it keeps a second count through a model of
//! glibc's block sizes ([`glibc_block_size`]): an estimate, not a
//! measurement, of what the heap really spends.
//!
//! Install it in a bench binary with
//! `#[global_allocator] static ALLOC: CountingAlloc = CountingAlloc::new();`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Forwards to [`System`] and keeps count of live bytes, their peak, and
/// the number of allocations.
#[derive(Debug, Default)]
pub struct CountingAlloc {
    live: AtomicUsize,
    peak: AtomicUsize,
    allocations: AtomicUsize,
    /// Live bytes as glibc would spend them (see [`glibc_block_size`]).
    modelled: AtomicUsize,
}

impl CountingAlloc {
    /// A counter at zero (`const` so it can be a `static`).
    pub const fn new() -> Self {
        Self {
            live: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            allocations: AtomicUsize::new(0),
            modelled: AtomicUsize::new(0),
        }
    }

    /// Bytes currently allocated through this allocator.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// The most bytes live at once since the last [`reset_peak`](Self::reset_peak).
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Live bytes including the block overhead glibc's malloc would add,
    /// by [`glibc_block_size`]: a model, not a measurement.
    pub fn live_modelled(&self) -> usize {
        self.modelled.load(Ordering::Relaxed)
    }

    /// Allocations made so far (reallocations count as one more).
    pub fn allocations(&self) -> usize {
        self.allocations.load(Ordering::Relaxed)
    }

    /// Starts a new peak measurement from the current live bytes.
    pub fn reset_peak(&self) {
        self.peak.store(self.live(), Ordering::Relaxed);
    }

    fn grew(&self, layout: Layout) {
        // Relaxed is enough: the counters order nothing else, and the
        // benches read them from the thread that did the allocating.
        let bytes = layout.size();
        let live = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(live, Ordering::Relaxed);
        self.allocations.fetch_add(1, Ordering::Relaxed);
        self.modelled
            .fetch_add(glibc_block_size(layout), Ordering::Relaxed);
    }

    fn shrank(&self, layout: Layout) {
        self.live.fetch_sub(layout.size(), Ordering::Relaxed);
        self.modelled
            .fetch_sub(glibc_block_size(layout), Ordering::Relaxed);
    }
}

/// The bytes glibc's malloc (64-bit) takes from the heap for a request:
/// an 8-byte header, rounded up to 16 bytes, at least 32; from 128 KiB up
/// its own mmap, rounded to whole 4 KiB pages. Over-aligned requests are
/// charged their alignment on top (glibc's worst case for them).
pub fn glibc_block_size(layout: Layout) -> usize {
    const MMAP_THRESHOLD: usize = 128 * 1024;
    let size = layout.size()
        + if layout.align() > 16 {
            layout.align()
        } else {
            0
        };
    if size >= MMAP_THRESHOLD {
        (size + 16).next_multiple_of(4096)
    } else {
        (size + 8).next_multiple_of(16).max(32)
    }
}

// SAFETY: every method forwards to `System` with the caller's own pointer
// and layout, unchanged, so `System`'s guarantees are passed through
// as they are; the counting touches only atomics and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract (non-zero size),
        // which is `System.alloc`'s contract too.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            self.grew(layout);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            self.grew(layout);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` came from this allocator, which
        // got it from `System` with this same `layout`.
        unsafe { System.dealloc(ptr, layout) };
        self.shrank(layout);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` and `layout` are as in `dealloc`, and the caller
        // guarantees `new_size` is valid for `layout`'s alignment.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // On failure the old block stays allocated and counted.
            self.shrank(layout);
            // `new_size` with `layout`'s alignment is the caller's promise.
            self.grew(Layout::from_size_align(new_size, layout.align()).unwrap_or(layout));
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_model_matches_its_rules() {
        let block = |size| glibc_block_size(Layout::from_size_align(size, 8).unwrap());
        assert_eq!(block(1), 32);
        assert_eq!(block(24), 32);
        assert_eq!(block(25), 48);
        assert_eq!(block(36), 48);
        assert_eq!(block(1 << 20), (1 << 20) + 4096);
    }
}
