//! Partition snapshots against what the stream holds, on a real
//! `nats-server`: a snapshot that says it covers more of the stream than
//! the stream holds (the stream was deleted and made again, by a node
//! joining, while the snapshot store kept the old snapshots) must not
//! hide the new stream's events from the owner that restores it.

use std::time::Duration;

use test_support::nats::Nats;
use test_support::poll;
use tracker_cluster::{ClusterConfig, Node};

fn config(nats: &Nats) -> ClusterConfig {
    let mut config = ClusterConfig::new(nats.url(), "again");
    config.partitions = 1;
    config.lease_ttl = Duration::from_secs(2);
    config.snapshot_every = Duration::from_millis(200);
    config
}

async fn owning(node: &Node) {
    poll::until_async(Duration::from_secs(60), "the partition owned", || async {
        let status = node.status();
        status.owned.len() == 1 && status.caught_up
    })
    .await;
}

async fn until_visitors(node: &Node, url: &str, visitors: u64) {
    poll::until_ok_async(Duration::from_secs(30), url, || async {
        match node.distinct(url).await {
            Ok((_, count, _)) if count.visitors == visitors => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// The old stream's ten events are in the snapshot (covering sequence
/// 10); the new stream's three, sequences 1 to 3, are acknowledged
/// after it. Before, the owner counted them but wrote no snapshot (its
/// applied sequence, 3, was below the 10 it restored), and the next
/// owner restored the old snapshot and started reading after sequence
/// 10 (the server starts a consumer past the end at the end): the three
/// were lost for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_ahead_of_a_new_stream_hides_none_of_its_events() {
    let Some(nats) = Nats::start() else {
        return;
    };
    let node = Node::join(config(&nats)).await.expect("joins");
    owning(&node).await;
    for i in 0..10 {
        node.record(&format!("old{i}"), "https://a.example/old")
            .await
            .unwrap();
    }
    until_visitors(&node, "https://a.example/old", 10).await;
    node.leave().await;
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.delete_stream("TRACKER_again").await.unwrap();
    // A node joining makes the stream again, empty.
    let node = Node::join(config(&nats)).await.expect("joins again");
    owning(&node).await;
    for i in 0..3 {
        let published = node
            .record(&format!("new{i}"), "https://a.example/new")
            .await
            .unwrap();
        assert_eq!(published.sequence, i + 1);
    }
    until_visitors(&node, "https://a.example/new", 3).await;
    // A handover: the next owner starts from the snapshot.
    node.leave().await;
    let node = Node::join(config(&nats)).await.expect("joins once more");
    owning(&node).await;
    until_visitors(&node, "https://a.example/new", 3).await;
    // The old snapshot's counts are kept.
    until_visitors(&node, "https://a.example/old", 10).await;
    node.leave().await;
}
