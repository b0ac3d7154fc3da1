//! `DurableTracker` and `Tracker` batches against the same events recorded
//! one by one: the same outcome per event and the same counts, in any
//! order, with invalid events mixed in, under every memory policy.

use proptest::prelude::*;
use tracker_core::persist::{DurableBatch, DurableTracker, LogOptions};
use tracker_core::{MemoryPolicy, RecordBatch, Tracker, TrackerBuilder};

const PAGES: usize = 5;

fn builder(policy: MemoryPolicy, budget: Option<u64>) -> TrackerBuilder {
    striped(policy, budget, 2)
}

fn striped(policy: MemoryPolicy, budget: Option<u64>, stripes: usize) -> TrackerBuilder {
    let builder = Tracker::builder()
        .hash_key(7)
        .stripes(stripes)
        .memory_policy(policy);
    match budget {
        Some(bytes) => builder.max_memory(bytes),
        None => builder,
    }
}

/// An event: mostly valid, sometimes an empty visitor or URL, a URL
/// longer than any tracker accepts, or a page's URL not in canonical form
/// (the batch's locked pass misses it under that form).
fn event() -> impl Strategy<Value = (String, String)> {
    let visitor = prop_oneof![
        8 => (0..40u32).prop_map(|v| format!("v{v}")),
        1 => Just(String::new()),
    ];
    let url = prop_oneof![
        8 => (0..PAGES).prop_map(|p| format!("https://example.com/{p}")),
        1 => (0..PAGES).prop_map(|p| format!("HTTPS://Example.COM/{p}")),
        1 => Just(String::new()),
        1 => Just(format!("https://example.com/{}", "x".repeat(5_000))),
    ];
    (visitor, url)
}

fn policy() -> impl Strategy<Value = MemoryPolicy> {
    prop_oneof![
        Just(MemoryPolicy::Sketch),
        Just(MemoryPolicy::Evict),
        Just(MemoryPolicy::Reject),
    ]
}

/// Every page's count, and the tracker's page and sketch counts.
fn counts(tracker: &Tracker) -> (Vec<u64>, u64, u64) {
    let pages = (0..PAGES)
        .map(|p| {
            tracker
                .distinct(&format!("https://example.com/{p}"))
                .unwrap()
                .visitors
        })
        .collect();
    let stats = tracker.stats();
    (pages, stats.pages, stats.sketched_pages)
}

/// Records `events` as one batch into a fresh durable tracker; returns
/// each event's acceptance and the counts. Without a budget (where replay
/// must rebuild exactly the same state) it also checks them after a
/// reopen, so that the log write is checked too.
fn batched(
    events: &[(String, String)],
    budget: Option<u64>,
    builder: impl Fn() -> TrackerBuilder,
) -> (Vec<bool>, (Vec<u64>, u64, u64)) {
    let dir = tempfile::tempdir().unwrap();
    let (durable, _) = DurableTracker::open(dir.path(), builder(), LogOptions::default()).unwrap();
    let mut batch = DurableBatch::default();
    durable
        .record_batch(
            events.iter().map(|(v, u)| (v.as_str(), u.as_str())),
            &mut batch,
        )
        .unwrap();
    let accepted = batch.outcomes().iter().map(Result::is_ok).collect();
    let live = counts(durable.tracker());
    drop(durable);
    if budget.is_none() {
        let (reopened, _) =
            DurableTracker::open(dir.path(), builder(), LogOptions::default()).unwrap();
        assert_eq!(live, counts(reopened.tracker()), "the log holds the batch");
    }
    (accepted, live)
}

fn one_by_one(
    events: &[(String, String)],
    builder: TrackerBuilder,
) -> (Vec<bool>, (Vec<u64>, u64, u64)) {
    let tracker = builder.build().unwrap();
    let accepted = events
        .iter()
        .map(|(v, u)| tracker.record(v, u).is_ok())
        .collect();
    (accepted, counts(&tracker))
}

/// Records `events` into a fresh tracker with `Tracker::record_batch`, in
/// batches of `chunk` events (so that later batches find their pages
/// stored and take the per-stripe path); returns each event's acceptance,
/// how many were new, and the counts.
fn tracker_batched(
    events: &[(String, String)],
    chunk: usize,
    builder: TrackerBuilder,
) -> (Vec<bool>, usize, (Vec<u64>, u64, u64)) {
    let tracker = builder.build().unwrap();
    let mut batch = RecordBatch::default();
    let mut accepted = Vec::new();
    let mut new = 0;
    for events in events.chunks(chunk) {
        let refs: Vec<(&str, &str)> = events
            .iter()
            .map(|(v, u)| (v.as_str(), u.as_str()))
            .collect();
        tracker.record_batch(&refs, &mut batch);
        assert_eq!(batch.outcomes().len(), refs.len());
        accepted.extend(batch.outcomes().iter().map(Result::is_ok));
        new += batch
            .outcomes()
            .iter()
            .filter(|o| o.as_ref().is_ok_and(|r| r.is_new()))
            .count();
    }
    (accepted, new, counts(&tracker))
}

