//! Counts over time (`distinct_between`, `series`, `top_between` and their
//! site forms) against a model that keeps every (page, visitor, time).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tracker_core::{
    ManualClock, MemoryPolicy, RangeDistinct, SeriesCounts, TimeError, TimeRange, Timestamp,
    Tracker, TrackerError,
};

/// Pages (canonical) and their sites.
const PAGES: [(&str, Option<&str>); 6] = [
    ("https://a.com/", Some("a.com")),
    ("https://a.com/x", Some("a.com")),
    ("https://a.com/y", Some("a.com")),
    ("https://b.org/", Some("b.org")),
    ("https://b.org/z", Some("b.org")),
    ("/bare", None),
];

const DAY: u64 = 86_400;
/// 2026-11-01T00:00:00Z: the first event may be this early.
const START: u64 = 1_793_491_200;
/// The events span this many days; the clock stands at their end.
const SPAN_DAYS: u64 = 10;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_millis(secs * 1000)
}

/// Every event: (page, visitor, second).
type Events = Vec<(usize, u8, u64)>;

/// Distinct visitors of the events `keep` accepts within `range`.
fn model_count(events: &Events, range: &TimeRange, keep: impl Fn(usize) -> bool) -> u64 {
    let (from, till) = (
        range.from().as_millis() / 1000,
        range.till().as_millis() / 1000,
    );
    let visitors: BTreeSet<u8> = events
        .iter()
        .filter(|&&(page, _, t)| keep(page) && from <= t && t < till)
        .map(|&(_, v, _)| v)
        .collect();
    visitors.len() as u64
}

fn check_exact(answer: &RangeDistinct, expected: u64) -> Result<(), TestCaseError> {
    prop_assert!(answer.distinct.exact, "{answer:?}");
    prop_assert_eq!(answer.distinct.visitors, expected, "{:?}", answer);
    Ok(())
}

#[derive(Debug, Clone)]
struct Setup {
    bucket: u64,
    ttl: bool,
    retention_days: Option<u64>,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop_oneof![Just(60u64), Just(900), Just(3_600), Just(DAY)],
        any::<bool>(),
        prop_oneof![Just(None), (2u64..8).prop_map(Some)],
    )
        .prop_map(|(bucket, ttl, retention_days)| Setup {
            bucket,
            ttl,
            retention_days,
        })
}

fn build(setup: &Setup, clock: &ManualClock) -> tracker_core::TrackerBuilder {
    let mut builder = Tracker::builder()
        .stripes(2)
        .hash_key(7)
        .bucket(Duration::from_secs(setup.bucket))
        .max_points(10_000)
        .clock(Arc::new(clock.clone()));
    if setup.ttl {
        // Longer than the events span: no pair expires, but the timed
        // forms (ticks, horizons) are the ones that hold the buckets.
        builder = builder.ttl(Duration::from_secs(60 * DAY));
    }
    if let Some(days) = setup.retention_days {
        builder = builder.retention(Duration::from_secs(days * DAY));
    }
    builder
}

/// A range's end: open, or a second within (or a little around) the span.
fn bound() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        1 => Just(None),
        4 => (0..(SPAN_DAYS + 1) * DAY).prop_map(|s| Some(START + s)),
    ]
}

