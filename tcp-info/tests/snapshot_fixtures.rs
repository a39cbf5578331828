//! SPEC §15 facts that need the typed decoder (`tcp_info::snapshot`), checked on the m-lab
//! fixtures.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a fixture that does not decode should fail the test where it happens"
)]

mod common;

use std::path::Path;
use tcp_info::record::ArchiveReader;
use tcp_info::snapshot::Snapshot;
use tcp_info::tcpinfo::{self, TcpInfo};
use tcp_info::wire::inet_diag::{AF_INET, AF_INET6, state};

const ARCHIVE: &str = "archiveRecords.jsonl.zst";
const NDT_7HHHV: &str = "ndt-7hhhv_1559749627_0000000000062D84.00000.jsonl.zst";
const NDT_JDCZH: &str = "ndt-jdczh_1553815964_00000000000003E8.00185.jsonl.zst";

fn snapshots(path: &Path) -> Vec<Snapshot> {
    ArchiveReader::open(path)
        .unwrap()
        .map(|r| Snapshot::decode(&r.unwrap()).unwrap())
        .collect()
}

fn info(s: &Snapshot) -> &TcpInfo {
    s.tcp_info.as_ref().expect("INET_DIAG_INFO present")
}

#[test]
fn archive_records_observed_flags() {
    let Some(dir) = common::mlab_fixtures() else {
        return;
    };
    let snaps = snapshots(&dir.join(ARCHIVE));
    assert_eq!(snaps.len(), 420);
    let (mut v6, mut v4) = (0, 0);
    for s in &snaps {
        let idm = s.idm.expect("every line has RawIDM");
        let expected = match idm.family {
            AF_INET6 => {
                v6 += 1;
                0xFB
            }
            AF_INET => {
                v4 += 1;
                0xDB
            }
            other => panic!("family {other}"),
        };
        assert_eq!(s.observed.as_u64(), Some(expected));
        assert_eq!(
            s.observed.types().collect::<Vec<_>>(),
            if idm.family == AF_INET6 {
                vec![1, 2, 4, 5, 6, 7, 8]
            } else {
                vec![1, 2, 4, 5, 7, 8]
            }
        );
        // Every payload is at most its struct's size, so everything counts as parsed.
        assert!(s.not_fully_parsed.is_empty(), "{}", s.not_fully_parsed);
        assert_eq!(idm.state, state::ESTABLISHED);
        let t = info(s);
        assert_eq!(t.len, 168);
        assert!(!t.covers(tcpinfo::BYTES_SENT + 8));
        assert_eq!(t.bytes_sent, 0, "168-byte tcp_info has no bytes_sent");
        assert_eq!(s.tclass.is_some(), idm.family == AF_INET6);
        assert!(s.mem_info.is_some() && s.sk_mem_info.is_some() && s.shutdown.is_some());
        assert!(!s.congestion_algorithm.as_deref().unwrap_or("").is_empty());
        assert!(s.undecoded.is_empty());
        assert!(s.is_etl_kept());
    }
    assert_eq!((v6, v4), (375, 45));
}

#[test]
fn ndt_jdczh_snapshots() {
    let Some(dir) = common::mlab_fixtures() else {
        return;
    };
    let snaps = snapshots(&dir.join(NDT_JDCZH));
    let json = common::decompress(&dir.join(NDT_JDCZH));
    let lines = std::str::from_utf8(&json).unwrap().lines().count();
    assert_eq!((snaps.len(), lines), (151, 151), "one snapshot per line");
    let meta = snaps[0].metadata.as_ref().expect("line 1 is Metadata");
    assert_eq!(meta.sequence, 185);
    assert_eq!(meta.uuid, "ndt-jdczh_1553815964_00000000000003E8");
    assert!(snaps[0].idm.is_none() && snaps[0].observed.is_empty());

    for s in &snaps[1..] {
        assert!(!s.is_metadata());
        assert_eq!(s.observed.as_u64(), Some(0xFB));
        // 224-byte tcp_info is shorter than this decoder's 280 bytes (and upstream's 232):
        // zero-filled, parsed.
        assert!(s.not_fully_parsed.is_empty(), "{}", s.not_fully_parsed);
        assert_eq!(info(s).len, 224);
        let idm = s.idm.unwrap();
        assert_eq!(idm.family, AF_INET6);
        assert_eq!(idm.state, state::ESTABLISHED);
        assert_eq!(idm.cookie, 0x3E8);
        assert_eq!((idm.sport, idm.dport), (9091, 43508));
        assert_eq!(idm.src.to_string(), "::ffff:192.168.14.134");
        assert_eq!(idm.dst.to_string(), "::ffff:192.168.14.129");
    }
    let last = info(snaps.last().unwrap());
    assert_eq!((last.bytes_sent, last.bytes_received), (4_988_158, 374_061));

    // The ETL rule (Observed == 0 is dropped) removes only the Metadata line.
    let kept: Vec<_> = snaps.iter().filter(|s| s.is_etl_kept()).collect();
    assert_eq!(kept.len(), 150);
    assert!(kept.iter().all(|s| !s.is_metadata()));
}

#[test]
fn ndt_7hhhv_final_counters() {
    let Some(dir) = common::mlab_fixtures() else {
        return;
    };
    let snaps = snapshots(&dir.join(NDT_7HHHV));
    assert_eq!(snaps.len(), 892);
    assert_eq!(snaps[0].metadata.as_ref().unwrap().sequence, 0);
    let body = &snaps[1..];
    let (mut sent, mut received) = (0, 0);
    for (i, s) in body.iter().enumerate() {
        let t = info(s);
        assert_eq!(t.len, 224);
        assert!(
            t.bytes_sent >= sent && t.bytes_received >= received,
            "line {}",
            i + 2
        );
        (sent, received) = (t.bytes_sent, t.bytes_received);
        let idm = s.idm.unwrap();
        assert_eq!((idm.cookie, idm.sport, idm.dport), (0x62D84, 33475, 49730));
        let expected_state = if i >= body.len() - 2 {
            state::CLOSE_WAIT
        } else {
            state::ESTABLISHED
        };
        assert_eq!(idm.state, expected_state, "line {}", i + 2);
        assert_eq!(s.observed.as_u64(), Some(0xFB));
        assert!(s.not_fully_parsed.is_empty());
    }
    assert_eq!((sent, received), (3_939_771, 1245));
    assert_eq!(snaps.iter().filter(|s| s.is_etl_kept()).count(), 891);
}
