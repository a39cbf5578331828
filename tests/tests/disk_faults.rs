//! Storage faults (issue 12, SPEC §12 D17): a full disk, running out of descriptors, an output
//! directory that becomes read-only, and one that is unwritable from the start. The daemon
//! must stay up, count every failure, keep collecting and sending events, resume writing by
//! itself when the fault clears, and lose only what it counts.
//!
//! **The loss bound** (the saver's module documentation): what is lost is exactly the
//! snapshots whose frame or file failed — per connection, the records buffered when one of its
//! writes failed (one `-flush-interval` of them plus the pipeline's 100 ms tick, or 64 KiB,
//! whichever comes first) and
//! every record it gets while its writes keep failing; nothing buffered before, nothing after
//! a write succeeds again. Each lost snapshot is counted once in
//! `tcpinfo_saver_snapshots_lost_total`. So once every connection ended, the snapshot lines in
//! the archives are exactly `tcpinfo_snapshot_total` minus that counter: every test here checks
//! this equality, and that every archive left on disk is complete and valid (whole zstd frames,
//! strict decoding, `zstd -t`, the ETL's acceptance, Metadata matching the name).

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use tcp_info::events::{Decoded, EventKind, FlowEvent};
use tcp_info::record::Timestamp;
use tcp_info_tests::archive::{self, ArchiveFile};
use tcp_info_tests::conn::Conn;
use tcp_info_tests::events::EventReader;
use tcp_info_tests::faults::{self, Tmpfs};
use tcp_info_tests::{Daemon, Setup, wait_for};

/// `-flush-interval` of these tests: short, so that failures and recovery show quickly.
const FLUSH_ARG: &str = "--flush-interval=200ms";
/// The time a record may wait in memory before its write is tried: the flush interval plus the
/// pipeline's housekeeping tick (100 ms, `daemon.rs`).
const BUFFERED: Duration = Duration::from_millis(300);
/// Slack for a loaded machine on top of [`BUFFERED`]: the pipeline may take a record this much
/// later than its source read it (its `Timestamp`).
const SLACK: Duration = Duration::from_secs(2);
/// Longest pause between two records of a connection under [`Pump`] outside a fault (a record
/// is taken within a poll interval of each exchange, every 30 ms; the rest is for a loaded
/// machine). The faults last longer, so that the hole they leave is longer than this.
const MAX_GAP: Duration = Duration::from_secs(2);
/// Generous bound on anything the tests wait for.
const WAIT: Duration = Duration::from_secs(30);

/// Exchanges on every connection it holds every 30 ms, on a thread, so that each of them has
/// a continuous stream of records.
struct Pump {
    conns: Arc<Mutex<Vec<Conn>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Pump {
    fn start() -> Self {
        let conns: Arc<Mutex<Vec<Conn>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (conns, stop) = (Arc::clone(&conns), Arc::clone(&stop));
            std::thread::spawn(move || -> Result<()> {
                while !stop.load(Ordering::Relaxed) {
                    for conn in conns
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .iter_mut()
                    {
                        conn.exchange(100)
                            .with_context(|| format!("pumping cookie {:016X}", conn.cookie))?;
                    }
                    std::thread::sleep(Duration::from_millis(30));
                }
                Ok(())
            })
        };
        Self {
            conns,
            stop,
            thread: Some(thread),
        }
    }

    fn add(&self, conn: Conn) {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
    }

    /// Fails if the pumping thread stopped on an error.
    fn check(&mut self) -> Result<()> {
        if self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
            return self.join();
        }
        Ok(())
    }

    /// Stops pumping; returns the connections.
    fn finish(mut self) -> Result<Vec<Conn>> {
        self.join()?;
        Ok(std::mem::take(
            &mut *self.conns.lock().unwrap_or_else(PoisonError::into_inner),
        ))
    }

    fn join(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => bail!("the pump thread panicked"),
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

/// The metrics these tests follow.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    /// `tcpinfo_snapshot_total`: records the pipeline handed to the saver.
    snapshots: u64,
    /// `tcpinfo_saver_snapshots_lost_total`.
    lost: u64,
    /// `tcpinfo_saver_errors_total{type="open"}`.
    open_errors: u64,
    /// `tcpinfo_saver_errors_total{type="flush"}` and `{type="write"}`.
    write_errors: u64,
    /// `tcpinfo_saver_evictions_total`.
    evictions: u64,
    /// `tcpinfo_polling_interval_histogram_count`: collection cycles (sweeps or eBPF rounds).
    polls: u64,
    /// `tcpinfo_records_total`, every source.
    records: u64,
    /// `tcpinfo_saver_open_files`.
    open_files: u64,
    /// `tcpinfo_connections_tracked`.
    tracked: u64,
}

