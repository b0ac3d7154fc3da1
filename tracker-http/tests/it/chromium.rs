//! Real browsers: headless Chromium (Debian's `chromium`) loads fixture
//! pages that this test serves as `site.test`, with tracker-http as
//! `tracker.test` (both mapped to 127.0.0.1 by `--host-resolver-rules`,
//! since trackers skip localhost), through
//! 1. our `/tracker.js`, including a single-page-app navigation;
//! 2. the unmodified `@plausible-analytics/tracker` from npm (pinned in
//!    `tests/fixtures/package.json`, installed by `.ci/run`);
//! 3. the GoatCounter-style `<img>` and `<noscript>` pixel, JavaScript off.
//!
//! Each browser run is `chromium --dump-dom --virtual-time-budget`: it
//! loads the page, runs its scripts and timers, prints the DOM and exits.
//! Under `CI=true` a missing Chromium or npm package fails the test;
//! elsewhere the test says loudly what it skipped and how to install it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path as UrlPath;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use test_support::process::{Server, json_of};
use test_support::{poll, under_ci};

use crate::{TRACKER_HTTP, privacy};

/// A desktop Chrome's user agent: what the bot filter must let through.
const CHROME_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36";
/// Another browser's.
const FIREFOX_UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";
/// A third's.
const SAFARI_UA: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15";

/// The flags of every headless run: no sandbox (tests run as root), no
/// GPU, no traffic of Chromium's own (updates, sync, QUIC probes), and
/// `*.test` names mapped to 127.0.0.1.
pub(crate) const HEADLESS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP *.test 127.0.0.1",
];

const PLAUSIBLE_JS: &str = "node_modules/@plausible-analytics/tracker/plausible.js";

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Whether `what` may be skipped: not under CI, where it must be there.
pub(crate) fn missing(what: &str, install: &str) -> bool {
    if under_ci() {
        panic!("{what} is missing under CI=true; install it with: {install}");
    }
    // Straight to stderr: the test harness captures `eprintln!` of a
    // passing test, and a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!! SKIPPED: {what} is missing. Install it with:\n!!!!!!!!     {install}\n"
    );
    true
}

/// Debian's `chromium` on the `PATH`, if installed.
pub(crate) fn chromium() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|p| p.is_file())
    })
}

/// The fixture pages, pointing at the tracker on `tracker_port`.
fn page(name: &str, tracker: &str) -> Option<String> {
    let html = match name {
        "spa.html" => format!(
            r#"<!doctype html><title>spa</title>
<script defer src="{tracker}/tracker.js"></script>
<body><p id="state">first</p>
<script>
  // A single-page-app navigation once the first view is sent.
  setTimeout(function () {{
    history.pushState({{}}, "", "/spa/second");
    document.getElementById("state").textContent = "second";
  }}, 300);
</script>"#
        ),
        // Cross-origin isolated (served with `Cross-Origin-Embedder-
        // Policy: require-corp`): it runs a cross-origin script only if
        // the script's answer allows it.
        "isolated.html" => format!(
            r#"<!doctype html><title>isolated</title>
<script defer src="{tracker}/tracker.js"></script>
<body><p>isolated</p>"#
        ),
        "plausible.html" => format!(
            r#"<!doctype html><title>plausible</title>
<body><p>plausible</p>
<script type="module">
  import {{ init }} from "/{PLAUSIBLE_JS}";
  init({{ domain: "site.test", endpoint: "{tracker}/api/event" }});
</script>"#
        ),
        "pixel.html" => format!(
            r#"<!doctype html><title>pixel</title>
<body>
<img src="{tracker}/count?p=/pixel-img&amp;t=Pixel" alt="">
<noscript><img src="{tracker}/count?p=/pixel-noscript" alt=""></noscript>"#
        ),
        _ => return None,
    };
    Some(html)
}

