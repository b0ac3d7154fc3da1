//! A headless Chromium a test drives: it loads a page, clicks and types,
//! resizes the window, reads the DOM, takes screenshots and keeps the
//! network log. Started with the flags of [`chromium::HEADLESS`] and
//! `--remote-debugging-port=0`, and spoken to over the DevTools protocol
//! (JSON messages on a WebSocket).
//!
//! Written here rather than taken from a crate: the tests need a handful
//! of protocol commands, which tokio-tungstenite (already a dev-dependency)
//! carries, while a CDP crate (chromiumoxide) generates the whole protocol,
//! minutes of compiling on the 2-core CI machine.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::chromium::HEADLESS;

/// How long one protocol command may take on a loaded machine.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// A request the page made, from `Network.requestWillBeSent`.
#[derive(Debug, Clone)]
pub struct Sent {
    pub url: String,
    pub authorization: Option<String>,
}

/// One Chromium with one tab, killed on drop.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: Option<String>,
    next_id: u64,
    sent: Vec<Sent>,
    errors: Vec<String>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts `chromium` with an empty profile and `args`, and opens a tab
    /// whose network log is kept from the start.
    pub async fn start(chromium: &Path, args: &[&str]) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(chromium)
            .args(HEADLESS)
            .args(args)
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        // Chromium writes the port it picked, and the browser's path, here.
        let port_file = profile.path().join("DevToolsActivePort");
        let endpoint = test_support::poll::until_some_async(
            Duration::from_secs(60),
            "chromium's DevToolsActivePort",
            || async {
                let text = std::fs::read_to_string(&port_file).ok()?;
                let mut lines = text.lines();
                let (port, path) = (lines.next()?, lines.next()?);
                Some(format!("ws://127.0.0.1:{port}{path}"))
            },
        )
        .await;
        let (socket, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .expect("connect to chromium");
        let mut browser = Browser {
            child,
            _profile: profile,
            socket,
            session: None,
            next_id: 1,
            sent: Vec::new(),
            errors: Vec::new(),
        };
        let target = browser
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        browser.session = Some(attached["sessionId"].as_str().unwrap().to_string());
        browser.call("Network.enable", json!({})).await;
        browser.call("Page.enable", json!({})).await;
        browser.call("Runtime.enable", json!({})).await;
        browser.call("Log.enable", json!({})).await;
        browser
    }

    /// Sends one command to the tab (or, before it exists, the browser)
    /// and returns its result, keeping the events that arrive meanwhile.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send to chromium");
        let start = Instant::now();
        loop {
            let left = COMMAND_LIMIT.saturating_sub(start.elapsed());
            let next = tokio::time::timeout(left, self.socket.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("{method}: no answer from chromium in {COMMAND_LIMIT:?}")
                })
                .expect("chromium closed the connection")
                .expect("read from chromium");
            let Message::Text(text) = next else { continue };
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["id"] == json!(id) {
                if let Some(error) = message.get("error") {
                    panic!("{method}: {error}");
                }
                return message["result"].clone();
            }
            let params = &message["params"];
            match message["method"].as_str() {
                Some("Runtime.exceptionThrown") => {
                    self.errors.push(params["exceptionDetails"].to_string());
                }
                // Failed loads are the network log's business (a 401 is
                // expected); the rest (CSP violations among them) are errors.
                Some("Log.entryAdded")
                    if params["entry"]["level"] == "error"
                        && params["entry"]["source"] != "network" =>
                {
                    self.errors.push(params["entry"].to_string());
                }
                _ => {}
            }
            if message["method"] == "Network.requestWillBeSent" {
                let request = &message["params"]["request"];
                self.sent.push(Sent {
                    url: request["url"].as_str().unwrap_or_default().to_string(),
                    authorization: request["headers"]["Authorization"]
                        .as_str()
                        .map(str::to_string),
                });
            }
        }
    }

    /// The page's uncaught exceptions and logged errors so far (a CSP
    /// violation is one).
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// Every request the tab made so far.
    pub fn sent(&self) -> &[Sent] {
        &self.sent
    }

    /// Loads `url` in the tab.
    pub async fn navigate(&mut self, url: &str) {
        let answer = self.call("Page.navigate", json!({"url": url})).await;
        assert!(answer.get("errorText").is_none(), "{url}: {answer}");
    }

    /// The value of a JavaScript expression in the page (awaited if a
    /// promise).
    pub async fn eval(&mut self, expression: &str) -> Value {
        let answer = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(exception) = answer.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        answer["result"]["value"].clone()
    }

    /// Waits until `expression` is neither null nor false (nor undefined),
    /// and returns its value. An exception counts as not yet (the page may
    /// still be loading: no `body`).
    pub async fn wait_for(&mut self, what: &str, limit: Duration, expression: &str) -> Value {
        let start = Instant::now();
        let guarded = format!(
            "(() => {{ try {{ return ({expression}); }} catch (_) {{ return null; }} }})()"
        );
        loop {
            let value = self.eval(&guarded).await;
            if !(value.is_null() || value == json!(false)) {
                return value;
            }
            if start.elapsed() > limit {
                let text = self
                    .eval("document.body ? document.body.innerText.slice(0, 3000) : 'no body'")
                    .await;
                panic!(
                    "{what}: not within {limit:?}; the page says:\n{}",
                    text.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Makes the window `width` x `height` CSS pixels (`mobile`: a phone's
    /// viewport rules).
    pub async fn resize(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }

    /// Writes a PNG of the whole page to `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}
