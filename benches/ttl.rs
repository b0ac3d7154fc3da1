// Run: cargo bench -p tracker-benches --bench ttl
//! What the optional TTL costs (issue 4):
//!
//! 1. **Ingest** of the record bench's Zipf stream, one thread, criterion,
//!    in one run: tracker without a TTL; with a TTL of an hour on the
//!    system clock (the realistic case: nothing expires during the run);
//!    with a TTL of 60 s on a [`ManualClock`] moved on as events are fed,
//!    so the stream spans ten TTLs and lazy expiry, horizon rebuilds and
//!    the piggy-backed sweep steps all run; and the naive map for
//!    reference. Then a table of ratios, and the heap bytes per pair with
//!    the TTL on and off (counting allocator, nothing expired).
//! 2. **Reclaiming 1M expired pairs**: a tracker with a TTL holding 1M
//!    pairs over 100k Zipf pages is moved past the TTL, then emptied by
//!    `sweep(32)` steps, each timed on its own; and again by the sweep
//!    steps records piggy-back, each record timed on its own. Plain
//!    `Instant` timings (a distribution of single steps, not criterion).
//!
//! 3. **The longest sweep step** while pairs expire a minute at a time,
//!    and after a page's peak: a page of [`PEAK`] visitors, then fewer
//!    half a TTL later, swept once the peak has expired (the step that
//!    moves the survivors into a table sized for them, and the bytes
//!    before and after).
//!
//! `TTL_BENCH_INGEST_ONLY=1` runs part 1 alone; `TTL_BENCH_GRADUAL_ONLY=1`
//! runs only part 3 (see docs/BENCHMARKS.md, issue 18 and "A large page
//! past its peak");
//! `TTL_BENCH_CPU_ROUNDS=n` runs only n rounds of TTL on against off timed
//! by the thread's CPU clock (for a loaded machine; each round off, on,
//! on, off, or the reverse); `TTL_BENCH_PROFILE=off` or `=1h` ingests and
//! replays the stream once into one tracker of that design, for a
//! profiler.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use tracker_benches::baselines::{DistinctCounter, NaiveMap};
use tracker_benches::counting_alloc::CountingAlloc;
use tracker_benches::full_run;
use tracker_benches::ratios::{criterion_dir, human_ns, markdown_table, mean_ns, ratio};
use tracker_benches::workload::{
    CORE_PAGES as PAGES, CORE_ZIPF_S as ZIPF_S, Events, ZipfWorkload, page_url, visitor_id,
};
use tracker_core::{ManualClock, Timestamp, Tracker};

/// The realistic TTL: nothing expires during a run.
const LONG_TTL: Duration = Duration::from_secs(3600);
/// The TTL of the expiring run, and how many TTLs its stream spans.
const SHORT_TTL: Duration = Duration::from_secs(60);
const TTLS_SPANNED: usize = 10;
/// Where manual clocks start: 2026-11-21, a realistic tick.
const START: Timestamp = Timestamp::from_millis(1_795_132_800_000);

/// Part 2: pairs held when they expire, each visitor on one page.
const RECLAIM_PAIRS: usize = 1_000_000;
const RECLAIM_SEED: u64 = 0x7EAC_0002;
/// The reclaim tracker's TTL, and the time its pairs arrive over (within
/// the TTL, so none expires before the clock is moved past it).
const RECLAIM_TTL: Duration = Duration::from_secs(3600);
const RECLAIM_ARRIVAL: Duration = Duration::from_secs(1800);
/// Buckets per explicit sweep step (the size records piggy-back too).
const SWEEP_BUCKETS: usize = 32;
/// Part 3, past a peak: the peak's visitors on one page, and how many
/// stay after it (the last above the sweep's move bound).
const PEAK: usize = 600_000;
const AFTER_PEAK: [usize; 4] = [8_000, 10_000, 32_000, 100_000];
/// Part 3: the Zipf case spreads its pairs over this many pages.
const GRADUAL_ZIPF_PAGES: usize = 10_000;
/// Part 3: the clock moves on this much between sweep passes.
const GRADUAL_STEP: Duration = Duration::from_secs(60);
/// Piggy-backed path: records go to one page of their own, cycling over
/// this many visitors.
const DRIVER_VISITORS: usize = 1_000;

const GROUP: &str = "ttl-record";
const OFF: &str = "tracker";
const ON_1H: &str = "tracker-ttl-1h";
const EXPIRING: &str = "tracker-ttl-60s-expiring";

/// The counting allocator, switched on only around the memory
/// measurements, so that the criterion timings pay nothing for it and
/// compare with the record bench's (which runs without one).
struct GatedAlloc;

static COUNTER: CountingAlloc = CountingAlloc::new();
static COUNTING: AtomicBool = AtomicBool::new(false);

#[global_allocator]
static ALLOC: GatedAlloc = GatedAlloc;

