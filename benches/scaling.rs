// Run: cargo bench -p tracker-benches --bench scaling
// (with `--features lock-stats`, then each stripe's lock waits and hold
// times, from one more run per workload and thread count)
//! Thread scaling of `record` (issue 18), separating the hardware from the
//! design. Two workloads of 2M events over 100k pages and 1M visitors:
//! uniform pages (no hot page) and Zipf s = 1 (the record bench's). Three
//! ways to feed each:
//!
//! - **1 thread**, one tracker;
//! - **2 threads, shared**: one tracker, the stream in two halves;
//! - **2 threads, apart**: two trackers, one per thread, each given its
//!   half. No lock, no cache line and no allocation arena is shared
//!   between the threads, so this is what the machine gives two threads
//!   doing this work: the ceiling for the shared case.
//!
//! "shared / apart" near 1 means the design costs nothing over the
//! hardware; the speed-up of "apart" is the hardware's. Lock waits are
//! counted as the threads' voluntary context switches (a stripe lock
//! that is held makes a thread block in the kernel; the feed does no
//! I/O). Plain `Instant`
//! timings, the median of several runs, with each thread's CPU time: the
//! load average is printed, because other processes on the machine take
//! cores too, and then only the CPU time per event (the work, whoever got
//! the cores) still compares the designs. `ONLY=uniform` (any part of a
//! workload's name) runs one workload and `ROUNDS=n` sets the runs a
//! median is of: for alternating two builds' binaries in an A/B.

use std::time::{Duration, Instant};

use tracker_benches::full_run;
use tracker_benches::ratios::{human_ns, markdown_table};
use tracker_benches::workload::{CORE_ZIPF_S, Events, ZipfWorkload};
use tracker_core::Tracker;

const PAGES: usize = 100_000;
const VISITORS: usize = 1_000_000;
const EVENTS: usize = 2_000_000;
const SEED: u64 = 0x5CA1_E018;

fn main() {
    let full = full_run();
    let (events, runs) = if full { (EVENTS, 7) } else { (20_000, 1) };
    let runs = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(runs);
    let only = std::env::var("ONLY").unwrap_or_default();
    println!("load average before: {}", load_average());
    let mut rows = Vec::new();
    for (name, s) in [("uniform", 0.0), ("Zipf s=1", CORE_ZIPF_S)] {
        if !name.contains(only.as_str()) {
            continue;
        }
        let workload = ZipfWorkload::generate(PAGES, VISITORS.min(events), events, s, SEED);
        let one = median(runs, || feed(&workload.events, 1, true));
        let shared = median(runs, || feed(&workload.events, 2, true));
        let apart = median(runs, || feed(&workload.events, 2, false));
        let per = |d: Duration| human_ns(d.as_nanos() as f64 / events as f64);
        let speed = |t: Timing| format!("{:.2}x", one.wall.as_secs_f64() / t.wall.as_secs_f64());
        let cost = |t: Timing| format!("{:.2}", t.cpu.as_secs_f64() / one.cpu.as_secs_f64());
        let blocked = |t: Timing| format!("{:.3}", t.blocked as f64 * 1_000.0 / events as f64);
        rows.push(vec![
            name.to_string(),
            per(one.wall),
            per(one.cpu),
            per(shared.wall),
            speed(shared),
            cost(shared),
            blocked(shared),
            per(apart.wall),
            speed(apart),
            cost(apart),
            blocked(apart),
        ]);
    }
    println!("load average after: {}", load_average());
    #[cfg(feature = "lock-stats")]
    let locks = lock_rows(full);
    println!(
        "\n{events} events over {PAGES} pages, {VISITORS} visitors; median of {runs} runs. Wall: \
         time per event of the whole stream. CPU: the threads' CPU time per event, summed (not \
         counting time they waited for a core). \"CPU x\" is the CPU per event against 1 thread: \
         the work the design adds when threads share (or do not share) a tracker. \"blocked \
         /1k\": the threads' voluntary context switches per 1,000 events, each a wait for a \
         stripe lock (apart, the floor: page faults and the like).\n"
    );
    print!(
        "{}",
        markdown_table(
            &[
                "workload",
                "1 thread wall",
                "1 thread CPU",
                "2 shared wall",
                "speed-up",
                "CPU x",
                "blocked /1k",
                "2 apart wall",
                "speed-up",
                "CPU x",
                "blocked /1k",
            ],
            &rows
        )
    );
    #[cfg(feature = "lock-stats")]
    print_locks(events, &locks);
}

