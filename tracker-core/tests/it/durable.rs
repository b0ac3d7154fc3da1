//! The tracker's side of durability: its state as a snapshot payload, and
//! `DurableTracker` recovery (snapshot + log replay).

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::sync::Arc;
use std::time::Duration;
use tracker_core::persist::{
    DurableError, DurableTracker, LogOptions, SnapshotError, TRACKER_PAYLOAD_VERSION,
};
use tracker_core::{ManualClock, MemoryPolicy, QueryPolicy, Timestamp, Tracker, TrackerBuilder};

const START: u64 = 1_700_000_000_000;

fn snapshot_of(tracker: &Tracker) -> Vec<u8> {
    let mut payload = Vec::new();
    tracker.write_snapshot(&mut payload).unwrap();
    payload
}

/// distinct() of every page and the whole top() agree.
fn assert_same(a: &Tracker, b: &Tracker) {
    let top_a = a.top(usize::MAX);
    assert_eq!(top_a, b.top(usize::MAX));
    for row in &top_a {
        assert_eq!(a.distinct(&row.url).unwrap(), b.distinct(&row.url).unwrap());
    }
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.pages, sa.sketched_pages), (sb.pages, sb.sketched_pages));
}

/// Pages with 1, 2 (inline), 50 (table) and `large` visitors, the last
/// ones sketched under a small budget.
fn fill(tracker: &Tracker, clock: Option<&ManualClock>, large: u32) {
    for (page, visitors) in [(0, 1), (1, 2), (2, 50), (3, large), (4, large)] {
        for v in 0..visitors {
            tracker
                .record(&format!("v{v}"), &format!("https://example.com/{page}"))
                .unwrap();
            if let Some(clock) = clock
                && v % 500 == 0
            {
                clock.advance(Duration::from_secs(3));
            }
        }
    }
}

#[test]
fn inline_and_table_sets_round_trip() {
    let tracker = Tracker::builder()
        .hash_key(1)
        .query_policy(QueryPolicy::Allow(vec!["id".into()]))
        .max_url_len(500)
        .build()
        .unwrap();
    fill(&tracker, None, 3_000);
    let restored = Tracker::restore_snapshot(
        &snapshot_of(&tracker),
        Tracker::builder()
            .query_policy(QueryPolicy::Allow(vec!["id".into()]))
            .max_url_len(500),
    )
    .unwrap();
    assert_same(&tracker, &restored);
    assert!(restored.distinct("https://example.com/3").unwrap().exact);
    // The key came from the snapshot: a visitor seen before is a duplicate.
    assert!(
        !restored
            .record("v1", "https://example.com/1")
            .unwrap()
            .is_new()
    );
    assert_eq!(restored.stats().pairs, tracker.stats().pairs);
}

#[test]
fn sketches_round_trip() {
    let tracker = Tracker::builder()
        .hash_key(2)
        .stripes(2)
        .max_memory(60_000)
        .memory_policy(MemoryPolicy::Sketch)
        .build()
        .unwrap();
    fill(&tracker, None, 3_000);
    assert!(tracker.stats().sketched_pages > 0);
    let restored = Tracker::restore_snapshot(
        &snapshot_of(&tracker),
        Tracker::builder().stripes(2).max_memory(60_000),
    )
    .unwrap();
    assert_same(&tracker, &restored);
    assert!(restored.top(1)[0].distinct.relative_error.is_some());
}

#[test]
fn timed_sets_and_timed_sketches_round_trip() {
    let clock = ManualClock::new(Timestamp::from_millis(START));
    let builder = || {
        Tracker::builder()
            .stripes(2)
            .ttl(Duration::from_secs(600))
            .max_memory(300_000)
            .clock(Arc::new(clock.clone()))
    };
    let tracker = builder().hash_key(3).build().unwrap();
    fill(&tracker, Some(&clock), 12_000);
    let stats = tracker.stats();
    assert!(
        stats.sketched_pages > 0 && stats.pages > stats.sketched_pages,
        "{stats:?}"
    );
    let restored = Tracker::restore_snapshot(&snapshot_of(&tracker), builder()).unwrap();
    assert_same(&tracker, &restored);
    // Expiry continues from the restored ticks.
    clock.advance(Duration::from_secs(590));
    assert_same(&tracker, &restored);
    clock.advance(Duration::from_secs(700));
    assert!(restored.top(10).is_empty());
}

