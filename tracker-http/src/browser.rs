//! The routes browsers send to: `GET /tracker.js` (our script),
//! `POST /api/event` (Plausible's wire format), `GET|POST /count`
//! (GoatCounter's pixel), and the visit of `POST /events` without a
//! visitor id. Each is translated into the same core calls: the URL
//! canonicalised (which refuses what is not a page), the user agent
//! checked by the bot rules, the visitor id derived from (site, client IP,
//! user agent) under the rotating salt, and the visit recorded.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::IgnoredAny;
use tracker_core::browser::{BotFilter, BotReason, SaltError, SaltRotation, VisitorIds};
use tracker_core::canonical_url::relative_reference;
use tracker_core::{SystemClock, origin_of};

use crate::client_ip::TrustedProxies;
use crate::error::AppError;
use crate::ingest::{parse_json, read_event_body, unless_compressed};
use crate::query::{decode_into, decode_param, not_utf8, raw_params};
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

/// Who sent a request, as far as visitor ids care. The user agent (the
/// header's bytes, which may not be UTF-8) is borrowed from the request
/// and never stored or logged.
pub(crate) struct Sender<'a> {
    ip: IpAddr,
    user_agent: Option<&'a [u8]>,
}

impl<'a> Sender<'a> {
    /// The client address (through trusted proxies) and user agent of the
    /// request `parts`. A request without a socket address (in-process
    /// tests) comes from `0.0.0.0`.
    pub(crate) fn of(state: &AppState, parts: &'a Parts) -> Self {
        Self::with_user_agent(state, parts, parts.headers.get(header::USER_AGENT))
    }

    /// [`of`](Self::of) with the `User-Agent` value already found.
    fn with_user_agent(
        state: &AppState,
        parts: &'a Parts,
        user_agent: Option<&'a HeaderValue>,
    ) -> Self {
        Self {
            ip: client_ip(state, &parts.extensions, &parts.headers),
            user_agent: user_agent.map(HeaderValue::as_bytes),
        }
    }
}

/// The request headers `/count` reads: the first value of each, as
/// `HeaderMap::get` gives, found in one pass over the map (each `get`
/// hashes the name and probes: ~100 instructions, three a request).
#[derive(Default)]
struct PixelHeaders<'a> {
    user_agent: Option<&'a HeaderValue>,
    origin: Option<&'a HeaderValue>,
    referer: Option<&'a HeaderValue>,
}

impl<'a> PixelHeaders<'a> {
    fn of(headers: &'a HeaderMap) -> Self {
        let mut found = Self::default();
        for (name, value) in headers {
            let slot = if name == header::USER_AGENT {
                &mut found.user_agent
            } else if name == header::REFERER {
                &mut found.referer
            } else if name == header::ORIGIN {
                &mut found.origin
            } else {
                continue;
            };
            // Later values of a name come after its first.
            slot.get_or_insert(value);
        }
        found
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
    // A common browser's user agent (ASCII by its shape) is let through
    // and hashed as it is, without a UTF-8 check (~110 instructions);
    // anything else is read as text, and one that is not UTF-8 counts as
    // none, for the bot rules and the visitor id alike.
    let raw = sender.user_agent;
    let fast = !flagged && raw.is_some_and(|ua| browser.bots.lets_through(ua));
    let text = match raw {
        Some(ua) if !fast => std::str::from_utf8(ua).ok(),
        _ => None,
    };
    let dropped = if flagged && browser.bots.enabled() {
        Some(BotReason::ClientFlag)
    } else if fast {
        None
    } else {
        browser.bots.check(text)
    };
    if let Some(reason) = dropped {
        // Still refused if it is not a page, as every event is.
        store.tracker().canonicalize(url)?;
        state.metrics.dropped(reason);
        return Ok(());
    }
    let site = tracker_core::site_of(url);
    let user_agent = match raw {
        Some(ua) if fast => ua,
        _ => text.unwrap_or("").as_bytes(),
    };
    let ids = &browser.visitor_ids;
    // A back-filled event is hashed with the salt of its own period when
    // that is the previous one (kept for this), so that it is the same
    // visitor as the live events of that period.
    let visitor = match at {
        Some(at) => ids.derive_bytes_at(at, &site, sender.ip, user_agent),
        None => ids.derive_bytes(&site, sender.ip, user_agent),
    }
    .map_err(|e| match e {
        SaltError::Persist(_) => AppError::Storage(e.to_string()),
        // A cluster node without the period's salt (NATS unreachable
        // at the boundary): as unavailable as a publish would be.
        SaltError::Unavailable { .. } => AppError::Cluster(e.to_string()),
    })?;
    // Recording checks the URL (a 400 for what is not a page).
    let recorded = store.record(visitor.as_str(), url, at).await?;
    state.metrics.event(recorded);
    Ok(())
}

/// A Plausible event: the name (`n`, `name`), page URL (`u`, `url`) and
/// domain (`d`, `domain`: a string or null) kept, borrowed from the body
/// unless escaped. Its other fields (`r` `referrer`: a string or null;
/// `p` `props` `m` `meta`,
/// `h` `hashMode`, `i` `interactive`, `v`: anything) are read, so that a
/// wrong type is still a 400 as in Plausible, and dropped; unknown fields
/// are ignored, a field given twice (under any of its names) is refused.
///
/// Read by [`scan`](Self::scan) when it can, else by serde through a
/// visitor of its own rather than the derive: the keys are matched as
/// bytes (the derive checks each key as UTF-8 and goes through an
/// identifier visitor per key), and the dropped fields are skipped
/// without a value built.
#[derive(Debug, PartialEq)]
struct PlausibleEvent<'a> {
    /// The event name: `pageview` is a visit.
    n: Cow<'a, str>,
    /// The page URL.
    u: Cow<'a, str>,
    /// The site's domain (a comma list names several sites).
    d: Option<Cow<'a, str>>,
}

