// Run: cargo bench -p tracker-benches --bench time_layout
//! The prototype that chose how pairs remember *when* (issue 12): the
//! per-slot activity word against per-(page, bucket) sets, measured on
//! the data structures alone (no tracker around them). Throwaway by
//! design: it stays so the numbers in `docs/BENCHMARKS.md` ("Time
//! ranges: choosing the layout") can be reproduced; the bench of the real
//! implementation replaces it.
//!
//! - `activity`: a Robin Hood table of visitor hashes (as
//!   `visitor_table.rs`) whose every slot also holds a 32-bit activity
//!   word: the pair's one bucket, or (high bit set) the offset of a
//!   sorted run of its buckets in a per-page arena.
//! - `plain`: the same table without the word (today's untimed table).
//! - `bucket sets`: `HashMap<bucket, HashSet<u64>>` per page, what a user
//!   would write (and Redis's per-day set pattern).

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::Instant;

use tracker_benches::counting_alloc::CountingAlloc;
use tracker_benches::full_run;
use tracker_benches::workload::SplitMix64;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

const MULTI: u32 = 1 << 31;

/// A visitor table with an optional activity word per slot.
struct Table<const ACT: bool, const LOAD16: usize = 14> {
    keys: Box<[u64]>,
    acts: Box<[u32]>,
    len: usize,
    /// Runs `[len, cap, bucket...]` of multi-bucket pairs.
    arena: Vec<u32>,
}

impl<const ACT: bool, const LOAD16: usize> Table<ACT, LOAD16> {
    fn new() -> Self {
        Self::with_capacity(3)
    }

    fn with_capacity(cap: usize) -> Self {
        Self {
            keys: vec![0; cap].into_boxed_slice(),
            acts: vec![0; if ACT { cap } else { 0 }].into_boxed_slice(),
            len: 0,
            arena: Vec::new(),
        }
    }

    fn home(&self, key: u64) -> usize {
        ((u128::from(key) * self.keys.len() as u128) >> 64) as usize
    }

    fn probe(&self, key: u64) -> Result<usize, usize> {
        let cap = self.keys.len();
        let mut slot = self.home(key);
        let mut dist = 0;
        loop {
            let resident = self.keys[slot];
            if resident == key {
                return Ok(slot);
            }
            if resident == 0 {
                return Err(slot);
            }
            let home = self.home(resident);
            let their = if slot >= home {
                slot - home
            } else {
                slot + cap - home
            };
            if their < dist {
                return Err(slot);
            }
            slot = if slot + 1 == cap { 0 } else { slot + 1 };
            dist += 1;
        }
    }

    fn fits(len: usize, cap: usize) -> bool {
        if cap <= 8 {
            len <= cap
        } else {
            len * 16 <= cap * LOAD16
        }
    }

    fn place(&mut self, mut slot: usize, mut key: u64, mut act: u32) {
        let cap = self.keys.len();
        loop {
            let resident = std::mem::replace(&mut self.keys[slot], key);
            if ACT {
                act = std::mem::replace(&mut self.acts[slot], act);
            }
            if resident == 0 {
                return;
            }
            key = resident;
            slot = if slot + 1 == cap { 0 } else { slot + 1 };
        }
    }

    fn grow(&mut self) {
        let mut cap = self.keys.len();
        while !Self::fits(self.len + 1, cap) {
            cap += (cap / 4).max(1);
        }
        let old_keys = std::mem::replace(&mut self.keys, vec![0; cap].into_boxed_slice());
        let old_acts = std::mem::replace(
            &mut self.acts,
            vec![0; if ACT { cap } else { 0 }].into_boxed_slice(),
        );
        for (i, &k) in old_keys.iter().enumerate() {
            if k != 0 {
                let slot = self.probe(k).unwrap_err();
                self.place(slot, k, if ACT { old_acts[i] } else { 0 });
            }
        }
    }

    /// Records `key` in `bucket`; returns whether the pair was new.
    #[inline]
    fn record(&mut self, key: u64, bucket: u32) -> bool {
        match self.probe(key) {
            Ok(slot) => {
                if ACT {
                    self.add_bucket(slot, bucket);
                }
                false
            }
            Err(slot) => {
                if Self::fits(self.len + 1, self.keys.len()) {
                    self.place(slot, key, bucket);
                } else {
                    self.grow();
                    let slot = self.probe(key).unwrap_err();
                    self.place(slot, key, bucket);
                }
                self.len += 1;
                true
            }
        }
    }

