//! [`AppError`]: every way a request can fail, and its JSON wire form
//! `{"error": {"code": "...", "message": "..."}}`.

use std::borrow::Cow;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracker_core::TrackerError;
use tracker_core::persist::DurableError;

/// Why a request failed. Each variant has one status and one stable code.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AppError {
    /// The body is not JSON (syntax error, truncated, empty).
    MalformedJson(String),
    /// The body could not be read off the connection: its chunked
    /// framing is broken, or the connection ended before the body did.
    /// Nothing was recorded.
    UnreadableBody(String),
    /// The body is JSON but not an event: missing field, wrong type.
    InvalidEvent(String),
    /// A query-string parameter is missing or invalid.
    InvalidQuery(Cow<'static, str>),
    /// The core refused the input (empty, too long, not UTF-8, ...).
    Tracker(TrackerError),
    /// A read endpoint was called without the configured bearer token.
    Unauthorized,
    /// A read endpoint was called with a bearer token that is not the
    /// configured one (the same code; RFC 6750's `invalid_token`).
    WrongToken,
    /// No route has this path.
    NotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The request took longer than the configured timeout.
    Timeout,
    /// The body is larger than the configured limit (in bytes).
    PayloadTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The body's content type is neither JSON nor plain text.
    UnsupportedMediaType,
    /// The body is compressed (a `Content-Encoding` other than
    /// `identity`): bodies are read as sent.
    UnsupportedEncoding,
    /// A batch body is neither a JSON array nor NDJSON: nothing recorded.
    InvalidBatch(String),
    /// A WebSocket message that starts as an array but is not one: the
    /// same code as [`AppError::InvalidBatch`], with a message that speaks
    /// of messages (NDJSON and content types are the batch route's).
    InvalidMessage(String),
    /// `GET /events/ws` without a valid WebSocket upgrade (what is
    /// missing or wrong, as the upgrade found it).
    NotWebSocket(String),
    /// A batch holds more events than the configured limit: nothing
    /// recorded (413, like a body over the byte limit: the request is too
    /// big, not malformed, and the remedy is the same, to split it).
    TooManyEvents {
        /// The configured limit (`--batch-limit`).
        limit: usize,
    },
    /// This client sent more requests than its rate allows.
    RateLimited {
        /// When a token will be available again.
        retry_after: Duration,
    },
    /// The service is draining before exit.
    ShuttingDown,
    /// The connection cap (`--max-connections`) is reached; the
    /// connection is closed after this answer.
    TooManyConnections,
    /// The service is starting: recovery from the data directory, or
    /// with `--nats` joining the cluster, has not finished.
    Recovering,
    /// The event could not be written to the event log (disk full, I/O
    /// error): it was not acknowledged and may be retried.
    Storage(String),
    /// The cluster (`--nats`) could not take the event or answer the
    /// query now: NATS unreachable, or partitions without an owner during
    /// a takeover, or no visitor-id salt fetched for the period yet (for
    /// an event without a visitor). Nothing was acknowledged; retrying is
    /// safe.
    Cluster(String),
    /// The request head could not be parsed (a bad request line, header
    /// or version). Found by hyper before any route runs.
    MalformedRequest,
    /// The request head (HTTP/1) or header list (HTTP/2) is larger than
    /// `--max-header-size`.
    HeadersTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The HTTP/1 request head has more header fields than hyper parses
    /// (whatever their size).
    TooManyHeaders {
        /// The most fields a head may have.
        limit: usize,
    },
    /// The request target is longer than hyper parses.
    UriTooLong,
    /// A failure that is not the client's fault.
    Internal(String),
}

