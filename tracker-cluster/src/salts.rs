//! The visitor-id salts of a cluster, kept in the lease bucket so that
//! every node derives the same id for one browser (see
//! [`tracker_core::browser::VisitorIds::external`]), and a restarted node
//! the same as before.
//!
//! - **Keys**: `salt.<rotation>.<period>` (16 bytes), and
//!   `meta.visitor_salt` (the rotation's name, fixed by the first node
//!   that joins with a [`SaltFeed`]; a node with another rotation refuses
//!   to join, as for `meta.partitions`).
//! - **Join**: the node gets the current period's salt, or creates it
//!   (the first node's create wins, the others read it), and gets the
//!   previous period's if it exists (never creating it).
//! - **Kept**: every [`CHECK_EVERY`], by the node's clock, a task gets or
//!   creates the current salt if missing, the next one within
//!   [`SALT_LEAD`] of its boundary, and removes from the bucket the salts
//!   older than the previous period (and those of another rotation),
//!   with a stream purge so that nothing of them is left. So a request
//!   never waits for NATS, and only the previous, current and, shortly
//!   before its boundary, next salts exist.
//! - **Failure**: if NATS cannot be reached until after a boundary, the
//!   node has no salt for the new period: events without a visitor are
//!   refused ([`tracker_core::browser::SaltError::Unavailable`], a 503 in
//!   tracker-http, as their publish would be), a warning is logged once,
//!   and the task keeps trying every [`CHECK_EVERY`]. A node never hashes
//!   with a salt of its own, which would count a person once per node.

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use tracker_core::browser::{SaltFeed, SaltKey, SaltRotation};

use crate::ClusterError;
use crate::node::{kv_setting, nats};

/// How long before a period's boundary its salt is fetched (or created).
pub const SALT_LEAD: Duration = Duration::from_secs(5 * 60);

/// How often a node checks that its salts are the ones it needs.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The key of the rotation setting.
const ROTATION_KEY: &str = "meta.visitor_salt";

/// At join: checks the cluster's rotation (setting it if first) and
/// installs the current and the previous period's salts.
pub(crate) async fn join(
    kv: &kv::Store,
    feed: &SaltFeed,
    cluster: &str,
) -> Result<(), ClusterError> {
    let rotation = feed.rotation();
    let setting = kv_setting(kv, ROTATION_KEY, || {
        Ok(Bytes::from_static(rotation.name().as_bytes()))
    })
    .await?;
    let setting = String::from_utf8_lossy(&setting);
    if setting != rotation.name() {
        return Err(ClusterError::Config(format!(
            "cluster {cluster} rotates visitor-id salts by {setting:?}, this node was started with {:?} \
             (to change the cluster's, stop every node and delete {ROTATION_KEY} from the bucket tracker_{cluster})",
            rotation.name()
        )));
    }
    let now = rotation.period(feed.now());
    install(kv, feed, now).await?;
    if let Some(previous) = now.checked_sub(1) {
        fetch_previous(kv, feed, previous).await?;
    }
    Ok(())
}

/// Keeps the feed's salts, every [`CHECK_EVERY`], until aborted.
pub(crate) async fn keep(kv: kv::Store, feed: SaltFeed) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut state = Kept::default();
    loop {
        tick.tick().await;
        state.round(&kv, &feed).await;
    }
}

/// What the keeping task remembers between rounds.
#[derive(Default)]
struct Kept {
    /// The period whose older salts were removed from the bucket.
    purged: Option<u64>,
    /// The period whose missing salt was warned about.
    warned: Option<u64>,
}

impl Kept {
    async fn round(&mut self, kv: &kv::Store, feed: &SaltFeed) {
        let rotation = feed.rotation();
        let at = feed.now();
        let now = rotation.period(at);
        if !feed.holds(now) {
            match install(kv, feed, now).await {
                Ok(()) => {
                    if self.warned == Some(now) {
                        tracing::info!(
                            period = now,
                            "the visitor-id salt of the period arrived; browser events are counted again"
                        );
                    }
                }
                Err(e) if self.warned != Some(now) => {
                    self.warned = Some(now);
                    tracing::warn!(
                        period = now,
                        error = %e,
                        "no visitor-id salt for the current period: events without a visitor are refused until it is fetched"
                    );
                }
                Err(_) => {}
            }
        }
        if let Some(next) = now.checked_add(1)
            && let Some(start) = rotation.start_of(next)
            && start.as_millis().saturating_sub(at.as_millis()) <= SALT_LEAD.as_millis() as u64
            && !feed.holds(next)
            && let Err(e) = install(kv, feed, next).await
        {
            tracing::debug!(period = next, error = %e, "the next visitor-id salt is not fetched yet");
        }
        if self.purged != Some(now) {
            match purge_old(kv, rotation, now).await {
                Ok(()) => self.purged = Some(now),
                Err(e) => tracing::debug!(error = %e, "old visitor-id salts not removed yet"),
            }
        }
    }
}

/// Gets or creates the salt of `period` and installs it.
async fn install(kv: &kv::Store, feed: &SaltFeed, period: u64) -> Result<(), ClusterError> {
    let key = salt_key(feed.rotation(), period);
    let value = kv_setting(kv, &key, || {
        let fresh = SaltKey::random().map_err(nats)?;
        Ok(Bytes::copy_from_slice(&fresh.to_bytes()))
    })
    .await?;
    feed.install(period, decode(&key, &value)?);
    Ok(())
}

/// Installs the salt of `period` if the bucket has it.
async fn fetch_previous(kv: &kv::Store, feed: &SaltFeed, period: u64) -> Result<(), ClusterError> {
    let key = salt_key(feed.rotation(), period);
    if let Some(value) = kv.get(&key).await.map_err(nats)? {
        feed.install(period, decode(&key, &value)?);
    }
    Ok(())
}

/// Removes from the bucket every salt of another rotation or older than
/// the previous period of `now`.
async fn purge_old(kv: &kv::Store, rotation: SaltRotation, now: u64) -> Result<(), ClusterError> {
    let mut keys = kv.keys().await.map_err(nats)?;
    let mut old = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(nats)?;
        let Some(rest) = key.strip_prefix("salt.") else {
            continue;
        };
        let keep = rest
            .strip_prefix(rotation.name())
            .and_then(|r| r.strip_prefix('.'))
            .and_then(|p| p.parse::<u64>().ok())
            .is_some_and(|p| p.saturating_add(1) >= now);
        if !keep {
            old.push(key);
        }
    }
    for key in old {
        // A stream purge of the key's subject leaves no marker behind (a
        // KV purge would keep one per period for ever).
        kv.stream
            .purge()
            .filter(format!("{}{key}", kv.prefix))
            .await
            .map_err(nats)?;
    }
    Ok(())
}

/// The bucket key of a period's salt.
pub fn salt_key(rotation: SaltRotation, period: u64) -> String {
    format!("salt.{}.{period}", rotation.name())
}

/// A salt as stored; the error names the key, never the bytes.
fn decode(key: &str, value: &[u8]) -> Result<SaltKey, ClusterError> {
    let bytes: [u8; 16] = value.try_into().map_err(|_| {
        ClusterError::Config(format!(
            "{key} holds {} bytes, not a 16-byte salt",
            value.len()
        ))
    })?;
    Ok(SaltKey::from_bytes(bytes))
}
