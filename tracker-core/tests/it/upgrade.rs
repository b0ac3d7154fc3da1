//! Data directories written by older releases still open, with the same
//! all-time counts.
//!
//! `tests/fixtures/payload-v<N>/{plain,ttl}/` are data directories (a
//! snapshot, then a log tail after it) written by the code of tracker
//! payload version `N`. They were made by the ignored test below, run at
//! that version:
//!
//! ```text
//! cargo test -p tracker-core --test it -- --ignored upgrade::write_fixtures
//! ```
//!
//! It writes into the directory of the version the build writes, so
//! running it after a format change adds a new fixture beside the old
//! ones instead of replacing them. Never regenerate an old version's
//! fixture: it stands for files already on users' disks.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracker_core::persist::{DurableTracker, LogOptions, TRACKER_PAYLOAD_VERSION};
use tracker_core::{ManualClock, Recorded, Timestamp, Tracker, TrackerBuilder};

/// The hash key the fixtures were written with.
const HASH_KEY: u64 = 0x005E_ED0F_F1C5;
/// The time the fixtures' events were recorded at (2023-11-14T22:13:20Z),
/// one second per event.
const START_MILLIS: u64 = 1_700_000_000_000;
/// The TTL of the `ttl` fixture: long enough that nothing in it expires
/// while the test's clock stands at the end of the fixture's events.
const TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Pages and how many distinct visitors each has in the snapshot, then
/// after the log tail: one and two visitors (the inline form), a table,
/// a larger table, and a page that only the log knows.
const PAGES: [(&str, u32, u32); 5] = [
    ("https://example.com/", 1, 3),
    ("https://example.com/pricing", 2, 2),
    ("https://example.com/docs?id=7", 40, 55),
    ("https://shop.example.com/cart", 200, 210),
    ("https://example.com/new", 0, 20),
];

fn fixture(version: u32, kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("payload-v{version}"))
        .join(kind)
}

fn builder(kind: &str, clock: &ManualClock) -> TrackerBuilder {
    let builder = Tracker::builder()
        .hash_key(HASH_KEY)
        .stripes(2)
        .clock(Arc::new(clock.clone()));
    if kind == "ttl" {
        builder.ttl(TTL)
    } else {
        builder
    }
}

/// Records the visitors of every page that belong in the snapshot, or
/// those that belong in the log tail, one second apart, each one twice
/// (the second a duplicate, logged all the same).
fn record_visitors(durable: &DurableTracker, clock: &ManualClock, tail: bool) {
    for (url, in_snapshot, in_all) in PAGES {
        let visitors = if tail {
            in_snapshot..in_all
        } else {
            0..in_snapshot
        };
        for v in visitors {
            for _ in 0..2 {
                durable.record(&format!("visitor-{v}"), url).unwrap();
            }
            clock.advance(Duration::from_secs(1));
        }
    }
}

#[test]
#[ignore = "writes the fixture of the current format; see the module docs"]
fn write_fixtures() {
    for kind in ["plain", "ttl"] {
        let dir = fixture(TRACKER_PAYLOAD_VERSION, kind);
        let _ = fs::remove_dir_all(&dir);
        let clock = ManualClock::new(Timestamp::from_millis(START_MILLIS));
        let (durable, _) =
            DurableTracker::open(&dir, builder(kind, &clock), LogOptions::default()).unwrap();
        // The snapshot's share, then the snapshot, then the log tail.
        record_visitors(&durable, &clock, false);
        durable.snapshot().unwrap();
        record_visitors(&durable, &clock, true);
        // Only what a recovery reads: the newest snapshot and the log
        // after it (the first-start snapshot and the log it covers go).
        let covers = durable.status().last_snapshot.unwrap().covers.0;
        drop(durable);
        fs::remove_file(dir.join("LOCK")).unwrap();
        for (sub, prefix) in [("snapshots", "snapshot-"), ("log", "log-")] {
            for entry in fs::read_dir(dir.join(sub)).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                let (stem, _extension) = name.rsplit_once('.').unwrap();
                let lsn: u64 = stem[prefix.len()..].parse().unwrap();
                if lsn < covers {
                    fs::remove_file(path).unwrap();
                }
            }
        }
    }
}

