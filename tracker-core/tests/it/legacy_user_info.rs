//! Pages written before canonicalisation dropped user info
//! (`https://a@example.com/x`) still restore: re-keyed to their canonical
//! form, or kept under their old key when a page of that form was stored
//! too ("Legacy pages" in `tracker_core::persist::tracker_snapshot`).
//!
//! Such payloads are made by patching a current one: `https://aexample.com/x`
//! becomes `https://a@xample.com/x`, the same length, so no length field
//! changes (the payload has no checksum of its own; the snapshot file's
//! container, written below with `snapshot_file::write_atomic`, has one).

use std::collections::BTreeMap;

use tracker_core::persist::{DurableTracker, LogOptions, Lsn, snapshot_file};
use tracker_core::{RecordBatch, Tracker, TrackerBuilder};

use crate::{listing, patch, snapshot_of};

const KEY: u64 = 0x0123_4567;

fn builder() -> TrackerBuilder {
    Tracker::builder().hash_key(KEY).stripes(4)
}

/// Page `i`'s URL before patching, and its legacy and canonical forms.
fn forms(i: usize) -> (String, String, String) {
    (
        format!("https://aexample{i}.com/x"),
        format!("https://a@xample{i}.com/x"),
        format!("https://xample{i}.com/x"),
    )
}

/// A payload of `pages` legacy pages, page `i` with `i + 1` visitors
/// (`l0`, `l1`, ...); with `duplicates`, a page of each canonical form too,
/// with 2 visitors (`c0`, `c1`) of which `c0` is also on the legacy page.
fn legacy_payload(pages: usize, duplicates: bool) -> Vec<u8> {
    let tracker = builder().build().unwrap();
    for i in 0..pages {
        let (plain, _, canonical) = forms(i);
        for v in 0..=i {
            tracker.record(&format!("l{v}"), &plain).unwrap();
        }
        if duplicates {
            tracker.record("l0", &canonical).unwrap();
            tracker.record("c1", &canonical).unwrap();
        }
    }
    tracker.record("v", "https://other.example/").unwrap();
    let mut payload = snapshot_of(&tracker);
    for i in 0..pages {
        let (plain, legacy, _) = forms(i);
        patch(&mut payload, &plain, &legacy);
    }
    payload
}

#[test]
fn a_legacy_page_is_rekeyed_to_its_canonical_form() {
    let restored = Tracker::restore_snapshot(&legacy_payload(8, false), builder()).unwrap();
    let pages = listing(&restored);
    assert_eq!(pages.len(), 9);
    assert!(pages.keys().all(|url| !url.contains('@')), "{pages:?}");
    for i in 0..8 {
        let (_, legacy, canonical) = forms(i);
        assert_eq!(pages[&canonical], i as u64 + 1);
        assert_eq!(restored.distinct(&legacy).unwrap().visitors, i as u64 + 1);
    }
    // The same visitor again is no new visitor, whichever form it is sent as.
    let (_, legacy, canonical) = forms(3);
    assert!(!restored.record("l0", &legacy).unwrap().is_new());
    assert!(!restored.record("l1", &canonical).unwrap().is_new());
    assert!(restored.record("new", &legacy).unwrap().is_new());
    assert_eq!(restored.distinct(&canonical).unwrap().visitors, 5);
    // A snapshot taken now restores again, the same.
    let again = Tracker::restore_snapshot(&snapshot_of(&restored), builder()).unwrap();
    assert_eq!(listing(&again), listing(&restored));
}

#[test]
fn a_legacy_page_beside_its_canonical_form_is_kept_under_its_old_key() {
    let restored = Tracker::restore_snapshot(&legacy_payload(8, true), builder()).unwrap();
    let pages = listing(&restored);
    assert_eq!(pages.len(), 17);
    for i in 0..8 {
        let (_, legacy, canonical) = forms(i);
        assert_eq!(pages[&legacy], i as u64 + 1, "{pages:?}");
        assert_eq!(pages[&canonical], 2);
        // A query for exactly the old key reads the legacy page (as an
        // event sent so records there); any other spelling canonicalises.
        assert_eq!(restored.distinct(&legacy).unwrap().visitors, i as u64 + 1);
        let other = legacy.replace("a@", "b@");
        assert_eq!(restored.distinct(&other).unwrap().visitors, 2);
    }
    let again = Tracker::restore_snapshot(&snapshot_of(&restored), builder()).unwrap();
    assert_eq!(listing(&again), pages);
    // A batch takes the same fast path as one event does.
    let (_, legacy, canonical) = forms(5);
    let mut batch = RecordBatch::default();
    restored.record_batch(&[("n1", &legacy), ("n2", &canonical)], &mut batch);
    assert_eq!(batch.accepted(), 2);
    let pages = listing(&restored);
    assert_eq!((pages[&legacy], pages[&canonical]), (7, 3));
}

#[test]
fn of_two_legacy_pages_of_one_form_the_first_by_old_key_takes_it() {
    let tracker = builder().build().unwrap();
    tracker.record("a1", "https://aexample.com/x").unwrap();
    tracker.record("b1", "https://bexample.com/x").unwrap();
    tracker.record("b2", "https://bexample.com/x").unwrap();
    let plain = snapshot_of(&tracker);
    let mut payload = plain.clone();
    patch(
        &mut payload,
        "https://bexample.com/x",
        "https://b@xample.com/x",
    );
    patch(
        &mut payload,
        "https://aexample.com/x",
        "https://a@xample.com/x",
    );
    let restored = Tracker::restore_snapshot(&payload, builder()).unwrap();
    let expected = [
        ("https://b@xample.com/x".to_string(), 2),
        ("https://xample.com/x".to_string(), 1),
    ];
    assert_eq!(listing(&restored), BTreeMap::from(expected));
    // The same old key twice is damage, as any page twice is.
    let mut payload = plain;
    patch(
        &mut payload,
        "https://bexample.com/x",
        "https://a@xample.com/x",
    );
    patch(
        &mut payload,
        "https://aexample.com/x",
        "https://a@xample.com/x",
    );
    let err = Tracker::restore_snapshot(&payload, builder()).unwrap_err();
    assert!(err.to_string().contains("the same page twice"), "{err}");
}

#[test]
fn a_data_directory_with_legacy_pages_opens_and_replays_as_it_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let payload = legacy_payload(4, true);
    snapshot_file::write_atomic(dir.path().join("snapshots"), Lsn(0), 2, |w| {
        w.write_all(&payload)
    })
    .unwrap();
    let open = || DurableTracker::open(dir.path(), builder(), LogOptions::default()).unwrap();
    let before = {
        let (durable, _) = open();
        let (_, legacy, canonical) = forms(2);
        // Sent as exactly the old key, an event goes to the legacy page
        // (the fast path), and is logged under that key.
        durable.record("n1", &legacy).unwrap();
        durable.record("n2", &canonical).unwrap();
        durable.record("n3", " https://b@Xample2.com/x").unwrap();
        listing(durable.tracker())
    };
    let (_, legacy, canonical) = forms(2);
    assert_eq!(before.get(&legacy), Some(&4), "{before:?}");
    assert_eq!(before.get(&canonical), Some(&4), "{before:?}");
    // Replayed, the log gives the same counts.
    let (durable, _) = open();
    assert_eq!(listing(durable.tracker()), before);
    durable.snapshot().unwrap();
    drop(durable);
    let (durable, _) = open();
    assert_eq!(listing(durable.tracker()), before);
}
