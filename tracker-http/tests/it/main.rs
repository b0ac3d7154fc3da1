//! tracker-http's integration tests, one binary for all of them: each
//! file of this directory is a module on one topic, linked once instead of
//! once per file (linking dominates a test build).
//!
//! To add tests (or move in a file written as `tests/<name>.rs`): put the
//! file here and `mod` it below; replace `mod common; use common::*;` by
//! `use crate::app::*;` (the router in process), and `mod process;` by
//! `use test_support::process::{...}` with [`TRACKER_HTTP`] as the first
//! argument of `Server::start` and `run_to_exit` (the real binary). Other
//! shared helpers (tmpfs mounts, models, polling with a deadline instead
//! of a fixed sleep) are in the `test-support` crate.
//!
//! proptest keeps the failing cases it found of `it/<module>.rs` in
//! `../proptest-regressions/<module>.txt` (it looks beside the directory
//! that holds `main.rs`); commit those files.

mod api;
mod app;
mod browsers;
mod cdp;
mod chromium;
mod cluster;
mod connections;
mod dashboard;
mod dashboard_browser;
mod durability;
mod fuzz;
mod h2_limits;
mod privacy;
mod process_memory;
mod readme;
mod request_ids;
mod sites;
mod socket;
mod time_ranges;
mod tls_reload;
mod visitor_salts;
mod volume;

/// The service binary, built by cargo for these tests.
pub const TRACKER_HTTP: &str = env!("CARGO_BIN_EXE_tracker-http");
