//! Property tests of the HTTP layer: whatever the body, query string,
//! path or headers, the service answers without a 5xx, and every error is
//! the JSON error format.

use crate::app::*;
use axum::body::Body;
use axum::http::StatusCode;
use axum::http::{Method, Request};
use proptest::prelude::*;
use serde_json::json;
use tracker_http::HttpLimits;
use tracker_http::browser::PIXEL;
use tracker_http::client_ip::TrustedProxies;

const BROWSER_UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Checks one answer: no server error; errors are JSON with a code.
fn check(answer: &Answer) -> Result<(), TestCaseError> {
    prop_assert!(
        !answer.status.is_server_error(),
        "5xx: {} {:?}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    if answer.status.is_client_error() {
        answer.error_code();
    }
    Ok(())
}

/// Strings that look like URLs and query strings, with escapes, unicode
/// and separators mixed in.
fn urlish() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9:/?#&=+%._~ -]{0,40}",
        "(https?://)?[a-zA-Z.]{0,12}(:[0-9]{0,6})?(/[a-zA-Z%0-9é]{0,8}){0,4}(\\?[a-z=&%+]{0,10})?(#.{0,4})?",
        any::<String>(),
    ]
}

/// Text for `from`, `till`, `step` and an event's `time`: every form the
/// core reads, near misses, and anything at all.
fn timeish() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("now".to_string()),
        "-[0-9]{0,12}(ms|s|m|h|d|w|x)?([0-9]{1,3}[smhd])?",
        "[0-9]{0,13}",
        "[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?",
        "[0-9]{0,6}(ms|s|m|h|d|w)",
        // Durations past the times held, and whole multiples of 2^32 hours
        // (buckets, by default): a step once cut to 32 bits.
        (
            prop_oneof![any::<u64>(), (1u64..4).prop_map(|k| k << 32)],
            prop_oneof![Just("m"), Just("h"), Just("d")],
        )
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        any::<String>(),
    ]
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("application/json".to_string())),
        Just(Some("text/plain;charset=UTF-8".to_string())),
        "[ -~]{0,30}".prop_map(Some),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_body_is_answered_cleanly(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            (urlish(), urlish()).prop_map(|(v, u)| {
                serde_json::json!({"visitor": v, "url": u}).to_string().into_bytes()
            }),
            (urlish(), timeish()).prop_map(|(u, t)| {
                serde_json::json!({"visitor": "v", "url": u, "time": t}).to_string().into_bytes()
            }),
            (any::<i64>(), any::<f64>(), any::<bool>()).prop_map(|(i, f, pick)| {
                let time = if pick { serde_json::json!(i) } else { serde_json::json!(f) };
                serde_json::json!({"visitor": "v", "url": "/", "time": time}).to_string().into_bytes()
            }),
            "\\{\"visitor\": ?(\"[a-z]{0,3}\"|[0-9]+|null|\\[\\]), ?\"url\": ?(\"[/a-z]{0,5}\"|true|\\{\\})\\}"
                .prop_map(String::into_bytes),
        ],
        content_type in content_type(),
    ) {
        let (app, _) = default_app();
        let mut request = Request::post("/events");
        if let Some(ct) = &content_type {
            request = request.header("content-type", ct.as_str());
        }
        // Header values the http crate itself refuses never reach a server.
        let Ok(request) = request.body(Body::from(body)) else { return Ok(()) };
        check(&runtime().block_on(send(&app, request)))?;
    }

    #[test]
    fn any_query_string_is_answered_cleanly(
        path in prop_oneof![
            Just("/distinct"), Just("/top"), Just("/series"), Just("/pages"), Just("/stats"),
            Just("/healthz"),
        ],
        query in urlish(),
        encoded in any::<bool>(),
    ) {
        let (app, _) = default_app();
        let query = if encoded {
            query.bytes().map(|b| format!("%{b:02X}")).collect::<String>()
        } else {
            query
        };
        let Ok(request) = Request::get(format!("{path}?url={query}&limit={query}")).body(Body::empty())
        else { return Ok(()) };
        check(&runtime().block_on(send(&app, request)))?;
    }

    /// Whatever `from`, `till` and `step` hold, ranged reads answer 200
    /// or a JSON 400, never a 5xx.
    #[test]
    fn any_time_range_is_answered_cleanly(
        path in prop_oneof![Just("/distinct?url=/a"), Just("/distinct?site=a.example"), Just("/top?limit=3"), Just("/series?url=/a"), Just("/series?site=a.example")],
        from in proptest::option::of(timeish()),
        till in proptest::option::of(timeish()),
        step in proptest::option::of(timeish()),
    ) {
        let (app, _) = default_app();
        let mut uri = path.to_string();
        for (name, value) in [("from", from), ("till", till), ("step", step)] {
            if let Some(value) = value {
                let value: String = value.bytes().map(|b| format!("%{b:02X}")).collect();
                uri.push_str(&format!("&{name}={value}"));
            }
        }
        let answer = runtime().block_on(get(&app, &uri));
        check(&answer)?;
        prop_assert!(answer.status == StatusCode::OK || answer.status == StatusCode::BAD_REQUEST);
    }

    #[test]
    fn any_path_method_and_headers_are_answered_cleanly(
        method in prop_oneof![
            Just(Method::GET), Just(Method::POST), Just(Method::PUT),
            Just(Method::DELETE), Just(Method::OPTIONS), Just(Method::HEAD), Just(Method::PATCH),
        ],
        path in "/[a-zA-Z0-9/%._?=&-]{0,30}",
        header_name in "[a-z-]{1,20}",
        header_value in "[ -~]{0,40}",
        authorization in "[ -~]{0,40}",
    ) {
        let (app, _) = default_app();
        let head = method == Method::HEAD;
        let Ok(request) = Request::builder()
            .method(method)
            .uri(path)
            .header(header_name.as_str(), header_value.as_str())
            .header("authorization", authorization.as_str())
            .header("x-request-id", header_value.as_str())
            .body(Body::from(r#"{"visitor":"v","url":"/"}"#))
        else { return Ok(()) };
        let answer = runtime().block_on(send(&app, request));
        if head {
            // A HEAD response has no body; its status and type still count.
            prop_assert!(!answer.status.is_server_error());
        } else {
            check(&answer)?;
        }
    }
}

/// Text for the browser routes' fields: URLs of every scheme, tracking
/// parameters, and anything at all.
fn textish() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9:/?#&=+%._~ -]{0,40}",
        "(https?://|javascript:|data:|/)[a-zA-Z.%é/]{0,20}(\\?(utm_[a-z]+|fbclid|id)=[a-z]{0,3}){0,3}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Fuzz-like: whatever a Plausible-style body holds, the answer is
    /// 202 `ok` or a JSON error, never a 5xx.
    #[test]
    fn any_plausible_body_is_answered_cleanly(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            (textish(), textish(), textish()).prop_map(|(n, u, d)| {
                json!({"n": n, "u": u, "d": d, "r": null}).to_string().into_bytes()
            }),
            (textish(), textish()).prop_map(|(n, u)| {
                json!({"name": n, "url": u, "props": {"k": [1, null]}, "h": true}).to_string().into_bytes()
            }),
        ],
        ua in prop_oneof![Just(BROWSER_UA.to_string()), Just(BROWSER_UA.replace("Firefox", "HeadlessChrome")), "[ -~]{0,40}"],
        forwarded in "[ -~]{0,40}",
    ) {
        let mut limits = HttpLimits::standard();
        limits.browser.proxies = TrustedProxies::new(vec!["0.0.0.0/0".parse().unwrap()]);
        let (app, _) = with_limits(limits);
        let Ok(request) = Request::post("/api/event")
            .header("content-type", "text/plain")
            .header("user-agent", ua.as_str())
            .header("x-forwarded-for", forwarded.as_str())
            .header("forwarded", forwarded.as_str())
            .body(Body::from(body))
        else { return Ok(()) };
        let answer = runtime().block_on(send(&app, request));
        check(&answer)?;
        if answer.status == StatusCode::ACCEPTED {
            prop_assert_eq!(answer.body.as_slice(), b"ok");
        }
    }

    /// Fuzz-like: whatever `/count`'s query and headers hold, the answer
    /// is the GIF or a JSON error.
    #[test]
    fn any_pixel_query_is_answered_cleanly(
        p in textish(),
        rest in "[a-z=&%0-9]{0,30}",
        referer in textish(),
        encoded in any::<bool>(),
    ) {
        let (app, _) = default_app();
        let p = if encoded { p.bytes().map(|b| format!("%{b:02X}")).collect() } else { p };
        let Ok(request) = Request::get(format!("/count?p={p}&{rest}"))
            .header("user-agent", BROWSER_UA)
            .header("referer", referer.as_str())
            .body(Body::empty())
        else { return Ok(()) };
        let answer = runtime().block_on(send(&app, request));
        check(&answer)?;
        if answer.status == StatusCode::OK {
            prop_assert_eq!(answer.body.as_slice(), &PIXEL[..]);
        }
    }
}
