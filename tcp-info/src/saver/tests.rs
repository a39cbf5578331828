//! Saver behaviour tests: SPEC §16 (saver row and the gaps list), §5, §6.3, §6.4, §11.2, §12.

use super::testutil::{TempTree, raw_idm, read_all, snapshot};
use super::*;
use crate::record::{ArchivalRecord, NetnsTag, Timestamp, frame_has_content_size};
use crate::uuid::Prefix;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const PREFIX: &str = "ndt-jdczh_1553815964";
/// 2019-04-01T07:42:37Z.
const T_2019: i64 = 1_554_104_557;
const MIN: Duration = Duration::from_secs(60);

fn config(tree: &TempTree) -> SaverConfig {
    let mut c = SaverConfig::new(Prefix::from_bytes(PREFIX.as_bytes().to_vec()).unwrap());
    c.root = tree.path().to_owned();
    c
}

fn name(cookie: u64, seq: u32) -> String {
    format!("{PREFIX}_{cookie:016X}.{seq:05}.jsonl.zst")
}

/// `YYYY/MM/DD` of the current UTC date.
fn today_dir() -> PathBuf {
    paths::date_dir(Path::new(""), Timestamp::now().utc_date())
}

/// Checks that `bytes` is a sequence of complete frames, none with a content size.
fn assert_frames(bytes: &[u8]) -> usize {
    assert_eq!(complete_frames_len(bytes), bytes.len(), "incomplete frame");
    let mut at = 0;
    let mut n = 0;
    while at < bytes.len() {
        assert_eq!(
            frame_has_content_size(&bytes[at..]),
            Some(false),
            "frame {n}"
        );
        at += zstd::zstd_safe::find_frame_compressed_size(&bytes[at..]).unwrap();
        n += 1;
    }
    n
}

/// Reads a finished archive and checks the file-level invariants (SPEC §6.3): Metadata first
/// with this name's UUID and sequence, then at least one snapshot, every frame complete.
fn check_archive(path: &std::path::Path) -> (Metadata, Vec<ArchivalRecord>) {
    let bytes = fs::read(path).unwrap();
    assert!(assert_frames(&bytes) >= 1, "{}", path.display());
    let mut records = read_all(path);
    assert!(
        records.len() >= 2,
        "{}: {} lines",
        path.display(),
        records.len()
    );
    let first = records.remove(0);
    let meta = *first.metadata.expect("Metadata on line 1");
    assert!(first.timestamp.is_zero());
    let file = path.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        file,
        format!("{}.{:05}.jsonl.zst", meta.uuid, meta.sequence)
    );
    assert!(
        records
            .iter()
            .all(|r| !r.is_metadata() && r.raw_idm().len() == 72)
    );
    (meta, records)
}

fn expect_write(
    saver: &mut Saver,
    cookie: u64,
    record: &ArchivalRecord,
    now: Instant,
) -> WriteOutcome {
    let outcome = saver.write(cookie, record, now).unwrap();
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    outcome
}

#[test]
fn spec_saver_row_two_cookies() {
    let tree = TempTree::new("spec-row");
    let mut saver = Saver::new(config(&tree)).unwrap();
    let t0 = Instant::now();
    let mut written = BTreeMap::new();
    for (i, cookie) in [0x2BE2_u64, 0xEB].into_iter().enumerate() {
        let records = vec![
            snapshot(cookie, T_2019 + i as i64, 1),
            snapshot(cookie, T_2019 + 5, 2),
        ];
        let first = expect_write(&mut saver, cookie, &records[0], t0);
        assert!(first.new_connection);
        assert_eq!(first.opened, Some(0));
        let second = expect_write(&mut saver, cookie, &records[1], t0);
        assert!(!second.new_connection && second.opened.is_none());
        written.insert(cookie, records);
    }
    let stats = saver.stats();
    assert_eq!((stats.files_opened, stats.open_segments), (2, 2));
    assert!(saver.close(0x2BE2).unwrap());
    assert!(saver.close(0xEB).unwrap());
    assert!(!saver.close(0xEB).unwrap());
    let stats = saver.stats();
    assert_eq!(stats.files_opened, 2);
    assert_eq!(stats.files_closed, 2);
    assert_eq!(stats.snapshots_written, 4);
    assert_eq!(stats.lines_written, 6);
    assert_eq!((stats.open_segments, stats.pending_bytes), (0, 0));
    assert_eq!(saver.tracked(), 0);
    assert_eq!(
        tree.files(),
        vec![
            PathBuf::from("2019/04/01").join(name(0xEB, 0)),
            PathBuf::from("2019/04/01").join(name(0x2BE2, 0)),
        ]
    );
    assert!(tree.files()[0].ends_with("ndt-jdczh_1553815964_00000000000000EB.00000.jsonl.zst"));
    assert!(tree.files()[1].ends_with("ndt-jdczh_1553815964_0000000000002BE2.00000.jsonl.zst"));
    for (cookie, records) in written {
        let path = tree.path().join("2019/04/01").join(name(cookie, 0));
        let (meta, snapshots) = check_archive(&path);
        assert_eq!(meta.uuid, format!("{PREFIX}_{cookie:016X}"));
        assert_eq!(meta.sequence, 0);
        assert_eq!(meta.start_time, records[0].timestamp);
        assert_eq!(snapshots, records);
        // Byte compatibility: line 1 exactly as upstream writes it.
        let text = zstd::stream::decode_all(&fs::read(&path).unwrap()[..]).unwrap();
        let line1 = text.split(|&b| b == b'\n').next().unwrap();
        let want = format!(
            "{{\"Timestamp\":\"0001-01-01T00:00:00Z\",\"Metadata\":{{\"UUID\":\"{PREFIX}_{cookie:016X}\",\"Sequence\":0,\"StartTime\":\"{}\"}}}}",
            records[0].timestamp
        );
        assert_eq!(String::from_utf8_lossy(line1), want);
    }
    let stats = saver.stats();
    assert_eq!(stats.frames_written, 2);
    let on_disk: u64 = tree
        .files()
        .iter()
        .map(|f| fs::metadata(tree.path().join(f)).unwrap().len())
        .sum();
    assert_eq!(stats.bytes_compressed, on_disk);
}

