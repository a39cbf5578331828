//! The values behind the picture: one point per record with `tcp_info`.

use std::net::{IpAddr, SocketAddr};

use super::PlotError;
use crate::record::{ArchivalRecord, Timestamp};
use crate::tcpinfo::{TcpInfo, offset};
use crate::wire::attr;
use crate::wire::inet_diag::{InetDiagMsg, state_name};

/// `TCP_INFINITE_SSTHRESH`: the kernel's `snd_ssthresh` until the first loss. Values from it up
/// are not plotted.
pub const INFINITE_SSTHRESH: u32 = 0x7fff_ffff;

/// The series of one connection, ready to draw: index `i` of every `Vec` except
/// [`Series::states`] is the `i`-th record carrying `tcp_info`, in the order given.
///
/// Times are seconds since the connection's first snapshot record in the records given (its
/// wall-clock time is [`Series::start`]). A rate is `None` at the first point, where the
/// previous point's timestamp is not earlier, where the counter went backwards, or where the
/// payload is too short to hold the counter (kernels before 4.1 for `bytes_acked`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// `Metadata.UUID`, when the records include a Metadata line.
    pub uuid: Option<String>,
    /// The socket cookie from the first snapshot's RawIDM.
    pub cookie: u64,
    /// The local end (address as the family says, v4-mapped shown as IPv4), from the first
    /// snapshot.
    pub local: Option<SocketAddr>,
    /// The remote end, from the first snapshot.
    pub remote: Option<SocketAddr>,
    /// Wall-clock time of `t = 0`: the first snapshot's timestamp.
    pub start: Timestamp,
    /// Seconds from the first snapshot to the last (lines without `tcp_info` included).
    pub duration_s: f64,
    /// Snapshot records seen (with or without `tcp_info`; Metadata lines excluded).
    pub snapshots: usize,
    /// Time of each point (s since [`Series::start`]).
    pub times_s: Vec<f64>,
    /// Sending rate: Δ`bytes_acked`·8/Δt since the previous point (Mbit/s).
    pub send_mbps: Vec<Option<f64>>,
    /// Receiving rate: Δ`bytes_received`·8/Δt since the previous point (Mbit/s).
    pub recv_mbps: Vec<Option<f64>>,
    /// The kernel's `delivery_rate` (Mbit/s); `None` when the payload ends before it.
    pub delivery_mbps: Vec<Option<f64>>,
    /// Smoothed RTT, `tcpi_rtt` (ms).
    pub rtt_ms: Vec<f64>,
    /// RTT variation, `tcpi_rttvar` (ms).
    pub rttvar_ms: Vec<f64>,
    /// `tcpi_min_rtt` (ms); `None` when the payload ends before it or no sample exists yet
    /// (`u32::MAX`).
    pub min_rtt_ms: Vec<Option<f64>>,
    /// `tcpi_snd_cwnd` (segments).
    pub snd_cwnd: Vec<f64>,
    /// `tcpi_snd_ssthresh` (segments); `None` while "infinite" ([`INFINITE_SSTHRESH`]).
    pub snd_ssthresh: Vec<Option<f64>>,
    /// `tcpi_total_retrans`: retransmitted segments since the start (cumulative).
    pub total_retrans: Vec<f64>,
    /// `tcpi_lost`: segments currently presumed lost.
    pub lost: Vec<f64>,
    /// `tcpi_retrans`: retransmitted segments currently in flight.
    pub retrans: Vec<f64>,
    /// `tcpi_bytes_acked` at each point (0 when the payload ends before it), behind
    /// [`Series::send_mbps`].
    pub bytes_acked: Vec<u64>,
    /// `tcpi_bytes_received` at each point, behind [`Series::recv_mbps`].
    pub bytes_received: Vec<u64>,
    /// Each state change: its time and the new state's name (`ESTABLISHED`, …), from the
    /// RawIDM's `idiag_state` of every snapshot record, `tcp_info` or not. The first entry is
    /// the first snapshot's state.
    pub states: Vec<(f64, String)>,
}

/// The previous point, for the rates.
#[derive(Debug, Clone, Copy)]
struct Previous {
    nanos: i128,
    acked: Option<u64>,
    received: Option<u64>,
}

