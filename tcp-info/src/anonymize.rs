//! `-anonymize.ip` (SPEC §8.1): rewrites the address bytes of a *copy* of `RawIDM` just before
//! it is encoded (D15: the cached record is never modified). Events, exclusion and change
//! detection keep seeing raw addresses.

use crate::wire::inet_diag::{AF_INET, AF_INET6, MSG_LEN, offset};
use std::collections::HashSet;
use std::net::IpAddr;

/// The anonymization method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// Addresses are archived as they are.
    #[default]
    None,
    /// IPv4 (and v4-mapped) addresses keep their /24, native IPv6 addresses their /48.
    Netblock,
}

/// The record's family is neither AF_INET nor AF_INET6: upstream does not write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot anonymize a record of address family {0}")]
pub struct UnknownFamily(pub u8);

/// Applies the configured method, exempting the host's own addresses (upstream #115).
#[derive(Debug, Clone, Default)]
pub struct Anonymizer {
    method: Method,
    exempt: HashSet<IpAddr>,
}

impl Anonymizer {
    /// An anonymizer with `method` that leaves the addresses in `local` intact.
    pub fn new(method: Method, local: impl IntoIterator<Item = IpAddr>) -> Self {
        Self {
            method,
            exempt: local.into_iter().map(|a| a.to_canonical()).collect(),
        }
    }

    /// Whether this anonymizer changes anything.
    pub fn is_active(&self) -> bool {
        self.method != Method::None
    }

    /// The RawIDM to archive: `None` when it is unchanged (method `none`), or the rewritten copy.
    pub fn apply(&self, raw_idm: &[u8; MSG_LEN]) -> Result<Option<[u8; MSG_LEN]>, UnknownFamily> {
        let family = raw_idm[offset::FAMILY];
        if family != AF_INET && family != AF_INET6 {
            return Err(UnknownFamily(family));
        }
        if self.method == Method::None {
            return Ok(None);
        }
        let mut copy = *raw_idm;
        for at in [offset::SRC, offset::DST] {
            let mut field = [0u8; 16];
            field.copy_from_slice(&copy[at..at + 16]);
            let addr = crate::wire::inet_diag::address(family, &field);
            if self.exempt.contains(&addr.to_canonical()) {
                continue;
            }
            let field = &mut copy[at..at + 16];
            if family == AF_INET {
                field[3] = 0;
            } else if field[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] {
                field[15] = 0;
            } else {
                field[6..].fill(0);
            }
        }
        Ok(Some(copy))
    }
}

/// The addresses of every local interface, captured once at startup.
pub fn local_addresses() -> std::io::Result<Vec<IpAddr>> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)?;
    Ok(addrs
        .filter_map(|ifa| ifa.address)
        .filter_map(|sa| {
            if let Some(v4) = sa.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                sa.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn raw(family: u8, src: &[u8], dst: &[u8]) -> [u8; MSG_LEN] {
        let mut b = [0u8; MSG_LEN];
        b[0] = family;
        b[8..8 + src.len()].copy_from_slice(src);
        b[24..24 + dst.len()].copy_from_slice(dst);
        b
    }

    #[test]
    fn none_leaves_everything_and_checks_family() {
        let a = Anonymizer::new(Method::None, []);
        assert_eq!(
            a.apply(&raw(AF_INET, &[1, 2, 3, 4], &[5, 6, 7, 8])),
            Ok(None)
        );
        assert_eq!(a.apply(&raw(1, &[], &[])), Err(UnknownFamily(1)));
        assert!(!a.is_active());
    }

    #[test]
    fn netblock_v4_v4mapped_and_v6() {
        let a = Anonymizer::new(Method::Netblock, []);
        let out = a
            .apply(&raw(AF_INET, &[1, 2, 3, 4], &[5, 6, 7, 8]))
            .unwrap()
            .unwrap();
        assert_eq!(&out[8..12], &[1, 2, 3, 0]);
        assert_eq!(&out[24..28], &[5, 6, 7, 0]);
        let mapped: [u8; 16] = "::ffff:192.168.14.129"
            .parse::<Ipv6Addr>()
            .unwrap()
            .octets();
        let out = a.apply(&raw(AF_INET6, &mapped, &mapped)).unwrap().unwrap();
        assert_eq!(
            Ipv6Addr::from(<[u8; 16]>::try_from(&out[8..24]).unwrap()).to_string(),
            "::ffff:192.168.14.0"
        );
        let v6: [u8; 16] = "2001:db8:aaaa:bbbb::1"
            .parse::<Ipv6Addr>()
            .unwrap()
            .octets();
        let out = a.apply(&raw(AF_INET6, &v6, &v6)).unwrap().unwrap();
        assert_eq!(
            Ipv6Addr::from(<[u8; 16]>::try_from(&out[24..40]).unwrap()).to_string(),
            "2001:db8:aaaa::"
        );
        // Only the address bytes change.
        assert_eq!(&out[..8], &raw(AF_INET6, &v6, &v6)[..8]);
        assert_eq!(&out[40..], &[0u8; 32]);
    }

    #[test]
    fn local_addresses_are_exempt() {
        let a = Anonymizer::new(Method::Netblock, ["1.2.3.4".parse().unwrap()]);
        let out = a
            .apply(&raw(AF_INET, &[1, 2, 3, 4], &[5, 6, 7, 8]))
            .unwrap()
            .unwrap();
        assert_eq!(&out[8..12], &[1, 2, 3, 4]);
        assert_eq!(&out[24..28], &[5, 6, 7, 0]);
        // The exemption also covers the v4-mapped form.
        let mapped: [u8; 16] = "::ffff:1.2.3.4".parse::<Ipv6Addr>().unwrap().octets();
        let out = a.apply(&raw(AF_INET6, &mapped, &mapped)).unwrap().unwrap();
        assert_eq!(&out[8..24], &mapped);
        assert!(local_addresses().unwrap().iter().any(IpAddr::is_loopback));
    }
}
