//! [`service`] and [`app`]: the routes and the layers around them.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use axum::routing::{get, post};
use tower::Layer;

use crate::cors::Cors;
use crate::error::AppError;
use crate::middleware::{Observe, ObserveLayer, rate_limit, require_bearer};
use crate::state::AppState;
use crate::{assets, batch, browser, ingest, ops, pages, query, ranges, ws};

/// The service's router over `state`; serve it, or call it in-process.
///
/// The same stack as [`service`], behind one more routing step (a router
/// whose only route is the fallback): in-process callers get a `Router`.
pub fn app(state: AppState) -> Router {
    Router::new().fallback_service(service(state))
}

/// What the server runs on every request: [`ObserveLayer`] around
/// [`Cors`] around the routes.
pub type Service = Observe<Cors>;

/// The routes wrapped once, from outside, in CORS and [`ObserveLayer`].
///
/// `Router::layer` would wrap every route instead, and axum clones a
/// route's service on every request: a CORS layer inside the router
/// costs a clone of its settings per request (~490 instructions); out
/// here it is called by reference.
pub fn service(state: AppState) -> Service {
    let routes = Routes {
        router: routes(state.clone()),
        // The rate limiter and the bearer check are layers of the
        // router's: with them on, the routes they guard go through it.
        direct: state.limits.rate_limiter.is_none(),
        direct_reads: state.limits.rate_limiter.is_none() && state.limits.auth_token.is_none(),
        state: state.clone(),
    };
    let routes = Cors::new(routes, &state.limits.cors_origins);
    ObserveLayer::new(state).layer(routes)
}

/// The router, with the three ingest routes browsers and backends hit on
/// every page view (`POST /events`, `POST /api/event`, `GET|POST /count`)
/// and the count a page shows (`GET /distinct`) called directly: the same handler with the same state, without the
/// router's work per request (cloning the route's boxed service, path
/// matching, `MatchedPath` and URL-parameter extensions, extractors),
/// about a tenth of such a request's instructions. Anything else, and
/// every request while a per-route layer applies (rate limiting), goes
/// through the router.
#[derive(Clone)]
pub struct Routes {
    router: Router,
    state: AppState,
    direct: bool,
    direct_reads: bool,
}

/// A handler's future, boxed as axum boxes it.
type Direct = Pin<Box<dyn Future<Output = Response> + Send>>;

impl Routes {
    /// Routes `request` (see [`Routes`]).
    pub fn call_ref(&self, request: Request) -> RoutesFuture {
        let hot = match (request.method(), request.uri().path()) {
            _ if !self.direct => None,
            (&Method::POST, "/events") => Some(Hot::Events),
            (&Method::POST, "/api/event") => Some(Hot::Plausible),
            (&Method::GET | &Method::POST, "/count") => Some(Hot::Count),
            (&Method::GET, "/distinct") if self.direct_reads => Some(Hot::Distinct),
            _ => None,
        };
        let Some(hot) = hot else {
            return RoutesFuture::Router(Box::pin(tower::Service::call(
                &mut self.router.clone(),
                request,
            )));
        };
        let state = State(self.state.clone());
        RoutesFuture::Direct(match hot {
            Hot::Events => {
                Box::pin(async move { ingest::record_event(state, request).await.into_response() })
            }
            Hot::Plausible => Box::pin(async move {
                browser::plausible_event(state, request)
                    .await
                    .into_response()
            }),
            Hot::Count => {
                Box::pin(async move { browser::count(state, request).await.into_response() })
            }
            Hot::Distinct => {
                Box::pin(async move { query::distinct(state, request).await.into_response() })
            }
        })
    }
}

/// The routes [`Routes`] calls directly.
enum Hot {
    Events,
    Plausible,
    Count,
    Distinct,
}

impl tower::Service<Request> for Routes {
    type Response = Response;
    type Error = Infallible;
    type Future = RoutesFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // A `Router` is always ready (axum's `poll_ready` returns Ready).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> RoutesFuture {
        self.call_ref(request)
    }
}

/// The future of [`Routes`].
pub enum RoutesFuture {
    /// Through the router. Boxed, so that this future (which hyper moves
    /// into its connection's slot on every request, hot routes included)
    /// is two words: inline, the router's future made it several cache
    /// lines, written on every request to a slot that other connections'
    /// requests had evicted (`CACHE=1 benches/http_instructions.sh`).
    Router(Pin<Box<RouteFuture<Infallible>>>),
    /// A hot route's handler, called directly.
    Direct(Direct),
}

impl Future for RoutesFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            RoutesFuture::Router(inner) => inner.as_mut().poll(cx),
            RoutesFuture::Direct(inner) => inner.as_mut().poll(cx).map(Ok),
        }
    }
}

/// The routes and their optional per-route layers (auth, rate limit),
/// without CORS and the observing layer, which [`service`] adds.
pub fn routes(state: AppState) -> Router {
    let limits = &state.limits;
    let guarded = |router: Router<AppState>| {
        if limits.auth_token.is_some() {
            router.route_layer(from_fn_with_state(state.clone(), require_bearer))
        } else {
            router
        }
    };

    let reads = guarded(
        Router::new()
            .route("/distinct", get(query::distinct))
            .route("/top", get(query::top))
            .route("/series", get(ranges::series))
            .route("/pages", get(pages::pages))
            .route("/stats", get(query::stats)),
    );
    let mut api = Router::new()
        .route("/events", post(ingest::record_event))
        .route("/events/batch", post(batch::record_batch))
        .route("/events/ws", get(ws::events_ws))
        .route("/api/event", post(browser::plausible_event))
        .route("/count", get(browser::count).post(browser::count))
        .merge(reads);
    if limits.rate_limiter.is_some() {
        api = api.route_layer(from_fn_with_state(state.clone(), rate_limit));
    }
    let mut operations = Router::new()
        .route("/", get(assets::dashboard))
        .route("/tracker.js", get(browser::tracker_js))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .merge(guarded(Router::new().route("/metrics", get(ops::metrics))));
    // The dashboard's files are public, like the page: its reads of the
    // API are what carry the bearer token.
    for (name, file) in &assets::DASHBOARD_FILES {
        operations = operations.route(
            &format!("/dashboard/{name}"),
            get(move |headers: HeaderMap| async move { file.respond(&headers) }),
        );
    }

    api.merge(operations)
        .fallback(|| async { AppError::NotFound })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .with_state(state)
}