impl AppError {
    /// Whether the service could not take an event, through no fault of
    /// the event: the log or the cluster failed it (a 503 that says retry).
    /// A batch fails whole on one such refusal (see `batch.rs`).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, AppError::Storage(_) | AppError::Cluster(_))
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::MalformedJson(_)
            | AppError::UnreadableBody(_)
            | AppError::InvalidEvent(_)
            | AppError::InvalidQuery(_)
            | AppError::InvalidBatch(_)
            | AppError::InvalidMessage(_)
            | AppError::NotWebSocket(_)
            | AppError::MalformedRequest => StatusCode::BAD_REQUEST,
            AppError::HeadersTooLarge { .. } | AppError::TooManyHeaders { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            AppError::UriTooLong => StatusCode::URI_TOO_LONG,
            AppError::Tracker(e) => tracker_status(e),
            AppError::Unauthorized | AppError::WrongToken => StatusCode::UNAUTHORIZED,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Timeout => StatusCode::REQUEST_TIMEOUT,
            AppError::PayloadTooLarge { .. } | AppError::TooManyEvents { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            AppError::UnsupportedMediaType | AppError::UnsupportedEncoding => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::ShuttingDown
            | AppError::TooManyConnections
            | AppError::Recovering
            | AppError::Storage(_)
            | AppError::Cluster(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::MalformedJson(_) => "malformed_json",
            AppError::UnreadableBody(_) => "unreadable_body",
            AppError::InvalidEvent(_) => "invalid_event",
            AppError::InvalidQuery(_) => "invalid_query",
            AppError::Tracker(e) => tracker_code(e),
            AppError::Unauthorized | AppError::WrongToken => "unauthorized",
            AppError::NotFound => "not_found",
            AppError::MethodNotAllowed => "method_not_allowed",
            AppError::Timeout => "request_timeout",
            AppError::PayloadTooLarge { .. } => "payload_too_large",
            AppError::InvalidBatch(_) | AppError::InvalidMessage(_) => "invalid_batch",
            AppError::NotWebSocket(_) => "not_websocket",
            AppError::TooManyEvents { .. } => "too_many_events",
            AppError::UnsupportedMediaType | AppError::UnsupportedEncoding => {
                "unsupported_media_type"
            }
            AppError::RateLimited { .. } => "rate_limited",
            AppError::ShuttingDown => "shutting_down",
            AppError::TooManyConnections => "too_many_connections",
            AppError::Recovering => "recovering",
            AppError::Storage(_) => "storage_failed",
            AppError::Cluster(_) => "cluster_unavailable",
            AppError::MalformedRequest => "malformed_request",
            AppError::HeadersTooLarge { .. } => "headers_too_large",
            AppError::TooManyHeaders { .. } => "too_many_headers",
            AppError::UriTooLong => "uri_too_long",
            AppError::Internal(_) => "internal",
        }
    }

    /// The human-readable explanation.
    pub fn message(&self) -> Cow<'static, str> {
        match self {
            AppError::MalformedJson(m) => format!("the body is not valid JSON: {m}").into(),
            AppError::UnreadableBody(m) => format!(
                "the body could not be read (broken chunked framing, or the connection ended mid-body); nothing was recorded: {m}"
            )
            .into(),
            AppError::InvalidEvent(m) => format!("the body is not a valid event: {m}").into(),
            AppError::InvalidQuery(m) => m.clone(),
            AppError::Tracker(e) => e.to_string().into(),
            AppError::Unauthorized => "this endpoint needs an Authorization: Bearer token".into(),
            AppError::WrongToken => {
                "the bearer token is not the one this service was started with (--auth-token)".into()
            }
            AppError::NotFound => "no such endpoint".into(),
            AppError::MethodNotAllowed => "this endpoint does not accept that method".into(),
            AppError::Timeout => "the request took longer than the server's timeout".into(),
            AppError::PayloadTooLarge { limit } => {
                format!("the body is larger than the limit of {limit} bytes").into()
            }
            AppError::UnsupportedMediaType => {
                "send the event as application/json or text/plain (a batch also as application/x-ndjson)".into()
            }
            AppError::UnsupportedEncoding => {
                "the body is compressed (Content-Encoding): send it uncompressed".into()
            }
            AppError::InvalidBatch(m) => format!(
                "a batch is a JSON array of events, or NDJSON (one event per line) as application/x-ndjson; nothing was recorded: {m}"
            )
            .into(),
            AppError::InvalidMessage(m) => format!(
                "a message is one event or a JSON array of events; nothing of it was recorded: {m}"
            )
            .into(),
            AppError::NotWebSocket(m) => {
                format!("this endpoint is a WebSocket; the upgrade was refused: {m}").into()
            }
            AppError::TooManyEvents { limit } => format!(
                "the batch holds more than the limit of {limit} events; nothing was recorded: split it"
            )
            .into(),
            // Rounded up: at 50 requests/s the wait is 20 ms, which
            // `{:.1}` alone printed as "retry in 0.0 s".
            AppError::RateLimited { retry_after } => format!(
                "too many requests from this address; retry in {:.1} s",
                (retry_after.as_secs_f64() * 10.0).ceil() / 10.0
            )
            .into(),
            AppError::ShuttingDown => "the service is shutting down".into(),
            AppError::TooManyConnections => {
                "the server has as many connections open as it allows; retry shortly".into()
            }
            AppError::Recovering => {
                "the service is starting (recovering its data directory, or joining its cluster); retry shortly".into()
            }
            AppError::Storage(m) => format!(
                "the event could not be stored durably, so it was not acknowledged (it may already count in memory; retrying is safe): {m}"
            )
            .into(),
            AppError::Cluster(m) => format!("the cluster cannot answer now; retry shortly: {m}").into(),
            AppError::MalformedRequest => {
                "the request line or a header is not valid HTTP/1.1".into()
            }
            AppError::HeadersTooLarge { limit } => {
                format!("the request's headers are larger than the limit of {limit} bytes").into()
            }
            AppError::TooManyHeaders { limit } => {
                format!("the request has more than the limit of {limit} header fields").into()
            }
            AppError::UriTooLong => "the request target is too long".into(),
            AppError::Internal(m) => format!("internal error: {m}").into(),
        }
    }

