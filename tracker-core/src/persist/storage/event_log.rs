//! The write-ahead log of events, with group commit: the design is
//! documented on [`EventLog`].

use super::commit::{Append, Group};
use super::disk::Disk;
use super::error::PersistError;
use super::frame::LogEvent;
use super::frame::{self, FRAME_HEADER_LEN, MAX_PAYLOAD_LEN};
use super::fs::{ensure_dir, sync_dir};
use super::lsn::Lsn;
use super::recovery::{self, Recovery};
use super::segment::{self, HEADER_LEN};
use crate::sync::{self, AtomicBool, Condvar, Mutex, Ordering, lock};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How many times the writer yields its CPU to let a group grow before it
/// syncs it (see `Shared::gather`): a bound on the delay it adds.
const GATHER_YIELDS: usize = 8;

/// How far ahead of the last frame the log writes zeros under
/// [`FsyncPolicy::Always`] (see [`Writer::preallocate`]); less for
/// segments smaller than this.
const PREALLOC_BYTES: u64 = 1 << 20;

/// When appended events are made durable with `fdatasync`.
///
/// ```
/// use std::time::Duration;
/// use tracker_core::persist::FsyncPolicy;
///
/// let policy = FsyncPolicy::Interval(Duration::from_millis(100));
/// assert_ne!(policy, FsyncPolicy::Always);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// An append returns once its event is written and synced: nothing
    /// acknowledged is lost even on a power cut.
    Always,
    /// An append returns once written; a background thread syncs at most
    /// this often: a process crash loses nothing acknowledged, a power cut
    /// at most about this much.
    Interval(Duration),
    /// An append returns once written; the log never syncs: a process
    /// crash loses nothing acknowledged, a power cut loses what the OS had
    /// not written back.
    Off,
}

/// The former name of [`FsyncPolicy`], kept so that code written against
/// it still compiles. (It named the fsync policy `sync`, which read as the
/// crate's locks.)
pub type SyncPolicy = FsyncPolicy;

/// How an [`EventLog`] behaves.
///
/// ```
/// use tracker_core::persist::{LogOptions, FsyncPolicy};
///
/// let options = LogOptions::default()
///     .sync(FsyncPolicy::Always)
///     .segment_size(16 << 20)
///     .salvage(false);
/// assert_eq!(options, LogOptions::default().segment_size(16 << 20));
/// ```
#[derive(Debug, Clone)]
pub struct LogOptions {
    pub(crate) sync: FsyncPolicy,
    pub(crate) segment_size: u64,
    pub(crate) salvage: bool,
    pub(crate) disk: Disk,
}

impl Default for LogOptions {
    /// `FsyncPolicy::Always`, 64 MiB segments, no salvage.
    fn default() -> Self {
        LogOptions {
            sync: FsyncPolicy::Always,
            segment_size: 64 << 20,
            salvage: false,
            disk: Disk::default(),
        }
    }
}

impl PartialEq for LogOptions {
    fn eq(&self, other: &Self) -> bool {
        (self.sync, self.segment_size, self.salvage)
            == (other.sync, other.segment_size, other.salvage)
    }
}

impl LogOptions {
    /// When appends are synced (default [`FsyncPolicy::Always`]).
    pub fn sync(mut self, policy: FsyncPolicy) -> Self {
        self.sync = policy;
        self
    }

    /// The size past which the next group goes to a new segment file
    /// (default 64 MiB). A segment may exceed it by one group.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// Whether open may cut the log at corruption in its middle, losing
    /// the events after it (reported in [`Recovery::salvaged`]), instead of
    /// failing with [`PersistError::Corrupt`] (default `false`: an operator
    /// should decide to lose data).
    pub fn salvage(mut self, salvage: bool) -> Self {
        self.salvage = salvage;
        self
    }
}

