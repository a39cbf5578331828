//! `inet_diag` attribute types and their typed payloads (SPEC §4.4).
//!
//! Every decoder follows one rule: a payload shorter than the struct is zero-filled and counts
//! as fully parsed; a longer one is decoded from its first bytes and reported as
//! [`Fit::Long`]. The few payloads that cannot be decoded at all (MARK of a size other than
//! 4 B) return `None`. Integers are in host order, as the kernel writes them.

use std::borrow::Cow;

/// `INET_DIAG_MEMINFO`: [`MemInfo`].
pub const MEMINFO: u16 = 1;
/// `INET_DIAG_INFO`: `struct tcp_info` ([`crate::tcpinfo::TcpInfo`]).
pub const INFO: u16 = 2;
/// `INET_DIAG_VEGASINFO`: [`VegasInfo`].
pub const VEGASINFO: u16 = 3;
/// `INET_DIAG_CONG`: the congestion-control name, NUL-terminated.
pub const CONG: u16 = 4;
/// `INET_DIAG_TOS`: u8.
pub const TOS: u16 = 5;
/// `INET_DIAG_TCLASS`: u8 (IPv6 sockets only).
pub const TCLASS: u16 = 6;
/// `INET_DIAG_SKMEMINFO`: [`SkMemInfo`].
pub const SKMEMINFO: u16 = 7;
/// `INET_DIAG_SHUTDOWN`: u8 (1 RCV, 2 SEND, 3 both).
pub const SHUTDOWN: u16 = 8;
/// `INET_DIAG_DCTCPINFO`: [`DctcpInfo`].
pub const DCTCPINFO: u16 = 9;
/// `INET_DIAG_PROTOCOL`: u8.
pub const PROTOCOL: u16 = 10;
/// `INET_DIAG_SKV6ONLY`: u8 (not decoded).
pub const SKV6ONLY: u16 = 11;
/// `INET_DIAG_LOCALS`: array of `sockaddr_storage` (SCTP; not decoded).
pub const LOCALS: u16 = 12;
/// `INET_DIAG_PEERS`: array of `sockaddr_storage` (SCTP; not decoded).
pub const PEERS: u16 = 13;
/// `INET_DIAG_PAD`: alignment padding.
pub const PAD: u16 = 14;
/// `INET_DIAG_MARK`: u32 socket mark (only with `CAP_NET_ADMIN`).
pub const MARK: u16 = 15;
/// `INET_DIAG_BBRINFO`: [`BbrInfo`].
pub const BBRINFO: u16 = 16;
/// `INET_DIAG_CLASS_ID`: u32 cgroup v1 `net_cls` class id.
pub const CLASS_ID: u16 = 17;
/// `INET_DIAG_MD5SIG`: array of `tcp_diag_md5sig` (not decoded).
pub const MD5SIG: u16 = 18;
/// `INET_DIAG_ULP_INFO`: nested attributes (not decoded).
pub const ULP_INFO: u16 = 19;
/// `INET_DIAG_SK_BPF_STORAGES`: nested attributes (not decoded).
pub const SK_BPF_STORAGES: u16 = 20;
/// `INET_DIAG_CGROUP_ID`: u64 cgroup v2 id.
pub const CGROUP_ID: u16 = 21;
/// `INET_DIAG_SOCKOPT`: [`SockOpt`] (u16 of option bits).
pub const SOCKOPT: u16 = 22;
/// The highest type named here.
pub const MAX_KNOWN: u16 = SOCKOPT;

/// The kernel name of an attribute type without its `INET_DIAG_` prefix, e.g. `"MEMINFO"`.
pub fn name(t: u16) -> Option<&'static str> {
    const NAMES: [&str; 22] = [
        "MEMINFO",
        "INFO",
        "VEGASINFO",
        "CONG",
        "TOS",
        "TCLASS",
        "SKMEMINFO",
        "SHUTDOWN",
        "DCTCPINFO",
        "PROTOCOL",
        "SKV6ONLY",
        "LOCALS",
        "PEERS",
        "PAD",
        "MARK",
        "BBRINFO",
        "CLASS_ID",
        "MD5SIG",
        "ULP_INFO",
        "SK_BPF_STORAGES",
        "CGROUP_ID",
        "SOCKOPT",
    ];
    NAMES.get(usize::from(t).checked_sub(1)?).copied()
}

