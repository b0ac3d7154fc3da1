// Run: cargo bench -p tracker-benches --bench time_ranges
//! Time ranges on the real tracker (issue 12): what recording with time
//! buckets costs, the bytes a pair takes, and range, series and top
//! queries, against the naive design a user would write, a `HashMap` of
//! pages to a `HashMap` of hour buckets to a `HashSet` of visitor hashes
//! (Redis's per-day-set pattern). Bytes from the counting allocator;
//! hour buckets (the default).

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::{Duration, Instant};

use tracker_benches::counting_alloc::CountingAlloc;
use tracker_benches::full_run;
use tracker_benches::workload::{SplitMix64, page_url, visitor_id};
use tracker_core::{Timestamp, Tracker};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

const HOUR: u64 = 3_600;
const DAY: u64 = 86_400;
/// 2026-09-01T00:00:00Z: events fall in the 60 days after.
const START: u64 = 1_788_220_800;
const SPAN_DAYS: u64 = 60;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_millis(secs * 1000)
}

/// The naive design: page -> hour bucket -> visitor hashes.
#[derive(Default)]
struct BucketSets {
    pages: HashMap<String, HashMap<u32, HashSet<u64>>>,
    hasher: ahash::RandomState,
}

impl BucketSets {
    fn record(&mut self, visitor: &str, url: &str, secs: u64) {
        let hash = self.hasher.hash_one(visitor);
        let bucket = (secs / HOUR) as u32;
        match self.pages.get_mut(url) {
            Some(page) => {
                page.entry(bucket).or_default().insert(hash);
            }
            None => {
                self.pages
                    .entry(url.to_owned())
                    .or_default()
                    .entry(bucket)
                    .or_default()
                    .insert(hash);
            }
        }
    }

    fn distinct_between(&self, url: &str, from: u64, till: u64) -> usize {
        let Some(page) = self.pages.get(url) else {
            return 0;
        };
        let mut union: HashSet<u64> = HashSet::new();
        for bucket in (from / HOUR) as u32..till.div_ceil(HOUR) as u32 {
            if let Some(set) = page.get(&bucket) {
                union.extend(set);
            }
        }
        union.len()
    }

    fn series(&self, url: &str, from: u64, points: u64, step: u64) -> Vec<usize> {
        (0..points)
            .map(|p| self.distinct_between(url, from + p * step, from + (p + 1) * step))
            .collect()
    }

    fn top_between(&self, k: usize, from: u64, till: u64) -> Vec<(usize, String)> {
        let mut rows: Vec<(usize, String)> = self
            .pages
            .keys()
            .map(|url| (self.distinct_between(url, from, till), url.clone()))
            .filter(|(n, _)| *n > 0)
            .collect();
        rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        rows.truncate(k);
        rows
    }
}

/// Events as (visitor, page, second).
type Events = Vec<(u32, u32, u64)>;

fn tracker() -> Tracker {
    Tracker::builder().build().expect("default settings")
}

/// Records `events` into a new tracker and a new naive map; returns both
/// with the live bytes and ns/event of each.
fn build_both(events: &Events, urls: &[String], ids: &[String]) -> (Tracker, BucketSets, [f64; 4]) {
    let before = ALLOC.live();
    let t = tracker();
    let start = Instant::now();
    for &(v, p, s) in events {
        t.record_at(&ids[v as usize], &urls[p as usize], at(s))
            .expect("recorded");
    }
    let tracker_ns = start.elapsed().as_nanos() as f64 / events.len() as f64;
    let tracker_bytes = (ALLOC.live() - before) as f64;
    let before = ALLOC.live();
    let mut naive = BucketSets::default();
    let start = Instant::now();
    for &(v, p, s) in events {
        naive.record(&ids[v as usize], &urls[p as usize], s);
    }
    let naive_ns = start.elapsed().as_nanos() as f64 / events.len() as f64;
    let naive_bytes = (ALLOC.live() - before) as f64;
    (t, naive, [tracker_bytes, tracker_ns, naive_bytes, naive_ns])
}

/// ns/event of recording `events` into a new tracker built by `build`,
/// with each event's second mapped by `time`, and the tracker's bytes
/// per pair after.
fn record_ns(
    build: impl Fn() -> Tracker,
    events: &Events,
    ids: &[String],
    urls: &[String],
    time: impl Fn(u64) -> u64,
) -> (f64, f64) {
    let t = build();
    let start = Instant::now();
    for &(v, p, s) in events {
        t.record_at(&ids[v as usize], &urls[p as usize], at(time(s)))
            .expect("recorded");
    }
    let ns = start.elapsed().as_nanos() as f64 / events.len() as f64;
    let stats = t.stats();
    (ns, stats.bytes as f64 / stats.pairs as f64)
}

