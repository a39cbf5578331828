//! Encoding of `sock_diag` requests: a 16-byte `nlmsghdr` followed by a 56-byte
//! `inet_diag_req_v2` (SPEC §3.1, §13.1).
//!
//! `inet_diag_req_v2` layout (host order unless noted):
//!
//! | off | size | field |
//! |---|---|---|
//! | 0 | 1 | `sdiag_family` (2 or 10) |
//! | 1 | 1 | `sdiag_protocol` (6, TCP) |
//! | 2 | 1 | `idiag_ext` (0xFF: every extension, §3.2) |
//! | 3 | 1 | pad |
//! | 4 | 4 | `idiag_states` (0xF37, §3.3) |
//! | 8 | 2 | `id.idiag_sport` (local port, big-endian) |
//! | 10 | 2 | `id.idiag_dport` (remote port, big-endian) |
//! | 12 | 16 | `id.idiag_src` (local address, network order) |
//! | 28 | 16 | `id.idiag_dst` (remote address, network order) |
//! | 44 | 4 | `id.idiag_if` |
//! | 48 | 8 | `id.idiag_cookie`: two u32, `[0]` = low half |

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::wire::netlink::{HEADER_LEN, Header, NLM_F_DUMP, NLM_F_REQUEST, SOCK_DIAG_BY_FAMILY};

/// Size of `struct inet_diag_req_v2`.
pub const REQ_V2_LEN: usize = 56;
/// Size of one complete request message (header + `inet_diag_req_v2`).
pub const REQUEST_LEN: usize = HEADER_LEN + REQ_V2_LEN;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u8 = 6;
/// `idiag_ext`: request every extension attribute (SPEC §3.2).
pub const ALL_EXTENSIONS: u8 = 0xFF;
/// `idiag_states`: every state except `SYN_RECV`, `TIME_WAIT` and CLOSE (SPEC §3.3).
pub const STATE_MASK: u32 = 0xF37;
/// `INET_DIAG_NOCOOKIE`: both cookie halves all-ones, which makes the kernel skip the cookie check.
pub const NO_COOKIE: u64 = u64::MAX;

/// Address family of a `sock_diag` request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `AF_INET` (2).
    Inet,
    /// `AF_INET6` (10).
    Inet6,
}

impl Family {
    /// The `AF_*` number as it appears in `sdiag_family` / `idiag_family`.
    pub const fn af(self) -> u8 {
        match self {
            Self::Inet => 2,
            Self::Inet6 => 10,
        }
    }

    /// The family for an `AF_*` number, if it is one of the two.
    pub const fn from_af(af: u8) -> Option<Self> {
        match af {
            2 => Some(Self::Inet),
            10 => Some(Self::Inet6),
            _ => None,
        }
    }
}

/// Process-wide request sequence counter (SPEC §3.1: incremented per request).
static NEXT_SEQ: AtomicU32 = AtomicU32::new(1);

/// Reserves `count` consecutive sequence numbers and returns the first. The block wraps around
/// `u32::MAX` like the counter itself; compare with `wrapping_sub`.
pub(crate) fn reserve_seqs(count: u32) -> u32 {
    NEXT_SEQ.fetch_add(count, Ordering::Relaxed)
}

/// The socket identity of an exact request (`struct inet_diag_sockid`), already in wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SockId {
    pub sport: u16,
    pub dport: u16,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub interface: u32,
    pub cookie: u64,
}

impl SockId {
    /// The all-zero identity of a dump request.
    pub const DUMP: Self = Self {
        sport: 0,
        dport: 0,
        src: [0; 16],
        dst: [0; 16],
        interface: 0,
        cookie: 0,
    };

    /// Builds the identity of an exact request for `family`, or `None` when an address cannot be
    /// expressed in that family (an IPv6 address that is not v4-mapped in an `AF_INET` request).
    /// An IPv4 address in an `AF_INET6` request is written v4-mapped, which the kernel looks up as
    /// IPv4 (SPEC §13.2).
    pub fn exact(
        family: Family,
        local: SocketAddr,
        remote: SocketAddr,
        interface: u32,
        cookie: Option<u64>,
    ) -> Option<Self> {
        Some(Self {
            sport: local.port(),
            dport: remote.port(),
            src: encode_addr(family, local.ip())?,
            dst: encode_addr(family, remote.ip())?,
            interface,
            cookie: cookie.unwrap_or(NO_COOKIE),
        })
    }
}

/// Writes `ip` the way `inet_diag_sockid` holds it for `family`.
fn encode_addr(family: Family, ip: IpAddr) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    match (family, ip) {
        (Family::Inet, IpAddr::V4(v4)) => out[..4].copy_from_slice(&v4.octets()),
        (Family::Inet, IpAddr::V6(v6)) => out[..4].copy_from_slice(&v6.to_ipv4_mapped()?.octets()),
        (Family::Inet6, IpAddr::V4(v4)) => out = v4.to_ipv6_mapped().octets(),
        (Family::Inet6, IpAddr::V6(v6)) => out = v6.octets(),
    }
    Some(out)
}

