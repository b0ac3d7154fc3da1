//! [`app`]: the routes and the layers around them.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::AppError;
use crate::middleware::{ObserveLayer, X_REQUEST_ID, rate_limit, require_bearer};
use crate::state::AppState;
use crate::{assets, batch, browser, ingest, ops, pages, query, ranges, ws};

/// The service's router over `state`; serve it, or call it in-process.
///
/// Layers are added only when configured, so the default request path is
/// the handler plus one observing layer.
pub fn app(state: AppState) -> Router {
    routes(state.clone()).layer(ObserveLayer::new(state))
}

/// The routes and their optional layers, without the observing layer.
///
/// [`app`] adds [`ObserveLayer`] with `Router::layer`, which wraps every
/// route; the server instead wraps this router once, from outside
/// (`ObserveLayer::layer(routes(state))`), which saves a level of route
/// boxing per request. Both run the same code on every request.
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

    let mut router = api
        .merge(operations)
        .fallback(|| async { AppError::NotFound })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed });
    if let Some(cors) = cors(&limits.cors_origins) {
        router = router.layer(cors);
    }
    router.with_state(state)
}

/// CORS for browser senders, or `None` when no origin is configured.
/// Preflights (`OPTIONS`) are answered here for every route; credentials
/// are never allowed (tower-http's default), so a page can send events
/// and read counts but no cookie or HTTP auth of the user's rides along.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let any = origins.iter().any(|o| o == "*");
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
        .expose_headers([X_REQUEST_ID.clone()]);
    Some(if any {
        // Every answer is the same whatever the request's origin, so no
        // `Vary` is needed; leaving it out also spares each request the
        // layer's clone of its list (the layer is cloned per request).
        layer.allow_origin(AllowOrigin::any()).vary([])
    } else {
        layer.allow_origin(AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim()).ok()),
        ))
    })
}
