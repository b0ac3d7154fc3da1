// Run: cargo bench -p tracker-benches --bench memory
//! Heap bytes per (page, visitor) pair held by tracker and the baselines,
//! measured by a counting global allocator: live bytes after building the
//! structure minus live bytes before (the pre-generated events excluded).

use std::time::Instant;

use tracker_benches::baselines::{DashMapHashed, DistinctCounter, HashedMutexMap, NaiveMap};
use tracker_benches::counting_alloc::CountingAlloc;
use tracker_benches::full_run;
use tracker_benches::ratios::{human_count, markdown_table};
use tracker_benches::workload::{Events, ZipfWorkload, spread_pairs, uniform_pairs};
use tracker_core::Tracker;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

/// The target of the issue, bytes per pair at 1M pairs over 1k pages.
const TARGET_BYTES_PER_PAIR: f64 = 16.0;
/// The target of the issue, naive bytes over ours on the Zipf workload.
const TARGET_ZIPF_RATIO: f64 = 5.0;
/// The spread row's largest page over its smallest.
const SPREAD: f64 = 4.0;

/// What building one structure from one stream cost.
struct Measured {
    design: &'static str,
    pairs: u64,
    /// Live bytes the finished structure holds.
    live: usize,
    /// The most bytes live at once while building (table growth copies).
    peak: usize,
    /// Live bytes with glibc's block overhead, by the allocator's model.
    modelled: usize,
    allocations: usize,
    /// The structure's own byte accounting, where it has one.
    own: Option<u64>,
}

/// Builds a `C` from `events`; returns it with the live, peak, modelled
/// and allocation counts it added.
fn build<C: DistinctCounter>(events: &Events) -> (C, [usize; 4]) {
    let (before, modelled, allocations) =
        (ALLOC.live(), ALLOC.live_modelled(), ALLOC.allocations());
    ALLOC.reset_peak();
    let counter = C::empty();
    for (visitor, url) in events.iter() {
        counter.record(visitor, url);
    }
    let counts = [
        ALLOC.live() - before,
        ALLOC.peak() - before,
        ALLOC.live_modelled() - modelled,
        ALLOC.allocations() - allocations,
    ];
    (counter, counts)
}

fn measure<C: DistinctCounter>(events: &Events, own: impl Fn(&C) -> u64) -> Measured {
    let (counter, [live, peak, modelled, allocations]) = build::<C>(events);
    Measured {
        design: C::NAME,
        pairs: counter.pairs(),
        live,
        peak,
        modelled,
        allocations,
        own: Some(own(&counter)).filter(|&b| b > 0),
    }
}

/// For the designs with no accounting of their own.
fn no_own<C>(_: &C) -> u64 {
    0
}

fn measure_all(events: &Events) -> Vec<Measured> {
    vec![
        measure::<Tracker>(events, |t| t.stats().bytes),
        measure::<NaiveMap>(events, no_own),
        measure::<HashedMutexMap>(events, no_own),
        measure::<DashMapHashed>(events, no_own),
    ]
}

fn per_pair(bytes: usize, pairs: u64) -> f64 {
    bytes as f64 / pairs.max(1) as f64
}

