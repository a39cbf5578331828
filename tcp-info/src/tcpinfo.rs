//! `struct tcp_info`, the payload of `INET_DIAG_INFO` (SPEC §4.3), up to the Linux 6.18 layout.
//!
//! The kernel appends fields release after release, so the payload length says which kernel
//! wrote it: 168 B (≈4.9), 192, 200, 224 (4.19), 232 (≈5.4, the upstream Go struct), 248 (≈6.7),
//! 280 (6.18, Accurate ECN counters). [`TcpInfo::decode`] accepts any length: a shorter payload is
//! zero-filled (the original length is kept in [`TcpInfo::len`]), a longer one keeps its
//! unknown trailing bytes in [`TcpInfo::extra`].
//!
//! The 6.18 tail (offsets 248–279) was checked against the kernel's `include/uapi/linux/tcp.h`
//! as merged with the Accurate ECN series (net-next, September 2025) and its selftests:
//! seven `__u32` Accurate ECN counters from 248, then `__u16 tcpi_accecn_fail_mode` at 276 and
//! `__u16 tcpi_accecn_opt_seen` at 278. A later net-next series (posted January 2026, not in
//! 6.18) repacks bytes 276–279 as one `__u32` of bit-fields (`tcpi_ecn_mode:2`,
//! `tcpi_accecn_opt_seen:2`, `tcpi_accecn_fail_mode:4`, `tcpi_options2:24`); both layouts are
//! 280 B long, so the decoder cannot tell them apart and follows 6.18.
//!
//! Fields are read in host byte order, as the kernel writes them (every M-Lab host is
//! little-endian).

use crate::wire::attr::Image;
use std::ops::Range;

/// Size of the newest layout known here (Linux 6.18).
pub const LEN: usize = 280;
/// Size of upstream's Go `LinuxTCPInfo` (ends with `snd_wnd`); csvtool's columns stop there.
pub const UPSTREAM_GO_LEN: usize = 232;