/// Record with hour buckets against a baseline in the same run: the same
/// tracker with one-day buckets and every event moved into one day, so
/// that every pair stays in one bucket (a word and no run: what recording
/// cost before pairs remembered when, short of the old bare-hash slot).
/// Same pairs, same order; only the times differ. Runs alternate, best of
/// `rounds` each, so that load drifting during the run hits both.
fn record_against_one_bucket(
    rounds: usize,
    workloads: &[(String, Events)],
    ids: &[String],
    urls: &[String],
) {
    let hourly = || Tracker::builder().build().expect("default settings");
    let one_bucket = || {
        Tracker::builder()
            .bucket(Duration::from_secs(DAY))
            .build()
            .expect("a one-day bucket")
    };
    println!("## Record with hour buckets against one bucket (one run, best of {rounds})\n");
    println!(
        "| workload | events | one bucket ns/event | hour buckets ns/event | ratio | one bucket B/pair | hour buckets B/pair |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, events) in workloads {
        let (mut base, mut timed) = (f64::MAX, f64::MAX);
        let (mut base_bytes, mut timed_bytes) = (0.0, 0.0);
        for _ in 0..rounds {
            let (ns, bytes) =
                record_ns(one_bucket, events, ids, urls, |s| START + (s - START) % DAY);
            (base, base_bytes) = (base.min(ns), bytes);
            let (ns, bytes) = record_ns(hourly, events, ids, urls, |s| s);
            (timed, timed_bytes) = (timed.min(ns), bytes);
        }
        println!(
            "| {name} | {} | {base:.1} | {timed:.1} | {:.2}x | {base_bytes:.2} | {timed_bytes:.2} |",
            events.len(),
            timed / base
        );
    }
    println!();
}

