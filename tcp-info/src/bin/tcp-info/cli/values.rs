//! Parsers for the scalar flag values. Each returns the reason on failure; the caller adds which
//! flag or variable the value came from.

use std::fmt;
use std::str::FromStr;

use tcp_info::anonymize::Method;

/// Go's `strconv.ParseBool`: exactly these twelve spellings.
pub(super) fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(
            "expected a boolean: true, false, 1, 0, t, f, T, F, TRUE, FALSE, True or False"
                .to_owned(),
        ),
    }
}

/// `-reps`: a non-negative decimal count.
pub(super) fn parse_reps(text: &str) -> Result<u64, String> {
    decimal(text).ok_or_else(|| "expected a non-negative whole number (0 runs forever)".to_owned())
}

/// A port for `-exclude-srcport`: decimal 0–65535 (SPEC §12 D4: ports ≥ 32768 are valid).
pub(super) fn parse_port(text: &str) -> Result<u16, String> {
    decimal(text)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| "expected a port number from 0 to 65535".to_owned())
}

/// The largest socket buffer size `setsockopt` can be asked for (its argument is a C `int`).
pub(super) const MAX_RCVBUF: u64 = i32::MAX as u64;

/// `--rcvbuf`: a buffer size in bytes, 1 to `i32::MAX`.
pub(super) fn parse_rcvbuf(text: &str) -> Result<usize, String> {
    decimal(text)
        .filter(|n| (1..=MAX_RCVBUF).contains(n))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("expected a size in bytes from 1 to {MAX_RCVBUF}"))
}

/// Plain decimal digits only: no sign, no spaces, no `_`.
fn decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `-anonymize.ip` (SPEC §8.1): exactly `none` or `netblock`.
pub(super) fn parse_anonymize(text: &str) -> Result<Method, String> {
    match text {
        "none" => Ok(Method::None),
        "netblock" => Ok(Method::Netblock),
        _ => Err("expected none or netblock".to_owned()),
    }
}

/// The `-anonymize.ip` spelling of a method.
pub(super) fn anonymize_name(method: Method) -> &'static str {
    match method {
        Method::None => "none",
        Method::Netblock => "netblock",
    }
}

/// The value of `--mode`, the mode asked for (DESIGN §2); the daemon decides at start-up which
/// [`tcp_info::mode::Mode`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// eBPF when the programs load (and the close source is available), else sweep.
    #[default]
    Auto,
    /// eBPF mode, or a start-up error saying why it cannot run.
    Ebpf,
    /// Full socket dumps every poll interval, as upstream.
    Sweep,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(Self::Auto),
            "ebpf" => Ok(Self::Ebpf),
            "sweep" => Ok(Self::Sweep),
            _ => Err("expected auto, ebpf or sweep".to_owned()),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Ebpf => "ebpf",
            Self::Sweep => "sweep",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools_are_go_parsebool() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        for bad in ["", "yes", "no", "on", "tRUE", "fAlse", " true", "2", "-1"] {
            assert!(parse_bool(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ports() {
        for (text, want) in [
            ("0", 0),
            ("1", 1),
            ("80", 80),
            ("32768", 32_768),
            ("65535", 65_535),
        ] {
            assert_eq!(parse_port(text), Ok(want), "{text}");
        }
        for bad in [
            "65536",
            "-1",
            "+80",
            "",
            " 80",
            "80 ",
            "0x50",
            "1_000",
            "99999999999999999999",
        ] {
            assert!(parse_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reps_and_rcvbuf() {
        assert_eq!(parse_reps("0"), Ok(0));
        assert_eq!(parse_reps("18446744073709551615"), Ok(u64::MAX));
        for bad in ["-1", "", "1.5", "ten", "18446744073709551616"] {
            assert!(parse_reps(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_rcvbuf("8388608"), Ok(8 << 20));
        assert_eq!(parse_rcvbuf("1"), Ok(1));
        assert_eq!(parse_rcvbuf("2147483647"), Ok(2_147_483_647));
        for bad in ["0", "2147483648", "-1", "8M", ""] {
            assert!(parse_rcvbuf(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn enums_round_trip() {
        for mode in [Mode::Auto, Mode::Ebpf, Mode::Sweep] {
            assert_eq!(mode.to_string().parse(), Ok(mode));
        }
        for m in [Method::None, Method::Netblock] {
            assert_eq!(parse_anonymize(anonymize_name(m)), Ok(m));
        }
        for bad in ["", "Sweep", "bpf", " auto"] {
            assert!(bad.parse::<Mode>().is_err(), "{bad:?}");
        }
        for bad in ["", "netblok", "NONE", "Netblock", "none "] {
            assert!(parse_anonymize(bad).is_err(), "{bad:?}");
        }
    }
}
