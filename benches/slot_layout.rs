// Run: cargo bench -p tracker-benches --bench slot_layout
//! The prototype that weighs a visitor table with its slots grouped by
//! cache line against today's Robin Hood table (issue 16: the batch
//! record's one-thread target), on the data structures alone, with no
//! tracker around them. Throwaway by design, like `time_layout.rs`: it
//! stays so the numbers in `docs/BENCHMARKS.md` ("Slots grouped by line")
//! can be reproduced, and the bench of a real implementation replaces it.
//!
//! - `robin hood`: `visitor_table.rs`'s layout for an untimed page (a
//!   12-byte slot: the key, then its activity word), linear probing with
//!   clusters in key order, a new key shifting the rest of its cluster on
//!   by one slot (a scan to the next empty slot, then a `memmove`), growth
//!   x2 up to 32 slots and x1.375 after, at most 15/16 full, rebuilt in
//!   one ordered pass.
//! - `lines LOAD`: five 12-byte slots to a 64-byte line (the keys, then
//!   their words) and one byte counting the keys whose home is this line
//!   or one before it but which sit past it (F14's overflow count). A
//!   lookup reads lines from the home line while that count is not 0, so
//!   an absent key mostly costs its one line; a new key goes in the first
//!   free slot from its home line, with no shifting. Growth in lines, x2
//!   up to 8 lines and x1.375 after, at most LOAD full; a rebuild places
//!   each key as an insert does. Its bytes include the up to 56 bytes a
//!   table that align its lines to the cache's.
//!
//! The stream is the batch bench's (2M events, Zipf over 100k pages, 1M
//! visitors), hashed and interned untimed. It is fed in batches of 1024 as
//! the batch record feeds its inserts: first a prefetch of every event's
//! table handle, then of the lines its insert reads first (the home slot
//! and the line after it; the home line), then the inserts. Two rows
//! take a part away to weigh it: `no prefetch` (the inserts alone) and
//! `sized first` (each table made at its final size before the clock
//! starts: no growth, but also tables emptier than they run at, so
//! shorter probes; an upper bound on what growth costs). Then the memory bench's shape: 1M
//! pairs over 1k pages, bytes a pair. The designs run in interleaved
//! rounds after an untimed one; `ROUNDS=n` sets the rounds (the median
//! is reported), `ONLY=name` runs the designs whose name has `name`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use tracker_benches::full_run;
use tracker_benches::workload::{SplitMix64, ZipfWorkload};

const BATCH: usize = 1024;

/// The home of `key` among `n` slots or lines (multiply-shift).
#[inline]
fn home_in(key: u64, n: usize) -> usize {
    ((u128::from(key) * n as u128) >> 64) as usize
}

/// A page's set of non-zero visitor hashes, each with a 32-bit word.
trait Table: Default {
    /// Adds `key` with `word`; whether it was new (a present key keeps
    /// its word).
    fn insert(&mut self, key: u64, word: u32) -> bool;
    /// Prefetches the lines an insert of `key` reads first.
    fn prefetch(&self, key: u64);
    /// Heap bytes held.
    fn bytes(&self) -> usize;
    /// Keys held.
    fn len(&self) -> usize;
    /// An empty table already grown to hold `len` keys.
    fn sized_for(len: usize) -> Self;
}

const STRIDE: usize = 12;

/// The Robin Hood table, as `visitor_table.rs` lays out an untimed page.
#[derive(Default)]
struct RobinHood {
    slots: Box<[u8]>,
    len: usize,
}

impl RobinHood {
    fn capacity(&self) -> usize {
        self.slots.len() / STRIDE
    }

    #[inline]
    fn key(&self, i: usize) -> u64 {
        u64::from_ne_bytes(self.slots[i * STRIDE..i * STRIDE + 8].try_into().unwrap())
    }

    #[inline]
    fn put(&mut self, i: usize, key: u64, word: u32) {
        let at = i * STRIDE;
        self.slots[at..at + 8].copy_from_slice(&key.to_ne_bytes());
        self.slots[at + 8..at + 12].copy_from_slice(&word.to_ne_bytes());
    }