/// SPEC §12 D2: a segment expires `rotation_age` after it was opened, idle or not; the next
/// segment opens lazily with the next record, in today's directory.
#[test]
fn rotation_counts_from_open_time_and_tick_closes_idle_segments() {
    let tree = TempTree::new("rotation");
    let mut saver = Saver::new(config(&tree)).unwrap();
    let t0 = Instant::now();
    let cookie = 0x3E8;
    assert_eq!(
        expect_write(&mut saver, cookie, &snapshot(cookie, T_2019, 1), t0).opened,
        Some(0)
    );
    assert!(
        expect_write(
            &mut saver,
            cookie,
            &snapshot(cookie, T_2019 + 540, 2),
            t0 + 9 * MIN
        )
        .opened
        .is_none()
    );
    let report = saver.tick(t0 + 9 * MIN + Duration::from_millis(59_999));
    assert!(report.errors.is_empty() && report.closed == 0);
    let seg0 = saver.segment_path(cookie).unwrap().to_owned();
    assert!(seg0.ends_with(PathBuf::from("2019/04/01").join(name(cookie, 0))));
    // Idle since minute 9, but the segment was opened at minute 0: it ends at minute 10.
    let report = saver.tick(t0 + 10 * MIN);
    assert_eq!((report.closed, report.errors.len()), (1, 0));
    assert!(saver.segment_path(cookie).is_none());
    assert_eq!(saver.stats().rotations, 1);
    assert_eq!(check_archive(&seg0).1.len(), 2);
    assert_eq!(saver.tracked(), 1);

    // After 15 idle minutes, one record opens exactly one new segment (no burst of rotations).
    let before = today_dir();
    let out = expect_write(
        &mut saver,
        cookie,
        &snapshot(cookie, T_2019 + 1500, 3),
        t0 + 25 * MIN,
    );
    assert_eq!(out.opened, Some(1));
    assert!(!out.new_connection);
    let seg1 = saver.segment_path(cookie).unwrap().to_owned();
    let rel = seg1.strip_prefix(tree.path()).unwrap();
    // Segment 1 is in the UTC date directory of the moment it was opened.
    let after = today_dir();
    assert!(
        [before, after]
            .iter()
            .any(|d| rel == d.join(name(cookie, 1))),
        "{}",
        rel.display()
    );
    assert!(
        expect_write(
            &mut saver,
            cookie,
            &snapshot(cookie, T_2019 + 2040, 4),
            t0 + 34 * MIN
        )
        .opened
        .is_none()
    );
    // The write at minute 35 finds the segment expired (opened at 25) and rotates itself.
    let out = expect_write(
        &mut saver,
        cookie,
        &snapshot(cookie, T_2019 + 2100, 5),
        t0 + 35 * MIN,
    );
    assert_eq!(out.opened, Some(2));
    assert_eq!(saver.stats().rotations, 2);
    let (meta1, snaps1) = check_archive(&seg1);
    assert_eq!((meta1.sequence, snaps1.len()), (1, 2));
    assert_eq!(
        meta1.start_time,
        Timestamp::from_unix(T_2019, 123_000_000).unwrap()
    );
    assert!(saver.close(cookie).unwrap());
    let stats = saver.stats();
    assert_eq!((stats.files_opened, stats.files_closed), (3, 3));
    let names: Vec<_> = tree
        .files()
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 3);
}

