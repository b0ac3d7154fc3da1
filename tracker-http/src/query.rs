//! The read endpoints: `GET /distinct`, `GET /top`, `GET /stats`
//! (`GET /pages` is in `pages.rs`; `GET /series` and the ranged forms of
//! `/distinct` and `/top` in `ranges.rs`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracker_cluster::Freshness;
use tracker_core::persist::{DurableTracker, FsyncPolicy};
use tracker_core::{Distinct, Field, TrackerError};

use crate::error::AppError;
use crate::ranges::{self, TopBody, Window};
use crate::state::AppState;
use crate::store::Recovered;

/// Rows `GET /top` returns when no `limit` is given.
pub const DEFAULT_TOP: usize = 10;
/// The largest `limit` `GET /top` accepts.
pub const MAX_TOP: usize = 1000;

/// The answer of `GET /distinct`, and a row of `GET /top`.
#[derive(Debug, Serialize)]
pub struct DistinctBody<'a> {
    /// The page's canonical URL, the key it is counted under.
    pub url: Cow<'a, str>,
    /// Distinct visitors retained for the page.
    pub distinct_visitors: u64,
    /// Whether the count is exact rather than an estimate.
    pub exact: bool,
    /// For an estimate, its relative standard error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<f64>,
}

impl<'a> DistinctBody<'a> {
    /// The body of `distinct` for page `url`.
    pub fn new(url: Cow<'a, str>, distinct: Distinct) -> Self {
        Self {
            url,
            distinct_visitors: distinct.visitors,
            exact: distinct.exact,
            error: distinct.relative_error,
        }
    }
}

/// An answer, and with `--nats` how fresh it is.
#[derive(Debug, Serialize)]
pub struct Fresh<T> {
    /// The answer.
    #[serde(flatten)]
    pub body: T,
    /// In a cluster: the partitions that answered and what they applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<FreshnessBody>,
}

impl<T> Fresh<T> {
    pub(crate) fn local(body: T) -> Self {
        Self {
            body,
            cluster: None,
        }
    }

    /// `body`, with how fresh it is if a cluster answered it.
    pub(crate) fn maybe(body: T, freshness: Option<Freshness>) -> Self {
        match freshness {
            None => Self::local(body),
            Some(f) => Self::of(body, f),
        }
    }

    pub(crate) fn of(body: T, freshness: Freshness) -> Self {
        Self {
            body,
            cluster: Some(FreshnessBody {
                partitions: freshness.partitions,
                partitions_answered: freshness.answered,
                applied_sequence: freshness.applied_sequence,
                pending_events: freshness.pending,
            }),
        }
    }
}

/// How fresh a cluster's answer is.
#[derive(Debug, Serialize)]
pub struct FreshnessBody {
    /// The cluster's partitions.
    pub partitions: u32,
    /// Partitions whose owners answered (all of them, or the answer is a
    /// 503 `cluster_unavailable`; 1 for a page's count).
    pub partitions_answered: u32,
    /// The highest stream sequence those owners had applied.
    pub applied_sequence: u64,
    /// Events of those partitions in the stream, not applied yet.
    pub pending_events: u64,
}

/// The answer of `GET /distinct?site=`.
#[derive(Debug, Serialize)]
pub struct SiteDistinctBody {
    /// The site: the host it names, as compared (`tracker_core::site_name`).
    pub site: String,
    /// Distinct visitors of all its pages together (a union).
    pub distinct_visitors: u64,
    /// Whether the count is exact rather than an estimate.
    pub exact: bool,
    /// For an estimate, its relative standard error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<f64>,
}

