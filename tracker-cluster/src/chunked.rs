//! Replies larger than one NATS message.
//!
//! A NATS server refuses a message over its `max_payload` (1 MiB by
//! default), and an owner's answer can pass that: a site's series gathers
//! one partial per point from every partition, up to thousands of hashes
//! each. Such a reply went unsent, and the question unanswered until the
//! query timeout (a 503 for a 30-day series of a site of 60k visitors a
//! day). So a reply over the limit is sent as numbered chunks to the same
//! inbox, each with a [`CHUNK`] header, and the asker joins them
//! ([`Reassembly`]). Replies within the limit are sent as before.

use std::collections::HashMap;

use async_nats::{Client, HeaderMap, Message, Subject};
use bytes::{Bytes, BytesMut};

/// The header of a chunk: `<reply id> <index> <count>`.
pub(crate) const CHUNK: &str = "Tracker-Chunk";
/// Room kept in each message for its headers and protocol line.
const HEADROOM: usize = 4096;
/// The most chunks one reply may claim (64 MiB at the default limit): a
/// claim past it is dropped, so a peer's bad header cannot make the asker
/// keep more.
pub(crate) const MAX_CHUNKS: usize = 64;
/// The most replies one inbox joins at once (one a node for a gather):
/// chunks of further replies are dropped, so that a peer's stream of new
/// reply ids cannot make the asker keep more without bound.
const MAX_PENDING: usize = 1024;
/// The most payload bytes one inbox holds in replies not yet whole: a
/// chunk past it is dropped (its reply then never completes, and the
/// question is asked again or times out), so that peers' chunks cannot
/// make the asker hold up to `MAX_PENDING` x `MAX_CHUNKS` messages (64
/// GiB at the default limit). A whole gather of a site's exact hashes
/// ([`GATHER_HASHES`](crate::node::GATHER_HASHES), about 40 MiB of JSON)
/// fits several times.
const MAX_PENDING_BYTES: usize = 256 << 20;

/// The most payload bytes one message carries on `client`'s server.
pub(crate) fn chunk_bytes(client: &Client) -> usize {
    client
        .server_info()
        .max_payload
        .saturating_sub(HEADROOM)
        .max(HEADROOM)
}

/// Publishes `payload` to `reply`: as one message if the server takes it
/// whole, else as chunks that [`Reassembly`] joins.
pub(crate) async fn publish(
    client: &Client,
    reply: Subject,
    payload: Vec<u8>,
) -> Result<(), async_nats::PublishError> {
    publish_in(client, reply, payload.into(), chunk_bytes(client)).await
}

async fn publish_in(
    client: &Client,
    reply: Subject,
    payload: Bytes,
    limit: usize,
) -> Result<(), async_nats::PublishError> {
    if payload.len() <= limit {
        return client.publish(reply, payload).await;
    }
    // An inbox name is unique to this client: a reply id no other
    // reply to the same inbox shares.
    let id = client.new_inbox();
    let id = id.rsplit('.').next().unwrap_or(&id).to_string();
    let count = payload.len().div_ceil(limit);
    for index in 0..count {
        let chunk = payload.slice(index * limit..((index + 1) * limit).min(payload.len()));
        let mut headers = HeaderMap::new();
        headers.insert(CHUNK, format!("{id} {index} {count}").as_str());
        client
            .publish_with_headers(reply.clone(), headers, chunk)
            .await?;
    }
    Ok(())
}

/// Joins the chunks of the replies to one inbox.
#[derive(Debug)]
pub(crate) struct Reassembly {
    /// Each reply's chunks so far, by reply id.
    pending: HashMap<String, Vec<Option<Bytes>>>,
    /// The payload bytes in `pending`.
    held: usize,
    /// The most `held` may reach ([`MAX_PENDING_BYTES`]; less in tests).
    cap: usize,
}

impl Default for Reassembly {
    fn default() -> Self {
        Self {
            pending: HashMap::new(),
            held: 0,
            cap: MAX_PENDING_BYTES,
        }
    }
}

