//! HTTP/2 limits of the real binary, spoken frame by frame (h2c with prior
//! knowledge), because a well-behaved client library enforces the server's
//! settings itself and would never exceed them: the server advertises its
//! limits, refuses a stream past `--h2-max-streams`, answers a header list
//! past `--max-header-size` with a JSON 431, and closes a connection whose
//! peer stops answering keep-alive pings while one that answers stays.
//!
//! The frames are few and written here (RFC 9113 section 4 and 6) with
//! HPACK header blocks built from static-table references and literals
//! without indexing (RFC 7541), which need no encoder state.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use test_support::process::Server;

use crate::TRACKER_HTTP;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;
const REFUSED_STREAM: u32 = 0x7;

/// One frame as read.
#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// A raw HTTP/2 connection.
struct Raw {
    socket: TcpStream,
    /// The server's SETTINGS, as (identifier, value).
    settings: Vec<(u16, u32)>,
}

impl Raw {
    /// Connects, sends the preface and empty SETTINGS, and acknowledges
    /// the server's SETTINGS.
    async fn connect(server: &Server) -> Raw {
        let socket = TcpStream::connect(server.addr).await.unwrap();
        let mut raw = Raw {
            socket,
            settings: Vec::new(),
        };
        raw.socket
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        raw.send(SETTINGS, 0, 0, &[]).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let frame = raw.next(deadline).await.expect("the server's SETTINGS");
            if frame.kind == SETTINGS && frame.flags & ACK == 0 {
                raw.settings = frame
                    .payload
                    .chunks_exact(6)
                    .map(|c| {
                        let id = u16::from_be_bytes([c[0], c[1]]);
                        (id, u32::from_be_bytes([c[2], c[3], c[4], c[5]]))
                    })
                    .collect();
                raw.send(SETTINGS, ACK, 0, &[]).await;
                return raw;
            }
        }
    }

    fn setting(&self, id: u16) -> Option<u32> {
        self.settings.iter().find(|s| s.0 == id).map(|s| s.1)
    }

    async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut frame = vec![len[1], len[2], len[3], kind, flags];
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        self.socket.write_all(&frame).await.unwrap();
    }

    /// The next frame, or `None` once the server closed the connection.
    /// Panics past `deadline`.
    async fn next(&mut self, deadline: Instant) -> Option<Frame> {
        let mut header = [0u8; 9];
        let read = tokio::time::timeout_at(deadline, self.socket.read_exact(&mut header))
            .await
            .expect("a frame or a close before the deadline");
        if read.is_err() {
            return None;
        }
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0; len];
        let read = tokio::time::timeout_at(deadline, self.socket.read_exact(&mut payload))
            .await
            .expect("a whole frame before the deadline");
        read.ok()?;
        Some(Frame {
            kind: header[3],
            flags: header[4],
            stream: u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff,
            payload,
        })
    }
}

/// An HPACK string literal, not Huffman-coded.
fn literal(out: &mut Vec<u8>, text: &[u8]) {
    integer(out, 0, 7, text.len());
    out.extend_from_slice(text);
}

