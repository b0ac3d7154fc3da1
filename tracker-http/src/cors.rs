//! CORS for browser senders, around the routes once ([`Cors`]).
//!
//! tower-http's `CorsLayer` decides every answer. One case is a fast path
//! taken here instead: under `--cors-origins *`, a request that is not a
//! preflight gets the same two constant headers whatever it carries.
//! tower-http builds them per request into a `HeaderMap` of its own
//! (an allocation), takes the request apart and puts it back together,
//! then merges the map into the answer: about 3,400 instructions per
//! request in callgrind (`examples/request_loop.rs`), a sixth of a whole
//! `POST /events` in process. Two inserts of static values do the same.
//! Preflights and lists of origins still go through tower-http.
//!
//! Since `OPTIONS` is answered here on every route, a 405's `Allow` gets
//! it added to the route's own methods (`allow_options`); on a path no
//! route has, `OPTIONS` is the router's 404, as any method there.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use tower::{Layer, Service};
use tower_http::cors::{self, AllowOrigin, CorsLayer};

use crate::metrics::Route;
use crate::middleware::X_REQUEST_ID;
use crate::router::{Routes, RoutesFuture};

/// The routes with CORS as configured: off, any origin, or a list.
#[derive(Clone)]
pub struct Cors {
    routes: Routes,
    /// tower-http's CORS around the same routes, when CORS is on.
    full: Option<cors::Cors<Routes>>,
    /// Any origin is allowed: non-preflight answers take the fast path.
    any: bool,
}

impl Cors {
    /// `routes` under CORS for `origins` (`*` for any; none: CORS off).
    /// Preflights (`OPTIONS`) are answered here for every route;
    /// credentials are never allowed (tower-http's default), so a page can
    /// send events and read counts but no cookie or HTTP auth of the
    /// user's rides along.
    pub fn new(routes: Routes, origins: &[String]) -> Self {
        let any = origins.iter().any(|o| o == "*");
        let full = (!origins.is_empty()).then(|| {
            let layer = CorsLayer::new()
                .allow_methods([Method::GET, Method::POST])
                // `x-request-id` too: the service reads and echoes it, so
                // a page may send one to find its request in the logs.
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::AUTHORIZATION,
                    X_REQUEST_ID.clone(),
                ])
                // `retry-after` too: a page cannot read it otherwise (it is
                // not a CORS-safelisted response header), and a sender told
                // 429 or 503 needs it to know when to try again.
                .expose_headers([X_REQUEST_ID.clone(), header::RETRY_AFTER])
                // So that a page posting JSON events is not preflighted
                // before each one.
                .max_age(PREFLIGHT_MAX_AGE);
            let layer = if any {
                // Every answer is the same whatever the request's origin,
                // so no `Vary` is needed.
                layer.allow_origin(AllowOrigin::any()).vary([])
            } else {
                layer.allow_origin(AllowOrigin::list(
                    origins
                        .iter()
                        .filter_map(|o| HeaderValue::from_str(o.trim()).ok()),
                ))
            };
            layer.layer(routes.clone())
        });
        Cors { routes, full, any }
    }
}

impl Service<Request> for Cors {
    type Response = Response;
    type Error = Infallible;
    type Future = CorsFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A `Router` is always ready (axum's `poll_ready` returns Ready).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> CorsFuture {
        self.call_ref(request)
    }
}

impl Cors {
    /// [`Service::call`] by reference: the connection layer calls this
    /// rather than cloning the whole stack for every request (tower-http's
    /// settings are a dozen fields to clone and drop).
    pub fn call_ref(&self, request: Request) -> CorsFuture {
        match &self.full {
            None => CorsFuture::Off(self.routes.call_ref(request)),
            Some(_) if self.any && request.method() != Method::OPTIONS => {
                CorsFuture::AnyOrigin(self.routes.call_ref(request))
            }
            // tower-http takes every `OPTIONS` for a preflight and answers
            // it 200 without asking the routes: on a path no route has,
            // that would say the path exists. The router's 404 instead
            // (`OPTIONS *`, of the server as a whole, keeps its 200).
            Some(_)
                if request.method() == Method::OPTIONS
                    && Route::of(request.uri().path()) == Route::Other
                    && request.uri().path() != "*" =>
            {
                if self.any {
                    CorsFuture::AnyOrigin(self.routes.call_ref(request))
                } else {
                    CorsFuture::Off(self.routes.call_ref(request))
                }
            }
            Some(full) => CorsFuture::Full(Box::pin(full.clone().call(request))),
        }
    }
}

// Constants, so that the values are checked at compile time, not on
// every answer (`from_static` called at run time loops over the bytes).
const ANY: HeaderValue = HeaderValue::from_static("*");
/// As tower-http writes the list given to `expose_headers` above.
const EXPOSED: HeaderValue = HeaderValue::from_static("x-request-id,retry-after");

/// How long a browser may reuse a preflight's answer: the longest
/// Chromium honours (Firefox keeps one up to 24 h; without the header,
/// browsers keep it 5 s).
const PREFLIGHT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(7200);

/// The future of [`Cors`].
pub enum CorsFuture {
    /// CORS is off: the route's own answer.
    Off(RoutesFuture),
    /// Any origin, not a preflight: the answer plus two constant headers.
    AnyOrigin(RoutesFuture),
    /// tower-http decides (preflights, lists of origins). Boxed: its
    /// future holds a header map, ten times the others' size, and hyper
    /// moves this future into its connection's slot on every request.
    Full(Pin<Box<cors::ResponseFuture<RoutesFuture>>>),
}

impl Future for CorsFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            CorsFuture::Off(inner) => Pin::new(inner).poll(cx),
            CorsFuture::Full(inner) => {
                let Ok(mut response) = ready!(inner.as_mut().poll(cx));
                allow_options(&mut response);
                Poll::Ready(Ok(response))
            }
            CorsFuture::AnyOrigin(inner) => {
                let Ok(mut response) = ready!(Pin::new(inner).poll(cx));
                allow_options(&mut response);
                let headers = response.headers_mut();
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY);
                headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED);
                Poll::Ready(Ok(response))
            }
        }
    }
}

/// Adds `OPTIONS` to a 405's `Allow`, which the router wrote with the
/// route's own methods: with CORS on, [`Cors`] answers `OPTIONS` on every
/// route, so the route answers it too. Inline, the status check is all
/// an answer that is not a 405 pays (out of line it was a call, ~15
/// instructions a request in callgrind).
#[inline]
fn allow_options(response: &mut Response) {
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        add_options(response);
    }
}

#[cold]
fn add_options(response: &mut Response) {
    let Some(allow) = response.headers().get(header::ALLOW) else {
        return;
    };
    let listed = allow.as_bytes();
    if listed
        .split(|&b| b == b',')
        .any(|m| m.trim_ascii() == b"OPTIONS")
    {
        return;
    }
    let mut value = listed.to_vec();
    if !value.is_empty() {
        value.push(b',');
    }
    value.extend_from_slice(b"OPTIONS");
    if let Ok(value) = HeaderValue::from_bytes(&value) {
        response.headers_mut().insert(header::ALLOW, value);
    }
}