/// The fields of [`PlausibleEvent`], by every name they are sent under.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PlausibleField {
    Name,
    Url,
    Domain,
    Referrer,
    Props,
    HashMode,
    Interactive,
    Version,
    Unknown,
}

impl PlausibleField {
    const ALL: [PlausibleField; 8] = [
        PlausibleField::Name,
        PlausibleField::Url,
        PlausibleField::Domain,
        PlausibleField::Referrer,
        PlausibleField::Props,
        PlausibleField::HashMode,
        PlausibleField::Interactive,
        PlausibleField::Version,
    ];

    /// The field a key names.
    fn of(key: &[u8]) -> Self {
        match key {
            b"n" | b"name" => Self::Name,
            b"u" | b"url" => Self::Url,
            b"d" | b"domain" => Self::Domain,
            b"r" | b"referrer" => Self::Referrer,
            b"p" | b"props" | b"m" | b"meta" => Self::Props,
            b"h" | b"hashMode" => Self::HashMode,
            b"i" | b"interactive" => Self::Interactive,
            b"v" => Self::Version,
            _ => Self::Unknown,
        }
    }

    /// Its short name, in errors.
    fn name(self) -> &'static str {
        match self {
            Self::Name => "n",
            Self::Url => "u",
            Self::Domain => "d",
            Self::Referrer => "r",
            Self::Props => "p",
            Self::HashMode => "h",
            Self::Interactive => "i",
            Self::Version => "v",
            Self::Unknown => "(unknown)",
        }
    }
}

impl<'de> Deserialize<'de> for PlausibleField {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = PlausibleField;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a field name")
            }

            fn visit_bytes<E>(self, key: &[u8]) -> Result<Self::Value, E> {
                Ok(PlausibleField::of(key))
            }

            fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
                Ok(PlausibleField::of(key.as_bytes()))
            }
        }
        // JSON keys as bytes: serde_json then skips their UTF-8 check,
        // which matching against ASCII names does not need.
        deserializer.deserialize_bytes(Visitor)
    }
}

/// A JSON string, borrowed from the body unless it holds escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for PlausibleEvent<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = PlausibleEvent<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a Plausible event")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                use serde::de::Error as _;
                let (mut n, mut u, mut d) = (None, None, None);
                let mut seen = [false; PlausibleField::ALL.len()];
                while let Some(field) = map.next_key::<PlausibleField>()? {
                    if field == PlausibleField::Unknown {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    let index = field as usize;
                    if std::mem::replace(&mut seen[index], true) {
                        return Err(A::Error::duplicate_field(field.name()));
                    }
                    match field {
                        PlausibleField::Name => n = Some(map.next_value::<Text>()?.0),
                        PlausibleField::Url => u = Some(map.next_value::<Text>()?.0),
                        PlausibleField::Domain => {
                            d = map.next_value::<Option<Text>>()?.map(|d| d.0)
                        }
                        PlausibleField::Referrer => {
                            map.next_value::<Option<Text>>()?;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(PlausibleEvent {
                    n: n.ok_or_else(|| A::Error::missing_field("n"))?,
                    u: u.ok_or_else(|| A::Error::missing_field("u"))?,
                    d,
                })
            }

            /// serde_json offers a JSON array to a struct's visitor: read
            /// to its end (so that a malformed one is malformed JSON), then
            /// refused as not an object.
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Err(serde::de::Error::invalid_type(
                    serde::de::Unexpected::Seq,
                    &self,
                ))
            }
        }
        deserializer.deserialize_struct("PlausibleEvent", &[], Visitor)
    }
}

impl<'a> PlausibleEvent<'a> {
    /// The event in `body`, or a 400 as [`parse_json`] words it.
    fn parse(body: &'a [u8]) -> Result<Self, AppError> {
        match Self::scan(body) {
            Some(event) => Ok(event),
            None => parse_json(body),
        }
    }

