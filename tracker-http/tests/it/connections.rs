//! Connection limits of the real binary on real sockets: slow and idle
//! clients are disconnected on time while others are served, the
//! connection cap answers 503, an oversized body sent whole before
//! reading still gets its 413, and HTTP/2 (h2c and h2 over TLS) serves
//! ingest and queries.
//!
//! Timeouts are set to a second or two so the tests are quick; the bounds
//! asserted leave a second of slack for a loaded 2-core machine.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use test_support::process::{Server, json_of};

use crate::TRACKER_HTTP;

/// The slack a deadline gets before a test calls it missed.
const SLACK: Duration = Duration::from_secs(1);

/// Reads until the peer closes (EOF or reset); how long that took from
/// `since`. Panics if it is still open at `since + limit`.
async fn closed_after(mut stream: TcpStream, since: Instant, limit: Duration) -> Duration {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(since + limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return since.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
}

/// Reads one HTTP/1.1 response with a `content-length`: status and body.
async fn read_response(stream: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if data.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                return (status, data[end + 4..end + 4 + length].to_vec());
            }
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .expect("read the response");
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&buf[..n]);
    }
}

/// Opens a connection and completes one keep-alive request on it.
async fn served_connection(server: &Server) -> (TcpStream, u16, Vec<u8>) {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let (status, body) = read_response(&mut stream).await;
    (stream, status, body)
}

/// Sends GET /healthz until `done`, asserting each is answered 200;
/// returns how many were.
async fn keep_serving(url: String, done: tokio::sync::watch::Receiver<bool>) -> usize {
    let client = reqwest::Client::new();
    let mut served = 0;
    while !*done.borrow() {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        served += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    served
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_heads_and_silent_connections_are_closed_on_time_while_others_are_served() {
    let (header, idle) = (Duration::from_secs(1), Duration::from_secs(2));
    let server = Server::start(
        TRACKER_HTTP,
        &["--header-timeout", "1s", "--idle-timeout", "2s"],
    );
    let (done_tx, done) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(keep_serving(server.url("/healthz"), done));

    // 300 clients stop mid-head (slowloris); 50 connect and say nothing.
    let mut slow = Vec::new();
    for i in 0..300 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let partial = format!("POST /events HTTP/1.1\r\nhost: t\r\nx-client: {i}\r\n");
        stream.write_all(partial.as_bytes()).await.unwrap();
        let since = Instant::now();
        slow.push(tokio::spawn(closed_after(
            stream,
            since,
            header + SLACK * 4,
        )));
    }
    let mut silent = Vec::new();
    for _ in 0..50 {
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let since = Instant::now();
        silent.push(tokio::spawn(closed_after(stream, since, idle + SLACK * 4)));
    }
    for task in slow {
        let took = task.await.unwrap();
        assert!(
            took >= header - Duration::from_millis(100) && took <= header + SLACK,
            "a partial head was closed after {took:?}, not within {header:?} + {SLACK:?}"
        );
    }
    for task in silent {
        let took = task.await.unwrap();
        assert!(
            took >= idle - Duration::from_millis(100) && took <= idle + SLACK,
            "a silent connection was closed after {took:?}, not within {idle:?} + {SLACK:?}"
        );
    }
    done_tx.send(true).unwrap();
    let served = serving.await.unwrap();
    assert!(served >= 10, "normal requests kept being served: {served}");
    let metrics = metrics(&server).await;
    assert!(
        metric(
            &metrics,
            "tracker_http_connections_timed_out_total{timeout=\"header\"}"
        ) >= 300
    );
    assert!(
        metric(
            &metrics,
            "tracker_http_connections_timed_out_total{timeout=\"idle\"}"
        ) >= 50
    );
}

async fn metrics(server: &Server) -> String {
    let response = reqwest::get(server.url("/metrics")).await.unwrap();
    response.text().await.unwrap()
}

/// The value of the line starting with `series` in a /metrics text.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    // The idle timeout is longer than the header timeout on purpose: an
    // idle connection is not timed as a slow head.
    let idle = Duration::from_secs(2);
    let server = Server::start(
        TRACKER_HTTP,
        &["--header-timeout", "1s", "--idle-timeout", "2s"],
    );
    let mut idlers = Vec::new();
    for _ in 0..300 {
        let (stream, status, _) = served_connection(&server).await;
        assert_eq!(status, 200);
        let since = Instant::now();
        idlers.push(tokio::spawn(closed_after(stream, since, idle + SLACK * 4)));
    }
    // Meanwhile a fresh connection is served.
    let (_, status, _) = served_connection(&server).await;
    assert_eq!(status, 200);
    for task in idlers {
        let took = task.await.unwrap();
        assert!(
            took >= idle - Duration::from_millis(250) && took <= idle + SLACK,
            "an idle connection was closed after {took:?}, not within {idle:?} + {SLACK:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_new_connections_get_503_and_are_closed() {
    let server = Server::start(TRACKER_HTTP, &["--max-connections", "16"]);
    let mut held = Vec::new();
    for _ in 0..16 {
        let (stream, status, _) = served_connection(&server).await;
        assert_eq!(status, 200);
        held.push(stream);
    }

    // The 17th is answered, not left in the backlog, and closed.
    let (stream, status, body) = served_connection(&server).await;
    assert_eq!(status, 503);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "too_many_connections");
    closed_after(stream, Instant::now(), Duration::from_secs(2) + SLACK).await;

    // The connections under the cap still work.
    held[0]
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut held[0]).await.0, 200);

    let text = metrics_over(&mut held[1]).await;
    assert_eq!(
        metric(&text, "tracker_http_connections_total{result=\"refused\"}"),
        1
    );
    assert_eq!(metric(&text, "tracker_http_connections_open"), 16);

    // One closes: its place is free again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, status, _) = served_connection(&server).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place was never reused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GET /metrics on an open keep-alive connection (a new one may not fit).
