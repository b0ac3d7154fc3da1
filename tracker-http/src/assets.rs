//! Files the service serves from its own binary: `/tracker.js` and the
//! dashboard (`GET /` and `GET /dashboard/<file>`, from
//! `assets/dashboard/`). Each is embedded at compile time, has an ETag of
//! its bytes and answers a matching `If-None-Match` with `304`.
//!
//! The dashboard routes only serve these files: the page reads its numbers
//! from the JSON API (`/distinct`, `/series`, `/top`, `/pages`, `/stats`)
//! like any other client, with the bearer token when one is set.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::browser::{CORP, CROSS_ORIGIN};

/// The dashboard's Content-Security-Policy: its own origin only, no inline
/// script or style, no `eval`, no framing, no form posting elsewhere.
pub const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Dashboard files are revalidated on every load (a `304` is a few bytes),
/// so a new binary's dashboard is seen at once.
const REVALIDATE: &str = "no-cache";

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Its bytes.
    pub body: &'static [u8],
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its `Cache-Control`.
    pub cache_control: &'static str,
    /// Whether it is a dashboard file (gets the CSP and hardening headers;
    /// the others, `/tracker.js`, are for other sites to embed).
    pub dashboard: bool,
    etag: OnceLock<HeaderValue>,
}

impl Asset {
    const fn new(
        body: &'static [u8],
        content_type: &'static str,
        cache_control: &'static str,
        dashboard: bool,
    ) -> Self {
        Self {
            body,
            content_type,
            cache_control,
            dashboard,
            etag: OnceLock::new(),
        }
    }

    /// The ETag: a hash of the bytes, so it changes with them.
    pub fn etag(&self) -> &HeaderValue {
        self.etag.get_or_init(|| {
            let mut h = DefaultHasher::new();
            self.body.hash(&mut h);
            HeaderValue::from_str(&format!("\"{:016x}\"", h.finish()))
                .unwrap_or(HeaderValue::from_static("\"asset\""))
        })
    }

    /// The file, or `304 Not Modified` when `request` already holds it.
    pub fn respond(&self, request: &HeaderMap) -> Response {
        let etag = self.etag();
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, etag.clone());
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(self.cache_control),
        );
        if self.dashboard {
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(DASHBOARD_CSP),
            );
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            headers.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
        } else {
            // The script is embedded by other sites' pages: one that is
            // cross-origin isolated (`Cross-Origin-Embedder-Policy:
            // require-corp`) loads a cross-origin `<script>` only if it
            // says so (CORS does not apply to a plain `<script src>`).
            headers.insert(CORP, CROSS_ORIGIN);
        }
        if holds(request, etag) {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        (StatusCode::OK, headers, self.body).into_response()
    }
}

/// Whether `If-None-Match` names `etag` (weak or strong) or `*`.
fn holds(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let etag = etag.to_str().unwrap_or("");
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == etag
        })
}

/// `/tracker.js` ([`crate::browser::TRACKER_JS`]), cached for a day.
pub static TRACKER_JS: Asset = Asset::new(
    crate::browser::TRACKER_JS.as_bytes(),
    "text/javascript; charset=utf-8",
    "public, max-age=86400",
    false,
);

/// The dashboard's page, served at `/`.
pub static DASHBOARD_HTML: Asset = Asset::new(
    include_bytes!("../assets/dashboard/index.html"),
    "text/html; charset=utf-8",
    REVALIDATE,
    true,
);

/// The dashboard files under `/dashboard/`, by name.
pub static DASHBOARD_FILES: [(&str, Asset); 3] = [
    (
        "dashboard.js",
        Asset::new(
            include_bytes!("../assets/dashboard/dashboard.js"),
            "text/javascript; charset=utf-8",
            REVALIDATE,
            true,
        ),
    ),
    (
        "dashboard.css",
        Asset::new(
            include_bytes!("../assets/dashboard/dashboard.css"),
            "text/css; charset=utf-8",
            REVALIDATE,
            true,
        ),
    ),
    (
        "icon.svg",
        Asset::new(
            include_bytes!("../assets/dashboard/icon.svg"),
            "image/svg+xml",
            REVALIDATE,
            true,
        ),
    ),
];

/// `GET /`: the dashboard page.
pub async fn dashboard(headers: HeaderMap) -> Response {
    DASHBOARD_HTML.respond(&headers)
}
