//! One logged event and its on-disk frame.
//!
//! ```text
//! frame   = len: u32 LE | crc: u32 LE | payload (len bytes)
//! payload = visitor_hash: u64 LE | at_millis: u64 LE | url: UTF-8 (the rest)
//! crc     = CRC-32C of the 4 length bytes followed by the payload
//! ```
//!
//! The checksum covers the length too, so that a run of zero bytes (what a
//! power cut leaves where the file grew but the data never reached the
//! disk) can never pass as a frame: the CRC-32C of nothing is 0, which
//! would otherwise make `00000000 00000000` a valid empty frame.

use super::error::PersistError;
use crate::canonical_url::URL_LEN_CEILING;

/// Bytes before a frame's payload: its length and its checksum.
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// Bytes of a payload before the URL.
const FIXED_PAYLOAD_LEN: usize = 16;
/// The largest payload a frame may declare: the longest URL the tracker can
/// ever be configured to accept. A larger declared length is damage, not a
/// frame; bounding it also bounds what a damaged length at the end of the
/// log can make recovery drop as a torn tail.
pub(crate) const MAX_PAYLOAD_LEN: usize = FIXED_PAYLOAD_LEN + URL_LEN_CEILING;

/// One event as the log stores it: a page visit, already reduced to what
/// the tracker keeps.
///
/// The visitor id itself never reaches the disk, only its keyed 64-bit
/// hash; the URL is the canonical one. Borrowed, so that neither logging
/// nor replaying allocates per event.
///
/// ```
/// use tracker_core::persist::LogEvent;
///
/// let event = LogEvent { visitor_hash: 0x9e37_79b9, at_millis: 1_700_000_000_000, url: "https://example.com/" };
/// assert_eq!(event.url, "https://example.com/");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogEvent<'a> {
    /// The keyed 64-bit hash of the visitor id.
    pub visitor_hash: u64,
    /// When the visit happened, in milliseconds since the Unix epoch.
    pub at_millis: u64,
    /// The page's canonical URL.
    pub url: &'a str,
}

/// Appends the frame of `event` to `buf`.
pub(crate) fn encode(buf: &mut Vec<u8>, event: &LogEvent<'_>) -> Result<(), PersistError> {
    let payload_len = FIXED_PAYLOAD_LEN + event.url.len();
    if payload_len > MAX_PAYLOAD_LEN {
        return Err(PersistError::EventTooLarge {
            len: payload_len,
            max: MAX_PAYLOAD_LEN,
        });
    }
    // Fits in u32: bounded by MAX_PAYLOAD_LEN just above.
    let len_bytes = (payload_len as u32).to_le_bytes();
    let start = buf.len();
    buf.extend_from_slice(&len_bytes);
    buf.extend_from_slice(&[0; 4]); // the checksum, filled below
    buf.extend_from_slice(&event.visitor_hash.to_le_bytes());
    buf.extend_from_slice(&event.at_millis.to_le_bytes());
    buf.extend_from_slice(event.url.as_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), &buf[start + FRAME_HEADER_LEN..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// What the bytes at a frame position hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// A valid frame, `frame_len` bytes long including its header.
    Frame {
        event: LogEvent<'a>,
        frame_len: usize,
    },
    /// The bytes end before the frame does: a write cut short, or, when
    /// more of the segment follows, a read window that must grow to
    /// `needed` bytes.
    Incomplete { reason: &'static str, needed: usize },
    /// A complete frame (or an impossible length) that does not check
    /// out. `frame_end` is where the frame claims to end, when plausible.
    Invalid {
        reason: &'static str,
        frame_end: Option<usize>,
    },
}

/// Decodes the frame at the start of `bytes` (the segment from there, or a
/// window of it), never panicking whatever they hold.
pub(crate) fn decode(bytes: &[u8]) -> Decoded<'_> {
    let Some((header, rest)) = bytes.split_first_chunk::<FRAME_HEADER_LEN>() else {
        return Decoded::Incomplete {
            reason: "frame header cut short",
            needed: FRAME_HEADER_LEN,
        };
    };
    let len_bytes: [u8; 4] = [header[0], header[1], header[2], header[3]];
    let stored_crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let len = u32::from_le_bytes(len_bytes) as usize;
    if !(FIXED_PAYLOAD_LEN..=MAX_PAYLOAD_LEN).contains(&len) {
        return Decoded::Invalid {
            reason: "impossible frame length",
            frame_end: None,
        };
    }
    let Some(payload) = rest.get(..len) else {
        return Decoded::Incomplete {
            reason: "frame payload cut short",
            needed: FRAME_HEADER_LEN + len,
        };
    };
    let frame_end = Some(FRAME_HEADER_LEN + len);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload);
    if crc != stored_crc {
        return Decoded::Invalid {
            reason: "frame checksum mismatch",
            frame_end,
        };
    }
    let (fixed, url) = payload.split_at(FIXED_PAYLOAD_LEN);
    let Ok(url) = std::str::from_utf8(url) else {
        return Decoded::Invalid {
            reason: "frame URL is not UTF-8",
            frame_end,
        };
    };
    let word = |i: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&fixed[i..i + 8]);
        u64::from_le_bytes(w)
    };
    Decoded::Frame {
        event: LogEvent {
            visitor_hash: word(0),
            at_millis: word(8),
            url,
        },
        frame_len: FRAME_HEADER_LEN + len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: LogEvent<'static> = LogEvent {
        visitor_hash: 0x0123_4567_89ab_cdef,
        at_millis: 1_700_000_000_123,
        url: "https://example.com/café",
    };

    fn frame() -> Vec<u8> {
        let mut buf = Vec::new();
        encode(&mut buf, &EVENT).unwrap();
        buf
    }

    #[test]
    fn round_trips() {
        let buf = frame();
        assert_eq!(
            decode(&buf),
            Decoded::Frame {
                event: EVENT,
                frame_len: buf.len()
            }
        );
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let buf = frame();
        for cut in 0..buf.len() {
            assert!(
                matches!(decode(&buf[..cut]), Decoded::Incomplete { .. }),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let buf = frame();
        for i in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(
                !matches!(decode(&bad), Decoded::Frame { .. }),
                "bit {i} flipped went unnoticed"
            );
        }
    }

    #[test]
    fn zeros_are_not_a_record() {
        assert!(matches!(decode(&[0; 64]), Decoded::Invalid { .. }));
    }

    #[test]
    fn over_long_urls_are_refused() {
        let url = "x".repeat(URL_LEN_CEILING + 1);
        let event = LogEvent { url: &url, ..EVENT };
        assert!(matches!(
            encode(&mut Vec::new(), &event),
            Err(PersistError::EventTooLarge { .. })
        ));
    }
}
