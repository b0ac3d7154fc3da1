//! Times and durations as text: what `from=`, `till=`, `step=`, an
//! event's `time` and the `--bucket`/`--retention` flags accept, and the
//! RFC 3339 form every answer echoes.

use std::time::Duration;

use super::civil::{civil_from_days, days_from_civil, days_in_month};
use super::error::TimeError;
use crate::time::clock::{LATEST_SECS, Timestamp};

impl Timestamp {
    /// Reads a time as users write it, relative forms against `now`:
    ///
    /// - RFC 3339: `2026-11-01T09:30:00Z`, `2026-11-01T10:30:00.250+01:00`
    ///   (`T` or a space between date and time, `Z` or an offset; a
    ///   fraction is kept to the millisecond); a time without an offset
    ///   (`2026-11-01T09:30:00`) is read as UTC, not local time: add `Z`
    ///   or an offset to mean another zone; the seconds may be left out
    ///   (`2026-11-01T09:30`);
    /// - a date: `2026-11-01`, UTC midnight;
    /// - unix seconds: `1793491200`, or with a fraction kept to the
    ///   millisecond, `1793491200.25`;
    /// - relative: `now`, or a [duration](Timestamp::parse_duration) ago,
    ///   `-7d`, `-24h`, `-1h30m`.
    ///
    /// Times before 1970 or after 2106-02-07 (what a 32-bit second holds)
    /// are [`TimeError::OutOfRange`]; anything else unreadable is
    /// [`TimeError::Malformed`].
    ///
    /// ```
    /// use tracker_core::Timestamp;
    ///
    /// let now = Timestamp::parse("2026-11-08T12:00:00Z", Timestamp::default())?;
    /// let week_ago = Timestamp::parse("-7d", now)?;
    /// assert_eq!(week_ago.to_rfc3339(), "2026-11-01T12:00:00Z");
    /// assert_eq!(Timestamp::parse("2026-11-01", now)?.to_rfc3339(), "2026-11-01T00:00:00Z");
    /// assert_eq!(Timestamp::parse("2026-11-01T13:00:00+01:00", now)?, week_ago);
    /// assert_eq!(Timestamp::parse("1793534400", now)?, week_ago);
    /// # Ok::<(), tracker_core::TimeError>(())
    /// ```
    pub fn parse(text: &str, now: Timestamp) -> Result<Timestamp, TimeError> {
        let text = text.trim();
        let malformed = || TimeError::Malformed {
            text: text.to_owned(),
        };
        if text.eq_ignore_ascii_case("now") {
            return Ok(now);
        }
        if let Some(ago) = text.strip_prefix('-') {
            let ago = parse_duration(ago).map_err(|_| malformed())?;
            let ago = u64::try_from(ago.as_millis()).unwrap_or(u64::MAX);
            return now
                .as_millis()
                .checked_sub(ago)
                .map(Timestamp::from_millis)
                .ok_or(TimeError::OutOfRange {
                    text: text.to_owned(),
                });
        }
        let millis = if let Some(unix) = unix_seconds(text) {
            unix
        } else {
            Some(parse_rfc3339(text).ok_or_else(malformed)?).and_then(|m| u64::try_from(m).ok())
        };
        match millis {
            Some(millis) if millis / 1000 <= LATEST_SECS => Ok(Timestamp::from_millis(millis)),
            _ => Err(TimeError::OutOfRange {
                text: text.to_owned(),
            }),
        }
    }

    /// Reads a duration: one or more `<whole number><unit>` parts, units
    /// `ms`, `s`, `m`, `h`, `d` (24 h) and `w` (7 d), as in `90s`, `4h`,
    /// `1h30m`, `30d`. Errors are [`TimeError::BadDuration`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracker_core::Timestamp;
    ///
    /// assert_eq!(Timestamp::parse_duration("1h30m")?, Duration::from_secs(5_400));
    /// assert_eq!(Timestamp::parse_duration("2w")?, Duration::from_secs(14 * 86_400));
    /// assert!(Timestamp::parse_duration("1.5h").is_err());
    /// # Ok::<(), tracker_core::TimeError>(())
    /// ```
    pub fn parse_duration(text: &str) -> Result<Duration, TimeError> {
        parse_duration(text.trim()).map_err(|()| TimeError::BadDuration {
            text: text.trim().to_owned(),
        })
    }

    /// The time in RFC 3339, UTC, with `Z`: `2026-11-01T00:00:00Z`, with
    /// milliseconds only when there are some (`...T00:00:00.250Z`).
    ///
    /// ```
    /// use tracker_core::Timestamp;
    ///
    /// assert_eq!(Timestamp::from_millis(0).to_rfc3339(), "1970-01-01T00:00:00Z");
    /// assert_eq!(Timestamp::from_millis(1_250).to_rfc3339(), "1970-01-01T00:00:01.250Z");
    /// ```
    pub fn to_rfc3339(self) -> String {
        let millis = self.as_millis();
        let secs = millis / 1000;
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        let of_day = secs % 86_400;
        let (hour, minute, second) = (of_day / 3_600, of_day % 3_600 / 60, of_day % 60);
        let mut out = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
        if !millis.is_multiple_of(1000) {
            out.push_str(&format!(".{:03}", millis % 1000));
        }
        out.push('Z');
        out
    }
}

