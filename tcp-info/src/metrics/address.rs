//! `[host]:port` addresses to listen on, as Go's `net.Listen` takes them
//! (`-prometheusx.listen-address`).

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs as _};
use std::str::FromStr;

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
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|_| port.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("port {port:?} is not a number from 0 to 65535"))?;
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
