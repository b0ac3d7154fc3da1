//! The tracker settings every node of a cluster must share: those that
//! decide what an event counts as (URL rules, limits) and how answers
//! are cut (buckets, retention, TTL, the point limit). A node checks or
//! computes ranges with its own settings and owns partitions whose
//! questions any node asks, so a node with other settings would count
//! `/docs/` and `/docs` apart from the others, or echo a day's range
//! over an hour's count. The first node to join fixes them in the lease
//! bucket under [`SETTINGS_KEY`], as it fixes `meta.partitions`; a node
//! started with others refuses to join. Memory settings are left out: a
//! node's budget is its machine's.

use async_nats::jetstream::kv;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use tracker_core::{QueryPolicy, TrackerConfig};

use crate::ClusterError;
use crate::node::kv_setting;

/// The key of the settings in the lease bucket.
pub const SETTINGS_KEY: &str = "meta.settings";

/// The settings of `config` that must agree across nodes, by name.
pub(crate) fn shared(config: &TrackerConfig) -> Map<String, Value> {
    let bucketing = config.bucketing;
    let millis = |d: std::time::Duration| d.as_millis() as u64;
    let sorted = |names: &[String]| {
        let mut names = names.to_vec();
        names.sort();
        names.dedup();
        names
    };
    let query = match &config.url.query {
        QueryPolicy::Keep => json!("keep"),
        QueryPolicy::Strip => json!("strip"),
        QueryPolicy::Allow(names) => json!({ "allow": sorted(names) }),
    };
    // Matched ignoring ASCII case: one spelling per name.
    let drop: Vec<String> = config
        .url
        .drop_params
        .iter()
        .map(|p| p.to_ascii_lowercase())
        .collect();
    let value = json!({
        "bucket_ms": millis(bucketing.width()),
        "retention_ms": bucketing.retention().map(millis),
        "ttl_ms": config.ttl.map(millis),
        "max_points": bucketing.point_limit(),
        "query": query,
        "drop_params": sorted(&drop),
        "fold_trailing_slash": config.url.fold_trailing_slash,
        "max_url_len": config.url.max_len,
        "max_visitor_len": config.max_visitor_len,
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!("an object literal"),
    }
}

/// At join: fixes the cluster's settings to this node's if it is the
/// first, else checks this node's against them ([`ClusterError::Config`]
/// naming each that differs). Only names both sides know are compared,
/// so that a later version may add some and still join a cluster an
/// earlier one made.
pub(crate) async fn join(
    kv: &kv::Store,
    config: &TrackerConfig,
    cluster: &str,
) -> Result<(), ClusterError> {
    let ours = shared(config);
    let held = kv_setting(kv, SETTINGS_KEY, || {
        Ok(Bytes::from(
            serde_json::to_vec(&ours).expect("settings serialise"),
        ))
    })
    .await?;
    let held: Map<String, Value> = serde_json::from_slice(&held)
        .map_err(|e| ClusterError::Config(format!("{SETTINGS_KEY} of cluster {cluster}: {e}")))?;
    let differ: Vec<String> = ours
        .iter()
        .filter_map(|(name, value)| {
            let theirs = held.get(name)?;
            (theirs != value).then(|| format!("{name} {theirs} (this node: {value})"))
        })
        .collect();
    if differ.is_empty() {
        return Ok(());
    }
    Err(ClusterError::Config(format!(
        "cluster {cluster} counts with other settings than this node: {} \
         (every node must count alike; to change the cluster's, stop every node and delete \
         {SETTINGS_KEY} from the bucket tracker_{cluster})",
        differ.join(", ")
    )))
}
