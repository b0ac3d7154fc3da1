//! The browser URL rules (tracking parameters dropped, trailing slashes
//! folded, only web URLs and paths) keep canonical form a fixed point,
//! which the record fast path relies on: a stored key canonicalises to
//! itself.
//!
//! Credentials in a URL (`user:pw@`) are not part of its page.

use proptest::prelude::*;
use tracker_core::{QueryPolicy, Tracker, TrackerError};

fn url_like() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![
        Just(""),
        Just("http://"),
        Just("HTTPS://"),
        Just("javascript:"),
        Just("data:"),
        Just("file://"),
        // The URL Standard's slashes, tabs, newlines and C0 ends.
        Just("https:\\\\"),
        Just("http:/"),
        Just("ht\ttp:\n//"),
        Just(" \u{1}https://"),
        Just("\\"),
    ];
    // Names, IPv4 addresses in any form, IPv6 literals, escapes,
    // punycode and Unicode, forbidden bytes; ports in and out of range.
    let host = prop_oneof![
        4 => "([A-Za-z0-9.-]{0,8})(:[0-9]{0,6})?",
        1 => "((0x)?[0-9a-fA-F]{0,3}\\.){0,4}[0-9]{0,3}\\.?(:[0-9]{0,6})?",
        1 => "\\[[0-9a-f:.]{0,12}\\](:[0-9]{0,3})?",
        1 => "(%4[1-9]|xn--[a-z0-9-]{0,6}|[a-zü%<|^ ]){1,4}\\.?[a-z]{0,3}",
    ];
    let piece = prop_oneof![
        "[a-z0-9._~-]{1,5}",
        Just("/".to_string()),
        Just("//".to_string()),
        Just("\\".to_string()),
        Just("\t".to_string()),
        Just("\r\n".to_string()),
        Just("\u{0}".to_string()),
        Just(" ".to_string()),
        Just("%2F".to_string()),
        Just("%2f".to_string()),
        Just("%75tm_x=1".to_string()),
        Just("?".to_string()),
        Just("&".to_string()),
        Just("=".to_string()),
        Just("utm_source=a".to_string()),
        Just("UTM_Medium".to_string()),
        Just("fbclid=b".to_string()),
        Just("gclid".to_string()),
        Just("id=3".to_string()),
        Just("#".to_string()),
    ];
    (scheme, host, proptest::collection::vec(piece, 0..10))
        .prop_map(|(scheme, host, pieces)| format!("{scheme}{host}{}", pieces.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn browser_rules_keep_canonical_form_a_fixed_point(
        url in url_like(),
        fold in any::<bool>(),
        drop_default in any::<bool>(),
        policy in 0..3,
    ) {
        let policy = match policy {
            0 => QueryPolicy::Keep,
            1 => QueryPolicy::Strip,
            _ => QueryPolicy::Allow(vec!["id".into(), "utm_source".into()]),
        };
        let mut builder = Tracker::builder().query_policy(policy).fold_trailing_slash(fold);
        if !drop_default {
            builder = builder.drop_params(vec!["id".into(), "g*".into()]);
        }
        let tracker = builder.build().unwrap();
        match tracker.canonicalize(&url) {
            Ok(canonical) => {
                let again = tracker.canonicalize(&canonical).unwrap();
                prop_assert_eq!(&again, &canonical);
                prop_assert!(canonical.starts_with('/') || canonical.starts_with("http://") || canonical.starts_with("https://"));
                let query = canonical.split_once('?').map_or("", |(_, q)| q);
                if drop_default {
                    for param in query.split('&') {
                        let name = param.split('=').next().unwrap().to_ascii_lowercase();
                        prop_assert!(!name.starts_with("utm_") && name != "fbclid" && name != "gclid", "{}", canonical);
                    }
                }
                if fold {
                    let path = canonical.split('?').next().unwrap();
                    let bare = path.split_once("://").map_or(path, |(_, rest)| rest.find('/').map_or("/", |i| &rest[i..]));
                    prop_assert!(bare == "/" || !bare.ends_with('/'), "{}", canonical);
                }
            }
            Err(e) => prop_assert!(
                matches!(e, TrackerError::InvalidUrl | TrackerError::SchemeRelativeUrl | TrackerError::Empty { .. } | TrackerError::TooLong { .. }),
                "{:?}", e
            ),
        }
    }
}

#[test]
fn credentials_are_not_part_of_a_page() {
    let tracker = Tracker::new();
    tracker
        .record("v1", "https://user:pw@example.com/x")
        .unwrap();
    assert!(
        !tracker
            .record("v1", "https://example.com/x")
            .unwrap()
            .is_new()
    );
    tracker.record("v2", "https://other@Example.com/x").unwrap();
    assert_eq!(
        tracker.distinct("https://example.com/x").unwrap().visitors,
        2
    );
    assert_eq!(
        tracker
            .distinct("https://user:pw@example.com/x")
            .unwrap()
            .visitors,
        2
    );
    let top = tracker.top(10);
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].url, "https://example.com/x");
}
