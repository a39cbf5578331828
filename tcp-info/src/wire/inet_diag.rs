//! Wire layouts of sock_diag's `inet_diag_msg` and its socket id (SPEC §4.1, §4.2).
//!
//! Decoding follows the corrected rules of SPEC §12 D6: `idiag_if` and the cookie in host order,
//! the address form chosen by the family.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use thiserror::Error;

/// `AF_INET`.
pub const AF_INET: u8 = 2;
/// `AF_INET6`.
pub const AF_INET6: u8 = 10;
/// Size of `struct inet_diag_msg`.
pub const MSG_LEN: usize = 72;
/// Size of `struct inet_diag_sockid`, bytes 4–51 of the message.
pub const SOCKID_LEN: usize = 48;
/// Offset of the socket id within the message.
pub const SOCKID_OFFSET: usize = 4;
/// Size of `struct inet_diag_req_v2`.
pub const REQ_V2_LEN: usize = 56;

/// Byte ranges of the fields within `inet_diag_msg`.
pub mod offset {
    /// `idiag_family` (u8).
    pub const FAMILY: usize = 0;
    /// `idiag_state` (u8).
    pub const STATE: usize = 1;
    /// `idiag_timer` (u8).
    pub const TIMER: usize = 2;
    /// `idiag_retrans` (u8).
    pub const RETRANS: usize = 3;
    /// Local port, big-endian u16.
    pub const SPORT: usize = 4;
    /// Remote port, big-endian u16.
    pub const DPORT: usize = 6;
    /// Local address, 16 bytes.
    pub const SRC: usize = 8;
    /// Remote address, 16 bytes.
    pub const DST: usize = 24;
    /// `idiag_if`, host-order u32.
    pub const INTERFACE: usize = 40;
    /// Cookie, two host-order u32 halves, low half first.
    pub const COOKIE: usize = 44;
    /// `idiag_expires` (ms).
    pub const EXPIRES: usize = 52;
    /// `idiag_rqueue`.
    pub const RQUEUE: usize = 56;
    /// `idiag_wqueue`.
    pub const WQUEUE: usize = 60;
    /// `idiag_uid`.
    pub const UID: usize = 64;
    /// `idiag_inode`.
    pub const INODE: usize = 68;
}

/// TCP states as the kernel numbers them (SPEC §4.2).
pub mod state {
    /// ESTABLISHED.
    pub const ESTABLISHED: u8 = 1;
    /// SYN_SENT.
    pub const SYN_SENT: u8 = 2;
    /// SYN_RECV.
    pub const SYN_RECV: u8 = 3;
    /// FIN_WAIT1.
    pub const FIN_WAIT1: u8 = 4;
    /// FIN_WAIT2.
    pub const FIN_WAIT2: u8 = 5;
    /// TIME_WAIT.
    pub const TIME_WAIT: u8 = 6;
    /// CLOSE.
    pub const CLOSE: u8 = 7;
    /// CLOSE_WAIT.
    pub const CLOSE_WAIT: u8 = 8;
    /// LAST_ACK.
    pub const LAST_ACK: u8 = 9;
    /// LISTEN.
    pub const LISTEN: u8 = 10;
    /// CLOSING.
    pub const CLOSING: u8 = 11;
    /// Every state: the kernel's `TCPF_ALL`.
    pub const ALL_MASK: u32 = 0xFFF;
    /// Upstream's dump mask: all states but SYN_RECV, TIME_WAIT and CLOSE (SPEC §3.3).
    pub const UPSTREAM_MASK: u32 = 0xF37;
}

/// The upstream name of a TCP state (`ESTABLISHED`, …, `UNKNOWN_STATE_<n>`).
pub fn state_name(state: u8) -> std::borrow::Cow<'static, str> {
    const NAMES: [&str; 12] = [
        "INVALID",
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "CLOSING",
    ];
    match NAMES.get(usize::from(state)) {
        Some(name) => (*name).into(),
        None => format!("UNKNOWN_STATE_{state}").into(),
    }
}

/// The message is too short to hold an `inet_diag_msg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("inet_diag_msg needs 72 bytes, got {0}")]
pub struct ShortMessage(pub usize);

/// A zero-copy view of a 72-byte `inet_diag_msg` (an archive's `RawIDM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InetDiagMsg<'a> {
    bytes: &'a [u8; MSG_LEN],
}

