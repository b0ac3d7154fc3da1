//! [`Node`]: one member of a cluster: its NATS connection, the stream,
//! the lease bucket and the snapshot store, the partitions it owns, and
//! the tasks that keep them (lease rounds, gather answers).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::StatusCode;
use async_nats::jetstream::{self, consumer, kv, object_store, stream};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracker_core::browser::SaltFeed;
use tracker_core::sketch::UltraLogLog;
use tracker_core::{
    Background, Cadence, Distinct, PageCount, PageList, PageQuery, RangeDistinct, RangeTop,
    SeriesCounts, SitePartial, Stats, TimeRange, Timestamp, Tracker, TrackerBuilder,
};

use crate::arrivals::{ArrivalFeed, Arrivals};
use crate::chunked::{self, Reassembly};
use crate::lease::{Action, LeaseView, heartbeat_keys, live_nodes, plan};
use crate::refused::{self, Refused};
use crate::wire::{self, Answer, Ask, Body, EventV1, WireDistinct, WireError, WirePartial};
use crate::{ClusterError, Freshness};

/// Exact hashes a whole gather of a site's visitors may bring to the
/// asking node (16 MiB, as one node's site answer holds at most without
/// a budget): each partition's answer keeps its share exact (see
/// [`share_of`]), across all its points for a series, and sends a
/// sketch for the rest.
pub const GATHER_HASHES: usize = 2 << 20;

/// The least share of [`GATHER_HASHES`] a partition keeps, however many
/// partitions there are (8 bytes each: 128 KiB).
pub const MAX_EXACT_HASHES: usize = 16 * 1024;

/// Bytes one hash may take in a reply: 21 in JSON (20 digits and a
/// comma), and room beside it for the sketches of a series' points.
const WIRE_BYTES_PER_HASH: usize = 32;

/// Exact hashes one partition's answer to a site question keeps, of
/// `partitions`, when one NATS message carries `chunk_bytes`: its share
/// of [`GATHER_HASHES`], at least [`MAX_EXACT_HASHES`], but never more
/// than a reply's chunks carry (a server with a small `max_payload`).
///
/// ```
/// use tracker_cluster::node::share_of;
/// assert_eq!(share_of(64, 1 << 20), 32 * 1024);
/// assert_eq!(share_of(1024, 1 << 20), 16 * 1024);
/// assert_eq!(share_of(1, 32 << 10), 64 * 1024);
/// ```
pub fn share_of(partitions: u32, chunk_bytes: usize) -> usize {
    let fair = (GATHER_HASHES / partitions.max(1) as usize).max(MAX_EXACT_HASHES);
    fair.min(wire_hashes(chunk_bytes))
}

/// The most exact hashes one reply carries in its chunks of
/// `chunk_bytes`.
fn wire_hashes(chunk_bytes: usize) -> usize {
    chunked::MAX_CHUNKS * chunk_bytes / WIRE_BYTES_PER_HASH
}

/// The site partials `answer` holds: of a site, or one per point of a
/// range or series.
fn site_partials_of(answer: &Answer) -> Option<Vec<&WirePartial>> {
    match &answer.body {
        Ok(Body::Site(part)) => Some(vec![part]),
        Ok(Body::SitePoints(points)) => Some(points.iter().map(|(_, _, part)| part).collect()),
        _ => None,
    }
}

/// The partitions of a site's gather to ask again, each with the share
/// it may keep, so that the union is exact: those that sent a sketch of
/// more exact hashes than their share allowed ([`WirePartial::held`],
/// over all their points), when all the exact hashes still fit
/// [`GATHER_HASHES`], as on one node (a site whose visitors sit in a few
/// partitions, one big page say). None when some partial holds a sketch
/// of its own (it stays an estimate) or the hashes do not fit. The room
/// left is shared out evenly on top of what each held, for the visitors
/// recorded in between.
fn asked_again(answers: &BTreeMap<u32, Answer>) -> Vec<(u32, u64)> {
    let (mut wanted, mut again) = (0u64, Vec::new());
    for (&partition, answer) in answers {
        let Some(parts) = site_partials_of(answer) else {
            continue;
        };
        let (mut hashes, mut cut) = (0u64, false);
        for part in parts {
            match part.held {
                Some(n) => (hashes, cut) = (hashes + n, true),
                None if part.sketch.is_some() => return Vec::new(),
                None => hashes += part.hashes.len() as u64,
            }
        }
        wanted += hashes;
        if cut {
            again.push((partition, hashes));
        }
    }
    let Some(room) = (GATHER_HASHES as u64).checked_sub(wanted) else {
        return Vec::new();
    };
    let slack = room / again.len().max(1) as u64;
    again.into_iter().map(|(p, n)| (p, n + slack)).collect()
}

/// Publishes of one node awaiting their JetStream acknowledgement.
pub const MAX_ACKS_IN_FLIGHT: usize = 1 << 16;

/// Publishes of one batch awaiting their acknowledgement: past this the
/// oldest is awaited before the next is sent.
pub const BATCH_WINDOW: usize = 1024;

/// How long a query waits for a partition's answer before asking its
/// owner directly (a partition between owners has none to answer; the
/// new owner does once it started), and then before asking again while
/// it has none, doubling up to [`ASK_AGAIN_EVERY`].
pub const ASK_AGAIN_AFTER: Duration = Duration::from_millis(100);

/// The longest wait between two askings of a partition without an
/// owner, within the query timeout.
pub const ASK_AGAIN_EVERY: Duration = Duration::from_millis(500);

/// How long a query waits for an owner's answer before asking again
/// (within the query timeout, doubling each time): a question that
/// reached an owner as it let the partition go is never answered.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// The longest [`Node::leave`] spends handing partitions over.
pub const LEAVE_WITHIN: Duration = Duration::from_secs(10);

/// What a takeover adds to its lease rounds before the new owner answers:
/// restoring the snapshots of the partitions it takes in the round and
/// starting their consumers (a 1M-pair partition's restore takes 0.17 s,
/// `docs/BENCHMARKS.md`); it answers while it replays.
pub const RESTORE_WITHIN: Duration = Duration::from_secs(2);

/// How a node joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// NATS server URL(s), comma-separated (`nats://127.0.0.1:4222`).
    pub nats_url: String,
    /// The cluster's name: `[A-Za-z0-9_-]`, names the stream and buckets.
    pub cluster: String,
    /// This node's id; default a random one.
    pub node_id: Option<String>,
    /// Partitions, fixed when the cluster is first created (a node started
    /// with another count refuses to join).
    pub partitions: u32,
    /// JetStream replicas of the stream, leases and snapshots (1 for one
    /// NATS server, 3 for a three-server NATS cluster).
    pub replicas: usize,
    /// A lease not renewed for this long may be taken over; fixed when
    /// the cluster is first created (kept in the KV bucket under
    /// `meta.lease_ttl_ms`: a node started with another refuses to join).
    pub lease_ttl: Duration,
    /// How often an owner snapshots a partition that changed.
    pub snapshot_every: Duration,
    /// A NATS credentials file (JWT and nkey).
    pub credentials: Option<PathBuf>,
    /// A CA certificate (PEM) to verify the server with; requires TLS.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate and key (PEM) for mutual TLS.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// The settings of each partition's tracker (its hash key is
    /// replaced by the cluster's).
    pub tracker: TrackerBuilder,
    /// The feed of this node's derived visitor ids
    /// ([`VisitorIds::external`](tracker_core::browser::VisitorIds::external)):
    /// the node supplies it the cluster's salts ([`crate::salts`]). `None`
    /// for a node that derives no ids.
    pub visitor_salts: Option<SaltFeed>,
    /// Where this node reads its counts of the events that stop where
    /// they arrive, which it adds to statistics answers
    /// ([`Node::stats`]). `None` for a node that counts none.
    pub arrivals: Option<ArrivalFeed>,
}

impl ClusterConfig {
    /// The defaults for cluster `cluster` at `nats_url`: 64 partitions,
    /// 1 replica, a 6 s lease, snapshots every 30 s.
    pub fn new(nats_url: impl Into<String>, cluster: impl Into<String>) -> Self {
        Self {
            nats_url: nats_url.into(),
            cluster: cluster.into(),
            node_id: None,
            partitions: 64,
            replicas: 1,
            lease_ttl: Duration::from_secs(6),
            snapshot_every: Duration::from_secs(30),
            credentials: None,
            tls_ca: None,
            tls_client: None,
            tracker: Tracker::builder(),
            visitor_salts: None,
            arrivals: None,
        }
    }

    /// How long a query waits for owners: the longest a crash takeover
    /// takes, so that a query asked as a node dies answers once the new
    /// owner serves (12 s with the default 6 s TTL). The dead node's leases
    /// expire at most the TTL after it died (they are renewed every third
    /// of it); another node's lease round sees that within a third of the
    /// TTL, and takes the rest one round later if it saw the dead node's
    /// heartbeat expired but not yet every lease (renewed just after the
    /// heartbeat); then [`RESTORE_WITHIN`]. A partition still without an
    /// owner then is [`ClusterError::NoOwner`] (or
    /// [`ClusterError::Incomplete`] in a gather).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracker_cluster::ClusterConfig;
    ///
    /// let config = ClusterConfig::new("nats://127.0.0.1:4222", "c");
    /// assert_eq!(config.query_timeout(), Duration::from_secs(12));
    /// ```
    pub fn query_timeout(&self) -> Duration {
        self.lease_ttl + 2 * (self.lease_ttl / 3) + RESTORE_WITHIN
    }