#[test]
fn a_smaller_budget_is_a_typed_error() {
    let tracker = Tracker::builder().hash_key(4).stripes(1).build().unwrap();
    fill(&tracker, None, 3_000);
    let err = Tracker::restore_snapshot(
        &snapshot_of(&tracker),
        Tracker::builder().stripes(1).max_memory(20_000),
    )
    .unwrap_err();
    assert!(
        matches!(err, SnapshotError::MemoryFull { limit: 20_000, .. }),
        "{err:?}"
    );
}

#[test]
fn bucketing_comes_back_with_the_state() {
    let days = |n: u64| Duration::from_secs(n * 86_400);
    let builder = || {
        Tracker::builder()
            .hash_key(7)
            .bucket(Duration::from_secs(15 * 60))
            .retention(days(30))
    };
    let tracker = builder().build().unwrap();
    tracker.record("v", "https://example.com/").unwrap();
    let payload = snapshot_of(&tracker);
    // The series point limit is a query limit, not data: it may change.
    let restored = Tracker::restore_snapshot(&payload, builder().max_points(10)).unwrap();
    let bucketing = restored.config().bucketing;
    assert_eq!(bucketing.width(), Duration::from_secs(900));
    assert_eq!(bucketing.retention(), Some(days(30)));
    assert_eq!(bucketing.point_limit(), 10);
    assert_eq!(
        restored.distinct("https://example.com/").unwrap().visitors,
        1
    );
}

#[test]
fn conflicting_settings_and_versions_are_refused() {
    let tracker = Tracker::builder().hash_key(5).build().unwrap();
    tracker.record("v", "https://example.com/").unwrap();
    let payload = snapshot_of(&tracker);
    let mismatch = |builder: TrackerBuilder| match Tracker::restore_snapshot(&payload, builder) {
        Err(SnapshotError::ConfigMismatch { setting, .. }) => setting,
        other => panic!("{other:?}"),
    };
    assert_eq!(mismatch(Tracker::builder().hash_key(6)), "hash_key");
    assert_eq!(
        mismatch(Tracker::builder().max_visitor_len(8)),
        "max_visitor_len"
    );
    assert_eq!(
        mismatch(Tracker::builder().query_policy(QueryPolicy::Strip)),
        "query"
    );
    assert_eq!(
        mismatch(Tracker::builder().ttl(Duration::from_secs(9))),
        "ttl"
    );
    // A pair's bucket is an index of the width it was written with.
    assert_eq!(
        mismatch(Tracker::builder().bucket(Duration::from_secs(60))),
        "bucket"
    );
    assert_eq!(
        mismatch(Tracker::builder().retention(Duration::from_secs(86_400))),
        "retention"
    );

    let mut newer = payload.clone();
    newer[8..12].copy_from_slice(&(TRACKER_PAYLOAD_VERSION + 1).to_le_bytes());
    assert_eq!(
        Tracker::restore_snapshot(&newer, Tracker::builder()).unwrap_err(),
        SnapshotError::UnsupportedVersion {
            found: TRACKER_PAYLOAD_VERSION + 1,
            supported: TRACKER_PAYLOAD_VERSION
        }
    );
    assert_eq!(
        Tracker::restore_snapshot(b"NOTSTATE....", Tracker::builder()).unwrap_err(),
        SnapshotError::BadMagic
    );
}

