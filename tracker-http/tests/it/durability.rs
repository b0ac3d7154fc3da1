//! The service's durability, on the real binary and real files:
//!
//! - crashes: concurrent ingest (single events, `POST /events/batch` and
//!   `GET /events/ws` with acknowledgements), `kill -9` at random moments over several
//!   rounds, and after each restart every event that got a 2xx is counted
//!   (exactly the model of acknowledged events, once the events whose
//!   answer the crash swallowed are resent), for `--fsync always` and
//!   `--fsync interval`;
//! - damaged and unusable data directories: a torn log tail, a flipped
//!   byte in the middle of the log (with and without `--salvage-log`), a
//!   snapshot of another format version, a path that cannot be a
//!   directory, a read-only and a full file system, a directory already in
//!   use. Each gives its documented outcome; none panics.
//!
//! The read-only and full file systems are real tmpfs mounts made by the
//! test (root needed); under `CI=true` a failed mount fails the test.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use test_support::model::Distinct;
use test_support::process::{Server, json_of};
use test_support::tmpfs::Tmpfs;
use test_support::{poll, xorshift};

use crate::TRACKER_HTTP;

const READY_WITHIN: Duration = Duration::from_secs(30);
const EXIT_WITHIN: Duration = Duration::from_secs(30);
/// The longest any other awaited condition may take.
const WITHIN: Duration = Duration::from_secs(30);

/// A client whose every request ends: a request the crash left without an
/// answer fails by timeout at worst, and counts as unknown.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn page(n: u64) -> String {
    format!("https://example.com/page/{n}")
}

/// What the clients were told: acknowledged (page -> visitors), and the
/// events sent whose answer never came (the crash may or may not have
/// kept them).
#[derive(Debug, Default)]
struct Model {
    acked: Distinct,
    unknown: Vec<(String, String)>,
    acked_events: u64,
}

impl Model {
    fn ack(&mut self, visitor: String, url: String) {
        self.acked.record(visitor, url);
        self.acked_events += 1;
    }
}

/// `run_to_exit` of the service binary.
fn run_to_exit(args: &[&str], limit: Duration) -> (std::process::ExitStatus, Vec<Value>) {
    test_support::process::run_to_exit(TRACKER_HTTP, args, limit)
}

async fn post_event(
    client: &reqwest::Client,
    server: &Server,
    visitor: &str,
    url: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(server.url("/events"))
        .json(&json!({ "visitor": visitor, "url": url }))
        .send()
        .await
}

async fn distinct(client: &reqwest::Client, server: &Server, url: &str) -> u64 {
    let answer = json_of(client.get(server.url("/distinct")).query(&[("url", url)])).await;
    assert_eq!(answer["exact"], true, "{answer}");
    answer["distinct_visitors"].as_u64().unwrap()
}

/// Every page counts at least its acknowledged visitors and at most those
/// plus the unknown ones; then the unknown events are resent (recording
/// is idempotent) and every page counts exactly the model.
async fn check_and_settle(
    client: &reqwest::Client,
    server: &Server,
    model: &Mutex<Model>,
    pages: u64,
) {
    for n in 0..pages {
        let url = page(n);
        let got = distinct(client, server, &url).await;
        let model = model.lock().unwrap();
        let acked = model.acked.count(&url);
        let maybe: HashSet<&String> = model
            .unknown
            .iter()
            .filter(|(v, u)| *u == url && !model.acked.contains(&url, v))
            .map(|(v, _)| v)
            .collect();
        let possible = acked + maybe.len() as u64;
        assert!(
            acked <= got && got <= possible,
            "{url}: counted {got}, acknowledged {acked}, at most {possible}"
        );
    }
    let unknown = std::mem::take(&mut model.lock().unwrap().unknown);
    for (visitor, url) in unknown {
        let response = post_event(client, server, &visitor, &url).await.unwrap();
        assert_eq!(response.status(), 202);
        model.lock().unwrap().ack(visitor, url);
    }
    for n in 0..pages {
        let url = page(n);
        let expected = model.lock().unwrap().acked.count(&url);
        assert_eq!(distinct(client, server, &url).await, expected, "{url}");
    }
}