    /// Where `key` is, or where it goes: the production probe's rule.
    #[inline]
    fn probe(&self, key: u64) -> Result<usize, usize> {
        let capacity = self.capacity();
        let home = home_in(key, capacity);
        for slot in home..capacity {
            let resident = self.key(slot);
            if resident >= key {
                if resident == key {
                    return Ok(slot);
                }
                if home_in(resident, capacity) <= slot {
                    return Err(slot);
                }
            } else if resident == 0 {
                return Err(slot);
            }
        }
        let (mut slot, mut dist) = (0, capacity - home);
        loop {
            let resident = self.key(slot);
            if resident == key {
                return Ok(slot);
            }
            if resident == 0 {
                return Err(slot);
            }
            let theirs_home = home_in(resident, capacity);
            let theirs = if slot >= theirs_home {
                slot - theirs_home
            } else {
                slot + capacity - theirs_home
            };
            if theirs < dist || (theirs == dist && resident > key) {
                return Err(slot);
            }
            slot = (slot + 1) % capacity;
            dist += 1;
        }
    }

    /// The first empty slot from `from` on, wrapping round.
    #[inline]
    fn first_empty(&self, from: usize) -> usize {
        let capacity = self.capacity();
        let scan = |from: usize, to: usize| {
            let mut quads = self.slots[from * STRIDE..to * STRIDE].chunks_exact(4 * STRIDE);
            let mut skipped = 0;
            for quad in quads.by_ref() {
                let empty = |i: usize| quad[i * STRIDE..i * STRIDE + 8] == [0; 8];
                if empty(0) | empty(1) | empty(2) | empty(3) {
                    break;
                }
                skipped += 4;
            }
            (from + skipped..to).find(|&i| self.key(i) == 0)
        };
        scan(from, capacity)
            .or_else(|| scan(0, from))
            .expect("an insert is only made with room")
    }

    fn place_new(&mut self, slot: usize, key: u64, word: u32) {
        let capacity = self.capacity();
        let empty = self.first_empty(slot);
        if empty < slot {
            self.slots.copy_within(0..empty * STRIDE, STRIDE);
            self.slots
                .copy_within((capacity - 1) * STRIDE..capacity * STRIDE, 0);
            self.slots
                .copy_within(slot * STRIDE..(capacity - 1) * STRIDE, (slot + 1) * STRIDE);
        } else {
            self.slots
                .copy_within(slot * STRIDE..empty * STRIDE, (slot + 1) * STRIDE);
        }
        self.put(slot, key, word);
        self.len += 1;
    }

    fn fits(len: usize, capacity: usize) -> bool {
        if capacity <= 8 {
            len <= capacity
        } else {
            len * 16 <= capacity * 15
        }
    }

    fn grow(&mut self) {
        let mut capacity = self.capacity().max(3);
        while !Self::fits(self.len + 1, capacity) || capacity == self.capacity() {
            capacity = if capacity < 32 {
                2 * capacity
            } else {
                capacity + capacity / 4 + capacity / 8
            };
        }
        let old = std::mem::replace(
            self,
            Self {
                slots: vec![0; capacity * STRIDE].into_boxed_slice(),
                len: 0,
            },
        );
        let old_capacity = old.capacity();
        // In key order: the residents at the start that wrapped round the
        // end are the greatest, read last.
        let wrapped = (0..old_capacity)
            .take_while(|&i| {
                let key = old.key(i);
                key != 0 && home_in(key, old_capacity) > i
            })
            .count();
        let (mut free, mut last) = (0, 0);
        let mut left = Vec::new();
        for i in (wrapped..old_capacity).chain(0..wrapped) {
            let key = old.key(i);
            if key == 0 {
                continue;
            }
            let word = u32::from_ne_bytes(
                old.slots[i * STRIDE + 8..i * STRIDE + 12]
                    .try_into()
                    .unwrap(),
            );
            let at = home_in(key, capacity).max(free);
            if key > last && at < capacity && left.is_empty() {
                self.put(at, key, word);
                self.len += 1;
                (free, last) = (at + 1, key);
            } else {
                left.push((key, word));
            }
        }
        for (key, word) in left {
            let slot = self.probe(key).unwrap_err();
            self.place_new(slot, key, word);
        }
    }
}