/// Milliseconds of unix seconds, whole (`1793491200`) or with a
/// fraction kept to the millisecond (`1793491200.5`, what `Date.now() /
/// 1000` or Python's `time.time()` give): `Some(None)` when the number is
/// too large, `None` when the text is not such a number.
fn unix_seconds(text: &str) -> Option<Option<u64>> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) {
        return None;
    }
    if text.len() > whole.len() && fraction.is_empty() {
        return None; // `1793491200.`
    }
    let millis = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0, |millis, digit| millis * 10 + u64::from(digit - b'0'));
    Some(
        whole
            .parse::<u64>()
            .ok()
            .and_then(|secs| secs.checked_mul(1000))
            .and_then(|secs| secs.checked_add(millis)),
    )
}

/// See [`Timestamp::parse_duration`].
fn parse_duration(text: &str) -> Result<Duration, ()> {
    let mut rest = text;
    let mut millis: u64 = 0;
    if rest.is_empty() {
        return Err(());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let letters = rest[digits..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        if digits == 0 || letters == 0 {
            return Err(());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| ())?;
        let unit: u64 = match &rest[digits..digits + letters] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return Err(()),
        };
        let part = number.checked_mul(unit).ok_or(())?;
        millis = millis.checked_add(part).ok_or(())?;
        rest = &rest[digits + letters..];
    }
    Ok(Duration::from_millis(millis))
}

