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
use test_support::process::Server;

/// The longest any awaited condition of the socket test may take.
const WITHIN: Duration = Duration::from_secs(30);

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

/// Log lines are structured: a request's id is the id itself, as its
/// header carries it, so that a log query by the id a client got back
/// finds the line (it was `Some("...")`, Rust's debug form of an
/// `Option`); its duration a number of milliseconds (it was text such as
/// `"47.4µs"`), as recovery's `took_ms`; the snapshot recovery loaded its
/// path (it was `Some("...")` too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_are_structured() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let args = ["--log", "debug", "--data-dir", data_dir];
    let client = reqwest::Client::new();
    let mut server = Server::start(TRACKER_HTTP, &args);
    server.wait_ready(&client, WITHIN).await;
    let sent = client
        .get(server.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(sent.headers()["x-request-id"], "abc-123");
    let made = client.get(server.url("/nope")).send().await.unwrap();
    let made = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    server.signal("TERM");
    assert_eq!(server.wait(WITHIN).code(), Some(0));
    let requests: Vec<Value> = server
        .lines("request")
        .into_iter()
        .filter(|line| line["route"] != "/readyz")
        .collect();
    let ids: Vec<&Value> = requests.iter().map(|line| &line["request_id"]).collect();
    assert_eq!(ids, [&json!("abc-123"), &json!(made)]);
    for line in &requests {
        assert!(
            line["elapsed_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
            "{line}"
        );
    }

    // The graceful stop wrote a snapshot; the next start loads it.
    let server = Server::start(TRACKER_HTTP, &args);
    server.wait_logged("recovered the data directory", WITHIN);
    let recovered = &server.lines("recovered the data directory")[0];
    let snapshot = recovered["snapshot"].as_str().unwrap_or_default();
    assert!(
        snapshot.starts_with(data_dir) && snapshot.ends_with(".snap"),
        "{recovered}"
    );
}