impl Table for RobinHood {
    #[inline]
    fn insert(&mut self, key: u64, word: u32) -> bool {
        if self.slots.is_empty() {
            self.grow();
        }
        match self.probe(key) {
            Ok(_) => false,
            Err(_) if !Self::fits(self.len + 1, self.capacity()) => {
                self.grow();
                let slot = self.probe(key).unwrap_err();
                self.place_new(slot, key, word);
                true
            }
            Err(slot) => {
                self.place_new(slot, key, word);
                true
            }
        }
    }

    #[inline]
    fn prefetch(&self, key: u64) {
        if self.slots.is_empty() {
            return;
        }
        let at = home_in(key, self.capacity()) * STRIDE;
        tracker_core::__prefetch(&self.slots[at]);
        tracker_core::__prefetch(&self.slots[(at + 64).min(self.slots.len() - 1)]);
    }

    fn bytes(&self) -> usize {
        self.slots.len()
    }

    fn len(&self) -> usize {
        self.len
    }

    fn sized_for(len: usize) -> Self {
        let mut table = Self {
            slots: vec![0; 3 * STRIDE].into_boxed_slice(),
            len: 0,
        };
        table.grow_to_fit(len);
        table
    }
}

impl RobinHood {
    /// Grows an empty table by steps until `len` keys fit.
    fn grow_to_fit(&mut self, len: usize) {
        let mut capacity = self.capacity();
        while !Self::fits(len, capacity) {
            capacity = if capacity < 32 {
                2 * capacity
            } else {
                capacity + capacity / 4 + capacity / 8
            };
        }
        self.slots = vec![0; capacity * STRIDE].into_boxed_slice();
    }
}

const LINE_SLOTS: usize = 5;
/// Words of a line: five keys, then their five words two to a `u64`, the
/// last beside the overflow count.
const LINE_WORDS: usize = 8;

/// The line-grouped table, at most `NUM / DEN` full. Its lines start at
/// a line boundary inside an allocation of plain words (a type aligned to
/// 64 bytes took glibc's slower aligned-allocation path), which costs up
/// to 7 words of slack a table.
#[derive(Default)]
struct Lines<const NUM: usize, const DEN: usize> {
    words: Box<[u64]>,
    /// The word where line 0 starts.
    start: usize,
    lines: usize,
    len: usize,
}

impl<const NUM: usize, const DEN: usize> Lines<NUM, DEN> {
    fn fits(len: usize, lines: usize) -> bool {
        let capacity = lines * LINE_SLOTS;
        if lines == 1 {
            len <= capacity
        } else {
            len * DEN <= capacity * NUM
        }
    }

    /// An empty table of `lines` lines.
    fn with_lines(lines: usize) -> Self {
        let words = vec![0u64; lines * LINE_WORDS + LINE_WORDS - 1].into_boxed_slice();
        let misaligned = (words.as_ptr() as usize / 8) % LINE_WORDS;
        Self {
            words,
            start: (LINE_WORDS - misaligned) % LINE_WORDS,
            lines,
            len: 0,
        }
    }

    #[inline]
    fn line(&self, l: usize) -> &[u64] {
        let at = self.start + l * LINE_WORDS;
        &self.words[at..at + LINE_WORDS]
    }

    #[inline]
    fn line_mut(&mut self, l: usize) -> &mut [u64] {
        let at = self.start + l * LINE_WORDS;
        &mut self.words[at..at + LINE_WORDS]
    }

    #[inline]
    fn overflow(line: &[u64]) -> u64 {
        line[7] >> 32
    }

    /// Puts `key`, absent, in the first free slot from its home line.
    #[inline]
    fn place(&mut self, key: u64, word: u32) {
        let n = self.lines;
        let mut l = home_in(key, n);
        loop {
            let line = self.line_mut(l);
            if let Some(i) = line[..LINE_SLOTS].iter().position(|&k| k == 0) {
                line[i] = key;
                let (at, shift) = (LINE_SLOTS + i / 2, 32 * (i % 2));
                line[at] = line[at] & !(u64::from(u32::MAX) << shift) | u64::from(word) << shift;
                break;
            }
            if Self::overflow(line) < 255 {
                line[7] += 1 << 32;
            }
            l = if l + 1 == n { 0 } else { l + 1 };
        }
        self.len += 1;
    }