/// The write-ahead log of events, with group commit.
///
/// # Files
///
/// The log is a directory of segment files `log-<20-digit start LSN>.seg`
/// (formats in the [`persist`](crate::persist#file-formats) docs). An [`Lsn`] is a byte
/// position over the whole log: a segment's start LSN plus an offset in it,
/// the next segment starting exactly where the previous one ends. So a
/// snapshot can say "I cover everything before LSN x".
///
/// # Group commit
///
/// Under [`FsyncPolicy::Always`] one writer thread owns the file and
/// appenders never do I/O. Under one
/// mutex an appender encodes its frames into the shared *pending* buffer
/// (which assigns their LSNs), joins the *open group* and gets an
/// [`Append`] handle for it; it wakes the writer only if the writer is
/// idle. The writer takes the pending buffer and the open group (a new
/// group opens at once), releases the mutex, writes the buffer with one
/// `write_all` and, under [`FsyncPolicy::Always`], one `fdatasync`, then
/// finishes the group. While it does its I/O, new appenders fill the next
/// group, which it writes all at once next. When the process has one CPU,
/// before writing a group under `Always` it yields that CPU while the
/// group keeps growing (a few times at most), so that the appenders'
/// ready work joins the group instead of waiting for the next fsync.
///
/// Each group has its own small lock, `Condvar` (for blocking waiters) and
/// list of `Waker`s (for futures), so finishing a group wakes its
/// appenders and nobody else, and an async caller holds no thread while
/// it waits. The first of its futures to run wakes the others from its
/// own thread, so that an async runtime's worker sharing a CPU with the
/// writer is woken once per group, not once per append (see `Group`).
/// So under load the I/O count per event drops with the number of
/// concurrent appenders, and a single appender pays one write (and one
/// fsync) per append plus one thread hand-off.
///
/// Under `Off` and `Interval` there is no fsync to wait for, and a
/// hand-off to the writer thread and back would cost more than the
/// buffered `write(2)` itself: an appender that finds no group being
/// written writes its group in place (the same code, on its own thread);
/// otherwise it joins the open group, which the writer thread writes next. The locks are
/// `std::sync`'s (through the crate's `sync` shim); the file itself sits
/// behind a second mutex that only the writer (and the `Interval`
/// flusher, for the file handle) takes, so I/O never happens under the
/// mutex appenders queue on.
///
/// Under `Always` the writer also keeps zeros written ahead of the
/// frames in the current segment (1 MiB at a time), so that a group's
/// `fdatasync` overwrites blocks the file already has and is a flush of
/// data only: appending would make every sync also commit the file's
/// new size through the file system's journal (see
/// `Writer::preallocate` for the numbers). The zeros are cut off when
/// the log is closed and before a rotation; after a crash recovery reads
/// them as the end of the log.
///
/// # Durability per policy
///
/// An append returns when its group is written (`write(2)` done, so a
/// process crash loses nothing acknowledged), and under `Always` also
/// synced (a power cut loses nothing acknowledged). Under
/// `Interval(d)` a background thread syncs at most every `d` when
/// something was written, so a power cut loses at most about `d`. Under
/// `Off` nothing is ever synced by the log (the OS writes back when it
/// likes); a power cut may then even damage older segments, which recovery
/// reports as corruption (see [`LogOptions::salvage`]).
///
/// # Failures
///
/// If writing a group fails (for instance `ENOSPC`), the bytes written of
/// it are cut off again, every append in flight (that group and the next
/// pending one) gets the error, and the log goes on from its last good
/// frame: appends succeed again once there is room. An error means the
/// event *may* not be logged; retrying is safe because recording is
/// idempotent. If an fsync fails, or the cut itself fails, the state of
/// the file is unknown (after a failed fsync Linux may drop the dirty
/// pages and report success on the next one), so the log refuses all
/// further appends with [`PersistError::Failed`] until it is reopened,
/// which re-reads the file and repairs its tail. Nothing acknowledged is
/// ever lost by either path.
///
/// # Snapshots and the log
///
/// For a snapshot at [`EventLog::rotate`]'s LSN `L` to cover every event
/// before `L`, an event must be applied to the in-memory state *before* it
/// is appended (then acknowledged): an append that got an LSN below `L` was
/// applied before `rotate` returned, so a snapshot taken afterwards holds
/// it. Events replayed twice are harmless, recording being idempotent.
///
///# Example
///
///```
///use tracker_core::persist::{EventLog, LogEvent, LogOptions, Lsn};
///
///let dir = tempfile::tempdir()?;
///let (log, _) = EventLog::open(dir.path(), LogOptions::default())?;
///let event = LogEvent { visitor_hash: 42, at_millis: 1_000, url: "https://example.com/" };
///let lsn = log.append(&event)?;
///drop(log);
///
///let mut seen = Vec::new();
///let (_log, recovery) = EventLog::open_replaying(
///    dir.path(),
///    LogOptions::default(),
///    Lsn(0),
///    |at, e| seen.push((at, e.url.to_owned())),
///)?;
///assert_eq!(seen, [(lsn, "https://example.com/".to_owned())]);
///assert_eq!(recovery.events, 1);
///# Ok::<(), Box<dyn std::error::Error>>(())
///```
#[derive(Debug)]
pub struct EventLog {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    flusher: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    policy: FsyncPolicy,
    /// The writer lets groups grow before syncing them (`Shared::gather`):
    /// under `Always`, when this process may run on one CPU only.
    gather: bool,
    segment_size: u64,
    state: Mutex<State>,
    /// Wakes the writer thread (its only waiter).
    work: Condvar,
    writer: Mutex<Writer>,
    /// Set by the writer after a write under `Interval`, cleared by the
    /// flusher before it syncs.
    unsynced: AtomicBool,
    stop: Mutex<bool>,
    stop_cv: Condvar,
}