    fn validate(&self) -> Result<(), ClusterError> {
        let token = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !token(&self.cluster) {
            return Err(ClusterError::Config(format!(
                "cluster name {:?}: 1 to 64 of [A-Za-z0-9_-]",
                self.cluster
            )));
        }
        if let Some(id) = &self.node_id
            && !token(id)
        {
            return Err(ClusterError::Config(format!(
                "node id {id:?}: 1 to 64 of [A-Za-z0-9_-]"
            )));
        }
        if !(1..=4096).contains(&self.partitions) {
            return Err(ClusterError::Config("partitions: 1 to 4096".into()));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(ClusterError::Config("replicas: 1 to 5".into()));
        }
        if self.lease_ttl < Duration::from_millis(500) {
            return Err(ClusterError::Config(
                "the lease TTL is at least 500 ms".into(),
            ));
        }
        // Each partition's applier snapshots on a timer of this period,
        // which panics at zero: the node would hold partitions that
        // neither apply nor answer.
        if self.snapshot_every.is_zero() {
            return Err(ClusterError::Config(
                "the partition snapshot interval must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// A member of a cluster. Cheap to clone. [`leave`](Self::leave) hands
/// its partitions over gracefully; a process that exits without it is a
/// crash as far as the others can tell (they take over after the TTL).
/// Its tasks run on the Tokio runtime it joined from, until it leaves.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClusterConfig,
    id: String,
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream,
    kv: kv::Store,
    snapshots: object_store::ObjectStore,
    /// Validation, canonicalisation and hashing of ingested events with
    /// the cluster's key and URL rules; holds no pages.
    gate: Arc<Tracker>,
    key: u64,
    owned: Mutex<BTreeMap<u32, Arc<Owned>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Set when the node leaves: lease rounds stop.
    leaving: AtomicBool,
    /// Set once a lease round completed: before it, "owns nothing" says
    /// nothing about being caught up.
    leased: AtomicBool,
    /// Stream events refused by the partitions this node applied.
    refused: Refused,
}

/// A partition this node owns.
struct Owned {
    tracker: Arc<Tracker>,
    applied: AtomicU64,
    pending: AtomicU64,
    caught_up: AtomicBool,
    /// `true` asks the applier to stop after a final snapshot; dropping
    /// the sender stops it without one.
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// With a TTL, the tracker's expiry sweeper (a thread), stopped with
    /// the partition.
    _background: Background,
}

/// What [`Inner::applier`] found of a partition.
enum Applier {
    /// Not applied here.
    None,
    /// Applied here, its task ended without removing it (a panic).
    Ended,
    /// Applied here.
    Running,
}

/// What a node reports about itself (for `/readyz` and `/stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node's id.
    pub node_id: String,
    /// The partitions it owns.
    pub owned: Vec<u32>,
    /// Whether every owned partition has applied what the stream held
    /// when it was taken (and the node owns at least one lease round's
    /// worth: it has run a round).
    pub caught_up: bool,
}

/// The prefix of a snapshot object: magic, then the stream sequence the
/// state covers (u64 little-endian), then the tracker's snapshot payload.
const SNAPSHOT_MAGIC: &[u8; 8] = b"TRKPART1";

/// Logs an event of the NATS connection at the level an operator needs:
/// losing the connection, errors, a slow consumer and a server going
/// away are warnings (the client reconnects by itself; meanwhile events
/// are refused with a 503), the rest is information.
fn log_connection_event(event: &async_nats::Event) {
    use async_nats::Event;
    match event {
        Event::Disconnected
        | Event::LameDuckMode
        | Event::SlowConsumer(_)
        | Event::ServerError(_)
        | Event::ClientError(_) => tracing::warn!(%event, "NATS connection"),
        Event::Connected | Event::Draining | Event::Closed => {
            tracing::info!(%event, "NATS connection")
        }
    }
}

impl Node {
    /// Connects to NATS, creates the cluster's stream, lease bucket and
    /// snapshot store if this is the first node, and starts taking
    /// leases. Returns once connected; partitions arrive within a lease
    /// round or two (see [`status`](Self::status)).
    pub async fn join(config: ClusterConfig) -> Result<Node, ClusterError> {
        config.validate()?;
        let id = config.node_id.clone().unwrap_or_else(random_id);
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("tracker-{}-{id}", config.cluster))
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(config.query_timeout()))
            .event_callback(|event| async move { log_connection_event(&event) })
            .retry_on_initial_connect();
        if let Some(path) = &config.credentials {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| ClusterError::Config(format!("credentials file: {e}")))?;
        }
        if let Some(ca) = &config.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &config.tls_client {
            options = options
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        let client = tokio::time::timeout(
            Duration::from_secs(15),
            options.connect(config.nats_url.as_str()),
        )
        .await
        .map_err(|_| ClusterError::Nats(format!("no NATS server at {}", config.nats_url)))?
        .map_err(nats)?;
        // Each unawaited publish holds one of the context's ack permits;
        // when they run out a publish fails at once (a 503, retry-safe)
        // rather than waiting for permits that other waiting publishers
        // hold. Batches keep at most `BATCH_WINDOW` unawaited.
        let js = jetstream::ContextBuilder::default()
            .max_ack_inflight(MAX_ACKS_IN_FLIGHT)
            .backpressure_on_inflight(false)
            .build(client.clone());
        let c = &config.cluster;
        let stream = get_or_create(
            || js.get_stream(format!("TRACKER_{c}")),
            || {
                js.create_stream(stream::Config {
                    name: format!("TRACKER_{c}"),
                    subjects: vec![format!("tracker.{c}.events.>")],
                    storage: stream::StorageType::File,
                    num_replicas: config.replicas,
                    description: Some("tracker events (tracker_cluster::EventV1)".into()),
                    ..Default::default()
                })
            },
        )
        .await?;
        let kv = lease_bucket(&js, c, config.replicas).await?;
        let snapshots = get_or_create(
            || js.get_object_store(format!("tracker_{c}_snapshots")),
            || {
                js.create_object_store(object_store::Config {
                    bucket: format!("tracker_{c}_snapshots"),
                    num_replicas: config.replicas,
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
            },
        )
        .await?;
        let key = cluster_setting(&kv, "meta.hash_key", random_u64()).await?;
        let partitions =
            cluster_setting(&kv, "meta.partitions", u64::from(config.partitions)).await?;
        if partitions != u64::from(config.partitions) {
            return Err(ClusterError::Config(format!(
                "cluster {c} has {partitions} partitions, this node was started with {}",
                config.partitions
            )));
        }
        // Each node judges the others' leases and heartbeats by its own
        // TTL: a node with a shorter one took the leases of a node with a
        // longer one between its renewals, counted it dead half the time
        // and so gave partitions up and took them back every round.
        let ttl_ms = u64::try_from(config.lease_ttl.as_millis()).unwrap_or(u64::MAX);
        let cluster_ttl_ms = cluster_setting(&kv, "meta.lease_ttl_ms", ttl_ms).await?;
        if cluster_ttl_ms != ttl_ms {
            return Err(ClusterError::Config(format!(
                "cluster {c} has a lease TTL of {cluster_ttl_ms} ms, this node was started with \
                 {ttl_ms} ms (every node must give the same; to change the cluster's, stop \
                 every node and delete meta.lease_ttl_ms from the bucket tracker_{c})"
            )));
        }
        let gate = config
            .tracker
            .clone()
            .hash_key(key)
            .build()
            .map_err(|e| ClusterError::Config(e.to_string()))?;
        crate::settings::join(&kv, gate.config(), c).await?;
        if let Some(feed) = &config.visitor_salts {
            crate::salts::join(&kv, feed, c).await?;
        }
        let inner = Arc::new(Inner {
            id,
            client,
            js,
            stream,
            kv,
            snapshots,
            gate: Arc::new(gate),
            key,
            owned: Mutex::new(BTreeMap::new()),
            tasks: Mutex::new(Vec::new()),
            leaving: AtomicBool::new(false),
            leased: AtomicBool::new(false),
            refused: Refused::default(),
            config,
        });
        let gather = inner
            .client
            .subscribe(inner.subject("gather"))
            .await
            .map_err(nats)?;
        let mut tasks = vec![
            tokio::spawn(lease_loop(inner.clone())),
            tokio::spawn(answer_gathers(inner.clone(), gather)),
        ];
        if let Some(feed) = inner.config.visitor_salts.clone() {
            tasks.push(tokio::spawn(crate::salts::keep(inner.kv.clone(), feed)));
        }
        *lock(&inner.tasks) = tasks;
        Ok(Node { inner })
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The tracker that validates, canonicalises and hashes events before
    /// they are published (the cluster's key and URL rules); it holds no
    /// pages.
    pub fn gate(&self) -> &Arc<Tracker> {
        &self.inner.gate
    }

    /// For tests: ends `partition`'s applier as a panic in it would,
    /// without its clean-up (the partition stays in [`status`](Self::status)
    /// until a lease round sees the applier gone). Returns whether this
    /// node applied the partition.
    #[doc(hidden)]
    pub fn end_applier_abruptly(&self, partition: u32) -> bool {
        let owned = lock(&self.inner.owned).get(&partition).cloned();
        owned.is_some_and(|owned| {
            lock(&owned.task)
                .as_ref()
                .inspect(|task| task.abort())
                .is_some()
        })
    }

    /// Partitions, owned ones and whether they are caught up.
    pub fn status(&self) -> NodeStatus {
        let owned = lock(&self.inner.owned);
        NodeStatus {
            node_id: self.inner.id.clone(),
            owned: owned.keys().copied().collect(),
            caught_up: self.inner.leased.load(Ordering::Acquire)
                && owned.values().all(|o| o.caught_up.load(Ordering::Acquire)),
        }
    }

    /// What the trackers of the partitions this node owns hold, added up
    /// (for this node's metrics; [`stats`](Self::stats) is the cluster's).
    pub fn local_stats(&self) -> Stats {
        let mut stats = Stats::default();
        for owned in lock(&self.inner.owned).values() {
            stats.add(&owned.tracker.stats());
        }
        stats
    }

    /// Stream events this node refused to record since it started, by
    /// reason (a [`tracker_core::TrackerError`] code such as
    /// `memory_full`, or [`refused::MALFORMED`], [`refused::VERSION`],
    /// [`refused::VISITOR_HASH`]), for its metrics: acknowledged events
    /// that no count holds.
    pub fn refused_events(&self) -> Vec<(&'static str, u64)> {
        self.inner.refused.totals()
    }

    /// Publishes "`visitor` visited `url`" (validated and canonicalised
    /// here) and returns once JetStream has acknowledged it: from then on
    /// it is in the stream (on `replicas` servers) and counted by whichever
    /// node owns its partition, whatever happens to this one.
    pub async fn record(&self, visitor: &str, url: &str) -> Result<Published, ClusterError> {
        self.record_at(visitor, url, self.inner.gate.config().clock.now())
            .await
    }

    /// [`record`](Self::record) of a visit at `at` (back-fill): the time
    /// travels in the event, so the owner records it as of then.
    pub async fn record_at(
        &self,
        visitor: &str,
        url: &str,
        at: Timestamp,
    ) -> Result<Published, ClusterError> {
        settle(self.publish(visitor, url, at).await).await
    }

    /// Publishes the events of a batch without waiting for each one's
    /// acknowledgement (up to [`BATCH_WINDOW`] in flight), then awaits
    /// them together; one outcome per event, in order (an invalid event
    /// never refuses its neighbours). An event's time is its own if it
    /// carries one (back-fill), else now.
    pub async fn record_batch(
        &self,
        events: &[(&str, &str, Option<Timestamp>)],
    ) -> Vec<Result<Published, ClusterError>> {
        let mut pending = std::collections::VecDeque::with_capacity(BATCH_WINDOW);
        let mut outcomes = Vec::with_capacity(events.len());
        for &(visitor, url, at) in events {
            if pending.len() == BATCH_WINDOW {
                let oldest = pending.pop_front().expect("the window is full");
                outcomes.push(settle(oldest).await);
            }
            let at = at.unwrap_or_else(|| self.inner.gate.config().clock.now());
            pending.push_back(self.publish(visitor, url, at).await);
        }
        for ack in pending {
            outcomes.push(settle(ack).await);
        }
        outcomes
    }

    async fn publish(
        &self,
        visitor: &str,
        url: &str,
        at: Timestamp,
    ) -> Result<jetstream::context::PublishAckFuture, ClusterError> {
        let gate = &self.inner.gate;
        let hash = gate.visitor_hash(visitor)?;
        let url = gate.canonicalize(url)?.into_owned();
        // The owner would refuse it silently once it is acknowledged.
        gate.check_retained(&url, at)?;
        let partition = wire::partition_of(&url, self.inner.config.partitions);
        let event = EventV1::new(hash, url, at.as_millis() as i64);
        let payload = serde_json::to_vec(&event).expect("an event serialises");
        self.inner
            .js
            .publish(self.inner.events_subject(partition), payload.into())
            .await
            .map_err(nats)
    }

    /// A page's distinct visitors, from its partition's owner.
    pub async fn distinct(&self, url: &str) -> Result<(String, Distinct, Freshness), ClusterError> {
        let url = self.inner.gate.canonicalize(url)?.into_owned();
        let partition = wire::partition_of(&url, self.inner.config.partitions);
        let answer = self
            .inner
            .ask_owner(partition, &Ask::Distinct { url })
            .await?;
        let freshness = Freshness::of(self.inner.config.partitions, [&answer]);
        match answer.body.map_err(ClusterError::owner)? {
            Body::Distinct { url, count } => Ok((url, count.into(), freshness)),
            _ => Err(ClusterError::Owner("an answer of another kind".into())),
        }
    }

    /// A site's distinct visitors: the union of every partition's
    /// partial (exact hashes while small, sketches otherwise).
    pub async fn site_distinct(&self, site: &str) -> Result<(Distinct, Freshness), ClusterError> {
        let ask = |share| Ask::Site {
            site: site.into(),
            share,
        };
        let mut answers = self.inner.gather(&ask(None)).await?;
        self.inner.ask_again_for_all(&mut answers, ask).await;
        let freshness = Freshness::of(self.inner.config.partitions, answers.values());
        let mut union = SitePartial::default();
        for answer in answers.into_values() {
            let Body::Site(part) = answer.body.map_err(ClusterError::owner)? else {
                return Err(ClusterError::Owner("an answer of another kind".into()));
            };
            merge_partial(&mut union, part)?;
        }
        Ok((union.distinct(), freshness))
    }

    /// A page's distinct visitors seen in `[from, till)`, from its
    /// partition's owner (see [`Tracker::distinct_between`]).
    pub async fn distinct_between(
        &self,
        url: &str,
        from: Option<Timestamp>,
        till: Option<Timestamp>,
    ) -> Result<(String, RangeDistinct, Freshness), ClusterError> {
        let gate = &self.inner.gate;
        let url = gate.canonicalize(url)?.into_owned();
        // Checks the range here (the gate holds no pages).
        gate.distinct_between(&url, from, till)?;
        let partition = wire::partition_of(&url, self.inner.config.partitions);
        let ask = Ask::DistinctBetween {
            url: url.clone(),
            from: from.map(Timestamp::as_millis),
            till: till.map(Timestamp::as_millis),
        };
        let answer = self.inner.ask_owner(partition, &ask).await?;
        let freshness = Freshness::of(self.inner.config.partitions, [&answer]);
        let Body::Points(points) = answer.body.map_err(ClusterError::owner)? else {
            return Err(ClusterError::Owner("an answer of another kind".into()));
        };
        let Some(&point) = points.first() else {
            return Err(ClusterError::Owner(
                "a range answered without a count".into(),
            ));
        };
        Ok((url, self.point(point)?, freshness))
    }

    /// A page's distinct visitors per `step` over `[from, till)`, from
    /// its partition's owner (see [`Tracker::series`]).
    pub async fn series(
        &self,
        url: &str,
        from: Option<Timestamp>,
        till: Option<Timestamp>,
        step: Duration,
    ) -> Result<(String, SeriesCounts, Freshness), ClusterError> {
        let gate = &self.inner.gate;
        let url = gate.canonicalize(url)?.into_owned();
        // Checks range and step here; the series is the gate's, its
        // points the owner's.
        let mut counts = gate.series(&url, from, till, step)?;
        // An open `from` is where the gate's grid of points starts.
        let from = from.or(Some(counts.series.grid_from()));
        let partition = wire::partition_of(&url, self.inner.config.partitions);
        let ask = Ask::Series {
            url: url.clone(),
            from: from.map(Timestamp::as_millis),
            till: till.map(Timestamp::as_millis),
            step: step.as_secs(),
        };
        let answer = self.inner.ask_owner(partition, &ask).await?;
        let freshness = Freshness::of(self.inner.config.partitions, [&answer]);
        let Body::Points(points) = answer.body.map_err(ClusterError::owner)? else {
            return Err(ClusterError::Owner("an answer of another kind".into()));
        };
        counts.points = points
            .into_iter()
            .map(|point| self.point(point))
            .collect::<Result<_, _>>()?;
        Ok((url, counts, freshness))
    }

    /// A site's distinct visitors seen in `[from, till)`: the union of
    /// every partition's partial over the range (see
    /// [`Tracker::site_partial_between`]).
    pub async fn site_distinct_between(
        &self,
        site: &str,
        from: Option<Timestamp>,
        till: Option<Timestamp>,
    ) -> Result<(RangeDistinct, Freshness), ClusterError> {
        // Checks the name and the range here (the gate holds no pages).
        let empty = self.inner.gate.site_distinct_between(site, from, till)?;
        let (mut points, freshness) = self.site_points(site, from, till, None).await?;
        Ok((points.pop().unwrap_or(empty), freshness))
    }

    /// A site's distinct visitors per `step` over `[from, till)`, each
    /// point the union of every partition's partial for it.
    pub async fn site_series(
        &self,
        site: &str,
        from: Option<Timestamp>,
        till: Option<Timestamp>,
        step: Duration,
    ) -> Result<(SeriesCounts, Freshness), ClusterError> {
        let mut counts = self.inner.gate.site_series(site, from, till, step)?;
        // An open `from` is where the gate's grid of points starts (the latest
        // steps the point limit allows), the same for every owner.
        let from = from.or(Some(counts.series.grid_from()));
        let (points, freshness) = self
            .site_points(site, from, till, Some(step.as_secs()))
            .await?;
        if !points.is_empty() {
            counts.points = points;
        }
        Ok((counts, freshness))
    }

    /// The `k` pages with most distinct visitors seen in `[from, till)`
    /// (of `site`, or of all), merged from every partition's own top `k`
    /// over the range; the range is the widest any partition covers.
    pub async fn top_between(
        &self,
        k: usize,
        site: Option<&str>,
        from: Option<Timestamp>,
        till: Option<Timestamp>,
    ) -> Result<(RangeTop, Freshness), ClusterError> {
        let gate = &self.inner.gate;
        let mut top = match site {
            None => gate.top_between(k, from, till)?,
            Some(site) => gate.top_of_site_between(k, site, from, till)?,
        };
        let ask = Ask::TopBetween {
            k,
            site: site.map(str::to_string),
            from: from.map(Timestamp::as_millis),
            till: till.map(Timestamp::as_millis),
        };
        let answers = self.inner.gather(&ask).await?;
        let freshness = Freshness::of(self.inner.config.partitions, answers.values());
        let (mut start, mut end) = (top.range.from().as_millis(), top.range.till().as_millis());
        let mut pages = Vec::new();
        for answer in answers.into_values() {
            let Body::TopBetween(rows, from, till) = answer.body.map_err(ClusterError::owner)?
            else {
                return Err(ClusterError::Owner("an answer of another kind".into()));
            };
            (start, end) = (start.min(from), end.max(till));
            pages.extend(page_counts(
                rows,
                answer.partition,
                self.inner.config.partitions,
            ));
        }
        top.range = self.range_of(start, end)?;
        top.pages = ranked(each_page_once(pages), k);
        Ok((top, freshness))
    }

    /// Every partition's partials of `site` per point (one point without
    /// a step), united point by point; each point's range is the widest
    /// any partition covers.
    async fn site_points(
        &self,
        site: &str,
        from: Option<Timestamp>,
        till: Option<Timestamp>,
        step: Option<u64>,
    ) -> Result<(Vec<RangeDistinct>, Freshness), ClusterError> {
        let ask = |share| Ask::SiteBetween {
            site: site.into(),
            from: from.map(Timestamp::as_millis),
            till: till.map(Timestamp::as_millis),
            step,
            share,
        };
        let mut answers = self.inner.gather(&ask(None)).await?;
        self.inner.ask_again_for_all(&mut answers, ask).await;
        let freshness = Freshness::of(self.inner.config.partitions, answers.values());
        let mut points: Vec<(u64, u64, SitePartial)> = Vec::new();
        for answer in answers.into_values() {
            let Body::SitePoints(parts) = answer.body.map_err(ClusterError::owner)? else {
                return Err(ClusterError::Owner("an answer of another kind".into()));
            };
            for (i, (from, till, part)) in parts.into_iter().enumerate() {
                if i == points.len() {
                    points.push((from, till, SitePartial::default()));
                }
                let point = &mut points[i];
                (point.0, point.1) = (point.0.min(from), point.1.max(till));
                merge_partial(&mut point.2, part)?;
            }
        }
        let points = points
            .into_iter()
            .map(|(from, till, union)| {
                Ok(RangeDistinct {
                    range: self.range_of(from, till)?,
                    distinct: union.distinct(),
                })
            })
            .collect::<Result<_, ClusterError>>()?;
        Ok((points, freshness))
    }

    /// A count over a range as an owner sent it.
    fn point(
        &self,
        (from, till, count): (u64, u64, WireDistinct),
    ) -> Result<RangeDistinct, ClusterError> {
        Ok(RangeDistinct {
            range: self.range_of(from, till)?,
            distinct: count.into(),
        })
    }

    /// The bucket-aligned range `[from, till)` (milliseconds, bucket
    /// boundaries as an owner sent them) in the gate's bucketing.
    fn range_of(&self, from: u64, till: u64) -> Result<TimeRange, ClusterError> {
        let gate = &self.inner.gate;
        gate.bucketing()
            .range(
                Some(Timestamp::from_millis(from)),
                Some(Timestamp::from_millis(till)),
                gate.config().clock.now(),
            )
            .map_err(|e| ClusterError::Owner(e.to_string()))
    }

    /// The `k` pages with most distinct visitors (of `site`, or of all),
    /// merged from every partition's own top `k`.
    pub async fn top(
        &self,
        k: usize,
        site: Option<&str>,
    ) -> Result<(Vec<PageCount>, Freshness), ClusterError> {
        let ask = Ask::Top {
            k,
            site: site.map(str::to_string),
        };
        let answers = self.inner.gather(&ask).await?;
        let freshness = Freshness::of(self.inner.config.partitions, answers.values());
        let mut pages = Vec::new();
        for answer in answers.into_values() {
            let Body::Top(rows) = answer.body.map_err(ClusterError::owner)? else {
                return Err(ClusterError::Owner("an answer of another kind".into()));
            };
            pages.extend(page_counts(
                rows,
                answer.partition,
                self.inner.config.partitions,
            ));
        }
        Ok((ranked(each_page_once(pages), k), freshness))
    }

    /// One page of the listing of every page, merged from each
    /// partition's listing after the same cursor.
    pub async fn pages(&self, query: &PageQuery) -> Result<(PageList, Freshness), ClusterError> {
        let limit = query.limit.max(1);
        let ask = Ask::Pages {
            site: query.site.clone(),
            prefix: query.prefix.clone(),
            cursor: query.cursor.clone(),
            limit,
        };
        let answers = self.inner.gather(&ask).await?;
        let freshness = Freshness::of(self.inner.config.partitions, answers.values());
        let mut pages = Vec::new();
        let mut more = false;
        for answer in answers.into_values() {
            let Body::Pages(rows, next) = answer.body.map_err(ClusterError::owner)? else {
                return Err(ClusterError::Owner("an answer of another kind".into()));
            };
            more |= next.is_some();
            pages.extend(page_counts(
                rows,
                answer.partition,
                self.inner.config.partitions,
            ));
        }
        let mut pages = each_page_once(pages);
        more |= pages.len() > limit;
        pages.truncate(limit);
        let next_cursor = more.then(|| pages.last().map(|p| p.url.clone())).flatten();
        Ok((PageList { pages, next_cursor }, freshness))
    }

    /// The statistics of every partition's tracker, added up
    /// ([`Stats::add`]: stripes and budgets add up too), and the
    /// [`Arrivals`] of this node and of every node that owns a
    /// partition, added up (one count per node, since each started).
    pub async fn stats(&self) -> Result<(Stats, Arrivals, Freshness), ClusterError> {
        let answers = self.inner.gather(&Ask::Stats).await?;
        let freshness = Freshness::of(self.inner.config.partitions, answers.values());
        let mut stats = Stats::default();
        let mut nodes = BTreeMap::new();
        for answer in answers.into_values() {
            let Body::Stats(s) = answer.body.map_err(ClusterError::owner)? else {
                return Err(ClusterError::Owner("an answer of another kind".into()));
            };
            stats.add(&s.into());
            nodes.extend(answer.arrivals);
        }
        // Its own, also when it owns no partition.
        nodes.insert(self.inner.id.clone(), self.inner.arrivals());
        let mut arrivals = Arrivals::default();
        for counts in nodes.values() {
            arrivals.add(counts);
        }
        Ok((stats, arrivals, freshness))
    }

    /// Leaves the cluster: stops taking leases, snapshots every owned
    /// partition and releases it, so other nodes take over without
    /// waiting for the TTL. Bounded by [`LEAVE_WITHIN`]: with NATS
    /// unreachable the handover is given up (nothing is lost: the stream
    /// has every acknowledged event, and the leases expire).
    pub async fn leave(&self) {
        if tokio::time::timeout(LEAVE_WITHIN, self.hand_over())
            .await
            .is_err()
        {
            tracing::warn!("the handover did not finish in time; the leases will expire instead");
        }
    }

    async fn hand_over(&self) {
        let inner = &self.inner;
        inner.leaving.store(true, Ordering::Release);
        for task in std::mem::take(&mut *lock(&inner.tasks)) {
            task.abort();
        }
        let owned: Vec<u32> = lock(&inner.owned).keys().copied().collect();
        for partition in owned {
            inner.stop_partition(partition, true).await;
            if let Ok(Some(entry)) = inner.kv.entry(lease_key(partition)).await
                && entry.value == inner.id.as_bytes()
            {
                let _ = inner
                    .kv
                    .update(lease_key(partition), Bytes::new(), entry.revision)
                    .await;
            }
        }
        let _ = inner.client.flush().await;
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("cluster", &self.inner.config.cluster)
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

/// The acknowledgement of a published event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Its stream sequence.
    pub sequence: u64,
    /// JetStream found it a duplicate of one already stored.
    pub duplicate: bool,
}

impl Inner {
    fn subject(&self, what: &str) -> String {
        format!("tracker.{}.{what}", self.config.cluster)
    }

    fn events_subject(&self, partition: u32) -> String {
        self.subject(&format!("events.{partition}"))
    }

    fn builder(&self) -> TrackerBuilder {
        self.config.tracker.clone().hash_key(self.key)
    }

    /// Asks the partitions of a site's gather that sent a sketch past
    /// their share again (see [`asked_again`]), `ask` given the share
    /// each may keep, and puts their answers in `answers`. An answer
    /// asked again and lost leaves the first (its sketch).
    async fn ask_again_for_all(
        &self,
        answers: &mut BTreeMap<u32, Answer>,
        ask: impl Fn(Option<u64>) -> Ask,
    ) {
        let again = asked_again(answers).into_iter().map(|(partition, share)| {
            let ask = ask(Some(share));
            async move { (partition, self.ask_owner(partition, &ask).await) }
        });
        for (partition, answer) in futures_util::future::join_all(again).await {
            if let Ok(answer) = answer
                && site_partials_of(&answer).is_some()
            {
                answers.insert(partition, answer);
            }
        }
    }

    /// Asks `partition`'s owner, waiting for one within the query
    /// timeout (see [`ask_partition`](Self::ask_partition)).
    async fn ask_owner(&self, partition: u32, ask: &Ask) -> Result<Answer, ClusterError> {
        let payload = Bytes::from(serde_json::to_vec(ask).expect("a question serialises"));
        let deadline = tokio::time::Instant::now() + self.config.query_timeout();
        self.ask_partition(partition, payload, deadline)
            .await?
            .ok_or(ClusterError::NoOwner { partition })
    }

    /// Asks every node; keeps the first answer per partition, until every
    /// partition answered or the query timeout. Partitions that have not
    /// answered after [`ASK_AGAIN_AFTER`] are asked of their owners
    /// directly ([`ask_partition`](Self::ask_partition)): one between
    /// owners when the nodes answered (released in a rebalance, or taken
    /// over after a crash) is answered by its new owner once it started.
    async fn gather(&self, ask: &Ask) -> Result<BTreeMap<u32, Answer>, ClusterError> {
        let payload = Bytes::from(serde_json::to_vec(ask).expect("a question serialises"));
        let deadline = tokio::time::Instant::now() + self.config.query_timeout();
        let partitions = self.config.partitions;
        let inbox = self.client.new_inbox();
        let mut replies = self.client.subscribe(inbox.clone()).await.map_err(nats)?;
        self.client
            .publish_with_reply(self.subject("gather"), inbox, payload.clone())
            .await
            .map_err(nats)?;
        let mut answers = BTreeMap::new();
        let mut joined = Reassembly::default();
        let mut direct = futures_util::stream::FuturesUnordered::new();
        let again = tokio::time::sleep(ASK_AGAIN_AFTER);
        tokio::pin!(again);
        let mut asked_again = false;
        while answers.len() < partitions as usize {
            tokio::select! {
                reply = tokio::time::timeout_at(deadline, replies.next()) => {
                    let Ok(Some(reply)) = reply else { break };
                    let Some(payload) = joined.add(reply) else { continue };
                    let Ok(batch) = serde_json::from_slice::<Vec<Answer>>(&payload) else {
                        continue;
                    };
                    // Only the cluster's partitions: an answer for another
                    // (from a client that is no node) would count towards
                    // the total and end the gather without a real one.
                    for answer in batch.into_iter().filter(|a| a.partition < partitions) {
                        answers.entry(answer.partition).or_insert(answer);
                    }
                }
                () = &mut again, if !asked_again => {
                    asked_again = true;
                    for p in (0..partitions).filter(|p| !answers.contains_key(p)) {
                        direct.push(self.ask_partition(p, payload.clone(), deadline));
                    }
                }
                Some(answer) = direct.next() => {
                    if let Some(answer) = answer? {
                        answers.entry(answer.partition).or_insert(answer);
                    }
                }
            }
        }
        let _ = replies.unsubscribe().await;
        if answers.len() < partitions as usize {
            return Err(ClusterError::Incomplete {
                answered: answers.len() as u32,
                partitions,
            });
        }
        Ok(answers)
    }

    /// Asks `partition`'s owner by request-reply until it answers or the
    /// `deadline` passes (`None`). While no node takes the partition's
    /// questions (it is between owners) asks again after
    /// [`ASK_AGAIN_AFTER`], doubling up to [`ASK_AGAIN_EVERY`]; a question
    /// not answered within [`ANSWER_WITHIN`] (doubling) is asked again
    /// too, since one that reached an owner as it let the partition go is
    /// never answered.
    async fn ask_partition(
        &self,
        partition: u32,
        payload: Bytes,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Answer>, ClusterError> {
        let subject = self.subject(&format!("q.{partition}"));
        let (mut wait, mut patience) = (ASK_AGAIN_AFTER, ANSWER_WITHIN);
        loop {
            let asked = tokio::time::Instant::now();
            // An inbox of its own, not the client's request: the answer
            // may come in chunks (see `chunked`).
            let inbox = self.client.new_inbox();
            let mut replies = self.client.subscribe(inbox.clone()).await.map_err(nats)?;
            self.client
                .publish_with_reply(subject.clone(), inbox, payload.clone())
                .await
                .map_err(nats)?;
            let mut joined = Reassembly::default();
            let reply = loop {
                match tokio::time::timeout_at(deadline.min(asked + patience), replies.next()).await
                {
                    Ok(Some(message)) if message.status == Some(StatusCode::NO_RESPONDERS) => {
                        break None;
                    }
                    Ok(Some(message)) => {
                        if let Some(payload) = joined.add(message) {
                            break Some(Some(payload));
                        }
                    }
                    Ok(None) | Err(_) => break Some(None),
                }
            };
            let _ = replies.unsubscribe().await;
            match reply {
                Some(Some(payload)) => {
                    let answers: Vec<Answer> = serde_json::from_slice(&payload)
                        .map_err(|e| ClusterError::Owner(e.to_string()))?;
                    return Ok(answers.into_iter().find(|a| a.partition == partition));
                }
                // No node takes the partition's questions.
                None => {
                    if tokio::time::Instant::now() + wait >= deadline {
                        return Ok(None);
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(ASK_AGAIN_EVERY);
                }
                // Not answered in time.
                Some(None) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(None);
                    }
                    patience *= 2;
                }
            }
        }
    }

    /// Whether `partition` is applied here, and its applier still runs.
    fn applier(&self, partition: u32) -> Applier {
        match lock(&self.owned).get(&partition) {
            None => Applier::None,
            Some(owned) => match &*lock(&owned.task) {
                Some(task) if task.is_finished() => Applier::Ended,
                // Running, or being started (no task yet).
                _ => Applier::Running,
            },
        }
    }

    /// Stops applying `partition`: with `snapshot`, after a final
    /// snapshot (a release), else at once (a lost lease); then deletes
    /// this node's consumer of it, which no other owner reads.
    async fn stop_partition(&self, partition: u32, snapshot: bool) {
        let Some(owned) = lock(&self.owned).remove(&partition) else {
            return;
        };
        let task = lock(&owned.task).take();
        if snapshot {
            let _ = owned.stop.send(true);
            if let Some(task) = task {
                let _ = task.await;
            }
        } else if let Some(task) = task {
            task.abort();
        }
        let _ = self
            .stream
            .delete_consumer(&self.consumer_name(partition))
            .await;
    }

    /// This node's durable consumer of `partition`, read by no other
    /// owner (see "Snapshots" in the crate docs): a holder whose lease
    /// expired while its lease round was slow and the node that took the
    /// lease over, starting at once, pulled from one shared `p<partition>`
    /// and each got part of the events (a page counted half its visitors
    /// for good, under load).
    fn consumer_name(&self, partition: u32) -> String {
        format!("p{partition}-{}", self.id)
    }

    /// Deletes every consumer of `partition` (this node's earlier one,
    /// other owners', an earlier version's `p<partition>`): they stand
    /// where their owner stopped reading, not where the snapshot stands,
    /// and one a previous owner still reads ends its applying (it lost
    /// the lease). Nothing else deletes a crashed owner's consumer. If
    /// the listing fails, this node's own is deleted all the same (the
    /// others read apart and stop at their next lease round).
    async fn delete_consumers(&self, partition: u32) {
        let legacy = format!("p{partition}");
        let owners = format!("{legacy}-");
        let mut names = vec![self.consumer_name(partition)];
        let mut listed = self.stream.consumer_names();
        while let Some(Ok(name)) = listed.next().await {
            if (name == legacy || name.starts_with(&owners)) && !names.contains(&name) {
                names.push(name);
            }
        }
        for name in names {
            let _ = self.stream.delete_consumer(&name).await;
        }
    }

    /// Restores `partition`'s snapshot, creates this node's durable
    /// consumer of it from the next sequence and starts applying it.
    async fn start_partition(self: &Arc<Self>, partition: u32) -> Result<(), ClusterError> {
        let (tracker, mut covered) = self.restore(partition).await?;
        // A snapshot past the stream's last sequence is of a stream since
        // deleted and made again (its sequences start over): the server
        // would start the consumer at the end, past the new stream's
        // events, and no later snapshot would hold them (the applied
        // sequence stays below the one restored). Its state is kept and
        // the new stream replayed from the start (replay is idempotent).
        let last = self
            .stream
            .get_info()
            .await
            .map_err(nats)?
            .state
            .last_sequence;
        if covered > last {
            tracing::warn!(
                partition,
                covered,
                last,
                "the partition snapshot is ahead of the stream (made again?): replaying the stream from its start"
            );
            covered = 0;
        }
        self.delete_consumers(partition).await;
        let mut consumer: consumer::PullConsumer = self
            .stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(self.consumer_name(partition)),
                filter_subject: self.events_subject(partition),
                deliver_policy: if covered == 0 {
                    consumer::DeliverPolicy::All
                } else {
                    consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: covered + 1,
                    }
                },
                // The snapshot is the checkpoint; acknowledgements would
                // cost a round trip per event, and a delivery that never
                // arrived shows in the consumer sequence (see `apply`).
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .map_err(nats)?;
        let info = consumer.info().await.map_err(nats)?;
        let (pending, delivered) = (info.num_pending, info.delivered.consumer_sequence);
        let messages = consumer.messages().await.map_err(nats)?;
        let queries = self
            .client
            .subscribe(self.subject(&format!("q.{partition}")))
            .await
            .map_err(nats)?;
        let (stop, stopped) = watch::channel(false);
        let tracker = Arc::new(tracker);
        let owned = Arc::new(Owned {
            _background: tracker.start_background(Cadence::default()),
            tracker,
            applied: AtomicU64::new(covered),
            pending: AtomicU64::new(pending),
            caught_up: AtomicBool::new(pending == 0),
            stop,
            task: Mutex::new(None),
        });
        let task = tokio::spawn(apply(
            self.clone(),
            partition,
            owned.clone(),
            messages,
            queries,
            stopped,
            Start { covered, delivered },
        ));
        *lock(&owned.task) = Some(task);
        tracing::info!(partition, covered, pending, "partition taken");
        lock(&self.owned).insert(partition, owned);
        Ok(())
    }

    /// The partition's last snapshot and the stream sequence it covers,
    /// or an empty tracker and 0.
    async fn restore(&self, partition: u32) -> Result<(Tracker, u64), ClusterError> {
        let mut object = match self.snapshots.get(format!("p{partition}")).await {
            Ok(object) => object,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => {
                let tracker = self
                    .builder()
                    .build()
                    .map_err(|e| ClusterError::Config(e.to_string()))?;
                return Ok((tracker, 0));
            }
            Err(e) => return Err(nats(e)),
        };
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| ClusterError::Snapshot(e.to_string()))?;
        let Some(rest) = bytes.strip_prefix(SNAPSHOT_MAGIC) else {
            return Err(ClusterError::Snapshot("not a partition snapshot".into()));
        };
        if rest.len() < 8 {
            return Err(ClusterError::Snapshot("truncated".into()));
        }
        let covered = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
        // A legacy page with user info (see "Legacy pages" in
        // `tracker_core::persist::tracker_snapshot`) stays in the partition
        // of its old key, which `partition_of` hashed with the user info:
        // re-keyed, it is not where queries for its canonical URL go (merged
        // listings show it once: `each_page_once`). Not handled yet (a
        // stream event of such a key is: `Applied::Moved`).
        let tracker = Tracker::restore_snapshot(&rest[8..], self.builder())
            .map_err(|e| ClusterError::Snapshot(e.to_string()))?;
        Ok((tracker, covered))
    }

    async fn snapshot(&self, partition: u32, tracker: &Tracker, covered: u64) {
        let mut bytes = SNAPSHOT_MAGIC.to_vec();
        bytes.extend_from_slice(&covered.to_le_bytes());
        if let Err(e) = tracker.write_snapshot(&mut bytes) {
            tracing::warn!(partition, error = %e, "snapshot not written");
            return;
        }
        // Chunks the server takes: a `max_payload` under the store's
        // default chunk (128 KiB) would refuse every snapshot.
        let meta = object_store::ObjectMetadata {
            name: format!("p{partition}"),
            chunk_size: Some(chunked::chunk_bytes(&self.client).min(128 << 10)),
            ..Default::default()
        };
        match self.snapshots.put(meta, &mut &bytes[..]).await {
            Ok(_) => tracing::debug!(partition, covered, bytes = bytes.len(), "snapshot"),
            Err(e) => tracing::warn!(partition, error = %e, "snapshot not stored"),
        }
    }

    /// Publishes `event` (message `sequence` of `partition`, respelled)
    /// to partition `target` and awaits its acknowledgement, under a
    /// message id that JetStream deduplicates within its window (two
    /// owners overlapping). A replay past the window publishes it again:
    /// counted once all the same. Not published, it stays counted where
    /// it was read, where listings and site counts find it and only the
    /// page's own queries miss it.
    async fn forward(&self, partition: u32, sequence: u64, target: u32, event: EventV1) {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("moved-{partition}-{sequence}").as_str(),
        );
        let payload = serde_json::to_vec(&event).expect("an event serialises");
        let published = match self
            .js
            .publish_with_headers(self.events_subject(target), headers, payload.into())
            .await
        {
            Ok(ack) => ack.await.map(drop).map_err(nats),
            Err(e) => Err(nats(e)),
        };
        if let Err(e) = published {
            tracing::warn!(partition, sequence, target, error = %e, "a respelled event not moved to its page's partition");
        }
    }

    /// Answers a question sent to `partition`'s owner.
    async fn reply(&self, partition: u32, owned: &Owned, request: async_nats::Message) {
        let Some(reply) = request.reply else { return };
        let answer = match serde_json::from_slice::<Ask>(&request.payload) {
            Ok(ask) => self.answer(partition, owned, &ask),
            Err(e) => Answer {
                partition,
                applied: 0,
                pending: 0,
                body: Err(WireError(e.to_string())),
                arrivals: None,
            },
        };
        let payload = serde_json::to_vec(&[answer]).expect("an answer serialises");
        let _ = chunked::publish(&self.client, reply, payload).await;
    }

    /// Exact hashes this node's answer to a site question keeps: the
    /// `asked` share (within what a reply carries), else its share of
    /// a gather.
    fn share(&self, asked: Option<u64>) -> usize {
        let chunk_bytes = chunked::chunk_bytes(&self.client);
        match asked {
            None => share_of(self.config.partitions, chunk_bytes),
            Some(share) => wire_hashes(chunk_bytes).min(share as usize),
        }
    }

    /// This node's counts of the events that stopped here.
    fn arrivals(&self) -> Arrivals {
        self.config
            .arrivals
            .as_ref()
            .map(ArrivalFeed::read)
            .unwrap_or_default()
    }

    /// This node's answer for `partition` to `ask`.
    fn answer(&self, partition: u32, owned: &Owned, ask: &Ask) -> Answer {
        let tracker = &owned.tracker;
        let body = match ask {
            Ask::Distinct { url } => {
                tracker
                    .distinct_of_page(url)
                    .map(|(url, count)| Body::Distinct {
                        url: url.into_owned(),
                        count: count.into(),
                    })
            }
            Ask::Site { site, share } => tracker.site_partial(site).map(|part| {
                let share = self.share(*share);
                Body::Site(wire_partial(part, UltraLogLog::DEFAULT_PRECISION, share))
            }),
            Ask::Top { k, site } => match site {
                None => Ok(Body::Top(wire::rows(tracker.top(*k)))),
                Some(site) => tracker
                    .top_of_site(*k, site)
                    .map(|p| Body::Top(wire::rows(p))),
            },
            Ask::Pages {
                site,
                prefix,
                cursor,
                limit,
            } => tracker
                .pages(&PageQuery {
                    site: site.clone(),
                    prefix: prefix.clone(),
                    cursor: cursor.clone(),
                    limit: *limit,
                })
                .map(wire::list),
            Ask::Stats => Ok(Body::Stats((&tracker.stats()).into())),
            Ask::DistinctBetween { url, from, till } => tracker
                .distinct_between(url, at(*from), at(*till))
                .map(|point| Body::Points(vec![wire_point(point)])),
            Ask::Series {
                url,
                from,
                till,
                step,
            } => tracker
                .series(url, at(*from), at(*till), Duration::from_secs(*step))
                .map(|s| Body::Points(s.points.into_iter().map(wire_point).collect())),
            Ask::SiteBetween {
                site,
                from,
                till,
                step,
                share,
            } => match step {
                None => tracker
                    .site_partial_between(site, at(*from), at(*till))
                    .map(|point| vec![point]),
                Some(step) => tracker
                    .site_series_partials(site, at(*from), at(*till), Duration::from_secs(*step))
                    .map(|(_, points)| points),
            }
            .map(|points| Body::SitePoints(wire_points(points, self.share(*share)))),
            Ask::TopBetween {
                k,
                site,
                from,
                till,
            } => match site {
                None => tracker.top_between(*k, at(*from), at(*till)),
                Some(site) => tracker.top_of_site_between(*k, site, at(*from), at(*till)),
            }
            .map(|top| {
                Body::TopBetween(
                    wire::rows(top.pages),
                    top.range.from().as_millis(),
                    top.range.till().as_millis(),
                )
            }),
        };
        // With every partition's statistics, as any of a node's answers
        // may be the one its asker keeps (see `Node::stats`).
        let arrivals = matches!(ask, Ask::Stats).then(|| (self.id.clone(), self.arrivals()));
        Answer {
            partition,
            applied: owned.applied.load(Ordering::Acquire),
            pending: owned.pending.load(Ordering::Acquire),
            body: body.map_err(WireError::from),
            arrivals,
        }
    }

    /// One lease round; returns the actions taken.
    async fn lease_round(self: &Arc<Self>) -> Result<(), ClusterError> {
        let ttl_ms = self.config.lease_ttl.as_millis() as i64;
        let node_key = format!("node.{}", self.id);
        self.kv.put(&node_key, Bytes::new()).await.map_err(nats)?;
        let now_ms = match self.kv.entry(node_key).await.map_err(nats)? {
            Some(entry) => millis(&entry),
            None => return Err(ClusterError::Nats("own heartbeat not found".into())),
        };
        let reads = (0..self.config.partitions).map(|p| self.kv.entry(lease_key(p)));
        let mut leases = Vec::with_capacity(self.config.partitions as usize);
        for entry in futures_util::future::join_all(reads).await {
            leases.push(match entry.map_err(nats)? {
                Some(e) if e.operation == kv::Operation::Put => LeaseView {
                    holder: (!e.value.is_empty())
                        .then(|| String::from_utf8_lossy(&e.value).into_owned()),
                    revision: e.revision,
                    written_ms: millis(&e),
                },
                Some(e) => LeaseView {
                    holder: None,
                    revision: e.revision,
                    written_ms: millis(&e),
                },
                None => LeaseView {
                    holder: None,
                    revision: 0,
                    written_ms: 0,
                },
            });
        }
        // A partition applied here whose lease another node holds was
        // taken over while this node's renewal came late (its last round
        // slow): no renewal of ours will fail to tell it, so stop now.
        let applied: Vec<u32> = lock(&self.owned).keys().copied().collect();
        for partition in applied {
            if let Some(holder) = &leases[partition as usize].holder
                && *holder != self.id
            {
                tracing::warn!(partition, "lease lost");
                self.stop_partition(partition, false).await;
            }
        }
        let live = self.live_nodes(now_ms, ttl_ms).await?;
        let me = Bytes::from(self.id.clone());
        // Partitions to start once every lease of the round is written:
        // a start (restore, replay setup) can take seconds under load,
        // and one after another they held back the renewals behind them
        // past the TTL, so other nodes took leases still applied here.
        let mut starts = Vec::new();
        for action in plan(&self.id, now_ms, ttl_ms, live, &leases) {
            if self.leaving.load(Ordering::Acquire) {
                break;
            }
            match action {
                Action::Renew {
                    partition,
                    revision,
                } => {
                    if self
                        .kv
                        .update(lease_key(partition), me.clone(), revision)
                        .await
                        .is_err()
                    {
                        tracing::warn!(partition, "lease lost");
                        self.stop_partition(partition, false).await;
                    } else {
                        match self.applier(partition) {
                            // Ours on the server, not applied here (a
                            // failed start, or a restart with the same id).
                            Applier::None => starts.push(partition),
                            // Ended without its clean-up (a panic): the
                            // lease was renewed for a partition nothing
                            // applied or answered for.
                            Applier::Ended => {
                                tracing::error!(
                                    partition,
                                    "the partition's applier ended; starting it again"
                                );
                                self.stop_partition(partition, false).await;
                                starts.push(partition);
                            }
                            Applier::Running => {}
                        }
                    }
                }
                Action::Acquire {
                    partition,
                    revision,
                } => {
                    let taken = if revision == 0 {
                        self.kv
                            .create(lease_key(partition), me.clone())
                            .await
                            .is_ok()
                    } else {
                        self.kv
                            .update(lease_key(partition), me.clone(), revision)
                            .await
                            .is_ok()
                    };
                    if taken {
                        starts.push(partition);
                    }
                }
                Action::Release {
                    partition,
                    revision,
                } => {
                    self.stop_partition(partition, true).await;
                    let _ = self
                        .kv
                        .update(lease_key(partition), Bytes::new(), revision)
                        .await;
                    tracing::info!(partition, live, "partition released");
                }
            }
        }
        futures_util::future::join_all(starts.into_iter().map(|p| self.take(p, None))).await;
        Ok(())
    }

    /// Starts applying a partition whose lease is ours; on failure gives
    /// the lease back (empty holder) so another node can try.
    async fn take(self: &Arc<Self>, partition: u32, _: Option<()>) {
        if let Err(e) = self.start_partition(partition).await {
            tracing::warn!(partition, error = %e, "partition not started");
            if let Ok(Some(entry)) = self.kv.entry(lease_key(partition)).await {
                let _ = self
                    .kv
                    .update(lease_key(partition), Bytes::new(), entry.revision)
                    .await;
            }
        }
    }

    /// The nodes whose heartbeat is younger than the TTL, this one
    /// included.
    async fn live_nodes(&self, now_ms: i64, ttl_ms: i64) -> Result<usize, ClusterError> {
        let mut keys = self.kv.keys().await.map_err(nats)?;
        let mut listed = Vec::new();
        while let Some(key) = keys.next().await {
            listed.push(key.map_err(nats)?);
        }
        let reads = heartbeat_keys(listed).into_iter().map(|k| self.kv.entry(k));
        let heartbeats = futures_util::future::join_all(reads)
            .await
            .into_iter()
            .filter_map(|e| e.ok().flatten())
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| (millis(&e), e.key));
        Ok(live_nodes(now_ms, ttl_ms, heartbeats))
    }
}

/// Where [`apply`] starts.
struct Start {
    /// The stream sequence the restored snapshot covers.
    covered: u64,
    /// The messages the consumer had delivered when it was created (0 for
    /// a new one).
    delivered: u64,
}

/// Applies a partition's events in stream order, answers its page
/// queries, and snapshots it on a schedule and on release.
async fn apply(
    inner: Arc<Inner>,
    partition: u32,
    owned: Arc<Owned>,
    mut messages: consumer::pull::Stream,
    mut queries: async_nats::Subscriber,
    mut stop: watch::Receiver<bool>,
    start: Start,
) {
    let Start {
        covered: mut snapshotted,
        mut delivered,
    } = start;
    let mut tick = tokio::time::interval(inner.config.snapshot_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Errors in a row; past a few the consumer is taken as gone (deleted
    // by a new owner, or lost with its server) and the partition is
    // dropped here, for the next lease round to start it again if the
    // lease is still ours.
    let mut errors = 0u32;
    let mut released = false;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { break };
                let message = match message {
                    Ok(m) => {
                        errors = 0;
                        m
                    }
                    Err(e) => {
                        tracing::warn!(partition, error = %e, "consumer error");
                        errors += 1;
                        if errors > 10 {
                            break;
                        }
                        continue;
                    }
                };
                let Ok(info) = message.info() else { continue };
                // Without acknowledgements, a message the server
                // delivered that never arrived (a connection dropped
                // mid-batch) is not sent again, and a later snapshot
                // would cover it: at a consumer sequence that is not the
                // next, applying ends, and the next lease round starts
                // the partition again from its snapshot (replay is
                // idempotent).
                if info.consumer_sequence != delivered + 1 {
                    tracing::warn!(
                        partition,
                        expected = delivered + 1,
                        got = info.consumer_sequence,
                        "a delivery missed; the partition restarts from its snapshot"
                    );
                    break;
                }
                delivered = info.consumer_sequence;
                let (sequence, pending) = (info.stream_sequence, info.pending);
                let partitions = inner.config.partitions;
                match apply_event(&owned.tracker, partition, partitions, &message.payload) {
                    Applied::Recorded => {}
                    Applied::Refused(reason) => {
                        let now = std::time::Instant::now();
                        inner.refused.count(partition, sequence, reason, now);
                    }
                    Applied::Moved(target, event) => {
                        inner.forward(partition, sequence, target, event).await;
                    }
                }
                owned.applied.store(sequence, Ordering::Release);
                owned.pending.store(pending, Ordering::Release);
                if pending == 0 {
                    owned.caught_up.store(true, Ordering::Release);
                }
            }
            Some(request) = queries.next() => {
                inner.reply(partition, &owned, request).await;
            }
            _ = tick.tick() => {
                let applied = owned.applied.load(Ordering::Acquire);
                if applied > snapshotted {
                    inner.snapshot(partition, &owned.tracker, applied).await;
                    snapshotted = applied;
                }
            }
            changed = stop.changed() => {
                if changed.is_ok() && *stop.borrow() {
                    let applied = owned.applied.load(Ordering::Acquire);
                    if applied > snapshotted {
                        inner.snapshot(partition, &owned.tracker, applied).await;
                    }
                    // Questions that arrived before the release are
                    // answered from the final state, not left to time out.
                    while let Some(Some(request)) = queries.next().now_or_never() {
                        inner.reply(partition, &owned, request).await;
                    }
                }
                released = true;
                break;
            }
        }
    }
    if !released {
        tracing::warn!(
            partition,
            "consumer ended; the partition restarts on the next lease round"
        );
        let mut map = lock(&inner.owned);
        if map.get(&partition).is_some_and(|o| Arc::ptr_eq(o, &owned)) {
            map.remove(&partition);
        }
    }
}

