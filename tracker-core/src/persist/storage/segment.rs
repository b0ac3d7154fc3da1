//! Event-log segment files: their names and their header.
//!
//! ```text
//! file name = log-<20-digit start LSN>.seg
//! header    = magic "TRKEVLOG" | version: u32 LE | 0: u32
//!           | start LSN: u64 LE | CRC-32C of the 24 bytes before: u32 LE | 0: u32
//! then      = frames (see `frame`) up to the end of the file, or in the
//!             last segment up to zero bytes that run to the end of it
//! ```
//!
//! The header repeats the start LSN so that a renamed or copied file is
//! caught, and carries its own checksum so that a damaged header is told
//! apart from a file of another format version.

use super::error::PersistError;
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Size of a segment header in bytes.
pub(crate) const HEADER_LEN: usize = 32;
/// The event-log format version this build reads and writes.
pub const LOG_FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"TRKEVLOG";
pub(crate) const PREFIX: &str = "log-";
pub(crate) const SUFFIX: &str = ".seg";

/// The path of the segment starting at `lsn` in `dir`.
pub(crate) fn path(dir: &Path, lsn: u64) -> PathBuf {
    dir.join(super::fs::numbered_name(PREFIX, lsn, SUFFIX))
}

/// The last position a segment may start at. No log reaches it (8 EiB
/// written), so a segment named past it is not one this code wrote, and
/// the positions of its frames could overflow.
const MAX_START: u64 = u64::MAX / 2;

/// The segments in `dir` as (start LSN, path), in log order. Errors:
/// [`PersistError::Corrupt`] for a segment named past [`MAX_START`].
pub(crate) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, PersistError> {
    let segments = super::fs::list_numbered(dir, PREFIX, SUFFIX)?;
    match segments.last() {
        Some((start, file)) if *start > MAX_START => Err(PersistError::Corrupt {
            file: file.clone(),
            offset: 0,
            reason: format!("its name puts its start at position {start}, past any log's"),
        }),
        _ => Ok(segments),
    }
}

