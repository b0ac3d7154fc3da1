//! The routes browsers send to: `GET /tracker.js` (our script),
//! `POST /api/event` (Plausible's wire format), `GET|POST /count`
//! (GoatCounter's pixel), and the visit of `POST /events` without a
//! visitor id. Each is translated into the same core calls: the URL
//! canonicalised (which refuses what is not a page), the user agent
//! checked by the bot rules, the visitor id derived from (site, client IP,
//! user agent) under the rotating salt, and the visit recorded.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::IgnoredAny;
use tracker_core::SystemClock;
use tracker_core::browser::{BotFilter, BotReason, SaltRotation, VisitorIds};

use crate::client_ip::TrustedProxies;
use crate::error::AppError;
use crate::ingest::{parse_json, read_event_body};
use crate::query::{decode_param, raw_params};
use crate::state::AppState;

/// What the browser routes need: the salted visitor ids, the bot rules,
/// the trusted proxies and the `/count` fallback origin.
#[derive(Debug)]
pub struct Browser {
    /// Derives visitor ids for events sent without one.
    pub visitor_ids: VisitorIds,
    /// Drops events from bots.
    pub bots: BotFilter,
    /// Whose forwarding headers name the client.
    pub proxies: TrustedProxies,
    /// The origin `/count?p=/path` resolves against when the request names
    /// none (`--site`).
    pub site: Option<String>,
}

impl Default for Browser {
    /// Daily salts in memory, bots filtered, no trusted proxy, no site.
    fn default() -> Self {
        Self {
            visitor_ids: VisitorIds::in_memory(SaltRotation::Day, Arc::new(SystemClock)),
            bots: BotFilter::new(true),
            proxies: TrustedProxies::default(),
            site: None,
        }
    }
}

/// Who sent a request, as far as visitor ids care. The user agent is
/// borrowed from the request and never stored or logged.
pub(crate) struct Sender<'a> {
    ip: IpAddr,
    user_agent: Option<&'a str>,
}

impl<'a> Sender<'a> {
    /// The client address (through trusted proxies) and user agent of the
    /// request `parts`. A request without a socket address (in-process
    /// tests) comes from `0.0.0.0`.
    pub(crate) fn of(state: &AppState, parts: &'a Parts) -> Self {
        Self {
            ip: client_ip(state, &parts.extensions, &parts.headers),
            user_agent: parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| std::str::from_utf8(v.as_bytes()).ok()),
        }
    }
}

/// The client address of a request, the one visitor ids and the rate
/// limiter use: the connection's peer ([`conn::peer`](crate::conn::peer)),
/// or behind `--trusted-proxies` the forwarded client. A request without
/// a socket address (in-process tests) comes from `0.0.0.0`.
pub(crate) fn client_ip(state: &AppState, extensions: &Extensions, headers: &HeaderMap) -> IpAddr {
    let peer =
        crate::conn::peer(extensions).unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    state.limits.browser.proxies.client_ip(peer, headers)
}

/// Records a browser's visit of `url`: refused if `url` is not a page,
/// dropped (and counted by reason) if the sender is a bot or the page
/// flagged itself as automated, else counted under the derived visitor id.
pub(crate) async fn record_visit(
    state: &AppState,
    url: &str,
    at: Option<tracker_core::Timestamp>,
    sender: &Sender<'_>,
    flagged: bool,
) -> Result<(), AppError> {
    let store = state.store()?;
    let browser = &state.limits.browser;
    let dropped = if flagged && browser.bots.enabled() {
        Some(BotReason::ClientFlag)
    } else {
        browser.bots.check(sender.user_agent)
    };
    if let Some(reason) = dropped {
        // Still refused if it is not a page, as every event is.
        store.tracker().canonicalize(url)?;
        state.metrics.dropped(reason);
        return Ok(());
    }
    let visitor = browser
        .visitor_ids
        .derive(
            &tracker_core::site_of(url),
            sender.ip,
            sender.user_agent.unwrap_or(""),
        )
        .map_err(|e| AppError::Storage(e.to_string()))?;
    // Recording checks the URL (a 400 for what is not a page).
    let recorded = store.record(visitor.as_str(), url, at).await?;
    state.metrics.event(recorded);
    Ok(())
}

/// A Plausible event. Fields the tracker does not use are parsed (so a
/// wrong type is still a 400, as in Plausible) and dropped.
#[derive(Debug, Deserialize)]
struct PlausibleEvent<'a> {
    /// The event name: `pageview` is a visit.
    #[serde(alias = "name", borrow)]
    n: Cow<'a, str>,
    /// The page URL.
    #[serde(alias = "url", borrow)]
    u: Cow<'a, str>,
    /// The site domain(s); the page URL's host identifies the site here.
    #[serde(rename = "d", alias = "domain", default, borrow)]
    _d: Option<Cow<'a, str>>,
    /// The referrer (not stored).
    #[serde(rename = "r", alias = "referrer", default, borrow)]
    _r: Option<Cow<'a, str>>,
    /// Custom properties.
    #[serde(rename = "p", alias = "props", alias = "m", alias = "meta", default)]
    _p: Option<IgnoredAny>,
    /// Hash-based routing (the fragment is still not part of a page).
    #[serde(rename = "h", alias = "hashMode", default)]
    _h: Option<IgnoredAny>,
    /// Whether the event is interactive.
    #[serde(rename = "i", alias = "interactive", default)]
    _i: Option<IgnoredAny>,
    /// The script's version.
    #[serde(rename = "v", default)]
    _v: Option<IgnoredAny>,
}

