//! The TLS certificate is reloaded on SIGHUP, or when its files change,
//! without a restart: a renewed pair is served to new connections, a
//! broken one is refused (logged) and the previous pair stays in service.

use std::path::Path;
use std::time::{Duration, Instant};

use test_support::process::Server;

use crate::TRACKER_HTTP;

/// A self-signed certificate for `localhost`: (certificate PEM, key PEM).
fn pair() -> (String, String) {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (key.cert.pem(), key.signing_key.serialize_pem())
}

/// A client that trusts only `cert`, on a new connection for each request
/// (no pool), so each request sees the certificate served now.
fn trusting(cert: &str, server: &Server) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).unwrap())
        .resolve("localhost", server.addr)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn healthy(client: &reqwest::Client, server: &Server) -> bool {
    let url = format!("https://localhost:{}/healthz", server.addr.port());
    client
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

/// Waits for the `count`-th log line with `message`; panics after 20 s.
async fn wait_logged(server: &Server, message: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.lines(message).len() < count {
        assert!(Instant::now() < deadline, "never logged {message:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn write_pair(dir: &Path, cert: &str, key: &str) {
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
}

/// A TLS server on a new pair written to `dir`, checking the files every
/// `interval` (`0s`: on SIGHUP only), and a client that trusts that pair,
/// once it is served.
async fn serve_a_fresh_pair(dir: &Path, interval: &str) -> (Server, reqwest::Client) {
    let (cert, key) = pair();
    write_pair(dir, &cert, &key);
    let server = Server::start(
        TRACKER_HTTP,
        &[
            "--tls-cert",
            dir.join("cert.pem").to_str().unwrap(),
            "--tls-key",
            dir.join("key.pem").to_str().unwrap(),
            "--tls-reload-interval",
            interval,
        ],
    );
    let trusts = trusting(&cert, &server);
    assert!(healthy(&trusts, &server).await);
    (server, trusts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_serves_a_renewed_certificate_and_keeps_the_old_one_if_the_new_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    // Only the signal reloads here.
    let (server, trusts_old) = serve_a_fresh_pair(dir.path(), "0s").await;

    // Renewal: a new pair on disk, then SIGHUP.
    let (new_cert, new_key) = pair();
    write_pair(dir.path(), &new_cert, &new_key);
    let trusts_new = trusting(&new_cert, &server);
    assert!(
        !healthy(&trusts_new, &server).await,
        "not before the signal"
    );
    server.signal("HUP");
    wait_logged(&server, "reloaded the TLS certificate and key", 1).await;
    assert!(
        healthy(&trusts_new, &server).await,
        "the new certificate is served"
    );
    assert!(
        !healthy(&trusts_old, &server).await,
        "the old one no longer"
    );

    // A broken renewal: a certificate with a key that is not its own, then
    // a file that is not PEM. Each is refused; the current pair stays.
    let (other_cert, _) = pair();
    write_pair(dir.path(), &other_cert, &new_key);
    server.signal("HUP");
    let failed = "TLS certificate reload failed; still serving the previous certificate";
    wait_logged(&server, failed, 1).await;
    assert!(
        healthy(&trusts_new, &server).await,
        "the previous pair kept"
    );
    write_pair(dir.path(), "not a certificate", "nor a key");
    server.signal("HUP");
    wait_logged(&server, failed, 2).await;
    assert!(
        healthy(&trusts_new, &server).await,
        "the previous pair kept"
    );
    assert!(
        !healthy(&trusting(&other_cert, &server), &server).await,
        "the mismatched certificate is never served"
    );
}

/// Polls until `client` is served (or, with `served` false, refused);
/// panics after 20 s.
async fn until_healthy_is(client: &reqwest::Client, server: &Server, served: bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while healthy(client, server).await != served {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_files_are_served_without_a_signal_and_a_broken_change_keeps_the_old_pair() {
    let dir = tempfile::tempdir().unwrap();
    let (server, trusts_old) = serve_a_fresh_pair(dir.path(), "100ms").await;

    // Renewal written in place (certificate, then key: a look between the
    // two fails and is logged; the next one loads the pair).
    let (new_cert, new_key) = pair();
    write_pair(dir.path(), &new_cert, &new_key);
    let trusts_new = trusting(&new_cert, &server);
    until_healthy_is(&trusts_new, &server, true, "the new pair is never served").await;
    // Logged just before or after it is served: waited for.
    wait_logged(&server, "reloaded the TLS certificate and key", 1).await;
    let reloads = server.lines("reloaded the TLS certificate and key");
    assert!(
        reloads.iter().any(|l| l["trigger"] == "the files changed"),
        "{reloads:?}"
    );
    assert!(
        !healthy(&trusts_old, &server).await,
        "the old one no longer"
    );

    // A broken change: a certificate with a key that is not its own, then
    // files that are not PEM. Refused and logged; the current pair stays.
    let failed = "TLS certificate reload failed; still serving the previous certificate";
    let failures = server.lines(failed).len();
    let (other_cert, _) = pair();
    write_pair(dir.path(), &other_cert, &new_key);
    wait_logged(&server, failed, failures + 1).await;
    assert!(
        healthy(&trusts_new, &server).await,
        "the previous pair kept"
    );
    let failures = server.lines(failed).len();
    write_pair(dir.path(), "not a certificate", "nor a key");
    wait_logged(&server, failed, failures + 1).await;
    assert!(
        healthy(&trusts_new, &server).await,
        "the previous pair kept"
    );
    assert!(
        !healthy(&trusting(&other_cert, &server), &server).await,
        "the mismatched certificate is never served"
    );

    // Repaired: the next good pair is served.
    let (third_cert, third_key) = pair();
    write_pair(dir.path(), &third_cert, &third_key);
    let trusts_third = trusting(&third_cert, &server);
    until_healthy_is(
        &trusts_third,
        &server,
        true,
        "the repaired pair is never served",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_without_tls_is_logged_and_does_not_stop_the_service() {
    let mut server = Server::start(TRACKER_HTTP, &[]);
    server.signal("HUP");
    wait_logged(&server, "SIGHUP received; no TLS certificate to reload", 1).await;
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    server.signal("TERM");
    let status = tokio::task::block_in_place(|| server.wait(Duration::from_secs(15)));
    assert_eq!(status.code(), Some(0));
}