/// An HPACK integer with an `n`-bit prefix after the bits of `first`.
fn integer(out: &mut Vec<u8>, first: u8, n: u32, value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A header block: `:method` (POST or GET), `:scheme http`, `:path`,
/// `:authority`, then `extra` (name, value) fields.
fn header_block(post: bool, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    // Static table: 2 = :method GET, 3 = :method POST, 6 = :scheme http;
    // literals without indexing by name index: 1 = :authority, 4 = :path.
    let mut block = vec![if post { 0x83 } else { 0x82 }, 0x86];
    integer(&mut block, 0x00, 4, 4);
    literal(&mut block, path.as_bytes());
    integer(&mut block, 0x00, 4, 1);
    literal(&mut block, b"localhost");
    for (name, value) in extra {
        block.push(0x00); // a literal name follows
        literal(&mut block, name.as_bytes());
        literal(&mut block, value.as_bytes());
    }
    block
}

/// The `:status` of a response header block, when it is one of the static
/// table's (200 = index 8, 204 = 9, 400 = 12, 404 = 13) or a literal not
/// Huffman-coded; `None` otherwise.
fn status_of(block: &[u8]) -> Option<u16> {
    match block.first()? {
        0x88 => Some(200),
        0x89 => Some(204),
        0x8c => Some(400),
        0x8d => Some(404),
        _ => None,
    }
}

/// Reads frames until one matches `want`, answering pings on the way;
/// panics at the deadline or if the server closes first.
async fn until(raw: &mut Raw, deadline: Instant, mut want: impl FnMut(&Frame) -> bool) -> Frame {
    loop {
        let frame = raw.next(deadline).await.expect("the connection stays open");
        if want(&frame) {
            return frame;
        }
        if frame.kind == PING && frame.flags & ACK == 0 {
            raw.send(PING, ACK, 0, &frame.payload).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_limit_are_refused_and_a_finished_one_frees_its_slot() {
    let server = Server::start(TRACKER_HTTP, &["--h2-max-streams", "2"]);
    let mut raw = Raw::connect(&server).await;
    assert_eq!(raw.setting(SETTINGS_MAX_CONCURRENT_STREAMS), Some(2));

    // Three POSTs whose bodies never come: two fit, the third is refused.
    let post = header_block(true, "/events", &[("content-type", "application/json")]);
    for stream in [1, 3, 5] {
        raw.send(HEADERS, END_HEADERS, stream, &post).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let reset = until(&mut raw, deadline, |f| {
        f.kind == RST_STREAM || f.kind == GOAWAY
    })
    .await;
    assert_eq!(
        (reset.kind, reset.stream),
        (RST_STREAM, 5),
        "the stream past the limit is reset, not the others: {reset:?}"
    );
    let code = u32::from_be_bytes(reset.payload[..4].try_into().unwrap());
    assert_eq!(code, REFUSED_STREAM);

    // Stream 1 gets its body and its answer; then a new stream is served.
    let body = br#"{"visitor":"v","url":"/h2-limit"}"#;
    raw.send(DATA, END_STREAM, 1, body).await;
    until(&mut raw, deadline, |f| f.kind == HEADERS && f.stream == 1).await;
    let get = header_block(false, "/healthz", &[]);
    raw.send(HEADERS, END_HEADERS | END_STREAM, 7, &get).await;
    let answer = until(&mut raw, deadline, |f| {
        (f.kind == HEADERS || f.kind == RST_STREAM) && f.stream == 7
    })
    .await;
    assert_eq!(answer.kind, HEADERS, "served once a slot is free");
    assert_eq!(status_of(&answer.payload), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_list_past_the_limit_is_refused_with_a_json_431() {
    let server = Server::start(TRACKER_HTTP, &["--max-header-size", "4KiB"]);
    let mut raw = Raw::connect(&server).await;
    let advertised = raw
        .setting(SETTINGS_MAX_HEADER_LIST_SIZE)
        .expect("advertised");
    assert!(
        (4096..=8192).contains(&advertised),
        "the h2 stack's own bound is at most twice the limit: {advertised}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);

    // Within the limit: served.
    let small = "x".repeat(1000);
    let fine = header_block(false, "/healthz", &[("x-pad", &small)]);
    raw.send(HEADERS, END_HEADERS | END_STREAM, 1, &fine).await;
    let answer = until(&mut raw, deadline, |f| f.kind == HEADERS && f.stream == 1).await;
    assert_eq!(status_of(&answer.payload), Some(200));

    // Past it (5000 bytes against 4 KiB), below the h2 stack's bound: our
    // 431 with its JSON body.
    let big = "x".repeat(5000);
    let over = header_block(false, "/healthz", &[("x-pad", &big)]);
    raw.send(HEADERS, END_HEADERS | END_STREAM, 3, &over).await;
    let head = until(&mut raw, deadline, |f| {
        (f.kind == HEADERS || f.kind == RST_STREAM) && f.stream == 3
    })
    .await;
    assert_eq!(head.kind, HEADERS, "answered, not reset: {head:?}");
    let mut body = Vec::new();
    loop {
        let frame = until(&mut raw, deadline, |f| f.kind == DATA && f.stream == 3).await;
        body.extend_from_slice(&frame.payload);
        if frame.flags & END_STREAM != 0 {
            break;
        }
    }
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"]["code"], "headers_too_large", "{json}");

    // The connection goes on.
    raw.send(HEADERS, END_HEADERS | END_STREAM, 5, &fine).await;
    let answer = until(&mut raw, deadline, |f| f.kind == HEADERS && f.stream == 5).await;
    assert_eq!(status_of(&answer.payload), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_pings_is_closed_and_one_that_answers_stays() {
    let (interval, timeout) = (Duration::from_secs(1), Duration::from_secs(1));
    let server = Server::start(
        TRACKER_HTTP,
        &[
            "--h2-keepalive",
            "1s",
            "--h2-keepalive-timeout",
            "1s",
            // Idleness must not be what closes them.
            "--idle-timeout",
            "60s",
        ],
    );
    let mut dead = Raw::connect(&server).await;
    let mut alive = Raw::connect(&server).await;
    let since = Instant::now();
    // The silent one: the server pings, gets no answer, and closes it
    // (after a GOAWAY) within the interval plus the timeout, plus slack
    // for a loaded machine.
    let limit = interval + timeout + Duration::from_secs(3);
    let pinged_alive = tokio::spawn(async move {
        // Answers every ping for longer than the dead one may live.
        let mut answered = 0;
        let until = Instant::now() + limit + Duration::from_secs(1);
        while Instant::now() < until {
            let Ok(frame) = tokio::time::timeout_at(until, alive.next(until + limit)).await else {
                break;
            };
            let frame = frame.expect("the answering peer is never closed");
            if frame.kind == PING && frame.flags & ACK == 0 {
                alive.send(PING, ACK, 0, &frame.payload).await;
                answered += 1;
            }
        }
        (alive, answered)
    });
    let mut pings = 0;
    while let Some(frame) = dead.next(since + limit).await {
        pings += usize::from(frame.kind == PING);
    }
    let closed = since.elapsed();
    assert!(pings >= 1, "the server pinged before closing");
    assert!(
        closed >= interval,
        "closed only after a ping went unanswered: {closed:?}"
    );
    let (mut alive, answered) = pinged_alive.await.unwrap();
    assert!(
        answered >= 2,
        "the live peer was pinged and answered: {answered}"
    );
    // Still served after the dead one was closed.
    let get = header_block(false, "/healthz", &[]);
    alive.send(HEADERS, END_HEADERS | END_STREAM, 1, &get).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = until(&mut alive, deadline, |f| f.kind == HEADERS && f.stream == 1).await;
    assert_eq!(status_of(&answer.payload), Some(200));
}
