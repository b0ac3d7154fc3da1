//! The expiry horizon of a timed visitor table: how a page answers "how
//! many of my visitors are still live?" in O(log n) without a scan.
//!
//! A page's pairs each carry the tick of their latest visit, scattered
//! over a hash table. Counting the live ones by scanning would make
//! `distinct` O(visitors); keeping every tick sorted would double the
//! memory. The horizon keeps just the **oldest** ticks sorted: a list of
//! `(tick, pairs)` for every stored pair whose tick is below `end`. As long
//! as the oldest live tick has not passed `end`, every expired pair is in
//! the list, so
//!
//! ```text
//! live = stored − (pairs in the list with tick < oldest live)
//! ```
//!
//! and entries that expire are retired from the front as time passes
//! (amortised O(1)). When time passes `end` the horizon is exhausted and
//! the page is rebuilt: expired pairs are dropped (their memory comes back)
//! and a new horizon is cut to hold about an eighth of the survivors, so a
//! rebuild scans a page roughly once per TTL/8 of steady traffic, and each
//! pair is scanned a bounded number of times in its life.

/// Share of a page's pairs a new horizon aims to hold: 1/8.
const HORIZON_SHARE: usize = 8;
/// Buckets of the histogram a rebuild uses to cut the horizon.
const CUT_BUCKETS: usize = 64;

/// The oldest ticks of a timed table, sorted, with their multiplicities.
///
/// In declaration order (`repr(C)`): the list's handle, then the fields a
/// record reads, last and side by side (`end`, `next`), so that a record
/// reads one line of the boxed record they are in (`timed_table::Rest`).
#[derive(Debug, Clone, Default)]
#[repr(C)]
pub(crate) struct Horizon {
    /// `(tick, pairs)`, ascending by tick; counts may drop to 0.
    ticks: Vec<(u32, u32)>,
    /// Entries before `front` have expired; their pairs are in `expired`.
    front: u32,
    /// Stored pairs known to be expired (retired from the list).
    expired: u32,
    /// Every stored pair with a tick below `end` is counted in `ticks`.
    end: u32,
    /// No stored pair not yet retired has a tick below this: the front
    /// entry's tick, or `end` when no entry is left (see
    /// [`next`](Self::next)). Kept here, beside `end`, so that a write
    /// with nothing due reads no entry of the list (its own allocation).
    next: u32,
}

impl Horizon {
    /// A horizon over `ticks` (every stored pair's tick, all live at
    /// `oldest_live`): it covers about the oldest eighth of them.
    pub(crate) fn cut(ticks: impl Iterator<Item = u32> + Clone, oldest_live: u32) -> Self {
        let end = cut_point(ticks.clone(), oldest_live);
        Self::cut_below(ticks, end)
    }

    /// A horizon over the `ticks` below `end`.
    fn cut_below(ticks: impl Iterator<Item = u32>, end: u32) -> Self {
        let mut old: Vec<u32> = ticks.filter(|&t| t < end).collect();
        old.sort_unstable();
        let mut counted: Vec<(u32, u32)> = Vec::new();
        for tick in old {
            match counted.last_mut() {
                Some((last, n)) if *last == tick => *n += 1,
                _ => counted.push((tick, 1)),
            }
        }
        counted.shrink_to_fit();
        let mut horizon = Self {
            end,
            front: 0,
            expired: 0,
            next: 0,
            ticks: counted,
        };
        horizon.renext();
        horizon
    }

    /// Sets `next` from the list: called after every change of the front
    /// entry or of `end`.
    fn renext(&mut self) {
        self.next = self
            .ticks
            .get(self.front as usize)
            .map_or(self.end, |&(tick, _)| tick.min(self.end));
    }

    /// A lower bound on the tick of every stored pair not yet retired:
    /// while the oldest live tick is at most this, nothing is left to
    /// retire and the horizon covers.
    #[inline]
    pub(crate) fn next(&self) -> u32 {
        self.next
    }

    /// Stored pairs retired as expired and not yet dropped.
    pub(crate) fn retired(&self) -> u32 {
        self.expired
    }

    /// A horizon over every one of `ticks` (all stored pairs'), now and
    /// later: it never runs out, so its table is never rebuilt to count
    /// (see `TimedTable`: for tables too large to rebuild in one sweep
    /// step). It holds one entry per distinct tick, at most one per
    /// second of the TTL once expired ones are trimmed.
    pub(crate) fn complete(ticks: impl Iterator<Item = u32>) -> Self {
        Self::cut_below(ticks, u32::MAX)
    }

