//! The library as SPEC.md names it, called the way someone who read only
//! SPEC.md and the crate docs would call it: times as `SystemTime`s (or
//! `Timestamp`s, or `None` for an open end), counts read through the names
//! the HTTP answers use (`distinct_visitors`, `error`), a ranged count read
//! as a count and a ranged top list as a list.

use std::time::{Duration, SystemTime};

use tracker_core::persist::{DurableTracker, LogOptions};
use tracker_core::{ManualClock, Timestamp, Tracker};

const DAY: Duration = Duration::from_secs(86_400);

#[test]
fn ranges_take_system_times_and_answers_read_as_counts() {
    let now = SystemTime::now();
    let tracker = Tracker::new();
    tracker
        .record_at("alice", "https://shop.example/a", now - 3 * DAY)
        .unwrap();
    tracker
        .record_at("bob", "https://shop.example/a", now - DAY)
        .unwrap();
    tracker.record("carol", "https://shop.example/b").unwrap();

    let all = tracker.distinct("https://shop.example/a").unwrap();
    assert_eq!(
        (all.distinct_visitors(), all.exact, all.error()),
        (2, true, None)
    );

    let last_two_days = tracker
        .distinct_between("https://shop.example/a", now - 2 * DAY, now)
        .unwrap();
    assert_eq!((last_two_days.visitors, last_two_days.exact), (1, true));
    let open_start = tracker
        .distinct_between("https://shop.example/a", None, now - 2 * DAY)
        .unwrap();
    assert_eq!(open_start.distinct_visitors(), 1);
    let as_timestamps = tracker
        .distinct_between(
            "https://shop.example/a",
            Timestamp::from(now - 4 * DAY),
            Some(Timestamp::now()),
        )
        .unwrap();
    assert_eq!(as_timestamps.visitors, 2);

    let days = tracker
        .series("https://shop.example/a", now - 4 * DAY, now, DAY)
        .unwrap();
    assert!(days.len() >= 4, "{days:?}");
    assert_eq!(days.iter().map(|p| p.visitors).sum::<u64>(), 2);

    let top = tracker.top_between(10, now - 2 * DAY, None).unwrap();
    assert_eq!(top.len(), 2);
    assert_eq!(
        (top[0].url.as_str(), top[0].visitors),
        ("https://shop.example/a", 1)
    );

    let site = tracker
        .site_distinct_between("shop.example", now - 4 * DAY, None)
        .unwrap();
    assert_eq!(site.visitors, 3);
}

#[test]
fn a_manual_clock_starts_at_a_system_time() {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_491_200);
    let clock = ManualClock::new(start);
    let tracker = Tracker::builder()
        .clock(std::sync::Arc::new(clock.clone()))
        .ttl(DAY)
        .build()
        .unwrap();
    tracker.record("alice", "/").unwrap();
    clock.set(start + 2 * DAY);
    assert_eq!(tracker.distinct("/").unwrap().distinct_visitors(), 0);
    assert_eq!(Timestamp::from_secs(1_793_491_200), Timestamp::from(start));
}

#[test]
fn a_durable_record_takes_a_time_as_the_tracker_does() {
    let dir = tempfile::tempdir().unwrap();
    let (durable, _) =
        DurableTracker::open(dir.path(), Tracker::builder(), LogOptions::default()).unwrap();
    let yesterday = SystemTime::now() - DAY;
    durable.record_at("alice", "/a", yesterday).unwrap();
    durable
        .record_at("bob", "/a", Timestamp::from(yesterday))
        .unwrap();
    durable.record_at("carol", "/a", None).unwrap();
    let tracker = durable.tracker();
    assert_eq!(
        tracker
            .distinct_between("/a", yesterday - DAY, yesterday + Duration::from_secs(60))
            .unwrap()
            .visitors,
        2
    );
}

/// A URL prefix is spelt as the pages' URLs are at record (and as `site`
/// is read): scheme and host in any case, with a default port or user
/// info, list the same pages; the path stays case-sensitive. Before, the
/// prefix was compared as given, and `HTTPS://Shop.example/` listed none.
#[test]
fn a_page_prefix_is_read_as_a_url_is() {
    use tracker_core::PageQuery;

    let tracker = Tracker::new();
    for url in [
        "https://shop.example/cart",
        "https://shop.example/cart/2",
        "https://shop.example/Cart",
        "https://shop.example/about",
        "http://shop.example/cart",
        "https://bücher.example/regal",
    ] {
        tracker.record("alice", url).unwrap();
    }
    let listed = |prefix: &str| {
        let query = PageQuery {
            prefix: Some(prefix.to_owned()),
            limit: 100,
            ..PageQuery::default()
        };
        let list = tracker.pages(&query).unwrap();
        list.pages.into_iter().map(|p| p.url).collect::<Vec<_>>()
    };
    let cart = ["https://shop.example/cart", "https://shop.example/cart/2"];
    for prefix in [
        "https://shop.example/cart",
        "HTTPS://Shop.EXAMPLE/cart",
        "https://shop.example:443/cart",
        "https://user@shop.example/cart",
    ] {
        assert_eq!(listed(prefix), cart, "{prefix}");
    }
    assert_eq!(
        listed("https://SHOP.example/C"),
        ["https://shop.example/Cart"]
    );
    // A host not yet complete is a prefix of hosts, lowercased.
    assert_eq!(listed("HTTPS://SHOP.EX").len(), 4);
    // A Unicode host is stored in punycode, and read so in a prefix.
    let books = ["https://xn--bcher-kva.example/regal"];
    assert_eq!(listed("https://BÜCHER.example"), books);
    assert_eq!(listed("https://bücher.example/re"), books);
    assert_eq!(listed("https://shop.example:8443/"), Vec::<String>::new());
    assert_eq!(
        listed("/cart"),
        ["http://shop.example/cart", cart[0], cart[1]]
    );
}
