//! Reading the event log back at open: validate, deliver, repair the end.
//! The rules are documented on [`Recovery`].

use super::error::PersistError;
use super::frame::LogEvent;
use super::frame::{Decoded, FRAME_HEADER_LEN, decode};
use super::fs::sync_dir;
use super::lsn::Lsn;
use super::segment::{self, HEADER_LEN};
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

/// What opening the event log found and repaired.
///
///
/// # Torn tail or corruption?
///
/// A crash in the middle of a write leaves the last segment ending in a
/// partial frame, and a power cut can leave it ending in zeros (the file
/// grew but the data never reached the disk) or in a complete-looking last
/// frame whose bytes are wrong. None of those held an acknowledged event
/// under `FsyncPolicy::Always`, so the damage is a **torn tail**: it is
/// truncated and reported ([`Recovery::torn_tail`]). Precisely, damage at
/// offset `o` of the *last* segment is a torn tail when
///
/// - the frame header or payload runs past the end of the file, or
/// - the frame fails its checksum and nothing but zero bytes (or nothing
///   at all) follows where it claims to end.
///
/// That is: no valid-looking data follows the damage.
///
/// Zero bytes from the end of the last frame of the last segment to the
/// end of the file are not damage but the log's end: under
/// `FsyncPolicy::Always` the log writes zeros ahead of its frames (see
/// `EventLog`), which a crash leaves behind. They are cut off and
/// counted in [`Recovery::zero_tail`]. A power cut can leave such zeros
/// too (the file grew, its data never reached the disk): under `Always`
/// they held nothing acknowledged; under `Interval` and `Off` they may
/// have held events acknowledged but not yet synced, which the policy
/// allows to lose.
///
/// Anything else (a bad frame followed by other data, damage in a segment
/// that is not the last, a segment that does not end where the next one
/// starts) is **corruption**: open fails with [`PersistError::Corrupt`]
/// naming the file and offset, unless [`LogOptions::salvage`](crate::persist::LogOptions::salvage) is set, in
/// which case the log is cut at the last valid frame, the segments after
/// it are set aside (renamed to `<name>.discarded`, never deleted) and the
/// loss is reported ([`Recovery::salvaged`]).
///
/// A damaged length field near the end of the log is indistinguishable from
/// a partial write; what it can make recovery drop is bounded by the
/// largest frame (16 bytes plus the longest URL) and always reported.
///
/// ```
/// use tracker_core::persist::{EventLog, LogOptions};
///
/// let dir = tempfile::tempdir()?;
/// let (_log, recovery) = EventLog::open(dir.path(), LogOptions::default())?;
/// assert_eq!(recovery.events, 0);
/// assert!(recovery.torn_tail.is_none() && recovery.salvaged.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Recovery {
    /// Events delivered to the replay callback.
    pub events: u64,
    /// Segment files read (those wholly before the replay start are not).
    pub segments_read: usize,
    /// Where the next append goes.
    pub end: Lsn,
    /// A partial write at the end of the log, truncated. Expected after a
    /// crash; the caller should log it as a warning.
    pub torn_tail: Option<Loss>,
    /// Zero bytes after the last frame, cut off: space the log wrote
    /// ahead of its frames, left by a crash (see "Torn tail or
    /// corruption?"). Not a loss; 0 after a clean close.
    pub zero_tail: u64,
    /// Corruption cut off because [`LogOptions::salvage`](crate::persist::LogOptions::salvage) was set: events
    /// in these bytes are lost. The caller should log it as an error.
    pub salvaged: Option<Loss>,
    /// With [`LogOptions::salvage`](crate::persist::LogOptions::salvage): the log started after the position
    /// replay needed, so events in `needed..first_available` are lost.
    pub gap: Option<(Lsn, Lsn)>,
    /// The log ended at this position, before the replay start (it was
    /// lost or reset while the snapshot was kept, or the snapshot came
    /// from another data directory): its segments were set aside
    /// (renamed to `<name>.discarded`, or `.discarded.1` and on if that
    /// name is taken) and it restarted at the replay start. Worth a
    /// warning.
    pub behind: Option<Lsn>,
}

/// Bytes dropped from the log at recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Loss {
    /// The segment file where the dropped bytes start.
    pub file: PathBuf,
    /// Offset of the first dropped byte in that file.
    pub offset: u64,
    /// How many bytes were dropped, over all segment files.
    pub bytes: u64,
    /// What was wrong at `offset`.
    pub reason: String,
}

