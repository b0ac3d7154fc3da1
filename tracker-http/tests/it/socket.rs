//! Tests of the real binary on a real socket: concurrent ingest checked
//! against a model, graceful shutdown under load, HTTPS and bearer auth.
//!
//! Each test starts `tracker-http` itself on an ephemeral port (cargo
//! builds the binary for integration tests), so nothing is skipped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_support::model::Distinct;
use test_support::process::{Server, json_of};
use test_support::{poll, xorshift};

use crate::TRACKER_HTTP;

/// The longest any awaited condition of these tests may take.
const WITHIN: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ingest_matches_a_model_then_sigterm_exits_0() {
    let mut server = Server::start(TRACKER_HTTP, &[]);
    let client = reqwest::Client::new();
    let model: Arc<Mutex<Distinct>> = Arc::default();

    let mut tasks = Vec::new();
    for client_id in 0..8u64 {
        let (client, model, url) = (client.clone(), model.clone(), server.url("/events"));
        tasks.push(tokio::spawn(async move {
            let mut rng = 0x9e37_79b9_7f4a_7c15 ^ (client_id + 1);
            for _ in 0..250 {
                // 40 visitors over 12 pages: clients overlap on purpose.
                let visitor = format!("visitor-{}", xorshift(&mut rng) % 40);
                let page = format!("https://example.com/page/{}", xorshift(&mut rng) % 12);
                let response = client
                    .post(&url)
                    .json(&json!({ "visitor": visitor, "url": page }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 202);
                model.lock().unwrap().record(visitor, page);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    let model = model.lock().unwrap().clone();
    for (page, count) in model.counts() {
        let answer = json_of(client.get(server.url("/distinct")).query(&[("url", &page)])).await;
        assert_eq!(answer["distinct_visitors"], count, "{page}");
        assert_eq!(answer["exact"], true);
    }
    let stats = json_of(client.get(server.url("/stats"))).await;
    assert_eq!(stats["pairs"], model.pairs());
    assert_eq!(stats["pages"], model.pages());

    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("tracker_http_requests_total{route=\"/events\",status=\"202\"} 2000"));

    server.signal("TERM");
    let status = tokio::task::block_in_place(|| server.wait(Duration::from_secs(15)));
    assert_eq!(status.code(), Some(0));
    assert!(server.logged("stopped"));
}

/// Reads one HTTP/1.1 response (head, then a `content-length` body).
fn read_response(reader: &mut impl BufRead) -> String {
    let mut response = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
        response.push_str(&line);
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    response + &String::from_utf8(body).unwrap()
}

/// No step waits a fixed time: load runs until answers flow, the signal
/// goes once the server is reading the half-sent request's body, and the
/// rest of that body once the server has logged the signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_in_flight_requests_and_exits_0() {
    // The body read may wait for the steps below on a loaded machine.
    let args = ["--shutdown-grace", "5s", "--request-timeout", "60s"];
    let mut server = Server::start(TRACKER_HTTP, &args);
    let addr = server.addr;

    // One request caught half-sent when the signal arrives: it must still
    // be answered. `expect: 100-continue` makes the server say when its
    // handler starts reading the body: from then on the request is in
    // flight, not a connection that shutdown may close.
    let (half_sent_tx, half_sent) = mpsc::channel();
    let (go_on, go_on_rx) = mpsc::channel();
    let half_sent_request = std::thread::spawn(move || {
        let body = r#"{"visitor":"slow","url":"/in-flight"}"#;
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WITHIN)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        write!(
            stream,
            "POST /events HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\nexpect: 100-continue\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len(),
        )
        .unwrap();
        let interim = read_response(&mut reader);
        assert!(interim.starts_with("HTTP/1.1 100"), "{interim:?}");
        stream.write_all(&body.as_bytes()[..10]).unwrap();
        stream.flush().unwrap();
        half_sent_tx.send(()).unwrap();
        go_on_rx.recv_timeout(WITHIN).unwrap();
        stream.write_all(&body.as_bytes()[10..]).unwrap();
        let mut response = String::new();
        reader.read_to_string(&mut response).unwrap();
        response
    });

    let client = reqwest::Client::new();
    let signalled = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for client_id in 0..16u64 {
        let (client, url) = (client.clone(), server.url("/events"));
        let (signalled, answered) = (signalled.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let event = json!({ "visitor": format!("c{client_id}-{i}"), "url": "/load" });
                match client.post(&url).json(&event).send().await {
                    Ok(response) => {
                        // A response that started must arrive whole.
                        assert_eq!(response.status(), 202);
                        response.bytes().await.expect("response body cut off");
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    // After the signal, new requests may be refused or
                    // find their connection closed: never sent, not cut.
                    Err(_) if signalled.load(Ordering::SeqCst) => return,
                    Err(e) => panic!("request failed before shutdown: {e}"),
                }
            }
        }));
    }

    poll::until_async(WITHIN, "the load is answered", || {
        let flowing = answered.load(Ordering::Relaxed) >= 50;
        async move { flowing }
    })
    .await;
    poll::until_async(WITHIN, "the request is half sent", || {
        let sent = half_sent.try_recv().is_ok();
        async move { sent }
    })
    .await;
    signalled.store(true, Ordering::SeqCst);
    server.signal("TERM");
    tokio::task::block_in_place(|| server.wait_logged("SIGTERM received", WITHIN));
    go_on.send(()).unwrap();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("clients stop once the server drains")
            .unwrap();
    }
    assert!(answered.load(Ordering::Relaxed) > 0, "load was running");

    let response = tokio::task::block_in_place(|| half_sent_request.join().unwrap());
    assert!(
        response.starts_with("HTTP/1.1 202"),
        "in-flight request answered: {response:?}"
    );
    let status = tokio::task::block_in_place(|| server.wait(Duration::from_secs(15)));
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_generated_certificate_and_a_bearer_token() {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, key.cert.pem()).unwrap();
    std::fs::write(&key_path, key.signing_key.serialize_pem()).unwrap();

    let mut server = Server::start(
        TRACKER_HTTP,
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
            "--auth-token",
            "t0ken",
        ],
    );
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(key.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", server.addr)
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", server.addr.port());

    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let posted = client
        .post(format!("{base}/events"))
        .header("content-type", "text/plain")
        .body(r#"{"visitor":"v","url":"/secure"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202, "ingest needs no token");

    let unauthorized = client
        .get(format!("{base}/distinct?url=/secure"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let body: Value = unauthorized.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let authorized = json_of(
        client
            .get(format!("{base}/distinct?url=/secure"))
            .bearer_auth("t0ken"),
    )
    .await;
    assert_eq!(authorized["distinct_visitors"], 1);

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::get(server.url("/healthz")).await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);

    server.signal("INT");
    let status = tokio::task::block_in_place(|| server.wait(Duration::from_secs(15)));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn unreadable_tls_files_exit_1_with_a_message() {
    let output = Command::new(TRACKER_HTTP)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent/cert.pem",
        ])
        .args(["--tls-key", "/nonexistent/key.pem"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("TLS certificate"));
}

#[test]
fn bad_configuration_exits_2_with_a_message() {
    let output = Command::new(TRACKER_HTTP)
        .args(["--listen", "127.0.0.1:0", "--stripes", "3"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("stripes"));
}

/// The settings the binary logs at start-up with `env` set (every other
/// `TRACKER_*` variable removed), or its refusal to start.
fn start_up_config(names: &[String], env: &[(&String, &str)]) -> Result<String, String> {
    let mut command = Command::new(TRACKER_HTTP);
    command
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for name in names {
        command.env_remove(name);
    }
    command.envs(env.iter().map(|(name, value)| (name.as_str(), *value)));
    let mut child = command.spawn().unwrap();
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
        .find(|entry| {
            entry["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("starting tracker-http"))
        });
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    match line {
        Some(entry) => Ok(entry["config"].as_str().unwrap().to_string()),
        None => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
    }
}

/// An empty `TRACKER_*` variable (docker-compose writes `TRACKER_X=`) is
/// read as unset, every one of them: all empty at once, the binary
/// starts with the settings it has with none set.
#[test]
fn empty_tracker_variables_are_read_as_unset() {
    use clap::CommandFactory;
    let names: Vec<String> = tracker_http::Config::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    assert!(names.len() > 50, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("TRACKER_")), "{names:?}");
    let unset = start_up_config(&names, &[]).unwrap();
    let blank: Vec<(&String, &str)> = names.iter().map(|name| (name, "")).collect();
    assert_eq!(start_up_config(&names, &blank), Ok(unset.clone()));
    // A variable with a value still counts.
    let ttl = names.iter().find(|n| *n == "TRACKER_TTL").unwrap();
    let with_ttl = start_up_config(&names, &[(ttl, "1h")]).unwrap();
    assert!(with_ttl.contains("ttl=3600s"), "{with_ttl}");
    assert!(unset.contains("ttl=none"), "{unset}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_sees_the_client_address() {
    // A token per 1000 s: no refill during the test, however slow it runs.
    let server = Server::start(
        TRACKER_HTTP,
        &["--rate-limit", "0.001", "--rate-burst", "2"],
    );
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = client
            .get(server.url("/distinct?url=/"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "health checks are not rate limited");
}

/// With `--shutdown-delay`, SIGTERM first turns `/readyz` to 503 while the
/// service keeps serving, so load balancers can drain it; then it exits 0.
/// (The checks during the delay must fit in it: 5 s is ample even on a
/// loaded machine, and the exit is awaited rather than timed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delay_reports_not_ready_while_still_serving() {
    const DELAY: Duration = Duration::from_secs(5);
    let mut server = Server::start(TRACKER_HTTP, &["--shutdown-delay", "5s"]);
    let client = reqwest::Client::new();
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // Taken before the signal: the server's delay starts when it gets it,
    // so a clock started after could see the exit a few ms short of it.
    let start = Instant::now();
    server.signal("TERM");
    let readyz = server.url("/readyz");
    poll::until_async(DELAY, "/readyz answers 503 during the delay", || async {
        let ready = client.get(&readyz).send().await.unwrap();
        ready.status() == 503
    })
    .await;
    // Still serving during the delay: ingest and reads work.
    let posted = client
        .post(server.url("/events"))
        .json(&serde_json::json!({"visitor": "v", "url": "/draining"}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    let count = json_of(client.get(server.url("/distinct?url=/draining"))).await;
    assert_eq!(count["distinct_visitors"], 1);

    let status = tokio::task::block_in_place(|| server.wait(WITHIN));
    assert!(status.success(), "{status:?}");
    assert!(start.elapsed() >= DELAY, "exited before the delay");
}