/// A connection that pauses keeps its segment (upstream writes one file per connection and
/// rotation period): only the rotation age ends it, and the next record opens the next one.
#[test]
fn a_paused_connection_keeps_its_segment_until_rotation() {
    let tree = TempTree::new("pause");
    let mut saver = Saver::new(config(&tree)).unwrap();
    let t0 = Instant::now();
    let minutes = |m: u64| t0 + Duration::from_secs(60 * m);
    let _ = expect_write(&mut saver, 7, &snapshot(7, T_2019, 1), t0);
    // Five quiet minutes: flushed, still open.
    assert_eq!(saver.tick(minutes(5)).closed, 0);
    assert_eq!(saver.stats().open_segments, 1);
    let out = expect_write(&mut saver, 7, &snapshot(7, T_2019 + 300, 2), minutes(5));
    assert_eq!(out.opened, None, "the pause did not end the segment");
    assert_eq!(
        saver
            .tick(minutes(9) + Duration::from_millis(59_999))
            .closed,
        0
    );
    let report = saver.tick(minutes(10));
    assert_eq!(report.closed, 1);
    let stats = saver.stats();
    assert_eq!(
        (stats.rotations, stats.evictions, stats.open_segments),
        (1, 0, 0)
    );
    assert_eq!(saver.tracked(), 1);
    let out = expect_write(&mut saver, 7, &snapshot(7, T_2019 + 700, 3), minutes(12));
    assert_eq!(out.opened, Some(1));
    let path = saver.segment_path(7).unwrap().to_owned();
    assert!(saver.close(7).unwrap());
    let (meta, snaps) = check_archive(&tree.path().join("2019/04/01").join(name(7, 0)));
    assert_eq!(meta.sequence, 0);
    assert_eq!(
        snaps,
        vec![snapshot(7, T_2019, 1), snapshot(7, T_2019 + 300, 2)]
    );
    let (meta, snaps) = check_archive(&path);
    assert_eq!(meta.sequence, 1);
    assert_eq!(meta.start_time, snapshot(7, T_2019, 1).timestamp);
    assert_eq!(snaps, vec![snapshot(7, T_2019 + 700, 3)]);
}

/// A file decodes up to its last flush while still open, and its content advances with flushes.
#[test]
fn open_files_are_readable_up_to_the_last_flush() {
    let tree = TempTree::new("readable");
    let mut saver = Saver::new(config(&tree)).unwrap();
    let t0 = Instant::now();
    let cookie = 0x1234;
    let _ = expect_write(&mut saver, cookie, &snapshot(cookie, T_2019, 1), t0);
    let path = saver.segment_path(cookie).unwrap().to_owned();
    // Buffered, not on disk yet.
    assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    assert_eq!(saver.tick(t0 + Duration::from_millis(999)).flushed, 0);
    assert_eq!(saver.tick(t0 + Duration::from_secs(1)).flushed, 1);
    let len1 = fs::metadata(&path).unwrap().len();
    assert_eq!(read_all(&path).len(), 2);
    let _ = expect_write(
        &mut saver,
        cookie,
        &snapshot(cookie, T_2019 + 1, 2),
        t0 + Duration::from_millis(1500),
    );
    assert_eq!(fs::metadata(&path).unwrap().len(), len1);
    assert_eq!(read_all(&path).len(), 2);
    // A write arriving after the flush interval flushes without waiting for a tick.
    let _ = expect_write(
        &mut saver,
        cookie,
        &snapshot(cookie, T_2019 + 2, 3),
        t0 + Duration::from_millis(2600),
    );
    assert!(fs::metadata(&path).unwrap().len() > len1);
    let records = read_all(&path);
    assert_eq!(records.len(), 4);
    assert_eq!(records[3], snapshot(cookie, T_2019 + 2, 3));
    assert_eq!(saver.stats().pending_bytes, 0);
    assert_eq!(assert_frames(&fs::read(&path).unwrap()), 2);
    // flush_all writes what is buffered.
    let _ = expect_write(
        &mut saver,
        cookie,
        &snapshot(cookie, T_2019 + 3, 4),
        t0 + Duration::from_millis(2700),
    );
    assert!(saver.stats().pending_bytes > 0);
    let report = saver.flush_all();
    assert_eq!((report.flushed, report.closed), (1, 0));
    assert_eq!(read_all(&path).len(), 5);
    assert!(saver.segment_path(cookie).is_some());
}

#[test]
fn full_buffers_flush_on_write() {
    let tree = TempTree::new("max-pending");
    let mut c = config(&tree);
    c.max_pending = 4096;
    let mut saver = Saver::new(c).unwrap();
    let t0 = Instant::now();
    let line_len = snapshot(5, T_2019, 0).to_json_line().len();
    for i in 0..40 {
        let _ = expect_write(&mut saver, 5, &snapshot(5, T_2019 + i, i as u8), t0);
    }
    let stats = saver.stats();
    assert!(
        stats.frames_written >= (40 * line_len / 4096 - 1) as u64,
        "{stats:?}"
    );
    assert!(stats.pending_bytes < 4096);
    let path = saver.segment_path(5).unwrap().to_owned();
    assert!(saver.close(5).unwrap());
    let (_, snaps) = check_archive(&path);
    assert_eq!(snaps.len(), 40);
    assert_eq!(
        assert_frames(&fs::read(&path).unwrap()) as u64,
        saver.stats().frames_written
    );
}

