//! In-process tests of the site forms (`/distinct?site=`, `/top?site=`)
//! and of `GET /pages` with its cursor.

use std::collections::BTreeSet;

use crate::app::*;
use axum::http::StatusCode;
use serde_json::json;

async fn fill(app: &axum::Router) {
    for (visitor, url) in [
        ("a", "https://shop.example/"),
        ("b", "https://shop.example/"),
        ("a", "https://shop.example/cart"),
        ("c", "http://SHOP.example:8080/cart"),
        ("a", "https://blog.example/post"),
        ("d", "/bare"),
    ] {
        assert_eq!(record(app, visitor, url).await.status, StatusCode::ACCEPTED);
    }
}

#[tokio::test]
async fn distinct_of_a_site_is_a_union() {
    let (app, _) = default_app();
    fill(&app).await;
    assert_eq!(
        distinct(&app, "site=shop.example").await.json(),
        json!({"site": "shop.example", "distinct_visitors": 3, "exact": true})
    );
    assert_eq!(
        distinct(&app, "site=+Shop.Example+").await.json()["distinct_visitors"],
        3
    );
    assert_eq!(
        distinct(&app, "site=nowhere.example").await.json()["distinct_visitors"],
        0
    );
    for (query, code) in [
        // Given empty, `site` is not given: neither `url` nor `site`.
        ("site=", "invalid_query"),
        ("site=%20", "invalid_query"),
        ("url=/bare&site=shop.example", "invalid_query"),
        ("site=%FF", "invalid_query"),
    ] {
        let answer = distinct(&app, query).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(answer.error_code(), code, "{query}");
    }
    let long = format!("site={}", "x".repeat(300));
    assert_eq!(distinct(&app, &long).await.error_code(), "too_long");
}

/// A site given as a URL or `host:port` counts its host's pages, and
/// the answer names that host, not the text sent: a client comparing
/// `site` with what it asked for, or with the hosts `/pages` lists,
/// finds the same name.
#[tokio::test]
async fn a_site_given_as_a_url_is_echoed_as_its_host() {
    let (app, _) = default_app();
    fill(&app).await;
    for given in [
        "https%3A%2F%2FShop.Example%2F",
        "shop.example%3A8080",
        "http%3A%2F%2Fu%40shop.example%3A80%2Fcart%3Fx",
    ] {
        let answer = distinct(&app, &format!("site={given}")).await.json();
        assert_eq!(
            answer,
            json!({"site": "shop.example", "distinct_visitors": 3, "exact": true}),
            "{given}"
        );
        let ranged = distinct(&app, &format!("site={given}&from=-1d"))
            .await
            .json();
        assert_eq!(ranged["site"], "shop.example", "{given}");
        let series = get(&app, &format!("/series?site={given}&from=-1d&step=1h")).await;
        assert_eq!(series.json()["site"], "shop.example", "{given}");
    }
    // Spelled as page hosts are: an internationalised name in punycode
    // (as browsers send it), an IPv4 address dotted.
    assert_eq!(
        record(&app, "e", "https://BÜCHER.de/x").await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        record(&app, "f", "https://xn--bcher-kva.de/y").await.status,
        StatusCode::ACCEPTED
    );
    let idn = distinct(&app, "site=B%C3%9CCHER.de").await.json();
    assert_eq!(
        idn,
        json!({"site": "xn--bcher-kva.de", "distinct_visitors": 2, "exact": true})
    );
    record(&app, "e", "http://127.1:8080/x").await;
    let ip = distinct(&app, "site=127.0.0.1").await.json();
    assert_eq!(ip["distinct_visitors"], 1, "{ip}");
    assert_eq!(distinct(&app, "site=0x7f.1").await.json(), ip);
    assert_eq!(
        distinct(&app, "site=1.2.3.999").await.error_code(),
        "invalid_url"
    );
    for query in ["site=https%3A%2F%2F", "site=%3A80"] {
        assert_eq!(distinct(&app, query).await.error_code(), "empty", "{query}");
        let series = get(&app, &format!("/series?{query}")).await;
        assert_eq!(series.error_code(), "empty", "{query}");
    }
}

/// A site given as a URL follows the URL rules of pages: another scheme
/// than http(s), or what only reads as `host:port` with a port that is
/// not a number (`javascript:alert(1)` was the site `javascript`), is
/// 400 `invalid_url` on every route that takes a site, with a message
/// that names the site (it said "url must be ...", a parameter the
/// request did not have).
#[tokio::test]
async fn a_site_that_is_not_a_web_url_is_invalid() {
    let (app, _) = default_app();
    fill(&app).await;
    for given in [
        "javascript%3Aalert(1)",
        "data%3Atext%2Fhtml%2Chi",
        "file%3A%2F%2F%2Fetc%2Fpasswd",
        "ftp%3A%2F%2Fshop.example%2F",
        "shop.example%3Ahttp",
    ] {
        for uri in [
            format!("/distinct?site={given}"),
            format!("/distinct?site={given}&from=-1d"),
            format!("/series?site={given}"),
            format!("/top?site={given}"),
            format!("/pages?site={given}"),
        ] {
            let answer = get(&app, &uri).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(answer.error_code(), "invalid_url", "{uri}");
            let message = answer.json()["error"]["message"].to_string();
            assert!(message.starts_with("\"site must be"), "{uri}: {message}");
        }
    }
}

