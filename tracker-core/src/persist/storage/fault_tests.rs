//! The event log under failing I/O, injected through `disk::Faults` so
//! that these run everywhere, root or not, with no mount needed (the
//! integration tests add a real read-only and a real full file system
//! where the machine allows mounting).

use super::disk::Faults;
use super::error::PersistError;
use super::event_log::{EventLog, FsyncPolicy, LogOptions};
use super::frame::LogEvent;
use super::lsn::Lsn;
use super::recovery::Recovery;
use std::sync::Arc;
use std::sync::atomic::Ordering;

fn faulty(sync: FsyncPolicy) -> (LogOptions, Arc<Faults>) {
    let faults = Arc::new(Faults::default());
    let mut options = LogOptions::default().sync(sync);
    options.disk.faults = Some(Arc::clone(&faults));
    (options, faults)
}

fn event(i: u64) -> LogEvent<'static> {
    LogEvent {
        visitor_hash: i,
        at_millis: 1_000 + i,
        url: "https://example.com/a/page/with/a/longish/path",
    }
}

fn replay_all(dir: &std::path::Path) -> (Vec<u64>, Recovery) {
    let mut seen = Vec::new();
    let (_log, recovery) = EventLog::open_replaying(dir, LogOptions::default(), Lsn(0), |_, e| {
        seen.push(e.visitor_hash)
    })
    .expect("the log stays readable");
    (seen, recovery)
}

#[test]
fn a_full_disk_fails_the_append_and_keeps_the_log_valid() {
    for budget in [0, 1, 7, 8, 30, 70, 200] {
        let dir = tempfile::tempdir().unwrap();
        let (options, faults) = faulty(FsyncPolicy::Always);
        let (log, _) = EventLog::open(dir.path(), options).unwrap();
        for i in 0..3 {
            log.append(&event(i)).unwrap();
        }
        *faults.write_budget.lock().unwrap() = Some(budget);
        let mut acked = vec![0, 1, 2];
        let mut failed = 0;
        for i in 3..10 {
            match log.append(&event(i)) {
                Ok(_) => acked.push(i),
                Err(PersistError::Io { op, path, source }) => {
                    assert_eq!(op, "write");
                    assert!(path.starts_with(dir.path()));
                    assert_eq!(source.raw_os_error(), Some(28));
                    failed += 1;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(failed > 0, "budget {budget}");
        // Room again: the log goes on from its last good frame.
        *faults.write_budget.lock().unwrap() = None;
        log.append(&event(99)).unwrap();
        acked.push(99);
        drop(log);
        let (seen, recovery) = replay_all(dir.path());
        assert_eq!(seen, acked, "budget {budget}");
        assert_eq!(recovery.torn_tail, None);
    }
}

#[test]
fn zeros_that_do_not_fit_are_cut_off_and_the_group_appended_without() {
    // A fresh log has no zeros ahead yet: its first group writes them. A
    // budget that runs out in them (then in the frame) or only in them.
    for budget in [0, 100, 70_000] {
        let dir = tempfile::tempdir().unwrap();
        let (options, faults) = faulty(FsyncPolicy::Always);
        let (log, _) = EventLog::open(dir.path(), options).unwrap();
        *faults.write_budget.lock().unwrap() = Some(budget);
        // The zeros used up the budget: the frame fails after them.
        assert!(matches!(
            log.append(&event(1)),
            Err(PersistError::Io { op: "write", .. })
        ));
        let seg = super::segment::path(dir.path(), 0);
        let header = super::segment::HEADER_LEN as u64;
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), header, "cut off");
        *faults.write_budget.lock().unwrap() = None;
        let lsn = log.append(&event(2)).unwrap();
        assert_eq!(lsn, Lsn(header), "the log goes on from its last frame");
        drop(log);
        let (seen, recovery) = replay_all(dir.path());
        assert_eq!(seen, [2], "budget {budget}");
        assert_eq!((recovery.torn_tail, recovery.zero_tail), (None, 0));
    }
}

#[test]
fn zeros_that_cannot_be_cut_off_stop_the_log_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let (options, faults) = faulty(FsyncPolicy::Always);
    let (log, _) = EventLog::open(dir.path(), options).unwrap();
    *faults.write_budget.lock().unwrap() = Some(100);
    faults.fail_set_len.store(true, Ordering::SeqCst);
    assert!(matches!(
        log.append(&event(1)),
        Err(PersistError::Io { op: "truncate", .. })
    ));
    *faults.write_budget.lock().unwrap() = None;
    faults.fail_set_len.store(false, Ordering::SeqCst);
    assert!(matches!(
        log.append(&event(2)),
        Err(PersistError::Failed { .. })
    ));
    drop(log);
    // Reopened, the 100 zeros left are the end of the log.
    let (seen, recovery) = replay_all(dir.path());
    assert!(seen.is_empty());
    assert_eq!((recovery.torn_tail, recovery.zero_tail), (None, 100));
}

