// Run: cargo run --release -p tracker-http --example ws_load -- ws://127.0.0.1:18080/events/ws 8 100 10
//
//! The WebSocket load generator of `benches/http_batch.sh`:
//! `ws_load URL CONNECTIONS EVENTS_PER_MESSAGE SECONDS`. Every connection
//! (`?ack=true` is added to URL) sends arrays of events, each with a new
//! visitor id, pages rotating over 1000, and waits for each message's
//! acknowledgement before the next (the server's backpressure decides the
//! pace). Prints `events_per_second acknowledged_events refused_events`
//! over the whole run, on one line.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[derive(Default)]
struct Tally {
    accepted: u64,
    refused: u64,
}

async fn connection(url: String, id: usize, per_message: usize, until: Instant) -> Tally {
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket connect");
    let mut tally = Tally::default();
    let mut text = String::new();
    let mut n = 0usize;
    while Instant::now() < until {
        text.clear();
        text.push('[');
        for i in 0..per_message {
            if i > 0 {
                text.push(',');
            }
            n += 1;
            let _ = write!(
                text,
                r#"{{"visitor":"ws-{id}-{n}","url":"https://example.com/page/{}"}}"#,
                n % 1000
            );
        }
        text.push(']');
        socket
            .send(Message::text(text.as_str()))
            .await
            .expect("send");
        let answer = loop {
            match socket.next().await.expect("open").expect("read") {
                Message::Text(answer) => break answer,
                Message::Close(frame) => panic!("closed by the server: {frame:?}"),
                _ => {}
            }
        };
        let reply: serde_json::Value = serde_json::from_str(&answer).expect("JSON answer");
        let accepted = reply["accepted"]
            .as_u64()
            .unwrap_or_else(|| panic!("not a batch reply: {answer}"));
        tally.accepted += accepted;
        tally.refused += reply["refused"].as_array().map_or(0, |r| r.len() as u64);
    }
    let _ = socket.close(None).await;
    tally
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, connections, per_message, seconds] = args.as_slice() else {
        panic!("usage: ws_load URL CONNECTIONS EVENTS_PER_MESSAGE SECONDS");
    };
    let url = format!("{url}?ack=true");
    let connections: usize = connections.parse().expect("CONNECTIONS");
    let per_message: usize = per_message.parse().expect("EVENTS_PER_MESSAGE");
    let seconds: f64 = seconds.parse().expect("SECONDS");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (tally, elapsed) = runtime.block_on(async {
        let start = Instant::now();
        let until = start + Duration::from_secs_f64(seconds);
        let tasks: Vec<_> = (0..connections)
            .map(|id| tokio::spawn(connection(url.clone(), id, per_message, until)))
            .collect();
        let mut total = Tally::default();
        for task in tasks {
            let tally = task.await.expect("connection task");
            total.accepted += tally.accepted;
            total.refused += tally.refused;
        }
        (total, start.elapsed())
    });
    println!(
        "{:.0} {} {}",
        tally.accepted as f64 / elapsed.as_secs_f64(),
        tally.accepted,
        tally.refused
    );
}