/// `GET /distinct?url=<url>`: an unknown page has 0 visitors; any
/// spelling of a page's URL counts the same page. `GET
/// /distinct?site=<host>`: the distinct visitors of every page of that
/// host together (a visitor of several pages counts once).
pub async fn distinct(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, AppError> {
    let query = request.uri().query().unwrap_or("");
    let store = state.store()?;
    if let Some(window) = Window::of(query, store.tracker())? {
        return Ok(Json(ranges::distinct(store, query, window).await?).into_response());
    }
    match (param(query, "url")?, optional_param(query, "site")?) {
        (Some(url), None) => Ok(match store.cluster() {
            None => {
                let (page, distinct) = store.tracker().distinct_of_page(&url)?;
                Json(Fresh::local(DistinctBody::new(page, distinct))).into_response()
            }
            Some(node) => {
                let (page, distinct, freshness) = node.distinct(&url).await?;
                Json(Fresh::of(
                    DistinctBody::new(page.into(), distinct),
                    freshness,
                ))
                .into_response()
            }
        }),
        (None, Some(site)) => {
            // Checks the name even in a cluster (the gate holds no pages).
            let site = tracker_core::site_name(&site)?;
            let mut distinct = store.tracker().site_distinct(&site)?;
            let mut freshness = None;
            if let Some(node) = store.cluster() {
                let (merged, fresh) = node.site_distinct(&site).await?;
                (distinct, freshness) = (merged, Some(fresh));
            }
            let body = SiteDistinctBody {
                site,
                distinct_visitors: distinct.visitors,
                exact: distinct.exact,
                error: distinct.relative_error,
            };
            Ok(Json(Fresh::maybe(body, freshness)).into_response())
        }
        (Some(_), Some(_)) => Err(AppError::InvalidQuery(
            "give `url` or `site`, not both".into(),
        )),
        (None, None) => Err(AppError::InvalidQuery(
            "the `url` or `site` parameter is required".into(),
        )),
    }
}

/// `GET /top?limit=N[&site=HOST][&from=&till=]`: the N pages with most
/// distinct visitors, of every site or of one, all-time (or in the TTL
/// window) or in a range.
pub async fn top(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Fresh<TopBody<'static>>>, AppError> {
    let query = request.uri().query().unwrap_or("");
    let limit = match optional_param(query, "limit")? {
        None => DEFAULT_TOP,
        Some(raw) => raw
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n <= MAX_TOP)
            .ok_or_else(|| {
                AppError::InvalidQuery(
                    format!("`limit` must be a whole number from 0 to {MAX_TOP}").into(),
                )
            })?,
    };
    let store = state.store()?;
    let site = optional_param(query, "site")?;
    if let Some(window) = Window::of(query, store.tracker())? {
        return Ok(Json(
            ranges::top(store, limit, site.as_deref(), window).await?,
        ));
    }
    let tracker = store.tracker();
    let mut rows = match &site {
        None => tracker.top(limit),
        Some(site) => tracker.top_of_site(limit, site)?,
    };
    let mut freshness = None;
    if let Some(node) = store.cluster() {
        let (merged, fresh) = node.top(limit, site.as_deref()).await?;
        (rows, freshness) = (merged, Some(fresh));
    }
    let pages = rows
        .into_iter()
        .map(|row| DistinctBody::new(row.url.into(), row.distinct))
        .collect();
    let body = TopBody { pages, range: None };
    Ok(Json(Fresh::maybe(body, freshness)))
}

