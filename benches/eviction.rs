// Run: cargo bench -p tracker-benches --bench eviction
// (EVICTION_RECORDS=n overrides the record count of a full run.)
//! Which pages `evict` keeps under pressure (issue 18): a 16 MiB budget,
//! 5M records, Zipf s=1 over 200k URLs of 30 to 2,000 bytes, 1M visitors.
//! Reports how many times each of the 10 hottest pages lost its count,
//! the share of the stream's pairs whose page still holds its complete
//! count at the end, and the ingest rate. The comparison with earlier code
//! is made by running this bench on that code's commit (see
//! docs/BENCHMARKS.md).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use tracker_benches::counting_alloc::CountingAlloc;
use tracker_benches::full_run;
use tracker_benches::workload::{SplitMix64, Zipf, visitor_id};
use tracker_core::{MemoryPolicy, Tracker};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

const BUDGET: u64 = 16 << 20;
const PAGES: usize = 200_000;
const VISITORS: usize = 1_000_000;
const HOT: usize = 10;
/// Records between two checks of the hottest pages' counts: a count that
/// went down means the page was evicted (and re-created) in between.
const CHECK_EVERY: usize = 64;

/// Page `page`'s URL, 30 to 2,000 bytes long (the length drawn per page).
fn url(page: usize, rng: &mut SplitMix64) -> String {
    let len = 30 + rng.below(1_971) as usize;
    let mut url = format!("https://example.com/p{page}/");
    while url.len() < len {
        url.push('x');
    }
    url
}

fn main() {
    let records = if full_run() {
        std::env::var("EVICTION_RECORDS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(5_000_000)
    } else {
        20_000
    };
    let mut rng = SplitMix64::new(18);
    let urls: Vec<String> = (0..PAGES).map(|p| url(p, &mut rng)).collect();
    let visitors: Vec<String> = (0..VISITORS).map(visitor_id).collect();
    let zipf = Zipf::new(PAGES, 1.0);
    let events: Vec<(u32, u32)> = (0..records)
        .map(|_| {
            let page = zipf.sample(&mut rng) as u32;
            (rng.below(VISITORS as u64) as u32, page)
        })
        .collect();

    let tracker = Tracker::builder()
        .max_memory(BUDGET)
        .memory_policy(MemoryPolicy::Evict)
        .build()
        .expect("valid settings");
    let mut last = [0u64; HOT];
    let mut evicted = [0u64; HOT];
    let mut ingest = Duration::ZERO;
    for chunk in events.chunks(CHECK_EVERY) {
        let started = Instant::now();
        for &(visitor, page) in chunk {
            tracker
                .record(&visitors[visitor as usize], &urls[page as usize])
                .expect("evict always makes room");
        }
        ingest += started.elapsed();
        for (rank, url) in urls.iter().take(HOT).enumerate() {
            let now = tracker.distinct(url).expect("valid URL").visitors;
            if now < last[rank] {
                evicted[rank] += 1;
            }
            last[rank] = now;
        }
    }

    // The true count of every page, and which pages still hold it.
    let mut truth: HashMap<u32, HashSet<u32>> = HashMap::new();
    for &(visitor, page) in &events {
        truth.entry(page).or_default().insert(visitor);
    }
    let total: usize = truth.values().map(HashSet::len).sum();
    let complete: usize = truth
        .iter()
        .filter(|(page, set)| {
            tracker
                .distinct(&urls[**page as usize])
                .is_ok_and(|d| d.exact && d.visitors == set.len() as u64)
        })
        .map(|(_, set)| set.len())
        .sum();
    let stats = tracker.stats();
    assert!(stats.bytes <= BUDGET, "budget exceeded: {stats:?}");

    println!(
        "eviction: {records} records, {PAGES} pages (30-2,000 byte URLs), {VISITORS} visitors, \
         Zipf s=1, budget {} MiB, evict",
        BUDGET >> 20
    );
    println!("  evictions of the 10 hottest pages, hottest first: {evicted:?}");
    println!(
        "  hottest page: {} distinct of {} true at the end",
        last[0],
        truth.get(&0).map_or(0, HashSet::len)
    );
    println!(
        "  pairs whose page holds its complete count: {:.1}% ({complete} of {total})",
        100.0 * complete as f64 / total as f64
    );
    println!(
        "  pages held {}, evictions {}, ingest {:.0} ns/record ({:.2} M records/s), \
         allocator peak {:.1} MiB",
        stats.pages,
        stats.evictions,
        ingest.as_nanos() as f64 / records as f64,
        records as f64 / ingest.as_secs_f64() / 1e6,
        ALLOC.peak() as f64 / f64::from(1 << 20)
    );
}
