//! Time for range queries: reading and writing times, buckets, retention,
//! and the bucket-aligned ranges and series that answers cover.
//!
//! - [`Timestamp::parse`](crate::Timestamp::parse) reads RFC 3339,
//!   dates, unix seconds and relative times (`-7d`, `now`);
//!   [`Timestamp::to_rfc3339`](crate::Timestamp::to_rfc3339) writes the
//!   UTC `Z` form every answer echoes;
//!   [`Timestamp::parse_duration`](crate::Timestamp::parse_duration)
//!   reads `4h`, `30d`, `1h30m`.
//! - [`Bucketing`] is the granularity (bucket width, retention, series
//!   point limit); [`Bucketing::range`] widens a `[from, till)` to whole
//!   buckets and [`Bucketing::series`] cuts one into steps. A tracker's
//!   is set with [`TrackerBuilder::bucket`](crate::TrackerBuilder::bucket),
//!   [`retention`](crate::TrackerBuilder::retention) and
//!   [`max_points`](crate::TrackerBuilder::max_points); the snapshot keeps
//!   the width and retention.
//!
//! The text forms are parsed here rather than with a date crate: they
//! are a narrow, fixed grammar on whole UTC seconds from 1970 to 2106
//! (what a 32-bit tick holds), plus relative forms no date crate reads,
//! and the core has no other calendar need. A crate (`time`, `jiff`)
//! would add a dependency tree to every embedding for the one function
//! (days from a civil date) that carries the risk; that function and
//! the RFC 3339 reading are instead property-tested against the `time`
//! crate (a dev-dependency).
//!
//! # How a pair remembers when: the layout, chosen by measurement
//!
//! (Issue 12. The prototype and its figures: `benches/time_layout.rs`,
//! `docs/BENCHMARKS.md` "Time ranges: choosing the layout". The sets
//! keep their buckets this way: `set/word_table.rs`, `set/activity.rs`,
//! `set/history.rs`; the queries are in `tracker/ranges.rs`.)
//!
//! **An activity word per exact slot.** A visitor table's slot becomes
//! (64-bit hash, 32-bit activity word), the words in their own run after
//! the keys (a TTL table's slot keeps its tick beside its word there):
//!
//! - high bit clear: the pair's one bucket (index since the epoch; 2³¹
//!   one-minute buckets reach the year 6053). A visitor seen in one bucket
//!   is the common case and costs the word alone;
//! - high bit set: the offset of the pair's sorted run of distinct
//!   buckets (`len, capacity, bucket...`, 32 bits each) in a per-page
//!   arena. A run that fills moves to the arena's end at twice the room;
//!   a page rebuild rewrites every run exactly sized, in slot order. A
//!   page whose runs mostly fill their first room starts new ones with
//!   more (up to 16 buckets).
//!
//! A run is a second, dependent miss after the slot's, and a page's
//! arena with its room, garbage and slack took 92 B/pair for visitors
//! seen on 5 days, pushing other lines out of the caches: a return in a
//! new bucket cost 1.4–1.6x a repeat in one bucket. So a page whose arena
//! outweighs 8 more bytes a slot moves to **wide cells**: the word
//! becomes 3 words, the earliest bucket and four 16-bit gaps to the next
//! ones, and a pair's first five buckets stay in its slot (24 B/pair on
//! that workload, and 1.2–1.3x; `set/activity.rs` has the encoding,
//! `docs/BENCHMARKS.md` "Wide cells" the figures).
//!
//! A repeat visit in its bucket reads the word and writes nothing (no
//! allocation); a visit in a new bucket grows the page's arena, amortised.
//! `distinct_between` is one scan of a page's words (4 bytes a visitor,
//! reading a run only for returning visitors), `series` the same scan
//! with a counter per point: 0.21 ms and 0.60 ms on a page of 100k
//! visitors (targets 5 and 20 ms; Redis's inexact `PFCOUNT` of 30 daily
//! HyperLogLogs takes 1.3 ms), 0.75 and 12.9 ms when every one of them
//! came back on 30 days. Tables beyond one cache line fill up to 15/16
//! instead of 7/8, which keeps 12-byte slots within the 16-byte target
//! at every size (the bytes per pair are the crate docs' "Memory cost";
//! at 7/8 and growth by x1.25 it was 16.8 B measured).
//! `distinct(url)` stays the stored count, O(1).
//!
//! Pages of one or two visitors keep them inline, in the page record,
//! with no room for two more words; the record stays 40 bytes as the TTL
//! form always kept it: the most recent visitor first, its latest tick as
//! the page's last-recorded one, the other's tick as a 24-bit age behind
//! it (194 days), and each inline visitor's bucket is that of its tick.
//! An inline visitor seen in a second bucket, or two ticks too far apart
//! for the age, moves the page to a table. (The prototype stored buckets
//! here; ticks serve TTL and eviction alike, with the same bytes.)
//!
//! Without a TTL a table stays a bare allocation (the page record has no
//! room for an arena's handle) while every pair of it was seen in one
//! bucket: a page of three visitors takes 48 heap bytes (32 with bare
//! hashes). The first pair seen in a second bucket boxes the table with
//! the page's arena (48 bytes more).
//!
//! Not chosen:
//!
//! - per-(page, bucket) sets (Redis's daily sets, what a user writes):
//!   every bucket a pair is seen in holds its hash again, 96 B/pair for
//!   one visit each in `HashSet`s, at best 8–11 B per (pair, bucket)
//!   compact, beside the all-time set; a range is a union through a hash
//!   set, 8x slower than the scan at one visit each, 100x with returns;
//! - per-pair bitmaps over a window of buckets: memory grows with the
//!   window however rarely the visitor came (30 days of hours: 90 B a
//!   pair);
//! - hour/day/month levels: each level holds the hashes again.
//!
//! **Retention and TTL.** Retention is whole buckets: `record_at` refuses
//! an older time ([`TimeError::BeforeRetention`]); the sweep that drops
//! expired pairs (it runs with a retention too) drops each pair's buckets
//! that left it, the pairs left with none, and sketched pages' old days,
//! and gives the memory back; ranges never reach before the retention,
//! and every ranged answer of an exact page is exact (a scan that skips
//! buckets outside the range).
//!
//! `distinct(url)` with a retention is the count of pairs held, O(1): a
//! pair whose buckets all left the retention counts until the sweep next
//! reaches its page, so it is at least the visitors of the retention, at
//! most every visitor recorded since the page was last swept, and equal
//! to the first once a sweep pass has gone by (records run sweep steps
//! as they go, and `Tracker::spawn_sweeper` on a timer; the test is
//! `distinct_with_a_retention_is_exact_once_swept` in
//! `tests/it/ranges.rs`). A sketched page's all-time estimate cannot
//! forget at all: its count is over everything since it was sketched
//! (its days, which ranges read, are dropped). `distinct_between(url,
//! None, None)` is the exact count of the retention, one scan of the page.
//! Making `distinct` exact between sweeps would take what the TTL does,
//! a horizon over each pair's latest bucket kept sorted per page and
//! moved on every visit in a new bucket; the same machinery costs the
//! TTL 1.6x the plain record per new pair and 2.1x per repeat visit
//! (`docs/BENCHMARKS.md`, "TTL"), past the 1.3x record budget, and a
//! table without a TTL has no room for the horizon's handle (it is a
//! bare allocation while its pairs are seen in one bucket). So it is not
//! built; the sweep bounds how stale the count is. A TTL keeps its second-precision tick (its rule is a rolling
//! window to the second), so a TTL table's slot is hash, tick and word:
//! 16 bytes; with a TTL, ranges count the live pairs.
//!
//! **Under the memory budget** (policy `Sketch`), in this order:
//!
//! 1. the biggest exact pages first (as today) become an all-time
//!    UltraLogLog (8 KiB, 0.73%: `distinct(url)` stays O(1)) plus one
//!    sketch per UTC day of history at precision 10 (1 KiB, 2.4% relative
//!    standard error, the same for any union of days, since merging is
//!    lossless). One 8 KiB sketch per hourly bucket would cost 192 KiB a
//!    page a day; a day that holds fewer than 128 visitors stays an exact
//!    sorted list of their hashes (what the sketch would cost). A range on
//!    a sketched page is widened to whole days, and the answer says which
//!    range it covers, `exact: false` and its relative error;
//! 2. the oldest days of sketched pages merge, two at a time (lossless in
//!    count, coarser in time: a range on them covers the merged days),
//!    stripe by stripe, the page whose history starts earliest first;
//!    a merge that would not free memory is not made;
//! 3. then the least recently recorded pages are evicted, as today.
//!
//! With a TTL a sketched page keeps its per-generation sketches only
//! (`timed_sketch.rs`), no history: its range answers cover everything
//! it holds, and say so in their range. A page sketched by a payload of
//! version 1 or 2 has a history from the day it was restored on.
//!
//! **Sites** (every page of a host) are unions, never sums: exact pairs in
//! range go through a transient set of hashes, sketched pages are merged
//! into one sketch that the exact hashes of the other pages are added to.

pub(crate) mod civil;
pub(crate) mod clock;
mod error;
mod range;
mod text;
pub(crate) mod ttl;

pub use error::TimeError;
pub use range::{
    Bucketing, DEFAULT_BUCKET, DEFAULT_MAX_POINTS, MAX_BUCKET, MIN_BUCKET, Series, TimeRange,
};
