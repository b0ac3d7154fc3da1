//! Serving [`app`](crate::app) on a socket, plain or TLS, until a signal,
//! then draining.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracker_core::persist::{Background, Cadence, DurableError, DurableTracker, RecoveryReport};

use tracker_cluster::Node;

use crate::config::Config;
use crate::conn::{self, ConnLimits};
use crate::router::service;
use crate::shutdown::signal;
use crate::state::AppState;
use crate::store::{Recovered, Store};
use crate::tls::{TlsFiles, reload_on_change, reload_on_hangup};

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

/// How often past visitor salts are looked for: a salt outlives its
/// period by at most this.
const SALT_CHECK: Duration = Duration::from_secs(60);

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
    // Salts past the previous period go on a timer too, not only when an
    // event of a new period comes (SPEC: only two salts exist).
    let _forgetting = state
        .limits
        .browser
        .visitor_ids
        .forget_past_every(SALT_CHECK);
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

    let serve = serve(&config, &state);
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
    let addr = served?;
    started?;
    tracing::info!(%addr, "stopped");
    Ok(())
}

/// Stops the background jobs and, with a data directory, writes the final
/// snapshot ([`DurableTracker::close`]).
async fn close_store(state: &AppState, background: Background) {
    let durable = match state.store() {
        Ok(Store::Durable { durable, .. }) => durable,
        Ok(Store::Cluster(node)) => {
            // Hands the partitions over with a final snapshot each, so
            // other nodes take them without waiting for the lease TTL.
            node.leave().await;
            tracing::info!("left the cluster");
            return;
        }
        _ => return,
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
    if let Some(nats) = &config.cluster.nats {
        tracing::info!(%nats, cluster = %config.cluster.cluster, "joining the cluster");
        let mut cluster = config.cluster_config();
        cluster.visitor_salts = state.limits.browser.visitor_ids.feed();
        cluster.arrivals = Some(state.arrival_feed());
        match Node::join(cluster).await {
            Ok(node) => {
                tracing::info!(node = node.id(), "joined the cluster");
                state.set_store(Store::Cluster(node));
            }
            Err(e) => {
                state.shutdown.trigger();
                return Err(ServeError::Config(e.to_string()));
            }
        }
    }
    let store = state
        .store()
        .map_err(|e| ServeError::Config(e.message().into_owned()))?;
    let cadence = Cadence::default().snapshots(config.persist.schedule());
    Ok(match store {
        Store::Memory(tracker) => tracker.start_background(cadence),
        // The gate holds no pages; its background is the one to hand back.
        Store::Cluster(node) => node.gate().start_background(Cadence::default()),
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
    if report.log.zero_tail > 0 {
        tracing::info!(
            bytes = report.log.zero_tail,
            "cut off the zeros the event log had written ahead of its frames (left by a stop without a clean close; not a loss)"
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
        tracing::warn!(
            %behind,
            "the event log ended before the snapshot (its tail was lost, or the snapshot is another data directory's); its segments were set aside as *.discarded and it restarts after the snapshot"
        );
    }
    if let Some(first) = &report.first_refusal {
        tracing::error!(
            refused = report.refused,
            first = %first,
            "replayed events were refused by the tracker (lost)"
        );
    }
    // The path itself (or `none`), not the `Option`'s debug form.
    let snapshot = recovered
        .snapshot
        .as_ref()
        .map_or_else(|| "none".to_owned(), |path| path.display().to_string());
    tracing::info!(
        %snapshot,
        replayed = recovered.replayed,
        took_ms = recovered.took.as_secs_f64() * 1e3,
        "recovered the data directory"
    );
}
/// Listens on `config.listen`, plain or TLS, and serves until shutdown
/// (see [`conn::serve`]); SIGHUP or a change to its files meanwhile
/// reloads the TLS pair.
async fn serve(config: &Config, state: &AppState) -> Result<SocketAddr, ServeError> {
    let tls = match (&config.http.tls_cert, &config.http.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(
            TlsFiles::load(cert, key).map_err(ServeError::Tls)?,
        )),
        _ => None,
    };
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|e| ServeError::Bind(config.listen, e))?;
    listener.set_nonblocking(true).map_err(ServeError::Io)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(ServeError::Io)?;
    let addr = listener.local_addr().map_err(ServeError::Io)?;
    let shutdown = state.shutdown.clone();
    tokio::spawn(reload_on_hangup(tls.clone(), async move {
        shutdown.triggered().await
    }));
    if let Some(tls) = &tls
        && !config.http.tls_reload_interval.is_zero()
    {
        let shutdown = state.shutdown.clone();
        tokio::spawn(reload_on_change(
            tls.clone(),
            config.http.tls_reload_interval,
            async move { shutdown.triggered().await },
        ));
    }
    tracing::info!(%addr, tls = tls.is_some(), "listening");
    let service = service(state.clone());
    let limits = ConnLimits::from(&config.http);
    let grace = config.http.shutdown_grace;
    conn::serve(listener, state, service, tls, limits, grace).await;
    Ok(addr)
}
