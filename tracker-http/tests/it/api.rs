//! In-process tests of every endpoint and every error status, through
//! `tower::ServiceExt::oneshot` on the real router.

use std::net::SocketAddr;
use std::time::Duration;

use crate::app::*;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use tracker_http::HttpLimits;
use tracker_http::rate_limit::RateLimiter;

#[tokio::test]
async fn events_are_counted_once_per_visitor() {
    let (app, _) = default_app();
    let url = "https://example.com/pricing";
    for visitor in ["alice", "bob", "alice"] {
        let answer = record(&app, visitor, url).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED);
        assert!(answer.body.is_empty());
    }
    let answer = distinct(&app, "url=https%3A%2F%2Fexample.com%2Fpricing").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json(),
        serde_json::json!({"url": url, "distinct_visitors": 2, "exact": true})
    );
}

#[tokio::test]
async fn unknown_page_is_zero_not_404() {
    let (app, _) = default_app();
    let answer = distinct(&app, "url=/never").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["distinct_visitors"], 0);
}

#[tokio::test]
async fn text_plain_and_untyped_bodies_are_json_and_unknown_fields_ignored() {
    let (app, _) = default_app();
    let body = r#"{"visitor":"v1","url":"/a","referrer":"x","n":[1,2]}"#;
    for content_type in [Some("text/plain;charset=UTF-8"), None] {
        let mut request = Request::post("/events");
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let answer = send(&app, request.body(Body::from(body)).unwrap()).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{content_type:?}");
    }
    assert_eq!(
        distinct(&app, "url=/a").await.json()["distinct_visitors"],
        1
    );
}

#[tokio::test]
async fn unsupported_content_type_is_415() {
    let (app, _) = default_app();
    let request = Request::post("/events")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("visitor=v&url=/"))
        .unwrap();
    let answer = send(&app, request).await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(answer.error_code(), "unsupported_media_type");
}

