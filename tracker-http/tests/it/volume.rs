//! Batches and streams: `POST /events/batch` in process (framings,
//! refusals, limits), and `GET /events/ws` on the real binary
//! (acknowledgements, refusals, limits, shutdown). That a batch counts
//! exactly what the same events one by one count is a proptest of the
//! core (`tracker-core/tests/it/batch.rs`); crashes under batch and
//! WebSocket senders are in `durability.rs`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use test_support::process::{Server, json_of};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracker_http::HttpLimits;

use crate::TRACKER_HTTP;
use crate::app::*;

const WITHIN: Duration = Duration::from_secs(30);

async fn post_batch(app: &axum::Router, content_type: &str, body: impl Into<Body>) -> Answer {
    let request = Request::post("/events/batch")
        .header("content-type", content_type)
        .body(body.into())
        .unwrap();
    send(app, request).await
}

async fn count(app: &axum::Router, url: &str) -> u64 {
    let answer = distinct(app, &format!("url={url}")).await;
    answer.json()["distinct_visitors"].as_u64().unwrap()
}

#[tokio::test]
async fn a_json_array_is_recorded_and_bad_events_refused_alone() {
    let (app, _) = default_app();
    let body = json!([
        {"visitor": "a", "url": "/p"},
        {"visitor": "b"},
        {"visitor": "", "url": "/p"},
        "not an event",
        {"visitor": "b", "url": "/p", "extra": 1},
        {"visitor": "a", "url": "/p"},
    ]);
    let answer = post_batch(&app, "application/json", body.to_string()).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let reply = answer.json();
    assert_eq!(reply["accepted"], 3, "{reply}");
    let refused: Vec<(u64, &str)> = reply["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(
                r["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
            (
                r["index"].as_u64().unwrap(),
                r["error"]["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [(1, "invalid_event"), (2, "empty"), (3, "invalid_event")]
    );
    assert_eq!(count(&app, "/p").await, 2);
}

#[tokio::test]
async fn ndjson_and_text_plain_are_read() {
    let (app, _) = default_app();
    let lines =
        "{\"visitor\":\"a\",\"url\":\"/n\"}\n{broken\n\n{\"visitor\":\"b\",\"url\":\"/n\"}\n";
    let answer = post_batch(&app, "application/x-ndjson", lines).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let reply = answer.json();
    assert_eq!(reply["accepted"], 2);
    assert_eq!(reply["refused"][0]["index"], 1);
    assert_eq!(reply["refused"][0]["error"]["code"], "malformed_json");
    let array = r#"[{"visitor":"c","url":"/n"}]"#;
    let answer = post_batch(&app, "text/plain;charset=UTF-8", array).await;
    assert_eq!(answer.json()["accepted"], 1);
    assert_eq!(count(&app, "/n").await, 3);
    // NDJSON as text/plain (how a browser must post it across origins
    // without a preflight) is read by its shape: not an array, so lines.
    let lines = "{\"visitor\":\"d\",\"url\":\"/n\"}\n{\"visitor\":\"e\",\"url\":\"/n\"}\n";
    let answer = post_batch(&app, "text/plain;charset=UTF-8", lines).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(answer.json()["accepted"], 2);
    assert_eq!(count(&app, "/n").await, 5);
}

const PRETTY: &str = "{\n  \"visitor\": \"a\",\n  \"url\": \"/z\"\n}\n";

#[tokio::test]
async fn untyped_bodies_are_read_by_their_shape() {
    let (app, _) = default_app();
    let untyped = |body: &'static str| {
        let request = Request::post("/events/batch")
            .body(Body::from(body))
            .unwrap();
        send(&app, request)
    };
    // One compact object is a one-line NDJSON batch.
    let answer = post_batch(&app, "text/plain", r#"{"visitor":"a","url":"/u"}"#).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(answer.json()["accepted"], 1);
    // Whitespace (and a byte order mark) before `[` still makes an array.
    for (i, body) in [
        "\n  [{\"visitor\":\"b\",\"url\":\"/u\"}]",
        "\u{feff}[{\"visitor\":\"c\",\"url\":\"/u\"}]",
    ]
    .into_iter()
    .enumerate()
    {
        let answer = post_batch(&app, "text/plain", body).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{i}");
        assert_eq!(answer.json()["accepted"], 1, "{i}");
    }
    // No content type at all: NDJSON end to end, and a 400 for nothing.
    let answer =
        untyped("{\"visitor\":\"d\",\"url\":\"/u\"}\n{\"visitor\":\"e\",\"url\":\"/u\"}\n").await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(answer.json()["accepted"], 2);
    assert_eq!(untyped(PRETTY).await.error_code(), "invalid_batch");
    assert_eq!(untyped("").await.error_code(), "invalid_batch");
    assert_eq!(count(&app, "/u").await, 5);
    // A byte order mark before NDJSON is skipped too.
    let answer = post_batch(
        &app,
        "application/x-ndjson",
        "\u{feff}{\"visitor\":\"f\",\"url\":\"/u\"}\n",
    )
    .await;
    assert_eq!(answer.json()["accepted"], 1);
    // An empty NDJSON stream is zero events, as before.
    let answer = post_batch(&app, "application/x-ndjson", "").await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(answer.json()["accepted"], 0);
}

#[tokio::test]
async fn a_body_that_is_no_batch_at_all_is_400_with_nothing_recorded() {
    let (app, _) = default_app();
    for (content_type, body) in [
        ("application/json", r#"{"visitor":"a","url":"/z"}"#),
        ("application/json", r#"[{"visitor":"a","url":"/z"},"#),
        ("application/x-ndjson", "hello\nworld\n"),
        ("text/plain", "hello\nworld\n"),
        ("text/plain", r#"[{"visitor":"a","url":"/z"},"#),
        // A pretty-printed object: its lines are pieces of JSON, none
        // JSON, whether sent as plain text or as NDJSON.
        ("text/plain", PRETTY),
        ("application/x-ndjson", PRETTY),
        // Nothing at all is neither an array nor lines of JSON.
        ("text/plain", ""),
        ("text/plain", " \r\n\n"),
    ] {
        let answer = post_batch(&app, content_type, body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer.error_code(), "invalid_batch");
    }
    let answer = post_batch(&app, "text/csv", "a,b").await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(count(&app, "/z").await, 0);
}

#[tokio::test]
async fn over_the_limits_is_413_with_nothing_recorded() {
    let (app, _) = with_limits(HttpLimits {
        batch_limit: 2,
        batch_body_limit: 200,
        ..HttpLimits::standard()
    });
    let one = json!({"visitor": "a", "url": "/l"});
    let answer = post_batch(&app, "application/json", json!([one, one, one]).to_string()).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.error_code(), "too_many_events");
    let big = json!([{"visitor": "a", "url": format!("/l{}", "x".repeat(300))}]);
    let answer = post_batch(&app, "application/json", big.to_string()).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.error_code(), "payload_too_large");
    assert_eq!(count(&app, "/l").await, 0);
    let answer = post_batch(&app, "application/json", json!([one, one]).to_string()).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_websocket_request_that_is_not_one_says_what_is_wrong() {
    let (app, _) = default_app();
    let answer = get(&app, "/events/ws").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code(), "not_websocket");
    let message = answer.json()["error"]["message"].to_string();
    assert!(message.contains("WebSocket"), "{message}");
    let request = Request::get("/events/ws?ack=maybe")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Body::empty())
        .unwrap();
    let answer = send(&app, request).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code(), "invalid_query");
    let message = answer.json()["error"]["message"].to_string();
    assert!(
        message.contains("`ack`") && message.contains("`on`/`off`"),
        "{message}"
    );
}

/// A WebSocket to the server, with or without acknowledgements.
async fn connect(
    server: &Server,
    query: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    connect_with(server, query, &[]).await
}

/// [`connect`] with `headers` on the upgrade request (a user agent, a
/// forwarded address).
pub(crate) async fn connect_with(
    server: &Server,
    query: &str,
    headers: &[(&'static str, &str)],
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = server
        .url(&format!("/events/ws{query}"))
        .replacen("http", "ws", 1)
        .into_client_request()
        .unwrap();
    for &(name, value) in headers {
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

async fn next_message(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Message {
    tokio::time::timeout(WITHIN, socket.next())
        .await
        .expect("an answer within the deadline")
        .expect("the socket stays open")
        .expect("a valid message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_events_are_acknowledged_in_order() {
    let server = Server::start(TRACKER_HTTP, &["--batch-limit", "3"]);
    let client = reqwest::Client::new();
    server.wait_ready(&client, WITHIN).await;
    let mut socket = connect(&server, "?ack=true").await;
    let messages = [
        (
            json!({"visitor": "a", "url": "/w"}).to_string(),
            json!({"accepted": 1, "refused": []}),
        ),
        (
            json!([{"visitor": "b", "url": "/w"}, {"visitor": "c"}]).to_string(),
            json!({"accepted": 1, "refused": [{"index": 1, "error": {"code": "invalid_event"}}]}),
        ),
        (
            "not json".to_owned(),
            json!({"accepted": 0, "refused": [{"index": 0, "error": {"code": "malformed_json"}}]}),
        ),
        (
            "[1, 2, 3, 4]".to_owned(),
            json!({"error": {"code": "too_many_events"}}),
        ),
        (
            "[{\"visitor\": \"e\"".to_owned(),
            json!({"error": {"code": "invalid_batch"}}),
        ),
    ];
    for (text, expected) in messages {
        socket.send(Message::text(text.clone())).await.unwrap();
        let Message::Text(ack) = next_message(&mut socket).await else {
            panic!("a text acknowledgement for {text}");
        };
        let mut ack: Value = serde_json::from_str(&ack).unwrap();
        // Messages are checked to exist, then left out of the comparison.
        let mut errors: Vec<&mut Value> = match ack.get_mut("refused") {
            Some(refused) => refused
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .map(|r| &mut r["error"])
                .collect(),
            None => vec![&mut ack["error"]],
        };
        for error in errors.iter_mut() {
            let message = error.as_object_mut().unwrap().remove("message");
            assert!(message.as_ref().is_some_and(|m| m.is_string()), "{text}");
            // A message's refusal speaks of messages, not of the batch
            // route's NDJSON and content types.
            let message = message.unwrap().to_string();
            assert!(!message.contains("ndjson"), "{text}: {message}");
        }
        assert_eq!(ack, expected, "{text}");
    }
    // Without acks: fire and forget, then counted.
    let mut quiet = connect(&server, "").await;
    quiet
        .send(Message::text(
            json!({"visitor": "d", "url": "/w"}).to_string(),
        ))
        .await
        .unwrap();
    let counted = || async {
        let answer = json_of(client.get(server.url("/distinct?url=/w"))).await;
        answer["distinct_visitors"] == 3
    };
    test_support::poll::until_async(WITHIN, "the unacknowledged event is counted", counted).await;
    // A binary message closes the connection with 1003.
    socket.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    match next_message(&mut socket).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Unsupported),
        other => panic!("expected a close, got {other:?}"),
    }
}

/// A client's close is answered with a close frame (RFC 6455, 5.5.1),
/// with or without acknowledgements: the client sees a clean closing
/// handshake, not a dropped connection (1006).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_is_answered_with_a_close() {
    let server = Server::start(TRACKER_HTTP, &[]);
    let client = reqwest::Client::new();
    server.wait_ready(&client, WITHIN).await;
    // `ack` reads as the service's switches do, bare means on, and empty
    // is not given. Without acks the close is the first thing answered.
    for (query, acks) in [
        ("?ack=true", true),
        ("?ack=1", true),
        ("?ack", true),
        ("?ack=On", true),
        ("", false),
        ("?ack=", false),
        ("?ack=0", false),
        ("?ack=off", false),
    ] {
        let mut socket = connect(&server, query).await;
        let event = json!({"visitor": "a", "url": "/c"}).to_string();
        socket.send(Message::text(event)).await.unwrap();
        if acks {
            assert!(matches!(next_message(&mut socket).await, Message::Text(_)));
        }
        socket.close(None).await.unwrap();
        let reply = tokio::time::timeout(WITHIN, socket.next())
            .await
            .expect("a reply within the deadline");
        assert!(
            matches!(reply, Some(Ok(Message::Close(_)))),
            "the close is answered with a close ({query:?}): {reply:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_limits_close_idle_and_oversized_connections() {
    let server = Server::start(
        TRACKER_HTTP,
        &["--ws-idle-timeout", "200ms", "--batch-body-limit", "1000"],
    );
    let client = reqwest::Client::new();
    server.wait_ready(&client, WITHIN).await;
    let mut idle = connect(&server, "?ack=true").await;
    match next_message(&mut idle).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a close, got {other:?}"),
    }
    let mut big = connect(&server, "?ack=true").await;
    let text = json!({"visitor": "a", "url": format!("/{}", "x".repeat(2000))}).to_string();
    // The server may close while the message is still being sent.
    let _ = big.send(Message::text(text)).await;
    let answer = tokio::time::timeout(WITHIN, big.next())
        .await
        .expect("an end within the deadline");
    // Closed with 1009 "message too big", as the README says (before, the
    // connection was dropped without a close frame).
    match answer {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("an oversized message is closed with 1009, got {other:?}"),
    }
}

/// A peer that breaks the protocol is told why in a close frame (RFC
/// 6455, 7.1.7 and 8.1): 1007 for a text message that is not UTF-8, 1002
/// for a continuation frame with no message to continue (before, the
/// connection was dropped without one: the peer saw 1006).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_error_is_closed_with_its_code() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let server = Server::start(TRACKER_HTTP, &[]);
    let client = reqwest::Client::new();
    server.wait_ready(&client, WITHIN).await;
    for (frame, code) in [
        (
            Frame::message(vec![b'"', 0xff, 0xfe, b'"'], OpCode::Data(Data::Text), true),
            CloseCode::Invalid,
        ),
        (
            Frame::message(b"{}".to_vec(), OpCode::Data(Data::Continue), true),
            CloseCode::Protocol,
        ),
    ] {
        let mut socket = connect(&server, "?ack=true").await;
        socket.send(Message::Frame(frame)).await.unwrap();
        match next_message(&mut socket).await {
            Message::Close(Some(frame)) => assert_eq!(frame.code, code),
            other => panic!("expected a close with {code:?}, got {other:?}"),
        }
    }
}

/// A sender with `?ack=true` that never reads its acknowledgements: once
/// the TCP buffers are full the server cannot write the next one, gives
/// it up after `--ws-idle-timeout` and drops the connection, so that its
/// place under `--max-connections` is free again (before, the socket's
/// task waited on the write forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_never_reads_its_acks_loses_its_connection() {
    const MESSAGES: usize = 100_000;
    let server = Server::start(
        TRACKER_HTTP,
        &["--max-connections", "1", "--ws-idle-timeout", "1s"],
    );
    // A fresh connection per request: a pooled one would hold the slot.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    server.wait_ready(&client, WITHIN).await;
    let url = server.url("/events/ws?ack=true").replacen("http", "ws", 1);
    // Once the server has seen the readiness probe's connection close.
    let mut socket = test_support::poll::until_some_async(WITHIN, "the slot is free", || async {
        // A small receive window fills sooner.
        let tcp = tokio::net::TcpSocket::new_v4().unwrap();
        tcp.set_recv_buffer_size(4096).unwrap();
        let stream = tcp.connect(server.addr).await.unwrap();
        let socket = tokio_tungstenite::client_async(url.as_str(), stream).await;
        socket.ok().map(|(socket, _)| socket)
    })
    .await;
    let healthz = || async {
        let answer = client.get(server.url("/healthz")).send().await.unwrap();
        answer.status()
    };
    assert_eq!(
        healthz().await,
        StatusCode::SERVICE_UNAVAILABLE,
        "the socket holds the slot"
    );
    // Each message is 100 refused events: its acknowledgement is 50 times
    // its size, so the server's writes block long before the sender's.
    let message = serde_json::to_string(&vec![1; 100]).unwrap();
    let sender = tokio::spawn(async move {
        for sent in 0..MESSAGES {
            if socket.send(Message::text(message.clone())).await.is_err() {
                return sent;
            }
        }
        MESSAGES
    });
    test_support::poll::until_async(WITHIN, "the slot is free again", || async {
        healthz().await == StatusCode::OK
    })
    .await;
    let sent = tokio::time::timeout(WITHIN, sender)
        .await
        .expect("the dropped connection ends the sender")
        .unwrap();
    assert!(sent < MESSAGES, "the connection was dropped mid-stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_closes_websockets_and_the_service_exits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let args = ["--data-dir", dir.to_str().unwrap(), "--fsync", "always"];
    let mut server = Server::start(TRACKER_HTTP, &args);
    let client = reqwest::Client::new();
    server.wait_ready(&client, WITHIN).await;
    let mut socket = connect(&server, "?ack=true").await;
    let event = json!({"visitor": "a", "url": "/s"}).to_string();
    socket.send(Message::text(event)).await.unwrap();
    assert!(matches!(next_message(&mut socket).await, Message::Text(_)));
    server.signal("TERM");
    match next_message(&mut socket).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a close, got {other:?}"),
    }
    let status = tokio::task::block_in_place(|| server.wait(WITHIN));
    assert_eq!(status.code(), Some(0));
    // The acknowledged event survived the restart.
    let server = Server::start(TRACKER_HTTP, &args);
    server.wait_ready(&client, WITHIN).await;
    let answer = json_of(client.get(server.url("/distinct?url=/s"))).await;
    assert_eq!(answer["distinct_visitors"], 1);
}

/// A shutdown waits for a WebSocket to finish the message it is
/// recording, so that the final snapshot covers every acknowledged event
/// and the next start replays nothing (before, it snapshotted at once,
/// and what the socket recorded after was left to the log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_snapshots_after_the_websocket_message_in_progress() {
    const MESSAGES: usize = 1_000;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let args = ["--data-dir", dir.to_str().unwrap(), "--fsync", "always"];
    let mut server = Server::start(TRACKER_HTTP, &args);
    let client = reqwest::Client::new();
    server.wait_ready(&client, WITHIN).await;
    let (mut sink, mut acks) = connect(&server, "?ack=true").await.split();
    // Messages queue behind the one being recorded, so that one is in
    // progress whenever the shutdown comes.
    let sender = tokio::spawn(async move {
        for m in 0..MESSAGES {
            let batch: Vec<Value> = (0..1000)
                .map(|i| json!({"visitor": format!("v{m}-{i}"), "url": "/p"}))
                .collect();
            let text = serde_json::to_string(&batch).unwrap();
            if sink.send(Message::text(text)).await.is_err() {
                break;
            }
        }
    });
    let mut acked = 0;
    while acked < 3 {
        match tokio::time::timeout(WITHIN, acks.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => acked += 1,
            other => panic!("an acknowledgement, got {other:?}"),
        }
    }
    server.signal("TERM");
    let status = tokio::task::block_in_place(|| server.wait(WITHIN));
    assert_eq!(status.code(), Some(0));
    sender.abort();
    let server = Server::start(TRACKER_HTTP, &args);
    server.wait_ready(&client, WITHIN).await;
    let stats = json_of(client.get(server.url("/stats"))).await;
    let recovery = &stats["persistence"]["recovery"];
    assert_eq!(recovery["replayed_events"], 0, "{stats}");
    let counted = json_of(client.get(server.url("/distinct?url=/p"))).await;
    assert!(
        counted["distinct_visitors"].as_u64() >= Some(300),
        "{counted}"
    );
}

#[tokio::test]
async fn batch_events_without_a_visitor_get_one_derived_as_post_events_does() {
    let (app, _) = default_app();
    let body = json!([{"url": "https://example.com/d"}, {"url": "https://example.com/d"}]);
    let request = Request::post("/events/batch")
        .header("content-type", "application/json")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
        )
        .body(Body::from(body.to_string()))
        .unwrap();
    let answer = send(&app, request).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(answer.json()["accepted"], 2);
    // One browser, one derived visitor.
    assert_eq!(count(&app, "https://example.com/d").await, 1);
}

/// The WebSocket is served by a task of its own, after its upgrade
/// request: an event without a visitor id still gets the id derived from
/// the connection's peer, the same one `POST /events` derives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_events_without_a_visitor_derive_it_from_the_peer() {
    const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
    let server = Server::start(TRACKER_HTTP, &[]);
    let client = reqwest::Client::new();
    server.wait_ready(&client, WITHIN).await;
    let posted = client
        .post(server.url("/events"))
        .header("user-agent", UA)
        .json(&json!({"url": "https://example.com/peer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::ACCEPTED);
    let mut socket = connect_with(&server, "?ack=true", &[("user-agent", UA)]).await;
    let event = json!({"url": "https://example.com/peer"}).to_string();
    socket.send(Message::text(event)).await.unwrap();
    let Message::Text(ack) = next_message(&mut socket).await else {
        panic!("a text acknowledgement");
    };
    assert_eq!(serde_json::from_str::<Value>(&ack).unwrap()["accepted"], 1);
    let answer = json_of(client.get(server.url("/distinct?url=https://example.com/peer"))).await;
    assert_eq!(answer["distinct_visitors"], 1, "one browser, one visitor");
}