    /// The body the trackers send, read in one pass without serde: an
    /// object, no whitespace, each field once, the name, URL, domain and
    /// referrer strings without escapes (the domain and referrer may be
    /// `null`), `h`, `i` and `v` such a string, `null`, `true`, `false`
    /// or an unsigned integer. `None` for anything else, which serde
    /// reads (or refuses with its words). A body this accepts is valid
    /// JSON that serde reads into the same event (a proptest checks it),
    /// in under half the instructions (serde_json's calls per key and
    /// per value, and its UTF-8 check per string, were most of this
    /// route's parse).
    fn scan(body: &'a [u8]) -> Option<Self> {
        // Checked once: every slice below ends at an ASCII byte.
        let text = std::str::from_utf8(body).ok()?;
        let rest = text.strip_prefix('{')?;
        let (mut n, mut u, mut d) = (None, None, None);
        let mut seen = [false; PlausibleField::ALL.len()];
        let mut rest = rest;
        loop {
            let (key, after) = scan_string(rest.strip_prefix('"')?)?;
            let field = PlausibleField::of(key.as_bytes());
            if field == PlausibleField::Unknown
                || std::mem::replace(&mut seen[field as usize], true)
            {
                return None;
            }
            let value = after.strip_prefix(':')?;
            let end = match field {
                PlausibleField::Name | PlausibleField::Url => {
                    let (string, end) = scan_string(value.strip_prefix('"')?)?;
                    *(if field == PlausibleField::Name {
                        &mut n
                    } else {
                        &mut u
                    }) = Some(Cow::Borrowed(string));
                    end
                }
                PlausibleField::Domain | PlausibleField::Referrer => {
                    match value.strip_prefix('"') {
                        Some(string) => {
                            let (string, end) = scan_string(string)?;
                            if field == PlausibleField::Domain {
                                d = Some(Cow::Borrowed(string));
                            }
                            end
                        }
                        None => value.strip_prefix("null")?,
                    }
                }
                PlausibleField::HashMode
                | PlausibleField::Interactive
                | PlausibleField::Version => match value.strip_prefix('"') {
                    Some(string) => scan_string(string)?.1,
                    None => scan_scalar(value)?,
                },
                PlausibleField::Props | PlausibleField::Unknown => return None,
            };
            match end.as_bytes() {
                [b',', ..] => rest = &end[1..],
                [b'}'] => break,
                _ => return None,
            }
        }
        Some(Self { n: n?, u: u?, d })
    }

    /// The page: `u`, or for a `u` given as a path (`/x`, as some senders
    /// do) `https://<d>/x`, and for a scheme-relative one (`//cdn.test/x`)
    /// `https://cdn.test/x`, as a browser resolves them on a page of
    /// `https://<d>`, under `d`'s first domain (see [`site_origin`]; empty
    /// items skipped). Without a `d` such a `u` stays as sent (the URL
    /// rules take a path, and refuse a scheme-relative URL). Errors: a
    /// first domain that is not a host and port (it would put user info,
    /// a path or another port in the URL).
    fn page(&self) -> Result<Cow<'_, str>, AppError> {
        // A full URL (what the trackers send) is settled before `d` is
        // split and trimmed (~200 instructions a request).
        let Some((relative, reference)) = relative_reference(&self.u) else {
            return Ok(Cow::Borrowed(&self.u));
        };
        let domain = self
            .d
            .as_deref()
            .and_then(|d| d.split(',').map(str::trim).find(|d| !d.is_empty()));
        match domain {
            Some(domain) => {
                let origin = site_origin(domain).ok_or(tracker_core::TrackerError::InvalidUrl)?;
                Ok(Cow::Owned([relative.base(&origin), reference].concat()))
            }
            None => Ok(Cow::Borrowed(&self.u)),
        }
    }
}

