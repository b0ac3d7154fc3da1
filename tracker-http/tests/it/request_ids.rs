//! Request ids, in a test binary of their own: the test installs a
//! `tracing` subscriber, and tracing caches per-callsite interest
//! process-wide, so tests running beside it without one would race it.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::*;

#[tokio::test]
async fn request_ids_are_echoed_or_made_for_logged_requests() {
    let (app, _) = default_app();
    let request = Request::get("/healthz")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, request).await.headers["x-request-id"], "abc-123");
    // Not logged (no subscriber at debug): no id is made.
    assert!(
        !get(&app, "/healthz")
            .await
            .headers
            .contains_key("x-request-id")
    );

    // Logged at debug: every request gets a fresh id.
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(std::io::sink)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let a = get(&app, "/healthz").await.headers["x-request-id"].clone();
    let b = get(&app, "/nope").await.headers["x-request-id"].clone();
    assert_ne!(a, b);
}