/// What appenders and the writer share, under `Shared::state`.
#[derive(Debug)]
struct State {
    /// LSN of the next byte to encode (the end of the pending data).
    next_lsn: u64,
    /// Start LSN of the segment `next_lsn` lies in.
    seg_start: u64,
    /// Encoded frames not yet written, split where a new segment starts.
    pending: Vec<Chunk>,
    /// Emptied buffers kept for reuse, so steady appends do not allocate.
    spare: Vec<Vec<u8>>,
    /// The group new appends join.
    open: Arc<Group>,
    /// Appends that joined the open group.
    joined: usize,
    /// The writer is waiting for work (so an appender must wake it).
    writer_idle: bool,
    /// A group is being written (by the writer thread, or in place by an
    /// appender under `Off` and `Interval`): the next one waits for it.
    busy: bool,
    /// Set at drop: the writer writes what is pending, then exits.
    closing: bool,
    /// Set after a failure that leaves the file's state unknown.
    failed: Option<String>,
}

#[derive(Debug)]
struct Chunk {
    /// Start a new segment at this LSN before writing `bytes`.
    new_segment: Option<u64>,
    bytes: Vec<u8>,
}

/// The current segment file, written by the writer thread only.
#[derive(Debug)]
struct Writer {
    file: Arc<File>,
    seg_start: u64,
    /// Valid bytes in the file, header included.
    len: u64,
    /// The file's length: `len` plus the zeros written ahead of it.
    allocated: u64,
    /// How far ahead zeros are written (0: never; see
    /// [`Writer::preallocate`]).
    prealloc: u64,
    disk: Disk,
}

/// How writing a group failed.
enum WriteError {
    /// The file is back at its last good frame; the log goes on.
    Undone(PersistError),
    /// The file's state is unknown: the log must be reopened.
    Fatal(PersistError),
}

