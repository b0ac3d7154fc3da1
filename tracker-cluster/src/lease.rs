//! Partition leases: which partitions a node renews, takes and gives
//! back in one round, decided from what the KV bucket holds.
//!
//! A lease is the KV entry `lease.<partition>` whose value is the holder's
//! node id (empty: released). It is live while its last write is younger
//! than the lease TTL, measured on the NATS server's clock (every entry
//! carries the server's time of its write, and "now" is the time of this
//! node's own heartbeat written the same round), so node clocks never
//! matter. Every write is a compare-and-swap on the entry's revision, so
//! of two nodes racing for a lease exactly one gets it, and a holder that
//! was paused past its TTL learns on its next renewal that it lost it.
//!
//! Rebalancing: each node aims at `ceil(partitions / live nodes)` leases
//! ([`live_nodes`]: a node counted twice would shrink every share, and
//! owners would give partitions up with no node joining).
//! A node below its share takes free or expired leases (starting at an
//! offset derived from its id, so that joining nodes do not all race for
//! the same ones); a node above it releases its extras, after a final
//! snapshot, so a joining node gets its share within a round or two.

use std::collections::BTreeSet;

/// One lease as read this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// The holder's node id; `None` when absent or released.
    pub holder: Option<String>,
    /// The entry's revision (0: no entry yet).
    pub revision: u64,
    /// The server's time of the entry's last write, unix milliseconds.
    pub written_ms: i64,
}

/// What a node does with one lease this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Write our id again (compare-and-swap on `revision`).
    Renew {
        /// The partition.
        partition: u32,
        /// The revision read this round.
        revision: u64,
    },
    /// Take a free or expired lease (create when `revision` is 0).
    Acquire {
        /// The partition.
        partition: u32,
        /// The revision read this round (0: no entry yet).
        revision: u64,
    },
    /// Stop applying, snapshot, then write an empty holder.
    Release {
        /// The partition.
        partition: u32,
        /// The revision read this round.
        revision: u64,
    },
}

/// The actions of node `me` this round: `leases[p]` is partition `p`'s
/// lease, `live_nodes` the nodes whose heartbeat is younger than the TTL
/// (`me` included), `now_ms` and `ttl_ms` on the server's clock.
///
/// ```
/// use tracker_cluster::lease::{plan, Action, LeaseView};
///
/// let free = LeaseView { holder: None, revision: 0, written_ms: 0 };
/// let actions = plan("a", 10_000, 3_000, 2, &[free.clone(), free.clone(), free]);
/// // 3 partitions, 2 nodes: a share of 2.
/// assert_eq!(actions.iter().filter(|a| matches!(a, Action::Acquire { .. })).count(), 2);
/// ```
pub fn plan(
    me: &str,
    now_ms: i64,
    ttl_ms: i64,
    live_nodes: usize,
    leases: &[LeaseView],
) -> Vec<Action> {
    let partitions = leases.len();
    let share = partitions.div_ceil(live_nodes.max(1));
    let mut actions = Vec::new();
    let mine: Vec<u32> = (0..partitions as u32)
        .filter(|&p| leases[p as usize].holder.as_deref() == Some(me))
        .collect();
    for (i, &partition) in mine.iter().enumerate() {
        let revision = leases[partition as usize].revision;
        actions.push(if i < share {
            Action::Renew {
                partition,
                revision,
            }
        } else {
            Action::Release {
                partition,
                revision,
            }
        });
    }
    let wanted = share.saturating_sub(mine.len());
    let start = offset(me, partitions);
    let free = (0..partitions)
        .map(|i| ((start + i) % partitions) as u32)
        .filter(|&p| {
            let lease = &leases[p as usize];
            match &lease.holder {
                None => true,
                Some(holder) => holder != me && lease.written_ms + ttl_ms < now_ms,
            }
        })
        .take(wanted);
    actions.extend(free.map(|partition| Action::Acquire {
        partition,
        revision: leases[partition as usize].revision,
    }));
    actions
}