/// What became of a stream message.
enum Applied {
    /// Recorded (or already held).
    Recorded,
    /// Refused, for this reason ([`refused`]).
    Refused(&'static str),
    /// Recorded, and to record in another partition too: its page key is
    /// an earlier version's spelling that today's rules write another way
    /// (`https://127.1/x`, now `https://127.0.0.1/x`), whose partition is
    /// not this one, and queries for the page go there. The event
    /// respelled, for that partition. (Known from the record's own
    /// canonicalisation, which only a key not held yet takes: a check
    /// before recording would canonicalise every event, at more than the
    /// record's cost: "A stream event's respelling check" in
    /// `docs/BENCHMARKS.md`.)
    Moved(u32, EventV1),
}

/// Records one stream message of `partition`, or says why not (the
/// stream keeps it for whoever can read it).
fn apply_event(tracker: &Tracker, partition: u32, partitions: u32, payload: &[u8]) -> Applied {
    let Ok(event) = serde_json::from_slice::<EventV1>(payload) else {
        return Applied::Refused(refused::MALFORMED);
    };
    if event.v != wire::EVENT_VERSION {
        return Applied::Refused(refused::VERSION);
    }
    let Some(hash) = event.hash() else {
        return Applied::Refused(refused::VISITOR_HASH);
    };
    let at = Timestamp::from_millis(event.time_ms.max(0) as u64);
    match tracker.record_visitor_hash(hash, &event.url, at) {
        Ok((_, Cow::Owned(url))) if url != event.url => {
            match wire::partition_of(&url, partitions) {
                target if target != partition => Applied::Moved(target, EventV1 { url, ..event }),
                _ => Applied::Recorded,
            }
        }
        Ok(_) => Applied::Recorded,
        Err(e) => Applied::Refused(e.code()),
    }
}

/// Answers gather requests with every owned partition's answer.
async fn answer_gathers(inner: Arc<Inner>, mut requests: async_nats::Subscriber) {
    while let Some(request) = requests.next().await {
        let Some(reply) = request.reply else { continue };
        let Ok(ask) = serde_json::from_slice::<Ask>(&request.payload) else {
            continue;
        };
        let owned: Vec<(u32, Arc<Owned>)> = lock(&inner.owned)
            .iter()
            .map(|(&p, o)| (p, o.clone()))
            .collect();
        let answers: Vec<Answer> = owned
            .iter()
            .map(|(p, o)| inner.answer(*p, o, &ask))
            .collect();
        let payload = serde_json::to_vec(&answers).expect("answers serialise");
        let _ = chunked::publish(&inner.client, reply, payload).await;
    }
}

/// Lease rounds every third of the TTL until the node leaves.
async fn lease_loop(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.config.lease_ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !inner.leaving.load(Ordering::Acquire) {
        tick.tick().await;
        match inner.lease_round().await {
            Ok(()) => inner.leased.store(true, Ordering::Release),
            Err(e) => tracing::warn!(error = %e, "lease round failed"),
        }
    }
}

/// The lease bucket, created as its backing stream when missing: the
/// client's `create_key_value` expects account-info fields that NATS 2.9
/// does not send, while a stream with the KV layout works on every
/// server since 2.6.
async fn lease_bucket(
    js: &jetstream::Context,
    cluster: &str,
    replicas: usize,
) -> Result<kv::Store, ClusterError> {
    let bucket = format!("tracker_{cluster}");
    get_or_create(
        || js.get_key_value(&bucket),
        || async {
            js.create_stream(stream::Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: stream::DiscardPolicy::New,
                num_replicas: replicas,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
            js.get_key_value(&bucket).await.map_err(|e| e.to_string())
        },
    )
    .await
}

/// What `get` finds, else what `create` makes. Nodes joining a new
/// cluster at once race to create its stream and stores, and every
/// create but the first fails on the server (NATS 2.9 answers "subjects
/// overlap with an existing stream"); the loser then gets the winner's.
/// A create that fails with nothing there to get is the error.
///
/// Plain closures returning futures rather than `AsyncFn`: the futures of
/// async closures are not known to be `Send` for every borrow, and
/// `Node::join` must be spawnable.
async fn get_or_create<T, GetError, CreateError, Get, Create>(
    get: impl Fn() -> Get,
    create: impl FnOnce() -> Create,
) -> Result<T, ClusterError>
where
    Get: Future<Output = Result<T, GetError>>,
    Create: Future<Output = Result<T, CreateError>>,
    CreateError: std::fmt::Display,
{
    if let Ok(found) = get().await {
        return Ok(found);
    }
    match create().await {
        Ok(made) => Ok(made),
        Err(e) => get().await.map_err(|_| nats(e)),
    }
}

/// The cluster-wide value of `key`: `proposal` if this node is the first
/// to set it, else the one already there.
async fn cluster_setting(kv: &kv::Store, key: &str, proposal: u64) -> Result<u64, ClusterError> {
    let value = kv_setting(kv, key, || Ok(proposal.to_string().into())).await?;
    let text = String::from_utf8_lossy(&value);
    text.parse()
        .map_err(|_| ClusterError::Config(format!("{key} holds {text:?}")))
}

/// The bytes of `key` in the cluster's bucket: those already there, else
/// what `propose` makes if this node's create is the first (a node that
/// loses the race reads the winner's). `propose` is called only when the
/// key is missing, so a random proposal is drawn only then.
///
/// A read that times out is asked again: with several nodes joining a
/// new cluster at once, NATS 2.9.10 sometimes never answers a node's
/// first read of the bucket, while the same read asked again answers
/// within milliseconds (a join failed so under CI-like load; see
/// `tests/joining.rs`).
pub(crate) async fn kv_setting(
    kv: &kv::Store,
    key: &str,
    mut propose: impl FnMut() -> Result<Bytes, ClusterError>,
) -> Result<Bytes, ClusterError> {
    for _ in 0..3 {
        match kv.get(key).await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) if e.kind() == kv::EntryErrorKind::TimedOut => continue,
            Err(e) => return Err(nats(e)),
        }
        let proposal = propose()?;
        if kv.create(key, proposal.clone()).await.is_ok() {
            return Ok(proposal);
        }
    }
    Err(ClusterError::Nats(format!("{key} could not be read")))
}

