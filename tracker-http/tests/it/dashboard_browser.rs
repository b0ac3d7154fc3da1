//! The dashboard in headless Chromium against the real binary: the service
//! is filled with back-dated events through the API, the test loads `/`
//! and checks from the DOM that the site's visitors, the top pages and
//! the series equal what the API answers for the same range; that another
//! range (a preset, custom dates) and a picked page change them; that an
//! estimate shows its error; that with `--auth-token` the page asks for
//! the token and then loads; and that no request leaves the service.
//! Screenshots at 1280 and 360 px go to `target/tmp/dashboard/`, with the
//! load times measured (`timings.txt`).
//!
//! Under `CI=true` a missing Chromium fails the test; elsewhere it says
//! loudly what it skipped.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use test_support::process::{Server, json_of};

use crate::TRACKER_HTTP;
use crate::cdp::Browser;
use crate::chromium::{chromium, missing};

/// How long a page may take to show its numbers on a loaded machine.
const WAIT: Duration = Duration::from_secs(60);
const DAY: u64 = 86_400;
const HOUR: u64 = 3_600;
/// Visitors of the page that a small `--max-memory` turns into a sketch.
const BIG: u32 = 6_000;

/// An en-US browser (the counts' separators), without scroll bars (they
/// would cut the right edge off full-page screenshots).
const BROWSER_ARGS: &[&str] = &["--lang=en-US", "--hide-scrollbars"];

/// Where the screenshots and timings go.
fn out_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard")
}

/// The test's view of what the dashboard shows: one read of the DOM, taken
/// only when the page says it has rendered (`data-state="ready"`).
const SNAPSHOT: &str = r#"(() => {
  const body = document.body;
  if (body.dataset.state !== 'ready') return null;
  const $ = (id) => document.getElementById(id);
  const rows = (id) => [...$(id).tBodies[0].rows].map((tr) => ({
    url: tr.dataset.url || null,
    from: tr.dataset.from || null,
    till: tr.dataset.till || null,
    value: Number(tr.dataset.value),
    text: tr.cells[tr.cells.length - 1].textContent,
  }));
  return {
    generation: body.dataset.generation,
    site: $('site').value,
    sites: [...$('site').options].map((o) => o.value),
    from: $('range-label').dataset.from,
    till: $('range-label').dataset.till,
    asked_from: $('range-label').dataset.askedFrom,
    asked_till: $('range-label').dataset.askedTill,
    chart_title: $('chart-title').textContent,
    note: $('range-note').hidden ? '' : $('range-note').textContent,
    visitors: { value: Number($('site-visitors').dataset.value), text: $('site-visitors').textContent },
    top: rows('top-table'),
    step: $('series-table').dataset.step,
    series_from: $('series-table').dataset.from,
    series: rows('series-table'),
    chart_points: $('chart').querySelectorAll('circle').length,
    chart_width: Number(($('chart').querySelector('svg') || { getAttribute: () => 0 }).getAttribute('width')),
    listed: rows('pages-table'),
    memory: $('memory-text').textContent,
    exact: $('exact-text').textContent,
  };
})()"#;

/// A count as the dashboard writes it in an en-US browser: an exact count
/// with thousands separators, an estimate as "≈ N ± e" (e one standard
/// error in visitors).
fn count_text(row: &Value) -> String {
    let n = row["distinct_visitors"].as_u64().unwrap();
    if row["exact"].as_bool().unwrap() {
        return separated(n);
    }
    let e = (n as f64 * row["error"].as_f64().unwrap()).round() as u64;
    format!("≈ {} ± {}", separated(n), separated(e))
}

