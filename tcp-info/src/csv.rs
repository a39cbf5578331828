//! CSV rendering of snapshots, as upstream's csvtool prints them (SPEC §10).
//!
//! Upstream builds its CSV with `gocarina/gocsv` (revision of 2020-08-27) over its `Snapshot`
//! struct. What that produces, and what is reproduced here:
//!
//! - **Columns:** the 105 of [`COLUMNS`], upstream's names included (the duplicated
//!   `TCP.LastDataRecv`, `SKMemInfo.Sndbug`). The `tcp_info` columns stop at `snd_wnd`
//!   (upstream's 232-byte Go struct); newer fields are not printed.
//! - **Timestamp:** `time.Time` goes through `MarshalText`, i.e. RFC 3339 with up to nine
//!   fractional digits, trailing zeros trimmed, and the offset the line was written with. Upstream's
//!   reader replaces the zero time (Metadata lines, the `archiveRecords` fixture) with the
//!   placeholder `2009-05-29T23:59:59Z` ([`ZERO_TIME_PLACEHOLDER`]).
//! - **Absent structs** (a nil pointer in Go): every column of `IDM.*`, `TCP.*`, `MemInfo.*`,
//!   `SKMemInfo.*`, `Vegas.*`, `DCTCP.*`, `BBR.*` is an empty cell when the record lacks that
//!   part.
//! - **Top-level numbers:** `Observed`, `NotFullyParsed`, `TOS`, `TClass`, `ClassID`,
//!   `Shutdown`, `Protocol` and `Mark` are always printed, `0` when zero or absent: gocsv ignores
//!   the `omitempty` tags of upstream's struct. `CongestionAlgorithm` is a string and stays empty
//!   when absent. So the Metadata line renders as the placeholder time, seven `0`s for those
//!   numbers and empty cells elsewhere, exactly as upstream's csvtool prints it (checked cell by
//!   cell against upstream's own output for the m-lab fixtures). Numbers are decimal.
//! - **Present structs print every field, zeros included**: a `tcp_info` shorter than 232 bytes
//!   is zero-filled, so e.g. `TCP.BytesSent` of a 168-byte payload prints `0`.
//! - **Signed columns:** upstream declares `PacingRate`, `MaxPacingRate`, `BytesAcked`,
//!   `BytesReceived`, `DeliveryRate`, `BusyTime`, `RWndLimited`, `SndBufLimited`, `BytesSent`,
//!   `BytesRetrans` and `BBR.BW` as `int64` and `SegsOut`, `SegsIn` as `int32`, so the kernel's
//!   "unlimited" pacing rate (`u64::MAX`) prints `-1`. Reproduced.
//! - **Socket id:** ports decimal; addresses rendered as upstream does ([`go_ip_string`]:
//!   v4-mapped addresses print as dotted quads); the cookie as `%X` without padding (`3E8`).
//! - **Corrected columns** (SPEC §10.1 and D6, a permitted improvement): `IDM.SockID.Interface`
//!   is `idiag_if` in host order (upstream reads it big-endian: ifindex 2 printed as
//!   33554432); `ClassID` is the full u32 (upstream: the first byte); `TCP.WScale` prints the
//!   two nibbles as `<snd>/<rcv>` (e.g. `7/9`) instead of upstream's unsplit byte (`151`).
//! - **Quoting** follows Go's `encoding/csv` writer (RFC 4180): a cell is quoted when it holds
//!   a comma, a quote, CR or LF, starts with white space, or is exactly `\.`; quotes inside are
//!   doubled. Records end with `\n`.

use crate::snapshot::Snapshot;
use crate::wire::inet_diag::go_ip_string;
use std::fmt::{Display, Write as _};

/// The placeholder upstream's reader puts in place of the zero time.
pub const ZERO_TIME_PLACEHOLDER: &str = "2009-05-29T23:59:59Z";