/// Median time of `rounds` calls of `f`, in ms.
fn median_ms(rounds: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let full = full_run();
    let scale: u32 = if full { 1 } else { 100 };
    let rounds = if full { 21 } else { 3 };
    let mut rng = SplitMix64::new(12);

    // 1M pairs over 1k pages, one visit each, at random hours of 60 days.
    let (pages, pairs) = (1_000u32, 1_000_000 / scale);
    let urls: Vec<String> = (0..100_000).map(|p| page_url(p as usize)).collect();
    let ids: Vec<String> = (0..1_000_000).map(|v| visitor_id(v as usize)).collect();
    let one_visit: Events = (0..pairs)
        .map(|i| {
            let secs = START + rng.below(SPAN_DAYS * DAY);
            (i % 1_000_000, i % pages, secs)
        })
        .collect();
    // Returning visitors: each pair visited on 5 random days of 60.
    let returning_pairs = 200_000 / scale;
    let mut five_days: Events = Vec::with_capacity(returning_pairs as usize * 5);
    for i in 0..returning_pairs {
        for _ in 0..5 {
            five_days.push((i, i % pages, START + rng.below(SPAN_DAYS * DAY)));
        }
    }
    rng.shuffle(&mut five_days);
    record_against_one_bucket(
        rounds.min(3),
        &[
            (
                format!("{pairs} pairs / {pages} pages, one visit each"),
                one_visit.clone(),
            ),
            (
                format!("{returning_pairs} pairs / {pages} pages, each on 5 random days"),
                five_days,
            ),
        ],
        &ids,
        &urls,
    );
    println!("## Record and memory (one run; hour buckets)\n");
    println!("| workload | design | pairs | B/pair | ns/event |");
    println!("| --- | --- | ---: | ---: | ---: |");
    let (t, naive, [tb, tns, nb, nns]) = build_both(&one_visit, &urls, &ids);
    let stored = t.stats().pairs as f64;
    let workload = format!("{pairs} pairs / {pages} pages, one visit each");
    println!(
        "| {workload} | tracker | {stored} | {:.2} | {tns:.1} |",
        tb / stored
    );
    println!(
        "| {workload} | bucket sets | {stored} | {:.2} | {nns:.1} |",
        nb / stored
    );
    // The same events again: every one a repeat in its bucket.
    let allocations = ALLOC.allocations();
    let start = Instant::now();
    for &(v, p, s) in &one_visit {
        t.record_at(&ids[v as usize], &urls[p as usize], at(s))
            .expect("recorded");
    }
    let repeat_ns = start.elapsed().as_nanos() as f64 / one_visit.len() as f64;
    let repeat_allocs = ALLOC.allocations() - allocations;
    println!(
        "| the same events again (repeats in their bucket) | tracker | {stored} | - | {repeat_ns:.1} |"
    );
    drop((t, naive));

    // 100k visitors of one page, each on 30 different days of 60.
    let visitors = 100_000 / scale;
    let mut returning: Events = Vec::with_capacity(visitors as usize * 30);
    for v in 0..visitors {
        let mut days: Vec<u64> = (0..SPAN_DAYS).collect();
        rng.shuffle(&mut days);
        for &day in &days[..30] {
            returning.push((v, 0, START + day * DAY + rng.below(DAY)));
        }
    }
    let mut order: Vec<usize> = (0..returning.len()).collect();
    rng.shuffle(&mut order);
    let returning: Events = order.into_iter().map(|i| returning[i]).collect();
    let (t30, naive30, [tb, tns, nb, nns]) = build_both(&returning, &urls, &ids);
    let stored = t30.stats().pairs as f64;
    let workload = format!("{visitors} visitors of one page, each on 30 days of 60");
    println!(
        "| {workload} | tracker | {stored} | {:.2} | {tns:.1} |",
        tb / stored
    );
    println!(
        "| {workload} | bucket sets | {stored} | {:.2} | {nns:.1} |",
        nb / stored
    );
    println!();
    println!("repeat visits in their bucket allocated {repeat_allocs} times\n");

    // Queries on a page of 100k visitors.
    let one_each: Events = (0..visitors)
        .map(|v| (v, 0, START + rng.below(SPAN_DAYS * DAY)))
        .collect();
    let (t1, naive1, _) = build_both(&one_each, &urls, &ids);
    let (from, till) = (START + 15 * DAY, START + 45 * DAY);
    let url = &urls[0];
    println!("## Queries on one page of {visitors} visitors (median of {rounds})\n");
    println!("| visits | design | 30-day range | 30-point daily series |");
    println!("| --- | --- | ---: | ---: |");
    for (visits, t, naive) in [
        ("one each, over 60 days", &t1, &naive1),
        ("30 days each, of 60", &t30, &naive30),
    ] {
        let range = median_ms(rounds, || {
            black_box(
                t.distinct_between(url, Some(at(from)), Some(at(till)))
                    .unwrap(),
            );
        });
        let series = median_ms(rounds, || {
            black_box(
                t.series(
                    url,
                    Some(at(from)),
                    Some(at(till)),
                    Duration::from_secs(DAY),
                )
                .unwrap(),
            );
        });
        println!("| {visits} | tracker | {range:.3} ms | {series:.3} ms |");
        let ours = t
            .distinct_between(url, Some(at(from)), Some(at(till)))
            .unwrap();
        assert_eq!(
            ours.distinct.visitors as usize,
            naive.distinct_between(url, from, till)
        );
        let range = median_ms(rounds, || {
            black_box(naive.distinct_between(url, from, till));
        });
        let series = median_ms(rounds, || {
            black_box(naive.series(url, from, 30, DAY));
        });
        println!("| {visits} | bucket sets | {range:.3} ms | {series:.3} ms |");
    }
    drop((t1, naive1, t30, naive30));

    // top_between over 100k pages: 1M pairs, ten visitors a page.
    let many_pages = 100_000 / scale;
    let events: Events = (0..pairs)
        .map(|i| {
            (
                (rng.below(1_000_000)) as u32,
                i % many_pages,
                START + rng.below(SPAN_DAYS * DAY),
            )
        })
        .collect();
    let (t, naive, _) = build_both(&events, &urls, &ids);
    let top = median_ms(rounds.min(5), || {
        black_box(t.top_between(10, Some(at(from)), Some(at(till))).unwrap());
    });
    let naive_top = median_ms(rounds.min(5), || {
        black_box(naive.top_between(10, from, till));
    });
    println!("\n## top_between(10) over 30 days of {many_pages} pages, {pairs} pairs\n");
    println!("| design | time |");
    println!("| --- | ---: |");
    println!("| tracker | {top:.1} ms |");
    println!("| bucket sets | {naive_top:.1} ms |");
}