impl Series {
    /// Extracts the series from a connection's records in time order (what
    /// [`super::read_segments`] returns, or a live connection's records). Metadata lines give the
    /// UUID; lines without `tcp_info` (time-wait `[null]` lines) only mark state changes.
    pub fn from_records(records: &[ArchivalRecord]) -> Result<Self, PlotError> {
        let mut s = Self::default();
        let mut origin: Option<i128> = None;
        let mut state: Option<u8> = None;
        let mut previous: Option<Previous> = None;
        for (index, record) in records.iter().enumerate() {
            if let Some(meta) = &record.metadata {
                match &s.uuid {
                    None => s.uuid = Some(meta.uuid.clone()),
                    Some(first) if *first != meta.uuid => {
                        return Err(PlotError::MixedRecords {
                            first: first.clone(),
                            other: meta.uuid.clone(),
                        });
                    }
                    Some(_) => {}
                }
                continue;
            }
            if record.raw_idm().is_empty() {
                // Neither a snapshot nor Metadata: no connection facts to plot.
                continue;
            }
            let idm = InetDiagMsg::new(record.raw_idm())
                .map_err(|source| PlotError::BadRecord { index, source })?;
            let nanos = record.timestamp.unix_nanos();
            let t = seconds(nanos - *origin.get_or_insert(nanos));
            if s.snapshots == 0 {
                s.start = record.timestamp;
                s.cookie = idm.cookie();
                s.local = Some(SocketAddr::new(canonical(idm.src()), idm.sport()));
                s.remote = Some(SocketAddr::new(canonical(idm.dst()), idm.dport()));
            }
            s.snapshots += 1;
            s.duration_s = t;
            if state != Some(idm.state()) {
                state = Some(idm.state());
                s.states.push((t, state_name(idm.state()).into_owned()));
            }
            let Some(payload) = record.attribute(usize::from(attr::INFO)) else {
                continue;
            };
            let info = TcpInfo::decode(payload);
            let acked = info
                .covers(offset::BYTES_ACKED + 8)
                .then_some(info.bytes_acked);
            let received = info
                .covers(offset::BYTES_RECEIVED + 8)
                .then_some(info.bytes_received);
            let dt = previous.map(|p| seconds(nanos - p.nanos));
            s.times_s.push(t);
            s.send_mbps
                .push(rate(previous.and_then(|p| p.acked), acked, dt));
            s.recv_mbps
                .push(rate(previous.and_then(|p| p.received), received, dt));
            s.delivery_mbps.push(
                info.covers(offset::DELIVERY_RATE + 8)
                    .then(|| mbps(info.delivery_rate as f64)),
            );
            s.rtt_ms.push(ms(info.rtt));
            s.rttvar_ms.push(ms(info.rttvar));
            s.min_rtt_ms.push(
                (info.covers(offset::MIN_RTT + 4) && info.min_rtt != u32::MAX)
                    .then(|| ms(info.min_rtt)),
            );
            s.snd_cwnd.push(f64::from(info.snd_cwnd));
            s.snd_ssthresh.push(
                (info.snd_ssthresh < INFINITE_SSTHRESH).then_some(f64::from(info.snd_ssthresh)),
            );
            s.total_retrans.push(f64::from(info.total_retrans));
            s.lost.push(f64::from(info.lost));
            s.retrans.push(f64::from(info.retrans));
            s.bytes_acked.push(info.bytes_acked);
            s.bytes_received.push(info.bytes_received);
            previous = Some(Previous {
                nanos,
                acked,
                received,
            });
        }
        if s.snapshots == 0 {
            return Err(PlotError::NoSnapshots);
        }
        Ok(s)
    }

    /// The number of points (records with `tcp_info`).
    pub fn len(&self) -> usize {
        self.times_s.len()
    }

    /// Whether no record carried `tcp_info`.
    pub fn is_empty(&self) -> bool {
        self.times_s.is_empty()
    }
}

/// Nanoseconds as seconds.
fn seconds(nanos: i128) -> f64 {
    nanos as f64 / 1e9
}

