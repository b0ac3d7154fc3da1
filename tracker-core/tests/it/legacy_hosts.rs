//! Pages written before the URL Standard's host and port rules, its
//! reading of `\` as `/`, its dot segments and Chromium's escape sets
//! (`tracker_core::canonical_url` module docs), still restore and replay:
//! a key the rules refuse only for its authority (`https://x:99999/p`) is
//! kept as stored, one they merely spell another way (`https://127.1/p`,
//! `https://bücher.de/u`, now punycode, `https://x/q\r`, now
//! `https://x/q/r`, `https://x/a/../b`, now `https://x/b`,
//! `https://x/a^b|?c'd`, now `https://x/a%5Eb%7C?c%27d`) is re-keyed to
//! its canonical form unless that page exists too ("Legacy pages" in
//! `tracker_core::persist::tracker_snapshot`).
//!
//! Old snapshots are made by patching a current payload with strings of
//! the same length (see `legacy_user_info.rs`); old logs by appending
//! events to the log directly, as an older version would have logged them.

use std::collections::BTreeMap;

use tracker_core::persist::{DurableTracker, EventLog, LogEvent, LogOptions, Lsn, snapshot_file};
use tracker_core::{Timestamp, Tracker, TrackerBuilder, TrackerError};

use crate::{listing, patch, snapshot_of};

const KEY: u64 = 0x0765_4321;

fn builder() -> TrackerBuilder {
    Tracker::builder().hash_key(KEY).stripes(4)
}

/// (recorded as, stored by an older version as, canonical form now or
/// `None` if refused now).
const FORMS: [(&str, &str, Option<&str>); 16] = [
    ("https://x:12345/p", "https://x:99999/p", None),
    ("https://x:12345/q", "https://x:00abc/q", None),
    ("https://a.b.c.ddd/p", "https://1.2.3.999/p", None),
    (
        "https://x27.y/p",
        "https://127.1/p",
        Some("https://127.0.0.1/p"),
    ),
    (
        "https://[a::2]/p",
        "https://[0::2]/p",
        Some("https://[::2]/p"),
    ),
    (
        "https://bxxcher.de/u",
        "https://bücher.de/u",
        Some("https://xn--bcher-kva.de/u"),
    ),
    // A path's `\` was a byte of it, and is a `/` now; in user info (kept
    // by the oldest versions) it was a byte of the authority.
    ("https://x/qzr", "https://x/q\\r", Some("https://x/q/r")),
    ("/abzc", "/ab\\c", Some("/ab/c")),
    (
        "https://a.zexample.com/u",
        "https://a\\@example.com/u",
        Some("https://example.com/u"),
    ),
    // Scheme-relative now (refused), a path then: kept.
    ("/abcd/p", "//c.d/p", None),
    ("/zx", "/\\x", None),
    // Dot segments were kept, and the escape sets were not Chromium's.
    ("https://x/a/zz/b", "https://x/a/../b", Some("https://x/b")),
    (
        "https://x/azbz?czd",
        "https://x/a^b|?c'd",
        Some("https://x/a%5Eb%7C?c%27d"),
    ),
    (
        "https://x/?b=zzzzzzzzz",
        "https://x/?b=%7B%60%7D",
        Some("https://x/?b={`}"),
    ),
    // A path now starting with `//` is written as the URL Standard writes
    // a path without a host.
    ("/fzzzzzg", "/f/..//g", Some("/.//g")),
    ("https://x:12345/rzzzzs", "https://x:99999/r/../s", None),
];

/// A payload with page `i` of [`FORMS`] under its old key with `i + 1`
/// visitors; with `duplicates`, each canonical form recorded too (2
/// visitors, `l0` of them also on the old page).
fn legacy_payload(duplicates: bool) -> Vec<u8> {
    let tracker = builder().build().unwrap();
    for (i, (recorded, _, canonical)) in FORMS.iter().enumerate() {
        for v in 0..=i {
            tracker.record(&format!("l{v}"), recorded).unwrap();
        }
        if let (true, Some(canonical)) = (duplicates, canonical) {
            tracker.record("l0", canonical).unwrap();
            tracker.record("c1", canonical).unwrap();
        }
    }
    tracker.record("v", "https://other.example/").unwrap();
    let mut payload = snapshot_of(&tracker);
    for (recorded, old, _) in FORMS {
        patch(&mut payload, recorded, old);
    }
    payload
}

