//! The tracker against the plain model of `test_support::model`, over
//! arbitrary sequences of records, queries and invalid input.

use proptest::prelude::*;
use test_support::model::Distinct;
use tracker_core::{Field, Tracker, TrackerError};

/// Pages by their canonical form: each is a different page.
const PAGES: [&str; 8] = [
    "https://example.com/",
    "https://example.com/a",
    "https://example.com/a?x=1",
    "https://example.com/A",
    "http://example.com/a",
    "https://example.com:8443/a",
    "https://shop.example.com/caf%C3%A9",
    "/a",
];

/// A spelling of a page that canonicalises to it.
fn spell(page: &str, variant: u8) -> String {
    match variant % 8 {
        0 => page.to_string(),
        1 => format!("  {page}\t"),
        2 => format!("{page}#section-{variant}"),
        3 => upper_scheme_and_host(page),
        4 => page
            .replacen("://example.com/", "://example.com:443/", 1)
            .replacen("http://example.com:443/", "http://example.com:80/", 1),
        5 => page.replace("%C3%A9", "é"),
        6 => page.replace("%C3%A9", "%c3%a9").replacen("/a", "/%61", 1),
        _ => page.replacen("https://example.com/", "https://example.com:/", 1),
    }
}

fn upper_scheme_and_host(page: &str) -> String {
    match page.split_once("://") {
        Some((scheme, rest)) => {
            let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            format!(
                "{}://{}{}",
                scheme.to_uppercase(),
                host.to_uppercase(),
                path
            )
        }
        None => page.to_string(),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Record {
        visitor: u8,
        page: usize,
        variant: u8,
    },
    Query {
        page: usize,
        variant: u8,
    },
    EmptyVisitor {
        page: usize,
    },
    LongUrl {
        visitor: u8,
    },
    Top {
        k: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..12, 0..PAGES.len(), any::<u8>())
            .prop_map(|(visitor, page, variant)| Op::Record { visitor, page, variant }),
        2 => (0..PAGES.len(), any::<u8>()).prop_map(|(page, variant)| Op::Query { page, variant }),
        1 => (0..PAGES.len()).prop_map(|page| Op::EmptyVisitor { page }),
        1 => (0u8..12).prop_map(|visitor| Op::LongUrl { visitor }),
        1 => (0usize..10).prop_map(|k| Op::Top { k }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn tracker_agrees_with_the_model(ops in proptest::collection::vec(op(), 0..200), stripes in 0u32..4) {
        let tracker = Tracker::builder().stripes(1 << stripes).max_url_len(64).build().unwrap();
        let mut model = Distinct::<String>::default();
        for op in ops {
            match op {
                Op::Record { visitor, page, variant } => {
                    let visitor = format!("visitor-{visitor}");
                    let new = model.record(visitor.clone(), PAGES[page]);
                    let recorded = tracker.record(&visitor, &spell(PAGES[page], variant)).unwrap();
                    prop_assert_eq!(recorded.is_new(), new);
                }
                Op::Query { page, variant } => {
                    let count = tracker.distinct(&spell(PAGES[page], variant)).unwrap();
                    prop_assert_eq!(count.visitors, model.count(PAGES[page]));
                    prop_assert!(count.exact);
                    prop_assert_eq!(count.relative_error, None);
                }
                Op::EmptyVisitor { page } => {
                    prop_assert_eq!(
                        tracker.record("", PAGES[page]),
                        Err(TrackerError::Empty { field: Field::Visitor })
                    );
                }
                Op::LongUrl { visitor } => {
                    let url = format!("https://example.com/{}", "x".repeat(60));
                    let refused = tracker.record(&format!("visitor-{visitor}"), &url);
                    let too_long = matches!(refused, Err(TrackerError::TooLong { field: Field::Url, .. }));
                    prop_assert!(too_long, "{:?}", refused);
                }
                Op::Top { k } => {
                    let top: Vec<(String, u64)> = tracker
                        .top(k)
                        .into_iter()
                        .map(|row| (row.url, row.distinct.visitors))
                        .collect();
                    prop_assert_eq!(top, model.top(k));
                }
            }
        }
        for page in PAGES {
            prop_assert_eq!(tracker.distinct(page).unwrap().visitors, model.count(page));
        }
        let stats = tracker.stats();
        prop_assert_eq!((stats.pages, stats.pairs), (model.pages(), model.pairs()));
        prop_assert_eq!(tracker.top(usize::MAX).len() as u64, model.pages());
    }

    /// No string, however odd, panics the tracker or changes a count it
    /// refuses.
    #[test]
    fn arbitrary_input_never_panics(visitor in any::<Vec<u8>>(), url in any::<Vec<u8>>(), text in ".{0,80}") {
        let tracker = Tracker::builder().max_visitor_len(32).max_url_len(64).build().unwrap();
        let at = tracker_core::Timestamp::from_millis(0);
        let before = tracker.stats();
        match tracker.record_bytes_at(&visitor, &url, at) {
            Ok(_) => prop_assert_eq!(tracker.stats().pairs, before.pairs + 1),
            Err(_) => prop_assert_eq!(tracker.stats(), before),
        }
        if let Ok(canonical) = tracker.canonicalize(&text) {
            // Canonical form is a fixed point, and within the limit.
            prop_assert!(canonical.len() <= 64);
            prop_assert_eq!(tracker.canonicalize(&canonical).unwrap(), canonical.clone());
            prop_assert!(tracker.record("v", &text).is_ok());
            prop_assert_eq!(tracker.distinct(&canonical).unwrap().visitors, 1);
        } else {
            prop_assert!(tracker.record("v", &text).is_err());
        }
    }
}

/// URL-shaped strings built from the pieces canonicalisation cares about:
/// scheme case, userinfo, host case, IPv6 literals, ports, escapes (valid,
/// invalid, lower-case, of unreserved bytes), non-ASCII, spaces, fragments,
/// queries and empty parameters.
fn url_like() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![
        Just(""),
        Just("http://"),
        Just("HTTPS://"),
        Just("wss://"),
        Just("Custom+x://"),
        Just("mailto:"),
        Just("ftp:"),
    ];
    let host = "(user@)?([A-Za-z0-9.-]{0,8}|\\[::1\\]|[ÀÉé]x)(:[0-9]{0,6})?";
    let piece = prop_oneof![
        "[a-zA-Z0-9/._~-]{1,6}",
        Just("%41".to_string()),
        Just("%7e".to_string()),
        Just("%c3%a9".to_string()),
        Just("%2F".to_string()),
        Just("%zz".to_string()),
        Just("%".to_string()),
        Just("%4".to_string()),
        Just("é".to_string()),
        Just(" ".to_string()),
        Just("\"{}`<>".to_string()),
        Just("?".to_string()),
        Just("&".to_string()),
        Just("=".to_string()),
        Just("#".to_string()),
        Just("İ".to_string()),
    ];
    (
        scheme,
        host,
        proptest::collection::vec(piece, 0..10),
        "[ \t]{0,2}",
    )
        .prop_map(|(scheme, host, pieces, pad)| {
            format!("{pad}{scheme}{host}{}{pad}", pieces.concat())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The record fast path looks a URL up as sent before canonicalising
    /// it, which is only right if a canonical URL canonicalises to itself.
    #[test]
    fn canonical_form_is_a_fixed_point(url in url_like(), policy in 0..3) {
        use tracker_core::QueryPolicy;
        let policy = match policy {
            0 => QueryPolicy::Keep,
            1 => QueryPolicy::Strip,
            _ => QueryPolicy::Allow(vec!["a".into(), "é".into(), "".into()]),
        };
        let tracker = Tracker::builder().query_policy(policy).build().unwrap();
        if let Ok(canonical) = tracker.canonicalize(&url) {
            let again = tracker.canonicalize(&canonical).unwrap();
            prop_assert_eq!(&again, &canonical);
            tracker.record("v", &url).unwrap();
            prop_assert_eq!(tracker.distinct(&canonical).unwrap().visitors, 1);
            prop_assert_eq!(tracker.distinct(&url).unwrap().visitors, 1);
            prop_assert_eq!(tracker.record("v", &canonical).unwrap().is_new(), false);
        }
    }
}
