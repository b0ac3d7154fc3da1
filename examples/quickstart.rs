// Run: cargo run -p tracker-core --example quickstart
//
// Counts distinct visitors per page from a few events, the way an
// application embedding tracker-core would.

use std::sync::Arc;
use std::thread;

use tracker_core::{QueryPolicy, Tracker};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Strip query strings so campaign parameters don't split a page.
    let tracker = Arc::new(
        Tracker::builder()
            .query_policy(QueryPolicy::Strip)
            .build()?,
    );

    // Two threads ingest at once; the tracker is shared, no outer lock needed.
    let events = [
        ("alice", "https://shop.example.com/pricing?utm_source=mail"),
        ("bob", "https://SHOP.example.com/pricing#plans"),
        ("alice", "https://shop.example.com/pricing"),
        ("carol", "https://shop.example.com/"),
    ];
    let workers: Vec<_> = events
        .chunks(2)
        .map(|chunk| {
            let tracker = Arc::clone(&tracker);
            let chunk = chunk.to_vec();
            thread::spawn(move || {
                for (visitor, url) in chunk {
                    tracker.record(visitor, url).expect("valid event");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker finished");
    }

    let pricing = tracker.distinct("https://shop.example.com/pricing")?;
    println!(
        "pricing: {} distinct visitors (exact: {})",
        pricing.visitors, pricing.exact
    );
    for row in tracker.top(10) {
        println!("{:>4}  {}", row.distinct.visitors, row.url);
    }
    let stats = tracker.stats();
    println!(
        "{} pages, {} pairs, {} bytes held",
        stats.pages, stats.pairs, stats.bytes
    );

    // Bad input is a typed error, and changes nothing.
    if let Err(error) = tracker.record("", "https://shop.example.com/") {
        println!("refused: {error}");
    }
    Ok(())
}
