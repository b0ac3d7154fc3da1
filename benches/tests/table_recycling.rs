//! Visitor tables that grow reuse the buffers their stripe's tables grew
//! out of (`tracker-core/src/set/table_pool.rs`), instead of one
//! allocation and one free per growth: checked by counting allocations
//! with the counting global allocator.

use tracker_benches::counting_alloc::CountingAlloc;
use tracker_core::Tracker;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

/// Allocations made while recording `visitors` new visitors on each of
/// `pages` pages, one page after the other, after as many pages before
/// (a pool keeps at most a byte per pair its stripe holds): per page.
fn allocations_per_page(tracker: &Tracker, pages: usize, visitors: usize) -> f64 {
    let events: Vec<(String, Vec<String>)> = (0..2 * pages)
        .map(|page| {
            let visitors = (0..visitors).map(|v| format!("v{page}-{v}")).collect();
            (format!("https://example.com/p/{page}"), visitors)
        })
        .collect();
    let record_page = |(url, visitors): &(String, Vec<String>)| {
        for visitor in visitors {
            assert!(tracker.record(visitor, url).unwrap().is_new());
        }
    };
    events[..pages].iter().for_each(record_page);
    // Single-threaded test binary: nothing else allocates meanwhile.
    let before = ALLOC.allocations();
    for page in &events[pages..] {
        record_page(page);
    }
    (ALLOC.allocations() - before) as f64 / pages as f64
}

#[test]
fn growing_tables_reuse_the_buffers_of_the_last_ones() {
    // One stripe: every page's tables go through the same sizes (3 to
    // 78 slots for 64 visitors, 17 growths), each size's buffer left by
    // the page before. Without the pool each growth allocates.
    let tracker = Tracker::builder().stripes(1).build().unwrap();
    let per_page = allocations_per_page(&tracker, 200, 64);
    // The page's URL, its canonical form, and now and then the page
    // table's growth.
    assert!(per_page < 3.0, "{per_page} allocations per page");
    // With a budget too (the pooled buffers are accounted in it).
    let tracker = Tracker::builder()
        .stripes(1)
        .max_memory(64 << 20)
        .build()
        .unwrap();
    let per_page = allocations_per_page(&tracker, 200, 64);
    assert!(per_page < 3.0, "{per_page} allocations per page");
    assert_eq!(tracker.stats().pairs, 400 * 64);
    // With a TTL (in this test, as the counts are of the whole process):
    // the first table comes with its boxed horizon, three allocations a
    // page more, not pooled; its growths (to 75 slots) then take the
    // buffers the page before left (6 allocations a page; 11 without
    // the pool).
    let tracker = Tracker::builder()
        .stripes(1)
        .ttl(std::time::Duration::from_secs(3600))
        .build()
        .unwrap();
    let per_page = allocations_per_page(&tracker, 200, 64);
    assert!(per_page < 7.0, "{per_page} allocations per page with a TTL");
    assert_eq!(tracker.stats().pairs, 400 * 64);
}
