//! tracker-core's integration tests, one binary for all of them: each
//! file of this directory is a module on one topic, linked once instead of
//! once per file (linking dominates a test build).
//!
//! To add tests: put them in a new file here, `mod` it below, and take
//! shared helpers (tmpfs mounts, models, polling with a deadline) from the
//! `test-support` crate rather than from another module. Each module is
//! still its own namespace, so names may repeat between modules.
//!
//! proptest keeps the failing cases it found of `it/<module>.rs` in
//! `../proptest-regressions/<module>.txt` (it looks beside the directory
//! that holds `main.rs`); commit those files.

mod batch;
mod budget;
mod concurrency;
mod durable;
mod legacy_hosts;
mod legacy_user_info;
mod model;
mod persist_log;
mod persist_snapshot;
mod ranges;
mod sites;
mod spec_api;
mod ttl;
mod upgrade;
mod url_rules;

use tracker_core::Tracker;

/// Runs sweep steps until one full pass over every stripe's table is done;
/// returns how many 32-bucket steps it took.
pub(crate) fn sweep_a_full_pass(tracker: &Tracker) -> usize {
    let pass = tracker.sweep_pass_buckets();
    let mut swept = 0;
    let mut steps = 0;
    while swept < pass {
        let step = tracker.sweep(32);
        if step.buckets == 0 {
            break;
        }
        swept += step.buckets as usize;
        steps += 1;
    }
    steps
}
