//! RFC 3339 timestamps as Go's `time.Time` marshals them in JSON.
//!
//! Written by hand because it is on the hot path (every archived line) and the exact output
//! matters: Go's `RFC3339Nano` layout trims trailing zeros of the fraction, omits the `.` for a
//! whole second, and writes `Z` for a zero offset. A parsed timestamp keeps its offset, so a line
//! read from a 2019 archive carrying `-04:00` re-encodes byte for byte.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;

const SECS_PER_DAY: i64 = 86_400;
/// Unix seconds of `0001-01-01T00:00:00Z`, Go's zero time.
const ZERO_UNIX: i64 = -62_135_596_800;
/// Unix seconds of `10000-01-01T00:00:00Z`: Go refuses to marshal years past 9999.
const END_UNIX: i64 = 253_402_300_800;
/// Unix seconds of `0000-01-01T00:00:00Z`.
const START_UNIX: i64 = -62_167_219_200;

/// An instant with the UTC offset it was written or read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    /// Seconds since the Unix epoch (UTC).
    secs: i64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    nanos: u32,
    /// Offset east of UTC, in seconds (whole minutes, less than a day).
    offset: i32,
}

/// A timestamp that is not RFC 3339 or lies outside years 0000–9999.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid RFC 3339 timestamp {text:?}: {reason}")]
pub struct TimestampError {
    text: String,
    reason: &'static str,
}

impl TimestampError {
    fn new(text: &[u8], reason: &'static str) -> Self {
        Self {
            text: String::from_utf8_lossy(&text[..text.len().min(64)]).into_owned(),
            reason,
        }
    }
}

impl Default for Timestamp {
    fn default() -> Self {
        Self::ZERO
    }
}

impl Timestamp {
    /// Go's zero time, `0001-01-01T00:00:00Z`, used by Metadata lines and the golden fixture.
    pub const ZERO: Self = Self {
        secs: ZERO_UNIX,
        nanos: 0,
        offset: 0,
    };

    /// A UTC timestamp from Unix seconds and nanoseconds; `None` outside years 0000–9999 or if
    /// `nanos` is not below one second.
    pub fn from_unix(secs: i64, nanos: u32) -> Option<Self> {
        Self::with_offset(secs, nanos, 0)
    }

    /// A timestamp from Unix seconds and nanoseconds shown at `offset_secs` east of UTC. The
    /// offset must be whole minutes and less than 24 hours; the local date must lie in years
    /// 0000–9999.
    pub fn with_offset(secs: i64, nanos: u32, offset_secs: i32) -> Option<Self> {
        let local = secs.checked_add(i64::from(offset_secs))?;
        let ok = nanos < 1_000_000_000
            && offset_secs % 60 == 0
            && offset_secs.abs() < 86_400
            && (START_UNIX..END_UNIX).contains(&local);
        ok.then_some(Self {
            secs,
            nanos,
            offset: offset_secs,
        })
    }