    fn grow(&mut self) {
        let mut n = self.lines.max(1);
        while !Self::fits(self.len + 1, n) || n == self.lines {
            n = if n < 8 { 2 * n } else { n + n / 4 + n / 8 };
        }
        let old = std::mem::replace(self, Self::with_lines(n));
        for l in 0..old.lines {
            let line = old.line(l);
            for i in 0..LINE_SLOTS {
                if line[i] != 0 {
                    let word = (line[LINE_SLOTS + i / 2] >> (32 * (i % 2))) as u32;
                    self.place(line[i], word);
                }
            }
        }
    }

    /// Whether `key` is held: its home line, then the next while keys
    /// passed it.
    #[inline]
    fn contains(&self, key: u64) -> bool {
        let n = self.lines;
        let mut l = home_in(key, n);
        loop {
            let line = self.line(l);
            if line[..LINE_SLOTS].contains(&key) {
                return true;
            }
            if Self::overflow(line) == 0 {
                return false;
            }
            l = if l + 1 == n { 0 } else { l + 1 };
        }
    }
}

impl<const NUM: usize, const DEN: usize> Table for Lines<NUM, DEN> {
    #[inline]
    fn insert(&mut self, key: u64, word: u32) -> bool {
        if self.lines == 0 {
            self.grow();
        } else if self.contains(key) {
            return false;
        }
        if !Self::fits(self.len + 1, self.lines) {
            self.grow();
        }
        self.place(key, word);
        true
    }

    #[inline]
    fn prefetch(&self, key: u64) {
        if self.lines > 0 {
            tracker_core::__prefetch(&self.line(home_in(key, self.lines))[0]);
        }
    }

    fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.words)
    }

    fn len(&self) -> usize {
        self.len
    }

    fn sized_for(len: usize) -> Self {
        let mut n = 1;
        while !Self::fits(len, n) {
            n = if n < 8 { 2 * n } else { n + n / 4 + n / 8 };
        }
        Self::with_lines(n)
    }
}

/// Feeds `events` (page, visitor hash) into fresh tables in batches, as
/// the batch record does; the time and the tables. `PREFETCH` false
/// leaves out the prefetch passes; `SIZED` makes each table at the size
/// its page ends at first (untimed), so that no insert grows one.
fn feed<T: Table, const PREFETCH: bool, const SIZED: bool>(
    pages: usize,
    events: &[(u32, u64)],
) -> (Duration, Vec<T>) {
    let mut tables: Vec<T> = if SIZED {
        let mut pairs = vec![HashSet::new(); pages];
        for &(page, key) in events {
            pairs[page as usize].insert(key);
        }
        pairs.iter().map(|p| T::sized_for(p.len())).collect()
    } else {
        (0..pages).map(|_| T::default()).collect()
    };
    let start = Instant::now();
    for (b, batch) in events.chunks(BATCH).enumerate() {
        if PREFETCH {
            for &(page, _) in batch {
                tracker_core::__prefetch(&tables[page as usize]);
            }
            for &(page, key) in batch {
                tables[page as usize].prefetch(key);
            }
        }
        for &(page, key) in batch {
            tables[page as usize].insert(key, b as u32);
        }
    }
    (start.elapsed(), tables)
}

/// Heap bytes a held pair of `tables`, and the pairs.
fn bytes_a_pair<T: Table>(tables: &[T]) -> (f64, usize) {
    let pairs: usize = tables.iter().map(T::len).sum();
    let bytes: usize = tables.iter().map(T::bytes).sum();
    (bytes as f64 / pairs.max(1) as f64, pairs)
}

/// One design: its name and a feed of the stream or the shape that
/// returns the time, bytes a pair and pairs.
type Design = (
    &'static str,
    fn(usize, &[(u32, u64)]) -> (Duration, f64, usize),
);