#[tokio::test]
async fn top_of_a_site() {
    let (app, _) = default_app();
    fill(&app).await;
    assert_eq!(
        get(&app, "/top?site=shop.example&limit=5").await.json(),
        json!({"pages": [
            {"url": "https://shop.example/", "distinct_visitors": 2, "exact": true},
            {"url": "http://shop.example:8080/cart", "distinct_visitors": 1, "exact": true},
            {"url": "https://shop.example/cart", "distinct_visitors": 1, "exact": true},
        ]})
    );
    assert_eq!(
        get(&app, "/top?site=").await.json(),
        get(&app, "/top").await.json(),
        "an empty site is not given: every site"
    );
}

/// Follows `next_cursor` from `first` to the end (bounded).
async fn list(app: &axum::Router, first: &str) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    let mut uri = first.to_string();
    for _ in 0..100 {
        let body = get(app, &uri).await.json();
        all.extend(body["pages"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(cursor) => {
                let cursor: String = percent_encoding::utf8_percent_encode(
                    cursor,
                    percent_encoding::NON_ALPHANUMERIC,
                )
                .collect();
                uri = format!("{first}&cursor={cursor}");
            }
            None => return all,
        }
    }
    panic!("the listing did not end");
}

#[tokio::test]
async fn pages_lists_everything_once_by_cursor() {
    let (app, _) = default_app();
    fill(&app).await;
    let first = get(&app, "/pages?limit=2").await.json();
    assert_eq!(
        first,
        json!({
            "pages": [
                {"url": "/bare", "distinct_visitors": 1, "exact": true},
                {"url": "http://shop.example:8080/cart", "distinct_visitors": 1, "exact": true},
            ],
            "next_cursor": "http://shop.example:8080/cart",
        })
    );
    let all = list(&app, "/pages?limit=2").await;
    let urls: Vec<&str> = all.iter().map(|p| p["url"].as_str().unwrap()).collect();
    assert_eq!(
        urls,
        [
            "/bare",
            "http://shop.example:8080/cart",
            "https://blog.example/post",
            "https://shop.example/",
            "https://shop.example/cart",
        ]
    );
    // The default limit takes them all; site and prefix filter.
    assert_eq!(get(&app, "/pages").await.json()["next_cursor"], json!(null));
    let of_shop = list(&app, "/pages?site=shop.example&limit=1").await;
    assert_eq!(of_shop.len(), 3);
    let with_prefix = list(&app, "/pages?prefix=https%3A%2F%2Fshop.example%2F&limit=1").await;
    let urls: Vec<&str> = with_prefix
        .iter()
        .map(|p| p["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls, ["https://shop.example/", "https://shop.example/cart"]);
    // A prefix that is a path matches the pages' paths: a site's section.
    let cart = list(&app, "/pages?site=shop.example&prefix=/cart").await;
    let urls: Vec<&str> = cart.iter().map(|p| p["url"].as_str().unwrap()).collect();
    assert_eq!(
        urls,
        ["http://shop.example:8080/cart", "https://shop.example/cart"]
    );
    // After the last page: nothing, and no cursor.
    let past = get(&app, "/pages?cursor=https%3A%2F%2Fzzz").await.json();
    assert_eq!(past, json!({"pages": [], "next_cursor": null}));
}

#[tokio::test]
async fn pages_parameter_errors() {
    let (app, _) = default_app();
    for (uri, code) in [
        ("/pages?limit=0", "invalid_query"),
        ("/pages?limit=1001", "invalid_query"),
        ("/pages?limit=x", "invalid_query"),
        ("/pages?cursor=%FF", "invalid_query"),
        // No listing stops there: a mangled cursor, not the end.
        ("/pages?cursor=garbage", "invalid_cursor"),
        ("/pages?cursor=shop.example%2Fa", "invalid_cursor"),
        (
            "/pages?cursor=HTTPS%3A%2F%2Fshop.example%2F",
            "invalid_cursor",
        ),
    ] {
        let answer = get(&app, uri).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(answer.error_code(), code, "{uri}");
    }
    let wrong = send(
        &app,
        axum::http::Request::post("/pages")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    // An empty cursor is the start, as none; a path or URL one continues
    // after it, as the dashboard's jump past a host does.
    fill(&app).await;
    let all = get(&app, "/pages").await.json();
    assert_eq!(get(&app, "/pages?cursor=").await.json(), all);
    let after = get(
        &app,
        "/pages?cursor=https%3A%2F%2Fblog.example%2F%F4%8F%BF%BF",
    )
    .await;
    assert_eq!(after.json()["pages"][0]["url"], "https://shop.example/");
}

/// Pages recorded while a listing runs neither make it skip nor repeat a
/// page that was there from the start.
#[tokio::test]
async fn a_listing_survives_events_arriving() {
    let (app, _) = default_app();
    let mut before = BTreeSet::new();
    for i in 0..40 {
        let url = format!("https://l.example/{i:02}");
        record(&app, "v", &url).await;
        before.insert(url);
    }
    let mut seen = Vec::new();
    let mut uri = "/pages?limit=3".to_string();
    for round in 0..100 {
        // Between pages: new pages before, among and after the listed ones.
        for extra in [
            format!("https://l.example/{round:02}a"),
            format!("https://a.example/{round}"),
        ] {
            record(&app, "w", &extra).await;
        }
        let body = get(&app, &uri).await.json();
        seen.extend(
            body["pages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["url"].as_str().unwrap().to_string()),
        );
        match body["next_cursor"].as_str() {
            Some(cursor) => {
                let cursor: String = percent_encoding::utf8_percent_encode(
                    cursor,
                    percent_encoding::NON_ALPHANUMERIC,
                )
                .collect();
                uri = format!("/pages?limit=3&cursor={cursor}");
            }
            None => break,
        }
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a page was listed twice");
    assert!(before.is_subset(&unique), "a page was skipped");
}