impl Reassembly {
    /// The whole reply `message` completes: its own payload if it is no
    /// chunk, else the joined payload once its last chunk arrived. `None`
    /// until then, and for a chunk whose header is malformed.
    pub(crate) fn add(&mut self, message: Message) -> Option<Bytes> {
        let Some(header) = message.headers.as_ref().and_then(|h| h.get(CHUNK)) else {
            return Some(message.payload);
        };
        let mut fields = header.as_str().split(' ');
        let id = fields.next()?;
        let index: usize = fields.next()?.parse().ok()?;
        let count: usize = fields.next()?.parse().ok()?;
        if count == 0 || count > MAX_CHUNKS || index >= count {
            return None;
        }
        if self.pending.len() >= MAX_PENDING && !self.pending.contains_key(id) {
            return None;
        }
        let parts = self
            .pending
            .entry(id.to_string())
            .or_insert_with(|| vec![None; count]);
        if parts.len() != count {
            return None;
        }
        let replaced = parts[index].as_ref().map_or(0, Bytes::len);
        let held = self.held - replaced + message.payload.len();
        if held > self.cap {
            return None;
        }
        self.held = held;
        parts[index] = Some(message.payload);
        if parts.iter().any(Option::is_none) {
            return None;
        }
        let parts = self.pending.remove(id)?;
        let len = parts.iter().flatten().map(Bytes::len).sum();
        self.held -= len;
        let mut whole = BytesMut::with_capacity(len);
        for part in parts.into_iter().flatten() {
            whole.extend_from_slice(&part);
        }
        Some(whole.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: &str, index: usize, count: usize, payload: &'static [u8]) -> Message {
        let mut headers = HeaderMap::new();
        headers.insert(CHUNK, format!("{id} {index} {count}").as_str());
        Message {
            subject: "inbox".into(),
            reply: None,
            payload: Bytes::from_static(payload),
            headers: Some(headers),
            status: None,
            description: None,
            length: payload.len(),
        }
    }

    #[test]
    fn chunks_join_in_any_order_and_plain_replies_pass() {
        let mut joined = Reassembly::default();
        assert_eq!(joined.add(chunk("a", 2, 3, b"56")), None);
        assert_eq!(joined.add(chunk("b", 1, 2, b"yz")), None);
        assert_eq!(joined.add(chunk("a", 0, 3, b"12")), None);
        assert_eq!(joined.add(chunk("a", 1, 3, b"34")).unwrap(), &b"123456"[..]);
        assert_eq!(joined.add(chunk("b", 0, 2, b"wx")).unwrap(), &b"wxyz"[..]);
        let mut plain = chunk("c", 0, 1, b"whole");
        plain.headers = None;
        assert_eq!(joined.add(plain).unwrap(), &b"whole"[..]);
        assert!(joined.pending.is_empty());
    }

    #[test]
    fn bad_chunk_headers_are_dropped() {
        let mut joined = Reassembly::default();
        assert_eq!(joined.add(chunk("a", 3, 3, b"x")), None);
        assert_eq!(joined.add(chunk("a", 0, 0, b"x")), None);
        assert_eq!(joined.add(chunk("a", 0, MAX_CHUNKS + 1, b"x")), None);
        assert!(joined.pending.is_empty());
        // A count that changes within one reply.
        assert_eq!(joined.add(chunk("b", 0, 2, b"x")), None);
        assert_eq!(joined.add(chunk("b", 1, 3, b"y")), None);
        let mut garbled = chunk("c", 0, 1, b"x");
        garbled
            .headers
            .as_mut()
            .unwrap()
            .insert(CHUNK, "no numbers here");
        assert_eq!(joined.add(garbled), None);
    }

    #[test]
    fn chunks_past_the_byte_limit_are_dropped_and_the_others_join() {
        let mut joined = Reassembly {
            cap: 8,
            ..Reassembly::default()
        };
        assert_eq!(joined.add(chunk("a", 0, 2, b"1234")), None);
        // A chunk sent again replaces its bytes, not adds to them.
        assert_eq!(joined.add(chunk("a", 0, 2, b"1234")), None);
        assert_eq!(joined.add(chunk("b", 0, 2, b"wxy")), None);
        assert_eq!(joined.held, 7);
        // Past the cap: dropped, and its reply stays incomplete.
        assert_eq!(joined.add(chunk("b", 1, 2, b"z2")), None);
        assert_eq!(joined.held, 7);
        // A completed reply gives its bytes back.
        assert_eq!(joined.add(chunk("a", 1, 2, b"5")).unwrap(), &b"12345"[..]);
        assert_eq!(joined.held, 3);
        assert_eq!(joined.add(chunk("b", 1, 2, b"z")).unwrap(), &b"wxyz"[..]);
        assert_eq!(joined.held, 0);
        assert!(joined.pending.is_empty());
    }

    #[test]
    fn replies_past_the_pending_limit_are_dropped_and_the_others_join() {
        let mut joined = Reassembly::default();
        let ids: Vec<String> = (0..MAX_PENDING + 10).map(|i| i.to_string()).collect();
        for id in &ids {
            assert_eq!(joined.add(chunk(id, 0, 2, b"a")), None);
        }
        assert_eq!(joined.pending.len(), MAX_PENDING);
        // One past the limit is not kept; one kept still completes.
        assert_eq!(joined.add(chunk(&ids[MAX_PENDING + 5], 1, 2, b"b")), None);
        assert!(!joined.pending.contains_key(&ids[MAX_PENDING + 5]));
        assert_eq!(joined.add(chunk(&ids[0], 1, 2, b"b")).unwrap(), &b"ab"[..]);
    }
}