/// One more run per workload and thread count into one tracker built with
/// the `lock-stats` counters: each stripe's write-lock hold times and the
/// share of takes that found the lock held. (A separate run, because the
/// counters' clock reads slow the timed ones.)
#[cfg(feature = "lock-stats")]
fn lock_rows(full: bool) -> Vec<Vec<String>> {
    let events = if full { EVENTS } else { 20_000 };
    let mut rows = Vec::new();
    for (name, s) in [("uniform", 0.0), ("Zipf s=1", CORE_ZIPF_S)] {
        let workload = ZipfWorkload::generate(PAGES, VISITORS.min(events), events, s, SEED);
        for threads in [1, 2] {
            let tracker = tracker();
            feed_into(std::slice::from_ref(&tracker), &workload.events, threads);
            for (stripe, stats) in tracker.lock_stats().iter().enumerate() {
                let share =
                    |n: u64, of: u64| format!("{:.3}%", 100.0 * n as f64 / of.max(1) as f64);
                rows.push(vec![
                    name.to_string(),
                    threads.to_string(),
                    stripe.to_string(),
                    stats.writes.to_string(),
                    share(stats.write_waits, stats.writes),
                    format!(
                        "{:.0}",
                        stats.write_wait_ns as f64 / stats.write_waits.max(1) as f64
                    ),
                    if stats.write_waits == 0 {
                        "-".to_string()
                    } else {
                        format!(
                            "{}/{}/{}",
                            stats.wait_quantile_ns(0.5),
                            stats.wait_quantile_ns(0.99),
                            stats.wait_quantile_ns(1.0)
                        )
                    },
                    format!("{:.0}", stats.hold_ns as f64 / stats.writes.max(1) as f64),
                    stats.hold_quantile_ns(0.5).to_string(),
                    stats.hold_quantile_ns(0.99).to_string(),
                    stats.hold_quantile_ns(0.999).to_string(),
                    stats.hold_quantile_ns(1.0).to_string(),
                ]);
            }
        }
    }
    println!("load average after the lock-stats runs: {}", load_average());
    rows
}

#[cfg(feature = "lock-stats")]
fn print_locks(events: usize, rows: &[Vec<String>]) {
    println!(
        "\nPer stripe, {events} events into one tracker (default stripes), lock-stats build: \
         write locks taken, the share that found the lock held (waited) and those waits' mean \
         in ns (spinning or asleep, until the lock was taken) with the upper bounds of the \
         log2 buckets of their median, 99th percentile and longest, and write hold times in \
         ns: mean, and the upper bound of the log2 bucket of the median, 99th, 99.9th percentile \
         and the longest (so within 2x; each includes about one clock read).\n"
    );
    print!(
        "{}",
        markdown_table(
            &[
                "workload",
                "threads",
                "stripe",
                "writes",
                "waited",
                "wait ns",
                "wait p50/p99/max ≤",
                "mean ns",
                "p50 ≤",
                "p99 ≤",
                "p99.9 ≤",
                "max ≤",
            ],
            rows
        )
    );
}

/// A run's wall time and the CPU time of its threads, summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timing {
    wall: Duration,
    cpu: Duration,
    /// The threads' voluntary context switches, summed: each is a thread
    /// that blocked, here on a stripe lock another thread held (the feed
    /// does no I/O).
    blocked: u64,
}

fn tracker() -> Tracker {
    Tracker::builder().build().expect("default settings")
}

/// Feeds the stream in `threads` contiguous parts, into one tracker
/// (`shared`) or one per thread.
fn feed(events: &Events, threads: usize, shared: bool) -> Timing {
    let trackers: Vec<Tracker> = (0..if shared { 1 } else { threads })
        .map(|_| tracker())
        .collect();
    feed_into(&trackers, events, threads)
}

/// Feeds the stream in `threads` contiguous parts into `trackers`: all
/// into the one, or one tracker per thread.
fn feed_into(trackers: &[Tracker], events: &Events, threads: usize) -> Timing {
    let shared = trackers.len() == 1;
    let start = Instant::now();
    let (cpu, blocked) = std::thread::scope(|s| {
        let handles: Vec<_> = events
            .chunks(threads)
            .into_iter()
            .enumerate()
            .map(|(t, range)| {
                let tracker = &trackers[if shared { 0 } else { t }];
                s.spawn(move || {
                    let (cpu, blocked) = (thread_cpu(), voluntary_switches());
                    for i in range {
                        let (visitor, url) = events.get(i);
                        tracker.record(visitor, url).expect("recorded");
                    }
                    (
                        thread_cpu().saturating_sub(cpu),
                        voluntary_switches().saturating_sub(blocked),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("feeder"))
            .fold((Duration::ZERO, 0), |(c, b), (cpu, blocked)| {
                (c + cpu, b + blocked)
            })
    });
    Timing {
        wall: start.elapsed(),
        cpu,
        blocked,
    }
}

/// This thread's voluntary context switches so far (Linux: from
/// `/proc/thread-self/status`; 0 where that cannot be read).
fn voluntary_switches() -> u64 {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The CPU time this thread has used.
fn thread_cpu() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// The run of median wall time.
fn median(runs: usize, mut run: impl FnMut() -> Timing) -> Timing {
    let mut times: Vec<Timing> = (0..runs).map(|_| run()).collect();
    times.sort_unstable();
    times[times.len() / 2]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string())
}
