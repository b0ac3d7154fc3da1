//! Operational endpoints: `GET /healthz`, `GET /readyz`, `GET /metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::AppError;
use crate::state::AppState;

/// Liveness: the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: 503 once the service is draining, so load balancers stop
/// sending new work before the listener closes.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    if state.shutdown.is_draining() {
        Err(AppError::ShuttingDown)
    } else {
        Ok(Json(json!({ "status": "ready" })))
    }
}

/// Prometheus text exposition of the request counters and tracker stats.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.metrics.render(&state.tracker.stats());
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
