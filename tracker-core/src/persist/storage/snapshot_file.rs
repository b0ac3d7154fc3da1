//! The snapshot container: an opaque payload tagged with the log position
//! it covers, written atomically and checked when read.
//!
//! ```text
//! file name = snapshot-<20-digit covers LSN>.snap
//! header    = magic "TRKSNAPS" | version: u32 LE | 0: u32
//!           | covers LSN: u64 LE | payload length: u64 LE
//!           | CRC-32C of the payload: u32 LE | CRC-32C of the 36 bytes before: u32 LE
//! then      = the payload
//! ```
//!
//! Writing streams the payload after a zeroed header, computing its length
//! and checksum on the way, then seeks back to fill the header in. The
//! file is written as `<name>.tmp`, synced, renamed to its name and the
//! directory synced: a crash at any point leaves either the old set of
//! snapshots or the new one, plus at worst a `.tmp` file that the next
//! write deletes. One writer per directory at a time is assumed.

use super::error::PersistError;
use super::fs::{ensure_dir, list_numbered, numbered_name, sync_dir};
use super::lsn::Lsn;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The snapshot container format version this build reads and writes.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;
/// How many snapshots [`write_atomic`] callers usually keep: the newest,
/// and one to fall back to if the newest is damaged.
pub const DEFAULT_KEEP: usize = 2;

const MAGIC: &[u8; 8] = b"TRKSNAPS";
const HEADER_LEN: usize = 40;
const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".snap.tmp";

/// What [`write_atomic`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Written {
    /// The snapshot file.
    pub path: PathBuf,
    /// Payload bytes written.
    pub payload_len: u64,
    /// The position the oldest snapshot still kept covers. Delete log
    /// segments only before this (not before the new snapshot's position):
    /// then falling back to an older snapshot at read still finds every
    /// event after it in the log.
    pub keep_log_from: Lsn,
}

/// A snapshot read back by [`read_newest`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Snapshot {
    /// Everything logged before this position is in the payload.
    pub covers: Lsn,
    /// The payload, checked against its checksum.
    pub payload: Vec<u8>,
    /// The file it came from.
    pub path: PathBuf,
    /// Newer snapshots that were damaged and passed over, newest first,
    /// with what was wrong with each. The caller should log them.
    pub skipped: Vec<PersistError>,
}

