//! `tcp-info plot` and `tcp_info::plot`: the values behind the picture, checked against the
//! archive decoded independently (`tcp_info::snapshot::Snapshot`), on the m-lab fixtures and on
//! a paced bulk flow the daemon records here; and the command's output and errors.

use std::io::Write as _;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tcp_info::plot::{self, PANEL_TITLES, Series};
use tcp_info::record::{ArchivalRecord, ArchiveReader};
use tcp_info::snapshot::Snapshot;
use tcp_info::tcpinfo::TcpInfo;
use tcp_info_tests::daemon::daemon_binary;
use tcp_info_tests::{Setup, archive, traffic};

/// The two m-lab archives of one connection each.
const FIXTURES: [(&str, &str); 2] = [
    (
        "ndt-7hhhv_1559749627_0000000000062D84.00000.jsonl.zst",
        "ndt-7hhhv_1559749627_0000000000062D84",
    ),
    (
        "ndt-jdczh_1553815964_00000000000003E8.00185.jsonl.zst",
        "ndt-jdczh_1553815964_00000000000003E8",
    ),
];

// The library's fixture helper, one file for both crates' tests (this crate cannot depend on
// the library's test directory otherwise).
#[path = "../../tcp-info/tests/common/mod.rs"]
#[expect(dead_code, reason = "only mlab_fixtures is used here")]
mod common;

/// Every line of `paths`, in the order given, decoded by `Snapshot`.
fn snapshots(paths: &[PathBuf]) -> Vec<Snapshot> {
    let mut out = Vec::new();
    for path in paths {
        let reader = ArchiveReader::open(path).unwrap_or_else(|e| panic!("{e}"));
        for record in reader {
            let record = record.unwrap_or_else(|e| panic!("{e}"));
            out.push(
                Snapshot::decode(&record).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            );
        }
    }
    out
}

fn close(a: f64, b: f64, what: &str) {
    let tolerance = 1e-9 * a.abs().max(b.abs()).max(1.0);
    assert!((a - b).abs() <= tolerance, "{what}: {a} != {b}");
}

fn close_opt(a: Option<f64>, b: Option<f64>, what: &str) {
    match (a, b) {
        (Some(a), Some(b)) => close(a, b, what),
        (None, None) => {}
        _ => panic!("{what}: {a:?} != {b:?}"),
    }
}

/// The rate of a byte counter between two snapshots, computed here from the snapshots.
fn expected_rate(before: u64, after: u64, dt: f64) -> Option<f64> {
    (dt > 0.0 && after >= before).then(|| (after - before) as f64 * 8.0 / dt / 1e6)
}

