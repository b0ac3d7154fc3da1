//! A cluster of real processes: Debian's `nats-server` with JetStream and
//! `tracker-http --nats` nodes, started here. Events are checked against
//! a model of the acknowledged ones (a 202) and of the ones in doubt (sent
//! to a node that was killed meanwhile: published or not), through
//! concurrent ingest, a `kill -9` of a node, a batch, a node joining, a
//! back-dated batch counted over time ranges, a restart of the NATS server
//! and a node leaving on SIGTERM; then the NATS store is scanned for
//! visitor ids. And a query asked as a node is killed answers once the
//! new owner serves; a batch sent while NATS is down is a 503, not a
//! 202; a node that cannot reach NATS says it is joining; events an owner refuses are counted on `/metrics`;
//! a browser whose views reach two nodes and a restarted one is one
//! visitor (the nodes share the visitor-id salt); events that stop where
//! they arrive are counted on every node's `/stats`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use test_support::nats::Nats;
use test_support::process::Server;
use test_support::{poll, xorshift};

use crate::TRACKER_HTTP;
use crate::browsers::urlencode;

const PARTITIONS: u32 = 12;
/// Every visitor id starts with this; the NATS store must never hold it.
const VISITOR: &str = "cluster-visitor-";
/// Takeovers, joins and reconnections all finish within this.
const SETTLE: Duration = Duration::from_secs(60);

fn node(nats: &Nats, id: &str) -> Server {
    node_with(nats, id, &["--lease-ttl", "2s"])
}

/// A node with `args` (`--lease-ttl` among them, `--partitions` if not
/// the tests' own) added to the cluster's.
fn node_with(nats: &Nats, id: &str, args: &[&str]) -> Server {
    let (url, partitions) = (nats.url(), PARTITIONS.to_string());
    let mut all = vec![
        "--nats",
        &url,
        "--cluster",
        "it",
        "--node-id",
        id,
        "--partition-snapshot-every",
        "300ms",
    ];
    if !args.contains(&"--partitions") {
        all.extend(["--partitions", &partitions]);
    }
    all.extend_from_slice(args);
    Server::start(TRACKER_HTTP, &all)
}

/// Acknowledged events, and events in doubt.
#[derive(Default)]
struct Model {
    acked: BTreeMap<String, BTreeSet<String>>,
    doubt: BTreeMap<String, BTreeSet<String>>,
}

impl Model {
    /// Each page's count must lie between its acknowledged visitors and
    /// those plus the ones in doubt.
    fn check(&self, counts: &BTreeMap<String, u64>, who: &str) -> Result<(), String> {
        for (url, visitors) in &self.acked {
            let low = visitors.len() as u64;
            let high = visitors
                .union(self.doubt.get(url).unwrap_or(&BTreeSet::new()))
                .count() as u64;
            let got = counts.get(url).copied().unwrap_or(0);
            if !(low..=high).contains(&got) {
                return Err(format!(
                    "{who}: {url} counts {got}, expected {low}..={high}"
                ));
            }
        }
        Ok(())
    }

    fn site(&self, site: &str) -> (u64, u64, u64) {
        let of = |m: &BTreeMap<String, BTreeSet<String>>| -> BTreeSet<String> {
            m.iter()
                .filter(|(u, _)| u.contains(&format!("//{site}/")))
                .flat_map(|(_, v)| v.iter().cloned())
                .collect()
        };
        let low = of(&self.acked);
        let sum = self
            .acked
            .iter()
            .filter(|(u, _)| u.contains(&format!("//{site}/")))
            .map(|(_, v)| v.len() as u64)
            .sum();
        (
            low.len() as u64,
            low.union(&of(&self.doubt)).count() as u64,
            sum,
        )
    }
}

/// Posts `n` events from a seeded generator to `server`; a 202 goes to
/// the acknowledged model, anything else (the node was killed) to doubt.
async fn ingest(
    client: reqwest::Client,
    url: String,
    model: Arc<Mutex<Model>>,
    seed: u64,
    n: usize,
) {
    let mut rng = seed;
    for _ in 0..n {
        let r = xorshift(&mut rng);
        let (visitor, page) = (
            format!("{VISITOR}{}", r % 80),
            format!("https://s{}.example/p{}", (r >> 8) % 2, (r >> 16) % 20),
        );
        let sent = client
            .post(&url)
            .json(&serde_json::json!({"visitor": visitor, "url": page}))
            .send()
            .await;
        let mut model = model.lock().unwrap();
        let target = match sent {
            Ok(r) if r.status() == 202 => &mut model.acked,
            _ => &mut model.doubt,
        };
        target.entry(page).or_default().insert(visitor);
    }
}