/// Copies a fixture into a temporary directory (opening writes to it).
/// With `bucket`, opens under that bucket width instead of the default.
fn open_copy(
    version: u32,
    kind: &str,
    bucket: Option<Duration>,
) -> (tempfile::TempDir, DurableTracker, ManualClock) {
    let from = fixture(version, kind);
    let to = tempfile::tempdir().unwrap();
    for sub in ["snapshots", "log"] {
        fs::create_dir(to.path().join(sub)).unwrap();
        for entry in fs::read_dir(from.join(sub)).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), to.path().join(sub).join(entry.file_name())).unwrap();
        }
    }
    // The clock stands a minute after the fixture's last event.
    let events: u32 = PAGES.iter().map(|&(_, _, all)| all).sum();
    let clock = ManualClock::new(Timestamp::from_millis(
        START_MILLIS + (u64::from(events) + 60) * 1000,
    ));
    let builder = match bucket {
        Some(width) => builder(kind, &clock).bucket(width),
        None => builder(kind, &clock),
    };
    let (durable, report) =
        DurableTracker::open(to.path(), builder, LogOptions::default()).unwrap();
    assert!(report.snapshot.is_some(), "{report:?}");
    assert!(
        report.replayed > 0,
        "the fixture has a log tail: {report:?}"
    );
    assert_eq!(report.refused, 0, "{report:?}");
    (to, durable, clock)
}

fn check_all_time_counts(version: u32, kind: &str) {
    let (_dir, durable, _clock) = open_copy(version, kind, None);
    let tracker = durable.tracker();
    for (url, _, all) in PAGES {
        let count = tracker.distinct(url).unwrap();
        assert_eq!(
            (count.visitors, count.exact),
            (u64::from(all), true),
            "{kind} {url}"
        );
    }
    let stats = tracker.stats();
    let pairs: u32 = PAGES.iter().map(|&(_, _, all)| all).sum();
    assert_eq!((stats.pages, stats.pairs), (5, u64::from(pairs)), "{kind}");
    let top = tracker.top(2);
    assert_eq!(top[0].url, "https://shop.example.com/cart");
    // The hash key came back with the data: a known visitor is a
    // duplicate, a new one is new.
    let cart = "https://shop.example.com/cart";
    assert_eq!(
        durable.record("visitor-3", cart).unwrap(),
        Recorded::Duplicate
    );
    assert_eq!(durable.record("someone-else", cart).unwrap(), Recorded::New);
}

#[test]
fn payload_v1_plain_opens_with_its_counts() {
    check_all_time_counts(1, "plain");
}

#[test]
fn payload_v1_ttl_opens_with_its_counts() {
    check_all_time_counts(1, "ttl");
}

/// Version 1 kept no buckets, so it opens under any bucket width.
#[test]
fn payload_v1_opens_under_any_bucket() {
    let (_dir, durable, _clock) = open_copy(1, "plain", Some(Duration::from_secs(86_400)));
    let bucketing = durable.tracker().config().bucketing;
    assert_eq!(bucketing.width(), Duration::from_secs(86_400));
    assert_eq!(
        durable.tracker().distinct(PAGES[3].0).unwrap().visitors,
        u64::from(PAGES[3].2)
    );
}

#[test]
fn payload_v2_plain_opens_with_its_counts() {
    check_all_time_counts(2, "plain");
}

#[test]
fn payload_v2_ttl_opens_with_its_counts() {
    check_all_time_counts(2, "ttl");
}

#[test]
fn payload_v3_plain_opens_with_its_counts() {
    check_all_time_counts(3, "plain");
}

#[test]
fn payload_v3_ttl_opens_with_its_counts() {
    check_all_time_counts(3, "ttl");
}

#[test]
fn payload_v4_plain_opens_with_its_counts() {
    check_all_time_counts(4, "plain");
}

#[test]
fn payload_v4_ttl_opens_with_its_counts() {
    check_all_time_counts(4, "ttl");
}