#[test]
fn the_new_rules_refuse_or_rewrite_the_old_keys() {
    let tracker = Tracker::new();
    for (_, old, canonical) in FORMS {
        match canonical {
            None if old.starts_with('/') => assert_eq!(
                tracker.canonicalize(old),
                Err(TrackerError::SchemeRelativeUrl),
                "{old}"
            ),
            None => assert_eq!(
                tracker.canonicalize(old),
                Err(TrackerError::InvalidUrl),
                "{old}"
            ),
            Some(canonical) if old.contains('@') => {
                // Sent now, its `\` ends the authority (as in a browser):
                // it was user info when it was stored.
                assert_eq!(
                    tracker.canonicalize(old).unwrap(),
                    "https://a/@example.com/u"
                );
                assert_eq!(tracker.canonicalize(canonical).unwrap(), canonical);
            }
            Some(canonical) => assert_eq!(tracker.canonicalize(old).unwrap(), canonical),
        }
    }
}

#[test]
fn old_keys_are_kept_or_rekeyed_on_restore() {
    let restored = Tracker::restore_snapshot(&legacy_payload(false), builder()).unwrap();
    let pages = listing(&restored);
    let mut expected = BTreeMap::from([("https://other.example/".to_string(), 1)]);
    for (i, (_, old, canonical)) in FORMS.iter().enumerate() {
        expected.insert(canonical.unwrap_or(old).to_string(), i as u64 + 1);
    }
    assert_eq!(pages, expected);
    // A kept page answers a query spelled as its key, and an event so
    // spelled counts there; another spelling of it is refused.
    assert_eq!(restored.distinct("https://x:99999/p").unwrap().visitors, 1);
    assert!(restored.record("n", "https://x:99999/p").unwrap().is_new());
    assert_eq!(restored.distinct("https://x:99999/p").unwrap().visitors, 2);
    assert_eq!(
        restored.record("n", "https://X:99999/p"),
        Err(TrackerError::InvalidUrl)
    );
    // A re-keyed page is reached by any spelling.
    assert_eq!(restored.distinct("https://127.1/p").unwrap().visitors, 4);
    assert_eq!(
        restored.distinct("https://x/a/%2e%2E/b").unwrap().visitors,
        12
    );
    assert_eq!(
        restored
            .distinct("https://x/a%5eb%7c?c'd")
            .unwrap()
            .visitors,
        13
    );
    assert_eq!(
        restored.distinct("https://x/?b=%7b`}").unwrap().visitors,
        14
    );
    assert_eq!(
        restored.distinct("/h/../f/./g/../..//g").unwrap().visitors,
        15
    );
    assert!(
        !restored
            .record("l0", "https://0x7f.0.0.1/p")
            .unwrap()
            .is_new()
    );
    // A snapshot taken now restores again, the same.
    let again = Tracker::restore_snapshot(&snapshot_of(&restored), builder()).unwrap();
    assert_eq!(listing(&again), listing(&restored));
}

#[test]
fn an_old_key_beside_its_canonical_form_stays_under_its_old_key() {
    let restored = Tracker::restore_snapshot(&legacy_payload(true), builder()).unwrap();
    let pages = listing(&restored);
    assert_eq!(pages["https://127.1/p"], 4, "{pages:?}");
    assert_eq!(pages["https://127.0.0.1/p"], 2);
    assert_eq!(pages["https://x:99999/p"], 1);
    assert_eq!(pages["https://x/a/../b"], 12);
    assert_eq!(pages["https://x/b"], 2);
    assert_eq!(pages["/f/..//g"], 15);
    assert_eq!(pages["/.//g"], 2);
    // Sent exactly as its old key, an event reaches the old page; any
    // other spelling the canonical one.
    assert!(!restored.record("l3", "https://127.1/p").unwrap().is_new());
    assert!(restored.record("l3", "https://127.0.1/p").unwrap().is_new());
    assert!(!restored.record("l3", "https://x/a/../b").unwrap().is_new());
    assert!(
        restored
            .record("l3", "https://x/a/./../b")
            .unwrap()
            .is_new()
    );
    let again = Tracker::restore_snapshot(&snapshot_of(&restored), builder()).unwrap();
    assert_eq!(listing(&again), listing(&restored));
}