/// How many events recorded one by one were new.
fn new_one_by_one(events: &[(String, String)], builder: TrackerBuilder) -> usize {
    let tracker = builder.build().unwrap();
    events
        .iter()
        .filter(|(v, u)| tracker.record(v, u).is_ok_and(|r| r.is_new()))
        .count()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Same order, a budget small enough to matter: the batch does exactly
    /// what the loop does, event by event, under every policy.
    #[test]
    fn a_batch_is_the_loop_under_every_policy(
        events in prop::collection::vec(event(), 0..200),
        policy in policy(),
        budget in prop_oneof![Just(None), (40_000u64..80_000).prop_map(Some)],
    ) {
        let (batch_ok, batch_counts) = batched(&events, budget, || builder(policy, budget));
        let (loop_ok, loop_counts) = one_by_one(&events, builder(policy, budget));
        prop_assert_eq!(&batch_ok, &loop_ok);
        prop_assert_eq!(&batch_counts, &loop_counts);
    }

    /// `Tracker::record_batch` in batches of any size, same order: the
    /// same refusals, as many new pairs, the same counts as the loop,
    /// under every policy, with and without a budget.
    #[test]
    fn tracker_batches_are_the_loop_under_every_policy(
        events in prop::collection::vec(event(), 0..200),
        chunk in 1usize..64,
        policy in policy(),
        budget in prop_oneof![Just(None), (40_000u64..80_000).prop_map(Some)],
        stripes in prop_oneof![Just(1usize), Just(2), Just(16)],
    ) {
        // The stripe count changes how the batch groups its events (its
        // sort key is stripe bits, then URL hash bits); counts must not.
        let (batch_ok, batch_new, batch_counts) =
            tracker_batched(&events, chunk, striped(policy, budget, stripes));
        let (loop_ok, loop_counts) = one_by_one(&events, builder(policy, budget));
        prop_assert_eq!(batch_ok, loop_ok);
        prop_assert_eq!(batch_new, new_one_by_one(&events, builder(policy, budget)));
        prop_assert_eq!(batch_counts, loop_counts);
    }

    /// Pages already stored under their canonical URLs, so that every
    /// valid event takes the per-stripe pass: each event's outcome, `New`
    /// or `Duplicate` or its error, is exactly the loop's, in batches of
    /// any size over any stripe count, while a page's run of events grows
    /// its table several times (up to 300 visitors) with refused events
    /// between them.
    #[test]
    fn a_stored_page_run_is_the_loop_event_by_event(
        events in prop::collection::vec(
            (
                prop_oneof![
                    12 => (0..300u32).prop_map(|v| format!("v{v}")),
                    1 => Just(String::new()),
                ],
                prop_oneof![
                    12 => (0..PAGES).prop_map(|p| format!("https://example.com/{p}")),
                    1 => Just(String::new()),
                ],
            ),
            0..600,
        ),
        chunk in 1usize..700,
        stripes in prop_oneof![Just(1usize), Just(2), Just(16)],
    ) {
        let stored = |stripes| {
            let tracker = striped(MemoryPolicy::Sketch, None, stripes).build().unwrap();
            for p in 0..PAGES {
                tracker.record("first", &format!("https://example.com/{p}")).unwrap();
            }
            tracker
        };
        let looped = stored(stripes);
        let expected: Vec<_> = events.iter().map(|(v, u)| looped.record(v, u)).collect();
        let batched = stored(stripes);
        let mut batch = RecordBatch::default();
        let mut outcomes = Vec::new();
        for events in events.chunks(chunk) {
            let refs: Vec<(&str, &str)> =
                events.iter().map(|(v, u)| (v.as_str(), u.as_str())).collect();
            batched.record_batch(&refs, &mut batch);
            outcomes.extend_from_slice(batch.outcomes());
        }
        prop_assert_eq!(outcomes, expected);
        // Not the bytes: the batch grows a stripe's pages in another
        // order, so its buffer pool keeps and hands out other buffers.
        prop_assert_eq!(counts(&batched), counts(&looped));
    }

    /// Any order (no budget pressure, so order cannot matter): the batch
    /// counts what the events recorded one by one in their first order
    /// count, and refuses the same events.
    #[test]
    fn a_batch_in_any_order_counts_the_same(
        (events, order) in prop::collection::vec(event(), 0..200).prop_flat_map(|events| {
            let n = events.len();
            (Just(events), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
        }),
        policy in policy(),
    ) {
        let shuffled: Vec<(String, String)> = order.iter().map(|&i| events[i].clone()).collect();
        let (batch_ok, batch_counts) = batched(&shuffled, None, || builder(policy, None));
        let (loop_ok, loop_counts) = one_by_one(&events, builder(policy, None));
        let loop_ok_shuffled: Vec<bool> = order.iter().map(|&i| loop_ok[i]).collect();
        prop_assert_eq!(&batch_ok, &loop_ok_shuffled);
        prop_assert_eq!(&batch_counts, &loop_counts);
        let (tracker_ok, _, tracker_counts) =
            tracker_batched(&shuffled, shuffled.len().max(1) / 2 + 1, builder(policy, None));
        prop_assert_eq!(tracker_ok, loop_ok_shuffled);
        prop_assert_eq!(tracker_counts, loop_counts);
    }
}
