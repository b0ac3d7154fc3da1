// Run: cargo bench -p tracker-benches --bench pressure
//! The memory budget under an adversarial stream: 20M records of 2M
//! visitors over 500k Zipf-distributed pages into a 64 MiB budget, once per
//! policy and once with no budget. For each: the most bytes the tracker
//! accounted, the most bytes the allocator saw live (the counting global
//! allocator, events excluded), how many pages stayed exact, and the
//! ingest rate.

use std::time::Instant;

use tracker_benches::counting_alloc::CountingAlloc;
use tracker_benches::full_run;
use tracker_benches::ratios::markdown_table;
use tracker_benches::workload::ZipfWorkload;
use tracker_core::{MemoryPolicy, Tracker, TrackerError};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

const MIB: f64 = 1024.0 * 1024.0;

struct Run {
    label: &'static str,
    seconds: f64,
    peak_accounted: u64,
    peak_allocated: usize,
    refused: u64,
    stats: tracker_core::Stats,
}

fn ingest(
    workload: &ZipfWorkload,
    label: &'static str,
    budget: Option<(u64, MemoryPolicy)>,
) -> Run {
    let mut builder = Tracker::builder();
    if let Some((bytes, policy)) = budget {
        builder = builder.max_memory(bytes).memory_policy(policy);
    }
    let before = ALLOC.live();
    ALLOC.reset_peak();
    let tracker = builder.build().expect("valid settings");
    let (mut refused, mut peak_accounted) = (0, 0);
    let started = Instant::now();
    for (i, (visitor, url)) in workload.events.iter().enumerate() {
        match tracker.record(visitor, url) {
            Ok(_) => {}
            Err(TrackerError::MemoryFull { .. }) => refused += 1,
            Err(other) => panic!("the workload holds only valid events: {other}"),
        }
        if i % 4096 == 0 {
            peak_accounted = peak_accounted.max(tracker.stats().bytes);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let stats = tracker.stats();
    let run = Run {
        label,
        seconds,
        peak_accounted: peak_accounted.max(stats.bytes),
        peak_allocated: ALLOC.peak().saturating_sub(before),
        refused,
        stats,
    };
    drop(tracker);
    run
}

fn main() {
    let (pages, visitors, events, budget) = if full_run() {
        (500_000, 2_000_000, 20_000_000, 64 << 20)
    } else {
        // A test run (`cargo test --benches`) checks the bench on a sliver.
        (5_000, 20_000, 200_000, 640 << 10)
    };
    eprintln!("generating {events} events of {visitors} visitors over {pages} pages");
    let workload = ZipfWorkload::generate(pages, visitors, events, 1.0, 0x9E55_0001);

    let runs = [
        ingest(&workload, "no budget", None),
        ingest(&workload, "sketch", Some((budget, MemoryPolicy::Sketch))),
        ingest(&workload, "evict", Some((budget, MemoryPolicy::Evict))),
        ingest(&workload, "reject", Some((budget, MemoryPolicy::Reject))),
    ];

    let unbounded = runs[0].seconds;
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let s = &r.stats;
            vec![
                r.label.to_string(),
                format!("{:.1}", r.peak_accounted as f64 / MIB),
                format!("{:.1}", r.peak_allocated as f64 / MIB),
                s.pages.to_string(),
                (s.pages - s.sketched_pages).to_string(),
                s.sketched_pages.to_string(),
                s.evictions.to_string(),
                r.refused.to_string(),
                format!("{:.2}", events as f64 / r.seconds / 1e6),
                format!("{:.2}", unbounded / r.seconds),
            ]
        })
        .collect();
    println!(
        "\n{events} records, {visitors} visitors, {pages} Zipf pages (s = 1.0), budget {:.1} MiB\n",
        budget as f64 / MIB
    );
    println!(
        "{}",
        markdown_table(
            &[
                "policy",
                "peak accounted MiB",
                "peak allocated MiB",
                "pages held",
                "exact pages",
                "sketched pages",
                "evicted pages",
                "refused records",
                "M records/s",
                "x no-budget rate",
            ],
            &rows,
        )
    );
    for r in &runs[1..] {
        assert!(
            r.peak_accounted <= budget,
            "{}: accounted {} bytes over a {budget}-byte budget",
            r.label,
            r.peak_accounted
        );
    }
}
