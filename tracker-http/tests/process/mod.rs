//! A real `tracker-http` process for the socket-level tests: started on
//! an ephemeral port with JSON logs, its log lines collected, killed when
//! the test ends. (cargo builds the binary for integration tests.)
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Starts `tracker-http` with `args` on an ephemeral port, logging JSON
/// lines to a pipe (stderr goes to the test's).
fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tracker-http"))
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tracker-http")
}

/// A running `tracker-http`; killed if the test ends without stopping it.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub logs: Arc<Mutex<Vec<Value>>>,
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        let mut child = spawn(args);
        let stdout = child.stdout.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn({
            let logs = logs.clone();
            move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    if entry["message"] == "listening" {
                        let _ = tx.send(entry["addr"].as_str().unwrap().to_string());
                    }
                    logs.lock().unwrap().push(entry);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("tracker-http reports its address")
            .parse()
            .unwrap();
        Server { child, addr, logs }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "tracker-http did not exit in {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logged(&self, message: &str) -> bool {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .any(|e| e["message"] == message)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `request` and reads its answer as JSON.
pub async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// A small deterministic generator, so failures reproduce.
pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

impl Server {
    /// Kills the process with SIGKILL (a crash: no handler runs) and
    /// reaps it.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Polls `/readyz` until it answers 200; panics after `limit`.
    pub async fn wait_ready(&self, client: &reqwest::Client, limit: Duration) {
        let start = Instant::now();
        loop {
            let ready = client.get(self.url("/readyz")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(start.elapsed() < limit, "not ready within {limit:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The log lines with this `message`.
    pub fn lines(&self, message: &str) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["message"] == message)
            .cloned()
            .collect()
    }
}

/// Runs `tracker-http` with `args` (on an ephemeral port, JSON logs) until
/// it exits by itself, as a start that must fail does; returns its status
/// and its JSON log lines. Panics if it runs longer than `limit`.
pub fn run_to_exit(args: &[&str], limit: Duration) -> (ExitStatus, Vec<Value>) {
    let mut child = spawn(args);
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
            .collect::<Vec<_>>()
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("tracker-http did not exit in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap())
}
