//! Deterministic event streams: the same seed gives the same events on
//! every machine and run, so results from different runs compare.
//!
//! Generation is slow next to ingest, so a stream is built once, outside
//! any timed code, and then replayed as borrowed `&str` pairs.

/// SplitMix64: a tiny, fast, well-mixed generator. Statistical quality far
/// beyond what a workload needs, and written here so that the streams never
/// change under us with a `rand` upgrade.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)` from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `0..n` (multiply-shift; the bias is below
    /// 2^-32 for the sizes used here).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Samples ranks `0..n` with probability proportional to `1 / (rank+1)^s`.
///
/// Inverse-CDF over a precomputed table: exact for any `s`, and one binary
/// search per draw, which is plenty fast for pre-generating a stream. (An
/// approximate sampler such as `rand_distr::Zipf` would save the table but
/// add a dependency for no benefit here.)
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// A sampler over `n` ranks (`n >= 1`) with exponent `s`.
    pub fn new(n: usize, s: f64) -> Self {
        assert!(n >= 1, "a Zipf distribution needs at least one rank");
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for rank in 1..=n {
            total += (rank as f64).powf(-s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Self { cdf }
    }

    /// The probability of rank `rank`.
    pub fn probability(&self, rank: usize) -> f64 {
        let below = if rank == 0 { 0.0 } else { self.cdf[rank - 1] };
        self.cdf[rank] - below
    }

    /// One rank; 0 is the most likely.
    pub fn sample(&self, rng: &mut SplitMix64) -> usize {
        let u = rng.next_f64();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

const SECTIONS: [&str; 6] = ["products", "category", "blog", "help", "deals", "brands"];
const REFS: [&str; 8] = [
    "newsletter",
    "homepage",
    "search",
    "facebook_ads",
    "spring_sale",
    "partner_feed",
    "email_digest",
    "related_items",
];

/// The URL of page `page`: realistic shape and length (about 50 to 80
/// bytes), already canonical, as browsers send them.
pub fn page_url(page: usize) -> String {
    let mut rng = SplitMix64::new(0x5EED_0000 ^ page as u64);
    let section = SECTIONS[page % SECTIONS.len()];
    let reference = REFS[rng.below(REFS.len() as u64) as usize];
    format!(
        "https://shop.example.com/{section}/{page}-item-{:x}?ref={reference}",
        rng.next_u64() >> 40
    )
}

/// The id of visitor `visitor`: a UUID (36 bytes) for even ids and a
/// 22-character URL-safe id for odd ones, the two shapes sites generate.
pub fn visitor_id(visitor: usize) -> String {
    let mut rng = SplitMix64::new(0xF00D_0000 ^ visitor as u64);
    if visitor.is_multiple_of(2) {
        let (a, b) = (rng.next_u64(), rng.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            (b >> 48) & 0x3fff | 0x8000,
            b & 0xffff_ffff_ffff
        )
    } else {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        // Ten 6-bit characters per 64 random bits.
        let mut bits = 0;
        (0..22)
            .map(|i| {
                if i % 10 == 0 {
                    bits = rng.next_u64();
                }
                ALPHABET[(bits >> (6 * (i % 10))) as usize & 63] as char
            })
            .collect()
    }
}

/// A pre-generated stream of (visitor, URL) events, stored back to back in
/// one buffer so that replaying it reads memory in order, as a server
/// parsing requests would.
#[derive(Debug, Clone, Default)]
pub struct Events {
    text: String,
    /// Per event: where its visitor starts in `text`, the visitor's length
    /// and the URL's length (the URL follows the visitor).
    spans: Vec<(u32, u16, u16)>,
}

impl Events {
    /// An empty stream with room for `events` events of about
    /// `bytes_per_event` bytes.
    pub fn with_capacity(events: usize, bytes_per_event: usize) -> Self {
        Self {
            text: String::with_capacity(events * bytes_per_event),
            spans: Vec::with_capacity(events),
        }
    }

    /// Appends one event.
    pub fn push(&mut self, visitor: &str, url: &str) {
        let start = u32::try_from(self.text.len()).expect("a stream holds at most 4 GiB");
        self.text.push_str(visitor);
        self.text.push_str(url);
        let len = |s: &str| u16::try_from(s.len()).expect("an event field is under 64 KiB");
        self.spans.push((start, len(visitor), len(url)));
    }

    /// The number of events.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are no events.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Event `i` as (visitor, URL).
    pub fn get(&self, i: usize) -> (&str, &str) {
        let (start, v, u) = self.spans[i];
        let (start, v, u) = (start as usize, v as usize, u as usize);
        (
            &self.text[start..start + v],
            &self.text[start + v..start + v + u],
        )
    }

    /// The events in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Splits the stream into `parts` contiguous, near-equal index ranges
    /// (one per thread).
    pub fn chunks(&self, parts: usize) -> Vec<std::ops::Range<usize>> {
        let n = self.len();
        (0..parts)
            .map(|p| n * p / parts..n * (p + 1) / parts)
            .collect()
    }

    /// Heap bytes the stream holds (to tell it apart from what a
    /// structure under test holds).
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.spans.capacity() * std::mem::size_of::<(u32, u16, u16)>()
    }
}

/// A Zipf workload: `events` page views of `pages` pages by `visitors`
/// visitors. Every visitor makes the same number of views (so exactly
/// `visitors` distinct ids appear when `events` is a multiple of it); each
/// view picks its page from a Zipf distribution with exponent `s`. Page
/// rank 0 is the most visited.
#[derive(Debug, Clone)]
pub struct ZipfWorkload {
    /// The events, in a random order.
    pub events: Events,
    /// The page ranks' URLs (index = rank).
    pub urls: Vec<String>,
    /// The least likely rank that received at least one view.
    pub coldest_visited: usize,
}

impl ZipfWorkload {
    /// Generates the workload; the same arguments give the same events.
    pub fn generate(pages: usize, visitors: usize, events: usize, s: f64, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let zipf = Zipf::new(pages, s);
        let urls: Vec<String> = (0..pages).map(page_url).collect();
        let ids: Vec<String> = (0..visitors).map(visitor_id).collect();
        let mut who: Vec<u32> = (0..events).map(|i| (i % visitors) as u32).collect();
        rng.shuffle(&mut who);
        let mut stream = Events::with_capacity(events, 100);
        let mut coldest_visited = 0;
        for v in who {
            let page = zipf.sample(&mut rng);
            coldest_visited = coldest_visited.max(page);
            stream.push(&ids[v as usize], &urls[page]);
        }
        Self {
            events: stream,
            urls,
            coldest_visited,
        }
    }

    /// The core benches' workload (the issue's): Zipf (s = 1) over 100k
    /// pages, 1M visitors making two page views each, one seed, so that
    /// every bench replaying it measures the same events. Test runs
    /// (`full` false: `cargo test --benches`, a debug build) only check
    /// that a bench runs, so they get a tiny workload of the same shape.
    /// Says on stderr what it generated.
    pub fn core(full: bool) -> Self {
        let (pages, visitors, events) = if full {
            (CORE_PAGES, 1_000_000, 2_000_000)
        } else {
            (1_000, 2_000, 4_000)
        };
        let generating = std::time::Instant::now();
        let workload = Self::generate(pages, visitors, events, CORE_ZIPF_S, 0x7EAC_0001);
        eprintln!(
            "workload: {events} events, {pages} pages (Zipf s={CORE_ZIPF_S}), {visitors} \
             visitors; generated in {:.1?}",
            generating.elapsed()
        );
        workload
    }
}

/// Pages of the core benches' workload ([`ZipfWorkload::core`]).
pub const CORE_PAGES: usize = 100_000;
/// The Zipf exponent of the core benches' workload.
pub const CORE_ZIPF_S: f64 = 1.0;

/// A uniform workload: `pairs` distinct (page, visitor) pairs spread evenly
/// over `pages` pages, every pair a different visitor, in a random order.
pub fn uniform_pairs(pages: usize, pairs: usize, seed: u64) -> Events {
    let mut rng = SplitMix64::new(seed);
    let urls: Vec<String> = (0..pages).map(page_url).collect();
    let mut order: Vec<u32> = (0..pairs as u32).collect();
    rng.shuffle(&mut order);
    let mut stream = Events::with_capacity(pairs, 100);
    for i in order {
        let i = i as usize;
        stream.push(&visitor_id(i), &urls[i % pages]);
    }
    stream
}

/// Like [`uniform_pairs`], but the pages' visitor counts spread evenly on
/// a log scale over a factor of `spread` (page `p` gets a share growing as
/// `spread^(p / pages)`, so at 1M pairs over 1k pages and a spread of 4,
/// 462 to 1,848 visitors a page, 1,000 on average). Tables grow by
/// constant factors, so a page size at one step's end holds them near the
/// maximum load and one just past it near the minimum: with sizes spread
/// over several steps, bytes per pair are the honest average over the
/// growth cycle, not the luck of where one size falls.
pub fn spread_pairs(pages: usize, pairs: usize, spread: f64, seed: u64) -> Events {
    let mut rng = SplitMix64::new(seed);
    let urls: Vec<String> = (0..pages).map(page_url).collect();
    let weights: Vec<f64> = (0..pages)
        .map(|p| spread.powf((p as f64 + 0.5) / pages as f64))
        .collect();
    let total: f64 = weights.iter().sum();
    // Page of each pair: cumulative shares, rounded, so the sizes sum to
    // `pairs` exactly.
    let mut page_of = Vec::with_capacity(pairs);
    let mut cumulative = 0.0;
    for (page, w) in weights.iter().enumerate() {
        cumulative += w;
        let end = ((cumulative / total) * pairs as f64).round() as usize;
        page_of.resize(end.min(pairs).max(page_of.len()), page as u32);
    }
    page_of.resize(pairs, (pages - 1) as u32);
    let mut order: Vec<u32> = (0..pairs as u32).collect();
    rng.shuffle(&mut order);
    let mut stream = Events::with_capacity(pairs, 100);
    for i in order {
        let i = i as usize;
        stream.push(&visitor_id(i), &urls[page_of[i] as usize]);
    }
    stream
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_head_matches_theory() {
        let zipf = Zipf::new(100_000, 1.0);
        let mut rng = SplitMix64::new(1);
        let draws = 200_000;
        let head = (0..draws).filter(|_| zipf.sample(&mut rng) == 0).count();
        let expected = zipf.probability(0) * draws as f64;
        assert!(
            (head as f64 - expected).abs() < 4.0 * expected.sqrt(),
            "{head} vs {expected}"
        );
    }

    #[test]
    fn ids_and_urls_have_realistic_lengths() {
        for i in 0..1000 {
            let url = page_url(i * 97);
            assert!((50..=80).contains(&url.len()), "{url}");
            let id = visitor_id(i);
            assert!((20..=36).contains(&id.len()), "{id}");
        }
    }

    #[test]
    fn workload_is_deterministic_and_complete() {
        let a = ZipfWorkload::generate(1000, 500, 1000, 1.0, 7);
        let b = ZipfWorkload::generate(1000, 500, 1000, 1.0, 7);
        assert_eq!(a.events.len(), 1000);
        assert!(a.events.iter().eq(b.events.iter()));
        let visitors: std::collections::HashSet<&str> = a.events.iter().map(|e| e.0).collect();
        assert_eq!(visitors.len(), 500);
    }
}