/// Byte offsets of the fields (SPEC §4.3).
pub mod offset {
    /// `tcpi_state` (u8).
    pub const STATE: usize = 0;
    /// `tcpi_ca_state` (u8).
    pub const CA_STATE: usize = 1;
    /// `tcpi_retransmits` (u8).
    pub const RETRANSMITS: usize = 2;
    /// `tcpi_probes` (u8).
    pub const PROBES: usize = 3;
    /// `tcpi_backoff` (u8).
    pub const BACKOFF: usize = 4;
    /// `tcpi_options` (u8).
    pub const OPTIONS: usize = 5;
    /// `tcpi_snd_wscale:4, tcpi_rcv_wscale:4` (one byte).
    pub const WSCALE: usize = 6;
    /// `tcpi_delivery_rate_app_limited:1, tcpi_fastopen_client_fail:2` (one byte).
    pub const APP_LIMITED: usize = 7;
    /// `tcpi_rto`.
    pub const RTO: usize = 8;
    /// `tcpi_ato`.
    pub const ATO: usize = 12;
    /// `tcpi_snd_mss`.
    pub const SND_MSS: usize = 16;
    /// `tcpi_rcv_mss`.
    pub const RCV_MSS: usize = 20;
    /// `tcpi_unacked`.
    pub const UNACKED: usize = 24;
    /// `tcpi_sacked`.
    pub const SACKED: usize = 28;
    /// `tcpi_lost`.
    pub const LOST: usize = 32;
    /// `tcpi_retrans`.
    pub const RETRANS: usize = 36;
    /// `tcpi_fackets`.
    pub const FACKETS: usize = 40;
    /// `tcpi_last_data_sent`.
    pub const LAST_DATA_SENT: usize = 44;
    /// `tcpi_last_ack_sent`.
    pub const LAST_ACK_SENT: usize = 48;
    /// `tcpi_last_data_recv`.
    pub const LAST_DATA_RECV: usize = 52;
    /// `tcpi_last_ack_recv`.
    pub const LAST_ACK_RECV: usize = 56;
    /// `tcpi_pmtu`.
    pub const PMTU: usize = 60;
    /// `tcpi_rcv_ssthresh`.
    pub const RCV_SSTHRESH: usize = 64;
    /// `tcpi_rtt` (µs).
    pub const RTT: usize = 68;
    /// `tcpi_rttvar` (µs).
    pub const RTTVAR: usize = 72;
    /// `tcpi_snd_ssthresh`.
    pub const SND_SSTHRESH: usize = 76;
    /// `tcpi_snd_cwnd`.
    pub const SND_CWND: usize = 80;
    /// `tcpi_advmss`.
    pub const ADVMSS: usize = 84;
    /// `tcpi_reordering`.
    pub const REORDERING: usize = 88;
    /// `tcpi_rcv_rtt`.
    pub const RCV_RTT: usize = 92;
    /// `tcpi_rcv_space`.
    pub const RCV_SPACE: usize = 96;
    /// `tcpi_total_retrans`.
    pub const TOTAL_RETRANS: usize = 100;
    /// `tcpi_pacing_rate` (u64).
    pub const PACING_RATE: usize = 104;
    /// `tcpi_max_pacing_rate` (u64).
    pub const MAX_PACING_RATE: usize = 112;
    /// `tcpi_bytes_acked` (u64).
    pub const BYTES_ACKED: usize = 120;
    /// `tcpi_bytes_received` (u64).
    pub const BYTES_RECEIVED: usize = 128;
    /// `tcpi_segs_out`.
    pub const SEGS_OUT: usize = 136;
    /// `tcpi_segs_in`.
    pub const SEGS_IN: usize = 140;
    /// `tcpi_notsent_bytes`.
    pub const NOTSENT_BYTES: usize = 144;
    /// `tcpi_min_rtt`.
    pub const MIN_RTT: usize = 148;
    /// `tcpi_data_segs_in`.
    pub const DATA_SEGS_IN: usize = 152;
    /// `tcpi_data_segs_out`.
    pub const DATA_SEGS_OUT: usize = 156;
    /// `tcpi_delivery_rate` (u64).
    pub const DELIVERY_RATE: usize = 160;
    /// `tcpi_busy_time` (u64, µs).
    pub const BUSY_TIME: usize = 168;
    /// `tcpi_rwnd_limited` (u64, µs).
    pub const RWND_LIMITED: usize = 176;
    /// `tcpi_sndbuf_limited` (u64, µs).
    pub const SNDBUF_LIMITED: usize = 184;
    /// `tcpi_delivered`.
    pub const DELIVERED: usize = 192;
    /// `tcpi_delivered_ce`.
    pub const DELIVERED_CE: usize = 196;
    /// `tcpi_bytes_sent` (u64).
    pub const BYTES_SENT: usize = 200;
    /// `tcpi_bytes_retrans` (u64).
    pub const BYTES_RETRANS: usize = 208;
    /// `tcpi_dsack_dups`.
    pub const DSACK_DUPS: usize = 216;
    /// `tcpi_reord_seen`.
    pub const REORD_SEEN: usize = 220;
    /// `tcpi_rcv_ooopack`.
    pub const RCV_OOOPACK: usize = 224;
    /// `tcpi_snd_wnd`.
    pub const SND_WND: usize = 228;
    /// `tcpi_rcv_wnd`.
    pub const RCV_WND: usize = 232;
    /// `tcpi_rehash`.
    pub const REHASH: usize = 236;
    /// `tcpi_total_rto` (u16).
    pub const TOTAL_RTO: usize = 240;
    /// `tcpi_total_rto_recoveries` (u16).
    pub const TOTAL_RTO_RECOVERIES: usize = 242;
    /// `tcpi_total_rto_time` (ms).
    pub const TOTAL_RTO_TIME: usize = 244;
    /// `tcpi_received_ce` (6.18).
    pub const RECEIVED_CE: usize = 248;
    /// `tcpi_delivered_e1_bytes` (6.18).
    pub const DELIVERED_E1_BYTES: usize = 252;
    /// `tcpi_delivered_e0_bytes` (6.18).
    pub const DELIVERED_E0_BYTES: usize = 256;
    /// `tcpi_delivered_ce_bytes` (6.18).
    pub const DELIVERED_CE_BYTES: usize = 260;
    /// `tcpi_received_e1_bytes` (6.18).
    pub const RECEIVED_E1_BYTES: usize = 264;
    /// `tcpi_received_e0_bytes` (6.18).
    pub const RECEIVED_E0_BYTES: usize = 268;
    /// `tcpi_received_ce_bytes` (6.18).
    pub const RECEIVED_CE_BYTES: usize = 272;
    /// `tcpi_accecn_fail_mode` (u16, 6.18).
    pub const ACCECN_FAIL_MODE: usize = 276;
    /// `tcpi_accecn_opt_seen` (u16, 6.18).
    pub const ACCECN_OPT_SEEN: usize = 278;
}