    /// The current time in UTC.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// Converts a system time to a UTC timestamp (clamped to Go's representable range).
    pub fn from_system_time(t: SystemTime) -> Self {
        let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            ),
            Err(e) => {
                let d = e.duration();
                let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                if d.subsec_nanos() == 0 {
                    (-whole, 0)
                } else {
                    (-whole - 1, 1_000_000_000 - d.subsec_nanos())
                }
            }
        };
        Self::from_unix(secs.clamp(START_UNIX, END_UNIX - 1), nanos).unwrap_or(Self::ZERO)
    }

    /// The instant as a `SystemTime`.
    pub fn to_system_time(&self) -> SystemTime {
        let nanos = Duration::from_nanos(u64::from(self.nanos));
        if self.secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(self.secs as u64) + nanos
        } else {
            UNIX_EPOCH - Duration::from_secs(self.secs.unsigned_abs()) + nanos
        }
    }

    /// Seconds since the Unix epoch.
    pub fn unix_secs(&self) -> i64 {
        self.secs
    }

    /// Nanoseconds within the second.
    pub fn subsec_nanos(&self) -> u32 {
        self.nanos
    }

    /// Nanoseconds since the Unix epoch (saturating).
    pub fn unix_nanos(&self) -> i128 {
        i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos)
    }

    /// The offset east of UTC this timestamp is shown in, in seconds.
    pub fn offset_secs(&self) -> i32 {
        self.offset
    }

    /// The same instant shown in UTC.
    #[must_use]
    pub fn to_utc(self) -> Self {
        Self { offset: 0, ..self }
    }

    /// Go's `Time.IsZero`: the instant is `0001-01-01T00:00:00Z`, whatever the offset.
    pub fn is_zero(&self) -> bool {
        self.secs == ZERO_UNIX && self.nanos == 0
    }

    /// The UTC calendar date `(year, month, day)` of this instant.
    pub fn utc_date(&self) -> (i64, u32, u32) {
        civil_from_days(self.secs.div_euclid(SECS_PER_DAY))
    }

    /// Appends the RFC 3339 text exactly as Go's `time.RFC3339Nano` layout writes it.
    pub fn write_rfc3339(&self, out: &mut Vec<u8>) {
        let local = self.secs + i64::from(self.offset);
        let (year, month, day) = civil_from_days(local.div_euclid(SECS_PER_DAY));
        let sod = local.rem_euclid(SECS_PER_DAY) as u32;
        // Years are 0..=9999 by construction, so four digits always suffice.
        push_digits(out, year as u32, 4);
        out.push(b'-');
        push_digits(out, month, 2);
        out.push(b'-');
        push_digits(out, day, 2);
        out.push(b'T');
        push_digits(out, sod / 3600, 2);
        out.push(b':');
        push_digits(out, sod / 60 % 60, 2);
        out.push(b':');
        push_digits(out, sod % 60, 2);
        if self.nanos != 0 {
            let mut frac = self.nanos;
            let mut width = 9;
            while frac.is_multiple_of(10) {
                frac /= 10;
                width -= 1;
            }
            out.push(b'.');
            push_digits(out, frac, width);
        }
        if self.offset == 0 {
            out.push(b'Z');
        } else {
            out.push(if self.offset < 0 { b'-' } else { b'+' });
            let minutes = self.offset.unsigned_abs() / 60;
            push_digits(out, minutes / 60, 2);
            out.push(b':');
            push_digits(out, minutes % 60, 2);
        }
    }

    /// Parses RFC 3339 with any fraction of 1–9 digits and any offset, keeping the offset.
    pub fn parse(text: &[u8]) -> Result<Self, TimestampError> {
        let err = |reason| TimestampError::new(text, reason);
        // YYYY-MM-DDTHH:MM:SS
        if text.len() < 20 {
            return Err(err("too short"));
        }
        let sep = |i: usize, c: u8| text[i] == c;
        if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
            return Err(err("expected YYYY-MM-DDTHH:MM:SS"));
        }
        let num = |range: std::ops::Range<usize>| {
            text[range].iter().try_fold(0u32, |acc, &b| {
                b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
            })
        };
        let fields = (
            num(0..4),
            num(5..7),
            num(8..10),
            num(11..13),
            num(14..16),
            num(17..19),
        );
        let (Some(year), Some(month), Some(day), Some(hour), Some(min), Some(sec)) = fields else {
            return Err(err("non-digit in date or time"));
        };
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year.into(), month) {
            return Err(err("day or month out of range"));
        }
        if hour > 23 || min > 59 || sec > 59 {
            return Err(err("time of day out of range"));
        }
        let mut pos = 19;
        let mut nanos = 0u32;
        if text[pos] == b'.' {
            pos += 1;
            let digits = text[pos..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if digits == 0 || digits > 9 {
                return Err(err("fraction must have 1 to 9 digits"));
            }
            for &b in &text[pos..pos + digits] {
                nanos = nanos * 10 + u32::from(b - b'0');
            }
            nanos *= 10u32.pow(9 - digits as u32);
            pos += digits;
        }
        let offset = match &text[pos..] {
            b"Z" => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let digit = |b: u8| b.is_ascii_digit().then(|| i32::from(b - b'0'));
                let (Some(h1), Some(h2), Some(m1), Some(m2)) =
                    (digit(*h1), digit(*h2), digit(*m1), digit(*m2))
                else {
                    return Err(err("bad UTC offset"));
                };
                let (hours, minutes) = (h1 * 10 + h2, m1 * 10 + m2);
                if hours > 23 || minutes > 59 {
                    return Err(err("UTC offset out of range"));
                }
                let value = hours * 3600 + minutes * 60;
                if *sign == b'-' { -value } else { value }
            }
            _ => return Err(err("expected Z or ±hh:mm after the time")),
        };
        let days = days_from_civil(i64::from(year), month, day);
        let local = days * SECS_PER_DAY + i64::from(hour * 3600 + min * 60 + sec);
        Self::with_offset(local - i64::from(offset), nanos, offset)
            .ok_or_else(|| err("outside years 0000-9999"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = Vec::with_capacity(36);
        self.write_rfc3339(&mut buf);
        // Only ASCII is ever written.
        f.write_str(&String::from_utf8_lossy(&buf))
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s.as_bytes())
    }
}

