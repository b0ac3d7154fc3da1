//! Command-line flags and `TRACKER_*` environment variables.
//!
//! Every setting has a default, so the binary runs with no configuration.
//! Core settings live in [`CoreOptions`], one field per tracker-core
//! builder option, so a new core option is one field and one builder call.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, CommandFactory, FromArgMatches, Parser, ValueEnum};
use tracker_core::browser::{BotFilter, SaltRotation};
use tracker_core::persist::{FsyncPolicy, LogOptions, SnapshotSchedule};
use tracker_core::{
    ConfigError, DEFAULT_MAX_POINTS, DEFAULT_MAX_URL_LEN, DEFAULT_MAX_VISITOR_LEN, MemoryPolicy,
    QueryPolicy, TimeError, Timestamp, TrackerBuilder, TrackerConfig,
};

/// Default largest request body, in bytes: an event with a URL and a
/// visitor id at their default limits fits several times over.
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024;

/// Default most events in one batch (`POST /events/batch`, or one
/// WebSocket message).
pub const DEFAULT_BATCH_LIMIT: usize = 10_000;

/// Default largest batch body, in bytes: the default batch limit of
/// events of a few hundred bytes each.
pub const DEFAULT_BATCH_BODY_LIMIT: usize = 4 << 20;

/// Default time a client gets to send a request body.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Default time a WebSocket may stay silent before it is closed.
pub const DEFAULT_WS_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Default time a client gets to send a request head (and, over TLS, to
/// finish the handshake), counted from its first byte. An analytics
/// request's head is a few hundred bytes: even a slow mobile link sends it
/// in well under a second, so 10 s only ever cuts off clients that stall
/// on purpose (slowloris), and a stalled connection is freed 3x sooner
/// than with hyper's 30 s default.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Default time a connection may stay open with no request in flight.
/// Browsers send a page's beacons within seconds of each other and
/// reopen cheaply, so 60 s keeps the connection for a page visit (nginx
/// keeps 75 s) while an idle client holds a slot for at most a minute.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Default cap on open connections. Each costs a file descriptor and, at
/// worst, its read buffer (`--max-header-size`) and TLS buffers (about
/// 40 KiB): 4,096 of them stay under ~250 MiB even if every one is busy,
/// and the process needs `ulimit -n` above the cap.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4_096;

/// Default largest request head: a request line and headers with a few
/// KiB of cookies fit twice over (nginx refuses heads past 4 x 8 KiB).
pub const DEFAULT_MAX_HEADER_SIZE: u64 = 16 * 1024;

/// Default HTTP/2 streams in flight per connection: the number RFC 9113
/// recommends as the least a server offers.
pub const DEFAULT_H2_MAX_STREAMS: u32 = 100;

/// Default interval of HTTP/2 keep-alive pings: a peer that vanished
/// without closing (a phone that lost its network) is noticed within this
/// plus the ping timeout, instead of holding its slot until the idle
/// timeout.
pub const DEFAULT_H2_KEEPALIVE: Duration = Duration::from_secs(30);

/// Default time an HTTP/2 peer has to answer a keep-alive ping: a live
/// client on a slow mobile link answers within a few seconds; 20 s
/// (hyper's own default) leaves room for a stalled radio to wake.
pub const DEFAULT_H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The service's settings.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "tracker-http",
    version,
    about = "Distinct visitors per page, over HTTP",
    after_help = "Every flag may be set by the TRACKER_* variable its help names; \
                  an empty variable is read as unset (as docker-compose passes `TRACKER_X=`)."
)]
pub struct Config {
    /// Address to listen on (`127.0.0.1:8080`, `[::1]:8080`, or a host
    /// name and port, `localhost:8080`).
    #[arg(long, env = "TRACKER_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// Settings of the tracker itself.
    #[command(flatten)]
    pub core: CoreOptions,

    /// Durability: the data directory, fsync policy and snapshots.
    #[command(flatten)]
    pub persist: PersistOptions,

    /// HTTP limits, security and shutdown.
    #[command(flatten)]
    pub http: HttpOptions,

    /// Browser senders: derived visitor ids, client addresses, bots.
    #[command(flatten)]
    pub browser: BrowserOptions,

    /// Scale-out: joining a cluster on NATS JetStream.
    #[command(flatten)]
    pub cluster: ClusterOptions,

    /// Log line format.
    #[arg(long, env = "TRACKER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, in `tracing` env-filter syntax (e.g. `info` or
    /// `tracker_http=debug`). Request lines are logged at debug.
    #[arg(long, env = "TRACKER_LOG", default_value = "info")]
    pub log: String,
}

/// tracker-core settings.
#[derive(Debug, Clone, Args)]
pub struct CoreOptions {
    /// Lock stripes, a power of two [default: 4 per core].
    #[arg(long, env = "TRACKER_STRIPES")]
    pub stripes: Option<usize>,

    /// Visitor-hash key (decimal or 0x-hex), to keep counts comparable
    /// across restarts and instances [default: random].
    #[arg(long, env = "TRACKER_HASH_KEY", value_parser = parse_u64, hide_env_values = true)]
    pub hash_key: Option<u64>,

    /// Longest visitor id, in bytes.
    #[arg(long, env = "TRACKER_MAX_VISITOR_LEN", default_value_t = DEFAULT_MAX_VISITOR_LEN)]
    pub max_visitor_len: usize,

    /// Longest URL, in bytes.
    #[arg(long, env = "TRACKER_MAX_URL_LEN", default_value_t = DEFAULT_MAX_URL_LEN)]
    pub max_url_len: usize,

    /// What URL canonicalisation does with query strings.
    #[arg(long, env = "TRACKER_QUERY", value_enum, default_value_t = QueryMode::Keep)]
    pub query: QueryMode,

    /// With `--query allow`: the parameter names kept (comma-separated).
    #[arg(
        long,
        env = "TRACKER_QUERY_ALLOW",
        value_delimiter = ',',
        required_if_eq("query", "allow")
    )]
    pub query_allow: Vec<String>,

    /// Memory budget, a byte size (`512MiB`) [default: no limit]. Not a
    /// container's memory limit: the process needs more (see "Process
    /// memory" in tracker-http/README.md).
    #[arg(
        long,
        visible_alias = "memory-budget",
        env = "TRACKER_MAX_MEMORY",
        value_parser = parse_bytes
    )]
    pub max_memory: Option<u64>,

    /// What happens when a record would pass the memory budget.
    #[arg(long, env = "TRACKER_MEMORY_POLICY", value_enum, default_value_t = PolicyMode::Sketch)]
    pub memory_policy: PolicyMode,

    /// Forget a visitor of a page this long after their latest visit to
    /// it (`30d`, `12h`, `90m`, `3600s`) [default: never].
    #[arg(long, env = "TRACKER_TTL", value_parser = parse_ttl)]
    pub ttl: Option<Duration>,

    /// Query parameters dropped from page identity, comma-separated;
    /// `name*` is a prefix; an empty value (`,` in the variable, where
    /// empty is unset) keeps them all [default: the
    /// tracking parameters utm_*, fbclid, gclid, msclkid, mc_cid, mc_eid,
    /// _ga, ...].
    #[arg(long, env = "TRACKER_DROP_PARAMS", value_delimiter = ',')]
    pub drop_params: Option<Vec<String>>,

    /// Count `/docs/` and `/docs` as one page.
    // Boolish, as every switch: its variable reads the spellings
    // environments use, not only `true`/`false` (listed once, in
    // tracker-http/README.md's Configuration).
    #[arg(long, env = "TRACKER_FOLD_TRAILING_SLASH", value_parser = BoolishValueParser::new())]
    pub fold_trailing_slash: bool,

    /// The time granularity of ranges and series (`1m` to `1d`, whole
    /// minutes that divide a day: `5m`, `15m`, `1h`, `6h`, `1d`, ...;
    /// the core checks it when the configuration is validated).
    #[arg(long, env = "TRACKER_BUCKET", value_parser = parse_duration, default_value = "1h")]
    pub bucket: Duration,

    /// How long the buckets of visits are kept for range queries, rounded
    /// up to whole buckets (`90d`, `2w`) [default: for ever].
    #[arg(long, env = "TRACKER_RETENTION", value_parser = parse_duration)]
    pub retention: Option<Duration>,

    /// Most points one `GET /series` answer may have.
    #[arg(long, env = "TRACKER_MAX_POINTS", default_value_t = DEFAULT_MAX_POINTS)]
    pub max_points: usize,
}