/// SPEC §12 D1: an existing name is never truncated or reused.
#[test]
fn never_truncates_an_existing_file() {
    let tree = TempTree::new("no-truncate");
    let mut saver = Saver::new(config(&tree)).unwrap();
    let cookie = 0x2BE2;
    let dir = tree.path().join("2019/04/01");
    fs::create_dir_all(&dir).unwrap();
    let precious = dir.join(name(cookie, 0));
    fs::write(&precious, b"previous run").unwrap();
    let out = expect_write(
        &mut saver,
        cookie,
        &snapshot(cookie, T_2019, 1),
        Instant::now(),
    );
    assert_eq!(out.opened, Some(1));
    assert_eq!(
        saver.segment_path(cookie),
        Some(dir.join(name(cookie, 1)).as_path())
    );
    assert!(saver.close(cookie).unwrap());
    assert_eq!(fs::read(&precious).unwrap(), b"previous run");
    let (meta, _) = check_archive(&dir.join(name(cookie, 1)));
    assert_eq!(meta.sequence, 1);
    assert_eq!(meta.start_time, snapshot(cookie, T_2019, 1).timestamp);
}

/// A restarted saver over an existing tree overwrites nothing and continues each connection's
/// sequence and `StartTime`, whatever date directory its archives are in.
#[test]
fn restart_over_an_existing_tree_overwrites_nothing() {
    let tree = TempTree::new("restart");
    let t0 = Instant::now();
    let mut first = Saver::new(config(&tree)).unwrap();
    for cookie in [1_u64, 2] {
        let _ = expect_write(&mut first, cookie, &snapshot(cookie, T_2019, 1), t0);
    }
    // Cookie 1 gets a second segment (in today's directory).
    assert_eq!(first.tick(t0 + 10 * MIN).closed, 2);
    let _ = expect_write(&mut first, 1, &snapshot(1, T_2019 + 700, 2), t0 + 11 * MIN);
    let report = first.shutdown();
    assert!(report.errors.is_empty() && report.closed == 1);
    drop(first);
    let before: BTreeMap<PathBuf, Vec<u8>> = tree
        .files()
        .into_iter()
        .map(|f| {
            let bytes = fs::read(tree.path().join(&f)).unwrap();
            (f, bytes)
        })
        .collect();
    assert_eq!(before.len(), 3);

    let mut second = Saver::new(config(&tree)).unwrap();
    let later = T_2019 + 86_400 * 400;
    for cookie in [1_u64, 2, 3] {
        let out = expect_write(&mut second, cookie, &snapshot(cookie, later, 9), t0);
        assert!(out.new_connection);
        assert_eq!(
            out.opened,
            Some(match cookie {
                1 => 2,
                2 => 1,
                _ => 0,
            })
        );
    }
    let paths: Vec<_> = [1_u64, 2, 3]
        .iter()
        .map(|c| second.segment_path(*c).unwrap().to_owned())
        .collect();
    let report = second.shutdown();
    assert!(report.errors.is_empty());
    for (f, bytes) in &before {
        assert_eq!(
            &fs::read(tree.path().join(f)).unwrap(),
            bytes,
            "{} changed",
            f.display()
        );
    }
    assert_eq!(tree.files().len(), 6);
    let original_start = snapshot(1, T_2019, 1).timestamp;
    let (m1, _) = check_archive(&paths[0]);
    let (m2, _) = check_archive(&paths[1]);
    let (m3, _) = check_archive(&paths[2]);
    assert_eq!((m1.sequence, m1.start_time), (2, original_start));
    assert_eq!((m2.sequence, m2.start_time), (1, original_start));
    assert_eq!(
        (m3.sequence, m3.start_time),
        (0, snapshot(3, later, 9).timestamp)
    );
    // Segment 0 of the new connection lives in its StartTime's date directory.
    let d = snapshot(3, later, 9).timestamp.utc_date();
    assert!(
        paths[2]
            .parent()
            .unwrap()
            .ends_with(super::paths::date_dir(Path::new(""), d))
    );
}

