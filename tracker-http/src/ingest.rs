//! `POST /events`: one event per request, and the body reading and JSON
//! parsing the browser routes share.

use std::borrow::Cow;
use std::future::Future;
use std::task::Poll;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::Body as _;
use serde::Deserialize;
use tracker_core::{Timestamp, Tracker};

use crate::browser::{Sender, record_visit};
use crate::error::AppError;
use crate::state::AppState;

/// The body of `POST /events`. Unknown fields are ignored. The strings
/// borrow from the body unless they contain JSON escapes.
#[derive(Debug, Deserialize)]
pub struct Event<'a> {
    /// The visitor id the site generated; when absent (a browser sent the
    /// event) one is derived from the request, and bots are dropped.
    #[serde(borrow, default)]
    pub visitor: Option<Cow<'a, str>>,
    /// The page URL.
    #[serde(borrow)]
    pub url: Cow<'a, str>,
    /// The referrer, accepted from browsers and not stored.
    #[serde(borrow, default)]
    pub referrer: Option<Cow<'a, str>>,
    /// When the visit happened (for back-fill), if not now.
    #[serde(borrow, default)]
    pub time: Option<EventTime<'a>>,
}

/// An event's `time` as sent: a string (RFC 3339, or any form
/// [`Timestamp::parse`] reads) or a JSON number of unix seconds. Read by
/// the core against its clock when the event is recorded
/// ([`at`](Self::at)), so a bad time is refused by the core's rules and
/// with its codes.
#[derive(Debug, Clone, PartialEq)]
pub enum EventTime<'a> {
    /// A string, borrowed from the body unless it holds escapes.
    Text(Cow<'a, str>),
    /// A number, as written (`1793491200`, `1793491200.25`; a negative
    /// one is refused when read, as `bad_time`).
    Number(String),
}

impl EventTime<'_> {
    /// The time this is at the tracker's `now`.
    pub fn at(&self, now: Timestamp) -> Result<Timestamp, AppError> {
        let text = match self {
            EventTime::Text(text) => text,
            EventTime::Number(number) => number.as_str(),
        };
        Timestamp::parse(text, now).map_err(|e| AppError::Tracker(e.into()))
    }
}

/// The time of an optional `time`: `None` (now, by the tracker's clock)
/// when absent; refused if it is ahead of the tracker's clock, and the
/// clock's time if only a little ahead ([`Tracker::check_time`]). One
/// older than the retention is refused by the record itself.
pub(crate) fn event_time(
    time: Option<&EventTime<'_>>,
    tracker: &Tracker,
) -> Result<Option<Timestamp>, AppError> {
    let Some(time) = time else { return Ok(None) };
    let at = time.at(tracker.config().clock.now())?;
    Ok(Some(tracker.check_time(at)?))
}

impl<'de: 'a, 'a> Deserialize<'de> for EventTime<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = EventTime<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a time: an RFC 3339 string or unix seconds")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(EventTime::Text(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(EventTime::Text(Cow::Owned(v.to_owned())))
            }

            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(EventTime::Number(v.to_string()))
            }

            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(EventTime::Number(v.to_string()))
            }

            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(EventTime::Number(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Records the event in the body; `202 Accepted` with no body.
pub async fn record_event(
    State(state): State<AppState>,
    request: Request,
) -> Result<StatusCode, AppError> {
    let (parts, body) = request.into_parts();
    let body = read_event_body(&state, &parts.headers, body).await?;
    let event = parse_event(&body).map_err(|e| unless_compressed(&parts.headers, e))?;
    let store = state.store()?;
    let at = event_time(event.time.as_ref(), store.tracker())?;
    match &event.visitor {
        Some(visitor) => {
            let recorded = store.record(visitor, &event.url, at).await?;
            state.metrics.event(recorded);
        }
        None => record_visit(&state, &event.url, at, &Sender::of(&state, &parts), false).await?,
    }
    Ok(StatusCode::ACCEPTED)
}

/// An event body: the content type checked, then the body read within the
/// body limit and the request timeout.
pub(crate) async fn read_event_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, AppError> {
    check_content_type(headers)?;
    let limits = &state.limits;
    let mut read = std::pin::pin!(read_body(headers, body, limits.body_limit));
    // A small body has usually arrived with its head: read without
    // starting a timer (a clock read and a timer entry per request).
    let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
    if let Poll::Ready(read) = first {
        return read;
    }
    // The body is the only part of a request the client can drag out
    // (the handlers never wait on anything else), so that is where the
    // request timeout applies.
    // Boxed: its timer would make every handler's future larger.
    Box::pin(tokio::time::timeout(limits.request_timeout, read))
        .await
        .map_err(|_| AppError::Timeout)?
}

/// The whole body, refused with 413 past `limit` bytes: at once when
/// `Content-Length` says so, else as soon as the stream passes the limit.
/// (Read here rather than by a `DefaultBodyLimit` layer, which would put
/// a layer on every route for the routes that have a body.)
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, AppError> {
    // hyper gives a body with a Content-Length that exact size: no lookup.
    let declared = body.size_hint().exact().or_else(|| {
        headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    });
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(AppError::PayloadTooLarge { limit });
    }
    // Frame by frame rather than `axum::body::to_bytes`, whose limit
    // wrapper and buffer list cost an allocation even for the one frame
    // an event body nearly always is: that frame is returned as it is.
    let mut body = body;
    let mut first = Bytes::new();
    let mut joined: Vec<u8> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| AppError::UnreadableBody(causes(&e)))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(data.len());
        if total > limit {
            return Err(AppError::PayloadTooLarge { limit });
        }
        if first.is_empty() && joined.is_empty() {
            first = data;
        } else {
            if joined.is_empty() {
                joined.extend_from_slice(&first);
            }
            joined.extend_from_slice(&data);
        }
    }
    Ok(if joined.is_empty() {
        first
    } else {
        Bytes::from(joined)
    })
}

