//! The event log through its public API: round trips, group commit under
//! concurrency, torn tails, corruption, salvage, rotation, and real
//! read-only and full file systems.

use proptest::prelude::*;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;
use test_support::tmpfs::Tmpfs;
use tracker_core::persist::{EventLog, LogEvent, LogOptions, Lsn, PersistError, SyncPolicy};

type Owned = (u64, u64, String);

fn owned(e: LogEvent<'_>) -> Owned {
    (e.visitor_hash, e.at_millis, e.url.to_owned())
}

fn ev(e: &Owned) -> LogEvent<'_> {
    LogEvent {
        visitor_hash: e.0,
        at_millis: e.1,
        url: &e.2,
    }
}

fn sample(i: u64) -> Owned {
    (
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        1_700_000_000_000 + i,
        format!("https://example.com/page/{}", i % 17),
    )
}

/// Opens the log and replays it from `from`.
fn replay(
    dir: &Path,
    options: LogOptions,
    from: Lsn,
) -> Result<(Vec<(Lsn, Owned)>, tracker_core::persist::Recovery), PersistError> {
    let mut seen = Vec::new();
    let (_log, recovery) =
        EventLog::open_replaying(dir, options, from, |lsn, e| seen.push((lsn, owned(e))))?;
    Ok((seen, recovery))
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// Writes `n` sample events and returns them with their positions.
fn write_samples(dir: &Path, options: LogOptions, n: u64) -> Vec<(Lsn, Owned)> {
    let (log, _) = EventLog::open(dir, options).unwrap();
    (0..n)
        .map(|i| {
            let e = sample(i);
            (log.append(&ev(&e)).unwrap(), e)
        })
        .collect()
}

#[test]
fn round_trip_under_every_policy() {
    for policy in [
        SyncPolicy::Always,
        SyncPolicy::Interval(Duration::from_millis(5)),
        SyncPolicy::Off,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let written = write_samples(dir.path(), LogOptions::default().sync(policy), 100);
        let (seen, recovery) = replay(dir.path(), LogOptions::default(), Lsn(0)).unwrap();
        assert_eq!(seen, written, "{policy:?}");
        assert_eq!(recovery.events, 100);
        assert_eq!(recovery.torn_tail, None);
    }
}

#[test]
fn batches_are_contiguous_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    let batch: Vec<Owned> = (0..10).map(sample).collect();
    let refs: Vec<_> = batch.iter().map(ev).collect();
    let first = log.append_batch(&refs).unwrap();
    assert_eq!(log.append_batch(&[]).unwrap(), log.end());
    drop(log);
    let (seen, _) = replay(dir.path(), LogOptions::default(), Lsn(0)).unwrap();
    assert_eq!(seen[0].0, first);
    assert_eq!(seen.iter().map(|s| s.1.clone()).collect::<Vec<_>>(), batch);
}

#[test]
fn reopening_appends_after_the_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = write_samples(dir.path(), LogOptions::default(), 5);
    let (log, recovery) = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(recovery.events, 0, "open alone replays nothing");
    let e = sample(5);
    all.push((log.append(&ev(&e)).unwrap(), e));
    drop(log);
    assert_eq!(
        replay(dir.path(), LogOptions::default(), Lsn(0)).unwrap().0,
        all
    );
}