impl<'a> InetDiagMsg<'a> {
    /// Views the first 72 bytes of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Result<Self, ShortMessage> {
        let bytes = bytes
            .get(..MSG_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(ShortMessage(bytes.len()))?;
        Ok(Self { bytes })
    }

    /// The raw 72 bytes.
    pub fn bytes(&self) -> &'a [u8; MSG_LEN] {
        self.bytes
    }

    fn u32_at(self, at: usize) -> u32 {
        // Every offset read is a constant inside the 72 bytes.
        crate::wire::netlink::u32_at(self.bytes, at).unwrap_or_default()
    }

    /// `idiag_family` (2 or 10 for TCP sockets).
    pub fn family(&self) -> u8 {
        self.bytes[offset::FAMILY]
    }
    /// `idiag_state` (SPEC §4.2).
    pub fn state(&self) -> u8 {
        self.bytes[offset::STATE]
    }
    /// `idiag_timer`.
    pub fn timer(&self) -> u8 {
        self.bytes[offset::TIMER]
    }
    /// `idiag_retrans`.
    pub fn retrans(&self) -> u8 {
        self.bytes[offset::RETRANS]
    }
    /// Local port.
    pub fn sport(&self) -> u16 {
        u16::from_be_bytes([self.bytes[offset::SPORT], self.bytes[offset::SPORT + 1]])
    }
    /// Remote port.
    pub fn dport(&self) -> u16 {
        u16::from_be_bytes([self.bytes[offset::DPORT], self.bytes[offset::DPORT + 1]])
    }
    /// The 16 raw bytes of the local address.
    pub fn src_bytes(&self) -> &'a [u8; 16] {
        array16(self.bytes, offset::SRC)
    }
    /// The 16 raw bytes of the remote address.
    pub fn dst_bytes(&self) -> &'a [u8; 16] {
        array16(self.bytes, offset::DST)
    }
    /// Local address, read as the family says (D6 fixed).
    pub fn src(&self) -> IpAddr {
        address(self.family(), self.src_bytes())
    }
    /// Remote address, read as the family says (D6 fixed).
    pub fn dst(&self) -> IpAddr {
        address(self.family(), self.dst_bytes())
    }
    /// `idiag_if`, host order (D6 fixed).
    pub fn interface(&self) -> u32 {
        self.u32_at(offset::INTERFACE)
    }
    /// The socket cookie: two host-order u32 halves, low half first (D6 fixed).
    pub fn cookie(&self) -> u64 {
        cookie(self.bytes).unwrap_or_default()
    }
    /// `idiag_expires` in milliseconds.
    pub fn expires(&self) -> u32 {
        self.u32_at(offset::EXPIRES)
    }
    /// `idiag_rqueue`.
    pub fn rqueue(&self) -> u32 {
        self.u32_at(offset::RQUEUE)
    }
    /// `idiag_wqueue`.
    pub fn wqueue(&self) -> u32 {
        self.u32_at(offset::WQUEUE)
    }
    /// `idiag_uid`.
    pub fn uid(&self) -> u32 {
        self.u32_at(offset::UID)
    }
    /// `idiag_inode` (0 for time-wait minisocks).
    pub fn inode(&self) -> u32 {
        self.u32_at(offset::INODE)
    }
}

/// The socket cookie of a raw `inet_diag_msg` (bytes 44–51: two host-order u32 halves, low half
/// first; D6 fixed), or `None` if `raw_idm` ends before it.
pub fn cookie(raw_idm: &[u8]) -> Option<u64> {
    let low = crate::wire::netlink::u32_at(raw_idm, offset::COOKIE)?;
    let high = crate::wire::netlink::u32_at(raw_idm, offset::COOKIE + 4)?;
    Some(u64::from(high) << 32 | u64::from(low))
}

fn array16(bytes: &[u8; MSG_LEN], at: usize) -> &[u8; 16] {
    let (_, rest) = bytes.split_at(at);
    let (head, _) = rest.split_at(16);
    // `head` is exactly 16 bytes, so the conversion cannot fail.
    head.try_into().unwrap_or(&[0; 16])
}