#[test]
fn a_damaged_path_is_still_refused() {
    let tracker = builder().build().unwrap();
    tracker.record("v", "https://x:12345/pa").unwrap();
    let mut payload = snapshot_of(&tracker);
    // Refused for its port, and its path is not canonical either.
    patch(&mut payload, "https://x:12345/pa", "https://x:99999/p ");
    let err = Tracker::restore_snapshot(&payload, builder()).unwrap_err();
    assert!(err.to_string().contains("not canonical"), "{err}");
}

#[test]
fn a_data_directory_with_old_keys_in_its_snapshot_and_log_opens_as_it_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let payload = legacy_payload(true);
    snapshot_file::write_atomic(dir.path().join("snapshots"), Lsn(0), 2, |w| {
        w.write_all(&payload)
    })
    .unwrap();
    let hasher = builder().build().unwrap();
    let hash = |v: &str| hasher.visitor_hash(v).unwrap();
    let at = Timestamp::from_millis(1_700_000_000_000).as_millis();
    // Events an older version accepted and logged after that snapshot:
    // under the old keys, on pages restored or not.
    {
        let (log, _) = EventLog::open(dir.path().join("log"), LogOptions::default()).unwrap();
        for (visitor, url) in [
            ("n1", "https://x:99999/p"),
            ("n1", "https://x:65536/new"),
            ("n2", "https://x:65536/new"),
            ("n1", "https://127.1/p"),
            ("n1", "https://127.0.1/new"),
            ("n1", "https://[0::2]/p"),
            ("n1", "https://x/q\\r"),
            ("n1", "/ab\\c/new"),
            ("n1", "//c.d/p"),
            ("n1", "//c.d/new"),
            ("n1", "https://x/a/../b"),
            ("n1", "https://x/a/./b/../new"),
            ("n1", "https://x/a^b|?c'd"),
            ("n1", "https://x:99999/r/../s"),
            ("n1", "https://x:99999/r/./t"),
            // Never a page key: refused, counted, and the open goes on.
            ("n1", "javascript:x"),
        ] {
            let event = LogEvent {
                visitor_hash: hash(visitor),
                at_millis: at,
                url,
            };
            log.append(&event).unwrap();
        }
    }
    let open = || DurableTracker::open(dir.path(), builder(), LogOptions::default()).unwrap();
    let (durable, report) = open();
    assert_eq!((report.replayed, report.refused), (16, 1), "{report:?}");
    assert_eq!(report.first_refusal, Some(TrackerError::InvalidUrl));
    let pages = listing(durable.tracker());
    assert_eq!(pages["https://x:99999/p"], 2, "{pages:?}");
    assert_eq!(pages["https://x:65536/new"], 2);
    assert_eq!(pages["https://127.1/p"], 5);
    assert_eq!(pages["https://127.0.0.1/p"], 2);
    assert_eq!(pages["https://127.0.0.1/new"], 1);
    assert_eq!(pages["https://[0::2]/p"], 6);
    assert_eq!(pages["https://[::2]/p"], 2);
    assert_eq!(pages["https://x/q\\r"], 8);
    assert_eq!(pages["https://x/q/r"], 2);
    assert_eq!(pages["/ab/c/new"], 1);
    assert_eq!(pages["//c.d/p"], 11);
    assert_eq!(pages["//c.d/new"], 1);
    assert_eq!(pages["https://x/a/../b"], 13);
    assert_eq!(pages["https://x/b"], 2);
    assert_eq!(pages["https://x/a/new"], 1);
    assert_eq!(pages["https://x/a^b|?c'd"], 14);
    assert_eq!(pages["https://x/a%5Eb%7C?c%27d"], 2);
    assert_eq!(pages["https://x:99999/r/../s"], 17);
    assert_eq!(pages["https://x:99999/r/./t"], 1);
    // Live, an event under a kept key that has a page is taken and logged
    // as it is; under a new refused key it is refused.
    durable.record("n3", "https://x:65536/new").unwrap();
    assert!(matches!(
        durable.record("n3", "https://x:65537/new"),
        Err(tracker_core::persist::DurableError::Tracker(
            TrackerError::InvalidUrl
        ))
    ));
    let before = listing(durable.tracker());
    drop(durable);
    let (durable, _) = open();
    assert_eq!(listing(durable.tracker()), before);
    durable.snapshot().unwrap();
    drop(durable);
    let (durable, report) = open();
    assert_eq!(report.refused, 0);
    assert_eq!(listing(durable.tracker()), before);
}