/// Durability settings.
#[derive(Debug, Clone, Args)]
pub struct PersistOptions {
    /// Keep the counts in this directory (an event log and snapshots) so
    /// that they survive restarts and crashes; created if missing
    /// [default: none, in memory only].
    #[arg(long, env = "TRACKER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// With --data-dir, when an event is synced to disk before it is
    /// acknowledged. `always`: after fsync (nothing acknowledged is lost,
    /// even on power loss). `interval`: fsync every --fsync-interval (a
    /// process crash loses nothing acknowledged; a power cut at most the
    /// interval). `off`: the OS writes back when it likes.
    #[arg(long, env = "TRACKER_FSYNC", value_enum, default_value_t = FsyncMode::Interval)]
    pub fsync: FsyncMode,

    /// With `--fsync interval`: the longest time between syncs.
    #[arg(long, env = "TRACKER_FSYNC_INTERVAL", value_parser = parse_duration, default_value = "100ms")]
    pub fsync_interval: Duration,

    /// With --data-dir, the longest time between snapshots while events
    /// arrive.
    #[arg(long, env = "TRACKER_SNAPSHOT_EVERY", value_parser = parse_duration, default_value = "5m")]
    pub snapshot_every: Duration,

    /// With --data-dir, snapshot early once this much log (a byte size)
    /// has been written since the last snapshot: bounds what a restart
    /// replays.
    #[arg(long, env = "TRACKER_SNAPSHOT_LOG_SIZE", value_parser = parse_bytes, default_value = "256MiB")]
    pub snapshot_log_size: u64,

    /// With --data-dir, start even if the event log is damaged in its
    /// middle, dropping the events after the damage (logged as an error).
    /// Without it such damage stops start-up, for an operator to decide.
    #[arg(long, env = "TRACKER_SALVAGE_LOG", value_parser = BoolishValueParser::new())]
    pub salvage_log: bool,
}

/// Joining a cluster of nodes on NATS JetStream (see the `tracker-cluster`
/// crate). Without `--nats` the node is standalone.
#[derive(Debug, Clone, Args)]
pub struct ClusterOptions {
    /// Join the cluster on this NATS server (`nats://HOST:PORT`, several
    /// comma-separated): events go to its JetStream stream, counts to the
    /// partitions' owners [default: none, standalone].
    #[arg(long, env = "TRACKER_NATS")]
    pub nats: Option<String>,

    /// With --nats, the cluster's name (names its stream and buckets).
    #[arg(long, env = "TRACKER_CLUSTER", default_value = "tracker")]
    pub cluster: String,

    /// With --nats, this node's id [default: random].
    #[arg(long, env = "TRACKER_NODE_ID")]
    pub node_id: Option<String>,

    /// With --nats, the partition count, fixed when the cluster is first
    /// created (every node must give the same).
    #[arg(long, env = "TRACKER_PARTITIONS", default_value_t = 64)]
    pub partitions: u32,

    /// With --nats, JetStream replicas of the stream, leases and snapshots
    /// (at most the NATS servers' count).
    #[arg(long, env = "TRACKER_NATS_REPLICAS", default_value_t = 1)]
    pub nats_replicas: usize,

    /// With --nats, how long a partition lease lasts without renewal: how
    /// long a dead node's partitions wait for a new owner. Fixed when the
    /// cluster is first created (every node must give the same).
    #[arg(long, env = "TRACKER_LEASE_TTL", value_parser = parse_duration, default_value = "6s")]
    pub lease_ttl: Duration,

    /// With --nats, how often an owner snapshots a changed partition to
    /// the object store: bounds what a takeover replays.
    #[arg(long, env = "TRACKER_PARTITION_SNAPSHOT_EVERY", value_parser = parse_duration, default_value = "30s")]
    pub partition_snapshot_every: Duration,

    /// With --nats, a NATS credentials file (JWT and nkey seed).
    #[arg(long, env = "TRACKER_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,

    /// With --nats, a CA certificate (PEM) for the server; requires TLS.
    #[arg(long, env = "TRACKER_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,

    /// With --nats, a client certificate (PEM) for mutual TLS, with
    /// --nats-tls-key.
    #[arg(long, env = "TRACKER_NATS_TLS_CERT", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,

    /// With --nats, the client certificate's private key (PEM).
    #[arg(long, env = "TRACKER_NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,
}

/// `--fsync` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FsyncMode {
    /// fsync before acknowledging each event (shared by concurrent ones).
    Always,
    /// fsync at most every --fsync-interval.
    Interval,
    /// Never fsync; the OS writes back.
    Off,
}

impl PersistOptions {
    /// The event log's options.
    pub fn log_options(&self) -> LogOptions {
        let sync = match self.fsync {
            FsyncMode::Always => FsyncPolicy::Always,
            FsyncMode::Interval => FsyncPolicy::Interval(self.fsync_interval),
            FsyncMode::Off => FsyncPolicy::Off,
        };
        LogOptions::default().sync(sync).salvage(self.salvage_log)
    }

    /// When snapshots are written.
    pub fn schedule(&self) -> SnapshotSchedule {
        SnapshotSchedule::default()
            .every(self.snapshot_every)
            .log_bytes(self.snapshot_log_size)
    }
}

/// `--memory-policy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyMode {
    /// Turn the largest exact pages into estimates, then evict.
    Sketch,
    /// Evict the least recently recorded pages; kept pages stay exact.
    Evict,
    /// Refuse the record with 507; everything stays exact.
    Reject,
}

impl From<PolicyMode> for MemoryPolicy {
    fn from(mode: PolicyMode) -> Self {
        match mode {
            PolicyMode::Sketch => MemoryPolicy::Sketch,
            PolicyMode::Evict => MemoryPolicy::Evict,
            PolicyMode::Reject => MemoryPolicy::Reject,
        }
    }
}

/// A byte size, as every flag that takes one reads it: digits, then
/// optionally a unit: `B`; `KiB`, `MiB`, `GiB` (or `Ki`, `Mi`, `Gi`, as
/// Kubernetes writes them, or `K`, `M`, `G`, as Docker and the JVM read
/// them: binary); `KB`, `MB`, `GB` (decimal, as SI has them); any letter
/// case, a space before the unit allowed.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "ki" | "k" => 1 << 10,
        "mib" | "mi" | "m" => 1 << 20,
        "gib" | "gi" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            let unit = unit.trim();
            return Err(format!(
                "unknown unit {unit:?}: use B, KiB, MiB, GiB (or Ki, Mi, Gi, or K, M, G) or KB, MB, GB"
            ));
        }
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a byte count"))?;
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A TTL: a duration (see [`parse_duration`]) from 1 s to the core's
/// longest.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = parse_duration(text)?;
    if ttl < Duration::from_secs(1) || ttl > tracker_core::MAX_TTL {
        return Err(format!(
            "`{text}`: the TTL must be from 1s to {}d",
            tracker_core::MAX_TTL.as_secs() / 86_400
        ));
    }
    Ok(ttl)
}