fn separated(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

struct Api {
    client: reqwest::Client,
    server: Server,
    token: Option<&'static str>,
}

impl Api {
    /// The service started with `args`, ready, and a client of it (with
    /// `token` on every read).
    async fn start(args: &[&str], token: Option<&'static str>) -> Api {
        let api = Api {
            client: reqwest::Client::new(),
            server: Server::start(TRACKER_HTTP, args),
            token,
        };
        api.server.wait_ready(&api.client, WAIT).await;
        api
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let mut request = self.client.get(self.server.url(path)).query(query);
        if let Some(token) = self.token {
            request = request.bearer_auth(token);
        }
        json_of(request).await
    }

    /// Sends `events` (`[visitor, url, unix seconds]`) through
    /// `POST /events/batch`, each with its own `time`.
    async fn fill(&self, events: &[(String, String, u64)]) {
        for chunk in events.chunks(2_000) {
            let body: Vec<Value> = chunk
                .iter()
                .map(|(visitor, url, time)| json!({"visitor": visitor, "url": url, "time": time}))
                .collect();
            let answer = json_of(
                self.client
                    .post(self.server.url("/events/batch"))
                    .json(&body),
            )
            .await;
            assert_eq!(answer["accepted"], json!(chunk.len()), "{answer}");
        }
    }

    /// Checks a DOM snapshot against the API's answers for the same site
    /// and range; returns the API's site answer.
    async fn check(&self, dom: &Value, page: Option<&str>) -> Value {
        // The range the page asked for; the answers say what they cover
        // (wider than asked where a sketched page is counted).
        let site = dom["site"].as_str().unwrap();
        let (from, till) = (
            dom["asked_from"].as_str().unwrap(),
            dom["asked_till"].as_str().unwrap(),
        );
        let range = [("from", from), ("till", till)];
        let distinct = self
            .get("/distinct", &[&[("site", site)][..], &range].concat())
            .await;
        assert_eq!(distinct["from"], dom["from"], "the range covered");
        assert_eq!(distinct["till"], dom["till"]);
        assert_eq!(dom["visitors"]["value"], distinct["distinct_visitors"]);
        assert_eq!(dom["visitors"]["text"], json!(count_text(&distinct)));

        let top = self
            .get(
                "/top",
                &[&[("site", site), ("limit", "10")][..], &range].concat(),
            )
            .await;
        let want: Vec<(Value, String)> = top["pages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| (row["url"].clone(), count_text(row)))
            .collect();
        let shown: Vec<(Value, String)> = dom["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row["url"].clone(),
                    row["text"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(shown, want, "top pages");

        let target = match page {
            Some(url) => ("url", url),
            None => ("site", site),
        };
        let step = dom["step"].as_str().unwrap();
        let series = self
            .get("/series", &[&[target, ("step", step)][..], &range].concat())
            .await;
        let want: Vec<(Value, Value, String)> = series["points"]
            .as_array()
            .unwrap_or_else(|| panic!("{series} for {dom}"))
            .iter()
            .map(|p| (p["from"].clone(), p["till"].clone(), count_text(p)))
            .collect();
        let shown: Vec<(Value, Value, String)> = dom["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["from"].clone(),
                    p["till"].clone(),
                    p["text"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(shown, want, "series points ({target:?}, step {step})");
        assert_eq!(dom["chart_points"], json!(want.len()), "a dot per point");
        distinct
    }
}

/// The service started with `args` (and `token`, the one the checks
/// send), and a headless Chromium to open it with, and the service's
/// origin; `None`, with the notice, where Chromium is missing.
async fn dashboard(args: &[&str], token: Option<&'static str>) -> Option<(Api, Browser, String)> {
    let Some(chromium) = chromium() else {
        missing("Debian's chromium", "apt-get install -y chromium");
        return None;
    };
    let api = Api::start(args, token).await;
    let origin = format!("http://127.0.0.1:{}", api.server.addr.port());
    let browser = Browser::start(&chromium, BROWSER_ARGS).await;
    Some((api, browser, origin))
}

/// Waits for the page to have rendered a snapshot that `accept` takes.
async fn settled(browser: &mut Browser, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let dom = browser.wait_for(what, WAIT, SNAPSHOT).await;
        if accept(&dom) {
            return dom;
        }
        assert!(
            start.elapsed() < WAIT,
            "{what}: not within {WAIT:?}; last {dom}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The length of the range the page asked for, in seconds.
fn span_of(dom: &Value) -> u64 {
    let n = |key: &str| dom[key].as_str().unwrap().parse::<u64>().unwrap();
    n("asked_till") - n("asked_from")
}

/// The count the top list shows for `url`.
fn top_count(dom: &Value, url: &str) -> String {
    let rows = dom["top"].as_array().unwrap();
    let row = rows.iter().find(|r| r["url"] == url);
    row.unwrap_or_else(|| panic!("{url} not in {rows:?}"))["text"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every request of the tab went to the service (`origin`) (`data:` URLs,
/// Chromium's own icons inside form controls, go nowhere), and the page
/// raised no error (a CSP violation is logged as one).
fn only_to(browser: &Browser, origin: &str) {
    assert_eq!(browser.errors(), &[] as &[String], "errors in the page");
    assert!(!browser.sent().is_empty());
    for sent in browser
        .sent()
        .iter()
        .filter(|s| !s.url.starts_with("data:"))
    {
        assert!(
            sent.url.starts_with(&format!("{origin}/")),
            "a request left the service: {}",
            sent.url
        );
    }
}

/// The events: two sites, visits spread over 40 days, one page too big
/// for the memory budget.
fn events(now: u64) -> Vec<(String, String, u64)> {
    let mut events = Vec::new();
    let mut add = |visitor: String, url: &str, ago: u64| {
        events.push((visitor, url.to_string(), now - ago));
    };
    for i in 0..BIG {
        add(format!("b{i}"), "https://shop.test/big", 3 * DAY);
    }
    for i in 0..60 {
        add(format!("p{i}"), "https://shop.test/pricing", 20 * DAY);
    }
    for i in 0..20 {
        add(format!("p{i}"), "https://shop.test/pricing", 2 * HOUR);
    }
    for i in 0..30 {
        add(format!("a{i}"), "https://shop.test/about", 35 * DAY);
    }
    for i in 0..5 {
        add(format!("a{i}"), "https://shop.test/about", 3 * DAY);
    }
    for i in 0..100u64 {
        add(format!("h{i}"), "https://shop.test/", (i % 30) * DAY + HOUR);
    }
    for i in 0..50 {
        add(format!("r{i}"), "https://blog.test/post-1", 5 * DAY);
    }
    for i in 0..10 {
        add(format!("s{i}"), "https://blog.test/post-2", 40 * DAY);
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_the_api_answers() {
    // Small enough that the big page becomes a sketch (an estimate).
    let Some((api, mut browser, origin)) = dashboard(&["--max-memory", "48KiB"], None).await else {
        return;
    };
    let now = unix_now();
    api.fill(&events(now)).await;
    let big = api.get("/top", &[("limit", "1")]).await;
    assert_eq!(big["pages"][0]["url"], "https://shop.test/big", "{big}");
    assert_eq!(
        big["pages"][0]["exact"], false,
        "the big page is sketched: {big}"
    );

    browser.resize(1280, 900, false).await;
    let start = Instant::now();
    browser.navigate(&format!("{origin}/")).await;

    // It opens on the last 30 days of the busiest site.
    let dom = settled(&mut browser, "the first view", |_| true).await;
    let shown_after = start.elapsed();
    assert_eq!(dom["sites"], json!(["blog.test", "shop.test"]));
    assert_eq!(dom["site"], "shop.test");
    let timings = browser
        .eval(
            "(() => { const n = performance.getEntriesByType('navigation')[0];
               const ready = performance.getEntriesByName('dashboard-ready')[0];
               const bytes = performance.getEntriesByType('resource')
                 .filter((r) => r.initiatorType !== 'fetch')
                 .reduce((sum, r) => sum + r.decodedBodySize, n.decodedBodySize);
               return { load_ms: n.loadEventEnd, ready_ms: ready.startTime, page_bytes: bytes }; })()",
        )
        .await;

    // Every control has a name a screen reader reads out.
    let unnamed = browser
        .eval(
            "[...document.querySelectorAll('input, select, button, [tabindex]')]
               .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                 && !e.getAttribute('aria-labelledby') && !e.textContent.trim())
               .map((e) => e.outerHTML)",
        )
        .await;
    assert_eq!(unnamed, json!([]));

    // Screenshots, wide and phone-sized; neither scrolls sideways.
    let overflow = "document.documentElement.scrollWidth - document.documentElement.clientWidth";
    assert_eq!(browser.eval(overflow).await, json!(0), "at 1280 px");
    browser
        .screenshot(&out_dir().join("dashboard-1280.png"))
        .await;
    browser.resize(360, 780, true).await;
    settled(&mut browser, "the chart redrawn at 360 px", |dom| {
        dom["chart_width"]
            .as_u64()
            .is_some_and(|w| w > 0 && w <= 360)
    })
    .await;
    assert_eq!(browser.eval(overflow).await, json!(0), "at 360 px");
    browser
        .screenshot(&out_dir().join("dashboard-360.png"))
        .await;
    browser.resize(1280, 900, false).await;
    record_timings(&timings, shown_after);

    let thirty = api.check(&dom, None).await;
    let thirty_dom = dom.clone();
    let from = dom["asked_from"].as_str().unwrap();
    assert_eq!(span_of(&dom), 30 * DAY);
    // The sketched page counts whole days, so the count may cover more
    // than the hours asked; the page says so when it does.
    assert_eq!(
        dom["note"].as_str().unwrap().contains("sketch"),
        dom["from"].as_str() < dom["series_from"].as_str(),
        "{dom}"
    );
    assert_eq!(dom["step"], "1d");
    // The estimate shows its error; memory and exactness are shown.
    let big_row = &dom["top"][0];
    assert_eq!(big_row["url"], "https://shop.test/big");
    assert!(
        big_row["text"].as_str().unwrap().starts_with("≈ "),
        "{big_row}"
    );
    assert!(
        big_row["text"].as_str().unwrap().contains(" ± "),
        "{big_row}"
    );
    assert!(
        dom["memory"]
            .as_str()
            .unwrap()
            .contains("of a 48 KiB budget"),
        "{}",
        dom["memory"]
    );
    assert!(
        dom["exact"].as_str().unwrap().contains("estimated")
            && dom["exact"]
                .as_str()
                .unwrap()
                .contains("% of visitors exact)"),
        "{}",
        dom["exact"]
    );
    // The page list is the site's pages, all time.
    let listed: Vec<&Value> = dom["listed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["url"])
        .collect();
    assert_eq!(
        listed,
        [
            "https://shop.test/",
            "https://shop.test/about",
            "https://shop.test/big",
            "https://shop.test/pricing"
        ]
    );

    // Another range changes the numbers, still equal to the API's.
    browser
        .eval("document.getElementById('range-7d').click()")
        .await;
    let dom = settled(&mut browser, "the 7-day view", |dom| {
        dom["asked_from"].as_str() != Some(from)
    })
    .await;
    let seven = api.check(&dom, None).await;
    assert_eq!(dom["step"], "6h");
    assert_ne!(seven["distinct_visitors"], thirty["distinct_visitors"]);
    assert_eq!(top_count(&thirty_dom, "https://shop.test/pricing"), "60");
    assert_eq!(top_count(&dom, "https://shop.test/pricing"), "20");

    // Custom dates: 45 days ago to today (local dates), which reach the
    // visits older than 30 days.
    browser
        .eval(
            "(() => { const ymd = (ms) => { const d = new Date(ms); return d.getFullYear() + '-'
                + String(d.getMonth() + 1).padStart(2, '0') + '-' + String(d.getDate()).padStart(2, '0'); };
              document.getElementById('range-custom').click();
              document.getElementById('custom-from').value = ymd(Date.now() - 45 * 86400000);
              document.getElementById('custom-till').value = ymd(Date.now());
              document.getElementById('custom-apply').click(); })()",
        )
        .await;
    let before = dom["asked_from"].clone();
    let dom = settled(&mut browser, "the custom range", |dom| {
        dom["asked_from"] != before
    })
    .await;
    api.check(&dom, None).await;
    assert_eq!(top_count(&thirty_dom, "https://shop.test/about"), "5");
    assert_eq!(top_count(&dom, "https://shop.test/about"), "30");

    // A page picked in the top list: its own series.
    browser
        .eval("document.querySelector('#top-table tr[data-url=\"https://shop.test/pricing\"] button').click()")
        .await;
    let dom = settled(&mut browser, "the series of one page", |dom| {
        dom["chart_title"]
            .as_str()
            .is_some_and(|t| t.ends_with(": /pricing"))
    })
    .await;
    api.check(&dom, Some("https://shop.test/pricing")).await;

    // The other site, from the picker.
    browser
        .eval(
            "(() => { const s = document.getElementById('site'); s.value = 'blog.test';
               s.dispatchEvent(new Event('change')); })()",
        )
        .await;
    let dom = settled(&mut browser, "the other site", |dom| {
        dom["site"] == "blog.test"
    })
    .await;
    let custom = api.check(&dom, None).await;
    assert_eq!(dom["note"], "", "no sketch, the range as asked");
    assert_eq!(custom["distinct_visitors"], 60);
    // Without a sketch, the site's count follows the range too.
    browser
        .eval("document.getElementById('range-30d').click()")
        .await;
    let dom = settled(&mut browser, "the other site's 30 days", |dom| {
        dom["site"] == "blog.test" && span_of(dom) == 30 * DAY
    })
    .await;
    let thirty = api.check(&dom, None).await;
    assert_eq!(thirty["distinct_visitors"], 50);
    assert_eq!(dom["visitors"]["text"], "50");

    only_to(&browser, &origin);
}

fn record_timings(timings: &Value, shown_after: Duration) {
    let mut text = String::new();
    writeln!(
        text,
        "load event: {:.0} ms after navigation start; numbers shown: {:.0} ms (in the page), \
         {} ms (test clock, from Page.navigate); page weight without API answers: {} bytes",
        timings["load_ms"].as_f64().unwrap(),
        timings["ready_ms"].as_f64().unwrap(),
        shown_after.as_millis(),
        timings["page_bytes"],
    )
    .unwrap();
    std::fs::create_dir_all(out_dir()).unwrap();
    std::fs::write(out_dir().join("timings.txt"), &text).unwrap();
    let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_dashboard_asks_for_it_then_loads() {
    let Some((api, mut browser, origin)) =
        dashboard(&["--auth-token", "open-sesame"], Some("open-sesame")).await
    else {
        return;
    };

    browser.navigate(&format!("{origin}/")).await;
    let asked = "(() => document.body.dataset.state === 'auth'
        && !document.getElementById('auth').hidden
        && document.getElementById('main').hidden
        && document.getElementById('site-visitors').textContent === ''
        && document.activeElement === document.getElementById('token'))()";
    browser.wait_for("the token prompt", WAIT, asked).await;

    // A wrong token is refused, clearly.
    browser
        .call("Input.insertText", json!({"text": "wrong"}))
        .await;
    browser
        .eval("document.querySelector('#auth-form button').click()")
        .await;
    browser
        .wait_for(
            "the refusal",
            WAIT,
            "document.body.dataset.state === 'auth' && document.getElementById('auth-message').textContent.includes('refused')",
        )
        .await;

    // The right one, typed and sent with Enter: nothing is recorded yet,
    // so the page says how to install the script.
    browser
        .eval("document.getElementById('token').focus()")
        .await;
    browser
        .call("Input.insertText", json!({"text": "open-sesame"}))
        .await;
    let typed_at = browser.sent().len();
    browser
        .call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyDown", "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"}),
        )
        .await;
    browser
        .call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}),
        )
        .await;
    let install = browser
        .wait_for(
            "the empty state",
            WAIT,
            "document.body.dataset.state === 'empty' && document.getElementById('auth').hidden
               && document.getElementById('install').textContent",
        )
        .await;
    assert_eq!(
        install,
        json!(format!(
            r#"<script defer src="{origin}/tracker.js"></script>"#
        ))
    );

    // Once there are visits, a reload shows them without asking again
    // (the token is kept for the tab), and every read carries it.
    let now = unix_now();
    api.fill(&events(now)).await;
    browser.eval("window.beforeReload = true").await;
    browser.call("Page.reload", json!({})).await;
    let dom = settled(&mut browser, "the numbers after a reload", |_| true).await;
    let fresh = browser
        .eval("!window.beforeReload && document.getElementById('auth').hidden")
        .await;
    assert_eq!(fresh, json!(true), "a new page, not asking for the token");
    api.check(&dom, None).await;
    let reads: Vec<_> = browser.sent()[typed_at..].to_vec();
    assert!(!reads.is_empty());
    for read in reads
        .iter()
        .filter(|r| !r.url.contains("/dashboard/") && !r.url.ends_with('/'))
    {
        assert_eq!(
            read.authorization.as_deref(),
            Some("Bearer open-sesame"),
            "{}",
            read.url
        );
    }

    only_to(&browser, &origin);
}

/// A token no HTTP header can carry (a character past U+00FF, as a
/// pasted en dash is) makes the browser refuse every read before it is
/// sent: the page says so and asks again, rather than retrying the same
/// token for ever without a way to enter another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_no_header_can_carry_is_asked_for_again() {
    // `_api`, not `_`: the service lives to the end of the test.
    let Some((_api, mut browser, origin)) =
        dashboard(&["--auth-token", "open--sesame"], Some("open--sesame")).await
    else {
        return;
    };
    browser.navigate(&format!("{origin}/")).await;
    let asked = "document.body.dataset.state === 'auth'
        && document.activeElement === document.getElementById('token')";
    browser.wait_for("the token prompt", WAIT, asked).await;

    // As a chat or a word processor turns `--` into an en dash.
    browser
        .call("Input.insertText", json!({"text": "open\u{2013}sesame"}))
        .await;
    browser
        .eval("document.querySelector('#auth-form button').click()")
        .await;
    let said = browser
        .wait_for(
            "the prompt again",
            WAIT,
            "document.body.dataset.state === 'auth' && !document.getElementById('auth').hidden
               && document.getElementById('auth-message').textContent",
        )
        .await;
    assert!(said.as_str().unwrap().contains("cannot be sent"), "{said}");

    // The right one then loads.
    browser
        .eval("document.getElementById('token').focus()")
        .await;
    browser
        .call("Input.insertText", json!({"text": "open--sesame"}))
        .await;
    browser
        .eval("document.querySelector('#auth-form button').click()")
        .await;
    browser
        .wait_for(
            "the empty state",
            WAIT,
            "document.body.dataset.state === 'empty'",
        )
        .await;
    only_to(&browser, &origin);
}

/// A custom range ends at the local midnight after its last day, by the
/// calendar: on the day clocks go back (25 hours in Berlin on 26 October
/// 2025) a visit at 23:30 is in it, and on the day they go forward (23
/// hours) the next day's first hour is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_day_with_a_clock_change_ends_at_its_midnight() {
    let Some((api, mut browser, origin)) = dashboard(&[], None).await else {
        return;
    };
    // 2025-10-26T22:30:00Z: 23:30 in Berlin (CET, after the change).
    let late = 1_761_517_800;
    // 2025-03-30T22:30:00Z: 00:30 on 31 March in Berlin (CEST).
    let next_day = 1_743_373_800;
    api.fill(&[
        ("v1".to_string(), "https://dst.test/".to_string(), late),
        ("v2".to_string(), "https://dst.test/".to_string(), next_day),
    ])
    .await;

    browser
        .call(
            "Emulation.setTimezoneOverride",
            json!({"timezoneId": "Europe/Berlin"}),
        )
        .await;
    for (load, day, till, visitors) in [
        // Local midnight of 27 October (CET): 23:00Z.
        (1, "2025-10-26", "1761519600", 1),
        // Local midnight of 31 March (CEST): 22:00Z on the 30th.
        (2, "2025-03-30", "1743372000", 0),
    ] {
        // A query string of its own, so that each is a new page load, not
        // a change of the fragment.
        browser
            .navigate(&format!(
                "{origin}/?load={load}#site=dst.test&range=custom&from={day}&till={day}"
            ))
            .await;
        let dom = settled(&mut browser, "the custom day", |dom| {
            dom["site"] == "dst.test" && dom["asked_till"].as_str() == Some(till)
        })
        .await;
        assert_eq!(dom["visitors"]["value"], json!(visitors), "{day}: {dom}");
        api.check(&dom, None).await;
    }
    only_to(&browser, &origin);
}