/// `POST /api/event`, Plausible-compatible: `202` with body `ok`. A
/// `pageview` is a visit of `u`; other names are counted by name only
/// (`/stats`).
pub async fn plausible_event(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, AppError> {
    let (parts, body) = request.into_parts();
    let body = read_event_body(&state, &parts.headers, body).await?;
    let event: PlausibleEvent = parse_json(&body)?;
    if event.n == "pageview" {
        record_visit(&state, &event.u, None, &Sender::of(&state, &parts), false).await?;
    } else {
        state.store()?.tracker().canonicalize(&event.u)?;
        state.metrics.custom_event(&event.n);
    }
    // A `&str` body is `text/plain; charset=utf-8`.
    Ok((StatusCode::ACCEPTED, "ok").into_response())
}

/// A 1x1 transparent GIF: 43 bytes.
pub const PIXEL: [u8; 43] = [
    b'G', b'I', b'F', b'8', b'9', b'a', // header
    1, 0, 1, 0, 0x80, 0, 0, // 1x1, a global colour table of 2 entries
    0, 0, 0, 0xff, 0xff, 0xff, // black, white
    0x21, 0xf9, 4, 1, 0, 0, 0, 0, // graphic control: colour 0 transparent
    0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, // image descriptor, 1x1
    2, 2, 0x44, 1, 0,    // LZW code size 2, one data block, end
    0x3b, // trailer
];

fn pixel() -> Response {
    // The headers are built once and cloned (static values: a copy of two
    // small arrays), cheaper than hashing three names into a new map.
    static HEADERS: LazyLock<HeaderMap> = LazyLock::new(|| {
        let mut headers = HeaderMap::with_capacity(5);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("cross-origin"),
        );
        headers
    });
    let mut response = Response::new(Body::from(Bytes::from_static(&PIXEL)));
    *response.headers_mut() = HEADERS.clone();
    response
}

/// `GET|POST /count`, GoatCounter-compatible: the page is `p` resolved
/// against the request's `Origin` or `Referer` origin, else `--site`;
/// `e=true` is an event (counted by name), `b` >= 150 a bot flag.
/// Answers the 43-byte GIF.
pub async fn count(State(state): State<AppState>, request: Request) -> Result<Response, AppError> {
    let (parts, _body) = request.into_parts();
    let query = parts.uri.query().unwrap_or("");
    let [p, e, b] = raw_params(query, ["p", "e", "b"]);
    let path = decode_param("p", p)?
        .filter(|p| !p.is_empty())
        .ok_or(AppError::InvalidQuery(
            "the `p` parameter is required".into(),
        ))?;
    let is_event = decode_param("e", e)?.is_some_and(|e| e == "true" || e == "1");
    if is_event {
        state.store()?;
        state.metrics.custom_event(&path);
        return Ok(pixel());
    }
    let flagged = decode_param("b", b)?
        .and_then(|b| b.trim().parse::<u32>().ok())
        .is_some_and(|b| b >= 150);
    let url = resolve(&path, &parts.headers, state.limits.browser.site.as_deref());
    record_visit(&state, &url, None, &Sender::of(&state, &parts), flagged).await?;
    Ok(pixel())
}

/// `path` made a full URL against the page's origin (from `Origin`, else
/// `Referer`, else `site`); a full URL or anything else is left for the
/// URL rules to judge.
fn resolve<'a>(path: &'a str, headers: &HeaderMap, site: Option<&str>) -> Cow<'a, str> {
    if !path.starts_with('/') || path.starts_with("//") {
        return Cow::Borrowed(path);
    }
    let header_origin = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(origin_of)
    };
    match header_origin(header::ORIGIN)
        .or_else(|| header_origin(header::REFERER))
        .or(site)
    {
        Some(origin) => Cow::Owned([origin, path].concat()),
        None => Cow::Borrowed(path),
    }
}

/// `http(s)://host[:port]` of a URL or origin; `None` for anything else
/// (`null`, other schemes).
fn origin_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let end = rest
        .bytes()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    (end > 0).then(|| &url[..url.len() - rest.len() + end])
}

/// Our script: page views on load and on single-page-app navigations.
pub const TRACKER_JS: &str = include_str!("../assets/tracker.js");

/// `GET /tracker.js`: cached for a day (a fixed script reaches every
/// browser within a day), then revalidated with its ETag (`304`).
pub async fn tracker_js(headers: HeaderMap) -> Response {
    crate::assets::TRACKER_JS.respond(&headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_resolution() {
        assert_eq!(
            origin_of("https://site.test/a/b?c"),
            Some("https://site.test")
        );
        assert_eq!(
            origin_of("http://site.test:8080"),
            Some("http://site.test:8080")
        );
        assert_eq!(origin_of("null"), None);
        assert_eq!(origin_of("file:///x"), None);
        assert_eq!(origin_of("https:///x"), None);
        let mut h = HeaderMap::new();
        assert_eq!(resolve("/a", &h, None), "/a");
        assert_eq!(
            resolve("/a", &h, Some("https://s.test")),
            "https://s.test/a"
        );
        h.insert(header::REFERER, "https://r.test/page?x".parse().unwrap());
        assert_eq!(
            resolve("/a", &h, Some("https://s.test")),
            "https://r.test/a"
        );
        h.insert(header::ORIGIN, "https://o.test".parse().unwrap());
        assert_eq!(resolve("/a", &h, None), "https://o.test/a");
        assert_eq!(resolve("https://x.test/b", &h, None), "https://x.test/b");
        assert_eq!(
            resolve("javascript:alert(1)", &h, None),
            "javascript:alert(1)"
        );
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert_eq!(resolve("/a", &h, None), "https://r.test/a");
    }

    #[test]
    fn the_pixel_is_a_43_byte_gif() {
        assert_eq!(PIXEL.len(), 43);
        assert!(PIXEL.starts_with(b"GIF89a"));
        assert_eq!(PIXEL.last(), Some(&0x3b));
    }
}