    /// The whole HTTP/1.1 response for this error, closing the connection:
    /// for the connection layer, which answers for hyper when hyper
    /// refuses a request head itself (no route ran, so there is no
    /// [`Response`] to convert).
    ///
    /// ```
    /// use tracker_http::error::AppError;
    ///
    /// let bytes = AppError::MalformedRequest.http1_bytes();
    /// let text = String::from_utf8(bytes).unwrap();
    /// assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"));
    /// assert!(text.ends_with(r#"{"error":{"code":"malformed_request","message":"the request line or a header is not valid HTTP/1.1"}}"#));
    /// ```
    pub fn http1_bytes(&self) -> Vec<u8> {
        let status = self.status();
        let body = json_body(self.code(), &self.message());
        let mut bytes = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            status.as_str(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        )
        .into_bytes();
        bytes.extend_from_slice(&body);
        bytes
    }
}

impl From<TrackerError> for AppError {
    fn from(e: TrackerError) -> Self {
        AppError::Tracker(e)
    }
}

/// Invalid input keeps the tracker's mapping; anything else of the
/// cluster is a 503 (retrying is safe: recording is idempotent).
impl From<tracker_cluster::ClusterError> for AppError {
    fn from(e: tracker_cluster::ClusterError) -> Self {
        match e {
            tracker_cluster::ClusterError::Tracker(e) => AppError::Tracker(e),
            other => AppError::Cluster(other.to_string()),
        }
    }
}

/// A refusal by the tracker keeps its mapping; a log failure is a 503
/// (the event may be retried: recording is idempotent).
impl From<DurableError> for AppError {
    fn from(e: DurableError) -> Self {
        match e {
            DurableError::Tracker(e) => AppError::Tracker(e),
            DurableError::Persist(e) => AppError::Storage(e.to_string()),
            other => AppError::Internal(other.to_string()),
        }
    }
}

