//! The promise that opening a data directory needs little more heap than
//! the state it restores (at most 1.2x, `docs/BENCHMARKS.md` has the 10M
//! pair figures of `benches/restart.rs`), whether the state comes from the
//! snapshot or from replaying the log: checked with the counting global
//! allocator, on a log several times larger than the state, so that
//! reading a segment whole (as recovery once did) would fail it.

use tracker_benches::counting_alloc::CountingAlloc;
use tracker_core::Tracker;
use tracker_core::persist::{DurableTracker, FsyncPolicy, LogOptions};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

const PAGES: usize = 1_000;
const VISITORS_PER_PAGE: usize = 150;

#[test]
fn opening_a_snapshot_and_a_log_peaks_within_1_2x_of_the_restored_state() {
    let dir = tempfile::tempdir().unwrap();
    let fast = LogOptions::default().sync(FsyncPolicy::Off);
    let (durable, _) = DurableTracker::open(dir.path(), Tracker::builder(), fast).unwrap();
    let url = |page: usize| format!("https://shop.example.com/catalogue/item/{page:06}?ref=mail");
    for visitor in 0..VISITORS_PER_PAGE {
        // A snapshot after the first third; the rest only in the log.
        if visitor == VISITORS_PER_PAGE / 3 {
            durable.snapshot().unwrap();
        }
        for page in 0..PAGES {
            durable
                .record(&format!("visitor-{visitor}"), &url(page))
                .unwrap();
        }
    }
    drop(durable);
    let log_bytes: u64 = std::fs::read_dir(dir.path().join("log"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();

    // The test harness runs this test alone in its binary: nothing else
    // allocates meanwhile but the event log's own threads, which open
    // starts and which count as part of it.
    let before = ALLOC.live();
    ALLOC.reset_peak();
    let (durable, report) =
        DurableTracker::open(dir.path(), Tracker::builder(), LogOptions::default()).unwrap();
    let peak = ALLOC.peak() - before;
    let after = ALLOC.live() - before;
    let pairs = (PAGES * VISITORS_PER_PAGE) as u64;
    assert_eq!(durable.tracker().stats().pairs, pairs);
    assert!(report.replayed >= pairs * 2 / 3, "{report:?}");
    assert!(
        log_bytes > 2 * after as u64,
        "the log ({log_bytes} B) must dwarf the state ({after} B) for the check to mean anything"
    );
    assert!(
        peak as f64 <= 1.2 * after as f64,
        "open peaked at {peak} B for {after} B restored ({:.2}x)",
        peak as f64 / after as f64
    );
}