/// The result of a scan: the report and where the writer resumes.
pub(crate) struct Scanned {
    pub(crate) recovery: Recovery,
    /// The segment appends continue in, its start and valid length, or
    /// `None` when a new segment must be started at `recovery.end`.
    pub(crate) resume: Option<(u64, PathBuf, u64)>,
}

/// Reads the log in `dir`, delivering the events at or after `from` (none
/// when `from` is `None`), and repairs its end. See [`Recovery`].
pub(crate) fn scan(
    dir: &Path,
    salvage: bool,
    from: Option<Lsn>,
    on_event: &mut dyn FnMut(Lsn, LogEvent<'_>),
) -> Result<Scanned, PersistError> {
    let scanned = scan_segments(dir, salvage, from, on_event)?;
    restart_behind(dir, scanned, from)
}

fn scan_segments(
    dir: &Path,
    salvage: bool,
    from: Option<Lsn>,
    on_event: &mut dyn FnMut(Lsn, LogEvent<'_>),
) -> Result<Scanned, PersistError> {
    let segs = segment::list(dir)?;
    let mut recovery = Recovery::default();
    let needed = from.map_or(0, |l| l.0);

    if let (Some(from), Some(&(first, _))) = (from, segs.first())
        && from.0 < first
    {
        if !salvage {
            return Err(PersistError::Gap {
                dir: dir.into(),
                needed: from.0,
                first_available: first,
            });
        }
        recovery.gap = Some((from, Lsn(first)));
    }

    let mut i = 0;
    while i < segs.len() {
        let (start, ref path) = segs[i];
        let next = segs.get(i + 1).map(|s| s.0);
        // A segment that is not the last and ends before the replay start
        // holds nothing to deliver and nothing to repair.
        if next.is_some_and(|n| from.is_none_or(|f| n <= f.0)) {
            i += 1;
            continue;
        }
        let mut data = segment::Reader::open(path)?;
        recovery.segments_read += 1;
        let is_last = next.is_none();

        // A header cut short or never written (all zeros, and nothing but
        // zeros after it) in the last segment: the crash came while the
        // segment was being created. A zeroed header before frames is
        // damage, not a tear: a segment's header is written (and, unless
        // `Off`, synced) before any frame goes after it, so those frames
        // were acknowledged.
        let header = data.at(0, HEADER_LEN)?;
        let short = header.len() < HEADER_LEN;
        let zeroed = !short && header[..HEADER_LEN].iter().all(|&b| b == 0);
        if zeroed && !(is_last && data.zeros_from(HEADER_LEN as u64)?) {
            let damage = Damage {
                offset: 0,
                reason: "segment header zeroed before data",
            };
            return salvage_or_fail(dir, &segs, i, damage, salvage, recovery);
        }
        if short || zeroed {
            if is_last {
                recovery.torn_tail = Some(Loss {
                    file: path.clone(),
                    offset: 0,
                    bytes: data.len(),
                    reason: "segment header cut short".into(),
                });
                drop(data);
                fs::remove_file(path).map_err(|e| PersistError::io(path, "remove", e))?;
                sync_dir(dir)?;
                recovery.end = Lsn(start);
                return Ok(Scanned {
                    recovery,
                    resume: None,
                });
            }
            let damage = Damage {
                offset: 0,
                reason: "segment shorter than its header",
            };
            return salvage_or_fail(dir, &segs, i, damage, salvage, recovery);
        }
        let header = data.at(0, HEADER_LEN)?;
        if let Err(e) = segment::check_header(path, header, start) {
            match e {
                PersistError::Corrupt { .. } if salvage => {
                    let damage = Damage {
                        offset: 0,
                        reason: "segment header damaged",
                    };
                    return salvage_or_fail(dir, &segs, i, damage, salvage, recovery);
                }
                e => return Err(e),
            }
        }

        // Frames are decoded from a bounded window of the file, which
        // grows only while a frame is longer than it (see `Reader`).
        let mut pos = HEADER_LEN as u64;
        let mut want = FRAME_HEADER_LEN;
        while pos < data.len() {
            // Asked before the window is borrowed; `at` may find the file
            // shorter than it said and end it there.
            let rest = data.at(pos, want)?;
            let reaches_end = rest.len() < want;
            // Why decoding stopped, whether that is a torn tail, and
            // whether only zeros run from `pos` to the end (the log's end,
            // a zero tail): each read once.
            let (reason, torn, zeros) = match decode(rest) {
                Decoded::Frame { event, frame_len } => {
                    let lsn = start + pos;
                    if lsn >= needed && from.is_some() {
                        on_event(Lsn(lsn), event);
                        recovery.events += 1;
                    }
                    pos += frame_len as u64;
                    want = FRAME_HEADER_LEN;
                    continue;
                }
                Decoded::Incomplete { needed, .. } if !reaches_end && needed > want => {
                    want = needed;
                    continue;
                }
                // Cut short, so `rest` runs to the end of the file.
                Decoded::Incomplete { reason, .. } => (reason, true, rest.iter().all(|&b| b == 0)),
                // An impossible length (0 among them, where zeros start).
                Decoded::Invalid {
                    reason,
                    frame_end: None,
                } => {
                    let zeros = data.zeros_from(pos)?;
                    (reason, zeros, zeros)
                }
                // A length that is not 0: not a zero tail.
                Decoded::Invalid {
                    reason,
                    frame_end: Some(frame_end),
                } => (reason, data.zeros_from(pos + frame_end as u64)?, false),
            };
            if is_last && zeros {
                let len = data.len();
                truncate(path, pos)?;
                recovery.zero_tail = len - pos;
                break;
            }
            if is_last && torn {
                let len = data.len();
                truncate(path, pos)?;
                recovery.torn_tail = Some(Loss {
                    file: path.clone(),
                    offset: pos,
                    bytes: len - pos,
                    reason: reason.into(),
                });
                break;
            }
            let damage = Damage {
                offset: pos,
                reason,
            };
            return salvage_or_fail(dir, &segs, i, damage, salvage, recovery);
        }
        let end = start + pos;
        match next {
            None => {
                recovery.end = Lsn(end);
                let resume = Some((start, path.clone(), pos));
                return Ok(Scanned { recovery, resume });
            }
            Some(n) if n != end => {
                let damage = Damage {
                    offset: data.len(),
                    reason: "segment does not end where the next one starts",
                };
                return salvage_or_fail(dir, &segs, i, damage, salvage, recovery);
            }
            Some(_) => i += 1,
        }
    }
    // No segment at all: a new log.
    recovery.end = from.unwrap_or(Lsn(0));
    Ok(Scanned {
        recovery,
        resume: None,
    })
}

/// Renames the segment `path` to `<name>.discarded`: out of the log, but
/// kept for an operator (never deleted). A segment of the same name set
/// aside before (a log restarted at the same position twice) keeps its
/// file: this one becomes `<name>.discarded.1`, `.2`, and so on, as the
/// first free name. Both may hold the only copy of acknowledged events.
fn set_aside(path: &Path) -> Result<(), PersistError> {
    let named = |n: u32| {
        let mut aside = path.to_path_buf().into_os_string();
        aside.push(".discarded");
        if n > 0 {
            aside.push(format!(".{n}"));
        }
        std::path::PathBuf::from(aside)
    };
    let mut n = 0;
    // The data directory's lock keeps other writers out between the test
    // and the rename.
    while fs::symlink_metadata(named(n)).is_ok() {
        n += 1;
    }
    fs::rename(path, named(n)).map_err(|e| PersistError::io(path, "rename", e))
}

/// If the replay start lies past the end of the log (the log was lost or
/// reset while a snapshot was kept), new appends must still get positions
/// after the snapshot's, or the next recovery would skip them: the old
/// segments, covered by the snapshot if it is this log's, are set aside
/// (renamed to `<name>.discarded`, as salvage does) and the log restarts
/// at `from`. Set aside, not removed: only this log's own history puts a
/// snapshot past its end under `Always` or `Interval` (a rotation syncs
/// the segment it leaves), and a snapshot copied from another data
/// directory does too, whose claim to cover these events is false; then
/// they are the only copy of acknowledged events.
fn restart_behind(
    dir: &Path,
    mut scanned: Scanned,
    from: Option<Lsn>,
) -> Result<Scanned, PersistError> {
    match from {
        Some(from) if from > scanned.recovery.end => {
            for (_, path) in segment::list(dir)? {
                set_aside(&path)?;
            }
            sync_dir(dir)?;
            scanned.recovery.behind = Some(scanned.recovery.end);
            scanned.recovery.end = from;
            scanned.resume = None;
            Ok(scanned)
        }
        _ => Ok(scanned),
    }
}

struct Damage {
    offset: u64,
    reason: &'static str,
}

/// Fails with the typed error, or with `salvage` cuts the log at the damage
/// and sets the later segments aside.
fn salvage_or_fail(
    dir: &Path,
    segs: &[(u64, PathBuf)],
    i: usize,
    damage: Damage,
    salvage: bool,
    mut recovery: Recovery,
) -> Result<Scanned, PersistError> {
    let (start, path) = &segs[i];
    if !salvage {
        return Err(PersistError::Corrupt {
            file: path.clone(),
            offset: damage.offset,
            reason: damage.reason.into(),
        });
    }
    let len = file_len(path)?;
    let mut lost = len.saturating_sub(damage.offset);
    for (_, later) in &segs[i + 1..] {
        lost += file_len(later)?;
        set_aside(later)?;
    }
    recovery.salvaged = Some(Loss {
        file: path.clone(),
        offset: damage.offset,
        bytes: lost,
        reason: damage.reason.into(),
    });
    if damage.offset < HEADER_LEN as u64 {
        // Nothing of this segment is usable: start it afresh.
        fs::remove_file(path).map_err(|e| PersistError::io(path, "remove", e))?;
        sync_dir(dir)?;
        recovery.end = Lsn(*start);
        return Ok(Scanned {
            recovery,
            resume: None,
        });
    }
    truncate(path, damage.offset.min(len))?;
    sync_dir(dir)?;
    recovery.end = Lsn(start + damage.offset.min(len));
    Ok(Scanned {
        recovery,
        resume: Some((*start, path.clone(), damage.offset.min(len))),
    })
}

fn file_len(path: &Path) -> Result<u64, PersistError> {
    fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| PersistError::io(path, "stat", e))
}

/// Cuts the file at `len` durably, so that a second crash cannot bring the
/// dropped bytes back.
fn truncate(path: &Path, len: u64) -> Result<(), PersistError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| PersistError::io(path, "open", e))?;
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(|e| PersistError::io(path, "truncate", e))
}