    /// Whether the horizon covers every pair, whatever time it is.
    pub(crate) fn is_complete(&self) -> bool {
        self.end == u32::MAX
    }

    /// Whether the horizon can still tell the expired pairs apart, i.e.
    /// every pair older than `oldest_live` is in its list.
    #[inline]
    pub(crate) fn covers(&self, oldest_live: u32) -> bool {
        oldest_live <= self.end
    }

    /// Stored pairs expired at `oldest_live` (which it must cover). Reads
    /// only: the entries not yet retired are few when writes are regular.
    pub(crate) fn expired_at(&self, oldest_live: u32) -> usize {
        debug_assert!(self.covers(oldest_live));
        if oldest_live <= self.next {
            return self.expired as usize;
        }
        let pending: u32 = self.ticks[self.front as usize..]
            .iter()
            .take_while(|&&(tick, _)| tick < oldest_live)
            .map(|&(_, n)| n)
            .sum();
        (self.expired + pending) as usize
    }

    /// Retires the entries expired at `oldest_live` from the list.
    #[inline]
    pub(crate) fn advance(&mut self, oldest_live: u32) {
        if oldest_live <= self.next {
            return;
        }
        let rest = &self.ticks[self.front as usize..];
        let retired = rest.iter().take_while(|&&(t, _)| t < oldest_live).count();
        self.expired += rest[..retired].iter().map(|&(_, n)| n).sum::<u32>();
        self.front += retired as u32;
        // A complete horizon lives on: its retired entries go once they
        // are half the list (amortised O(1)), all but the newest, which
        // keeps the line between retired ticks and live ones (a tick
        // below it is a retired one: see `note` and `forget`).
        if self.front >= 16 && self.front as usize * 2 > self.ticks.len() {
            self.ticks.drain(..self.front as usize - 1);
            self.front = 1;
        }
        self.renext();
    }

    /// A stored pair's tick changes away from `tick` (a revisit): it
    /// leaves the list, or the expired count if it had been retired.
    #[inline]
    pub(crate) fn forget(&mut self, tick: u32) {
        if tick < self.end {
            self.forget_listed(tick);
        }
    }

    /// [`forget`](Self::forget) of a tick below `end`.
    fn forget_listed(&mut self, tick: u32) {
        let front = self.front as usize;
        match self.ticks.binary_search_by_key(&tick, |&(t, _)| t) {
            // A retired entry's, or below one: trimmed since, or noted
            // below the retired ones.
            Ok(i) | Err(i) if i < front => self.expired -= 1,
            Ok(i) => self.ticks[i].1 -= 1,
            Err(_) => debug_assert!(false, "a stored tick below the end is listed"),
        }
    }

    /// A stored pair now has `tick` (a new pair, or a revisit). Ticks
    /// below `end` come only from back-filled events: rare, so a sorted
    /// insert is fine. The list never grows here (a write's growth would
    /// be unreserved in the memory budget, and back-filled revisits could
    /// add an entry per distinct second): when it is full, the horizon
    /// gives up its newest entry instead, ending where that entry began.
    /// It then covers a little less time, so a rebuild comes a little
    /// sooner, but never for this event: `tick` is live, so the horizon
    /// still covers now.
    #[inline]
    pub(crate) fn note(&mut self, tick: u32) {
        if tick < self.end {
            self.note_listed(tick);
            self.renext();
        }
    }

    /// [`note`](Self::note) of a tick below `end`.
    fn note_listed(&mut self, tick: u32) {
        let front = self.front as usize;
        // Most often the newest entry's (a complete horizon's: now).
        if front < self.ticks.len()
            && let Some(last) = self.ticks.last_mut()
            && last.0 == tick
        {
            last.1 += 1;
            return;
        }
        match self.ticks.binary_search_by_key(&tick, |&(t, _)| t) {
            // Below the newest retired entry: expired by the latest time
            // this horizon was advanced to, though live by the writer's
            // clock, which was read before another writer's later one (or
            // has been stepped back by more than the TTL). Time here only
            // moves forward: the pair is retired at once, where `forget`
            // will look for it.
            Ok(i) | Err(i) if i < front => self.expired += 1,
            Ok(i) => self.ticks[i].1 += 1,
            Err(i) => {
                if self.ticks.len() < self.ticks.capacity() {
                    self.ticks.insert(i, (tick, 1));
                } else if i == self.ticks.len() {
                    // Newer than every entry: end the horizon at `tick`.
                    self.end = tick;
                } else if let Some((newest, _)) = self.ticks.pop() {
                    // Every pair below `newest` is still listed.
                    self.end = newest;
                    self.ticks.insert(i, (tick, 1));
                }
            }
        }
    }