/// Dropped query parameters and trailing-slash folding are not kept in a
/// snapshot; a page key they would now spell otherwise is refused, and
/// the refusal says which settings to look at, not only "not canonical"
/// (which reads as a damaged file).
#[test]
fn changed_url_rules_are_named_in_the_refusal() {
    let tracker = Tracker::builder().build().unwrap();
    tracker.record("v", "https://example.com/docs/").unwrap();
    tracker.record("v", "https://example.com/p?ref=1").unwrap();
    let payload = snapshot_of(&tracker);
    for builder in [
        Tracker::builder().fold_trailing_slash(true),
        Tracker::builder().drop_params(vec!["ref".into()]),
    ] {
        let err = Tracker::restore_snapshot(&payload, builder).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, SnapshotError::Invalid { .. }), "{err:?}");
        assert!(
            text.contains("not canonical") && text.contains("URL settings given"),
            "{text}"
        );
    }
}

fn small_payloads() -> Vec<Vec<u8>> {
    let clock = ManualClock::new(Timestamp::from_millis(START));
    let plain = Tracker::builder().hash_key(7).stripes(1).build().unwrap();
    let timed = Tracker::builder()
        .hash_key(7)
        .stripes(1)
        .ttl(Duration::from_secs(60))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let sketched = Tracker::builder()
        .hash_key(7)
        .stripes(1)
        .max_memory(30_000)
        .build()
        .unwrap();
    for i in 0..40 {
        plain
            .record(&format!("v{i}"), &format!("/p{}", i % 3))
            .unwrap();
        timed
            .record(&format!("v{i}"), &format!("/p{}", i % 3))
            .unwrap();
    }
    for i in 0..2_000 {
        sketched.record(&format!("v{i}"), "/big").unwrap();
    }
    vec![
        snapshot_of(&plain),
        snapshot_of(&timed),
        snapshot_of(&sketched),
    ]
}

fn restore_any(bytes: &[u8]) {
    let clock = ManualClock::new(Timestamp::from_millis(START));
    // Whatever the bytes: a tracker or a typed error, never a panic.
    let _ = Tracker::restore_snapshot(bytes, Tracker::builder().stripes(1));
    let _ = Tracker::restore_snapshot(
        bytes,
        Tracker::builder()
            .stripes(1)
            .ttl(Duration::from_secs(60))
            .clock(Arc::new(clock)),
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        restore_any(&bytes);
        let mut framed = b"TRKSTATE".to_vec();
        framed.extend_from_slice(&TRACKER_PAYLOAD_VERSION.to_le_bytes());
        framed.extend_from_slice(&bytes);
        restore_any(&framed);
    }

    #[test]
    fn truncations_are_typed_errors(which in 0usize..3, cut in any::<prop::sample::Index>()) {
        let payload = &small_payloads()[which];
        let cut = cut.index(payload.len());
        let clock = ManualClock::new(Timestamp::from_millis(START));
        let builder = Tracker::builder().stripes(1).max_memory(30_000);
        let builder = if which == 1 {
            Tracker::builder().stripes(1).ttl(Duration::from_secs(60)).clock(Arc::new(clock))
        } else {
            builder
        };
        prop_assert!(Tracker::restore_snapshot(&payload[..cut], builder).is_err());
    }

    #[test]
    fn flipped_bytes_never_panic(which in 0usize..3, at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut payload = small_payloads()[which].clone();
        let at = at.index(payload.len());
        payload[at] ^= 1 << bit;
        restore_any(&payload);
    }
}

fn open(
    dir: &std::path::Path,
    builder: TrackerBuilder,
) -> (DurableTracker, tracker_core::persist::RecoveryReport) {
    DurableTracker::open(dir, builder, LogOptions::default()).unwrap()
}

#[test]
fn recovery_equals_the_model_of_acknowledged_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut model: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || test_support::xorshift(&mut rng);
    for round in 0..4 {
        let (durable, report) = open(dir.path(), Tracker::builder().stripes(2));
        assert!(report.log.torn_tail.is_none());
        assert_eq!(report.refused, 0);
        if round > 0 {
            assert!(report.snapshot.is_some());
        }
        for i in 0..600 {
            let (v, p) = (next() % 200, next() % 17);
            let url = format!("https://Example.com/{p}#frag");
            durable.record(&format!("v{v}"), &url).unwrap();
            model
                .entry(format!("https://example.com/{p}"))
                .or_default()
                .insert(format!("v{v}"));
            if i == 300 && round % 2 == 0 {
                durable.snapshot().unwrap();
            }
        }
        drop(durable); // as a crash would: no final snapshot
    }
    let (durable, _) = open(dir.path(), Tracker::builder());
    for (url, visitors) in &model {
        let got = durable.tracker().distinct(url).unwrap();
        assert_eq!(got.visitors, visitors.len() as u64, "{url}");
    }
    assert_eq!(durable.tracker().stats().pages, model.len() as u64);
}