/// The header of a segment starting at `lsn`.
pub(crate) fn header(lsn: u64) -> [u8; HEADER_LEN] {
    let mut h = [0; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&LOG_FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&lsn.to_le_bytes());
    let crc = crc32c::crc32c(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks the header at the start of `bytes` for the segment `file` whose
/// name says it starts at `lsn`. The caller has checked `bytes` holds at
/// least [`HEADER_LEN`] bytes.
pub(crate) fn check_header(file: &Path, bytes: &[u8], lsn: u64) -> Result<(), PersistError> {
    let word = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    if &bytes[..8] != MAGIC {
        return Err(PersistError::BadMagic { file: file.into() });
    }
    let corrupt = |reason: &str| PersistError::Corrupt {
        file: file.into(),
        offset: 0,
        reason: reason.into(),
    };
    // The version before the checksum: a later version may lay out (and
    // checksum) its header differently, and the user must learn that the
    // file is too new rather than that it is damaged.
    let version = word(8);
    if version != LOG_FORMAT_VERSION {
        return Err(PersistError::UnsupportedVersion {
            file: file.into(),
            found: version,
            supported: LOG_FORMAT_VERSION,
        });
    }
    if crc32c::crc32c(&bytes[..24]) != word(24) {
        return Err(corrupt("segment header checksum mismatch"));
    }
    let mut start = [0; 8];
    start.copy_from_slice(&bytes[16..24]);
    if u64::from_le_bytes(start) != lsn {
        return Err(corrupt(
            "segment header start position differs from the file name",
        ));
    }
    Ok(())
}

/// Bytes read from a segment at a time during recovery. Recovery holds
/// this much of the log (more only for a frame that is longer, up to the
/// largest frame), never a whole segment: a restart's peak heap is the
/// state it rebuilds, not the state plus a 64 MiB segment.
const READ_CHUNK: usize = 256 << 10;

#[cfg(test)]
thread_local! {
    /// Bytes the readers of this thread read from segment files: a test
    /// of recovery checks it reads each byte once.
    pub(crate) static BYTES_READ: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A segment file read front to back through a bounded window.
pub(crate) struct Reader {
    file: File,
    path: PathBuf,
    /// The file's length when opened (the directory lock keeps writers
    /// out, so it does not change while recovery reads), or where reading
    /// it ended if that came first.
    len: u64,
    buf: Vec<u8>,
    /// The file offset of `buf[0]`.
    buf_at: u64,
}

impl Reader {
    pub(crate) fn open(path: &Path) -> Result<Self, PersistError> {
        let file = File::open(path).map_err(|e| PersistError::io(path, "open", e))?;
        let len = file
            .metadata()
            .map_err(|e| PersistError::io(path, "stat", e))?
            .len();
        Ok(Reader {
            file,
            path: path.into(),
            len,
            buf: Vec::new(),
            buf_at: 0,
        })
    }

    /// The file's length.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The bytes from offset `at` on: at least `want` of them, or all up
    /// to the end of the file when fewer are left. Offsets must not go
    /// backwards between calls (the bytes before `at` are let go). A file
    /// that turns out shorter than its length said ends where reading
    /// ended ([`len`](Self::len) says so from then on), so a caller that
    /// asks again for more than is left always gets an answer that
    /// reaches the end.
    pub(crate) fn at(&mut self, at: u64, want: usize) -> Result<&[u8], PersistError> {
        debug_assert!(at >= self.buf_at, "the reader only moves forward");
        let left = usize::try_from(self.len.saturating_sub(at)).unwrap_or(usize::MAX);
        let want = want.min(left);
        let skip = at.saturating_sub(self.buf_at);
        if skip > self.buf.len() as u64 {
            // Past what was read: the file's position is the buffer's end.
            self.file
                .seek(SeekFrom::Start(at))
                .map_err(|e| PersistError::io(&self.path, "seek", e))?;
            self.buf.clear();
            self.buf_at = at;
        } else {
            let skip = skip as usize; // at most the buffer's length
            if self.buf.len() - skip >= want {
                return Ok(&self.buf[skip..]);
            }
            self.buf.drain(..skip);
            self.buf_at = at;
        }
        // The buffer now starts at `at`; read until it holds `want`.
        let mut filled = self.buf.len();
        self.buf.resize(want.max(READ_CHUNK), 0);
        while filled < want {
            match self.file.read(&mut self.buf[filled..]) {
                // Shorter than its length said: the end is here.
                Ok(0) => {
                    self.len = self.buf_at + filled as u64;
                    break;
                }
                Ok(n) => {
                    filled += n;
                    #[cfg(test)]
                    BYTES_READ.set(BYTES_READ.get() + n as u64);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(PersistError::io(&self.path, "read", e)),
            }
        }
        self.buf.truncate(filled);
        Ok(&self.buf)
    }

    /// Whether every byte from offset `at` to the end of the file is
    /// zero (or there is none): what a power cut leaves after the last
    /// write that reached the disk.
    pub(crate) fn zeros_from(&mut self, mut at: u64) -> Result<bool, PersistError> {
        while at < self.len {
            let window = self.at(at, 1)?;
            if window.is_empty() {
                return Ok(true);
            }
            if window.iter().any(|&b| b != 0) {
                return Ok(false);
            }
            at += window.len() as u64;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks() {
        let f = Path::new("x.seg");
        let h = header(7);
        check_header(f, &h, 7).unwrap();
        assert!(matches!(
            check_header(f, &h, 8),
            Err(PersistError::Corrupt { .. })
        ));
        let mut v2 = h;
        v2[8] = 2;
        let crc = crc32c::crc32c(&v2[..24]);
        v2[24..28].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            check_header(f, &v2, 7),
            Err(PersistError::UnsupportedVersion {
                found: 2,
                supported: 1,
                ..
            })
        ));
        let mut magic = h;
        magic[0] = b'X';
        assert!(matches!(
            check_header(f, &magic, 7),
            Err(PersistError::BadMagic { .. })
        ));
    }

    #[test]
    fn the_reader_windows_the_whole_file_in_bounded_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.seg");
        let bytes: Vec<u8> = (0..READ_CHUNK * 3 + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let mut reader = Reader::open(&path).unwrap();
        assert_eq!(reader.len(), bytes.len() as u64);
        let mut at = 0;
        while at < bytes.len() {
            let step = 1 + at % 4099;
            let window = reader.at(at as u64, step).unwrap();
            assert!(window.len() >= step.min(bytes.len() - at));
            assert_eq!(window, &bytes[at..at + window.len()]);
            at += step;
        }
        assert!(reader.buf.capacity() <= READ_CHUNK * 2, "bounded window");
        // A window larger than a chunk grows the buffer to it.
        let mut reader = Reader::open(&path).unwrap();
        let big = reader.at(5, READ_CHUNK * 2).unwrap();
        assert_eq!(big, &bytes[5..5 + big.len()]);
        assert!(big.len() >= READ_CHUNK * 2);
    }

    #[test]
    fn a_file_shorter_than_it_said_ends_where_reading_ended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.seg");
        std::fs::write(&path, vec![1u8; 1000]).unwrap();
        let mut reader = Reader::open(&path).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(600)
            .unwrap();
        assert_eq!(reader.at(0, 900).unwrap().len(), 600);
        assert_eq!(reader.len(), 600);
        assert!(reader.at(600, 10).unwrap().is_empty());
    }

    #[test]
    fn zeros_are_found_to_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.seg");
        let mut bytes = vec![7u8; 10];
        bytes.resize(READ_CHUNK * 2 + 3, 0);
        std::fs::write(&path, &bytes).unwrap();
        let mut reader = Reader::open(&path).unwrap();
        assert!(!reader.zeros_from(9).unwrap());
        let mut reader = Reader::open(&path).unwrap();
        assert!(reader.zeros_from(10).unwrap());
        bytes[READ_CHUNK * 2] = 1;
        std::fs::write(&path, &bytes).unwrap();
        let mut reader = Reader::open(&path).unwrap();
        assert!(!reader.zeros_from(10).unwrap());
        assert!(reader.zeros_from(bytes.len() as u64).unwrap());
    }
}