/// A GET's JSON answer, or why there is none: the URL with the
/// transport error, or with the status and body of an answer that is not
/// a 200 with JSON, and when (to find it in the nodes' logs).
async fn fetch(client: &reqwest::Client, url: &str) -> Result<Value, String> {
    let r = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url} at {}: {e}", utc_now()))?;
    let status = r.status();
    let body = r
        .text()
        .await
        .map_err(|e| format!("GET {url} at {}: {status}, body: {e}", utc_now()))?;
    if status != 200 {
        return Err(format!("GET {url} at {}: {status} {body}", utc_now()));
    }
    serde_json::from_str(&body).map_err(|e| format!("GET {url}: {status}, not JSON ({e}): {body}"))
}

/// A GET that must answer 200 with JSON. A 503 `cluster_unavailable`
/// (a partition between owners, "retry shortly") is retried for up to
/// [`SETTLE`], as a client would: a rebalance may still move partitions
/// after the counts agree (one such answer failed a fresh-clone run).
async fn get(client: &reqwest::Client, url: String) -> Value {
    poll::until_ok_async(SETTLE, &format!("GET {url}"), || async {
        match fetch(client, &url).await {
            Err(e) if e.contains("\"cluster_unavailable\"") => Err(e),
            answer => Ok(answer),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Sends `request` (a POST of events), which must be answered 202, and
/// returns its JSON body (`null` when empty, as `POST /events` answers).
async fn accepted(request: reqwest::RequestBuilder) -> Value {
    let r = request.send().await.unwrap_or_else(|e| panic!("{e}"));
    let (url, status) = (r.url().clone(), r.status());
    let body = r.text().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(status, 202, "POST {url} at {}: {body}", utc_now());
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("POST {url}: not JSON ({e}): {body}"))
}

/// Posts `events` to `server`'s `/events/batch` as a JSON array; every
/// one must be accepted.
async fn send_batch(client: &reqwest::Client, server: &Server, events: &[Value]) {
    let reply = accepted(client.post(server.url("/events/batch")).json(events)).await;
    assert_eq!(reply["accepted"], events.len(), "{reply}");
}

/// Waits until `server` answers `path` (a `/distinct` question) with
/// `visitors` distinct visitors.
async fn until_visitors(client: &reqwest::Client, server: &Server, path: &str, visitors: u64) {
    poll::until_ok_async(SETTLE, "every event applied", || async {
        let answer = fetch(client, &server.url(path)).await?;
        match answer["distinct_visitors"].as_u64() {
            Some(n) if n == visitors => Ok(()),
            _ => Err(answer.to_string()),
        }
    })
    .await;
}

/// The time of day, UTC, as the nodes' JSON logs write it.
fn utc_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let s = now.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        now.subsec_millis()
    )
}

/// Every page's count through `server`, or why not yet (a partition
/// missing or catching up).
async fn counts(
    client: &reqwest::Client,
    server: &Server,
) -> Result<BTreeMap<String, u64>, String> {
    let body = fetch(client, &server.url("/pages?limit=1000")).await?;
    if body["cluster"]["pending_events"] != 0 || body["next_cursor"] != Value::Null {
        return Err(format!("{}: catching up: {body}", server.url("")));
    }
    Ok(body["pages"]
        .as_array()
        .ok_or_else(|| format!("no pages: {body}"))?
        .iter()
        .map(|p| {
            (
                p["url"].as_str().unwrap().to_string(),
                p["distinct_visitors"].as_u64().unwrap(),
            )
        })
        .collect())
}

/// Waits until every one of `servers` answers counts within the model.
async fn settle(client: &reqwest::Client, servers: &[&Server], model: &Mutex<Model>, what: &str) {
    poll::until_ok_async(SETTLE, what, || async {
        for server in servers {
            let counts = counts(client, server).await?;
            model.lock().unwrap().check(&counts, &server.url(""))?;
        }
        Ok::<_, String>(())
    })
    .await;
}

async fn owned(client: &reqwest::Client, server: &Server) -> Result<usize, String> {
    let stats = fetch(client, &server.url("/stats")).await?;
    stats["cluster"]["owned_partitions"]
        .as_array()
        .map(Vec::len)
        .ok_or_else(|| format!("no owned partitions: {stats}"))
}

/// Waits until `servers` own every partition between them.
async fn own_all(client: &reqwest::Client, servers: &[&Server], what: &str) {
    poll::until_ok_async(SETTLE, what, || async {
        let mut total = 0;
        for server in servers {
            total += owned(client, server).await?;
        }
        match total == PARTITIONS as usize {
            true => Ok(()),
            false => Err(format!("{total} of {PARTITIONS} owned")),
        }
    })
    .await;
}

/// The nodes' logs about partitions (taken, released, lost) and every
/// warning, printed when the test fails: which partition moved when.
#[derive(Default)]
struct Trail(Vec<(String, Arc<Mutex<Vec<Value>>>)>);

impl Trail {
    fn follow(&mut self, name: &str, server: &Server) {
        self.0.push((name.to_string(), server.logs.clone()));
    }
}

impl Drop for Trail {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut lines: Vec<(String, String)> = Vec::new();
        for (name, logs) in &self.0 {
            for line in logs.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                if line.get("partition").is_some() || line["level"] != "INFO" {
                    let time = line["timestamp"].as_str().unwrap_or("").to_string();
                    lines.push((time, format!("{name}: {line}")));
                }
            }
        }
        lines.sort();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "the nodes' partition and warning logs:");
        for (_, line) in lines {
            let _ = writeln!(err, "  {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_loses_nothing_acknowledged() {
    let Some(mut nats) = Nats::start() else {
        return;
    };
    let client = reqwest::Client::new();
    // Declared before the nodes, so dropped after them: their logs are
    // complete when a failure prints them.
    let mut trail = Trail::default();
    let mut nodes: Vec<Server> = ["n0", "n1", "n2"]
        .iter()
        .map(|id| node(&nats, id))
        .collect();
    for (i, n) in nodes.iter().enumerate() {
        trail.follow(&format!("n{i}"), n);
        n.wait_ready(&client, SETTLE).await;
    }
    poll::until_ok_async(SETTLE, "3 nodes share the partitions", || async {
        let mut shares = Vec::new();
        for n in &nodes {
            shares.push(owned(&client, n).await?);
        }
        match !shares.contains(&0) && shares.iter().sum::<usize>() == PARTITIONS as usize {
            true => Ok(()),
            false => Err(format!("shares {shares:?}")),
        }
    })
    .await;

    // Concurrent ingest through every node; n2 is killed midway.
    let model = Arc::new(Mutex::new(Model::default()));
    let tasks: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            tokio::spawn(ingest(
                client.clone(),
                n.url("/events"),
                model.clone(),
                0x9e37_79b9 + i as u64,
                if i == 2 { 400 } else { 150 },
            ))
        })
        .collect();
    poll::until_async(SETTLE, "n2 acknowledged some events", || async {
        model
            .lock()
            .unwrap()
            .acked
            .values()
            .map(BTreeSet::len)
            .sum::<usize>()
            > 60
    })
    .await;
    nodes[2].kill_9();
    for task in tasks {
        task.await.unwrap();
    }
    let survivors = [&nodes[0], &nodes[1]];
    settle(
        &client,
        &survivors,
        &model,
        "survivors count every acknowledged event",
    )
    .await;
    own_all(&client, &survivors, "n0 and n1 own every partition").await;

    // A site is a union of its pages' visitors, not a sum.
    for site in ["s0.example", "s1.example"] {
        let (low, high, sum) = model.lock().unwrap().site(site);
        let body = get(&client, nodes[1].url(&format!("/distinct?site={site}"))).await;
        let got = body["distinct_visitors"].as_u64().unwrap();
        assert!(
            (low..=high).contains(&got),
            "{site}: {got} not in {low}..={high}"
        );
        assert!(
            got < sum,
            "{site}: a union ({got}) is less than the sum ({sum})"
        );
    }

    // A node joining takes a share.
    nodes.push(node(&nats, "n3"));
    trail.follow("n3", &nodes[3]);
    poll::until_ok_async(SETTLE, "n3 takes a share of the partitions", || async {
        match owned(&client, &nodes[3]).await? {
            k if k >= 2 => Ok(()),
            k => Err(format!("n3 owns {k}")),
        }
    })
    .await;
    // A batch larger than a node's window of unawaited publishes.
    let batch: Vec<(String, String)> = (0..3000)
        .map(|i| {
            (
                format!("{VISITOR}b{i}"),
                format!("https://s1.example/b{}", i % 7),
            )
        })
        .collect();
    let body: String = batch
        .iter()
        .map(|(v, u)| serde_json::json!({"visitor": v, "url": u}).to_string() + "\n")
        .collect();
    let reply = accepted(
        client
            .post(nodes[3].url("/events/batch"))
            .header("content-type", "application/x-ndjson")
            .body(body),
    )
    .await;
    assert_eq!(reply["accepted"], 3000, "{reply}");
    for (v, u) in batch {
        model.lock().unwrap().acked.entry(u).or_default().insert(v);
    }
    let live = [&nodes[0], &nodes[1], &nodes[3]];
    settle(
        &client,
        &live,
        &model,
        "every node answers the same after the join",
    )
    .await;

    back_dated(&client, &live).await;

    // A NATS server restart loses nothing acknowledged.
    nats.restart();
    for (i, n) in live.iter().enumerate() {
        let (client, url, model) = (client.clone(), n.url("/events"), model.clone());
        // Until the nodes have reconnected, events are refused (503, in
        // doubt); then acknowledged again.
        ingest(client, url, model, 0x51ed + i as u64, 60).await;
    }
    settle(&client, &live, &model, "counts after the NATS restart").await;
    let acked: usize = model
        .lock()
        .unwrap()
        .acked
        .values()
        .map(BTreeSet::len)
        .sum();
    assert!(
        acked > 150,
        "enough events were acknowledged to mean something"
    );

    // A node stopped by SIGTERM hands its partitions over (final
    // snapshots, released leases) and exits cleanly.
    nodes[0].signal("TERM");
    assert!(nodes[0].wait(SETTLE).success());
    assert!(nodes[0].logged("left the cluster"));
    let rest = [&nodes[1], &nodes[3]];
    own_all(&client, &rest, "n1 and n3 own every partition").await;
    settle(&client, &rest, &model, "counts after a graceful leave").await;

    // The stream, leases and snapshots hold visitor hashes, never ids.
    let mut files = vec![nats.dir().to_path_buf()];
    let mut scanned = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if let Ok(bytes) = std::fs::read(&path) {
            scanned += bytes.len();
            assert!(
                !bytes
                    .windows(VISITOR.len())
                    .any(|w| w == VISITOR.as_bytes()),
                "a visitor id in {}",
                path.display()
            );
        }
    }
    assert!(
        scanned > 10_000,
        "the NATS store was scanned ({scanned} bytes)"
    );
}