/// How a payload's length compares with the struct it is decoded into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Exactly the struct's size.
    Exact,
    /// Shorter: the missing tail was zero-filled (an older kernel). Counts as fully parsed.
    Short,
    /// Longer: trailing bytes were not decoded (a newer kernel). Not fully parsed.
    Long,
}

impl Fit {
    /// The fit of a `len`-byte payload for a `size`-byte struct.
    pub fn of(len: usize, size: usize) -> Self {
        match len.cmp(&size) {
            std::cmp::Ordering::Less => Self::Short,
            std::cmp::Ordering::Equal => Self::Exact,
            std::cmp::Ordering::Greater => Self::Long,
        }
    }

    /// Whether every byte of the payload was decoded.
    pub fn fully_parsed(self) -> bool {
        self != Self::Long
    }
}

/// A decoded payload and how well it fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<T> {
    /// The value, zero-filled where the payload was short.
    pub value: T,
    /// Payload length versus struct size.
    pub fit: Fit,
}

/// A payload copied into a zero-filled `N`-byte image of its struct, read field by field in
/// host order. Reads inside the image never fail: the tail a short payload lacks reads as zero.
pub(crate) struct Image<const N: usize>([u8; N]);

impl<const N: usize> Image<N> {
    /// The image of `payload` (its first `N` bytes, zero-filled), and the payload's fit.
    pub(crate) fn of(payload: &[u8]) -> (Self, Fit) {
        let mut buf = [0u8; N];
        let n = payload.len().min(N);
        buf[..n].copy_from_slice(&payload[..n]);
        (Self(buf), Fit::of(payload.len(), N))
    }

    pub(crate) fn u8(&self, at: usize) -> u8 {
        self.0.get(at).copied().unwrap_or_default()
    }

    pub(crate) fn u16(&self, at: usize) -> u16 {
        crate::wire::netlink::u16_at(&self.0, at).unwrap_or_default()
    }

    pub(crate) fn u32(&self, at: usize) -> u32 {
        crate::wire::netlink::u32_at(&self.0, at).unwrap_or_default()
    }

    pub(crate) fn u64(&self, at: usize) -> u64 {
        crate::wire::netlink::u64_at(&self.0, at).unwrap_or_default()
    }
}

/// Decodes a u8 attribute (TOS, `TCLASS`, `SHUTDOWN`, `PROTOCOL`).
pub fn decode_u8(payload: &[u8]) -> Decoded<u8> {
    let (b, fit) = Image::<1>::of(payload);
    Decoded {
        value: b.u8(0),
        fit,
    }
}

/// Decodes `CLASS_ID` as the kernel's full u32 (D6: upstream keeps only the first byte).
pub fn decode_class_id(payload: &[u8]) -> Decoded<u32> {
    let (b, fit) = Image::<4>::of(payload);
    Decoded {
        value: b.u32(0),
        fit,
    }
}

/// Decodes `CGROUP_ID` (u64).
pub fn decode_cgroup_id(payload: &[u8]) -> Decoded<u64> {
    let (b, fit) = Image::<8>::of(payload);
    Decoded {
        value: b.u64(0),
        fit,
    }
}

/// Decodes `MARK`, which upstream accepts only when it is exactly 4 bytes; `None` otherwise.
pub fn decode_mark(payload: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = payload.try_into().ok()?;
    Some(u32::from_ne_bytes(bytes))
}

/// Decodes the `CONG` name: one trailing NUL is stripped, and an empty payload gives `""`
/// (D6: upstream panics on it). Invalid UTF-8 is replaced with U+FFFD.
pub fn decode_congestion(payload: &[u8]) -> Cow<'_, str> {
    let name = payload.strip_suffix(&[0]).unwrap_or(payload);
    String::from_utf8_lossy(name)
}

/// `struct inet_diag_meminfo` (`INET_DIAG_MEMINFO`, 16 B).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// `idiag_rmem`.
    pub rmem: u32,
    /// `idiag_wmem`.
    pub wmem: u32,
    /// `idiag_fmem`.
    pub fmem: u32,
    /// `idiag_tmem`.
    pub tmem: u32,
}