    #[inline]
    fn add_bucket(&mut self, slot: usize, bucket: u32) {
        let act = self.acts[slot];
        if act & MULTI == 0 {
            if act == bucket {
                return; // the common repeat: nothing written, nothing allocated
            }
            let (a, b) = (act.min(bucket), act.max(bucket));
            let at = self.arena.len() as u32;
            self.arena.extend_from_slice(&[2, 4, a, b, 0, 0]);
            self.acts[slot] = MULTI | at;
            return;
        }
        let at = (act & !MULTI) as usize;
        let (len, cap) = (self.arena[at] as usize, self.arena[at + 1] as usize);
        let run = &self.arena[at + 2..at + 2 + len];
        let Err(pos) = run.binary_search(&bucket) else {
            return;
        };
        if len < cap {
            self.arena
                .copy_within(at + 2 + pos..at + 2 + len, at + 3 + pos);
            self.arena[at + 2 + pos] = bucket;
            self.arena[at] += 1;
        } else {
            // Moves to the end at twice the room (the hole is reclaimed
            // when the page is rebuilt).
            let new_at = self.arena.len();
            let mut moved: Vec<u32> = Vec::with_capacity(2 + cap * 2);
            moved.push(len as u32 + 1);
            moved.push(cap as u32 * 2);
            moved.extend_from_slice(&self.arena[at + 2..at + 2 + pos]);
            moved.push(bucket);
            moved.extend_from_slice(&self.arena[at + 2 + pos..at + 2 + len]);
            moved.resize(2 + cap * 2, 0);
            self.arena.extend_from_slice(&moved);
            self.acts[slot] = MULTI | new_at as u32;
        }
    }

    /// Rewrites the arena with every run exactly sized, in slot order (what
    /// a page rebuild would do), so a scan reads it front to back.
    fn compact(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() / 2);
        for slot in 0..self.acts.len() {
            let act = self.acts[slot];
            if self.keys[slot] != 0 && act & MULTI != 0 {
                let run = self.run(act);
                let at = arena.len() as u32;
                arena.push(run.len() as u32);
                arena.push(run.len() as u32);
                arena.extend_from_slice(run);
                self.acts[slot] = MULTI | at;
            }
        }
        self.arena = arena;
    }

    fn run(&self, act: u32) -> &[u32] {
        let at = (act & !MULTI) as usize;
        &self.arena[at + 2..at + 2 + self.arena[at] as usize]
    }

    /// Pairs with a visit in buckets `[lo, hi)`: one scan of the words.
    fn distinct_between(&self, lo: u32, hi: u32) -> usize {
        let mut n = 0;
        for (&key, &act) in self.keys.iter().zip(self.acts.iter()) {
            if act & MULTI == 0 {
                n += usize::from(key != 0 && (lo..hi).contains(&act));
            } else {
                let run = self.run(act);
                let i = run.partition_point(|&b| b < lo);
                n += usize::from(i < run.len() && run[i] < hi);
            }
        }
        n
    }

    /// Distinct pairs per point of `step` buckets from `lo`: one scan.
    fn series(&self, lo: u32, step: u32, points: usize) -> Vec<usize> {
        let hi = lo + step * points as u32;
        let mut counts = vec![0; points];
        for (&key, &act) in self.keys.iter().zip(self.acts.iter()) {
            if act & MULTI == 0 {
                if key != 0 && (lo..hi).contains(&act) {
                    counts[((act - lo) / step) as usize] += 1;
                }
            } else {
                // The run is sorted: one division for its first bucket in
                // range, then a linear walk with a moving point boundary.
                let run = self.run(act);
                let start = run.partition_point(|&b| b < lo);
                let mut next = 0; // the end of the last point counted
                for &b in &run[start..] {
                    if b >= hi {
                        break;
                    }
                    if b >= next {
                        let p = (b - lo) / step;
                        counts[p as usize] += 1;
                        next = lo + (p + 1) * step;
                    }
                }
            }
        }
        counts
    }
}

/// The activity table with each slot's key and word in one cache line:
/// lines of 5 keys and 5 words (60 of 64 bytes, 12.8 B per slot). Only
/// what the insert and repeat-visit timings need (one-bucket pairs).
struct Blocked {
    lines: Box<[[u64; 8]]>,
    cap: usize,
    len: usize,
}