/// Asserts that every value of `series` is what the decoded snapshots say.
fn assert_series_match(series: &Series, snaps: &[Snapshot], uuid: &str) {
    let lines: Vec<&Snapshot> = snaps.iter().filter(|s| !s.is_metadata()).collect();
    let points: Vec<(&Snapshot, &TcpInfo)> = lines
        .iter()
        .filter_map(|s| s.tcp_info.as_ref().map(|i| (*s, i)))
        .collect();
    let t0 = lines[0].timestamp.unix_nanos();
    let secs = |s: &Snapshot| (s.timestamp.unix_nanos() - t0) as f64 / 1e9;

    assert_eq!(series.uuid.as_deref(), Some(uuid));
    assert_eq!(series.snapshots, lines.len());
    assert_eq!(
        series.len(),
        points.len(),
        "one point per line with tcp_info"
    );
    assert_eq!(series.start, lines[0].timestamp);
    close(series.duration_s, secs(lines[lines.len() - 1]), "duration");
    let Some(idm) = lines[0].idm else {
        panic!("the first snapshot has no RawIDM");
    };
    assert_eq!(
        series.local,
        Some(SocketAddr::new(idm.src.to_canonical(), idm.sport))
    );
    assert_eq!(
        series.remote,
        Some(SocketAddr::new(idm.dst.to_canonical(), idm.dport))
    );
    for (i, (snap, info)) in points.iter().enumerate() {
        let what = |name: &str| format!("{name} of point {i} ({})", snap.timestamp);
        close(series.times_s[i], secs(snap), &what("time"));
        close(series.rtt_ms[i], f64::from(info.rtt) / 1000.0, &what("rtt"));
        close(
            series.rttvar_ms[i],
            f64::from(info.rttvar) / 1000.0,
            &what("rttvar"),
        );
        close_opt(
            series.min_rtt_ms[i],
            (info.covers(152) && info.min_rtt != u32::MAX)
                .then(|| f64::from(info.min_rtt) / 1000.0),
            &what("min_rtt"),
        );
        close(series.snd_cwnd[i], f64::from(info.snd_cwnd), &what("cwnd"));
        close_opt(
            series.snd_ssthresh[i],
            (info.snd_ssthresh < 0x7fff_ffff).then_some(f64::from(info.snd_ssthresh)),
            &what("ssthresh"),
        );
        close(
            series.total_retrans[i],
            f64::from(info.total_retrans),
            &what("total_retrans"),
        );
        close(series.lost[i], f64::from(info.lost), &what("lost"));
        close(series.retrans[i], f64::from(info.retrans), &what("retrans"));
        close_opt(
            series.delivery_mbps[i],
            info.covers(168)
                .then(|| info.delivery_rate as f64 * 8.0 / 1e6),
            &what("delivery_rate"),
        );
        assert_eq!(
            series.bytes_acked[i],
            info.bytes_acked,
            "{}",
            what("bytes_acked")
        );
        assert_eq!(series.bytes_received[i], info.bytes_received);
        let (send, recv) = match i.checked_sub(1).map(|j| points[j]) {
            None => (None, None),
            Some((prev, pinfo)) => {
                let dt = secs(snap) - secs(prev);
                (
                    expected_rate(pinfo.bytes_acked, info.bytes_acked, dt),
                    expected_rate(pinfo.bytes_received, info.bytes_received, dt),
                )
            }
        };
        close_opt(series.send_mbps[i], send, &what("sending rate"));
        close_opt(series.recv_mbps[i], recv, &what("receiving rate"));
    }
    let mut states: Vec<(f64, String)> = Vec::new();
    for s in &lines {
        let Some(idm) = s.idm else {
            panic!("a snapshot without RawIDM");
        };
        if states.last().map(|(_, n)| n.as_str()) != Some(&*idm.state_name()) {
            states.push((secs(s), idm.state_name().into_owned()));
        }
    }
    assert_eq!(series.states.len(), states.len(), "{:?}", series.states);
    for ((t, name), (want_t, want_name)) in series.states.iter().zip(&states) {
        assert_eq!(name, want_name);
        close(*t, *want_t, name);
    }
}

#[test]
fn fixture_series_equal_the_archive_values() {
    let Some(dir) = common::mlab_fixtures() else {
        return;
    };
    for (file, uuid) in FIXTURES {
        let paths = [dir.join(file)];
        let series = Series::from_records(&plot::read_segments(&paths).unwrap()).unwrap();
        assert!(series.len() > 100, "{file}: {} points", series.len());
        assert_series_match(&series, &snapshots(&paths), uuid);
    }
}

/// Splits the 7hhhv fixture into two segments in an output tree, as a rotation would.
fn split_fixture(dir: &Path, root: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (file, uuid) = FIXTURES[0];
    let text = String::from_utf8(zstd::decode_all(std::fs::File::open(dir.join(file))?)?)?;
    let lines: Vec<&str> = text.lines().collect();
    let meta0 = lines[0];
    let meta1 = meta0.replace("\"Sequence\":0", "\"Sequence\":1");
    assert_ne!(meta0, meta1);
    let half = lines.len() / 2;
    let day = root.join("2019/07/01");
    std::fs::create_dir_all(&day)?;
    let write = |seq: u32, lines: Vec<&str>| -> anyhow::Result<PathBuf> {
        let path = day.join(format!("{uuid}.{seq:05}.jsonl.zst"));
        let body = lines.join("\n") + "\n";
        std::fs::write(&path, zstd::encode_all(body.as_bytes(), 3)?)?;
        Ok(path)
    };
    let first = write(0, lines[..half].to_vec())?;
    let mut second_lines = vec![meta1.as_str()];
    second_lines.extend(&lines[half..]);
    let second = write(1, second_lines)?;
    Ok((first, second))
}