/// Serves the fixture pages and the npm package as `site.test`.
async fn serve_fixtures(tracker: String) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = Router::new().route(
        "/{*path}",
        get(move |UrlPath(path): UrlPath<String>| {
            let tracker = tracker.clone();
            async move {
                if path.starts_with("node_modules/") && !path.contains("..") {
                    return match std::fs::read(fixtures_dir().join(&path)) {
                        Ok(js) => ([(header::CONTENT_TYPE, "text/javascript")], js).into_response(),
                        Err(_) => StatusCode::NOT_FOUND.into_response(),
                    };
                }
                // The SPA's second view is the same page, as a server
                // would answer a reload of it.
                let name = if path.starts_with("spa") {
                    "spa.html"
                } else {
                    path.as_str()
                };
                let embedder = if name == "isolated.html" {
                    "require-corp"
                } else {
                    "unsafe-none"
                };
                match page(name, &tracker) {
                    Some(html) => (
                        [
                            (header::CONTENT_TYPE, "text/html"),
                            (
                                header::HeaderName::from_static("cross-origin-embedder-policy"),
                                embedder,
                            ),
                        ],
                        html,
                    )
                        .into_response(),
                    None => StatusCode::NOT_FOUND.into_response(),
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    port
}

/// One browser: its profile directory and user agent (`None`: Chromium's
/// own, which says `HeadlessChrome`).
struct Browser {
    profile: tempfile::TempDir,
    user_agent: Option<&'static str>,
}

impl Browser {
    fn new(user_agent: Option<&'static str>, javascript: bool) -> Self {
        let profile = tempfile::tempdir().unwrap();
        if !javascript {
            // `--blink-settings=scriptEnabled=false` does not render
            // `<noscript>`; the profile's content setting does.
            let default = profile.path().join("Default");
            std::fs::create_dir_all(&default).unwrap();
            std::fs::write(
                default.join("Preferences"),
                r#"{"profile":{"default_content_setting_values":{"javascript":2}}}"#,
            )
            .unwrap();
        }
        Self {
            profile,
            user_agent,
        }
    }

    /// Loads `url`, runs it for a virtual 3 s, and returns the DOM.
    async fn load(&self, chromium: &Path, url: &str) -> String {
        let mut command = Command::new(chromium);
        command
            .args(HEADLESS)
            .args(["--virtual-time-budget=3000", "--dump-dom"])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(ua) = self.user_agent {
            command.arg(format!("--user-agent={ua}"));
        }
        command.arg(url);
        tokio::task::spawn_blocking(move || {
            let mut child = command.spawn().expect("start chromium");
            let start = Instant::now();
            loop {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if start.elapsed() > Duration::from_secs(90) {
                    let _ = child.kill();
                    panic!("chromium did not finish in 90 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let mut dom = String::new();
            std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut dom).unwrap();
            dom
        })
        .await
        .unwrap()
    }
}

struct Counts {
    client: reqwest::Client,
    server: Server,
}

impl Counts {
    async fn get(&self, url: &str) -> u64 {
        let request = self.client.get(self.server.url("/distinct"));
        json_of(request.query(&[("url", url)])).await["distinct_visitors"]
            .as_u64()
            .unwrap()
    }

    /// Waits (bounded) until `url` has at least `want` visitors, then
    /// checks it has exactly that many (nothing counted twice).
    async fn expect(&self, url: &str, want: u64) {
        let now = poll::until_some_async(WAIT, url, || async {
            let now = self.get(url).await;
            (now >= want).then_some(now)
        })
        .await;
        assert_eq!(now, want, "{url}");
    }

    async fn stats(&self) -> serde_json::Value {
        json_of(self.client.get(self.server.url("/stats"))).await
    }
}

/// How long a browser's events may take to arrive: generous, since a
/// loaded 2-core machine starts Chromium and its renderer slowly (15 s
/// was once not enough at load 6-8); the polls return as soon as they hold.
const WAIT: Duration = Duration::from_secs(45);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_browsers_count_through_every_sender() {
    let Some(chromium) = chromium() else {
        missing("Debian's chromium", "apt-get install -y chromium");
        return;
    };
    let plausible = fixtures_dir().join(PLAUSIBLE_JS).is_file()
        || !missing(
            "the npm package @plausible-analytics/tracker",
            "(cd tracker-http/tests/fixtures && npm ci)",
        );

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        TRACKER_HTTP,
        &[
            "--data-dir",
            data.path().to_str().unwrap(),
            "--log",
            "debug",
        ],
    );
    let tracker = format!("http://tracker.test:{}", server.addr.port());
    let site = format!("http://site.test:{}", serve_fixtures(tracker).await);
    let counts = Counts {
        client: reqwest::Client::new(),
        server,
    };
    counts.server_ready().await;

    // Chromium's own user agent says HeadlessChrome: dropped by default.
    let headless = Browser::new(None, true);
    let dom = headless.load(&chromium, &format!("{site}/spa.html")).await;
    assert!(dom.contains("second"), "the page's script ran: {dom}");
    poll::until_async(WAIT, "headless views dropped", || async {
        counts.stats().await["dropped_events"]["headless"].as_u64() >= Some(2)
    })
    .await;
    counts.expect(&format!("{site}/spa.html"), 0).await;

    // 1. /tracker.js: the load and the pushState navigation, then a
    // reload in the same browser (counts once), then another browser.
    let chrome = Browser::new(Some(CHROME_UA), true);
    chrome.load(&chromium, &format!("{site}/spa.html")).await;
    counts.expect(&format!("{site}/spa.html"), 1).await;
    counts.expect(&format!("{site}/spa/second"), 1).await;
    chrome.load(&chromium, &format!("{site}/spa.html")).await;
    counts.expect(&format!("{site}/spa.html"), 1).await;
    let firefox = Browser::new(Some(FIREFOX_UA), true);
    firefox.load(&chromium, &format!("{site}/spa.html")).await;
    counts.expect(&format!("{site}/spa.html"), 2).await;
    counts.expect(&format!("{site}/spa/second"), 2).await;
    // A fragment is no part of the page and is not sent: a long one (an
    // OAuth implicit flow's token, a hash router's state) neither passes
    // the URL limit nor reaches the server.
    let token = format!("access_token={}", "t0k3n".repeat(500));
    let safari = Browser::new(Some(SAFARI_UA), true);
    safari
        .load(&chromium, &format!("{site}/spa.html#{token}"))
        .await;
    counts.expect(&format!("{site}/spa.html"), 3).await;
    counts.expect(&format!("{site}/spa/second"), 3).await;

    // ...also on a cross-origin isolated page. COEP is only enforced in a
    // secure context, which a loopback address is and `site.test` is not.
    let isolated = site.replace("site.test", "127.0.0.1");
    chrome
        .load(&chromium, &format!("{isolated}/isolated.html"))
        .await;
    counts.expect(&format!("{isolated}/isolated.html"), 1).await;

    // 2. The unmodified Plausible tracker.
    if plausible {
        chrome
            .load(&chromium, &format!("{site}/plausible.html"))
            .await;
        counts.expect(&format!("{site}/plausible.html"), 1).await;
        chrome
            .load(&chromium, &format!("{site}/plausible.html"))
            .await;
        firefox
            .load(&chromium, &format!("{site}/plausible.html"))
            .await;
        counts.expect(&format!("{site}/plausible.html"), 2).await;
    }

    // 3. The pixel, with JavaScript off: the <img> and the <noscript> one.
    let no_js = Browser::new(Some(CHROME_UA), false);
    no_js.load(&chromium, &format!("{site}/pixel.html")).await;
    counts.expect(&format!("{site}/pixel-img"), 1).await;
    counts.expect(&format!("{site}/pixel-noscript"), 1).await;
    // With JavaScript on, <noscript> is not rendered.
    let js = Browser::new(Some(FIREFOX_UA), true);
    js.load(&chromium, &format!("{site}/pixel.html")).await;
    counts.expect(&format!("{site}/pixel-img"), 2).await;
    counts.expect(&format!("{site}/pixel-noscript"), 1).await;

    // Nothing the browsers sent about themselves reached the logs or the
    // data directory: only keyed hashes.
    counts.server.signal("TERM");
    let mut server = counts.server;
    assert!(server.wait(Duration::from_secs(30)).success());
    let logs = serde_json::to_string(&*server.logs.lock().unwrap()).unwrap();
    assert!(logs.contains("\"request\""), "request lines were logged");
    assert!(data.path().join("visitor-salts").is_file());
    privacy::assert_not_written(
        &[
            CHROME_UA,
            FIREFOX_UA,
            SAFARI_UA,
            "HeadlessChrome",
            "t0k3nt0k3n",
            "Firefox/140",
            "Chrome/140",
        ],
        &logs,
        data.path(),
    );
}

impl Counts {
    async fn server_ready(&self) {
        self.server
            .wait_ready(&self.client, Duration::from_secs(30))
            .await;
    }
}
