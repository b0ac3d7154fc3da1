//! `GET /events/ws`: a WebSocket on which each text message is one event
//! (a JSON object) or a batch (a JSON array), for senders that stream.
//!
//! - **Acknowledgements** are asked for per connection with `?ack=true`
//!   (any spelling of on that the service's switches read, see
//!   [`wants_acks`], or a bare `?ack`; `?ack=` is not asking):
//!   then every text message gets one JSON answer, in order, either the
//!   batch reply of `POST /events/batch` (`{"accepted", "refused"}`) or an
//!   error `{"error": {"code", "message"}}` when the message as a whole was
//!   refused (an array that is not JSON, over the limits, the log or the
//!   cluster could not take an event of it);
//!   a message that is not an array is one event, so one that is not JSON
//!   is that event's refusal (`index` 0), as a bad event in an array is
//!   its own. An acknowledged
//!   event is as durable as the fsync policy promises.
//! - **Backpressure**: the next message is read only once the previous one
//!   is recorded (and durable), so a sender faster than the tracker fills
//!   its TCP window and is slowed down; nothing queues in the server.
//! - **Limits**: a message is at most `--batch-body-limit` bytes (larger
//!   closes the connection with 1009 "message too big"; a text message
//!   that is not UTF-8, 1007, and a frame that breaks the protocol,
//!   1002) and
//!   `--batch-limit` events; a connection silent for `--ws-idle-timeout`
//!   is closed with 1001 "going away", and so is every socket, between
//!   messages, when the service shuts down. Binary messages are refused
//!   with close code 1003. A client's close is answered with a close.
//! - **A peer that stops reading** is not waited on: an acknowledgement
//!   that cannot be written within `--ws-idle-timeout` (a sender that
//!   never reads its answers, once the TCP buffers are full), or a close
//!   within a second, drops the connection, and so does a shutdown
//!   during either (after one try), so that no peer keeps its place under
//!   `--max-connections` or holds up the shutdown.

use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use clap::builder::{BoolishValueParser, TypedValueParser};

use axum::http::request::Parts;

use crate::batch::{BatchReply, record_parsed, split_array};
use crate::browser::Sender;
use crate::error::AppError;
use crate::ingest::{first_byte, parse_event};
use crate::query::{decode_param, given, raw_param_as_given};
use crate::shutdown::Shutdown;
use crate::state::AppState;

/// Whether the query string of `GET /events/ws` asks to answer every
/// message (otherwise: fire and forget). `ack` is read as the service's
/// switch flags and variables read (clap's [`BoolishValueParser`]:
/// `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`, `y`/`n`, `t`/`f`, any
/// case); bare (`?ack`) it is on, and empty (`?ack=`) it is not given, as
/// every optional parameter.
pub fn wants_acks(query: &str) -> Result<bool, AppError> {
    let raw = match raw_param_as_given(query, "ack") {
        None => return Ok(false),
        Some(None) => return Ok(true),
        Some(raw) => raw,
    };
    let Some(value) = given(decode_param("ack", raw)?) else {
        return Ok(false);
    };
    BoolishValueParser::new()
        .parse_ref(
            &clap::Command::new("ws"),
            None,
            std::ffi::OsStr::new(value.trim()),
        )
        .map_err(|_| {
            AppError::InvalidQuery(
                "`ack` is a switch: `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`, \
                 `y`/`n` or `t`/`f` (any case); a bare `ack` is on"
                    .into(),
            )
        })
}

/// Upgrades to a WebSocket of events. A bad `ack` or a request that is
/// not a WebSocket upgrade is a 400 that says what was wrong.
pub async fn events_ws(
    State(state): State<AppState>,
    mut parts: Parts,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    let ack = wants_acks(parts.uri.query().unwrap_or(""))?;
    let upgrade = upgrade.map_err(|e| AppError::NotWebSocket(e.body_text()))?;
    // The socket is served by a task of its own, where `conn::peer` no
    // longer knows the request: the peer goes along in the parts.
    if let Some(peer) = crate::conn::peer(&parts.extensions) {
        parts.extensions.insert(ConnectInfo(peer));
    }
    let limit = state.limits.batch_body_limit;
    // Taken while the upgrade request is one the shutdown still drains,
    // and kept until the socket is done (see `serve`).
    let hold = state.shutdown.hold();
    Ok(upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| async move {
            serve(socket, state, parts, ack).await;
            drop(hold);
        }))
}

