//! The visitor-id salts a cluster keeps in JetStream, on a real
//! `nats-server`: two nodes derive one id for one browser, a restarted
//! node the same as before, the next period's salt is on every node
//! before its boundary (a manual clock drives the periods), old salts
//! leave the bucket, and a node with another rotation is refused.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use test_support::nats::Nats;
use test_support::poll;
use tracker_cluster::salts::{CHECK_EVERY, SALT_LEAD, salt_key};
use tracker_cluster::{ClusterConfig, ClusterError, Node};
use tracker_core::browser::{SaltRotation, VisitorId, VisitorIds};
use tracker_core::{ManualClock, Timestamp};

const DAY: u64 = 86_400_000;
/// 2026-10-04, a day number.
const TODAY: u64 = 20_365;
/// Long enough for a few of the keeping task's rounds on a loaded machine.
const WITHIN: Duration = Duration::from_secs(30);

fn config(nats: &Nats, cluster: &str, node: &str, ids: &VisitorIds) -> ClusterConfig {
    let mut config = ClusterConfig::new(nats.url(), cluster);
    config.node_id = Some(node.into());
    config.partitions = 4;
    config.lease_ttl = Duration::from_secs(2);
    config.visitor_salts = ids.feed();
    config
}

fn id(ids: &VisitorIds) -> VisitorId {
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    ids.derive(
        "shop.example",
        ip,
        "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
    )
    .expect("a salt for the current period")
}

/// Waits until every one of `ids` holds the salt of `period`.
async fn all_hold(ids: &[VisitorIds], period: u64) {
    for ids in ids {
        let feed = ids.feed().unwrap();
        poll::until_async(WITHIN, &format!("the salt of {period} arrives"), || {
            let held = feed.holds(period);
            async move { held }
        })
        .await;
    }
}

async fn bucket(nats: &Nats, cluster: &str) -> async_nats::jetstream::kv::Store {
    let client = async_nats::connect(nats.url()).await.unwrap();
    async_nats::jetstream::new(client)
        .get_key_value(format!("tracker_{cluster}"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_and_a_restarted_node_derive_one_id_for_one_browser() {
    let Some(nats) = Nats::start() else {
        return;
    };
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(
        TODAY * DAY + 3_600_000,
    )));
    let ids: Vec<VisitorIds> = (0..2)
        .map(|_| VisitorIds::external(SaltRotation::Day, clock.clone()))
        .collect();
    // Joining at once: both race to create the day's salt.
    let joins: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, ids)| tokio::spawn(Node::join(config(&nats, "one", &format!("n{i}"), ids))))
        .collect();
    let mut nodes = Vec::new();
    for join in joins {
        nodes.push(join.await.unwrap().expect("joins"));
    }
    let first = id(&ids[0]);
    assert_eq!(id(&ids[1]), first, "one browser, one id on every node");

    // A restart (new process memory, same cluster) keeps the day's salt.
    nodes[0].leave().await;
    let restarted = VisitorIds::external(SaltRotation::Day, clock.clone());
    let again = Node::join(config(&nats, "one", "n0", &restarted))
        .await
        .expect("rejoins");
    assert_eq!(id(&restarted), first, "a restarted node keeps the id");

    // Another rotation would derive other ids: refused.
    let weekly = VisitorIds::external(SaltRotation::Week, clock.clone());
    match Node::join(config(&nats, "one", "n2", &weekly)).await {
        Err(ClusterError::Config(message)) => {
            assert!(message.contains("visitor-id salts"), "{message}")
        }
        other => panic!("a node with another rotation joined: {other:?}"),
    }

    // The salt is in the bucket under its period, 16 bytes; the rotation too.
    let kv = bucket(&nats, "one").await;
    let stored = kv.get(salt_key(SaltRotation::Day, TODAY)).await.unwrap();
    assert_eq!(stored.map(|v| v.len()), Some(16));
    let rotation = kv.get("meta.visitor_salt").await.unwrap().unwrap();
    assert_eq!(&rotation[..], b"day");
    again.leave().await;
    nodes[1].leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_salt_is_ready_before_its_boundary_and_old_ones_leave() {
    let Some(nats) = Nats::start() else {
        return;
    };
    let tomorrow = (TODAY + 1) * DAY;
    // Outside the lead: only today's salt exists.
    let lead = SALT_LEAD.as_millis() as u64;
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(
        tomorrow - 2 * lead,
    )));
    let ids: Vec<VisitorIds> = (0..2)
        .map(|_| VisitorIds::external(SaltRotation::Day, clock.clone()))
        .collect();
    let mut nodes = Vec::new();
    for (i, ids) in ids.iter().enumerate() {
        nodes.push(
            Node::join(config(&nats, "turn", &format!("n{i}"), ids))
                .await
                .expect("joins"),
        );
    }
    let kv = bucket(&nats, "turn").await;
    let today = id(&ids[0]);
    // A few rounds of the keeping task, which must not fetch early.
    tokio::time::sleep(3 * CHECK_EVERY).await;
    let next = salt_key(SaltRotation::Day, TODAY + 1);
    assert!(
        kv.get(&next).await.unwrap().is_none(),
        "no salt before its lead"
    );
    for ids in &ids {
        assert!(!ids.feed().unwrap().holds(TODAY + 1));
    }

    // Within the lead, every node gets the next salt, before the boundary.
    clock.set(Timestamp::from_millis(tomorrow - lead / 2));
    all_hold(&ids, TODAY + 1).await;
    assert_eq!(id(&ids[0]), today, "still today's salt before the boundary");

    // Past the boundary: a new id, the same on both; yesterday's events
    // keep yesterday's.
    clock.set(Timestamp::from_millis(tomorrow + 1));
    let tomorrows = id(&ids[0]);
    assert_ne!(tomorrows, today);
    assert_eq!(id(&ids[1]), tomorrows);
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    let ua = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0";
    let back_dated = ids[1]
        .derive_at(Timestamp::from_millis(tomorrow - 1), "shop.example", ip, ua)
        .unwrap();
    assert_eq!(back_dated, today);

    // One more boundary: the first day's salt leaves the bucket and memory.
    let after = (TODAY + 2) * DAY;
    clock.set(Timestamp::from_millis(after - lead / 2));
    all_hold(&ids, TODAY + 2).await;
    clock.set(Timestamp::from_millis(after + 1));
    assert_eq!(id(&ids[0]), id(&ids[1]));
    assert!(!ids[0].feed().unwrap().holds(TODAY));
    let first = salt_key(SaltRotation::Day, TODAY);
    poll::until_async(WITHIN, "the first day's salt is purged", || {
        let kv = kv.clone();
        let first = first.clone();
        async move { matches!(kv.entry(first).await, Ok(None)) }
    })
    .await;
    assert!(
        kv.get(&next).await.unwrap().is_some(),
        "the previous day's stays"
    );
    for node in &nodes {
        node.leave().await;
    }
}