fn main() {
    let full = full_run();
    // Test runs (`cargo test --benches`, a debug build) only check that the
    // bench works, on small inputs.
    let uniform_sizes: &[usize] = if full {
        &[10_000, 100_000, 1_000_000]
    } else {
        &[2_000, 10_000]
    };
    let (zipf_pages, zipf_visitors, zipf_events) = if full {
        (100_000, 1_000_000, 2_000_000)
    } else {
        (1_000, 2_000, 4_000)
    };
    let uniform_pages = 1_000;

    let started = Instant::now();
    let mut runs: Vec<(String, Vec<Measured>)> = Vec::new();
    for &pairs in uniform_sizes {
        let events = uniform_pairs(uniform_pages, pairs, 0x3E30_0001);
        let label = format!(
            "uniform {} pairs / {} pages",
            human_count(pairs),
            human_count(uniform_pages)
        );
        eprintln!("measuring {label} (events hold {} B)", events.heap_bytes());
        runs.push((label, measure_all(&events)));
    }
    // The target's shape with page sizes spread over several growth steps
    // (every page of the uniform rows holds the same number, which sits at
    // one point of the growth cycle).
    let spread_total = uniform_sizes[uniform_sizes.len() - 1];
    let events = spread_pairs(uniform_pages, spread_total, SPREAD, 0x5E30_0001);
    let spread_label = format!(
        "spread {} pairs / {} pages (sizes x{SPREAD} apart)",
        human_count(spread_total),
        human_count(uniform_pages)
    );
    eprintln!("measuring {spread_label}");
    runs.push((spread_label, measure_all(&events)));
    let zipf = ZipfWorkload::generate(zipf_pages, zipf_visitors, zipf_events, 1.0, 0x7EAC_0001);
    let zipf_label = format!(
        "Zipf {} events / {} pages / {} visitors",
        human_count(zipf_events),
        human_count(zipf_pages),
        human_count(zipf_visitors)
    );
    eprintln!("measuring {zipf_label}");
    runs.push((zipf_label, measure_all(&zipf.events)));
    eprintln!("measured in {:.1?}", started.elapsed());

    let mut rows = Vec::new();
    for (label, measured) in &runs {
        let ours = &measured[0];
        for m in measured {
            let own = m.own.map_or_else(
                || "-".to_owned(),
                |own| {
                    let drift = 100.0 * (own as f64 - m.live as f64) / m.live as f64;
                    format!("{:.2} ({drift:+.1}%)", per_pair(own as usize, m.pairs))
                },
            );
            rows.push(vec![
                label.clone(),
                m.design.to_owned(),
                m.pairs.to_string(),
                format!("{:.1}", m.live as f64 / (1024.0 * 1024.0)),
                format!("{:.2}", per_pair(m.live, m.pairs)),
                format!("{:.2}", per_pair(m.peak, m.pairs)),
                format!("{:.2}", per_pair(m.modelled, m.pairs)),
                format!("{:.2}", m.allocations as f64 / m.pairs.max(1) as f64),
                own,
                format!("{:.1}x", m.live as f64 / ours.live as f64),
                format!("{:.1}x", m.modelled as f64 / ours.modelled as f64),
            ]);
        }
    }
    println!(
        "\nHeap held per distinct (page, visitor) pair, from the counting allocator (bytes \
         requested; malloc's own per-block overhead is not included). \"own\" is \
         tracker.stats().bytes per pair and its drift from the allocator's figure; \"glibc B/pair\" \
         adds glibc's per-block overhead by model (an estimate); \"x tracker\" is the design's \
         bytes over tracker's, requested and modelled.\n"
    );
    print!(
        "{}",
        markdown_table(
            &[
                "workload",
                "design",
                "pairs",
                "live MiB",
                "B/pair",
                "peak B/pair",
                "glibc B/pair",
                "allocs/pair",
                "own B/pair",
                "x tracker",
                "x tracker (glibc)",
            ],
            &rows,
        )
    );

    if full {
        let at_1m = &runs[uniform_sizes.len() - 1].1[0];
        let bytes = per_pair(at_1m.live, at_1m.pairs);
        println!(
            "\nTarget: tracker <= {TARGET_BYTES_PER_PAIR} B/pair at 1M pairs over 1k pages: \
             {bytes:.2} B/pair -> {}",
            if bytes <= TARGET_BYTES_PER_PAIR {
                "met"
            } else {
                "NOT met"
            }
        );
        let spread = &runs[runs.len() - 2].1[0];
        println!(
            "Same shape, page sizes spread x{SPREAD} (the average over the growth cycle): \
             {:.2} B/pair -> {}",
            per_pair(spread.live, spread.pairs),
            if per_pair(spread.live, spread.pairs) <= TARGET_BYTES_PER_PAIR {
                "within the target"
            } else {
                "over the target"
            }
        );
        let zipf = &runs[runs.len() - 1].1;
        let times = zipf[1].live as f64 / zipf[0].live as f64;
        let modelled = zipf[1].modelled as f64 / zipf[0].modelled as f64;
        println!(
            "Target: naive >= {TARGET_ZIPF_RATIO}x tracker's memory on the Zipf workload: \
             {times:.1}x requested -> {} ({modelled:.1}x with glibc's overhead modelled)",
            if times >= TARGET_ZIPF_RATIO {
                "met"
            } else {
                "NOT met"
            }
        );
    }
}
