// Run: cargo run --release -p tracker-http --example bare -- 127.0.0.1:18081
//
//! The baseline of `benches/http.sh`: bare axum handlers that parse the
//! same requests as tracker-http and do nothing else. The gap between
//! this and the service is what tracking (and the service's middleware)
//! costs over HTTP itself.

use std::net::SocketAddr;

use axum::extract::Query;
use axum::http::StatusCode;
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