fn counters(setup: &Setup, daemon: &mut Daemon) -> Result<Counters> {
    let m = setup.scrape(daemon)?;
    for name in [
        "tcpinfo_snapshot_total",
        "tcpinfo_saver_snapshots_lost_total",
        "tcpinfo_saver_errors_total",
        "tcpinfo_saver_evictions_total",
        "tcpinfo_polling_interval_histogram",
        "tcpinfo_records_total",
        "tcpinfo_saver_open_files",
        "tcpinfo_connections_tracked",
    ] {
        ensure!(m.types.contains_key(name), "/metrics has no {name}");
    }
    // Every one of these is a whole number.
    let n = |name, labels: &[(&str, &str)]| m.total(name, labels) as u64;
    let errors = |kind| n("tcpinfo_saver_errors_total", &[("type", kind)]);
    Ok(Counters {
        snapshots: n("tcpinfo_snapshot_total", &[]),
        lost: n("tcpinfo_saver_snapshots_lost_total", &[]),
        open_errors: errors("open"),
        write_errors: errors("flush") + errors("write"),
        evictions: n("tcpinfo_saver_evictions_total", &[]),
        polls: n("tcpinfo_polling_interval_histogram_count", &[]),
        records: n("tcpinfo_records_total", &[]),
        open_files: n("tcpinfo_saver_open_files", &[]),
        tracked: n("tcpinfo_connections_tracked", &[]),
    })
}

/// Fails if the daemon exited.
fn alive(daemon: &mut Daemon) -> Result<()> {
    if let Some(status) = daemon.try_status()? {
        bail!("the daemon exited ({status}):\n{}", daemon.stderr());
    }
    Ok(())
}

/// The events received so far, per UUID.
fn events(reader: &EventReader) -> BTreeMap<String, Vec<EventKind>> {
    let mut out: BTreeMap<String, Vec<EventKind>> = BTreeMap::new();
    for line in reader.lines() {
        if let Ok(Decoded::Event(e)) = FlowEvent::decode(line.text.as_bytes()) {
            out.entry(e.uuid).or_default().push(e.kind);
        }
    }
    out
}

/// Whether every connection of `opened` had its Open event and every one of `closed` its
/// Close event.
fn has_events(reader: &EventReader, setup: &Setup, opened: &[u64], closed: &[u64]) -> bool {
    let events = events(reader);
    let has = |cookie: &u64, kind| {
        events
            .get(&setup.uuid(*cookie))
            .is_some_and(|e| e.contains(&kind))
    };
    opened.iter().all(|c| has(c, EventKind::Open))
        && closed.iter().all(|c| has(c, EventKind::Close))
}

/// The files of `cookie` on disk now, decoded (`None` while there is none or one ends in an
/// incomplete frame, so that `wait_for` retries).
fn files_now(root: &Path, cookie: u64) -> Result<Option<Vec<ArchiveFile>>> {
    archive::cookie_files(root, cookie)
}

/// Whether `files` hold a snapshot taken after `since`, in a segment numbered at least
/// `min_seq`.
fn has_snapshot_after(files: &[ArchiveFile], since: Timestamp, min_seq: u32) -> bool {
    files.iter().any(|f| {
        f.name.seq >= min_seq
            && f.snapshots()
                .iter()
                .any(|s| s.timestamp.unix_nanos() > since.unix_nanos())
    })
}

/// Waits until writing has resumed after a fault that began before `since`: each of `old`
/// (connections that had a file before the fault, which was given up) has a snapshot taken
/// after `since` in a later segment, and each of `new` (opened during or after the fault) one
/// in any segment. The pump keeps every connection busy meanwhile.
fn wait_resumed(
    root: &Path,
    pump: &mut Pump,
    since: Timestamp,
    old: &[u64],
    new: &[u64],
) -> Result<()> {
    wait_for(WAIT, "writing resumed for every connection", || {
        pump.check()?;
        let wanted = old.iter().map(|c| (c, 1)).chain(new.iter().map(|c| (c, 0)));
        for (&cookie, min_seq) in wanted {
            match files_now(root, cookie)? {
                Some(files) if has_snapshot_after(&files, since, min_seq) => {}
                _ => return Ok(None),
            }
        }
        Ok(Some(()))
    })
}

fn nanos(d: Duration) -> i128 {
    i128::try_from(d.as_nanos()).unwrap_or(i128::MAX)
}

