//! Deterministic concurrency checks of the stripe and budget protocol:
//! recording (new pages, sets growing into tables), making room
//! (eviction, compaction of a full page table), and the expiry sweep, run
//! by several threads under [shuttle]'s scheduler over many interleavings.
//!
//! Built only with the `shuttle` feature, which swaps every lock and atomic
//! of the crate for shuttle's (see `sync.rs`); run them alone:
//!
//! ```text
//! cargo test -p tracker-core --features shuttle --lib shuttle
//! ```
//!
//! A failure prints the schedule that produced it; `shuttle::replay` with
//! that string runs exactly that interleaving again.
//!
//! [shuttle]: https://docs.rs/shuttle

use std::sync::Arc;
use std::time::Duration;

use shuttle::thread;

use crate::tracker::stripe::STRIPE_BYTES;
use crate::{ManualClock, MemoryPolicy, Recorded, Timestamp, Tracker, TrackerError};

/// Interleavings per check: each takes well under a millisecond, so a
/// check stays within seconds on one core while covering many schedules.
const ITERATIONS: usize = 2_000;
/// Preemptions per schedule for PCT: most concurrency bugs need few.
const DEPTH: usize = 3;

/// The budget: the two stripes' fixed bytes (shuttle's locks make a
/// stripe larger than in a release build) plus room for a few pages, so
/// that recording keeps running into the limit.
const LIMIT: u64 = 2 * STRIPE_BYTES as u64 + 944;

fn tracker(policy: MemoryPolicy, clock: &ManualClock, ttl: bool) -> Arc<Tracker> {
    let builder = Tracker::builder()
        .stripes(2)
        .hash_key(7)
        .max_memory(LIMIT)
        .memory_policy(policy)
        .clock(Arc::new(clock.clone()));
    let builder = if ttl {
        builder.ttl(Duration::from_secs(60))
    } else {
        builder
    };
    Arc::new(builder.build().expect("valid settings"))
}

/// Records visitors on pages from one thread: new pages (page-table growth,
/// URL bytes) and sets that outgrow their inline slots (visitor tables).
fn writer(tracker: &Tracker, thread: u32) -> Outcomes {
    let mut outcomes = Vec::new();
    for i in 0..10u32 {
        let url = format!("https://example.com/{}/{}", thread, i % 4);
        let visitor = format!("v{}", i % 5);
        let outcome = tracker.record(&visitor, &url);
        outcomes.push((visitor, url, outcome));
    }
    outcomes
}

type Outcomes = Vec<(String, String, Result<Recorded, TrackerError>)>;

/// Two [`writer`] threads.
fn spawn_writers(tracker: &Arc<Tracker>) -> Vec<thread::JoinHandle<Outcomes>> {
    (0..2)
        .map(|t| {
            let tracker = tracker.clone();
            thread::spawn(move || writer(&tracker, t))
        })
        .collect()
}

/// Watches the budget while the others run: the accounted bytes never pass
/// the limit at any point (each load is a point where the scheduler may
/// switch threads, so a transient overshoot shows too).
fn watch_budget(tracker: &Tracker) {
    for _ in 0..20 {
        let held = tracker.budget.held();
        assert!(held <= LIMIT, "{held} bytes held, limit {LIMIT}");
    }
}

/// The accounting invariants once every thread is done: the incremental
/// byte count equals a recount, and never passed the limit.
fn check_accounting(tracker: &Tracker) {
    let stats = tracker.stats();
    assert_eq!(stats.bytes, tracker.recount_bytes(), "{stats:?}");
    assert!(
        stats.bytes <= stats.max_bytes.unwrap_or(u64::MAX),
        "{stats:?}"
    );
}