pub use offset::{BYTES_ACKED, BYTES_RECEIVED, BYTES_SENT};

/// Bytes compared by change detection: state, options and the early counters (SPEC §6.2 rule 6).
pub const COMPARED_HEAD: Range<usize> = 0..44;
/// The `last_*` timers, which change on almost every poll and are ignored by change detection.
pub const IGNORED_TIMERS: Range<usize> = 44..60;
/// Bytes compared by change detection: `pmtu` through `delivery_rate` (SPEC §6.2 rule 5).
pub const COMPARED_COUNTERS: Range<usize> = 60..168;

/// Bits of `tcpi_options`.
pub mod options {
    /// Timestamps negotiated.
    pub const TIMESTAMPS: u8 = 1;
    /// SACK negotiated.
    pub const SACK: u8 = 2;
    /// Window scaling negotiated.
    pub const WSCALE: u8 = 4;
    /// ECN negotiated.
    pub const ECN: u8 = 8;
    /// At least one ECT packet received.
    pub const ECN_SEEN: u8 = 16;
    /// SYN-ACK acknowledged data in the SYN.
    pub const SYN_DATA: u8 = 32;
    /// Microsecond timestamps (new kernels).
    pub const USEC_TS: u8 = 64;
    /// Child socket created from a Fast Open SYN (new kernels).
    pub const TFO_CHILD: u8 = 128;
}

/// A `u32` field read straight from a payload, or `None` if the payload ends before it.
pub use crate::wire::netlink::u32_at as field_u32;
/// A `u64` field read straight from a payload, or `None` if the payload ends before it (the
/// cheap path for hot loops that need one counter, e.g. `bytes_sent` for rate metrics).
pub use crate::wire::netlink::u64_at as field_u64;