#[test]
fn eight_threads_commit_every_acknowledged_event_exactly_once() {
    for policy in [SyncPolicy::Always, SyncPolicy::Off] {
        let dir = tempfile::tempdir().unwrap();
        // Small segments, so that rotation happens under contention too.
        let options = LogOptions::default().sync(policy).segment_size(4096);
        let (log, _) = EventLog::open(dir.path(), options).unwrap();
        let acked: Vec<(Lsn, Owned)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u64)
                .map(|t| {
                    let log = &log;
                    s.spawn(move || {
                        (0..300)
                            .map(|i| {
                                let e = sample(t * 1_000_000 + i);
                                (log.append(&ev(&e)).unwrap(), e)
                            })
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
        let lsns: HashSet<Lsn> = acked.iter().map(|a| a.0).collect();
        assert_eq!(lsns.len(), acked.len(), "positions are unique");
        let (seen, _) = replay(dir.path(), LogOptions::default(), Lsn(0)).unwrap();
        let mut acked = acked;
        acked.sort();
        assert_eq!(seen, acked, "{policy:?}: every acknowledged event, once");
        assert!(segments(dir.path()).len() > 1);
    }
}

#[test]
fn a_tail_cut_at_every_byte_of_the_last_record_is_dropped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_samples(dir.path(), LogOptions::default(), 4);
    let seg = segments(dir.path()).pop().unwrap();
    let full = fs::read(&seg).unwrap();
    let last_start = written[3].0.0 as usize; // one segment starting at 0
    for cut in last_start..full.len() {
        fs::write(&seg, &full[..cut]).unwrap();
        let (seen, recovery) = replay(dir.path(), LogOptions::default(), Lsn(0)).unwrap();
        assert_eq!(seen, written[..3], "cut at {cut}");
        if cut == last_start {
            assert_eq!(recovery.torn_tail, None);
        } else {
            let torn = recovery.torn_tail.expect("reported");
            assert_eq!(
                (torn.offset, torn.bytes),
                (last_start as u64, (cut - last_start) as u64)
            );
            assert_eq!(torn.file, seg);
        }
        assert_eq!(
            fs::metadata(&seg).unwrap().len(),
            last_start as u64,
            "truncated"
        );
        assert_eq!(recovery.end, Lsn(last_start as u64));
    }
}

#[test]
fn a_bad_last_record_and_a_zero_filled_tail_are_torn_tails() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_samples(dir.path(), LogOptions::default(), 3);
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40; // the last record's checksum fails
    bytes.extend_from_slice(&[0; 100]);
    fs::write(&seg, &bytes).unwrap();
    let (seen, recovery) = replay(dir.path(), LogOptions::default(), Lsn(0)).unwrap();
    assert_eq!(seen, written[..2]);
    assert_eq!(recovery.torn_tail.unwrap().offset, written[2].0.0);
}

/// Recovery reads a segment through a window of a few hundred KiB, not
/// whole: frames longer than the window, frames across its edges, and a
/// zero tail longer than it must all read as they do from a whole file.
#[test]
fn frames_longer_than_the_read_window_and_a_long_zero_tail_replay_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    let mut written = Vec::new();
    for i in 0..40u64 {
        // Mostly short, some URLs of 100 KiB to 900 KiB (the longest a frame
        // may hold is 1 MiB).
        let len = if i % 7 == 3 {
            (i as usize + 1) * 23_000
        } else {
            40
        };
        let event = (
            i,
            1_700_000_000_000 + i,
            format!("https://e.example/{}", "x".repeat(len)),
        );
        written.push((log.append(&ev(&event)).unwrap(), event));
    }
    drop(log);
    let seg = segments(dir.path()).pop().unwrap();
    let size = fs::metadata(&seg).unwrap().len();
    assert!(size > 2 << 20, "spans many read windows: {size}");
    let (seen, recovery) = replay(dir.path(), LogOptions::default(), Lsn(0)).unwrap();
    assert_eq!(seen, written);
    assert_eq!(recovery.torn_tail, None);

    // The last frame damaged, then 1 MiB of zeros: still a torn tail.
    let whole = fs::read(&seg).unwrap();
    let mut bytes = whole.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    bytes.resize(bytes.len() + (1 << 20), 0);
    fs::write(&seg, &bytes).unwrap();
    let (seen, recovery) = replay(dir.path(), LogOptions::default(), Lsn(0)).unwrap();
    assert_eq!(seen, written[..39]);
    assert_eq!(recovery.torn_tail.unwrap().offset, written[39].0.0);

    // The same damage with one non-zero byte far past the window: corruption.
    let far = bytes.len() - 10;
    bytes[far] = 1;
    fs::write(&seg, &bytes).unwrap();
    assert!(matches!(
        replay(dir.path(), LogOptions::default(), Lsn(0)),
        Err(PersistError::Corrupt { offset, .. }) if offset == written[39].0.0
    ));
}