#[test]
fn zeros_that_cannot_be_cut_off_before_a_rotation_keep_the_old_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (options, faults) = faulty(FsyncPolicy::Always);
    let (log, _) = EventLog::open(dir.path(), options).unwrap();
    log.append(&event(1)).unwrap();
    faults.fail_set_len.store(true, Ordering::SeqCst);
    assert!(matches!(
        log.rotate(),
        Err(PersistError::Io { op: "truncate", .. })
    ));
    log.append(&event(2)).unwrap();
    faults.fail_set_len.store(false, Ordering::SeqCst);
    let start = log.rotate().unwrap();
    log.append(&event(3)).unwrap();
    drop(log);
    let first = super::segment::path(dir.path(), 0);
    assert_eq!(
        std::fs::metadata(first).unwrap().len(),
        start.0,
        "no zeros left"
    );
    let (seen, recovery) = replay_all(dir.path());
    assert_eq!(seen, [1, 2, 3]);
    assert_eq!((recovery.torn_tail, recovery.zero_tail), (None, 0));
}

#[test]
fn a_failed_fsync_stops_the_log_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let (options, faults) = faulty(FsyncPolicy::Always);
    let (log, _) = EventLog::open(dir.path(), options).unwrap();
    log.append(&event(1)).unwrap();
    faults.fail_sync.store(true, Ordering::SeqCst);
    assert!(matches!(
        log.append(&event(2)),
        Err(PersistError::Io { op: "fsync", .. })
    ));
    faults.fail_sync.store(false, Ordering::SeqCst);
    assert!(matches!(
        log.append(&event(3)),
        Err(PersistError::Failed { .. })
    ));
    assert!(matches!(log.rotate(), Err(PersistError::Failed { .. })));
    drop(log);
    // Event 2 reached the file (only its fsync failed): replay may see it,
    // which is fine (an error means "maybe not logged").
    let (seen, _) = replay_all(dir.path());
    assert_eq!(seen[0], 1);
    assert!(seen == [1] || seen == [1, 2], "{seen:?}");
}

