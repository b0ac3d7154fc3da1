//! [`service`] and [`app`]: the routes and the layers around them.

use axum::Router;
use axum::http::HeaderMap;
use axum::middleware::from_fn_with_state;
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
    let routes = Cors::new(routes(state.clone()), &state.limits.cors_origins);
    ObserveLayer::new(state).layer(routes)
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
