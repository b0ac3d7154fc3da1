//! The core's promise that recording a visitor a page already has, or
//! asking for a page's count, allocates nothing: checked with the counting
//! global allocator rather than taken on trust.

use tracker_benches::counting_alloc::CountingAlloc;
use tracker_core::{MemoryPolicy, Tracker};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

/// Pages of every size class: inline sets, small full tables, large ones.
fn events() -> Vec<(String, String)> {
    let mut events = Vec::new();
    for page in 0..200 {
        let url = format!("https://shop.example.com/p/{page}?ref=mail");
        for visitor in 0..(page * 7 % 400 + 1) {
            events.push((format!("visitor-{visitor:08}"), url.clone()));
        }
    }
    events
}

#[test]
fn repeat_visits_and_counts_allocate_nothing() {
    let events = events();
    for budget in [None, Some(64 << 20)] {
        let mut builder = Tracker::builder().stripes(8);
        if let Some(bytes) = budget {
            builder = builder
                .max_memory(bytes)
                .memory_policy(MemoryPolicy::Sketch);
        }
        let tracker = builder.build().unwrap();
        for (visitor, url) in &events {
            tracker.record(visitor, url).unwrap();
        }
        // Single-threaded test binary: nothing else allocates meanwhile
        // (the test harness runs this test alone on its thread, and the
        // counts are read before and after on this thread).
        let before = ALLOC.allocations();
        for (visitor, url) in &events {
            assert!(!tracker.record(visitor, url).unwrap().is_new());
        }
        for (_, url) in events.iter().step_by(50) {
            assert!(tracker.distinct(url).unwrap().visitors > 0);
        }
        let made = ALLOC.allocations() - before;
        assert_eq!(
            made, 0,
            "{made} allocations on the hot path (budget {budget:?})"
        );
    }
}