/// A decoded `struct tcp_info`. Field names are the kernel's without the `tcpi_` prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// Length of the payload this was decoded from. Fields ending beyond it read as zero.
    pub len: usize,
    /// Bytes beyond [`LEN`] that a newer kernel sent and this decoder does not know.
    pub extra: Vec<u8>,

    /// TCP state (SPEC §4.2).
    pub state: u8,
    /// Congestion-avoidance state (`TCP_CA_*`).
    pub ca_state: u8,
    /// RTO retransmissions at the current sequence.
    pub retransmits: u8,
    /// Unanswered zero-window probes.
    pub probes: u8,
    /// RTO backoff exponent.
    pub backoff: u8,
    /// Bit set of [`options`].
    pub options: u8,
    /// The raw byte: `snd_wscale` in the low nibble, `rcv_wscale` in the high nibble.
    pub wscale: u8,
    /// The raw byte: bit 0 `delivery_rate_app_limited`, bits 1–2 `fastopen_client_fail`.
    pub app_limited: u8,

    /// Retransmission timeout (µs).
    pub rto: u32,
    /// Delayed-ACK timeout (µs).
    pub ato: u32,
    /// Send MSS.
    pub snd_mss: u32,
    /// Receive MSS estimate.
    pub rcv_mss: u32,
    /// Packets sent but not yet acknowledged.
    pub unacked: u32,
    /// Selectively acknowledged packets.
    pub sacked: u32,
    /// Packets presumed lost.
    pub lost: u32,
    /// Retransmitted packets in flight.
    pub retrans: u32,
    /// Forward-acknowledged packets (always 0 on modern kernels).
    pub fackets: u32,

    /// Time since the last data sent (ms).
    pub last_data_sent: u32,
    /// Time since the last ACK sent (ms; not tracked, 0).
    pub last_ack_sent: u32,
    /// Time since the last data received (ms).
    pub last_data_recv: u32,
    /// Time since the last ACK received (ms).
    pub last_ack_recv: u32,

    /// Path MTU.
    pub pmtu: u32,
    /// Receive slow-start threshold.
    pub rcv_ssthresh: u32,
    /// Smoothed RTT (µs).
    pub rtt: u32,
    /// RTT variance (µs).
    pub rttvar: u32,
    /// Send slow-start threshold.
    pub snd_ssthresh: u32,
    /// Congestion window (packets).
    pub snd_cwnd: u32,
    /// Advertised MSS.
    pub advmss: u32,
    /// Reordering metric.
    pub reordering: u32,
    /// Receiver-side RTT estimate (µs).
    pub rcv_rtt: u32,
    /// Receive-buffer auto-tuning space.
    pub rcv_space: u32,
    /// Total retransmitted packets.
    pub total_retrans: u32,

    /// Pacing rate (bytes/s; `u64::MAX` = unlimited).
    pub pacing_rate: u64,
    /// Maximum pacing rate (bytes/s; `u64::MAX` = unlimited).
    pub max_pacing_rate: u64,
    /// Bytes acknowledged (RFC 4898 tcpEStatsAppHCThruOctetsAcked).
    pub bytes_acked: u64,
    /// Bytes received (RFC 4898 tcpEStatsAppHCThruOctetsReceived).
    pub bytes_received: u64,
    /// Segments sent.
    pub segs_out: u32,
    /// Segments received.
    pub segs_in: u32,
    /// Bytes queued but not yet sent.
    pub notsent_bytes: u32,
    /// Minimum RTT seen (µs).
    pub min_rtt: u32,
    /// Data segments received.
    pub data_segs_in: u32,
    /// Data segments sent.
    pub data_segs_out: u32,
    /// Delivery-rate estimate (bytes/s).
    pub delivery_rate: u64,

    /// Time busy sending data (µs).
    pub busy_time: u64,
    /// Time limited by the receive window (µs).
    pub rwnd_limited: u64,
    /// Time limited by the send buffer (µs).
    pub sndbuf_limited: u64,
    /// Packets delivered, retransmissions included.
    pub delivered: u32,
    /// Delivered packets that were CE-marked.
    pub delivered_ce: u32,
    /// Bytes sent, retransmissions included (RFC 4898 tcpEStatsPerfHCDataOctetsOut).
    pub bytes_sent: u64,
    /// Bytes retransmitted.
    pub bytes_retrans: u64,
    /// Duplicate segments reported by DSACK.
    pub dsack_dups: u32,
    /// Reordering events seen.
    pub reord_seen: u32,
    /// Out-of-order packets received.
    pub rcv_ooopack: u32,
    /// Peer's advertised receive window after scaling (bytes).
    pub snd_wnd: u32,

    /// Local advertised receive window after scaling (bytes).
    pub rcv_wnd: u32,
    /// PLB or timeout-triggered rehash attempts.
    pub rehash: u32,
    /// RTO timeouts, including SYN/SYN-ACK and recurring ones.
    pub total_rto: u16,
    /// RTO recoveries entered.
    pub total_rto_recoveries: u16,
    /// Time spent in RTO recovery (ms).
    pub total_rto_time: u32,

    /// CE-marked segments received (Accurate ECN, 6.18).
    pub received_ce: u32,
    /// Accurate ECN byte counter: ECT(1) bytes delivered.
    pub delivered_e1_bytes: u32,
    /// Accurate ECN byte counter: ECT(0) bytes delivered.
    pub delivered_e0_bytes: u32,
    /// Accurate ECN byte counter: CE bytes delivered.
    pub delivered_ce_bytes: u32,
    /// Accurate ECN byte counter: ECT(1) bytes received.
    pub received_e1_bytes: u32,
    /// Accurate ECN byte counter: ECT(0) bytes received.
    pub received_e0_bytes: u32,
    /// Accurate ECN byte counter: CE bytes received.
    pub received_ce_bytes: u32,
    /// Accurate ECN failure-mode bits (6.18).
    pub accecn_fail_mode: u16,
    /// Which Accurate ECN option was seen (6.18).
    pub accecn_opt_seen: u16,
}

