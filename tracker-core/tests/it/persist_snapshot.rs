//! The snapshot container: atomic writes, retention, and what a damaged
//! or foreign snapshot does at read.

use proptest::prelude::*;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use test_support::tmpfs::Tmpfs;
use tracker_core::persist::snapshot_file::{self, DEFAULT_KEEP};
use tracker_core::persist::{Lsn, PersistError};

fn write(dir: &Path, lsn: u64, payload: &[u8]) -> PathBuf {
    snapshot_file::write_atomic(dir, Lsn(lsn), DEFAULT_KEEP, |w| w.write_all(payload))
        .unwrap()
        .path
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn round_trip_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("snaps");
    assert!(snapshot_file::read_newest(&nested).unwrap().is_none());
    write(&nested, 100, b"one");
    write(&nested, 200, b"two");
    let path = write(&nested, 300, b"three");
    assert_eq!(
        names(&nested),
        [
            "snapshot-00000000000000000200.snap",
            "snapshot-00000000000000000300.snap"
        ]
    );
    let s = snapshot_file::read_newest(&nested).unwrap().unwrap();
    assert_eq!(
        (s.covers, s.payload.as_slice(), &s.path),
        (Lsn(300), &b"three"[..], &path)
    );
    assert!(s.skipped.is_empty());
}

#[test]
fn keep_one_and_an_empty_payload() {
    let dir = tempfile::tempdir().unwrap();
    for lsn in 1..5 {
        let w = snapshot_file::write_atomic(dir.path(), Lsn(lsn), 0, |_| Ok(())).unwrap();
        assert_eq!(w.keep_log_from, Lsn(lsn), "keep 0 keeps 1");
    }
    assert_eq!(names(dir.path()).len(), 1);
    assert!(
        snapshot_file::read_newest(dir.path())
            .unwrap()
            .unwrap()
            .payload
            .is_empty()
    );
}

#[test]
fn a_damaged_newest_falls_back_to_the_previous_with_a_report() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 100, b"older state");
    let newest = write(dir.path(), 200, b"newer state");
    let mut bytes = fs::read(&newest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&newest, &bytes).unwrap();
    let s = snapshot_file::read_newest(dir.path()).unwrap().unwrap();
    assert_eq!(
        (s.covers, s.payload.as_slice()),
        (Lsn(100), &b"older state"[..])
    );
    assert_eq!(s.skipped.len(), 1);
    assert!(
        matches!(&s.skipped[0], PersistError::ChecksumMismatch { file, .. } if *file == newest),
        "{:?}",
        s.skipped
    );
}

#[test]
fn a_truncated_newest_falls_back_too() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 1, b"a");
    let newest = write(dir.path(), 2, b"bbbbbbbb");
    let bytes = fs::read(&newest).unwrap();
    for cut in 0..bytes.len() {
        fs::write(&newest, &bytes[..cut]).unwrap();
        let s = snapshot_file::read_newest(dir.path()).unwrap().unwrap();
        assert_eq!(s.covers, Lsn(1), "cut at {cut}");
        assert_eq!(s.skipped.len(), 1);
    }
}

#[test]
fn every_snapshot_damaged_is_an_error_not_an_empty_start() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), 1, b"a");
    let b = write(dir.path(), 2, b"b");
    for p in [&a, &b] {
        let mut bytes = fs::read(p).unwrap();
        bytes[20] ^= 0xff; // in the header
        fs::write(p, &bytes).unwrap();
    }
    match snapshot_file::read_newest(dir.path()) {
        Err(PersistError::Corrupt { file, .. }) => assert_eq!(file, b, "the newest's error"),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn another_version_is_a_typed_error_never_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 1, b"old but fine");
    let newest = write(dir.path(), 2, b"from the future");
    let mut bytes = fs::read(&newest).unwrap();
    bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
    fs::write(&newest, &bytes).unwrap();
    match snapshot_file::read_newest(dir.path()) {
        Err(
            e @ PersistError::UnsupportedVersion {
                found: 7,
                supported: 1,
                ..
            },
        ) => {
            assert!(e.to_string().contains("version 7"), "{e}");
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

#[test]
fn not_a_snapshot_is_bad_magic() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("snapshot-00000000000000000005.snap"),
        vec![b'x'; 100],
    )
    .unwrap();
    assert!(matches!(
        snapshot_file::read_newest(dir.path()),
        Err(PersistError::BadMagic { .. })
    ));
}

#[test]
fn a_failing_payload_writer_leaves_the_old_snapshots_alone() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 1, b"kept");
    let err = snapshot_file::write_atomic(dir.path(), Lsn(2), DEFAULT_KEEP, |w| {
        w.write_all(b"half")?;
        Err(io::Error::other("encoder failed"))
    })
    .unwrap_err();
    assert!(err.to_string().contains("encoder failed"), "{err}");
    assert_eq!(names(dir.path()), ["snapshot-00000000000000000001.snap"]);
    assert_eq!(
        snapshot_file::read_newest(dir.path())
            .unwrap()
            .unwrap()
            .payload,
        b"kept"
    );
}