/// `--query` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryMode {
    /// `?a=1` and `?a=2` are different pages.
    Keep,
    /// Every query of a path is one page.
    Strip,
    /// Keep only the parameters named by `--query-allow`.
    Allow,
}

impl CoreOptions {
    /// The tracker builder these options describe.
    pub fn builder(&self) -> TrackerBuilder {
        let query = match self.query {
            QueryMode::Keep => QueryPolicy::Keep,
            QueryMode::Strip => QueryPolicy::Strip,
            QueryMode::Allow => QueryPolicy::Allow(self.query_allow.clone()),
        };
        let mut builder = TrackerBuilder::default()
            .max_visitor_len(self.max_visitor_len)
            .max_url_len(self.max_url_len)
            .query_policy(query)
            .fold_trailing_slash(self.fold_trailing_slash)
            .memory_policy(self.memory_policy.into())
            .bucket(self.bucket)
            .max_points(self.max_points);
        if let Some(retention) = self.retention {
            builder = builder.retention(retention);
        }
        if let Some(params) = &self.drop_params {
            let params = params.iter().map(|p| p.trim()).filter(|p| !p.is_empty());
            builder = builder.drop_params(params.map(String::from).collect());
        }
        if let Some(bytes) = self.max_memory {
            builder = builder.max_memory(bytes);
        }
        if let Some(ttl) = self.ttl {
            builder = builder.ttl(ttl);
        }
        if let Some(stripes) = self.stripes {
            builder = builder.stripes(stripes);
        }
        if let Some(key) = self.hash_key {
            builder = builder.hash_key(key);
        }
        builder
    }

    /// The checked tracker configuration.
    pub fn tracker_config(&self) -> Result<TrackerConfig, ConfigError> {
        self.builder().config()
    }

    /// [`tracker_config`](Self::tracker_config), its refusals named by
    /// the flag that caused them.
    fn checked(&self) -> Result<TrackerConfig, String> {
        self.tracker_config().map_err(|e| match e {
            ConfigError::Time(TimeError::BadBucket { .. }) => format!("--bucket: {e}"),
            ConfigError::Time(TimeError::BadRetention { .. }) => format!("--retention: {e}"),
            // The stripes alone take the least budget: name both flags, so
            // that `--max-memory 1` says what to change.
            ConfigError::MemoryTooSmall { max, min } => format!(
                "--max-memory: {max} bytes is less than the {min} bytes the lock stripes \
                 alone take (raise it, or lower --stripes)"
            ),
            e => format!("tracker settings: {e}"),
        })
    }
}

/// Settings of the HTTP layer.
#[derive(Debug, Clone, Args)]
pub struct HttpOptions {
    /// Largest request body, a byte size (`16KiB`; a plain number is bytes).
    #[arg(long, env = "TRACKER_BODY_LIMIT", value_parser = parse_usize_bytes, default_value_t = DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,

    /// Most events in one batch: a `POST /events/batch` body or one
    /// WebSocket message (more is refused whole with 413).
    #[arg(long, env = "TRACKER_BATCH_LIMIT", default_value_t = DEFAULT_BATCH_LIMIT)]
    pub batch_limit: usize,

    /// Largest `POST /events/batch` body, and largest WebSocket message, a
    /// byte size (`4MiB`; a plain number is bytes).
    #[arg(long, env = "TRACKER_BATCH_BODY_LIMIT", value_parser = parse_usize_bytes, default_value_t = DEFAULT_BATCH_BODY_LIMIT)]
    pub batch_body_limit: usize,

    /// Longest a client may take to send a request body, e.g. `10s` or
    /// `500ms`. It covers the body read only: a handler may then still
    /// wait on the log (`--fsync always`), JetStream's acknowledgement or
    /// a cluster query (see "Run a cluster" in the main README).
    #[arg(long, env = "TRACKER_REQUEST_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub request_timeout: Duration,

    /// Longest a `GET /events/ws` connection may stay silent (no message,
    /// not even a ping) before the server closes it, e.g. `60s`.
    #[arg(long, env = "TRACKER_WS_IDLE_TIMEOUT", value_parser = parse_duration, default_value = "60s")]
    pub ws_idle_timeout: Duration,

    /// Longest a client may take to send a request head (the request line
    /// and headers, and the TLS handshake before the first), from its
    /// first byte; the connection is then closed.
    #[arg(long, env = "TRACKER_HEADER_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub header_timeout: Duration,

    /// Longest a connection may stay open with no request in flight.
    #[arg(long, env = "TRACKER_IDLE_TIMEOUT", value_parser = parse_duration, default_value = "60s")]
    pub idle_timeout: Duration,

    /// Most connections open at once; past it a new connection is answered
    /// 503 `too_many_connections` and closed.
    #[arg(long, env = "TRACKER_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Largest request head (HTTP/1 request line and headers, HTTP/2
    /// header list), a byte size.
    #[arg(long, env = "TRACKER_MAX_HEADER_SIZE", value_parser = parse_bytes, default_value = "16KiB")]
    pub max_header_size: u64,

    /// HTTP/2: most requests in flight at once on one connection.
    #[arg(long, env = "TRACKER_H2_MAX_STREAMS", default_value_t = DEFAULT_H2_MAX_STREAMS)]
    pub h2_max_streams: u32,

    /// HTTP/2: interval of keep-alive pings; a connection whose peer does
    /// not answer one within --h2-keepalive-timeout is closed.
    #[arg(long, env = "TRACKER_H2_KEEPALIVE", value_parser = parse_duration, default_value = "30s")]
    pub h2_keepalive: Duration,

    /// HTTP/2: how long the peer has to answer a keep-alive ping.
    #[arg(long, env = "TRACKER_H2_KEEPALIVE_TIMEOUT", value_parser = parse_duration, default_value = "20s")]
    pub h2_keepalive_timeout: Duration,

    /// On SIGINT/SIGTERM, how long in-flight requests get to finish.
    #[arg(long, env = "TRACKER_SHUTDOWN_GRACE", value_parser = parse_duration, default_value = "10s")]
    pub shutdown_grace: Duration,

    /// On SIGINT/SIGTERM, how long to keep serving while `/readyz` answers
    /// 503, so that load balancers stop sending before the listener closes.
    #[arg(long, env = "TRACKER_SHUTDOWN_DELAY", value_parser = parse_duration, default_value = "0s")]
    pub shutdown_delay: Duration,

    /// Requests per second allowed per client IP on the API routes
    /// (events and reads; health and metrics are exempt) [default: off].
    #[arg(long, env = "TRACKER_RATE_LIMIT")]
    pub rate_limit: Option<f64>,

    /// Burst allowed above the rate limit [default: one second's worth].
    #[arg(long, env = "TRACKER_RATE_BURST", requires = "rate_limit")]
    pub rate_burst: Option<f64>,

