//! tracker-http: the HTTP service in front of [`tracker_core`].
//!
//! The crate translates requests into tracker calls and nothing more:
//! [`app`] builds the router over an [`AppState`], [`AppError`] is the one
//! error type every failure becomes (`{"error": {"code", "message"}}`),
//! [`Config`] holds the flags and `TRACKER_*` variables, [`Store`] is the
//! tracker requests go to (in memory, durable with `--data-dir`, or a
//! cluster node with `--nats`), and
//! [`server::run`] recovers the data directory, serves until
//! SIGINT/SIGTERM, drains and writes a final snapshot. [`conn`] holds the
//! connection limits (header and idle timeouts, the connection cap,
//! HTTP/2 settings, lingering close) and [`tls`] the certificate, reloaded
//! on SIGHUP and when its files change. The binary is glue over these.
//!
//! Endpoints: `POST /events`, `POST /events/batch`, `GET /events/ws`,
//! `GET /distinct?url=|site=&from=&till=`, `GET /top?limit=&site=&from=&till=`,
//! `GET /series?url=|site=&from=&till=&step=`, `GET /pages`, `GET /stats`, `GET /healthz`, `GET /readyz`, `GET /metrics`, and for
//! browsers `GET /tracker.js`, `POST /api/event` (Plausible's format) and
//! `GET|POST /count` (GoatCounter's pixel); see [`browser`]. `GET /` and
//! `GET /dashboard/*` serve the dashboard, static files embedded in the
//! binary ([`assets`]).
//!
//! ```
//! use axum::body::Body;
//! use axum::http::{Request, StatusCode};
//! use tower::ServiceExt;
//! use tracker_http::{AppState, Config, app};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let router = app(AppState::from_config(&Config::defaults()).unwrap());
//! let request = Request::post("/events")
//!     .header("content-type", "application/json")
//!     .body(Body::from(r#"{"visitor": "v1", "url": "https://example.com/"}"#))
//!     .unwrap();
//! let response = router.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::ACCEPTED);
//! # });
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod assets;
pub mod batch;
pub mod browser;
pub mod client_ip;
pub mod config;
pub mod conn;
pub mod cors;
pub mod error;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod middleware;
pub mod ops;
pub mod pages;
pub mod query;
pub mod ranges;
pub mod rate_limit;
pub mod router;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod tls;
pub mod ws;

pub use config::Config;
pub use error::AppError;
pub use router::{app, routes, service};
pub use state::{AppState, HttpLimits};
pub use store::Store;