/// The 105 column names, in order (SPEC §10.2).
pub const COLUMNS: [&str; 105] = [
    "Timestamp",
    "Observed",
    "NotFullyParsed",
    "IDM.Family",
    "IDM.State",
    "IDM.Timer",
    "IDM.Retrans",
    "IDM.SockID.SPort",
    "IDM.SockID.DPort",
    "IDM.SockID.Src",
    "IDM.SockID.Dst",
    "IDM.SockID.Interface",
    "IDM.SockID.Cookie",
    "IDM.Expires",
    "IDM.Rqueue",
    "IDM.Wqueue",
    "IDM.UID",
    "IDM.Inode",
    "CongestionAlgorithm",
    "TOS",
    "TClass",
    "ClassID",
    "Shutdown",
    "Protocol",
    "Mark",
    "TCP.State",
    "TCP.CAState",
    "TCP.Retransmits",
    "TCP.Probes",
    "TCP.Backoff",
    "TCP.Options",
    "TCP.WScale",
    "TCP.AppLimited",
    "TCP.RTO",
    "TCP.ATO",
    "TCP.SndMSS",
    "TCP.RcvMSS",
    "TCP.Unacked",
    "TCP.Sacked",
    "TCP.Lost",
    "TCP.Retrans",
    "TCP.Fackets",
    "TCP.LastDataSent",
    "TCP.LastAckSent",
    "TCP.LastDataRecv",
    "TCP.LastDataRecv",
    "TCP.PMTU",
    "TCP.RcvSsThresh",
    "TCP.RTT",
    "TCP.RTTVar",
    "TCP.SndSsThresh",
    "TCP.SndCwnd",
    "TCP.AdvMSS",
    "TCP.Reordering",
    "TCP.RcvRTT",
    "TCP.RcvSpace",
    "TCP.TotalRetrans",
    "TCP.PacingRate",
    "TCP.MaxPacingRate",
    "TCP.BytesAcked",
    "TCP.BytesReceived",
    "TCP.SegsOut",
    "TCP.SegsIn",
    "TCP.NotsentBytes",
    "TCP.MinRTT",
    "TCP.DataSegsIn",
    "TCP.DataSegsOut",
    "TCP.DeliveryRate",
    "TCP.BusyTime",
    "TCP.RWndLimited",
    "TCP.SndBufLimited",
    "TCP.Delivered",
    "TCP.DeliveredCE",
    "TCP.BytesSent",
    "TCP.BytesRetrans",
    "TCP.DSackDups",
    "TCP.ReordSeen",
    "TCP.RcvOooPack",
    "TCP.SndWnd",
    "MemInfo.Rmem",
    "MemInfo.Wmem",
    "MemInfo.Fmem",
    "MemInfo.Tmem",
    "SKMemInfo.RmemAlloc",
    "SKMemInfo.Rcvbuf",
    "SKMemInfo.WmemAlloc",
    "SKMemInfo.Sndbug",
    "SKMemInfo.FwdAlloc",
    "SKMemInfo.WmemQueued",
    "SKMemInfo.Optmem",
    "SKMemInfo.Backlog",
    "SKMemInfo.Drops",
    "Vegas.Enabled",
    "Vegas.RTTCount",
    "Vegas.RTT",
    "Vegas.MinRTT",
    "DCTCP.Enabled",
    "DCTCP.CEState",
    "DCTCP.Alpha",
    "DCTCP.ABEcn",
    "DCTCP.ABTot",
    "BBR.BW",
    "BBR.MinRTT",
    "BBR.PacingGain",
    "BBR.CwndGain",
];

/// Appends the header record (with its `\n`).
pub fn write_header(out: &mut String) {
    let mut row = Row::new(out);
    for name in COLUMNS {
        row.text(name);
    }
    row.end();
}

/// Appends one snapshot as a record of [`COLUMNS`] (with its `\n`).
pub fn write_row(out: &mut String, snap: &Snapshot) {
    let mut row = Row::new(out);
    fill(&mut row, snap);
    row.end();
}

/// One cell of a row, before CSV quoting: what csvtool writes in each column, for other
/// renderings of the same decoding (the query API's JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// A decimal number.
    Number(String),
    /// Text (timestamps, addresses, the congestion algorithm, the hexadecimal cookie).
    Text(String),
    /// No value (the record lacks that structure).
    Empty,
}

/// One snapshot as [`COLUMNS`]' names with their cells, in column order. The names are unique:
/// upstream's header calls two columns `TCP.LastDataRecv`, and the second one, which holds
/// `tcpi_last_ack_recv`, is named `TCP.LastAckRecv` here.
pub fn named_cells(snap: &Snapshot) -> Vec<(&'static str, Cell)> {
    let mut cells = Cells(Vec::with_capacity(COLUMNS.len()));
    fill(&mut cells, snap);
    let mut seen_last_data_recv = false;
    let names = COLUMNS.into_iter().map(|name| match name {
        "TCP.LastDataRecv" if seen_last_data_recv => "TCP.LastAckRecv",
        "TCP.LastDataRecv" => {
            seen_last_data_recv = true;
            name
        }
        _ => name,
    });
    names.zip(cells.0).collect()
}