// SAFETY: every method forwards, unchanged, to `System` or to
// `CountingAlloc` (which itself forwards to `System`), so blocks from
// either path are `System` blocks and may be freed by either. Only the
// counts can go wrong, for a block allocated with counting off and freed
// with it on; the measurement below switches counting on only around code
// that frees nothing allocated before, and reads differences only.
unsafe impl GlobalAlloc for GatedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe {
            if COUNTING.load(Ordering::Relaxed) {
                COUNTER.alloc(layout)
            } else {
                System.alloc(layout)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            if COUNTING.load(Ordering::Relaxed) {
                COUNTER.alloc_zeroed(layout)
            } else {
                System.alloc_zeroed(layout)
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` is a `System` block (see above) of this layout.
        unsafe {
            if COUNTING.load(Ordering::Relaxed) {
                COUNTER.dealloc(ptr, layout);
            } else {
                System.dealloc(ptr, layout);
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, and the caller's promise on `new_size`.
        unsafe {
            if COUNTING.load(Ordering::Relaxed) {
                COUNTER.realloc(ptr, layout, new_size)
            } else {
                System.realloc(ptr, layout, new_size)
            }
        }
    }
}

/// Runs `build` with the allocator counting; returns what it built and
/// the heap bytes live after it that were not before.
fn counted<T>(build: impl FnOnce() -> T) -> (T, usize) {
    COUNTING.store(true, Ordering::SeqCst);
    let before = COUNTER.live();
    let built = build();
    let grown = COUNTER.live().wrapping_sub(before);
    COUNTING.store(false, Ordering::SeqCst);
    (built, grown)
}

fn main() {
    if std::env::var_os("TTL_BENCH_GRADUAL_ONLY").is_some() {
        let rows = [
            gradual("Zipf", GRADUAL_ZIPF_PAGES, RECLAIM_PAIRS),
            gradual("one page", 1, RECLAIM_PAIRS),
        ];
        print_gradual(RECLAIM_PAIRS, &rows);
        print_past_peak(PEAK, &AFTER_PEAK);
        return;
    }
    let full = full_run();
    if let Some(design) = std::env::var_os("TTL_BENCH_PROFILE") {
        profile(&ZipfWorkload::core(full).events, &design.to_string_lossy());
        return;
    }
    if let Some(rounds) = std::env::var_os("TTL_BENCH_CPU_ROUNDS") {
        let rounds = rounds.to_str().and_then(|r| r.parse().ok()).unwrap_or(3);
        cpu_rounds(&ZipfWorkload::core(full).events, rounds);
        return;
    }
    let started = SystemTime::now();
    let dir = criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .configure_from_args();

    // The record bench's workload, so TTL off here is its tracker row.
    let workload = ZipfWorkload::core(full);

    record_group(&mut c, &workload.events);
    c.final_summary();
    let expiring = expiring_run_stats(&workload.events);
    let memory = memory_per_pair(&workload.events);
    if full {
        print_ratios(&dir, started, workload.events.len());
    }
    print_expiring(&expiring, workload.events.len());
    print_memory(&memory);
    if std::env::var_os("TTL_BENCH_INGEST_ONLY").is_some() {
        return;
    }

    let (reclaim_pages, reclaim_pairs, rounds) = if full {
        (PAGES, RECLAIM_PAIRS, 3)
    } else {
        (1_000, 10_000, 1)
    };
    reclaim(reclaim_pages, reclaim_pairs, rounds);

    let (zipf_pages, pairs) = if full {
        (GRADUAL_ZIPF_PAGES, RECLAIM_PAIRS)
    } else {
        (100, 20_000)
    };
    let rows = [
        gradual(&format!("Zipf, {zipf_pages} pages"), zipf_pages, pairs),
        gradual("one page", 1, pairs),
    ];
    print_gradual(pairs, &rows);
    if full {
        print_past_peak(PEAK, &AFTER_PEAK);
    } else {
        print_past_peak(2_000, &[100]);
    }
}

// ---------------------------------------------------------------------
// Part 1: ingest rate and memory, TTL on and off.
// ---------------------------------------------------------------------

/// A tracker with the default settings, a TTL and a clock if given.
fn tracker(ttl: Option<Duration>, clock: Option<&ManualClock>) -> Tracker {
    let mut builder = Tracker::builder();
    if let Some(ttl) = ttl {
        builder = builder.ttl(ttl);
    }
    if let Some(clock) = clock {
        builder = builder.clock(Arc::new(clock.clone()));
    }
    builder.build().expect("valid settings")
}

/// Events per second of manual time in the expiring run: the stream spans
/// `TTLS_SPANNED` TTLs.
fn events_per_second(events: usize) -> usize {
    (events / (TTLS_SPANNED * SHORT_TTL.as_secs() as usize)).max(1)
}

/// Feeds the stream to `record`, in runs of `every` events with `between`
/// called after each run (the clock's step in the expiring case). Every
/// design goes through this same loop.
fn feed(
    events: &Events,
    every: usize,
    mut between: impl FnMut(),
    mut record: impl FnMut(&str, &str),
) {
    let n = events.len();
    let mut start = 0;
    while start < n {
        let end = (start + every).min(n);
        for i in start..end {
            let (visitor, url) = events.get(i);
            record(visitor, url);
        }
        between();
        start = end;
    }
}

fn record_into(tracker: &Tracker) -> impl FnMut(&str, &str) + '_ {
    |visitor, url| {
        // The workload holds only valid events: an error is a bench bug.
        black_box(tracker.record(visitor, url).expect("valid event"));
    }
}

/// The ingest of one tracker variant: a fresh tracker per iteration,
/// built and dropped outside the timed span.
fn bench_tracker(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    events: &Events,
    name: &str,
    ttl: Option<Duration>,
    expiring: bool,
) {
    group.bench_function(BenchmarkId::new(name, "1t"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let clock = ManualClock::new(START);
                let tracker = tracker(ttl, expiring.then_some(&clock));
                let every = if expiring {
                    events_per_second(events.len())
                } else {
                    events.len()
                };
                let start = Instant::now();
                feed(
                    events,
                    every,
                    || clock.advance(Duration::from_secs(1)),
                    record_into(&tracker),
                );
                total += start.elapsed();
                black_box(&tracker);
            }
            total
        });
    });
}

fn bench_naive(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    events: &Events,
) {
    group.bench_function(BenchmarkId::new(NaiveMap::NAME, "1t"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let naive = NaiveMap::empty();
                let start = Instant::now();
                feed(events, events.len(), || {}, |v, u| naive.record(v, u));
                total += start.elapsed();
                black_box(&naive);
            }
            total
        });
    });
}

/// Returning visitors: the stream replayed into a tracker that already
/// holds all of it (nothing expires; with the TTL every replay refreshes
/// the pair's tick).
fn bench_repeat(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    events: &Events,
    name: &str,
    ttl: Option<Duration>,
) {
    let tracker = tracker(ttl, None);
    feed(events, events.len(), || {}, record_into(&tracker));
    group.bench_function(BenchmarkId::new(name, "1t-repeat"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                feed(events, events.len(), || {}, record_into(&tracker));
            }
            start.elapsed()
        });
    });
}

fn record_group(c: &mut Criterion, events: &Events) {
    let mut group = c.benchmark_group(GROUP);
    // As in the record bench: one iteration is the whole stream, ten flat
    // samples.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(events.len() as u64));
    bench_tracker(&mut group, events, OFF, None, false);
    bench_tracker(&mut group, events, ON_1H, Some(LONG_TTL), false);
    bench_tracker(&mut group, events, EXPIRING, Some(SHORT_TTL), true);
    bench_naive(&mut group, events);
    bench_repeat(&mut group, events, OFF, None);
    bench_repeat(&mut group, events, ON_1H, Some(LONG_TTL));
    group.finish();
}

/// TTL on against off by the thread's CPU clock, which a loaded machine
/// disturbs far less than criterion's wall clock. A round times four fresh
/// trackers in turn, off, on, on, off (ABBA; the next round BAAB), each
/// ingesting the stream and then replaying it once (repeat visits), and
/// takes the ratio of the two on's total over the two off's: a host that
/// speeds up or slows down steadily during the round weighs on both sides
/// alike. (One off-then-on pair a round swung 1.17x to 1.52x in one
/// process on an idle machine.) Prints each round and the medians.
fn cpu_rounds(events: &Events, rounds: usize) {
    let mut ratios = Vec::new();
    for round in 1..=rounds.max(1) {
        let order = if round % 2 == 1 {
            [None, Some(LONG_TTL), Some(LONG_TTL), None]
        } else {
            [Some(LONG_TTL), None, None, Some(LONG_TTL)]
        };
        // Summed (new pairs, repeat visits) ns per event, off then on.
        let (mut off, mut on) = ((0.0, 0.0), (0.0, 0.0));
        for ttl in order {
            let tracker = tracker(ttl, None);
            let times = (new_pairs(events, &tracker), repeat_visits(events, &tracker));
            let side = if ttl.is_some() { &mut on } else { &mut off };
            side.0 += times.0 / 2.0;
            side.1 += times.1 / 2.0;
        }
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "round {round} ({}): off {:.1} / {:.1} ns, 1 h {:.1} / {:.1} ns (new pairs / repeat \
             visits, CPU time per event, mean of two): {:.2}x / {:.2}x; load {}",
            if round % 2 == 1 {
                "off on on off"
            } else {
                "on off off on"
            },
            off.0,
            off.1,
            on.0,
            on.1,
            on.0 / off.0,
            on.1 / off.1,
            load.split(' ').next().unwrap_or("?"),
        );
        ratios.push((on.0 / off.0, on.1 / off.1));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        (v[(n - 1) / 2] + v[n / 2]) / 2.0
    };
    let spread = |v: Vec<f64>| {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(0.0, f64::max);
        format!("{:.2}x (rounds {min:.2}x to {max:.2}x)", median(v))
    };
    println!(
        "median 1 h / off over {} rounds: new pairs {}, repeat visits {}",
        ratios.len(),
        spread(ratios.iter().map(|r| r.0).collect()),
        spread(ratios.iter().map(|r| r.1).collect()),
    );
}

/// The stream into a fresh `tracker`, CPU time per event (ns). Not
/// inlined, so that a profiler can tell it from [`repeat_visits`]
/// (`TTL_BENCH_PROFILE`); the two differ by a marker, or the linker
/// would fold them into one.
#[inline(never)]
fn new_pairs(events: &Events, tracker: &Tracker) -> f64 {
    black_box("new pairs");
    cpu_per_event(events, tracker)
}

/// The stream again into the `tracker` that holds it, CPU time per event.
#[inline(never)]
fn repeat_visits(events: &Events, tracker: &Tracker) -> f64 {
    black_box("repeat visits");
    cpu_per_event(events, tracker)
}

fn cpu_per_event(events: &Events, tracker: &Tracker) -> f64 {
    let start = thread_cpu();
    feed(events, events.len(), || {}, record_into(tracker));
    (thread_cpu() - start).as_nanos() as f64 / events.len() as f64
}

/// `TTL_BENCH_PROFILE=off` or `=1h`: one tracker of that design ingests
/// the stream and replays it, through [`new_pairs`] and
/// [`repeat_visits`], for a profiler to count, e.g. `valgrind
/// --tool=callgrind --collect-atstart=no --toggle-collect='*new_pairs*'`.
fn profile(events: &Events, design: &str) {
    let ttl = match design {
        "off" => None,
        "1h" => Some(LONG_TTL),
        other => panic!("TTL_BENCH_PROFILE={other}: expected off or 1h"),
    };
    let tracker = tracker(ttl, None);
    let new = new_pairs(events, &tracker);
    let repeat = repeat_visits(events, &tracker);
    println!("{design}: {new:.1} / {repeat:.1} ns per event (new pairs / repeat visits)");
}

/// What the expiring run leaves behind (one untimed run), to show that
/// expiry really happened during it.
fn expiring_run_stats(events: &Events) -> tracker_core::Stats {
    let clock = ManualClock::new(START);
    let tracker = tracker(Some(SHORT_TTL), Some(&clock));
    feed(
        events,
        events_per_second(events.len()),
        || clock.advance(Duration::from_secs(1)),
        record_into(&tracker),
    );
    tracker.stats()
}

fn print_expiring(stats: &tracker_core::Stats, events: usize) {
    println!(
        "\nThe expiring run ({events} events, TTL {} s, the clock moved 1 s every {} events, \
         {TTLS_SPANNED} TTLs in all) ends holding {} pairs on {} pages; {} pairs expired and {} \
         pages were removed on the way.",
        SHORT_TTL.as_secs(),
        events_per_second(events),
        stats.pairs,
        stats.pages,
        stats.expirations,
        stats.expired_pages,
    );
}

struct Memory {
    label: &'static str,
    pairs: u64,
    live: usize,
    own: Option<u64>,
}

/// Heap bytes per pair after ingesting the stream, nothing expired.
fn memory_per_pair(events: &Events) -> Vec<Memory> {
    let mut rows = Vec::new();
    for (label, ttl) in [("TTL off", None), ("TTL 1 h", Some(LONG_TTL))] {
        let (tracker, live) = counted(|| {
            let tracker = tracker(ttl, None);
            feed(events, events.len(), || {}, record_into(&tracker));
            tracker
        });
        let stats = tracker.stats();
        rows.push(Memory {
            label,
            pairs: stats.pairs,
            live,
            own: Some(stats.bytes),
        });
    }
    let (naive, live) = counted(|| {
        let naive = NaiveMap::empty();
        feed(events, events.len(), || {}, |v, u| naive.record(v, u));
        naive
    });
    rows.push(Memory {
        label: "naive (reference)",
        pairs: naive.pairs(),
        live,
        own: None,
    });
    rows
}

fn print_memory(rows: &[Memory]) {
    let off = rows[0].live as f64 / rows[0].pairs.max(1) as f64;
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|m| {
            let per_pair = m.live as f64 / m.pairs.max(1) as f64;
            vec![
                m.label.to_owned(),
                m.pairs.to_string(),
                format!("{:.1}", m.live as f64 / (1024.0 * 1024.0)),
                format!("{per_pair:.2}"),
                m.own.map_or_else(
                    || "-".to_owned(),
                    |own| format!("{:.2}", own as f64 / m.pairs.max(1) as f64),
                ),
                format!("{:.2}x", per_pair / off),
            ]
        })
        .collect();
    println!(
        "\nHeap per distinct (page, visitor) pair after ingesting the stream, nothing expired \
         (counting allocator, bytes requested; \"own\" = stats().bytes per pair):\n"
    );
    print!(
        "{}",
        markdown_table(
            &[
                "tracker",
                "pairs",
                "live MiB",
                "B/pair",
                "own B/pair",
                "x TTL off"
            ],
            &table
        )
    );
}

fn print_ratios(dir: &std::path::Path, since: SystemTime, events: usize) {
    let per_event = |name: &str, case: &str| {
        mean_ns(dir, GROUP, name, case, since).map(|ns| ns / events as f64)
    };
    let show = |t: Option<f64>| t.map_or_else(|| "n/a".to_owned(), human_ns);
    let off = per_event(OFF, "1t");
    let on = per_event(ON_1H, "1t");
    let expiring = per_event(EXPIRING, "1t");
    let naive = per_event(NaiveMap::NAME, "1t");
    let off_repeat = per_event(OFF, "1t-repeat");
    let on_repeat = per_event(ON_1H, "1t-repeat");
    let rows = vec![
        vec![
            "record, 1 thread (per event)".to_owned(),
            show(off),
            show(on),
            show(expiring),
            show(naive),
            ratio(on, off),
            ratio(expiring, off),
            ratio(naive, on),
            ratio(naive, expiring),
        ],
        vec![
            "record repeat visits, 1 thread".to_owned(),
            show(off_repeat),
            show(on_repeat),
            "-".to_owned(),
            "-".to_owned(),
            ratio(on_repeat, off_repeat),
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
        ],
    ];
    println!(
        "\nIngest with the TTL on and off (criterion's estimate per event, {events} events). \
         \"on / off\" = time with the TTL over time without (above 1: the TTL costs that much); \
         \"vs naive\" = naive's time over the TTL tracker's (above 1: tracker is faster).\n"
    );
    print!(
        "{}",
        markdown_table(
            &[
                "workload",
                "TTL off",
                "TTL 1 h",
                "TTL 60 s, expiring",
                "naive",
                "1 h / off",
                "expiring / off",
                "naive vs 1 h",
                "naive vs expiring",
            ],
            &rows,
        )
    );
}

// ---------------------------------------------------------------------
// Part 2: reclaiming 1M expired pairs, step by step.
// ---------------------------------------------------------------------

/// A duration distribution's summary.
struct Spread {
    count: usize,
    total: Duration,
    max: Duration,
    p999: Duration,
    p99: Duration,
    p50: Duration,
}

impl Spread {
    fn of(mut times: Vec<Duration>) -> Self {
        times.sort_unstable();
        // Nearest rank.
        let at = |q: f64| {
            let rank = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len().max(1));
            times.get(rank - 1).copied().unwrap_or_default()
        };
        Self {
            count: times.len(),
            total: times.iter().sum(),
            max: times.last().copied().unwrap_or_default(),
            p999: at(0.999),
            p99: at(0.99),
            p50: at(0.5),
        }
    }
}

fn micros(d: Duration) -> String {
    human_ns(d.as_nanos() as f64)
}

fn tracker_with_ttl_at(clock: &ManualClock) -> Tracker {
    tracker(Some(RECLAIM_TTL), Some(clock))
}

/// A tracker with a TTL on a manual clock, holding `pairs` pairs over a
/// Zipf page distribution, all live, arrived over [`RECLAIM_ARRIVAL`].
fn filled(events: &Events) -> (Tracker, ManualClock, u64) {
    let clock = ManualClock::new(START);
    let tracker = tracker_with_ttl_at(&clock);
    let empty = tracker.stats().bytes;
    let every = (events.len() / RECLAIM_ARRIVAL.as_secs() as usize).max(1);
    feed(
        events,
        every,
        || clock.advance(Duration::from_secs(1)),
        record_into(&tracker),
    );
    let stats = tracker.stats();
    assert_eq!(
        stats.pairs,
        events.len() as u64,
        "every pair held, none expired"
    );
    (tracker, clock, empty)
}

struct Held {
    pages: u64,
    pairs: u64,
    bytes: u64,
}

fn held(tracker: &Tracker) -> Held {
    let s = tracker.stats();
    Held {
        pages: s.pages,
        pairs: s.pairs,
        bytes: s.bytes,
    }
}

/// The CPU time this thread has used: unlike the wall clock, it does not
/// run while the thread is preempted, so it tells a step's own work from
/// time the scheduler gave to another process.
fn thread_cpu() -> Duration {
    // rustix reads the clock without `unsafe` on our side.
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// Runs `f`, timed by the wall clock and by the thread's CPU clock (the
/// CPU clock read outside the wall-clock span, so its system calls do not
/// count in the wall time).
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let cpu = thread_cpu();
    let start = Instant::now();
    let out = f();
    let wall = start.elapsed();
    (out, wall, thread_cpu().saturating_sub(cpu))
}

/// One round of the explicit path: `sweep(32)` until no page is left.
struct Swept {
    before: Held,
    after: Held,
    empty: u64,
    wall: Spread,
    cpu: Spread,
    /// The step that dropped the most pairs: pairs, pages, wall time.
    heaviest: (u64, u64, Duration),
    sweep_pass_buckets: usize,
}

fn sweep_round(events: &Events) -> Swept {
    let (tracker, clock, empty) = filled(events);
    let before = held(&tracker);
    let sweep_pass_buckets = tracker.sweep_pass_buckets();
    clock.advance(RECLAIM_TTL);
    // A full pass visits every bucket once; a few passes' worth of steps
    // is a generous bound that only a bug would reach.
    let cap = 4 * sweep_pass_buckets.div_ceil(SWEEP_BUCKETS) + 64;
    let (mut walls, mut cpus) = (Vec::with_capacity(cap), Vec::with_capacity(cap));
    let mut heaviest = (0, 0, Duration::ZERO);
    while tracker.stats().pages > 0 {
        assert!(walls.len() < cap, "the sweep did not finish in {cap} steps");
        let (step, wall, cpu) = timed(|| tracker.sweep(SWEEP_BUCKETS));
        walls.push(wall);
        cpus.push(cpu);
        if step.pairs_dropped > heaviest.0 {
            heaviest = (step.pairs_dropped, step.pages_removed, wall);
        }
    }
    let after = held(&tracker);
    assert_eq!(after.pairs, 0);
    assert_eq!(
        after.bytes, empty,
        "an emptied tracker holds what an empty one does"
    );
    Swept {
        before,
        after,
        empty,
        wall: Spread::of(walls),
        cpu: Spread::of(cpus),
        heaviest,
        sweep_pass_buckets,
    }
}

/// One round of the piggy-backed path: records of one page of their own,
/// each timed, until the expired pages are gone; then as many again with
/// nothing left to reclaim, for comparison.
struct Piggybacked {
    before: Held,
    after: Held,
    /// Bytes of a fresh tracker given only the driver's records.
    driver_alone: u64,
    during: Spread,
    during_cpu: Spread,
    control: Spread,
}

fn piggyback_round(events: &Events, driver: &[String], driver_url: &str) -> Piggybacked {
    let (tracker, clock, _) = filled(events);
    let before = held(&tracker);
    clock.advance(RECLAIM_TTL);
    // Every 64 records on a stripe run one 32-bucket step: a pass needs
    // about 2 records per bucket; allow a few passes.
    let cap = 8 * 2 * tracker.sweep_pass_buckets() + 10_000;
    let record = |i: usize| {
        let visitor = &driver[i % driver.len()];
        timed(|| black_box(tracker.record(visitor, driver_url).expect("valid event")))
    };
    let (mut during, mut during_cpu) = (Vec::with_capacity(cap), Vec::with_capacity(cap));
    // Only the driver's page is left once the expired ones are reclaimed.
    while tracker.stats().pages > 1 {
        assert!(
            during.len() < cap,
            "records did not reclaim in {cap} records"
        );
        for _ in 0..64 {
            let (_, wall, cpu) = record(during.len());
            during.push(wall);
            during_cpu.push(cpu);
        }
    }
    let after = held(&tracker);
    let control: Vec<Duration> = (0..during.len()).map(|i| record(i).1).collect();
    assert_eq!(after.pages, 1);
    let alone = tracker_with_ttl_at(&clock);
    for visitor in driver {
        alone.record(visitor, driver_url).expect("valid event");
    }
    Piggybacked {
        before,
        after,
        driver_alone: alone.stats().bytes,
        during: Spread::of(during),
        during_cpu: Spread::of(during_cpu),
        control: Spread::of(control),
    }
}

fn reclaim(pages: usize, pairs: usize, rounds: usize) {
    let generating = Instant::now();
    // One page view per visitor: exactly `pairs` distinct pairs.
    let workload = ZipfWorkload::generate(pages, pairs, pairs, ZIPF_S, RECLAIM_SEED);
    let events = &workload.events;
    let hot = events.iter().filter(|e| e.1 == workload.urls[0]).count();
    eprintln!(
        "reclaim workload: {pairs} pairs over {pages} Zipf pages generated in {:.1?}",
        generating.elapsed()
    );
    let driver: Vec<String> = (0..DRIVER_VISITORS)
        .map(|i| visitor_id(usize::MAX / 2 + i))
        .collect();
    let driver_url = page_url(pages + 1);

    let mut sweeps = Vec::new();
    let mut piggies = Vec::new();
    for round in 0..rounds {
        let started = Instant::now();
        sweeps.push(sweep_round(events));
        piggies.push(piggyback_round(events, &driver, &driver_url));
        eprintln!(
            "reclaim round {} done in {:.1?}",
            round + 1,
            started.elapsed()
        );
    }

    let first = &sweeps[0];
    println!(
        "\nReclaiming {} expired pairs on {} pages (Zipf s={ZIPF_S} over {pages} pages, hottest \
         page {hot} pairs; TTL {} s, pairs arrived over {} s, then the clock moved on by the \
         TTL). Held before: {:.1} MiB ({:.2} B/pair); empty tracker: {} B; one sweep pass = {} \
         page-table buckets.\n",
        first.before.pairs,
        first.before.pages,
        RECLAIM_TTL.as_secs(),
        RECLAIM_ARRIVAL.as_secs(),
        first.before.bytes as f64 / (1024.0 * 1024.0),
        first.before.bytes as f64 / first.before.pairs.max(1) as f64,
        first.empty,
        first.sweep_pass_buckets,
    );
    let rows: Vec<Vec<String>> = sweeps
        .iter()
        .enumerate()
        .map(|(round, s)| {
            vec![
                format!("{}", round + 1),
                s.wall.count.to_string(),
                micros(s.wall.total),
                micros(s.wall.max),
                micros(s.cpu.max),
                format!(
                    "{} pairs, {} pages: {}",
                    s.heaviest.0,
                    s.heaviest.1,
                    micros(s.heaviest.2)
                ),
                micros(s.wall.p999),
                micros(s.wall.p99),
                micros(s.wall.p50),
                s.before.bytes.to_string(),
                s.after.bytes.to_string(),
            ]
        })
        .collect();
    println!(
        "`tracker.sweep({SWEEP_BUCKETS})` until no page is left, every step timed (wall clock; \
         \"CPU\" = the thread's CPU time, which excludes preemption):\n"
    );
    print!(
        "{}",
        markdown_table(
            &[
                "round",
                "steps",
                "total",
                "max step",
                "max step CPU",
                "heaviest step",
                "p99.9",
                "p99",
                "p50",
                "bytes before",
                "bytes after",
            ],
            &rows
        )
    );

    let rows: Vec<Vec<String>> = piggies
        .iter()
        .enumerate()
        .map(|(round, p)| {
            vec![
                format!("{}", round + 1),
                p.during.count.to_string(),
                micros(p.during.total),
                micros(p.during.max),
                micros(p.during_cpu.max),
                micros(p.during.p999),
                micros(p.during.p99),
                micros(p.during.p50),
                micros(p.control.max),
                micros(p.control.p99),
                micros(p.control.p50),
                p.before.bytes.to_string(),
                p.after.bytes.to_string(),
                p.driver_alone.to_string(),
            ]
        })
        .collect();
    println!(
        "\nThe same reclaimed by records alone: records of one other page ({DRIVER_VISITORS} \
         visitors in turn), every record timed, until only that page is left (\"during\"); then \
         as many records again with nothing left to reclaim (\"after\").\n"
    );
    print!(
        "{}",
        markdown_table(
            &[
                "round",
                "records",
                "total",
                "max record",
                "max record CPU",
                "p99.9",
                "p99",
                "p50",
                "after: max",
                "after: p99",
                "after: p50",
                "bytes before",
                "bytes after",
                "driver page alone",
            ],
            &rows
        )
    );
}

// ---------------------------------------------------------------------
// Part 3: the longest sweep step while pairs expire a minute at a time.
// ---------------------------------------------------------------------

/// One case of part 3: every `sweep(32)` step's wall and CPU time.
struct Gradual {
    case: String,
    hottest: u64,
    passes: usize,
    wall: Spread,
    cpu: Spread,
    /// The most slots a step visited.
    slots: u64,
    /// The step with the most CPU time: slots, pairs dropped, pages
    /// removed.
    longest: (u64, u64, u64),
}

/// `pairs` pairs (one view per visitor) over `pages` Zipf pages arrive
/// over [`RECLAIM_ARRIVAL`] with the TTL [`RECLAIM_TTL`]; then the clock
/// moves on [`GRADUAL_STEP`] at a time, so that a minute's pairs expire
/// at each move, and `sweep(32)` steps run after each move until a whole
/// pass is done (every page-table bucket and every large table's slots
/// visited), until no page is left. Every step is timed.
fn gradual(case: &str, pages: usize, pairs: usize) -> Gradual {
    let workload = ZipfWorkload::generate(pages, pairs, pairs, ZIPF_S, RECLAIM_SEED);
    let hottest = workload
        .events
        .iter()
        .filter(|e| e.1 == workload.urls[0])
        .count() as u64;
    let (tracker, clock, empty) = filled(&workload.events);
    // The first pairs expire one TTL after they arrived.
    clock.advance(RECLAIM_TTL - RECLAIM_ARRIVAL);
    let (mut walls, mut cpus, mut slots, mut passes) = (Vec::new(), Vec::new(), 0, 0);
    let (mut longest, mut longest_cpu) = ((0, 0, 0), Duration::ZERO);
    while tracker.stats().pages > 0 {
        assert!(passes < 200, "{case}: pages left after {passes} passes");
        clock.advance(GRADUAL_STEP);
        passes += 1;
        // A pass: the page-table buckets and the slots of the tables.
        let (mut buckets, mut visited) = (0, 0);
        let pass_slots = tracker.stats().pairs;
        let pass_buckets = tracker.sweep_pass_buckets() as u64;
        while (buckets < pass_buckets || visited < pass_slots) && tracker.stats().pages > 0 {
            let (step, wall, cpu) = timed(|| tracker.sweep(SWEEP_BUCKETS));
            walls.push(wall);
            cpus.push(cpu);
            slots = slots.max(step.slots);
            if cpu > longest_cpu {
                longest_cpu = cpu;
                longest = (step.slots, step.pairs_dropped, step.pages_removed);
            }
            buckets += step.buckets;
            visited += step.slots;
            if step.buckets == 0 {
                break;
            }
        }
    }
    assert_eq!(
        tracker.stats().bytes,
        empty,
        "{case}: everything given back"
    );
    eprintln!(
        "gradual expiry, {case}: {passes} passes, {} steps",
        walls.len()
    );
    Gradual {
        case: case.to_string(),
        hottest,
        passes,
        wall: Spread::of(walls),
        cpu: Spread::of(cpus),
        slots,
        longest,
    }
}

fn print_gradual(pairs: usize, rows: &[Gradual]) {
    println!(
        "\nThe longest sweep step while {pairs} pairs expire a minute at a time (TTL {} s, arrived \
         over {} s; after each minute, `tracker.sweep({SWEEP_BUCKETS})` steps until a whole pass \
         is done; wall clock and the thread's CPU time):\n",
        RECLAIM_TTL.as_secs(),
        RECLAIM_ARRIVAL.as_secs(),
    );
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|g| {
            vec![
                g.case.clone(),
                g.hottest.to_string(),
                g.passes.to_string(),
                g.wall.count.to_string(),
                micros(g.wall.max),
                micros(g.cpu.max),
                micros(g.wall.p999),
                micros(g.wall.p99),
                micros(g.wall.p50),
                g.slots.to_string(),
                format!(
                    "{} slots, {} pairs, {} pages",
                    g.longest.0, g.longest.1, g.longest.2
                ),
            ]
        })
        .collect();
    print!(
        "{}",
        markdown_table(
            &[
                "case",
                "hottest page",
                "passes",
                "steps",
                "max step",
                "max step CPU",
                "p99.9",
                "p99",
                "p50",
                "most slots in a step",
                "the longest step (CPU)",
            ],
            &rows
        )
    );
}