/// The heartbeat keys (`node.<id>`) of a listing of the bucket's keys,
/// each once: the listing is a consumer that also delivers the writes
/// made while it runs, so a heartbeat rewritten meanwhile is listed
/// again, and each is read once.
///
/// ```
/// use tracker_cluster::lease::heartbeat_keys;
///
/// let listed = ["lease.0", "node.a", "node.b", "node.a"].map(String::from);
/// assert_eq!(heartbeat_keys(listed).len(), 2);
/// ```
pub fn heartbeat_keys(listed: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    listed
        .into_iter()
        .filter(|key| key.starts_with("node."))
        .collect()
}

/// The live nodes, this one included (at least 1): the distinct keys
/// among `heartbeats` (server time of the write, `node.<id>` key) written
/// within `ttl_ms` of `now_ms` (distinct, as a key listed twice is a node
/// once: see [`heartbeat_keys`]).
///
/// ```
/// use tracker_cluster::lease::live_nodes;
///
/// let beats = [(9_000, "node.a"), (9_500, "node.b"), (9_900, "node.a"), (1_000, "node.c")];
/// assert_eq!(live_nodes(10_000, 3_000, beats.map(|(t, k)| (t, k.to_string()))), 2);
/// ```
pub fn live_nodes(
    now_ms: i64,
    ttl_ms: i64,
    heartbeats: impl IntoIterator<Item = (i64, String)>,
) -> usize {
    let live: BTreeSet<String> = heartbeats
        .into_iter()
        .filter(|&(written_ms, _)| written_ms + ttl_ms >= now_ms)
        .map(|(_, key)| key)
        .collect();
    live.len().max(1)
}

/// Where node `me` starts looking for free leases.
fn offset(me: &str, partitions: usize) -> usize {
    let hash = me
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    (hash % partitions.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(by: &str, written_ms: i64) -> LeaseView {
        LeaseView {
            holder: Some(by.into()),
            revision: 7,
            written_ms,
        }
    }

    #[test]
    fn renews_own_and_takes_expired() {
        let leases = [held("a", 9_000), held("b", 1_000), held("b", 9_500)];
        let actions = plan("a", 10_000, 3_000, 2, &leases);
        assert_eq!(
            actions,
            [
                Action::Renew {
                    partition: 0,
                    revision: 7
                },
                Action::Acquire {
                    partition: 1,
                    revision: 7
                }
            ]
        );
    }

    #[test]
    fn more_nodes_than_partitions_take_one_each_at_most() {
        let free = LeaseView {
            holder: None,
            revision: 0,
            written_ms: 0,
        };
        let actions = plan("c", 10_000, 3_000, 5, &[free.clone(), free.clone(), free]);
        assert_eq!(actions.len(), 1);
        assert!(matches!(actions[0], Action::Acquire { revision: 0, .. }));
    }

    #[test]
    fn a_heartbeat_listed_twice_is_one_node() {
        let beats = |keys: &[&str]| {
            keys.iter()
                .map(|k| (9_000, k.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(live_nodes(10_000, 3_000, beats(&["node.a", "node.b"])), 2);
        let relisted = beats(&["node.a", "node.b", "node.a", "node.b", "node.a"]);
        assert_eq!(live_nodes(10_000, 3_000, relisted), 2);
        assert_eq!(live_nodes(10_000, 3_000, []), 1, "this node at least");
    }

    #[test]
    fn a_heartbeat_listed_twice_is_read_once() {
        let listed = [
            "meta.partitions",
            "node.a",
            "lease.3",
            "node.b",
            "node.a",
            "node.a",
        ];
        let keys = heartbeat_keys(listed.map(String::from));
        assert_eq!(keys.into_iter().collect::<Vec<_>>(), ["node.a", "node.b"]);
    }

    #[test]
    fn releases_extras_when_a_node_joins() {
        let leases: Vec<_> = (0..4).map(|_| held("a", 9_000)).collect();
        let actions = plan("a", 10_000, 3_000, 2, &leases);
        let released = actions
            .iter()
            .filter(|a| matches!(a, Action::Release { .. }))
            .count();
        assert_eq!(released, 2);
        let joining = plan("b", 10_000, 3_000, 2, &leases);
        assert!(joining.is_empty(), "live leases are never taken");
    }
}
