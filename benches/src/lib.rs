//! Shared pieces of the benchmarks: workloads, baselines and measurement
//! helpers. Each bench target in this folder is a `harness = false` binary.
