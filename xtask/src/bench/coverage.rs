//! Coverage: which ground-truth connections a collector's archives hold, and whether their
//! last record carries the exact final counters.
//!
//! The collector runs in the server namespace, so a connection's records describe the server
//! socket: local = server address and port, remote = client. Records are matched to the ground
//! truth by socket cookie (unique per socket, and in every archive record), and one of them
//! must carry the same 4-tuple: a query that races the socket's final close can report source
//! port 0 (the kernel clears the port a moment before the state becomes CLOSE;
//! `docs/compatibility.md` §13.8), and the archive keeps that record verbatim. A connection is
//! *seen* when at least one record has `tcp_info`; it is *exact* when its last record with
//! `tcp_info` has `bytes_acked` and `bytes_received` equal to the server socket's final counters
//! recorded by the workload.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tcp_info::record::{ArchivalRecord, ArchiveReader};
use tcp_info::tcpinfo::TcpInfo;
use tcp_info::wire::inet_diag::InetDiagMsg;

use crate::workload::truth::{ConnClass, ConnTruth};

/// `INET_DIAG_INFO`, the attribute holding `struct tcp_info`.
const INET_DIAG_INFO: usize = 2;

/// What the archives say about one socket.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    /// The distinct (local, remote) pairs its records carry, in order of appearance.
    tuples: Vec<(SocketAddr, SocketAddr)>,
    info_records: u64,
    /// (file sequence, line) of the last record with `tcp_info`, and its counters.
    last: Option<((u64, u64), u64, u64)>,
    /// Timestamps (Unix ns) of the records with `tcp_info`.
    times: Vec<i128>,
}

/// Every socket found in a set of archives, by cookie.
#[derive(Debug, Default)]
pub struct ArchiveIndex {
    by_cookie: HashMap<u64, Observed>,
    /// Snapshot records read.
    pub records: u64,
    /// Metadata lines read.
    pub metadata_lines: u64,
    /// Files read.
    pub files: u64,
    /// Files that failed to read or decode (their readable records still count).
    pub bad_files: u64,
    /// The first read error, for the report.
    pub first_error: Option<String>,
}

impl ArchiveIndex {
    /// Reads every `.jsonl` / `.jsonl.zst` archive under `dir`.
    pub fn from_dir(dir: &Path) -> Self {
        let mut idx = Self::default();
        for p in &archive_paths(dir) {
            idx.add_file(p);
        }
        idx
    }

    /// Reads one archive file.
    pub fn add_file(&mut self, path: &Path) {
        self.files += 1;
        let seq = sequence_from_name(path);
        let reader = match ArchiveReader::open(path) {
            Ok(r) => r,
            Err(e) => return self.note_error(&e.to_string()),
        };
        for (line, rec) in reader.enumerate() {
            match rec {
                Ok(r) => self.add_record(seq, line as u64, &r),
                Err(e) => return self.note_error(&e.to_string()),
            }
        }
    }

    fn note_error(&mut self, e: &str) {
        self.bad_files += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_owned());
        }
    }

    /// Adds one record found at (`seq`, `line`) of a file.
    pub fn add_record(&mut self, seq: u64, line: u64, r: &ArchivalRecord) {
        if r.is_metadata() {
            self.metadata_lines += 1;
            return;
        }
        self.records += 1;
        let Ok(idm) = InetDiagMsg::new(r.raw_idm()) else {
            return;
        };
        let canon = |ip: IpAddr| ip.to_canonical();
        let local = SocketAddr::new(canon(idm.src()), idm.sport());
        let remote = SocketAddr::new(canon(idm.dst()), idm.dport());
        let o = self.by_cookie.entry(idm.cookie()).or_insert(Observed {
            tuples: Vec::new(),
            info_records: 0,
            last: None,
            times: Vec::new(),
        });
        if !o.tuples.contains(&(local, remote)) {
            o.tuples.push((local, remote));
        }
        if let Some(info) = r.attribute(INET_DIAG_INFO).filter(|p| !p.is_empty()) {
            o.info_records += 1;
            o.times.push(r.timestamp.unix_nanos());
            let pos = (seq, line);
            if o.last.is_none_or(|(p, _, _)| pos >= p) {
                let t = TcpInfo::decode(info);
                o.last = Some((pos, t.bytes_acked, t.bytes_received));
            }
        }
    }
}

