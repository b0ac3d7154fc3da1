//! Event-log segment files: their names and their header.
//!
//! ```text
//! file name = log-<20-digit start LSN>.seg
//! header    = magic "TRKEVLOG" | version: u32 LE | 0: u32
//!           | start LSN: u64 LE | CRC-32C of the 24 bytes before: u32 LE | 0: u32
//! then      = frames (see `frame`) up to the end of the file
//! ```
//!
//! The header repeats the start LSN so that a renamed or copied file is
//! caught, and carries its own checksum so that a damaged header is told
//! apart from a file of another format version.

use super::error::PersistError;
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

/// The segments in `dir` as (start LSN, path), in log order.
pub(crate) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, PersistError> {
    super::fs::list_numbered(dir, PREFIX, SUFFIX)
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
}