#[test]
fn stale_temporary_files_are_ignored_then_removed() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 1, b"state");
    fs::write(
        dir.path().join("snapshot-00000000000000000009.snap.tmp"),
        b"crashed",
    )
    .unwrap();
    assert_eq!(
        snapshot_file::read_newest(dir.path())
            .unwrap()
            .unwrap()
            .covers,
        Lsn(1)
    );
    write(dir.path(), 2, b"state");
    assert!(names(dir.path()).iter().all(|n| !n.ends_with(".tmp")));
}

#[test]
fn a_read_only_file_system_is_an_io_error() {
    let Some(ro) = Tmpfs::mount("ro,size=1m") else {
        return;
    };
    let err = snapshot_file::write_atomic(ro.path(), Lsn(1), DEFAULT_KEEP, |w| w.write_all(b"x"))
        .unwrap_err();
    match &err {
        PersistError::Io { path, source, .. } => {
            assert!(path.starts_with(ro.path()));
            assert_eq!(source.raw_os_error(), Some(30), "EROFS: {source}");
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[test]
fn a_full_file_system_fails_the_write_and_keeps_the_previous_snapshot() {
    let Some(tiny) = Tmpfs::mount("size=64k") else {
        return;
    };
    write(tiny.path(), 1, b"small state");
    let big = vec![7u8; 256 * 1024];
    match snapshot_file::write_atomic(tiny.path(), Lsn(2), DEFAULT_KEEP, |w| w.write_all(&big)) {
        Err(PersistError::Io { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(28), "ENOSPC: {source}")
        }
        other => panic!("expected ENOSPC, got {other:?}"),
    }
    assert_eq!(names(tiny.path()), ["snapshot-00000000000000000001.snap"]);
    let s = snapshot_file::read_newest(tiny.path()).unwrap().unwrap();
    assert_eq!(s.payload, b"small state");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Any payload, written in any chunking, reads back intact; any single
    /// flipped byte is caught (the older snapshot is used instead).
    #[test]
    fn payloads_round_trip_and_every_flip_is_caught(
        payload in prop::collection::vec(any::<u8>(), 0..2000),
        chunk in 1usize..300,
        flip in any::<prop::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1, b"fallback");
        let path = snapshot_file::write_atomic(dir.path(), Lsn(2), DEFAULT_KEEP, |w| {
            payload.chunks(chunk).try_for_each(|c| w.write_all(c))
        }).unwrap().path;
        let s = snapshot_file::read_newest(dir.path()).unwrap().unwrap();
        prop_assert_eq!(&s.payload, &payload);
        let mut bytes = fs::read(&path).unwrap();
        let i = flip.index(bytes.len());
        bytes[i] ^= 0x5a;
        fs::write(&path, &bytes).unwrap();
        match snapshot_file::read_newest(dir.path()) {
            Ok(Some(s)) => prop_assert_eq!(s.covers, Lsn(1)),
            // The version field: reported, not passed over.
            Err(PersistError::UnsupportedVersion { .. }) => prop_assert!((8..12).contains(&i)),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}

/// Decoding as the payload streams in: the checksum, known only at the
/// end, still decides. A damaged payload's decode (a value or an error) is
/// dropped for the older snapshot; a decoder's error on a sound payload is
/// returned, not passed over.
#[test]
fn streaming_decode_is_judged_by_the_checksum_at_the_end() {
    use tracker_core::persist::snapshot_file::ReadError;

    let decode_all = |payload: &mut dyn io::BufRead, _len: u64| {
        let mut text = String::new();
        payload.read_to_string(&mut text).map(|_| text)
    };
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 1, b"older");
    let newest = write(dir.path(), 2, b"newest");
    let mut bytes = fs::read(&newest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01; // in the payload: still decodes, checksum wrong
    fs::write(&newest, &bytes).unwrap();
    let decoded = snapshot_file::read_newest_with(dir.path(), decode_all)
        .unwrap()
        .unwrap();
    assert_eq!((decoded.covers, decoded.value.as_str()), (Lsn(1), "older"));
    assert!(matches!(
        decoded.skipped.as_slice(),
        [PersistError::ChecksumMismatch { .. }]
    ));

    // A decoder that gives up half-way on the damaged one: still passed
    // over (the rest is read for the checksum).
    let half = |payload: &mut dyn io::BufRead, _len: u64| {
        let mut first = [0u8; 3];
        payload.read_exact(&mut first)?;
        if &first == b"new" {
            return Err(io::Error::other("refused"));
        }
        let mut rest = String::new();
        payload.read_to_string(&mut rest)?;
        Ok(rest)
    };
    let decoded = snapshot_file::read_newest_with(dir.path(), half)
        .unwrap()
        .unwrap();
    assert_eq!((decoded.covers, decoded.value.as_str()), (Lsn(1), "er"));

    // On a sound payload the decoder's error is the answer.
    write(dir.path(), 3, b"newer");
    match snapshot_file::read_newest_with(dir.path(), half) {
        Err(ReadError::Decode(e)) => assert_eq!(e.to_string(), "refused"),
        other => panic!("expected the decoder's error, got {other:?}"),
    }
}
