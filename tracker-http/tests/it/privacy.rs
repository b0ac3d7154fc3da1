//! The privacy scan the browser tests end with: none of the client
//! addresses or user agents a test used may appear in its captured logs or
//! in any file of its data directory.

use std::path::{Path, PathBuf};

/// Panics naming the first `needle` found in `logs` or under `dir`.
pub fn assert_not_written(needles: &[&str], logs: &str, dir: &Path) {
    let files = files_under(dir);
    for needle in needles {
        assert!(!logs.contains(needle), "{needle} in the logs");
        for file in &files {
            let bytes = std::fs::read(file).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} in {}",
                file.display()
            );
        }
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Every ingest route at the most verbose log level (`--log trace`, which
/// also lets through what dependencies log), over HTTP and a WebSocket:
/// the visitor ids, client addresses and user agents sent reach neither
/// the logs nor the data directory. The WebSocket library logs each
/// message's text (and a close frame's reason) at debug and trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_of_every_ingest_route_carry_nothing_identifying() {
    use futures_util::{SinkExt, StreamExt};
    use std::time::Duration;
    use test_support::process::Server;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;

    const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Firefox/140.0 TraceProbeUA";
    const IP: &str = "198.51.100.177";
    const WITHIN: Duration = Duration::from_secs(30);
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        crate::TRACKER_HTTP,
        &[
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--fsync",
            "always",
            "--trusted-proxies",
            "127.0.0.1/32,::1/128",
            "--log",
            "trace",
        ],
    );
    let client = reqwest::Client::new();
    server.wait_ready(&client, WITHIN).await;
    let post = |path: &str, content_type: &str, body: String| {
        client
            .post(server.url(path))
            .header("content-type", content_type)
            .header("user-agent", UA)
            .header("x-forwarded-for", IP)
            .body(body)
    };
    let sent = [
        post(
            "/events",
            "application/json",
            r#"{"visitor":"trace-probe-visitor-1","url":"https://site.test/a"}"#.into(),
        ),
        post("/events", "text/plain", r#"{"url":"https://site.test/b"}"#.into()),
        post(
            "/events/batch",
            "application/json",
            r#"[{"visitor":"trace-probe-visitor-2","url":"https://site.test/c"},{"url":"https://site.test/d"}]"#.into(),
        ),
        post(
            "/events/batch",
            "application/x-ndjson",
            "{\"visitor\":\"trace-probe-visitor-3\",\"url\":\"https://site.test/e\"}\n".into(),
        ),
        post(
            "/api/event",
            "text/plain",
            r#"{"n":"pageview","u":"https://site.test/f","d":"site.test"}"#.into(),
        ),
        post(
            "/events",
            "text/plain",
            r#"{"visitor":"trace-probe-visitor-4","url":"#.into(),
        ),
    ];
    for request in sent {
        request.send().await.unwrap();
    }
    client
        .get(server.url("/count?p=/g"))
        .header("user-agent", UA)
        .header("forwarded", format!("for={IP}"))
        .header("referer", "https://site.test/")
        .send()
        .await
        .unwrap();

    let headers = [("user-agent", UA), ("x-forwarded-for", IP)];
    let mut socket = crate::volume::connect_with(&server, "?ack=true", &headers).await;
    for event in [
        r#"{"visitor":"trace-probe-visitor-5","url":"https://site.test/ws"}"#,
        r#"[{"url":"https://site.test/ws2"},{"visitor":"trace-probe-visitor-6","url":"data:x"}]"#,
    ] {
        socket.send(Message::text(event)).await.unwrap();
        let answer = tokio::time::timeout(WITHIN, socket.next()).await.unwrap();
        assert!(matches!(answer, Some(Ok(Message::Text(_)))), "{answer:?}");
    }
    socket
        .send(Message::Close(Some(CloseFrame {
            code: 1000.into(),
            reason: "trace-probe-visitor-7".into(),
        })))
        .await
        .unwrap();
    while let Ok(Some(Ok(_))) = tokio::time::timeout(WITHIN, socket.next()).await {}

    server.signal("TERM");
    assert!(server.wait(WITHIN).success());
    let logs = serde_json::to_string(&*server.logs.lock().unwrap()).unwrap();
    assert!(logs.contains("\"request\""), "request lines were logged");
    // Also as the hex a frame's dump shows its payload in.
    let hex: String = "trace-probe-visitor"
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_not_written(
        &["trace-probe-visitor", &hex, IP, UA, "TraceProbeUA"],
        &logs,
        dir.path(),
    );
}