/// An address field read according to the socket family: AF_INET uses bytes 0–3, anything else
/// the full 16 bytes as IPv6 (so a dual-stack socket shows `::ffff:a.b.c.d`).
pub fn address(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

/// Renders an address field the way upstream's Go code prints it in events and CSV (SPEC §4.1):
/// 16 bytes whose bytes 4–15 are zero are IPv4, otherwise IPv6 in Go `net.IP` text form, where
/// a v4-mapped address prints as a dotted quad. (This ignores the family, as upstream does.)
pub fn go_ip_string(bytes: &[u8; 16]) -> String {
    if bytes[4..].iter().all(|&b| b == 0) {
        return Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string();
    }
    let v6 = Ipv6Addr::from(*bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => v4.to_string(),
        None => v6.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> [u8; MSG_LEN] {
        let mut b = [0u8; MSG_LEN];
        b[0] = AF_INET6;
        b[1] = state::ESTABLISHED;
        b[4..6].copy_from_slice(&9091u16.to_be_bytes());
        b[6..8].copy_from_slice(&[2, 1]);
        b[8..24].copy_from_slice(
            &"::ffff:192.168.14.134"
                .parse::<Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        b[24..40].copy_from_slice(&"fd0a:8d:ba3f:a834::".parse::<Ipv6Addr>().unwrap().octets());
        b[40..44].copy_from_slice(&2u32.to_ne_bytes());
        b[44..48].copy_from_slice(&0xFFu32.to_ne_bytes());
        b[48..52].copy_from_slice(&0xFF00_0000u32.to_ne_bytes());
        b
    }

    #[test]
    fn fields() {
        let raw = sample();
        let m = InetDiagMsg::new(&raw).unwrap();
        assert_eq!(m.family(), AF_INET6);
        assert_eq!(m.sport(), 9091);
        assert_eq!(m.dport(), 513, "ports {{2,1}} are 513");
        assert_eq!(m.interface(), 2);
        assert_eq!(format!("{:016X}", m.cookie()), "FF000000000000FF");
        assert_eq!(
            m.cookie() as i64,
            -72_057_594_037_927_681,
            "negative i64 cast"
        );
        assert_eq!(go_ip_string(m.src_bytes()), "192.168.14.134");
        assert_eq!(go_ip_string(m.dst_bytes()), "fd0a:8d:ba3f:a834::");
        assert_eq!(m.dst().to_string(), "fd0a:8d:ba3f:a834::");
        assert_eq!(InetDiagMsg::new(&raw[..71]), Err(ShortMessage(71)));
    }

    #[test]
    fn addresses_by_family_and_go_rendering() {
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[1, 1, 1, 2]);
        assert_eq!(address(AF_INET, &v4).to_string(), "1.1.1.2");
        assert_eq!(go_ip_string(&v4), "1.1.1.2");
        let v6: [u8; 16] = "100::2".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(go_ip_string(&v6), "100::2");
        assert_eq!(address(AF_INET6, &v6).to_string(), "100::2");
        // D6: the family decides, so an AF_INET6 socket bound to `::` is not shown as 0.0.0.0.
        assert_eq!(address(AF_INET6, &[0; 16]).to_string(), "::");
        assert_eq!(go_ip_string(&[0; 16]), "0.0.0.0");
    }

    #[test]
    fn layout_sizes_and_state_names() {
        assert_eq!(SOCKID_OFFSET + SOCKID_LEN, 52);
        // SPEC §16: within the 48-byte sockid, sport 0, dport 2, src 4, dst 20, if 36, cookie 40;
        // the message is 72 bytes and the request 56.
        let within = [
            offset::SPORT,
            offset::DPORT,
            offset::SRC,
            offset::DST,
            offset::INTERFACE,
            offset::COOKIE,
        ]
        .map(|o| o - SOCKID_OFFSET);
        assert_eq!(within, [0, 2, 4, 20, 36, 40]);
        assert_eq!((SOCKID_LEN, MSG_LEN, REQ_V2_LEN), (48, 72, 56));
        assert_eq!(
            (
                offset::SPORT,
                offset::DPORT,
                offset::SRC,
                offset::DST,
                offset::INTERFACE,
                offset::COOKIE
            ),
            (4, 6, 8, 24, 40, 44)
        );
        assert_eq!(state_name(1), "ESTABLISHED");
        assert_eq!(state_name(11), "CLOSING");
        assert_eq!(state_name(12), "UNKNOWN_STATE_12");
        assert_eq!(
            state::UPSTREAM_MASK,
            0xFFF & !(1 << 3) & !(1 << 6) & !(1 << 7)
        );
    }
}