/// `clients` concurrent senders of random events until the service has
/// acknowledged some and written a snapshot, then `kill_after` more (a
/// random moment, on purpose), then `kill -9`. Every 202 goes into the
/// model; a request the crash cut off goes into its unknown events. Any
/// other answer fails the test.
async fn ingest_then_kill(
    server: &mut Server,
    client: &reqwest::Client,
    model: &Arc<Mutex<Model>>,
    seed: u64,
    kill_after: Duration,
) -> u64 {
    const CLIENTS: u64 = 16;
    const PAGES: u64 = 24;
    const VISITORS: u64 = 400;
    let before = model.lock().unwrap().acked_events;
    let mut tasks = Vec::new();
    for id in 0..CLIENTS {
        let (client, model) = (client.clone(), model.clone());
        let base = server.url("");
        let mut rng = seed ^ (id + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut next_event = move || {
            let visitor = format!("visitor-{}", xorshift(&mut rng) % VISITORS);
            (visitor, page(xorshift(&mut rng) % PAGES))
        };
        // One sender in three of each kind: single events, batches, a
        // WebSocket with acknowledgements.
        tasks.push(tokio::spawn(async move {
            match id % 3 {
                0 => send_singles(&client, &base, &model, &mut next_event).await,
                1 => send_batches(&client, &base, &model, &mut next_event).await,
                _ => send_on_websocket(&base, &model, &mut next_event).await,
            }
        }));
    }
    // Awaited rather than assumed to happen within some time: events were
    // acknowledged and a snapshot was written before the kill.
    let acked_some = || {
        let acked = model.lock().unwrap().acked_events > before;
        async move { acked }
    };
    poll::until_async(WITHIN, "events are acknowledged", acked_some).await;
    tokio::task::block_in_place(|| server.wait_logged("snapshot written", WITHIN));
    tokio::time::sleep(kill_after).await;
    tokio::task::block_in_place(|| server.kill_9());
    for task in tasks {
        task.await.unwrap();
    }
    model.lock().unwrap().acked_events - before
}

/// What one sender got: a 202 or ack puts its events in the model, a
/// request the crash cut off puts them among the unknown ones.
fn settle(model: &Mutex<Model>, events: Vec<(String, String)>, acked: bool) {
    let mut model = model.lock().unwrap();
    for (visitor, url) in events {
        if acked {
            model.ack(visitor, url);
        } else {
            model.unknown.push((visitor, url));
        }
    }
}

type NextEvent<'a> = &'a mut (dyn FnMut() -> (String, String) + Send);

async fn send_singles(
    client: &reqwest::Client,
    base: &str,
    model: &Mutex<Model>,
    next: NextEvent<'_>,
) {
    let url = format!("{base}/events");
    loop {
        let (visitor, target) = next();
        let sent = client
            .post(&url)
            .json(&json!({ "visitor": visitor, "url": target }))
            .send()
            .await;
        match sent {
            Ok(response) if response.status() == 202 => {
                settle(model, vec![(visitor, target)], true)
            }
            Ok(response) => panic!("unexpected answer {}", response.status()),
            Err(e) => {
                if e.is_timeout() {
                    eprintln!("request timed out after the kill: {e}");
                }
                settle(model, vec![(visitor, target)], false);
                return;
            }
        }
    }
}

/// Batches of 1 to 20 events to `POST /events/batch`.
async fn send_batches(
    client: &reqwest::Client,
    base: &str,
    model: &Mutex<Model>,
    next: NextEvent<'_>,
) {
    let url = format!("{base}/events/batch");
    for n in 0.. {
        let events: Vec<(String, String)> = (0..1 + n % 20).map(|_| next()).collect();
        let body: Vec<Value> = events
            .iter()
            .map(|(v, u)| json!({ "visitor": v, "url": u }))
            .collect();
        match client.post(&url).json(&body).send().await {
            Ok(response) if response.status() == 202 => {
                let reply: Value = response.json().await.unwrap();
                assert_eq!(reply["accepted"], events.len(), "{reply}");
                settle(model, events, true);
            }
            Ok(response) => panic!("unexpected answer {}", response.status()),
            Err(_) => return settle(model, events, false),
        }
    }
}

/// Single events and arrays of up to 10 on `GET /events/ws?ack=true`,
/// each message acknowledged before the next is sent.
async fn send_on_websocket(base: &str, model: &Mutex<Model>, next: NextEvent<'_>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let url = format!("{}/events/ws?ack=true", base.replacen("http", "ws", 1));
    // On a loaded machine the kill can come before the handshake ends:
    // then nothing was sent, and there is nothing to settle.
    let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url).await else {
        return;
    };
    for n in 0u64.. {
        let events: Vec<(String, String)> = (0..1 + n % 10).map(|_| next()).collect();
        let json: Vec<Value> = events
            .iter()
            .map(|(v, u)| json!({ "visitor": v, "url": u }))
            .collect();
        let text = if json.len() == 1 {
            json[0].to_string()
        } else {
            Value::from(json).to_string()
        };
        if socket.send(Message::text(text)).await.is_err() {
            return settle(model, events, false);
        }
        let answer = tokio::time::timeout(Duration::from_secs(10), socket.next()).await;
        match answer {
            Ok(Some(Ok(Message::Text(ack)))) => {
                let ack: Value = serde_json::from_str(&ack).unwrap();
                assert_eq!(ack["accepted"], events.len(), "{ack}");
                settle(model, events, true);
            }
            Ok(Some(Ok(other))) => panic!("unexpected message {other:?}"),
            _ => return settle(model, events, false),
        }
    }
}