#[test]
fn a_flipped_byte_in_the_middle_is_a_typed_error_or_salvaged() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_samples(dir.path(), LogOptions::default(), 10);
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let bad = written[4].0.0;
    bytes[bad as usize + 12] ^= 1; // inside record 4's payload
    fs::write(&seg, &bytes).unwrap();

    match replay(dir.path(), LogOptions::default(), Lsn(0)) {
        Err(e @ PersistError::Corrupt { .. }) => {
            let PersistError::Corrupt { file, offset, .. } = &e else {
                unreachable!()
            };
            assert_eq!((file, *offset), (&seg, bad));
            let msg = e.to_string();
            assert!(
                msg.contains("log-00000000000000000000.seg") && msg.contains(&bad.to_string()),
                "{msg}"
            );
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(
        fs::read(&seg).unwrap(),
        bytes,
        "a failed open changes nothing"
    );

    let (seen, recovery) = replay(dir.path(), LogOptions::default().salvage(true), Lsn(0)).unwrap();
    assert_eq!(seen, written[..4]);
    let loss = recovery.salvaged.unwrap();
    assert_eq!((loss.offset, loss.bytes), (bad, bytes.len() as u64 - bad));
    // Afterwards the log is clean and appendable.
    let (log, recovery) = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(recovery.salvaged, None);
    assert_eq!(log.append(&ev(&sample(99))).unwrap(), Lsn(bad));
}

/// Copies the log's files while it is open: what a crash (kill -9, or a
/// power cut after the last fsync) would leave.
fn crash_copy(from: &Path, to: &Path) {
    for seg in segments(from) {
        fs::copy(&seg, to.join(seg.file_name().unwrap())).unwrap();
    }
}

#[test]
fn under_always_a_crash_leaves_zeros_after_the_last_frame_that_recovery_reads_as_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    let written: Vec<_> = (0..50)
        .map(|i| (log.append(&ev(&sample(i))).unwrap(), sample(i)))
        .collect();
    let end = log.end().0;
    let crashed = tempfile::tempdir().unwrap();
    crash_copy(dir.path(), crashed.path());
    let seg = segments(crashed.path()).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    assert!(
        len > end,
        "zeros are written ahead of the frames: {len} <= {end}"
    );
    assert!(
        fs::read(&seg).unwrap()[end as usize..]
            .iter()
            .all(|&b| b == 0)
    );

    // The crash may also have come in the middle of writing the zeros:
    // any length of them reads the same.
    for cut in [end + 1, end + 7, end + 8, end + 4099, len] {
        let copy = tempfile::tempdir().unwrap();
        crash_copy(crashed.path(), copy.path());
        let seg = segments(copy.path()).pop().unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let (seen, recovery) = replay(copy.path(), LogOptions::default(), Lsn(0)).unwrap();
        assert_eq!(seen, written, "cut at {cut}");
        assert_eq!(recovery.torn_tail, None, "cut at {cut}");
        assert_eq!(recovery.zero_tail, cut - end, "cut at {cut}");
        assert_eq!(recovery.end, Lsn(end));
        assert_eq!(fs::metadata(&seg).unwrap().len(), end, "cut off");
        // And the log goes on from there.
        let (log, _) = EventLog::open(copy.path(), LogOptions::default()).unwrap();
        assert_eq!(log.append(&ev(&sample(99))).unwrap(), Lsn(end));
    }

    // A torn last frame followed by the zeros is still a torn tail.
    let last = written[49].0.0;
    let copy = tempfile::tempdir().unwrap();
    crash_copy(crashed.path(), copy.path());
    let seg = segments(copy.path()).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    bytes[end as usize - 1] ^= 0x40;
    fs::write(&seg, &bytes).unwrap();
    let (seen, recovery) = replay(copy.path(), LogOptions::default(), Lsn(0)).unwrap();
    assert_eq!(seen, written[..49]);
    assert_eq!(recovery.torn_tail.unwrap().offset, last);

    // Zeros, then anything else: corruption, not an end.
    bytes[end as usize - 1] ^= 0x40;
    let far = bytes.len() - 5;
    bytes[far] = 1;
    fs::write(&seg, &bytes).unwrap();
    assert!(matches!(
        replay(copy.path(), LogOptions::default(), Lsn(0)),
        Err(PersistError::Corrupt { offset, .. }) if offset == end
    ));
}