    /// Origins allowed to call the service from a browser
    /// (comma-separated, or `*` for any); never with credentials.
    #[arg(
        long,
        env = "TRACKER_CORS_ORIGINS",
        value_delimiter = ',',
        value_parser = parse_origin,
        default_value = "*"
    )]
    pub cors_origins: Vec<String>,

    /// PEM certificate chain: serve HTTPS (needs --tls-key). The pair is
    /// read again on SIGHUP; a pair that does not load keeps the old one.
    #[arg(long, env = "TRACKER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "TRACKER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// How often to look whether --tls-cert or --tls-key changed on disk
    /// (modification time, size, inode), reloading the pair when they
    /// did; 0s: only on SIGHUP.
    #[arg(long, env = "TRACKER_TLS_RELOAD_INTERVAL", value_parser = parse_duration, default_value = "1m")]
    pub tls_reload_interval: Duration,

    /// Bearer token required by the read endpoints (`/distinct`, `/top`,
    /// `/series`, `/pages`, `/stats`, `/metrics`); ingest, health, the
    /// dashboard's files and `/tracker.js` stay open [default: off].
    #[arg(
        long,
        visible_alias = "token",
        env = "TRACKER_AUTH_TOKEN",
        hide_env_values = true
    )]
    pub auth_token: Option<String>,
}

impl HttpOptions {
    /// `--auth-token` as a request can present it: HTTP drops the white
    /// space around a header's value (RFC 9110, 5.5), and a secret taken
    /// from a file or a Kubernetes secret often ends in a newline, which
    /// kept would refuse every read, the right token included.
    pub fn bearer_token(&self) -> Option<&str> {
        self.auth_token
            .as_deref()
            .map(|token| token.trim_matches(|c: char| c.is_ascii_whitespace()))
    }
}

/// Settings for events sent by browsers (`/tracker.js`, `/api/event`,
/// `/count`, `/events` without a visitor).
#[derive(Debug, Clone, Args)]
pub struct BrowserOptions {
    /// How often the secret salt of derived visitor ids changes (UTC). A
    /// person counts once per period: with `day`, a visitor who returns
    /// on another day counts again in a multi-day range; longer periods
    /// count multi-day ranges better but keep a visitor linkable longer.
    /// With --nats, must match the cluster's (its first node's).
    #[arg(long, env = "TRACKER_VISITOR_SALT", value_enum, default_value_t = SaltMode::Day)]
    pub visitor_salt: SaltMode,

    /// Proxies whose `Forwarded` / `X-Forwarded-For` headers are believed
    /// (comma-separated CIDRs or addresses); the client is the right-most
    /// address not in this list. Without it the socket's peer is the
    /// client and those headers are ignored [default: none].
    #[arg(long, env = "TRACKER_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Drop events whose user agent is a crawler, headless browser or
    /// automation driver (counted by reason in /stats and /metrics);
    /// `strict` also drops HTTP libraries (`curl/`, ...) and events with no
    /// user agent.
    #[arg(long, env = "TRACKER_BOT_FILTER", value_enum, default_value_t = BotFilterMode::On)]
    pub bot_filter: BotFilterMode,

    /// The origin `/count?p=/path` resolves against when the request has
    /// no `Origin` or `Referer` (e.g. `https://example.com`; a bare host,
    /// `example.com`, is https) [default: none: the path is the page].
    #[arg(long, env = "TRACKER_SITE", value_parser = parse_site)]
    pub site: Option<String>,
}

/// `--bot-filter` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BotFilterMode {
    /// Crawlers, headless browsers and automation are dropped.
    #[value(name = "true")]
    On,
    /// Nothing is dropped.
    #[value(name = "false")]
    Off,
    /// Also HTTP libraries and events without a user agent.
    Strict,
}

impl From<BotFilterMode> for BotFilter {
    fn from(mode: BotFilterMode) -> Self {
        match mode {
            BotFilterMode::On => BotFilter::new(true),
            BotFilterMode::Off => BotFilter::new(false),
            BotFilterMode::Strict => BotFilter::strict(),
        }
    }
}

/// `--visitor-salt` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaltMode {
    /// A new salt every UTC day.
    Day,
    /// A new salt every week (from Monday, UTC).
    Week,
    /// A new salt every calendar month (UTC).
    Month,
    /// One salt for ever.
    Never,
}

impl From<SaltMode> for SaltRotation {
    fn from(mode: SaltMode) -> Self {
        match mode {
            SaltMode::Day => SaltRotation::Day,
            SaltMode::Week => SaltRotation::Week,
            SaltMode::Month => SaltRotation::Month,
            SaltMode::Never => SaltRotation::Never,
        }
    }
}

/// `--listen`: an address and port, or a host name and port resolved
/// once, at start-up, to its first IPv4 address (`localhost` is then
/// `127.0.0.1`, the address clients given `127.0.0.1` reach), else to
/// its first address.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    let refused = |why: String| {
        format!(
            "`{text}` is not an address and port (127.0.0.1:8080) or a host name and port (localhost:8080): {why}"
        )
    };
    let addresses: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(text)
        .map_err(|e| refused(e.to_string()))?
        .collect();
    addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or(addresses.first())
        .copied()
        .ok_or_else(|| refused("it resolves to no address".into()))
}

