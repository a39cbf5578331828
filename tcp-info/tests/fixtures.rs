//! SPEC §15: assertions on the four m-lab fixtures, for the record layer (raw netlink splitting,
//! record building, JSON encoding, archive reading).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use tcp_info::record::{ArchivalRecord, ArchiveReader, Timestamp};
use tcp_info::wire::inet_diag::InetDiagMsg;
use tcp_info::wire::netlink::{NLM_F_MULTI, StreamReader};

const ARCHIVE: &str = "archiveRecords.jsonl.zst";
const NDT_7HHHV: &str = "ndt-7hhhv_1559749627_0000000000062D84.00000.jsonl.zst";
const NDT_JDCZH: &str = "ndt-jdczh_1553815964_00000000000003E8.00185.jsonl.zst";
const JSONL_FIXTURES: [&str; 3] = [ARCHIVE, NDT_7HHHV, NDT_JDCZH];

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut field = [0u8; 8];
    field.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(field)
}

#[test]
fn testdata_raw_netlink_facts() {
    let Some(dir) = common::mlab_fixtures() else {
        return;
    };
    let decoder =
        zstd::stream::read::Decoder::new(File::open(dir.join("testdata.zst")).unwrap()).unwrap();
    let mut per_family = BTreeMap::<(u8, usize), usize>::new();
    let mut per_seq = BTreeMap::<u32, (u8, usize)>::new();
    let mut cookies = BTreeMap::<u64, usize>::new();
    let mut total = 0;
    for (i, msg) in StreamReader::new(decoder).enumerate() {
        let msg = msg.unwrap();
        assert_eq!(msg.header.kind, 20);
        assert_eq!(msg.header.flags, NLM_F_MULTI);
        let idm = InetDiagMsg::new(&msg.payload).unwrap();
        *per_family
            .entry((idm.family(), msg.header.len as usize - 16))
            .or_default() += 1;
        let entry = per_seq.entry(msg.header.seq).or_insert((idm.family(), 0));
        assert_eq!(entry.0, idm.family(), "one family per seq");
        entry.1 += 1;
        *cookies.entry(idm.cookie()).or_default() += 1;
        let (record, dropped) =
            ArchivalRecord::from_netlink(&msg.as_message(), Timestamp::ZERO).unwrap();
        assert_eq!(dropped.count, 0);
        if i == 0 {
            // Attribute order on the wire: 8,5,6,1,7,2,4.
            let mut order = Vec::new();
            let mut at = 72;
            while at + 4 <= msg.payload.len() {
                let len = u16::from_ne_bytes([msg.payload[at], msg.payload[at + 1]]) as usize;
                order.push(u16::from_ne_bytes([
                    msg.payload[at + 2],
                    msg.payload[at + 3],
                ]));
                at += len.div_ceil(4) * 4;
            }
            assert_eq!(order, [8, 5, 6, 1, 7, 2, 4]);
        }
        assert_eq!(
            record.attribute(2).unwrap().len(),
            168,
            "every INFO payload is 168 B"
        );
        total += 1;
    }
    assert_eq!(total, 420);
    // The SPEC's sizes are the whole message (header included) minus the header… check both views.
    let families: BTreeMap<u8, usize> =
        per_family
            .iter()
            .fold(BTreeMap::new(), |mut m, ((f, _), n)| {
                *m.entry(*f).or_default() += n;
                m
            });
    assert_eq!(families, BTreeMap::from([(2, 45), (10, 375)]));
    assert_eq!(per_family.len(), 2, "one size per family: {per_family:?}");
    let seqs: Vec<_> = per_seq.into_iter().collect();
    assert_eq!(
        seqs,
        vec![
            (1, (10, 125)),
            (2, (2, 15)),
            (3, (10, 125)),
            (4, (2, 15)),
            (5, (10, 125)),
            (6, (2, 15))
        ]
    );
    assert_eq!(cookies.len(), 140);
    assert!(cookies.values().all(|&n| n == 3));
    assert_eq!(*cookies.keys().next().unwrap(), 0x1240);
    assert_eq!(*cookies.keys().last().unwrap(), 0x5C1E);
}

#[test]
fn golden_raw_to_jsonl_is_byte_identical() {
    let Some(dir) = common::mlab_fixtures() else {
        return;
    };
    let expected = common::decompress(&dir.join(ARCHIVE));
    let decoder =
        zstd::stream::read::Decoder::new(File::open(dir.join("testdata.zst")).unwrap()).unwrap();
    let mut produced = Vec::new();
    let mut lines = 0;
    for msg in StreamReader::new(decoder) {
        let msg = msg.unwrap();
        let (record, _) = ArchivalRecord::from_netlink(&msg.as_message(), Timestamp::ZERO).unwrap();
        record.write_json_line(&mut produced);
        lines += 1;
    }
    assert_eq!(lines, 420);
    if produced != expected {
        let first_diff = produced
            .split(|&b| b == b'\n')
            .zip(expected.split(|&b| b == b'\n'))
            .position(|(a, b)| a != b);
        panic!("golden conversion differs, first at line {first_diff:?}");
    }
}

#[test]
fn every_fixture_line_reencodes_byte_for_byte() {
    let Some(dir) = common::mlab_fixtures() else {
        return;
    };
    for name in JSONL_FIXTURES {
        let raw = common::decompress(&dir.join(name));
        let mut reader = ArchiveReader::open(&dir.join(name)).unwrap();
        let mut reencoded = Vec::with_capacity(raw.len());
        for record in reader.by_ref() {
            record.unwrap().write_json_line(&mut reencoded);
        }
        assert_eq!(reencoded, raw, "{name}");
    }
}

