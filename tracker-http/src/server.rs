//! Serving [`app`] on a socket, plain or TLS, until a signal,
//! then draining.

use std::future::IntoFuture;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::Router;
use axum::serve::{IncomingStream, Listener, ListenerExt};
use axum_server::tls_rustls::RustlsConfig;
use tower::{Layer, Service};

use crate::config::Config;
use crate::middleware::{Observe, ObserveLayer};
use crate::router::{app, routes};
use crate::shutdown::{Shutdown, signal};
use crate::state::AppState;

/// How often the background sweep runs with a TTL, and how many page-table
/// buckets it visits each time: up to 40,960 pages a second, in steps
/// that each hold one stripe lock for at most 32 buckets.
const SWEEP_EVERY: Duration = Duration::from_millis(100);
const SWEEP_BUCKETS: usize = 4_096;

/// Why the service could not start or stopped with an error.
#[derive(Debug)]
pub enum ServeError {
    /// The settings are refused.
    Config(String),
    /// Binding the address failed.
    Bind(SocketAddr, io::Error),
    /// The TLS certificate or key could not be loaded.
    Tls(io::Error),
    /// The server failed while running.
    Io(io::Error),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Config(e) => write!(f, "invalid configuration: {e}"),
            ServeError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            ServeError::Tls(e) => write!(f, "cannot load the TLS certificate and key: {e}"),
            ServeError::Io(e) => write!(f, "server error: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// Runs the service described by `config` until SIGINT or SIGTERM, then
/// reports not ready for `shutdown_delay` while still serving, stops
/// accepting, gives in-flight requests `shutdown_grace` to finish, and
/// returns.
pub async fn run(config: Config) -> Result<(), ServeError> {
    let state = AppState::from_config(&config).map_err(ServeError::Config)?;
    // With a TTL, reclaim expired memory even while no events arrive
    // (records sweep as they go); stopped when `run` returns.
    let _sweeper = config
        .core
        .ttl
        .map(|_| state.tracker.spawn_sweeper(SWEEP_EVERY, SWEEP_BUCKETS));
    let shutdown = state.shutdown.clone();
    let delay = config.http.shutdown_delay;
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            signal().await;
            shutdown.drain();
            if !delay.is_zero() {
                tracing::info!(?delay, "not ready; still serving until the delay is over");
                tokio::time::sleep(delay).await;
            }
            shutdown.trigger();
        }
    });

    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|e| ServeError::Bind(config.listen, e))?;
    listener.set_nonblocking(true).map_err(ServeError::Io)?;
    let addr = listener.local_addr().map_err(ServeError::Io)?;
    let grace = config.http.shutdown_grace;

    match (&config.http.tls_cert, &config.http.tls_key) {
        (Some(cert), Some(key)) => {
            serve_tls(listener, app(state), cert, key, &shutdown, grace).await?
        }
        _ => {
            let service = ObserveLayer::new(state.clone()).layer(routes(state));
            serve_plain(listener, service, &shutdown, grace).await?
        }
    }
    // Persistence, once the core has it, is flushed here: after the last
    // request has been answered.
    tracing::info!(%addr, "stopped");
    Ok(())
}

async fn serve_plain(
    listener: std::net::TcpListener,
    service: Observe<Router>,
    shutdown: &Shutdown,
    grace: Duration,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::from_std(listener).map_err(ServeError::Io)?;
    let addr = listener.local_addr().map_err(ServeError::Io)?;
    // Responses are written whole; waiting to coalesce them only adds
    // latency.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tracing::info!(%addr, tls = false, "listening");
    let drained = {
        let shutdown = shutdown.clone();
        async move { shutdown.triggered().await }
    };
    let server = axum::serve(listener, PerConnection(service))
        .with_graceful_shutdown(drained)
        .into_future();
    tokio::select! {
        result = server => result.map_err(ServeError::Io),
        () = deadline(shutdown, grace) => {
            tracing::warn!(?grace, "in-flight requests outlived the shutdown grace; closing them");
            Ok(())
        }
    }
}

async fn serve_tls(
    listener: std::net::TcpListener,
    router: Router,
    cert: &Path,
    key: &Path,
    shutdown: &Shutdown,
    grace: Duration,
) -> Result<(), ServeError> {
    // One crypto provider for the whole process: ring, which builds with
    // no C toolchain beyond cc. An error means one is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = RustlsConfig::from_pem_file(cert, key)
        .await
        .map_err(ServeError::Tls)?;
    let addr = listener.local_addr().map_err(ServeError::Io)?;
    let handle = axum_server::Handle::new();
    tokio::spawn({
        let (shutdown, handle) = (shutdown.clone(), handle.clone());
        async move {
            shutdown.triggered().await;
            handle.graceful_shutdown(Some(grace));
        }
    });
    tracing::info!(%addr, tls = true, "listening");
    axum_server::from_tcp_rustls(listener, tls)
        .map_err(ServeError::Io)?
        .handle(handle)
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await
        .map_err(ServeError::Io)
}

/// Makes the service for each accepted connection: the observed router,
/// told the client's address.
#[derive(Clone)]
struct PerConnection(Observe<Router>);

impl<'a, L> Service<IncomingStream<'a, L>> for PerConnection
where
    L: Listener<Addr = SocketAddr>,
{
    type Response = Observe<Router>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Observe<Router>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, stream: IncomingStream<'a, L>) -> Self::Future {
        std::future::ready(Ok(self.0.for_peer(*stream.remote_addr())))
    }
}

/// Resolves `grace` after shutdown starts.
async fn deadline(shutdown: &Shutdown, grace: Duration) {
    shutdown.triggered().await;
    tokio::time::sleep(grace).await;
}