/// A CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a single address.
fn parse_cidr(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{text}` is not a CIDR (10.0.0.0/8) or an IP address"))
}

/// An origin, `http(s)://host[:port]`: given as one, as a URL (its origin:
/// a path `p` resolves against the origin whatever the URL's path), or as
/// a bare `host[:port]`, the way SPEC and `?site=` name a site, which is
/// served over `https`.
fn parse_site(text: &str) -> Result<String, String> {
    let refuse = || {
        format!("`{text}` is not an origin such as https://example.com (or a host, example.com)")
    };
    let site = text.trim();
    let url = if site.contains("://") {
        site.to_string()
    } else {
        format!("https://{site}")
    };
    // The page rules' origin ([`tracker_core::origin_of`]), so that a site
    // cannot be read otherwise than a page of it; user info, which the
    // rules drop, is refused here: a configured site has none.
    let authority = url.split_once("://").map_or("", |(_, rest)| rest);
    if authority
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .contains('@')
    {
        return Err(refuse());
    }
    tracker_core::origin_of(&url)
        .map(Cow::into_owned)
        .ok_or_else(refuse)
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// The cluster settings of `--nats` (the caller checked it is set).
    pub fn cluster_config(&self) -> tracker_cluster::ClusterConfig {
        let c = &self.cluster;
        let mut config = tracker_cluster::ClusterConfig::new(
            c.nats.clone().unwrap_or_default(),
            c.cluster.clone(),
        );
        config.node_id = c.node_id.clone();
        config.partitions = c.partitions;
        config.replicas = c.nats_replicas;
        config.lease_ttl = c.lease_ttl;
        config.snapshot_every = c.partition_snapshot_every;
        config.credentials = c.nats_creds.clone();
        config.tls_ca = c.nats_tls_ca.clone();
        config.tls_client = c.nats_tls_cert.clone().zip(c.nats_tls_key.clone());
        config.tracker = self.core.builder();
        // `--max-memory` is the node's: each partition's tracker gets its
        // share of it, so that a node left owning every partition (the
        // others died) still stays within it.
        if let Some(bytes) = self.core.max_memory {
            config.tracker = config
                .tracker
                .max_memory(bytes / u64::from(c.partitions.max(1)));
        }
        config
    }

    /// The settings of a run with no flags (`TRACKER_*` variables still
    /// apply).
    pub fn defaults() -> Self {
        Config::from_args(["tracker-http"]).unwrap_or_else(|e| e.exit())
    }

    /// The settings from the command line `args` (the program's name
    /// first) and the `TRACKER_*` variables, as the binary reads them.
    /// An empty variable is read as unset, for every variable at once:
    /// `TRACKER_AUTH_TOKEN=` (as docker-compose and `.env` files write a
    /// blank) means no token, not a token refused as empty, and a blank
    /// `TRACKER_TTL=` no TTL. (clap would take the empty string as the
    /// value; `Config::parse` keeps that reading.)
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut command = Self::command().mut_args(|arg| {
            let blank = arg
                .get_env()
                .and_then(std::env::var_os)
                .is_some_and(|value| value.is_empty());
            // clap read the variable when the argument was built; without
            // it the argument falls back to its default.
            if blank {
                arg.env(None::<&'static str>)
            } else {
                arg
            }
        });
        let matches = command.try_get_matches_from_mut(args)?;
        Self::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
    }

    /// Checks what clap cannot: values that parse but make no sense.
    pub fn validate(&self) -> Result<(), String> {
        self.core.checked()?;
        if self.core.max_points == 0 {
            return Err("--max-points must be at least 1".into());
        }
        if self.http.body_limit == 0 {
            return Err("--body-limit must be at least 1 byte".into());
        }
        if self.http.batch_limit == 0 {
            return Err("--batch-limit must be at least 1 event".into());
        }
        if self.http.batch_body_limit == 0 {
            return Err("--batch-body-limit must be at least 1 byte".into());
        }
        let h = &self.http;
        for (flag, value) in [
            ("--request-timeout", h.request_timeout),
            ("--ws-idle-timeout", h.ws_idle_timeout),
            ("--header-timeout", h.header_timeout),
            ("--idle-timeout", h.idle_timeout),
            ("--h2-keepalive", h.h2_keepalive),
            ("--h2-keepalive-timeout", h.h2_keepalive_timeout),
        ] {
            if value.is_zero() {
                return Err(format!("{flag} must be positive"));
            }
        }
        if h.max_connections == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        if !(1024..=(16 << 20)).contains(&h.max_header_size) {
            return Err("--max-header-size must be from 1KiB to 16MiB".into());
        }
        if h.h2_max_streams == 0 {
            return Err("--h2-max-streams must be at least 1".into());
        }
        if let Some(rate) = self.http.rate_limit
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(format!(
                "--rate-limit must be a positive number, got {rate}"
            ));
        }
        if let Some(burst) = self.http.rate_burst
            && !(burst.is_finite() && burst >= 1.0)
        {
            return Err(format!("--rate-burst must be at least 1, got {burst}"));
        }
        match self.http.bearer_token() {
            Some("") => return Err("--auth-token must not be empty or only spaces".into()),
            // Messages name no part of the token: it is a secret.
            Some(token) if token.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) => {
                return Err(
                    "--auth-token holds a control character, which no request header can carry"
                        .into(),
                );
            }
            _ => {}
        }
        if self.cluster.nats.is_some() && self.core.hash_key.is_some() {
            return Err(
                "--nats and --hash-key exclude each other: a cluster keeps its key in JetStream"
                    .into(),
            );
        }
        if self.cluster.nats.is_some() && self.cluster.partition_snapshot_every.is_zero() {
            return Err("--partition-snapshot-every must be positive".into());
        }
        if self.cluster.nats.is_some() && self.persist.data_dir.is_some() {
            return Err(
                "--nats and --data-dir exclude each other: a cluster keeps its data in JetStream"
                    .into(),
            );
        }
        let p = &self.persist;
        if p.fsync == FsyncMode::Interval && p.fsync_interval.is_zero() {
            return Err("--fsync-interval must be positive (or use --fsync always)".into());
        }
        if p.snapshot_every.is_zero() {
            return Err("--snapshot-every must be positive".into());
        }
        if p.data_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err("--data-dir must not be empty".into());
        }
        Ok(())
    }
}

/// The start-up summary: every setting, secrets reduced to whether they
/// are set.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.core;
        let h = &self.http;
        let set = |b: bool| if b { "set" } else { "off" };
        write!(
            f,
            "listen={} stripes={} hash_key={} max_visitor_len={} max_url_len={} query={}",
            self.listen,
            c.stripes.map_or("auto".to_string(), |s| s.to_string()),
            if c.hash_key.is_some() {
                "set"
            } else {
                "random"
            },
            c.max_visitor_len,
            c.max_url_len,
            value_name(&c.query),
        )?;
        if c.query == QueryMode::Allow {
            write!(f, " query_allow={}", c.query_allow.join(","))?;
        }
        write!(
            f,
            " max_memory={} memory_policy={} ttl={} bucket={}s retention={} max_points={}",
            c.max_memory.map_or("none".to_string(), |b| b.to_string()),
            value_name(&c.memory_policy),
            c.ttl
                .map_or("none".to_string(), |t| format!("{}s", t.as_secs())),
            c.bucket.as_secs(),
            c.retention
                .map_or("forever".to_string(), |r| format!("{}s", r.as_secs())),
            c.max_points,
        )?;
        let p = &self.persist;
        match &p.data_dir {
            None => write!(f, " data_dir=none")?,
            Some(dir) => write!(
                f,
                " data_dir={} fsync={}{} snapshot_every={:?} snapshot_log_size={} salvage_log={}",
                dir.display(),
                value_name(&p.fsync),
                if p.fsync == FsyncMode::Interval {
                    format!(" fsync_interval={:?}", p.fsync_interval)
                } else {
                    String::new()
                },
                p.snapshot_every,
                p.snapshot_log_size,
                p.salvage_log,
            )?,
        }
        write!(
            f,
            " body_limit={} batch_limit={} batch_body_limit={} ws_idle_timeout={:?} request_timeout={:?} header_timeout={:?} idle_timeout={:?} max_connections={} max_header_size={} h2_max_streams={} h2_keepalive={:?} h2_keepalive_timeout={:?} shutdown_grace={:?} shutdown_delay={:?} rate_limit={} cors_origins={} tls={} tls_reload_interval={:?} auth_token={} log_format={}",
            h.body_limit,
            h.batch_limit,
            h.batch_body_limit,
            h.ws_idle_timeout,
            h.request_timeout,
            h.header_timeout,
            h.idle_timeout,
            h.max_connections,
            h.max_header_size,
            h.h2_max_streams,
            h.h2_keepalive,
            h.h2_keepalive_timeout,
            h.shutdown_grace,
            h.shutdown_delay,
            match (h.rate_limit, h.rate_burst) {
                (None, _) => "off".to_string(),
                (Some(r), None) => format!("{r}/s"),
                (Some(r), Some(b)) => format!("{r}/s burst {b}"),
            },
            if h.cors_origins.is_empty() {
                "none".to_string()
            } else {
                h.cors_origins.join(",")
            },
            match &h.tls_cert {
                Some(path) => path.display().to_string(),
                None => "off".to_string(),
            },
            h.tls_reload_interval,
            set(h.auth_token.is_some()),
            value_name(&self.log_format),
        )?;
        let b = &self.browser;
        let proxies: Vec<String> = b.trusted_proxies.iter().map(|p| p.to_string()).collect();
        write!(
            f,
            " visitor_salt={} trusted_proxies={} bot_filter={} site={} drop_params={} fold_trailing_slash={}",
            value_name(&b.visitor_salt),
            if proxies.is_empty() {
                "none".to_string()
            } else {
                proxies.join(",")
            },
            value_name(&b.bot_filter),
            b.site.as_deref().unwrap_or("none"),
            c.drop_params
                .as_ref()
                .map_or("default".to_string(), |p| p.join(",")),
            c.fold_trailing_slash,
        )?;
        write!(f, " log={}", self.log)?;
        let n = &self.cluster;
        match &n.nats {
            None => write!(f, " nats=none"),
            Some(servers) => write!(
                f,
                " nats={} cluster={} node_id={} partitions={} nats_replicas={} lease_ttl={:?} partition_snapshot_every={:?} nats_creds={} nats_tls={}",
                without_userinfo(servers),
                n.cluster,
                n.node_id.as_deref().unwrap_or("random"),
                n.partitions,
                n.nats_replicas,
                n.lease_ttl,
                n.partition_snapshot_every,
                set(n.nats_creds.is_some()),
                match (&n.nats_tls_ca, &n.nats_tls_cert) {
                    (None, None) => "off",
                    (_, None) => "ca",
                    (_, Some(_)) => "client_cert",
                },
            ),
        }
    }
}