#[test]
fn a_clean_close_and_a_rotation_cut_the_zeros_off() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    for i in 0..5 {
        log.append(&ev(&sample(i))).unwrap();
    }
    let second = log.rotate().unwrap();
    for i in 5..9 {
        log.append(&ev(&sample(i))).unwrap();
    }
    let end = log.end();
    drop(log);
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 2);
    assert_eq!(fs::metadata(&segs[0]).unwrap().len(), second.0);
    assert_eq!(fs::metadata(&segs[1]).unwrap().len(), end.0 - second.0);
    let (seen, recovery) = replay(dir.path(), LogOptions::default(), Lsn(0)).unwrap();
    assert_eq!(seen.len(), 9);
    assert_eq!((recovery.torn_tail, recovery.zero_tail), (None, 0));
}

#[test]
fn only_always_writes_zeros_ahead() {
    for policy in [
        SyncPolicy::Off,
        SyncPolicy::Interval(Duration::from_secs(60)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = EventLog::open(dir.path(), LogOptions::default().sync(policy)).unwrap();
        log.append(&ev(&sample(1))).unwrap();
        let seg = segments(dir.path()).pop().unwrap();
        assert_eq!(fs::metadata(&seg).unwrap().len(), log.end().0, "{policy:?}");
    }
}

#[test]
fn damage_in_a_segment_that_is_not_the_last_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    let a: Vec<Lsn> = (0..3)
        .map(|i| log.append(&ev(&sample(i))).unwrap())
        .collect();
    log.rotate().unwrap();
    for i in 3..6 {
        log.append(&ev(&sample(i))).unwrap();
    }
    drop(log);
    let first = segments(dir.path()).remove(0);
    // Cut the first segment's last record short: in the last segment that
    // would be a torn tail, here events after it exist.
    let len = fs::metadata(&first).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    match replay(dir.path(), LogOptions::default(), Lsn(0)) {
        Err(PersistError::Corrupt { file, offset, .. }) => {
            assert_eq!((file, offset), (first.clone(), a[2].0));
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    let (seen, recovery) = replay(dir.path(), LogOptions::default().salvage(true), Lsn(0)).unwrap();
    assert_eq!(seen.len(), 2);
    assert!(recovery.salvaged.unwrap().bytes > 3);
    assert_eq!(segments(dir.path()), [first], "later segments set aside");
}

#[test]
fn a_segment_of_another_version_or_not_ours_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    write_samples(dir.path(), LogOptions::default(), 2);
    let seg = segments(dir.path()).pop().unwrap();
    let good = fs::read(&seg).unwrap();
    let mut v2 = good.clone();
    v2[8] = 2;
    fs::write(&seg, &v2).unwrap();
    assert!(matches!(
        replay(dir.path(), LogOptions::default().salvage(true), Lsn(0)),
        Err(PersistError::UnsupportedVersion {
            found: 2,
            supported: 1,
            ..
        })
    ));
    let mut magic = good;
    magic[..8].copy_from_slice(b"NOTOURS!");
    fs::write(&seg, &magic).unwrap();
    assert!(matches!(
        replay(dir.path(), LogOptions::default(), Lsn(0)),
        Err(PersistError::BadMagic { file }) if file == seg
    ));
}

/// A segment named past any log's start (positions in it would overflow
/// u64) is refused by name, salvage or not, whatever it holds.
#[test]
fn a_segment_named_past_any_log_is_a_typed_error() {
    let real = tempfile::tempdir().unwrap();
    write_samples(real.path(), LogOptions::default(), 2);
    let bytes = fs::read(segments(real.path()).pop().unwrap()).unwrap();
    for (start, content) in [(u64::MAX, &[][..]), (u64::MAX - 31, &bytes[..])] {
        let dir = tempfile::tempdir().unwrap();
        let seg = dir.path().join(format!("log-{start:020}.seg"));
        fs::write(&seg, content).unwrap();
        for options in [LogOptions::default(), LogOptions::default().salvage(true)] {
            assert!(matches!(
                EventLog::open(dir.path(), options.clone()),
                Err(PersistError::Corrupt { ref file, .. }) if *file == seg
            ));
            assert!(matches!(
                replay(dir.path(), options, Lsn(0)),
                Err(PersistError::Corrupt { ref file, .. }) if *file == seg
            ));
        }
    }
}

#[test]
fn a_segment_header_cut_short_is_a_torn_tail() {
    for len in [0, 5, 31] {
        let dir = tempfile::tempdir().unwrap();
        let written = write_samples(dir.path(), LogOptions::default(), 2);
        let (log, _) = EventLog::open(dir.path(), LogOptions::default()).unwrap();
        let next = log.rotate().unwrap();
        drop(log);
        let last = segments(dir.path()).pop().unwrap();
        let header = fs::read(&last).unwrap();
        fs::write(&last, &header[..len]).unwrap();
        let (seen, recovery) = replay(dir.path(), LogOptions::default(), Lsn(0)).unwrap();
        assert_eq!(seen, written);
        assert_eq!(recovery.torn_tail.unwrap().bytes, len as u64);
        assert_eq!(recovery.end, Lsn(next.0 + 32));
    }
}

/// A zeroed header is a torn tail only while nothing but zeros follows
/// it (a segment whose creation the crash cut short). Before frames it is
/// damage: the segment was written whole once, and its events were
/// acknowledged. Open must fail naming it (or salvage report it), never
/// delete the segment as a torn tail.
#[test]
fn a_zeroed_header_before_frames_is_corruption_not_a_torn_tail() {
    for zero_tail in [0, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let first = write_samples(dir.path(), LogOptions::default(), 2);
        let (log, _) = EventLog::open(dir.path(), LogOptions::default()).unwrap();
        log.rotate().unwrap();
        let acked: Vec<_> = (2..5)
            .map(|i| log.append(&ev(&sample(i))).unwrap())
            .collect();
        drop(log);
        let last = segments(dir.path()).pop().unwrap();
        let mut bytes = fs::read(&last).unwrap();
        bytes[..32].fill(0);
        bytes.resize(bytes.len() + zero_tail, 0);
        fs::write(&last, &bytes).unwrap();

        match replay(dir.path(), LogOptions::default(), Lsn(0)) {
            Err(PersistError::Corrupt { file, offset, .. }) => {
                assert_eq!((&file, offset), (&last, 0));
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        assert!(last.exists(), "the damaged segment is kept for an operator");
        let (seen, recovery) =
            replay(dir.path(), LogOptions::default().salvage(true), Lsn(0)).unwrap();
        assert_eq!(seen, first, "salvage keeps what comes before the damage");
        assert_eq!(recovery.torn_tail, None);
        let salvaged = recovery.salvaged.expect("the loss is reported as salvage");
        assert_eq!((salvaged.file, salvaged.offset), (last, 0));
        assert_eq!(salvaged.bytes, bytes.len() as u64);
        assert_eq!(acked.len(), 3);
    }

    // Zeros all the way: the crash came while the segment was created.
    let dir = tempfile::tempdir().unwrap();
    let written = write_samples(dir.path(), LogOptions::default(), 2);
    let (log, _) = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    log.rotate().unwrap();
    drop(log);
    let last = segments(dir.path()).pop().unwrap();
    fs::write(&last, [0; 4096]).unwrap();
    let (seen, recovery) = replay(dir.path(), LogOptions::default(), Lsn(0)).unwrap();
    assert_eq!(seen, written);
    assert_eq!(recovery.torn_tail.unwrap().bytes, 4096);
}

#[test]
fn rotation_replay_from_a_position_and_segment_removal() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions::default().segment_size(256);
    let (log, _) = EventLog::open(dir.path(), options.clone()).unwrap();
    let mut all = Vec::new();
    for i in 0..20 {
        let e = sample(i);
        all.push((log.append(&ev(&e)).unwrap(), e));
    }
    assert!(segments(dir.path()).len() > 3, "rotated by size");
    let covered = log.rotate().unwrap();
    assert_eq!(covered, Lsn(log.end().0 - 32));
    let after = sample(20);
    all.push((log.append(&ev(&after)).unwrap(), after));
    let before = segments(dir.path()).len();
    assert_eq!(log.remove_segments_before(covered).unwrap(), before - 1);
    assert_eq!(log.remove_segments_before(covered).unwrap(), 0);
    drop(log);
    let (seen, _) = replay(dir.path(), options.clone(), covered).unwrap();
    assert_eq!(seen, all[20..]);
    // Replaying from before what is left is a gap: events are missing.
    assert!(matches!(
        replay(dir.path(), options.clone(), Lsn(0)),
        Err(PersistError::Gap { needed: 0, .. })
    ));
    let (_, recovery) = replay(dir.path(), options.salvage(true), Lsn(0)).unwrap();
    assert_eq!(recovery.gap, Some((Lsn(0), covered)));
}

#[test]
fn a_log_behind_the_snapshot_restarts_at_the_snapshot_position() {
    let dir = tempfile::tempdir().unwrap();
    write_samples(dir.path(), LogOptions::default(), 2);
    let (log, recovery) =
        EventLog::open_replaying(dir.path(), LogOptions::default(), Lsn(1_000_000), |_, _| {})
            .unwrap();
    assert_eq!(recovery.end, Lsn(1_000_032));
    assert_eq!(recovery.behind, Some(Lsn(32 + 2 * 50)));
    let lsn = log.append(&ev(&sample(7))).unwrap();
    assert_eq!(lsn, Lsn(1_000_032));
    drop(log);
    let (seen, _) = replay(dir.path(), LogOptions::default(), Lsn(1_000_000)).unwrap();
    assert_eq!(seen, [(lsn, sample(7))]);
}

/// The segments a snapshot is past are set aside, not deleted: if the
/// snapshot is not this log's (copied from another data directory), they
/// hold the only copy of acknowledged events.
#[test]
fn a_log_behind_the_snapshot_is_set_aside_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    write_samples(dir.path(), LogOptions::default(), 2);
    let old = segments(dir.path()).pop().unwrap();
    let bytes = fs::read(&old).unwrap();
    let (_log, recovery) =
        EventLog::open_replaying(dir.path(), LogOptions::default(), Lsn(1_000_000), |_, _| {})
            .unwrap();
    assert_eq!(recovery.behind, Some(Lsn(32 + 2 * 50)));
    let mut aside = old.clone().into_os_string();
    aside.push(".discarded");
    assert_eq!(fs::read(&aside).ok(), Some(bytes), "kept for an operator");
    assert!(!old.exists());
}

#[test]
fn a_missing_directory_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/c");
    let (log, _) = EventLog::open(&nested, LogOptions::default()).unwrap();
    log.append(&ev(&sample(1))).unwrap();
    assert_eq!(segments(&nested).len(), 1);
}

