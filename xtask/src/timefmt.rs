//! UTC calendar arithmetic and RFC 3339 formatting without a date library.
//!
//! The benchmark needs three renderings of a Unix time: archive directory names
//! (`YYYY/MM/DD`, SPEC §5.1), archive timestamps (RFC 3339 with trimmed nanoseconds, SPEC §5.4)
//! and run directory names (`YYYYMMDDTHHMMSSZ`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, now.
pub fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanos: u32,
}

impl Civil {
    /// Breaks a Unix time in nanoseconds down into UTC fields.
    pub fn from_unix_ns(ns: u64) -> Self {
        let secs = (ns / 1_000_000_000) as i64;
        let nanos = (ns % 1_000_000_000) as u32;
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            nanos,
        }
    }

    /// `YYYY/MM/DD`, the archive date directory.
    pub fn date_path(&self) -> String {
        format!("{:04}/{:02}/{:02}", self.year, self.month, self.day)
    }

    /// `YYYYMMDDTHHMMSSZ`, used for run directories.
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// RFC 3339 in UTC with up to nine fractional digits, trailing zeros trimmed and no `.`
    /// when the fraction is zero (Go's `time.RFC3339Nano`, SPEC §5.4).
    pub fn rfc3339(&self) -> String {
        let mut s = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        );
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            s.push('.');
            s.push_str(frac.trim_end_matches('0'));
        }
        s.push('Z');
        s
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so that leap days fall at the end of a 400-year era.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(Civil::from_unix_ns(0).rfc3339(), "1970-01-01T00:00:00Z");
        // 2019-04-01T07:42:37.371Z, the StartTime of the SPEC §5.7 fixture.
        let ns = 1_554_104_557_371_000_000;
        let c = Civil::from_unix_ns(ns);
        assert_eq!(c.rfc3339(), "2019-04-01T07:42:37.371Z");
        assert_eq!(c.date_path(), "2019/04/01");
        assert_eq!(c.compact(), "20190401T074237Z");
        // A leap day and the last nanosecond of a year.
        assert_eq!(
            Civil::from_unix_ns(1_709_164_800_000_000_001).rfc3339(),
            "2024-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            Civil::from_unix_ns(1_735_689_599_999_999_999).rfc3339(),
            "2024-12-31T23:59:59.999999999Z"
        );
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        // Walk day by day and check the calendar advances exactly as the Gregorian rules say.
        let mut prev = civil_from_days(-1);
        for d in 0..146_097 {
            let cur = civil_from_days(d);
            let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let month_len = |y: i64, m: u32| match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            if prev.2 == month_len(prev.0, prev.1) {
                assert_eq!(cur.2, 1);
                if prev.1 == 12 {
                    assert_eq!((cur.0, cur.1), (prev.0 + 1, 1));
                } else {
                    assert_eq!((cur.0, cur.1), (prev.0, prev.1 + 1));
                }
            } else {
                assert_eq!(cur, (prev.0, prev.1, prev.2 + 1));
            }
            prev = cur;
        }
    }
}