/// One archive checked completely, as the ETL and `zstd` see it: whole frames without content
/// size, strict decoding, `zstd -t`, accepted by the ETL with every line, Metadata on line 1
/// only with this name's UUID and sequence, at least one snapshot, every snapshot of this
/// cookie in time order, and a StartTime no later than the first snapshot. (After a loss the
/// StartTime of segment 0 may be earlier than its first snapshot: it is the Timestamp of the
/// connection's first observed record, SPEC §5.5, which may be the lost one.)
fn check_file(root: &Path, path: &Path) -> Result<ArchiveFile> {
    let name = archive::parse_name(root, path)?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    archive::check_frames(&bytes).with_context(|| format!("zstd frames of {}", path.display()))?;
    if let Some(result) = archive::zstd_cli_test(path) {
        result?;
    }
    let records = archive::read_records(path)?;
    let row = tcp_info::etl::check_file(path)
        .with_context(|| format!("m-lab/etl would drop {}", path.display()))?;
    ensure!(
        row.lines == records.len() && row.uuid.as_deref() == Some(name.uuid.as_str()),
        "{}: ETL row {row:?} does not match the file",
        path.display()
    );
    let file = ArchiveFile {
        path: path.to_owned(),
        name,
        records,
    };
    let p = path.display();
    let meta = file
        .records
        .first()
        .and_then(|r| r.metadata.as_ref())
        .ok_or_else(|| anyhow!("{p}: line 1 is not a Metadata line"))?;
    ensure!(
        meta.uuid == file.name.uuid && meta.sequence == i64::from(file.name.seq),
        "{p}: Metadata {meta:?} does not match the name"
    );
    let snaps = file.snapshots();
    ensure!(!snaps.is_empty(), "{p}: no snapshot");
    ensure!(
        meta.start_time.unix_nanos() <= snaps[0].timestamp.unix_nanos(),
        "{p}: StartTime {} after the first snapshot {}",
        meta.start_time,
        snaps[0].timestamp
    );
    for pair in snaps.windows(2) {
        ensure!(
            pair[0].timestamp.unix_nanos() <= pair[1].timestamp.unix_nanos(),
            "{p}: snapshots out of time order"
        );
    }
    for (i, r) in snaps.iter().enumerate() {
        ensure!(
            r.metadata.is_none() && r.cookie() == Some(file.name.cookie),
            "{p}:{}: not a snapshot of cookie {:016X}",
            i + 2,
            file.name.cookie
        );
    }
    Ok(file)
}

/// The end of every test: stops the pump, ends every connection (and the listener), waits
/// until the daemon closed them all (a Close event for each of `uuids`, nothing tracked, no
/// archive open), takes the final counters, stops the daemon (SIGTERM, exit 0), checks every
/// file of the tree ([`check_file`]) and that each connection's segments are numbered 0, 1, …
/// without a gap with one StartTime, and the exact count: the snapshot lines on disk are
/// `tcpinfo_snapshot_total − tcpinfo_saver_snapshots_lost_total`. Returns the counters and
/// the files by cookie.
fn finish(
    setup: &Setup,
    daemon: &mut Daemon,
    reader: &EventReader,
    conns: Vec<Conn>,
    listener: TcpListener,
) -> Result<(Counters, BTreeMap<u64, Vec<ArchiveFile>>)> {
    let cookies: Vec<u64> = conns.iter().map(|c| c.cookie).collect();
    drop(conns);
    drop(listener);
    let pid = daemon.pid().context("no daemon pid")?;
    let last = wait_for(WAIT, "every connection closed by the daemon", || {
        let c = counters(setup, daemon)?;
        let idle = c.tracked == 0 && c.open_files == 0 && faults::open_archives(pid)?.is_empty();
        Ok((idle && has_events(reader, setup, &[], &cookies)).then_some(c))
    })?;
    // Nothing is left to record: these are the final counts.
    let (status, _) = daemon.terminate()?;
    ensure!(
        status.code() == Some(0),
        "exit status {status}\n{}",
        daemon.stderr()
    );
    let root = setup.output();
    let mut tree: BTreeMap<u64, Vec<ArchiveFile>> = BTreeMap::new();
    let mut lines = 0_usize;
    for (path, _) in archive::archive_files(&root)? {
        let file = check_file(&root, &path)?;
        lines += file.snapshots().len();
        tree.entry(file.name.cookie).or_default().push(file);
    }
    for (cookie, files) in &mut tree {
        files.sort_by_key(|f| f.name.seq);
        let seqs: Vec<u32> = files.iter().map(|f| f.name.seq).collect();
        let want: Vec<u32> = (0..).take(files.len()).collect();
        ensure!(
            seqs == want,
            "cookie {cookie:016X}: segments {seqs:?}, not 0, 1, …"
        );
        let starts: BTreeSet<i128> = files
            .iter()
            .filter_map(|f| f.records[0].metadata.as_ref())
            .map(|m| m.start_time.unix_nanos())
            .collect();
        ensure!(
            starts.len() == 1,
            "cookie {cookie:016X}: StartTimes {starts:?}"
        );
    }
    let expected = last.snapshots - last.lost;
    eprintln!(
        "final: {last:?}; {lines} snapshot lines in {} files",
        tree.values().map(Vec::len).sum::<usize>()
    );
    ensure!(
        lines as u64 == expected,
        "{lines} snapshot lines on disk, but tcpinfo_snapshot_total {} − \
         tcpinfo_saver_snapshots_lost_total {} = {expected}",
        last.snapshots,
        last.lost
    );
    Ok((last, tree))
}

