// Run: cargo run --release -p tracker-http --example bare -- 127.0.0.1:18081
//
//! The baseline of `benches/http.sh`: bare axum handlers that parse the
//! same requests as tracker-http and do nothing else. The gap between
//! this and the service is what tracking (and the service's middleware)
//! costs over HTTP itself. `benches/http.sh` drives `/events` and
//! `/distinct`; `benches/http_browsers.sh` drives `/api/event` (parse a
//! Plausible event, answer `202 ok`) and `/count` (parse the query, answer
//! the 43-byte GIF).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Event {
    #[allow(dead_code)] // parsed, as by the service, then dropped
    visitor: String,
    #[allow(dead_code)]
    url: String,
}

#[derive(Deserialize)]
struct DistinctQuery {
    url: String,
}

#[derive(Serialize)]
struct DistinctBody {
    url: String,
    distinct_visitors: u64,
    exact: bool,
}

async fn events(Json(_event): Json<Event>) -> StatusCode {
    StatusCode::ACCEPTED
}

#[derive(Deserialize)]
struct PlausibleEvent {
    #[allow(dead_code)]
    n: String,
    #[allow(dead_code)]
    u: String,
}

/// Plausible sends `text/plain`, which axum's `Json` refuses: parse the bytes.
async fn plausible(body: Bytes) -> impl IntoResponse {
    match serde_json::from_slice::<PlausibleEvent>(&body) {
        Ok(_) => (StatusCode::ACCEPTED, "ok"),
        Err(_) => (StatusCode::BAD_REQUEST, "bad"),
    }
}

#[derive(Deserialize)]
struct CountQuery {
    #[allow(dead_code)]
    p: String,
}

async fn count(Query(_query): Query<CountQuery>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        &tracker_http::browser::PIXEL[..],
    )
}

async fn distinct(Query(query): Query<DistinctQuery>) -> Json<DistinctBody> {
    Json(DistinctBody {
        url: query.url,
        distinct_visitors: 0,
        exact: true,
    })
}

#[tokio::main]
async fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into())
        .parse()
        .expect("usage: bare [ADDR]");
    let router = Router::new()
        .route("/events", post(events))
        .route("/distinct", get(distinct))
        .route("/api/event", post(plausible))
        .route("/count", get(count))
        .route("/healthz", get(|| async { "ok" }));
    // The same listener set-up as the service: TCP_NODELAY on.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind")
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    axum::serve(listener, router).await.expect("serve");
}