impl EventLog {
    /// Opens (creating it and its parents if missing) the log in `dir`
    /// without replaying anything: only the last segment is read, to find
    /// and repair its end. Appends continue after the last valid frame.
    ///
    /// Errors: [`PersistError::Io`] naming the path when the directory
    /// cannot be created, read or written; the damage errors of
    /// [`open_replaying`](Self::open_replaying).
    ///
    /// ```
    /// use tracker_core::persist::{EventLog, LogOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let missing = dir.path().join("not/yet/there");
    /// let (log, recovery) = EventLog::open(&missing, LogOptions::default())?;
    /// assert!(missing.is_dir());
    /// assert_eq!(log.end(), recovery.end);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(
        dir: impl AsRef<Path>,
        options: LogOptions,
    ) -> Result<(EventLog, Recovery), PersistError> {
        Self::open_inner(dir.as_ref(), options, None, &mut |_, _| {})
    }

    /// Opens the log in `dir` (creating it if missing), calling `on_event`
    /// with every event at or after `from` in log order, each validated
    /// by its checksum, then repairs the end of the log as the
    /// [`Recovery`] describes, and returns the log ready for
    /// appends after the last valid frame.
    ///
    /// `from` is what the snapshot covers ([`Lsn(0)`](Lsn) without one).
    /// Segments wholly before it are not read. If the log starts after
    /// `from`, events are missing: [`PersistError::Gap`] (with salvage:
    /// reported in [`Recovery::gap`]). If the log ends before `from` (it
    /// was lost while the snapshot was kept), it restarts at `from`.
    ///
    /// Errors: [`PersistError::Corrupt`] (file and offset) for damage that
    /// is not a torn tail, unless [`LogOptions::salvage`];
    /// [`PersistError::BadMagic`] and [`PersistError::UnsupportedVersion`]
    /// for files that are not ours or too new; [`PersistError::Io`]. On an
    /// error, events already delivered should be discarded by the caller.
    ///
    /// ```
    /// use tracker_core::persist::{EventLog, LogEvent, LogOptions, Lsn};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let (log, _) = EventLog::open(dir.path(), LogOptions::default())?;
    /// log.append(&LogEvent { visitor_hash: 1, at_millis: 5, url: "https://a.example/" })?;
    /// let covered = log.rotate()?; // a snapshot would be taken here
    /// log.append(&LogEvent { visitor_hash: 2, at_millis: 6, url: "https://b.example/" })?;
    /// drop(log);
    ///
    /// let mut urls = Vec::new();
    /// EventLog::open_replaying(dir.path(), LogOptions::default(), covered, |_, e| {
    ///     urls.push(e.url.to_owned())
    /// })?;
    /// assert_eq!(urls, ["https://b.example/"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_replaying(
        dir: impl AsRef<Path>,
        options: LogOptions,
        from: Lsn,
        mut on_event: impl FnMut(Lsn, LogEvent<'_>),
    ) -> Result<(EventLog, Recovery), PersistError> {
        Self::open_inner(dir.as_ref(), options, Some(from), &mut on_event)
    }

    fn open_inner(
        dir: &Path,
        options: LogOptions,
        from: Option<Lsn>,
        on_event: &mut dyn FnMut(Lsn, LogEvent<'_>),
    ) -> Result<(EventLog, Recovery), PersistError> {
        ensure_dir(dir)?;
        let scanned = recovery::scan(dir, options.salvage, from, on_event)?;
        let disk = options.disk.clone();
        let prealloc = match options.sync {
            FsyncPolicy::Always => options.segment_size.clamp(4096, PREALLOC_BYTES),
            _ => 0,
        };
        let writer = match scanned.resume {
            Some((seg_start, path, len)) => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| PersistError::io(&path, "open", e))?;
                // Recovery cut the file at its last frame.
                Writer {
                    file: Arc::new(file),
                    seg_start,
                    len,
                    allocated: len,
                    prealloc,
                    disk,
                }
            }
            None => {
                let start = scanned.recovery.end.0;
                let file = create_segment(dir, &disk, start, true)?;
                Writer {
                    file: Arc::new(file),
                    seg_start: start,
                    len: HEADER_LEN as u64,
                    allocated: HEADER_LEN as u64,
                    prealloc,
                    disk,
                }
            }
        };
        let mut recovery = scanned.recovery;
        recovery.end = Lsn(writer.seg_start + writer.len);
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            policy: options.sync,
            gather: options.sync == FsyncPolicy::Always
                && std::thread::available_parallelism().is_ok_and(|n| n.get() == 1),
            segment_size: options.segment_size,
            state: Mutex::new(State {
                next_lsn: writer.seg_start + writer.len,
                seg_start: writer.seg_start,
                pending: Vec::new(),
                spare: Vec::new(),
                open: Arc::default(),
                joined: 0,
                writer_idle: false,
                busy: false,
                closing: false,
                failed: None,
            }),
            work: Condvar::new(),
            writer: Mutex::new(writer),
            unsynced: AtomicBool::new(false),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
        });
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("event-log-writer".into())
                .spawn(move || shared.write_loop())
                .map_err(|e| PersistError::io(dir, "start the writer thread for", e))?
        };
        let flusher = match options.sync {
            FsyncPolicy::Interval(every) => {
                let shared = Arc::clone(&shared);
                let spawned = std::thread::Builder::new()
                    .name("event-log-flusher".into())
                    .spawn(move || shared.flush_every(every))
                    .map_err(|e| PersistError::io(dir, "start the flusher thread for", e))?;
                Some(spawned)
            }
            _ => None,
        };
        let log = EventLog {
            shared,
            writer: Some(writer),
            flusher,
        };
        Ok((log, recovery))
    }

    /// Appends one event and returns its position, once it is durable as
    /// the [`FsyncPolicy`] says. Safe to call from many threads: concurrent
    /// appends share writes and syncs (see [`EventLog`]).
    ///
    /// Errors: [`PersistError::EventTooLarge`] for a URL longer than any
    /// tracker accepts; [`PersistError::Io`] when the write fails (the log
    /// stays usable); [`PersistError::Failed`] after an fsync failure.
    ///
    /// ```
    /// use tracker_core::persist::{EventLog, LogEvent, LogOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let (log, _) = EventLog::open(dir.path(), LogOptions::default())?;
    /// let a = log.append(&LogEvent { visitor_hash: 1, at_millis: 0, url: "https://example.com/" })?;
    /// let b = log.append(&LogEvent { visitor_hash: 2, at_millis: 0, url: "https://example.com/" })?;
    /// assert!(a < b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append(&self, event: &LogEvent<'_>) -> Result<Lsn, PersistError> {
        self.append_batch(std::slice::from_ref(event))
    }

    /// Appends events as one unit of commit and returns the position of
    /// the first; the others follow it contiguously, in order. An empty
    /// batch returns the current end without waiting. Errors as
    /// [`append`](Self::append); on an error none of the batch is
    /// acknowledged (an [`EventTooLarge`](PersistError::EventTooLarge)
    /// event rejects the whole batch before anything is written).
    ///
    /// ```
    /// use tracker_core::persist::{EventLog, LogEvent, LogOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let (log, _) = EventLog::open(dir.path(), LogOptions::default())?;
    /// let events = [
    ///     LogEvent { visitor_hash: 1, at_millis: 0, url: "https://example.com/a" },
    ///     LogEvent { visitor_hash: 1, at_millis: 0, url: "https://example.com/b" },
    /// ];
    /// let first = log.append_batch(&events)?;
    /// assert!(first < log.end());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append_batch(&self, events: &[LogEvent<'_>]) -> Result<Lsn, PersistError> {
        self.submit(events).wait()
    }

    /// Appends events as [`append_batch`](Self::append_batch) does, without
    /// waiting: the returned [`Append`] completes once they are as durable
    /// as the [`FsyncPolicy`] says (await it, or [`Append::wait`]). The
    /// events' positions are fixed when this returns, so appends submitted
    /// one after the other by one thread are logged in that order.
    pub fn submit(&self, events: &[LogEvent<'_>]) -> Append {
        let mut size = 0;
        for event in events {
            let payload = 16 + event.url.len();
            if payload > MAX_PAYLOAD_LEN {
                return Append::ready(Err(PersistError::EventTooLarge {
                    len: payload,
                    max: MAX_PAYLOAD_LEN,
                }));
            }
            size += FRAME_HEADER_LEN + payload;
        }
        self.shared.enqueue(size, |buf| {
            for event in events {
                // Cannot fail: every size was checked above.
                let _ = frame::encode(buf, event);
            }
        })
    }

    /// Appends frames already encoded (by `frame::encode`, so each is
    /// valid) as one contiguous unit of commit, without waiting.
    pub(crate) fn submit_encoded(&self, frames: &[u8]) -> Append {
        self.shared
            .enqueue(frames.len(), |buf| buf.extend_from_slice(frames))
    }

    /// Starts a new segment (unless the current one holds no frame yet)
    /// and returns its start: every append that returned before this call
    /// lies below it. The snapshotter calls this, snapshots, then calls
    /// [`remove_segments_before`](Self::remove_segments_before).
    ///
    /// ```
    /// use tracker_core::persist::{EventLog, LogEvent, LogOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let (log, _) = EventLog::open(dir.path(), LogOptions::default())?;
    /// let a = log.append(&LogEvent { visitor_hash: 1, at_millis: 0, url: "https://example.com/" })?;
    /// let start = log.rotate()?;
    /// assert!(a < start);
    /// assert_eq!(log.rotate()?, start, "an empty segment is not rotated again");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rotate(&self) -> Result<Lsn, PersistError> {
        let s = &*self.shared;
        let mut st = lock(&s.state);
        if let Some(cause) = &st.failed {
            return Err(PersistError::Failed {
                cause: cause.clone(),
            });
        }
        s.maybe_rotate(&mut st, true);
        let start = st.seg_start;
        s.join(st, Lsn(start)).wait()?;
        Ok(Lsn(start))
    }

    /// Deletes the segment files that lie wholly before `lsn` (those whose
    /// successor starts at or before it); the current segment is never
    /// deleted. Returns how many were deleted.
    ///
    /// ```
    /// use tracker_core::persist::{EventLog, LogEvent, LogOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let (log, _) = EventLog::open(dir.path(), LogOptions::default())?;
    /// log.append(&LogEvent { visitor_hash: 1, at_millis: 0, url: "https://example.com/" })?;
    /// let covered = log.rotate()?;
    /// assert_eq!(log.remove_segments_before(covered)?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove_segments_before(&self, lsn: Lsn) -> Result<usize, PersistError> {
        let dir = &self.shared.dir;
        let segs = segment::list(dir)?;
        let mut removed = 0;
        for pair in segs.windows(2) {
            if pair[1].0 <= lsn.0 {
                std::fs::remove_file(&pair[0].1)
                    .map_err(|e| PersistError::io(&pair[0].1, "remove", e))?;
                removed += 1;
            }
        }
        if removed > 0 {
            sync_dir(dir)?;
        }
        Ok(removed)
    }

    /// The position the next append will get (after everything appended
    /// or in flight).
    ///
    /// ```
    /// use tracker_core::persist::{EventLog, LogOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let (log, recovery) = EventLog::open(dir.path(), LogOptions::default())?;
    /// assert_eq!(log.end(), recovery.end);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn end(&self) -> Lsn {
        Lsn(lock(&self.shared.state).next_lsn)
    }

    /// Syncs everything appended so far, whatever the policy (for a
    /// graceful shutdown under `Interval` or `Off`).
    ///
    /// ```
    /// use tracker_core::persist::{EventLog, LogOptions, FsyncPolicy};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let (log, _) = EventLog::open(dir.path(), LogOptions::default().sync(FsyncPolicy::Off))?;
    /// log.sync()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sync(&self) -> Result<(), PersistError> {
        self.shared.sync_current()
    }

    /// When appends are synced.
    ///
    /// ```
    /// use tracker_core::persist::{EventLog, LogOptions, FsyncPolicy};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let (log, _) = EventLog::open(dir.path(), LogOptions::default().sync(FsyncPolicy::Off))?;
    /// assert_eq!(log.policy(), FsyncPolicy::Off);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn policy(&self) -> FsyncPolicy {
        self.shared.policy
    }

    /// The directory of the log.
    ///
    /// ```
    /// use tracker_core::persist::{EventLog, LogOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let (log, _) = EventLog::open(dir.path(), LogOptions::default())?;
    /// assert_eq!(log.dir(), dir.path());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

