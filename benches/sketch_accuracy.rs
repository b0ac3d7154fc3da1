//! Accuracy of the UltraLogLog sketch against a HyperLogLog crate, in one
//! run: measured relative standard error (RSE) and bias per cardinality.
//!
//! `cargo bench -p tracker-benches --bench sketch_accuracy`
//!
//! Both sketches see the same deterministic stream of SplitMix64 outputs,
//! which stand in for the tracker's keyed XXH3 visitor hashes (uniform
//! 64-bit values). Each trial inserts one fresh stream and reads both
//! estimates at every checkpoint 10, 100, ..., so one trial measures all
//! cardinalities up to its length. Trials to 100k are many; the long ones
//! (1M, 10M) fewer, so their RSE carries a wider sampling interval, which
//! the table prints (`±` is one standard error of the measured RSE,
//! `RSE / sqrt(2·trials)`).
//!
//! Our sketch is read twice at each checkpoint: `estimate()`, which is the
//! martingale estimate for a sketch fed by inserts, and `ml_estimate()`, the
//! registers-only estimate used after merges.
//!
//! A second table measures the switch from an exact set: a sketch made by
//! `from_exact_set` from `n0` distinct hashes, then fed more, against one
//! fed the same hashes by plain inserts.
//!
//! `cargo test --benches` (no `--bench`) runs one short stage and a few
//! switch trials, only to check that the bench runs.
//!
//! The comparison is `hyperloglogplus` (HyperLogLog++: 6-bit registers,
//! sparse mode for small counts, empirical bias correction) at precision 14,
//! i.e. 12 KiB of dense registers, 1.5 times our 8 KiB. It is handed the
//! same 64-bit values through an identity hasher, so neither sketch pays
//! for or benefits from a different hash function.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};
use tracker_benches::full_run;
use tracker_benches::workload::SplitMix64;
use tracker_core::sketch::{
    DEFAULT_PRECISION, UltraLogLog, martingale_relative_standard_error, relative_standard_error,
};

/// Passes a `u64` through unchanged, so the HyperLogLog crate sees the very
/// hash our sketch sees.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `u64: Hash`; fold anything else.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

#[derive(Clone, Copy, Default)]
struct BuildIdentity;

impl BuildHasher for BuildIdentity {
    type Hasher = Identity;
    fn build_hasher(&self) -> Identity {
        Identity::default()
    }
}

const HLLPP_PRECISION: u8 = 14;
const CHECKPOINTS: [u64; 7] = [10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000];
/// (stream length, trials): every trial contributes to each checkpoint up
/// to its length, so short cardinalities get the trials of all stages.
const STAGES: [(u64, u32); 3] = [(100_000, 2_000), (1_000_000, 200), (10_000_000, 100)];
/// The stages of a test run (see [`full_run`]).
const TEST_STAGES: [(u64, u32); 1] = [(1_000, 3)];

/// Running sums of relative errors at each checkpoint.
#[derive(Default, Clone, Copy)]
struct Errors {
    trials: u32,
    sum: f64,
    sum_sq: f64,
}

impl Errors {
    fn add(&mut self, estimate: f64, truth: u64) {
        let err = estimate / truth as f64 - 1.0;
        self.trials += 1;
        self.sum += err;
        self.sum_sq += err * err;
    }
    fn rse(&self) -> f64 {
        (self.sum_sq / f64::from(self.trials)).sqrt()
    }
    fn bias(&self) -> f64 {
        self.sum / f64::from(self.trials)
    }
    fn interval(&self) -> f64 {
        self.rse() / (2.0 * f64::from(self.trials)).sqrt()
    }
    /// `RSE ± its standard error (bias)`, in percent.
    fn cell(&self) -> String {
        format!(
            "{:.3} ± {:.3} ({:+.3})",
            100.0 * self.rse(),
            100.0 * self.interval(),
            100.0 * self.bias()
        )
    }
}

/// The switch from an exact set of `n0` visitors: error at `n0` and after
/// growth, seeded (`from_exact_set`) against plain inserts.
fn switch_table(full: bool) {
    const GROWTH: [f64; 4] = [1.0, 1.1, 2.0, 10.0];
    let (trials, sizes): (u32, &[u64]) = if full {
        (500, &[100, 1_000, 10_000])
    } else {
        (3, &[100])
    };
    println!(
        "| exact set n0 | trials | distinct | from_exact_set RSE % (bias) | inserted RSE % (bias) |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for &n0 in sizes {
        let mut seeded_errors = [Errors::default(); GROWTH.len()];
        let mut plain_errors = [Errors::default(); GROWTH.len()];
        for trial in 0..trials {
            let mut rng = SplitMix64::new((u64::from(trial) << 32) ^ n0);
            let exact: Vec<u64> = (0..n0).map(|_| rng.next_u64()).collect();
            let mut seeded = UltraLogLog::from_exact_set(DEFAULT_PRECISION, exact.iter().copied())
                .expect("valid precision");
            let mut plain = UltraLogLog::default();
            plain.extend(exact);
            let mut n = n0;
            for (i, growth) in GROWTH.iter().enumerate() {
                let target = (n0 as f64 * growth).round() as u64;
                while n < target {
                    let hash = rng.next_u64();
                    seeded.insert(hash);
                    plain.insert(hash);
                    n += 1;
                }
                seeded_errors[i].add(seeded.estimate(), n);
                plain_errors[i].add(plain.estimate(), n);
            }
        }
        for (i, growth) in GROWTH.iter().enumerate() {
            println!(
                "| {n0} | {trials} | {} | {} | {} |",
                (n0 as f64 * growth).round(),
                seeded_errors[i].cell(),
                plain_errors[i].cell(),
            );
        }
    }
}