async fn metrics_over(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let (status, body) = read_response(stream).await;
    assert_eq!(status, 200);
    String::from_utf8(body).unwrap()
}

/// Writes the whole request, then reads, as Python's `http.client` does.
fn send_whole_then_read(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream
        .write_all(body)
        .expect("the server reads the body it refuses (lingering close)");
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn an_oversized_body_sent_before_reading_gets_the_413() {
    let server = Server::start(TRACKER_HTTP, &[]);
    let body = vec![b'x'; 4 << 20];
    let head = format!(
        "POST /events HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let sized = send_whole_then_read(server.addr, &head, &body);

    // The same without a declared length: refused once the stream passes
    // the limit.
    let mut chunked = Vec::new();
    for chunk in body.chunks(64 << 10) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = "POST /events HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    let streamed = send_whole_then_read(server.addr, head, &chunked);

    for response in [sized, streamed] {
        assert!(response.starts_with("HTTP/1.1 413"), "{response:?}");
        let json_start = response.find("\r\n\r\n").unwrap() + 4;
        let body: Value = serde_json::from_str(&response[json_start..]).unwrap();
        assert_eq!(body["error"]["code"], "payload_too_large");
    }
}

/// A body that cannot be read (chunked framing broken, or the client
/// stopped sending mid-body) is a typed 400 of its own on every route
/// that reads one: it is not malformed JSON, the JSON was never seen.
#[test]
fn an_unreadable_body_is_unreadable_body_not_malformed_json() {
    let server = Server::start(TRACKER_HTTP, &[]);
    let event = r#"{"visitor":"v","url":"https://e.example/"}"#;
    let bodies: [(&str, String); 3] = [
        (
            "transfer-encoding: chunked",
            format!("zz\r\n{event}\r\n0\r\n\r\n"),
        ),
        (
            "transfer-encoding: chunked",
            format!("{:x}\r\n{event}", event.len() + 10),
        ),
        ("content-length: 100", event.to_string()),
    ];
    for path in ["/events", "/events/batch", "/api/event"] {
        for (framing, body) in &bodies {
            let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let request = format!(
                "POST {path} HTTP/1.1\r\nhost: t\r\ncontent-type: text/plain\r\n{framing}\r\n\r\n{body}"
            );
            stream.write_all(request.as_bytes()).unwrap();
            // The cut-short bodies end here.
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            let context = format!("{path} {framing} {body:?}: {response:?}");
            assert!(response.starts_with("HTTP/1.1 400"), "{context}");
            let json: Value =
                serde_json::from_str(&response[response.find("\r\n\r\n").unwrap() + 4..])
                    .unwrap_or_else(|e| panic!("{e}: {context}"));
            assert_eq!(json["error"]["code"], "unreadable_body", "{context}");
        }
    }
    let distinct = send_whole_then_read(
        server.addr,
        "GET /distinct?url=https://e.example/ HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
        b"",
    );
    assert!(
        distinct.ends_with(r#""distinct_visitors":0,"exact":true}"#),
        "nothing was recorded: {distinct:?}"
    );
}

/// Sends `request` whole, then reads to the close; the status and the
/// JSON body of the one response.
fn refused(addr: std::net::SocketAddr, request: &[u8]) -> (u16, Value) {
    let response = send_whole_then_read(addr, "", request);
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a response: {response:?}"));
    let head_end = response.find("\r\n\r\n").unwrap();
    let head = response[..head_end].to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/json") && head.contains("connection: close"),
        "{head}"
    );
    let body = serde_json::from_str(&response[head_end + 4..])
        .unwrap_or_else(|e| panic!("one JSON body ({e}): {response:?}"));
    (status, body)
}

#[test]
fn request_heads_hyper_refuses_get_json_errors() {
    let server = Server::start(TRACKER_HTTP, &[]);
    let big = "x".repeat(20 << 10);
    let fields = |n: usize| (1..n).map(|i| format!("x-{i}: v\r\n")).collect::<String>();
    let cases: [(Vec<u8>, u16, &str); 5] = [
        (
            b"GE\x01T / HTTP/1.1\r\nhost: t\r\n\r\n".to_vec(),
            400,
            "malformed_request",
        ),
        (
            b"GET / HTTP/1.1\r\nhost: t\r\nbad header\r\n\r\n".to_vec(),
            400,
            "malformed_request",
        ),
        (
            b"GET / HTTP/9.9\r\nhost: t\r\n\r\n".to_vec(),
            400,
            "malformed_request",
        ),
        // Past the default 16 KiB, sent whole before reading: the 431
        // still arrives (the rest of the head is read and discarded).
        (
            format!("GET /healthz HTTP/1.1\r\nhost: t\r\nx-pad: {big}\r\n\r\n").into_bytes(),
            431,
            "headers_too_large",
        ),
        // 101 fields (host and 100 more), a few hundred bytes: the count
        // is what was exceeded, not the size.
        (
            format!("GET /healthz HTTP/1.1\r\nhost: t\r\n{}\r\n", fields(101)).into_bytes(),
            431,
            "too_many_headers",
        ),
    ];
    for (request, status, code) in cases {
        let (got, body) = refused(server.addr, &request);
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    // 100 fields are served.
    let hundred = send_whole_then_read(
        server.addr,
        &format!(
            "GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n{}\r\n",
            fields(99)
        ),
        b"",
    );
    assert!(hundred.starts_with("HTTP/1.1 200"), "{hundred:?}");
    // A keep-alive connection: a good request, then a bad head. Our
    // answer to the first is left alone, hyper's to the second replaced.
    let mut both = b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n".to_vec();
    both.extend_from_slice(b"GET / HTTP/1.1\r\nhost: t\r\nbad header\r\n\r\n");
    let response = send_whole_then_read(server.addr, "", &both);
    assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
    let second = response.rfind("HTTP/1.1 ").unwrap();
    assert!(second > 0, "two responses: {response:?}");
    assert!(
        response[second..].starts_with("HTTP/1.1 400"),
        "{response:?}"
    );
    assert!(response.ends_with(r#""code":"malformed_request","message":"the request line or a header is not valid HTTP/1.1"}}"#), "{response:?}");
    // The server is unharmed.
    let ok = send_whole_then_read(
        server.addr,
        "GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
        b"",
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok:?}");
}

/// The binary serving HTTPS with a fresh self-signed certificate for
/// `localhost`; the key pair, and the directory holding its files.
fn tls_server() -> (
    Server,
    rcgen::CertifiedKey<rcgen::KeyPair>,
    tempfile::TempDir,
) {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, key.cert.pem()).unwrap();
    std::fs::write(&key_path, key.signing_key.serialize_pem()).unwrap();
    let server = Server::start(
        TRACKER_HTTP,
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    (server, key, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_hyper_refuses_over_tls_gets_a_json_error() {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let (server, key, _dir) = tls_server();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(key.cert.pem().as_bytes()).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nhost: t\r\nbad header\r\n\r\n")
        .await
        .unwrap();
    // To the close (a missing close_notify ends it as an error, after the
    // bytes that came before it).
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, tls.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
    }
    let response = String::from_utf8(response).unwrap();
    assert!(response.starts_with("HTTP/1.1 400"), "{response:?}");
    let body: Value =
        serde_json::from_str(&response[response.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["error"]["code"], "malformed_request");
}

/// Ingest and a query over `client`, checking each answer came over HTTP/2.
async fn ingest_and_query_over_h2(client: &reqwest::Client, base: &str) {
    let posted = client
        .post(format!("{base}/events"))
        .json(&json!({"visitor": "v1", "url": "/h2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.version(), reqwest::Version::HTTP_2);
    assert_eq!(posted.status(), 202);
    let request = client.get(format!("{base}/distinct?url=/h2"));
    let answer = request.send().await.unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["distinct_visitors"], 1);

    // Requests in parallel share the connection as streams.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (client, url) = (client.clone(), format!("{base}/events"));
        tasks.push(tokio::spawn(async move {
            let event = json!({"visitor": format!("p{i}"), "url": "/h2-parallel"});
            client.post(url).json(&event).send().await.unwrap().status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 202);
    }
    let answer = json_of(client.get(format!("{base}/distinct?url=/h2-parallel"))).await;
    assert_eq!(answer["distinct_visitors"], 50);

    // A header list over --max-header-size is refused.
    let big = client
        .get(format!("{base}/healthz"))
        .header("x-big", "a".repeat(20 << 10))
        .send()
        .await;
    assert!(
        big.is_err() || big.is_ok_and(|r| r.status() == 431),
        "an oversized header list is refused"
    );
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the connection survives the refusal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_with_prior_knowledge_serves_ingest_and_queries() {
    let server = Server::start(TRACKER_HTTP, &[]);
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    ingest_and_query_over_h2(&client, &server.url("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_over_tls_by_alpn_serves_ingest_and_queries_and_http1_still_works() {
    let (server, key, _dir) = tls_server();
    let root = reqwest::Certificate::from_pem(key.cert.pem().as_bytes()).unwrap();
    let base = format!("https://localhost:{}", server.addr.port());

    // reqwest offers h2 and http/1.1 in ALPN; the server picks h2.
    let h2 = reqwest::Client::builder()
        .add_root_certificate(root.clone())
        .resolve("localhost", server.addr)
        .build()
        .unwrap();
    ingest_and_query_over_h2(&h2, &base).await;

    let http1 = reqwest::Client::builder()
        .add_root_certificate(root)
        .resolve("localhost", server.addr)
        .http1_only()
        .build()
        .unwrap();
    let answer = http1
        .get(format!("{base}/distinct?url=/h2"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_11);
    assert_eq!(answer.status(), 200);
}
