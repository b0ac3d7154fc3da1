// Run: cargo run --release -p tracker-core --example log_append_rate [DIR]
//
// Appends per second to the event log under each sync policy, from one
// thread and from 8 threads sharing the log (group commit). DIR (default: a
// temporary directory under the current one) should be on the disk to be
// measured: on a tmpfs an fsync costs nothing.

use std::time::{Duration, Instant};
use tracker_core::persist::{EventLog, FsyncPolicy, LogEvent, LogOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = match std::env::args().nth(1) {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir_in(".")?,
    };
    println!("log in {}", base.path().display());
    println!(
        "{:<14} {:>8} {:>10} {:>14} {:>10}",
        "policy", "threads", "appends", "appends/s", "µs/append"
    );
    let url = "https://example.com/products/espresso-machine?ref=newsletter";
    let policies = [
        ("always", FsyncPolicy::Always),
        (
            "interval 10ms",
            FsyncPolicy::Interval(Duration::from_millis(10)),
        ),
        ("off", FsyncPolicy::Off),
    ];
    for (name, policy) in policies {
        for threads in [1u64, 8] {
            let dir = tempfile::tempdir_in(base.path())?;
            let (log, _) = EventLog::open(dir.path(), LogOptions::default().sync(policy))?;
            // Enough work for about a second at the expected rate.
            let per_thread: u64 = match (policy, threads) {
                (FsyncPolicy::Always, 1) => 2_000,
                (FsyncPolicy::Always, _) => 4_000,
                (_, 1) => 400_000,
                _ => 100_000,
            };
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..threads {
                    let log = &log;
                    s.spawn(move || {
                        for i in 0..per_thread {
                            let event = LogEvent {
                                visitor_hash: t << 32 | i,
                                at_millis: 1_700_000_000_000 + i,
                                url,
                            };
                            log.append(&event).expect("append");
                        }
                    });
                }
            });
            let secs = start.elapsed().as_secs_f64();
            let total = per_thread * threads;
            println!(
                "{:<14} {:>8} {:>10} {:>14.0} {:>10.2}",
                name,
                threads,
                total,
                total as f64 / secs,
                secs * 1e6 / total as f64
            );
        }
    }
    Ok(())
}