impl Blocked {
    fn new() -> Self {
        Self::with_capacity(5)
    }

    fn with_capacity(cap: usize) -> Self {
        Self {
            lines: vec![[0; 8]; cap.div_ceil(5)].into_boxed_slice(),
            cap,
            len: 0,
        }
    }

    #[inline]
    fn key(&self, i: usize) -> u64 {
        self.lines[i / 5][i % 5]
    }

    #[inline]
    fn act(&self, i: usize) -> u32 {
        let (line, pos) = (i / 5, i % 5);
        (self.lines[line][5 + pos / 2] >> (32 * (pos & 1))) as u32
    }

    #[inline]
    fn set(&mut self, i: usize, key: u64, act: u32) {
        let (line, pos) = (i / 5, i % 5);
        self.lines[line][pos] = key;
        let word = &mut self.lines[line][5 + pos / 2];
        let shift = 32 * (pos & 1);
        *word = (*word & !(u64::from(u32::MAX) << shift)) | (u64::from(act) << shift);
    }

    fn home(&self, key: u64) -> usize {
        ((u128::from(key) * self.cap as u128) >> 64) as usize
    }

    fn probe(&self, key: u64) -> Result<usize, usize> {
        let mut slot = self.home(key);
        let mut dist = 0;
        loop {
            let resident = self.key(slot);
            if resident == key {
                return Ok(slot);
            }
            if resident == 0 {
                return Err(slot);
            }
            let home = self.home(resident);
            let their = if slot >= home {
                slot - home
            } else {
                slot + self.cap - home
            };
            if their < dist {
                return Err(slot);
            }
            slot = if slot + 1 == self.cap { 0 } else { slot + 1 };
            dist += 1;
        }
    }

    fn place(&mut self, mut slot: usize, mut key: u64, mut act: u32) {
        loop {
            let (resident, resident_act) = (self.key(slot), self.act(slot));
            self.set(slot, key, act);
            if resident == 0 {
                return;
            }
            (key, act) = (resident, resident_act);
            slot = if slot + 1 == self.cap { 0 } else { slot + 1 };
        }
    }

    #[inline]
    fn record(&mut self, key: u64, bucket: u32) -> bool {
        match self.probe(key) {
            Ok(slot) => {
                if self.act(slot) != bucket {
                    self.set(slot, key, self.act(slot).max(bucket));
                }
                false
            }
            Err(slot) => {
                if Table::<true, 15>::fits(self.len + 1, self.cap) {
                    self.place(slot, key, bucket);
                } else {
                    let mut cap = self.cap;
                    while !Table::<true, 15>::fits(self.len + 1, cap) {
                        cap += (cap / 4).max(1);
                    }
                    let old = std::mem::replace(self, Self::with_capacity(cap));
                    self.len = old.len;
                    for i in 0..old.cap {
                        let k = old.key(i);
                        if k != 0 {
                            let slot = self.probe(k).unwrap_err();
                            self.place(slot, k, old.act(i));
                        }
                    }
                    let slot = self.probe(key).unwrap_err();
                    self.place(slot, key, bucket);
                }
                self.len += 1;
                true
            }
        }
    }
}

/// What a user would write: a set per bucket.
#[derive(Default)]
struct BucketSets {
    buckets: HashMap<u32, HashSet<u64>>,
}

impl BucketSets {
    fn record(&mut self, key: u64, bucket: u32) {
        self.buckets.entry(bucket).or_default().insert(key);
    }

    fn distinct_between(&self, lo: u32, hi: u32) -> usize {
        let mut union: HashSet<u64> = HashSet::new();
        for b in lo..hi {
            if let Some(set) = self.buckets.get(&b) {
                union.extend(set.iter().copied());
            }
        }
        union.len()
    }

    fn series(&self, lo: u32, step: u32, points: usize) -> Vec<usize> {
        (0..points as u32)
            .map(|p| self.distinct_between(lo + p * step, lo + (p + 1) * step))
            .collect()
    }
}

fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).max(1)
}

/// Median of `rounds` timings of `f`, in milliseconds.
fn time_ms(rounds: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[rounds / 2]
}

/// Events `(page, visitor hash, hour bucket)`.
type Event = (usize, u64, u32);

