//! What goes over NATS: the event messages of the stream (a public,
//! versioned format), the partition of a page, and the query messages
//! between nodes (internal, same build).

use crate::arrivals::Arrivals;
use serde::{Deserialize, Serialize};
use tracker_core::{Distinct, PageCount, PageList, Stats, TrackerError};

/// The version of [`EventV1`]; a message of another version is skipped by
/// this build (and logged), never misread.
pub const EVENT_VERSION: u32 = 1;

/// One event on the stream, as JSON (subject
/// `tracker.<cluster>.events.<partition>`).
///
/// ```json
/// {"v":1,"visitor_hash":"9f2c41d0a3b5e677","url":"https://example.com/pricing","time_ms":1764460800000}
/// ```
///
/// - `v`: [`EVENT_VERSION`].
/// - `visitor_hash`: the visitor's keyed 64-bit hash, 16 lowercase hex
///   digits (the key is the cluster's, in its KV bucket under
///   `meta.hash_key`): visitor ids never reach the stream.
/// - `url`: the page's canonical URL (the node that received the event
///   canonicalised and validated it).
/// - `time_ms`: the event's time, unix milliseconds (the one the client
///   sent, else the receiving node's clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventV1 {
    /// [`EVENT_VERSION`].
    pub v: u32,
    /// The keyed visitor hash, 16 hex digits.
    pub visitor_hash: String,
    /// The canonical page URL.
    pub url: String,
    /// Unix milliseconds.
    pub time_ms: i64,
}

impl EventV1 {
    /// The event of `hash` visiting the canonical `url` at `time_ms`.
    pub fn new(hash: u64, url: String, time_ms: i64) -> Self {
        Self {
            v: EVENT_VERSION,
            visitor_hash: format!("{hash:016x}"),
            url,
            time_ms,
        }
    }

    /// The visitor hash, if it is 16 hex digits.
    pub fn hash(&self) -> Option<u64> {
        (self.visitor_hash.len() == 16)
            .then(|| u64::from_str_radix(&self.visitor_hash, 16).ok())
            .flatten()
    }
}

/// The partition of a page: FNV-1a (64-bit) of its canonical URL's host
/// and path (scheme, port and query left out, so `http://` and
/// `https://` pages of one path, and every query of it, share a
/// partition), modulo `partitions`.
/// Written out here rather than taken from a crate because it is part of
/// the stream's public format: other services compute it from this
/// definition, and it must never change with a dependency.
///
/// ```
/// use tracker_cluster::partition_of;
///
/// let p = partition_of("https://example.com/pricing", 64);
/// assert!(p < 64);
/// assert_eq!(p, partition_of("http://example.com:8080/pricing", 64));
/// assert_eq!(p, partition_of("https://example.com/pricing?plan=pro", 64));
/// ```
pub fn partition_of(canonical_url: &str, partitions: u32) -> u32 {
    // A canonical URL has no fragment: the query is all there is past the path.
    let canonical_url = canonical_url.split('?').next().unwrap_or(canonical_url);
    let key = match canonical_url.find("://") {
        Some(i) => strip_port(&canonical_url[i + 3..]),
        None => canonical_url.to_string(),
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key.as_bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(partitions.max(1))) as u32
}

/// `host[:port]rest` without the port.
fn strip_port(authority_and_rest: &str) -> String {
    let end = authority_and_rest
        .find(['/', '?'])
        .unwrap_or(authority_and_rest.len());
    let (authority, rest) = authority_and_rest.split_at(end);
    let host = match authority.rfind(':') {
        Some(colon) if !authority[colon..].contains(']') => &authority[..colon],
        _ => authority,
    };
    format!("{host}{rest}")
}