#[test]
fn segments_found_and_read_in_order_give_the_whole_connection() {
    let Some(dir) = common::mlab_fixtures() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("out");
    let (first, second) = split_fixture(&dir, &root).unwrap();
    let uuid = FIXTURES[0].1;
    assert_eq!(
        plot::find_segments(&root, uuid).unwrap(),
        [first.clone(), second.clone()]
    );
    let whole =
        Series::from_records(&plot::read_segments(&[dir.join(FIXTURES[0].0)]).unwrap()).unwrap();
    let split =
        Series::from_records(&plot::read_segments(&[second.clone(), first.clone()]).unwrap())
            .unwrap();
    assert_eq!(split, whole);
    assert_series_match(&split, &snapshots(&[first.clone(), second.clone()]), uuid);

    // The command draws the same figure from the segments in either order.
    let a = run(&[second.as_os_str(), first.as_os_str()]);
    let b = run(&[dir.join(FIXTURES[0].0).as_os_str()]);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(a.stdout, b.stdout);
}

fn run(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(daemon_binary())
        .arg("plot")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running tcp-info plot: {e}"))
}

/// `tcp-info plot ARGS` to stdout: it must succeed, and its output is a well-formed SVG.
fn plot_to_stdout(args: &[&std::ffi::OsStr]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("SVG not UTF-8: {e}"));
    assert_well_formed_svg(&svg);
    svg
}

/// A minimal XML check: one root `<svg>` element, every start tag closed in order.
fn assert_well_formed_svg(text: &str) {
    assert!(text.starts_with("<svg"), "{}", &text[..text.len().min(80)]);
    let mut open: Vec<&str> = Vec::new();
    let mut rest = text;
    let mut roots = 0;
    while let Some(start) = rest.find('<') {
        let Some(end) = rest[start..].find('>').map(|e| e + start) else {
            panic!("unclosed tag at {}", &rest[start..]);
        };
        let tag = &rest[start + 1..end];
        assert!(!tag.contains('<'), "'<' inside a tag: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop(), Some(name.trim()), "mismatched </{name}>");
        } else if !tag.starts_with('?') && !tag.starts_with('!') {
            let name = tag.split_whitespace().next().unwrap_or_default();
            if open.is_empty() {
                roots += 1;
            }
            if !tag.ends_with('/') {
                open.push(name.trim_end_matches('/'));
            }
        }
        rest = &rest[end + 1..];
    }
    assert!(open.is_empty(), "unclosed elements {open:?}");
    assert_eq!(roots, 1, "one root element");
}

/// Width and height from a PNG's IHDR chunk, after checking the signature.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let be = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    (be(16), be(20))
}