/// Every version answers ranges: the fixtures' events all fall in one
/// hour, so a range over it has every visitor, one after it none. Pairs
/// of versions 1 and 2 (no buckets) restore at their page's last
/// recorded tick (or their own, with a TTL), inside that hour too.
#[test]
fn every_version_answers_ranges() {
    let hour = |h: u64| Timestamp::from_millis((START_MILLIS / 3_600_000 + h) * 3_600_000);
    for version in 1..=TRACKER_PAYLOAD_VERSION {
        for kind in ["plain", "ttl"] {
            let (_dir, durable, _clock) = open_copy(version, kind, None);
            let tracker = durable.tracker();
            for (url, _, all) in PAGES {
                let during = tracker
                    .distinct_between(url, Some(hour(0)), Some(hour(1)))
                    .unwrap();
                assert_eq!(
                    (during.distinct.visitors, during.distinct.exact),
                    (u64::from(all), true),
                    "v{version} {kind} {url}"
                );
                let after = tracker.distinct_between(url, Some(hour(1)), None).unwrap();
                assert_eq!(after.distinct.visitors, 0, "v{version} {kind} {url}");
            }
            let site = tracker
                .site_distinct_between("example.com", Some(hour(0)), Some(hour(1)))
                .unwrap();
            assert!(site.distinct.visitors >= 55, "v{version} {kind} {site:?}");
        }
    }
}

/// Version 3 filled a sketched page's day sketches in hash order, which
/// biased their martingale estimate (a day read at about half its truth):
/// read from a version-3 payload they answer with the ML estimate, while
/// the all-time sketch (which started at its exact count) keeps its
/// martingale. Version 4 has version 3's layout, so a version-3 payload is
/// a current one with its version patched.
#[test]
fn a_version_3_day_sketch_answers_without_its_martingale() {
    use tracker_core::sketch::{martingale_relative_standard_error, relative_standard_error};
    const DAY_PRECISION: u8 = 10;
    let builder = || Tracker::builder().hash_key(7).max_memory(300 * 1024);
    let tracker = builder().build().unwrap();
    for i in 0..30_000 {
        tracker
            .record(&format!("v{i}"), "https://s.com/big")
            .unwrap();
    }
    assert_eq!(tracker.stats().sketched_pages, 1);
    let mut payload = Vec::new();
    tracker.write_snapshot(&mut payload).unwrap();
    assert_eq!(
        payload[8..12],
        4u32.to_le_bytes(),
        "magic, then the version"
    );
    let day_error = |tracker: &Tracker| {
        let ranged = tracker.site_distinct_between("s.com", None, None).unwrap();
        ranged.distinct.relative_error.expect("an estimate")
    };
    let current = Tracker::restore_snapshot(&payload, builder()).unwrap();
    assert_eq!(
        day_error(&current),
        martingale_relative_standard_error(DAY_PRECISION)
    );
    payload[8..12].copy_from_slice(&3u32.to_le_bytes());
    let old = Tracker::restore_snapshot(&payload, builder()).unwrap();
    assert_eq!(day_error(&old), relative_standard_error(DAY_PRECISION));
    let page = "https://s.com/big";
    assert_eq!(old.distinct(page).unwrap(), tracker.distinct(page).unwrap());
}

/// As above for the TTL's generations: a version 3 payload's generation
/// sketches (filled in hash order by the old code) answer with the ML
/// estimate, version 4's keep their martingale.
#[test]
fn a_version_3_ttl_generation_answers_without_its_martingale() {
    use tracker_core::sketch::{martingale_relative_standard_error, relative_standard_error};
    let clock = ManualClock::new(Timestamp::from_millis(1_767_225_600_000));
    let builder = || {
        Tracker::builder()
            .hash_key(7)
            .clock(Arc::new(clock.clone()))
            .ttl(Duration::from_secs(30 * 86_400))
            .max_memory(300 * 1024)
    };
    let tracker = builder().build().unwrap();
    let page = "https://s.com/big";
    for i in 0..30_000 {
        tracker.record(&format!("v{i}"), page).unwrap();
    }
    assert_eq!(tracker.stats().sketched_pages, 1);
    let mut payload = Vec::new();
    tracker.write_snapshot(&mut payload).unwrap();
    let error = |tracker: &Tracker| {
        tracker
            .distinct(page)
            .unwrap()
            .relative_error
            .expect("an estimate")
    };
    let current = Tracker::restore_snapshot(&payload, builder()).unwrap();
    let kept = error(&current);
    let precision = (4..=18)
        .find(|&p| martingale_relative_standard_error(p) == kept)
        .expect("a version 4 generation answers with its martingale");
    payload[8..12].copy_from_slice(&3u32.to_le_bytes());
    let old = Tracker::restore_snapshot(&payload, builder()).unwrap();
    assert_eq!(error(&old), relative_standard_error(precision));
    let visitors = old.distinct(page).unwrap().visitors as f64;
    assert!((visitors - 30_000.0).abs() / 30_000.0 < 0.05, "{visitors}");
}
