//! A cluster of real processes: Debian's `nats-server` with JetStream and
//! `tracker-http --nats` nodes, started here. Events are checked against
//! a model of the acknowledged ones (a 202) and of the ones in doubt (sent
//! to a node that was killed meanwhile: published or not), through
//! concurrent ingest, a `kill -9` of a node, a batch, a node joining, a
//! back-dated batch counted over time ranges, a restart of the NATS server
//! and a node leaving on SIGTERM; then the NATS store is scanned for
//! visitor ids.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use test_support::process::Server;
use test_support::{poll, under_ci, xorshift};

use crate::TRACKER_HTTP;
use crate::browsers::urlencode;

const PARTITIONS: u32 = 12;
/// Every visitor id starts with this; the NATS store must never hold it.
const VISITOR: &str = "cluster-visitor-";
/// Takeovers, joins and reconnections all finish within this.
const SETTLE: Duration = Duration::from_secs(60);

/// A `nats-server -js` on a free port with its store in a temporary
/// directory; killed when dropped.
struct Nats {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nats {
    /// Starts the server, or `None` (after a loud note) when it is not
    /// installed outside CI; under `CI=true` a missing server fails.
    fn start() -> Option<Nats> {
        let Some(binary) = nats_server() else {
            let install = "apt-get install -y nats-server";
            if under_ci() {
                panic!("nats-server is missing under CI=true; install it with: {install}");
            }
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!!!!! SKIPPED: nats-server is missing. Install it with:\n!!!!!!!!     {install}\n"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = spawn_nats(&binary, port, &dir);
        let nats = Nats { child, port, dir };
        nats.wait_listening();
        Some(nats)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn wait_listening(&self) {
        poll::until(Duration::from_secs(20), "nats-server listens", || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    /// `kill -9`, then a start on the same port and store.
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_nats(&nats_server().unwrap(), self.port, &self.dir);
        self.wait_listening();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nats_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
}

fn spawn_nats(binary: &PathBuf, port: u16, dir: &tempfile::TempDir) -> Child {
    Command::new(binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server")
}

fn node(nats: &Nats, id: &str) -> Server {
    let url = nats.url();
    Server::start(
        TRACKER_HTTP,
        &[
            "--nats",
            &url,
            "--cluster",
            "it",
            "--node-id",
            id,
            "--partitions",
            &PARTITIONS.to_string(),
            "--lease-ttl",
            "2s",
            "--partition-snapshot-every",
            "300ms",
        ],
    )
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

async fn get(client: &reqwest::Client, url: String) -> Option<Value> {
    let r = client.get(url).send().await.ok()?;
    if r.status() != 200 {
        return None;
    }
    r.json().await.ok()
}

/// Every page's count through `server` (`None` while partitions are
/// missing or catching up).
async fn counts(client: &reqwest::Client, server: &Server) -> Option<BTreeMap<String, u64>> {
    let body = get(client, server.url("/pages?limit=1000")).await?;
    if body["cluster"]["pending_events"] != 0 || body["next_cursor"] != Value::Null {
        return None;
    }
    Some(
        body["pages"]
            .as_array()?
            .iter()
            .map(|p| {
                (
                    p["url"].as_str().unwrap().to_string(),
                    p["distinct_visitors"].as_u64().unwrap(),
                )
            })
            .collect(),
    )
}

/// Waits until every one of `servers` answers counts within the model.
async fn settle(client: &reqwest::Client, servers: &[&Server], model: &Mutex<Model>, what: &str) {
    poll::until_async(SETTLE, what, || async {
        for server in servers {
            let Some(counts) = counts(client, server).await else {
                return false;
            };
            if model
                .lock()
                .unwrap()
                .check(&counts, &server.url(""))
                .is_err()
            {
                return false;
            }
        }
        true
    })
    .await;
}

async fn owned(client: &reqwest::Client, server: &Server) -> Option<usize> {
    let stats = get(client, server.url("/stats")).await?;
    Some(stats["cluster"]["owned_partitions"].as_array()?.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_loses_nothing_acknowledged() {
    let Some(mut nats) = Nats::start() else {
        return;
    };
    let client = reqwest::Client::new();
    let mut nodes: Vec<Server> = ["n0", "n1", "n2"]
        .iter()
        .map(|id| node(&nats, id))
        .collect();
    for n in &nodes {
        n.wait_ready(&client, SETTLE).await;
    }
    poll::until_async(SETTLE, "3 nodes share the partitions", || async {
        let mut total = 0;
        for n in &nodes {
            match owned(&client, n).await {
                Some(k) if k > 0 => total += k,
                _ => return false,
            }
        }
        total == PARTITIONS as usize
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
    poll::until_async(SETTLE, "n0 and n1 own every partition", || async {
        let a = owned(&client, &nodes[0]).await.unwrap_or(0);
        let b = owned(&client, &nodes[1]).await.unwrap_or(0);
        a + b == PARTITIONS as usize
    })
    .await;

    // A site is a union of its pages' visitors, not a sum.
    for site in ["s0.example", "s1.example"] {
        let (low, high, sum) = model.lock().unwrap().site(site);
        // Polled: right after a take-over a loaded machine can still answer
        // a fan-out query with 503 while a partition catches up.
        let body = poll::until_some_async(SETTLE, "the site's count", || {
            get(&client, nodes[1].url(&format!("/distinct?site={site}")))
        })
        .await;
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
    poll::until_async(SETTLE, "n3 takes a share of the partitions", || async {
        owned(&client, &nodes[3]).await.unwrap_or(0) >= 2
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
    let reply: Value = client
        .post(nodes[3].url("/events/batch"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    poll::until_async(SETTLE, "n1 and n3 own every partition", || async {
        let a = owned(&client, &nodes[1]).await.unwrap_or(0);
        let b = owned(&client, &nodes[3]).await.unwrap_or(0);
        a + b == PARTITIONS as usize
    })
    .await;
    settle(&client, &rest, &model, "counts after a graceful leave").await;

    // The stream, leases and snapshots hold visitor hashes, never ids.
    let mut files = vec![nats.dir.path().to_path_buf()];
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
    let reply: Value = client
        .post(nodes[0].url("/events/batch"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["accepted"], batch.len(), "{reply}");
    let sent = client
        .post(nodes[1].url("/events"))
        .json(&line(one))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);

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
    let mut top: Vec<(String, u64)> = (0..5)
        .map(|j| (page(j), visitors(&|p| p == j, 1..4)))
        .collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(3);

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
        poll::until_async(SETTLE, "back-dated events counted by range", || async {
            let series = get(
                client,
                node.url(&format!(
                    "/series?url={page0}&from={}&till={}&step=1d",
                    at(0),
                    at(5)
                )),
            )
            .await;
            let Some(series) = series else { return false };
            if series["cluster"]["pending_events"] != 0 {
                return false;
            }
            values(&series, "points") == want_series
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
        .await
        .unwrap();
        assert_eq!(series["step"], "1d", "{who}: {series}");
        assert_eq!(
            series["cluster"]["partitions_answered"], 1,
            "{who}: {series}"
        );

        let ranged = get(
            client,
            node.url(&format!("/distinct?url={page0}&from={from}&till={till}")),
        )
        .await
        .unwrap();
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
        .await
        .unwrap();
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
        .await
        .unwrap();
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
            .await
            .unwrap();
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
        .await
        .unwrap();
        let got: Vec<(String, u64)> = ranked["pages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["url"].as_str().unwrap().to_string(),
                    p["distinct_visitors"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, top, "{who}: {ranked}");
        assert!(
            ranked["from"].is_string() && ranked["till"].is_string(),
            "{who}: {ranked}"
        );
    }
}
