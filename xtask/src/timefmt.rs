//! The clock, and the renderings of a time the benchmark needs besides RFC 3339.
//!
//! Calendar arithmetic and RFC 3339 (Go's `time.RFC3339Nano`, SPEC §5.4) come from
//! [`tcp_info::record::Timestamp`]; this module only adds archive directory names
//! (`YYYY/MM/DD`, SPEC §5.1) and run directory names (`YYYYMMDDTHHMMSSZ`).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tcp_info::record::Timestamp;

/// Nanoseconds since the Unix epoch, now.
pub fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The [`Timestamp`] of a Unix time in nanoseconds.
pub fn timestamp(ns: u64) -> anyhow::Result<Timestamp> {
    Timestamp::from_unix((ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as u32)
        .with_context(|| format!("time {ns} ns is out of range"))
}

/// `YYYY/MM/DD`, the UTC archive date directory of `t`.
pub fn date_path(t: &Timestamp) -> String {
    let (year, month, day) = t.utc_date();
    format!("{year:04}/{month:02}/{day:02}")
}

/// `YYYYMMDDTHHMMSSZ` (UTC, whole seconds), used for run directories.
pub fn compact(t: &Timestamp) -> String {
    let whole = Timestamp::from_unix(t.unix_secs(), 0).unwrap_or(*t);
    whole.to_utc().to_string().replace(['-', ':'], "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(timestamp(0).unwrap().to_string(), "1970-01-01T00:00:00Z");
        // 2019-04-01T07:42:37.371Z, the StartTime of the SPEC §5.7 fixture.
        let t = timestamp(1_554_104_557_371_000_000).unwrap();
        assert_eq!(t.to_string(), "2019-04-01T07:42:37.371Z");
        assert_eq!(date_path(&t), "2019/04/01");
        assert_eq!(compact(&t), "20190401T074237Z");
        // A leap day and the last nanosecond of a year.
        assert_eq!(
            timestamp(1_709_164_800_000_000_001).unwrap().to_string(),
            "2024-02-29T00:00:00.000000001Z"
        );
        let last = timestamp(1_735_689_599_999_999_999).unwrap();
        assert_eq!(last.to_string(), "2024-12-31T23:59:59.999999999Z");
        assert_eq!(date_path(&last), "2024/12/31");
        assert_eq!(compact(&last), "20241231T235959Z");
    }

    #[test]
    fn every_day_of_four_centuries_gets_the_right_directory() {
        // Walk day by day and check the date advances exactly as the Gregorian rules say.
        let date = |d: i64| {
            let t = Timestamp::from_unix(d * 86_400, 0).unwrap();
            let path = date_path(&t);
            let (y, m, dd) = t.utc_date();
            assert_eq!(path, format!("{y:04}/{m:02}/{dd:02}"));
            (y, m, dd)
        };
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let month_len = |y: i64, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let mut prev = date(-1);
        assert_eq!(prev, (1969, 12, 31));
        for d in 0..146_097 {
            let cur = date(d);
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