/// A custom range of decades is drawn at a coarser step than weekly,
/// whose points would pass the service's point limit (1,000), instead of
/// showing the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_range_of_decades_is_drawn_by_years() {
    let Some((api, mut browser, origin)) = dashboard(&[], None).await else {
        return;
    };
    // 2001-06-01 and 2020-06-01.
    api.fill(&[
        (
            "v1".to_string(),
            "https://decades.test/".to_string(),
            991_353_600,
        ),
        (
            "v2".to_string(),
            "https://decades.test/".to_string(),
            1_590_969_600,
        ),
    ])
    .await;
    browser
        .navigate(&format!(
            "{origin}/#site=decades.test&range=custom&from=2000-01-01&till=2025-12-31"
        ))
        .await;
    let dom = settled(&mut browser, "the custom decades", |dom| {
        dom["site"] == "decades.test" && dom["step"].is_string()
    })
    .await;
    assert_eq!(dom["visitors"]["value"], json!(2), "{dom}");
    assert_eq!(dom["step"], "365d", "{dom}");
    api.check(&dom, None).await;
    only_to(&browser, &origin);
}

/// Under a small per-address rate limit the page still loads: its first
/// load asks more at once than a burst of 2 allows, and it asks again
/// after the `Retry-After` of each 429 instead of failing on every
/// refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_rate_limit_the_dashboard_still_loads() {
    let Some((api, mut browser, origin)) = dashboard(&["--rate-limit", "2"], None).await else {
        return;
    };
    let now = unix_now();
    let events: Vec<_> = (0..3)
        .map(|i| {
            (
                format!("v{i}"),
                "https://limited.test/".to_string(),
                now - HOUR,
            )
        })
        .collect();
    api.fill(&events).await;

    browser.navigate(&format!("{origin}/")).await;
    // The test's own reads would share the page's budget (one address):
    // the DOM alone is checked, against the three visitors sent.
    let dom = settled(&mut browser, "the numbers under a rate limit", |_| true).await;
    assert_eq!(dom["site"], "limited.test", "{dom}");
    assert_eq!(dom["visitors"]["value"], json!(3), "{dom}");
    assert_eq!(dom["top"][0]["value"], json!(3), "{dom}");
    only_to(&browser, &origin);
}