/// SPEC §12 D11: after shutdown every file is terminated and decodes; nothing else is in the
/// tree (SPEC §11.2: no temporary files).
#[test]
fn shutdown_leaves_only_complete_archives() {
    let tree = TempTree::new("shutdown");
    let mut saver = Saver::new(config(&tree)).unwrap();
    let t0 = Instant::now();
    for cookie in 1..=50_u64 {
        for i in 0..=cookie % 4 {
            let now = t0 + Duration::from_millis(cookie * 30 + i * 400);
            let _ = expect_write(
                &mut saver,
                cookie,
                &snapshot(cookie, T_2019 + i as i64, i as u8),
                now,
            );
        }
    }
    let before = saver.stats();
    assert!(
        before.frames_written > 0 && before.pending_bytes > 0,
        "{before:?}"
    );
    let report = saver.shutdown();
    assert!(report.errors.is_empty());
    assert_eq!(report.closed, 50);
    let stats = saver.stats();
    assert_eq!((stats.open_segments, stats.pending_bytes), (0, 0));
    assert_eq!(stats.files_closed, 50);
    assert_eq!(stats.bytes_uncompressed, fs_total_uncompressed(&tree));
    let files = tree.files();
    assert_eq!(files.len(), 50);
    let mut snapshots = 0;
    for f in &files {
        let file_name = f.file_name().unwrap().to_str().unwrap();
        assert!(
            paths::parse_file_name(file_name, PREFIX).is_some(),
            "stray file {}",
            f.display()
        );
        assert!(f.starts_with("2019/04/01"), "{}", f.display());
        snapshots += check_archive(&tree.path().join(f)).1.len();
    }
    assert_eq!(snapshots as u64, stats.snapshots_written);
    // Nothing left to do for Drop.
    assert_eq!(saver.shutdown().closed, 0);
}

fn fs_total_uncompressed(tree: &TempTree) -> u64 {
    tree.files()
        .iter()
        .map(|f| {
            zstd::stream::decode_all(&fs::read(tree.path().join(f)).unwrap()[..])
                .unwrap()
                .len() as u64
        })
        .sum()
}

/// SPEC §12 D15: anonymization rewrites the written copy, never the caller's record.
#[test]
fn anonymization_changes_only_the_written_bytes() {
    let tree = TempTree::new("anonymize");
    let mut c = config(&tree);
    c.anonymize = Some(Box::new(|idm: &[u8; 72]| {
        let mut copy = *idm;
        copy[11] = 0; // source /24
        copy[27] = 0; // destination /24
        copy
    }));
    let mut saver = Saver::new(c).unwrap();
    let record = snapshot(9, T_2019, 1);
    let pristine = record.clone();
    let _ = expect_write(&mut saver, 9, &record, Instant::now());
    assert_eq!(record, pristine);
    let path = saver.segment_path(9).unwrap().to_owned();
    assert!(saver.close(9).unwrap());
    let (_, snaps) = check_archive(&path);
    let mut want = raw_idm(9, 1);
    want[11] = 0;
    want[27] = 0;
    assert_eq!(snaps[0].raw_idm(), &want);
    assert_eq!(
        snaps[0].attributes().collect::<Vec<_>>(),
        record.attributes().collect::<Vec<_>>()
    );
    assert_eq!(snaps[0].timestamp, record.timestamp);
    // A RawIDM the hook cannot take is refused, not written raw.
    let short = ArchivalRecord::new(record.timestamp, &[2; 40], &[None]);
    let err = saver.write(9, &short, Instant::now()).unwrap_err();
    assert_eq!(err.class(), Some(ErrorClass::Encode));
}

#[test]
fn unwritable_records_are_refused_and_counted() {
    let tree = TempTree::new("encode");
    let mut saver = Saver::new(config(&tree)).unwrap();
    let now = Instant::now();
    let huge = vec![7u8; 50_000];
    let refused = [
        (0_u64, snapshot(0, T_2019, 1)),
        (1, ArchivalRecord::metadata_line(Metadata::default())),
        (2, ArchivalRecord::new(Timestamp::now(), &[], &[None])),
        (
            3,
            ArchivalRecord::new(Timestamp::now(), &raw_idm(3, 0), &[None, Some(&huge)]),
        ),
    ];
    for (cookie, record) in &refused {
        let err = saver.write(*cookie, record, now).unwrap_err();
        assert!(matches!(err, SaveError::Encode { .. }), "{err}");
    }
    let stats = saver.stats();
    assert_eq!(stats.encode_errors, 4);
    assert_eq!(stats.snapshots_lost, 4);
    assert_eq!((stats.files_opened, saver.tracked()), (0, 0));
    assert!(tree.files().is_empty());
}