/// The snapshots of a connection, all segments together, in time order.
fn timeline(files: &[ArchiveFile]) -> Vec<Timestamp> {
    let mut out: Vec<Timestamp> = files
        .iter()
        .flat_map(|f| f.snapshots().iter().map(|s| s.timestamp))
        .collect();
    out.sort_by_key(Timestamp::unix_nanos);
    out
}

/// Output on a 4 MiB tmpfs that the test fills while connections are being recorded, then
/// empties again.
///
/// While it is full: the daemon stays up; write errors and lost snapshots are counted; events
/// keep flowing for connections opened and closed meanwhile; collection goes on (polls and
/// records keep rising). Exact behaviour: a connection whose segment 0 had frames on disk
/// gets its segment cut back to its last complete frame and closed at its first failed
/// append; every later record opens segment 1, whose first frame fails too, so the file is
/// removed again (no file without a snapshot) and the number reused. A connection opened while
/// full gets no file at all; one that also closed meanwhile never gets one.
///
/// When space returns, with no restart and nothing else done: the connections still open
/// write again — segment 1 for the old ones, segment 0 for those opened while full (whose
/// StartTime is their first observed, lost, record) — and new connections are recorded
/// normally. The bound: each old connection's record stream has no hole longer than
/// [`MAX_GAP`] except inside [fill − [`BUFFERED`] − [`SLACK`], free + [`SLACK`]], and the
/// lost snapshots are exactly the ones missing from disk ([`finish`]).
#[test]
fn a_full_disk_loses_only_counted_records_and_writing_resumes() {
    let Some(setup) = Setup::new("diskfull") else {
        return;
    };
    let fs = Tmpfs::mount(&setup.output(), 4 << 20).unwrap();
    let t0 = Instant::now();
    let (mut daemon, reader) = setup.start_with_events(&[FLUSH_ARG]).unwrap();
    setup.wait_ready(&mut daemon, WAIT).unwrap();
    eprintln!("ready after {:?}", t0.elapsed());
    let pid = daemon.pid().unwrap();
    let root = setup.output();
    let listener = setup.net.listen().unwrap();
    let mut pump = Pump::start();

    // Before: three connections recorded normally, for a while.
    let mut old = Vec::new();
    for _ in 0..3 {
        let conn = Conn::open(&setup, &listener).unwrap();
        old.push(conn.cookie);
        pump.add(conn);
    }
    let started = Instant::now();
    wait_for(WAIT, "the old connections archived", || {
        pump.check()?;
        for &cookie in &old {
            if files_now(&root, cookie)?.is_none() {
                return Ok(None);
            }
        }
        Ok((started.elapsed() > Duration::from_secs(2)).then_some(()))
    })
    .unwrap();
    let before = counters(&setup, &mut daemon).unwrap();

    // Full.
    let fill_start = Timestamp::now();
    let (filler, size) = fs.fill("filler").unwrap();
    eprintln!("filled the tmpfs with {size} bytes");
    assert!(fs.is_full().unwrap(), "not full");
    let full_since = Instant::now();
    let mut during = Vec::new();
    for _ in 0..2 {
        let conn = Conn::open(&setup, &listener).unwrap();
        during.push(conn.cookie);
        pump.add(conn);
    }
    let short = Conn::open(&setup, &listener).unwrap();
    let short_cookie = short.cookie;
    drop(short);
    let old_seg0: Vec<String> = old
        .iter()
        .map(|c| format!("{}.00000.jsonl.zst", setup.uuid(*c)))
        .collect();
    let full = wait_for(WAIT, "write errors while full", || {
        pump.check()?;
        alive(&mut daemon)?;
        let c = counters(&setup, &mut daemon)?;
        let open = faults::open_archives(pid)?;
        // Every old connection's segment 0 was given up after a failed append.
        let seg0_closed = !open
            .iter()
            .any(|p| old_seg0.iter().any(|name| p.ends_with(name)));
        let mut opened = old.clone();
        opened.extend(&during);
        opened.push(short_cookie);
        let ok = seg0_closed
            && c.write_errors > before.write_errors
            && c.lost > before.lost
            && has_events(&reader, &setup, &opened, &[short_cookie])
            && full_since.elapsed() > MAX_GAP + Duration::from_secs(2);
        Ok(ok.then_some(c))
    })
    .unwrap();
    eprintln!("before: {before:?}\nfull:   {full:?}");
    assert!(full.polls > before.polls + 10, "collection stalled");
    assert!(full.records > before.records, "no record read while full");
    assert!(
        full.snapshots > before.snapshots,
        "no record handed to the saver"
    );
    assert!(fs.is_full().unwrap(), "space came back by itself");

    // Space returns; a new connection too.
    std::fs::remove_file(&filler).unwrap();
    let freed = Timestamp::now();
    let after = Conn::open(&setup, &listener).unwrap();
    let after_cookie = after.cookie;
    pump.add(after);
    let new = [during.as_slice(), &[after_cookie]].concat();
    wait_resumed(&root, &mut pump, freed, &old, &new).unwrap();
    alive(&mut daemon).unwrap();

    eprintln!("resumed after {:?}", t0.elapsed());
    let conns = pump.finish().unwrap();
    let (last, tree) = finish(&setup, &mut daemon, &reader, conns, listener).unwrap();
    eprintln!("finished after {:?}", t0.elapsed());
    assert!(last.lost > 0, "nothing lost: was the disk ever full?");
    let window = (
        fill_start.unix_nanos() - nanos(BUFFERED + SLACK),
        freed.unix_nanos() + nanos(SLACK),
    );
    for cookie in &old {
        let files = &tree[cookie];
        let seqs: Vec<u32> = files.iter().map(|f| f.name.seq).collect();
        assert_eq!(seqs, [0, 1], "old connection {cookie:016X}");
        assert!(
            files[0]
                .snapshots()
                .iter()
                .all(|s| s.timestamp.unix_nanos() < freed.unix_nanos()),
            "segment 0 of {cookie:016X} has records from after the space returned"
        );
        let times = timeline(files);
        // Records up to the start of the window reached the disk...
        let last_before = times
            .iter()
            .rfind(|t| t.unix_nanos() < fill_start.unix_nanos())
            .unwrap();
        assert!(
            last_before.unix_nanos() >= window.0,
            "{cookie:016X}: its last record on disk before the fill is of {last_before}, \
             more than {:?} before the fill at {fill_start}",
            BUFFERED + SLACK
        );
        // ... and the stream has no hole outside the window.
        for pair in times.windows(2) {
            let (a, b) = (pair[0].unix_nanos(), pair[1].unix_nanos());
            if b - a > nanos(MAX_GAP) {
                assert!(
                    a >= window.0 && b <= window.1,
                    "{cookie:016X}: records missing from {} to {}, outside the fault window \
                     (filled at {fill_start}, freed at {freed})",
                    pair[0],
                    pair[1]
                );
            }
        }
    }
    for cookie in &during {
        let files = &tree[cookie];
        assert_eq!(files[0].name.seq, 0, "{cookie:016X}");
        let meta = files[0].records[0].metadata.as_ref().unwrap();
        let first = files[0].snapshots()[0].timestamp;
        assert!(
            meta.start_time.unix_nanos() < first.unix_nanos()
                && meta.start_time.unix_nanos() >= fill_start.unix_nanos(),
            "{cookie:016X}: StartTime {} should be its first, lost, record (first on disk {first})",
            meta.start_time
        );
        assert!(
            first.unix_nanos() >= freed.unix_nanos() - nanos(BUFFERED + SLACK),
            "{cookie:016X}: a record of {first} survived the full disk"
        );
    }
    assert!(
        !tree.contains_key(&short_cookie),
        "the connection opened and closed while full has a file"
    );
    let files = &tree[&after_cookie];
    let meta = files[0].records[0].metadata.as_ref().unwrap();
    assert_eq!(
        meta.start_time,
        files[0].snapshots()[0].timestamp,
        "a connection opened after the space returned lost records"
    );
}

