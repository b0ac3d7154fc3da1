//! Several threads recording overlapping visitors and pages while others
//! query: the final counts must equal a model built from the same events.

use std::sync::atomic::{AtomicBool, Ordering};

use test_support::model::Distinct;
use tracker_core::Tracker;

const THREADS: usize = 4;
const EVENTS_PER_THREAD: usize = 50_000;
const PAGES: u64 = 300;
const VISITORS: u64 = 5_000;

/// Thread `t`'s `i`th event: a deterministic mix, so threads overlap on
/// both pages and visitors.
fn event(t: usize, i: usize) -> (String, String) {
    let x = (t * EVENTS_PER_THREAD + i) as u64;
    let mut z = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z ^= z >> 29;
    let page = z % PAGES;
    // Skew visitors per page so page sizes span inline to large tables.
    let visitor = (z >> 20) % (VISITORS / (page + 1) + 1);
    (
        format!("v{visitor}"),
        format!("https://example.com/p/{page}"),
    )
}

#[test]
fn concurrent_records_equal_the_model() {
    let tracker = Tracker::builder().stripes(8).build().unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let tracker = &tracker;
                scope.spawn(move || {
                    for i in 0..EVENTS_PER_THREAD {
                        let (visitor, url) = event(t, i);
                        tracker.record(&visitor, &url).unwrap();
                    }
                })
            })
            .collect();
        // A reader: counts only grow while nothing expires or is evicted.
        scope.spawn(|| {
            let mut last = vec![0u64; PAGES as usize];
            while !done.load(Ordering::Relaxed) {
                for (page, seen) in last.iter_mut().enumerate().step_by(7) {
                    let now = tracker
                        .distinct(&format!("https://example.com/p/{page}"))
                        .unwrap()
                        .visitors;
                    assert!(now >= *seen, "page {page} went from {seen} to {now}");
                    *seen = now;
                }
                let _ = tracker.top(5);
                let _ = tracker.stats();
            }
        });
        for writer in writers {
            writer.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
    });

    let mut model = Distinct::<String>::default();
    for t in 0..THREADS {
        for i in 0..EVENTS_PER_THREAD {
            let (visitor, url) = event(t, i);
            model.record(visitor, url);
        }
    }
    for (url, count) in model.counts() {
        assert_eq!(tracker.distinct(&url).unwrap().visitors, count, "{url}");
    }
    let stats = tracker.stats();
    assert_eq!((stats.pages, stats.pairs), (model.pages(), model.pairs()));
    let got: Vec<(String, u64)> = tracker
        .top(3)
        .into_iter()
        .map(|r| (r.url, r.distinct.visitors))
        .collect();
    assert_eq!(got, model.top(3));
}

/// With a TTL and a clock moving under the writers, while another thread
/// sweeps and reads: no count ever exceeds the visitors sent, pages
/// expire while the writers run, and once everything has expired sweeping
/// leaves an empty tracker holding only its fixed bytes.
///
/// The writers move the clock themselves, one second per thousand of
/// their events, so the outcome does not depend on how the threads are
/// scheduled: when they are done the clock has moved exactly
/// `THREADS * EVENTS_PER_THREAD / 1000` seconds, and each writer's first
/// page was recorded at most `(THREADS - 1) * EVENTS_PER_THREAD / 1000`
/// seconds after the start (before its own advances), which is more than
/// the TTL before the end.
#[test]
fn concurrent_records_with_expiry_and_sweeps() {
    use std::sync::Arc;
    use std::time::Duration;
    use tracker_core::{ManualClock, Timestamp};

    const TTL_S: u64 = 30;
    const EVENTS_PER_SECOND: usize = 1_000;
    let first_page = |t: usize| format!("https://example.com/first/{t}");
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let tracker = Tracker::builder()
        .stripes(4)
        .ttl(Duration::from_secs(TTL_S))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let last_first_page_s = (THREADS - 1) * EVENTS_PER_THREAD / EVENTS_PER_SECOND;
    let end_s = THREADS * EVENTS_PER_THREAD / EVENTS_PER_SECOND;
    assert!(last_first_page_s as u64 + TTL_S <= end_s as u64);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (tracker, clock) = (&tracker, &clock);
                s.spawn(move || {
                    tracker.record("first", &first_page(t)).unwrap();
                    for i in 0..EVENTS_PER_THREAD {
                        let (visitor, url) = event(t, i);
                        tracker.record(&visitor, &url).unwrap();
                        if (i + 1) % EVENTS_PER_SECOND == 0 {
                            clock.advance(Duration::from_secs(1));
                        }
                    }
                })
            })
            .collect();
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                tracker.sweep(64);
                for page in [0, 1, 150] {
                    let url = format!("https://example.com/p/{page}");
                    let count = tracker.distinct(&url).unwrap().visitors;
                    assert!(count <= VISITORS, "{url}: {count}");
                }
                std::thread::yield_now();
            }
        });
        for writer in writers {
            writer.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
    });
    // The first pages expired before the writers were done.
    for t in 0..THREADS {
        assert_eq!(tracker.distinct(&first_page(t)).unwrap().visitors, 0);
    }
    clock.advance(Duration::from_secs(TTL_S));
    while tracker.stats().pages > 0 {
        assert!(tracker.sweep(1 << 16).buckets > 0);
    }
    let stats = tracker.stats();
    assert_eq!((stats.pages, stats.pairs), (0, 0));
    assert!(stats.expired_pages >= THREADS as u64, "{stats:?}");
    assert_eq!(stats.bytes, tracker.config().fixed_bytes());
}
