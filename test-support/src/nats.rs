//! Debian's `nats-server` with JetStream, started on a free port with its
//! store in a temporary directory, for the cluster tests.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{poll, under_ci};

/// A `nats-server -js`; killed when dropped.
pub struct Nats {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    /// The configuration file given to every start, if any.
    config: Option<PathBuf>,
}

impl Nats {
    /// Starts the server, or `None` (after a loud note) when it is not
    /// installed outside CI; under `CI=true` a missing server fails.
    pub fn start() -> Option<Nats> {
        Self::start_with(None)
    }

    /// [`start`](Self::start), with the server's `max_payload` (the
    /// largest message it takes) set to `max_payload` bytes if given.
    pub fn start_with(max_payload: Option<usize>) -> Option<Nats> {
        let Some(binary) = binary() else {
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
        let config = max_payload.map(|bytes| {
            let path = dir.path().join("nats.conf");
            std::fs::write(&path, format!("max_payload: {bytes}\n")).unwrap();
            path
        });
        let child = spawn(&binary, port, dir.path(), config.as_deref());
        let nats = Nats {
            child,
            port,
            dir,
            config,
        };
        nats.wait_listening();
        Some(nats)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Where the server keeps its store.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn wait_listening(&self) {
        poll::until(Duration::from_secs(20), "nats-server listens", || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    /// `kill -9`, then a start on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// `kill -9`: the server is down until [`start_again`](Self::start_again).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port and store.
    pub fn start_again(&mut self) {
        self.child = spawn(
            &binary().unwrap(),
            self.port,
            self.dir.path(),
            self.config.as_deref(),
        );
        self.wait_listening();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
}

fn spawn(binary: &Path, port: u16, dir: &Path, config: Option<&Path>) -> Child {
    let mut command = Command::new(binary);
    if let Some(config) = config {
        command.arg("-c").arg(config);
    }
    command
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server")
}