/// Where a row's cells go: a CSV line ([`Row`]) or a list of [`Cell`]s.
trait CellSink {
    /// A cell that is a number.
    fn num(&mut self, v: impl Display);
    /// A free-text cell.
    fn text(&mut self, s: &str);
    /// `n` empty cells.
    fn empty(&mut self, n: usize);
}

/// Collects [`Cell`]s.
struct Cells(Vec<Cell>);

impl CellSink for Cells {
    fn num(&mut self, v: impl Display) {
        self.0.push(Cell::Number(v.to_string()));
    }
    fn text(&mut self, s: &str) {
        self.0.push(Cell::Text(s.to_owned()));
    }
    fn empty(&mut self, n: usize) {
        self.0.extend(std::iter::repeat_n(Cell::Empty, n));
    }
}

/// The cells of one snapshot, in [`COLUMNS`] order.
fn fill(row: &mut impl CellSink, snap: &Snapshot) {
    if snap.timestamp.is_zero() {
        row.text(ZERO_TIME_PLACEHOLDER);
    } else {
        row.text(&snap.timestamp.to_string());
    }
    row.num(&snap.observed);
    row.num(&snap.not_fully_parsed);

    match &snap.idm {
        None => row.empty(15),
        Some(idm) => {
            row.num(idm.family);
            row.num(idm.state);
            row.num(idm.timer);
            row.num(idm.retrans);
            row.num(idm.sport);
            row.num(idm.dport);
            row.text(&go_ip_string(&idm.src_bytes));
            row.text(&go_ip_string(&idm.dst_bytes));
            row.num(idm.interface);
            row.text(&format!("{:X}", idm.cookie));
            row.num(idm.expires);
            row.num(idm.rqueue);
            row.num(idm.wqueue);
            row.num(idm.uid);
            row.num(idm.inode);
        }
    }

    row.text(snap.congestion_algorithm.as_deref().unwrap_or(""));
    row.num(snap.tos.unwrap_or(0));
    row.num(snap.tclass.unwrap_or(0));
    row.num(snap.class_id.unwrap_or(0));
    row.num(snap.shutdown.unwrap_or(0));
    row.num(snap.protocol.unwrap_or(0));
    row.num(snap.mark.unwrap_or(0));

    write_tcp_info(row, snap);

    match &snap.mem_info {
        None => row.empty(4),
        Some(m) => {
            for v in [m.rmem, m.wmem, m.fmem, m.tmem] {
                row.num(v);
            }
        }
    }
    match &snap.sk_mem_info {
        None => row.empty(9),
        Some(m) => {
            let fields = [
                m.rmem_alloc,
                m.rcvbuf,
                m.wmem_alloc,
                m.sndbuf,
                m.fwd_alloc,
                m.wmem_queued,
                m.optmem,
                m.backlog,
                m.drops,
            ];
            for v in fields {
                row.num(v);
            }
        }
    }
    match &snap.vegas_info {
        None => row.empty(4),
        Some(v) => {
            for x in [v.enabled, v.rtt_count, v.rtt, v.min_rtt] {
                row.num(x);
            }
        }
    }
    match &snap.dctcp_info {
        None => row.empty(5),
        Some(d) => {
            row.num(d.enabled);
            row.num(d.ce_state);
            row.num(d.alpha);
            row.num(d.ab_ecn);
            row.num(d.ab_tot);
        }
    }
    match &snap.bbr_info {
        None => row.empty(4),
        Some(b) => {
            row.num(b.bw as i64);
            row.num(b.min_rtt);
            row.num(b.pacing_gain);
            row.num(b.cwnd_gain);
        }
    }
}