#[test]
fn a_torn_log_tail_is_reported_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (durable, _) = open(dir.path(), Tracker::builder());
    for v in 0..10 {
        durable
            .record(&format!("v{v}"), "https://example.com/")
            .unwrap();
    }
    drop(durable);
    let mut segments: Vec<_> = fs::read_dir(dir.path().join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    let last = segments.last().unwrap();
    let len = fs::metadata(last).unwrap().len();
    // Cut the last record in half: a write torn by a crash.
    fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let (durable, report) = open(dir.path(), Tracker::builder());
    let torn = report.log.torn_tail.expect("the torn tail is reported");
    assert!(torn.bytes > 0);
    assert_eq!(report.replayed, 9);
    assert_eq!(
        durable
            .tracker()
            .distinct("https://example.com/")
            .unwrap()
            .visitors,
        9
    );
}

#[test]
fn another_hash_key_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (durable, _) = open(dir.path(), Tracker::builder().hash_key(11));
    durable.record("v", "https://example.com/").unwrap();
    drop(durable);
    let err = DurableTracker::open(
        dir.path(),
        Tracker::builder().hash_key(12),
        LogOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DurableError::Snapshot(SnapshotError::ConfigMismatch {
                setting: "hash_key",
                ..
            })
        ),
        "{err:?}"
    );
    // Without an explicit key the snapshot's is used.
    let (durable, _) = open(dir.path(), Tracker::builder());
    assert_eq!(durable.tracker().config().hash_key, 11);
    assert!(
        !durable
            .record("v", "https://example.com/")
            .unwrap()
            .is_new()
    );
}

/// A snapshot copied in from another data directory is newer than this
/// one's (or not) and holds another deployment's state and hash key:
/// restoring it and replaying this log into it (or deleting the log as
/// covered) would be silent garbage. Open refuses, naming both files.
#[test]
fn a_snapshot_from_another_data_directory_is_refused() {
    for foreign_events in [40, 2] {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (durable, _) = open(a.path(), Tracker::builder());
        for i in 0..5 {
            durable
                .record(&format!("a{i}"), "https://a.example/")
                .unwrap();
        }
        drop(durable);
        let (other, _) = open(b.path(), Tracker::builder());
        for i in 0..foreign_events {
            other
                .record(&format!("b{i}"), "https://b.example/")
                .unwrap();
        }
        let foreign = other.snapshot().unwrap().path;
        drop(other);
        let copied = a
            .path()
            .join("snapshots")
            .join(foreign.file_name().unwrap());
        fs::copy(&foreign, &copied).unwrap();

        let err =
            DurableTracker::open(a.path(), Tracker::builder(), LogOptions::default()).unwrap_err();
        assert!(
            matches!(err, DurableError::ForeignSnapshot { ref newest, .. } if *newest == copied),
            "{foreign_events}: {err:?}"
        );
        assert!(err.to_string().contains("another"), "{err}");
        // Removing the stranger, the directory opens with all it held.
        fs::remove_file(&copied).unwrap();
        let (durable, _) = open(a.path(), Tracker::builder());
        let count = durable.tracker().distinct("https://a.example/").unwrap();
        assert_eq!(count.visitors, 5);
    }
}

#[test]
fn a_log_without_its_snapshot_needs_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (durable, _) = open(dir.path(), Tracker::builder());
    durable.record("v", "https://example.com/").unwrap();
    drop(durable);
    fs::remove_dir_all(dir.path().join("snapshots")).unwrap();
    let err =
        DurableTracker::open(dir.path(), Tracker::builder(), LogOptions::default()).unwrap_err();
    assert!(matches!(err, DurableError::UnknownHashKey), "{err:?}");
}