/// One page past its peak, in one stripe: `peak` visitors, then `after`
/// more half a TTL (or, with a retention, a day) later; once the peak has
/// left (the after ones still in), `sweep(32)` steps for several passes
/// over the page's table, each timed. Returns the bytes before and after
/// the steps, the pairs left, and the longest step's wall and CPU time.
fn past_peak(peak: usize, after: usize, ttl: bool) -> (u64, u64, u64, Duration, Duration) {
    let clock = ManualClock::new(START);
    let builder = Tracker::builder().stripes(1).clock(Arc::new(clock.clone()));
    // The later visitors come `gap` after the peak; `left` later still
    // the peak has left the TTL or the retention, and they have not.
    let (builder, gap, left) = if ttl {
        let half = RECLAIM_TTL / 2;
        (
            builder.ttl(RECLAIM_TTL),
            half,
            half + Duration::from_secs(1),
        )
    } else {
        let day = Duration::from_secs(86_400);
        let retention = builder.retention(2 * day);
        (retention, day, day + Duration::from_secs(3_600))
    };
    let tracker = builder.build().expect("valid settings");
    let url = page_url(0);
    for v in 0..peak {
        tracker.record(&visitor_id(v), &url).expect("recorded");
    }
    clock.advance(gap);
    for v in peak..peak + after {
        tracker.record(&visitor_id(v), &url).expect("recorded");
    }
    clock.advance(left);
    let before = tracker.stats().bytes;
    let (mut wall, mut cpu) = (Duration::ZERO, Duration::ZERO);
    // A step visits 8,192 of the table's slots: enough for a few passes.
    for _ in 0..(peak / 8_192 + 2) * 3 {
        let (_, w, c) = timed(|| tracker.sweep(SWEEP_BUCKETS));
        (wall, cpu) = (wall.max(w), cpu.max(c));
    }
    let stats = tracker.stats();
    (before, stats.bytes, stats.pairs, wall, cpu)
}

fn print_past_peak(peak: usize, after: &[usize]) {
    println!(
        "\nA page past its peak: {peak} visitors, then fewer half a TTL (or a day) later, one \
         stripe; `sweep({SWEEP_BUCKETS})` steps once the peak has left (wall clock and the \
         thread's CPU time of the longest step):\n"
    );
    let mut rows = Vec::new();
    for &after in after {
        for ttl in [true, false] {
            let (before, bytes, pairs, wall, cpu) = past_peak(peak, after, ttl);
            rows.push(vec![
                if ttl { "TTL 1 h" } else { "retention 2 d" }.to_string(),
                after.to_string(),
                pairs.to_string(),
                before.to_string(),
                bytes.to_string(),
                format!("{:.1}", bytes as f64 / pairs.max(1) as f64),
                micros(wall),
                micros(cpu),
            ]);
        }
    }
    print!(
        "{}",
        markdown_table(
            &[
                "expiry",
                "visitors after",
                "pairs left",
                "bytes before",
                "bytes after",
                "B/pair after",
                "max step",
                "max step CPU",
            ],
            &rows
        )
    );
}