/// The answer of `GET /stats`. New core figures become new fields.
#[derive(Debug, Serialize)]
pub struct StatsBody {
    /// Pages tracked.
    pub pages: u64,
    /// Distinct (page, visitor) pairs held.
    pub pairs: u64,
    /// Bytes held, as accounted by the tracker.
    pub bytes: u64,
    /// Lock stripes.
    pub stripes: u64,
    /// The memory budget in bytes, or null for none.
    pub max_bytes: Option<u64>,
    /// Pages whose count is an estimate from a sketch.
    pub sketched_pages: u64,
    /// Pages counted exactly.
    pub exact_pages: u64,
    /// Visitors of the sketched pages, as their sketches estimate them.
    pub sketched_visitors: u64,
    /// How much of the data is exact: the share of the held visitors of
    /// pages counted exactly, 0 to 1 (see `Stats::exact_share`).
    pub exact_share: f64,
    /// Pages evicted to stay within the budget, since start.
    pub evictions: u64,
    /// Records refused for lack of memory, since start.
    pub rejections: u64,
    /// (page, visitor) pairs expired by the TTL, since start.
    pub expirations: u64,
    /// Pages removed because none of their visitors was live, since start.
    pub expired_pages: u64,
    /// Events ignored because they were older than the TTL, since start.
    pub stale_events: u64,
    /// Browser events dropped as bots', by reason (`crawler`,
    /// `http_client`, `headless`, `automation`, `no_user_agent`,
    /// `client_flag`), since start.
    pub dropped_events: BTreeMap<String, u64>,
    /// Events that are not page views (Plausible custom events and
    /// `engagement`, GoatCounter `e=true`), by name, since start.
    pub custom_events: BTreeMap<String, u64>,
    /// The width of the time buckets ranges are answered in, in seconds
    /// (`--bucket`).
    pub bucket_seconds: u64,
    /// How long buckets are kept, in seconds, or null for ever
    /// (`--retention`).
    pub retention_seconds: Option<u64>,
    /// The most points a `GET /series` answer may have (`--max-points`).
    pub max_points: usize,
    /// The data directory's log and snapshots, or null in memory.
    pub persistence: Option<PersistenceBody>,
    /// With `--nats`: this node and the partitions it owns; the figures
    /// above are then the whole cluster's: summed over partitions, and
    /// `dropped_events` and `custom_events` (events that stop at the node
    /// they reach) over this node and every node owning a partition, each
    /// since it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStatsBody>,
}

/// The `cluster` part of `GET /stats`.
#[derive(Debug, Serialize)]
pub struct ClusterStatsBody {
    /// This node's id.
    pub node_id: String,
    /// The partitions this node owns.
    pub owned_partitions: Vec<u32>,
    /// Whether they have applied what the stream held when taken.
    pub caught_up: bool,
    /// How fresh the cluster-wide figures are.
    pub freshness: FreshnessBody,
}

/// The `persistence` part of `GET /stats`.
#[derive(Debug, Serialize)]
pub struct PersistenceBody {
    /// The data directory.
    pub data_dir: String,
    /// `always`, `interval` or `off`.
    pub fsync: &'static str,
    /// Under `interval`, the longest time between syncs, in ms.
    pub fsync_interval_ms: Option<u64>,
    /// The log position the next event gets.
    pub log_end: u64,
    /// Log bytes written after the newest snapshot: what a restart replays.
    pub log_bytes_since_snapshot: u64,
    /// The newest snapshot written or loaded.
    pub last_snapshot: Option<SnapshotBody>,
    /// Snapshots written since start.
    pub snapshots_written: u64,
    /// Snapshots that failed since start.
    pub snapshot_failures: u64,
    /// What start-up recovery found.
    pub recovery: RecoveryBody,
}

/// A snapshot, in `GET /stats`.
#[derive(Debug, Serialize)]
pub struct SnapshotBody {
    /// The log position it covers.
    pub covers: u64,
    /// When it was written or loaded, in ms since the Unix epoch.
    pub at_unix_ms: u64,
    /// Payload bytes (0 for one loaded at start).
    pub payload_bytes: u64,
    /// Time taken to write it, in ms.
    pub took_ms: f64,
}

/// Start-up recovery, in `GET /stats`.
#[derive(Debug, Serialize)]
pub struct RecoveryBody {
    /// The snapshot file loaded, if any.
    pub snapshot: Option<String>,
    /// Log events replayed after it.
    pub replayed_events: u64,
    /// Replayed events the tracker refused.
    pub refused_events: u64,
    /// Bytes of torn log tail cut off.
    pub torn_tail_bytes: u64,
    /// Bytes of zeros written ahead of the log's frames, cut off.
    pub zero_tail_bytes: u64,
    /// Bytes of damaged log dropped under `--salvage-log`.
    pub salvaged_bytes: u64,
    /// How long recovery took, in ms.
    pub took_ms: f64,
}