#[cfg(test)]
mod tests {
    use super::super::frame::encode;
    use super::*;

    /// A segment set aside under a name an earlier one took keeps both
    /// files: the earlier may hold the only copy of acknowledged events.
    #[test]
    fn setting_aside_never_overwrites_an_earlier_segment() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment::path(dir.path(), 0);
        for round in 0..3u8 {
            fs::write(&path, [round; 4]).unwrap();
            set_aside(&path).unwrap();
            assert!(!path.exists());
        }
        let kept = |suffix: &str| {
            let mut name = path.clone().into_os_string();
            name.push(suffix);
            fs::read(name).unwrap()
        };
        assert_eq!(kept(".discarded"), [0; 4]);
        assert_eq!(kept(".discarded.1"), [1; 4]);
        assert_eq!(kept(".discarded.2"), [2; 4]);
    }

    /// A zero tail longer than the read window is read once: recovery
    /// reads each byte of the segment at most once.
    #[test]
    fn the_zero_tail_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = segment::header(0).to_vec();
        let event = LogEvent {
            visitor_hash: 1,
            at_millis: 2,
            url: "https://example.com/",
        };
        encode(&mut bytes, &event).unwrap();
        let end = bytes.len() as u64;
        bytes.resize(4 << 20, 0);
        let path = segment::path(dir.path(), 0);
        fs::write(&path, &bytes).unwrap();
        segment::BYTES_READ.set(0);
        let mut events = 0;
        let scanned = scan(dir.path(), false, Some(Lsn(0)), &mut |_, _| events += 1).unwrap();
        assert_eq!(events, 1);
        assert_eq!(scanned.recovery.zero_tail, bytes.len() as u64 - end);
        assert_eq!(scanned.recovery.torn_tail, None);
        let read = segment::BYTES_READ.get();
        assert!(
            read <= bytes.len() as u64,
            "{read} bytes read of {}",
            bytes.len()
        );
    }
}