#[test]
fn stray_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_samples(dir.path(), LogOptions::default(), 3);
    fs::write(dir.path().join("README"), "hello").unwrap();
    fs::write(dir.path().join("log-1.seg"), "not a segment name").unwrap();
    assert_eq!(
        replay(dir.path(), LogOptions::default(), Lsn(0)).unwrap().0,
        written
    );
}

#[test]
fn a_read_only_file_system_is_an_io_error_naming_the_path() {
    let Some(fs_ro) = Tmpfs::mount("ro,size=1m") else {
        return;
    };
    match EventLog::open(fs_ro.path(), LogOptions::default()) {
        Err(PersistError::Io { path, source, .. }) => {
            assert!(path.starts_with(fs_ro.path()), "{}", path.display());
            assert_eq!(source.raw_os_error(), Some(30), "EROFS: {source}");
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    let missing = fs_ro.path().join("log");
    match EventLog::open(&missing, LogOptions::default()) {
        Err(e @ PersistError::Io { .. }) => {
            assert!(e.to_string().contains(&*missing.to_string_lossy()), "{e}");
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[test]
fn a_full_file_system_fails_appends_and_keeps_every_acknowledged_event() {
    let Some(tiny) = Tmpfs::mount("size=64k") else {
        return;
    };
    let dir = tiny.path().join("log");
    let (log, _) = EventLog::open(&dir, LogOptions::default()).unwrap();
    let url = format!("https://example.com/{}", "x".repeat(1000));
    let mut acked = Vec::new();
    let mut failures = 0;
    for i in 0..200u64 {
        let e = (i, i, url.clone());
        match log.append(&ev(&e)) {
            Ok(lsn) => acked.push((lsn, e)),
            Err(PersistError::Io { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(28), "ENOSPC: {source}");
                failures += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(failures > 0 && !acked.is_empty());
    drop(log);
    let (seen, recovery) = replay(&dir, LogOptions::default(), Lsn(0)).unwrap();
    assert_eq!(seen, acked);
    assert_eq!(recovery.torn_tail, None, "the failed write was cut off");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of events, cut at any byte: the events wholly before
    /// the cut come back, in order, and the rest is reported as torn.
    #[test]
    fn random_events_and_random_cuts(
        events in prop::collection::vec((any::<u64>(), any::<u64>(), "[a-zé/:.?=&]{0,40}"), 1..30),
        cut_frac in 0.0f64..=1.0,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = EventLog::open(dir.path(), LogOptions::default().sync(SyncPolicy::Off)).unwrap();
        let lsns: Vec<Lsn> = events.iter().map(|e| log.append(&ev(e)).unwrap()).collect();
        drop(log);
        let seg = segments(dir.path()).pop().unwrap();
        let full = fs::read(&seg).unwrap();
        let cut = 32 + ((full.len() - 32) as f64 * cut_frac) as usize;
        fs::write(&seg, &full[..cut]).unwrap();
        let kept: Vec<(Lsn, Owned)> = lsns.iter().zip(&events).enumerate()
            .filter(|&(i, _)| lsns.get(i + 1).map_or(full.len() as u64, |l| l.0) <= cut as u64)
            .map(|(_, (l, e))| (*l, e.clone()))
            .collect();
        let (seen, recovery) = replay(dir.path(), LogOptions::default(), Lsn(0)).unwrap();
        let kept_end = kept.len();
        prop_assert_eq!(&seen, &kept);
        let valid_end = lsns.get(kept_end).map_or(full.len() as u64, |l| l.0);
        prop_assert_eq!(recovery.end, Lsn(valid_end));
        prop_assert_eq!(recovery.torn_tail.map(|t| t.bytes).unwrap_or(0), cut as u64 - valid_end);
    }
}
