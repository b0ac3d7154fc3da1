//! A cluster of trackers on NATS JetStream: every node ingests, owns some
//! partitions and answers any query; a node killed with `kill -9` loses
//! nothing acknowledged. The NATS pieces are used as built, never a
//! protocol of our own:
//!
//! - **The stream is the write-ahead log.** An event is validated,
//!   canonicalised and hashed by the node that receives it, then
//!   published to the stream `TRACKER_<cluster>` on subject
//!   `tracker.<cluster>.events.<partition>` ([`wire::EventV1`], JSON,
//!   versioned: a public interface other services may subscribe to). The
//!   partition is [`partition_of`] the canonical URL, over a partition
//!   count fixed when the cluster is created (default 64, kept in the
//!   KV bucket under `meta.partitions`).
//! - **Acknowledged** means JetStream acknowledged the publish: the event
//!   is stored by the stream (on `replicas` servers, file storage). From
//!   then on it is counted by whichever node owns its partition, whatever
//!   happens to the node that received it. Batches publish every event
//!   first and await the acknowledgements together.
//! - **Ownership** is a lease per partition in a KV bucket
//!   (`tracker_<cluster>`, keys `lease.<partition>`; see [`lease`]):
//!   compare-and-swap writes, server-side timestamps, renewed every third
//!   of the TTL (one for the cluster, kept under `meta.lease_ttl_ms`: each
//!   node judges the others' leases by its own), rebalanced to
//!   `ceil(partitions / live nodes)` each. A
//!   node that fails to renew, or whose lease round finds the lease
//!   held by another node, stops applying the partition at once; one
//!   whose applier ended while it held the lease (a panic) starts it
//!   again from its snapshot.
//! - **Applying**: the owner reads its partition through its own durable
//!   pull consumer (`p<partition>-<node id>`, filtered on the partition's
//!   subject; a new owner deletes the partition's other consumers) into
//!   one [`tracker_core::Tracker`] per partition. The consumer takes no
//!   acknowledgements (the snapshot is the checkpoint), so a delivery
//!   that never arrived is not sent again: the owner checks that each
//!   message's consumer sequence is the next, and at a gap starts the
//!   partition again from its snapshot. One tracker per
//!   partition, not one per node, because a partition is the unit that
//!   moves: it is snapshotted, dropped and restored alone, and a node's
//!   answers for it come from exactly the events of its subject. An
//!   event the owner refuses (unreadable, or refused by its tracker, as
//!   `memory_full` under the reject policy) is skipped, counted and
//!   warned about ([`refused`]). An event whose page key an earlier
//!   version spelled in a way today's rules write otherwise
//!   (`https://127.1/x`, now `https://127.0.0.1/x`), in the partition of
//!   the old spelling, is recorded there and published again respelled
//!   to the new spelling's partition, where queries for the page go;
//!   merged rankings and listings take a page two partitions hold from
//!   its own partition.
//! - **Snapshots** go to the object store `tracker_<cluster>_snapshots`
//!   (object `p<partition>`: magic `TRKPART1`, the stream sequence the
//!   state covers, then the tracker's snapshot payload), every
//!   `snapshot_every` when the partition changed and when it is released.
//!   A new owner restores it and replays from the next sequence (from
//!   the first if the snapshot covers more than the stream holds: the
//!   stream was deleted and made again). Replay is
//!   idempotent (recording a pair twice counts once), so at-least-once
//!   delivery, a stale snapshot, or two owners overlapping for a moment
//!   never count an event twice; and as each owner reads every event
//!   through its own consumer, neither snapshots a state that misses
//!   events the other read (owners sharing one consumer split its events
//!   between them).
//! - **Visitor-id salts** (for events a browser sent without a visitor,
//!   given a [`ClusterConfig::visitor_salts`]) are kept in the same KV
//!   bucket under `salt.<rotation>.<period>`, with the rotation under
//!   `meta.visitor_salt`: every node derives the same id for one browser,
//!   and a restarted node the same as before; only the previous, current
//!   and (shortly before its boundary) next salts exist. See [`salts`].
//! - **Settings that shape answers** (URL rules and limits, buckets,
//!   retention, TTL, the point limit) are the first node's, kept in the
//!   bucket under `meta.settings`; a node with others refuses to join,
//!   since it would count pages and cut ranges otherwise. See [`settings`].
//! - **Queries**: a page's count, over all time or a range, and its
//!   series go to its partition's owner by NATS request-reply
//!   (`tracker.<cluster>.q.<partition>`, whose only subscriber is the
//!   owner). Site counts and series, top pages (over all time or a range),
//!   listings and statistics are gathered from every node
//!   (`tracker.<cluster>.gather`) and merged: pages are disjoint across
//!   partitions, so rankings and listings merge by sorting, statistics by
//!   adding; a site's visitors, in a range or in each point of a series,
//!   are a union of partials ([`tracker_core::SitePartial`]: the exact
//!   hashes seen in the range up to the partition's share of
//!   [`node::GATHER_HASHES`] ([`node::share_of`]; a series' points share
//!   it), else a sketch (a sketched page's days, or all it holds), as
//!   distributed query engines merge partial aggregates; a site's
//!   count or series asks the partitions past their share again, with
//!   more, when all its hashes fit the gather). An answer
//!   larger than the NATS server's `max_payload` is sent in chunks the
//!   asker joins (see `chunked.rs`); snapshots go to the object store in
//!   chunks within it too. A range answer's range is the widest any
//!   partition covers. The gate checks
//!   a query (names, ranges, steps) before asking. Every answer carries
//!   its [`Freshness`]. A query waits for owners up to the query timeout
//!   ([`ClusterConfig::query_timeout`], the longest a crash takeover
//!   takes, from the lease TTL): partitions that have not answered a gather
//!   after [`node::ASK_AGAIN_AFTER`] are asked of their owners directly,
//!   and a partition with no owner is asked again (backing off up to
//!   [`node::ASK_AGAIN_EVERY`]) until one answers, so a partition
//!   changing owners within the timeout costs latency, not an error.
//!
//! **Failure modes.** A node dies: its leases expire after the TTL, the
//! others take its partitions (restore + replay); queries of those
//! partitions wait for the new owner, and answer
//! [`ClusterError::NoOwner`] / [`ClusterError::Incomplete`] only if it has
//! not started within the query timeout (a takeover that failed); their
//! events keep being acknowledged into the stream. A partition given up in a
//! rebalance (a node joined or left) is unowned until another node's next
//! lease round, at most a third of the TTL later: queries wait for it.
//! A new owner answers from the moment it starts, while it replays
//! (`pending` in the [`Freshness`]). A NATS server
//! restart (file storage) loses nothing acknowledged; clients reconnect.
//! Node clocks never matter for leases (the server's timestamps do); an
//! event's time is its own (`time` on `POST /events`, checked against the
//! receiving node's clock and the retention before it is published) or
//! else the receiving node's clock, and travels in the event (`time_ms`).
//! A snapshot that cannot be read fails the takeover (logged) and the
//! lease is given back, rather than starting the partition empty.
//! The stream keeps every event (limits retention, no age limit), so a
//! partition can always be rebuilt by replay from sequence 1; a
//! retention limit, if an operator adds one, must stay longer than the
//! snapshot interval.
//!
//! **Versions.** async-nats 0.51 against Debian 12's nats-server 2.9.10
//! (what CI installs): streams, publish acks, durable pull consumers and
//! the object store work through the client; the KV bucket's backing
//! stream is created by hand because the client's `create_key_value`
//! expects account-info fields 2.9 does not send.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod arrivals;
mod chunked;
pub mod lease;
pub mod node;
pub mod refused;
pub mod salts;
pub mod settings;
pub mod wire;