/// Reads, records and (if asked) acknowledges one message at a time until
/// the peer closes, goes silent, or breaks the protocol.
/// Events without a visitor id get one derived from the upgrade request
/// (`parts`), as `POST /events` derives it.
async fn serve(mut socket: WebSocket, state: AppState, parts: Parts, ack: bool) {
    let sender = Sender::of(&state, &parts);
    let idle = state.limits.ws_idle_timeout;
    loop {
        // A shutdown closes the socket between messages, never while one
        // is being recorded, and waits for that (for `--shutdown-grace`
        // at most: the socket's `Hold`), so that the final snapshot
        // follows the last acknowledged message. Looked at first: no
        // message is read once the shutdown has begun.
        let received = tokio::select! {
            biased;
            () = state.shutdown.triggered() => {
                close(&mut socket, close_code::AWAY, "the service is shutting down", &state.shutdown).await;
                return;
            }
            received = tokio::time::timeout(idle, socket.recv()) => received,
        };
        let message = match received {
            Err(_) => {
                close(
                    &mut socket,
                    close_code::AWAY,
                    "idle for too long",
                    &state.shutdown,
                )
                .await;
                return;
            }
            // The peer went away.
            Ok(None) => return,
            // It broke the protocol, or sent a message over the size
            // limit: the WebSocket layer only reports it, so the close
            // frame that says why (RFC 6455, 7.1.7) is ours to send.
            Ok(Some(Err(e))) => {
                if let Some((code, reason)) = refusal(e) {
                    close(&mut socket, code, reason, &state.shutdown).await;
                }
                return;
            }
            Ok(Some(Ok(message))) => message,
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                close(
                    &mut socket,
                    close_code::UNSUPPORTED,
                    "send events as text messages",
                    &state.shutdown,
                )
                .await;
                return;
            }
            Message::Close(_) => {
                // The WebSocket layer has queued the reply to the peer's
                // close (RFC 6455, 5.5.1) and writes it on the next read,
                // which then ends: without it the peer sees the TCP
                // connection drop, an abnormal closure (1006).
                bounded(socket.recv(), CLOSE_REPLY, &state.shutdown).await;
                return;
            }
            // Pings are answered by the WebSocket layer; both keep the
            // connection from idling out.
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        let answer = handle(&state, &sender, text.as_bytes()).await;
        if ack {
            let json = match answer {
                Ok(reply) => serde_json::to_string(&reply),
                Err(e) => serde_json::to_string(&serde_json::json!({
                    "error": {"code": e.code(), "message": e.message()}
                })),
            };
            // Serialising these types cannot fail; the fallback keeps that
            // a non-panicking certainty.
            let json = json.unwrap_or_else(|_| String::from("{}"));
            let sent = socket.send(Message::Text(json.into()));
            if !matches!(bounded(sent, idle, &state.shutdown).await, Some(Ok(()))) {
                return;
            }
        }
    }
}

/// The longest time spent writing a close, or the reply to a peer's close.
const CLOSE_REPLY: Duration = Duration::from_secs(1);

/// Waits for `write` (a write on the socket) at most `limit`, as the peer
/// may stop reading, and not past a shutdown, which must not wait on a
/// peer; `None` when it was given up. It is tried first, so that what can
/// be written at once is written even during a shutdown.
async fn bounded<F: Future>(write: F, limit: Duration, shutdown: &Shutdown) -> Option<F::Output> {
    tokio::select! {
        biased;
        written = tokio::time::timeout(limit, write) => written.ok(),
        () = shutdown.triggered() => None,
    }
}

/// Records one message: an array is a batch, anything else one event.
async fn handle(
    state: &AppState,
    sender: &Sender<'_>,
    text: &[u8],
) -> Result<BatchReply, AppError> {
    let events = if first_byte(text) == Some(b'[') {
        split_array(text, state.limits.batch_limit).map_err(|e| match e {
            AppError::InvalidBatch(m) => AppError::InvalidMessage(m),
            other => other,
        })?
    } else {
        vec![parse_event(text)]
    };
    record_parsed(state, sender, &events).await
}

/// The close code and reason for a read that failed through the peer's
/// fault: a message (or a frame of it) over `--batch-body-limit` (1009),
/// a text message that is not UTF-8 (1007), a frame that breaks the
/// protocol (1002). `None` when the connection itself failed: nothing
/// can be said on it.
fn refusal(error: axum::Error) -> Option<(u16, &'static str)> {
    match error.into_inner().downcast_ref::<tungstenite::Error>()? {
        tungstenite::Error::Capacity(_) => Some((close_code::SIZE, "message too big")),
        tungstenite::Error::Utf8(_) => Some((close_code::INVALID, "a text message must be UTF-8")),
        tungstenite::Error::Protocol(_) => Some((close_code::PROTOCOL, "protocol error")),
        _ => None,
    }
}

/// Sends a close frame (see [`bounded`]); the caller then drops the
/// socket, whether it went out or not.
async fn close(socket: &mut WebSocket, code: u16, reason: &'static str, shutdown: &Shutdown) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    bounded(
        socket.send(Message::Close(Some(frame))),
        CLOSE_REPLY,
        shutdown,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_is_a_switch_bare_is_on_and_empty_is_not_given() {
        for (query, acks) in [
            ("", false),
            ("ack=", false),
            ("ack=%20", false),
            ("ack", true),
            ("site=x&ack", true),
            ("ack&ack=false", true),
            ("ack=TRUE", true),
            ("ack=yes", true),
            ("ack=0", false),
            ("ack=Off", false),
            ("ack=no", false),
        ] {
            assert_eq!(wants_acks(query).ok(), Some(acks), "{query}");
        }
        assert_eq!(wants_acks("ack=maybe").unwrap_err().code(), "invalid_query");
    }

    /// On the runtime's paused clock, which moves only when every task
    /// waits: the time a wait took is exact, whatever the machine's load.
    #[tokio::test(start_paused = true)]
    async fn a_write_is_given_up_at_its_limit_or_at_a_shutdown() {
        let shutdown = Shutdown::new();
        let limit = Duration::from_secs(60);
        // A peer that does not read: the write never completes.
        let start = tokio::time::Instant::now();
        let written = bounded(std::future::pending::<()>(), limit, &shutdown).await;
        assert_eq!((written, start.elapsed()), (None, limit));
        let start = tokio::time::Instant::now();
        let wait = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { bounded(std::future::pending::<()>(), limit, &shutdown).await }
        });
        tokio::task::yield_now().await;
        shutdown.trigger();
        assert_eq!(wait.await.unwrap(), None);
        assert!(start.elapsed() < limit, "{:?}", start.elapsed());
        // During a shutdown, a write that can go out at once still does.
        let written = bounded(std::future::ready(7), limit, &shutdown).await;
        assert_eq!(written, Some(7));
    }
}