/// Output on a tmpfs remounted read-only while the daemon runs, then read-write again.
///
/// The kernel refuses to remount a file system read-only while a file is open for writing on
/// it, so the test waits until the daemon has no archive open (`-rotation-age=1s` ends the
/// segments of connections gone quiet) and then remounts, with the connections still open.
/// While read-only: no archive can be created, so every record is refused — counted as an
/// `open` error and a lost snapshot each; the daemon stays up; events keep flowing for
/// connections opened and closed meanwhile; collection goes on. Once read-write again, with
/// nothing else done, the connections that stayed open continue in their next segment (1, the
/// read-only period used no number), the one opened meanwhile starts at segment 0 (its
/// StartTime is its first, lost, record), the one opened and closed meanwhile has no file, and
/// no archive holds a record taken while read-only. Lost snapshots are exactly the ones
/// missing from disk ([`finish`]).
#[test]
fn a_read_only_output_loses_only_counted_records_and_writing_resumes() {
    let Some(setup) = Setup::new("readonly") else {
        return;
    };
    let fs = Tmpfs::mount(&setup.output(), 16 << 20).unwrap();
    let t0 = Instant::now();
    let (mut daemon, reader) = setup
        .start_with_events(&[FLUSH_ARG, "--rotation-age=1s"])
        .unwrap();
    setup.wait_ready(&mut daemon, WAIT).unwrap();
    let pid = daemon.pid().unwrap();
    let root = setup.output();
    let listener = setup.net.listen().unwrap();

    // Before: two connections recorded, then quiet until none of their segments is open.
    let mut old = Vec::new();
    for _ in 0..2 {
        let mut conn = Conn::open(&setup, &listener).unwrap();
        conn.exchange(100).unwrap();
        old.push(conn);
    }
    let old_cookies: Vec<u64> = old.iter().map(|c| c.cookie).collect();
    wait_for(WAIT, "the old connections archived", || {
        for &cookie in &old_cookies {
            if files_now(&root, cookie)?.is_none() {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .unwrap();
    fs.remount_read_only(WAIT, || Ok(faults::open_archives(pid)?.is_empty()))
        .unwrap();
    let read_only = Timestamp::now();
    let ro_since = Instant::now();
    let before = counters(&setup, &mut daemon).unwrap();
    eprintln!("read-only after {:?}: {before:?}", t0.elapsed());

    // Read-only: the old connections go on, one opens, one opens and closes.
    let mut pump = Pump::start();
    for conn in old {
        pump.add(conn);
    }
    let during = Conn::open(&setup, &listener).unwrap();
    let during_cookie = during.cookie;
    pump.add(during);
    let short = Conn::open(&setup, &listener).unwrap();
    let short_cookie = short.cookie;
    drop(short);
    let ro = wait_for(WAIT, "open errors while read-only", || {
        pump.check()?;
        alive(&mut daemon)?;
        let c = counters(&setup, &mut daemon)?;
        let opened = [old_cookies.as_slice(), &[during_cookie, short_cookie]].concat();
        // Every connection's records were refused at least once.
        let ok = c.open_errors >= before.open_errors + 4
            && c.lost >= before.lost + 4
            && has_events(&reader, &setup, &opened, &[short_cookie])
            && ro_since.elapsed() > BUFFERED + SLACK + Duration::from_secs(2);
        Ok(ok.then_some(c))
    })
    .unwrap();
    eprintln!("read-only: {ro:?}");
    assert!(ro.polls > before.polls + 10, "collection stalled");
    assert!(
        ro.records > before.records,
        "no record read while read-only"
    );
    assert_eq!(
        ro.open_files, 0,
        "an archive was opened on a read-only file system"
    );
    assert_eq!(
        ro.lost - before.lost,
        ro.open_errors - before.open_errors,
        "each refused record is one open error and one lost snapshot"
    );

    // Read-write again; a new connection too.
    fs.remount("rw").unwrap();
    let writable = Timestamp::now();
    let after = Conn::open(&setup, &listener).unwrap();
    let after_cookie = after.cookie;
    pump.add(after);
    wait_resumed(
        &root,
        &mut pump,
        writable,
        &old_cookies,
        &[during_cookie, after_cookie],
    )
    .unwrap();
    alive(&mut daemon).unwrap();
    eprintln!("resumed after {:?}", t0.elapsed());

    let conns = pump.finish().unwrap();
    let (last, tree) = finish(&setup, &mut daemon, &reader, conns, listener).unwrap();
    eprintln!("finished after {:?}", t0.elapsed());
    assert!(last.lost > 0);
    // Nothing taken while read-only reached a file (a record read just before the remount
    // back may be taken just after it).
    let hole = (
        read_only.unix_nanos(),
        writable.unix_nanos() - nanos(BUFFERED + SLACK),
    );
    assert!(
        hole.1 - hole.0 > nanos(Duration::from_secs(1)),
        "read-only too briefly"
    );
    for (cookie, files) in &tree {
        for t in timeline(files) {
            assert!(
                !(hole.0..hole.1).contains(&t.unix_nanos()),
                "{cookie:016X}: a record of {t} written while read-only \
                 ({read_only} to {writable})"
            );
        }
    }
    // The old connections: segments from before, then (numbered on, none skipped) segments
    // from after; none spans the read-only period.
    for cookie in &old_cookies {
        let files = &tree[cookie];
        let before: Vec<bool> = files
            .iter()
            .map(|f| {
                let times = timeline(std::slice::from_ref(f));
                let early = |t: &Timestamp| t.unix_nanos() < read_only.unix_nanos();
                assert!(
                    times.iter().all(early) || !times.iter().any(early),
                    "{}: spans the read-only period",
                    f.path.display()
                );
                times.iter().all(early)
            })
            .collect();
        let pre = before.iter().take_while(|b| **b).count();
        assert!(
            pre >= 1 && pre < files.len() && before[pre..].iter().all(|b| !b),
            "{cookie:016X}: segments before/after the read-only period: {before:?}"
        );
    }
    let files = &tree[&during_cookie];
    let meta = files[0].records[0].metadata.as_ref().unwrap();
    assert!(
        meta.start_time.unix_nanos() >= read_only.unix_nanos()
            && meta.start_time.unix_nanos() < files[0].snapshots()[0].timestamp.unix_nanos(),
        "StartTime {} of the connection opened while read-only is not its first, lost, record",
        meta.start_time
    );
    assert!(
        !tree.contains_key(&short_cookie),
        "the connection opened and closed while read-only has a file"
    );
    assert!(tree.contains_key(&after_cookie));
}

/// Descriptors in the daemon's process beyond those it holds when the limit is lowered: fewer
/// than [`ARCHIVED`] connections need.
const ROOM: u64 = 64;
/// Connections written to at once while the limit is low.
const ARCHIVED: usize = 80;

/// `RLIMIT_NOFILE` lowered (`prlimit`) under a running daemon so that archive opens hit
/// `EMFILE`, then raised again.
///
/// While low: the daemon stays up, closes archives early (evictions) and keeps
/// [`MIN_DESCRIPTOR_HEADROOM`](tcp_info::saver::MIN_DESCRIPTOR_HEADROOM) descriptors free for
/// the rest of the process — the metrics endpoint answers every scrape, events flow for every
/// connection, collection goes on — and archives every record (each connection continues in
/// its next segment). Raised again: the full budget comes back at the next tick, every
/// connection has its archive open at once and evictions stop. Nothing is lost that is not
/// counted ([`finish`]); here nothing is lost at all.
#[test]
fn running_out_of_descriptors_evicts_archives_and_recovers() {
    let Some(setup) = Setup::new("emfile") else {
        return;
    };
    tcp_info_tests::raise_nofile();
    let t0 = Instant::now();
    let (mut daemon, reader) = setup.start_with_events(&[FLUSH_ARG]).unwrap();
    setup.wait_ready(&mut daemon, WAIT).unwrap();
    let pid = daemon.pid().unwrap();
    let listener = setup.net.listen().unwrap();

    let (soft, hard) = faults::nofile(pid).unwrap();
    let limit = faults::descriptor_count(pid).unwrap() as u64 + ROOM;
    faults::set_nofile(pid, limit, hard).unwrap();
    let lowered = Instant::now();
    let before = counters(&setup, &mut daemon).unwrap();
    let mut conns = Vec::new();
    for _ in 0..ARCHIVED {
        conns.push(Conn::open(&setup, &listener).unwrap());
    }
    let cookies: Vec<u64> = conns.iter().map(|c| c.cookie).collect();
    // A round of exchanges every 300 ms: a record for each connection, and with fewer
    // archives allowed than connections, about one eviction each.
    let mut last_round = Instant::now();
    let low = wait_for(WAIT, "evictions under the lowered limit", || {
        alive(&mut daemon)?;
        if last_round.elapsed() > Duration::from_millis(300) {
            last_round = Instant::now();
            for conn in &mut conns {
                conn.exchange(100)?;
            }
        }
        let c = counters(&setup, &mut daemon)?;
        let ok = c.evictions > before.evictions
            && c.snapshots >= before.snapshots + 2 * ARCHIVED as u64
            && has_events(&reader, &setup, &cookies, &[])
            && lowered.elapsed() > Duration::from_secs(2);
        Ok(ok.then_some(c))
    })
    .unwrap();
    eprintln!(
        "limit {limit} after {:?}: {before:?}\nlow: {low:?}",
        t0.elapsed()
    );
    assert!(low.polls > before.polls, "collection stalled");
    // The saver keeps a headroom below the limit for the rest of the process: once a round of
    // records is handled (every archive it needed opened, the least recently written ones
    // closed), the process holds the descriptors it had before the limit was lowered, at most
    // the limit minus that headroom, and a few for scrapes. Several rounds, since each ends
    // with a different set of archives open.
    let headroom = tcp_info::saver::MIN_DESCRIPTOR_HEADROOM as u64;
    let mut handled = low.snapshots;
    for round in 0..4 {
        for conn in &mut conns {
            conn.exchange(100).unwrap();
        }
        let c = wait_for(WAIT, "a round of records handled", || {
            let c = counters(&setup, &mut daemon)?;
            Ok((c.snapshots >= handled + ARCHIVED as u64).then_some(c))
        })
        .unwrap();
        handled = c.snapshots;
        let fds = faults::descriptor_count(pid).unwrap() as u64;
        eprintln!(
            "round {round}: {fds} descriptors, {} archives",
            c.open_files
        );
        assert!(
            fds + headroom <= limit + 8,
            "round {round}: {fds} descriptors open ({} archives) under a limit of {limit}: \
             no headroom left",
            c.open_files
        );
    }

    // Raised again: every connection's archive open at once, evictions stop.
    faults::set_nofile(pid, soft, hard).unwrap();
    let high = wait_for(WAIT, "every connection's archive open at once", || {
        if last_round.elapsed() > Duration::from_millis(300) {
            last_round = Instant::now();
            for conn in &mut conns {
                conn.exchange(100)?;
            }
        }
        let c = counters(&setup, &mut daemon)?;
        Ok((c.open_files >= ARCHIVED as u64).then_some(c))
    })
    .unwrap();
    for conn in &mut conns {
        conn.exchange(100).unwrap();
    }
    let steady = wait_for(WAIT, "a round of records after the raise", || {
        let c = counters(&setup, &mut daemon)?;
        Ok((c.snapshots >= high.snapshots + ARCHIVED as u64).then_some(c))
    })
    .unwrap();
    eprintln!("raised after {:?}: {steady:?}", t0.elapsed());
    assert_eq!(
        steady.evictions, high.evictions,
        "evictions after the raise"
    );
    alive(&mut daemon).unwrap();

    let (last, tree) = finish(&setup, &mut daemon, &reader, conns, listener).unwrap();
    eprintln!("finished after {:?}", t0.elapsed());
    assert_eq!(last.lost, last.open_errors, "lost without a failed open");
    assert_eq!(last.write_errors, 0);
    for cookie in &cookies {
        let files = tree
            .get(cookie)
            .unwrap_or_else(|| panic!("no archive of {cookie:016X}"));
        if last.lost == 0 {
            // Nothing lost: StartTime is the first snapshot, as without any fault.
            archive::check_file_contents(&files[0]).unwrap();
        }
    }
    assert!(
        tree.values().any(|files| files.len() > 1),
        "no connection continued in a second segment after an eviction"
    );
}

/// `-output` that cannot hold archives at start: a read-only mount, a regular file, a path
/// under a regular file, and a directory only CAP_DAC_OVERRIDE could write in (the pipeline
/// thread that creates archives holds no capability, even as root). The daemon exits 1 within
/// seconds, naming the directory and the reason, before announcing anything.
#[test]
fn an_unwritable_output_at_start_is_a_clear_error() {
    let Some(setup) = Setup::new("unwritable") else {
        return;
    };
    let read_only = setup.dir().join("ro");
    let fs = Tmpfs::mount(&read_only, 1 << 20).unwrap();
    fs.remount("ro").unwrap();
    let file = setup.dir().join("file");
    std::fs::write(&file, b"not a directory").unwrap();
    let other = setup.dir().join("other");
    std::fs::create_dir(&other).unwrap();
    std::os::unix::fs::chown(&other, Some(65534), Some(65534)).unwrap();
    let cases = [
        (read_only.clone(), "Read-only file system"),
        (file.clone(), "not a directory"),
        (file.join("sub"), "Not a directory"),
        (other.clone(), "Permission denied"),
    ];
    for (output, reason) in cases {
        let args = [
            format!("--output={}", output.display()),
            format!("--uuid-prefix-file={}", setup.prefix_file().display()),
            "--prometheusx.listen-address=127.0.0.1:0".to_owned(),
            format!("--mode={}", tcp_info_tests::mode()),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        let (status, stderr) = tcp_info_tests::daemon::run_to_exit(
            &setup.net,
            &[],
            &args,
            &[],
            Duration::from_secs(20),
        )
        .unwrap();
        let took = started.elapsed();
        eprintln!("{}: {status} after {took:?}", output.display());
        assert_eq!(status.code(), Some(1), "{}: {stderr}", output.display());
        assert!(took < Duration::from_secs(5), "{took:?}: {stderr}");
        let error = stderr
            .lines()
            .find(|l| l.contains("ERROR"))
            .unwrap_or_else(|| panic!("no error line: {stderr}"));
        assert!(
            error.contains(&*output.to_string_lossy()) && error.contains(reason),
            "{error:?} should name {} and say {reason:?}",
            output.display()
        );
        assert!(
            !stderr.contains("metrics listening"),
            "started before failing: {stderr}"
        );
    }
    assert!(std::fs::read_dir(&read_only).unwrap().next().is_none());
    assert!(std::fs::read_dir(&other).unwrap().next().is_none());
    assert_eq!(std::fs::read(&file).unwrap(), b"not a directory");
}
