//! Request and event counters, and their Prometheus text rendering.
//!
//! Every counter is an atomic in an array sized at start-up: recording a
//! request is a few relaxed `fetch_add`s, with no lock, no allocation and
//! no map lookup. The text format is written by hand because it is a few
//! lines of `name{labels} value`; a metrics crate would add a registry
//! and its locking for nothing this service needs.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use tracker_core::browser::BotReason;
use tracker_core::persist::DurableStatus;
use tracker_core::{Recorded, Stats};

/// The routes requests are counted under. Unknown paths share `Other`
/// so a scanner cannot grow the label set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/events`
    Events,
    /// `/events/batch`
    EventsBatch,
    /// `/events/ws`
    EventsWs,
    /// `/api/event`
    ApiEvent,
    /// `/count`
    Count,
    /// `/tracker.js`
    TrackerJs,
    /// `/distinct`
    Distinct,
    /// `/top`
    Top,
    /// `/series`
    Series,
    /// `/pages`
    Pages,
    /// `/stats`
    Stats,
    /// `/healthz`
    Healthz,
    /// `/readyz`
    Readyz,
    /// `/metrics`
    Metrics,
    /// `/`, the dashboard page.
    Dashboard,
    /// `/dashboard/<name>`, one of the dashboard's files.
    DashboardFiles,
    /// Any other path.
    Other,
}

impl Route {
    const ALL: [Route; 17] = [
        Route::Events,
        Route::EventsBatch,
        Route::EventsWs,
        Route::ApiEvent,
        Route::Count,
        Route::TrackerJs,
        Route::Distinct,
        Route::Top,
        Route::Series,
        Route::Pages,
        Route::Stats,
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::Dashboard,
        Route::DashboardFiles,
        Route::Other,
    ];

    /// The route a request path belongs to.
    pub fn of(path: &str) -> Route {
        match path {
            "/events" => Route::Events,
            "/events/batch" => Route::EventsBatch,
            "/events/ws" => Route::EventsWs,
            "/api/event" => Route::ApiEvent,
            "/count" => Route::Count,
            "/tracker.js" => Route::TrackerJs,
            "/distinct" => Route::Distinct,
            "/top" => Route::Top,
            "/series" => Route::Series,
            "/pages" => Route::Pages,
            "/stats" => Route::Stats,
            "/healthz" => Route::Healthz,
            "/readyz" => Route::Readyz,
            "/metrics" => Route::Metrics,
            "/" => Route::Dashboard,
            // Only the files there are: CORS answers `OPTIONS` on the
            // routes, and any other name is the router's 404.
            _ if path.strip_prefix("/dashboard/").is_some_and(|name| {
                crate::assets::DASHBOARD_FILES
                    .iter()
                    .any(|(file, _)| *file == name)
            }) =>
            {
                Route::DashboardFiles
            }
            _ => Route::Other,
        }
    }

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Route::Events => "/events",
            Route::EventsBatch => "/events/batch",
            Route::EventsWs => "/events/ws",
            Route::ApiEvent => "/api/event",
            Route::Count => "/count",
            Route::TrackerJs => "/tracker.js",
            Route::Distinct => "/distinct",
            Route::Top => "/top",
            Route::Series => "/series",
            Route::Pages => "/pages",
            Route::Stats => "/stats",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
            Route::Dashboard => "/",
            Route::DashboardFiles => "/dashboard/*",
            Route::Other => "other",
        }
    }
}

/// The statuses this service answers with get a slot each; anything else
/// (only possible from a layer misbehaving) is counted under the last one.
const STATUSES: [u16; 18] = [
    101, 200, 202, 204, 304, 400, 401, 403, 404, 405, 408, 413, 415, 429, 500, 503, 507, 0,
];

fn status_slot(status: StatusCode) -> usize {
    let code = status.as_u16();
    STATUSES[..STATUSES.len() - 1]
        .iter()
        .position(|&s| s == code)
        .unwrap_or(STATUSES.len() - 1)
}

/// Upper bounds of the latency histogram buckets, in microseconds.
const BUCKETS_US: [u64; 15] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

#[derive(Default)]
struct Latency {
    /// Non-cumulative: bucket `i` counts requests in `(BUCKETS_US[i-1],
    /// BUCKETS_US[i]]`; the last slot counts the rest (`+Inf`).
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_ns: AtomicU64,
}

/// The service's counters.
#[derive(Default)]
pub struct Metrics {
    requests: [[AtomicU64; STATUSES.len()]; Route::ALL.len()],
    latency: [Latency; Route::ALL.len()],
    events_new: AtomicU64,
    events_duplicate: AtomicU64,
    events_sketched: AtomicU64,
    events_stale: AtomicU64,
    events_published: AtomicU64,
    dropped: [AtomicU64; BotReason::ALL.len()],
    custom_events: Mutex<HashMap<String, u64>>,
    connections: [AtomicU64; Connection::ALL.len()],
}