/// Input refusals are the client's fault. `TrackerError` is non-exhaustive:
/// a variant this crate does not know yet is reported as a server error
/// rather than blamed on the client.
fn tracker_status(e: &TrackerError) -> StatusCode {
    match e {
        TrackerError::Empty { .. }
        | TrackerError::TooLong { .. }
        | TrackerError::InvalidUtf8 { .. }
        | TrackerError::InvalidUrl
        | TrackerError::InvalidSite
        | TrackerError::SchemeRelativeUrl
        | TrackerError::InvalidCursor
        | TrackerError::FromTheFuture { .. }
        | TrackerError::Time(_) => StatusCode::BAD_REQUEST,
        TrackerError::MemoryFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn tracker_code(e: &TrackerError) -> &'static str {
    match e {
        TrackerError::Empty { .. }
        | TrackerError::TooLong { .. }
        | TrackerError::InvalidUtf8 { .. }
        | TrackerError::FromTheFuture { .. }
        | TrackerError::InvalidUrl
        | TrackerError::InvalidSite
        | TrackerError::SchemeRelativeUrl
        | TrackerError::InvalidCursor
        | TrackerError::MemoryFull { .. }
        | TrackerError::Time(_) => e.code(),
        _ => "internal",
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
}

/// The JSON error body for `code` and `message`.
fn json_body(code: &str, message: &str) -> Vec<u8> {
    let body = Body {
        error: Detail { code, message },
    };
    // Serialising two strings cannot fail; the fallback keeps that a
    // non-panicking certainty.
    serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"error\":{}}".to_vec())
}

/// The JSON error response for `status`, `code` and `message`.
pub(crate) fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut response = (status, json_body(code, message)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response = json_error(self.status(), self.code(), &self.message());
        match self {
            AppError::RateLimited { retry_after } => {
                let secs = retry_after
                    .as_secs()
                    .saturating_add(u64::from(retry_after.subsec_nanos() > 0));
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            AppError::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            // RFC 6750, 3.1: a token was presented and is not valid.
            AppError::WrongToken => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            // The 503s a client should retry (the connection cap's, once
            // connections close); not `shutting_down`, which says to go
            // to another instance.
            AppError::Recovering
            | AppError::Storage(_)
            | AppError::Cluster(_)
            | AppError::TooManyConnections => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(1));
            }
            _ => {}
        }
        response
    }
}

/// Turns any error response that is not already JSON into the JSON error
/// format, so nothing produced by axum or a tower layer (a default 404,
/// a 405 or 413 rejection, a CORS refusal) reaches a client as plain text.
/// Headers such as `Allow` are kept.
pub(crate) fn ensure_json(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let (code, message) = generic(status);
    let fresh = json_error(status, code, message);
    parts.headers.remove(header::CONTENT_LENGTH);
    let (fresh_parts, body) = fresh.into_parts();
    parts.headers.extend(fresh_parts.headers);
    Response::from_parts(parts, body)
}

/// Codes for statuses that reach [`ensure_json`] without an [`AppError`].
fn generic(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::BAD_REQUEST => ("bad_request", "the request is invalid"),
        StatusCode::UNAUTHORIZED => ("unauthorized", "authentication is required"),
        StatusCode::FORBIDDEN => ("forbidden", "the request is not allowed"),
        StatusCode::NOT_FOUND => ("not_found", "no such endpoint"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this endpoint does not accept that method",
        ),
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request took too long"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "send the event as application/json or text/plain",
        ),
        StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "too many requests"),
        StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "the service is unavailable"),
        s if s.is_client_error() => ("bad_request", "the request was refused"),
        _ => ("internal", "internal server error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracker_core::Field;

    #[test]
    fn core_refusals_are_client_errors() {
        let e = AppError::from(TrackerError::Empty {
            field: Field::Visitor,
        });
        assert_eq!((e.status(), e.code()), (StatusCode::BAD_REQUEST, "empty"));
        assert_eq!(e.message(), "visitor must not be empty");
    }

    #[test]
    fn time_refusals_are_400_with_their_code() {
        let now = tracker_core::Timestamp::default();
        for (text, code) in [
            ("yesterday", "bad_time"),
            ("1969-12-31", "time_out_of_range"),
        ] {
            let e = AppError::from(TrackerError::from(
                tracker_core::Timestamp::parse(text, now).unwrap_err(),
            ));
            assert_eq!((e.status(), e.code()), (StatusCode::BAD_REQUEST, code));
            assert!(e.message().contains(text), "{}", e.message());
        }
    }

    #[test]
    fn a_rate_limit_never_says_to_retry_in_no_time() {
        for (wait, said) in [(20, "0.1"), (100, "0.1"), (101, "0.2"), (1500, "1.5")] {
            let e = AppError::RateLimited {
                retry_after: Duration::from_millis(wait),
            };
            let message = e.message();
            assert!(
                message.ends_with(&format!("retry in {said} s")),
                "{message}"
            );
        }
    }

    /// The longest wait (a rate too low for a `Duration`) is a 429 too.
    #[test]
    fn the_longest_wait_is_answered() {
        let response = AppError::RateLimited {
            retry_after: Duration::MAX,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response.headers()[header::RETRY_AFTER],
            u64::MAX.to_string().as_str()
        );
    }

    #[test]
    fn plain_error_responses_become_json() {
        let plain = (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET")],
            "nope",
        );
        let response = ensure_json(plain.into_response());
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}
