// Run: cargo bench -p tracker-benches --bench record
//! Ingest throughput and `distinct` latency of tracker against the
//! baselines, on one Zipf workload, then a table of ratios computed from
//! criterion's own estimates.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use tracker_benches::baselines::{DashMapHashed, DistinctCounter, HashedMutexMap, NaiveMap};
use tracker_benches::full_run;
use tracker_benches::ratios::{criterion_dir, human_ns, markdown_table, mean_ns, ratio};
use tracker_benches::workload::{CORE_ZIPF_S as ZIPF_S, Events, ZipfWorkload};
use tracker_core::Tracker;

const THREADS: [usize; 2] = [1, 2];

const RECORD_GROUP: &str = "record";
const DISTINCT_GROUP: &str = "distinct";
const DESIGNS: [&str; 4] = [
    Tracker::NAME,
    NaiveMap::NAME,
    HashedMutexMap::NAME,
    DashMapHashed::NAME,
];

fn main() {
    let full = full_run();
    let started = SystemTime::now();
    let dir = criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .configure_from_args();

    let workload = ZipfWorkload::core(full);

    record_group(&mut c, &workload.events);
    distinct_group(&mut c, &workload);
    c.final_summary();

    if full {
        print_ratios(&dir, started, &workload);
    }
}

/// Feeds the whole stream into `counter`, split into contiguous chunks,
/// one per thread.
fn ingest<C: DistinctCounter>(counter: &C, events: &Events, threads: usize) {
    if threads == 1 {
        for (visitor, url) in events.iter() {
            counter.record(visitor, url);
        }
        return;
    }
    std::thread::scope(|s| {
        for range in events.chunks(threads) {
            s.spawn(move || {
                for i in range {
                    let (visitor, url) = events.get(i);
                    counter.record(visitor, url);
                }
            });
        }
    });
}

fn bench_record<C: DistinctCounter>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    events: &Events,
) {
    for threads in THREADS {
        group.bench_with_input(
            BenchmarkId::new(C::NAME, format!("{threads}t")),
            &threads,
            |b, &threads| {
                // A fresh structure per iteration, built and dropped outside
                // the timed span: only ingest is measured.
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let counter = C::empty();
                        let start = Instant::now();
                        ingest(&counter, events, threads);
                        total += start.elapsed();
                        black_box(&counter);
                    }
                    total
                });
            },
        );
    }
}

/// Returning visitors: the structure already holds every pair of the
/// stream (filled outside the timed span), and the stream is replayed, so
/// every event is a repeat visit, the steady state of a site's traffic.
fn bench_repeat<C: DistinctCounter>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    events: &Events,
) {
    let counter = C::empty();
    ingest(&counter, events, 1);
    group.bench_function(BenchmarkId::new(C::NAME, "1t-repeat"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                ingest(&counter, events, 1);
            }
            start.elapsed()
        });
    });
}

/// The floor for repeat visits: a single-threaded `HashMap` from URL to a
/// set of hashed visitor ids, with no lock, no canonicalisation, no
/// validation and no clock (ahash for both). Not a design anyone could
/// share between threads; it shows what is left once tracker's own work is
/// taken away: the cache misses of the stream itself.
fn bench_repeat_floor(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    events: &Events,
) {
    use std::collections::{HashMap, HashSet};
    let hasher = ahash::RandomState::new();
    let mut pages: HashMap<&str, HashSet<u64, ahash::RandomState>, ahash::RandomState> =
        HashMap::with_hasher(hasher.clone());
    for (visitor, url) in events.iter() {
        pages
            .entry(url)
            .or_insert_with(|| HashSet::with_hasher(hasher.clone()))
            .insert(hasher.hash_one(visitor));
    }
    group.bench_function(BenchmarkId::new("floor", "1t-repeat"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for (visitor, url) in events.iter() {
                    let visitors = pages.get_mut(url).expect("filled above");
                    black_box(visitors.insert(hasher.hash_one(visitor)));
                }
            }
            start.elapsed()
        });
    });
}

/// The same ingest into a tracker with a memory budget it never reaches:
/// what the budget's reservations cost when memory is plentiful.
fn bench_budgeted(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    events: &Events,
) {
    group.bench_function(BenchmarkId::new("tracker-budget", "1t"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let tracker = Tracker::builder()
                    .max_memory(1 << 40)
                    .build()
                    .expect("valid settings");
                let start = Instant::now();
                ingest(&tracker, events, 1);
                total += start.elapsed();
                black_box(&tracker);
            }
            total
        });
    });
}