use std::fmt;

pub use node::{ClusterConfig, Node, NodeStatus, Published};
pub use wire::{EventV1, partition_of};

/// How fresh an answer is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Freshness {
    /// The cluster's partitions.
    pub partitions: u32,
    /// Partitions that answered.
    pub answered: u32,
    /// The highest stream sequence applied by the partitions that
    /// answered.
    pub applied_sequence: u64,
    /// Events of those partitions in the stream, not yet applied.
    pub pending: u64,
}

/// What can go wrong in a cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterError {
    /// The event or query was invalid.
    Tracker(tracker_core::TrackerError),
    /// Bad settings, or settings that disagree with the cluster's.
    Config(String),
    /// NATS refused or failed (connection, publish, stream).
    Nats(String),
    /// No node owns the partition right now (a takeover in progress).
    NoOwner {
        /// The partition.
        partition: u32,
    },
    /// Not every partition answered within the query timeout.
    Incomplete {
        /// Partitions that answered.
        answered: u32,
        /// All partitions.
        partitions: u32,
    },
    /// An owner answered with an error or something unreadable.
    Owner(String),
    /// A partition snapshot could not be read.
    Snapshot(String),
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tracker(e) => e.fmt(f),
            Self::Config(m) => write!(f, "cluster settings: {m}"),
            Self::Nats(m) => write!(f, "NATS: {m}"),
            Self::NoOwner { partition } => {
                write!(f, "partition {partition} has no owner right now")
            }
            Self::Incomplete {
                answered,
                partitions,
            } => write!(f, "{answered} of {partitions} partitions answered"),
            Self::Owner(m) => write!(f, "owner: {m}"),
            Self::Snapshot(m) => write!(f, "partition snapshot: {m}"),
        }
    }
}

impl std::error::Error for ClusterError {}

impl From<tracker_core::TrackerError> for ClusterError {
    fn from(e: tracker_core::TrackerError) -> Self {
        Self::Tracker(e)
    }
}