/// Checks every answer of the six methods on `tracker` against `events`
/// (those the tracker kept), for the queries given.
fn check_all(
    tracker: &Tracker,
    events: &Events,
    queries: &[(Option<u64>, Option<u64>, u64, usize)],
) -> Result<(), TestCaseError> {
    let now = at(START + SPAN_DAYS * DAY);
    let bucketing = tracker.bucketing();
    for &(a, b, step_buckets, k) in queries {
        let (from, till) = match (a, b) {
            (Some(a), Some(b)) => (Some(at(a.min(b))), Some(at(a.max(b)))),
            (a, b) => (a.map(at), b.map(at)),
        };
        let range = bucketing.range(from, till, now).unwrap();
        for (page, (url, _)) in PAGES.iter().enumerate() {
            let answer = tracker.distinct_between(url, from, till).unwrap();
            prop_assert_eq!(answer.range, range);
            check_exact(&answer, model_count(events, &range, |p| p == page))?;
        }
        for site in ["a.com", "b.org", "c.net"] {
            let in_site = |p: usize| PAGES[p].1 == Some(site);
            let answer = tracker.site_distinct_between(site, from, till).unwrap();
            prop_assert_eq!(answer.range, range);
            check_exact(&answer, model_count(events, &range, in_site))?;
            let step = bucketing.width() * step_buckets as u32;
            match tracker.site_series(site, from, till, step) {
                Ok(series) => {
                    prop_assert_eq!(series.points.len(), series.series.points().len());
                    for point in &series.points {
                        check_exact(point, model_count(events, &point.range, in_site))?;
                    }
                }
                Err(TrackerError::Time(TimeError::TooManyPoints { .. })) => {}
                Err(e) => prop_assert!(false, "{e}"),
            }
            let top = tracker.top_of_site_between(k, site, from, till).unwrap();
            prop_assert_eq!(top.range, range);
            let expected = model_top(events, &range, k, in_site);
            let got: Vec<(String, u64)> = top
                .pages
                .iter()
                .map(|p| (p.url.clone(), p.distinct.visitors))
                .collect();
            prop_assert_eq!(got, expected);
        }
        let step = bucketing.width() * step_buckets as u32;
        // An open `from` reaches back only as far as the point limit allows.
        let series_range = match from {
            Some(_) => range,
            None => bucketing.latest_steps(range, step),
        };
        for (page, (url, _)) in PAGES.iter().enumerate().take(3) {
            match tracker.series(url, from, till, step) {
                Ok(series) => {
                    prop_assert_eq!(series.series.range().from(), series_range.from());
                    for point in &series.points {
                        check_exact(point, model_count(events, &point.range, |p| p == page))?;
                    }
                }
                Err(TrackerError::Time(TimeError::TooManyPoints { .. })) => {}
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
        let top = tracker.top_between(k, from, till).unwrap();
        let expected = model_top(events, &range, k, |_| true);
        let got: Vec<(String, u64)> = top
            .pages
            .iter()
            .map(|p| (p.url.clone(), p.distinct.visitors))
            .collect();
        prop_assert_eq!(got, expected);
    }
    Ok(())
}

/// The model's top `k` pages among those `keep` accepts, over `range`:
/// most visitors first, ties by URL; pages with none left out.
fn model_top(
    events: &Events,
    range: &TimeRange,
    k: usize,
    keep: impl Fn(usize) -> bool,
) -> Vec<(String, u64)> {
    let mut rows: Vec<(String, u64)> = (0..PAGES.len())
        .filter(|&p| keep(p))
        .map(|p| {
            (
                PAGES[p].0.to_string(),
                model_count(events, range, |q| q == p),
            )
        })
        .filter(|&(_, n)| n > 0)
        .collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows.truncate(k);
    rows
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random streams at random times, random ranges: every answer is
    /// exact and equals the model's, before and after a sweep and a
    /// snapshot round trip.
    #[test]
    fn exact_answers_equal_the_model(
        setup in setup(),
        // Visitors come back: 14 visitors, ~4 pages each, many times.
        stream in proptest::collection::vec((0usize..PAGES.len(), 0u8..14, 0..SPAN_DAYS * DAY), 1..250),
        queries in proptest::collection::vec((bound(), bound(), 1u64..30, 1usize..5), 1..5),
    ) {
        let clock = ManualClock::new(at(START + SPAN_DAYS * DAY));
        let tracker = build(&setup, &clock).build().unwrap();
        let oldest = tracker
            .bucketing()
            .range(None, None, at(START + SPAN_DAYS * DAY))
            .unwrap()
            .from()
            .as_millis()
            / 1000;
        let mut kept = Events::new();
        for &(page, visitor, offset) in &stream {
            let t = START + offset;
            let outcome = tracker.record_at(&format!("v{visitor}"), PAGES[page].0, at(t));
            if t < oldest {
                prop_assert!(
                    matches!(outcome, Err(TrackerError::Time(TimeError::BeforeRetention { .. }))),
                    "{outcome:?}"
                );
            } else {
                prop_assert!(outcome.is_ok(), "{outcome:?}");
                kept.push((page, visitor, t));
            }
        }
        check_all(&tracker, &kept, &queries)?;
        // All-time counts stay O(1) and agree.
        for (page, (url, _)) in PAGES.iter().enumerate() {
            let all: BTreeSet<u8> = kept.iter().filter(|e| e.0 == page).map(|e| e.1).collect();
            prop_assert_eq!(tracker.distinct(url).unwrap().visitors, all.len() as u64);
        }
        // A sweep (retention) changes no answer within the retention.
        crate::sweep_a_full_pass(&tracker);
        check_all(&tracker, &kept, &queries)?;
        // Nor does a snapshot round trip.
        let mut payload = Vec::new();
        tracker.write_snapshot(&mut payload).unwrap();
        let restored = Tracker::restore_snapshot(&payload, build(&setup, &clock)).unwrap();
        check_all(&restored, &kept, &queries)?;
        prop_assert_eq!(restored.stats().pairs, tracker.stats().pairs);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// What `distinct(url)` means with a retention, as a manual clock moves
    /// on: between sweeps it counts the pairs held, at least those with a
    /// visit still in the retention and at most every pair recorded; once
    /// the sweep has passed every page, exactly those in the retention.
    /// Ranged answers are exact all along.
    #[test]
    fn distinct_with_a_retention_is_exact_once_swept(
        setup in setup(),
        retention_days in 1u64..4,
        stream in proptest::collection::vec((0usize..PAGES.len(), 0u8..14, 0..SPAN_DAYS * DAY), 1..150),
        advances in proptest::collection::vec(0..3 * DAY, 1..5),
    ) {
        let setup = Setup { retention_days: Some(retention_days), ..setup };
        let mut now = START + SPAN_DAYS * DAY;
        let clock = ManualClock::new(at(now));
        let tracker = build(&setup, &clock).build().unwrap();
        let mut held = Events::new();
        for &(page, visitor, offset) in &stream {
            if tracker.record_at(&format!("v{visitor}"), PAGES[page].0, at(START + offset)).is_ok() {
                held.push((page, visitor, START + offset));
            }
        }
        for advance in advances {
            now += advance;
            clock.set(at(now));
            let retained = tracker.bucketing().range(None, None, at(now)).unwrap();
            for (page, (url, _)) in PAGES.iter().enumerate() {
                let of_page = |p: usize| p == page;
                let in_retention = model_count(&held, &retained, of_page);
                let ever: BTreeSet<u8> =
                    held.iter().filter(|e| e.0 == page).map(|e| e.1).collect();
                let all_time = tracker.distinct(url).unwrap();
                prop_assert!(all_time.exact);
                prop_assert!(
                    (in_retention..=ever.len() as u64).contains(&all_time.visitors),
                    "{url}: {all_time:?}, {in_retention} in the retention, {} recorded",
                    ever.len()
                );
                check_exact(&tracker.distinct_between(url, None, None).unwrap(), in_retention)?;
            }
            crate::sweep_a_full_pass(&tracker);
            for (page, (url, _)) in PAGES.iter().enumerate() {
                let in_retention = model_count(&held, &retained, |p| p == page);
                prop_assert_eq!(tracker.distinct(url).unwrap().visitors, in_retention, "{}", url);
                check_exact(&tracker.distinct_between(url, None, None).unwrap(), in_retention)?;
            }
        }
    }
}

/// A one-stripe tracker keeping `days` of buckets, on a manual clock at
/// `START`.
fn with_retention(days: u64) -> (ManualClock, Tracker) {
    let clock = ManualClock::new(at(START));
    let tracker = Tracker::builder()
        .stripes(1)
        .retention(Duration::from_secs(days * DAY))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    (clock, tracker)
}

/// A tracker keeping `days` of buckets, on a manual clock at
/// 2026-11-30T12:30Z, that recorded `(visitor, time)` on https://e.com/.
fn visited_at_noon(days: u64, visits: &[(&str, &str)]) -> Tracker {
    let clock = ManualClock::new(t("2026-11-30T12:30:00Z"));
    let tracker = Tracker::builder()
        .retention(Duration::from_secs(days * DAY))
        .clock(Arc::new(clock))
        .build()
        .unwrap();
    for &(visitor, time) in visits {
        tracker
            .record_at(visitor, "https://e.com/", t(time))
            .unwrap();
    }
    tracker
}

/// An RFC 3339 time or a date (`at` takes seconds).
fn t(text: &str) -> Timestamp {
    Timestamp::parse(text, Timestamp::default()).unwrap()
}

/// Each point of `answer` as (from, till, visitors), the times in RFC 3339.
fn point_rows(answer: &SeriesCounts) -> Vec<(String, String, u64)> {
    answer
        .points
        .iter()
        .map(|p| {
            let (from, till) = (p.range.from().to_rfc3339(), p.range.till().to_rfc3339());
            (from, till, p.distinct.visitors)
        })
        .collect()
}

/// A series from a date before the retention keeps its points on that
/// date's grid: a daily series is UTC days, the first cut to start where
/// the retention does. Before, the retention's start (the current hour,
/// 30 days back) became the grid, and every "day" ran 13:00 to 13:00.
#[test]
fn a_series_from_before_the_retention_keeps_the_grid_of_its_from() {
    let tracker = visited_at_noon(
        30,
        &[
            ("a", "2026-10-31T20:00:00Z"),
            ("b", "2026-11-01T05:00:00Z"),
            ("c", "2026-11-15T10:00:00Z"),
        ],
    );
    let (from, till) = (Some(t("2026-10-25")), Some(t("2026-11-30")));
    let day = Duration::from_secs(DAY);
    let page = tracker.series("https://e.com/", from, till, day).unwrap();
    let site = tracker.site_series("e.com", from, till, day).unwrap();
    for answer in [&page, &site] {
        let points = point_rows(answer);
        assert_eq!(points.len(), 30, "{points:?}");
        assert_eq!(
            points[0],
            (
                "2026-10-31T13:00:00Z".into(),
                "2026-11-01T00:00:00Z".into(),
                1
            )
        );
        assert_eq!(
            points[1],
            (
                "2026-11-01T00:00:00Z".into(),
                "2026-11-02T00:00:00Z".into(),
                1
            )
        );
        assert_eq!(points[15].2, 1, "{:?}", points[15]);
        assert!(points[1..].iter().all(|p| p.0.ends_with("T00:00:00Z")));
        assert_eq!(points[29].1, "2026-11-30T00:00:00Z");
        assert_eq!(answer.series.range().from(), t("2026-10-31T13:00:00Z"));
        assert_eq!(answer.series.range().till(), t("2026-11-30T00:00:00Z"));
    }
}

/// With `from` open, a series is the latest steps: its last point ends
/// with the current bucket even when the retention holds less than whole
/// steps (the first point is then cut short). Before, the steps started
/// at the retention's start and the last week ran 4 days into the future.
#[test]
fn an_open_series_ends_with_the_current_bucket_under_a_retention() {
    let tracker = visited_at_noon(
        10,
        &[
            ("a", "2026-11-21T10:00:00Z"),
            ("b", "2026-11-23T14:00:00Z"),
            ("c", "2026-11-30T12:00:00Z"),
        ],
    );
    let week = Duration::from_secs(7 * DAY);
    let page = tracker.series("https://e.com/", None, None, week).unwrap();
    let site = tracker.site_series("e.com", None, None, week).unwrap();
    for answer in [&page, &site] {
        let points = point_rows(answer);
        assert_eq!(
            points,
            [
                (
                    "2026-11-20T13:00:00Z".into(),
                    "2026-11-23T13:00:00Z".into(),
                    1
                ),
                (
                    "2026-11-23T13:00:00Z".into(),
                    "2026-11-30T13:00:00Z".into(),
                    2
                ),
            ]
        );
        assert_eq!(answer.series.range().till(), t("2026-11-30T13:00:00Z"));
        // Asked again from where its grid starts, the same points.
        let again = tracker
            .series(
                "https://e.com/",
                Some(answer.series.grid_from()),
                None,
                week,
            )
            .unwrap();
        assert_eq!(again.series, page.series);
    }
}

/// Retention drops what has left it, and gives the memory back.
#[test]
fn retention_drops_old_pairs_and_their_memory() {
    let (clock, tracker) = with_retention(2);
    let empty = tracker.stats().bytes;
    for v in 0..500 {
        tracker.record(&format!("v{v}"), "/old").unwrap();
        // A returning visitor on two days: a run in the arena.
        tracker.record(&format!("v{v}"), "/kept").unwrap();
    }
    clock.advance(Duration::from_secs(DAY));
    for v in 0..500 {
        tracker.record(&format!("v{v}"), "/kept").unwrap();
    }
    let full = tracker.stats().bytes;
    clock.advance(Duration::from_secs(DAY + 3_600));
    crate::sweep_a_full_pass(&tracker);
    let stats = tracker.stats();
    assert_eq!((stats.pages, stats.pairs), (1, 500), "{stats:?}");
    assert!(stats.bytes < full && stats.bytes > empty, "{stats:?}");
    let kept = tracker.distinct_between("/kept", None, None).unwrap();
    assert_eq!(kept.distinct.visitors, 500);
    clock.advance(Duration::from_secs(DAY));
    crate::sweep_a_full_pass(&tracker);
    assert_eq!(tracker.stats().bytes, empty);
}

/// A page whose visitors came back on five days moves to wide cells; once
/// the retention leaves each of them one bucket, a sweep gives the wide
/// cells' bytes back, and the answers stay exact: on a page a sweep step
/// does whole, and on one larger than a step's slots (8,192).
#[test]
fn retention_gives_back_wide_cells() {
    for visitors in [2_000, 12_000] {
        let (clock, tracker) = with_retention(3);
        for day in 0..5 {
            clock.set(at(START + day * DAY + 10 * 3_600));
            for v in 0..visitors {
                tracker.record(&format!("v{v}"), "/p").unwrap();
            }
        }
        let wide = tracker.stats().bytes;
        assert!(
            wide as f64 > 20.0 * visitors as f64,
            "five buckets a pair in wide cells: {wide} bytes"
        );
        // The retention now holds day 4 only. A step visits a bounded
        // share of a large table: enough steps for a pass over it.
        clock.set(at(START + 7 * DAY + 5 * 3_600));
        for _ in 0..8 {
            tracker.sweep(32);
        }
        let stats = tracker.stats();
        assert_eq!(stats.pairs, visitors);
        // One-word cells hold 8 bytes a slot less (the tracker's fixed
        // bytes and its pooled buffers stay).
        assert!(
            stats.bytes + 8 * visitors <= wide,
            "{visitors} visitors, one bucket a pair, one-word cells: {stats:?} (wide: {wide})"
        );
        let day4 = tracker
            .distinct_between("/p", Some(at(START + 4 * DAY)), Some(at(START + 5 * DAY)))
            .unwrap();
        check_exact(&day4, visitors).unwrap();
    }
}

/// A page past a peak gives back the table the peak needed once the
/// retention drops the peak's day, when more of its pairs stay than a
/// sweep step visits slots (8,192); with visitors returning on two days
/// (a run each in the arena) too.
#[test]
fn retention_gives_back_a_large_pages_table() {
    for returning in [false, true] {
        let (clock, tracker) = with_retention(2);
        let baseline = tracker.stats().bytes;
        clock.set(at(START + 10 * 3_600));
        for v in 0..60_000 {
            tracker.record(&format!("peak{v}"), "/spike").unwrap();
        }
        let steady = 10_000;
        for day in [1, 2].into_iter().take(1 + usize::from(returning)) {
            clock.set(at(START + day * DAY + 10 * 3_600));
            for v in 0..steady {
                tracker.record(&format!("steady{v}"), "/spike").unwrap();
            }
        }
        let peak = tracker.stats().bytes - baseline;
        // The retention now holds from day 0's noon: the peak has left it.
        clock.set(at(START + 2 * DAY + 12 * 3_600));
        // A step visits a bounded share of a large table and the next
        // resumes there: enough steps for two passes over it.
        for _ in 0..40 {
            tracker.sweep(32);
        }
        let stats = tracker.stats();
        assert_eq!(stats.pairs, steady, "returning: {returning}");
        let day1 = tracker
            .distinct_between("/spike", Some(at(START + DAY)), Some(at(START + 2 * DAY)))
            .unwrap();
        check_exact(&day1, steady).unwrap();
        // One-word cells take 12 bytes a slot; a pair that came back on
        // two days adds its run in the arena (a header and four buckets'
        // room). The peak's slots alone were over 100 bytes a pair.
        let held = stats.bytes - baseline;
        let per_pair = if returning { 48 } else { 24 };
        assert!(
            held < per_pair * steady,
            "returning: {returning}: {held} bytes for {steady} pairs (at the peak: {peak})"
        );
    }
}

/// A repeat visit in its bucket allocates nothing, and a visit in a new
/// bucket is reserved in the budget first.
#[test]
fn the_budget_holds_with_returning_visitors() {
    let clock = ManualClock::new(at(START));
    let tracker = Tracker::builder()
        .stripes(2)
        .max_memory(80_000)
        .memory_policy(MemoryPolicy::Reject)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let mut refused = 0;
    for day in 0..60 {
        for v in 0..400 {
            match tracker.record(&format!("v{v}"), &format!("/p{}", v % 5)) {
                Ok(_) => {}
                Err(TrackerError::MemoryFull { .. }) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        clock.advance(Duration::from_secs(DAY));
        let stats = tracker.stats();
        assert!(stats.bytes <= 80_000, "day {day}: {stats:?}");
    }
    assert!(
        refused > 0,
        "60 days of 400 returning visitors outgrow 80 kB"
    );
    let held = tracker.stats().bytes;
    for v in 0..400 {
        let _ = tracker.record(&format!("v{v}"), &format!("/p{}", v % 5));
    }
    assert_eq!(
        tracker.stats().bytes,
        held,
        "repeats in the bucket allocate nothing"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// Under the sketch policy with a small budget, big pages become
    /// sketches: their range answers are estimates within 5 standard
    /// errors of the model's count over the range they cover, and say so.
    #[test]
    fn sketched_answers_are_estimates_within_five_errors(
        seed in 0u64..1_000,
        days in 2u64..6,
    ) {
        let clock = ManualClock::new(at(START + days * DAY));
        let tracker = Tracker::builder()
            .stripes(2)
            .max_memory(150_000)
            .memory_policy(MemoryPolicy::Sketch)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        // Visitor `i·m mod 20k` at a time spread evenly over the days, with
        // `m` prime to 20k so that the page has 20k visitors and is
        // sketched (`seed | 1` let seed 624 make a page of 32).
        let m = seed * 10 + 1;
        for i in 0..30_000u64 {
            let id = format!("v{}-{}", seed, i.wrapping_mul(m) % 20_000);
            let t = START + (i * days * DAY) / 30_000;
            tracker.record_at(&id, PAGES[0].0, at(t)).unwrap();
        }
        let ids = |from: u64, till: u64| -> u64 {
            (0..30_000u64)
                .filter(|i| {
                    let t = START + (i * days * DAY) / 30_000;
                    from <= t && t < till
                })
                .map(|i| i.wrapping_mul(m) % 20_000)
                .collect::<BTreeSet<u64>>()
                .len() as u64
        };
        let from = at(START + DAY);
        let answer = tracker.distinct_between(PAGES[0].0, Some(from), None).unwrap();
        let covered = (answer.range.from().as_millis() / 1000, answer.range.till().as_millis() / 1000);
        let truth = ids(covered.0, covered.1) as f64;
        prop_assert!(!answer.distinct.exact, "{answer:?}");
        let error = answer.distinct.relative_error.unwrap();
        prop_assert!(
            (answer.distinct.visitors as f64 - truth).abs() <= 5.0 * error * truth,
            "{answer:?} truth {truth}"
        );
        // A sketched page answers whole UTC days: `from` is one already.
        prop_assert_eq!(answer.range.from(), from);
        let site = tracker.site_distinct_between("a.com", Some(from), None).unwrap();
        prop_assert!(!site.distinct.exact);
        prop_assert!((site.distinct.visitors as f64 - truth).abs() <= 5.0 * error * truth);
        // Day by day, each point within its own error.
        let daily = tracker
            .series(PAGES[0].0, Some(at(START)), Some(at(START + days * DAY)), Duration::from_secs(DAY))
            .unwrap();
        prop_assert_eq!(daily.points.len() as u64, days);
        for point in &daily.points {
            let (a, b) = (point.range.from().as_millis() / 1000, point.range.till().as_millis() / 1000);
            prop_assert_eq!(b - a, DAY);
            let truth = ids(a, b) as f64;
            let d = point.distinct;
            prop_assert!(!d.exact && (d.visitors as f64 - truth).abs() <= 5.0 * d.relative_error.unwrap() * truth, "{point:?} {truth}");
        }
        // A snapshot keeps the history: the same answers after a restore.
        let mut payload = Vec::new();
        tracker.write_snapshot(&mut payload).unwrap();
        let restored = Tracker::restore_snapshot(
            &payload,
            Tracker::builder()
                .stripes(2)
                .max_memory(150_000)
                .memory_policy(MemoryPolicy::Sketch)
                .clock(Arc::new(clock.clone())),
        )
        .unwrap();
        prop_assert_eq!(
            restored.distinct_between(PAGES[0].0, Some(from), None).unwrap(),
            answer
        );
    }
}

/// Under pressure, once the big pages are sketches, their oldest days
/// merge (coarser in time, lossless in count) before pages are evicted:
/// a range on an old day then covers the merged days, still within its
/// error.
#[test]
fn pressure_merges_the_oldest_days_before_evicting() {
    let clock = ManualClock::new(at(START));
    let tracker = Tracker::builder()
        .stripes(1)
        .max_memory(120_000)
        .memory_policy(MemoryPolicy::Sketch)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    // A big page, 2,000 visitors a day for 20 days: sketched, with 20
    // sketched days (1.1 kB each).
    for day in 0..20u64 {
        for v in 0..2_000u64 {
            tracker
                .record(&format!("d{day}-v{v}"), "https://big.com/")
                .unwrap();
        }
        clock.advance(Duration::from_secs(DAY));
    }
    let first_day = tracker
        .distinct_between("https://big.com/", Some(at(START)), Some(at(START + DAY)))
        .unwrap();
    assert!(!first_day.distinct.exact, "{first_day:?}");
    // Then small pages until pressure has merged the first day away
    // (bounded: the merges come before any eviction).
    let day_range = || {
        tracker
            .distinct_between("https://big.com/", Some(at(START)), Some(at(START + DAY)))
            .unwrap()
    };
    let mut first_day = day_range();
    for p in 0..5_000u64 {
        for v in 0..2 {
            tracker.record(&format!("s{v}"), &format!("/p{p}")).unwrap();
        }
        first_day = day_range();
        if first_day.range.till() > at(START + DAY) {
            break;
        }
    }
    let stats = tracker.stats();
    assert!(stats.bytes <= 120_000, "{stats:?}");
    assert_eq!(stats.evictions, 0, "merging comes first: {stats:?}");
    let covered = (first_day.range.till().as_millis() - first_day.range.from().as_millis()) / 1000;
    assert!(covered > DAY, "the first days merged: {first_day:?}");
    let truth = (covered / DAY * 2_000) as f64;
    let error = first_day.distinct.relative_error.unwrap();
    assert!(
        (first_day.distinct.visitors as f64 - truth).abs() <= 5.0 * error * truth,
        "{first_day:?} truth {truth}"
    );
    // All time is still the whole page.
    let all = tracker.distinct("https://big.com/").unwrap();
    assert!(
        (all.visitors as f64 - 40_000.0).abs() <= 5.0 * 0.0073 * 40_000.0,
        "{all:?}"
    );
}

/// Times past the last one held (2106), made in code rather than parsed:
/// a range ends at the last time held instead of overflowing, a `from`
/// past it counts nothing instead of wrapping round to 1970, and a clock
/// in the last bucket a `u32` holds, with a retention, still answers.
#[test]
fn times_past_the_last_one_held_end_ranges_there() {
    let url = PAGES[0].0;
    let tracker = Tracker::new();
    tracker.record("v", url).unwrap();
    let latest = Timestamp::from_secs(u64::from(u32::MAX));
    let answer = tracker
        .distinct_between(url, None, Timestamp::from_millis(u64::MAX))
        .unwrap();
    assert_eq!(answer.distinct.visitors, 1);
    assert!(answer.range.till() > latest);
    assert!(answer.range.till().as_millis() - latest.as_millis() <= 3_600_000);
    // Bucket 2^32 of an hour once became bucket 0.
    let far = Timestamp::from_secs((1 << 32) * 3_600);
    let answer = tracker.distinct_between(url, far, None).unwrap();
    assert!(answer.range.is_empty(), "{:?}", answer.range);
    assert_eq!(answer.distinct.visitors, 0);
    let series = tracker
        .series(
            url,
            Timestamp::from_secs(u64::from(u32::MAX) - 7_200),
            Timestamp::from_millis(u64::MAX),
            Duration::from_secs(3_600),
        )
        .unwrap();
    assert_eq!(series.points.len(), 3);
    // The clock in the last minute bucket a u32 holds.
    let clock = ManualClock::new(Timestamp::from_secs(u64::from(u32::MAX) * 60 + 5));
    let tracker = Tracker::builder()
        .bucket(Duration::from_secs(60))
        .retention(Duration::from_secs(3_600))
        .clock(Arc::new(clock))
        .build()
        .unwrap();
    let _ = tracker.record("v", url);
    let answer = tracker.distinct_between(url, None, None).unwrap();
    assert!(answer.range.till() > latest);
}
