//! [`AppState`]: what every handler shares.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use tracker_core::Tracker;

use crate::config::{Config, DEFAULT_BODY_LIMIT, DEFAULT_REQUEST_TIMEOUT};
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::shutdown::Shutdown;

/// The tracker and the HTTP layer's settings and counters, behind one
/// `Arc`: handlers and layers clone it per request, and one reference
/// count is all that costs.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] points to.
pub struct Shared {
    /// The tracker requests are translated into calls on.
    pub tracker: Arc<Tracker>,
    /// Request and event counters.
    pub metrics: Metrics,
    /// Triggered when the service starts draining.
    pub shutdown: Shutdown,
    /// Settings of the HTTP layer.
    pub limits: HttpLimits,
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The HTTP layer's settings, resolved from the [`Config`].
#[derive(Debug, Default)]
pub struct HttpLimits {
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Longest a client may take to send a request body.
    pub request_timeout: Duration,
    /// The per-IP rate limit, if enabled.
    pub rate_limiter: Option<RateLimiter>,
    /// The bearer token read endpoints require, if any.
    pub auth_token: Option<String>,
    /// Origins allowed by CORS (`*` for any); empty means CORS is off.
    pub cors_origins: Vec<String>,
}

impl AppState {
    /// State for `config`, with a tracker built from its core options.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        config.validate()?;
        let tracker = config
            .core
            .builder()
            .build()
            .map_err(|e| format!("tracker settings: {e}"))?;
        let http = &config.http;
        let limits = HttpLimits {
            body_limit: http.body_limit,
            request_timeout: http.request_timeout,
            rate_limiter: http
                .rate_limit
                .map(|rate| RateLimiter::new(rate, http.rate_burst.unwrap_or(rate.max(1.0)))),
            auth_token: http.auth_token.clone(),
            cors_origins: http.cors_origins.clone(),
        };
        Ok(Self::new(Arc::new(tracker), limits))
    }

    /// State around an existing tracker (for embedding and tests).
    pub fn new(tracker: Arc<Tracker>, limits: HttpLimits) -> Self {
        Self(Arc::new(Shared {
            tracker,
            metrics: Metrics::default(),
            shutdown: Shutdown::new(),
            limits,
        }))
    }
}

impl HttpLimits {
    /// The defaults of the binary: [`DEFAULT_BODY_LIMIT`],
    /// [`DEFAULT_REQUEST_TIMEOUT`], no rate limit, no token, no CORS.
    pub fn standard() -> Self {
        Self {
            body_limit: DEFAULT_BODY_LIMIT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            ..Self::default()
        }
    }
}