/// A question one node asks the owners.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Ask {
    /// A page's count (to its partition's owner).
    Distinct { url: String },
    /// A site's visitors as a partial (to every owner), exact up to
    /// `share` hashes (`None`: the partition's share of a gather, see
    /// `node::share_of`).
    Site {
        site: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        share: Option<u64>,
    },
    /// The top pages, of a site or of all.
    Top { k: usize, site: Option<String> },
    /// A page of the listing.
    Pages {
        site: Option<String>,
        prefix: Option<String>,
        cursor: Option<String>,
        limit: usize,
    },
    /// Statistics.
    Stats,
    /// A page's count over a range (to its partition's owner); times in
    /// milliseconds, open ends as `None`.
    DistinctBetween {
        url: String,
        from: Option<u64>,
        till: Option<u64>,
    },
    /// A page's series (to its partition's owner); the step in seconds.
    Series {
        url: String,
        from: Option<u64>,
        till: Option<u64>,
        step: u64,
    },
    /// A site's visitors over a range, or per step of a series, as one
    /// partial per point (to every owner).
    SiteBetween {
        site: String,
        from: Option<u64>,
        till: Option<u64>,
        step: Option<u64>,
        /// As [`Ask::Site`]'s, for all the points.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        share: Option<u64>,
    },
    /// The top pages over a range, of a site or of all.
    TopBetween {
        k: usize,
        site: Option<String>,
        from: Option<u64>,
        till: Option<u64>,
    },
}

/// One partition's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Answer {
    pub partition: u32,
    /// The last stream sequence applied to the partition.
    pub applied: u64,
    /// Messages of the partition known to be on the stream, not applied.
    pub pending: u64,
    pub body: Result<Body, WireError>,
    /// With an answer to [`Ask::Stats`]: the answering node's id and its
    /// counts of events that stopped there (see `arrivals`); absent from
    /// other answers and from nodes of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrivals: Option<(String, Arrivals)>,
}

/// What an answer holds, per [`Ask`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Body {
    Distinct {
        url: String,
        count: WireDistinct,
    },
    Site(WirePartial),
    Top(Vec<(String, WireDistinct)>),
    Pages(Vec<(String, WireDistinct)>, Option<String>),
    Stats(WireStats),
    /// Counts over ranges: `(from_ms, till_ms, count)` per point.
    Points(Vec<(u64, u64, WireDistinct)>),
    /// A site's partial per point: `(from_ms, till_ms, partial)`.
    SitePoints(Vec<(u64, u64, WirePartial)>),
    /// Top pages over a range, and the range the counts cover.
    TopBetween(Vec<(String, WireDistinct)>, u64, u64),
}

/// A tracker error as the owner reported it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireError(pub String);

/// [`Distinct`] on the wire.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct WireDistinct(pub u64, pub bool, pub Option<f64>);

impl From<Distinct> for WireDistinct {
    fn from(d: Distinct) -> Self {
        Self(d.visitors, d.exact, d.relative_error)
    }
}

impl From<WireDistinct> for Distinct {
    fn from(d: WireDistinct) -> Self {
        Distinct {
            visitors: d.0,
            exact: d.1,
            relative_error: d.2,
        }
    }
}

/// A site partial on the wire: hashes, or a sketch's stable bytes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct WirePartial {
    pub hashes: Vec<u64>,
    pub sketch: Option<Vec<u8>>,
    /// The exact hashes the partition held when it sent a sketch of
    /// them instead, being past its share: asked with a larger share it
    /// would answer exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<u64>,
}

/// [`Stats`] on the wire (its fields in order).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct WireStats([u64; 12], Option<u64>);

/// The counters of [`Stats`] in their wire order, listed once for both
/// directions so that a field cannot be sent and not read back.
fn counters(s: &mut Stats) -> [&mut u64; 12] {
    [
        &mut s.pages,
        &mut s.pairs,
        &mut s.bytes,
        &mut s.stripes,
        &mut s.evictions,
        &mut s.rejections,
        &mut s.sketched_pages,
        &mut s.expirations,
        &mut s.expired_pages,
        &mut s.stale_events,
        &mut s.exact_pages,
        &mut s.sketched_visitors,
    ]
}