impl MemInfo {
    /// Size of the struct.
    pub const LEN: usize = 16;

    /// Decodes a payload of any length.
    pub fn decode(payload: &[u8]) -> Decoded<Self> {
        let (b, fit) = Image::<{ Self::LEN }>::of(payload);
        let value = Self {
            rmem: b.u32(0),
            wmem: b.u32(4),
            fmem: b.u32(8),
            tmem: b.u32(12),
        };
        Decoded { value, fit }
    }
}

/// The `SK_MEMINFO_*` array (`INET_DIAG_SKMEMINFO`, 9 × u32 = 36 B).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SkMemInfo {
    /// `SK_MEMINFO_RMEM_ALLOC`.
    pub rmem_alloc: u32,
    /// `SK_MEMINFO_RCVBUF`.
    pub rcvbuf: u32,
    /// `SK_MEMINFO_WMEM_ALLOC`.
    pub wmem_alloc: u32,
    /// `SK_MEMINFO_SNDBUF`.
    pub sndbuf: u32,
    /// `SK_MEMINFO_FWD_ALLOC`.
    pub fwd_alloc: u32,
    /// `SK_MEMINFO_WMEM_QUEUED`.
    pub wmem_queued: u32,
    /// `SK_MEMINFO_OPTMEM`.
    pub optmem: u32,
    /// `SK_MEMINFO_BACKLOG`.
    pub backlog: u32,
    /// `SK_MEMINFO_DROPS`.
    pub drops: u32,
}

impl SkMemInfo {
    /// Size of the array.
    pub const LEN: usize = 36;

    /// Decodes a payload of any length.
    pub fn decode(payload: &[u8]) -> Decoded<Self> {
        let (b, fit) = Image::<{ Self::LEN }>::of(payload);
        let value = Self {
            rmem_alloc: b.u32(0),
            rcvbuf: b.u32(4),
            wmem_alloc: b.u32(8),
            sndbuf: b.u32(12),
            fwd_alloc: b.u32(16),
            wmem_queued: b.u32(20),
            optmem: b.u32(24),
            backlog: b.u32(28),
            drops: b.u32(32),
        };
        Decoded { value, fit }
    }
}

/// `struct tcpvegas_info` (`INET_DIAG_VEGASINFO`, 16 B).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VegasInfo {
    /// `tcpv_enabled`.
    pub enabled: u32,
    /// `tcpv_rttcnt`.
    pub rtt_count: u32,
    /// `tcpv_rtt` (µs).
    pub rtt: u32,
    /// `tcpv_minrtt` (µs).
    pub min_rtt: u32,
}

impl VegasInfo {
    /// Size of the struct.
    pub const LEN: usize = 16;

    /// Decodes a payload of any length.
    pub fn decode(payload: &[u8]) -> Decoded<Self> {
        let (b, fit) = Image::<{ Self::LEN }>::of(payload);
        let value = Self {
            enabled: b.u32(0),
            rtt_count: b.u32(4),
            rtt: b.u32(8),
            min_rtt: b.u32(12),
        };
        Decoded { value, fit }
    }
}

/// `struct tcp_dctcp_info` (`INET_DIAG_DCTCPINFO`, 16 B).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DctcpInfo {
    /// `dctcp_enabled`.
    pub enabled: u16,
    /// `dctcp_ce_state`.
    pub ce_state: u16,
    /// `dctcp_alpha`.
    pub alpha: u32,
    /// `dctcp_ab_ecn`.
    pub ab_ecn: u32,
    /// `dctcp_ab_tot`.
    pub ab_tot: u32,
}

impl DctcpInfo {
    /// Size of the struct.
    pub const LEN: usize = 16;

    /// Decodes a payload of any length.
    pub fn decode(payload: &[u8]) -> Decoded<Self> {
        let (b, fit) = Image::<{ Self::LEN }>::of(payload);
        let value = Self {
            enabled: b.u16(0),
            ce_state: b.u16(2),
            alpha: b.u32(4),
            ab_ecn: b.u32(8),
            ab_tot: b.u32(12),
        };
        Decoded { value, fit }
    }
}

