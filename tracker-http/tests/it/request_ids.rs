//! Request ids. The test installs a `tracing` subscriber for its own
//! thread only, so the tests beside it log nothing; but tracing caches
//! per-callsite interest process-wide, and a callsite first reached by
//! another test while the subscriber is being installed can keep the
//! cached "never". So the test waits, with a deadline, until its request
//! is seen as logged, rebuilding that cache between tries.

use crate::TRACKER_HTTP;
use crate::app::*;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};
use test_support::poll;
use test_support::process::Server;

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
    let a = test_support::poll::until_some_async(Duration::from_secs(10), "a request id", || {
        tracing::callsite::rebuild_interest_cache();
        let answer = get(&app, "/healthz");
        async move { answer.await.headers.get("x-request-id").cloned() }
    })
    .await;
    let b = get(&app, "/nope").await.headers["x-request-id"].clone();
    assert_ne!(a, b);
}

/// In the log a request's id is the id itself, as its header carries it:
/// a JSON line's `request_id` is that string, so a log query by the id a
/// client got back finds the line (it was `Some("...")`, Rust's debug
/// form of the value, in JSON and text logs alike).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_request_ids_are_the_ids_themselves() {
    let server = Server::start(TRACKER_HTTP, &["--log", "debug"]);
    let client = reqwest::Client::new();
    let sent = client
        .get(server.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(sent.headers()["x-request-id"], "abc-123");
    let made = client.get(server.url("/nope")).send().await.unwrap();
    let made = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    poll::until(Duration::from_secs(30), "both requests logged", || {
        server.lines("request").len() >= 2
    });
    let ids: Vec<Value> = server
        .lines("request")
        .iter()
        .map(|line| line["request_id"].clone())
        .collect();
    assert_eq!(ids, [json!("abc-123"), json!(made)]);
}
