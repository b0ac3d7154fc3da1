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

use std::collections::BTreeMap;

use tracker_core::Tracker;

/// Every page with its distinct visitors, by URL.
pub(crate) fn listing(tracker: &Tracker) -> BTreeMap<String, u64> {
    tracker
        .top(usize::MAX)
        .into_iter()
        .map(|row| (row.url, row.distinct.visitors))
        .collect()
}

/// `tracker`'s snapshot payload.
pub(crate) fn snapshot_of(tracker: &Tracker) -> Vec<u8> {
    let mut payload = Vec::new();
    tracker.write_snapshot(&mut payload).unwrap();
    payload
}

/// Replaces `from` by `to`, of the same length (so that no length field
/// of a snapshot payload changes), in `payload`.
pub(crate) fn patch(payload: &mut [u8], from: &str, to: &str) {
    assert_eq!(from.len(), to.len());
    let at = payload
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap();
    payload[at..at + from.len()].copy_from_slice(to.as_bytes());
}

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