/// `struct tcp_bbr_info` (`INET_DIAG_BBRINFO`, 20 B).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BbrInfo {
    /// Max-filtered bandwidth estimate (bytes/s): `bbr_bw_lo | bbr_bw_hi << 32`.
    pub bw: u64,
    /// `bbr_min_rtt` (µs).
    pub min_rtt: u32,
    /// `bbr_pacing_gain` (fixed point, << 8).
    pub pacing_gain: u32,
    /// `bbr_cwnd_gain` (fixed point, << 8).
    pub cwnd_gain: u32,
}

impl BbrInfo {
    /// Size of the kernel struct. (Upstream's Go struct is 24 B because of padding after its
    /// u64; the kernel sends 20.)
    pub const LEN: usize = 20;

    /// Decodes a payload of any length.
    pub fn decode(payload: &[u8]) -> Decoded<Self> {
        let (b, fit) = Image::<{ Self::LEN }>::of(payload);
        let value = Self {
            bw: u64::from(b.u32(0)) | u64::from(b.u32(4)) << 32,
            min_rtt: b.u32(8),
            pacing_gain: b.u32(12),
            cwnd_gain: b.u32(16),
        };
        Decoded { value, fit }
    }
}

/// `struct inet_diag_sockopt` (`INET_DIAG_SOCKOPT`): socket options as bits of a u16.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SockOpt(pub u16);

impl SockOpt {
    /// Size of the struct.
    pub const LEN: usize = 2;
    /// `IP_RECVERR`.
    pub const RECVERR: u16 = 1 << 0;
    /// The socket is a connection socket (`inet_connection_sock`).
    pub const IS_ICSK: u16 = 1 << 1;
    /// `IP_FREEBIND`.
    pub const FREEBIND: u16 = 1 << 2;
    /// `IP_HDRINCL`.
    pub const HDRINCL: u16 = 1 << 3;
    /// `IP_MULTICAST_LOOP`.
    pub const MC_LOOP: u16 = 1 << 4;
    /// `IP_TRANSPARENT`.
    pub const TRANSPARENT: u16 = 1 << 5;
    /// `IP_MULTICAST_ALL`.
    pub const MC_ALL: u16 = 1 << 6;
    /// `IP_NODEFRAG`.
    pub const NODEFRAG: u16 = 1 << 7;
    /// `IP_BIND_ADDRESS_NO_PORT`.
    pub const BIND_ADDRESS_NO_PORT: u16 = 1 << 8;
    /// `IP_RECVERR_RFC4884`.
    pub const RECVERR_RFC4884: u16 = 1 << 9;
    /// Connect deferred until the first write (`TCP_FASTOPEN_CONNECT`).
    pub const DEFER_CONNECT: u16 = 1 << 10;

    /// Decodes a payload of any length.
    pub fn decode(payload: &[u8]) -> Decoded<Self> {
        let (b, fit) = Image::<{ Self::LEN }>::of(payload);
        // Two u8 bit-field bytes, not a u16: byte 1 holds bits 8 and up whatever the host order.
        Decoded {
            value: Self(u16::from(b.u8(0)) | u16::from(b.u8(1)) << 8),
            fit,
        }
    }

