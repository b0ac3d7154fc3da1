//! Counts over time in process: `time` on every ingest path, the ranged
//! `GET /distinct` and `GET /top`, `GET /series`, every time form and
//! every refusal. The clock is the tracker's, set by hand, so relative
//! times have fixed answers. Last, a month back-filled into the real
//! binary over every ingest path, checked against a model.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tracker_core::{ManualClock, Timestamp, Tracker, TrackerBuilder};
use tracker_http::{AppState, HttpLimits, app};

use crate::app::*;

/// The tracker's "now" in these tests: a Sunday, mid-day.
const NOW: &str = "2026-11-08T12:30:00Z";

fn at(text: &str) -> Timestamp {
    Timestamp::parse(text, Timestamp::default()).unwrap()
}

/// An app whose tracker's clock stands at [`NOW`], built from `builder`.
fn app_with(builder: TrackerBuilder, limits: HttpLimits) -> (Router, ManualClock) {
    let clock = ManualClock::new(at(NOW));
    let tracker = builder.clock(Arc::new(clock.clone())).build().unwrap();
    let state = AppState::new(Arc::new(tracker), limits);
    (app(state), clock)
}

fn hourly() -> (Router, ManualClock) {
    app_with(Tracker::builder(), HttpLimits::standard())
}

async fn post(app: &Router, uri: &str, content_type: &str, body: String) -> Answer {
    let request = Request::post(uri)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    send(app, request).await
}

async fn record_timed(app: &Router, visitor: &str, url: &str, time: Value) -> Answer {
    let body = json!({"visitor": visitor, "url": url, "time": time});
    post_json(app, body.to_string()).await
}

/// The week of visits most tests query: `/a` and `/b` of shop.example,
/// `/c` of another site.
///
/// | visitor | page | time |
/// | --- | --- | --- |
/// | alice | /a | 11-01 10:15 |
/// | bob | /a | 11-03 08:00 |
/// | alice | /a | 11-05 23:59 |
/// | carol | /b | 11-05 00:00 |
/// | alice | /b | 11-06 12:00 |
/// | dave | other /c | 11-04 09:00 |
async fn week(app: &Router) {
    for (visitor, url, time) in [
        (
            "alice",
            "https://shop.example/a",
            json!("2026-11-01T10:15:00Z"),
        ),
        ("bob", "https://shop.example/a", json!(1_793_692_800)), // 11-03 08:00
        (
            "alice",
            "https://shop.example/a",
            json!("2026-11-06T00:59:00+01:00"),
        ),
        ("carol", "https://shop.example/b", json!("2026-11-05")),
        (
            "alice",
            "https://shop.example/b",
            json!("2026-11-06T12:00:00Z"),
        ),
        (
            "dave",
            "https://other.example/c",
            json!("2026-11-04T09:00:00Z"),
        ),
    ] {
        let answer = record_timed(app, visitor, url, time).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{visitor} {url}");
    }
}

/// The JSON of a successful GET.
async fn ok(app: &Router, uri: &str) -> Value {
    let answer = get(app, uri).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "{uri}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json()
}

