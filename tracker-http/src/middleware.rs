//! The layers around the handlers: request observation (metrics, JSON
//! errors, logging with request ids), bearer auth and rate limiting.

use std::convert::Infallible;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use crate::error::{AppError, ensure_json};
use crate::metrics::Route;
use crate::state::AppState;

/// The request-id header, read from clients and proxies and echoed back.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Ids are this process's start time in milliseconds (so restarts do
/// not repeat ids) and a counter: unique without randomness per request.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// The id the client or a proxy sent, if it is a sane one to echo.
fn client_request_id(request: &Request) -> Option<HeaderValue> {
    request
        .headers()
        .get(&X_REQUEST_ID)
        .filter(|id| {
            (1..=128).contains(&id.len()) && id.as_bytes().iter().all(u8::is_ascii_graphic)
        })
        .cloned()
}

/// A fresh id: this process's start time in milliseconds and a counter.
fn new_request_id() -> HeaderValue {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; 33];
    let text = format_id(process_epoch(), n, &mut buf);
    HeaderValue::from_bytes(text).unwrap_or(HeaderValue::from_static("-"))
}

fn process_epoch() -> u64 {
    static EPOCH: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    })
}

/// `{epoch:x}-{n:x}` into `buf`, without going through `fmt`.
fn format_id(epoch: u64, n: u64, buf: &mut [u8; 33]) -> &[u8] {
    fn hex(mut v: u64, out: &mut [u8]) -> usize {
        let mut tmp = [0u8; 16];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b"0123456789abcdef"[(v & 15) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        let len = tmp.len() - i;
        out[..len].copy_from_slice(&tmp[i..]);
        len
    }
    let a = hex(epoch, &mut buf[..16]);
    buf[a] = b'-';
    let b = hex(n, &mut buf[a + 1..]);
    &buf[..a + 1 + b]
}

/// The outermost layer: turns any non-JSON error into the JSON format
/// (and a handler's panic into a 500 `internal` one), counts the
/// request, and logs it at debug level (server errors at warn) with a
/// request id, echoed as `x-request-id`: the client's own, or a fresh
/// one for each request that is logged.
///
/// Written as a tower layer with its own future rather than with
/// `middleware::from_fn`, which clones the inner service, builds a `Next`
/// and boxes a future per request: this sits on every request, so it
/// allocates nothing beyond the request id.
#[derive(Clone)]
pub struct ObserveLayer {
    state: AppState,
}

impl ObserveLayer {
    /// The layer, counting into `state.metrics`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service [`ObserveLayer`] wraps around a router or route.
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    state: AppState,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let inner = &mut self.inner;
        ObserveFuture::start(&self.state, request, |request| inner.call(request))
    }
}

impl Observe<crate::cors::Cors> {
    /// [`Service::call`] by reference (see [`Cors::call_ref`](crate::cors::Cors::call_ref)).
    pub fn call_ref(&self, request: Request) -> ObserveFuture<crate::cors::CorsFuture> {
        ObserveFuture::start(&self.state, request, |request| self.inner.call_ref(request))
    }
}

/// The future of [`Observe`]: the route's future, then the bookkeeping.
pub struct ObserveFuture<F> {
    inner: F,
    start: Instant,
    route: Route,
    method: Method,
    /// Boxed: clients seldom send one, and this future is moved on every
    /// request (see `CorsFuture::Full`).
    id: Option<Box<HeaderValue>>,
    state: AppState,
}

impl<F> ObserveFuture<F> {
    /// Starts observing `request`, then hands it to `call`.
    fn start(state: &AppState, request: Request, call: impl FnOnce(Request) -> F) -> Self {
        let start = Instant::now();
        let route = Route::of(request.uri().path());
        let id = client_request_id(&request).map(Box::new);
        let method = request.method().clone();
        ObserveFuture {
            inner: call(request),
            start,
            route,
            method,
            id,
            state: state.clone(),
        }
    }
}