impl PersistenceBody {
    fn new(durable: &DurableTracker, recovered: &Recovered) -> Self {
        let status = durable.status();
        let (fsync, fsync_interval_ms) = match status.sync {
            FsyncPolicy::Always => ("always", None),
            FsyncPolicy::Interval(every) => ("interval", Some(every.as_millis() as u64)),
            FsyncPolicy::Off => ("off", None),
        };
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        PersistenceBody {
            data_dir: status.dir.display().to_string(),
            fsync,
            fsync_interval_ms,
            log_end: status.log_end.0,
            log_bytes_since_snapshot: status.log_bytes_since_snapshot,
            last_snapshot: status.last_snapshot.map(|s| SnapshotBody {
                covers: s.covers.0,
                at_unix_ms: s
                    .at
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                payload_bytes: s.payload_bytes,
                took_ms: ms(s.took),
            }),
            snapshots_written: status.snapshots_written,
            snapshot_failures: status.snapshot_failures,
            recovery: RecoveryBody {
                snapshot: recovered.snapshot.as_ref().map(|p| p.display().to_string()),
                replayed_events: recovered.replayed,
                refused_events: recovered.refused,
                torn_tail_bytes: recovered.torn_tail_bytes,
                zero_tail_bytes: recovered.zero_tail_bytes,
                salvaged_bytes: recovered.salvaged_bytes,
                took_ms: ms(recovered.took),
            },
        }
    }
}

/// `GET /stats`: what the tracker holds, and with `--data-dir` the state
/// of its log and snapshots.
pub async fn stats(State(state): State<AppState>) -> Result<Json<StatsBody>, AppError> {
    let store = state.store()?;
    let bucketing = store.tracker().bucketing();
    // A cluster's figures, or this tracker's and this service's own.
    let (stats, arrivals, cluster) = match store.cluster() {
        Some(node) => {
            let (stats, arrivals, freshness) = node.stats().await?;
            let status = node.status();
            let cluster = ClusterStatsBody {
                node_id: status.node_id,
                owned_partitions: status.owned,
                caught_up: status.caught_up,
                freshness: Fresh::of((), freshness).cluster.expect("set by `of`"),
            };
            (stats, arrivals, Some(cluster))
        }
        None => (store.tracker().stats(), state.metrics.arrivals(), None),
    };
    Ok(Json(StatsBody {
        pages: stats.pages,
        pairs: stats.pairs,
        bytes: stats.bytes,
        stripes: stats.stripes,
        max_bytes: stats.max_bytes,
        sketched_pages: stats.sketched_pages,
        exact_pages: stats.exact_pages,
        sketched_visitors: stats.sketched_visitors,
        exact_share: stats.exact_share(),
        evictions: stats.evictions,
        rejections: stats.rejections,
        expirations: stats.expirations,
        expired_pages: stats.expired_pages,
        stale_events: stats.stale_events,
        dropped_events: arrivals.dropped,
        custom_events: arrivals.custom,
        bucket_seconds: bucketing.width().as_secs(),
        retention_seconds: bucketing.retention().map(|r| r.as_secs()),
        max_points: bucketing.point_limit(),
        persistence: store
            .durable()
            .map(|(durable, recovered)| PersistenceBody::new(durable, recovered)),
        cluster,
    }))
}

/// The value of parameter `name` in a URL query string, decoded as
/// `application/x-www-form-urlencoded` (`+` is a space). Only the first
/// occurrence counts. A value that does not decode to UTF-8 is an error
/// rather than being silently replaced, which would count a different page.
pub fn param<'q>(query: &'q str, name: &str) -> Result<Option<Cow<'q, str>>, AppError> {
    let [raw] = raw_params(query, [name]);
    decode_param(name, raw)
}