impl TcpInfo {
    /// Decodes a payload of any length; never fails (see the module docs).
    pub fn decode(payload: &[u8]) -> Self {
        use offset as o;
        let (f, _) = Image::<LEN>::of(payload);
        Self {
            len: payload.len(),
            extra: payload.get(LEN..).unwrap_or_default().to_vec(),
            state: f.u8(o::STATE),
            ca_state: f.u8(o::CA_STATE),
            retransmits: f.u8(o::RETRANSMITS),
            probes: f.u8(o::PROBES),
            backoff: f.u8(o::BACKOFF),
            options: f.u8(o::OPTIONS),
            wscale: f.u8(o::WSCALE),
            app_limited: f.u8(o::APP_LIMITED),
            rto: f.u32(o::RTO),
            ato: f.u32(o::ATO),
            snd_mss: f.u32(o::SND_MSS),
            rcv_mss: f.u32(o::RCV_MSS),
            unacked: f.u32(o::UNACKED),
            sacked: f.u32(o::SACKED),
            lost: f.u32(o::LOST),
            retrans: f.u32(o::RETRANS),
            fackets: f.u32(o::FACKETS),
            last_data_sent: f.u32(o::LAST_DATA_SENT),
            last_ack_sent: f.u32(o::LAST_ACK_SENT),
            last_data_recv: f.u32(o::LAST_DATA_RECV),
            last_ack_recv: f.u32(o::LAST_ACK_RECV),
            pmtu: f.u32(o::PMTU),
            rcv_ssthresh: f.u32(o::RCV_SSTHRESH),
            rtt: f.u32(o::RTT),
            rttvar: f.u32(o::RTTVAR),
            snd_ssthresh: f.u32(o::SND_SSTHRESH),
            snd_cwnd: f.u32(o::SND_CWND),
            advmss: f.u32(o::ADVMSS),
            reordering: f.u32(o::REORDERING),
            rcv_rtt: f.u32(o::RCV_RTT),
            rcv_space: f.u32(o::RCV_SPACE),
            total_retrans: f.u32(o::TOTAL_RETRANS),
            pacing_rate: f.u64(o::PACING_RATE),
            max_pacing_rate: f.u64(o::MAX_PACING_RATE),
            bytes_acked: f.u64(o::BYTES_ACKED),
            bytes_received: f.u64(o::BYTES_RECEIVED),
            segs_out: f.u32(o::SEGS_OUT),
            segs_in: f.u32(o::SEGS_IN),
            notsent_bytes: f.u32(o::NOTSENT_BYTES),
            min_rtt: f.u32(o::MIN_RTT),
            data_segs_in: f.u32(o::DATA_SEGS_IN),
            data_segs_out: f.u32(o::DATA_SEGS_OUT),
            delivery_rate: f.u64(o::DELIVERY_RATE),
            busy_time: f.u64(o::BUSY_TIME),
            rwnd_limited: f.u64(o::RWND_LIMITED),
            sndbuf_limited: f.u64(o::SNDBUF_LIMITED),
            delivered: f.u32(o::DELIVERED),
            delivered_ce: f.u32(o::DELIVERED_CE),
            bytes_sent: f.u64(o::BYTES_SENT),
            bytes_retrans: f.u64(o::BYTES_RETRANS),
            dsack_dups: f.u32(o::DSACK_DUPS),
            reord_seen: f.u32(o::REORD_SEEN),
            rcv_ooopack: f.u32(o::RCV_OOOPACK),
            snd_wnd: f.u32(o::SND_WND),
            rcv_wnd: f.u32(o::RCV_WND),
            rehash: f.u32(o::REHASH),
            total_rto: f.u16(o::TOTAL_RTO),
            total_rto_recoveries: f.u16(o::TOTAL_RTO_RECOVERIES),
            total_rto_time: f.u32(o::TOTAL_RTO_TIME),
            received_ce: f.u32(o::RECEIVED_CE),
            delivered_e1_bytes: f.u32(o::DELIVERED_E1_BYTES),
            delivered_e0_bytes: f.u32(o::DELIVERED_E0_BYTES),
            delivered_ce_bytes: f.u32(o::DELIVERED_CE_BYTES),
            received_e1_bytes: f.u32(o::RECEIVED_E1_BYTES),
            received_e0_bytes: f.u32(o::RECEIVED_E0_BYTES),
            received_ce_bytes: f.u32(o::RECEIVED_CE_BYTES),
            accecn_fail_mode: f.u16(o::ACCECN_FAIL_MODE),
            accecn_opt_seen: f.u16(o::ACCECN_OPT_SEEN),
        }
    }

    /// Whether the original payload was long enough to hold a field ending at byte `end`
    /// (e.g. `covers(BYTES_SENT + 8)`); shorter payloads read such fields as zero.
    pub fn covers(&self, end: usize) -> bool {
        self.len >= end
    }

    /// `tcpi_snd_wscale`: the low nibble of byte 6 (D6: upstream exposes the byte unsplit).
    pub fn snd_wscale(&self) -> u8 {
        self.wscale & 0x0F
    }