/// The origin `https://<host>[:port]` of a Plausible site domain, with
/// the host and port read by the page rules (`tracker_core::origin_of`),
/// so that `d` takes exactly the hosts a page URL may have and writes
/// them as page keys do: lowercased, punycode, IPv4 in any browser form
/// written dotted, IPv6 shortest, a default or empty port dropped. A
/// subfolder site (`example.com/blog`) is its host's: the domain ends where
/// a URL's authority would, at a `/` or `\`. `None` for anything but a
/// host and port (user info, a query or a fragment would put another
/// page's URL together), or what the rules refuse.
fn site_origin(domain: &str) -> Option<String> {
    let authority = domain.split(['/', '\\']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains(['@', '?', '#']) {
        return None;
    }
    Some(origin_of(&format!("https://{authority}/"))?.into_owned())
}

/// A JSON string's contents without escapes (`s` is after the opening
/// quote) and what follows its closing quote; `None` at an escape or a
/// control byte (JSON allows neither raw), or without a closing quote.
fn scan_string(s: &str) -> Option<(&str, &str)> {
    let end = s
        .bytes()
        .position(|b| b == b'"' || b == b'\\' || b < 0x20)?;
    (s.as_bytes()[end] == b'"').then(|| (&s[..end], &s[end + 1..]))
}

/// What follows a leading `null`, `true`, `false` or unsigned JSON
/// integer (`0`, or digits not starting with `0`) in `s`.
fn scan_scalar(s: &str) -> Option<&str> {
    for word in ["null", "true", "false"] {
        if let Some(rest) = s.strip_prefix(word) {
            return Some(rest);
        }
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let valid = digits == 1 || (digits > 1 && !s.starts_with('0'));
    // A number goes on with `.`, `e` or `E` (a fraction or exponent).
    let next = s.as_bytes().get(digits);
    (valid && !matches!(next, Some(b'.' | b'e' | b'E'))).then(|| &s[digits..])
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
    let event = PlausibleEvent::parse(&body).map_err(|e| unless_compressed(&parts.headers, e))?;
    let page = event.page()?;
    if event.n == "pageview" {
        record_visit(&state, &page, None, &Sender::of(&state, &parts), false).await?;
    } else {
        state.store()?.tracker().canonicalize(&page)?;
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
    // Built in place with room for the CORS layer's two headers: a clone
    // of a map built once has exactly sized entries, which CORS then grew
    // (a reallocation and a copy; ~120 instructions more a request).
    let mut response = Response::new(Body::from(Bytes::from_static(&PIXEL)));
    let headers = response.headers_mut();
    headers.reserve(5);
    headers.insert(header::CONTENT_TYPE, GIF);
    headers.insert(header::CACHE_CONTROL, NO_STORE);
    headers.insert(CORP, CROSS_ORIGIN);
    response
}

// The pixel's headers as constants: `from_static` called at run time
// checks the bytes (and looks a name up among the standard ones, ~190
// instructions) on every answer.
const GIF: HeaderValue = HeaderValue::from_static("image/gif");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
/// `Cross-Origin-Resource-Policy`, for what other sites' pages embed.
pub(crate) const CORP: header::HeaderName =
    header::HeaderName::from_static("cross-origin-resource-policy");
/// Its value that lets any site embed the answer.
pub(crate) const CROSS_ORIGIN: HeaderValue = HeaderValue::from_static("cross-origin");

/// `GET|POST /count`, GoatCounter-compatible: the page is `p` resolved
/// against the request's `Origin` or `Referer` origin, else `--site`;
/// `e=true` is an event (counted by name), `b` >= 150 a bot flag.
/// Answers the 43-byte GIF.
pub async fn count(State(state): State<AppState>, request: Request) -> Result<Response, AppError> {
    let (parts, _body) = request.into_parts();
    let query = parts.uri.query().unwrap_or("");
    let [p, e, b] = raw_params(query, ["p", "e", "b"]);
    let raw = p.filter(|p| !p.is_empty()).ok_or(AppError::InvalidQuery(
        "the `p` parameter is required".into(),
    ))?;
    let site = state.limits.browser.site.as_deref();
    let headers = PixelHeaders::of(&parts.headers);
    let url = page(raw, &headers, site)?;
    let is_event = decode_param("e", e)?.is_some_and(|e| e == "true" || e == "1");
    // A HEAD is a link checker or a cache probing the URL, not a browser
    // showing the image: answered as the GET would be (its errors
    // included), and not counted.
    let probe = parts.method == axum::http::Method::HEAD;
    if is_event {
        state.store()?;
        if !probe {
            // Counted under `p` as sent (decoded), not as a page.
            let name = decode_param("p", Some(raw))?.unwrap_or_default();
            state.metrics.custom_event(&name);
        }
        return Ok(pixel());
    }
    let flagged = decode_param("b", b)?
        .and_then(|b| b.trim().parse::<u32>().ok())
        .is_some_and(|b| b >= 150);
    if probe {
        state.store()?.tracker().canonicalize(&url)?;
    } else {
        let sender = Sender::with_user_agent(&state, &parts, headers.user_agent);
        record_visit(&state, &url, None, &sender, flagged).await?;
    }
    Ok(pixel())
}

/// Bytes kept free before a decoded `p` for the origin it is resolved
/// against, so that decoding and resolving take one allocation.
const ORIGIN_ROOM: usize = 64;

/// The page of a pixel request: `p` (`raw`, not empty) decoded, and
/// [`resolve`]d. Errors: `p` does not decode to UTF-8.
fn page<'q>(
    raw: &'q str,
    headers: &PixelHeaders<'_>,
    site: Option<&str>,
) -> Result<Cow<'q, str>, AppError> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(resolve(raw, headers, site));
    }
    // GoatCounter's script sends `p` escaped (`%2Fdocs`): decoded into a
    // buffer with room for the origin in front.
    let mut bytes = Vec::with_capacity(ORIGIN_ROOM + raw.len());
    decode_into(raw, &mut bytes);
    let mut decoded = String::from_utf8(bytes).map_err(|_| not_utf8("p"))?;
    if let Some((relative, reference)) = relative_reference(&decoded) {
        let stripped = decoded.len() - reference.len();
        if let Some(origin) = origin_for(headers, site) {
            let base = relative.base(&origin);
            // `replace_range` splices (~280 instructions); nearly always
            // nothing was stripped.
            if stripped == 0 {
                decoded.insert_str(0, base);
            } else {
                decoded.replace_range(..stripped, base);
            }
        }
    }
    Ok(Cow::Owned(decoded))
}

