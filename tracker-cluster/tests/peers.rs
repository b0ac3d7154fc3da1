//! Answers to a gather from a client that is no node of the cluster
//! (anyone who may publish on the cluster's subjects sees its gathers),
//! on a real `nats-server`.

use std::time::Duration;

use futures_util::StreamExt;
use test_support::nats::Nats;
use test_support::poll;
use tracker_cluster::{ClusterConfig, Node};

/// Answers for partitions the cluster does not have are not counted as
/// answers. Before, two of them made a gather of a two-partition cluster
/// complete at once, without either real partition: the top pages came
/// back empty with a freshness of 2 of 2 partitions answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_for_partitions_the_cluster_has_not_are_ignored() {
    let Some(nats) = Nats::start() else {
        return;
    };
    let mut config = ClusterConfig::new(nats.url(), "peers");
    config.partitions = 2;
    config.lease_ttl = Duration::from_secs(2);
    let node = Node::join(config).await.expect("joins");
    poll::until_async(Duration::from_secs(60), "every partition owned", || async {
        let status = node.status();
        status.owned.len() == 2 && status.caught_up
    })
    .await;
    let pages = [
        "https://a.example/x",
        "https://a.example/y",
        "https://a.example/z",
    ];
    for (i, page) in pages.iter().enumerate() {
        node.record(&format!("v{i}"), page).await.unwrap();
    }
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut gathers = client.subscribe("tracker.peers.gather").await.unwrap();
    client.flush().await.unwrap();
    let rogue = client.clone();
    let answering = tokio::spawn(async move {
        let answer = |p: u32| {
            format!(r#"{{"partition":{p},"applied":0,"pending":0,"body":{{"Ok":{{"Top":[]}}}}}}"#)
        };
        let bogus = format!("[{},{}]", answer(7), answer(u32::MAX));
        while let Some(gather) = gathers.next().await {
            if let Some(reply) = gather.reply {
                let _ = rogue.publish(reply, bogus.clone().into()).await;
            }
        }
    });
    for _ in 0..5 {
        let (top, freshness) = node.top(10, None).await.expect("top pages");
        let urls: Vec<&str> = top.iter().map(|p| p.url.as_str()).collect();
        assert_eq!(urls, pages, "{freshness:?}");
        assert_eq!((freshness.answered, freshness.partitions), (2, 2));
    }
    answering.abort();
    node.leave().await;
}
