//! Serving [`app`] on a socket, plain or TLS, until a signal,
//! then draining.

use std::future::IntoFuture;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::Router;
use axum::serve::{IncomingStream, Listener, ListenerExt};
use axum_server::tls_rustls::RustlsConfig;
use tower::{Layer, Service};
use tracker_core::persist::{Background, Cadence, DurableError, DurableTracker, RecoveryReport};

use crate::config::Config;
use crate::middleware::{Observe, ObserveLayer};
use crate::router::{app, routes};
use crate::shutdown::{Shutdown, signal};
use crate::state::AppState;
use crate::store::{Recovered, Store};

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
    /// The data directory could not be opened or recovered.
    Recovery(DurableError),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Config(e) => write!(f, "invalid configuration: {e}"),
            ServeError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            ServeError::Tls(e) => write!(f, "cannot load the TLS certificate and key: {e}"),
            ServeError::Io(e) => write!(f, "server error: {e}"),
            ServeError::Recovery(e) => write!(f, "cannot recover the data directory: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// Runs the service described by `config` until SIGINT or SIGTERM, then
/// reports not ready for `shutdown_delay` while still serving, stops
/// accepting, gives in-flight requests `shutdown_grace` to finish, and
/// returns.
///
/// With `--data-dir`, it listens first and recovers the directory
/// meanwhile (`/readyz` answers 503 until recovery completes), snapshots
/// on the configured schedule, and writes a final snapshot after the last
/// request is answered. A recovery failure stops the service with
/// [`ServeError::Recovery`].
pub async fn run(config: Config) -> Result<(), ServeError> {
    let state = AppState::from_config(&config).map_err(ServeError::Config)?;
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

    let serve = async {
        match (&config.http.tls_cert, &config.http.tls_key) {
            (Some(cert), Some(key)) => {
                serve_tls(listener, app(state.clone()), cert, key, &shutdown, grace).await
            }
            _ => {
                let service = ObserveLayer::new(state.clone()).layer(routes(state.clone()));
                serve_plain(listener, service, &shutdown, grace).await
            }
        }
    };
    let (served, started) = tokio::join!(serve, start_store(&config, &state));
    // Closing stops the background jobs, then writes the final snapshot
    // if anything was logged since the last one.
    let started = match started {
        Ok(background) => {
            close_store(&state, background).await;
            Ok(())
        }
        Err(e) => Err(e),
    };
    served?;
    started?;
    tracing::info!(%addr, "stopped");
    Ok(())
}

/// Stops the background jobs and, with a data directory, writes the final
/// snapshot ([`DurableTracker::close`]).
async fn close_store(state: &AppState, background: Background) {
    let Ok(Store::Durable { durable, .. }) = state.store() else {
        return;
    };
    let durable = durable.clone();
    match tokio::task::spawn_blocking(move || durable.close(background)).await {
        Ok(Ok(Some(written))) => {
            tracing::info!(path = %written.path.display(), bytes = written.payload_len, "final snapshot written")
        }
        Ok(Ok(None)) => {}
        // The log still holds every event: the next start replays it.
        Ok(Err(e)) => {
            tracing::error!(error = %e, "final snapshot failed; the next start replays the log")
        }
        Err(e) => tracing::error!(error = %e, "final snapshot task failed"),
    }
}

/// Fills the state's store: the in-memory tracker is already there; a data
/// directory is recovered on the blocking pool. Then starts the background
/// jobs: the TTL sweeper, which reclaims expired memory even while no
/// events arrive (records sweep as they go), and the snapshotter. On a
/// recovery failure it shuts the service down and returns the error.
async fn start_store(config: &Config, state: &AppState) -> Result<Background, ServeError> {
    if let Some(dir) = config.persist.data_dir.clone() {
        tracing::info!(dir = %dir.display(), "recovering the data directory");
        let (builder, options) = (config.core.builder(), config.persist.log_options());
        let started = Instant::now();
        let opened =
            tokio::task::spawn_blocking(move || DurableTracker::open(&dir, builder, options)).await;
        let opened = opened
            .map_err(|e| ServeError::Io(io::Error::other(e)))
            .and_then(|result| result.map_err(ServeError::Recovery));
        let (durable, report) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                // Nothing is served from a directory that did not recover:
                // stop, for an operator to look (see --salvage-log).
                state.shutdown.trigger();
                return Err(e);
            }
        };
        let recovered = Recovered::new(&report, started.elapsed());
        log_recovery(&report, &recovered);
        state.set_store(Store::Durable {
            durable: Arc::new(durable),
            recovered,
        });
    }
    let store = state
        .store()
        .map_err(|e| ServeError::Config(e.message().into_owned()))?;
    let cadence = Cadence::default().snapshots(config.persist.schedule());
    Ok(match store {
        Store::Memory(tracker) => tracker.start_background(cadence),
        Store::Durable { durable, .. } => {
            durable.start_background(cadence, |result| match result {
                Ok(written) => tracing::info!(
                    path = %written.path.display(),
                    bytes = written.payload_len,
                    "snapshot written"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "snapshot failed; the log keeps every event")
                }
            })
        }
    })
}

/// Logs what recovery found: a torn tail is expected after a crash (a
/// warning), anything lost otherwise is an error.
fn log_recovery(report: &RecoveryReport, recovered: &Recovered) {
    for skipped in &report.skipped_snapshots {
        tracing::error!(error = %skipped, "a damaged snapshot was passed over for an older one");
    }
    if let Some(torn) = &report.log.torn_tail {
        tracing::warn!(
            file = %torn.file.display(),
            offset = torn.offset,
            bytes = torn.bytes,
            reason = %torn.reason,
            "truncated a torn tail of the event log (a write cut short by a crash; nothing acknowledged is lost)"
        );
    }
    if let Some(salvaged) = &report.log.salvaged {
        tracing::error!(
            file = %salvaged.file.display(),
            offset = salvaged.offset,
            bytes = salvaged.bytes,
            reason = %salvaged.reason,
            "--salvage-log: dropped damaged log bytes and the events in them"
        );
    }
    if let Some((needed, available)) = report.log.gap {
        tracing::error!(%needed, %available, "--salvage-log: log positions missing, their events lost");
    }
    if let Some(behind) = report.log.behind {
        tracing::warn!(%behind, "the event log ended before the snapshot; it restarts after it");
    }
    if let Some(first) = &report.first_refusal {
        tracing::error!(
            refused = report.refused,
            first = %first,
            "replayed events were refused by the tracker (lost)"
        );
    }
    tracing::info!(
        snapshot = ?recovered.snapshot,
        replayed = recovered.replayed,
        took_ms = recovered.took.as_secs_f64() * 1e3,
        "recovered the data directory"
    );
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