    /// Entries a complete horizon's list grows by when it is full.
    const ROOM: usize = 64;
    /// Heap bytes of that growth.
    pub(crate) const ROOM_BYTES: usize = Self::ROOM * std::mem::size_of::<(u32, u32)>();

    /// Whether noting `tick` would need an entry a complete horizon's full
    /// list has no room for. A complete horizon must stay complete (its
    /// large table is never rebuilt to count), so its list grows, by
    /// [`make_room`](Self::make_room) once the caller has reserved
    /// [`ROOM_BYTES`](Self::ROOM_BYTES), instead of ending as a cut one
    /// does in [`note`](Self::note). Cheap in the common case: a full list
    /// is checked, then the newest entry (now's).
    #[inline]
    pub(crate) fn needs_room_for(&self, tick: u32) -> bool {
        self.is_complete()
            && self.ticks.len() == self.ticks.capacity()
            && match self.ticks.last() {
                Some(&(newest, _)) if newest == tick => false,
                Some(&(newest, _)) if newest < tick => true,
                // A tick below the retired entries is retired, not listed.
                Some(_) => matches!(
                    self.ticks.binary_search_by_key(&tick, |&(t, _)| t),
                    Err(i) if i >= self.front as usize
                ),
                None => true,
            }
    }

    /// Grows the list by [`ROOM_BYTES`](Self::ROOM_BYTES) (see
    /// [`needs_room_for`](Self::needs_room_for)).
    pub(crate) fn make_room(&mut self) {
        self.ticks.reserve_exact(Self::ROOM);
    }

    /// Heap bytes of the list.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.ticks.capacity() * std::mem::size_of::<(u32, u32)>()
    }
}

