// Run: cargo build --release -p tracker-http --example request_loop &&
//      valgrind --tool=callgrind target/release/examples/request_loop events 10000
//
//! A fixed loop of in-process requests through the service's whole stack
//! (`tracker_http::service`: observing layer, CORS, routes, handler,
//! tracker) or through a bare axum handler, for instruction counts under
//! callgrind: deterministic where load benches on a shared machine are
//! not. The socket, hyper and the connection layer are left out;
//! `benches/http_instructions.sh` counts the whole server, and the load
//! benches (`benches/http*.sh`) time it.
//!
//! `request_loop KIND [N]`, KIND one of `events`, `plausible`, `count`,
//! `bare-events`, `bare-plausible`, `bare-count`, `empty` (builds the
//! state, sends nothing: subtract it). Each request is a new visitor (or
//! user agent) over 1000 pages, as in the load benches.

use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Query};
use axum::http::{Request, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use clap::Parser;
use serde::Deserialize;
use tower::{Service, ServiceExt};

#[derive(Deserialize)]
struct Event {
    #[allow(dead_code)]
    visitor: String,
    #[allow(dead_code)]
    url: String,
}

#[derive(Deserialize)]
struct PlausibleEvent {
    #[allow(dead_code)]
    n: String,
    #[allow(dead_code)]
    u: String,
}

#[derive(Deserialize)]
struct CountQuery {
    #[allow(dead_code)]
    p: String,
}

/// The handlers of `examples/bare.rs`.
fn bare() -> Router {
    Router::new()
        .route(
            "/events",
            post(|axum::Json(_): axum::Json<Event>| async { StatusCode::ACCEPTED }),
        )
        .route(
            "/api/event",
            post(|body: Bytes| async move {
                match serde_json::from_slice::<PlausibleEvent>(&body) {
                    Ok(_) => (StatusCode::ACCEPTED, "ok"),
                    Err(_) => (StatusCode::BAD_REQUEST, "bad"),
                }
            }),
        )
        .route(
            "/count",
            get(|Query(_): Query<CountQuery>| async {
                (
                    [
                        (header::CONTENT_TYPE, "image/gif"),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    &tracker_http::browser::PIXEL[..],
                )
                    .into_response()
            }),
        )
}

fn request(kind: &str, n: usize) -> Request<Body> {
    let ua = format!("Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.{n}");
    let mut request = match kind {
        "events" => Request::post("/events")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(format!(
                r#"{{"visitor":"visitor-{n}","url":"https://example.com/page/{}"}}"#,
                n % 1000
            ))),
        "plausible" => Request::post("/api/event")
            .header(header::CONTENT_TYPE, "text/plain")
            .header(header::USER_AGENT, ua)
            .body(Body::from(format!(
                r#"{{"n":"pageview","u":"https://example.com/page/{}","d":"example.com","r":null,"v":36}}"#,
                n % 1000
            ))),
        "count" => Request::get(format!("/count?p=%2Fpage%2F{}&t=Page&rnd={n}", n % 1000))
            .header(header::USER_AGENT, ua)
            .header(header::REFERER, "https://example.com/")
            .body(Body::empty()),
        other => panic!("unknown kind {other}"),
    }
    .expect("request");
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 40000))));
    request
}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "events".into());
    let n: usize = args.next().map_or(10_000, |n| n.parse().expect("N"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = tracker_http::Config::parse_from(["tracker-http"]);
    let state = tracker_http::AppState::from_config(&config).expect("state");
    let mut service = tracker_http::service(state);
    let mut bare = bare();
    let (bare_kind, kind) = match kind.strip_prefix("bare-") {
        Some(kind) => (true, kind.to_string()),
        None => (false, kind),
    };
    if kind == "empty" {
        return;
    }
    // Requests are built before the loop, so the loop is the stack alone.
    let requests: Vec<_> = (0..n).map(|i| request(&kind, i)).collect();
    runtime.block_on(async {
        for request in requests {
            let response = if bare_kind {
                bare.as_service()
                    .ready()
                    .await
                    .expect("ready")
                    .call(request)
                    .await
            } else {
                service.call(request).await
            }
            .expect("infallible");
            assert!(response.status().is_success(), "{}", response.status());
        }
    });
}
