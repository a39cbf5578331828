//! Durations in Go's `time.ParseDuration` syntax (`10ms`, `1.5s`, `1m30s`, `2h45m`), so that
//! interval flags read like the rest of the m-lab tooling, and Go-style formatting for the
//! `Argument` log lines.

use std::fmt::Write as _;
use std::time::Duration;

/// Nanoseconds in a second.
const NANOS_PER_SEC: u128 = 1_000_000_000;
/// Go durations are signed 64-bit nanosecond counts; anything longer is an overflow there too.
const MAX_NANOS: u128 = i64::MAX as u128;
/// Fraction digits beyond this cannot change the nanosecond count of even the largest unit
/// (1 h = 3.6e12 ns), and keeping at most 20 keeps the arithmetic inside `u128`.
const MAX_FRACTION_DIGITS: usize = 20;

/// Parses a Go duration: an optional sign, then one or more `<number><unit>` terms where the
/// number may have a fraction and the unit is `ns`, `us` (or `µs`/`μs`), `ms`, `s`, `m` or `h`.
/// A bare `0` is allowed. Returns the signed length in nanoseconds.
pub(crate) fn parse_go_duration(text: &str) -> Result<i128, String> {
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err("expected a duration such as 10ms, 1s or 1m30s".to_owned());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        rest = after;
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            (frac_part, rest) = after_dot.split_at(frac_len);
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err("expected a number before each unit (as in 10ms, 1.5s)".to_owned());
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (unit, after) = rest.split_at(unit_len);
        rest = after;
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3600 * NANOS_PER_SEC,
            "" => return Err("missing unit (one of ns, us, ms, s, m, h)".to_owned()),
            other => {
                return Err(format!(
                    "unknown unit {other:?} (expected ns, us, ms, s, m or h)"
                ));
            }
        };
        let overflow = || "duration too large".to_owned();
        let whole = if int_part.is_empty() {
            0
        } else {
            int_part.parse::<u128>().map_err(|_| overflow())?
        };
        let frac_digits = &frac_part[..frac_part.len().min(MAX_FRACTION_DIGITS)];
        let frac_nanos = if frac_digits.is_empty() {
            0
        } else {
            let numerator: u128 = frac_digits.parse().map_err(|_| overflow())?;
            numerator * unit_nanos / 10u128.pow(frac_digits.len() as u32)
        };
        total = whole
            .checked_mul(unit_nanos)
            .and_then(|n| n.checked_add(frac_nanos))
            .and_then(|n| n.checked_add(total))
            .filter(|&n| n <= MAX_NANOS)
            .ok_or_else(overflow)?;
    }
    let total = total as i128;
    Ok(if negative { -total } else { total })
}

/// Parses a Go duration that must be strictly positive.
pub(crate) fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let nanos = parse_go_duration(text)?;
    if nanos <= 0 {
        return Err("the duration must be positive".to_owned());
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// Formats like Go's `time.Duration.String`: `0s`, `500ns`, `1.5µs`, `10ms`, `1s`, `10m0s`,
/// `1h0m0s`, `1m30.5s`.
pub(crate) fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}\u{b5}s", with_fraction(nanos, 1_000, 3));
    }
    if nanos < NANOS_PER_SEC {
        return format!("{}ms", with_fraction(nanos, 1_000_000, 6));
    }
    let secs = nanos / NANOS_PER_SEC;
    let seconds = with_fraction(nanos % (60 * NANOS_PER_SEC), NANOS_PER_SEC, 9);
    let (hours, minutes) = (secs / 3600, secs / 60 % 60);
    let mut out = String::new();
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    let _ = write!(out, "{seconds}s");
    out
}

/// `value / unit` in decimal with up to `digits` fraction digits, trailing zeros dropped.
fn with_fraction(value: u128, unit: u128, digits: usize) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:0digits$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i128 = 1_000_000;
    const S: i128 = 1_000 * MS;

    #[test]
    fn parses_go_syntax() {
        let cases: &[(&str, i128)] = &[
            ("0", 0),
            ("-0", 0),
            ("+0", 0),
            ("0s", 0),
            ("10ms", 10 * MS),
            ("1s", S),
            ("1m30s", 90 * S),
            ("10m", 600 * S),
            ("2h45m", (2 * 3600 + 45 * 60) * S),
            ("1.5s", 1_500 * MS),
            (".5s", 500 * MS),
            ("1.s", S),
            ("1.0001s", S + 100_000),
            ("300us", 300_000),
            ("300\u{b5}s", 300_000),
            ("300\u{3bc}s", 300_000),
            ("7ns", 7),
            ("1h1m1s1ms1us1ns", 3_661 * S + MS + 1_001),
            ("-1.5h", -5_400 * S),
            ("+5s", 5 * S),
            ("0.000000001s", 1),
            ("0.0000000019s", 1),
            ("1.123456789123456789123456789s", 1_123_456_789),
            ("2562047h47m16.854775807s", i128::from(i64::MAX)),
        ];
        for &(text, want) in cases {
            assert_eq!(parse_go_duration(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for text in [
            "",
            "-",
            "+",
            "1",
            "10",
            "s",
            ".s",
            "1.2.3s",
            "10 ms",
            " 10ms",
            "10ms ",
            "1d",
            "1sec",
            "1S",
            "ms10",
            "--1s",
            "1e3s",
            "2562047h47m16.854775808s",
            "99999999999999999999999h",
        ] {
            assert!(parse_go_duration(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn positive_only() {
        assert_eq!(
            parse_positive_duration("10ms"),
            Ok(Duration::from_millis(10))
        );
        assert_eq!(parse_positive_duration("1ns"), Ok(Duration::from_nanos(1)));
        for text in ["0", "0s", "-1s", "-0.5ms"] {
            let err = parse_positive_duration(text).unwrap_err();
            assert!(err.contains("positive"), "{text:?}: {err}");
        }
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ns"),
            (Duration::from_nanos(999), "999ns"),
            (Duration::from_nanos(1_500), "1.5\u{b5}s"),
            (Duration::from_millis(10), "10ms"),
            (Duration::from_micros(10_250), "10.25ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(600), "10m0s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(3600 * 49 + 61), "49h1m1s"),
            (Duration::new(61, 1), "1m1.000000001s"),
        ];
        for &(d, want) in cases {
            assert_eq!(format_go_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn format_round_trips_through_parse() {
        for nanos in [
            1u64,
            999,
            1_000,
            1_500,
            10_000_000,
            1_000_000_000,
            90_000_000_000,
            3_600_000_000_001,
        ] {
            let d = Duration::from_nanos(nanos);
            let text = format_go_duration(d);
            assert_eq!(parse_go_duration(&text), Ok(i128::from(nanos)), "{text}");
        }
    }
}