#[tokio::test]
async fn a_range_of_a_page_counts_its_visitors_in_it_and_says_which_range() {
    let (app, _) = hourly();
    week(&app).await;
    let page = "url=https%3A%2F%2Fshop.example%2Fa";
    assert_eq!(
        ok(
            &app,
            &format!("/distinct?{page}&from=2026-11-02&till=2026-11-06")
        )
        .await,
        json!({
            "url": "https://shop.example/a",
            "from": "2026-11-02T00:00:00Z",
            "till": "2026-11-06T00:00:00Z",
            "distinct_visitors": 2,
            "exact": true,
        })
    );
    // Every time form, each range widened to whole hours.
    for (range, from, till, visitors) in [
        // RFC 3339 with an offset and a fraction; unix seconds.
        (
            "from=2026-11-01T11:30:00.5%2B01:00&till=1793577600",
            "2026-11-01T10:00:00Z",
            "2026-11-02T00:00:00Z",
            1,
        ),
        // No offset is read as UTC, seconds may be left out, an
        // unencoded offset is still read as one.
        (
            "from=2026-11-01T10:15:00.123456&till=2026-11-02T00:00",
            "2026-11-01T10:00:00Z",
            "2026-11-02T00:00:00Z",
            1,
        ),
        (
            "from=2026-11-01T11:15+01:00&till=2026-11-02",
            "2026-11-01T10:00:00Z",
            "2026-11-02T00:00:00Z",
            1,
        ),
        // Fractional unix seconds, as `time.time()` gives them.
        (
            "from=1793527200.5&till=1793577600.0",
            "2026-11-01T10:00:00Z",
            "2026-11-02T00:00:00Z",
            1,
        ),
        // A `+` offset sent unencoded (form decoding reads it as a space)
        // is still the offset; a space separator (`+`) is still one.
        (
            "from=2026-11-01T11:30:00+01:00&till=2026-11-02+00:00:00+00:00",
            "2026-11-01T10:00:00Z",
            "2026-11-02T00:00:00Z",
            1,
        ),
        // Half-open: a visit at `till` is outside.
        (
            "from=2026-11-01&till=2026-11-01T10:00:00Z",
            "2026-11-01T00:00:00Z",
            "2026-11-01T10:00:00Z",
            0,
        ),
        (
            "from=2026-11-01&till=2026-11-01T10:00:01Z",
            "2026-11-01T00:00:00Z",
            "2026-11-01T11:00:00Z",
            1,
        ),
        // Relative to the tracker's clock; `now` ends with the current hour.
        (
            "from=-7d&till=now",
            "2026-11-01T12:00:00Z",
            "2026-11-08T13:00:00Z",
            2,
        ),
        (
            "from=-1w",
            "2026-11-01T12:00:00Z",
            "2026-11-08T13:00:00Z",
            2,
        ),
        // One end alone leaves the other open.
        (
            "till=2026-11-03",
            "1970-01-01T00:00:00Z",
            "2026-11-03T00:00:00Z",
            1,
        ),
        (
            "from=2026-11-05T23:00:00Z",
            "2026-11-05T23:00:00Z",
            "2026-11-08T13:00:00Z",
            1,
        ),
        // Empty: from equals till.
        (
            "from=2026-11-03&till=2026-11-03",
            "2026-11-03T00:00:00Z",
            "2026-11-03T00:00:00Z",
            0,
        ),
        // Off a bucket boundary too (`from=now&till=now`): not the hour
        // of alice's visit.
        (
            "from=2026-11-01T10:20:00Z&till=2026-11-01T10:20:00Z",
            "2026-11-01T10:00:00Z",
            "2026-11-01T10:00:00Z",
            0,
        ),
    ] {
        let body = ok(&app, &format!("/distinct?{page}&{range}")).await;
        assert_eq!(
            (body["from"].as_str(), body["till"].as_str()),
            (Some(from), Some(till)),
            "{range}: {body}"
        );
        assert_eq!(body["distinct_visitors"], visitors, "{range}: {body}");
        assert_eq!(body["exact"], true, "{range}");
    }
    // Any spelling of the page counts the same page; an unknown one is 0.
    let other_spelling =
        "/distinct?url=HTTPS://Shop.Example:443/a%3Futm_source%3Dx&from=2026-11-02";
    assert_eq!(ok(&app, other_spelling).await["distinct_visitors"], 2);
    assert_eq!(
        ok(&app, "/distinct?url=/never&from=-1d").await["distinct_visitors"],
        0
    );
}

#[tokio::test]
async fn a_range_of_a_site_is_a_union_of_its_pages() {
    let (app, _) = hourly();
    week(&app).await;
    assert_eq!(
        ok(
            &app,
            "/distinct?site=+Shop.Example&from=2026-11-05&till=2026-11-07"
        )
        .await,
        json!({
            "site": "shop.example",
            "from": "2026-11-05T00:00:00Z",
            "till": "2026-11-07T00:00:00Z",
            "distinct_visitors": 2, // alice on /a and /b once, carol
            "exact": true,
        })
    );
    let all = ok(&app, "/distinct?site=shop.example&from=2026-01-01").await;
    assert_eq!(all["distinct_visitors"], 3);
    // Without from and till: the all-time answer, its shape unchanged.
    assert_eq!(
        ok(&app, "/distinct?site=shop.example").await,
        json!({"site": "shop.example", "distinct_visitors": 3, "exact": true})
    );
    assert_eq!(
        ok(&app, "/distinct?url=https://shop.example/a").await,
        json!({"url": "https://shop.example/a", "distinct_visitors": 2, "exact": true})
    );
}