/// Two writers make room by evicting while a third thread advances the
/// clock and sweeps, and watches the budget: the accounted bytes never
/// pass the limit at any point of any interleaving, and always match what
/// the stripes hold.
#[test]
fn shuttle_record_evict_sweep_keep_the_budget() {
    shuttle::check_pct(
        || {
            let clock = ManualClock::new(Timestamp::from_millis(1_000_000_000));
            let tracker = tracker(MemoryPolicy::Evict, &clock, true);
            let writers = spawn_writers(&tracker);
            let sweeper = {
                let tracker = tracker.clone();
                let clock = clock.clone();
                thread::spawn(move || {
                    for _ in 0..3 {
                        watch_budget(&tracker);
                        clock.advance(Duration::from_secs(25));
                        tracker.sweep(16);
                    }
                })
            };
            for writer in writers {
                for (_, _, outcome) in writer.join().expect("writer") {
                    // Eviction always finds room for pages this small.
                    assert!(outcome.is_ok(), "{outcome:?}");
                }
            }
            sweeper.join().expect("sweeper");
            check_accounting(&tracker);
        },
        ITERATIONS,
        DEPTH,
    );
}

/// Under `Reject` no count is ever lost or made up: whatever two racing
/// writers were told was recorded is exactly what the tracker counts.
/// Without a TTL: with one, a timed set's expiry horizon may outgrow its
/// reservation by a few bytes (forced, see `Stripe::record_existing`), and
/// `Reject` never makes room to take them back.
#[test]
fn shuttle_reject_keeps_every_count_exact() {
    shuttle::check_random(
        || {
            let clock = ManualClock::new(Timestamp::from_millis(1_000_000_000));
            let tracker = tracker(MemoryPolicy::Reject, &clock, false);
            let writers = spawn_writers(&tracker);
            let watcher = {
                let tracker = tracker.clone();
                thread::spawn(move || watch_budget(&tracker))
            };
            let mut model: std::collections::HashMap<String, std::collections::HashSet<String>> =
                Default::default();
            for writer in writers {
                for (visitor, url, outcome) in writer.join().expect("writer") {
                    match outcome {
                        Ok(_) => {
                            model.entry(url).or_default().insert(visitor);
                        }
                        Err(TrackerError::MemoryFull { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            watcher.join().expect("watcher");
            for (url, visitors) in &model {
                let count = tracker.distinct(url).expect("valid URL");
                assert_eq!(count.visitors, visitors.len() as u64, "{url}");
            }
            check_accounting(&tracker);
        },
        ITERATIONS,
    );
}

/// Two records race for the budget's last bytes, each needing a visitor
/// table on its own stripe (so no stripe lock orders them): exactly one
/// gets them, the other is refused, and the limit holds. This is the
/// budget's reservation protocol alone; a reservation that checks the
/// room and takes it in two steps fails here, and nowhere single-threaded.
#[test]
fn shuttle_the_last_bytes_go_to_one_record() {
    shuttle::check_pct(
        || {
            let build = |limit: Option<u64>| {
                let builder = Tracker::builder().stripes(2).hash_key(7);
                let builder = match limit {
                    Some(limit) => builder.max_memory(limit),
                    None => builder,
                };
                let tracker = builder.memory_policy(MemoryPolicy::Reject).build();
                Arc::new(tracker.expect("valid settings"))
            };
            // Two pages on different stripes, with two visitors each: the
            // third needs a visitor table.
            let probe = build(None);
            let stripe_of = |url: &str| (probe.url_hasher.hash_one(url) >> 32) & 1;
            let a = "/a".to_string();
            let b = (0..)
                .map(|i| format!("/b{i}"))
                .find(|b| stripe_of(b) != stripe_of(&a))
                .expect("a page on the other stripe");
            let prefill = |tracker: &Tracker| {
                for url in [&a, &b] {
                    for visitor in ["v1", "v2"] {
                        tracker.record(visitor, url).expect("room");
                    }
                }
            };
            prefill(&probe);
            let table = 48; // the smallest visitor table: count, 3 keys, 3 words
            // Room for one table, not two.
            let tracker = build(Some(probe.budget.held() + 2 * table - 1));
            prefill(&tracker);
            let racers: Vec<_> = [a, b]
                .into_iter()
                .map(|url| {
                    let tracker = tracker.clone();
                    thread::spawn(move || tracker.record("v3", &url))
                })
                .collect();
            let won = racers
                .into_iter()
                .map(|racer| racer.join().expect("racer"))
                .filter(Result::is_ok)
                .count();
            let stats = tracker.stats();
            assert!(
                stats.bytes <= stats.max_bytes.expect("a limit"),
                "{stats:?}"
            );
            assert_eq!(won, 1, "{stats:?}");
            check_accounting(&tracker);
        },
        ITERATIONS,
        DEPTH,
    );
}

/// Two threads send batches over the same pages (so each finds locks the
/// other holds, and defers those stripes) while a third records one by
/// one: every pair counts once, every event is accepted, and the bytes
/// the batches booked once per stripe run match a recount.
#[test]
fn shuttle_batches_count_every_pair_once() {
    shuttle::check_pct(
        || {
            let tracker = Arc::new(Tracker::builder().stripes(2).hash_key(7).build().unwrap());
            let urls: Vec<String> = (0..4).map(|p| format!("https://example.com/{p}")).collect();
            let senders: Vec<_> = (0..2)
                .map(|t| {
                    let (tracker, urls) = (tracker.clone(), urls.clone());
                    thread::spawn(move || {
                        let mut batch = crate::RecordBatch::default();
                        for round in 0..2 {
                            let visitors: Vec<String> = (0..6)
                                .map(|i| format!("v{}", (i + round + t) % 5))
                                .collect();
                            let events: Vec<(&str, &str)> = visitors
                                .iter()
                                .enumerate()
                                .map(|(i, v)| (v.as_str(), urls[(i + t) % urls.len()].as_str()))
                                .collect();
                            tracker.record_batch(&events, &mut batch);
                            assert_eq!(batch.accepted(), events.len());
                        }
                    })
                })
                .collect();
            let one_by_one = {
                let tracker = tracker.clone();
                thread::spawn(move || {
                    for i in 0..4 {
                        let url = format!("https://example.com/{i}");
                        tracker.record("v0", &url).expect("no budget");
                    }
                })
            };
            for sender in senders {
                sender.join().expect("sender");
            }
            one_by_one.join().expect("one by one");
            // The same events recorded one by one, on one thread.
            let model = Tracker::builder().stripes(2).hash_key(7).build().unwrap();
            for t in 0..2 {
                for round in 0..2 {
                    for i in 0..6 {
                        let visitor = format!("v{}", (i + round + t) % 5);
                        model.record(&visitor, &urls[(i + t) % urls.len()]).unwrap();
                    }
                }
            }
            for url in &urls {
                model.record("v0", url).unwrap();
            }
            for url in &urls {
                assert_eq!(
                    tracker.distinct(url).unwrap().visitors,
                    model.distinct(url).unwrap().visitors
                );
            }
            let stats = tracker.stats();
            assert_eq!(stats.bytes, tracker.recount_bytes(), "{stats:?}");
        },
        ITERATIONS,
        DEPTH,
    );
}

/// Three writers add pages with long URLs under `Evict`, each page a good
/// part of the budget, so that while one record makes room the others can
/// take all of it before that record retries: a record that finds its
/// room gone tries again, and none is refused while older pages remain to
/// evict.
#[test]
fn shuttle_room_taken_by_others_is_made_again() {
    shuttle::check_pct(
        || {
            let padding = "x".repeat(1_900);
            // Room for four such pages beside the stripes' fixed bytes.
            let limit = 2 * STRIPE_BYTES as u64 + 9_000;
            let tracker = Arc::new(
                Tracker::builder()
                    .stripes(2)
                    .hash_key(7)
                    .max_memory(limit)
                    .memory_policy(MemoryPolicy::Evict)
                    .build()
                    .expect("valid settings"),
            );
            let writers: Vec<_> = (0..3)
                .map(|t| {
                    let (tracker, padding) = (tracker.clone(), padding.clone());
                    thread::spawn(move || {
                        (0..3)
                            .map(|i| tracker.record("v", &format!("/{t}/{i}/{padding}")))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for writer in writers {
                for outcome in writer.join().expect("writer") {
                    assert!(outcome.is_ok(), "{outcome:?}");
                }
            }
            check_accounting(&tracker);
        },
        ITERATIONS,
        DEPTH,
    );
}
