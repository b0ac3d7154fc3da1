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