/// [`param`] of an optional parameter: given empty or blank (`from=`, as
/// a form's empty field sends it, or SPEC.md's `?limit=&site=&from=&till=`
/// read literally) it is absent, not a bad value. (`url` is never
/// optional: an empty one is refused.)
pub(crate) fn optional_param<'q>(
    query: &'q str,
    name: &str,
) -> Result<Option<Cow<'q, str>>, AppError> {
    Ok(given(param(query, name)?))
}

/// An optional parameter's decoded value, `None` when it is empty or
/// blank (see [`optional_param`]).
pub(crate) fn given(value: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    value.filter(|value| !value.trim().is_empty())
}

/// [`param`] of a value [`raw_params`] found.
pub(crate) fn decode_param<'q>(
    name: &str,
    raw: Option<&'q str>,
) -> Result<Option<Cow<'q, str>>, AppError> {
    let Some(raw) = raw else { return Ok(None) };
    decode(raw).map(Some).map_err(|_| not_utf8(name))
}

/// The error of parameter `name` that does not decode to UTF-8.
pub(crate) fn not_utf8(name: &str) -> AppError {
    if name == "url" {
        AppError::Tracker(TrackerError::InvalidUtf8 { field: Field::Url })
    } else {
        AppError::InvalidQuery(format!("`{name}` is not valid UTF-8").into())
    }
}

/// The raw (undecoded) values of `names` in one pass over `query`: the
/// first occurrence of each (a key given without `=` has the value `""`).
/// `/count` looks up three names per request; a byte loop is cheaper
/// there than `split` on each lookup.
pub(crate) fn raw_params<'q, const N: usize>(
    query: &'q str,
    names: [&str; N],
) -> [Option<&'q str>; N] {
    let mut found = [None; N];
    for (key, value) in pairs(query) {
        let Some(key) = key_of(key) else { continue };
        for (name, slot) in names.iter().zip(&mut found) {
            // The first bytes compared inline before the call to `bcmp`
            // that comparing `str`s of one length makes (`/count`'s keys
            // are one byte each).
            if slot.is_none() && key.as_bytes().first() == name.as_bytes().first() && *key == **name
            {
                *slot = Some(value.unwrap_or(""));
            }
        }
    }
    found
}

/// The first `name` of `query` as given: `None` if absent, `Some(None)`
/// without `=` (`?ack`), else its raw value (`?ack=` gives `Some(Some(""))`).
pub(crate) fn raw_param_as_given<'q>(query: &'q str, name: &str) -> Option<Option<&'q str>> {
    pairs(query)
        .find(|&(key, _)| key_of(key).is_some_and(|key| key == name))
        .map(|(_, value)| value)
}

/// The pairs of `query` in order, undecoded: the key, and the value after
/// its `=` (`None` for a key given without one).
fn pairs(query: &str) -> Pairs<'_> {
    Pairs { rest: query }
}

/// The iterator of [`pairs`].
struct Pairs<'q> {
    rest: &'q str,
}

impl<'q> Iterator for Pairs<'q> {
    type Item = (&'q str, Option<&'q str>);

    // Always: left to `#[inline]` it stayed a call per pair, ~80 more
    // instructions a `/count` and ~140 a `/distinct` (callgrind, in
    // docs/BENCHMARKS.md's edges7 section); inlined, as many as the loop
    // this replaced.
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        // `&` and `=` are ASCII: slicing at them stays on char boundaries.
        let rest = self.rest;
        let end = rest.bytes().position(|b| b == b'&').unwrap_or(rest.len());
        let pair = &rest[..end];
        self.rest = rest.get(end + 1..).unwrap_or("");
        Some(match pair.bytes().position(|b| b == b'=') {
            Some(i) => (&pair[..i], Some(&pair[i + 1..])),
            None => (pair, None),
        })
    }
}

/// A raw key decoded; `None` if it is not UTF-8. A key without escapes
/// is itself (and needs no decoding, the common case).
#[inline]
fn key_of(raw: &str) -> Option<Cow<'_, str>> {
    if raw.bytes().any(|b| b == b'%' || b == b'+') {
        decode(raw).ok()
    } else {
        Some(Cow::Borrowed(raw))
    }
}