fn push_digits(out: &mut Vec<u8>, mut value: u32, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(text: &str) -> String {
        Timestamp::parse(text.as_bytes()).unwrap().to_string()
    }

    #[test]
    fn go_layout_examples() {
        for text in [
            "0001-01-01T00:00:00Z",
            "2019-07-01T00:00:12.092Z",
            "2019-08-26T20:02:17.654076251-04:00",
            "2019-04-02T14:13:01.02Z",
            "1970-01-01T00:00:00Z",
            "2000-02-29T23:59:59.999999999+14:00",
            "9999-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
        ] {
            assert_eq!(roundtrip(text), text);
        }
        assert_eq!(Timestamp::ZERO.to_string(), "0001-01-01T00:00:00Z");
        assert!(Timestamp::ZERO.is_zero());
        assert!(
            Timestamp::parse(b"0000-12-31T20:00:00-04:00")
                .unwrap()
                .is_zero()
        );
    }

    #[test]
    fn go_normalizes_like_this() {
        // Trailing zeros are trimmed and a zero offset is written Z, as Go does.
        assert_eq!(
            roundtrip("2019-07-01T00:00:12.090Z"),
            "2019-07-01T00:00:12.09Z"
        );
        assert_eq!(
            roundtrip("2019-07-01T00:00:12.000Z"),
            "2019-07-01T00:00:12Z"
        );
        assert_eq!(
            roundtrip("2019-07-01T00:00:12+00:00"),
            "2019-07-01T00:00:12Z"
        );
    }

    #[test]
    fn offsets_keep_the_instant() {
        let a = Timestamp::parse(b"2019-08-26T20:02:17.5-04:00").unwrap();
        let b = Timestamp::parse(b"2019-08-27T00:02:17.5Z").unwrap();
        assert_eq!(a.unix_nanos(), b.unix_nanos());
        assert_eq!(a.to_utc(), b);
        assert_eq!(a.offset_secs(), -4 * 3600);
        assert_eq!(a.utc_date(), (2019, 8, 27));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "2019-07-01",
            "2019-07-01T00:00:12",
            "2019-13-01T00:00:12Z",
            "2019-02-29T00:00:12Z",
            "2019-07-01T24:00:00Z",
            "2019-07-01T00:00:60Z",
            "2019-07-01T00:00:12.Z",
            "2019-07-01T00:00:12.1234567890Z",
            "2019-07-01T00:00:12+4:00",
            "2019-07-01T00:00:12+24:00",
            "2019-07-01 00:00:12Z",
            "2019-07-01T00:00:12Zjunk",
            "20x9-07-01T00:00:12Z",
        ] {
            let err = Timestamp::parse(bad.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("invalid RFC 3339"), "{bad}: {err}");
        }
    }

    #[test]
    fn system_time_conversions() {
        let t = Timestamp::from_unix(1_561_939_212, 92_000_000).unwrap();
        assert_eq!(t.to_string(), "2019-07-01T00:00:12.092Z");
        assert_eq!(Timestamp::from_system_time(t.to_system_time()), t);
        let before = Timestamp::from_unix(-1, 500).unwrap();
        assert_eq!(Timestamp::from_system_time(before.to_system_time()), before);
    }

    proptest! {
        #[test]
        fn encode_parse_roundtrip(
            secs in START_UNIX + 86_400..END_UNIX - 86_400,
            nanos in 0u32..1_000_000_000,
            offset_min in -1439i32..1440,
        ) {
            let t = Timestamp::with_offset(secs, nanos, offset_min * 60).unwrap();
            let text = t.to_string();
            let back = Timestamp::parse(text.as_bytes()).unwrap();
            prop_assert_eq!(back, t);
            prop_assert_eq!(back.to_string(), text);
        }

        #[test]
        fn civil_roundtrip(days in -800_000i64..3_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