#[test]
fn the_interval_flusher_reports_a_failed_fsync_on_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let (options, faults) = faulty(FsyncPolicy::Interval(std::time::Duration::from_millis(1)));
    let (log, _) = EventLog::open(dir.path(), options).unwrap();
    faults.fail_sync.store(true, Ordering::SeqCst);
    log.append(&event(1)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match log.append(&event(2)) {
            Err(PersistError::Failed { cause }) => {
                assert!(cause.contains("fsync"), "{cause}");
                break;
            }
            Ok(_) => assert!(std::time::Instant::now() < deadline, "flusher never failed"),
            Err(e) => panic!("unexpected {e}"),
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

#[test]
fn a_directory_where_nothing_can_be_created_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let (options, faults) = faulty(FsyncPolicy::Always);
    faults.fail_create.store(true, Ordering::SeqCst);
    match EventLog::open(dir.path(), options) {
        Err(PersistError::Io { path, op, source }) => {
            assert_eq!(op, "create");
            assert!(path.starts_with(dir.path()));
            assert_eq!(source.raw_os_error(), Some(30));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_failed_rotation_keeps_appending_to_the_old_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (options, faults) = faulty(FsyncPolicy::Always);
    let (log, _) = EventLog::open(dir.path(), options).unwrap();
    log.append(&event(1)).unwrap();
    faults.fail_create.store(true, Ordering::SeqCst);
    assert!(matches!(
        log.rotate(),
        Err(PersistError::Io { op: "create", .. })
    ));
    faults.fail_create.store(false, Ordering::SeqCst);
    log.append(&event(2)).unwrap();
    let start = log.rotate().unwrap();
    log.append(&event(3)).unwrap();
    assert!(start > Lsn(0));
    drop(log);
    assert_eq!(replay_all(dir.path()).0, [1, 2, 3]);
}

#[test]
fn concurrent_appenders_all_see_a_group_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (options, faults) = faulty(FsyncPolicy::Always);
    let (log, _) = EventLog::open(dir.path(), options).unwrap();
    *faults.write_budget.lock().unwrap() = Some(10_000);
    let acked: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u64)
            .map(|t| {
                let log = &log;
                s.spawn(move || {
                    (0..200)
                        .map(|i| t * 1000 + i)
                        .filter(|&v| log.append(&event(v)).is_ok())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    drop(log);
    let (mut seen, recovery) = replay_all(dir.path());
    let mut acked = acked;
    acked.sort_unstable();
    seen.sort_unstable();
    assert_eq!(seen, acked);
    assert_eq!(recovery.torn_tail, None);
}

/// Polls `cond` until it holds; panics after a generous deadline.
fn await_condition(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::yield_now();
    }
}

#[test]
fn under_always_no_append_completes_before_its_fsync() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    let dir = tempfile::tempdir().unwrap();
    let (options, faults) = faulty(FsyncPolicy::Always);
    let (log, _) = EventLog::open(dir.path(), options).unwrap();
    *faults.hold_sync.lock().unwrap() = true;
    let before = faults.syncs_started.load(Ordering::SeqCst);

    let mut first = Box::pin(log.submit(&[event(1)]));
    // The writer has written group 1 and is inside its fsync, held.
    await_condition("the first fsync starts", || {
        faults.syncs_started.load(Ordering::SeqCst) > before
    });
    // Appends made meanwhile form the next group: neither they nor the
    // group being synced may complete until their own fsync has.
    let mut second = Box::pin(log.submit(&[event(2), event(3)]));
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..100 {
        assert!(first.as_mut().poll(&mut cx).is_pending());
        assert!(second.as_mut().poll(&mut cx).is_pending());
        assert!(!first.is_done() && !second.is_done());
        std::thread::yield_now();
    }

    // Let the first fsync through but hold the next one.
    let started = faults.syncs_started.load(Ordering::SeqCst);
    *faults.hold_sync.lock().unwrap() = false;
    faults.sync_gate_cv.notify_all();
    let lsn = loop {
        if let Poll::Ready(r) = first.as_mut().poll(&mut cx) {
            break r;
        }
        std::thread::yield_now();
    };
    lsn.unwrap();
    // The second group's fsync may start only now; hold it and check
    // that its append still waits.
    *faults.hold_sync.lock().unwrap() = true;
    if faults.syncs_started.load(Ordering::SeqCst) == started {
        await_condition("the second fsync starts", || {
            faults.syncs_started.load(Ordering::SeqCst) > started
        });
        assert!(second.as_mut().poll(&mut cx).is_pending());
    }
    faults.release_syncs();
    futures_block_on(second).unwrap();
}

/// Blocks on an [`Append`](super::commit::Append) future through its
/// blocking wait, the way a sync caller would.
fn futures_block_on(
    append: std::pin::Pin<Box<super::commit::Append>>,
) -> Result<Lsn, PersistError> {
    std::pin::Pin::into_inner(append).wait()
}

#[test]
fn concurrent_appenders_are_all_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let log = &log;
            s.spawn(move || {
                for i in 0..50 {
                    log.submit(&[event(t * 1000 + i)]).wait().unwrap();
                }
            });
        }
    });
    drop(log);
    let (mut seen, _) = replay_all(dir.path());
    seen.sort_unstable();
    let mut expected: Vec<u64> = (0..8u64)
        .flat_map(|t| (0..50).map(move |i| t * 1000 + i))
        .collect();
    expected.sort_unstable();
    assert_eq!(seen, expected);
}