/// Milliseconds since the epoch of an RFC 3339 time or a bare date (may
/// be negative); `None` if it is neither.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let number = |from: usize, len: usize| -> Option<u32> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let year = i64::from(number(0, 4)?);
    let (month, day) = (number(5, 2)?, number(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=days_in_month(year, month)).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if b.len() == 10 {
        return Some(days * 86_400_000);
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
        return None;
    }
    let (hour, minute) = (number(11, 2)?, number(14, 2)?);
    // Seconds may be left out (`T10:30`), and then a fraction too.
    let (second, mut at) = match b.get(16) {
        Some(b':') => (number(17, 2)?, 19),
        _ => (0, 16),
    };
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut millis = 0;
    if at == 19 && b.get(at) == Some(&b'.') {
        let digits = b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        // Milliseconds: the first three digits, the rest cut off.
        for i in 0..3 {
            let digit = if i < digits { b[at + 1 + i] - b'0' } else { 0 };
            millis = millis * 10 + i64::from(digit);
        }
        at += 1 + digits;
    }
    let offset_minutes = match b.get(at) {
        // No offset: read as UTC, not local time (the service has no
        // zone of the sender's to read it in). RFC 3339 asks for an
        // offset; refusing would only turn such times away.
        None => 0,
        Some(b'Z' | b'z') if b.len() == at + 1 => 0,
        Some(&sign @ (b'+' | b'-')) if b.len() == at + 6 && b[at + 3] == b':' => {
            let (hours, minutes) = (number(at + 1, 2)?, number(at + 4, 2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = i64::from(hours * 60 + minutes);
            if sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    // A leap second (:60) is the first millisecond of the next minute,
    // as unix time has no room for it.
    let secs = days * 86_400 + i64::from(hour * 3_600 + minute * 60 + second) - offset_minutes * 60;
    Some(secs * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: Timestamp = Timestamp::from_millis(1_794_139_200_000); // 2026-11-08T12:00:00Z

    fn parse(text: &str) -> Result<Timestamp, TimeError> {
        Timestamp::parse(text, NOW)
    }

    #[test]
    fn every_form() {
        let expected = Timestamp::from_millis(1_793_491_200_000); // 2026-11-01T00:00:00Z
        for text in [
            "2026-11-01T00:00:00Z",
            "2026-11-01t00:00:00z",
            "2026-11-01 00:00:00Z",
            "2026-11-01T01:30:00+01:30",
            "2026-10-31T19:00:00-05:00",
            "2026-11-01T00:00:00.000Z",
            "2026-11-01",
            " 2026-11-01 ",
            // No offset is UTC; seconds may be left out.
            "2026-11-01T00:00:00",
            "2026-11-01 00:00:00.000000",
            "2026-11-01T00:00",
            "2026-11-01T00:00Z",
            "2026-11-01T01:00+01:00",
            "1793491200",
            "-7d12h",
            "-1w12h",
        ] {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
        assert_eq!(parse("now"), Ok(NOW));
        assert_eq!(parse("NOW"), Ok(NOW));
        assert_eq!(
            parse("2026-11-01T00:00:00.1239Z"),
            Ok(Timestamp::from_millis(1_793_491_200_123))
        );
        assert_eq!(parse("2026-10-31T23:59:60Z"), Ok(expected), "a leap second");
        assert_eq!(parse("0"), Ok(Timestamp::from_millis(0)));
        // Fractional unix seconds, as `time.time()` and `Date.now() / 1000`
        // give them, to the millisecond.
        assert_eq!(parse("1793491200.0"), Ok(expected));
        assert_eq!(
            parse("1793491200.5"),
            Ok(Timestamp::from_millis(1_793_491_200_500))
        );
        assert_eq!(
            parse("1793491200.123999"),
            Ok(Timestamp::from_millis(1_793_491_200_123))
        );
        assert_eq!(
            parse("4294967295"),
            Ok(Timestamp::from_millis(4_294_967_295_000))
        );
    }

    #[test]
    fn bad_text_is_malformed() {
        for text in [
            "",
            "yesterday",
            "2026-11-1",
            "2026-13-01",
            "2026-02-29",
            "2026-11-01T24:00:00Z",
            "2026-11-01T00:60:00Z",
            "2026-11-01T00:00:61Z",
            "2026-11-01T00:00:00.Z",
            "2026-11-01T00:00.5Z",
            "2026-11-01T0:00",
            "2026-11-01T00:00:0",
            "2026-11-01T00:00:",
            "2026-11-01T00:00:00+0100",
            "2026-11-01T00:00:00+24:00",
            "2026-11-01T00:00:00Zjunk",
            "+7d",
            "-7",
            "-7x",
            "-",
            "1793491200.",
            ".5",
            "1793491200.5.5",
            "1793491200.5e3",
            "-1793491200",
            "２０２６-11-01",
        ] {
            assert!(
                matches!(parse(text), Err(TimeError::Malformed { .. })),
                "{text}: {:?}",
                parse(text)
            );
        }
    }

    #[test]
    fn outside_what_a_tick_holds_is_out_of_range() {
        for text in [
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:30:00+01:00",
            "2106-02-07T06:28:16Z",
            "4294967296",
            "99999999999999999999",
            "-100000w",
        ] {
            assert!(
                matches!(parse(text), Err(TimeError::OutOfRange { .. })),
                "{text}: {:?}",
                parse(text)
            );
        }
        assert!(parse("2106-02-07T06:28:15Z").is_ok());
    }

    #[test]
    fn durations() {
        let d = |text| Timestamp::parse_duration(text);
        assert_eq!(d("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(d("4h"), Ok(Duration::from_secs(4 * 3_600)));
        assert_eq!(d(" 1d1s "), Ok(Duration::from_secs(86_401)));
        for bad in [
            "",
            "4",
            "h",
            "1.5h",
            "4H",
            "1y",
            "-1h",
            "1h 30m",
            "99999999999999999999s",
        ] {
            assert!(
                matches!(d(bad), Err(TimeError::BadDuration { .. })),
                "{bad}"
            );
        }
    }

    proptest! {
        /// Formatting then parsing gives the time back, and the text is
        /// what the `time` crate writes for it.
        #[test]
        fn rfc3339_round_trips(secs in 0u64..=LATEST_SECS, millis in 0u64..1000) {
            let t = Timestamp::from_millis(secs * 1000 + millis);
            let text = t.to_rfc3339();
            prop_assert_eq!(parse(&text), Ok(t));
            let theirs = ::time::OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(t.as_millis()) * 1_000_000,
            )
            .unwrap()
            .format(&::time::format_description::well_known::Rfc3339)
            .unwrap();
            // `time` writes the fraction without trailing zeros.
            let ours = match text.split_once('.') {
                Some((whole, fraction)) => {
                    let digits = fraction.trim_end_matches('Z').trim_end_matches('0');
                    format!("{whole}.{digits}Z")
                }
                None => text.clone(),
            };
            prop_assert_eq!(ours, theirs);
        }

        /// Any offset reads as the same instant the `time` crate reads.
        #[test]
        fn offsets_agree_with_the_time_crate(
            secs in 86_400u64..LATEST_SECS - 86_400,
            offset_minutes in -(23 * 60 + 59)..=(23i32 * 60 + 59),
        ) {
            let offset = ::time::UtcOffset::from_whole_seconds(offset_minutes * 60).unwrap();
            let text = ::time::OffsetDateTime::from_unix_timestamp(secs as i64)
                .unwrap()
                .to_offset(offset)
                .format(&::time::format_description::well_known::Rfc3339)
                .unwrap();
            prop_assert_eq!(parse(&text), Ok(Timestamp::from_millis(secs * 1000)), "{}", text);
        }

        /// No input panics.
        #[test]
        fn never_panics(text in "\\PC{0,40}") {
            let _ = parse(&text);
            let _ = Timestamp::parse_duration(&text);
        }
    }
}
