// Run: cargo bench -p tracker-benches --bench sites
//! Site and listing queries on the core workload (Zipf s=1, 100k pages of
//! one host, 1M visitors, 2M events): the distinct visitors of the whole
//! site (a union of every page, through a transient set), the top pages
//! of the site, and a full cursor-paginated listing of every page. Each a
//! median of several rounds; `top` (all sites) beside them for scale.
//! Time ranges (issue 12) add their forms here.

use std::hint::black_box;
use std::time::Instant;

use tracker_benches::full_run;
use tracker_benches::ratios::human_ns;
use tracker_benches::workload::ZipfWorkload;
use tracker_core::{PageQuery, Tracker};

/// Median wall time of `rounds` runs of `f`, in nanoseconds.
fn median_ns(rounds: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e9
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[rounds / 2]
}

fn main() {
    let full = full_run();
    let workload = ZipfWorkload::core(full);
    let tracker = Tracker::new();
    for (visitor, url) in workload.events.iter() {
        tracker.record(visitor, url).unwrap();
    }
    let stats = tracker.stats();
    let site = "shop.example.com";
    let rounds = if full { 7 } else { 1 };
    let union = tracker.site_distinct(site).unwrap();
    println!(
        "{} pages, {} pairs, all on {site}: {} distinct visitors of the site (exact: {})\n",
        stats.pages, stats.pairs, union.visitors, union.exact
    );
    let mut rows: Vec<(&str, f64)> = vec![
        (
            "site_distinct (union of every page)",
            median_ns(rounds, || {
                black_box(tracker.site_distinct(site).unwrap());
            }),
        ),
        (
            "top(10), every site",
            median_ns(rounds, || {
                black_box(tracker.top(10));
            }),
        ),
        (
            "top_of_site(10)",
            median_ns(rounds, || {
                black_box(tracker.top_of_site(10, site).unwrap());
            }),
        ),
    ];
    let mut requests = 0;
    let listing = median_ns(rounds, || {
        let mut query = PageQuery {
            limit: 1_000,
            ..PageQuery::default()
        };
        requests = 0;
        loop {
            let page = tracker.pages(&query).unwrap();
            requests += 1;
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => break,
            }
        }
    });
    rows.push(("pages(limit 1000), one request", listing / requests as f64));
    println!("| query | median |");
    println!("| --- | ---: |");
    for (query, ns) in rows {
        println!("| {query} | {} |", human_ns(ns));
    }
    println!(
        "| pages(limit 1000), the whole listing ({requests} requests) | {} |",
        human_ns(listing)
    );
}