#[test]
fn replay_with_a_ttl_counts_old_events_as_stale() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(START));
    let builder = || {
        Tracker::builder()
            .ttl(Duration::from_secs(100))
            .clock(Arc::new(clock.clone()))
    };
    let (durable, _) = open(dir.path(), builder());
    durable.record("old", "https://example.com/").unwrap();
    clock.advance(Duration::from_secs(60));
    durable.record("new", "https://example.com/").unwrap();
    drop(durable);
    clock.advance(Duration::from_secs(60));
    let (durable, report) = open(dir.path(), builder());
    assert_eq!(report.replayed, 2);
    assert_eq!(durable.tracker().stats().stale_events, 1);
    assert_eq!(
        durable
            .tracker()
            .distinct("https://example.com/")
            .unwrap()
            .visitors,
        1
    );
}

/// An event's own time is what the log keeps: replayed after a restart,
/// a visit back-filled to long ago has expired while one of now has not.
#[test]
fn the_log_keeps_each_events_own_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(START));
    let builder = || {
        Tracker::builder()
            .ttl(Duration::from_secs(100))
            .clock(Arc::new(clock.clone()))
    };
    let url = "https://example.com/";
    let earlier = Some(Timestamp::from_millis(START - 60_000));
    let (durable, _) = open(dir.path(), builder());
    durable
        .submit_at("old", url, earlier)
        .unwrap()
        .durable
        .wait()
        .unwrap();
    let mut batch = tracker_core::persist::DurableBatch::default();
    let events = [("old-too", url, earlier), ("new", url, None)];
    durable.submit_batch_at(events, &mut batch).wait().unwrap();
    assert_eq!(batch.accepted(), 2);
    assert_eq!(durable.tracker().distinct(url).unwrap().visitors, 3);
    drop(durable);
    clock.advance(Duration::from_secs(50));
    let (durable, report) = open(dir.path(), builder());
    assert_eq!(report.replayed, 3);
    assert_eq!(durable.tracker().distinct(url).unwrap().visitors, 1);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = open(dir.path(), Tracker::builder());
    first.record("alice", "https://example.com/").unwrap();
    let err =
        DurableTracker::open(dir.path(), Tracker::builder(), LogOptions::default()).unwrap_err();
    assert!(matches!(err, DurableError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    // Nothing of the first was disturbed by the refused open.
    first.record("bob", "https://example.com/").unwrap();
    drop(first);
    let (again, report) = open(dir.path(), Tracker::builder());
    assert_eq!(report.replayed, 2);
    assert_eq!(
        again
            .tracker()
            .distinct("https://example.com/")
            .unwrap()
            .visitors,
        2
    );
}

#[test]
fn status_follows_the_log_and_the_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let (durable, _) = open(dir.path(), Tracker::builder());
    let fresh = durable.status();
    assert_eq!(fresh.dir, dir.path());
    assert_eq!((fresh.snapshots_written, fresh.snapshot_failures), (1, 0));
    assert_eq!(fresh.log_bytes_since_snapshot, 0);
    for i in 0..10 {
        durable
            .record(&format!("v{i}"), "https://example.com/")
            .unwrap();
    }
    let logged = durable.status();
    assert!(logged.log_bytes_since_snapshot >= 10 * 16, "{logged:?}");
    assert_eq!(logged.log_end, durable.log().end());
    durable.snapshot().unwrap();
    let after = durable.status();
    assert_eq!(after.log_bytes_since_snapshot, 0);
    assert_eq!(after.snapshots_written, 2);
    let last = after.last_snapshot.unwrap();
    assert!(last.payload_bytes > 0 && last.covers > logged.last_snapshot.unwrap().covers);
    drop(durable);

    // A reopened tracker reports the snapshot it loaded.
    let (reopened, _) = open(dir.path(), Tracker::builder());
    let status = reopened.status();
    assert_eq!(status.snapshots_written, 0);
    assert_eq!(status.last_snapshot.unwrap().covers, last.covers);
    assert_eq!(status.log_bytes_since_snapshot, 0);
}

