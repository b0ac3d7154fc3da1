//! [`AppState`]: what every handler shares.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tracker_cluster::arrivals::ArrivalFeed;
use tracker_core::browser::VisitorIds;
use tracker_core::{SystemClock, Tracker};

use crate::browser::Browser;
use crate::client_ip::TrustedProxies;
use crate::error::AppError;
use crate::store::Store;

use crate::config::{
    Config, DEFAULT_BATCH_BODY_LIMIT, DEFAULT_BATCH_LIMIT, DEFAULT_BODY_LIMIT,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_WS_IDLE_TIMEOUT,
};
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
    /// What requests are translated into calls on; empty until recovery
    /// from `--data-dir` completes (requests are then refused with 503
    /// `recovering`, and `/readyz` says not ready).
    store: OnceLock<Store>,
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
    /// Most events in one batch.
    pub batch_limit: usize,
    /// Largest batch body or WebSocket message, in bytes.
    pub batch_body_limit: usize,
    /// Longest a client may take to send a request body.
    pub request_timeout: Duration,
    /// Longest a WebSocket may stay silent before it is closed.
    pub ws_idle_timeout: Duration,
    /// The per-IP rate limit, if enabled.
    pub rate_limiter: Option<RateLimiter>,
    /// The bearer token read endpoints require, if any.
    pub auth_token: Option<String>,
    /// Origins allowed by CORS (`*` for any); empty means CORS is off.
    pub cors_origins: Vec<String>,
    /// Visitor ids, bot rules and client addresses for browser events.
    pub browser: Browser,
}

impl AppState {
    /// State for `config`: with no `--data-dir`, around a new in-memory
    /// tracker built from its core options; with one, still recovering
    /// (the caller opens the directory and calls [`set_store`](Self::set_store),
    /// as [`server::run`](crate::server::run) does).
    pub fn from_config(config: &Config) -> Result<Self, String> {
        config.validate()?;
        let limits = Self::limits(config)?;
        if config.persist.data_dir.is_some() || config.cluster.nats.is_some() {
            return Ok(Self::recovering(limits));
        }
        let tracker = config
            .core
            .builder()
            .build()
            .map_err(|e| format!("tracker settings: {e}"))?;
        Ok(Self::new(Arc::new(tracker), limits))
    }

    fn limits(config: &Config) -> Result<HttpLimits, String> {
        let http = &config.http;
        let b = &config.browser;
        let rotation = b.visitor_salt.into();
        // With a data directory the salts live (and only live) there; the
        // file is read now and first written when the first id is derived,
        // after recovery has taken the directory's lock. A cluster node's
        // come from JetStream, fed by the node once it joined.
        let visitor_ids = match &config.persist.data_dir {
            Some(dir) => VisitorIds::open(dir, rotation, Arc::new(SystemClock))
                .map_err(|e| format!("visitor-id salts: {e}"))?,
            None if config.cluster.nats.is_some() => {
                VisitorIds::external(rotation, Arc::new(SystemClock))
            }
            None => VisitorIds::in_memory(rotation, Arc::new(SystemClock)),
        };
        Ok(HttpLimits {
            body_limit: http.body_limit,
            batch_limit: http.batch_limit,
            batch_body_limit: http.batch_body_limit,
            request_timeout: http.request_timeout,
            ws_idle_timeout: http.ws_idle_timeout,
            rate_limiter: http
                .rate_limit
                .map(|rate| RateLimiter::new(rate, http.rate_burst.unwrap_or(rate.max(1.0)))),
            auth_token: http.bearer_token().map(str::to_owned),
            cors_origins: http.cors_origins.clone(),
            browser: Browser {
                visitor_ids,
                bots: b.bot_filter.into(),
                proxies: TrustedProxies::new(b.trusted_proxies.clone()),
                site: b.site.clone(),
            },
        })
    }

    /// State around an existing in-memory tracker (for embedding and
    /// tests).
    pub fn new(tracker: Arc<Tracker>, limits: HttpLimits) -> Self {
        let state = Self::recovering(limits);
        state.set_store(Store::Memory(tracker));
        state
    }

    /// State whose store is still being recovered: every route that needs
    /// the store answers 503 until [`set_store`](Self::set_store); those
    /// that do not (`/healthz`, the dashboard's files, `/tracker.js`)
    /// answer as usual.
    pub fn recovering(limits: HttpLimits) -> Self {
        Self(Arc::new(Shared {
            store: OnceLock::new(),
            metrics: Metrics::default(),
            shutdown: Shutdown::new(),
            limits,
        }))
    }

    /// Where a cluster node reads this service's counts of the events
    /// that stop at it ([`Metrics::arrivals`]). It holds the state weakly:
    /// the node lives in the state's store.
    pub fn arrival_feed(&self) -> ArrivalFeed {
        let shared = Arc::downgrade(&self.0);
        ArrivalFeed::new(move || {
            shared
                .upgrade()
                .map(|shared| shared.metrics.arrivals())
                .unwrap_or_default()
        })
    }

    /// Makes `store` the one requests use (recovery is complete). Only the
    /// first call counts; it returns whether this one did.
    pub fn set_store(&self, store: Store) -> bool {
        self.store.set(store).is_ok()
    }

    /// The store, or 503 `recovering` while start-up recovery runs.
    pub fn store(&self) -> Result<&Store, AppError> {
        self.store.get().ok_or(AppError::Recovering)
    }

    /// The tracker, or 503 `recovering` while start-up recovery runs.
    pub fn tracker(&self) -> Result<&Arc<Tracker>, AppError> {
        self.store().map(Store::tracker)
    }
}

impl HttpLimits {
    /// The defaults of the binary: [`DEFAULT_BODY_LIMIT`],
    /// [`DEFAULT_BATCH_LIMIT`], [`DEFAULT_BATCH_BODY_LIMIT`],
    /// [`DEFAULT_REQUEST_TIMEOUT`], [`DEFAULT_WS_IDLE_TIMEOUT`], no rate limit, no token, CORS for any
    /// origin, browser events with daily salts in memory and bots dropped.
    pub fn standard() -> Self {
        Self {
            body_limit: DEFAULT_BODY_LIMIT,
            batch_limit: DEFAULT_BATCH_LIMIT,
            batch_body_limit: DEFAULT_BATCH_BODY_LIMIT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            ws_idle_timeout: DEFAULT_WS_IDLE_TIMEOUT,
            cors_origins: vec!["*".into()],
            ..Self::default()
        }
    }
}