/// The segment number from `<uuid>.<seq>.jsonl[.zst]` (0 if absent).
fn sequence_from_name(path: &Path) -> u64 {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".jsonl.zst")
        .or_else(|| name.strip_suffix(".jsonl"))
        .unwrap_or(name);
    stem.rsplit_once('.')
        .and_then(|(_, s)| s.parse().ok())
        .unwrap_or(0)
}

#[expect(
    clippy::case_sensitive_file_extension_comparisons,
    reason = "archive names are lower-case by specification (SPEC §5.1)"
)]
fn is_archive(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".jsonl") || n.ends_with(".jsonl.zst"))
}

/// Every `.jsonl` / `.jsonl.zst` file under `dir`, sorted.
pub fn archive_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    collect_archives(dir, &mut paths);
    paths.sort();
    paths
}

fn collect_archives(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => collect_archives(&p, out),
            Ok(t) if t.is_file() && is_archive(&p) => out.push(p),
            _ => {}
        }
    }
}

/// Coverage of one connection class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCoverage {
    /// Connections in the ground truth.
    pub total: usize,
    /// With at least one `tcp_info` record.
    pub seen: usize,
    /// Connections whose final counters are known (the denominator of `exact`).
    pub gradable: usize,
    /// Whose last `tcp_info` record has the exact final counters.
    pub exact: usize,
}

impl ClassCoverage {
    /// `seen / total` (None when the class is empty).
    pub fn seen_frac(&self) -> Option<f64> {
        (self.total > 0).then(|| self.seen as f64 / self.total as f64)
    }

    /// `exact / gradable` (None when nothing is gradable).
    pub fn exact_frac(&self) -> Option<f64> {
        (self.gradable > 0).then(|| self.exact as f64 / self.gradable as f64)
    }

    fn add(&mut self, o: &Self) {
        self.total += o.total;
        self.seen += o.seen;
        self.gradable += o.gradable;
        self.exact += o.exact;
    }
}

/// Coverage per class (indexed by [`ConnClass`] as usize).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Idle, bulk, short.
    pub per_class: [ClassCoverage; 3],
}

impl Coverage {
    /// One class.
    pub fn class(&self, c: ConnClass) -> &ClassCoverage {
        &self.per_class[c as usize]
    }

    /// All classes together.
    pub fn overall(&self) -> ClassCoverage {
        let mut all = ClassCoverage::default();
        for c in &self.per_class {
            all.add(c);
        }
        all
    }
}

/// How the archives served one ground-truth connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Grade {
    seen: bool,
    /// Whether the last record had the final counters; `None` when they are unknown.
    exact: Option<bool>,
}

impl ArchiveIndex {
    /// The socket `t` names by cookie, if its records carry `t`'s 4-tuple.
    fn observed(&self, t: &ConnTruth) -> Option<&Observed> {
        self.by_cookie
            .get(&t.cookie)
            .filter(|o| t.cookie != 0 && o.tuples.contains(&truth_tuple(t)))
    }

    fn grade(&self, t: &ConnTruth) -> Grade {
        let observed = self.observed(t);
        Grade {
            seen: observed.is_some_and(|o| o.info_records > 0),
            exact: t.server_final.map(|fin| {
                observed
                    .and_then(|o| o.last)
                    .is_some_and(|(_, acked, received)| {
                        acked == fin.bytes_acked && received == fin.bytes_received
                    })
            }),
        }
    }

    /// What the archives hold under `t`'s cookie, whatever its 4-tuple: for a report on a
    /// connection that was not seen or not exact.
    pub fn describe(&self, t: &ConnTruth) -> String {
        let Some(o) = self.by_cookie.get(&t.cookie) else {
            return "no record under its cookie".to_owned();
        };
        let tuples: Vec<String> = o
            .tuples
            .iter()
            .map(|(local, remote)| format!("local {local} remote {remote}"))
            .collect();
        let tuple = if o.tuples.contains(&truth_tuple(t)) {
            format!("its 4-tuple among [{}]", tuples.join(", "))
        } else {
            format!("a different 4-tuple: [{}]", tuples.join(", "))
        };
        let last = match o.last {
            Some(((seq, line), acked, received)) => format!(
                "last tcp_info at segment {seq} line {line}: bytes_acked {acked}, \
                 bytes_received {received}"
            ),
            None => "no record with tcp_info".to_owned(),
        };
        format!("{} records with tcp_info, {tuple}; {last}", o.info_records)
    }
}