/// Microseconds as milliseconds.
fn ms(micros: u32) -> f64 {
    f64::from(micros) / 1000.0
}

/// Bytes per second as Mbit/s.
fn mbps(bytes_per_s: f64) -> f64 {
    bytes_per_s * 8.0 / 1e6
}

/// The rate of a cumulative byte counter between two points, in Mbit/s.
fn rate(before: Option<u64>, now: Option<u64>, dt: Option<f64>) -> Option<f64> {
    let (before, now, dt) = (before?, now?, dt?);
    (dt > 0.0 && now >= before).then(|| mbps((now - before) as f64 / dt))
}

/// v4-mapped IPv6 addresses (dual-stack sockets) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::record::Metadata;
    use crate::wire::inet_diag::{AF_INET, AF_INET6, state};

    /// What a hand-made snapshot carries.
    #[derive(Debug, Clone, Copy, Default)]
    pub(crate) struct Point {
        pub ms: i64,
        pub state: u8,
        pub acked: u64,
        pub received: u64,
        pub delivery: u64,
        pub rtt: u32,
        pub rttvar: u32,
        pub min_rtt: u32,
        pub cwnd: u32,
        pub ssthresh: u32,
        pub total_retrans: u32,
        pub lost: u32,
        pub retrans: u32,
    }

    pub(crate) fn idm(family: u8, state: u8, cookie: u64) -> [u8; 72] {
        let mut b = [0u8; 72];
        b[0] = family;
        b[1] = state;
        b[4..6].copy_from_slice(&443u16.to_be_bytes());
        b[6..8].copy_from_slice(&50_000u16.to_be_bytes());
        if family == AF_INET {
            b[8..12].copy_from_slice(&[10, 0, 0, 1]);
            b[24..28].copy_from_slice(&[10, 0, 0, 2]);
        } else {
            b[8..24].copy_from_slice(
                &"::ffff:192.0.2.1"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            );
            b[24..40].copy_from_slice(
                &"2001:db8::2"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            );
        }
        b[44..48].copy_from_slice(&(cookie as u32).to_ne_bytes());
        b[48..52].copy_from_slice(&((cookie >> 32) as u32).to_ne_bytes());
        b
    }

    pub(crate) fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix(
            1_700_000_000 + ms.div_euclid(1000),
            (ms.rem_euclid(1000) * 1_000_000) as u32,
        )
        .unwrap()
    }

    pub(crate) fn info(p: &Point) -> Vec<u8> {
        let mut b = vec![0u8; crate::tcpinfo::UPSTREAM_GO_LEN];
        b[offset::STATE] = p.state;
        let mut put32 = |at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        put32(offset::RTT, p.rtt);
        put32(offset::RTTVAR, p.rttvar);
        put32(offset::MIN_RTT, p.min_rtt);
        put32(offset::SND_CWND, p.cwnd);
        put32(offset::SND_SSTHRESH, p.ssthresh);
        put32(offset::TOTAL_RETRANS, p.total_retrans);
        put32(offset::LOST, p.lost);
        put32(offset::RETRANS, p.retrans);
        b[offset::BYTES_ACKED..offset::BYTES_ACKED + 8].copy_from_slice(&p.acked.to_ne_bytes());
        b[offset::BYTES_RECEIVED..offset::BYTES_RECEIVED + 8]
            .copy_from_slice(&p.received.to_ne_bytes());
        b[offset::DELIVERY_RATE..offset::DELIVERY_RATE + 8]
            .copy_from_slice(&p.delivery.to_ne_bytes());
        b
    }

    pub(crate) fn snapshot(p: &Point) -> ArchivalRecord {
        let payload = info(p);
        ArchivalRecord::new(
            at(p.ms),
            &idm(AF_INET, p.state, 0x3E8),
            &[None, None, Some(&payload)],
        )
    }

    /// A time-wait line: RawIDM only, `[null]` attributes.
    pub(crate) fn null_line(ms: i64, st: u8) -> ArchivalRecord {
        ArchivalRecord::new(at(ms), &idm(AF_INET, st, 0x3E8), &[None])
    }

    pub(crate) fn meta(uuid: &str, sequence: i64) -> ArchivalRecord {
        ArchivalRecord::metadata_line(Metadata {
            uuid: uuid.into(),
            sequence,
            start_time: at(0),
            netns: None,
        })
    }

    fn est(ms: i64, acked: u64, received: u64) -> Point {
        Point {
            ms,
            state: state::ESTABLISHED,
            acked,
            received,
            ssthresh: INFINITE_SSTHRESH,
            cwnd: 10,
            rtt: 1500,
            rttvar: 250,
            min_rtt: 1000,
            ..Point::default()
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn known_deltas_give_known_rates() {
        // 1 250 000 bytes in 100 ms = 12.5 MB/s = 100 Mbit/s; 125 000 bytes in 200 ms = 5 Mbit/s.
        let records = [
            meta("p_00000000000003E8", 0),
            snapshot(&est(0, 1, 0)),
            snapshot(&Point {
                delivery: 2_500_000,
                ..est(100, 1_250_001, 125_000)
            }),
            snapshot(&est(300, 1_250_001, 250_000)),
        ];
        let s = Series::from_records(&records).unwrap();
        assert_eq!(s.uuid.as_deref(), Some("p_00000000000003E8"));
        assert_eq!(s.len(), 3);
        assert_eq!(s.snapshots, 3);
        assert_eq!(s.times_s, [0.0, 0.1, 0.3]);
        assert!(close(s.duration_s, 0.3));
        assert_eq!(s.send_mbps[0], None, "no previous point");
        assert!(close(s.send_mbps[1].unwrap(), 100.0));
        assert!(close(s.send_mbps[2].unwrap(), 0.0));
        assert_eq!(s.recv_mbps[0], None);
        assert!(close(s.recv_mbps[1].unwrap(), 10.0));
        assert!(close(s.recv_mbps[2].unwrap(), 5.0));
        assert_eq!(s.delivery_mbps[1], Some(20.0), "2.5 MB/s");
        assert_eq!(s.delivery_mbps[0], Some(0.0));
        assert_eq!(s.rtt_ms, [1.5; 3]);
        assert_eq!(s.rttvar_ms, [0.25; 3]);
        assert_eq!(s.min_rtt_ms, [Some(1.0); 3]);
        assert_eq!(s.snd_cwnd, [10.0; 3]);
        assert_eq!(s.bytes_acked, [1, 1_250_001, 1_250_001]);
        assert_eq!(s.cookie, 0x3E8);
        assert_eq!(s.local.unwrap().to_string(), "10.0.0.1:443");
        assert_eq!(s.remote.unwrap().to_string(), "10.0.0.2:50000");
        assert_eq!(s.start, at(0));
    }

    #[test]
    fn infinite_ssthresh_is_skipped_and_losses_kept() {
        let mut lossy = est(20, 10, 10);
        lossy.ssthresh = 7;
        lossy.cwnd = 7;
        lossy.total_retrans = 3;
        lossy.lost = 2;
        lossy.retrans = 1;
        let mut odd = est(30, 10, 10);
        odd.ssthresh = u32::MAX;
        odd.min_rtt = u32::MAX;
        let s = Series::from_records(&[snapshot(&est(10, 0, 0)), snapshot(&lossy), snapshot(&odd)])
            .unwrap();
        assert_eq!(s.snd_ssthresh, [None, Some(7.0), None]);
        assert_eq!(s.snd_cwnd, [10.0, 7.0, 10.0]);
        assert_eq!(s.total_retrans, [0.0, 3.0, 0.0]);
        assert_eq!(s.lost, [0.0, 2.0, 0.0]);
        assert_eq!(s.retrans, [0.0, 1.0, 0.0]);
        assert_eq!(s.min_rtt_ms, [Some(1.0), Some(1.0), None], "no sample yet");
        assert_eq!(s.uuid, None);
    }

    #[test]
    fn state_changes_include_lines_without_tcp_info() {
        let mut fin = est(200, 5, 5);
        fin.state = state::FIN_WAIT1;
        let records = [
            meta("u_1", 0),
            snapshot(&est(100, 1, 1)),
            snapshot(&est(150, 2, 2)),
            snapshot(&fin),
            null_line(250, state::TIME_WAIT),
            null_line(260, state::TIME_WAIT),
        ];
        let s = Series::from_records(&records).unwrap();
        assert_eq!(s.len(), 3, "null lines are no points");
        assert_eq!(s.snapshots, 5);
        let states: Vec<(f64, &str)> = s.states.iter().map(|(t, n)| (*t, n.as_str())).collect();
        assert_eq!(
            states,
            [
                (0.0, "ESTABLISHED"),
                (0.1, "FIN_WAIT1"),
                (0.15, "TIME_WAIT")
            ]
        );
        assert!(close(s.duration_s, 0.16));
    }

    #[test]
    fn single_record() {
        let s = Series::from_records(&[snapshot(&est(5, 100, 100))]).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s.times_s, [0.0]);
        assert_eq!(s.send_mbps, [None]);
        assert_eq!(s.recv_mbps, [None]);
        assert_eq!(s.duration_s.to_bits(), 0.0_f64.to_bits());
        assert_eq!(s.states, [(0.0, "ESTABLISHED".to_owned())]);
        // A lone time-wait line is a (pointless) plot too; nothing at all is an error.
        let tw = Series::from_records(&[null_line(0, state::TIME_WAIT)]).unwrap();
        assert!(tw.is_empty());
        assert!(matches!(
            Series::from_records(&[meta("u", 0)]),
            Err(PlotError::NoSnapshots)
        ));
        assert!(matches!(
            Series::from_records(&[]),
            Err(PlotError::NoSnapshots)
        ));
    }

    #[test]
    fn equal_or_backward_times_and_counters_give_no_rate() {
        let records = [
            snapshot(&est(100, 10, 10)),
            snapshot(&est(100, 20, 20)),
            snapshot(&est(90, 30, 30)),
            snapshot(&est(200, 5, 40)),
        ];
        let s = Series::from_records(&records).unwrap();
        assert_eq!(s.send_mbps[..3], [None, None, None]);
        assert_eq!(s.send_mbps[3], None, "bytes_acked went backwards");
        assert!(close(s.recv_mbps[3].unwrap(), 10.0 * 8.0 / 0.11 / 1e6));
    }

    #[test]
    fn mixed_uuids_and_short_raw_idm_are_refused() {
        let err = Series::from_records(&[meta("a_1", 0), snapshot(&est(0, 0, 0)), meta("b_2", 1)])
            .unwrap_err();
        assert!(matches!(err, PlotError::MixedRecords { .. }), "{err}");
        assert!(err.to_string().contains("a_1") && err.to_string().contains("b_2"));
        let short = ArchivalRecord::new(at(0), &[2; 40], &[None]);
        let err = Series::from_records(&[snapshot(&est(0, 0, 0)), short]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "record 1 (0-based): inet_diag_msg needs 72 bytes, got 40"
        );
    }

    #[test]
    fn short_payloads_have_no_late_fields() {
        // A 4.9-era 168-byte payload has delivery_rate (160..168); a 104-byte one has neither it,
        // min_rtt nor bytes_acked.
        let full = info(&est(0, 7, 7));
        let rec = |ms: i64, len: usize| {
            ArchivalRecord::new(
                at(ms),
                &idm(AF_INET6, 1, 1),
                &[None, None, Some(&full[..len])],
            )
        };
        let s =
            Series::from_records(&[rec(0, 104), rec(10, 104), rec(20, 168), rec(30, 168)]).unwrap();
        assert_eq!(s.delivery_mbps, [None, None, Some(0.0), Some(0.0)]);
        assert_eq!(s.min_rtt_ms, [None, None, Some(1.0), Some(1.0)]);
        assert_eq!(s.send_mbps, [None, None, None, Some(0.0)]);
        assert_eq!(s.rtt_ms, [1.5; 4]);
        assert_eq!(
            s.local.unwrap().to_string(),
            "192.0.2.1:443",
            "v4-mapped shown as IPv4"
        );
        assert_eq!(s.remote.unwrap().to_string(), "[2001:db8::2]:50000");
    }
}