/// A site is a host, as the API counts one (`?site=host:port` answers for
/// the host, every scheme and port): pages served on a port (as a test
/// fixture or a staging server is) are under their host in the picker,
/// not under one entry per port, and a page off the default port says
/// which port it is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_on_several_ports_is_one_site() {
    let Some((api, mut browser, origin)) = dashboard(&[], None).await else {
        return;
    };
    let now = unix_now();
    let mut events = Vec::new();
    for i in 0..3 {
        events.push((
            format!("v{i}"),
            "http://site.test:8080/a".to_string(),
            now - HOUR,
        ));
    }
    for i in 2..4 {
        events.push((
            format!("v{i}"),
            "https://site.test/b".to_string(),
            now - HOUR,
        ));
    }
    api.fill(&events).await;

    browser.navigate(&format!("{origin}/")).await;
    let dom = settled(&mut browser, "the first view", |_| true).await;
    assert_eq!(dom["sites"], json!(["site.test"]), "{dom}");
    assert_eq!(dom["site"], "site.test");
    let site = api.check(&dom, None).await;
    assert_eq!(site["distinct_visitors"], 4);
    let labels = browser
        .eval("[...document.querySelectorAll('#top-table tbody th')].map((th) => th.textContent)")
        .await;
    assert_eq!(labels, json!(["site.test:8080/a", "/b"]));
    only_to(&browser, &origin);
}