/// `error` and its causes, `: `-separated: hyper's body error says only
/// that reading failed, its cause what was wrong with the framing.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let next = e.to_string();
        // axum's error repeats its cause's text.
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = e.source();
    }
    text
}

/// JSON and plain text are both read as JSON: browsers send `text/plain`
/// from `sendBeacon` and from `fetch` without a CORS preflight. A request
/// with no content type is read as JSON too; anything else is refused.
pub(crate) fn check_content_type(headers: &HeaderMap) -> Result<(), AppError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    // What senders send, compared as bytes before the general parse.
    if matches!(value.as_bytes(), b"application/json" | b"text/plain") {
        return Ok(());
    }
    let value = value.to_str().map_err(|_| AppError::UnsupportedMediaType)?;
    let essence = value.split(';').next().unwrap_or("").trim();
    let is = |expected: &str| essence.eq_ignore_ascii_case(expected);
    let json_suffix = essence.len() > 5
        && essence.is_char_boundary(essence.len() - 5)
        && essence[essence.len() - 5..].eq_ignore_ascii_case("+json");
    if is("application/json") || is("text/plain") || json_suffix {
        Ok(())
    } else {
        Err(AppError::UnsupportedMediaType)
    }
}

/// `error`, the refusal of a body that did not parse, unless the body was
/// sent compressed (a `Content-Encoding` other than `identity`): then 415,
/// since bodies are read as sent and the remedy is to send it
/// uncompressed, not to mend the JSON. Looked at only once the parse
/// failed, so that an event pays nothing for it.
pub(crate) fn unless_compressed(headers: &HeaderMap, error: AppError) -> AppError {
    if is_compressed(headers) {
        AppError::UnsupportedEncoding
    } else {
        error
    }
}

/// Whether the body is declared compressed: a `Content-Encoding` other
/// than `identity`.
pub(crate) fn is_compressed(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|coding| {
            let coding = coding.trim_ascii();
            !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity")
        })
}

/// Parses an event, telling malformed JSON apart from JSON of the wrong
/// shape.
pub fn parse_event(body: &[u8]) -> Result<Event<'_>, AppError> {
    parse_json(body)
}

/// `body` without a leading UTF-8 byte order mark, which some senders
/// write and RFC 8259 (section 8.1) lets a JSON reader ignore.
pub(crate) fn without_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)
}

/// The first byte of `body` that is neither a byte order mark nor
/// whitespace: how a body's shape (`[` or `{`) is sniffed.
pub(crate) fn first_byte(body: &[u8]) -> Option<u8> {
    without_bom(body)
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace())
}