/// Appends one complete request (`nlmsghdr` + `inet_diag_req_v2`) to `buf`.
///
/// `dump` selects `NLM_F_REQUEST | NLM_F_DUMP` (0x301) instead of `NLM_F_REQUEST` alone. The
/// header's `pid` is 0 (the kernel fills in the sender's port id).
pub(crate) fn encode(buf: &mut Vec<u8>, family: Family, dump: bool, seq: u32, id: &SockId) {
    let flags = if dump {
        NLM_F_REQUEST | NLM_F_DUMP
    } else {
        NLM_F_REQUEST
    };
    let header = Header {
        len: REQUEST_LEN as u32,
        kind: SOCK_DIAG_BY_FAMILY,
        flags,
        seq,
        pid: 0,
    };
    buf.extend_from_slice(&header.to_bytes());
    buf.extend_from_slice(&[family.af(), IPPROTO_TCP, ALL_EXTENSIONS, 0]);
    buf.extend_from_slice(&STATE_MASK.to_ne_bytes());
    buf.extend_from_slice(&id.sport.to_be_bytes());
    buf.extend_from_slice(&id.dport.to_be_bytes());
    buf.extend_from_slice(&id.src);
    buf.extend_from_slice(&id.dst);
    buf.extend_from_slice(&id.interface.to_ne_bytes());
    // Two host-order u32 halves, low half first (SPEC §4.1); never left to a default, because a
    // zero cookie is not a wildcard and makes every exact lookup fail with ENOENT (§13.1).
    buf.extend_from_slice(&(id.cookie as u32).to_ne_bytes());
    buf.extend_from_slice(&((id.cookie >> 32) as u32).to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

    #[test]
    fn dump_request_bytes_match_spec() {
        let mut buf = Vec::new();
        encode(&mut buf, Family::Inet6, true, 0x0102_0304, &SockId::DUMP);
        assert_eq!(buf.len(), 72);
        let h = Header::parse(&buf).unwrap();
        assert_eq!(
            h,
            Header {
                len: 72,
                kind: 20,
                flags: 0x301,
                seq: 0x0102_0304,
                pid: 0
            }
        );
        assert_eq!(&buf[16..20], &[10, 6, 0xFF, 0]);
        assert_eq!(&buf[20..24], &0xF37u32.to_ne_bytes());
        assert!(
            buf[24..72].iter().all(|&b| b == 0),
            "dump id must be 48 zero bytes"
        );

        buf.clear();
        encode(&mut buf, Family::Inet, true, 1, &SockId::DUMP);
        assert_eq!(buf[16], 2);
    }

    #[test]
    fn exact_request_v4_bytes() {
        let local = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0x1234));
        let remote = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 443));
        let id =
            SockId::exact(Family::Inet, local, remote, 7, Some(0x1122_3344_5566_7788)).unwrap();
        let mut buf = Vec::new();
        encode(&mut buf, Family::Inet, false, 9, &id);
        assert_eq!(buf.len(), 72);
        let h = Header::parse(&buf).unwrap();
        assert_eq!((h.len, h.kind, h.flags, h.seq), (72, 20, 0x001, 9));
        assert_eq!(&buf[16..20], &[2, 6, 0xFF, 0]);
        assert_eq!(&buf[24..26], &[0x12, 0x34]);
        assert_eq!(&buf[26..28], &[0x01, 0xBB]);
        assert_eq!(&buf[28..32], &[127, 0, 0, 1]);
        assert!(buf[32..44].iter().all(|&b| b == 0));
        assert_eq!(&buf[44..48], &[10, 1, 2, 3]);
        assert_eq!(&buf[60..64], &7u32.to_ne_bytes());
        assert_eq!(&buf[64..68], &0x5566_7788u32.to_ne_bytes());
        assert_eq!(&buf[68..72], &0x1122_3344u32.to_ne_bytes());
    }

    #[test]
    fn exact_request_v6_nocookie_and_mapping() {
        let local = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 80, 0, 0));
        let remote = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 5000));
        let id = SockId::exact(Family::Inet6, local, remote, 0, None).unwrap();
        let mut buf = Vec::new();
        encode(&mut buf, Family::Inet6, false, 1, &id);
        assert_eq!(&buf[28..44], &Ipv6Addr::LOCALHOST.octets());
        assert_eq!(
            &buf[44..60],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 192, 0, 2, 1]
        );
        assert_eq!(&buf[64..72], &[0xFF; 8], "INET_DIAG_NOCOOKIE");

        // A v4-mapped address in an AF_INET request is unwrapped; a real IPv6 one is refused.
        let mapped = SocketAddr::V6(SocketAddrV6::new(
            Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped(),
            1,
            0,
            0,
        ));
        let id = SockId::exact(Family::Inet, mapped, mapped, 0, None).unwrap();
        assert_eq!(&id.src[..4], &[192, 0, 2, 1]);
        assert!(SockId::exact(Family::Inet, local, mapped, 0, None).is_none());
    }

    #[test]
    fn family_numbers() {
        assert_eq!(Family::Inet.af(), 2);
        assert_eq!(Family::Inet6.af(), 10);
        assert_eq!(Family::from_af(10), Some(Family::Inet6));
        assert_eq!(Family::from_af(1), None);
    }

    #[test]
    fn seq_blocks_do_not_overlap() {
        let a = reserve_seqs(10);
        let b = reserve_seqs(1);
        assert!(b.wrapping_sub(a) >= 10);
    }
}