impl Drop for EventLog {
    /// Stops the flusher and, unless the policy is `Off`, syncs what was
    /// written (errors cannot be reported here: call
    /// [`EventLog::sync`] first to see them).
    fn drop(&mut self) {
        lock(&self.shared.state).closing = true;
        self.shared.work.notify_one();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        *lock(&self.shared.stop) = true;
        self.shared.stop_cv.notify_all();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        // A log closed cleanly ends at its last frame. The threads are
        // joined, so the writer's lock is held for both steps.
        let mut writer = lock(&self.shared.writer);
        let _ = writer.trim(&self.shared.dir);
        if self.shared.policy != FsyncPolicy::Off {
            let _ = writer.sync(&self.shared.dir);
        }
    }
}

impl Shared {
    /// Under the state lock: if the segment is past its size (or `force`)
    /// and holds frames, the pending data from here on goes to a new
    /// segment starting at the current end.
    fn maybe_rotate(&self, st: &mut State, force: bool) {
        let used = st.next_lsn - st.seg_start;
        if used > HEADER_LEN as u64 && (force || used >= self.segment_size) {
            let at = st.next_lsn;
            let bytes = st.spare.pop().unwrap_or_default();
            st.pending.push(Chunk {
                new_segment: Some(at),
                bytes,
            });
            st.seg_start = at;
            st.next_lsn = at + HEADER_LEN as u64;
        }
    }

