// Run: cargo bench -p tracker-benches --bench batch
//! `Tracker::record_batch` against `Tracker::record` one by one and the
//! naive design (issue 16): the record bench's Zipf stream (2M events,
//! 100k pages, 1M visitors) fed whole into a fresh counter, on 1 and 2
//! threads (contiguous halves), the batch path in batches of `BATCH`.
//! Plain timed rounds, interleaved (each round runs every design once),
//! the median of `ROUNDS`; then ns per event and the ratios to naive.
//! `cargo test --benches` runs it once on a tiny stream. `ONLY=batch`
//! (any part of a design's name) runs only the designs it names, for
//! profiling one alone (`perf record`, `valgrind --tool=callgrind`);
//! `THREADS=1` (or `1,2`) and `ROUNDS=n` narrow the run likewise;
//! `BATCH=n` sets the batch size. `REPEAT=1` feeds each fresh counter
//! the stream once untimed and times a second feed of the same events:
//! every event a pair already held, the work left once inserts,
//! growths and new pages are taken away.

use std::time::{Duration, Instant};

use tracker_benches::baselines::{DistinctCounter, NaiveMap};
use tracker_benches::full_run;
use tracker_benches::workload::ZipfWorkload;
use tracker_core::{RecordBatch, Tracker};

const BATCH: usize = 1024;
const ROUNDS: usize = 5;
const DESIGNS: [&str; 3] = ["naive", "tracker record", "tracker record_batch"];

/// The batch size: `BATCH` from the environment, else [`BATCH`].
fn batch_size() -> usize {
    std::env::var("BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .filter(|&b| b > 0)
        .unwrap_or(BATCH)
}

/// Whether `REPEAT` asks for the second feed of the stream to be timed.
fn repeat() -> bool {
    std::env::var("REPEAT").is_ok_and(|r| r == "1")
}

/// Feeds `events` into a fresh counter of `design` on `threads` threads
/// (with [`repeat`], twice, timing the second feed).
fn run(design: &str, events: &[(&str, &str)], threads: usize) -> Duration {
    let per_thread = events.len().div_ceil(threads).max(1);
    match design {
        "naive" => {
            let naive = NaiveMap::empty();
            timed(events, per_thread, |part| {
                for &(v, u) in part {
                    naive.record(v, u);
                }
            })
        }
        "tracker record" => {
            let tracker = Tracker::new();
            timed(events, per_thread, |part| {
                for &(v, u) in part {
                    let _ = tracker.record(v, u);
                }
            })
        }
        _ => {
            let tracker = Tracker::new();
            timed(events, per_thread, |part| {
                let mut batch = RecordBatch::default();
                for chunk in part.chunks(batch_size()) {
                    tracker.record_batch(chunk, &mut batch);
                }
            })
        }
    }
}

/// The wall time of `feed` run on each `per_thread` part of `events`,
/// one thread per part; with [`repeat`], of its second such run.
fn timed(
    events: &[(&str, &str)],
    per_thread: usize,
    feed: impl Fn(&[(&str, &str)]) + Sync,
) -> Duration {
    if repeat() {
        feed_parts(events, per_thread, &feed);
    }
    feed_parts(events, per_thread, &feed)
}

/// The wall time of `feed` run on each `per_thread` part of `events`,
/// one thread per part.
fn feed_parts(
    events: &[(&str, &str)],
    per_thread: usize,
    feed: &(impl Fn(&[(&str, &str)]) + Sync),
) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for part in events.chunks(per_thread) {
            s.spawn(move || feed(part));
        }
    });
    start.elapsed()
}

fn main() {
    let full = full_run();
    let workload = ZipfWorkload::core(full);
    let events: Vec<(&str, &str)> = workload.events.iter().collect();
    let rounds = if full { ROUNDS } else { 1 };
    let only = std::env::var("ONLY").unwrap_or_default();
    let rounds = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(rounds);
    let threads: Vec<usize> = match std::env::var("THREADS") {
        Ok(t) => t.split(',').filter_map(|t| t.parse().ok()).collect(),
        Err(_) => vec![1, 2],
    };
    for threads in threads {
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); DESIGNS.len()];
        for _ in 0..rounds {
            for (i, design) in DESIGNS.iter().enumerate() {
                let skipped = !design.contains(only.as_str());
                times[i].push(if skipped {
                    Duration::ZERO
                } else {
                    run(design, &events, threads)
                });
            }
        }
        let median = |t: &mut Vec<Duration>| {
            t.sort();
            t[t.len() / 2]
        };
        let medians: Vec<Duration> = times.iter_mut().map(median).collect();
        let naive = medians[0].as_secs_f64();
        println!();
        println!(
            "{threads} thread(s), {} events{}, batches of {}, median of {rounds}",
            events.len(),
            if repeat() {
                " (the second feed: every pair already held)"
            } else {
                ""
            },
            batch_size()
        );
        println!("| design | ns/event | fastest – slowest ns/event | vs naive |");
        println!("| --- | ---: | ---: | ---: |");
        for (i, design) in DESIGNS.iter().enumerate() {
            let per = |d: Duration| d.as_secs_f64() * 1e9 / events.len() as f64;
            println!(
                "| {design} | {:.0} | {:.0} – {:.0} | {:.2}x |",
                per(medians[i]),
                per(times[i][0]),
                per(times[i][times[i].len() - 1]),
                naive / medians[i].as_secs_f64()
            );
        }
    }
}
