//! Several threads recording overlapping visitors and pages while others
//! query: the final counts must equal a model built from the same events.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

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

    let mut model: HashMap<String, HashSet<String>> = HashMap::new();
    for t in 0..THREADS {
        for i in 0..EVENTS_PER_THREAD {
            let (visitor, url) = event(t, i);
            model.entry(url).or_default().insert(visitor);
        }
    }
    for (url, visitors) in &model {
        assert_eq!(
            tracker.distinct(url).unwrap().visitors,
            visitors.len() as u64,
            "{url}"
        );
    }
    let stats = tracker.stats();
    assert_eq!(stats.pages, model.len() as u64);
    assert_eq!(
        stats.pairs,
        model.values().map(|v| v.len() as u64).sum::<u64>()
    );
    let top = tracker.top(3);
    let mut expected: Vec<(u64, &String)> =
        model.iter().map(|(u, v)| (v.len() as u64, u)).collect();
    expected.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let got: Vec<(u64, &String)> = top.iter().map(|r| (r.distinct.visitors, &r.url)).collect();
    assert_eq!(got, expected[..3].to_vec());
}

/// With a TTL and a clock moving under the writers, while another thread
/// sweeps: no count ever exceeds the visitors sent, and once everything
/// has expired a sweep pass leaves an empty tracker holding only its
/// fixed bytes.
#[test]
fn concurrent_records_with_expiry_and_sweeps() {
    use std::sync::Arc;
    use std::time::Duration;
    use tracker_core::{ManualClock, Timestamp};

    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let tracker = Tracker::builder()
        .stripes(4)
        .ttl(Duration::from_secs(30))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let tracker = &tracker;
                s.spawn(move || {
                    for i in 0..EVENTS_PER_THREAD {
                        let (visitor, url) = event(t, i);
                        tracker.record(&visitor, &url).unwrap();
                    }
                })
            })
            .collect();
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                clock.advance(Duration::from_secs(1));
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
    assert!(tracker.stats().expirations > 0, "{:?}", tracker.stats());
    clock.advance(Duration::from_secs(30));
    while tracker.stats().pages > 0 {
        assert!(tracker.sweep(1 << 16).buckets > 0);
    }
    let stats = tracker.stats();
    assert_eq!((stats.pages, stats.pairs), (0, 0));
    assert_eq!(stats.bytes, tracker.config().fixed_bytes());
}