fn record_group(c: &mut Criterion, events: &Events) {
    let mut group = c.benchmark_group(RECORD_GROUP);
    // One iteration ingests the whole stream (a second or more for the
    // naive map): ten flat samples keep a full run to a few minutes.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(events.len() as u64));
    bench_record::<Tracker>(&mut group, events);
    bench_record::<NaiveMap>(&mut group, events);
    bench_record::<HashedMutexMap>(&mut group, events);
    bench_record::<DashMapHashed>(&mut group, events);
    bench_budgeted(&mut group, events);
    bench_repeat::<Tracker>(&mut group, events);
    bench_repeat::<NaiveMap>(&mut group, events);
    bench_repeat::<HashedMutexMap>(&mut group, events);
    bench_repeat::<DashMapHashed>(&mut group, events);
    bench_repeat_floor(&mut group, events);
    group.finish();
}

fn bench_distinct<C: DistinctCounter>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    workload: &ZipfWorkload,
) {
    let counter = C::empty();
    ingest(&counter, &workload.events, 1);
    for (which, rank) in [("hot", 0), ("cold", workload.coldest_visited)] {
        let url = workload.urls[rank].as_str();
        assert!(counter.distinct(url) > 0, "{which} page was visited");
        group.bench_with_input(BenchmarkId::new(C::NAME, which), url, |b, url| {
            b.iter(|| counter.distinct(black_box(url)));
        });
    }
}

fn distinct_group(c: &mut Criterion, workload: &ZipfWorkload) {
    let mut group = c.benchmark_group(DISTINCT_GROUP);
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    bench_distinct::<Tracker>(&mut group, workload);
    bench_distinct::<NaiveMap>(&mut group, workload);
    bench_distinct::<HashedMutexMap>(&mut group, workload);
    bench_distinct::<DashMapHashed>(&mut group, workload);
    group.finish();
}

fn print_ratios(dir: &std::path::Path, since: SystemTime, workload: &ZipfWorkload) {
    let events = workload.events.len() as f64;
    let rows_spec: [(&str, &str, &str, f64); 5] = [
        ("record, 1 thread (per event)", RECORD_GROUP, "1t", events),
        ("record, 2 threads (per event)", RECORD_GROUP, "2t", events),
        (
            "record repeat visits, 1 thread",
            RECORD_GROUP,
            "1t-repeat",
            events,
        ),
        ("distinct, hot page", DISTINCT_GROUP, "hot", 1.0),
        ("distinct, cold page", DISTINCT_GROUP, "cold", 1.0),
    ];
    let mut rows = Vec::new();
    for (label, group, parameter, per) in rows_spec {
        let times: Vec<Option<f64>> = DESIGNS
            .iter()
            .map(|design| mean_ns(dir, group, design, parameter, since).map(|ns| ns / per))
            .collect();
        let mut row = vec![label.to_owned()];
        row.extend(
            times
                .iter()
                .map(|t| t.map_or_else(|| "n/a".to_owned(), human_ns)),
        );
        row.extend(times[1..].iter().map(|&t| ratio(t, times[0])));
        rows.push(row);
    }
    let hot_share = 100.0
        * workload
            .events
            .iter()
            .filter(|e| e.1 == workload.urls[0])
            .count() as f64
        / events;
    println!(
        "\nTracker against the baselines (criterion's estimate per operation; \"vs X\" = X's time / \
         tracker's, higher is better for tracker).\nWorkload: {} events, {} pages, Zipf s={ZIPF_S} \
         (hot page = rank 0, {hot_share:.1}% of events; cold page = rank {}).\n",
        workload.events.len(),
        workload.urls.len(),
        workload.coldest_visited,
    );
    let headers = [
        "workload",
        Tracker::NAME,
        NaiveMap::NAME,
        HashedMutexMap::NAME,
        DashMapHashed::NAME,
        "vs naive",
        "vs hashed_mutex",
        "vs dashmap",
    ];
    print!("{}", markdown_table(&headers, &rows));
    let scaling: Vec<String> = DESIGNS
        .iter()
        .map(|design| {
            let one = mean_ns(dir, RECORD_GROUP, design, "1t", since);
            let two = mean_ns(dir, RECORD_GROUP, design, "2t", since);
            format!("{design} {}", ratio(one, two))
        })
        .collect();
    println!(
        "\n2-thread speed-up of record over 1 thread: {}",
        scaling.join(", ")
    );
    let repeat = mean_ns(dir, RECORD_GROUP, Tracker::NAME, "1t-repeat", since);
    let floor = mean_ns(dir, RECORD_GROUP, "floor", "1t-repeat", since);
    println!(
        "floor for repeat visits (one thread, no lock, no canonicalisation, no clock): {} per \
         event; tracker takes {} its time",
        floor.map_or_else(|| "n/a".to_owned(), |t| human_ns(t / events)),
        ratio(repeat, floor),
    );
    let plain = mean_ns(dir, RECORD_GROUP, Tracker::NAME, "1t", since);
    let budgeted = mean_ns(dir, RECORD_GROUP, "tracker-budget", "1t", since);
    println!(
        "tracker with a (never reached) memory budget, 1 thread: {} per event, {} the speed without",
        budgeted.map_or_else(|| "n/a".to_owned(), |t| human_ns(t / events)),
        ratio(budgeted, plain),
    );
}
