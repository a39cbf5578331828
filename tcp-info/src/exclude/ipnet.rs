//! Address blocks for `-exclude-dstip`: a plain address (`192.0.2.1`, `2001:db8::1`) or a CIDR
//! block (`192.0.2.0/24`, `2001:db8::/32`).
//!
//! Matching treats an IPv4 block and the v4-mapped IPv6 form of its addresses
//! (`::ffff:a.b.c.d`) as the same thing, in both directions, which fixes upstream's miss on
//! dual-stack sockets (SPEC §12 D5).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP address block: an address with its host bits cleared and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    network: IpAddr,
    prefix_len: u8,
}

impl IpNet {
    /// The block of `prefix_len` leading bits of `addr`; host bits are cleared (as Go's
    /// `net.ParseCIDR` does). `None` if `prefix_len` exceeds the address width.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Option<Self> {
        let network = match addr {
            IpAddr::V4(a) if prefix_len <= 32 => {
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & v4_mask(prefix_len)))
            }
            IpAddr::V6(a) if prefix_len <= 128 => {
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & v6_mask(prefix_len)))
            }
            _ => return None,
        };
        Some(Self {
            network,
            prefix_len,
        })
    }

    /// The block holding exactly `addr`.
    pub fn host(addr: IpAddr) -> Self {
        let prefix_len = if addr.is_ipv4() { 32 } else { 128 };
        Self {
            network: addr,
            prefix_len,
        }
    }

    /// The first address of the block.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The number of leading bits that are fixed.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `addr` lies in the block. An IPv4 address and its v4-mapped IPv6 form are
    /// equivalent on both sides.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.canonical(), addr.to_canonical()) {
            (
                IpNet {
                    network: IpAddr::V4(net),
                    prefix_len,
                },
                IpAddr::V4(a),
            ) => u32::from(a) & v4_mask(prefix_len) == u32::from(net),
            (
                IpNet {
                    network: IpAddr::V6(net),
                    prefix_len,
                },
                IpAddr::V6(a),
            ) => u128::from(a) & v6_mask(prefix_len) == u128::from(net),
            _ => false,
        }
    }

    /// A v4-mapped IPv6 block that lies inside `::ffff:0:0/96` is rewritten as the IPv4 block.
    fn canonical(&self) -> Self {
        match self.network {
            IpAddr::V6(net) if self.prefix_len >= 96 => match net.to_ipv4_mapped() {
                Some(v4) => Self {
                    network: IpAddr::V4(v4),
                    prefix_len: self.prefix_len - 96,
                },
                None => *self,
            },
            _ => *self,
        }
    }
}

fn v4_mask(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

fn v6_mask(prefix_len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0)
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let Some((addr, len)) = text.split_once('/') else {
            return text.parse().map(Self::host).map_err(|_| {
                "expected an IP address or a CIDR block such as 192.0.2.0/24".to_owned()
            });
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        // Digits only: no sign, no spaces, and no leading zeros (as Go's net.ParseCIDR).
        let well_formed = !len.is_empty()
            && len.bytes().all(|b| b.is_ascii_digit())
            && (len == "0" || !len.starts_with('0'));
        let prefix_len = len
            .parse::<u8>()
            .ok()
            .filter(|&n| well_formed && n <= max)
            .ok_or_else(|| format!("prefix length {len:?} is not a number from 0 to {max}"))?;
        Self::new(addr, prefix_len).ok_or_else(|| format!("prefix length {len:?} out of range"))
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = if self.network.is_ipv4() { 32 } else { 128 };
        if self.prefix_len == full {
            write!(f, "{}", self.network)
        } else {
            write!(f, "{}/{}", self.network, self.prefix_len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_addresses_and_blocks() {
        let cases: &[(&str, &str, u8)] = &[
            ("172.25.0.1", "172.25.0.1", 32),
            ("2001:db8::1", "2001:db8::1", 128),
            ("10.0.0.0/8", "10.0.0.0", 8),
            ("10.1.2.3/8", "10.0.0.0", 8),
            ("0.0.0.0/0", "0.0.0.0", 0),
            ("192.0.2.7/32", "192.0.2.7", 32),
            ("2001:db8:ffff::1/32", "2001:db8::", 32),
            ("::/0", "::", 0),
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4", 128),
        ];
        for &(text, network, len) in cases {
            let n = net(text);
            assert_eq!((n.network(), n.prefix_len()), (ip(network), len), "{text}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for text in [
            "",
            "1.2.3",
            "1.2.3.256",
            "01.2.3.4",
            "1.2.3.4/33",
            "1.2.3.4/",
            "1.2.3.4/-1",
            "1.2.3.4/+8",
            "1.2.3.4/08",
            "1.2.3.4/ 8",
            "::/129",
            "fe80::1%eth0",
            "host.example",
            " 1.2.3.4",
            "1.2.3.4/8/8",
            "/8",
        ] {
            assert!(text.parse::<IpNet>().is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn displays_canonically() {
        assert_eq!(net("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("172.25.0.1").to_string(), "172.25.0.1");
        assert_eq!(net("2001:DB8::1/128").to_string(), "2001:db8::1");
        assert_eq!(net("2001:db8::/32").to_string(), "2001:db8::/32");
    }

    #[test]
    fn contains_handles_v4_mapped_both_ways() {
        let cases: &[(&str, &str, bool)] = &[
            ("172.25.0.1", "172.25.0.1", true),
            ("172.25.0.1", "172.25.0.2", false),
            ("172.25.0.1", "::ffff:172.25.0.1", true),
            ("::ffff:172.25.0.1", "172.25.0.1", true),
            ("10.0.0.0/8", "10.255.1.1", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.0.0.0/8", "::ffff:10.9.9.9", true),
            ("::ffff:10.0.0.0/104", "10.9.9.9", true),
            ("::ffff:0:0/96", "203.0.113.5", true),
            ("0.0.0.0/0", "::1", false),
            ("::/0", "203.0.113.5", false),
            ("::/0", "2001:db8::1", true),
            ("2001:db8::/32", "2001:db8:1::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("2001:db8::1", "2001:db8::1", true),
            // An IPv4 block never matches a native IPv6 address that embeds the same bits.
            ("1.2.3.4", "::1.2.3.4", false),
        ];
        for &(block, addr, want) in cases {
            assert_eq!(net(block).contains(ip(addr)), want, "{block} ∋ {addr}");
        }
    }

    #[test]
    fn new_rejects_overlong_prefix() {
        assert!(IpNet::new(ip("1.2.3.4"), 33).is_none());
        assert!(IpNet::new(ip("::"), 129).is_none());
        assert_eq!(
            IpNet::new(ip("1.2.3.4"), 0).unwrap().network(),
            ip("0.0.0.0")
        );
    }
}