    /// `tcpi_rcv_wscale`: the high nibble of byte 6.
    pub fn rcv_wscale(&self) -> u8 {
        self.wscale >> 4
    }

    /// `tcpi_delivery_rate_app_limited`: bit 0 of byte 7.
    pub fn delivery_rate_app_limited(&self) -> bool {
        self.app_limited & 1 != 0
    }

    /// `tcpi_fastopen_client_fail` (Linux ≥ 5.5): bits 1–2 of byte 7.
    pub fn fastopen_client_fail(&self) -> u8 {
        (self.app_limited >> 1) & 0b11
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 280-byte payload where every field holds a distinct value derived from its offset.
    fn full_payload() -> Vec<u8> {
        let mut p = vec![0u8; LEN];
        for (i, b) in p.iter_mut().enumerate().take(8) {
            *b = 0x10 + i as u8;
        }
        let mut put32 = |at: usize, v: u32| p[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        for at in (8..104).step_by(4) {
            put32(at, 1000 + at as u32);
        }
        for at in [
            136, 140, 144, 148, 152, 156, 192, 196, 216, 220, 224, 228, 232, 236,
        ] {
            put32(at, 1000 + at as u32);
        }
        for at in [244, 248, 252, 256, 260, 264, 268, 272] {
            put32(at, 1000 + at as u32);
        }
        for at in [104, 112, 120, 128, 160, 168, 176, 184, 200, 208] {
            p[at..at + 8].copy_from_slice(&(0x1_0000_0000_u64 * at as u64 + 7).to_ne_bytes());
        }
        for at in [240, 242, 276, 278] {
            p[at..at + 2].copy_from_slice(&(2000 + at as u16).to_ne_bytes());
        }
        p
    }

    #[test]
    fn full_layout_every_field() {
        let t = TcpInfo::decode(&full_payload());
        assert_eq!(t.len, 280);
        assert!(t.extra.is_empty());
        assert_eq!(
            [
                t.state,
                t.ca_state,
                t.retransmits,
                t.probes,
                t.backoff,
                t.options,
                t.wscale,
                t.app_limited
            ],
            [0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17]
        );
        let u32s = [
            (t.rto, 8),
            (t.ato, 12),
            (t.snd_mss, 16),
            (t.rcv_mss, 20),
            (t.unacked, 24),
            (t.sacked, 28),
            (t.lost, 32),
            (t.retrans, 36),
            (t.fackets, 40),
            (t.last_data_sent, 44),
            (t.last_ack_sent, 48),
            (t.last_data_recv, 52),
            (t.last_ack_recv, 56),
            (t.pmtu, 60),
            (t.rcv_ssthresh, 64),
            (t.rtt, 68),
            (t.rttvar, 72),
            (t.snd_ssthresh, 76),
            (t.snd_cwnd, 80),
            (t.advmss, 84),
            (t.reordering, 88),
            (t.rcv_rtt, 92),
            (t.rcv_space, 96),
            (t.total_retrans, 100),
            (t.segs_out, 136),
            (t.segs_in, 140),
            (t.notsent_bytes, 144),
            (t.min_rtt, 148),
            (t.data_segs_in, 152),
            (t.data_segs_out, 156),
            (t.delivered, 192),
            (t.delivered_ce, 196),
            (t.dsack_dups, 216),
            (t.reord_seen, 220),
            (t.rcv_ooopack, 224),
            (t.snd_wnd, 228),
            (t.rcv_wnd, 232),
            (t.rehash, 236),
            (t.total_rto_time, 244),
            (t.received_ce, 248),
            (t.delivered_e1_bytes, 252),
            (t.delivered_e0_bytes, 256),
            (t.delivered_ce_bytes, 260),
            (t.received_e1_bytes, 264),
            (t.received_e0_bytes, 268),
            (t.received_ce_bytes, 272),
        ];
        for (value, at) in u32s {
            assert_eq!(value, 1000 + at, "u32 at {at}");
        }
        let u64s = [
            (t.pacing_rate, 104),
            (t.max_pacing_rate, 112),
            (t.bytes_acked, 120),
            (t.bytes_received, 128),
            (t.delivery_rate, 160),
            (t.busy_time, 168),
            (t.rwnd_limited, 176),
            (t.sndbuf_limited, 184),
            (t.bytes_sent, 200),
            (t.bytes_retrans, 208),
        ];
        for (value, at) in u64s {
            assert_eq!(value, 0x1_0000_0000 * at + 7, "u64 at {at}");
        }
        let u16s = [
            (t.total_rto, 240),
            (t.total_rto_recoveries, 242),
            (t.accecn_fail_mode, 276),
            (t.accecn_opt_seen, 278),
        ];
        for (value, at) in u16s {
            assert_eq!(value, 2000 + at, "u16 at {at}");
        }
    }

    #[test]
    fn lengths_zero_fill_and_keep_extra() {
        let full = full_payload();
        let whole = TcpInfo::decode(&full);
        for n in [0, 168, 224, 232, 280] {
            let t = TcpInfo::decode(&full[..n]);
            assert_eq!(t.len, n);
            assert!(t.extra.is_empty());
            // Each field is either the full decode's value (inside the payload) or zero.
            assert_eq!(t.state, if n > 0 { whole.state } else { 0 });
            assert_eq!(
                t.delivery_rate,
                if n >= 168 { whole.delivery_rate } else { 0 }
            );
            assert_eq!(t.bytes_sent, if n >= 208 { whole.bytes_sent } else { 0 });
            assert_eq!(t.snd_wnd, if n >= 232 { whole.snd_wnd } else { 0 });
            assert_eq!(t.rcv_wnd, if n >= 236 { whole.rcv_wnd } else { 0 });
            assert_eq!(
                t.accecn_opt_seen,
                if n >= 280 { whole.accecn_opt_seen } else { 0 }
            );
            assert_eq!(t.covers(BYTES_SENT + 8), n >= 208);
        }
        assert_eq!(TcpInfo::decode(&[]), TcpInfo::default());

        let mut longer = full.clone();
        longer.extend(1..=20u8);
        let t = TcpInfo::decode(&longer);
        assert_eq!(t.len, 300);
        assert_eq!(t.extra, (1..=20u8).collect::<Vec<_>>());
        assert_eq!(
            TcpInfo {
                len: 280,
                extra: Vec::new(),
                ..t
            },
            whole
        );
    }

    #[test]
    fn partial_field_at_the_cut_reads_its_present_bytes() {
        // A payload cut inside a field (not a real kernel length) keeps the bytes it has.
        let full = full_payload();
        let t = TcpInfo::decode(&full[..202]);
        let expected = u64::from_ne_bytes([full[200], full[201], 0, 0, 0, 0, 0, 0]);
        assert_eq!(t.bytes_sent, expected);
        assert!(!t.covers(BYTES_SENT + 8));
    }

    #[test]
    fn wscale_and_app_limited_split() {
        let mut p = [0u8; 8];
        p[offset::WSCALE] = 0x97; // rcv 9, snd 7
        p[offset::APP_LIMITED] = 0b101; // app limited, fastopen_client_fail = 2
        let t = TcpInfo::decode(&p);
        assert_eq!((t.snd_wscale(), t.rcv_wscale()), (7, 9));
        assert!(t.delivery_rate_app_limited());
        assert_eq!(t.fastopen_client_fail(), 2);
        p[offset::APP_LIMITED] = 0b110;
        let t = TcpInfo::decode(&p);
        assert!(!t.delivery_rate_app_limited());
        assert_eq!(t.fastopen_client_fail(), 3);
    }

    #[test]
    fn direct_field_reads() {
        let full = full_payload();
        assert_eq!(field_u64(&full, BYTES_SENT), Some(0x1_0000_0000 * 200 + 7));
        assert_eq!(field_u64(&full[..207], BYTES_SENT), None);
        assert_eq!(field_u64(&full, usize::MAX - 2), None);
        assert_eq!(field_u32(&full, offset::SND_WND), Some(1228));
        assert_eq!(field_u32(&full[..231], offset::SND_WND), None);
    }

    #[test]
    fn public_offsets_and_ranges() {
        assert_eq!((BYTES_ACKED, BYTES_RECEIVED, BYTES_SENT), (120, 128, 200));
        assert_eq!(COMPARED_HEAD, 0..44);
        assert_eq!(IGNORED_TIMERS, 44..60);
        assert_eq!(COMPARED_COUNTERS, 60..168);
        assert_eq!(offset::ACCECN_OPT_SEEN + 2, LEN);
        assert_eq!(offset::SND_WND + 4, UPSTREAM_GO_LEN);
    }
}