#[test]
fn command_writes_svg_and_png_of_a_fixture() {
    let Some(dir) = common::mlab_fixtures() else {
        return;
    };
    let (file, uuid) = FIXTURES[0];
    let archive = dir.join(file);
    let svg = plot_to_stdout(&[archive.as_os_str()]);
    for needle in PANEL_TITLES
        .iter()
        .chain(&[uuid, "ESTABLISHED", "CLOSE_WAIT"])
    {
        assert!(svg.contains(needle), "the SVG lacks {needle}");
    }

    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("conn.png");
    let svg_file = tmp.path().join("conn.svg");
    for target in [&png, &svg_file] {
        let out = run(&[archive.as_os_str(), "-o".as_ref(), target.as_os_str()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty());
    }
    assert_eq!(std::fs::read_to_string(&svg_file).unwrap(), svg);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(png_size(&bytes), (plot::WIDTH, plot::HEIGHT));
    assert!(
        (20_000..5_000_000).contains(&bytes.len()),
        "{} bytes",
        bytes.len()
    );
}

#[test]
fn command_errors_name_the_problem_without_panicking() {
    let Some(dir) = common::mlab_fixtures() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let a = dir.join(FIXTURES[0].0);
    let b = dir.join(FIXTURES[1].0);
    let cut = tmp.path().join("cut.jsonl.zst");
    let bytes = std::fs::read(&a).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let missing = tmp.path().join("missing.jsonl.zst");
    let not_archive = tmp.path().join("text.jsonl.zst");
    std::fs::write(&not_archive, b"hello\n").unwrap();
    let bad_ext = tmp.path().join("x.gif");

    let cases: [(Vec<&std::ffi::OsStr>, i32, &str); 8] = [
        (vec![], 2, "no archive given"),
        (
            vec![a.as_os_str(), "-o".as_ref()],
            2,
            "-o needs a file name",
        ),
        (
            vec![a.as_os_str(), "-o".as_ref(), bad_ext.as_os_str()],
            2,
            "must end in .svg or .png",
        ),
        (
            vec!["--frobnicate".as_ref(), a.as_os_str()],
            2,
            "unknown option --frobnicate",
        ),
        (vec![missing.as_os_str()], 1, "missing.jsonl.zst"),
        (vec![cut.as_os_str()], 1, "cut.jsonl.zst:"),
        (vec![not_archive.as_os_str()], 1, "text.jsonl.zst:1:"),
        (
            vec![a.as_os_str(), b.as_os_str()],
            1,
            "give the segments of one connection",
        ),
    ];
    for (args, code, says) in cases {
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let help = run(&["--help".as_ref()]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).starts_with("Usage: tcp-info plot"));
}

/// A paced transfer recorded by the daemon: its series match its archive, the rates add up to
/// the byte counters, and the peak receive rate is what the pacing allows.
#[test]
fn bulk_flow_series_match_its_archive_and_pacing() {
    const CLIENT_SENDS: usize = 3_000_000;
    const CHUNK: usize = 50_000;
    const PERIOD: Duration = Duration::from_millis(10);
    const SERVER_SENDS: usize = 1_000_000;
    let Some(setup) = Setup::new("plot") else {
        return;
    };
    let mut daemon = setup.start(&[], &[]).unwrap();
    let listener = setup.net.listen().unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, cookie, _) = traffic::accept(&listener)?;
        let received = traffic::drain(&mut s)?;
        s.write_all(&vec![0x5A; SERVER_SENDS])?;
        drop(s);
        anyhow::Ok((cookie, received))
    });
    let mut client = setup.net.connect(port).unwrap();
    // One chunk per period: 5 MB/s, 40 Mbit/s, for ≈0.6 s.
    let started = Instant::now();
    for chunk in vec![0xA5; CLIENT_SENDS].chunks(CHUNK) {
        client.write_all(chunk).unwrap();
        std::thread::sleep(PERIOD);
    }
    let elapsed = started.elapsed().as_secs_f64();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(traffic::drain(&mut client).unwrap(), SERVER_SENDS);
    let (cookie, received) = server.join().unwrap().unwrap();
    assert_eq!(received, CLIENT_SENDS);
    drop(client);

    let root = setup.output();
    archive::wait_for_last(
        &root,
        cookie,
        Duration::from_secs(10),
        "final record of the paced transfer",
        |_, info| {
            info.is_some_and(|i| {
                i.bytes_received == CLIENT_SENDS as u64 + 1
                    && i.bytes_acked == SERVER_SENDS as u64 + 1
            })
        },
    )
    .unwrap();
    // Stopped, so that the files are complete and no line is added between the two reads.
    daemon.terminate().unwrap();

    let uuid = setup.uuid(cookie);
    let paths = plot::find_segments(&root, &uuid).unwrap();
    assert!(!paths.is_empty(), "no file of {uuid}");
    let series = Series::from_records(&plot::read_segments(&paths).unwrap()).unwrap();
    let snaps = snapshots(&paths);
    assert_series_match(&series, &snaps, &uuid);
    assert_eq!(
        series.local,
        Some(SocketAddr::new(IpAddr::V4(setup.net.server_ip()), port))
    );
    let infos: Vec<&TcpInfo> = snaps.iter().filter_map(|s| s.tcp_info.as_ref()).collect();
    assert_eq!(series.len(), infos.len());
    assert!(series.len() >= 5, "only {} points", series.len());

    // Σ rate·Δt over the intervals equals the counter's growth from the first record to the
    // last (an interval without a later timestamp has no rate and keeps its bytes).
    let (first, last) = (infos[0], infos[infos.len() - 1]);
    for (rates, counter, growth) in [
        (
            &series.send_mbps,
            &series.bytes_acked,
            last.bytes_acked - first.bytes_acked,
        ),
        (
            &series.recv_mbps,
            &series.bytes_received,
            last.bytes_received - first.bytes_received,
        ),
    ] {
        let mut sum = 0.0;
        for i in 1..series.len() {
            let dt = series.times_s[i] - series.times_s[i - 1];
            if let Some(mbps) = rates[i] {
                sum += mbps * 1e6 / 8.0 * dt;
            } else {
                assert!(dt <= 0.0, "point {i}: no rate over {dt} s");
                sum += counter[i] as f64 - counter[i - 1] as f64;
            }
        }
        assert!(
            (sum - growth as f64).abs() < 1e-3,
            "Σ rate·Δt = {sum} bytes, the archive says {growth}"
        );
    }
    assert_eq!(last.bytes_received, CLIENT_SENDS as u64 + 1);

    // The peak receive rate: at least half the transfer's average (the intervals holding the
    // transfer span its duration plus at most a poll interval or two), and in every interval at
    // most the chunks the pacing lets start in it plus four (timestamps are taken after the
    // kernel's answer, which a loaded machine delays by tens of milliseconds, and delivery may
    // lag the write).
    let average = CLIENT_SENDS as f64 * 8.0 / elapsed / 1e6;
    let mut peak = 0.0_f64;
    for i in 1..series.len() {
        let Some(rate) = series.recv_mbps[i] else {
            continue;
        };
        let dt = series.times_s[i] - series.times_s[i - 1];
        let chunks = dt / PERIOD.as_secs_f64() + 4.0;
        let bound = chunks * CHUNK as f64 * 8.0 / dt / 1e6;
        assert!(
            rate <= bound,
            "point {i}: {rate:.1} Mbit/s over {:.1} ms, above the pacing's {bound:.1}",
            dt * 1e3
        );
        peak = peak.max(rate);
    }
    eprintln!(
        "{} points; peak receive rate {peak:.1} Mbit/s; the transfer averaged {average:.1}",
        series.len()
    );
    assert!(
        peak >= average / 2.0,
        "peak receive rate {peak:.1} Mbit/s, the transfer averaged {average:.1}"
    );

    let svg = plot_to_stdout(&paths.iter().map(|p| p.as_os_str()).collect::<Vec<_>>());
    assert!(svg.contains(&uuid));
}

/// Records without `tcp_info` only mark state changes (checked on hand-made records in the
/// library); here: an archive line the daemon never writes, a record without RawIDM, is
/// skipped rather than fatal.
#[test]
fn records_without_raw_idm_are_skipped() {
    let Some(dir) = common::mlab_fixtures() else {
        return;
    };
    let mut records = plot::read_segments(&[dir.join(FIXTURES[1].0)]).unwrap();
    let whole = Series::from_records(&records).unwrap();
    records.insert(
        2,
        ArchivalRecord::new(records[2].timestamp, &[], &[None, None]),
    );
    assert_eq!(Series::from_records(&records).unwrap(), whole);
}
