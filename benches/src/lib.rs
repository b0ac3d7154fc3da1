//! Shared pieces of the benchmarks: workloads, baselines and measurement
//! helpers. Each bench target in this folder is a `harness = false` binary.
//!
//! - [`workload`]: deterministic event streams (Zipf and uniform).
//! - [`baselines`]: the designs tracker is compared with, and the
//!   [`DistinctCounter`](baselines::DistinctCounter) trait they share.
//! - [`counting_alloc`]: the global allocator the memory bench measures with.
//! - [`ratios`]: criterion estimates read back, and the tables printed.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod baselines;
pub mod counting_alloc;
pub mod ratios;
pub mod workload;

/// Whether this bench binary was started to measure, by `cargo bench`
/// (which passes `--bench`), rather than to test, by `cargo test --benches`
/// (no `--bench`) or with `--test` or `--list` (criterion's rules), so test
/// runs can use small workloads and stay quick in a debug build.
pub fn full_run() -> bool {
    let has = |flag: &str| std::env::args().any(|a| a == flag);
    has("--bench") && !has("--test") && !has("--list")
}