/// What happened to a connection, counted by [`Metrics::connection`]
/// (see [`conn`](crate::conn)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// Accepted under the cap, to be served.
    Opened,
    /// A served connection closed, for any reason.
    Closed,
    /// Past the cap: answered 503 and closed.
    Refused,
    /// Past the cap with too many refusals in progress: closed unanswered.
    Dropped,
    /// Closed because a request head took longer than the header timeout.
    HeaderTimeout,
    /// Closed after the idle timeout.
    IdleTimeout,
}

impl Connection {
    const ALL: [Connection; 6] = [
        Connection::Opened,
        Connection::Closed,
        Connection::Refused,
        Connection::Dropped,
        Connection::HeaderTimeout,
        Connection::IdleTimeout,
    ];
}

/// Distinct custom event names kept in `/stats`; later new names are
/// counted under [`OTHER_EVENTS`], so senders cannot grow memory.
pub const MAX_EVENT_NAMES: usize = 100;
/// The name events beyond [`MAX_EVENT_NAMES`] are counted under.
pub const OTHER_EVENTS: &str = "(other)";
/// Longest event name kept, in bytes; longer names are cut.
const MAX_EVENT_NAME_LEN: usize = 100;

impl Metrics {
    /// Counts one finished request.
    pub fn observe(&self, route: Route, status: StatusCode, elapsed: Duration) {
        let r = route as usize;
        self.requests[r][status_slot(status)].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_US.partition_point(|&b| b < us);
        let latency = &self.latency[r];
        latency.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        latency.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Counts one event the tracker accepted; `None`: published to a
    /// cluster, whose partition owner alone knows whether it was new.
    pub fn event(&self, recorded: Option<Recorded>) {
        match recorded {
            Some(Recorded::New) => &self.events_new,
            Some(Recorded::Duplicate) => &self.events_duplicate,
            Some(Recorded::Sketched) => &self.events_sketched,
            Some(Recorded::Stale) => &self.events_stale,
            None => &self.events_published,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one event dropped as a bot's.
    pub fn dropped(&self, reason: BotReason) {
        let slot = BotReason::ALL.iter().position(|&r| r == reason);
        if let Some(slot) = slot {
            self.dropped[slot].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events dropped as bots', by reason (every reason, zeros included).
    pub fn dropped_counts(&self) -> BTreeMap<&'static str, u64> {
        BotReason::ALL
            .iter()
            .zip(&self.dropped)
            .map(|(reason, n)| (reason.name(), n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Counts one event that is not a page view (a Plausible custom event
    /// or `engagement`, a GoatCounter `e=true`), by name.
    pub fn custom_event(&self, name: &str) {
        let mut cut = name.len().min(MAX_EVENT_NAME_LEN);
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        let name = &name[..cut];
        let mut names = self
            .custom_events
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = names.get_mut(name) {
            *n += 1;
            return;
        }
        let key = if names.len() < MAX_EVENT_NAMES {
            name
        } else {
            OTHER_EVENTS
        };
        *names.entry(key.to_string()).or_default() += 1;
    }

    /// Events that are not page views, by name.
    pub fn custom_event_counts(&self) -> BTreeMap<String, u64> {
        let names = self
            .custom_events
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        names.iter().map(|(k, &v)| (k.clone(), v)).collect()
    }

    /// The events that stop at this node, dropped and custom, as a
    /// cluster node reports them to the others (see
    /// [`Arrivals`](tracker_cluster::arrivals::Arrivals)).
    pub fn arrivals(&self) -> tracker_cluster::arrivals::Arrivals {
        tracker_cluster::arrivals::Arrivals {
            dropped: self
                .dropped_counts()
                .into_iter()
                .map(|(reason, n)| (reason.to_owned(), n))
                .collect(),
            custom: self.custom_event_counts(),
        }
    }

    /// Counts one connection event.
    pub fn connection(&self, event: Connection) {
        self.connections[event as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests counted so far for `route` answered with `status`.
    pub fn requests(&self, route: Route, status: StatusCode) -> u64 {
        self.requests[route as usize][status_slot(status)].load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition (format 0.0.4) of these counters, of
    /// the tracker's `stats` and of the log and snapshots' `durable` status;
    /// the `published` series only for a `cluster` node (only it publishes).
    pub fn render(&self, stats: &Stats, durable: Option<&DurableStatus>, cluster: bool) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);

        out.push_str(
            "# HELP tracker_http_requests_total Requests answered, by route and status.\n\
             # TYPE tracker_http_requests_total counter\n",
        );
        for route in Route::ALL {
            for (slot, &status) in STATUSES.iter().enumerate() {
                let n = load(&self.requests[route as usize][slot]);
                if n == 0 {
                    continue;
                }
                let status = if status == 0 {
                    "other".to_string()
                } else {
                    status.to_string()
                };
                let _ = writeln!(
                    out,
                    "tracker_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                    route.name()
                );
            }
        }

        out.push_str(
            "# HELP tracker_http_request_duration_seconds Time from request to response head.\n\
             # TYPE tracker_http_request_duration_seconds histogram\n",
        );
        for route in Route::ALL {
            let latency = &self.latency[route as usize];
            let counts: Vec<u64> = latency.buckets.iter().map(load).collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let name = route.name();
            let mut cumulative = 0;
            for (i, &le) in BUCKETS_US.iter().enumerate() {
                cumulative += counts[i];
                let _ = writeln!(
                    out,
                    "tracker_http_request_duration_seconds_bucket{{route=\"{name}\",le=\"{}\"}} {cumulative}",
                    le as f64 / 1e6
                );
            }
            let _ = writeln!(
                out,
                "tracker_http_request_duration_seconds_bucket{{route=\"{name}\",le=\"+Inf\"}} {total}\n\
                 tracker_http_request_duration_seconds_sum{{route=\"{name}\"}} {}\n\
                 tracker_http_request_duration_seconds_count{{route=\"{name}\"}} {total}",
                load(&latency.sum_ns) as f64 / 1e9
            );
        }

        let _ = write!(
            out,
            "# HELP tracker_events_recorded_total Events accepted, by whether they added a visitor.\n\
             # TYPE tracker_events_recorded_total counter\n\
             tracker_events_recorded_total{{result=\"new\"}} {}\n\
             tracker_events_recorded_total{{result=\"duplicate\"}} {}\n\
             tracker_events_recorded_total{{result=\"sketched\"}} {}\n\
             tracker_events_recorded_total{{result=\"stale\"}} {}\n",
            load(&self.events_new),
            load(&self.events_duplicate),
            load(&self.events_sketched),
            load(&self.events_stale),
        );
        if cluster {
            let _ = writeln!(
                out,
                "tracker_events_recorded_total{{result=\"published\"}} {}",
                load(&self.events_published)
            );
        }
        out.push_str(
            "# HELP tracker_events_dropped_total Browser events dropped as bots', by reason.\n\
             # TYPE tracker_events_dropped_total counter\n",
        );
        for (reason, n) in self.dropped_counts() {
            let _ = writeln!(
                out,
                "tracker_events_dropped_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let custom: u64 = self.custom_event_counts().values().sum();
        let _ = write!(
            out,
            "# HELP tracker_custom_events_total Events that are not page views (counted by name in /stats).\n\
             # TYPE tracker_custom_events_total counter\n\
             tracker_custom_events_total {custom}\n"
        );
        let c = |event: Connection| load(&self.connections[event as usize]);
        let _ = write!(
            out,
            "# HELP tracker_http_connections_open Connections being served.\n\
             # TYPE tracker_http_connections_open gauge\n\
             tracker_http_connections_open {}\n\
             # HELP tracker_http_connections_total Connections accepted, by outcome: served, or past --max-connections refused with 503 or dropped unanswered.\n\
             # TYPE tracker_http_connections_total counter\n\
             tracker_http_connections_total{{result=\"served\"}} {}\n\
             tracker_http_connections_total{{result=\"refused\"}} {}\n\
             tracker_http_connections_total{{result=\"dropped\"}} {}\n\
             # HELP tracker_http_connections_timed_out_total Connections closed by the header or idle timeout.\n\
             # TYPE tracker_http_connections_timed_out_total counter\n\
             tracker_http_connections_timed_out_total{{timeout=\"header\"}} {}\n\
             tracker_http_connections_timed_out_total{{timeout=\"idle\"}} {}\n",
            c(Connection::Opened).saturating_sub(c(Connection::Closed)),
            c(Connection::Opened),
            c(Connection::Refused),
            c(Connection::Dropped),
            c(Connection::HeaderTimeout),
            c(Connection::IdleTimeout),
        );
        // One line per `Stats` figure.
        let gauges: [(&str, &str, u64); 11] = [
            ("tracker_pages", "Pages tracked.", stats.pages),
            (
                "tracker_pairs",
                "Distinct (page, visitor) pairs held.",
                stats.pairs,
            ),
            (
                "tracker_bytes",
                "Bytes held, as accounted by the tracker.",
                stats.bytes,
            ),
            ("tracker_stripes", "Lock stripes.", stats.stripes),
            (
                "tracker_max_bytes",
                "The memory budget in bytes (0: none).",
                stats.max_bytes.unwrap_or(0),
            ),
            (
                "tracker_sketched_pages",
                "Pages whose count is an estimate from a sketch.",
                stats.sketched_pages,
            ),
            (
                "tracker_sketched_visitors",
                "Visitors of the sketched pages, as their sketches estimate them.",
                stats.sketched_visitors,
            ),
            (
                "tracker_evictions_total",
                "Pages evicted to stay within the memory budget.",
                stats.evictions,
            ),
            (
                "tracker_rejections_total",
                "Records refused for lack of memory.",
                stats.rejections,
            ),
            (
                "tracker_expirations_total",
                "(page, visitor) pairs expired by the TTL.",
                stats.expirations,
            ),
            (
                "tracker_expired_pages_total",
                "Pages removed because none of their visitors was live.",
                stats.expired_pages,
            ),
        ];
        let durable_gauges: Vec<(&str, &str, u64)> = match durable {
            None => Vec::new(),
            Some(d) => vec![
                (
                    "tracker_log_end_bytes",
                    "The event log's position: bytes ever appended.",
                    d.log_end.0,
                ),
                (
                    "tracker_log_bytes_since_snapshot",
                    "Log bytes after the newest snapshot: what a restart replays.",
                    d.log_bytes_since_snapshot,
                ),
                (
                    "tracker_snapshots_total",
                    "Snapshots written since start.",
                    d.snapshots_written,
                ),
                (
                    "tracker_snapshot_failures_total",
                    "Snapshots that failed since start.",
                    d.snapshot_failures,
                ),
            ],
        };
        for (name, help, value) in gauges.into_iter().chain(durable_gauges) {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        }
        let _ = write!(
            out,
            "# HELP tracker_exact_share Share of the held visitors of pages counted exactly (0 to 1).\n\
             # TYPE tracker_exact_share gauge\ntracker_exact_share {}\n",
            stats.exact_share()
        );
        out
    }
}

/// Appends a cluster node's series of the stream events it refused to
/// record after they were acknowledged, by reason
/// ([`tracker_cluster::Node::refused_events`]).
pub fn render_refused(out: &mut String, refused: &[(&str, u64)]) {
    out.push_str(
        "# HELP tracker_cluster_events_refused_total Acknowledged stream events this node's partitions refused to record, by reason.\n\
         # TYPE tracker_cluster_events_refused_total counter\n",
    );
    for (reason, n) in refused {
        let _ = writeln!(
            out,
            "tracker_cluster_events_refused_total{{reason=\"{reason}\"}} {n}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_match() {
        let m = Metrics::default();
        m.observe(
            Route::Events,
            StatusCode::ACCEPTED,
            Duration::from_micros(70),
        );
        m.observe(Route::Events, StatusCode::ACCEPTED, Duration::from_secs(60));
        m.observe(Route::Other, StatusCode::IM_A_TEAPOT, Duration::ZERO);
        let text = m.render(&Stats::default(), None, false);
        assert!(text.contains("tracker_http_requests_total{route=\"/events\",status=\"202\"} 2"));
        assert!(text.contains("tracker_http_requests_total{route=\"other\",status=\"other\"} 1"));
        assert!(text.contains(
            "tracker_http_request_duration_seconds_bucket{route=\"/events\",le=\"0.0001\"} 1"
        ));
        assert!(text.contains(
            "tracker_http_request_duration_seconds_bucket{route=\"/events\",le=\"5\"} 1"
        ));
        assert!(text.contains(
            "tracker_http_request_duration_seconds_bucket{route=\"/events\",le=\"+Inf\"} 2"
        ));
        assert_eq!(m.requests(Route::Events, StatusCode::ACCEPTED), 2);
        // Only a cluster node publishes.
        assert!(!text.contains("result=\"published\""));
        m.event(None);
        let text = m.render(&Stats::default(), None, true);
        assert!(text.contains("tracker_events_recorded_total{result=\"published\"} 1"));
    }

    #[test]
    fn drops_and_custom_events() {
        let m = Metrics::default();
        m.dropped(BotReason::Headless);
        m.dropped(BotReason::Headless);
        m.dropped(BotReason::Crawler);
        assert_eq!(m.dropped_counts()["headless"], 2);
        assert_eq!(m.dropped_counts()["client_flag"], 0);
        for i in 0..MAX_EVENT_NAMES + 5 {
            m.custom_event(&format!("e{i}"));
        }
        m.custom_event("e0");
        m.custom_event(&"é".repeat(200));
        let names = m.custom_event_counts();
        assert_eq!(names.len(), MAX_EVENT_NAMES + 1);
        assert_eq!(names["e0"], 2);
        assert_eq!(names[OTHER_EVENTS], 6);
        let text = m.render(&Stats::default(), None, false);
        assert!(text.contains("tracker_events_dropped_total{reason=\"headless\"} 2"));
        assert!(text.contains("tracker_custom_events_total 107"));
    }
}
