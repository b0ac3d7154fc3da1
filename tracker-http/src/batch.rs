//! `POST /events/batch`: many events per request, as a JSON array or as
//! NDJSON; also the decoding of WebSocket messages (see `ws.rs`).

use std::borrow::Cow;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Serialize;
use serde_json::value::RawValue;
use tracker_core::Timestamp;

use crate::browser::{Sender, record_visit};
use crate::error::AppError;
use crate::ingest::{
    Event, event_time, first_byte, is_compressed, parse_event, read_body, without_bom,
};
use crate::state::AppState;

/// The answer to a batch: how many events were accepted, and why each
/// refused one was refused (by its 0-based position in the batch).
#[derive(Debug, Default, Serialize)]
pub struct BatchReply {
    /// Events recorded (and as durable as the fsync policy promises).
    pub accepted: usize,
    /// The events refused, in order.
    pub refused: Vec<Refusal>,
}

/// One refused event of a batch.
#[derive(Debug, Serialize)]
pub struct Refusal {
    /// Its position in the batch, from 0.
    pub index: usize,
    /// Why, as `POST /events` would have answered it.
    pub error: RefusalError,
}

/// The `{"code", "message"}` of a [`Refusal`].
#[derive(Debug, Serialize)]
pub struct RefusalError {
    /// The stable code (as in an error response).
    pub code: &'static str,
    /// The human-readable explanation.
    pub message: Cow<'static, str>,
}

/// How a batch body is framed, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// A JSON array of events (`application/json`, `+json`).
    Array,
    /// One event per line (`application/x-ndjson`, `application/ndjson` or
    /// `application/jsonl`).
    Ndjson,
    /// Either, as the body shows (`text/plain` or no content type): an
    /// array if it starts with `[`, else NDJSON. A browser posting NDJSON
    /// across origins must send it as `text/plain` (`sendBeacon`, or
    /// `fetch` without a preflight), and SPEC.md refuses only a body that
    /// is "not a JSON array or NDJSON at all".
    Untyped,
}

/// Records the events of the body; `202 Accepted` with a [`BatchReply`].
/// A body that is neither framing at all is a 400 and one over
/// `--batch-limit` events a 413, with nothing recorded either way.
pub async fn record_batch(
    State(state): State<AppState>,
    request: Request,
) -> Result<(StatusCode, Json<BatchReply>), AppError> {
    let framing = framing(request.headers())?;
    // Read as sent: a compressed body would read as garbage lines.
    if is_compressed(request.headers()) {
        return Err(AppError::UnsupportedEncoding);
    }
    let limits = &state.limits;
    let (parts, body) = request.into_parts();
    let body = tokio::time::timeout(
        limits.request_timeout,
        read_body(&parts.headers, body, limits.batch_body_limit),
    )
    .await
    .map_err(|_| AppError::Timeout)??;
    let events = match (framing, first_byte(&body)) {
        (Framing::Array, _) | (Framing::Untyped, Some(b'[')) => {
            split_array(&body, limits.batch_limit)?
        }
        // An untyped body with nothing in it is neither framing (an
        // empty array is `[]`); an empty NDJSON stream is zero events.
        (Framing::Untyped, None) => {
            return Err(AppError::InvalidBatch("the body is empty".into()));
        }
        (Framing::Ndjson | Framing::Untyped, _) => split_ndjson(&body, limits.batch_limit)?,
    };
    let reply = record_parsed(&state, &Sender::of(&state, &parts), &events).await?;
    Ok((StatusCode::ACCEPTED, Json(reply)))
}