/// A publish's outcome once JetStream acknowledged it.
async fn settle(
    ack: Result<jetstream::context::PublishAckFuture, ClusterError>,
) -> Result<Published, ClusterError> {
    let ack = ack?.await.map_err(nats)?;
    Ok(Published {
        sequence: ack.sequence,
        duplicate: ack.duplicate,
    })
}

fn lease_key(partition: u32) -> String {
    format!("lease.{partition}")
}

fn millis(entry: &kv::Entry) -> i64 {
    (entry.created.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The `k` of `pages` with most visitors, ties by URL: the order of
/// [`Tracker::top`], over pages from disjoint partitions.
fn ranked(mut pages: Vec<PageCount>, k: usize) -> Vec<PageCount> {
    pages.sort_by(|a, b| {
        b.distinct
            .visitors
            .cmp(&a.distinct.visitors)
            .then_with(|| a.url.cmp(&b.url))
    });
    pages.truncate(k);
    pages
}

/// Adds a partition's site partial, as sent, to `union`.
fn merge_partial(union: &mut SitePartial, part: WirePartial) -> Result<(), ClusterError> {
    let sketch = part
        .sketch
        .map(|b| UltraLogLog::from_bytes(&b))
        .transpose()
        .map_err(|e| ClusterError::Owner(e.to_string()))?;
    union
        .merge(SitePartial {
            hashes: part.hashes,
            sketch,
        })
        .map_err(|e| ClusterError::Owner(e.to_string()))
}

/// A site partial as sent: past `share` hashes compacted into a sketch
/// of `precision` if it has none (every partition's partial of one
/// question compacts to the same, so that they merge).
fn wire_partial(mut part: SitePartial, precision: u8, share: usize) -> WirePartial {
    let held = (part.sketch.is_none() && part.hashes.len() > share).then_some(part.hashes.len());
    part.compact_to(share, precision);
    WirePartial {
        hashes: part.hashes,
        sketch: part.sketch.map(|s| s.to_bytes()),
        held: held.map(|n| n as u64),
    }
}

/// A site's partial per point as sent: past `share` exact hashes over
/// all the points, the points with most hashes are sketched first, so
/// that a series of many points stays within the partition's share of
/// [`GATHER_HASHES`].
fn wire_points(
    points: Vec<(TimeRange, SitePartial)>,
    share: usize,
) -> Vec<(u64, u64, WirePartial)> {
    let exact = |part: &SitePartial| part.sketch.is_none() && part.hashes.len() <= share;
    let mut kept: usize = points
        .iter()
        .filter(|(_, part)| exact(part))
        .map(|(_, part)| part.hashes.len())
        .sum();
    let mut largest: Vec<usize> = (0..points.len()).filter(|&i| exact(&points[i].1)).collect();
    largest.sort_by_key(|&i| std::cmp::Reverse(points[i].1.hashes.len()));
    // Each point's own share: none for those sketched to keep the
    // partition's (`wire_partial` then says what they held).
    let mut shares = vec![share; points.len()];
    for i in largest {
        if kept <= share {
            break;
        }
        kept -= points[i].1.hashes.len();
        shares[i] = 0;
    }
    points
        .into_iter()
        .zip(shares)
        .map(|((range, part), share)| {
            (
                range.from().as_millis(),
                range.till().as_millis(),
                wire_partial(part, SitePartial::RANGE_PRECISION, share),
            )
        })
        .collect()
}

/// A count over a range, to send.
fn wire_point(point: RangeDistinct) -> (u64, u64, WireDistinct) {
    (
        point.range.from().as_millis(),
        point.range.till().as_millis(),
        point.distinct.into(),
    )
}

/// A partition's rows, each with whether the partition is its page's
/// own (see [`each_page_once`]).
fn page_counts(
    rows: Vec<(String, WireDistinct)>,
    partition: u32,
    partitions: u32,
) -> impl Iterator<Item = (bool, PageCount)> {
    rows.into_iter().map(move |(url, d)| {
        let own = wire::partition_of(&url, partitions) == partition;
        let distinct = d.into();
        (own, PageCount { url, distinct })
    })
}

/// Pages merged from partitions, each once, in URL order: a page two
/// partitions hold (events of an earlier version's spelling, counted
/// where they were read and moved: [`Applied::Moved`]) is the row of its
/// own partition, which holds every event of it.
fn each_page_once(mut rows: Vec<(bool, PageCount)>) -> Vec<PageCount> {
    rows.sort_by(|(own_a, a), (own_b, b)| a.url.cmp(&b.url).then(own_b.cmp(own_a)));
    rows.dedup_by(|later, first| later.1.url == first.1.url);
    rows.into_iter().map(|(_, page)| page).collect()
}

/// A time as sent, in milliseconds.
fn at(ms: Option<u64>) -> Option<Timestamp> {
    ms.map(Timestamp::from_millis)
}

pub(crate) fn nats(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Nats(e.to_string())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // std's RandomState is seeded from the OS per process; two of them
    // and the time give an unpredictable key without a `rand` dependency.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() ^ std::collections::hash_map::RandomState::new().hash_one(0u8)
}

fn random_id() -> String {
    format!("n{:012x}", random_u64() & 0xffff_ffff_ffff)
}

impl Freshness {
    fn of<'a>(partitions: u32, answers: impl IntoIterator<Item = &'a Answer>) -> Self {
        let mut f = Freshness {
            partitions,
            ..Freshness::default()
        };
        for a in answers {
            f.answered += 1;
            f.applied_sequence = f.applied_sequence.max(a.applied);
            f.pending += a.pending;
        }
        f
    }
}

impl ClusterError {
    fn owner(e: WireError) -> Self {
        ClusterError::Owner(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past its share of exact hashes, a series answer sketches its
    /// points with most hashes first, and keeps the others exact.
    #[test]
    fn a_series_past_its_share_sketches_its_largest_points() {
        let hour = 3_600_000;
        let tracker = Tracker::builder().hash_key(3).build().unwrap();
        // Hour h (of 4) has 100 * (h + 1) visitors.
        for h in 0..4u64 {
            for v in 0..100 * (h + 1) {
                let at = Timestamp::from_millis(hour * (h + 1));
                tracker
                    .record_at(&format!("{h}-{v}"), "https://s.test/", at)
                    .unwrap();
            }
        }
        let partials = || {
            let (from, till) = (
                Timestamp::from_millis(hour),
                Timestamp::from_millis(5 * hour),
            );
            let step = Duration::from_secs(3_600);
            let (_, points) = tracker
                .site_series_partials("s.test", from, till, step)
                .unwrap();
            points
        };
        let sketched = |points: &[(u64, u64, WirePartial)]| -> Vec<bool> {
            points.iter().map(|(_, _, p)| p.sketch.is_some()).collect()
        };
        // 1,000 hashes in all: within a share of 1,000, every point exact.
        assert_eq!(sketched(&wire_points(partials(), 1_000)), [false; 4]);
        // A share of 500: the 400 and then the 300 go, 300 are left.
        let points = wire_points(partials(), 500);
        assert_eq!(sketched(&points), [false, false, true, true]);
        assert_eq!(points[1].2.hashes.len(), 200);
        assert!(points[3].2.hashes.is_empty());
        // The sketched points say what they held, to be asked again.
        let held: Vec<Option<u64>> = points.iter().map(|(_, _, p)| p.held).collect();
        assert_eq!(held, [None, None, Some(300), Some(400)]);
    }

    /// The partitions that sent a sketch past their share are asked
    /// again, with the room left shared out, only while every exact hash
    /// fits the gather and no partial holds a sketch of its own.
    #[test]
    fn partitions_past_their_share_are_asked_again_while_the_gather_fits() {
        let answer = |partition: u32, hashes: usize, sketch: bool, held: Option<u64>| {
            let part = WirePartial {
                hashes: (0..hashes as u64).collect(),
                sketch: sketch.then(|| UltraLogLog::new(10).unwrap().to_bytes()),
                held,
            };
            let answer = Answer {
                partition,
                applied: 0,
                pending: 0,
                body: Ok(Body::Site(part)),
                arrivals: None,
            };
            (partition, answer)
        };
        let half = GATHER_HASHES as u64 / 2;
        // Two partitions exact, one past its share with 100,000 held.
        let mut answers: BTreeMap<u32, Answer> = [
            answer(0, 1_000, false, None),
            answer(1, 0, true, Some(100_000)),
            answer(2, 0, false, None),
        ]
        .into();
        let room = GATHER_HASHES as u64 - 101_000;
        assert_eq!(asked_again(&answers), [(1, 100_000 + room)]);
        // Two past their share: the room left is halved between them.
        answers.extend([answer(3, 0, true, Some(half))]);
        let slack = (room - half) / 2;
        assert_eq!(
            asked_again(&answers),
            [(1, 100_000 + slack), (3, half + slack)]
        );
        // Every hash of the gather taken: each asked for what it held.
        answers.extend([answer(3, 0, true, Some(room))]);
        assert_eq!(asked_again(&answers), [(1, 100_000), (3, room)]);
        // One more than the gather holds: an estimate, none asked again.
        answers.extend([answer(4, 0, true, Some(1))]);
        assert!(asked_again(&answers).is_empty());
        // A partial that is a sketch of its own stays an estimate.
        let answers: BTreeMap<u32, Answer> =
            [answer(0, 10, true, None), answer(1, 0, true, Some(100_000))].into();
        assert!(asked_again(&answers).is_empty());
        // All exact: nothing to ask.
        let answers: BTreeMap<u32, Answer> = [answer(0, 10, false, None)].into();
        assert!(asked_again(&answers).is_empty());
    }
}
