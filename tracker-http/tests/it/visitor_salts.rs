//! Derived visitor ids across a restart of the binary with `--data-dir`:
//! the day's salt survives, so a returning browser is not counted again;
//! and neither the client addresses nor the user agents used reach the
//! logs or the data directory.

use std::path::Path;
use std::time::Duration;

use test_support::process::{Server, json_of};

use crate::{TRACKER_HTTP, privacy};
use serde_json::json;

const CLIENTS: [(&str, &str); 2] = [
    (
        "203.0.113.77",
        "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0 SaltProbeA",
    ),
    (
        "198.51.100.214",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/18.0 Safari/605.1.15 SaltProbeB",
    ),
];
const PAGE: &str = "https://site.test/landing";

async fn visit(client: &reqwest::Client, server: &Server, ip: &str, ua: &str) {
    let response = client
        .post(server.url("/api/event"))
        .header("content-type", "text/plain")
        .header("user-agent", ua)
        .header("x-forwarded-for", format!("192.0.2.1, {ip}"))
        .body(json!({"n": "pageview", "u": PAGE, "d": "site.test"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}

async fn visitors(client: &reqwest::Client, server: &Server) -> u64 {
    let request = client.get(server.url("/distinct")).query(&[("url", PAGE)]);
    json_of(request).await["distinct_visitors"]
        .as_u64()
        .unwrap()
}

fn start(dir: &Path) -> Server {
    Server::start(
        TRACKER_HTTP,
        &[
            "--data-dir",
            dir.to_str().unwrap(),
            "--trusted-proxies",
            "127.0.0.1/32,::1/128",
            "--log",
            "debug",
        ],
    )
}

fn stop(mut server: Server) -> String {
    server.signal("TERM");
    assert!(server.wait(Duration::from_secs(30)).success());
    serde_json::to_string(&*server.logs.lock().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salts_survive_a_restart_and_nothing_identifying_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();

    let server = start(dir.path());
    server.wait_ready(&client, Duration::from_secs(30)).await;
    for (ip, ua) in CLIENTS {
        visit(&client, &server, ip, ua).await;
        visit(&client, &server, ip, ua).await;
    }
    assert_eq!(visitors(&client, &server).await, 2);
    let mut logs = stop(server);

    // The same browsers after a restart the same day: not counted again.
    let server = start(dir.path());
    server.wait_ready(&client, Duration::from_secs(30)).await;
    assert_eq!(visitors(&client, &server).await, 2);
    for (ip, ua) in CLIENTS {
        visit(&client, &server, ip, ua).await;
    }
    assert_eq!(
        visitors(&client, &server).await,
        2,
        "a restart counted returning visitors again"
    );
    visit(&client, &server, "203.0.113.78", CLIENTS[0].1).await;
    assert_eq!(
        visitors(&client, &server).await,
        3,
        "another address counts"
    );
    logs.push_str(&stop(server));

    assert!(logs.contains("\"request\""), "request lines were logged");
    assert!(dir.path().join("visitor-salts").is_file());
    let mut needles = vec!["203.0.113.78", "SaltProbe"];
    for (ip, ua) in CLIENTS {
        needles.extend([ip, ua]);
    }
    privacy::assert_not_written(&needles, &logs, dir.path());
}