const DAYS: u32 = 60;
const FIRST: u32 = 490_000; // an hour bucket in 2025

/// `pairs` pairs over `pages` pages, each visited once at a random hour
/// of the last 60 days.
fn one_visit_each(pages: usize, pairs: usize, rng: &mut SplitMix64) -> Vec<Event> {
    (0..pairs)
        .map(|i| {
            let hour = FIRST + rng.below(u64::from(DAYS * 24)) as u32;
            (i % pages, mix(i as u64), hour)
        })
        .collect()
}

/// `visitors` visitors of one page, each on `days` different days of 60.
fn returning(visitors: usize, days: u32, rng: &mut SplitMix64) -> Vec<Event> {
    let mut out = Vec::new();
    for v in 0..visitors {
        let first = rng.below(u64::from(DAYS - days + 1)) as u32;
        for d in first..first + days {
            let hour = FIRST + d * 24 + rng.below(24) as u32;
            out.push((0, mix(v as u64), hour));
        }
    }
    out
}

fn build<T, R: FnMut(&mut T, u64, u32)>(
    pages: usize,
    events: &[Event],
    new: impl Fn() -> T,
    mut record: R,
) -> (Vec<T>, usize, f64) {
    let before = ALLOC.live();
    let mut tables: Vec<T> = (0..pages).map(|_| new()).collect();
    let start = Instant::now();
    for &(page, key, bucket) in events {
        record(&mut tables[page], key, bucket);
    }
    let ns = start.elapsed().as_secs_f64() * 1e9 / events.len() as f64;
    (tables, ALLOC.live() - before, ns)
}