impl From<&Stats> for WireStats {
    fn from(s: &Stats) -> Self {
        let mut copy = *s;
        Self(counters(&mut copy).map(|v| *v), s.max_bytes)
    }
}

impl From<WireStats> for Stats {
    fn from(w: WireStats) -> Self {
        // `Stats` is non-exhaustive: filled field by field from a default.
        let mut s = Stats::default();
        for (field, value) in counters(&mut s).into_iter().zip(w.0) {
            *field = value;
        }
        s.max_bytes = w.1;
        s
    }
}

pub(crate) fn rows(pages: Vec<PageCount>) -> Vec<(String, WireDistinct)> {
    pages
        .into_iter()
        .map(|p| (p.url, p.distinct.into()))
        .collect()
}

pub(crate) fn list(list: PageList) -> Body {
    Body::Pages(rows(list.pages), list.next_cursor)
}

impl From<TrackerError> for WireError {
    fn from(e: TrackerError) -> Self {
        Self(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_round_trip() {
        let e = EventV1::new(0x9f2c_41d0_a3b5_e677, "https://a.com/".into(), 5);
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"v":1,"visitor_hash":"9f2c41d0a3b5e677","url":"https://a.com/","time_ms":5}"#
        );
        let back: EventV1 = serde_json::from_str(&json).unwrap();
        assert_eq!(back.hash(), Some(0x9f2c_41d0_a3b5_e677));
    }

    #[test]
    fn stats_round_trip() {
        let tracker = tracker_core::Tracker::builder()
            .max_memory(1 << 20)
            .build()
            .unwrap();
        tracker.record("v", "https://a.com/").unwrap();
        let stats = tracker.stats();
        let wire: WireStats = (&stats).into();
        let json = serde_json::to_string(&wire).unwrap();
        let back: WireStats = serde_json::from_str(&json).unwrap();
        assert_eq!(Stats::from(back), stats);
    }

    /// A statistics answer carries its node's arrivals; one from a node
    /// of an earlier version, without them, still reads, and a reader
    /// that knows no such field passes over it (serde's default).
    #[test]
    fn answers_read_with_and_without_arrivals() {
        let mut arrivals = Arrivals::default();
        arrivals.custom.insert("signup".into(), 3);
        let answer = Answer {
            partition: 2,
            applied: 9,
            pending: 0,
            body: Ok(Body::Stats((&Stats::default()).into())),
            arrivals: Some(("n1".into(), arrivals.clone())),
        };
        let json = serde_json::to_value(&answer).unwrap();
        let back: Answer = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back.arrivals, Some(("n1".into(), arrivals)));
        // The answer as an earlier version declared it.
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Earlier {
            partition: u32,
            applied: u64,
            pending: u64,
            body: Result<Body, WireError>,
        }
        let earlier: Earlier = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(earlier.applied, 9);
        let mut older = json;
        older.as_object_mut().unwrap().remove("arrivals");
        let back: Answer = serde_json::from_value(older).unwrap();
        assert_eq!(back.arrivals, None);
        let plain = Answer {
            arrivals: None,
            ..back
        };
        let json = serde_json::to_value(&plain).unwrap();
        assert!(json.get("arrivals").is_none(), "{json}");
    }

    #[test]
    fn partitions_ignore_scheme_and_port() {
        assert_eq!(
            partition_of("https://[::1]:8443/x", 64),
            partition_of("http://[::1]/x", 64)
        );
        assert_ne!(
            partition_of("https://a.com/x", 1 << 20),
            partition_of("https://a.com/y", 1 << 20)
        );
        assert_eq!(partition_of("/path", 1), 0);
        assert_eq!(
            partition_of("https://a.com/x?q=1", 1 << 20),
            partition_of("https://a.com/x", 1 << 20)
        );
        assert_eq!(partition_of("/x?q=1", 1 << 20), partition_of("/x", 1 << 20));
    }
}