/// A query asked as a node is killed waits for the new owner of the
/// node's partitions, and answers 200 with the count: the query timeout
/// follows the lease TTL. A 9 s TTL, renewed every 3 s, expires at least
/// about 6 s after the kill: longer than the fixed 5 s a query used to
/// wait before its 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_during_a_crash_takeover_answers_once_the_new_owner_serves() {
    let Some(nats) = Nats::start() else {
        return;
    };
    let client = reqwest::Client::new();
    let mut trail = Trail::default();
    let survivor = node_with(&nats, "k0", &["--lease-ttl", "9s"]);
    let mut killed = node_with(&nats, "k1", &["--lease-ttl", "9s"]);
    for (name, n) in [("k0", &survivor), ("k1", &killed)] {
        trail.follow(name, n);
        n.wait_ready(&client, SETTLE).await;
    }
    poll::until_ok_async(SETTLE, "both nodes own a share", || async {
        let shares = [
            owned(&client, &survivor).await?,
            owned(&client, &killed).await?,
        ];
        match !shares.contains(&0) && shares.iter().sum::<usize>() == PARTITIONS as usize {
            true => Ok(()),
            false => Err(format!("shares {shares:?}")),
        }
    })
    .await;
    // Page i has i % 3 + 1 of the site's 3 visitors; 48 pages span every
    // partition.
    let mut model = Model::default();
    for i in 0..48 {
        let url = format!("https://k.example/p{i}");
        let visitors = (0..=i % 3).map(|v| format!("{VISITOR}k{v}"));
        model.acked.insert(url, visitors.collect());
    }
    let body: String = model
        .acked
        .iter()
        .flat_map(|(u, vs)| vs.iter().map(move |v| (u, v)))
        .map(|(u, v)| serde_json::json!({"visitor": v, "url": u}).to_string() + "\n")
        .collect();
    accepted(
        client
            .post(survivor.url("/events/batch"))
            .header("content-type", "application/x-ndjson")
            .body(body),
    )
    .await;
    let model = Mutex::new(model);
    settle(&client, &[&survivor], &model, "every event counted").await;

    // A page of a partition the killed node owns.
    let stats = get(&client, killed.url("/stats")).await;
    let theirs: Vec<u64> = stats["cluster"]["owned_partitions"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let (page, visitors) = model
        .lock()
        .unwrap()
        .acked
        .iter()
        .find(|(u, _)| theirs.contains(&u64::from(tracker_cluster::partition_of(u, PARTITIONS))))
        .map(|(u, vs)| (u.clone(), vs.len() as u64))
        .unwrap_or_else(|| panic!("no page in k1's partitions {stats}"));

    let page_url = survivor.url(&format!("/distinct?url={}", urlencode(&page)));
    let site_url = survivor.url("/distinct?site=k.example");
    killed.kill_9();
    let asked = std::time::Instant::now();
    let (page_count, site_count) =
        tokio::join!(fetch(&client, &page_url), fetch(&client, &site_url));
    let waited = asked.elapsed();
    let page_count = page_count.unwrap_or_else(|e| panic!("after {waited:?}: {e}"));
    let site_count = site_count.unwrap_or_else(|e| panic!("after {waited:?}: {e}"));
    assert_eq!(page_count["distinct_visitors"], visitors, "{page_count}");
    assert_eq!(site_count["distinct_visitors"], 3, "{site_count}");
    assert_eq!(
        site_count["cluster"]["partitions_answered"], PARTITIONS,
        "{site_count}"
    );
}