fn main() {
    let full = full_run();
    let scale = if full { 1 } else { 100 };
    let mut rng = SplitMix64::new(12);
    let rounds = if full { 21 } else { 3 };

    println!("## Layout prototype: memory and insert cost (data structures alone)\n");
    println!("| workload | layout | pairs | B/pair | ns/event |");
    println!("| --- | --- | ---: | ---: | ---: |");
    let (pages, pairs) = (1_000, 1_000_000 / scale);
    let events = one_visit_each(pages, pairs, &mut rng);
    let row = |workload: &str, layout: &str, pairs: usize, bytes: usize, ns: f64| {
        println!(
            "| {workload} | {layout} | {pairs} | {:.2} | {ns:.1} |",
            bytes as f64 / pairs as f64
        );
    };
    let workload = format!("{pairs} pairs / {pages} pages, one visit each");
    let (plain, bytes, ns) = build(pages, &events, Table::<false>::new, |t, k, b| {
        t.record(k, b);
    });
    row(&workload, "plain (no time)", pairs, bytes, ns);
    drop(plain);
    let (act, bytes, ns) = build(pages, &events, Table::<true>::new, |t, k, b| {
        t.record(k, b);
    });
    row(&workload, "activity word", pairs, bytes, ns);
    drop(act);
    let (act, bytes, ns) = build(pages, &events, Table::<true, 15>::new, |t, k, b| {
        t.record(k, b);
    });
    row(&workload, "activity word, load <= 15/16", pairs, bytes, ns);
    drop(act);
    let (blocked, bytes, ns) = build(pages, &events, Blocked::new, |t, k, b| {
        t.record(k, b);
    });
    row(
        &workload,
        "activity word in the key's line, load <= 15/16",
        pairs,
        bytes,
        ns,
    );
    drop(blocked);
    let (sets, bytes, ns) = build(pages, &events, BucketSets::default, |t, k, b| {
        t.record(k, b)
    });
    row(&workload, "bucket sets", pairs, bytes, ns);
    drop(sets);
    // Repeat visits in the same bucket: no allocation, the cost of a probe.
    let (mut act, _, _) = build(pages, &events, Table::<true>::new, |t, k, b| {
        t.record(k, b);
    });
    let allocations = ALLOC.allocations();
    let start = Instant::now();
    for &(page, key, bucket) in &events {
        black_box(act[page].record(key, bucket));
    }
    let repeat_ns = start.elapsed().as_secs_f64() * 1e9 / events.len() as f64;
    assert_eq!(ALLOC.allocations(), allocations, "a repeat visit allocated");
    println!(
        "| {workload}, each again in its bucket | activity word | {pairs} | - | {repeat_ns:.1} |"
    );
    drop(act);
    let (mut act, _, _) = build(pages, &events, Table::<true, 15>::new, |t, k, b| {
        t.record(k, b);
    });
    let start = Instant::now();
    for &(page, key, bucket) in &events {
        black_box(act[page].record(key, bucket));
    }
    let repeat_ns = start.elapsed().as_secs_f64() * 1e9 / events.len() as f64;
    println!(
        "| {workload}, each again in its bucket | activity word, load <= 15/16 | {pairs} | - | {repeat_ns:.1} |"
    );
    drop(act);
    let (mut blocked, _, _) = build(pages, &events, Blocked::new, |t, k, b| {
        t.record(k, b);
    });
    let start = Instant::now();
    for &(page, key, bucket) in &events {
        black_box(blocked[page].record(key, bucket));
    }
    let repeat_ns = start.elapsed().as_secs_f64() * 1e9 / events.len() as f64;
    println!(
        "| {workload}, each again in its bucket | activity word in the key's line, load <= 15/16 | {pairs} | - | {repeat_ns:.1} |"
    );
    drop(blocked);
    let (mut plain, _, _) = build(pages, &events, Table::<false>::new, |t, k, b| {
        t.record(k, b);
    });
    let start = Instant::now();
    for &(page, key, bucket) in &events {
        black_box(plain[page].record(key, bucket));
    }
    let repeat_ns = start.elapsed().as_secs_f64() * 1e9 / events.len() as f64;
    println!("| {workload}, each again | plain (no time) | {pairs} | - | {repeat_ns:.1} |");
    drop(plain);

    let visitors = 100_000 / scale;
    let events = returning(visitors, 30, &mut rng);
    let workload = format!("{visitors} visitors of one page, each on 30 days");
    let (mut act, bytes, ns) = build(1, &events, Table::<true>::new, |t, k, b| {
        t.record(k, b);
    });
    row(&workload, "activity word", visitors, bytes, ns);
    let before = ALLOC.live();
    act[0].compact();
    let compacted = bytes - (before - ALLOC.live());
    row(
        &workload,
        "activity word, runs compacted",
        visitors,
        compacted,
        ns,
    );
    drop(act);
    let (sets, bytes, ns) = build(1, &events, BucketSets::default, |t, k, b| t.record(k, b));
    row(&workload, "bucket sets", visitors, bytes, ns);
    drop(sets);

    println!(
        "\n## Layout prototype: queries on one page of {visitors} visitors (median of {rounds})\n"
    );
    println!("| visits | layout | 30-day range | 30-point daily series |");
    println!("| --- | --- | ---: | ---: |");
    let lo = FIRST + 15 * 24;
    let hi = lo + 30 * 24;
    for (visits, events) in [
        (
            "one each, over 60 days",
            one_visit_each(1, visitors, &mut rng),
        ),
        ("30 days each, of 60", returning(visitors, 30, &mut rng)),
    ] {
        let (mut act, _, _) = build(1, &events, Table::<true>::new, |t, k, b| {
            t.record(k, b);
        });
        let (sets, _, _) = build(1, &events, BucketSets::default, |t, k, b| t.record(k, b));
        let scattered = &act[0];
        let range = time_ms(rounds, || {
            black_box(scattered.distinct_between(lo, hi));
        });
        let series = time_ms(rounds, || {
            black_box(scattered.series(lo, 24, 30));
        });
        println!(
            "| {visits} | activity word, runs as they grew | {range:.3} ms | {series:.3} ms |"
        );
        act[0].compact();
        let act = &act[0];
        let sets = &sets[0];
        assert_eq!(act.distinct_between(lo, hi), sets.distinct_between(lo, hi));
        assert_eq!(act.series(lo, 24, 30), sets.series(lo, 24, 30));
        let range = time_ms(rounds, || {
            black_box(act.distinct_between(lo, hi));
        });
        let series = time_ms(rounds, || {
            black_box(act.series(lo, 24, 30));
        });
        println!("| {visits} | activity word, runs compacted | {range:.3} ms | {series:.3} ms |");
        let range = time_ms(rounds.min(5), || {
            black_box(sets.distinct_between(lo, hi));
        });
        let series = time_ms(rounds.min(5), || {
            black_box(sets.series(lo, 24, 30));
        });
        println!("| {visits} | bucket sets | {range:.3} ms | {series:.3} ms |");
    }
}