    /// The buffer new frames go to.
    fn pending_buffer<'a>(&self, st: &'a mut State) -> &'a mut Vec<u8> {
        if st.pending.is_empty() {
            let bytes = st.spare.pop().unwrap_or_default();
            st.pending.push(Chunk {
                new_segment: None,
                bytes,
            });
        }
        let last = st.pending.len() - 1;
        &mut st.pending[last].bytes
    }

    /// Encodes `size` bytes of frames with `encode` into the pending
    /// data and joins the open group.
    fn enqueue(&self, size: usize, encode: impl FnOnce(&mut Vec<u8>)) -> Append {
        let mut st = lock(&self.state);
        if let Some(cause) = &st.failed {
            return Append::ready(Err(PersistError::Failed {
                cause: cause.clone(),
            }));
        }
        if size == 0 {
            return Append::ready(Ok(Lsn(st.next_lsn)));
        }
        self.maybe_rotate(&mut st, false);
        let first = st.next_lsn;
        let buf = self.pending_buffer(&mut st);
        let before = buf.len();
        buf.reserve(size);
        encode(buf);
        debug_assert_eq!(buf.len() - before, size);
        st.next_lsn += size as u64;
        self.join(st, Lsn(first))
    }

    /// Joins the open group, waking the writer if it is idle.
    fn join<'a>(&'a self, mut st: sync::MutexGuard<'a, State>, first: Lsn) -> Append {
        st.joined += 1;
        let group = Arc::clone(&st.open);
        if !st.busy && self.policy != FsyncPolicy::Always {
            // Without an fsync to wait for, the write is a buffered
            // `write(2)` of microseconds: cheaper done here than handed to
            // the writer thread and back (see `EventLog`'s docs).
            self.write_next(st);
            st = lock(&self.state);
            if st.joined == 0 {
                return Append::waiting(group, first);
            }
        }
        let wake = !st.busy && std::mem::take(&mut st.writer_idle);
        drop(st);
        if wake {
            self.work.notify_one();
        }
        Append::waiting(group, first)
    }

    /// The writer thread: writes each group as it closes, until the log
    /// is dropped (writing what is pending first).
    fn write_loop(&self) {
        let mut st = lock(&self.state);
        loop {
            if st.joined == 0 || st.busy {
                if st.closing && st.joined == 0 {
                    return;
                }
                st.writer_idle = true;
                st = sync::wait(&self.work, st);
                st.writer_idle = false;
                continue;
            }
            if self.gather {
                st = self.gather(st);
            }
            self.write_next(st);
            st = lock(&self.state);
        }
    }

    /// Lets the open group grow before it is synced: the writer yields its
    /// CPU while appends keep joining, at most [`GATHER_YIELDS`] times.
    /// Only when the process may run on one CPU (its affinity mask, as
    /// `available_parallelism` reads it).
    ///
    /// An fsync costs the same CPU for one event as for a hundred (on the
    /// test VM ~150 µs of kernel time per group appending, ~60 µs into
    /// the zeros written ahead; mostly the virtio disk's doorbell), and
    /// when the writer shares the one core with the
    /// threads that append, that CPU is taken from them: groups stay
    /// small and the fsyncs eat the core. Yielding runs the appenders
    /// until they have nothing left to do (or their time slice ends), so
    /// everything they had ready joins this group. With more CPUs the
    /// appenders run while the writer syncs anyway, and a yield would only
    /// hand the writer's CPU to unrelated work and delay the fsync
    /// (measured: 0.33x of memory against 0.40x without, unpinned).
    fn gather<'a>(&'a self, mut st: sync::MutexGuard<'a, State>) -> sync::MutexGuard<'a, State> {
        let mut seen = st.joined;
        for _ in 0..GATHER_YIELDS {
            drop(st);
            std::thread::yield_now();
            st = lock(&self.state);
            if st.joined == seen || st.closing {
                break;
            }
            seen = st.joined;
        }
        st
    }

    /// Takes the open group and its pending data, writes (and syncs) them
    /// outside the lock, and finishes the group. The caller holds the
    /// state lock and checked that no other group is being written.
    fn write_next(&self, mut st: sync::MutexGuard<'_, State>) {
        st.busy = true;
        let group = std::mem::take(&mut st.open);
        group.close(std::mem::take(&mut st.joined));
        let chunks = std::mem::take(&mut st.pending);
        drop(st);

        let result = self.write_group(&chunks);

        let mut st = lock(&self.state);
        st.busy = false;
        for mut chunk in chunks {
            chunk.bytes.clear();
            if st.spare.len() < 4 {
                st.spare.push(chunk.bytes);
            }
        }
        match result {
            Ok(()) => {
                drop(st);
                group.finish(Ok(()));
            }
            Err(failure) => {
                let error = match failure {
                    WriteError::Undone(e) => e,
                    WriteError::Fatal(e) => {
                        st.failed = Some(e.to_string());
                        e
                    }
                };
                let next = self.fail_pending(&mut st);
                drop(st);
                if let Some(next) = next {
                    next.finish(Err(error.duplicate()));
                }
                group.finish(Err(error));
            }
        }
    }

    /// After a failed group: the open group (whose LSNs assumed the
    /// failed bytes) fails too, and positions restart at the writer's end.
    fn fail_pending(&self, st: &mut State) -> Option<Arc<Group>> {
        let next = (st.joined > 0).then(|| {
            let next = std::mem::take(&mut st.open);
            next.close(std::mem::take(&mut st.joined));
            next
        });
        st.pending.clear();
        let w = lock(&self.writer);
        st.seg_start = w.seg_start;
        st.next_lsn = w.seg_start + w.len;
        next
    }

    /// The writer's I/O for one group.
    fn write_group(&self, chunks: &[Chunk]) -> Result<(), WriteError> {
        let mut w = lock(&self.writer);
        let mut wrote = false;
        for chunk in chunks {
            if let Some(at) = chunk.new_segment {
                self.start_segment(&mut w, at)?;
            }
            if !chunk.bytes.is_empty() {
                w.write(&self.dir, &chunk.bytes)?;
                wrote = true;
            }
        }
        match self.policy {
            FsyncPolicy::Always if wrote => w.sync(&self.dir).map_err(WriteError::Fatal)?,
            FsyncPolicy::Interval(_) if wrote => self.unsynced.store(true, Ordering::Release),
            _ => {}
        }
        Ok(())
    }

    /// Moves the writer to a new segment starting at `at`, syncing the old
    /// one first (unless `Off`) so that only the current segment can ever
    /// hold unsynced data.
    fn start_segment(&self, w: &mut Writer, at: u64) -> Result<(), WriteError> {
        // Only the last segment may end in zeros (recovery reads them as
        // its end; in an earlier one they would be corruption).
        w.trim(&self.dir).map_err(WriteError::Undone)?;
        let durable = self.policy != FsyncPolicy::Off;
        if durable {
            w.sync(&self.dir).map_err(WriteError::Fatal)?;
        }
        let file = create_segment(&self.dir, &w.disk, at, durable).map_err(|e| {
            // A half-made file left under the next segment's name would
            // later read as a segment the current one overlaps.
            if segment::path(&self.dir, at).exists() {
                WriteError::Fatal(e)
            } else {
                WriteError::Undone(e)
            }
        })?;
        w.file = Arc::new(file);
        w.seg_start = at;
        w.len = HEADER_LEN as u64;
        w.allocated = w.len;
        Ok(())
    }

    fn sync_current(&self) -> Result<(), PersistError> {
        let (file, disk, seg_start) = {
            let w = lock(&self.writer);
            (Arc::clone(&w.file), w.disk.clone(), w.seg_start)
        };
        disk.sync_data(&file)
            .map_err(|e| PersistError::io(segment::path(&self.dir, seg_start), "fsync", e))
    }

    /// The `Interval` flusher's loop: sync when something was written, at
    /// most once per `every`, until the log is dropped.
    fn flush_every(&self, every: Duration) {
        let mut stop = lock(&self.stop);
        while !*stop {
            stop = sync::wait_timeout(&self.stop_cv, stop, every).0;
            if self.unsynced.swap(false, Ordering::AcqRel)
                && let Err(e) = self.sync_current()
            {
                // See "Failures" on `EventLog`.
                lock(&self.state).failed = Some(e.to_string());
            }
        }
    }
}