/// Parses a JSON object body into `T`: malformed JSON is
/// [`AppError::MalformedJson`], JSON of the wrong shape
/// [`AppError::InvalidEvent`].
pub(crate) fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, AppError> {
    let body = without_bom(body);
    let is_object = || first_byte(body) == Some(b'{');
    let event: T = serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            // serde's own words for a non-object would name a field's type.
            Category::Data if !is_object() => {
                AppError::InvalidEvent("expected a JSON object".into())
            }
            Category::Data => AppError::InvalidEvent(e.to_string()),
            Category::Syntax | Category::Eof | Category::Io => {
                AppError::MalformedJson(e.to_string())
            }
        }
    })?;
    // serde also reads a struct from a JSON array (`["v", "/"]`); the wire
    // format is an object, and accepting a positional form would freeze
    // the field order into the API.
    if !is_object() {
        return Err(AppError::InvalidEvent("expected a JSON object".into()));
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_unknown_fields() {
        let event = parse_event(br#"{"visitor":"v\u00e9","url":"/p","extra":[1,{}]}"#).unwrap();
        assert_eq!((event.visitor.as_deref(), &*event.url), (Some("vé"), "/p"));
        assert!(matches!(event.url, Cow::Borrowed(_)));
    }

    #[test]
    fn times_are_strings_or_numbers_read_by_the_core() {
        let now = Timestamp::parse("2026-11-08T12:00:00Z", Timestamp::default()).unwrap();
        let at = |body: &str| {
            let event = parse_event(body.as_bytes()).map_err(|e| e.code())?;
            let time = event.time.expect("a time");
            time.at(now)
                .map(Timestamp::to_rfc3339)
                .map_err(|e| e.code())
        };
        let day = || Ok("2026-11-01T00:00:00Z".to_string());
        assert_eq!(at(r#"{"url":"/","time":"2026-11-01T00:00:00Z"}"#), day());
        assert_eq!(
            at(r#"{"url":"/","time":"2026-11-01T01:00:00+01:00"}"#),
            day()
        );
        assert_eq!(at(r#"{"url":"/","time":1793491200}"#), day());
        assert_eq!(at(r#"{"url":"/","time":"1793491200"}"#), day());
        assert_eq!(at(r#"{"url":"/","time":1793491200.0}"#), day());
        assert_eq!(at(r#"{"url":"/","time":"2026-11-0\u0031"}"#), day());
        assert_eq!(
            at(r#"{"url":"/","time":"-7d"}"#),
            Ok("2026-11-01T12:00:00Z".to_string())
        );
        // A time without an offset is read as UTC.
        assert_eq!(
            at(r#"{"url":"/","time":"2026-11-01T00:00:00.000250"}"#),
            day()
        );
        // Fractional unix seconds (`time.time()`, `Date.now() / 1000`).
        assert_eq!(
            at(r#"{"url":"/","time":1793491200.25}"#),
            Ok("2026-11-01T00:00:00.250Z".to_string())
        );
        for bad in [r#""yesterday""#, r#""1.5.5""#, "-3", "-1.5", r#""""#] {
            let body = format!(r#"{{"url":"/","time":{bad}}}"#);
            assert_eq!(at(&body), Err("bad_time"), "{bad}");
        }
        assert_eq!(
            at(r#"{"url":"/","time":99999999999}"#),
            Err("time_out_of_range")
        );
        for wrong in ["true", "{}", "[1]"] {
            let body = format!(r#"{{"url":"/","time":{wrong}}}"#);
            let code = parse_event(body.as_bytes()).unwrap_err().code();
            assert_eq!(code, "invalid_event", "{wrong}");
        }
        let untimed = parse_event(br#"{"url":"/","time":null}"#).unwrap();
        assert_eq!(untimed.time, None);
    }

    #[test]
    fn shape_errors_are_told_apart() {
        let code = |body: &[u8]| parse_event(body).unwrap_err().code();
        assert_eq!(code(b"{"), "malformed_json");
        assert_eq!(code(b""), "malformed_json");
        assert_eq!(code(br#"{"visitor":1,"url":"/"}"#), "invalid_event");
        assert_eq!(code(br#"{"visitor":"v"}"#), "invalid_event");
        assert_eq!(code(br#"{"url":"/","referrer":1}"#), "invalid_event");
        assert_eq!(code(b"[]"), "invalid_event");
        for not_an_object in [&br#"[{"url":"/"}]"#[..], b"1", br#""/""#, b"null"] {
            let e = parse_event(not_an_object).unwrap_err();
            assert_eq!(
                e.message(),
                "the body is not a valid event: expected a JSON object"
            );
        }
    }

    #[test]
    fn content_types() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            check_content_type(&h).is_ok()
        };
        assert!(with("application/json"));
        assert!(with("text/plain;charset=UTF-8"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/vnd.event+json"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!with("multipart/form-data; boundary=x"));
        assert!(check_content_type(&HeaderMap::new()).is_ok());
    }
}
