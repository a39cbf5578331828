//! Which sockets are invisible to the collector (SPEC §8.2), checked on the raw
//! `inet_diag_msg` before anything else: an excluded socket gets no file, no event and no cache
//! entry.
//!
//! Fixes upstream D4 (ports ≥ 32768 are valid) and D5 (an IPv4 `-exclude-dstip` also matches the
//! peer on a dual-stack AF_INET6 socket, and CIDR blocks are accepted).

mod ipnet;

pub use ipnet::IpNet;

use crate::wire::inet_diag::InetDiagMsg;
use std::net::IpAddr;

/// Which rule excluded a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Excluded {
    /// The local-address rule.
    Local,
    /// `-exclude-srcport`.
    SrcPort,
    /// `-exclude-dstip`.
    DstIp,
}

/// The exclusion rules in force.
#[derive(Debug, Clone)]
pub struct Exclusions {
    local: bool,
    /// One bit per local port: the check runs for every socket of every sweep.
    src_ports: Box<[u64; 1024]>,
    dst: Vec<IpNet>,
}

impl Exclusions {
    /// Rules from the configuration: `local` is the always-on local-address rule (switchable),
    /// `src_ports` the `-exclude-srcport` list, `dst` the `-exclude-dstip` list.
    pub fn new(local: bool, src_ports: &[u16], dst: &[IpNet]) -> Self {
        let mut bits = Box::new([0u64; 1024]);
        for &port in src_ports {
            bits[usize::from(port) / 64] |= 1 << (port % 64);
        }
        Self {
            local,
            src_ports: bits,
            dst: dst.to_vec(),
        }
    }

    /// Why the socket must be ignored, or `None` if it is collected.
    pub fn check(&self, msg: &InetDiagMsg<'_>) -> Option<Excluded> {
        let port = msg.sport();
        if self.src_ports[usize::from(port) / 64] & (1 << (port % 64)) != 0 {
            return Some(Excluded::SrcPort);
        }
        let (src, dst) = (msg.src(), msg.dst());
        if self.local && (is_local(src) || is_local(dst)) {
            return Some(Excluded::Local);
        }
        self.dst
            .iter()
            .any(|net| net.contains(dst))
            .then_some(Excluded::DstIp)
    }

    /// Whether the socket must be ignored.
    pub fn excludes(&self, msg: &InetDiagMsg<'_>) -> bool {
        self.check(msg).is_some()
    }
}

/// Upstream's "local" address test: loopback, link-local unicast, multicast or unspecified,
/// including the v4-mapped forms. Private and ULA ranges are not local.
pub fn is_local(addr: IpAddr) -> bool {
    match addr.to_canonical() {
        IpAddr::V4(a) => {
            a.is_loopback() || a.is_link_local() || a.is_multicast() || a.is_unspecified()
        }
        IpAddr::V6(a) => {
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::inet_diag::{AF_INET, AF_INET6};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn msg(family: u8, sport: u16, src: IpAddr, dst: IpAddr) -> [u8; 72] {
        let mut b = [0u8; 72];
        b[0] = family;
        b[4..6].copy_from_slice(&sport.to_be_bytes());
        let put = |b: &mut [u8; 72], at: usize, ip: IpAddr| match ip {
            IpAddr::V4(v4) => b[at..at + 4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => b[at..at + 16].copy_from_slice(&v6.octets()),
        };
        put(&mut b, 8, src);
        put(&mut b, 24, dst);
        b
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn local_rule() {
        let ex = Exclusions::new(true, &[], &[]);
        let server = ip("192.168.14.134");
        for local in ["127.0.0.1", "169.254.1.1", "224.0.0.1", "0.0.0.0"] {
            let raw = msg(AF_INET, 80, server, ip(local));
            assert!(ex.excludes(&InetDiagMsg::new(&raw).unwrap()), "{local}");
        }
        for local in ["::1", "fe80::1", "ff02::1", "::", "::ffff:127.0.0.1"] {
            let raw = msg(AF_INET6, 80, ip("2001:db8::1"), ip(local));
            assert!(ex.excludes(&InetDiagMsg::new(&raw).unwrap()), "{local}");
        }
        for remote in ["10.0.0.1", "172.16.0.1", "fd00::1", "8.8.8.8"] {
            let family = if remote.contains(':') {
                AF_INET6
            } else {
                AF_INET
            };
            let src = if family == AF_INET {
                server
            } else {
                ip("2001:db8::1")
            };
            let raw = msg(family, 80, src, ip(remote));
            assert!(!ex.excludes(&InetDiagMsg::new(&raw).unwrap()), "{remote}");
        }
        let off = Exclusions::new(false, &[], &[]);
        let raw = msg(AF_INET, 80, ip("127.0.0.1"), ip("127.0.0.1"));
        assert!(!off.excludes(&InetDiagMsg::new(&raw).unwrap()));
    }

    #[test]
    fn ports_including_high_ones_d4() {
        let ex = Exclusions::new(false, &[9100, 40000, 65535, 0], &[]);
        for (port, excluded) in [
            (9100, true),
            (40000, true),
            (65535, true),
            (0, true),
            (9101, false),
        ] {
            let raw = msg(AF_INET, port, ip("10.0.0.1"), ip("10.0.0.2"));
            assert_eq!(
                ex.excludes(&InetDiagMsg::new(&raw).unwrap()),
                excluded,
                "{port}"
            );
        }
    }

    #[test]
    fn dst_ip_matches_v4_mapped_and_cidr_d5() {
        let nets = [
            IpNet::host(ip("35.202.153.90")),
            IpNet::new(ip("2001:db8::"), 32).unwrap(),
        ];
        let ex = Exclusions::new(false, &[], &nets);
        let cases = [
            (AF_INET, ip("35.202.153.90"), true),
            (
                AF_INET6,
                IpAddr::V6(Ipv4Addr::new(35, 202, 153, 90).to_ipv6_mapped()),
                true,
            ),
            (AF_INET, ip("35.202.153.91"), false),
            (AF_INET6, ip("2001:db8:1::5"), true),
            (
                AF_INET6,
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb9, 0, 0, 0, 0, 0, 1)),
                false,
            ),
        ];
        for (family, dst, excluded) in cases {
            let src = if family == AF_INET {
                ip("10.0.0.1")
            } else {
                ip("fd00::1")
            };
            let raw = msg(family, 1234, src, dst);
            assert_eq!(
                ex.excludes(&InetDiagMsg::new(&raw).unwrap()),
                excluded,
                "{dst}"
            );
        }
    }
}
