//! The browser routes in process: `/tracker.js`, Plausible's `/api/event`,
//! GoatCounter's `/count`, `/events` without a visitor, CORS preflights,
//! client addresses through trusted proxies, bot drops and the URL rules.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::app::*;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;
use tracker_core::Tracker;
use tracker_core::browser::BotFilter;
use tracker_http::browser::{PIXEL, TRACKER_JS};
use tracker_http::client_ip::TrustedProxies;
use tracker_http::rate_limit::RateLimiter;
use tracker_http::{AppState, HttpLimits, app};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";
const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1";
const HEADLESS: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/140.0.0.0 Safari/537.36";

/// A request from the socket peer `peer` with these headers.
fn from(
    method: Method,
    uri: &str,
    peer: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Request<Body> {
    let mut request = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut request = request.body(body.into()).unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

async fn plausible(router: &Router, ua: &str, body: serde_json::Value) -> Answer {
    let request = from(
        Method::POST,
        "/api/event",
        "198.51.100.10:5000",
        &[("content-type", "text/plain"), ("user-agent", ua)],
        body.to_string(),
    );
    send(router, request).await
}

async fn visitors(router: &Router, url: &str) -> u64 {
    let answer = get(router, &format!("/distinct?url={}", urlencode(url))).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json());
    answer.json()["distinct_visitors"].as_u64().unwrap()
}

/// Every byte of `s` percent-encoded, for a query string.
pub(crate) fn urlencode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

async fn stats(router: &Router) -> serde_json::Value {
    get(router, "/stats").await.json()
}

fn app_with(tracker: Tracker, limits: impl FnOnce(&mut HttpLimits)) -> (Router, AppState) {
    let mut l = HttpLimits::standard();
    limits(&mut l);
    let state = AppState::new(Arc::new(tracker), l);
    (app(state.clone()), state)
}

#[tokio::test]
async fn plausible_events_count_pageviews_only() {
    let (app, _) = default_app();
    let page = "https://site.test/pricing";
    let answer = plausible(
        &app,
        FIREFOX,
        json!({"n": "pageview", "u": page, "d": "site.test", "r": null, "v": 36, "p": {"a": 1}, "h": 1, "i": false}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(answer.body, b"ok");
    assert!(
        answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    // The long aliases; the same browser again counts once.
    let answer = plausible(
        &app,
        FIREFOX,
        json!({"name": "pageview", "url": page, "domain": "site.test", "referrer": "https://news.test/", "props": "{}", "hashMode": 0, "interactive": true}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(visitors(&app, page).await, 1);
    // Another browser counts.
    plausible(
        &app,
        SAFARI,
        json!({"n": "pageview", "u": page, "d": "site.test"}),
    )
    .await;
    assert_eq!(visitors(&app, page).await, 2);
    // Other names are answered alike, and counted only by name.
    for name in ["engagement", "Signup", "engagement"] {
        let answer = plausible(&app, SAFARI, json!({"n": name, "u": "https://site.test/other", "d": "site.test", "sd": 40, "e": 1200})).await;
        assert_eq!(
            (answer.status, answer.body.as_slice()),
            (StatusCode::ACCEPTED, &b"ok"[..])
        );
    }
    assert_eq!(visitors(&app, "https://site.test/other").await, 0);
    let stats = stats(&app).await;
    assert_eq!(
        stats["custom_events"],
        json!({"engagement": 2, "Signup": 1})
    );
    assert_eq!(stats["pages"], 1);
}

#[tokio::test]
async fn a_plausible_path_is_a_page_of_its_domain() {
    let (app, _) = default_app();
    let answer = plausible(
        &app,
        FIREFOX,
        json!({"n": "pageview", "u": "/pricing", "d": "site.test"}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    // The same browser on the full URL is the same visitor of one page.
    plausible(
        &app,
        FIREFOX,
        json!({"n": "pageview", "u": "https://site.test/pricing", "d": "site.test"}),
    )
    .await;
    // A subfolder site is its host's; spaces and empty items are skipped.
    let answer = plausible(
        &app,
        FIREFOX,
        json!({"n": "pageview", "u": " /pricing", "d": ",Site.test/blog"}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(visitors(&app, "https://site.test/pricing").await, 1);
    assert_eq!(visitors(&app, "/pricing").await, 0);
    // An internationalised domain is the page's in punycode.
    let answer = plausible(
        &app,
        FIREFOX,
        json!({"n": "pageview", "u": "/x", "d": "bücher.test"}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(visitors(&app, "https://xn--bcher-kva.test/x").await, 1);
    // `d`'s host and port are read as a page URL's (`127.1` is an IPv4
    // address, a default port is none): the pages the same browser's full
    // URLs are.
    for (d, url) in [
        ("127.1", "https://127.0.0.1/x"),
        ("0x7F.0.0.1:443", "https://127.0.0.1/x"),
        ("[0:0::1]:0443", "https://[::1]/x"),
        ("s_t.test:", "https://s_t.test/x"),
    ] {
        let body = json!({"n": "pageview", "u": "/x", "d": d});
        let answer = plausible(&app, FIREFOX, body).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{d}");
        plausible(&app, FIREFOX, json!({"n": "pageview", "u": url})).await;
        assert_eq!(visitors(&app, url).await, 1, "{d}");
    }
    for body in [
        json!({"n": "pageview", "u": "/pricing", "d": "1.2.3.999"}),
        json!({"n": "pageview", "u": "/pricing", "d": "site.test:99999"}),
        json!({"n": "pageview", "u": "pricing", "d": "site.test"}),
        json!({"n": "pageview", "u": "/pricing", "d": "site.test:abc"}),
        json!({"n": "pageview", "u": "/pricing", "d": "user:pw"}),
        json!({"n": "Signup", "u": "/pricing", "d": "evil@site.test"}),
    ] {
        let answer = plausible(&app, FIREFOX, body.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer.error_code(), "invalid_url", "{body}");
    }
}

#[tokio::test]
async fn plausible_refusals_are_json_errors() {
    let (app, state) = default_app();
    let cases = [
        (
            json!({"n": "pageview", "u": "javascript:alert(1)"}),
            "invalid_url",
        ),
        (
            json!({"n": "custom", "u": "data:text/html,x"}),
            "invalid_url",
        ),
        (
            json!({"n": "pageview", "u": "https://site.test:99999/"}),
            "invalid_url",
        ),
        (
            json!({"n": "pageview", "u": "https://1.2.3.999/"}),
            "invalid_url",
        ),
        (
            json!({"n": "pageview", "u": "/x", "d": "site.test:65536"}),
            "invalid_url",
        ),
        (json!({"n": "pageview"}), "invalid_event"),
        (json!({"u": "https://site.test/"}), "invalid_event"),
        (json!({"n": 1, "u": "https://site.test/"}), "invalid_event"),
        (json!(["pageview", "https://site.test/"]), "invalid_event"),
    ];
    for (body, code) in cases {
        let answer = plausible(&app, FIREFOX, body.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer.error_code(), code, "{body}");
    }
    let request = from(
        Method::POST,
        "/api/event",
        "10.0.0.1:1",
        &[("content-type", "text/plain")],
        "{",
    );
    assert_eq!(send(&app, request).await.error_code(), "malformed_json");
    let request = from(
        Method::POST,
        "/api/event",
        "10.0.0.1:1",
        &[("content-type", "application/xml")],
        "<x/>",
    );
    assert_eq!(
        send(&app, request).await.error_code(),
        "unsupported_media_type"
    );
    assert_eq!(state.tracker().unwrap().stats().pairs, 0);
}

/// A service whose `--site` is `https://fallback.test`.
fn fallback_app() -> Router {
    app_with(Tracker::new(), |l| {
        l.browser.site = Some("https://fallback.test".into());
    })
    .0
}

/// A pixel request for `uri` from Firefox, with `headers`.
fn pixel(uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut all = vec![("user-agent", FIREFOX)];
    all.extend_from_slice(headers);
    from(Method::GET, uri, "192.0.2.1:1", &all, Body::empty())
}

#[tokio::test]
async fn the_pixel_counts_and_answers_a_gif() {
    let app = fallback_app();
    let answer = send(
        &app,
        pixel(
            "/count?p=/docs&t=Docs&r=&s=1280&rnd=123",
            &[("referer", "https://site.test/docs")],
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, PIXEL);
    assert_eq!(answer.body.len(), 43);
    assert_eq!(answer.headers["content-type"], "image/gif");
    assert_eq!(answer.headers["cache-control"], "no-store");
    assert_eq!(
        answer.headers["cross-origin-resource-policy"],
        "cross-origin"
    );
    assert_eq!(answer.headers["access-control-allow-origin"], "*");
    assert_eq!(visitors(&app, "https://site.test/docs").await, 1);
    // The Origin header wins over Referer; POST (sendBeacon) works alike.
    let mut beacon = pixel(
        "/count?p=%2Fa",
        &[("origin", "https://o.test"), ("referer", "https://r.test/")],
    );
    *beacon.method_mut() = Method::POST;
    assert_eq!(send(&app, beacon).await.status, StatusCode::OK);
    assert_eq!(visitors(&app, "https://o.test/a").await, 1);
    // No Origin or Referer: --site.
    send(&app, pixel("/count?p=/b", &[])).await;
    assert_eq!(visitors(&app, "https://fallback.test/b").await, 1);
    // Events and bot flags are not visits.
    for uri in [
        "/count?p=signup&e=true",
        "/count?p=/c&b=152",
        "/count?p=/c&b=150",
    ] {
        let answer = send(&app, pixel(uri, &[("referer", "https://site.test/")])).await;
        assert_eq!(
            (answer.status, answer.body.len()),
            (StatusCode::OK, 43),
            "{uri}"
        );
    }
    send(
        &app,
        pixel("/count?p=/c&b=149", &[("referer", "https://site.test/")]),
    )
    .await;
    assert_eq!(
        visitors(&app, "https://site.test/c").await,
        1,
        "b below 150 is not a flag"
    );
    // A HEAD (a link checker) is answered like the GET, without a body,
    // and is not a visit.
    let mut probe = pixel("/count?p=/head", &[("referer", "https://site.test/")]);
    *probe.method_mut() = Method::HEAD;
    let answer = send(&app, probe).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "image/gif");
    assert!(answer.body.is_empty());
    assert_eq!(visitors(&app, "https://site.test/head").await, 0);
    let mut bad = pixel("/count?p=javascript:alert(1)", &[]);
    *bad.method_mut() = Method::HEAD;
    assert_eq!(send(&app, bad).await.status, StatusCode::BAD_REQUEST);
    let stats = stats(&app).await;
    assert_eq!(stats["custom_events"]["signup"], 1);
    assert_eq!(stats["dropped_events"]["client_flag"], 2);
    // Bad input is a JSON error.
    for (uri, code) in [
        ("/count", "invalid_query"),
        ("/count?p=", "invalid_query"),
        ("/count?p=javascript:alert(1)", "invalid_url"),
        ("/count?p=relative", "invalid_url"),
        ("/count?p=https://site.test:99999/x", "invalid_url"),
        ("/count?p=https://%5B::g%5D/x", "invalid_url"),
    ] {
        let answer = send(&app, pixel(uri, &[])).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(answer.error_code(), code, "{uri}");
    }
}

/// A path is resolved against the origin the page rules read in `Origin`
/// or `Referer`; one they refuse names no origin, so the next one counts.
#[tokio::test]
async fn the_pixel_resolves_against_origins_as_pages_spell_them() {
    let app = fallback_app();
    for (headers, page) in [
        (
            &[("origin", "HTTPS://U@Site.TEST:443")][..],
            "https://site.test/a",
        ),
        (
            &[("referer", "http://127.1:8080/b?c")],
            "http://127.0.0.1:8080/a",
        ),
        (
            &[
                ("origin", "https://site.test:99999"),
                ("referer", "https://other.test/"),
            ],
            "https://other.test/a",
        ),
        (
            &[("referer", "https://1.2.3.999/")],
            "https://fallback.test/a",
        ),
    ] {
        let answer = send(&app, pixel("/count?p=/a", headers)).await;
        assert_eq!(answer.status, StatusCode::OK, "{headers:?}");
        assert_eq!(visitors(&app, page).await, 1, "{headers:?}");
    }
}

#[tokio::test]
async fn events_without_a_visitor_derive_one_and_drop_bots() {
    let (app, _) = default_app();
    let event = |ua: &'static str, peer: &'static str| {
        let body = json!({"url": "https://site.test/", "referrer": "https://a.test/"}).to_string();
        from(
            Method::POST,
            "/events",
            peer,
            &[
                ("content-type", "text/plain;charset=UTF-8"),
                ("user-agent", ua),
            ],
            body,
        )
    };
    for _ in 0..3 {
        assert_eq!(
            send(&app, event(FIREFOX, "198.51.100.1:1")).await.status,
            StatusCode::ACCEPTED
        );
    }
    assert_eq!(
        visitors(&app, "https://site.test/").await,
        1,
        "a reload counts once"
    );
    send(&app, event(SAFARI, "198.51.100.1:2")).await;
    send(&app, event(FIREFOX, "198.51.100.2:1")).await;
    assert_eq!(
        visitors(&app, "https://site.test/").await,
        3,
        "another browser or address counts"
    );
    let answer = send(&app, event(HEADLESS, "198.51.100.3:1")).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "bots are not told");
    let no_ua = from(
        Method::POST,
        "/events",
        "198.51.100.4:1",
        &[],
        json!({"url": "https://site.test/"}).to_string(),
    );
    assert_eq!(send(&app, no_ua).await.status, StatusCode::ACCEPTED);
    // A script with no user agent, or an HTTP library, counts by default
    // (only `--bot-filter strict` drops them).
    let library = from(
        Method::POST,
        "/events",
        "198.51.100.5:1",
        &[("user-agent", "curl/8.5.0")],
        json!({"url": "https://site.test/"}).to_string(),
    );
    assert_eq!(send(&app, library).await.status, StatusCode::ACCEPTED);
    assert_eq!(visitors(&app, "https://site.test/").await, 5);
    let dropped = stats(&app).await["dropped_events"].clone();
    assert_eq!(dropped["headless"], 1);
    assert_eq!(dropped["no_user_agent"], 0);
    assert_eq!(dropped["http_client"], 0);
    let metrics = String::from_utf8(get(&app, "/metrics").await.body).unwrap();
    assert!(
        metrics.contains("tracker_events_dropped_total{reason=\"headless\"} 1"),
        "{metrics}"
    );
    // An event with its own visitor id is a backend's: never filtered.
    let backend = from(
        Method::POST,
        "/events",
        "10.0.0.1:1",
        &[("user-agent", "curl/8.5.0")],
        json!({"visitor": "v", "url": "https://site.test/"}).to_string(),
    );
    assert_eq!(send(&app, backend).await.status, StatusCode::ACCEPTED);
    assert_eq!(visitors(&app, "https://site.test/").await, 6);

    // The strict filter drops both, by their own reasons.
    let (app, _) = app_with(Tracker::new(), |l| l.browser.bots = BotFilter::strict());
    for (ua, peer) in [
        (None, "198.51.100.4:1"),
        (Some("curl/8.5.0"), "198.51.100.5:1"),
    ] {
        let headers: Vec<(&str, &str)> = ua.map(|ua| ("user-agent", ua)).into_iter().collect();
        let body = json!({"url": "https://site.test/"}).to_string();
        let request = from(Method::POST, "/events", peer, &headers, body);
        assert_eq!(send(&app, request).await.status, StatusCode::ACCEPTED);
    }
    assert_eq!(visitors(&app, "https://site.test/").await, 0);
    let strict_stats = stats(&app).await;
    assert_eq!(strict_stats["dropped_events"]["no_user_agent"], 1);
    assert_eq!(strict_stats["dropped_events"]["http_client"], 1);

    // With the filter off, HeadlessChrome counts.
    let (app, _) = app_with(Tracker::new(), |l| l.browser.bots = BotFilter::new(false));
    send(&app, event(HEADLESS, "198.51.100.3:1")).await;
    assert_eq!(visitors(&app, "https://site.test/").await, 1);
}

#[tokio::test]
async fn a_user_agent_that_is_not_utf8_counts_as_none() {
    let (app, _) = default_app();
    let event = |ua: Option<&[u8]>| {
        let body = json!({"url": "https://site.test/u"}).to_string();
        let mut request = from(Method::POST, "/events", "198.51.100.9:1", &[], body);
        if let Some(ua) = ua {
            let value = axum::http::HeaderValue::from_bytes(ua).unwrap();
            request.headers_mut().insert("user-agent", value);
        }
        request
    };
    // A browser's shape with a byte that is not UTF-8: neither let
    // through as a browser nor hashed as sent, but read as no user agent
    // (counted by the default filter, as the same visitor as none).
    let broken = [FIREFOX.as_bytes(), b"\xff"].concat();
    for ua in [Some(&broken[..]), None, Some(FIREFOX.as_bytes())] {
        assert_eq!(send(&app, event(ua)).await.status, StatusCode::ACCEPTED);
    }
    assert_eq!(visitors(&app, "https://site.test/u").await, 2);
}

#[tokio::test]
async fn spoofed_forwarding_headers_from_untrusted_peers_are_ignored() {
    let event = |xff: &str, peer: &str| {
        from(
            Method::POST,
            "/api/event",
            peer,
            &[
                ("user-agent", FIREFOX),
                ("x-forwarded-for", xff),
                ("forwarded", &format!("for={xff}")),
            ],
            json!({"n": "pageview", "u": "https://site.test/"}).to_string(),
        )
    };
    // No trusted proxy: every request from one peer is one client.
    let (app, _) = default_app();
    for i in 0..5 {
        send(&app, event(&format!("203.0.113.{i}"), "198.51.100.1:1")).await;
    }
    assert_eq!(visitors(&app, "https://site.test/").await, 1);
    // Trusted proxies: their headers name the client; a peer outside
    // them is still ignored.
    let (app, _) = app_with(Tracker::new(), |l| {
        l.browser.proxies = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
    });
    for i in 0..3 {
        send(&app, event(&format!("203.0.113.{i}"), "10.0.0.5:1")).await;
    }
    send(&app, event("203.0.113.0", "10.0.0.6:1")).await;
    assert_eq!(visitors(&app, "https://site.test/").await, 3);
    send(&app, event("203.0.113.77", "198.51.100.1:1")).await;
    send(&app, event("203.0.113.78", "198.51.100.1:1")).await;
    assert_eq!(visitors(&app, "https://site.test/").await, 4);
}

#[tokio::test]
async fn the_rate_limiter_sees_the_same_client() {
    let (app, _) = app_with(Tracker::new(), |l| {
        l.browser.proxies = TrustedProxies::new(vec!["10.0.0.1/32".parse().unwrap()]);
        l.rate_limiter = Some(RateLimiter::new(0.001, 1.0));
    });
    let event = |xff: &str| {
        from(
            Method::POST,
            "/api/event",
            "10.0.0.1:1",
            &[("user-agent", FIREFOX), ("x-forwarded-for", xff)],
            json!({"n": "pageview", "u": "https://site.test/"}).to_string(),
        )
    };
    assert_eq!(
        send(&app, event("203.0.113.1")).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        send(&app, event("203.0.113.2")).await.status,
        StatusCode::ACCEPTED,
        "another client"
    );
    let limited = send(&app, event("203.0.113.1")).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.error_code(), "rate_limited");
}

#[tokio::test]
async fn cors_preflight_on_every_ingest_route() {
    let preflight = |path: &str, origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri(path)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, x-request-id",
            )
            .body(Body::empty())
            .unwrap()
    };
    let (app, _) = default_app();
    for path in ["/events", "/events/batch", "/api/event", "/count"] {
        let answer = send(&app, preflight(path, "https://any.test")).await;
        assert!(answer.status.is_success(), "{path}: {}", answer.status);
        assert_eq!(answer.headers["access-control-allow-origin"], "*", "{path}");
        let methods = answer.headers["access-control-allow-methods"]
            .to_str()
            .unwrap();
        assert!(methods.contains("POST"), "{path}: {methods}");
        let headers = answer.headers["access-control-allow-headers"]
            .to_str()
            .unwrap();
        for asked in ["content-type", "x-request-id"] {
            assert!(headers.contains(asked), "{path}: {headers}");
        }
        assert!(
            !answer
                .headers
                .contains_key("access-control-allow-credentials"),
            "{path}"
        );
    }
    let (app, _) = app_with(Tracker::new(), |l| {
        l.cors_origins = vec!["https://site.test".into()]
    });
    for path in ["/events", "/events/batch", "/api/event", "/count"] {
        let allowed = send(&app, preflight(path, "https://site.test")).await;
        assert_eq!(
            allowed.headers["access-control-allow-origin"],
            "https://site.test"
        );
        assert!(
            !allowed
                .headers
                .contains_key("access-control-allow-credentials")
        );
        let other = send(&app, preflight(path, "https://evil.test")).await;
        assert!(
            !other.headers.contains_key("access-control-allow-origin"),
            "{path}"
        );
    }
}

/// The URL Standard's reading before the parts (what Chromium's
/// `new URL()` gives for each spelling: `canonical_url`'s unit tests):
/// tabs and newlines removed, C0 ends stripped, `\\` a `/` outside the
/// query; one page at record and at query.
#[tokio::test]
async fn tabs_newlines_and_backslashes_are_one_page_on_every_route() {
    let (app, _) = default_app();
    for (visitor, url) in [
        ("v1", "https://site.test/a/b?c\\d"),
        ("v2", "https:\\\\site.test\\a\\b?c\\d"),
        ("v3", "ht\ttps://si\nte.test/a/\r\nb?c\\d"),
        ("v4", " \u{1}https:site.test/a\\b?c\\d\u{0}"),
    ] {
        let answer = record(&app, visitor, url).await;
        assert!(answer.status.is_success(), "{url:?}: {}", answer.status);
    }
    assert_eq!(visitors(&app, "https://site.test/a/b?c\\d").await, 4);
    assert_eq!(visitors(&app, "https:/site.test\\a\t\\b?c\\d").await, 4);
    // A query's `\\` stays: another query is another page.
    assert_eq!(visitors(&app, "https://site.test/a/b?c/d").await, 0);
    // Other white space is not stripped (Chromium: "Invalid URL").
    let answer = record(&app, "v", "\u{a0}https://site.test/a").await;
    assert_eq!(answer.error_code(), "invalid_url");
}

/// The refusal of a scheme-relative URL: the URL rules' one code, with a
/// message that names the rule.
#[track_caller]
fn assert_scheme_relative(answer: &Answer, url: &str) {
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{url:?}");
    assert_eq!(answer.error_code(), "invalid_url", "{url:?}");
    let message = answer.json()["error"]["message"].to_string();
    assert!(message.contains("scheme-relative"), "{url:?}: {message}");
}

/// A scheme-relative URL (`//host/path`) names no scheme: refused as an
/// `invalid_url` that says so where no page is known, resolved as a
/// browser on the page resolves it where the route knows the page's
/// origin (Chromium: `new URL("//cdn.test/a", "http://o.test:8080/")` is
/// `http://cdn.test/a`, and "Invalid URL" without a base).
#[tokio::test]
async fn a_scheme_relative_url_is_resolved_on_its_page_or_refused() {
    let app = fallback_app();
    for url in ["//site.test/a", "\\\\site.test\\a", " /\t\\site.test/a"] {
        let answer = record(&app, "v", url).await;
        assert_scheme_relative(&answer, url);
        let answer = get(&app, &format!("/distinct?url={}", urlencode(url))).await;
        assert_scheme_relative(&answer, url);
        // A browser's visit without a visitor id: no page to resolve on.
        let body = json!({ "url": url }).to_string();
        let request = from(
            Method::POST,
            "/events",
            "198.51.100.1:1",
            &[("content-type", "text/plain"), ("user-agent", FIREFOX)],
            body,
        );
        let answer = send(&app, request).await;
        assert_scheme_relative(&answer, url);
        let answer = plausible(&app, FIREFOX, json!({"n": "pageview", "u": url})).await;
        assert_scheme_relative(&answer, url);
    }
    // The pixel on an `http` page (its `Origin`), an `https` one (its
    // `Referer`), and under `--site`; Plausible on `https://<d>`.
    for (headers, p) in [
        (
            &[("origin", "http://o.test:8080")][..],
            "%2F%2Fcdn.test%2Fa",
        ),
        (&[("referer", "https://r.test/x")], "%5C%5Ccdn.test%5Ca"),
        (&[], "//cdn.test/a"),
    ] {
        let answer = send(&app, pixel(&format!("/count?p={p}"), headers)).await;
        assert_eq!(answer.status, StatusCode::OK, "{headers:?}");
    }
    assert_eq!(visitors(&app, "http://cdn.test/a").await, 1);
    assert_eq!(visitors(&app, "https://cdn.test/a").await, 1);
    let answer = plausible(
        &app,
        SAFARI,
        json!({"n": "pageview", "u": "//cdn.test/a", "d": "site.test"}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(visitors(&app, "https://cdn.test/a").await, 2);
    // A path with a `\\` is a path of the page's origin on both routes.
    send(
        &app,
        pixel("/count?p=%5Cb", &[("referer", "https://r.test/x")]),
    )
    .await;
    plausible(
        &app,
        SAFARI,
        json!({"n": "pageview", "u": "\\b", "d": "r.test"}),
    )
    .await;
    assert_eq!(visitors(&app, "https://r.test/b").await, 2);
    // Nothing was stored as a path.
    let pages = get(&app, "/top?limit=100").await.json();
    let urls: Vec<&str> = pages["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls.len(), 3, "{urls:?}");
    assert!(urls.iter().all(|u| u.starts_with("http")), "{urls:?}");
}

#[tokio::test]
async fn url_rules_hold_on_every_route() {
    let (app, _) = app_with(
        Tracker::builder()
            .fold_trailing_slash(true)
            .build()
            .unwrap(),
        |_| {},
    );
    // Tracking parameters are not part of a page, at record and at query.
    record(
        &app,
        "v1",
        "https://site.test/p/?utm_source=mail&id=3&fbclid=x",
    )
    .await;
    record(&app, "v2", "https://site.test/p?id=3&gclid=y").await;
    plausible(&app, FIREFOX, json!({"n": "pageview", "u": "https://site.test/p/?id=3&msclkid=1&mc_cid=2&mc_eid=3&_ga=4&utm_medium=x"})).await;
    assert_eq!(visitors(&app, "https://site.test/p?id=3").await, 3);
    assert_eq!(
        visitors(&app, "https://site.test/p/?id=3&utm_campaign=z").await,
        3
    );
    // Other schemes are refused everywhere.
    for url in [
        "javascript:alert(1)",
        "data:text/html,x",
        "file:///etc/passwd",
        "ftp://x.test/",
        "pricing",
        // Hosts and ports a browser's `new URL()` refuses.
        "https://x.test:99999/",
        "https://x.test:abc/",
        "https://x.test:-1/",
        "https://x<y.test/",
        "https://x%zz.test/",
        "https://[::g]/",
        "https://[1:2]/",
        "https://1.2.3.999/",
        "https://example.0x/",
    ] {
        let answer = record(&app, "v", url).await;
        assert_eq!(answer.error_code(), "invalid_url", "{url}");
        let answer = get(&app, &format!("/distinct?url={}", urlencode(url))).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{url}");
        assert_eq!(answer.error_code(), "invalid_url", "{url}");
    }
    // Folding is off by default.
    let (app, _) = default_app();
    record(&app, "v", "/docs/").await;
    assert_eq!(visitors(&app, "/docs").await, 0);
    assert_eq!(visitors(&app, "/docs/").await, 1);
}

#[tokio::test]
async fn the_script_is_small_cached_and_revalidated() {
    let (app, _) = default_app();
    let answer = get(&app, "/tracker.js").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, TRACKER_JS.as_bytes());
    assert!(TRACKER_JS.len() < 1500, "{} bytes", TRACKER_JS.len());
    assert!(
        answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(
        answer.headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=86400")
    );
    // Loadable by a cross-origin isolated page (`Cross-Origin-Embedder-
    // Policy: require-corp`), as the pixel is.
    assert_eq!(
        answer.headers["cross-origin-resource-policy"],
        "cross-origin"
    );
    let etag = answer.headers["etag"].to_str().unwrap().to_string();
    let again = send(
        &app,
        Request::get("/tracker.js")
            .header("if-none-match", &etag)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    assert_eq!(again.headers["etag"], etag.as_str());
    assert_eq!(
        again.headers["cross-origin-resource-policy"],
        "cross-origin"
    );
    let stale = send(
        &app,
        Request::get("/tracker.js")
            .header("if-none-match", "\"old\"")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(stale.status, StatusCode::OK);
}

/// Salts fed from outside (a cluster node's) and none for the current
/// period yet: a browser event is refused with 503 `cluster_unavailable`,
/// never hashed under a salt of this process's own; once the salt is
/// supplied, it counts.
#[tokio::test]
async fn a_browser_event_without_the_periods_salt_is_refused_until_it_comes() {
    use tracker_core::browser::{SaltKey, SaltRotation, VisitorIds};
    let clock = Arc::new(tracker_core::ManualClock::new(
        tracker_core::Timestamp::from_millis(20_365 * 86_400_000),
    ));
    let ids = VisitorIds::external(SaltRotation::Day, clock.clone());
    let feed = ids.feed().unwrap();
    let (app, _) = app_with(Tracker::new(), |l| l.browser.visitor_ids = ids);
    let page = "https://site.test/fed";
    let view = json!({"n": "pageview", "u": page, "d": "site.test"});
    let refused = plausible(&app, FIREFOX, view.clone()).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.json()["error"]["code"], "cluster_unavailable");
    assert!(feed.install(20_365, SaltKey::from_bytes([9; 16])));
    assert_eq!(
        plausible(&app, FIREFOX, view).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(visitors(&app, page).await, 1);
}

/// An event without a visitor, back-filled (`time`) into the period just
/// before the clock's, is hashed with that period's salt, which is kept
/// for this: the same browser's live visit of that day and its
/// back-filled copy, sent after midnight, are one visitor.
#[tokio::test]
async fn a_backfilled_browser_event_uses_its_own_periods_salt() {
    use tracker_core::browser::{SaltRotation, VisitorIds};
    const DAY: u64 = 86_400_000;
    let late = 20_365 * DAY + 23 * 3_600_000;
    let clock = tracker_core::ManualClock::new(tracker_core::Timestamp::from_millis(late));
    let tracker = Tracker::builder()
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let ids = VisitorIds::in_memory(SaltRotation::Day, Arc::new(clock.clone()));
    let (app, _) = app_with(tracker, |l| l.browser.visitor_ids = ids);
    let page = "https://site.test/late";
    let event = |time: Option<u64>| {
        let mut body = json!({"url": page});
        if let Some(ms) = time {
            body["time"] = json!(ms / 1000);
        }
        from(
            Method::POST,
            "/events",
            "198.51.100.10:5000",
            &[("content-type", "text/plain"), ("user-agent", FIREFOX)],
            body.to_string(),
        )
    };
    assert_eq!(send(&app, event(None)).await.status, StatusCode::ACCEPTED);
    clock.advance(std::time::Duration::from_secs(2 * 3600)); // the next UTC day
    let backfilled = send(&app, event(Some(late))).await;
    assert_eq!(backfilled.status, StatusCode::ACCEPTED);
    assert_eq!(
        visitors(&app, page).await,
        1,
        "the back-filled visit of yesterday counted as another visitor"
    );
}