/// The 54 `TCP.*` columns.
fn write_tcp_info(row: &mut impl CellSink, snap: &Snapshot) {
    let Some(t) = &snap.tcp_info else {
        row.empty(54);
        return;
    };
    for v in [
        t.state,
        t.ca_state,
        t.retransmits,
        t.probes,
        t.backoff,
        t.options,
    ] {
        row.num(v);
    }
    row.num(format_args!("{}/{}", t.snd_wscale(), t.rcv_wscale()));
    row.num(t.app_limited);
    let early = [
        t.rto,
        t.ato,
        t.snd_mss,
        t.rcv_mss,
        t.unacked,
        t.sacked,
        t.lost,
        t.retrans,
        t.fackets,
        t.last_data_sent,
        t.last_ack_sent,
        t.last_data_recv,
        t.last_ack_recv,
        t.pmtu,
        t.rcv_ssthresh,
        t.rtt,
        t.rttvar,
        t.snd_ssthresh,
        t.snd_cwnd,
        t.advmss,
        t.reordering,
        t.rcv_rtt,
        t.rcv_space,
        t.total_retrans,
    ];
    for v in early {
        row.num(v);
    }
    // Upstream's int64/int32 declarations (see the module docs).
    for v in [
        t.pacing_rate,
        t.max_pacing_rate,
        t.bytes_acked,
        t.bytes_received,
    ] {
        row.num(v as i64);
    }
    row.num(t.segs_out as i32);
    row.num(t.segs_in as i32);
    for v in [t.notsent_bytes, t.min_rtt, t.data_segs_in, t.data_segs_out] {
        row.num(v);
    }
    for v in [
        t.delivery_rate,
        t.busy_time,
        t.rwnd_limited,
        t.sndbuf_limited,
    ] {
        row.num(v as i64);
    }
    row.num(t.delivered);
    row.num(t.delivered_ce);
    row.num(t.bytes_sent as i64);
    row.num(t.bytes_retrans as i64);
    for v in [t.dsack_dups, t.reord_seen, t.rcv_ooopack, t.snd_wnd] {
        row.num(v);
    }
}

/// Builds one CSV record in a string.
struct Row<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Row<'a> {
    fn new(out: &'a mut String) -> Self {
        Self { out, first: true }
    }

    fn sep(&mut self) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
    }

    fn end(self) {
        self.out.push('\n');
    }
}

impl CellSink for Row<'_> {
    /// A cell that can never need quoting.
    fn num(&mut self, v: impl Display) {
        self.sep();
        // Writing to a String cannot fail.
        let _ = write!(self.out, "{v}");
    }

    /// A free-text cell, quoted as Go's `encoding/csv` would.
    fn text(&mut self, s: &str) {
        self.sep();
        push_field(self.out, s);
    }

    fn empty(&mut self, n: usize) {
        for _ in 0..n {
            self.sep();
        }
    }
}

/// Go's `csv.Writer.fieldNeedsQuotes` with the default comma.
fn needs_quotes(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    if s == r"\." {
        return true;
    }
    s.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
        || s.chars().next().is_some_and(char::is_whitespace)
}

