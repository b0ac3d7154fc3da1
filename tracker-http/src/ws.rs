//! `GET /events/ws`: a WebSocket on which each text message is one event
//! (a JSON object) or a batch (a JSON array), for senders that stream.
//!
//! - **Acknowledgements** are asked for per connection with `?ack=true`:
//!   then every text message gets one JSON answer, in order, either the
//!   batch reply of `POST /events/batch` (`{"accepted", "refused"}`) or an
//!   error `{"error": {"code", "message"}}` when the message as a whole was
//!   refused (an array that is not JSON, over the limits, the log failed);
//!   a message that is not an array is one event, so one that is not JSON
//!   is that event's refusal (`index` 0), as a bad event in an array is
//!   its own. An acknowledged
//!   event is as durable as the fsync policy promises.
//! - **Backpressure**: the next message is read only once the previous one
//!   is recorded (and durable), so a sender faster than the tracker fills
//!   its TCP window and is slowed down; nothing queues in the server.
//! - **Limits**: a message is at most `--batch-body-limit` bytes (larger
//!   closes the connection with 1009 "message too big") and
//!   `--batch-limit` events; a connection silent for `--ws-idle-timeout`
//!   is closed with 1001 "going away", and so is every socket, between
//!   messages, when the service shuts down. Binary messages are refused
//!   with close code 1003. A client's close is answered with a close.

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, Query, State};
use axum::response::Response;
use serde::Deserialize;

use axum::http::request::Parts;

use crate::batch::{BatchReply, record_parsed, split_array};
use crate::browser::Sender;
use crate::error::AppError;
use crate::ingest::parse_event;
use crate::state::AppState;

/// The query string of `GET /events/ws`.
#[derive(Debug, Default, Deserialize)]
pub struct WsParams {
    /// Answer every message (default `false`: fire and forget).
    #[serde(default)]
    pub ack: bool,
}

/// Upgrades to a WebSocket of events. A bad `ack` or a request that is
/// not a WebSocket upgrade is a 400 that says what was wrong.
pub async fn events_ws(
    State(state): State<AppState>,
    params: Result<Query<WsParams>, QueryRejection>,
    mut parts: Parts,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    let Query(params) =
        params.map_err(|_| AppError::InvalidQuery("`ack` must be `true` or `false`".into()))?;
    let upgrade = upgrade.map_err(|e| AppError::NotWebSocket(e.body_text()))?;
    // The socket is served by a task of its own, where `conn::peer` no
    // longer knows the request: the peer goes along in the parts.
    if let Some(peer) = crate::conn::peer(&parts.extensions) {
        parts.extensions.insert(ConnectInfo(peer));
    }
    let limit = state.limits.batch_body_limit;
    Ok(upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| serve(socket, state, parts, params.ack)))
}

/// Reads, records and (if asked) acknowledges one message at a time until
/// the peer closes, goes silent, or breaks the protocol.
/// Events without a visitor id get one derived from the upgrade request
/// (`parts`), as `POST /events` derives it.
async fn serve(mut socket: WebSocket, state: AppState, parts: Parts, ack: bool) {
    let sender = Sender::of(&state, &parts);
    let idle = state.limits.ws_idle_timeout;
    loop {
        // Between messages (never while one is being recorded) a shutdown
        // closes the socket, so that the final snapshot follows the last
        // acknowledged message.
        let received = tokio::select! {
            received = tokio::time::timeout(idle, socket.recv()) => received,
            () = state.shutdown.triggered() => {
                close(&mut socket, close_code::AWAY, "the service is shutting down").await;
                return;
            }
        };
        let message = match received {
            Err(_) => {
                close(&mut socket, close_code::AWAY, "idle for too long").await;
                return;
            }
            // The peer went away, or broke the protocol (a message over
            // the size limit is closed with 1009 by the WebSocket layer).
            Ok(None | Some(Err(_))) => return,
            Ok(Some(Ok(message))) => message,
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                close(
                    &mut socket,
                    close_code::UNSUPPORTED,
                    "send events as text messages",
                )
                .await;
                return;
            }
            Message::Close(_) => {
                // The WebSocket layer has queued the reply to the peer's
                // close (RFC 6455, 5.5.1) and writes it on the next read,
                // which then ends: without it the peer sees the TCP
                // connection drop, an abnormal closure (1006). Bounded,
                // as the peer may stop reading.
                let _ = tokio::time::timeout(CLOSE_REPLY, socket.recv()).await;
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
            if socket.send(Message::Text(json.into())).await.is_err() {
                return;
            }
        }
    }
}

/// The longest time spent writing the reply to a peer's close.
const CLOSE_REPLY: std::time::Duration = std::time::Duration::from_secs(1);

/// Records one message: an array is a batch, anything else one event.
async fn handle(
    state: &AppState,
    sender: &Sender<'_>,
    text: &[u8],
) -> Result<BatchReply, AppError> {
    let first = text.iter().find(|b| !b.is_ascii_whitespace());
    let events = if first == Some(&b'[') {
        split_array(text, state.limits.batch_limit)?
    } else {
        vec![parse_event(text)]
    };
    record_parsed(state, sender, &events).await
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}
