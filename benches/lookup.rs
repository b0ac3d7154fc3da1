// Run: cargo bench -p tracker-benches --bench lookup
//! The core's `record` and `distinct` per call in the regime of the HTTP
//! load bench (`benches/http.sh`): 1,000 pages, a new visitor per record,
//! and between two calls other memory touched (a network stack's buffers
//! in the service), so that a page's lines have left the caches before
//! its next visit. It times what the HTTP benches cannot resolve on a
//! shared machine: the page lookup's dependent cache misses.
//!
//! Between calls it writes `POLLUTE_KIB` KiB (default 16) of lines
//! scattered over 64 MiB; only the calls are timed. Each window of 1,000
//! calls gives a mean, and it prints the 10th percentile and the median of
//! those means (the windows the scheduler did not cut are the low ones):
//! for `record` of a new pair, `record` of a pair already there (the
//! lookup and the probe, no insert) and `distinct`. Run two
//! builds in turn for an A/B.

use std::hint::black_box;
use std::time::Instant;

use tracker_benches::full_run;
use tracker_core::Tracker;

const PAGES: usize = 1_000;

fn main() {
    let full = full_run();
    let env = |name: &str, default: usize| {
        std::env::var(name).map_or(default, |v| v.parse().expect("a number"))
    };
    let bytes = env("POLLUTE_KIB", 16) * 1024;
    let (warm, calls) = if full {
        (300_000, 100_000)
    } else {
        (2_000, 2_000)
    };
    let urls: Vec<String> = (0..PAGES)
        .map(|i| format!("https://example.com/page/{i}"))
        .collect();
    let tracker = Tracker::new();
    for i in 0..warm {
        tracker
            .record(&format!("visitor-{i}"), &urls[i % PAGES])
            .unwrap();
    }
    let mut junk = vec![0u64; 8 << 20];
    let mut at = 0;
    let mut pollute = || {
        // A multiplicative step: no streaming detection keeps these lines
        // out of the caches.
        for _ in 0..bytes / 64 {
            junk[at] = junk[at].wrapping_add(1);
            at = (at + 8 * 40_503) % junk.len();
        }
    };
    let new: Vec<String> = (warm..warm + calls)
        .map(|i| format!("visitor-{i}"))
        .collect();
    let mut time = |call: &mut dyn FnMut(usize)| {
        let mut windows = Vec::with_capacity(calls / 1000);
        let mut spent = 0;
        for i in 0..calls {
            pollute();
            let start = Instant::now();
            call(i);
            spent += start.elapsed().as_nanos();
            if i % 1000 == 999 {
                windows.push(spent as f64 / 1000.0);
                spent = 0;
            }
        }
        windows.sort_by(f64::total_cmp);
        (windows[windows.len() / 10], windows[windows.len() / 2])
    };
    let fresh = time(&mut |i| {
        black_box(tracker.record(&new[i], &urls[i % PAGES]).unwrap());
    });
    // `warm` is a multiple of `PAGES`: `new[i]` is on page `i % PAGES` now.
    let again = time(&mut |i| {
        black_box(tracker.record(&new[i], &urls[i % PAGES]).unwrap());
    });
    let count = time(&mut |i| {
        black_box(tracker.distinct(&urls[i % PAGES]).unwrap());
    });
    println!(
        "ns per call, {} KiB touched between calls (p10 / median of 1,000-call windows):",
        bytes / 1024
    );
    println!("record, new pair    {:7.1} {:7.1}", fresh.0, fresh.1);
    println!("record, known pair  {:7.1} {:7.1}", again.0, again.1);
    println!("distinct            {:7.1} {:7.1}", count.0, count.1);
}