impl Writer {
    /// Writes `bytes` at the end of the segment; if that fails, cuts off
    /// whatever part was written so that the file ends with a whole frame.
    fn write(&mut self, dir: &Path, bytes: &[u8]) -> Result<(), WriteError> {
        let end = self.len + bytes.len() as u64;
        if end > self.allocated && self.prealloc > 0 {
            self.preallocate(end)
                .map_err(|e| WriteError::Fatal(PersistError::io(self.path(dir), "truncate", e)))?;
        }
        match self.disk.write_all_at(&self.file, bytes, self.len) {
            Ok(()) => {
                self.len = end;
                self.allocated = self.allocated.max(end);
                Ok(())
            }
            Err(e) => {
                let error = PersistError::io(self.path(dir), "write", e);
                match self.disk.set_len(&self.file, self.len) {
                    Ok(()) => {
                        self.allocated = self.len;
                        Err(WriteError::Undone(error))
                    }
                    Err(_) => Err(WriteError::Fatal(error)),
                }
            }
        }
    }

    /// Writes zeros past the end of the file up to the next multiple of
    /// `prealloc` at or after `end`, so that the frames written there
    /// later overwrite blocks the file already has.
    ///
    /// Why: an `fdatasync` after an append must also commit the file's
    /// new size and blocks through the file system's journal, and one
    /// after an overwrite only flushes data. Measured on the test VM
    /// (ext4 on virtio-blk; 3.2 KB per write, a group of 64 events): a
    /// `write` + `fdatasync` loop made 3 disk writes and took 0.20 ms
    /// (median) appending, 2 and 0.13 ms overwriting, with 25 % less
    /// kernel CPU; in tracker-http under `Always` the writer thread's CPU
    /// per group fell from about 125 to 57 µs, CPU the appenders lack
    /// when they share its core (docs/BENCHMARKS.md). `fallocate`
    /// would leave unwritten extents, whose conversion at the first write
    /// is metadata again. The zeros reach the disk with the next group's
    /// sync. Recovery reads zeros after the last frame as the end of the
    /// log ([`Recovery::zero_tail`]); a clean close and a rotation cut
    /// them off ([`trim`](Self::trim)).
    ///
    /// If the zeros do not fit (a full disk), they are cut off again and
    /// the group is appended as before; only a failed cut is an error.
    fn preallocate(&mut self, end: u64) -> std::io::Result<()> {
        let target = end.div_ceil(self.prealloc) * self.prealloc;
        match self.disk.write_zeros(&self.file, self.allocated, target) {
            Ok(()) => self.allocated = target,
            Err(_) => self.disk.set_len(&self.file, self.allocated)?,
        }
        Ok(())
    }

