//! The router in process, for the tests that need no socket: build an
//! app, send one request, read the answer.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use tracker_core::Tracker;
use tracker_http::{AppState, HttpLimits, app};

/// An app with the binary's defaults and a fresh tracker.
pub fn default_app() -> (Router, AppState) {
    with_limits(HttpLimits::standard())
}

/// An app with these HTTP limits and a fresh tracker.
pub fn with_limits(limits: HttpLimits) -> (Router, AppState) {
    let state = AppState::new(Arc::new(Tracker::new()), limits);
    (app(state.clone()), state)
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts the JSON error format and returns the code.
    pub fn error_code(&self) -> String {
        assert_eq!(
            self.headers
                .get("content-type")
                .map(|v| v.to_str().unwrap()),
            Some("application/json"),
            "error responses are JSON"
        );
        let json = self.json();
        assert!(
            json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "error has a message: {json}"
        );
        json["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("error has a code: {json}"))
            .to_string()
    }
}

pub async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(router: &Router, uri: &str) -> Answer {
    send(router, Request::get(uri).body(Body::empty()).unwrap()).await
}

pub async fn post_json(router: &Router, body: impl Into<Body>) -> Answer {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/events")
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    send(router, request).await
}

pub async fn record(router: &Router, visitor: &str, url: &str) -> Answer {
    let body = serde_json::json!({ "visitor": visitor, "url": url }).to_string();
    post_json(router, body).await
}

pub async fn distinct(router: &Router, query: &str) -> Answer {
    get(router, &format!("/distinct?{query}")).await
}