fn durable_args<'a>(dir: &'a Path, fsync: &'a str) -> Vec<&'a str> {
    vec![
        "--data-dir",
        dir.to_str().unwrap(),
        "--fsync",
        fsync,
        // Snapshots and log rotation often, so kills land in them too.
        "--snapshot-every",
        "100ms",
        "--snapshot-log-size",
        "16KiB",
    ]
}

async fn crash_rounds(fsync: &str, seed: u64) {
    const ROUNDS: u64 = 5;
    const PAGES: u64 = 24;
    let tmp = tempfile::tempdir().unwrap();
    // Not created yet: the service creates it.
    let dir = tmp.path().join("data");
    let args = durable_args(&dir, fsync);
    let client = client();
    let model = Arc::new(Mutex::new(Model::default()));
    let mut rng = seed;
    let mut snapshots = 0;
    for round in 0..ROUNDS {
        if round == 2 {
            // A crash during recovery itself.
            let mut early = Server::start(TRACKER_HTTP, &args);
            tokio::time::sleep(Duration::from_millis(xorshift(&mut rng) % 20)).await;
            tokio::task::block_in_place(|| early.kill_9());
        }
        let mut server = Server::start(TRACKER_HTTP, &args);
        server.wait_ready(&client, READY_WITHIN).await;
        check_and_settle(&client, &server, &model, PAGES).await;
        let kill_after = Duration::from_millis(xorshift(&mut rng) % 750);
        let acked = ingest_then_kill(&mut server, &client, &model, rng, kill_after).await;
        let unknown = model.lock().unwrap().unknown.len();
        let written = server.lines("snapshot written").len();
        snapshots += written;
        eprintln!(
            "{fsync} round {round}: {acked} events acknowledged, killed {kill_after:?} after a snapshot, \
             {written} snapshots written, {unknown} requests cut off by kill -9"
        );
        assert!(acked > 0, "round {round} acknowledged nothing");
    }
    // The kills landed among snapshots and log rotations, not only between.
    assert!(
        snapshots >= ROUNDS as usize,
        "only {snapshots} snapshots in {ROUNDS} rounds"
    );

    // Last: a graceful stop writes a final snapshot that covers
    // everything, so the next start replays nothing.
    let mut server = Server::start(TRACKER_HTTP, &args);
    server.wait_ready(&client, READY_WITHIN).await;
    check_and_settle(&client, &server, &model, PAGES).await;
    server.signal("TERM");
    let status = tokio::task::block_in_place(|| server.wait(EXIT_WITHIN));
    assert_eq!(status.code(), Some(0));
    // (The final snapshot may have nothing left to cover: the 100 ms
    // schedule can take it first. Either way nothing is left to replay.)
    let server = Server::start(TRACKER_HTTP, &args);
    server.wait_ready(&client, READY_WITHIN).await;
    check_and_settle(&client, &server, &model, PAGES).await;
    let stats = json_of(client.get(server.url("/stats"))).await;
    assert_eq!(stats["pairs"], model.lock().unwrap().acked.pairs());
    assert_eq!(
        stats["persistence"]["recovery"]["replayed_events"], 0,
        "{stats}"
    );
    assert!(stats["persistence"]["recovery"]["snapshot"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_event_with_fsync_always() {
    crash_rounds("always", 0xA1A1_0006).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_event_with_fsync_interval() {
    crash_rounds("interval", 0x1D7E_0006).await;
}

/// Sends `events` events one after another (all acknowledged) over
/// `pages` pages, into `model`.
async fn ingest_sequentially(
    server: &Server,
    client: &reqwest::Client,
    model: &Mutex<Model>,
    events: u64,
    pages: u64,
) {
    for i in 0..events {
        let (visitor, url) = (format!("v{i}"), page(i % pages));
        let response = post_event(client, server, &visitor, &url).await.unwrap();
        assert_eq!(response.status(), 202);
        model.lock().unwrap().ack(visitor, url);
    }
}

/// Starts the service with `args` (no frequent snapshots, so the events
/// stay in the log), acknowledges `events` events on 5 pages one after
/// another, and kills it with `kill -9`: what was acknowledged.
async fn logged_then_killed(args: &[&str], client: &reqwest::Client, events: u64) -> Mutex<Model> {
    let model = Mutex::new(Model::default());
    let mut server = Server::start(TRACKER_HTTP, args);
    server.wait_ready(client, READY_WITHIN).await;
    ingest_sequentially(&server, client, &model, events, 5).await;
    tokio::task::block_in_place(|| server.kill_9());
    model
}

/// The newest file of `dir` whose name starts with `prefix`.
fn newest(dir: &Path, prefix: &str) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        .collect();
    files.sort();
    files
        .pop()
        .unwrap_or_else(|| panic!("no {prefix}* in {}", dir.display()))
}

/// The `error` field of the line that says why the service stopped.
fn stop_reason(logs: &[Value]) -> String {
    logs.iter()
        .find(|e| e["message"] == "tracker-http stopped")
        .map(|e| e["error"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no stop reason in {logs:?}"))
}

/// Where a segment's frames end: before the zeros that the log writes
/// ahead of them under `--fsync always` (a frame never ends in a zero
/// byte: it ends with its URL).
fn frames_end(segment: &[u8]) -> usize {
    segment.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_log_tail_is_cut_with_a_warning_and_nothing_acknowledged_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let args = durable_args(&dir, "always");
    let args = &args[..4];
    let client = client();
    let model = logged_then_killed(args, &client, 100).await;

    // A write cut short: a frame header promising 64 bytes, and 3 of them,
    // where the next frame goes (under `always` the file runs on in
    // zeros written ahead, which the torn tail then includes).
    let segment = newest(&dir.join("log"), "log-");
    let mut bytes = std::fs::read(&segment).unwrap();
    let end = frames_end(&bytes);
    let torn = [64, 0, 0, 0, 0xAB, 0xCD, 0xEF, 0x01, 1, 2, 3];
    if bytes.len() < end + torn.len() {
        bytes.resize(end + torn.len(), 0);
    }
    bytes[end..end + torn.len()].copy_from_slice(&torn);
    std::fs::write(&segment, &bytes).unwrap();
    let torn_bytes = (bytes.len() - end) as u64;

    let server = Server::start(TRACKER_HTTP, args);
    server.wait_ready(&client, READY_WITHIN).await;
    // Logged before it was ready, but read from its pipe by another thread.
    let torn = "truncated a torn tail of the event log (a write cut short by a crash; nothing acknowledged is lost)";
    tokio::task::block_in_place(|| server.wait_logged(torn, WITHIN));
    let warned = server.lines(torn);
    assert_eq!(warned.len(), 1);
    assert_eq!(warned[0]["bytes"], torn_bytes);
    assert_eq!(warned[0]["level"], "WARN");
    check_and_settle(&client, &server, &model, 5).await;
    let stats = json_of(client.get(server.url("/stats"))).await;
    assert_eq!(
        stats["persistence"]["recovery"]["torn_tail_bytes"],
        torn_bytes
    );
    assert_eq!(stats["persistence"]["recovery"]["replayed_events"], 100);
}

/// Under `always` the log writes zeros ahead of its frames; `kill -9`
/// leaves them, and the restart cuts them off as the log's end (said in
/// the log and in `/stats`), not as a loss or a torn tail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeros_left_ahead_of_the_log_by_kill_9_are_cut_off_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let args = durable_args(&dir, "always");
    let args = &args[..4];
    let client = client();
    let model = logged_then_killed(args, &client, 50).await;
    let segment = std::fs::read(newest(&dir.join("log"), "log-")).unwrap();
    let zeros = (segment.len() - frames_end(&segment)) as u64;
    assert!(zeros > 0, "no zeros ahead of the frames under always");

    let server = Server::start(TRACKER_HTTP, args);
    server.wait_ready(&client, READY_WITHIN).await;
    let cut = "cut off the zeros the event log had written ahead of its frames (left by a stop without a clean close; not a loss)";
    tokio::task::block_in_place(|| server.wait_logged(cut, WITHIN));
    let logged = server.lines(cut);
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0]["bytes"], zeros);
    let stats = json_of(client.get(server.url("/stats"))).await;
    let recovery = &stats["persistence"]["recovery"];
    assert_eq!(recovery["zero_tail_bytes"], zeros);
    assert_eq!(recovery["torn_tail_bytes"], 0);
    assert_eq!(recovery["replayed_events"], 50);
    check_and_settle(&client, &server, &model, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_mid_log_stops_start_up_and_salvage_starts_from_what_is_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let args = durable_args(&dir, "always")[..4].to_vec();
    let client = client();
    let model = Mutex::new(Model::default());
    let mut server = Server::start(TRACKER_HTTP, &args);
    server.wait_ready(&client, READY_WITHIN).await;
    ingest_sequentially(&server, &client, &model, 200, 4).await;
    tokio::task::block_in_place(|| server.kill_9());

    let segment = newest(&dir.join("log"), "log-");
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = frames_end(&bytes) / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&segment, &bytes).unwrap();

    // Without --salvage-log: a clear error naming the file and offset, a
    // failure exit, and the log left as it was for an operator.
    let (status, logs) = tokio::task::block_in_place(|| run_to_exit(&args, EXIT_WITHIN));
    assert_eq!(status.code(), Some(1));
    let reason = stop_reason(&logs);
    assert!(
        reason.contains("corrupt file") && reason.contains(segment.to_str().unwrap()),
        "{reason}"
    );
    assert_eq!(
        std::fs::read(&segment).unwrap(),
        bytes,
        "the failed start changed nothing"
    );

    // With it: starts, keeps the events before the damage, says what it
    // dropped.
    let mut salvaging = args.clone();
    salvaging.push("--salvage-log");
    let server = Server::start(TRACKER_HTTP, &salvaging);
    server.wait_ready(&client, READY_WITHIN).await;
    let salvaged = "--salvage-log: dropped damaged log bytes and the events in them";
    tokio::task::block_in_place(|| server.wait_logged(salvaged, WITHIN));
    let dropped = server.lines(salvaged);
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0]["level"], "ERROR");
    let stats = json_of(client.get(server.url("/stats"))).await;
    let kept = stats["pairs"].as_u64().unwrap();
    assert!(0 < kept && kept < 200, "kept {kept} of 200");
    assert!(
        stats["persistence"]["recovery"]["salvaged_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    // The events before the damage are the first ones sent, in order.
    for n in 0..4 {
        let expected = (0..kept).filter(|i| i % 4 == n).count() as u64;
        assert_eq!(distinct(&client, &server, &page(n)).await, expected);
    }
    drop(server);
    // The log was cut: an ordinary start works again.
    let server = Server::start(TRACKER_HTTP, &args);
    server.wait_ready(&client, READY_WITHIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_another_format_version_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let args = durable_args(&dir, "interval")[..4].to_vec();
    let client = client();
    let model = Mutex::new(Model::default());
    let mut server = Server::start(TRACKER_HTTP, &args);
    server.wait_ready(&client, READY_WITHIN).await;
    ingest_sequentially(&server, &client, &model, 10, 2).await;
    server.signal("TERM");
    assert_eq!(
        tokio::task::block_in_place(|| server.wait(EXIT_WITHIN)).code(),
        Some(0)
    );
    assert!(server.logged("final snapshot written"));

    // The header's version field (after the 8-byte magic), as a newer
    // release would write it.
    let snapshot = newest(&dir.join("snapshots"), "snapshot-");
    let mut bytes = std::fs::read(&snapshot).unwrap();
    bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&snapshot, &bytes).unwrap();
    let (status, logs) = tokio::task::block_in_place(|| run_to_exit(&args, EXIT_WITHIN));
    assert_eq!(status.code(), Some(1));
    let reason = stop_reason(&logs);
    assert!(reason.contains("version 99"), "{reason}");
    assert!(reason.contains(snapshot.to_str().unwrap()), "{reason}");
}

#[test]
fn a_data_dir_that_cannot_be_a_directory_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let inside = file.join("data");
    let (status, logs) = run_to_exit(&["--data-dir", inside.to_str().unwrap()], EXIT_WITHIN);
    assert_eq!(status.code(), Some(1));
    let reason = stop_reason(&logs);
    assert!(reason.contains(inside.to_str().unwrap()), "{reason}");
    assert!(
        reason.to_lowercase().contains("not a directory"),
        "{reason}"
    );
}

#[test]
fn a_read_only_file_system_is_a_clear_error() {
    let Some(mount) = Tmpfs::mount("ro,size=1m") else {
        return;
    };
    let dir = mount.path().join("data");
    let (status, logs) = run_to_exit(&["--data-dir", dir.to_str().unwrap()], EXIT_WITHIN);
    assert_eq!(status.code(), Some(1));
    let reason = stop_reason(&logs);
    assert!(reason.contains("Read-only file system"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_service_on_the_same_data_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let client = client();
    let server = Server::start(TRACKER_HTTP, &["--data-dir", dir]);
    server.wait_ready(&client, READY_WITHIN).await;
    let (status, logs) =
        tokio::task::block_in_place(|| run_to_exit(&["--data-dir", dir], EXIT_WITHIN));
    assert_eq!(status.code(), Some(1));
    assert!(stop_reason(&logs).contains("in use by another process"));
    // The first one is undisturbed.
    let response = post_event(&client, &server, "v", "https://example.com/")
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_events_with_503_and_loses_nothing_acknowledged() {
    let Some(mount) = Tmpfs::mount("size=256k") else {
        return;
    };
    let dir = mount.path().join("data");
    let args = ["--data-dir", dir.to_str().unwrap(), "--fsync", "always"];
    let client = client();
    let model = Mutex::new(Model::default());
    let mut server = Server::start(TRACKER_HTTP, &args);
    server.wait_ready(&client, READY_WITHIN).await;
    // Long URLs fill 256 KiB in a few hundred events.
    let filler = "x".repeat(1500);
    let mut refused = None;
    for i in 0..2_000u64 {
        let (visitor, url) = (
            format!("v{i}"),
            format!("https://example.com/{filler}/{}", i % 3),
        );
        let response = post_event(&client, &server, &visitor, &url).await.unwrap();
        if response.status() == 202 {
            model.lock().unwrap().ack(visitor, url);
            continue;
        }
        refused = Some((response.status(), response.json::<Value>().await.unwrap()));
        break;
    }
    let (status, body) = refused.expect("the disk filled up");
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "storage_failed", "{body}");
    // Still serving reads, with every acknowledged event.
    let acked = model.lock().unwrap().acked.pairs();
    assert!(acked > 0);
    let stats = json_of(client.get(server.url("/stats"))).await;
    assert!(stats["pairs"].as_u64().unwrap() >= acked);
    tokio::task::block_in_place(|| server.kill_9());

    // Restarted on the still-full disk: everything acknowledged is back.
    let server = Server::start(TRACKER_HTTP, &args);
    server.wait_ready(&client, READY_WITHIN).await;
    for n in 0..3 {
        let url = format!("https://example.com/{filler}/{n}");
        let expected = model.lock().unwrap().acked.count(&url);
        let got = distinct(&client, &server, &url).await;
        // The refused event may have been kept (it was counted in memory
        // before its append failed), never one fewer than acknowledged.
        assert!(
            got == expected || got == expected + 1,
            "{url}: {got} vs {expected}"
        );
    }
}