/// A key an older version logged within the URL length limit, that
/// today's escapes lengthen past it (`^` is `%5E` now), is replayed under
/// its stored key, as a snapshot restores it: not refused, not lost.
#[test]
fn an_old_key_escaped_past_the_length_limit_replays_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let limit = builder().config().unwrap().url.max_len;
    let url = format!("https://x/{}{}", "a".repeat(limit - 18), "^".repeat(8));
    assert_eq!(url.len(), limit);
    assert!(matches!(
        builder().build().unwrap().record("v", &url),
        Err(TrackerError::TooLong { .. })
    ));
    let hasher = builder().build().unwrap();
    {
        let (log, _) = EventLog::open(dir.path().join("log"), LogOptions::default()).unwrap();
        for visitor in ["v1", "v2"] {
            let event = LogEvent {
                visitor_hash: hasher.visitor_hash(visitor).unwrap(),
                at_millis: Timestamp::from_millis(1_700_000_000_000).as_millis(),
                url: &url,
            };
            log.append(&event).unwrap();
        }
    }
    let (durable, report) =
        DurableTracker::open(dir.path(), builder(), LogOptions::default()).unwrap();
    assert_eq!((report.replayed, report.refused), (2, 0), "{report:?}");
    assert_eq!(listing(durable.tracker())[&url], 2);
}

/// A cluster's stream is replayed through `record_visitor_hash`: an old
/// event under a kept key counts there, and one no version would have
/// written is a typed error (the consumer logs and skips it), never a
/// panic or a stall.
#[test]
fn a_stream_replay_takes_old_keys_and_refuses_others_with_a_typed_error() {
    let tracker = builder().build().unwrap();
    let hash = tracker.visitor_hash("s").unwrap();
    let at = Timestamp::from_millis(1_700_000_000_000);
    for (sent, page) in [
        ("https://x:99999/p", "https://x:99999/p"),
        ("https://127.1/p", "https://127.0.0.1/p"),
        ("//c.d/p", "//c.d/p"),
        ("https://x/a/../b?c'd", "https://x/b?c%27d"),
        ("https://x:99999/r/../s", "https://x:99999/r/../s"),
    ] {
        let (_, taken) = tracker.record_visitor_hash(hash, sent, at).unwrap();
        assert_eq!(taken, page, "{sent}");
    }
    for refused in ["javascript:x", "https://x:99999/a b", "https://x:99999"] {
        assert_eq!(
            tracker.record_visitor_hash(hash, refused, at),
            Err(TrackerError::InvalidUrl),
            "{refused}"
        );
    }
    // Live, the same kept keys are refused where no page holds them.
    assert_eq!(
        tracker.record("s", "https://x:99999/q"),
        Err(TrackerError::InvalidUrl)
    );
    assert_eq!(
        tracker.record("s", "//c.d/q"),
        Err(TrackerError::SchemeRelativeUrl)
    );
    assert_eq!(listing(&tracker).len(), 5);
}