pub(crate) fn decode(raw: &str) -> Result<Cow<'_, str>, std::str::Utf8Error> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(raw)); // already text: no escape to decode
    }
    let mut decoded = Vec::with_capacity(raw.len());
    decode_into(raw, &mut decoded);
    String::from_utf8(decoded)
        .map(Cow::Owned)
        .map_err(|e| e.utf8_error())
}

/// `raw` decoded as `application/x-www-form-urlencoded` (`+` a space,
/// `%XX` a byte; a `%` without two hex digits stays as it is), appended
/// to `out`. A decoded value is never longer than `raw`: reserving
/// `raw.len()` is enough.
///
/// A byte loop rather than `percent-encoding`'s `percent_decode` over the
/// pieces between `+`s: the split and the crate's iterator cost ~460
/// instructions on `/count`'s `p=%2Fpage%2F123`, the loop about a third
/// of that; a proptest holds the two to the same bytes. A `+` is not a
/// hex digit, so no escape spans one and `%2B` stays a `+`.
pub(crate) fn decode_into(raw: &str, out: &mut Vec<u8>) {
    fn hex(b: Option<&u8>) -> Option<u8> {
        match b? {
            b @ b'0'..=b'9' => Some(b - b'0'),
            b @ b'a'..=b'f' => Some(b - b'a' + 10),
            b @ b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = raw.as_bytes();
    out.reserve(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        out.push(match b {
            b'+' => b' ',
            b'%' => match (hex(bytes.get(i)), hex(bytes.get(i + 1))) {
                (Some(high), Some(low)) => {
                    i += 2;
                    high << 4 | low
                }
                _ => b'%',
            },
            b => b,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The byte loop decodes as `percent-encoding` does over the
        /// pieces between `+`s.
        #[test]
        fn decode_into_decodes_like_percent_encoding(raw in "[a%+2BfFg/\u{e9}]{0,24}") {
            let mut expected = Vec::new();
            for (i, piece) in raw.split('+').enumerate() {
                if i > 0 {
                    expected.push(b' ');
                }
                expected.extend(percent_encoding::percent_decode(piece.as_bytes()));
            }
            let mut decoded = b"kept".to_vec();
            decode_into(&raw, &mut decoded);
            prop_assert_eq!(&decoded[..4], b"kept");
            prop_assert_eq!(&decoded[4..], &expected[..]);
        }

        /// The scan finds what splitting on `&` and then on the first `=`
        /// finds (keys decoded), for every name.
        #[test]
        fn raw_params_split_like_the_plain_reading(
            query in "[a-c=&%+2-4]{0,24}",
        ) {
            // Names are never empty (an empty pair is no parameter).
            let names = ["a", "b", "c", "ab", " "];
            let mut expected = [None; 5];
            for pair in query.split('&') {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let Ok(key) = decode(key) else { continue };
                for (name, slot) in names.iter().zip(&mut expected) {
                    if slot.is_none() && *key == **name {
                        *slot = Some(value);
                    }
                }
            }
            prop_assert_eq!(raw_params(&query, names), expected);
        }
    }

    #[test]
    fn params_decode_like_forms() {
        let p = |q, n| param(q, n).unwrap().map(Cow::into_owned);
        assert_eq!(p("url=/a&limit=3", "limit").as_deref(), Some("3"));
        assert_eq!(p("url=%2Fa+b", "url").as_deref(), Some("/a b"));
        assert_eq!(p("u%72l=x", "url").as_deref(), Some("x"));
        assert_eq!(p("url", "url").as_deref(), Some(""));
        assert_eq!(p("url=1&url=2", "url").as_deref(), Some("1"));
        assert_eq!(p("other=1", "url"), None);
        assert_eq!(p("", "url"), None);
        assert_eq!(param("url=%FF", "url").unwrap_err().code(), "invalid_utf8");
    }
}