/// Writes a snapshot covering the log before `covers` into `dir` (created
/// if missing), its payload produced by `payload` as a stream, then keeps
/// the newest `keep` snapshots (at least 1) and deletes the older ones and
/// any stale `.tmp` file. See the module docs for the steps and format.
///
/// Errors: [`PersistError::Io`] naming the file and step (including an
/// error returned by `payload`); the temporary file is then removed and
/// the existing snapshots are untouched.
///
/// ```
/// use tracker_core::persist::{snapshot_file, Lsn};
///
/// let dir = tempfile::tempdir()?;
/// for lsn in [10, 20, 30] {
///     snapshot_file::write_atomic(dir.path(), Lsn(lsn), 2, |w| w.write_all(b"state"))?;
/// }
/// let written = snapshot_file::write_atomic(dir.path(), Lsn(40), 2, |w| w.write_all(b"new"))?;
/// assert_eq!(written.keep_log_from, Lsn(30));
/// assert_eq!(std::fs::read_dir(dir.path())?.count(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_atomic(
    dir: impl AsRef<Path>,
    covers: Lsn,
    keep: usize,
    payload: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<Written, PersistError> {
    let dir = dir.as_ref();
    ensure_dir(dir)?;
    for (_, stale) in list_numbered(dir, PREFIX, TMP_SUFFIX)? {
        fs::remove_file(&stale).map_err(|e| PersistError::io(&stale, "remove", e))?;
    }
    let tmp = dir.join(numbered_name(PREFIX, covers.0, TMP_SUFFIX));
    let path = dir.join(numbered_name(PREFIX, covers.0, SUFFIX));
    let payload_len = match write_tmp(&tmp, covers, payload) {
        Ok(len) => len,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    fs::rename(&tmp, &path).map_err(|e| PersistError::io(&tmp, "rename", e))?;
    sync_dir(dir)?;

    let snaps = list_numbered(dir, PREFIX, SUFFIX)?;
    let cut = snaps.len().saturating_sub(keep.max(1));
    for (_, old) in &snaps[..cut] {
        fs::remove_file(old).map_err(|e| PersistError::io(old, "remove", e))?;
    }
    if cut > 0 {
        sync_dir(dir)?;
    }
    let keep_log_from = snaps[cut..].first().map_or(covers, |&(lsn, _)| Lsn(lsn));
    Ok(Written {
        path,
        payload_len,
        keep_log_from,
    })
}

/// Streams the payload into `tmp` and fills in the header; returns the
/// payload length.
fn write_tmp(
    tmp: &Path,
    covers: Lsn,
    payload: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<u64, PersistError> {
    let io = |op| move |e| PersistError::io(tmp, op, e);
    let file = File::create(tmp).map_err(io("create"))?;
    let mut out = Checksummed {
        inner: BufWriter::new(file),
        len: 0,
        crc: 0,
    };
    out.inner.write_all(&[0; HEADER_LEN]).map_err(io("write"))?;
    payload(&mut out).map_err(io("write snapshot payload to"))?;
    let (len, crc) = (out.len, out.crc);
    let mut file = out
        .inner
        .into_inner()
        .map_err(|e| io("write")(e.into_error()))?;
    file.seek(SeekFrom::Start(0)).map_err(io("seek"))?;
    file.write_all(&header(covers, len, crc))
        .map_err(io("write"))?;
    file.sync_all().map_err(io("fsync"))?;
    Ok(len)
}

fn header(covers: Lsn, len: u64, crc: u32) -> [u8; HEADER_LEN] {
    let mut h = [0; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&covers.0.to_le_bytes());
    h[24..32].copy_from_slice(&len.to_le_bytes());
    h[32..36].copy_from_slice(&crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&h[..36]);
    h[36..40].copy_from_slice(&header_crc.to_le_bytes());
    h
}

/// Counts and checksums what goes through it.
struct Checksummed<W> {
    inner: W,
    len: u64,
    crc: u32,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads the newest valid snapshot in `dir`; `Ok(None)` when there is no
/// snapshot at all (or no directory).
///
/// Choices, so that nothing is used or lost silently:
/// - a damaged newest snapshot (bad checksum, cut short, bad magic) is
///   passed over for the next older one, and listed in
///   [`Snapshot::skipped`]; this loses nothing as long as the log is kept
///   from [`Written::keep_log_from`];
/// - if every snapshot is damaged, the newest one's error is returned
///   (starting empty would silently drop the state they held);
/// - a snapshot of another format version is
///   [`PersistError::UnsupportedVersion`] at once, never passed over: an
///   older build reading a newer release's files must stop, not run on
///   stale state.
///
/// ```
/// use tracker_core::persist::{snapshot_file, Lsn};
///
/// let dir = tempfile::tempdir()?;
/// assert!(snapshot_file::read_newest(dir.path())?.is_none());
/// snapshot_file::write_atomic(dir.path(), Lsn(96), 2, |w| w.write_all(b"state"))?;
/// let snapshot = snapshot_file::read_newest(dir.path())?.unwrap();
/// assert_eq!((snapshot.covers, snapshot.payload.as_slice()), (Lsn(96), &b"state"[..]));
/// assert!(snapshot.skipped.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_newest(dir: impl AsRef<Path>) -> Result<Option<Snapshot>, PersistError> {
    let dir = dir.as_ref();
    let read = read_newest_with(dir, |payload, len| {
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        payload.read_to_end(&mut bytes).map(|_| bytes)
    });
    match read {
        Ok(found) => Ok(found.map(|d| Snapshot {
            covers: d.covers,
            payload: d.value,
            path: d.path,
            skipped: d.skipped,
        })),
        Err(ReadError::Persist(e)) => Err(e),
        // Reading the payload failed where reading it again did not.
        Err(ReadError::Decode(e)) => Err(PersistError::io(dir, "read a snapshot in", e)),
    }
}

/// A snapshot decoded by [`read_newest_with`] while it was read.
#[derive(Debug)]
#[non_exhaustive]
pub struct Decoded<T> {
    /// Everything logged before this position is in the payload.
    pub covers: Lsn,
    /// What the decoder made of the payload, whose checksum then held.
    pub value: T,
    /// The file it came from.
    pub path: PathBuf,
    /// Newer snapshots that were damaged and passed over, newest first.
    pub skipped: Vec<PersistError>,
}

/// Why [`read_newest_with`] failed.
#[derive(Debug)]
pub enum ReadError<E> {
    /// The files: I/O, damage in every snapshot, another format version.
    Persist(PersistError),
    /// The decoder refused a payload whose checksum holds: not damage, so
    /// no older snapshot is tried.
    Decode(E),
}

impl<E> From<PersistError> for ReadError<E> {
    fn from(e: PersistError) -> Self {
        ReadError::Persist(e)
    }
}

/// Like [`read_newest`], but decodes the payload as it is read instead of
/// reading it whole first: `decode` gets the payload as a buffered stream
/// and its length, so a restore needs no copy of the file in memory.
///
/// The checksum is only known once the stream ends, so every payload is
/// read to its end after `decode` returns, and then:
/// - checksum wrong: the snapshot is damaged; whatever `decode` returned
///   (a value or an error) is dropped and the next older snapshot is
///   tried, as [`read_newest`] does;
/// - checksum right: `decode`'s value is returned, or its error as
///   [`ReadError::Decode`].
///
/// The header, the covered position and the file's length are checked
/// before `decode` runs, with [`read_newest`]'s errors.
///
/// ```
/// use std::io::Read;
/// use tracker_core::persist::{snapshot_file, Lsn};
///
/// let dir = tempfile::tempdir()?;
/// snapshot_file::write_atomic(dir.path(), Lsn(7), 2, |w| w.write_all(b"state"))?;
/// let decoded = snapshot_file::read_newest_with(dir.path(), |payload, len| {
///     let mut text = String::new();
///     payload.read_to_string(&mut text)?;
///     assert_eq!(len, 5);
///     Ok::<_, std::io::Error>(text)
/// })
/// .unwrap()
/// .unwrap();
/// assert_eq!((decoded.covers, decoded.value.as_str()), (Lsn(7), "state"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_newest_with<T, E>(
    dir: impl AsRef<Path>,
    mut decode: impl FnMut(&mut dyn BufRead, u64) -> Result<T, E>,
) -> Result<Option<Decoded<T>>, ReadError<E>> {
    let dir = dir.as_ref();
    if !dir.exists() {
        return Ok(None);
    }
    let snaps = list_numbered(dir, PREFIX, SUFFIX)?;
    let mut skipped = Vec::new();
    for (lsn, path) in snaps.into_iter().rev() {
        let (file, len, expected) = match open_checked(&path, lsn) {
            Ok(opened) => opened,
            Err(e @ PersistError::UnsupportedVersion { .. }) => return Err(e.into()),
            Err(e) => {
                skipped.push(e);
                continue;
            }
        };
        let mut payload = BufReader::with_capacity(
            READ_BUFFER,
            Checksumming {
                inner: file.take(len),
                crc: 0,
            },
        );
        let decoded = decode(&mut payload, len);
        // The rest of the payload (nothing, when the decoder read it all)
        // goes through the checksum too.
        io::copy(&mut payload, &mut io::sink()).map_err(|e| PersistError::io(&path, "read", e))?;
        let found = payload.into_inner().crc;
        if found != expected {
            skipped.push(PersistError::ChecksumMismatch {
                file: path,
                expected,
                found,
            });
            continue;
        }
        return match decoded {
            Ok(value) => Ok(Some(Decoded {
                covers: Lsn(lsn),
                value,
                path,
                skipped,
            })),
            Err(e) => Err(ReadError::Decode(e)),
        };
    }
    match skipped.into_iter().next() {
        Some(newest) => Err(newest.into()),
        None => Ok(None),
    }
}

/// The first `n` bytes of the payload of every other snapshot in `dir`
/// than `except`, whose header checks (a damaged one is left out: it is no
/// evidence of anything), with its path. The payload's checksum is not
/// verified: only its head is read.
pub(crate) fn payload_heads(
    dir: &Path,
    except: &Path,
    n: usize,
) -> Result<Vec<(PathBuf, Vec<u8>)>, PersistError> {
    let mut heads = Vec::new();
    for (lsn, path) in list_numbered(dir, PREFIX, SUFFIX)? {
        if path == except {
            continue;
        }
        let Ok((file, len, _)) = open_checked(&path, lsn) else {
            continue;
        };
        let mut head = Vec::with_capacity(n);
        file.take(len.min(n as u64))
            .read_to_end(&mut head)
            .map_err(|e| PersistError::io(&path, "read", e))?;
        heads.push((path, head));
    }
    Ok(heads)
}

/// The buffer a payload is read through: large enough that the
/// checksum and the decoder work on long runs, small beside any state.
const READ_BUFFER: usize = 256 * 1024;

/// Opens a snapshot file and checks its header and length; returns the
/// file positioned at the payload, the payload's length and its expected
/// checksum.
fn open_checked(path: &Path, lsn: u64) -> Result<(File, u64, u32), PersistError> {
    let corrupt = |offset, reason: &str| PersistError::Corrupt {
        file: path.into(),
        offset,
        reason: reason.into(),
    };
    let io = |op| move |e| PersistError::io(path, op, e);
    let mut file = File::open(path).map_err(io("open"))?;
    let file_len = file.metadata().map_err(io("stat"))?.len();
    let mut h = [0u8; HEADER_LEN];
    if file_len < HEADER_LEN as u64 {
        return Err(corrupt(0, "snapshot shorter than its header"));
    }
    file.read_exact(&mut h).map_err(io("read"))?;
    if &h[..8] != MAGIC {
        return Err(PersistError::BadMagic { file: path.into() });
    }
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let u64_at = |i: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&h[i..i + 8]);
        u64::from_le_bytes(w)
    };
    // The version before the header checksum: see `segment::check_header`.
    let version = u32_at(8);
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(PersistError::UnsupportedVersion {
            file: path.into(),
            found: version,
            supported: SNAPSHOT_FORMAT_VERSION,
        });
    }
    if crc32c::crc32c(&h[..36]) != u32_at(36) {
        return Err(corrupt(0, "snapshot header checksum mismatch"));
    }
    if u64_at(16) != lsn {
        return Err(corrupt(16, "covered position differs from the file name"));
    }
    let len = u64_at(24);
    if len != file_len - HEADER_LEN as u64 {
        return Err(corrupt(
            HEADER_LEN as u64,
            "payload length differs from the header's",
        ));
    }
    Ok((file, len, u32_at(32)))
}

/// Checksums what is read through it.
struct Checksumming<R> {
    inner: R,
    crc: u32,
}

impl<R: Read> Read for Checksumming<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        Ok(n)
    }
}