    /// Cuts off the zeros past the last frame.
    fn trim(&mut self, dir: &Path) -> Result<(), PersistError> {
        if self.allocated > self.len {
            self.disk
                .set_len(&self.file, self.len)
                .map_err(|e| PersistError::io(self.path(dir), "truncate", e))?;
            self.allocated = self.len;
        }
        Ok(())
    }

    fn path(&self, dir: &Path) -> PathBuf {
        segment::path(dir, self.seg_start)
    }

    fn sync(&self, dir: &Path) -> Result<(), PersistError> {
        self.disk
            .sync_data(&self.file)
            .map_err(|e| PersistError::io(self.path(dir), "fsync", e))
    }
}

/// Creates the segment starting at `at` with its header; when `durable`,
/// syncs it and the directory so that the new name survives a power cut.
/// On failure nothing is left behind (best effort).
fn create_segment(dir: &Path, disk: &Disk, at: u64, durable: bool) -> Result<File, PersistError> {
    let path = segment::path(dir, at);
    let file = disk
        .create_new(&path)
        .map_err(|e| PersistError::io(&path, "create", e))?;
    let written = disk
        .write_all_at(&file, &segment::header(at), 0)
        .map_err(|e| PersistError::io(&path, "write", e))
        .and_then(|()| {
            if durable {
                disk.sync_data(&file)
                    .map_err(|e| PersistError::io(&path, "fsync", e))?;
                sync_dir(dir)?;
            }
            Ok(())
        });
    match written {
        Ok(()) => Ok(file),
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}
