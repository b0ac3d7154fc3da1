//! The dashboard's files in process: `GET /` and `/dashboard/*` with their
//! headers (a strict CSP, content types, ETag and `304`), pages that need
//! nothing the CSP forbids, public even with a bearer token, and the sizes
//! the README states. `it/dashboard_browser.rs` drives it in Chromium.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tracker_http::HttpLimits;
use tracker_http::assets::{DASHBOARD_CSP, DASHBOARD_FILES, DASHBOARD_HTML};

use crate::app::*;

/// Every dashboard file: its path and its bytes.
fn files() -> Vec<(String, &'static [u8])> {
    let mut files = vec![("/".to_string(), DASHBOARD_HTML.body)];
    for (name, file) in &DASHBOARD_FILES {
        files.push((format!("/dashboard/{name}"), file.body));
    }
    files
}

#[tokio::test]
async fn the_dashboard_is_served_with_a_strict_policy_and_revalidated() {
    let (app, _) = default_app();
    let types = [
        ("/", "text/html; charset=utf-8"),
        ("/dashboard/dashboard.js", "text/javascript; charset=utf-8"),
        ("/dashboard/dashboard.css", "text/css; charset=utf-8"),
        ("/dashboard/icon.svg", "image/svg+xml"),
    ];
    for (path, content_type) in types {
        let answer = get(&app, path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert_eq!(answer.headers["content-type"], content_type, "{path}");
        assert_eq!(answer.headers["cache-control"], "no-cache", "{path}");
        assert_eq!(answer.headers["x-content-type-options"], "nosniff");
        assert_eq!(answer.headers["referrer-policy"], "no-referrer");
        let csp = answer.headers["content-security-policy"].to_str().unwrap();
        assert_eq!(csp, DASHBOARD_CSP);
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{directive} in {csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");

        let etag = answer.headers["etag"].to_str().unwrap().to_string();
        let again = send(
            &app,
            Request::get(path)
                .header("if-none-match", format!("W/{etag}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(again.body.is_empty());
        assert_eq!(again.headers["etag"], etag.as_str());
        let changed = send(
            &app,
            Request::get(path)
                .header("if-none-match", "\"older\"")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(changed.status, StatusCode::OK);
        assert_eq!(changed.body, answer.body);
    }
    let unknown = get(&app, "/dashboard/nothing.js").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error_code(), "not_found");
}

#[tokio::test]
async fn the_page_needs_nothing_the_policy_forbids() {
    let html = std::str::from_utf8(DASHBOARD_HTML.body).unwrap();
    // No inline script, style or event handler: the CSP would block them.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains(r#"<script defer src="/dashboard/dashboard.js"></script>"#));
    assert!(!html.contains("<style"));
    assert!(!html.contains(" style="));
    for (at, _) in html.match_indices(" on") {
        let name: String = html[at + 1..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase())
            .collect();
        assert!(
            !html[at + 1 + name.len()..].starts_with('='),
            "inline event handler {name}"
        );
    }
    // Everything it loads is its own.
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in html.match_indices(attribute) {
            let value = &html[at + attribute.len()..];
            assert!(
                value.starts_with("/dashboard/") || value.starts_with('#'),
                "{}",
                &value[..value.find('"').unwrap()]
            );
        }
    }
    let js = std::str::from_utf8(DASHBOARD_FILES[0].1.body).unwrap();
    for forbidden in ["eval(", "new Function", "innerHTML", "'style'", "https://"] {
        assert!(!js.contains(forbidden), "{forbidden} in dashboard.js");
    }
    // The one absolute URL is SVG's namespace, never fetched.
    assert_eq!(js.matches("http://").count(), 1);
    assert!(js.contains("'http://www.w3.org/2000/svg'"));
}

#[tokio::test]
async fn with_a_token_the_page_is_public_and_its_reads_are_not() {
    let (app, _) = with_limits(HttpLimits {
        auth_token: Some("s3cret".into()),
        ..HttpLimits::standard()
    });
    for (path, _) in files() {
        assert_eq!(get(&app, &path).await.status, StatusCode::OK, "{path}");
    }
    for path in ["/stats", "/pages?limit=1", "/top", "/distinct?site=a.test"] {
        assert_eq!(
            get(&app, path).await.status,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
}

#[test]
fn the_readme_states_the_dashboard_sizes() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut total = 0;
    for (path, body) in files() {
        let name = path
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("index.html");
        let row = format!("| `{name}` | {} |", body.len());
        assert!(readme.contains(&row), "README.md lacks the row {row:?}");
        total += body.len();
    }
    let row = format!("| total | {total} |");
    assert!(readme.contains(&row), "README.md lacks the row {row:?}");
    // The browser script's size, stated once in the Browsers section.
    let script = include_str!("../../assets/tracker.js");
    let said = format!("our script ({} bytes,", script.len());
    assert!(readme.contains(&said), "README.md lacks {said:?}");
}
