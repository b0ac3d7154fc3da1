//! Events an earlier version published with a page key today's URL rules
//! spell another way (`https://127.1/x`, now `https://127.0.0.1/x`), in
//! the partition of the old spelling, against a real `nats-server`: the
//! owner records them and publishes them again to the new spelling's
//! partition, so that a query for the page counts them, and merged
//! answers show the page once.

use std::time::Duration;

use test_support::nats::Nats;
use test_support::poll;
use tracker_cluster::{ClusterConfig, EventV1, Node, partition_of};

/// The default count. (With 8, `127.1` and `127.0.0.1` hash alike: FNV-1a
/// modulo a power of two keeps only low bits.)
const PARTITIONS: u32 = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_spelling_in_the_stream_counts_for_the_new_one() {
    let Some(nats) = Nats::start() else {
        return;
    };
    let mut config = ClusterConfig::new(nats.url(), "legacy");
    config.partitions = PARTITIONS;
    config.lease_ttl = Duration::from_secs(2);
    let node = Node::join(config).await.expect("joins");
    poll::until_async(Duration::from_secs(60), "every partition owned", || async {
        let status = node.status();
        status.owned.len() == PARTITIONS as usize && status.caught_up
    })
    .await;
    // A path whose two spellings are in different partitions.
    let (old, new) = (0..100)
        .map(|i| {
            (
                format!("https://127.1/p{i}"),
                format!("https://127.0.0.1/p{i}"),
            )
        })
        .find(|(old, new)| partition_of(old, PARTITIONS) != partition_of(new, PARTITIONS))
        .unwrap();
    assert_eq!(node.gate().canonicalize(&old).unwrap(), new);
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let hash = node.gate().visitor_hash("v1").unwrap();
    let event = EventV1::new(hash, old.clone(), 1_700_000_000_000);
    let subject = format!("tracker.legacy.events.{}", partition_of(&old, PARTITIONS));
    js.publish(subject, serde_json::to_vec(&event).unwrap().into())
        .await
        .unwrap()
        .await
        .unwrap();
    // And the new spelling's own event, by another visitor.
    node.record("v2", &new).await.unwrap();
    poll::until_ok_async(Duration::from_secs(30), "both visitors counted", || async {
        match node.distinct(&old).await {
            Ok((url, count, _)) if url == new && count.visitors == 2 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let (list, _) = node
        .pages(&tracker_core::PageQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(list.pages.len(), 1, "listed once: {list:?}");
    assert_eq!(list.pages[0].distinct.visitors, 2, "{list:?}");
    let (top, _) = node.top(10, None).await.unwrap();
    assert_eq!(top.len(), 1, "ranked once: {top:?}");
    let (site, _) = node.site_distinct("127.0.0.1").await.unwrap();
    assert_eq!(site.visitors, 2);
    node.leave().await;
}