#[tokio::test]
async fn a_series_has_a_point_per_step() {
    let (app, _) = hourly();
    week(&app).await;
    let days = ok(
        &app,
        "/series?url=https://shop.example/a&from=2026-11-01&till=2026-11-06&step=1d",
    )
    .await;
    let point = |day: u32, visitors: u64| {
        json!({
            "from": format!("2026-11-{day:02}T00:00:00Z"),
            "till": format!("2026-11-{:02}T00:00:00Z", day + 1),
            "distinct_visitors": visitors,
            "exact": true,
        })
    };
    assert_eq!(
        days,
        json!({
            "url": "https://shop.example/a",
            "from": "2026-11-01T00:00:00Z",
            "till": "2026-11-06T00:00:00Z",
            "step": "1d",
            "points": [point(1, 1), point(2, 0), point(3, 1), point(4, 0), point(5, 1)],
        })
    );
    // The default step is a day; a site's points are unions.
    let site = ok(
        &app,
        "/series?site=shop.example&from=2026-11-05&till=2026-11-07",
    )
    .await;
    assert_eq!(site["site"], "shop.example");
    assert_eq!(site["step"], "1d");
    let counts: Vec<&Value> = site["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["distinct_visitors"])
        .collect();
    assert_eq!(counts, [&json!(2), &json!(1)]);
    // An open `from` (no retention: everything since 1970) gives the
    // latest steps the point limit allows, ending with the current bucket.
    for query in ["url=https://shop.example/a", "site=shop.example"] {
        let latest = ok(&app, &format!("/series?{query}")).await;
        let points = latest["points"].as_array().unwrap();
        assert_eq!(points.len(), 1000, "{query}");
        assert_eq!(latest["till"], "2026-11-08T13:00:00Z", "{query}");
        assert_eq!(latest["from"], "2024-02-12T13:00:00Z", "{query}");
        let total: u64 = points
            .iter()
            .map(|p| p["distinct_visitors"].as_u64().unwrap())
            .sum();
        assert_eq!(
            total,
            if query.starts_with("url") { 3 } else { 4 },
            "{query}"
        );
    }
    let hours = ok(
        &app,
        "/series?url=https://shop.example/a&till=2026-11-06&step=1h",
    )
    .await;
    assert_eq!(hours["from"], "2026-09-25T08:00:00Z");
    assert_eq!(hours["points"].as_array().unwrap().len(), 1000);
    // Four-hour windows: the range is extended to whole steps.
    let windows = ok(
        &app,
        "/series?url=https://shop.example/a&from=2026-11-05T16:00:00Z&till=2026-11-06T01:00:00Z&step=240m",
    )
    .await;
    assert_eq!(windows["step"], "4h");
    assert_eq!(windows["till"], "2026-11-06T04:00:00Z");
    assert_eq!(windows["points"].as_array().unwrap().len(), 3);
    assert_eq!(windows["points"][1]["distinct_visitors"], 1);
    assert_eq!(windows["points"][1]["from"], "2026-11-05T20:00:00Z");
}

#[tokio::test]
async fn top_over_a_range() {
    let (app, _) = hourly();
    week(&app).await;
    assert_eq!(
        ok(&app, "/top?from=2026-11-04&till=2026-11-07&limit=2").await,
        json!({
            "pages": [
                {"url": "https://shop.example/b", "distinct_visitors": 2, "exact": true},
                {"url": "https://other.example/c", "distinct_visitors": 1, "exact": true},
            ],
            "from": "2026-11-04T00:00:00Z",
            "till": "2026-11-07T00:00:00Z",
        })
    );
    let of_site = ok(
        &app,
        "/top?site=shop.example&from=2026-11-01&till=2026-11-04",
    )
    .await;
    assert_eq!(
        of_site["pages"],
        json!([{"url": "https://shop.example/a", "distinct_visitors": 2, "exact": true}])
    );
    // Without a range the all-time answer keeps its shape.
    let all = ok(&app, "/top?limit=1").await;
    assert_eq!(
        all,
        json!({"pages": [{"url": "https://shop.example/a", "distinct_visitors": 2, "exact": true}]})
    );
}

/// SPEC.md writes the optional parameters empty (`/top?limit=&site=&from=
/// &till=`), as a form with blank fields sends them: given empty, a
/// parameter is not given.
#[tokio::test]
async fn optional_parameters_given_empty_are_not_given() {
    let (app, _) = hourly();
    week(&app).await;
    let u = "url=https%3A%2F%2Fshop.example%2Fa";
    for (blank, plain) in [
        (
            format!("/distinct?{u}&from=&till="),
            format!("/distinct?{u}"),
        ),
        (format!("/distinct?{u}&site="), format!("/distinct?{u}")),
        (
            format!("/distinct?{u}&from=2026-11-03&till="),
            format!("/distinct?{u}&from=2026-11-03"),
        ),
        (
            "/distinct?site=shop.example&from=&till=2026-11-04".into(),
            "/distinct?site=shop.example&till=2026-11-04".into(),
        ),
        (
            format!("/series?{u}&from=&till=&step="),
            format!("/series?{u}"),
        ),
        (
            format!("/series?{u}&from=2026-11-01&till=2026-11-08&step="),
            format!("/series?{u}&from=2026-11-01&till=2026-11-08"),
        ),
        ("/top?limit=&site=&from=&till=".into(), "/top".into()),
        (
            "/top?limit=1&site=shop.example&from=2026-11-05&till=".into(),
            "/top?limit=1&site=shop.example&from=2026-11-05".into(),
        ),
        (
            "/pages?site=&prefix=&cursor=&limit=".into(),
            "/pages".into(),
        ),
        (
            "/pages?site=shop.example&prefix=&cursor=&limit=1".into(),
            "/pages?site=shop.example&limit=1".into(),
        ),
    ] {
        assert_eq!(ok(&app, &blank).await, ok(&app, &plain).await, "{blank}");
    }
    // `url` is not optional: given empty it is refused.
    assert_eq!(get(&app, "/distinct?url=").await.error_code(), "empty");
}

#[tokio::test]
async fn bad_times_ranges_and_steps_are_400_with_their_code() {
    let (app, _) = app_with(Tracker::builder().max_points(31), HttpLimits::standard());
    let u = "url=/a";
    for (uri, code) in [
        (format!("/distinct?{u}&from=yesterday"), "bad_time"),
        (format!("/distinct?{u}&till=2026-13-01"), "bad_time"),
        (format!("/distinct?{u}&from=1.5.5"), "bad_time"),
        (format!("/distinct?{u}&from=-7"), "bad_time"),
        (
            format!("/distinct?{u}&from=99999999999"),
            "time_out_of_range",
        ),
        (format!("/distinct?{u}&from=-100000d"), "time_out_of_range"),
        (format!("/distinct?{u}&from=%FF"), "invalid_query"),
        (
            format!("/distinct?{u}&from=2026-11-02&till=2026-11-01"),
            "reversed_range",
        ),
        (
            "/distinct?site=shop.example&from=now&till=-1h".into(),
            "reversed_range",
        ),
        ("/distinct?from=-1d".into(), "invalid_query"),
        (
            "/distinct?url=/a&site=b.example&from=-1d".into(),
            "invalid_query",
        ),
        (
            "/distinct?url=javascript:alert(1)&from=-1d".into(),
            "invalid_url",
        ),
        ("/distinct?site=&from=-1d".into(), "invalid_query"),
        ("/top?from=-1d&till=-2d".into(), "reversed_range"),
        ("/top?from=soon".into(), "bad_time"),
        ("/top?from=-1d&limit=1001".into(), "invalid_query"),
        (format!("/series?{u}&from=-2d&step=90m"), "bad_step"),
        (format!("/series?{u}&from=-2d&step=30m"), "bad_step"),
        (format!("/series?{u}&from=-2d&step=0s"), "bad_step"),
        (format!("/series?{u}&from=-2d&step=1.5h"), "bad_duration"),
        (format!("/series?{u}&from=-2d&step=1h"), "too_many_points"),
        (format!("/series?{u}&from=-32d"), "too_many_points"),
        // Steps past the last time held, over one point and over none:
        // 2^32 hours once truncated to a step of 0 (a panic, a 500).
        (format!("/series?{u}&step=4294967296h"), "time_out_of_range"),
        (
            "/series?site=a.example&step=4294967296h".into(),
            "time_out_of_range",
        ),
        (
            format!("/series?{u}&from=now&till=now&step=257698037760m"),
            "time_out_of_range",
        ),
        (
            format!("/series?{u}&from=now&till=now&step=4294967297h"),
            "time_out_of_range",
        ),
        (
            format!("/series?{u}&from=0&till=3600&step=4294967295h"),
            "time_out_of_range",
        ),
        (format!("/series?{u}&from=-2d&till=-3d"), "reversed_range"),
        ("/series?from=-2d".into(), "invalid_query"),
        ("/series?site=&from=-2d".into(), "invalid_query"),
    ] {
        let answer = get(&app, &uri).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(answer.error_code(), code, "{uri}");
    }
    // The message names what was wrong.
    let answer = get(&app, "/series?url=/a&from=-2d&step=90m").await;
    let message = answer.json()["error"]["message"].to_string();
    assert!(
        message.contains("5400") && message.contains("3600"),
        "{message}"
    );
    // At the limit is fine: 31 daily points.
    let month = ok(&app, "/series?url=/a&from=2026-10-08&till=2026-11-08").await;
    assert_eq!(month["points"].as_array().unwrap().len(), 31);
}

#[tokio::test]
async fn every_ingest_path_takes_a_time_and_refuses_a_bad_one_alone() {
    let (app, _) = hourly();
    let day = |d: u32| format!("2026-11-0{d}T12:00:00Z");
    // One event: a bad time is a typed 400 and records nothing.
    for (time, code) in [
        (json!("last tuesday"), "bad_time"),
        (json!(-5), "bad_time"),
        (json!(99_999_999_999u64), "time_out_of_range"),
    ] {
        let answer = record_timed(&app, "x", "/t", time.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{time}");
        assert_eq!(answer.error_code(), code, "{time}");
    }
    let answer = record_timed(&app, "x", "/t", json!(true)).await;
    assert_eq!(answer.error_code(), "invalid_event");
    assert_eq!(ok(&app, "/distinct?url=/t").await["distinct_visitors"], 0);
    // A JSON batch, and NDJSON: each event at its own time.
    let batch = json!([
        {"visitor": "a", "url": "/t", "time": day(1)},
        {"visitor": "b", "url": "/t", "time": "not a time"},
        {"visitor": "c", "url": "/t", "time": day(2)},
        {"visitor": "d", "url": "/t"},
    ]);
    let reply = post(&app, "/events/batch", "application/json", batch.to_string()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let reply = reply.json();
    assert_eq!(reply["accepted"], 3, "{reply}");
    assert_eq!(reply["refused"][0]["index"], 1);
    assert_eq!(reply["refused"][0]["error"]["code"], "bad_time");
    let lines = [
        json!({"visitor": "e", "url": "/t", "time": day(3)}).to_string(),
        json!({"visitor": "f", "url": "/t", "time": "2026-11-03T25:00:00Z"}).to_string(),
    ]
    .join("\n");
    let reply = post(&app, "/events/batch", "application/x-ndjson", lines).await;
    let reply = reply.json();
    assert_eq!(reply["accepted"], 1, "{reply}");
    assert_eq!(reply["refused"][0]["error"]["code"], "bad_time");
    // A browser's event (no visitor id) takes a time too.
    let browser = Request::post("/events")
        .header("content-type", "text/plain")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
        )
        .body(Body::from(json!({"url": "/t", "time": day(4)}).to_string()))
        .unwrap();
    assert_eq!(send(&app, browser).await.status, StatusCode::ACCEPTED);
    let series = ok(&app, "/series?url=/t&from=2026-11-01&till=2026-11-09").await;
    let counts: Vec<u64> = series["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["distinct_visitors"].as_u64().unwrap())
        .collect();
    // d was recorded now (11-08) without a time.
    assert_eq!(counts, [1, 1, 1, 1, 0, 0, 0, 1]);
}

#[tokio::test]
async fn stats_say_the_time_settings() {
    let (app, _) = app_with(
        Tracker::builder()
            .bucket(Duration::from_secs(900))
            .retention(Duration::from_secs(90 * DAY))
            .max_points(200),
        HttpLimits::standard(),
    );
    let stats = ok(&app, "/stats").await;
    assert_eq!(
        (
            &stats["bucket_seconds"],
            &stats["retention_seconds"],
            &stats["max_points"]
        ),
        (&json!(900), &json!(90 * DAY), &json!(200))
    );
    let stats = ok(&hourly().0, "/stats").await;
    assert_eq!(
        (&stats["bucket_seconds"], &stats["retention_seconds"]),
        (&json!(3600), &json!(null))
    );
}

#[tokio::test]
async fn series_is_a_guarded_read() {
    let limits = HttpLimits {
        auth_token: Some("s3cret".into()),
        ..HttpLimits::standard()
    };
    let (app, _) = app_with(Tracker::builder(), limits);
    for uri in [
        "/series?url=/x&from=-1d",
        "/distinct?url=/x&from=-1d",
        "/top?from=-1d",
    ] {
        let answer = get(&app, uri).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{uri}");
        let request = Request::get(uri)
            .header("authorization", "Bearer s3cret")
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&app, request).await.status, StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn series_requests_are_counted_in_metrics() {
    let (app, _) = hourly();
    ok(&app, "/series?url=/x&from=-1d").await;
    get(&app, "/series?url=/x&step=7m").await;
    let text = String::from_utf8(get(&app, "/metrics").await.body).unwrap();
    for sample in [
        r#"route="/series",status="200"} 1"#,
        r#"route="/series",status="400"} 1"#,
    ] {
        assert!(text.contains(sample), "{sample} in:\n{text}");
    }
}

#[tokio::test]
async fn the_clock_moves_open_ranges_along() {
    let (app, clock) = app_with(
        Tracker::builder().bucket(Duration::from_secs(86_400)),
        HttpLimits::standard(),
    );
    assert_eq!(record(&app, "a", "/m").await.status, StatusCode::ACCEPTED);
    let today = ok(&app, "/distinct?url=/m&from=now").await;
    assert_eq!(
        (&today["from"], &today["till"], &today["distinct_visitors"]),
        (
            &json!("2026-11-08T00:00:00Z"),
            &json!("2026-11-09T00:00:00Z"),
            &json!(1)
        )
    );
    clock.advance(Duration::from_secs(86_400));
    let tomorrow = ok(&app, "/distinct?url=/m&from=now").await;
    assert_eq!(tomorrow["from"], "2026-11-09T00:00:00Z");
    assert_eq!(tomorrow["distinct_visitors"], 0);
}

/// Seconds in a day.
const DAY: u64 = 86_400;
/// Days back-filled.
const DAYS: u64 = 30;
/// The pages back-filled.
const PAGES: [&str; 4] = [
    "https://shop.example/",
    "https://shop.example/pricing",
    "https://shop.example/docs",
    "https://blog.example/post",
];
/// Per (page or site, day since the start): the visitors seen.
type DayModel = std::collections::BTreeMap<(&'static str, u64), std::collections::HashSet<String>>;

/// A month back-filled into the real binary over every ingest path (one
/// event per request, JSON and NDJSON batches, a WebSocket), each event
/// at its own time, then checked against a model that keeps every
/// (page, visitor, day); and again after a crash (`kill -9`) and a
/// restart from the data directory, whose log keeps each event's time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_back_filled_month_gives_the_models_daily_series() {
    use futures_util::{SinkExt, StreamExt};
    use test_support::process::{Server, json_of};
    use tokio_tungstenite::tungstenite::Message;

    const WITHIN: Duration = Duration::from_secs(30);
    let dir = tempfile::tempdir().unwrap();
    let args = ["--data-dir", dir.path().to_str().unwrap()];
    let mut server = Server::start(crate::TRACKER_HTTP, &args);
    let client = reqwest::Client::new();
    server.wait_ready(&client, WITHIN).await;

    // The 30 whole UTC days before today: all in the past, whenever the
    // test runs.
    let today = Timestamp::from(std::time::SystemTime::now()).as_millis() / 1000 / DAY * DAY;
    let start = today - DAYS * DAY;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |below: u64| {
        // xorshift64: a fixed stream, so a failure replays.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };
    let mut events = Vec::new();
    let (mut by_page, mut by_site) = (DayModel::new(), DayModel::new());
    for i in 0..3_000u64 {
        let url = PAGES[next(PAGES.len() as u64) as usize];
        let visitor = format!("v{}", next(400));
        let secs = start + next(DAYS * DAY);
        let day = (secs - start) / DAY;
        // Half as unix seconds, half as RFC 3339.
        let time = if i % 2 == 0 {
            json!(secs)
        } else {
            json!(Timestamp::from_millis(secs * 1000).to_rfc3339())
        };
        by_page
            .entry((url, day))
            .or_default()
            .insert(visitor.clone());
        let site = if url.contains("shop") {
            "shop.example"
        } else {
            "blog.example"
        };
        by_site
            .entry((site, day))
            .or_default()
            .insert(visitor.clone());
        events.push(json!({"visitor": visitor, "url": url, "time": time}));
    }

    // 100 one by one, then JSON batches, NDJSON batches and a WebSocket.
    let (single, rest) = events.split_at(100);
    for event in single {
        let answer = client
            .post(server.url("/events"))
            .json(event)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), reqwest::StatusCode::ACCEPTED);
    }
    let (json_batches, rest) = rest.split_at(1_200);
    let (ndjson_batches, streamed) = rest.split_at(1_000);
    for chunk in json_batches.chunks(300) {
        let reply = json_of(client.post(server.url("/events/batch")).json(chunk)).await;
        assert_eq!(reply["accepted"], chunk.len(), "{reply}");
    }
    for chunk in ndjson_batches.chunks(250) {
        let body: Vec<String> = chunk.iter().map(Value::to_string).collect();
        let request = client
            .post(server.url("/events/batch"))
            .header("content-type", "application/x-ndjson")
            .body(body.join("\n"));
        let reply = json_of(request).await;
        assert_eq!(reply["accepted"], chunk.len(), "{reply}");
    }
    let ws = server.url("/events/ws?ack=true").replacen("http", "ws", 1);
    let (mut socket, _) = tokio_tungstenite::connect_async(ws).await.unwrap();
    for chunk in streamed.chunks(100) {
        let text = Value::from(chunk.to_vec()).to_string();
        socket.send(Message::text(text)).await.unwrap();
        let ack = tokio::time::timeout(WITHIN, socket.next())
            .await
            .expect("an acknowledgement within the deadline")
            .expect("the socket stays open")
            .unwrap();
        let ack: Value = serde_json::from_str(ack.to_text().unwrap()).unwrap();
        assert_eq!(ack["accepted"], chunk.len(), "{ack}");
    }
    socket.close(None).await.unwrap();

    check_month(&server, &client, start, &by_page, &by_site).await;
    server.kill_9();
    let server = Server::start(crate::TRACKER_HTTP, &args);
    server.wait_ready(&client, WITHIN).await;
    check_month(&server, &client, start, &by_page, &by_site).await;
}

/// The daily series of every page and site, and the top pages and each
/// page's count over the month and over a week of it, against the model.
async fn check_month(
    server: &test_support::process::Server,
    client: &reqwest::Client,
    start: u64,
    by_page: &DayModel,
    by_site: &DayModel,
) {
    use std::collections::HashSet;
    use test_support::process::json_of;

    let day_text = |day: u64| Timestamp::from_millis((start + day * DAY) * 1000).to_rfc3339();
    let read = |query: String| json_of(client.get(server.url(&query)));
    let range = format!("from={}&till={}", day_text(0), day_text(DAYS));
    let check_series = |series: &Value, model: &DayModel, key: &str| {
        assert_eq!(series["step"], "1d");
        assert_eq!(
            (&series["from"], &series["till"]),
            (&json!(day_text(0)), &json!(day_text(DAYS)))
        );
        let points = series["points"].as_array().unwrap();
        assert_eq!(points.len(), DAYS as usize, "{series}");
        for (day, point) in (0..).zip(points) {
            let expected = model.get(&(key, day)).map_or(0, HashSet::len);
            assert_eq!(
                (&point["from"], &point["till"], &point["exact"]),
                (
                    &json!(day_text(day)),
                    &json!(day_text(day + 1)),
                    &json!(true)
                )
            );
            assert_eq!(point["distinct_visitors"], expected, "{key} day {day}");
        }
    };
    for url in PAGES {
        let series = read(format!("/series?url={url}&{range}&step=1d")).await;
        check_series(&series, by_page, url);
    }
    for site in ["shop.example", "blog.example"] {
        let series = read(format!("/series?site={site}&{range}&step=24h")).await;
        check_series(&series, by_site, site);
    }

    // The month as one range, and a week of it: unions of days.
    let union = |url: &str, days: std::ops::Range<u64>| {
        days.filter_map(|d| by_page.get(&(url, d)))
            .flatten()
            .collect::<HashSet<_>>()
            .len()
    };
    for (from, till) in [(0, DAYS), (7, 14)] {
        let window = format!("from={}&till={}", day_text(from), day_text(till));
        let mut expected: Vec<(usize, &str)> = PAGES
            .iter()
            .map(|url| (union(url, from..till), *url))
            .collect();
        expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        let top = read(format!("/top?limit=4&{window}")).await;
        let got: Vec<(usize, &str)> = top["pages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let n = p["distinct_visitors"].as_u64().unwrap() as usize;
                (n, p["url"].as_str().unwrap())
            })
            .collect();
        assert_eq!(got, expected, "top of days {from}..{till}");
        for url in PAGES {
            let answer = read(format!("/distinct?url={url}&{window}")).await;
            assert_eq!(
                answer["distinct_visitors"],
                union(url, from..till),
                "{url} {window}"
            );
        }
    }
}

#[tokio::test]
async fn times_ahead_of_the_clock_or_before_the_retention_are_refused() {
    let retention = Duration::from_secs(30 * DAY);
    let (app, _) = app_with(
        Tracker::builder().retention(retention),
        HttpLimits::standard(),
    );
    // Kept: the oldest hour retained (30 days, the current hour being
    // the last), and up to a minute ahead of the clock.
    for time in ["2026-10-09T13:00:00Z", "2026-11-08T12:31:00Z", "-1d", "now"] {
        let answer = record_timed(&app, "ok", "/r", json!(time)).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{time}");
    }
    for (time, code) in [
        (json!("2026-10-09T12:59:59Z"), "before_retention"),
        (json!("-31d"), "before_retention"),
        (json!(0), "before_retention"),
        (json!("2026-11-08T12:31:01Z"), "from_the_future"),
        (json!("2027-01-01"), "from_the_future"),
    ] {
        let answer = record_timed(&app, "no", "/r", time.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{time}");
        assert_eq!(answer.error_code(), code, "{time}");
    }
    // In a batch, each such event is refused alone.
    let batch = json!([
        {"visitor": "a", "url": "/r", "time": "2027-01-01"},
        {"visitor": "b", "url": "/r", "time": "-1h"},
        {"visitor": "c", "url": "/r", "time": "2020-01-01"},
    ]);
    let reply = post(&app, "/events/batch", "application/json", batch.to_string()).await;
    let reply = reply.json();
    assert_eq!(reply["accepted"], 1, "{reply}");
    let codes: Vec<&Value> = reply["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["error"]["code"])
        .collect();
    assert_eq!(
        codes,
        [&json!("from_the_future"), &json!("before_retention")]
    );
    // Without a retention, any past time is kept.
    let (app, _) = hourly();
    let answer = record_timed(&app, "old", "/r", json!("1970-01-01T00:00:00Z")).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
}

/// A time a little ahead of the clock (a sender's clock running fast)
/// counts as now: before, a visit sent at 13:00:20 by a clock 30 s fast,
/// at 12:59:50, was kept in the 13:00 bucket, which no open range
/// reached until 13:00 (the last hour, the all-time ranged count and the
/// ranged top all missed it), while the all-time count had it.
#[tokio::test]
async fn a_time_a_little_ahead_of_the_clock_counts_now_in_open_ranges() {
    let (app, clock) = hourly();
    clock.set(at("2026-11-08T12:59:50Z"));
    let page = "https://shop.example/fast";
    for (visitor, time) in [
        ("fast", json!("2026-11-08T13:00:20Z")),
        ("unix", json!(1_794_142_815)), // 13:00:15
    ] {
        let answer = record_timed(&app, visitor, page, time).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED);
    }
    let query = "url=https%3A%2F%2Fshop.example%2Ffast";
    assert_eq!(
        ok(&app, &format!("/distinct?{query}")).await["distinct_visitors"],
        2
    );
    for range in ["from=-1h", "till=now", "from=now"] {
        let answer = ok(&app, &format!("/distinct?{query}&{range}")).await;
        assert_eq!(answer["distinct_visitors"], 2, "{range}: {answer}");
    }
    let top = ok(&app, "/top?from=-1h").await;
    assert_eq!(top["pages"][0]["distinct_visitors"], 2, "{top}");
}

/// With a TTL, an event older than the TTL window counts nowhere: the
/// tracker drops it (it would expire on arrival), in the window and in
/// the buckets alike. It is refused, as one before the retention is,
/// rather than answered 202; one inside the window counts in both.
#[tokio::test]
async fn with_a_ttl_a_time_before_the_window_is_refused() {
    let (app, _) = app_with(
        Tracker::builder()
            .ttl(Duration::from_secs(3600))
            .retention(Duration::from_secs(30 * DAY)),
        HttpLimits::standard(),
    );
    // The window is the last hour, to the second: [11:30:01, 12:30:00].
    for time in ["2026-11-08T11:30:01Z", "-30m", "now"] {
        let answer = record_timed(&app, time, "/w", json!(time)).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{time}");
    }
    for time in ["2026-11-08T11:30:00Z", "-2h", "-1d"] {
        let answer = record_timed(&app, "old", "/w", json!(time)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{time}");
        assert_eq!(answer.error_code(), "before_ttl", "{time}");
        let message = answer.json()["error"]["message"].to_string();
        assert!(message.contains("2026-11-08T11:30:01Z"), "{message}");
    }
    // Nothing of "old" counts, in the window or in any bucket.
    assert_eq!(ok(&app, "/distinct?url=/w").await["distinct_visitors"], 3);
    let ranged = ok(&app, "/distinct?url=/w&from=2026-11-01&till=2026-11-09").await;
    assert_eq!(ranged["distinct_visitors"], 3, "{ranged}");
    // In a batch, such an event is refused alone.
    let batch = json!([
        {"visitor": "a", "url": "/w", "time": "-2h"},
        {"visitor": "b", "url": "/w", "time": "-1m"},
    ]);
    let reply = post(&app, "/events/batch", "application/json", batch.to_string()).await;
    let reply = reply.json();
    assert_eq!(reply["accepted"], 1, "{reply}");
    assert_eq!(reply["refused"][0]["index"], 0, "{reply}");
    assert_eq!(
        reply["refused"][0]["error"]["code"], "before_ttl",
        "{reply}"
    );
}

/// A page sketched under the memory budget answers ranges as estimates:
/// `exact: false` with its relative `error`, on the whole UTC days it
/// covers, in `/distinct`, each `/series` point and `/top`.
#[tokio::test]
async fn estimates_say_so_with_their_error() {
    use tracker_core::MemoryPolicy;

    let clock = ManualClock::new(at("2026-11-04T00:00:00Z"));
    let tracker = Tracker::builder()
        .stripes(2)
        .max_memory(150_000)
        .memory_policy(MemoryPolicy::Sketch)
        .clock(Arc::new(clock))
        .build()
        .unwrap();
    let start = at("2026-11-01").as_millis();
    for i in 0..30_000u64 {
        let when = Timestamp::from_millis(start + i * 3 * DAY * 1000 / 30_000);
        tracker
            .record_at(&format!("v{}", i % 20_000), "/big", when)
            .unwrap();
    }
    let app = app(AppState::new(Arc::new(tracker), HttpLimits::standard()));
    let estimate = |body: &Value| {
        assert_eq!(body["exact"], false, "{body}");
        let error = body["error"].as_f64().expect("an estimate has its error");
        assert!(error > 0.0 && error < 0.1, "{body}");
    };
    let range = ok(&app, "/distinct?url=/big&from=2026-11-02T06:00:00Z").await;
    estimate(&range);
    // Widened to the whole day the sketch keeps.
    assert_eq!(range["from"], "2026-11-02T00:00:00Z");
    let series = ok(&app, "/series?url=/big&from=2026-11-01&till=2026-11-04").await;
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), 3);
    points.iter().for_each(estimate);
    let top = ok(&app, "/top?from=2026-11-01&limit=1").await;
    estimate(&top["pages"][0]);
}
