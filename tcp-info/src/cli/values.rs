//! Parsers for the scalar flag values. Each returns the reason on failure; the caller adds which
//! flag or variable the value came from.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs as _};
use std::str::FromStr;

use crate::anonymize::Method;

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

/// `--mode`: where connection updates come from (DESIGN §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// eBPF when it can be loaded, else sweep. In this build, always sweep.
    Auto,
    /// eBPF-driven updates. Not available in this build; rejected at parse time.
    Ebpf,
    /// Full socket dumps every poll interval, as upstream.
    #[default]
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

/// `-prometheusx.listen-address`: `[host]:port` as Go's `net.Listen` takes it. An empty host
/// means every local address; an IPv6 host is written in brackets (`[::1]:9990`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    host: String,
    port: u16,
}

impl ListenAddress {
    /// The host part without brackets; empty for "every address".
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port; 0 asks the kernel for a free one.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The addresses to bind. An empty host gives the IPv6 wildcard `[::]`, which on Linux also
    /// accepts IPv4 unless `net.ipv6.bindv6only` is set (Go's `net.Listen` behaves the same);
    /// a name is resolved.
    pub fn socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        if self.host.is_empty() {
            return Ok(vec![SocketAddr::new(
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                self.port,
            )]);
        }
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        Ok((self.host.as_str(), self.port).to_socket_addrs()?.collect())
    }
}

impl Default for ListenAddress {
    /// Upstream's default, `:9990`: port 9990 on every address.
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 9990,
        }
    }
}

impl FromStr for ListenAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let shape =
            || "expected [HOST]:PORT, such as :9990, 127.0.0.1:9990 or [::1]:9990".to_owned();
        let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
            let (inside, after) = bracketed.split_once(']').ok_or_else(shape)?;
            let port = after.strip_prefix(':').ok_or_else(shape)?;
            // `[]` is an empty host, as Go's `net.SplitHostPort` reads it.
            if !inside.is_empty() && inside.parse::<Ipv6Addr>().is_err() {
                return Err(format!("{inside:?} in brackets is not an IPv6 address"));
            }
            (inside, port)
        } else {
            let (host, port) = text.rsplit_once(':').ok_or_else(shape)?;
            if host.contains(':') {
                return Err("an IPv6 host must be in brackets, as in [::1]:9990".to_owned());
            }
            let name_ok = host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
            if !name_ok {
                return Err(format!("{host:?} is not a host name or IP address"));
            }
            (host, port)
        };
        let port = parse_port(port)
            .map_err(|_| format!("port {port:?} is not a number from 0 to 65535"))?;
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
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

    #[test]
    fn listen_addresses() {
        let cases: &[(&str, &str, u16, &str)] = &[
            (":9990", "", 9990, ":9990"),
            (":0", "", 0, ":0"),
            ("127.0.0.1:9990", "127.0.0.1", 9990, "127.0.0.1:9990"),
            ("[::1]:9990", "::1", 9990, "[::1]:9990"),
            ("[::]:80", "::", 80, "[::]:80"),
            ("[]:0", "", 0, ":0"),
            ("localhost:65535", "localhost", 65_535, "localhost:65535"),
            (
                "my-host.example_x:1",
                "my-host.example_x",
                1,
                "my-host.example_x:1",
            ),
        ];
        for &(text, host, port, shown) in cases {
            let a: ListenAddress = text.parse().unwrap();
            assert_eq!(
                (a.host(), a.port(), a.to_string().as_str()),
                (host, port, shown),
                "{text}"
            );
        }
        for bad in [
            "",
            "9990",
            "127.0.0.1",
            ":",
            ":65536",
            ":-1",
            ":http",
            "::1:9990",
            "[::1]",
            "[::1]9990",
            "[1.2.3.4]:80",
            "[::1:80",
            "a b:80",
            "host/x:80",
        ] {
            assert!(bad.parse::<ListenAddress>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn listen_default_is_upstreams() {
        assert_eq!(
            ":9990".parse::<ListenAddress>(),
            Ok(ListenAddress::default())
        );
    }

    #[test]
    fn listen_socket_addrs() {
        let any: ListenAddress = ":9990".parse().unwrap();
        assert_eq!(
            any.socket_addrs().unwrap(),
            vec!["[::]:9990".parse().unwrap()]
        );
        let v4: ListenAddress = "127.0.0.1:0".parse().unwrap();
        assert_eq!(
            v4.socket_addrs().unwrap(),
            vec!["127.0.0.1:0".parse().unwrap()]
        );
        let v6: ListenAddress = "[::1]:5".parse().unwrap();
        assert_eq!(v6.socket_addrs().unwrap(), vec!["[::1]:5".parse().unwrap()]);
        let named: ListenAddress = "localhost:7".parse().unwrap();
        let resolved = named.socket_addrs().unwrap();
        assert!(!resolved.is_empty());
        assert!(
            resolved
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 7),
            "{resolved:?}"
        );
    }
}