/// SPEC §12 D17: a failed open is returned and counted, holds no file state, and the next
/// record retries with the same sequence number.
#[test]
fn failed_open_is_counted_and_frees_file_state() {
    let tree = TempTree::new("open-error");
    let blocker = tree.path().join("2019");
    fs::write(&blocker, b"a file where the year directory should be").unwrap();
    let mut saver = Saver::new(config(&tree)).unwrap();
    let now = Instant::now();
    let err = saver
        .write(0xEB, &snapshot(0xEB, T_2019, 1), now)
        .unwrap_err();
    assert_eq!(err.class(), Some(ErrorClass::Open));
    assert!(
        err.to_string().contains(&*blocker.to_string_lossy()),
        "{err}"
    );
    let stats = saver.stats();
    assert_eq!(
        (
            stats.open_errors,
            stats.files_opened,
            stats.open_segments,
            stats.pending_bytes,
            stats.snapshots_lost
        ),
        (1, 0, 0, 0, 1)
    );
    fs::remove_file(&blocker).unwrap();
    let out = expect_write(&mut saver, 0xEB, &snapshot(0xEB, T_2019 + 1, 2), now);
    assert_eq!(out.opened, Some(0));
    assert!(saver.close(0xEB).unwrap());
    let (meta, _) = check_archive(&tree.path().join("2019/04/01").join(name(0xEB, 0)));
    assert_eq!(meta.start_time, snapshot(0xEB, T_2019, 1).timestamp);
}

#[test]
fn opening_beyond_the_cap_evicts_the_least_recently_written() {
    let tree = TempTree::new("evict");
    let mut c = config(&tree);
    c.max_open_files = 8;
    let mut saver = Saver::new(c).unwrap();
    let t0 = Instant::now();
    for cookie in 1..=8_u64 {
        let now = t0 + Duration::from_millis(cookie * 10);
        let _ = expect_write(&mut saver, cookie, &snapshot(cookie, T_2019, 1), now);
    }
    // Cookie 1 is written again, so cookie 2 is now the least recently written.
    let _ = expect_write(
        &mut saver,
        1,
        &snapshot(1, T_2019 + 1, 2),
        t0 + Duration::from_millis(100),
    );
    let _ = expect_write(
        &mut saver,
        9,
        &snapshot(9, T_2019, 1),
        t0 + Duration::from_millis(110),
    );
    assert!(saver.segment_path(2).is_none());
    for cookie in [1, 3, 4, 5, 6, 7, 8, 9] {
        assert!(saver.segment_path(cookie).is_some(), "{cookie}");
    }
    let stats = saver.stats();
    assert_eq!((stats.evictions, stats.open_segments), (1, 8));
    let (_, snaps) = check_archive(&tree.path().join("2019/04/01").join(name(2, 0)));
    assert_eq!(snaps.len(), 1);
    // Cookie 2 continues in its next segment.
    let out = expect_write(
        &mut saver,
        2,
        &snapshot(2, T_2019 + 2, 3),
        t0 + Duration::from_millis(120),
    );
    assert_eq!(out.opened, Some(1));
}

/// After `EMFILE` the cap drops below the files open then (a headroom for the rest of the
/// process), the least recently written segments close down to a batch below it, and the full
/// cap comes back once `RLIMIT_NOFILE` changes or `DESCRIPTOR_RETRY` passed.
#[test]
fn running_out_of_descriptors_lowers_the_cap_until_the_limit_changes() {
    const OPEN: u64 = 100;
    let tree = TempTree::new("emfile");
    let mut saver = Saver::new(config(&tree)).unwrap();
    let full = saver.open_cap;
    let t0 = Instant::now();
    for cookie in 1..=OPEN {
        let now = t0 + Duration::from_millis(cookie);
        let _ = expect_write(&mut saver, cookie, &snapshot(cookie, T_2019, 1), now);
    }
    let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
    saver.lower_cap(t0, &emfile);
    let cap = OPEN as usize - MIN_DESCRIPTOR_HEADROOM;
    assert_eq!(saver.open_cap, cap);
    // The next open closes the oldest down to a batch (one, at this cap) below the cap.
    let now = t0 + Duration::from_secs(1);
    let _ = expect_write(&mut saver, 1000, &snapshot(1000, T_2019, 1), now);
    let stats = saver.stats();
    assert_eq!(stats.evictions, OPEN - cap as u64 + 1);
    assert_eq!(stats.open_segments, cap as u64);
    for cookie in 1..=OPEN - cap as u64 + 1 {
        assert!(saver.segment_path(cookie).is_none(), "{cookie}");
    }
    // Nothing is lost: the evicted files hold their snapshot.
    assert_eq!(stats.snapshots_lost, 0);
    let _ = saver.tick(now);
    assert_eq!(saver.open_cap, cap, "restored too early");
    let _ = saver.tick(t0 + DESCRIPTOR_RETRY);
    assert_eq!(saver.open_cap, full);
    // A changed RLIMIT_NOFILE restores it at once.
    saver.lower_cap(now, &emfile);
    assert!(saver.open_cap < full);
    saver.lowered = Some(LoweredCap {
        at: now,
        rlimit: soft_nofile().map(|n| n + 1),
    });
    let _ = saver.tick(now);
    assert_eq!(saver.open_cap, full);
    // With fewer files open than the headroom, one may stay open.
    for cookie in 2..=OPEN {
        assert!(saver.close(cookie).unwrap());
    }
    saver.lower_cap(now, &emfile);
    assert_eq!(saver.open_cap, 1);
}