fn main() {
    let mut ull_errors = [Errors::default(); CHECKPOINTS.len()];
    let mut ml_errors = [Errors::default(); CHECKPOINTS.len()];
    let mut hll_errors = [Errors::default(); CHECKPOINTS.len()];
    let (mut ull_time, mut hll_time) = (Duration::ZERO, Duration::ZERO);
    let mut inserts = 0u64;
    let started = Instant::now();

    let mut seed = 0x5eed_u64;
    let mut ull = UltraLogLog::default();
    let full = full_run();
    let stages: &[(u64, u32)] = if full { &STAGES } else { &TEST_STAGES };
    for &(length, trials) in stages {
        for _ in 0..trials {
            seed += 1;
            // Well-separated starting states: seeds 2^32 steps apart.
            let mut stream = SplitMix64::new(seed << 32);
            ull = UltraLogLog::default();
            let mut hll: HyperLogLogPlus<u64, BuildIdentity> =
                HyperLogLogPlus::new(HLLPP_PRECISION, BuildIdentity).expect("valid precision");
            let mut n = 0u64;
            for (i, &c) in CHECKPOINTS
                .iter()
                .enumerate()
                .filter(|(_, c)| **c <= length)
            {
                let count = c - n;
                // Each sketch replays the same segment of the stream, timed
                // separately; the PRNG cost is in both timings alike.
                let mut rng = stream.clone();
                let t = Instant::now();
                for _ in 0..count {
                    ull.insert(rng.next_u64());
                }
                ull_time += t.elapsed();
                let mut rng = stream.clone();
                let t = Instant::now();
                for _ in 0..count {
                    hll.insert(&rng.next_u64());
                }
                hll_time += t.elapsed();
                stream = rng;
                n = c;
                inserts += count;
                ull_errors[i].add(ull.estimate(), c);
                ml_errors[i].add(ull.ml_estimate(), c);
                hll_errors[i].add(hll.count(), c);
            }
        }
    }
    // HLL++ turns dense long before 10 000 values at p = 14: 2^14 6-bit
    // registers.
    let hll_dense_bytes = (1usize << HLLPP_PRECISION) * 6 / 8;

    println!(
        "UltraLogLog (tracker-core, p={DEFAULT_PRECISION}): {} bytes of registers, {} bytes in all; theoretical RSE {:.3}% martingale, {:.3}% ML",
        ull.heap_bytes(),
        ull.total_bytes(),
        100.0 * martingale_relative_standard_error(DEFAULT_PRECISION),
        100.0 * relative_standard_error(DEFAULT_PRECISION),
    );
    println!(
        "HyperLogLog++ (hyperloglogplus 0.4, p={HLLPP_PRECISION}): {hll_dense_bytes} bytes of dense 6-bit registers; theoretical RSE {:.3}% (1.04/sqrt(m))",
        100.0 * 1.04 / f64::from(1u32 << HLLPP_PRECISION).sqrt()
    );
    println!();
    println!(
        "| distinct | trials | ULL martingale RSE % (bias) | ULL ML RSE % (bias) | HLL++ p=14 RSE % (bias) |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for (i, &c) in CHECKPOINTS.iter().enumerate() {
        if ull_errors[i].trials == 0 {
            // Past a test run's short stage.
            continue;
        }
        println!(
            "| {c} | {} | {} | {} | {} |",
            ull_errors[i].trials,
            ull_errors[i].cell(),
            ml_errors[i].cell(),
            hll_errors[i].cell(),
        );
    }
    println!();
    switch_table(full);
    println!();
    let t = Instant::now();
    let mut total = 0.0;
    for _ in 0..1000 {
        total += std::hint::black_box(&ull).ml_estimate();
    }
    println!(
        "ml_estimate() of a sketch of {} values: {:.1} µs (mean {:.0}); estimate() with the martingale is O(1)",
        stages.last().map_or(0, |&(length, _)| length),
        t.elapsed().as_secs_f64() * 1e3,
        total / 1000.0
    );
    println!(
        "{inserts} inserts per sketch; insert + PRNG: ULL {:.2} ns, HLL++ {:.2} ns per value; total {:.1} s",
        ull_time.as_nanos() as f64 / inserts as f64,
        hll_time.as_nanos() as f64 / inserts as f64,
        started.elapsed().as_secs_f64()
    );
}
