//! [`Store`]: what requests are translated into calls on, either the
//! tracker alone (in memory) or the tracker with its event log and
//! snapshots (`--data-dir`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracker_cluster::Node;
use tracker_core::persist::{DurableBatch, DurableError, DurableTracker, RecoveryReport};
use tracker_core::{RecordBatch, Recorded, Timestamp, Tracker};

use crate::error::AppError;

/// Where events go and queries read from.
#[derive(Debug)]
pub enum Store {
    /// In memory only: counts end with the process.
    Memory(Arc<Tracker>),
    /// Every acknowledged event is in the log (see [`DurableTracker`]).
    Durable {
        /// The tracker, its log and snapshots.
        durable: Arc<DurableTracker>,
        /// What start-up recovered, for `/stats`.
        recovered: Recovered,
    },
    /// A member of a cluster (`--nats`): events are published to the
    /// cluster's stream, queries go to the partitions' owners.
    Cluster(Node),
}

/// What recovery at start-up found, kept for `/stats`.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// The snapshot loaded, if there was one.
    pub snapshot: Option<PathBuf>,
    /// Log events replayed after it.
    pub replayed: u64,
    /// Replayed events the tracker refused (for example a smaller budget
    /// under `--memory-policy reject`).
    pub refused: u64,
    /// Bytes of a torn log tail cut off (expected after a crash).
    pub torn_tail_bytes: u64,
    /// Bytes of zeros the log had written ahead of its frames under
    /// `--fsync always`, cut off after a crash (not a loss).
    pub zero_tail_bytes: u64,
    /// Bytes of damaged log dropped under `--salvage-log`.
    pub salvaged_bytes: u64,
    /// How long recovery took.
    pub took: Duration,
}

impl Recovered {
    /// The summary of `report`, which took `took`.
    pub fn new(report: &RecoveryReport, took: Duration) -> Self {
        Recovered {
            snapshot: report.snapshot.clone(),
            replayed: report.replayed,
            refused: report.refused,
            torn_tail_bytes: report.log.torn_tail.as_ref().map_or(0, |l| l.bytes),
            zero_tail_bytes: report.log.zero_tail,
            salvaged_bytes: report.log.salvaged.as_ref().map_or(0, |l| l.bytes),
            took,
        }
    }
}

impl Store {
    /// The tracker, for queries.
    pub fn tracker(&self) -> &Arc<Tracker> {
        match self {
            Store::Memory(tracker) => tracker,
            Store::Durable { durable, .. } => durable.tracker(),
            Store::Cluster(node) => node.gate(),
        }
    }

    /// The cluster node, with `--nats`.
    pub fn cluster(&self) -> Option<&Node> {
        match self {
            Store::Cluster(node) => Some(node),
            _ => None,
        }
    }

    /// The durable tracker and what recovery found, with `--data-dir`.
    pub fn durable(&self) -> Option<(&DurableTracker, &Recovered)> {
        match self {
            Store::Memory(_) | Store::Cluster(_) => None,
            Store::Durable { durable, recovered } => Some((durable, recovered)),
        }
    }

    /// Records that `visitor` visited `url` at `at` (now, by the tracker's
    /// clock, if `None`); returns once the event is as durable as the
    /// fsync policy promises. The log keeps the event's time (in a
    /// cluster: once JetStream acknowledged it, the event carrying its
    /// time; the outcome is then the owner's to know, `None`).
    ///
    /// The durable path applies the event and queues its log frame in
    /// place (microseconds), then awaits the log's writer thread: the
    /// request yields its runtime worker while its group is written and
    /// synced, so no thread waits per request and concurrent requests share
    /// one fsync.
    pub async fn record(
        &self,
        visitor: &str,
        url: &str,
        at: Option<Timestamp>,
    ) -> Result<Option<Recorded>, AppError> {
        match self {
            Store::Memory(tracker) => Ok(Some(record(tracker, visitor, url, at)?)),
            Store::Durable { durable, .. } => {
                let submitted = durable.submit_at(visitor, url, at)?;
                submitted.durable.await.map_err(DurableError::from)?;
                Ok(Some(submitted.recorded))
            }
            Store::Cluster(node) => {
                // Boxed: a publish's future is ~1 KiB, and inline it would
                // be moved with every in-memory request's future too.
                Box::pin(async move {
                    match at {
                        Some(at) => node.record_at(visitor, url, at).await,
                        None => node.record(visitor, url).await,
                    }
                })
                .await?;
                Ok(None)
            }
        }
    }

    /// Records a batch of `(visitor, url, at)` events, pushing each one's
    /// outcome onto `outcomes` in order (a refused event never refuses
    /// the others); returns once the accepted ones are as durable as the
    /// fsync policy promises. Durable: one log write for the batch, and an
    /// error (nothing acknowledged) if it fails.
    ///
    /// In memory the batch goes through [`Tracker::record_batch`] (each
    /// stripe's lock taken once); durable, through the durable batch.
    pub async fn record_batch(
        &self,
        events: &[(&str, &str, Option<Timestamp>)],
        outcomes: &mut Vec<Result<Option<Recorded>, AppError>>,
    ) -> Result<(), AppError> {
        match self {
            Store::Memory(tracker) => {
                // The core's batch records at the tracker's clock; a batch
                // carrying its own times (back-fill) goes event by event.
                if events.iter().all(|&(_, _, at)| at.is_none()) {
                    let now: Vec<(&str, &str)> = events
                        .iter()
                        .map(|&(visitor, url, _)| (visitor, url))
                        .collect();
                    let mut batch = RecordBatch::default();
                    tracker.record_batch(&now, &mut batch);
                    outcomes.extend(
                        batch
                            .outcomes()
                            .iter()
                            .map(|o| o.clone().map(Some).map_err(AppError::from)),
                    );
                } else {
                    outcomes.extend(events.iter().map(|&(visitor, url, at)| {
                        record(tracker, visitor, url, at)
                            .map(Some)
                            .map_err(AppError::from)
                    }));
                }
            }
            Store::Durable { durable, .. } => {
                let mut batch = DurableBatch::default();
                let append = durable.submit_batch_at(events.iter().copied(), &mut batch);
                append.await.map_err(DurableError::from)?;
                outcomes.extend(batch.outcomes().iter().map(|o| match o {
                    Ok(recorded) => Ok(Some(*recorded)),
                    Err(DurableError::Tracker(e)) => Err(AppError::Tracker(e.clone())),
                    Err(e) => Err(AppError::Storage(e.to_string())),
                }));
            }
            Store::Cluster(node) => outcomes.extend(
                node.record_batch(events)
                    .await
                    .into_iter()
                    .map(|o| o.map(|_| None).map_err(AppError::from)),
            ),
        }
        Ok(())
    }
}

/// One in-memory record, at the event's own time if it has one.
fn record(
    tracker: &Tracker,
    visitor: &str,
    url: &str,
    at: Option<Timestamp>,
) -> Result<Recorded, tracker_core::TrackerError> {
    match at {
        Some(at) => tracker.record_at(visitor, url, at),
        None => tracker.record(visitor, url),
    }
}