/// Memory and descriptors stay bounded: 10 000 connections written once hold at most
/// `max_open_files` descriptors, none once their segments rotated, and a few dozen bytes each.
#[test]
fn many_connections_hold_bounded_descriptors_and_memory() {
    const CONNECTIONS: u64 = 10_000;
    const CAP: usize = 512;
    let tree = TempTree::new("bounded");
    let mut c = config(&tree);
    c.max_open_files = CAP;
    let mut saver = Saver::new(c).unwrap();
    let canonical = fs::canonicalize(tree.path()).unwrap();
    let open_in_tree = || {
        fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter(|e| fs::read_link(e.path()).is_ok_and(|t| t.starts_with(&canonical)))
            .count()
    };
    assert_eq!(open_in_tree(), 0);
    let t0 = Instant::now();
    let mut peak = 0;
    for cookie in 1..=CONNECTIONS {
        let now = t0 + Duration::from_micros(cookie);
        let _ = expect_write(&mut saver, cookie, &snapshot(cookie, T_2019, 1), now);
        if cookie % 97 == 0 {
            peak = peak.max(open_in_tree());
        }
    }
    assert!(peak > 0 && peak <= CAP, "peak {peak}");
    assert_eq!(open_in_tree(), saver.stats().open_segments as usize);
    let busy = saver.heap_bytes();
    let report = saver.tick(t0 + Duration::from_secs(601));
    assert!(report.errors.is_empty());
    assert_eq!(open_in_tree(), 0);
    let stats = saver.stats();
    assert_eq!((stats.open_segments, stats.pending_bytes), (0, 0));
    assert_eq!(stats.files_opened, CONNECTIONS);
    assert_eq!(stats.files_closed, CONNECTIONS);
    assert_eq!(saver.tracked(), CONNECTIONS as usize);
    let idle = saver.heap_bytes();
    let per_connection = idle as f64 / CONNECTIONS as f64;
    println!(
        "heap: {busy} B with {CAP} open files, {idle} B idle = {per_connection:.1} B per idle connection (entry {} B)",
        Saver::idle_connection_bytes()
    );
    assert!(Saver::idle_connection_bytes() <= 40);
    assert!(
        per_connection < 64.0,
        "{per_connection} B per idle connection"
    );
    assert_eq!(tree.files().len(), CONNECTIONS as usize);
    // Spot-check that evicted and rotated files are complete.
    for f in tree.files().iter().step_by(997) {
        assert_eq!(check_archive(&tree.path().join(f)).1.len(), 1);
    }
}

#[test]
fn saver_moves_to_the_pipeline_thread() {
    fn is_send<T: Send>() {}
    is_send::<Saver>();
}

/// SPEC §12 D17: a failed write is returned and counted, the file is cut back to its last
/// complete frame (or removed if it has none), and the connection continues in a new file.
/// Needs root to mount a tiny tmpfs.
#[test]
fn failed_writes_leave_complete_files() {
    let Some(mount) = TinyTmpfs::new("write-error") else {
        return;
    };
    let mut c = config(&mount.tree);
    c.root = mount.root.clone();
    let mut saver = Saver::new(c).unwrap();
    let t0 = Instant::now();
    let _ = expect_write(&mut saver, 1, &snapshot(1, T_2019, 1), t0);
    assert_eq!(saver.flush_all().flushed, 1);
    let path = saver.segment_path(1).unwrap().to_owned();
    let good = fs::read(&path).unwrap();
    mount.fill();
    // Cookie 1's second frame does not fit (it is larger than the slack of the file's last
    // page): the file keeps its first frame and is closed.
    let noise: Vec<u8> = (0..16_384_u64)
        .scan(0x9E37_79B9_7F4A_7C15_u64, |x, _| {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            Some(*x as u8)
        })
        .collect();
    let big = ArchivalRecord::new(
        snapshot(1, T_2019 + 1, 2).timestamp,
        &raw_idm(1, 2),
        &[None, Some(&noise)],
    );
    let _ = expect_write(&mut saver, 1, &big, t0);
    // Cookie 2's first frame does not fit: its file is removed (never a file without a snapshot).
    let _ = expect_write(&mut saver, 2, &snapshot(2, T_2019, 1), t0);
    let path2 = saver.segment_path(2).unwrap().to_owned();
    let report = saver.flush_all();
    assert_eq!(report.errors.len(), 2, "{:?}", report.errors);
    assert!(
        report
            .errors
            .iter()
            .all(|e| e.class() == Some(ErrorClass::Flush)),
        "{:?}",
        report.errors
    );
    let stats = saver.stats();
    // Lost: cookie 1's second snapshot, cookie 2's Metadata line and snapshot.
    assert_eq!(
        (
            stats.flush_errors,
            stats.lines_discarded,
            stats.snapshots_lost,
            stats.open_segments
        ),
        (2, 3, 2, 0)
    );
    assert_eq!(stats.pending_bytes, 0);
    assert_eq!(fs::read(&path).unwrap(), good);
    assert!(!path2.exists());
    mount.unfill();
    // Both continue: cookie 1 with segment 1, cookie 2 again with segment 0.
    assert_eq!(
        expect_write(&mut saver, 1, &snapshot(1, T_2019 + 2, 3), t0).opened,
        Some(1)
    );
    assert_eq!(
        expect_write(&mut saver, 2, &snapshot(2, T_2019 + 2, 3), t0).opened,
        Some(0)
    );
    assert!(saver.shutdown().errors.is_empty());
    assert_eq!(check_archive(&path).1.len(), 1);
    assert_eq!(check_archive(&path2).1, vec![snapshot(2, T_2019 + 2, 3)]);
}