#[test]
fn archive_records_facts() {
    let Some(dir) = common::mlab_fixtures() else {
        return;
    };
    let records: Vec<ArchivalRecord> = ArchiveReader::open(&dir.join(ARCHIVE))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(records.len(), 420);
    let mut families = BTreeMap::<u8, usize>::new();
    let mut cookies = BTreeSet::new();
    for r in &records {
        assert!(!r.is_metadata());
        assert_eq!(r.timestamp.to_string(), "0001-01-01T00:00:00Z");
        let idm = InetDiagMsg::new(r.raw_idm()).unwrap();
        assert_eq!(idm.state(), 1, "ESTABLISHED");
        *families.entry(idm.family()).or_default() += 1;
        cookies.insert(idm.cookie());
        assert_eq!(r.attribute_count(), 9);
        let present: Vec<usize> = (0..9).filter(|&t| r.attribute(t).is_some()).collect();
        let expected: &[usize] = if idm.family() == 10 {
            &[1, 2, 4, 5, 6, 7, 8]
        } else {
            &[1, 2, 4, 5, 7, 8]
        };
        assert_eq!(present, expected);
        assert_eq!(r.attribute(2).unwrap().len(), 168);
    }
    assert_eq!(families, BTreeMap::from([(2, 45), (10, 375)]));
    assert_eq!(cookies.len(), 140);
}

#[test]
fn ndt_7hhhv_facts() {
    let Some(dir) = common::mlab_fixtures() else {
        return;
    };
    let records: Vec<ArchivalRecord> = ArchiveReader::open(&dir.join(NDT_7HHHV))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(records.len(), 892);
    let meta = records[0].metadata.as_deref().unwrap();
    assert_eq!(meta.uuid, "ndt-7hhhv_1559749627_0000000000062D84");
    assert_eq!(meta.sequence, 0);
    assert_eq!(meta.start_time.to_string(), "2019-07-01T00:00:12.092Z");
    let snaps = &records[1..];
    let states: Vec<u8> = snaps
        .iter()
        .map(|r| InetDiagMsg::new(r.raw_idm()).unwrap().state())
        .collect();
    assert_eq!(states.iter().filter(|&&s| s == 1).count(), 889);
    assert_eq!(&states[889..], &[8, 8], "the last two are CLOSE_WAIT");
    let (mut sent, mut received) = (0, 0);
    for r in snaps {
        let idm = InetDiagMsg::new(r.raw_idm()).unwrap();
        assert_eq!(
            (idm.cookie(), idm.family(), idm.sport(), idm.dport()),
            (0x62D84, 10, 33475, 49730)
        );
        assert!(idm.src().to_string().starts_with("::ffff:"), "v4-mapped");
        let info = r.attribute(2).unwrap();
        assert_eq!(info.len(), 224);
        let (s, rcv) = (u64_at(info, 200), u64_at(info, 128));
        assert!(s >= sent && rcv >= received, "non-decreasing counters");
        (sent, received) = (s, rcv);
    }
    assert_eq!((sent, received), (3_939_771, 1245));
    assert_eq!(snaps[0].timestamp.to_string(), "2019-07-01T00:00:12.092Z");
    assert_eq!(
        snaps.last().unwrap().timestamp.to_string(),
        "2019-07-01T00:00:22.752Z"
    );
}

#[test]
fn ndt_jdczh_facts() {
    let Some(dir) = common::mlab_fixtures() else {
        return;
    };
    let records: Vec<ArchivalRecord> = ArchiveReader::open(&dir.join(NDT_JDCZH))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(records.len(), 151);
    let meta = records[0].metadata.as_deref().unwrap();
    assert_eq!(meta.sequence, 185);
    assert_eq!(meta.start_time.to_string(), "2019-04-01T07:42:37.371Z");
    for r in &records[1..] {
        let idm = InetDiagMsg::new(r.raw_idm()).unwrap();
        assert_eq!((idm.cookie(), idm.family(), idm.state()), (0x3E8, 10, 1));
        assert_eq!(idm.src().to_string(), "::ffff:192.168.14.134");
        assert_eq!(idm.dst().to_string(), "::ffff:192.168.14.129");
        assert_eq!((idm.sport(), idm.dport()), (9091, 43508));
        assert_eq!(r.attribute(2).unwrap().len(), 224);
    }
    let last = records.last().unwrap().attribute(2).unwrap();
    assert_eq!((u64_at(last, 200), u64_at(last, 128)), (4_988_158, 374_061));
}

#[test]
fn fixtures_are_single_frames_without_content_size() {
    let Some(dir) = common::mlab_fixtures() else {
        return;
    };
    for name in JSONL_FIXTURES {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        assert_eq!(&bytes[..4], &[0x28, 0xB5, 0x2F, 0xFD], "{name}: zstd magic");
        // Frame_Header_Descriptor: Frame_Content_Size_flag is bits 7-6; with Single_Segment
        // (bit 5) clear, flag 0 means no content size.
        let descriptor = bytes[4];
        assert_eq!(descriptor >> 6, 0, "{name}: no Frame_Content_Size");
        assert_eq!(descriptor & 0x20, 0, "{name}: not single-segment");
        assert_ne!(descriptor & 0x04, 0, "{name}: content checksum");
    }
}