/// The (local, remote) pair the collector's records of `t` carry: the server socket's.
fn truth_tuple(t: &ConnTruth) -> (SocketAddr, SocketAddr) {
    (SocketAddr::V4(t.server), SocketAddr::V4(t.client))
}

/// Grades `index` against the ground truth.
pub fn coverage(truth: &[ConnTruth], index: &ArchiveIndex) -> Coverage {
    let mut cov = Coverage::default();
    for t in truth {
        let c = &mut cov.per_class[t.class as usize];
        let grade = index.grade(t);
        c.total += 1;
        c.seen += usize::from(grade.seen);
        if let Some(exact) = grade.exact {
            c.gradable += 1;
            c.exact += usize::from(exact);
        }
    }
    cov
}

/// The ground-truth connections `index` did not see, or whose last record lacks the exact final
/// counters, in truth order.
pub fn misses<'t>(truth: &'t [ConnTruth], index: &ArchiveIndex) -> Vec<&'t ConnTruth> {
    truth
        .iter()
        .filter(|t| {
            let g = index.grade(t);
            !g.seen || g.exact == Some(false)
        })
        .collect()
}

/// For every ground-truth connection of `class` the archives hold, its records with `tcp_info`
/// per second between `from` and `to` (Unix ns): the time resolution a collector gives it.
pub fn records_per_second(
    truth: &[ConnTruth],
    index: &ArchiveIndex,
    class: ConnClass,
    (from, to): (i128, i128),
) -> Vec<f64> {
    let seconds = (to - from) as f64 / 1e9;
    if seconds <= 0.0 {
        return Vec::new();
    }
    truth
        .iter()
        .filter(|t| t.class == class)
        .filter_map(|t| index.by_cookie.get(&t.cookie))
        .map(|o| {
            o.times
                .iter()
                .filter(|&&ts| (from..to).contains(&ts))
                .count() as f64
                / seconds
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::fake::{FakeMode, raw_idm, tcp_info_payload, write_fake_archives};
    use crate::workload::truth::tests::sample;
    use tcp_info::record::Timestamp;

    fn truth() -> Vec<ConnTruth> {
        let mut t = Vec::new();
        for i in 0..300 {
            t.push(sample(ConnClass::Idle, i));
        }
        for i in 300..304 {
            t.push(sample(ConnClass::Bulk, i));
        }
        for i in 304..454 {
            t.push(sample(ConnClass::Short, i));
        }
        t
    }

    fn grade(mode: FakeMode) -> (Coverage, ArchiveIndex) {
        let t = truth();
        let dir = tempfile::tempdir().unwrap();
        write_fake_archives(&t, mode, dir.path(), "bench_1").unwrap();
        let idx = ArchiveIndex::from_dir(dir.path());
        assert_eq!(idx.bad_files, 0, "{:?}", idx.first_error);
        (coverage(&t, &idx), idx)
    }

    #[test]
    fn faithful_collector_scores_full_marks() {
        let (c, idx) = grade(FakeMode::Faithful);
        assert_eq!(idx.files, 454);
        assert_eq!((idx.records, idx.metadata_lines), (908, 454));
        let all = c.overall();
        assert_eq!(
            (all.total, all.seen, all.gradable, all.exact),
            (454, 454, 454, 454)
        );
    }

    /// The self-test of the issue: dropping every third connection scores about 67 %.
    #[test]
    fn dropping_every_third_connection_scores_two_thirds() {
        let (c, _) = grade(FakeMode::DropEveryThird);
        let all = c.overall();
        let frac = all.seen_frac().unwrap();
        assert!((frac - 2.0 / 3.0).abs() < 0.01, "{frac}");
        assert_eq!(c.class(ConnClass::Idle).seen, 200);
        assert_eq!(c.class(ConnClass::Bulk).seen, 3);
        assert_eq!(c.class(ConnClass::Short).seen, 100);
        assert!((all.exact_frac().unwrap() - frac).abs() < 1e-9);
    }

    /// The self-test of the issue: stale final counters fail the exact check everywhere, even
    /// though every connection is seen.
    #[test]
    fn stale_final_counters_fail_the_exact_check() {
        let (c, _) = grade(FakeMode::StaleFinal);
        let all = c.overall();
        assert_eq!(all.seen, all.total);
        assert_eq!(all.exact, 0);
    }

    #[test]
    fn wrong_tuple_or_missing_info_is_not_coverage() {
        let t = vec![
            sample(ConnClass::Idle, 1),
            sample(ConnClass::Idle, 2),
            sample(ConnClass::Idle, 3),
        ];
        let mut idx = ArchiveIndex::default();
        let ts = Timestamp::from_unix(1_700_000_000, 0).unwrap();
        let fin = t[0].server_final.unwrap();
        let info = tcp_info_payload(7, fin.bytes_acked, fin.bytes_received);
        // 1: right cookie, but the client port differs.
        let mut other = t[0].clone();
        other.client.set_port(1);
        idx.add_record(
            0,
            1,
            &ArchivalRecord::new(ts, &raw_idm(&other, 1), &[None, None, Some(&info)]),
        );
        // 2: no tcp_info attribute at all (e.g. a time-wait record).
        idx.add_record(0, 1, &ArchivalRecord::new(ts, &raw_idm(&t[1], 5), &[None]));
        // 3: exact record first, then a later stale one: the last one decides.
        let fin3 = t[2].server_final.unwrap();
        let good = tcp_info_payload(7, fin3.bytes_acked, fin3.bytes_received);
        let stale = tcp_info_payload(7, 1, 1);
        idx.add_record(
            0,
            2,
            &ArchivalRecord::new(ts, &raw_idm(&t[2], 1), &[None, None, Some(&good)]),
        );
        idx.add_record(
            1,
            1,
            &ArchivalRecord::new(ts, &raw_idm(&t[2], 1), &[None, None, Some(&stale)]),
        );
        let c = coverage(&t, &idx).overall();
        assert_eq!((c.total, c.seen, c.exact), (3, 1, 0));
        assert_eq!(misses(&t, &idx), vec![&t[0], &t[1], &t[2]]);
        assert!(idx.describe(&t[0]).contains("a different 4-tuple"));
        assert!(idx.describe(&t[1]).contains("no record with tcp_info"));
        assert!(
            idx.describe(&t[2])
                .contains("bytes_acked 1, bytes_received 1")
        );
        // Order matters by (sequence, line), not by arrival.
        idx.add_record(
            0,
            9,
            &ArchivalRecord::new(ts, &raw_idm(&t[2], 1), &[None, None, Some(&good)]),
        );
        assert_eq!(coverage(&t, &idx).overall().exact, 0);
        idx.add_record(
            1,
            2,
            &ArchivalRecord::new(ts, &raw_idm(&t[2], 1), &[None, None, Some(&good)]),
        );
        assert_eq!(coverage(&t, &idx).overall().exact, 1);
        assert_eq!(misses(&t, &idx), vec![&t[0], &t[1]]);
        // 1 again: a record with its right 4-tuple after one with another (as when a reply that
        // raced the close carried source port 0) makes it seen and exact.
        idx.add_record(
            0,
            2,
            &ArchivalRecord::new(ts, &raw_idm(&t[0], 1), &[None, None, Some(&info)]),
        );
        assert_eq!(misses(&t, &idx), vec![&t[1]]);
        assert!(idx.describe(&t[0]).contains("its 4-tuple among [local"));
    }

    #[test]
    fn sequence_parsing() {
        assert_eq!(
            sequence_from_name(Path::new("/a/x_00000000000003E8.00185.jsonl.zst")),
            185
        );
        assert_eq!(sequence_from_name(Path::new("x.00002.jsonl")), 2);
        assert_eq!(sequence_from_name(Path::new("weird.jsonl")), 0);
    }

    #[test]
    fn corrupt_files_are_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.00000.jsonl.zst"), b"not zstd").unwrap();
        std::fs::write(dir.path().join("ignored.txt"), b"x").unwrap();
        let idx = ArchiveIndex::from_dir(dir.path());
        assert_eq!((idx.files, idx.bad_files), (1, 1));
        assert!(idx.first_error.is_some());
    }
}