    /// Whether every bit of `mask` is set.
    pub fn has(self, mask: u16) -> bool {
        self.0 & mask == mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(values: &[u32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_ne_bytes()).collect()
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(name(MEMINFO), Some("MEMINFO"));
        assert_eq!(name(INFO), Some("INFO"));
        assert_eq!(name(SKV6ONLY), Some("SKV6ONLY"));
        assert_eq!(name(PAD), Some("PAD"));
        assert_eq!(name(MARK), Some("MARK"));
        assert_eq!(name(BBRINFO), Some("BBRINFO"));
        assert_eq!(name(CLASS_ID), Some("CLASS_ID"));
        assert_eq!(name(MD5SIG), Some("MD5SIG"));
        assert_eq!(name(SK_BPF_STORAGES), Some("SK_BPF_STORAGES"));
        assert_eq!(name(SOCKOPT), Some("SOCKOPT"));
        assert_eq!(name(0), None);
        assert_eq!(name(MAX_KNOWN + 1), None);
        assert_eq!(
            (LOCALS, PEERS, ULP_INFO, CGROUP_ID, MAX_KNOWN),
            (12, 13, 19, 21, 22)
        );
    }

    #[test]
    fn fit_rule() {
        assert_eq!(Fit::of(0, 16), Fit::Short);
        assert_eq!(Fit::of(16, 16), Fit::Exact);
        assert_eq!(Fit::of(17, 16), Fit::Long);
        assert!(Fit::Short.fully_parsed() && Fit::Exact.fully_parsed());
        assert!(!Fit::Long.fully_parsed());
    }

    #[test]
    fn meminfo() {
        let p = words(&[1, 2, 3, 4]);
        let d = MemInfo::decode(&p);
        assert_eq!(
            d.value,
            MemInfo {
                rmem: 1,
                wmem: 2,
                fmem: 3,
                tmem: 4
            }
        );
        assert_eq!(d.fit, Fit::Exact);
        let short = MemInfo::decode(&p[..6]);
        assert_eq!(short.fit, Fit::Short);
        assert_eq!(short.value.rmem, 1);
        assert_eq!(
            short.value.wmem,
            u32::from(u16::from_ne_bytes([p[4], p[5]]))
        );
        assert_eq!((short.value.fmem, short.value.tmem), (0, 0));
        assert_eq!(MemInfo::decode(&[]).value, MemInfo::default());
        let mut long = p.clone();
        long.push(9);
        let d = MemInfo::decode(&long);
        assert_eq!((d.value.tmem, d.fit), (4, Fit::Long));
    }

    #[test]
    fn skmeminfo() {
        let p = words(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let d = SkMemInfo::decode(&p);
        assert_eq!(d.fit, Fit::Exact);
        let v = d.value;
        assert_eq!(
            [
                v.rmem_alloc,
                v.rcvbuf,
                v.wmem_alloc,
                v.sndbuf,
                v.fwd_alloc,
                v.wmem_queued,
                v.optmem,
                v.backlog,
                v.drops
            ],
            [1, 2, 3, 4, 5, 6, 7, 8, 9]
        );
        let d = SkMemInfo::decode(&p[..32]);
        assert_eq!((d.value.backlog, d.value.drops, d.fit), (8, 0, Fit::Short));
        assert_eq!(SkMemInfo::decode(&[]).value, SkMemInfo::default());
        let d = SkMemInfo::decode(&words(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
        assert_eq!((d.value.drops, d.fit), (9, Fit::Long));
    }

    #[test]
    fn vegas_and_dctcp() {
        let d = VegasInfo::decode(&words(&[1, 20, 300, 40]));
        assert_eq!(
            d.value,
            VegasInfo {
                enabled: 1,
                rtt_count: 20,
                rtt: 300,
                min_rtt: 40
            }
        );
        let d = VegasInfo::decode(&words(&[1, 20]));
        assert_eq!((d.value.rtt_count, d.value.rtt, d.fit), (20, 0, Fit::Short));
        assert_eq!(VegasInfo::decode(&[]).value, VegasInfo::default());
        assert_eq!(VegasInfo::decode(&[0; 17]).fit, Fit::Long);

        let mut p = Vec::new();
        p.extend(1u16.to_ne_bytes());
        p.extend(2u16.to_ne_bytes());
        p.extend(words(&[1024, 5, 6]));
        let d = DctcpInfo::decode(&p);
        assert_eq!(
            d.value,
            DctcpInfo {
                enabled: 1,
                ce_state: 2,
                alpha: 1024,
                ab_ecn: 5,
                ab_tot: 6
            }
        );
        assert_eq!(d.fit, Fit::Exact);
        let d = DctcpInfo::decode(&p[..4]);
        assert_eq!((d.value.ce_state, d.value.alpha, d.fit), (2, 0, Fit::Short));
        assert_eq!(DctcpInfo::decode(&[]).value, DctcpInfo::default());
        assert_eq!(DctcpInfo::decode(&[0; 20]).fit, Fit::Long);
    }

    #[test]
    fn bbr_bandwidth_halves() {
        let d = BbrInfo::decode(&words(&[0x89AB_CDEF, 0x0123_4567, 10, 256, 512]));
        assert_eq!(d.fit, Fit::Exact);
        assert_eq!(d.value.bw, 0x0123_4567_89AB_CDEF);
        assert_eq!(
            (d.value.min_rtt, d.value.pacing_gain, d.value.cwnd_gain),
            (10, 256, 512)
        );
        // Upstream's 24-byte Go struct would call this exact; it is longer than the kernel's.
        assert_eq!(BbrInfo::decode(&[0; 24]).fit, Fit::Long);
        let d = BbrInfo::decode(&words(&[7]));
        assert_eq!((d.value.bw, d.value.cwnd_gain, d.fit), (7, 0, Fit::Short));
        assert_eq!(BbrInfo::decode(&[]).value, BbrInfo::default());
    }

    #[test]
    fn congestion_name() {
        assert_eq!(decode_congestion(b"cubic\0"), "cubic");
        assert_eq!(decode_congestion(b"bbr"), "bbr", "no NUL: nothing stripped");
        assert_eq!(decode_congestion(b"x\0\0"), "x\0", "only one NUL stripped");
        assert_eq!(
            decode_congestion(b""),
            "",
            "empty payload must not panic (D6)"
        );
        assert_eq!(decode_congestion(b"\0"), "");
        assert_eq!(decode_congestion(b"a\xFFb\0"), "a\u{FFFD}b");
    }

    #[test]
    fn small_integers() {
        assert_eq!(
            decode_u8(&[0x10]),
            Decoded {
                value: 0x10,
                fit: Fit::Exact
            }
        );
        assert_eq!(
            decode_u8(&[]),
            Decoded {
                value: 0,
                fit: Fit::Short
            }
        );
        assert_eq!(
            decode_u8(&[3, 4]),
            Decoded {
                value: 3,
                fit: Fit::Long
            }
        );

        let id = 0x0010_0001u32;
        let d = decode_class_id(&id.to_ne_bytes());
        assert_eq!((d.value, d.fit), (id, Fit::Exact), "full u32 (D6)");
        assert_eq!(decode_class_id(&[5]).value, 5);
        assert_eq!(decode_class_id(&[5]).fit, Fit::Short);
        assert_eq!(decode_class_id(&[0; 5]).fit, Fit::Long);
        assert_eq!(decode_class_id(&[]).value, 0);

        let cg = 0x0000_0001_0000_2345u64;
        let d = decode_cgroup_id(&cg.to_ne_bytes());
        assert_eq!((d.value, d.fit), (cg, Fit::Exact));
        assert_eq!(decode_cgroup_id(&[]).fit, Fit::Short);
        assert_eq!(decode_cgroup_id(&[0; 12]).fit, Fit::Long);

        assert_eq!(decode_mark(&7u32.to_ne_bytes()), Some(7));
        assert_eq!(decode_mark(&[1, 2, 3]), None);
        assert_eq!(decode_mark(&[0; 8]), None);
        assert_eq!(decode_mark(&[]), None);
    }

    #[test]
    fn sockopt_bits() {
        // Byte 0 holds recverr..nodefrag (LSB first), byte 1 bind_address_no_port.. .
        let d = SockOpt::decode(&[0b0000_0110, 0b0000_0101]);
        assert_eq!(d.fit, Fit::Exact);
        let o = d.value;
        assert!(o.has(SockOpt::IS_ICSK) && o.has(SockOpt::FREEBIND));
        assert!(!o.has(SockOpt::RECVERR) && !o.has(SockOpt::NODEFRAG));
        assert!(o.has(SockOpt::BIND_ADDRESS_NO_PORT) && o.has(SockOpt::DEFER_CONNECT));
        assert!(!o.has(SockOpt::RECVERR_RFC4884));
        assert_eq!(SockOpt::decode(&[0x80]).value, SockOpt(SockOpt::NODEFRAG));
        assert_eq!(SockOpt::decode(&[0x80]).fit, Fit::Short);
        assert_eq!(SockOpt::decode(&[0; 4]).fit, Fit::Long);
    }
}