/// A 256 KiB tmpfs mounted inside a temporary directory, unmounted on drop.
struct TinyTmpfs {
    tree: TempTree,
    root: PathBuf,
}

impl TinyTmpfs {
    fn new(label: &str) -> Option<Self> {
        let is_root = fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
        if !is_root {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: this test must run as root"
            );
            println!("skipping: mounting a tmpfs needs root");
            return None;
        }
        let tree = TempTree::new(label);
        let root = tree.path().join("mnt");
        fs::create_dir(&root).unwrap();
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "size=256k,mode=0755",
                "tcp-info-saver-test",
            ])
            .arg(&root)
            .status()
            .unwrap();
        assert!(status.success(), "mount failed");
        Some(Self { tree, root })
    }

    fn filler(&self) -> PathBuf {
        self.root.join("filler")
    }

    /// Fills the filesystem to the last byte.
    fn fill(&self) {
        use std::io::Write as _;
        let mut f = fs::File::create(self.filler()).unwrap();
        let block = [0xA5u8; 4096];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling tmpfs: {e}"),
            }
        }
    }

    fn unfill(&self) {
        fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for TinyTmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.root)
            .status();
    }
}

/// `tick` visits only the segments that are due, in the order they fall due: a buffer that was
/// flushed and filled again is flushed `flush_interval` after its new oldest line.
#[test]
fn flushes_fall_due_from_the_oldest_buffered_line() {
    let tree = TempTree::new("flushqueue");
    let mut saver = Saver::new(config(&tree)).unwrap();
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    let _ = expect_write(&mut saver, 2, &snapshot(2, T_2019, 1), t0);
    let _ = expect_write(&mut saver, 3, &snapshot(3, T_2019, 1), ms(400));
    assert_eq!(saver.tick(ms(999)).flushed, 0);
    assert_eq!(saver.tick(ms(1000)).flushed, 1, "cookie 2, buffered at t0");
    let _ = expect_write(&mut saver, 2, &snapshot(2, T_2019 + 1, 2), ms(1200));
    assert_eq!(saver.tick(ms(1399)).flushed, 0);
    assert_eq!(
        saver.tick(ms(1400)).flushed,
        1,
        "cookie 3, buffered at 400 ms"
    );
    assert_eq!(
        saver.tick(ms(2199)).flushed,
        0,
        "cookie 2 again: due at 2.2 s"
    );
    assert_eq!(saver.tick(ms(2200)).flushed, 1);
    assert_eq!(saver.stats().pending_bytes, 0);
}

/// `--netns.attribution`: the tag given with a connection's first record is in the Metadata
/// line of every segment of it, and of no other connection.
#[test]
fn a_connection_tag_is_in_every_segment_metadata() {
    let tree = TempTree::new("tagged");
    let mut saver = Saver::new(config(&tree)).unwrap();
    let t0 = Instant::now();
    let tag = Arc::new(NetnsTag {
        inode: 4_026_532_001,
        pod_name: Some("web-0".into()),
        ..NetnsTag::default()
    });
    let (tagged, plain) = (0x10, 0x20);
    let _ = saver
        .write_tagged(tagged, &snapshot(tagged, T_2019, 1), Some(&tag), t0)
        .unwrap();
    let _ = saver.write(plain, &snapshot(plain, T_2019, 1), t0).unwrap();
    // The rotation age ends segment 0; the next record opens segment 1 (the tag is not given
    // again).
    let _ = saver.tick(t0 + 10 * MIN);
    let _ = saver
        .write(tagged, &snapshot(tagged, T_2019 + 700, 2), t0 + 11 * MIN)
        .unwrap();
    let seg1 = saver.segment_path(tagged).unwrap().to_owned();
    let _ = saver.shutdown();
    let seg0 = tree.path().join("2019/04/01").join(name(tagged, 0));
    for path in [seg0, seg1] {
        let (meta, _) = check_archive(&path);
        assert_eq!(meta.netns.as_deref(), Some(&*tag), "{}", path.display());
    }
    let plain0 = tree.path().join("2019/04/01").join(name(plain, 0));
    assert_eq!(check_archive(&plain0).0.netns, None);
}
