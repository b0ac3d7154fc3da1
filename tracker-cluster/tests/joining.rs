//! Nodes started at the same moment against a new cluster, on a real
//! `nats-server`: each finds the stream and stores missing and creates
//! them, and every create but the first fails on the server (NATS 2.9
//! answers "subjects overlap with an existing stream"). Every node must
//! still join, with the stream and stores the winner made (CI once
//! failed a cluster test on this race). Under load the server also
//! sometimes never answers a node's first read of the new lease bucket;
//! the node asks again instead of failing its join.

use std::time::Duration;

use test_support::nats::Nats;
use tracker_cluster::{ClusterConfig, Node};

/// Nodes per race, and races (each on a new cluster name): one race
/// with two nodes loses it only sometimes.
const NODES: usize = 6;
const RACES: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_joining_a_new_cluster_at_once_all_join() {
    let Some(nats) = Nats::start() else {
        return;
    };
    for race in 0..RACES {
        let joins = (0..NODES).map(|i| {
            let mut config = ClusterConfig::new(nats.url(), format!("race{race}"));
            config.node_id = Some(format!("n{i}"));
            config.partitions = 8;
            config.lease_ttl = Duration::from_secs(2);
            tokio::spawn(Node::join(config))
        });
        let mut nodes = Vec::new();
        for (i, join) in joins.collect::<Vec<_>>().into_iter().enumerate() {
            match join.await.expect("join task") {
                Ok(node) => nodes.push(node),
                Err(e) => panic!("race {race}: node n{i} did not join: {e}"),
            }
        }
        for node in &nodes {
            node.leave().await;
        }
    }
}

/// A node whose settings would count or cut answers otherwise than the
/// cluster's is refused; one with another memory budget joins. Before,
/// a node with `--fold-trailing-slash` or another `--bucket` joined, and
/// the cluster's answers depended on which node was asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_counts_otherwise_is_refused() {
    use tracker_cluster::ClusterError;
    use tracker_cluster::settings::SETTINGS_KEY;
    use tracker_core::{QueryPolicy, Tracker, TrackerBuilder};

    let Some(nats) = Nats::start() else {
        return;
    };
    let config = |node: &str, tracker: TrackerBuilder| {
        let mut config = ClusterConfig::new(nats.url(), "alike");
        config.node_id = Some(node.into());
        config.partitions = 4;
        config.lease_ttl = Duration::from_secs(2);
        config.tracker = tracker;
        config
    };
    let first = Node::join(config("n0", Tracker::builder()))
        .await
        .expect("the first node joins");
    let day = Duration::from_secs(86_400);
    for (setting, tracker) in [
        ("bucket_ms", Tracker::builder().bucket(day)),
        ("retention_ms", Tracker::builder().retention(30 * day)),
        ("ttl_ms", Tracker::builder().ttl(day)),
        ("max_points", Tracker::builder().max_points(10)),
        (
            "fold_trailing_slash",
            Tracker::builder().fold_trailing_slash(true),
        ),
        ("query", Tracker::builder().query_policy(QueryPolicy::Strip)),
        (
            "drop_params",
            Tracker::builder().drop_params(vec!["ref".into()]),
        ),
        ("max_url_len", Tracker::builder().max_url_len(100)),
    ] {
        match Node::join(config("n1", tracker)).await {
            Err(ClusterError::Config(message)) => {
                assert!(message.contains(setting), "{setting}: {message}");
                assert!(message.contains(SETTINGS_KEY), "{message}");
            }
            Ok(node) => {
                node.leave().await;
                panic!("a node with another {setting} joined");
            }
            Err(e) => panic!("{setting}: {e}"),
        }
    }
    // The same rules spelt in another order or case, and another budget.
    let mut params: Vec<String> = tracker_core::TRACKING_PARAMS
        .iter()
        .rev()
        .map(|p| p.to_ascii_uppercase())
        .collect();
    params.push("fbclid".into());
    let alike = Tracker::builder().drop_params(params).max_memory(64 << 20);
    let second = Node::join(config("n1", alike))
        .await
        .expect("a node counting alike joins");
    second.leave().await;
    first.leave().await;
}

/// A snapshot interval of zero is a settings error at join. Before, the
/// node joined and took its leases, and each partition's applier
/// panicked on its snapshot timer (`tokio::time::interval` of zero): the
/// node said it owned every partition, caught up, while none applied an
/// event or answered a query (`NoOwner` after the query timeout).
#[tokio::test]
async fn a_zero_snapshot_interval_is_refused() {
    use tracker_cluster::ClusterError;

    // Checked before connecting: no server needed.
    let mut config = ClusterConfig::new("nats://127.0.0.1:1", "zero");
    config.snapshot_every = Duration::ZERO;
    match Node::join(config).await {
        Err(ClusterError::Config(message)) => {
            assert!(message.contains("snapshot"), "{message}")
        }
        Ok(node) => {
            node.leave().await;
            panic!("a node with a zero snapshot interval joined");
        }
        Err(e) => panic!("{e}"),
    }
}

/// A node started with another lease TTL than the cluster's is refused.
/// Each node judges the others' leases and heartbeats by its own TTL:
/// before, a node with 600 ms joining one with 3 s took every lease of
/// the other between its renewals, and, counting it alive only part of
/// the time, gave half its partitions up and took them back about every
/// second (each time a snapshot, a restore and a replay), while the
/// other owned nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_lease_ttl_is_refused() {
    use tracker_cluster::ClusterError;

    let Some(nats) = Nats::start() else {
        return;
    };
    let config = |node: &str, ttl: Duration| {
        let mut config = ClusterConfig::new(nats.url(), "ttl");
        config.node_id = Some(node.into());
        config.partitions = 4;
        config.lease_ttl = ttl;
        config
    };
    let first = Node::join(config("n0", Duration::from_secs(3)))
        .await
        .expect("the first node joins");
    match Node::join(config("n1", Duration::from_millis(600))).await {
        Err(ClusterError::Config(message)) => {
            assert!(message.contains("lease TTL"), "{message}");
            assert!(message.contains("meta.lease_ttl_ms"), "{message}");
        }
        Ok(node) => {
            node.leave().await;
            panic!("a node with another lease TTL joined");
        }
        Err(e) => panic!("{e}"),
    }
    let second = Node::join(config("n1", Duration::from_secs(3)))
        .await
        .expect("a node with the cluster's TTL joins");
    second.leave().await;
    first.leave().await;
}