impl<F> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        // A handler that panics (a bug: none should) answers a 500 JSON
        // error instead of dropping the connection unanswered; the
        // future is not polled again. The panic hook has printed where.
        let polled = catch_unwind(AssertUnwindSafe(|| Pin::new(&mut this.inner).poll(cx)));
        let response = match polled {
            Ok(polled) => {
                let Ok(response) = ready!(polled);
                response
            }
            Err(_) => {
                tracing::error!(route = this.route.name(), "a request's handler panicked");
                AppError::Internal("the request's handler failed".into()).into_response()
            }
        };
        let mut response = ensure_json(response);
        let status = response.status();
        let elapsed = this.start.elapsed();
        let route = this.route;
        this.state.metrics.observe(route, status, elapsed);
        let method = &this.method;
        let failed = status.is_server_error();
        // An id is made only for a request that is logged: one nobody can
        // look up is not worth an allocation on every request. A client's
        // own id is always echoed.
        let id = match this.id.take() {
            Some(id) => Some(*id),
            None if failed || tracing::enabled!(tracing::Level::DEBUG) => Some(new_request_id()),
            None => None,
        };
        // (Field values are only evaluated for a line that is logged.)
        if failed {
            tracing::warn!(request_id = %logged_id(&id), %method, route = route.name(), status = status.as_u16(), elapsed_ms = elapsed.as_secs_f64() * 1e3, "request failed");
        } else {
            tracing::debug!(request_id = %logged_id(&id), %method, route = route.name(), status = status.as_u16(), elapsed_ms = elapsed.as_secs_f64() * 1e3, "request");
        }
        if let Some(id) = id {
            response.headers_mut().insert(X_REQUEST_ID.clone(), id);
        }
        Poll::Ready(Ok(response))
    }
}

/// A request's id in its log line: as its header carries it (a logged
/// request always has one, of visible ASCII), not the `Option`'s debug
/// form, so that a search by the id a client got back finds the line.
fn logged_id(id: &Option<HeaderValue>) -> &str {
    id.as_ref().and_then(|id| id.to_str().ok()).unwrap_or("-")
}

/// Refuses read requests without `Authorization: Bearer <token>` when a
/// token is configured.
pub async fn require_bearer(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &state.limits.auth_token {
        // The scheme is case-insensitive (RFC 9110, 11.1): `bearer` too;
        // one or more spaces follow it (11.4: `1*SP`).
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().split_at_checked(7))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"Bearer "))
            .map_or(&b""[..], |(_, token)| {
                &token[token.iter().take_while(|&&b| b == b' ').count()..]
            });
        if !constant_time_eq(presented, token.as_bytes()) {
            // A wrong token is told apart from none, so that whoever sent
            // it knows to check its value, not how it is sent.
            let error = if presented.is_empty() {
                AppError::Unauthorized
            } else {
                AppError::WrongToken
            };
            return error.into_response();
        }
    }
    next.run(request).await
}

/// Compares without stopping at the first difference, so response time
/// does not reveal how much of a guessed token is right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses requests over the per-IP rate with 429 and `Retry-After`, by
/// the client address visitor ids use (`browser::client_ip`).
pub async fn rate_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(limiter) = &state.limits.rate_limiter {
        let ip = crate::browser::client_ip(&state, request.extensions(), request.headers());
        if let Err(retry_after) = limiter.check(ip, Instant::now()) {
            return AppError::RateLimited { retry_after }.into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_and_distinct() {
        let mut buf = [0u8; 33];
        assert_eq!(format_id(0x18f, 0, &mut buf), b"18f-0");
        let mut buf = [0u8; 33];
        assert_eq!(
            format_id(u64::MAX, u64::MAX, &mut buf),
            b"ffffffffffffffff-ffffffffffffffff"
        );
    }

    /// A handler that panics is answered 500 with the JSON error, not a
    /// dropped connection.
    #[tokio::test]
    async fn a_panicking_handler_answers_500_json() {
        use std::sync::Arc;
        use tower::ServiceExt;

        let state = AppState::new(
            Arc::new(tracker_core::Tracker::new()),
            crate::state::HttpLimits::standard(),
        );
        let panicking = tower::service_fn(|_: Request| {
            Box::pin(async {
                if std::hint::black_box(true) {
                    panic!("a bug in a handler");
                }
                Ok::<Response, Infallible>(Response::default())
            })
        });
        let response = ObserveLayer::new(state)
            .layer(panicking)
            .oneshot(Request::get("/distinct").body(Default::default()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "internal");
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"ab", b"abc"));
    }
}