#[test]
fn the_snapshotter_bounds_the_log_by_size_and_stays_quiet_when_idle() {
    use tracker_core::persist::SnapshotSchedule;
    let dir = tempfile::tempdir().unwrap();
    let (durable, _) = open(dir.path(), Tracker::builder());
    let durable = Arc::new(durable);
    let outcomes = Arc::new(std::sync::Mutex::new(Vec::new()));
    // Time alone would never trigger in this test: only the size does.
    let schedule = SnapshotSchedule::default()
        .every(Duration::from_secs(3600))
        .log_bytes(4096);
    let snapshotter = durable.spawn_snapshotter(schedule, {
        let outcomes = outcomes.clone();
        move |result| outcomes.lock().unwrap().push(result.is_ok())
    });
    for i in 0..200 {
        durable
            .record(&format!("v{i}"), "https://example.com/")
            .unwrap();
    }
    // Done when a snapshot brought the log below the size and its outcome
    // was reported (the report comes after the snapshot, on the thread).
    test_support::poll::until(Duration::from_secs(20), "a snapshot by size", || {
        durable.status().log_bytes_since_snapshot < 4096 && !outcomes.lock().unwrap().is_empty()
    });
    let taken = outcomes.lock().unwrap().len();
    assert!(outcomes.lock().unwrap().iter().all(|ok| *ok));
    // Idle: nothing new logged, so no snapshot however long we wait. (A
    // window in which nothing may happen cannot be awaited; it spans two
    // of the thread's one-second checks.)
    std::thread::sleep(Duration::from_millis(2500));
    let idle = outcomes.lock().unwrap().len();
    assert!(
        idle <= taken + 1,
        "at most the snapshot of the tail, then quiet"
    );
    drop(snapshotter);
    assert_eq!(Arc::strong_count(&durable), 1, "the thread let go of it");
    drop(durable);
    let (reopened, report) = open(dir.path(), Tracker::builder());
    assert!(report.snapshot.is_some());
    assert_eq!(
        reopened
            .tracker()
            .distinct("https://example.com/")
            .unwrap()
            .visitors,
        200
    );
}

#[test]
fn visitor_ids_never_reach_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (durable, _) = open(dir.path(), Tracker::builder());
    let secret = "visitor-id-only-the-site-knows-7f3a";
    durable.record(secret, "https://example.com/").unwrap();
    durable.snapshot().unwrap();
    durable.record(secret, "https://example.com/other").unwrap();
    drop(durable);
    let mut files = 0;
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        files += 1;
        let bytes = fs::read(&path).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the visitor id",
            path.display()
        );
    }
    assert!(
        files >= 3,
        "a log segment, a snapshot and the lock were checked"
    );
}

/// Events acknowledged within the allowed skew ahead of the clock, then a
/// clock stepped back before the reopen: the replay counts them as now
/// instead of refusing them as from the future (they were acknowledged).
#[test]
fn a_clock_stepped_back_before_a_reopen_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_secs(1_800_000_000));
    let build = || {
        Tracker::builder()
            .hash_key(3)
            .ttl(Duration::from_secs(3_600))
            .clock(Arc::new(clock.clone()))
    };
    let url = "https://example.com/p";
    let (durable, _) = DurableTracker::open(dir.path(), build(), LogOptions::default()).unwrap();
    let ahead = Timestamp::from_secs(1_800_000_059);
    for v in 0..10 {
        durable.record_at(&format!("v{v}"), url, ahead).unwrap();
    }
    durable.record("now", url).unwrap();
    drop(durable);
    clock.set(Timestamp::from_secs(1_799_999_900));
    let (durable, report) =
        DurableTracker::open(dir.path(), build(), LogOptions::default()).unwrap();
    assert_eq!(report.refused, 0, "{:?}", report.first_refusal);
    assert_eq!(durable.tracker().distinct(url).unwrap().visitors, 11);
}