/// [`feed`] of a design's tables, with their bytes a pair and pairs.
fn measured<T: Table, const PREFETCH: bool, const SIZED: bool>(
    pages: usize,
    events: &[(u32, u64)],
) -> (Duration, f64, usize) {
    let (time, tables) = feed::<T, PREFETCH, SIZED>(pages, events);
    let (bytes, pairs) = bytes_a_pair(&tables);
    (time, bytes, pairs)
}

fn main() {
    let full = full_run();
    let workload = ZipfWorkload::core(full);
    // Interned untimed: each page an index, each visitor a random
    // non-zero hash (what the visitor hasher gives).
    let mut rng = SplitMix64::new(0x51_07);
    let mut pages: HashMap<&str, u32> = HashMap::new();
    let mut visitors: HashMap<&str, u64> = HashMap::new();
    let events: Vec<(u32, u64)> = workload
        .events
        .iter()
        .map(|(visitor, url)| {
            let next = pages.len() as u32;
            let page = *pages.entry(url).or_insert(next);
            let key = *visitors
                .entry(visitor)
                .or_insert_with(|| rng.next_u64().max(1));
            (page, key)
        })
        .collect();
    let (shape_pages, per_page) = if full { (1_000, 1_000) } else { (10, 100) };
    let shape: Vec<(u32, u64)> = (0..shape_pages * per_page)
        .map(|i| ((i % shape_pages) as u32, rng.next_u64().max(1)))
        .collect();
    let rounds = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if full { 5 } else { 1 });
    let designs: [Design; 7] = [
        ("robin hood", measured::<RobinHood, true, false>),
        (
            "robin hood, no prefetch",
            measured::<RobinHood, false, false>,
        ),
        ("robin hood, sized first", measured::<RobinHood, true, true>),
        ("lines 15/16", measured::<Lines<15, 16>, true, false>),
        (
            "lines 15/16, sized first",
            measured::<Lines<15, 16>, true, true>,
        ),
        ("lines 7/8", measured::<Lines<7, 8>, true, false>),
        ("lines 13/16", measured::<Lines<13, 16>, true, false>),
    ];
    let only = std::env::var("ONLY").unwrap_or_default();
    let designs: Vec<Design> = designs
        .into_iter()
        .filter(|d| d.0.contains(only.as_str()))
        .collect();
    // Interleaved rounds (each round runs every design once), after one
    // untimed round: every design then meets memory the process has
    // already faulted in, whichever runs first.
    let mut times = vec![Vec::new(); designs.len()];
    let mut held = vec![(0.0, 0); designs.len()];
    for round in 0..=rounds {
        for (i, (_, feed)) in designs.iter().enumerate() {
            let (time, bytes, pairs) = feed(pages.len(), &events);
            if round > 0 {
                times[i].push(time);
            }
            held[i] = (bytes, pairs);
        }
    }
    let rows: Vec<(&str, f64, f64, f64, usize)> = designs
        .iter()
        .enumerate()
        .map(|(i, (name, feed))| {
            times[i].sort();
            let ns = times[i][times[i].len() / 2].as_secs_f64() * 1e9 / events.len() as f64;
            let (_, shape_bytes, _) = feed(shape_pages, &shape);
            (*name, ns, held[i].0, shape_bytes, held[i].1)
        })
        .collect();
    let base = rows
        .iter()
        .find(|r| r.0 == "robin hood")
        .map_or(f64::NAN, |r| r.1);
    println!();
    println!(
        "{} events over {} pages, batches of {BATCH}, median of {rounds}; then {} pairs over {shape_pages} pages",
        events.len(),
        pages.len(),
        shape.len()
    );
    println!("| design | ns/event | vs robin hood | B a pair (stream) | B a pair (1k a page) |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, ns, stream_bytes, shape_bytes, _) in &rows {
        println!(
            "| {name} | {ns:.1} | {:.2}x | {stream_bytes:.2} | {shape_bytes:.2} |",
            base / ns
        );
    }
    // Every design holds the stream's distinct pairs.
    let distinct = events.iter().collect::<HashSet<_>>().len();
    for (name, .., pairs) in &rows {
        assert_eq!(
            *pairs, distinct,
            "{name} holds {pairs} pairs, not {distinct}"
        );
    }
}
