//! A sketched page under a TTL: one sketch per generation of TTL/8.
//!
//! A sketch cannot forget one visitor, so a sketched page with a TTL keeps
//! a sketch per generation (a span of TTL/8, rounded up to whole seconds)
//! and puts each visit in the sketch of its own generation. The page's
//! count is the estimate of the union (a lossless register merge) of the
//! generations still live; a generation is dropped, with its memory, once
//! its newest possible visit has expired. So a visitor counts for between
//! TTL and TTL + TTL/8 after their latest visit: expiry is quantised to at
//! most TTL/8, and the page holds at most 9 sketches (TTL spans at most
//! 9 generations).

use crate::report::Distinct;
use crate::sketch::UltraLogLog;
use crate::time::ttl::Expiry;

/// Generations a live page can span: TTL/8 each, plus a partial one.
pub(crate) const MAX_GENERATIONS: usize = 9;

/// Per-generation sketches of a page's visitor hashes.
#[derive(Debug, Clone)]
pub(crate) struct TimedSketch {
    /// `(generation, sketch)`, by generation, oldest first.
    generations: Vec<(u32, UltraLogLog)>,
}

/// Heap bytes of one generation's sketch (its registers and its slot in
/// the list, which is sized exactly).
pub(crate) const GENERATION_BYTES: usize =
    std::mem::size_of::<(u32, UltraLogLog)>() + (1 << UltraLogLog::DEFAULT_PRECISION);

impl TimedSketch {
    /// The sketches of `pairs` (hash, tick), each put in its tick's
    /// generation; expired pairs are left out. The hashes are an exact
    /// set's (distinct), so each generation's estimate starts at the exact
    /// number put in it, as a page without a TTL switches (no jump): they
    /// come in table order, by hash, which would bias the estimate the
    /// inserts make.
    pub(crate) fn from_pairs(pairs: impl Iterator<Item = (u64, u32)>, expiry: Expiry) -> Self {
        let mut sketch = Self {
            generations: Vec::new(),
        };
        // Per generation (at most MAX_GENERATIONS), how many went in.
        let mut counts: Vec<(u32, u64)> = Vec::new();
        let width = expiry.generation_ticks();
        for (hash, tick) in pairs.filter(|&(_, t)| expiry.is_live(t)) {
            sketch.insert_growing(hash, tick, expiry);
            let generation = tick / width;
            match counts.iter_mut().find(|(g, _)| *g == generation) {
                Some((_, count)) => *count += 1,
                None => counts.push((generation, 1)),
            }
        }
        for (generation, sketch) in &mut sketch.generations {
            let count = counts
                .iter()
                .find(|(g, _)| g == generation)
                .map_or(0, |c| c.1);
            sketch.set_exact_count(count);
        }
        sketch.generations.shrink_to_fit();
        sketch
    }

    /// Heap bytes [`from_pairs`](Self::from_pairs) would hold for these
    /// ticks: one sketch per distinct live generation.
    pub(crate) fn bytes_for(ticks: impl Iterator<Item = u32>, expiry: Expiry) -> usize {
        let width = expiry.generation_ticks();
        let mut seen: Vec<u32> = ticks
            .filter(|&t| expiry.is_live(t))
            .map(|t| t / width)
            .collect();
        seen.sort_unstable();
        seen.dedup();
        std::mem::size_of::<Self>() + seen.len() * GENERATION_BYTES
    }

    /// The first tick of the oldest generation (`u32::MAX` for none): no
    /// generation expires before this tick does.
    pub(crate) fn oldest_tick(&self, expiry: Expiry) -> u32 {
        self.generations
            .first()
            .map_or(u32::MAX, |&(generation, _)| {
                generation.saturating_mul(expiry.generation_ticks())
            })
    }

    /// Adds `hash` seen at `tick` if its generation has a sketch; returns
    /// `None` if that needs a new one ([`GENERATION_BYTES`] more).
    #[inline]
    pub(crate) fn insert(&mut self, hash: u64, tick: u32, expiry: Expiry) -> Option<bool> {
        let generation = tick / expiry.generation_ticks();
        let (_, sketch) = self
            .generations
            .iter_mut()
            .find(|(g, _)| *g == generation)?;
        Some(sketch.insert(hash))
    }

    /// Adds `hash` at `tick`, starting its generation's sketch if needed.
    pub(crate) fn insert_growing(&mut self, hash: u64, tick: u32, expiry: Expiry) {
        if self.insert(hash, tick, expiry).is_none() {
            let generation = tick / expiry.generation_ticks();
            let mut sketch = UltraLogLog::new(UltraLogLog::DEFAULT_PRECISION)
                .expect("the default precision is valid");
            sketch.insert(hash);
            let at = self.generations.partition_point(|(g, _)| *g < generation);
            self.generations.reserve_exact(1);
            self.generations.insert(at, (generation, sketch));
        }
    }

    /// The generations, oldest first (for snapshots).
    pub(crate) fn generations(&self) -> &[(u32, UltraLogLog)] {
        &self.generations
    }