/// `reference` made a full URL as a browser resolves it on a page of the
/// page's origin (from `Origin`, else `Referer`, else `site`): a path
/// (`/docs`) gets the origin in front, a scheme-relative URL
/// (`//cdn.test/x`) its scheme. A full URL, anything else, or a relative
/// one without an origin is left for the URL rules to judge.
fn resolve<'a>(reference: &'a str, headers: &PixelHeaders<'_>, site: Option<&str>) -> Cow<'a, str> {
    let resolved = relative_reference(reference).and_then(|(relative, rest)| {
        let origin = origin_for(headers, site)?;
        Some([relative.base(&origin), rest].concat())
    });
    resolved.map_or(Cow::Borrowed(reference), Cow::Owned)
}

/// The origin a relative page is resolved against, if the request or
/// `site` names one.
fn origin_for<'h>(headers: &PixelHeaders<'h>, site: Option<&'h str>) -> Option<Cow<'h, str>> {
    let header_origin =
        |value: Option<&'h HeaderValue>| value.and_then(|v| v.to_str().ok()).and_then(origin_of);
    header_origin(headers.origin)
        .or_else(|| header_origin(headers.referer))
        .or(site.map(Cow::Borrowed))
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
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn origins_and_resolution() {
        assert_eq!(
            origin_of("https://site.test/a/b?c").as_deref(),
            Some("https://site.test")
        );
        assert!(matches!(
            origin_of("https://site.test/a"),
            Some(Cow::Borrowed(_))
        ));
        assert_eq!(
            origin_of("http://site.test:8080").as_deref(),
            Some("http://site.test:8080")
        );
        // As page keys spell them: the URL rules' host and port.
        for (given, origin) in [
            ("HTTPS://Site.TEST:443/x", "https://site.test"),
            ("http://u:p@site.test:0080#x", "http://site.test"),
            ("https://127.1?q", "https://127.0.0.1"),
            ("https://[0:0::1]:8443/", "https://[::1]:8443"),
            // The URL Standard's slashes (Chromium: `https://x/`).
            ("https:///x", "https://x"),
            ("https:\\\\x\\y", "https://x"),
        ] {
            assert_eq!(origin_of(given).as_deref(), Some(origin), "{given}");
        }
        for none in [
            "null",
            "file:///x",
            "https:///",
            "//site.test/x",
            "https://site.test:99999/x",
            "https://site.test:abc",
            "https://a b.test/",
            "https://1.2.3.999/",
            "https://[::g]/",
            "/x?u=https://site.test",
        ] {
            assert_eq!(origin_of(none), None, "{none}");
        }
        let mut h = HeaderMap::new();
        assert_eq!(resolve("/a", &PixelHeaders::of(&h), None), "/a");
        assert_eq!(
            resolve("/a", &PixelHeaders::of(&h), Some("https://s.test")),
            "https://s.test/a"
        );
        h.insert(header::REFERER, "https://r.test/page?x".parse().unwrap());
        assert_eq!(
            resolve("/a", &PixelHeaders::of(&h), Some("https://s.test")),
            "https://r.test/a"
        );
        h.insert(header::ORIGIN, "https://o.test".parse().unwrap());
        assert_eq!(
            resolve("/a", &PixelHeaders::of(&h), None),
            "https://o.test/a"
        );
        assert_eq!(
            resolve("https://x.test/b", &PixelHeaders::of(&h), None),
            "https://x.test/b"
        );
        assert_eq!(
            resolve("javascript:alert(1)", &PixelHeaders::of(&h), None),
            "javascript:alert(1)"
        );
        // A scheme-relative URL gets the origin's scheme; what a browser
        // strips before a reference is not kept between the two.
        for (reference, resolved) in [
            ("//x.test/b", "https://x.test/b"),
            ("\\\\x.test\\b", "https:\\\\x.test\\b"),
            (" \t/a", "https://o.test/a"),
            ("\\a", "https://o.test\\a"),
        ] {
            assert_eq!(resolve(reference, &PixelHeaders::of(&h), None), resolved);
        }
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert_eq!(
            resolve("/a", &PixelHeaders::of(&h), None),
            "https://r.test/a"
        );
        // Without an origin a scheme-relative URL is left to the rules,
        // which refuse it.
        let none = HeaderMap::new();
        assert_eq!(
            resolve("//x.test/b", &PixelHeaders::of(&none), None),
            "//x.test/b"
        );
    }

    #[test]
    fn pixel_headers_are_the_first_values_as_get_finds_them() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "t.test".parse().unwrap());
        for (name, value) in [
            (header::REFERER, "https://r1.test/"),
            (header::USER_AGENT, "ua-1"),
            (header::REFERER, "https://r2.test/"),
            (header::ORIGIN, "https://o.test"),
            (header::USER_AGENT, "ua-2"),
        ] {
            h.append(name, value.parse().unwrap());
        }
        let found = PixelHeaders::of(&h);
        assert_eq!(found.user_agent, h.get(header::USER_AGENT));
        assert_eq!(found.referer, h.get(header::REFERER));
        assert_eq!(found.origin, h.get(header::ORIGIN));
        assert_eq!(found.user_agent.unwrap(), "ua-1");
        let empty = HeaderMap::new();
        let none = PixelHeaders::of(&empty);
        assert!(none.user_agent.is_none() && none.referer.is_none() && none.origin.is_none());
    }

    #[test]
    fn pixel_pages_decode_and_resolve_in_one_buffer() {
        let mut h = HeaderMap::new();
        h.insert(header::REFERER, "https://r.test/x".parse().unwrap());
        let page = |raw| page(raw, &PixelHeaders::of(&h), None).map_err(|e| e.code());
        assert_eq!(page("%2Fa%2Fb"), Ok("https://r.test/a/b".into()));
        assert_eq!(page("/a+b%2B"), Ok("https://r.test/a b+".into()));
        assert_eq!(page("/plain"), Ok("https://r.test/plain".into()));
        assert_eq!(
            page("https%3A%2F%2Fo.test%2F"),
            Ok("https://o.test/".into())
        );
        // Resolved as a browser resolves them on the `Referer`'s page.
        assert_eq!(page("%2F%2Fhost%2Fa"), Ok("https://host/a".into()));
        assert_eq!(page("%5C%5Chost%5Ca"), Ok("https:\\\\host\\a".into()));
        assert_eq!(page("%5Ca"), Ok("https://r.test\\a".into()));
        assert_eq!(page("+%2Fa"), Ok("https://r.test/a".into()));
        assert_eq!(page("%2F%FF"), Err("invalid_query"));
        let long = format!("%2F{}", "a".repeat(200));
        let resolved = format!("https://r.test/{}", "a".repeat(200));
        assert_eq!(page(&long), Ok(resolved.into()));
    }

    /// The derive [`PlausibleEvent`]'s visitor replaced, as the model.
    #[derive(Debug, Deserialize)]
    struct Derived<'a> {
        #[serde(alias = "name", borrow)]
        n: Cow<'a, str>,
        #[serde(alias = "url", borrow)]
        u: Cow<'a, str>,
        #[serde(rename = "d", alias = "domain", default, borrow)]
        d: Option<Cow<'a, str>>,
        #[serde(rename = "r", alias = "referrer", default, borrow)]
        _r: Option<Cow<'a, str>>,
        #[serde(rename = "p", alias = "props", alias = "m", alias = "meta", default)]
        _p: Option<IgnoredAny>,
        #[serde(rename = "h", alias = "hashMode", default)]
        _h: Option<IgnoredAny>,
        #[serde(rename = "i", alias = "interactive", default)]
        _i: Option<IgnoredAny>,
        #[serde(rename = "v", default)]
        _v: Option<IgnoredAny>,
    }

    proptest::proptest! {
        /// Every body is read as the derive read it: the same fields, or
        /// an error of the same code and message.
        #[test]
        fn plausible_bodies_read_as_the_derive_did(
            fields in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "n", "name", "u", "url", "d", "domain", "r", "referrer", "p", "props",
                        "m", "meta", "h", "hashMode", "i", "interactive", "v", "x", "N",
                        "n\\u0000", "\\u006e",
                    ]),
                    proptest::sample::select(vec![
                        r#""pageview""#, r#""https://s.test/a""#, r#""a\"b\u00e9""#, "null",
                        "1", "true", "[1,{}]", r#"{"k":"v"}"#, r#""""#,
                    ]),
                ),
                0..6,
            ),
            wrap in 0..4u8,
        ) {
            let object = fields
                .iter()
                .map(|(k, v)| format!(r#""{k}":{v}"#))
                .collect::<Vec<_>>()
                .join(",");
            // Arrays are refused as not an object, like the derive's
            // well-formed ones (its own `visit_seq` read elements as
            // fields, so in a malformed array it could stop at a field's
            // type before the syntax error: the array is read to its end
            // now, and malformed JSON is `malformed_json` wherever it is).
            let body = match wrap {
                0 => format!("{{{object}}}"),
                1 => format!("{{{object}"),
                2 => r#"["pageview","/a"]"#.to_string(),
                _ => r#" ["pageview",1,{},null,[]]"#.to_string(),
            };
            let new = crate::ingest::parse_json::<PlausibleEvent>(body.as_bytes())
                .map(|e| (e.n.into_owned(), e.u.into_owned(), e.d.map(Cow::into_owned)))
                .map_err(|e| (e.code(), e.message()));
            let old = crate::ingest::parse_json::<Derived>(body.as_bytes())
                .map(|e| (e.n.into_owned(), e.u.into_owned(), e.d.map(Cow::into_owned)))
                .map_err(|e| (e.code(), e.message()));
            proptest::prop_assert_eq!(new, old, "{}", body);
        }
    }

    #[test]
    fn the_trackers_bodies_take_the_scan() {
        for body in [
            r#"{"n":"pageview","u":"https://s.test/a?b=1","d":"s.test","r":null,"v":36}"#,
            r#"{"n":"pageview","v":36,"u":"https://s.test/é","d":"s.test","r":"https://x.test/","h":1,"i":false}"#,
            r#"{"name":"pageview","url":"/a","domain":"s.test","referrer":null}"#,
        ] {
            let event = PlausibleEvent::scan(body.as_bytes()).expect(body);
            assert_eq!(event, parse_json(body.as_bytes()).unwrap(), "{body}");
        }
        for body in [
            r#"{"n":"pageview","u":"/a","p":{}}"#, // props: serde's
            r#"{"n":"pageview","u":"/a\u00e9"}"#,  // an escape
            r#"{"n":"pageview","u":"/a","v":01}"#, // not JSON
            r#"{"n":"pageview","u":"/a","v":1.5}"#,
            r#"{"n":"pageview","u":"/a","n":"x"}"#, // twice
            r#"{"n":"pageview","u":"/a"} "#,
            r#"{"n":"pageview"}"#,
        ] {
            assert_eq!(PlausibleEvent::scan(body.as_bytes()), None, "{body}");
        }
    }

    proptest::proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// What the scan reads, serde reads into the same event.
        #[test]
        fn the_scan_reads_what_serde_reads(
            fields in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "n", "name", "u", "url", "d", "domain", "r", "referrer", "p", "h",
                        "hashMode", "i", "interactive", "v", "x", "n\\u0000",
                    ]),
                    prop_oneof![
                        3 => proptest::sample::select(vec!["null", "true", "false", "0", "36"])
                            .prop_map(str::to_string),
                        2 => proptest::sample::select(vec![
                            "01", "-1", "1.5", "1e3", "2E", "nul", "truex", "{}", "[]",
                            r#""""#, r#""a\"b""#,
                        ])
                        .prop_map(str::to_string),
                        3 => "[ -~\t\u{e9}\u{1F600}]{0,12}".prop_map(|s| format!("\"{s}\"")),
                    ],
                ),
                0..3,
            ),
            // Escapes and control bytes come with the other fields.
            name in "[ -!#-\\[\\]-~\u{e9}]{0,12}",
            url in "[ -!#-\\[\\]-~\u{1F600}]{0,12}",
            first in 0..3usize,
            tail in proptest::sample::select(vec!["}", "}", "}", "}", "}", "", "} ", "},", ",}"]),
            space in proptest::option::weighted(0.2, 0..400usize),
        ) {
            // Mostly a name and a URL among the fields, so that many
            // bodies are the scan's.
            let mut fields = fields;
            let at = first.min(fields.len());
            fields.insert(at, ("n", format!("{:?}", name)));
            fields.insert(at, ("url", format!("{:?}", url)));
            let mut body = format!(
                "{{{}{tail}",
                fields
                    .iter()
                    .map(|(k, v)| format!(r#""{k}":{v}"#))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            if let Some(at) = space {
                // A space somewhere (inside a string or between tokens).
                let at = (0..=at.min(body.len())).rev().find(|&i| body.is_char_boundary(i));
                body.insert(at.unwrap_or(0), ' ');
            }
            if let Some(event) = PlausibleEvent::scan(body.as_bytes()) {
                let by_serde = parse_json::<Derived>(body.as_bytes())
                    .map(|e| (e.n.into_owned(), e.u.into_owned(), e.d.map(Cow::into_owned)))
                    .map_err(|e| e.message());
                proptest::prop_assert_eq!(
                    Ok((event.n.into_owned(), event.u.into_owned(), event.d.map(Cow::into_owned))),
                    by_serde,
                    "{}",
                    body
                );
            }
        }
    }

    #[test]
    fn a_path_is_a_page_of_the_domain() {
        let page = |body: &str| {
            let event = PlausibleEvent::parse(body.as_bytes()).unwrap();
            event.page().map(Cow::into_owned).map_err(|e| e.code())
        };
        for (body, expected) in [
            (
                r#"{"n":"pageview","u":"/x?a=1","d":"s.test"}"#,
                "https://s.test/x?a=1",
            ),
            (
                r#"{"n":"pageview","u":"/x","d":" s.test:8443 , t.test"}"#,
                "https://s.test:8443/x",
            ),
            (
                r#"{"n":"pageview","u":"https://o.test/x","d":"s.test"}"#,
                "https://o.test/x",
            ),
            (r#"{"n":"pageview","u":"/x"}"#, "/x"),
            (r#"{"n":"pageview","u":"/x","d":null}"#, "/x"),
            (r#"{"n":"pageview","u":"/x","d":""}"#, "/x"),
            // Scheme-relative: a browser on `https://s.test` reads it so.
            (
                r#"{"n":"pageview","u":"//cdn.test/x","d":"s.test"}"#,
                "https://cdn.test/x",
            ),
            (r#"{"n":"pageview","u":"//cdn.test/x"}"#, "//cdn.test/x"),
            (
                r#"{"n":"pageview","u":"\\x","d":"s.test"}"#,
                "https://s.test\\x",
            ),
            (r#"{"n":"pageview","u":"x","d":"s.test"}"#, "x"),
            // Spaces around a path, empty items, a subfolder site, case.
            // (The URL rules strip the space after it.)
            (
                r#"{"n":"pageview","u":" /x ","d":"s.test"}"#,
                "https://s.test/x ",
            ),
            (
                r#"{"n":"pageview","u":"/x","d":" , S.Test"}"#,
                "https://s.test/x",
            ),
            (
                r#"{"n":"pageview","u":"/blog/x","d":"example.com/blog"}"#,
                "https://example.com/blog/x",
            ),
            // An internationalised name in punycode; IPv6 literals.
            (
                r#"{"n":"pageview","u":"/x","d":"B\u00fccher.de"}"#,
                "https://xn--bcher-kva.de/x",
            ),
            (
                r#"{"n":"pageview","u":"/x","d":"[2001:DB8::1]:8080"}"#,
                "https://[2001:db8::1]:8080/x",
            ),
            (
                r#"{"n":"pageview","u":"/x","d":"[::1]"}"#,
                "https://[::1]/x",
            ),
        ] {
            assert_eq!(page(body), Ok(expected.to_string()), "{body}");
        }
        // `d` takes the hosts and ports a page URL may have, written as
        // page keys write them: what Chromium 156's `new URL()` gives for
        // `https://<d>/x`.
        for (d, chromium) in [
            ("s.test:", "https://s.test/x"),
            ("s.test:443", "https://s.test/x"),
            ("S.test:08443", "https://s.test:8443/x"),
            ("s_t.test", "https://s_t.test/x"),
            ("s%2Etest", "https://s.test/x"),
            ("127.1", "https://127.0.0.1/x"),
            ("0x7f.1:0443", "https://127.0.0.1/x"),
            ("[0:0::1]", "https://[::1]/x"),
            ("XN--BCHER-KVA.de", "https://xn--bcher-kva.de/x"),
            // Its authority ends at a `\` as at a `/`: a subfolder.
            ("s.test\\\\blog", "https://s.test/x"),
        ] {
            let body = format!(r#"{{"n":"pageview","u":"/x","d":"{d}"}}"#);
            assert_eq!(page(&body), Ok(chromium.to_string()), "{body}");
            assert_eq!(site_origin(d).as_deref(), chromium.strip_suffix("/x"));
        }
        // Chromium refuses each as a URL's host, but `s test` and
        // `xn--a.example`, which it lets through where the URL Standard
        // (and the page rules) refuse them.
        for d in [
            "u@s.test",
            "s.test?q",
            "s test",
            "s.test#f",
            "s.test:abc",
            "user:pw",
            ":8080",
            "s.test:+80",
            "s.test:65536",
            "s.test:99999",
            "a:b:80",
            "[::1]x",
            "[::1",
            "[s.test]",
            "b\u{fc} cher.de",
            "1.2.3.999",
            "example.0x",
            "xn--a.example",
            "a<b",
        ] {
            let body = format!(r#"{{"n":"pageview","u":"/x","d":"{d}"}}"#);
            assert_eq!(page(&body), Err("invalid_url"), "{body}");
        }
    }

    #[test]
    fn a_malformed_array_is_malformed_json() {
        let code = |body: &[u8]| parse_json::<PlausibleEvent>(body).unwrap_err().code();
        assert_eq!(code(br#"["pageview", 1"#), "malformed_json");
        assert_eq!(code(br#"["pageview", "/a"]"#), "invalid_event");
    }

    #[test]
    fn the_pixel_is_a_43_byte_gif() {
        assert_eq!(PIXEL.len(), 43);
        assert!(PIXEL.starts_with(b"GIF89a"));
        assert_eq!(PIXEL.last(), Some(&0x3b));
    }
}