/// A batch JetStream does not acknowledge (NATS is down) is a 503
/// `cluster_unavailable` whole, as one event of `POST /events` is: a
/// 202 means every good event of it was taken. Before, it was a 202
/// `{"accepted": 0}` with each event refused `cluster_unavailable`,
/// which a sender reading the status took for acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_cluster_cannot_take_is_503_as_one_event_is() {
    let Some(mut nats) = Nats::start() else {
        return;
    };
    let client = reqwest::Client::new();
    let mut trail = Trail::default();
    let n = node(&nats, "u0");
    trail.follow("u0", &n);
    n.wait_ready(&client, SETTLE).await;
    let batch = serde_json::json!([
        {"visitor": format!("{VISITOR}a"), "url": "/u"},
        {"visitor": format!("{VISITOR}b"), "url": "javascript:x"},
    ]);
    let post = || client.post(n.url("/events/batch")).json(&batch);
    let reply = accepted(post()).await;
    assert_eq!(reply["accepted"], 1, "{reply}");
    assert_eq!(reply["refused"][0]["index"], 1, "{reply}");

    nats.stop();
    let one = client
        .post(n.url("/events"))
        .json(&batch[0])
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 503);
    let r = post().send().await.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "cluster_unavailable", "{body}");
    // The operator is told, at a level they watch.
    poll::until_async(SETTLE, "the lost connection is logged", || async {
        n.lines("NATS connection")
            .iter()
            .any(|l| l["level"] == "WARN" && l["event"] == "disconnected")
    })
    .await;

    nats.start_again();
    poll::until_ok_async(SETTLE, "a batch is taken again", || async {
        let r = post().send().await.map_err(|e| e.to_string())?;
        let status = r.status();
        let body = r.text().await.map_err(|e| e.to_string())?;
        match status.as_u16() {
            202 => {
                assert!(body.contains("\"accepted\":1"), "{body}");
                Ok(())
            }
            _ => Err(format!("{status} {body}")),
        }
    })
    .await;
}