#[tokio::test]
async fn compressed_bodies_are_415_not_malformed_json() {
    let (app, state) = default_app();
    // The first bytes of a gzip stream: what a compressing client sends.
    let gzip: &[u8] = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xab\x56\x2a\x2d\xca";
    for (path, content_type) in [
        ("/events", "application/json"),
        ("/api/event", "text/plain"),
        ("/events/batch", "application/x-ndjson"),
        ("/events/batch", "application/json"),
    ] {
        let request = Request::post(path)
            .header("content-type", content_type)
            .header("content-encoding", "gzip")
            .body(Body::from(gzip))
            .unwrap();
        let answer = send(&app, request).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type".into()
            ),
            "{path} {content_type}"
        );
    }
    // `identity` is no compression, and a body that is JSON is read.
    let request = Request::post("/events")
        .header("content-type", "application/json")
        .header("content-encoding", "identity")
        .body(Body::from(r#"{"visitor":"v","url":"/plain"}"#))
        .unwrap();
    assert_eq!(send(&app, request).await.status, StatusCode::ACCEPTED);
    let request = Request::post("/events")
        .header("content-type", "application/json")
        .header("content-encoding", "identity")
        .body(Body::from("{not json"))
        .unwrap();
    assert_eq!(send(&app, request).await.error_code(), "malformed_json");
    assert_eq!(state.tracker().unwrap().stats().pairs, 1);
}

#[tokio::test]
async fn bad_bodies_are_400_with_a_code() {
    let (app, state) = default_app();
    let long_visitor = "v".repeat(257);
    let long_url = format!("/{}", "p".repeat(2048));
    let cases: Vec<(String, &str)> = vec![
        ("{".into(), "malformed_json"),
        ("".into(), "malformed_json"),
        ("not json".into(), "malformed_json"),
        (
            r#"{"visitor":"v","url":"/"} trailing"#.into(),
            "malformed_json",
        ),
        (r#"{"visitor":7,"url":"/"}"#.into(), "invalid_event"),
        (r#"{"visitor":"v","url":null}"#.into(), "invalid_event"),
        (r#"{"visitor":"v"}"#.into(), "invalid_event"),
        (
            r#"{"visitor":"v","url":"/","referrer":7}"#.into(),
            "invalid_event",
        ),
        (r#"["v","/"]"#.into(), "invalid_event"),
        (r#"{"visitor":"","url":"/"}"#.into(), "empty"),
        (r#"{"visitor":"v","url":"   "}"#.into(), "empty"),
        (
            format!(r#"{{"visitor":"{long_visitor}","url":"/"}}"#),
            "too_long",
        ),
        (
            format!(r#"{{"visitor":"v","url":"{long_url}"}}"#),
            "too_long",
        ),
    ];
    for (body, code) in cases {
        let answer = post_json(&app, body.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer.error_code(), code, "{body}");
    }
    assert_eq!(
        state.tracker().unwrap().stats().pairs,
        0,
        "refusals change nothing"
    );
    // The limits are inclusive.
    let at_limit = format!(r#"{{"visitor":"{}","url":"/"}}"#, "v".repeat(256));
    assert_eq!(post_json(&app, at_limit).await.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn oversized_body_is_413_declared_or_streamed() {
    let (app, _) = with_limits(HttpLimits {
        body_limit: 100,
        ..HttpLimits::standard()
    });
    let big = format!(r#"{{"visitor":"v","url":"/{}"}}"#, "x".repeat(200));
    let answer = post_json(&app, big.clone()).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.error_code(), "payload_too_large");

    // Without a Content-Length the limit is enforced while reading.
    let chunks: Vec<Result<String, std::io::Error>> =
        vec![Ok(big[..60].into()), Ok(big[60..].into())];
    let request = Request::post("/events")
        .header("content-type", "application/json")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    let answer = send(&app, request).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.error_code(), "payload_too_large");
}

#[tokio::test]
async fn wrong_method_is_405_json_with_allow() {
    let (app, _) = default_app();
    for (method, uri) in [
        (Method::GET, "/events"),
        (Method::DELETE, "/distinct?url=/"),
        (Method::POST, "/stats"),
        (Method::POST, "/series?url=/"),
        (Method::PUT, "/healthz"),
    ] {
        let request = Request::builder()
            .method(method.clone())
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let answer = send(&app, request).await;
        assert_eq!(
            answer.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}"
        );
        assert_eq!(answer.error_code(), "method_not_allowed");
        assert!(answer.headers.contains_key("allow"), "{method} {uri}");
    }
}

/// `Allow` on a 405 lists exactly the methods the route answers: the
/// route's own (`HEAD` with `GET`), and `OPTIONS` when CORS answers
/// preflights, on every route, and only then.
#[tokio::test]
async fn allow_lists_exactly_the_methods_a_route_answers() {
    let methods = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ];
    let routes = [
        "/events",
        "/events/batch",
        "/events/ws",
        "/api/event",
        "/count",
        "/distinct?url=/",
        "/top",
        "/series?url=/",
        "/pages",
        "/stats",
        "/healthz",
        "/readyz",
        "/metrics",
        "/",
        "/tracker.js",
    ];
    for origins in [vec!["*"], vec!["https://site.example"], vec![]] {
        let (app, _) = with_limits(HttpLimits {
            cors_origins: origins.iter().map(|o| o.to_string()).collect(),
            ..HttpLimits::standard()
        });
        for uri in routes {
            let call = |method: Method| {
                let request = Request::builder()
                    .method(method)
                    .uri(uri)
                    .header("origin", "https://site.example")
                    .header("access-control-request-method", "POST")
                    .body(Body::empty())
                    .unwrap();
                send(&app, request)
            };
            let refused = call(Method::PUT).await;
            assert_eq!(refused.status, StatusCode::METHOD_NOT_ALLOWED, "{uri}");
            let allow = refused.headers["allow"].to_str().unwrap().to_string();
            let mut listed: Vec<&str> = allow.split(',').map(str::trim).collect();
            listed.sort_unstable();
            let mut answered = Vec::new();
            for method in &methods {
                if call(method.clone()).await.status != StatusCode::METHOD_NOT_ALLOWED {
                    answered.push(method.as_str());
                }
            }
            answered.sort_unstable();
            assert_eq!(
                listed, answered,
                "{uri} under CORS {origins:?}: Allow {allow:?}"
            );
            assert_eq!(
                listed.contains(&"OPTIONS"),
                !origins.is_empty(),
                "{uri} under CORS {origins:?}"
            );
        }
    }
}

#[tokio::test]
async fn unknown_route_is_404_json() {
    let (app, _) = default_app();
    // (`/` is the dashboard.)
    for uri in ["/nope", "/events/1", "/distinct/x", "/%FF"] {
        let answer = get(&app, uri).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(answer.error_code(), "not_found");
    }
}

/// CORS answers `OPTIONS` on the routes, not on every path: a preflight
/// (or a plain `OPTIONS`) of a path no route has is the 404 of any other
/// method, not an empty 200 saying the path exists.
#[tokio::test]
async fn options_of_an_unknown_route_is_404_json() {
    for origins in [vec!["*"], vec!["https://site.example"], vec![]] {
        let (app, _) = with_limits(HttpLimits {
            cors_origins: origins.iter().map(|o| o.to_string()).collect(),
            ..HttpLimits::standard()
        });
        let options = |uri: &str, preflight: bool| {
            let mut request = Request::builder().method(Method::OPTIONS).uri(uri);
            if preflight {
                request = request
                    .header("origin", "https://site.example")
                    .header("access-control-request-method", "POST");
            }
            request.body(Body::empty()).unwrap()
        };
        // (`/dashboard/` holds a few files, not every name under it.)
        for uri in [
            "/nope",
            "/events/",
            "/distinct/x",
            "/events/batch/1",
            "/dashboard/nope.js",
        ] {
            for preflight in [true, false] {
                let answer = send(&app, options(uri, preflight)).await;
                let case = format!("{uri} (preflight: {preflight}, CORS {origins:?})");
                assert_eq!(answer.status, StatusCode::NOT_FOUND, "{case}");
                assert_eq!(answer.error_code(), "not_found", "{case}");
            }
        }
        // Still answered: `OPTIONS *` (it asks about the server, not a
        // path) and a route's preflight.
        for (uri, preflight) in [("*", false), ("/events", true)] {
            let answer = send(&app, options(uri, preflight)).await;
            assert_eq!(
                answer.status.is_success(),
                !origins.is_empty(),
                "OPTIONS {uri} (preflight: {preflight}) under CORS {origins:?}: {}",
                answer.status
            );
        }
    }
}

#[tokio::test]
async fn unicode_and_percent_encoded_urls_are_one_page() {
    let (app, _) = default_app();
    assert_eq!(
        record(&app, "a", "https://example.com/café?q=ü")
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        record(&app, "b", "https://EXAMPLE.com/caf%c3%a9?q=%C3%BC#top")
            .await
            .status,
        StatusCode::ACCEPTED
    );
    // The same page, whether the query string carries it encoded or not.
    for query in [
        "url=https%3A%2F%2Fexample.com%2Fcaf%C3%A9%3Fq%3D%C3%BC",
        "url=https://example.com/caf%C3%A9%3Fq=%C3%BC",
        "url=https%3A%2F%2Fexample.com%2Fcaf%25C3%25A9%3Fq%3D%25C3%25BC",
        "url=https://example.com/caf%25c3%25a9%3Fq=%25c3%25bc",
    ] {
        let answer = distinct(&app, query).await;
        assert_eq!(answer.status, StatusCode::OK, "{query}");
        let json = answer.json();
        assert_eq!(json["distinct_visitors"], 2, "{query}: {json}");
        // The answer names the page by its canonical URL, however asked.
        assert_eq!(
            json["url"], "https://example.com/caf%C3%A9?q=%C3%BC",
            "{query}"
        );
    }
}

#[tokio::test]
async fn distinct_query_errors() {
    let (app, _) = default_app();
    let cases = [
        ("/distinct", "invalid_query"),
        ("/distinct?page=/", "invalid_query"),
        ("/distinct?url=", "empty"),
        ("/distinct?url=+++", "empty"),
        ("/distinct?url=%FF%FE", "invalid_utf8"),
    ];
    for (uri, code) in cases {
        let answer = get(&app, uri).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(answer.error_code(), code, "{uri}");
    }
    let long = format!("/distinct?url=/{}", "x".repeat(2048));
    let answer = get(&app, &long).await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "too_long")
    );
}

#[tokio::test]
async fn top_ranks_pages_and_checks_limit() {
    let (app, _) = default_app();
    for (visitor, url) in [
        ("a", "/x"),
        ("b", "/x"),
        ("c", "/x"),
        ("a", "/y"),
        ("b", "/y"),
        ("a", "/z"),
    ] {
        record(&app, visitor, url).await;
    }
    let json = get(&app, "/top?limit=2").await.json();
    assert_eq!(
        json,
        serde_json::json!({"pages": [
            {"url": "/x", "distinct_visitors": 3, "exact": true},
            {"url": "/y", "distinct_visitors": 2, "exact": true},
        ]})
    );
    assert_eq!(
        get(&app, "/top").await.json()["pages"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        get(&app, "/top?limit=0").await.json()["pages"],
        serde_json::json!([])
    );
    for bad in [
        "/top?limit=-1",
        "/top?limit=abc",
        "/top?limit=1001",
        "/top?limit=99999999999999999999999",
    ] {
        let answer = get(&app, bad).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(answer.error_code(), "invalid_query");
    }
}

#[tokio::test]
async fn stats_health_and_readiness() {
    let (app, state) = default_app();
    record(&app, "a", "/x").await;
    record(&app, "b", "/x").await;
    let stats = get(&app, "/stats").await.json();
    assert_eq!(
        (stats["pages"].as_u64(), stats["pairs"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(stats["bytes"].as_u64().unwrap() > 0);
    assert!(stats["stripes"].as_u64().unwrap().is_power_of_two());

    assert_eq!(get(&app, "/healthz").await.json()["status"], "ok");
    assert_eq!(get(&app, "/readyz").await.json()["status"], "ready");
    state.shutdown.trigger();
    let answer = get(&app, "/readyz").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.error_code(), "shutting_down");
    assert_eq!(
        get(&app, "/healthz").await.status,
        StatusCode::OK,
        "still alive while draining"
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let (app, _) = default_app();
    record(&app, "a", "/x").await;
    record(&app, "a", "/x").await;
    get(&app, "/nope").await;
    // Every route has its own label, the batch and WebSocket ones too.
    let batch = Request::post("/events/batch")
        .header("content-type", "application/json")
        .body(Body::from(r#"[{"visitor": "", "url": "/y"}]"#)) // refused alone
        .unwrap();
    assert_eq!(send(&app, batch).await.status, StatusCode::ACCEPTED);
    get(&app, "/events/ws").await; // not an upgrade: 400
    get(&app, "/").await;
    let answer = get(&app, "/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = String::from_utf8(answer.body).unwrap();
    for line in [
        "tracker_http_requests_total{route=\"/events\",status=\"202\"} 2",
        "tracker_http_requests_total{route=\"other\",status=\"404\"} 1",
        "tracker_http_requests_total{route=\"/events/batch\",status=\"202\"} 1",
        "tracker_http_requests_total{route=\"/events/ws\",status=\"400\"} 1",
        "tracker_http_requests_total{route=\"/\",status=\"200\"} 1",
        "tracker_http_request_duration_seconds_count{route=\"/events\"} 2",
        "tracker_events_recorded_total{result=\"new\"} 1",
        "tracker_events_recorded_total{result=\"duplicate\"} 1",
        "tracker_pages 1",
        "tracker_pairs 1",
        "tracker_sketched_visitors 0",
        "tracker_exact_share 1\n",
        "# TYPE tracker_bytes gauge",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // Every sample line is `name{labels} number` or `name number`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample {line:?}");
    }
}

#[tokio::test]
async fn bearer_token_guards_reads_but_not_ingest() {
    let (app, _) = with_limits(HttpLimits {
        auth_token: Some("s3cret".into()),
        ..HttpLimits::standard()
    });
    assert_eq!(record(&app, "a", "/x").await.status, StatusCode::ACCEPTED);
    for uri in [
        "/distinct?url=/x",
        "/top",
        "/series?url=/x",
        "/pages",
        "/stats",
        "/metrics",
    ] {
        let answer = get(&app, uri).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(answer.error_code(), "unauthorized");
        assert_eq!(answer.headers["www-authenticate"], "Bearer");
        let (ok, unauthorized) = (StatusCode::OK, StatusCode::UNAUTHORIZED);
        // The scheme is case-insensitive (RFC 9110, 11.1); the token not.
        for (header, status) in [
            ("Bearer wrong", unauthorized),
            ("Bearer s3cre", unauthorized),
            ("s3cret", unauthorized),
            ("Basic czNjcmV0", unauthorized),
            ("Bearer S3CRET", unauthorized),
            ("Bearer s3cret", ok),
            ("bearer s3cret", ok),
            ("BEARER s3cret", ok),
            // Spaces between scheme and token: `1*SP` (RFC 9110, 11.4).
            ("Bearer   s3cret", ok),
            ("Bearer\ts3cret", unauthorized),
        ] {
            let request = Request::get(uri)
                .header("authorization", header)
                .body(Body::empty())
                .unwrap();
            assert_eq!(send(&app, request).await.status, status, "{uri} {header}");
        }
    }
    assert_eq!(get(&app, "/healthz").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/readyz").await.status, StatusCode::OK);
}

/// A wrong token is told apart from none (RFC 6750, 3.1): the same 401
/// and code, but `WWW-Authenticate: Bearer error="invalid_token"` and a
/// message that says the token is wrong, not that one is needed, so an
/// operator checks its value rather than how it is sent.
#[tokio::test]
async fn a_wrong_token_is_told_apart_from_none() {
    let (app, _) = with_limits(HttpLimits {
        auth_token: Some("s3cret".into()),
        ..HttpLimits::standard()
    });
    for (header, challenge, says) in [
        (None, "Bearer", "needs"),
        (Some("Basic czNjcmV0"), "Bearer", "needs"),
        (Some("Bearer "), "Bearer", "needs"),
        (
            Some("Bearer wrong"),
            "Bearer error=\"invalid_token\"",
            "not the one",
        ),
    ] {
        let mut request = Request::get("/stats");
        if let Some(header) = header {
            request = request.header("authorization", header);
        }
        let answer = send(&app, request.body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{header:?}");
        assert_eq!(answer.error_code(), "unauthorized");
        assert_eq!(answer.headers["www-authenticate"], challenge, "{header:?}");
        let message = answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains(says), "{header:?}: {message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
}

/// A token read with white space around it (a Kubernetes secret or a
/// file ending in a newline, a space in an `.env` file) is the token
/// without it: HTTP drops the space around a header's value, so kept it
/// refused every read, the right token included. One that is only white
/// space, or holds a control character no header can carry, is refused
/// at start, without naming it.
#[tokio::test]
async fn a_token_read_with_a_trailing_newline_is_the_token() {
    use tracker_http::Config;
    for given in ["s3cret\n", " s3cret \r\n", "\ts3cret"] {
        let config = Config::from_args(["tracker-http", "--auth-token", given]).unwrap();
        let app = tracker_http::app(tracker_http::AppState::from_config(&config).unwrap());
        for (header, status) in [
            ("Bearer s3cret", StatusCode::OK),
            ("Bearer s3cre", StatusCode::UNAUTHORIZED),
        ] {
            let request = Request::get("/stats")
                .header("authorization", header)
                .body(Body::empty())
                .unwrap();
            assert_eq!(
                send(&app, request).await.status,
                status,
                "{given:?} {header}"
            );
        }
    }
    for refused in [" \n", "s3\ncret", "s3\u{7f}cret"] {
        let config = Config::from_args(["tracker-http", "--auth-token", refused]).unwrap();
        let error = config.validate().unwrap_err();
        assert!(error.contains("--auth-token"), "{error}");
        assert!(!error.contains("s3"), "the token is not shown: {error}");
    }
}

#[tokio::test]
async fn rate_limit_is_per_ip_and_spares_health() {
    let (app, _) = with_limits(HttpLimits {
        // A token per 1000 s: no refill during the test, however slow.
        rate_limiter: Some(RateLimiter::new(0.001, 2.0)),
        ..HttpLimits::standard()
    });
    let from = |ip: [u8; 4]| {
        let mut request = Request::get("/distinct?url=/").body(Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 5000))));
        request
    };
    assert_eq!(send(&app, from([10, 0, 0, 1])).await.status, StatusCode::OK);
    assert_eq!(send(&app, from([10, 0, 0, 1])).await.status, StatusCode::OK);
    let answer = send(&app, from([10, 0, 0, 1])).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer.error_code(), "rate_limited");
    assert_eq!(answer.headers["retry-after"], "1000");
    assert_eq!(send(&app, from([10, 0, 0, 2])).await.status, StatusCode::OK);
    for _ in 0..5 {
        assert_eq!(get(&app, "/healthz").await.status, StatusCode::OK);
    }
}

/// A browser sender told to wait can read for how long: `Retry-After`
/// is not a CORS-safelisted response header, so without being exposed a
/// page's script sees the 429 but not when to try again. Under any
/// origin (the fast path) and a list of origins (tower-http's) alike.
#[tokio::test]
async fn a_page_can_read_retry_after_across_origins() {
    for origins in [vec!["*".to_string()], vec!["https://site.example".into()]] {
        let (app, _) = with_limits(HttpLimits {
            rate_limiter: Some(RateLimiter::new(0.001, 1.0)),
            cors_origins: origins.clone(),
            ..HttpLimits::standard()
        });
        let event = || {
            Request::post("/events")
                .header("origin", "https://site.example")
                .header("content-type", "text/plain")
                .body(Body::from(r#"{"url":"/"}"#))
                .unwrap()
        };
        assert_eq!(send(&app, event()).await.status, StatusCode::ACCEPTED);
        let answer = send(&app, event()).await;
        assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS, "{origins:?}");
        assert_eq!(answer.headers["retry-after"], "1000");
        let exposed = answer.headers["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        let exposed: Vec<&str> = exposed.split(',').map(str::trim).collect();
        assert!(exposed.contains(&"retry-after"), "{origins:?}: {exposed:?}");
        assert!(
            exposed.contains(&"x-request-id"),
            "{origins:?}: {exposed:?}"
        );
    }
}

/// A preflight's answer says how long the browser may reuse it, so a
/// page posting JSON events does not send a preflight before each one
/// (browsers keep one 5 s without `Access-Control-Max-Age`).
#[tokio::test]
async fn preflights_are_cached_by_browsers() {
    for origins in [vec!["*".to_string()], vec!["https://site.example".into()]] {
        let (app, _) = with_limits(HttpLimits {
            cors_origins: origins.clone(),
            ..HttpLimits::standard()
        });
        let answer = send(&app, events_preflight()).await;
        assert_eq!(answer.status, StatusCode::OK, "{origins:?}");
        assert_eq!(
            answer.headers["access-control-max-age"], "7200",
            "{origins:?}"
        );
    }
}

/// Every 503 a client should retry says when: the connection cap's too
/// (its message says to retry shortly), as the connection layer sends it.
#[tokio::test]
async fn retryable_503s_carry_retry_after() {
    use axum::response::IntoResponse;
    use tracker_http::error::AppError;
    for error in [
        AppError::TooManyConnections,
        AppError::Recovering,
        AppError::Storage("disk full".into()),
        AppError::Cluster("no owner".into()),
    ] {
        let response = error.clone().into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "1", "{error:?}");
    }
}

#[tokio::test]
async fn slow_request_times_out_with_408() {
    let (app, _) = with_limits(HttpLimits {
        request_timeout: Duration::from_millis(100),
        ..HttpLimits::standard()
    });
    // A body that sends half an event and then stalls.
    let mut sent = false;
    let stalled = futures_util::stream::poll_fn(move |_| {
        if std::mem::replace(&mut sent, true) {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(Some(Ok::<_, std::io::Error>(r#"{"visitor":"#)))
        }
    });
    let request = Request::post("/events")
        .header("content-type", "application/json")
        .body(Body::from_stream(stalled))
        .unwrap();
    let answer = send(&app, request).await;
    assert_eq!(answer.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(answer.error_code(), "request_timeout");
}

/// A browser's preflight of a JSON `POST /events` from `https://site.example`.
fn events_preflight() -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/events")
        .header("origin", "https://site.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn cors_preflight_and_headers() {
    let (app, _) = with_limits(HttpLimits {
        cors_origins: vec!["https://site.example".into()],
        ..HttpLimits::standard()
    });
    let answer = send(&app, events_preflight()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.headers["access-control-allow-origin"],
        "https://site.example"
    );

    let request = Request::post("/events")
        .header("origin", "https://site.example")
        .header("content-type", "text/plain")
        .body(Body::from(r#"{"visitor":"v","url":"/"}"#))
        .unwrap();
    let answer = send(&app, request).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(
        answer.headers["access-control-allow-origin"],
        "https://site.example"
    );

    // Reads too, such as a dashboard's series on another origin.
    let request = Request::get("/series?url=/&from=-1d")
        .header("origin", "https://site.example")
        .body(Body::empty())
        .unwrap();
    let answer = send(&app, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.headers["access-control-allow-origin"],
        "https://site.example"
    );
}

/// Under the `reject` policy a full budget answers 507 with a JSON error,
/// and what was stored before stays counted.
#[tokio::test]
async fn memory_full_under_reject_is_507_and_keeps_counts() {
    use std::sync::Arc;
    use tracker_core::{MemoryPolicy, Tracker};
    use tracker_http::{AppState, app};

    let tracker = Tracker::builder()
        .stripes(1)
        .max_memory(2_000)
        .memory_policy(MemoryPolicy::Reject)
        .build()
        .unwrap();
    let state = AppState::new(Arc::new(tracker), HttpLimits::standard());
    let app = app(state.clone());
    assert_eq!(
        record(&app, "v1", "/kept").await.status,
        StatusCode::ACCEPTED
    );
    let mut refused = None;
    for page in 0..100 {
        let answer = record(&app, "v1", &format!("/page-{page:0>40}")).await;
        if answer.status != StatusCode::ACCEPTED {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("a 2,000-byte budget fills up");
    assert_eq!(refused.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(refused.error_code(), "memory_full");
    assert_eq!(
        distinct(&app, "url=/kept").await.json()["distinct_visitors"],
        1
    );
    let stats = send(&app, Request::get("/stats").body(Body::empty()).unwrap()).await;
    assert_eq!(stats.json()["rejections"], 1);
    assert_eq!(stats.json()["max_bytes"], 2_000);
    let metrics = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(text.contains("tracker_rejections_total 1\n"), "{text}");
}

#[tokio::test]
async fn with_a_ttl_visitors_expire_and_stats_say_so() {
    use std::sync::Arc;
    use tracker_core::{ManualClock, Timestamp, Tracker};
    use tracker_http::{AppState, app};

    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let tracker = Tracker::builder()
        .stripes(1)
        .ttl(Duration::from_secs(60))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let app = app(AppState::new(Arc::new(tracker), HttpLimits::standard()));
    for visitor in ["a", "b"] {
        assert_eq!(
            record(&app, visitor, "/p").await.status,
            StatusCode::ACCEPTED
        );
    }
    clock.advance(Duration::from_secs(30));
    record(&app, "a", "/p").await;
    clock.advance(Duration::from_secs(30));
    // b's visit was 60 s ago: gone; a came back 30 s ago.
    assert_eq!(
        distinct(&app, "url=/p").await.json()["distinct_visitors"],
        1
    );
    clock.advance(Duration::from_secs(30));
    assert_eq!(
        distinct(&app, "url=/p").await.json()["distinct_visitors"],
        0
    );
    assert_eq!(
        get(&app, "/top?limit=5").await.json(),
        serde_json::json!({"pages": []})
    );
    // Until a sweep runs the page is still held; records (here of another
    // page) run sweep steps as they go, which drop it.
    assert_eq!(get(&app, "/stats").await.json()["pages"], 1);
    for i in 0..=64 {
        record(&app, &format!("w{i}"), "/q").await;
    }
    let stats = get(&app, "/stats").await.json();
    assert_eq!(stats["pages"], 1, "{stats}");
    assert_eq!(stats["expirations"], 2, "{stats}");
    assert_eq!(stats["expired_pages"], 1, "{stats}");
    let text = String::from_utf8(get(&app, "/metrics").await.body).unwrap();
    assert!(text.contains("tracker_expirations_total 2\n"), "{text}");
    assert!(text.contains("tracker_expired_pages_total 1\n"), "{text}");
}

#[tokio::test]
async fn while_recovering_only_healthz_answers_and_everything_else_is_503() {
    let state = tracker_http::AppState::recovering(HttpLimits::standard());
    let app = tracker_http::app(state.clone());
    assert_eq!(get(&app, "/healthz").await.status, StatusCode::OK);
    for uri in ["/readyz", "/distinct?url=/a", "/top", "/stats", "/metrics"] {
        let answer = get(&app, uri).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert_eq!(answer.error_code(), "recovering", "{uri}");
        assert_eq!(answer.headers["retry-after"], "1", "{uri}");
    }
    let answer = record(&app, "v", "/a").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.error_code(), "recovering");

    // Recovered: the same app serves.
    let tracker = std::sync::Arc::new(tracker_core::Tracker::new());
    assert!(state.set_store(tracker_http::Store::Memory(tracker.clone())));
    assert!(
        !state.set_store(tracker_http::Store::Memory(tracker)),
        "only once"
    );
    assert_eq!(get(&app, "/readyz").await.status, StatusCode::OK);
    assert_eq!(record(&app, "v", "/a").await.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn with_a_data_dir_stats_and_metrics_report_the_log_and_snapshots() {
    use tracker_core::persist::{DurableTracker, LogOptions};
    let dir = tempfile::tempdir().unwrap();
    let (durable, report) = DurableTracker::open(
        dir.path(),
        tracker_core::Tracker::builder(),
        LogOptions::default(),
    )
    .unwrap();
    let state = tracker_http::AppState::recovering(HttpLimits::standard());
    state.set_store(tracker_http::Store::Durable {
        durable: std::sync::Arc::new(durable),
        recovered: tracker_http::store::Recovered::new(&report, Duration::from_millis(3)),
    });
    let app = tracker_http::app(state);
    assert_eq!(record(&app, "v", "/a").await.status, StatusCode::ACCEPTED);
    let stats = get(&app, "/stats").await.json();
    let persistence = &stats["persistence"];
    assert_eq!(persistence["fsync"], "always");
    assert_eq!(persistence["snapshots_written"], 1);
    assert!(persistence["log_bytes_since_snapshot"].as_u64().unwrap() > 0);
    assert_eq!(persistence["recovery"]["replayed_events"], 0);
    assert_eq!(persistence["recovery"]["took_ms"], 3.0);
    let metrics = String::from_utf8(get(&app, "/metrics").await.body).unwrap();
    assert!(metrics.contains("tracker_snapshots_total 1"), "{metrics}");
    assert!(metrics.contains("# TYPE tracker_log_bytes_since_snapshot gauge"));

    // In memory there is no persistence section.
    let (memory, _) = default_app();
    assert!(get(&memory, "/stats").await.json()["persistence"].is_null());
}

/// Under the `sketch` policy `/stats` and `/metrics` say how much of the
/// data is exact.
#[tokio::test]
async fn stats_say_how_much_is_exact() {
    use std::sync::Arc;
    use tracker_core::{MemoryPolicy, Tracker};
    use tracker_http::{AppState, app};

    let tracker = Tracker::builder()
        .stripes(1)
        .max_memory(100_000)
        .memory_policy(MemoryPolicy::Sketch)
        .build()
        .unwrap();
    for v in 0..20_000 {
        tracker
            .record(&format!("v{v}"), "https://example.com/big")
            .unwrap();
    }
    for page in 0..50 {
        tracker
            .record("one", &format!("https://example.com/{page}"))
            .unwrap();
    }
    let app = app(AppState::new(Arc::new(tracker), HttpLimits::standard()));
    let stats = send(&app, Request::get("/stats").body(Body::empty()).unwrap())
        .await
        .json();
    assert_eq!(stats["sketched_pages"], 1, "{stats}");
    assert_eq!(stats["exact_pages"], 50, "{stats}");
    let sketched = stats["sketched_visitors"].as_f64().unwrap();
    assert!((sketched - 20_000.0).abs() < 1_000.0, "{stats}");
    let share = stats["exact_share"].as_f64().unwrap();
    let expected = 50.0 / (50.0 + sketched);
    assert!((share - expected).abs() < 1e-9, "{stats}");
    let metrics = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let text = String::from_utf8(metrics.body).unwrap();
    // Compared as numbers: serde_json's default float parsing may read
    // the JSON's shortest digits one ULP off, so the texts can differ.
    let in_metrics: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("tracker_exact_share "))
        .expect("tracker_exact_share in /metrics")
        .parse()
        .unwrap();
    assert!((in_metrics - share).abs() < 1e-12, "{text}");
}