/// The tick below which about the oldest eighth of `ticks` lie, found
/// with a histogram over their range, but never past the newest tick: a
/// young page's ticks all fall in the histogram's last buckets, so the
/// cut would also list its newest pairs, and every revisit for the next
/// TTL/64 (49 s of a 1 h TTL) would search and update the list. Ending
/// at the newest tick, writes from then on pass the list by. Such a
/// horizon holds less than an eighth (nothing when all ticks are equal),
/// so its page is rebuilt as soon as its oldest pairs expire.
fn cut_point(ticks: impl Iterator<Item = u32> + Clone, oldest_live: u32) -> u32 {
    let (mut newest, mut stored) = (oldest_live, 0usize);
    for tick in ticks.clone() {
        newest = newest.max(tick);
        stored += 1;
    }
    if stored == 0 {
        return oldest_live;
    }
    let span = u64::from(newest - oldest_live) + 1;
    let width = span.div_ceil(CUT_BUCKETS as u64);
    let mut histogram = [0usize; CUT_BUCKETS];
    for tick in ticks {
        let bucket = u64::from(tick.saturating_sub(oldest_live)) / width;
        histogram[bucket as usize] += 1;
    }
    let goal = stored.div_ceil(HORIZON_SHARE);
    let mut seen = 0;
    for (bucket, &n) in histogram.iter().enumerate() {
        seen += n;
        if seen >= goal {
            let end = u64::from(oldest_live) + (bucket as u64 + 1) * width;
            return u32::try_from(end).unwrap_or(u32::MAX).min(newest);
        }
    }
    newest
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cuts_about_an_eighth() {
        let ticks: Vec<u32> = (1_000..2_000).collect();
        let horizon = Horizon::cut(ticks.iter().copied(), 1_000);
        let held: u32 = horizon.ticks.iter().map(|&(_, n)| n).sum();
        assert!((125..=141).contains(&held), "{held}");
        assert_eq!(horizon.ticks.len(), held as usize);
        assert!(horizon.covers(horizon.end) && !horizon.covers(horizon.end + 1));
    }

    /// A tick noted below the retired entries (a clock read before a later
    /// writer's advanced the horizon, or stepped back) is retired at once,
    /// and forgetting it later takes it back out of the expired count.
    #[test]
    fn ticks_noted_below_the_retired_ones_are_retired() {
        let ticks: Vec<u32> = (1_000..1_064).collect();
        let mut horizon = Horizon::complete(ticks.iter().copied());
        horizon.advance(1_010);
        assert_eq!(horizon.expired_at(1_010), 10);
        // Equal to a retired entry's tick, between two, below them all.
        for tick in [1_003, 1_005, 999] {
            horizon.note(tick);
        }
        assert_eq!(horizon.expired_at(1_010), 13);
        assert_eq!(horizon.expired_at(1_012), 15);
        // Every entry retired, the newest included: still retired at once.
        horizon.advance(u32::MAX - 1);
        assert_eq!(horizon.expired_at(u32::MAX - 1), 67);
        horizon.note(1_063);
        assert_eq!(horizon.expired_at(u32::MAX - 1), 68);
        for tick in [1_003, 1_005, 999, 1_063, 1_063, 1_040] {
            horizon.forget(tick);
        }
        assert_eq!(horizon.expired_at(u32::MAX - 1), 62);
    }

    /// Back-filled pairs at many distinct seconds below the horizon's end
    /// do not grow its full list: it ends sooner instead, and still counts.
    #[test]
    fn back_fills_do_not_grow_a_full_list() {
        let mut ticks: Vec<u32> = (0..1_000).map(|i| 1_000 + 10 * i).collect();
        let mut horizon = Horizon::cut(ticks.iter().copied(), 1_000);
        let (bytes, end) = (horizon.heap_bytes(), horizon.end);
        for tick in (1_001..end).filter(|t| t % 10 != 0) {
            horizon.note(tick);
            ticks.push(tick);
        }
        assert_eq!(horizon.heap_bytes(), bytes);
        assert!(horizon.end < end && horizon.covers(1_001));
        for oldest in [1_000, 1_001, 1_005, 1_011, horizon.end] {
            let expected = ticks.iter().filter(|&&t| t < oldest).count();
            assert_eq!(horizon.expired_at(oldest), expected, "{oldest}");
        }
    }

    /// A young page's ticks all lie in the cut's last histogram bucket:
    /// the horizon ends at the newest tick, so revisits at it or later
    /// pass the list by, and it lists nothing when all ticks are equal.
    #[test]
    fn a_young_pages_cut_ends_at_its_newest_tick() {
        let ticks = [5_000, 5_000, 5_001, 5_002, 5_002, 5_002];
        let horizon = Horizon::cut(ticks.into_iter(), 5_002 + 1 - 3_600);
        assert_eq!((horizon.end, horizon.next()), (5_002, 5_000));
        assert_eq!(horizon.ticks, vec![(5_000, 2), (5_001, 1)]);
        let same = Horizon::cut([7_000; 4].into_iter(), 7_000 + 1 - 3_600);
        assert_eq!((same.end, same.next(), same.ticks.len()), (7_000, 7_000, 0));
        assert!(same.covers(7_000) && !same.covers(7_001));
        assert_eq!(same.expired_at(7_000), 0);
    }

    proptest! {
        /// Against a plain list of ticks: forget, note and advance keep
        /// `expired_at` equal to a count, while the horizon covers.
        #[test]
        fn counts_expired_pairs_like_a_scan(
            start in proptest::collection::vec(100u32..200, 1..60),
            ops in proptest::collection::vec((0usize..64, 100u32..260, any::<bool>()), 0..80),
        ) {
            let mut ticks = start.clone();
            let mut horizon = Horizon::cut(ticks.iter().copied(), 100);
            let mut oldest_live = 100;
            for (which, tick, advance) in ops {
                if advance {
                    oldest_live = (oldest_live + 3).min(horizon.end);
                    horizon.advance(oldest_live);
                } else if !ticks.is_empty() {
                    // A revisit moves a pair's tick forwards (never below
                    // what is live).
                    let i = which % ticks.len();
                    let new = ticks[i].max(tick).max(oldest_live);
                    if new != ticks[i] {
                        let bytes = horizon.heap_bytes();
                        horizon.forget(ticks[i]);
                        horizon.note(new);
                        prop_assert!(horizon.heap_bytes() <= bytes, "a note never grows the list");
                        ticks[i] = new;
                    }
                }
                let expected = ticks.iter().filter(|&&t| t < oldest_live).count();
                prop_assert_eq!(horizon.expired_at(oldest_live), expected);
                // `next` bounds every pair not yet retired from below.
                for &t in ticks.iter().filter(|&&t| t >= oldest_live) {
                    prop_assert!(t >= horizon.next(), "{} below next {}", t, horizon.next());
                }
            }
        }
    }
}