/// Appends `s` as one CSV field (RFC 4180 quoting, Go's rules for when to quote).
pub fn push_field(out: &mut String, s: &str) {
    if !needs_quotes(s) {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ArchivalRecord, Metadata, Timestamp};

    #[test]
    fn named_cells_are_the_csv_row_unquoted() {
        let mut idm = [0u8; 72];
        idm[0] = 2;
        idm[1] = 1;
        idm[44..52].copy_from_slice(&0x1234_u64.to_ne_bytes());
        let record = ArchivalRecord::new(
            Timestamp::parse(b"2019-04-02T14:13:01.02Z").unwrap(),
            &idm,
            &[None, None, None, None, Some(b"cubic\0".as_slice())],
        );
        let snap = Snapshot::decode(&record).unwrap();
        let named = named_cells(&snap);
        assert_eq!(named.len(), COLUMNS.len());
        let mut names: Vec<&str> = named.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COLUMNS.len(), "unique names");
        assert!(names.contains(&"TCP.LastAckRecv"));
        let mut line = String::new();
        write_row(&mut line, &snap);
        for ((name, cell), csv) in named.iter().zip(cells(&line)) {
            let text = match cell {
                Cell::Number(s) | Cell::Text(s) => s.as_str(),
                Cell::Empty => "",
            };
            assert_eq!(text, csv, "{name}");
        }
        let get = |n: &str| named.iter().find(|(c, _)| *c == n).unwrap().1.clone();
        assert_eq!(
            get("Timestamp"),
            Cell::Text("2019-04-02T14:13:01.02Z".into())
        );
        assert_eq!(
            get("IDM.SockID.Cookie"),
            Cell::Text("1234".into()),
            "the hex cookie is text"
        );
        assert_eq!(get("IDM.State"), Cell::Number("1".into()));
        assert_eq!(get("CongestionAlgorithm"), Cell::Text("cubic".into()));
        assert_eq!(get("TCP.RTT"), Cell::Empty);
    }

    fn cells(line: &str) -> Vec<&str> {
        line.trim_end_matches('\n').split(',').collect()
    }

    fn col(name: &str) -> usize {
        COLUMNS.iter().position(|c| *c == name).unwrap()
    }

    #[test]
    fn header_has_the_upstream_columns() {
        let mut h = String::new();
        write_header(&mut h);
        let names = cells(&h);
        assert_eq!(names.len(), 105);
        assert_eq!(names[3], "IDM.Family");
        assert_eq!(names[7], "IDM.SockID.SPort");
        assert_eq!(names[12], "IDM.SockID.Cookie");
        assert_eq!(names[60], "TCP.BytesReceived");
        assert_eq!(names[73], "TCP.BytesSent");
        assert_eq!(names[44], names[45]);
        assert!(h.ends_with("BBR.CwndGain\n"));
    }

    #[test]
    fn metadata_row_is_placeholder_zero_and_empty() {
        let meta = ArchivalRecord::metadata_line(Metadata::default());
        let snap = Snapshot::decode(&meta).unwrap();
        let mut line = String::new();
        write_row(&mut line, &snap);
        let c = cells(&line);
        assert_eq!(c.len(), 105);
        assert_eq!(c[0], ZERO_TIME_PLACEHOLDER);
        // Observed, NotFullyParsed, then TOS..Mark are numbers printed even when absent.
        let zeros = [1, 2, 19, 20, 21, 22, 23, 24];
        for (i, cell) in c.iter().enumerate().skip(1) {
            let want = if zeros.contains(&i) { "0" } else { "" };
            assert_eq!(*cell, want, "cell {i} ({}): {line}", COLUMNS[i]);
        }
    }

    fn sample_record() -> ArchivalRecord {
        let mut idm = [0u8; 72];
        idm[0] = 10;
        idm[1] = 1;
        idm[4..6].copy_from_slice(&9091u16.to_be_bytes());
        idm[6..8].copy_from_slice(&43508u16.to_be_bytes());
        idm[8..24].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 14, 134]);
        idm[24..40].copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        idm[40..44].copy_from_slice(&2u32.to_ne_bytes());
        idm[44..48].copy_from_slice(&0x3E8u32.to_ne_bytes());
        let mut info = vec![0u8; 224];
        info[6] = 0x97;
        info[7] = 1;
        info[104..112].copy_from_slice(&u64::MAX.to_ne_bytes());
        info[128..136].copy_from_slice(&374_061u64.to_ne_bytes());
        info[136..140].copy_from_slice(&u32::MAX.to_ne_bytes());
        info[200..208].copy_from_slice(&4_988_158u64.to_ne_bytes());
        let class = 0x0001_0001u32.to_ne_bytes();
        let ts = Timestamp::parse(b"2019-04-01T07:42:37.3715Z").unwrap();
        ArchivalRecord::new(
            ts,
            &idm,
            &[
                None,
                None,
                Some(&info),
                None,
                Some(b"cu,\"bic\"\0"),
                Some(&[0]),
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                Some(&class),
            ],
        )
    }

    #[test]
    fn snapshot_row_values() {
        let snap = Snapshot::decode(&sample_record()).unwrap();
        let mut line = String::new();
        write_row(&mut line, &snap);
        // The congestion name needs quoting; split after checking it.
        assert!(line.contains(",\"cu,\"\"bic\"\"\","), "{line}");
        let line = line.replace("\"cu,\"\"bic\"\"\"", "CONG");
        let c = cells(&line);
        assert_eq!(c.len(), 105);
        assert_eq!(c[0], "2019-04-01T07:42:37.3715Z");
        assert_eq!(c[1], (2 + 8 + 16 + (1 << 16)).to_string());
        assert_eq!(c[2], "0", "all parsed: 0, printed");
        assert_eq!(c[col("IDM.Family")], "10");
        assert_eq!(c[col("IDM.SockID.SPort")], "9091");
        assert_eq!(c[col("IDM.SockID.DPort")], "43508");
        assert_eq!(c[col("IDM.SockID.Src")], "192.168.14.134");
        assert_eq!(c[col("IDM.SockID.Dst")], "2001:db8::1");
        assert_eq!(c[col("IDM.SockID.Interface")], "2", "host order (D6)");
        assert_eq!(c[col("IDM.SockID.Cookie")], "3E8");
        assert_eq!(c[col("CongestionAlgorithm")], "CONG");
        assert_eq!(c[col("TOS")], "0", "zero TOS prints 0");
        assert_eq!(c[col("TClass")], "0", "absent TClass prints 0");
        assert_eq!(c[col("ClassID")], "65537", "full u32 (D6)");
        assert_eq!(c[col("TCP.State")], "0");
        assert_eq!(c[col("TCP.WScale")], "7/9");
        assert_eq!(c[col("TCP.AppLimited")], "1");
        assert_eq!(c[col("TCP.PacingRate")], "-1", "Go int64");
        assert_eq!(c[col("TCP.SegsOut")], "-1", "Go int32");
        assert_eq!(c[60], "374061");
        assert_eq!(c[73], "4988158");
        assert_eq!(c[col("TCP.SndWnd")], "0", "zero-filled past 224 bytes");
        assert!(c[col("MemInfo.Rmem")..].iter().all(|x| x.is_empty()));
    }

    #[test]
    fn offsets_and_long_payloads() {
        let mut r = sample_record();
        r.timestamp = Timestamp::parse(b"2019-08-26T20:02:17.654076251-04:00").unwrap();
        let mut snap = Snapshot::decode(&r).unwrap();
        snap.not_fully_parsed.insert(2);
        let mut line = String::new();
        write_row(&mut line, &snap);
        assert!(
            line.starts_with("2019-08-26T20:02:17.654076251-04:00,"),
            "{line}"
        );
        let line = line.replace("\"cu,\"\"bic\"\"\"", "CONG");
        assert_eq!(cells(&line)[2], "2");
    }

    /// A strict RFC 4180 reader for one record (without its `\n`), to check the writer.
    fn parse_record(line: &str) -> Vec<String> {
        let mut fields = vec![String::new()];
        let mut chars = line.chars().peekable();
        let mut quoted = false;
        let mut at_start = true;
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (false, ',') => {
                    fields.push(String::new());
                    at_start = true;
                    continue;
                }
                (false, '"') if at_start => quoted = true,
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    fields.last_mut().unwrap().push('"');
                }
                (true, '"') => quoted = false,
                (_, c) => fields.last_mut().unwrap().push(c),
            }
            at_start = false;
        }
        assert!(!quoted, "unterminated quote in {line:?}");
        fields
    }

    proptest::proptest! {
        /// Any record decodes without panicking, and its row is 105 cells that read back,
        /// the congestion name included, whatever bytes it holds.
        #[test]
        fn any_record_renders_105_cells(
            idm in proptest::collection::vec(proptest::prelude::any::<u8>(), 72..=80),
            attrs in proptest::collection::vec(
                proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)),
                0..40,
            ),
            cong in ".{0,12}",
        ) {
            let mut attrs = attrs;
            let mut cong_payload = cong.clone().into_bytes();
            cong_payload.push(0);
            if attrs.len() < 5 {
                attrs.resize(5, None);
            }
            attrs[4] = Some(cong_payload);
            let refs: Vec<Option<&[u8]>> = attrs.iter().map(Option::as_deref).collect();
            let record = ArchivalRecord::new(Timestamp::ZERO, &idm, &refs);
            let snap = Snapshot::decode(&record).unwrap();
            let mut line = String::new();
            write_row(&mut line, &snap);
            proptest::prop_assert!(line.ends_with('\n'));
            let fields = parse_record(&line[..line.len() - 1]);
            proptest::prop_assert_eq!(fields.len(), 105);
            proptest::prop_assert_eq!(&fields[col("CongestionAlgorithm")], &cong);
        }
    }

    #[test]
    fn quoting_like_go() {
        let q = |s: &str| {
            let mut o = String::new();
            push_field(&mut o, s);
            o
        };
        assert_eq!(q("cubic"), "cubic");
        assert_eq!(q(""), "");
        assert_eq!(q("a,b"), "\"a,b\"");
        assert_eq!(q("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(q("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(q("cr\r"), "\"cr\r\"");
        assert_eq!(q(" lead"), "\" lead\"");
        assert_eq!(q("\u{a0}nbsp"), "\"\u{a0}nbsp\"");
        assert_eq!(q("trail "), "trail ");
        assert_eq!(q(r"\."), r#""\.""#);
        assert_eq!(q("ü"), "ü");
    }
}
