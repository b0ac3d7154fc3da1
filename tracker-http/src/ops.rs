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

/// Readiness: 503 `recovering` until start-up recovery from the data
/// directory completes, and 503 `shutting_down` once the service is
/// draining, so load balancers send work only to an instance that has its
/// data and will stay to answer.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    if state.shutdown.is_draining() {
        return Err(AppError::ShuttingDown);
    }
    let store = state.store()?;
    if let Some(node) = store.cluster() {
        let status = node.status();
        if !status.caught_up {
            return Err(AppError::Cluster(format!(
                "catching up on {} owned partitions",
                status.owned.len()
            )));
        }
        return Ok(Json(json!({
            "status": "ready",
            "node_id": status.node_id,
            "owned_partitions": status.owned.len(),
        })));
    }
    Ok(Json(json!({ "status": "ready" })))
}

/// Prometheus text exposition of the request counters, the tracker's
/// stats and, with `--data-dir`, the log and snapshots.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, AppError> {
    let store = state.store()?;
    let durable = store.durable().map(|(durable, _)| durable.status());
    // A cluster node's gauges are those of the partitions it owns.
    let stats = match store.cluster() {
        Some(node) => node.local_stats(),
        None => store.tracker().stats(),
    };
    let mut text = state
        .metrics
        .render(&stats, durable.as_ref(), store.cluster().is_some());
    if let Some(node) = store.cluster() {
        crate::metrics::render_refused(&mut text, &node.refused_events());
    }
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}