/// `nats://user:password@host:4222,...` without the `user:password@` of
/// each server: the settings are logged, and a password must not be.
fn without_userinfo(servers: &str) -> String {
    servers
        .split(',')
        .map(|server| {
            let (scheme, rest) = server.split_once("://").unwrap_or(("", server));
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            if scheme.is_empty() {
                rest.to_string()
            } else {
                format!("{scheme}://{rest}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// An enum value as it is spelled on the command line.
fn value_name(value: &impl ValueEnum) -> String {
    value
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string())
}

/// `*`, or an origin as browsers send it in `Origin` (compared byte for
/// byte): `https://example.com` from `HTTPS://Example.com/` or
/// `https://example.com:443` as well, since a trailing slash, capitals or
/// the default port would otherwise match no request, silently. A path,
/// query or user info is refused: an origin has none.
fn parse_origin(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s == "*" {
        return Ok(s.to_string());
    }
    let refuse = || format!("`{s}` is not `*` or an origin such as https://example.com");
    let rest = s.split_once("://").map_or("", |(_, rest)| rest);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err(refuse());
    }
    // As the page rules spell an origin ([`tracker_core::origin_of`]),
    // which is how browsers serialise `Origin` (the URL Standard).
    let origin = tracker_core::origin_of(s).ok_or_else(refuse)?.into_owned();
    axum::http::HeaderValue::from_str(&origin).map_err(|_| refuse())?;
    Ok(origin)
}

/// A byte size (see [`parse_bytes`]) that fits in memory's `usize`.
fn parse_usize_bytes(text: &str) -> Result<usize, String> {
    usize::try_from(parse_bytes(text)?).map_err(|_| format!("{text:?} is too large"))
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|e| format!("not a 64-bit number: {e}"))
}

/// Every duration flag's grammar: one number with a unit (`250ms`, `1.5h`,
/// `30d`, `2w`; a fraction allowed) or a bare number of seconds, else the
/// core's form, whole parts together (`1h30m`, see
/// [`Timestamp::parse_duration`]). One grammar, so `--ttl 2w` reads as
/// `--retention 2w` does.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let duration = single_unit_duration(s)
        .or_else(|| Timestamp::parse_duration(s).ok())
        .ok_or_else(|| {
            format!(
                "`{s}` is not a duration: a number and a unit ms, s, m, h, d or w \
             (`500ms`, `1.5h`, `2w`), bare seconds, or whole parts (`1h30m`)"
            )
        })?;
    // Timeouts become deadlines (`Instant::now() + d`) and the cluster
    // multiplies `--lease-ttl`: past this, that arithmetic overflows and
    // panics in every connection, so such a value is refused here.
    if duration > MAX_DURATION {
        return Err(format!(
            "`{s}` is longer than a duration may be (1000 years)"
        ));
    }
    Ok(duration)
}

/// The longest duration a flag takes: longer than any sane setting (the
/// longest retention is 136 years), short enough to add to a clock.
const MAX_DURATION: Duration = Duration::from_secs(1000 * 365 * 86_400);

/// `<number><unit>` or bare seconds, the number possibly with a fraction.
fn single_unit_duration(s: &str) -> Option<Duration> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => value / 1e3,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3_600.0,
        "d" => value * 86_400.0,
        "w" => value * 604_800.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn byte_counts_take_binary_and_decimal_suffixes() {
        assert_eq!(super::parse_bytes("1024"), Ok(1024));
        assert_eq!(super::parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(super::parse_bytes(" 2 GiB "), Ok(2 << 30));
        // What operators write from other tools' habits.
        assert_eq!(super::parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(super::parse_bytes("16kib"), Ok(16 << 10));
        assert_eq!(super::parse_bytes("12MB"), Ok(12_000_000));
        assert_eq!(super::parse_bytes("1gb"), Ok(1_000_000_000));
        assert_eq!(super::parse_bytes("100B"), Ok(100));
        assert!(super::parse_bytes("12XB").is_err());
        assert_eq!(super::parse_bytes("256Mi"), Ok(256 << 20));
        assert_eq!(super::parse_bytes("1gi"), Ok(1 << 30));
        assert_eq!(super::parse_bytes("8 Ki"), Ok(8 << 10));
        assert!(super::parse_bytes("1.5GiB").is_err());
        assert!(super::parse_bytes("99999999999999GiB").is_err());
        assert!(super::parse_bytes("MiB").is_err());
    }

    /// The budget and the token also answer to the names SPEC.md gives
    /// them ("a byte budget", "bearer token").
    #[test]
    fn budget_and_token_have_their_spec_names() {
        use clap::Parser;
        let config = super::Config::try_parse_from([
            "tracker-http",
            "--memory-budget",
            "64MiB",
            "--token",
            "s3cret",
        ])
        .unwrap();
        assert_eq!(config.core.max_memory, Some(64 << 20));
        assert_eq!(config.http.auth_token.as_deref(), Some("s3cret"));
        // A container's memory limit is not the budget: no such alias.
        let limit = super::Config::try_parse_from(["tracker-http", "--memory-limit", "1m"]);
        assert!(limit.is_err());
    }

    #[test]
    fn ttls_take_every_duration_unit() {
        use std::time::Duration;
        assert_eq!(
            super::parse_ttl("30d"),
            Ok(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(super::parse_ttl("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(super::parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert!(super::parse_ttl("500ms").is_err());
        assert!(super::parse_ttl("0s").is_err());
        assert!(super::parse_ttl("100000d").is_err());
        assert_eq!(super::parse_ttl("1w"), Ok(Duration::from_secs(7 * 86_400)));
    }

    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = Config::defaults();
        config.validate().unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        // A host name and port, as `localhost:8080`, is its address.
        for (given, address) in [
            ("localhost:8081", "127.0.0.1:8081"),
            (" [::1]:8082", "[::1]:8082"),
        ] {
            let config = Config::parse_from(["tracker-http", "--listen", given]);
            assert_eq!(config.listen.to_string(), address, "{given}");
        }
        for bad in ["localhost", ":8080", "127.0.0.1:http"] {
            assert!(
                Config::try_parse_from(["tracker-http", "--listen", bad]).is_err(),
                "{bad}"
            );
        }
        assert_eq!(config.http.rate_limit, None);
        assert_eq!(config.http.auth_token, None);
        assert_eq!(config.http.body_limit, DEFAULT_BODY_LIMIT);
        assert_eq!(config.http.request_timeout, DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(config.http.header_timeout, DEFAULT_HEADER_TIMEOUT);
        assert_eq!(config.http.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(config.http.max_header_size, DEFAULT_MAX_HEADER_SIZE);
        assert_eq!(config.http.h2_keepalive, DEFAULT_H2_KEEPALIVE);
        assert_eq!(
            config.http.h2_keepalive_timeout,
            DEFAULT_H2_KEEPALIVE_TIMEOUT
        );
        assert!(DEFAULT_HEADER_TIMEOUT <= Duration::from_secs(30));
        assert!(DEFAULT_IDLE_TIMEOUT <= Duration::from_secs(120));
        let printed = config.to_string();
        assert!(printed.contains("rate_limit=off"), "{printed}");
        assert!(printed.contains("query=keep"), "{printed}");
    }

    #[test]
    fn persistence_flags_become_log_options_and_a_schedule() {
        let config = Config::parse_from([
            "tracker-http",
            "--data-dir",
            "/var/lib/tracker",
            "--fsync",
            "interval",
            "--fsync-interval",
            "20ms",
            "--snapshot-every",
            "1m",
            "--snapshot-log-size",
            "64MiB",
            "--salvage-log",
        ]);
        config.validate().unwrap();
        let p = &config.persist;
        assert_eq!(
            p.log_options(),
            LogOptions::default()
                .sync(FsyncPolicy::Interval(Duration::from_millis(20)))
                .salvage(true)
        );
        assert_eq!(
            p.schedule(),
            SnapshotSchedule::default()
                .every(Duration::from_secs(60))
                .log_bytes(64 << 20)
        );
        let printed = config.to_string();
        assert!(
            printed.contains("data_dir=/var/lib/tracker fsync=interval fsync_interval=20ms"),
            "{printed}"
        );
        assert!(Config::defaults().to_string().contains("data_dir=none"));
        let invalid = |args: &[&str]| {
            let mut all = vec!["tracker-http"];
            all.extend_from_slice(args);
            Config::try_parse_from(all)
                .map(|c| c.validate().is_err())
                .unwrap_or(true)
        };
        assert!(invalid(&["--fsync", "sometimes"]));
        assert!(invalid(&["--fsync-interval", "0ms"]));
        assert!(invalid(&["--snapshot-every", "0s"]));
        assert!(invalid(&["--data-dir", ""]));
        assert!(!invalid(&["--fsync", "always", "--fsync-interval", "0ms"]));
        assert!(invalid(&["--header-timeout", "0s"]));
        assert!(invalid(&["--idle-timeout", "0s"]));
        assert!(invalid(&["--max-connections", "0"]));
        assert!(invalid(&["--max-header-size", "100"]));
        assert!(invalid(&["--h2-max-streams", "0"]));
        assert!(!invalid(&[
            "--header-timeout",
            "1s",
            "--max-connections",
            "8"
        ]));
    }

    #[test]
    fn cluster_flags() {
        let nats = ["tracker-http", "--nats", "nats://127.0.0.1:4222"];
        let config = Config::parse_from(nats.iter().chain(&["--partitions", "8"]));
        assert!(config.validate().is_ok());
        let cluster = config.cluster_config();
        assert_eq!((cluster.partitions, cluster.replicas), (8, 1));
        let budget =
            Config::parse_from(
                nats.iter()
                    .chain(&["--max-memory", "8MiB", "--partitions", "8"]),
            )
            .cluster_config()
            .tracker
            .build()
            .unwrap()
            .config()
            .max_memory;
        assert_eq!(
            budget,
            Some(1 << 20),
            "a partition's share of the node's budget"
        );
        for extra in [
            ["--data-dir", "/tmp/x"],
            ["--hash-key", "7"],
            ["--partition-snapshot-every", "0s"],
        ] {
            let config = Config::parse_from(nats.iter().chain(&extra));
            assert!(config.validate().is_err(), "{extra:?} with --nats");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("3h"), Ok(Duration::from_secs(10_800)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1_500)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
        // Short of u64::MAX seconds but past what a deadline can hold: it
        // made every connection's task panic on `Instant + Duration`.
        for huge in ["10000000000000000000", "1000000000000w", "366001d"] {
            assert!(parse_duration(huge).is_err(), "{huge}");
        }
        assert_eq!(
            parse_duration("365000d"),
            Ok(Duration::from_secs(365_000 * 86_400))
        );
        use clap::Parser;
        let refused = super::Config::try_parse_from([
            "tracker-http",
            "--idle-timeout",
            "10000000000000000000",
        ]);
        assert!(
            refused.is_err(),
            "a huge --idle-timeout is refused at start"
        );
    }

    #[test]
    fn every_duration_and_byte_flag_reads_one_grammar() {
        let config = Config::try_parse_from([
            "tracker-http",
            "--ttl",
            "2w",
            "--snapshot-every",
            "1h30m",
            "--header-timeout",
            "1.5s",
            "--retention",
            "1.5d",
            "--batch-body-limit",
            "8MiB",
            "--body-limit",
            "32768",
        ])
        .unwrap();
        assert_eq!(config.core.ttl, Some(Duration::from_secs(14 * 86_400)));
        assert_eq!(config.persist.snapshot_every, Duration::from_secs(5_400));
        assert_eq!(config.http.header_timeout, Duration::from_millis(1_500));
        assert_eq!(config.core.retention, Some(Duration::from_secs(129_600)));
        assert_eq!(config.http.batch_body_limit, 8 << 20);
        assert_eq!(config.http.body_limit, 32_768);
    }

    #[test]
    fn browser_flags() {
        let config = Config::parse_from([
            "tracker-http",
            "--visitor-salt",
            "week",
            "--trusted-proxies",
            "10.0.0.0/8, 192.0.2.1,2001:db8::/32",
            "--bot-filter",
            "false",
            "--site",
            "https://shop.example/",
            "--drop-params",
            "ref,utm_*,",
            "--fold-trailing-slash",
        ]);
        let b = &config.browser;
        assert_eq!(SaltRotation::from(b.visitor_salt), SaltRotation::Week);
        let proxies: Vec<String> = b.trusted_proxies.iter().map(|p| p.to_string()).collect();
        assert_eq!(proxies, ["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"]);
        assert_eq!(b.bot_filter, BotFilterMode::Off);
        assert_eq!(b.site.as_deref(), Some("https://shop.example"));
        // A site named as SPEC and `?site=` name one, a host, is served
        // over https; a URL stands for its origin.
        for (given, origin) in [
            ("shop.example", "https://shop.example"),
            ("shop.example:8080", "https://shop.example:8080"),
            (
                " HTTP://Shop.example:8080/blog/?x#y",
                "http://shop.example:8080",
            ),
            ("https://shop.example/path", "https://shop.example"),
            ("[::1]:8443", "https://[::1]:8443"),
            // As the page rules read a host and port.
            ("https://shop.example:443", "https://shop.example"),
            ("Shop.Example:08080", "https://shop.example:8080"),
            ("127.1", "https://127.0.0.1"),
            ("[0:0::1]", "https://[::1]"),
            ("sh%6Fp.example", "https://shop.example"),
        ] {
            let config = Config::parse_from(["tracker-http", "--site", given]);
            assert_eq!(config.browser.site.as_deref(), Some(origin), "{given}");
        }
        let core = config.core.tracker_config().unwrap();
        assert_eq!(core.url.drop_params, ["ref", "utm_*"]);
        assert!(core.url.fold_trailing_slash);
        let printed = config.to_string();
        assert!(
            printed.contains("visitor_salt=week trusted_proxies=10.0.0.0/8,192.0.2.1/32,2001:db8::/32 bot_filter=false site=https://shop.example"),
            "{printed}"
        );
        let defaults = Config::defaults();
        assert_eq!(defaults.browser.visitor_salt, SaltMode::Day);
        assert_eq!(defaults.browser.bot_filter, BotFilterMode::On);
        let strict = Config::parse_from(["tracker-http", "--bot-filter", "strict"]);
        assert_eq!(strict.browser.bot_filter, BotFilterMode::Strict);
        assert_eq!(defaults.http.cors_origins, ["*"]);
        assert_eq!(
            defaults
                .core
                .tracker_config()
                .unwrap()
                .url
                .drop_params
                .len(),
            tracker_core::TRACKING_PARAMS.len()
        );
        // `,` is how the variable says it, where empty is unset.
        for none in ["", ","] {
            let empty = Config::parse_from(["tracker-http", "--drop-params", none]);
            assert!(
                empty
                    .core
                    .tracker_config()
                    .unwrap()
                    .url
                    .drop_params
                    .is_empty(),
                "{none:?}"
            );
        }
        for bad in [
            &["--trusted-proxies", "10.0.0.0/33"][..],
            &["--trusted-proxies", "proxy.internal"],
            &["--visitor-salt", "hourly"],
            &["--site", "ftp://shop.example"],
            &["--site", "https://"],
            &["--site", "shop.example:http"],
            &["--site", "user@shop.example"],
            &["--site", "[::1]x80"],
            &["--site", "::1"],
            &["--site", "shop.example:+80"],
            &["--site", "[::1]é"],
            &["--site", "shop.example:99999"],
            &["--site", "shop.example:65536"],
            &["--site", "shop.example:-1"],
            &["--site", "sh op.example"],
            &["--site", "shop<example"],
            &["--site", "shop%zz.example"],
            &["--site", "1.2.3.999"],
            &["--site", "shop.0x"],
            &["--site", "[::g]"],
            &["--site", "[1:2]"],
            &["--site", "https://u:p@shop.example"],
            &["--bot-filter", "maybe"],
        ] {
            let mut args = vec!["tracker-http"];
            args.extend_from_slice(bad);
            assert!(Config::try_parse_from(args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn time_flags_reach_the_core_and_bad_ones_are_refused_by_name() {
        let config = Config::parse_from([
            "tracker-http",
            "--bucket",
            "15m",
            "--retention",
            "90d",
            "--max-points",
            "200",
        ]);
        config.validate().unwrap();
        let bucketing = config.core.tracker_config().unwrap().bucketing;
        assert_eq!(bucketing.width(), Duration::from_secs(900));
        assert_eq!(
            bucketing.retention(),
            Some(Duration::from_secs(90 * 86_400))
        );
        assert_eq!(bucketing.point_limit(), 200);
        let printed = config.to_string();
        assert!(
            printed.contains("bucket=900s retention=7776000s max_points=200"),
            "{printed}"
        );
        let defaults = Config::defaults();
        assert_eq!(defaults.core.bucket, tracker_core::DEFAULT_BUCKET);
        assert!(
            defaults
                .to_string()
                .contains("bucket=3600s retention=forever max_points=1000")
        );
        let refusal = |args: &[&str]| {
            let mut all = vec!["tracker-http"];
            all.extend_from_slice(args);
            match Config::try_parse_from(all) {
                Ok(config) => config.validate().unwrap_err(),
                Err(e) => e.to_string(),
            }
        };
        for (args, says) in [
            (&["--bucket", "7m"][..], "--bucket: a bucket of 420 s"),
            (&["--bucket", "2d"], "--bucket"),
            (&["--bucket", "30s"], "--bucket"),
            (&["--bucket", "an hour"], "not a duration"),
            (
                &["--retention", "30m"],
                "--retention: a retention of 1800 s",
            ),
            (&["--retention", "soon"], "not a duration"),
            (&["--max-points", "0"], "--max-points must be at least 1"),
            (&["--max-points=-1"], "--max-points"),
        ] {
            let message = refusal(args);
            assert!(message.contains(says), "{args:?}: {message}");
        }
        // A budget below what the stripes take names the flag to change.
        let min = tracker_core::Tracker::builder()
            .stripes(4)
            .config()
            .unwrap()
            .fixed_bytes();
        let message = refusal(&["--stripes", "4", "--max-memory", "1"]);
        let says = format!("--max-memory: 1 bytes is less than the {min} bytes");
        assert!(message.contains(&says), "{message}");
    }

    #[test]
    fn flags_reach_the_core_builder() {
        let config = Config::parse_from([
            "tracker-http",
            "--stripes",
            "8",
            "--hash-key",
            "0x2a",
            "--query",
            "allow",
            "--query-allow",
            "id,page",
            "--auth-token",
            "secret",
        ]);
        let core = config.core.tracker_config().unwrap();
        assert_eq!(core.stripes, 8);
        assert_eq!(core.hash_key, 42);
        assert_eq!(
            core.url.query,
            QueryPolicy::Allow(vec!["id".into(), "page".into()])
        );
        assert!(!config.to_string().contains("secret"));
        let printed = Config::defaults().to_string();
        assert!(printed.ends_with(" log=info nats=none"), "{printed}");
        let clustered = Config::parse_from([
            "tracker-http",
            "--nats",
            "nats://app:secret@n1.test:4222,n2.test:4222",
            "--partitions",
            "16",
        ])
        .to_string();
        assert!(
            clustered.contains(" nats=nats://n1.test:4222,n2.test:4222 cluster=tracker node_id=random partitions=16 nats_replicas=1 lease_ttl=6s partition_snapshot_every=30s nats_creds=off nats_tls=off"),
            "{clustered}"
        );
        assert!(!clustered.contains("secret"), "{clustered}");
        assert!(Config::try_parse_from(["tracker-http", "--query", "allow"]).is_err());
        assert!(Config::try_parse_from(["tracker-http", "--tls-cert", "c.pem"]).is_err());
        let cors = |o: &str| {
            Config::try_parse_from(["tracker-http", "--cors-origins", o])
                .map(|c| c.http.cors_origins)
                .map_err(|e| e.kind())
        };
        assert_eq!(
            cors("https://a.example, http://b.example:8000"),
            Ok(vec![
                "https://a.example".to_string(),
                "http://b.example:8000".to_string()
            ])
        );
        assert_eq!(cors("*"), Ok(vec!["*".to_string()]));
        assert_eq!(
            cors("http://127.1:08080,https://[0:0::1]/"),
            Ok(vec![
                "http://127.0.0.1:8080".to_string(),
                "https://[::1]".to_string()
            ])
        );
        // As browsers send `Origin`, else no request would ever match.
        assert_eq!(
            cors("HTTPS://A.example/,https://b.example:443,http://c.example:80/"),
            Ok(vec![
                "https://a.example".to_string(),
                "https://b.example".to_string(),
                "http://c.example".to_string()
            ])
        );
        for refused in [
            "a.example",
            "https://a.example/app",
            "https://a.example?x",
            "https://u@a.example",
            "https://",
            "ftp://a.example",
            "https://a.example:99999",
            "https://a.example:x",
            "https://a|b.example",
            "https://1.2.3.999",
            "https://[::g]",
        ] {
            assert!(cors(refused).is_err(), "{refused}");
        }
    }
}