    /// Rebuilds from generations given strictly ascending (from a
    /// snapshot; the caller checks the order and precisions).
    pub(crate) fn from_generations(mut generations: Vec<(u32, UltraLogLog)>) -> Self {
        generations.shrink_to_fit();
        Self { generations }
    }

    /// The sum of the generations' estimates, live or not yet dropped.
    pub(crate) fn tally(&self) -> u64 {
        self.generations
            .iter()
            .map(|(_, sketch)| sketch.estimate().round() as u64)
            .sum()
    }

    /// Drops the generations whose newest possible visit has expired.
    pub(crate) fn expire(&mut self, expiry: Expiry) {
        let before = self.generations.len();
        self.generations
            .retain(|&(g, _)| generation_is_live(g, expiry));
        if self.generations.len() < before {
            self.generations.shrink_to_fit();
        }
    }

    /// The sketches of the live generations.
    pub(crate) fn live(&self, expiry: Expiry) -> impl Iterator<Item = &UltraLogLog> {
        self.generations
            .iter()
            .filter(move |&&(g, _)| generation_is_live(g, expiry))
            .map(|(_, sketch)| sketch)
    }

    /// Whether no generation is live.
    pub(crate) fn is_empty(&self, expiry: Expiry) -> bool {
        !self
            .generations
            .iter()
            .any(|&(g, _)| generation_is_live(g, expiry))
    }

    /// The estimate over the live generations: their union's. Merging
    /// reads at most 9 sketches, a constant cost whatever the visitors.
    pub(crate) fn count(&self, expiry: Expiry) -> Distinct {
        let mut live = self.live(expiry);
        let Some(first) = live.next() else {
            return Distinct::exact(0);
        };
        let mut union = first.clone();
        for sketch in live {
            union
                .merge(sketch)
                .expect("every generation has the default precision");
        }
        Distinct {
            visitors: union.estimate().round() as u64,
            exact: false,
            relative_error: Some(union.relative_standard_error()),
        }
    }

    /// Heap bytes: the boxed record, the list and the registers.
    pub(crate) fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.generations.capacity() * std::mem::size_of::<(u32, UltraLogLog)>()
            + self
                .generations
                .iter()
                .map(|(_, s)| s.heap_bytes())
                .sum::<usize>()
    }
}

/// Whether generation `g` still holds a live visit: its newest possible
/// tick has not expired.
fn generation_is_live(g: u32, expiry: Expiry) -> bool {
    let width = expiry.generation_ticks();
    expiry.is_live(g.saturating_mul(width).saturating_add(width - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::set::visitor_hash::VisitorHasher;

    #[test]
    fn visitors_leave_a_generation_at_a_time() {
        let hasher = VisitorHasher::new(7);
        let hash = |i: u64| hasher.hash(&i.to_le_bytes());
        let at = |now| Expiry { now, ttl: 800 };
        // 10,000 visitors over the first 100 s, 10,000 more at 500..600 s.
        let pairs = (0..20_000u64).map(|i| {
            let tick = if i < 10_000 {
                i / 100
            } else {
                500 + (i - 10_000) / 100
            };
            (hash(i), tick as u32)
        });
        let sketch = TimedSketch::from_pairs(pairs.clone(), at(600));
        assert_eq!(
            sketch.heap_bytes(),
            TimedSketch::bytes_for(pairs.map(|(_, t)| t), at(600))
        );
        let both = sketch.count(at(700)).visitors as f64;
        assert!((both - 20_000.0).abs() < 20_000.0 * 0.03, "{both}");
        // The first visitors' generation (0..=99 s) lives while its newest
        // possible visit does: until 99 + 800.
        let mut later = sketch.clone();
        later.expire(at(898));
        assert_eq!(later.heap_bytes(), sketch.heap_bytes());
        later.expire(at(899));
        let half = later.count(at(899)).visitors as f64;
        assert!((half - 10_000.0).abs() < 10_000.0 * 0.03, "{half}");
        assert!(later.heap_bytes() < sketch.heap_bytes());
        assert!(!later.is_empty(at(1_398)));
        assert!(later.is_empty(at(1_399)));
    }
}

#[cfg(test)]
mod sizes {
    /// The memory formula in the crate docs uses these figures.
    #[test]
    fn sizes_match_the_memory_formula() {
        assert_eq!(std::mem::size_of::<super::TimedSketch>(), 24);
        assert_eq!(super::GENERATION_BYTES, 8_288);
        assert_eq!(
            std::mem::size_of::<crate::set::timed_table::TimedTable>(),
            16
        );
        assert_eq!(std::mem::size_of::<crate::set::timed_table::Rest>(), 72);
        assert_eq!(
            std::mem::size_of::<crate::set::word_table::WordTable<1>>(),
            48
        );
        assert_eq!(std::mem::size_of::<crate::set::history::Sketched>(), 112);
        assert_eq!(crate::set::history::PERIOD_SKETCH_BYTES, 1_104);
    }
}