/// A site's series over a month gathers a partial per day from every
/// partition, thousands of hashes: past a NATS server's `max_payload`
/// (32 KiB here, 1 MiB by default) an answer is sent in chunks and
/// joined, and the series is answered, exact, at once (before, the
/// answer went unsent and the series was a 503 after the query timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_series_larger_than_a_nats_message_is_answered() {
    let Some(nats) = Nats::start_with(Some(32 << 10)) else {
        return;
    };
    let client = reqwest::Client::new();
    let n = node(&nats, "m0");
    n.wait_ready(&client, SETTLE).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // 200 visitors a day for 30 days on two pages: at least 3,000 hashes
    // (about 60 KiB of JSON) in one partition's answer.
    for day in 1..=30u64 {
        let events: Vec<Value> = (0..200)
            .map(|i| {
                serde_json::json!({
                    "visitor": format!("{VISITOR}{day}-{i}"),
                    "url": format!("https://month.test/{}", i % 2),
                    "time": now - day * 86_400,
                })
            })
            .collect();
        send_batch(&client, &n, &events).await;
    }
    until_visitors(&client, &n, "/distinct?site=month.test", 6_000).await;
    let asked = std::time::Instant::now();
    let series = fetch(
        &client,
        &n.url("/series?site=month.test&from=-31d&till=now&step=1d"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let points = series["points"].as_array().unwrap();
    let counts: Vec<u64> = points
        .iter()
        .map(|p| p["distinct_visitors"].as_u64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 6_000, "{series}");
    assert_eq!(counts.iter().filter(|&&c| c == 200).count(), 30, "{series}");
    assert!(points.iter().all(|p| p["exact"] == true), "{series}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "answered without waiting out the query timeout: {:?}",
        asked.elapsed()
    );

    // One partition past 16,384 visitors, within its share of what a
    // gather brings (2M hashes over 12 partitions): still exact.
    for part in 0..2u64 {
        let events: Vec<Value> = (0..9_000)
            .map(|i| {
                serde_json::json!({
                    "visitor": format!("{VISITOR}more-{part}-{i}"),
                    "url": "https://month.test/0",
                    "time": now - 3_600,
                })
            })
            .collect();
        send_batch(&client, &n, &events).await;
    }
    poll::until_ok_async(SETTLE, "one partition past 16,384, exact", || async {
        let site = fetch(&client, &n.url("/distinct?site=month.test")).await?;
        match (site["distinct_visitors"].as_u64(), &site["exact"]) {
            (Some(24_000), Value::Bool(true)) => Ok(()),
            _ => Err(site.to_string()),
        }
    })
    .await;
}

/// A site whose visitors sit in one partition, past that partition's
/// share of a gather's exact hashes (16,384 of 128 partitions), is
/// exact all the same, over all time, over a range and per hour, as on
/// one node:
/// the partition is asked again for all it holds (before, a sketch's
/// estimate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_in_one_partition_past_its_share_is_exact() {
    let Some(nats) = Nats::start() else {
        return;
    };
    let client = reqwest::Client::new();
    let n = node_with(&nats, "s0", &["--lease-ttl", "2s", "--partitions", "128"]);
    n.wait_ready(&client, SETTLE).await;
    for part in 0..2 {
        let events: Vec<Value> = (0..10_000)
            .map(|i| {
                serde_json::json!({
                    "visitor": format!("{VISITOR}{part}-{i}"),
                    "url": "https://one.test/home",
                })
            })
            .collect();
        send_batch(&client, &n, &events).await;
    }
    until_visitors(&client, &n, "/distinct?url=https://one.test/home", 20_000).await;
    let site = fetch(&client, &n.url("/distinct?site=one.test"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(site["distinct_visitors"], 20_000, "{site}");
    assert_eq!(site["exact"], true, "{site}");
    assert_eq!(site["cluster"]["partitions_answered"], 128, "{site}");
    // And over a range (the last day, open-ended).
    let day = fetch(&client, &n.url("/distinct?site=one.test&from=-1d"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(day["distinct_visitors"], 20_000, "{day}");
    assert_eq!(day["exact"], true, "{day}");
    // And per hour: every point exact (each visitor came once).
    let series = fetch(&client, &n.url("/series?site=one.test&from=-1d&step=1h"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let points = series["points"].as_array().unwrap();
    assert!(points.iter().all(|p| p["exact"] == true), "{series}");
    let all: u64 = points
        .iter()
        .filter_map(|p| p["distinct_visitors"].as_u64())
        .sum();
    assert_eq!(all, 20_000, "{series}");
}

/// A node that cannot reach NATS has not joined its cluster: `/readyz`
/// and the routes are 503 `recovering`, saying it is joining (before,
/// "loading its data from disk", of a node that has none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_not_yet_joined_says_so() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let n = Server::start(TRACKER_HTTP, &["--nats", &url, "--cluster", "it"]);
    let client = reqwest::Client::new();
    for path in ["/readyz", "/distinct?url=/a"] {
        let r = client.get(n.url(path)).send().await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["error"]["code"], "recovering", "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("joining its cluster"), "{path}: {message}");
    }
}

/// Events acknowledged and then refused by their owner (its memory
/// budget is full, under the reject policy) are counted by reason on
/// `/metrics`, and warned about once per interval, not once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_stream_events_are_counted_and_warned_about_sparingly() {
    let Some(nats) = Nats::start() else {
        return;
    };
    let client = reqwest::Client::new();
    let mut trail = Trail::default();
    // 16 KiB a partition: room for a few hundred pairs.
    let budget = (16 * 1024 * PARTITIONS).to_string();
    let node = node_with(
        &nats,
        "r0",
        &[
            "--lease-ttl",
            "2s",
            "--stripes",
            "8",
            "--max-memory",
            &budget,
            "--memory-policy",
            "reject",
        ],
    );
    trail.follow("r0", &node);
    node.wait_ready(&client, SETTLE).await;
    own_all(&client, &[&node], "r0 owns every partition").await;
    const SENT: u64 = 3000;
    let body: String = (0..SENT)
        .map(|i| {
            serde_json::json!({"visitor": format!("{VISITOR}r{i}"), "url": "https://r.example/full"})
                .to_string()
                + "\n"
        })
        .collect();
    let reply = accepted(
        client
            .post(node.url("/events/batch"))
            .header("content-type", "application/x-ndjson")
            .body(body),
    )
    .await;
    assert_eq!(reply["accepted"], SENT, "{reply}");
    let series = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    // Every acknowledged event is either held or counted as refused.
    let refused = poll::until_ok_async(SETTLE, "every event applied", || async {
        let text = client
            .get(node.url("/metrics"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let pairs = series(&text, "tracker_pairs ");
        let refused = series(
            &text,
            "tracker_cluster_events_refused_total{reason=\"memory_full\"} ",
        );
        match pairs + refused == SENT {
            true => Ok(refused),
            false => Err(format!("{pairs} held, {refused} refused: {text}")),
        }
    })
    .await;
    assert!(refused > SENT / 2, "the budget refused most: {refused}");
    let warnings = node.lines("stream events refused");
    assert!(
        (1..=3).contains(&warnings.len()),
        "one warning per 10 s, not one per event: {warnings:?}"
    );
    assert_eq!(warnings[0]["level"], "WARN", "{warnings:?}");
    assert_eq!(warnings[0]["reason"], "memory_full", "{warnings:?}");
    let logs = node.logs.lock().unwrap();
    assert!(
        !logs.iter().any(|l| l.to_string().contains(VISITOR)),
        "no visitor id in the logs"
    );
}

/// Back-dated events (a batch, and one `POST /events` with a `time`) over
/// five past days on a site of their own, then through every node: a
/// page's `/series?step=1d` and ranged `/distinct` (from its owner), the
/// site's ranged `/distinct` (a union of partitions' partials, less than
/// the sum of its pages) and `/series`, and the ranged `/top` (merged),
/// each against a model of (visitor, page, day).
async fn back_dated(client: &reqwest::Client, nodes: &[&Server]) {
    const DAY: u64 = 86_400;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let first = (now / DAY - 8) * DAY;
    let page = |j: u64| format!("https://t.example/p{j}");
    // (visitor, page, day): visitors return on other pages and days.
    let events: Vec<(String, u64, u64)> = (0..90u64)
        .map(|i| (format!("{VISITOR}t{}", i % 23), (i * 7) % 5, i % 5))
        .collect();
    let line = |(v, j, d): &(String, u64, u64)| serde_json::json!({"visitor": v, "url": page(*j), "time": first + d * DAY + 3_600 + j});
    let (one, batch) = events.split_first().unwrap();
    let body: String = batch.iter().map(|e| line(e).to_string() + "\n").collect();
    let reply = accepted(
        client
            .post(nodes[0].url("/events/batch"))
            .header("content-type", "application/x-ndjson")
            .body(body),
    )
    .await;
    assert_eq!(reply["accepted"], batch.len(), "{reply}");
    accepted(client.post(nodes[1].url("/events")).json(&line(one))).await;

    let visitors = |pages: &dyn Fn(u64) -> bool, days: std::ops::Range<u64>| {
        events
            .iter()
            .filter(|(_, j, d)| pages(*j) && days.contains(d))
            .map(|(v, _, _)| v.as_str())
            .collect::<BTreeSet<_>>()
            .len() as u64
    };
    let at = |d: u64| first + d * DAY;
    // Days 1, 2 and 3.
    let (from, till) = (at(1), at(4));
    let site_count = visitors(&|_| true, 1..4);
    let pages_sum: u64 = (0..5).map(|j| visitors(&|p| p == j, 1..4)).sum();
    assert!(
        site_count < pages_sum,
        "the model has visitors on several pages"
    );
    let ranking = |days: std::ops::Range<u64>, k: usize| {
        let mut top: Vec<(String, u64)> = (0..5)
            .map(|j| (page(j), visitors(&|p| p == j, days.clone())))
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(k);
        top
    };
    let top = ranking(1..4, 3);
    // Every page over every day: once a node answers this, every event is
    // applied by its owner.
    let all = ranking(0..5, 5);
    let rows = |body: &Value| -> Vec<(String, u64)> {
        body["pages"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        (
                            p["url"].as_str().unwrap().to_string(),
                            p["distinct_visitors"].as_u64().unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };

    let values = |body: &Value, key: &str| -> Vec<u64> {
        body[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| p["distinct_visitors"].as_u64().unwrap())
                    .collect()
            })
            .unwrap_or_default()
    };
    for node in nodes {
        let who = node.url("");
        let page0 = urlencode(&page(0));
        let want_series: Vec<u64> = (0..5).map(|d| visitors(&|p| p == 0, d..d + 1)).collect();
        let want_site_series: Vec<u64> = (0..5).map(|d| visitors(&|_| true, d..d + 1)).collect();
        // Applying is asynchronous (an owner counts an event once it has
        // read it from the stream): wait until every page is counted.
        poll::until_ok_async(SETTLE, "back-dated events counted by range", || async {
            let url = node.url(&format!(
                "/top?site=t.example&limit=5&from={}&till={}",
                at(0),
                at(5)
            ));
            let ranked = fetch(client, &url).await?;
            match rows(&ranked) == all {
                true => Ok(()),
                false => Err(format!("{url}: {ranked}")),
            }
        })
        .await;
        let series = get(
            client,
            node.url(&format!(
                "/series?url={page0}&from={}&till={}&step=1d",
                at(0),
                at(5)
            )),
        )
        .await;
        assert_eq!(values(&series, "points"), want_series, "{who}: {series}");
        assert_eq!(series["step"], "1d", "{who}: {series}");
        assert_eq!(
            series["cluster"]["partitions_answered"], 1,
            "{who}: {series}"
        );

        let ranged = get(
            client,
            node.url(&format!("/distinct?url={page0}&from={from}&till={till}")),
        )
        .await;
        assert_eq!(
            ranged["distinct_visitors"],
            visitors(&|p| p == 0, 1..4),
            "{who}: {ranged}"
        );
        assert_eq!(ranged["exact"], true, "{who}: {ranged}");

        let site = get(
            client,
            node.url(&format!("/distinct?site=t.example&from={from}&till={till}")),
        )
        .await;
        assert_eq!(site["site"], "t.example", "{who}: {site}");
        assert_eq!(site["distinct_visitors"], site_count, "{who}: {site}");
        assert_eq!(site["exact"], true, "{who}: {site}");
        assert_eq!(
            site["cluster"]["partitions_answered"], PARTITIONS,
            "{who}: {site}"
        );

        let site_series = get(
            client,
            node.url(&format!(
                "/series?site=t.example&from={}&till={}&step=1d",
                at(0),
                at(5)
            )),
        )
        .await;
        assert_eq!(
            values(&site_series, "points"),
            want_site_series,
            "{who}: {site_series}"
        );
        // An open `from`: the latest 1000 days up to `till`, the same
        // start at the gate and every owner.
        for (query, want) in [
            (format!("url={page0}"), &want_series),
            ("site=t.example".to_string(), &want_site_series),
        ] {
            let latest = get(
                client,
                node.url(&format!("/series?{query}&till={}&step=1d", at(5))),
            )
            .await;
            let points = values(&latest, "points");
            assert_eq!(points.len(), 1000, "{who}: {query}");
            assert_eq!(&points[995..], &want[..], "{who}: {query}");
        }

        let ranked = get(
            client,
            node.url(&format!(
                "/top?site=t.example&limit=3&from={from}&till={till}"
            )),
        )
        .await;
        assert_eq!(rows(&ranked), top, "{who}: {ranked}");
        assert!(
            ranked["from"].is_string() && ranked["till"].is_string(),
            "{who}: {ranked}"
        );
    }
}

/// A browser (no visitor id: the node derives one from site, IP and user
/// agent) whose page views reach two nodes, and then a restarted node,
/// is one visitor: the nodes share the salt through JetStream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_through_two_nodes_and_a_restart_is_one_visitor() {
    let Some(nats) = Nats::start() else {
        return;
    };
    // The views must fall in one UTC day (one salt): not across midnight.
    let day_ms = 86_400_000;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let to_midnight = day_ms - now_ms % day_ms;
    if to_midnight < 180_000 {
        tokio::time::sleep(Duration::from_millis(to_midnight + 1000)).await;
    }
    let client = reqwest::Client::new();
    let mut trail = Trail::default();
    let mut first = node(&nats, "s0");
    let second = node(&nats, "s1");
    for (name, n) in [("s0", &first), ("s1", &second)] {
        trail.follow(name, n);
        n.wait_ready(&client, SETTLE).await;
    }
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0 ClusterSalt";
    let view = |server: &Server, path: &str| {
        client
            .post(server.url("/events"))
            .header("content-type", "application/json")
            .header("user-agent", ua)
            .body(serde_json::json!({"url": format!("https://salt.example{path}")}).to_string())
    };
    // Until every page is counted, then the site's visitors.
    let visitors = |pages: usize| {
        let client = &client;
        let second = &second;
        async move {
            poll::until_ok_async(SETTLE, "every page view counted", || async move {
                let counts = counts(client, second).await?;
                let seen = counts.keys().filter(|u| u.contains("salt.example")).count();
                if seen < pages {
                    return Err(format!("{seen} of {pages} pages: {counts:?}"));
                }
                Ok(())
            })
            .await;
            get(client, second.url("/distinct?site=salt.example")).await["distinct_visitors"]
                .clone()
        }
    };
    accepted(view(&first, "/a")).await;
    accepted(view(&second, "/b")).await;
    assert_eq!(visitors(2).await, 1, "one browser through two nodes");

    first.kill_9();
    let restarted = node(&nats, "s0");
    trail.follow("s0 again", &restarted);
    restarted.wait_ready(&client, SETTLE).await;
    accepted(view(&restarted, "/c")).await;
    assert_eq!(visitors(3).await, 1, "the same browser after a restart");
}

/// Events that stop at the node they reach (a bot's, an event that is
/// not a page view) are counted on every node's `/stats`, once each.
#[tokio::test]
async fn events_that_stop_where_they_arrive_are_the_clusters_in_stats() {
    let Some(nats) = Nats::start() else {
        return;
    };
    let client = reqwest::Client::new();
    let mut trail = Trail::default();
    let (a, b) = (node(&nats, "d0"), node(&nats, "d1"));
    for (name, n) in [("d0", &a), ("d1", &b)] {
        trail.follow(name, n);
        n.wait_ready(&client, SETTLE).await;
    }
    own_all(&client, &[&a, &b], "every partition owned").await;
    // Each must own a partition for the other to hear from it.
    poll::until_ok_async(SETTLE, "both nodes own partitions", || async {
        for server in [&a, &b] {
            if owned(&client, server).await? == 0 {
                return Err(format!("{} owns none", server.url("")));
            }
        }
        Ok(())
    })
    .await;
    const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";
    for _ in 0..2 {
        accepted(
            client
                .post(a.url("/events"))
                .header("content-type", "application/json")
                .header("user-agent", GOOGLEBOT)
                .body(r#"{"url": "https://arrive.example/"}"#),
        )
        .await;
    }
    let custom = client
        .post(b.url("/api/event"))
        .header("content-type", "text/plain")
        .header("user-agent", firefox)
        .body(r#"{"n":"signup","u":"https://arrive.example/","d":"arrive.example"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(custom.status(), 202);
    // Polled: a rebalance may leave a node without partitions a moment.
    poll::until_ok_async(SETTLE, "both nodes' counts on each", || async {
        for server in [&a, &b] {
            let stats = fetch(&client, &server.url("/stats")).await?;
            let (dropped, custom) = (&stats["dropped_events"], &stats["custom_events"]);
            if dropped["crawler"] != 2 || dropped["headless"] != 0 || custom["signup"] != 1 {
                return Err(format!("{}: {stats}", server.url("")));
            }
        }
        Ok(())
    })
    .await;
}