/// Pages sent as bare paths belong to no site, so the dashboard cannot
/// show them: it says so, naming one, instead of "nothing recorded"; and
/// once a page with a host comes, it shows that site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_without_a_host_are_named_not_hidden() {
    let Some((api, mut browser, origin)) = dashboard(&[], None).await else {
        return;
    };
    let now = unix_now();
    api.fill(&[("v1".to_string(), "/pricing".to_string(), now - HOUR)])
        .await;

    browser.navigate(&format!("{origin}/")).await;
    let said = browser
        .wait_for(
            "the note on bare paths",
            WAIT,
            "document.body.dataset.state === 'empty'
               && !document.getElementById('paths-only').hidden
               && [document.getElementById('empty-title').textContent,
                   document.getElementById('paths-only').textContent]",
        )
        .await;
    assert_eq!(said[0], "No site recorded yet", "{said}");
    let note = said[1].as_str().unwrap();
    assert!(note.contains("(such as /pricing)"), "{note}");

    // A page with a host: its site shows (the empty state relists the
    // sites on each refresh; a reload asks at once).
    api.fill(&[(
        "v2".to_string(),
        "https://shop.test/".to_string(),
        now - HOUR,
    )])
    .await;
    browser.call("Page.reload", json!({})).await;
    let dom = settled(&mut browser, "the site after a reload", |dom| {
        dom["site"] == "shop.test"
    })
    .await;
    assert_eq!(dom["sites"], json!(["shop.test"]), "{dom}");
    only_to(&browser, &origin);
}

/// The clock now, in unix seconds.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
