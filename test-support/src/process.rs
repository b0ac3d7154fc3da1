//! The `tracker-http` binary as a child process, for the tests at the
//! socket level: started on an ephemeral port with JSON logs, its log
//! lines collected, killed when the test ends.
//!
//! The binary's path comes from the test crate
//! (`env!("CARGO_BIN_EXE_tracker-http")`: cargo builds it for integration
//! tests), so this crate needs no dependency on the service.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::Value;

use crate::poll;

/// How long a start may take before the test fails: generous, because a
/// loaded machine can take seconds to start a process.
pub const START_WITHIN: Duration = Duration::from_secs(20);

/// Starts `binary` with `args` on an ephemeral port, logging JSON lines to
/// a pipe (stderr goes to the test's).
fn spawn(binary: &str, args: &[&str]) -> Child {
    Command::new(binary)
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {binary}: {e}"))
}

/// A running `tracker-http`; killed if the test ends without stopping it.
pub struct Server {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its JSON log lines so far.
    pub logs: Arc<Mutex<Vec<Value>>>,
    /// The thread reading the log lines; joined once the process is gone,
    /// so that every line it wrote is in `logs`.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts `binary` with `args` and waits until it logs the address it
    /// listens on.
    pub fn start(binary: &str, args: &[&str]) -> Server {
        let mut child = spawn(binary, args);
        let stdout = child.stdout.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn({
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
            .recv_timeout(START_WITHIN)
            .expect("tracker-http reports its address")
            .parse()
            .unwrap();
        Server {
            child,
            addr,
            logs,
            reader: Some(reader),
        }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends signal `name` (`TERM`, `INT`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, then for the last of its log lines;
    /// panics after `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let child = &mut self.child;
        let status = poll::until_some(limit, "tracker-http exits", || child.try_wait().unwrap());
        self.read_to_the_end();
        status
    }

    /// Kills the process with SIGKILL (a crash: no handler runs), reaps
    /// it and reads the last of its log lines.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.read_to_the_end();
    }

    /// Joins the log reader, which ends when the exited process's pipe
    /// does: after this, `logs` holds every line the process wrote.
    fn read_to_the_end(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// Polls `/readyz` until it answers 200; panics after `limit`.
    pub async fn wait_ready(&self, client: &reqwest::Client, limit: Duration) {
        let url = self.url("/readyz");
        poll::until_async(limit, "tracker-http is ready", || async {
            let ready = client.get(&url).send().await;
            ready.is_ok_and(|r| r.status() == 200)
        })
        .await;
    }

    /// Waits until a line with this `message` has been logged; panics
    /// after `limit`.
    pub fn wait_logged(&self, message: &str, limit: Duration) {
        poll::until(limit, &format!("tracker-http logs {message:?}"), || {
            self.logged(message)
        });
    }

    /// Whether a line with this `message` has been logged (and read: while
    /// the process runs, a line it wrote may not be read yet; see
    /// [`wait_logged`](Self::wait_logged)).
    pub fn logged(&self, message: &str) -> bool {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .any(|e| e["message"] == message)
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

impl Drop for Server {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// Sends `request` and reads its answer as JSON; panics with the URL,
/// the status and the body unless it is a success (2xx) with JSON.
pub async fn json_of(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
    let (url, status) = (response.url().clone(), response.status());
    let body = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("{url}: {status}, body: {e}"));
    assert!(status.is_success(), "{url}: {status} {body}");
    serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{url}: {status}, not JSON ({e}): {body}"))
}

/// Runs `binary` with `args` (on an ephemeral port, JSON logs) until it
/// exits by itself, as a start that must fail does; returns its status
/// and its JSON log lines. Panics if it runs longer than `limit`.
pub fn run_to_exit(binary: &str, args: &[&str], limit: Duration) -> (ExitStatus, Vec<Value>) {
    let mut child = Reaped(spawn(binary, args));
    let stdout = child.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
            .collect::<Vec<_>>()
    });
    let status = poll::until_some(limit, "tracker-http exits by itself", || {
        child.0.try_wait().unwrap()
    });
    (status, reader.join().unwrap())
}

/// A child killed and reaped when dropped, also when the test panics.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