/// Records the valid events of `events` and reports every event's
/// outcome: those with a visitor id as one batch, those without as
/// `POST /events` records them (an id derived from `sender`, bots
/// dropped). Fails whole (nothing acknowledged) only if the service
/// could not take an event: the log write failed, or the cluster did not
/// acknowledge it ([`AppError::is_unavailable`]).
pub(crate) async fn record_parsed(
    state: &AppState,
    sender: &Sender<'_>,
    events: &[Result<Event<'_>, AppError>],
) -> Result<BatchReply, AppError> {
    let store = state.store()?;
    // Each event's time is read once, here: a bad one refuses that event
    // alone, as a bad URL does.
    let events: Vec<Result<(&Event<'_>, Option<Timestamp>), AppError>> = events
        .iter()
        .map(|e| {
            let e = e.as_ref().map_err(AppError::clone)?;
            Ok((e, event_time(e.time.as_ref(), store.tracker())?))
        })
        .collect();
    let with_visitor: Vec<(&str, &str, Option<Timestamp>)> = events
        .iter()
        .filter_map(|e| {
            let (e, at) = e.as_ref().ok()?;
            Some((e.visitor.as_deref()?, &*e.url, *at))
        })
        .collect();
    let mut outcomes = Vec::with_capacity(with_visitor.len());
    store.record_batch(&with_visitor, &mut outcomes).await?;
    let mut outcomes = outcomes.into_iter();
    let mut reply = BatchReply::default();
    for (index, event) in events.into_iter().enumerate() {
        let outcome = match event {
            Err(e) => Err(e),
            Ok((e, at)) if e.visitor.is_none() => record_visit(state, &e.url, at, sender, false)
                .await
                .map(|()| None),
            Ok(_) => outcomes.next().map_or_else(
                || Err(AppError::Internal("a batch outcome is missing".into())),
                |o| o.map(Some),
            ),
        };
        match outcome {
            // The service could not take an event (the log, the
            // cluster): its own fault, not the event's, so the batch fails
            // whole, unacknowledged, as `POST /events` and a failed log
            // write do: a 202 must mean every good event was taken.
            Err(e) if e.is_unavailable() => return Err(e),
            Ok(recorded) => {
                // A derived visitor's event is counted by `record_visit`.
                if let Some(recorded) = recorded {
                    state.metrics.event(recorded);
                }
                reply.accepted += 1;
            }
            Err(e) => reply.refused.push(Refusal {
                index,
                error: RefusalError {
                    code: e.code(),
                    message: e.message(),
                },
            }),
        }
    }
    Ok(reply)
}

/// Splits a JSON array into its events, each parsed on its own so that a
/// bad one is refused alone. Not an array, or not JSON: [`AppError::InvalidBatch`];
/// more than `limit` elements: [`AppError::TooManyEvents`].
pub(crate) fn split_array(
    body: &[u8],
    limit: usize,
) -> Result<Vec<Result<Event<'_>, AppError>>, AppError> {
    let raw: Vec<&RawValue> = serde_json::from_slice(without_bom(body))
        .map_err(|e| AppError::InvalidBatch(e.to_string()))?;
    if raw.len() > limit {
        return Err(AppError::TooManyEvents { limit });
    }
    Ok(raw
        .iter()
        .map(|r| parse_event(r.get().as_bytes()))
        .collect())
}

/// Splits NDJSON into its events, one per non-blank line, each parsed on
/// its own (a line that is not JSON, or not an event, is that event's
/// refusal). A body with lines of which none is JSON (a pretty-printed
/// object, say, whose lines are pieces of JSON) is not NDJSON:
/// [`AppError::InvalidBatch`]. No lines at all is zero events.
pub(crate) fn split_ndjson(
    body: &[u8],
    limit: usize,
) -> Result<Vec<Result<Event<'_>, AppError>>, AppError> {
    let body = without_bom(body);
    let lines = || {
        body.split(|&b| b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
    };
    if lines().count() > limit {
        return Err(AppError::TooManyEvents { limit });
    }
    let events: Vec<_> = lines().map(parse_event).collect();
    // Only a body without one event pays for reading its lines again.
    let framed =
        || lines().any(|line| serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok());
    if !events.is_empty() && !events.iter().any(Result::is_ok) && !framed() {
        return Err(AppError::InvalidBatch("no line of the body is JSON".into()));
    }
    Ok(events)
}

/// JSON is an array; NDJSON is one event per line; plain text or no
/// content type is either, as the body shows (see [`Framing::Untyped`]);
/// anything else is refused.
fn framing(headers: &HeaderMap) -> Result<Framing, AppError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Framing::Untyped);
    };
    let value = value.to_str().map_err(|_| AppError::UnsupportedMediaType)?;
    let essence = value.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("text/plain") {
        return Ok(Framing::Untyped);
    }
    // `x-ndjson` is what senders use; `application/ndjson` the name the
    // NDJSON spec asks for, and `application/jsonl` JSON Lines'.
    if [
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
    ]
    .iter()
    .any(|name| essence.eq_ignore_ascii_case(name))
    {
        return Ok(Framing::Ndjson);
    }
    crate::ingest::check_content_type(headers).map(|()| Framing::Array)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(events: &[Result<Event<'_>, AppError>]) -> Vec<&'static str> {
        events
            .iter()
            .map(|e| e.as_ref().map_or_else(AppError::code, |_| "ok"))
            .collect()
    }

    #[test]
    fn arrays_split_into_events_and_refusals() {
        let body =
            br#"[{"visitor":"a","url":"/x"}, {"visitor":"b"}, 3, {"visitor":"b","url":"/y"}]"#;
        let events = split_array(body, 10).unwrap();
        assert_eq!(
            codes(&events),
            ["ok", "invalid_event", "invalid_event", "ok"]
        );
        assert_eq!(split_array(b"[]", 10).unwrap().len(), 0);
    }

    #[test]
    fn non_arrays_and_broken_json_are_refused_whole() {
        for body in [
            &b"{\"visitor\":\"a\",\"url\":\"/\"}"[..],
            b"[{",
            b"",
            b"nope",
            b"[1,]",
        ] {
            let e = split_array(body, 10).unwrap_err();
            assert_eq!(e.code(), "invalid_batch", "{body:?}");
        }
    }

    #[test]
    fn ndjson_refuses_bad_lines_alone() {
        let body = b"{\"visitor\":\"a\",\"url\":\"/x\"}\n\n{oops\r\n{\"visitor\":\"b\",\"url\":\"/y\"}\r\n";
        let events = split_ndjson(body, 10).unwrap();
        assert_eq!(codes(&events), ["ok", "malformed_json", "ok"]);
        assert_eq!(split_ndjson(b"  \n", 10).unwrap().len(), 0);
        assert_eq!(
            split_ndjson(b"hello\nworld", 10).unwrap_err().code(),
            "invalid_batch"
        );
    }

    #[test]
    fn lines_that_are_only_pieces_of_json_are_no_ndjson() {
        // Each line is a serde "invalid type" or "trailing characters"
        // error, not malformed JSON from the first byte: still no JSON.
        let pretty = b"{\n  \"visitor\": \"a\",\n  \"url\": \"/a\"\n}\n";
        let e = split_ndjson(pretty, 10).unwrap_err();
        assert_eq!(e.code(), "invalid_batch");
        // A line that is JSON but no event keeps the body NDJSON.
        let events = split_ndjson(b"3\n{oops", 10).unwrap();
        assert_eq!(codes(&events), ["invalid_event", "malformed_json"]);
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        let array = b"\xEF\xBB\xBF[{\"visitor\":\"a\",\"url\":\"/x\"}]";
        assert_eq!(codes(&split_array(array, 10).unwrap()), ["ok"]);
        let lines =
            b"\xEF\xBB\xBF{\"visitor\":\"a\",\"url\":\"/x\"}\n{\"visitor\":\"b\",\"url\":\"/x\"}";
        assert_eq!(codes(&split_ndjson(lines, 10).unwrap()), ["ok", "ok"]);
        assert_eq!(first_byte(b"\xEF\xBB\xBF \n["), Some(b'['));
        assert!(parse_event(b"\xEF\xBB\xBF{\"visitor\":\"a\",\"url\":\"/x\"}").is_ok());
    }

    #[test]
    fn over_the_limit_is_refused_whole() {
        let one = r#"{"visitor":"a","url":"/x"}"#;
        let array = format!("[{one},{one},{one}]");
        assert_eq!(
            split_array(array.as_bytes(), 2).unwrap_err().code(),
            "too_many_events"
        );
        let lines = format!("{one}\n{one}\n{one}\n");
        assert_eq!(
            split_ndjson(lines.as_bytes(), 2).unwrap_err().code(),
            "too_many_events"
        );
        assert_eq!(split_ndjson(lines.as_bytes(), 3).unwrap().len(), 3);
    }

    #[test]
    fn framing_follows_the_content_type() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            framing(&h).map_err(|e| e.code())
        };
        assert_eq!(
            with("application/x-ndjson; charset=utf-8"),
            Ok(Framing::Ndjson)
        );
        assert_eq!(with("Application/NDJSON"), Ok(Framing::Ndjson));
        assert_eq!(with("application/jsonl"), Ok(Framing::Ndjson));
        assert_eq!(with("application/json"), Ok(Framing::Array));
        assert_eq!(with("text/plain"), Ok(Framing::Untyped));
        assert_eq!(with("Text/Plain;charset=UTF-8"), Ok(Framing::Untyped));
        assert_eq!(with("text/csv"), Err("unsupported_media_type"));
        assert_eq!(framing(&HeaderMap::new()), Ok(Framing::Untyped));
    }
}
