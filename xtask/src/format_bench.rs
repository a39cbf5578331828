//! `cargo xtask bench-format`: how fast the archive format path runs and how small its output is,
//! measured on the m-lab fixture `testdata.zst` (420 sock_diag messages, 140 connections).
//!
//! Throughput: raw netlink → `ArchivalRecord` → JSON line → zstd frame, end to end and stage by
//! stage, and the read path (zstd + JSON decode), each looped over the 420 messages for a fixed
//! time. Size: compressed bytes per record with millisecond timestamps 6 ms apart, in one frame,
//! in per-connection files as the daemon writes them, and with a frame every N lines.
//!
//! The run fails (non-zero exit) when the one-frame layout exceeds 40 B/record or when the 420
//! records built at the zero time are not byte-identical to `archiveRecords.jsonl.zst`.
//! `--check` is the same with short measurements, for CI.
//!
//! Usage: `cargo xtask bench-format [--seconds S] [--json FILE] [--fixtures DIR]`. Timing a debug
//! build would mislead, so a debug build re-runs itself as
//! `cargo run --release -p xtask -- bench-format …` (`--no-release` times the build at hand);
//! `--check` runs in whatever build it is. The report names the build profile it measured.

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use serde::Serialize;
use std::collections::HashMap;
use std::hint::black_box;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tcp_info::nlmsg::{Message, Messages};
use tcp_info::record::{
    ArchivalRecord, ArchiveReader, ArchiveWriter, DEFAULT_LEVEL, FrameCompressor, Metadata,
    Timestamp,
};

/// Upstream's bar for one archive holding the whole fixture.
const BAR_BYTES_PER_RECORD: f64 = 40.0;
/// Messages in `testdata.zst`.
const FIXTURE_MESSAGES: usize = 420;
/// First record's time: 2019-07-01T00:00:12.092Z, in milliseconds since the epoch.
const START_UNIX_MS: i64 = 1_561_939_212_092;
/// Gap between consecutive records.
const STEP_MS: i64 = 6;
/// Set on the release re-run so that it never re-runs again.
const REEXEC_ENV: &str = "XTASK_BENCH_FORMAT_REEXEC";

/// Measures the archive format path: throughput per stage and compressed bytes per record.
#[derive(Parser, Debug)]
#[command(name = "cargo xtask bench-format")]
struct Args {
    /// Directory holding testdata.zst and archiveRecords.jsonl.zst
    /// [default: ../shared/fixtures/m-lab beside the workspace].
    #[arg(long, value_name = "DIR")]
    fixtures: Option<PathBuf>,
    /// Also write the figures as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// CI mode: about one second in all, asserting the 40 B/record bar and the golden conversion.
    #[arg(long)]
    check: bool,
    /// Seconds spent on each throughput measurement [default: 3, or 0.1 with --check].
    #[arg(long, value_name = "SECS")]
    seconds: Option<f64>,
    /// Measure this build as it is, even a debug build (by default a debug build re-runs itself
    /// with `cargo run --release`, except with --check).
    #[arg(long)]
    no_release: bool,
}

/// Runs the benchmark; `args` are the words after `bench-format`.
pub fn run(args: &[String]) -> Result<()> {
    // clap prints help (exit 0) or the usage error (exit 2) itself.
    let cli = Args::try_parse_from(
        std::iter::once("cargo xtask bench-format").chain(args.iter().map(String::as_str)),
    )
    .unwrap_or_else(|e| e.exit());
    if cfg!(debug_assertions)
        && !cli.check
        && !cli.no_release
        && std::env::var_os(REEXEC_ENV).is_none()
    {
        return rerun_in_release(args);
    }
    let fixtures = cli.fixtures.clone().unwrap_or_else(default_fixtures);
    let seconds = cli.seconds.unwrap_or(if cli.check { 0.1 } else { 3.0 });
    ensure!(
        seconds.is_finite() && seconds > 0.0,
        "--seconds must be positive, got {seconds}"
    );
    let report = measure_all(&fixtures, Duration::from_secs_f64(seconds))?;
    print!("{}", report.markdown());
    if let Some(path) = &cli.json {
        let text = serde_json::to_vec_pretty(&report).context("encoding the JSON report")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    report.verdict()
}

/// `../shared/fixtures/m-lab` relative to the workspace root.
fn default_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/m-lab")
}

/// Timing a debug build would mislead, so build and run the release one with the same words.
fn rerun_in_release(args: &[String]) -> Result<()> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "bench-format: this is a debug build; re-running as `cargo run --release -p xtask -- \
         bench-format` (pass --no-release to time the debug build)"
    );
    let status = std::process::Command::new(cargo)
        .args([
            "run",
            "--release",
            "--quiet",
            "--package",
            "xtask",
            "--manifest-path",
        ])
        .arg(&manifest)
        .args(["--", "bench-format"])
        .args(args)
        .env(REEXEC_ENV, "1")
        .status()
        .context("starting cargo for the release run")?;
    ensure!(
        status.success(),
        "release run of bench-format failed: {status}"
    );
    Ok(())
}

/// The fixture in memory.
struct Fixture {
    /// `testdata.zst` decompressed: raw netlink messages back to back.
    raw: Vec<u8>,
    /// `archiveRecords.jsonl.zst` decompressed: upstream's conversion of `raw` at the zero time.
    golden: Vec<u8>,
    /// Size of `archiveRecords.jsonl.zst` as shipped.
    golden_compressed: u64,
}

impl Fixture {
    fn load(dir: &Path) -> Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path)
                .with_context(|| format!("reading fixture {} (use --fixtures DIR)", path.display()))
        };
        let unzstd = |name: &str, bytes: &[u8]| {
            zstd::decode_all(bytes).with_context(|| format!("decompressing {name}"))
        };
        let raw = unzstd("testdata.zst", &read("testdata.zst")?)?;
        let golden_zst = read("archiveRecords.jsonl.zst")?;
        Ok(Self {
            raw,
            golden: unzstd("archiveRecords.jsonl.zst", &golden_zst)?,
            golden_compressed: golden_zst.len() as u64,
        })
    }

    fn messages(&self) -> Result<Vec<Message<'_>>> {
        let messages = Messages::new(&self.raw)
            .collect::<Result<Vec<_>, _>>()
            .context("splitting testdata.zst into netlink messages")?;
        ensure!(
            messages.len() == FIXTURE_MESSAGES,
            "testdata.zst holds {} messages, expected {FIXTURE_MESSAGES}",
            messages.len()
        );
        Ok(messages)
    }
}

/// Record `i`'s timestamp: the start time plus `i` × 6 ms.
fn timestamp(i: usize) -> Result<Timestamp> {
    let ms = START_UNIX_MS + i as i64 * STEP_MS;
    Timestamp::from_unix(
        ms.div_euclid(1000),
        (ms.rem_euclid(1000) * 1_000_000) as u32,
    )
    .with_context(|| format!("timestamp of record {i}"))
}

fn build_records(messages: &[Message<'_>], stamps: &[Timestamp]) -> Result<Vec<ArchivalRecord>> {
    messages
        .iter()
        .zip(stamps)
        .enumerate()
        .map(|(i, (msg, &ts))| {
            ArchivalRecord::from_netlink(msg, ts)
                .map(|(record, _)| record)
                .with_context(|| format!("building record {i} of testdata.zst"))
        })
        .collect()
}

/// Everything measured in one run.
#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    seconds_per_measurement: f64,
    records: usize,
    connections: usize,
    first_timestamp: String,
    step_ms: i64,
    zstd_level: i32,
    throughput: Vec<Throughput>,
    sizes: Vec<Size>,
    bar_bytes_per_record: f64,
    one_frame_bytes_per_record: f64,
    golden_identical: bool,
    golden_first_difference: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    kernel: String,
    rustc: String,
    profile: &'static str,
    /// `/proc/loadavg` when the run started: other work on the machine skews the figures.
    load_average: String,
}

/// One throughput figure.
#[derive(Debug, Serialize)]
struct Throughput {
    stage: &'static str,
    records: u64,
    seconds: f64,
    records_per_second: f64,
    ns_per_record: f64,
}

/// One size figure.
#[derive(Debug, Serialize)]
struct Size {
    layout: String,
    files: usize,
    frames: usize,
    records: usize,
    json_bytes: u64,
    compressed_bytes: u64,
    bytes_per_record: f64,
}

fn measure_all(fixtures: &Path, budget: Duration) -> Result<Report> {
    let machine = Machine::probe();
    let fixture = Fixture::load(fixtures)?;
    let messages = fixture.messages()?;
    let stamps = (0..messages.len())
        .map(timestamp)
        .collect::<Result<Vec<_>>>()?;
    let records = build_records(&messages, &stamps)?;

    let golden_first_difference = golden_difference(&messages, &fixture.golden)?;
    let sizes = sizes(&records, &fixture)?;
    let one_frame = sizes.first().map_or(f64::INFINITY, |s| s.bytes_per_record);
    let throughput = throughput(&messages, &stamps, &records, budget)?;
    let connections = group_by_cookie(&records)?.len();
    Ok(Report {
        machine,
        seconds_per_measurement: budget.as_secs_f64(),
        records: records.len(),
        connections,
        first_timestamp: stamps.first().map(ToString::to_string).unwrap_or_default(),
        step_ms: STEP_MS,
        zstd_level: DEFAULT_LEVEL,
        throughput,
        sizes,
        bar_bytes_per_record: BAR_BYTES_PER_RECORD,
        one_frame_bytes_per_record: one_frame,
        golden_identical: golden_first_difference.is_none(),
        golden_first_difference,
    })
}

/// Converts the fixture at the zero time, as upstream did, and returns the 1-based number of the
/// first line that differs from `archiveRecords.jsonl.zst` (`None` when byte-identical).
fn golden_difference(messages: &[Message<'_>], golden: &[u8]) -> Result<Option<usize>> {
    let mut produced = Vec::with_capacity(golden.len());
    for (i, msg) in messages.iter().enumerate() {
        let (record, _) = ArchivalRecord::from_netlink(msg, Timestamp::ZERO)
            .with_context(|| format!("building record {i} at the zero time"))?;
        record.write_json_line(&mut produced);
    }
    if produced == golden {
        return Ok(None);
    }
    let mut ours = produced.split_inclusive(|&b| b == b'\n');
    let mut theirs = golden.split_inclusive(|&b| b == b'\n');
    let mut line = 1;
    loop {
        match (ours.next(), theirs.next()) {
            (Some(a), Some(b)) if a == b => line += 1,
            _ => return Ok(Some(line)),
        }
    }
}

// ---- throughput ----

/// Runs `pass` (which handles `per_pass` records) once to warm up, then repeatedly until `budget`
/// has elapsed.
fn timed(
    stage: &'static str,
    budget: Duration,
    per_pass: usize,
    mut pass: impl FnMut() -> Result<()>,
) -> Result<Throughput> {
    pass().with_context(|| format!("warm-up pass of {stage}"))?;
    let start = Instant::now();
    let mut passes = 0u64;
    let elapsed = loop {
        pass()?;
        passes += 1;
        let elapsed = start.elapsed();
        if elapsed >= budget {
            break elapsed;
        }
    };
    let records = passes * per_pass as u64;
    let seconds = elapsed.as_secs_f64();
    Ok(Throughput {
        stage,
        records,
        seconds,
        records_per_second: records as f64 / seconds,
        ns_per_record: seconds * 1e9 / records as f64,
    })
}

fn throughput(
    messages: &[Message<'_>],
    stamps: &[Timestamp],
    records: &[ArchivalRecord],
    budget: Duration,
) -> Result<Vec<Throughput>> {
    let n = messages.len();
    let mut compressor = FrameCompressor::new(DEFAULT_LEVEL).context("creating a zstd context")?;
    let mut lines = Vec::new();
    for r in records {
        r.write_json_line(&mut lines);
    }
    let line_spans: Vec<std::ops::Range<usize>> = {
        let mut start = 0;
        lines
            .split_inclusive(|&b| b == b'\n')
            .map(|l| {
                start += l.len();
                start - l.len()..start
            })
            .collect()
    };
    let archive: Arc<[u8]> = compressor
        .compress_frame(&lines)
        .context("compressing the fixture")?
        .into();
    let mut buf = Vec::with_capacity(lines.len());
    let mut out = Vec::new();

    out.push(timed(
        "end to end: netlink → record → JSON → zstd (frame per 420 lines)",
        budget,
        n,
        || {
            buf.clear();
            for (msg, &ts) in messages.iter().zip(stamps) {
                let (record, _) = ArchivalRecord::from_netlink(msg, ts)?;
                record.write_json_line(&mut buf);
            }
            black_box(compressor.compress_frame(&buf)?.len());
            Ok(())
        },
    )?);
    out.push(timed("build record (from_netlink)", budget, n, || {
        for (msg, &ts) in messages.iter().zip(stamps) {
            black_box(ArchivalRecord::from_netlink(black_box(msg), ts)?);
        }
        Ok(())
    })?);
    out.push(timed("encode JSON line", budget, n, || {
        buf.clear();
        for r in records {
            black_box(r).write_json_line(&mut buf);
        }
        black_box(&buf);
        Ok(())
    })?);
    out.push(timed(
        "compress (one frame per 420 lines)",
        budget,
        n,
        || {
            black_box(compressor.compress_frame(black_box(&lines))?.len());
            Ok(())
        },
    )?);
    out.push(timed("compress (one frame per line)", budget, n, || {
        for span in &line_spans {
            black_box(compressor.compress_frame(&lines[span.clone()])?.len());
        }
        Ok(())
    })?);
    out.push(timed(
        "read: zstd decode + JSON decode (ArchiveReader)",
        budget,
        n,
        || {
            let reader =
                ArchiveReader::from_reader(Cursor::new(Arc::clone(&archive)), true, "bench")?;
            let mut count = 0;
            for record in reader {
                black_box(record?);
                count += 1;
            }
            ensure!(count == n, "read {count} records back, expected {n}");
            Ok(())
        },
    )?);
    out.push(timed(
        "decode JSON line only (from_json)",
        budget,
        n,
        || {
            for span in &line_spans {
                black_box(ArchivalRecord::from_json(&lines[span.clone()])?);
            }
            Ok(())
        },
    )?);
    Ok(out)
}

// ---- sizes ----

/// The records of each connection, in order of first appearance.
fn group_by_cookie(records: &[ArchivalRecord]) -> Result<Vec<(u64, Vec<&ArchivalRecord>)>> {
    let mut groups: Vec<(u64, Vec<&ArchivalRecord>)> = Vec::new();
    let mut index = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let cookie = r
            .cookie()
            .with_context(|| format!("record {i} has no cookie"))?;
        let slot = *index.entry(cookie).or_insert_with(|| {
            groups.push((cookie, Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.push(r);
    }
    Ok(groups)
}

/// Writes `records` as one archive, flushing a frame every `flush_every` lines (or only at the
/// end); returns the archive and the number of frames. `first` (a Metadata line) counts as a line.
fn write_archive<'a>(
    first: Option<&'a ArchivalRecord>,
    records: impl IntoIterator<Item = &'a ArchivalRecord>,
    flush_every: Option<usize>,
) -> Result<(Vec<u8>, u64, usize)> {
    let mut writer = ArchiveWriter::new(Vec::new()).context("creating an archive writer")?;
    let mut frames = 0;
    let mut pending = 0;
    for r in first.into_iter().chain(records) {
        writer.write_record(r);
        pending += 1;
        if flush_every == Some(pending) {
            writer.flush().context("flushing a frame")?;
            frames += 1;
            pending = 0;
        }
    }
    frames += usize::from(pending > 0);
    let json_bytes = writer.raw_bytes();
    let bytes = writer.finish().context("finishing an archive")?;
    Ok((bytes, json_bytes, frames))
}

fn size_row(
    layout: impl Into<String>,
    files: usize,
    frames: usize,
    records: usize,
    json_bytes: u64,
    compressed_bytes: u64,
) -> Size {
    Size {
        layout: layout.into(),
        files,
        frames,
        records,
        json_bytes,
        compressed_bytes,
        bytes_per_record: compressed_bytes as f64 / records as f64,
    }
}

fn sizes(records: &[ArchivalRecord], fixture: &Fixture) -> Result<Vec<Size>> {
    let n = records.len();
    let mut out = Vec::new();

    // (a) everything in one frame; also proves the archive reads back to the same records.
    let (archive, json, frames) = write_archive(None, records, None)?;
    let back = ArchiveReader::from_reader(Cursor::new(archive.clone()), true, "layout (a)")?
        .collect::<Result<Vec<_>, _>>()?;
    ensure!(
        back == records,
        "layout (a) does not read back to the same records"
    );
    out.push(size_row(
        "(a) one archive, one frame",
        1,
        frames,
        n,
        json,
        archive.len() as u64,
    ));

    // (b) one file per connection: Metadata line + that connection's records, one frame.
    let groups = group_by_cookie(records)?;
    let (mut json, mut compressed, mut frames) = (0, 0, 0);
    for (cookie, group) in &groups {
        let meta = ArchivalRecord::metadata_line(Metadata {
            uuid: format!("bench_{}_{cookie:016X}", START_UNIX_MS / 1000),
            sequence: 0,
            start_time: group.first().map_or(Timestamp::ZERO, |r| r.timestamp),
        });
        let (bytes, j, f) = write_archive(Some(&meta), group.iter().copied(), None)?;
        json += j;
        compressed += bytes.len() as u64;
        frames += f;
    }
    out.push(size_row(
        "(b) one file per connection (Metadata + its records)",
        groups.len(),
        frames,
        n,
        json,
        compressed,
    ));

    // (c) one archive, a frame every N lines.
    for every in [1, 10, 100] {
        let (archive, json, frames) = write_archive(None, records, Some(every))?;
        out.push(size_row(
            if every == 1 {
                "(c) one archive, frame every line".to_owned()
            } else {
                format!("(c) one archive, frame every {every} lines")
            },
            1,
            frames,
            n,
            json,
            archive.len() as u64,
        ));
    }

    // For reference: upstream's file (zero timestamps) and ours for the same lines.
    let mut compressor = FrameCompressor::new(DEFAULT_LEVEL)?;
    let ours = compressor.compress_frame(&fixture.golden)?.len() as u64;
    let golden_json = fixture.golden.len() as u64;
    out.push(size_row(
        "ref: zero timestamps, one frame (ours)",
        1,
        1,
        n,
        golden_json,
        ours,
    ));
    out.push(size_row(
        "ref: archiveRecords.jsonl.zst as shipped",
        1,
        1,
        n,
        golden_json,
        fixture.golden_compressed,
    ));
    Ok(out)
}

// ---- machine facts ----

impl Machine {
    fn probe() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
        let rustc =
            std::process::Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
                .arg("--version")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map_or_else(
                    || "unknown".to_owned(),
                    |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
                );
        let load_average = std::fs::read_to_string("/proc/loadavg").map_or_else(
            |_| "unknown".to_owned(),
            |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        );
        Self {
            load_average,
            cpu,
            cores: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            kernel,
            rustc,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        }
    }
}

// ---- output ----

impl Report {
    fn markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let m = &self.machine;
        // Writing to a String cannot fail.
        let _ = writeln!(
            s,
            "## cargo xtask bench-format ({} build, {:.1} s per throughput figure)\n",
            m.profile, self.seconds_per_measurement
        );
        let _ = writeln!(
            s,
            "Machine: {} ({} cores available), Linux {}, {}, load average {} at start.  ",
            m.cpu, m.cores, m.kernel, m.rustc, m.load_average
        );
        let _ = writeln!(
            s,
            "Input: the {} messages of testdata.zst ({} connections); record i stamped {} + i × {} ms; zstd level {}.\n",
            self.records, self.connections, self.first_timestamp, self.step_ms, self.zstd_level
        );
        s.push_str("| stage | records/s | ns/record | records timed |\n|---|---:|---:|---:|\n");
        for t in &self.throughput {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.0} | {} |",
                t.stage, t.records_per_second, t.ns_per_record, t.records
            );
        }
        s.push_str(
            "\n| layout | files | frames | JSON B/record | zstd bytes | zstd B/record |\n\
             |---|---:|---:|---:|---:|---:|\n",
        );
        for z in &self.sizes {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {} | {:.2} |",
                z.layout,
                z.files,
                z.frames,
                z.json_bytes as f64 / z.records as f64,
                z.compressed_bytes,
                z.bytes_per_record
            );
        }
        let pass = |ok: bool| if ok { "PASS" } else { "FAIL" };
        let _ = writeln!(
            s,
            "\n- (a) ≤ {:.0} B/record: {} ({:.2})",
            self.bar_bytes_per_record,
            pass(self.bar_ok()),
            self.one_frame_bytes_per_record
        );
        let _ = writeln!(
            s,
            "- golden: {} lines at the zero time byte-identical to archiveRecords.jsonl.zst: {}{}",
            self.records,
            pass(self.golden_identical),
            self.golden_first_difference
                .map(|l| format!(" (first difference at line {l})"))
                .unwrap_or_default()
        );
        s
    }

    fn bar_ok(&self) -> bool {
        self.one_frame_bytes_per_record <= self.bar_bytes_per_record
    }

    /// The exit status: an error when a bar is missed.
    fn verdict(&self) -> Result<()> {
        if !self.bar_ok() {
            bail!(
                "one-frame archive takes {:.2} B/record, above the {:.0} B/record bar",
                self.one_frame_bytes_per_record,
                self.bar_bytes_per_record
            );
        }
        if let Some(line) = self.golden_first_difference {
            bail!("golden conversion differs from archiveRecords.jsonl.zst at line {line}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture directory, or `None` (skip) outside CI when it is missing.
    fn fixtures() -> Option<PathBuf> {
        let dir = default_fixtures();
        if dir.is_dir() {
            return Some(dir);
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "fixtures missing at {}",
            dir.display()
        );
        eprintln!("SKIP: fixtures not found at {}", dir.display());
        None
    }

    #[test]
    fn timestamps_step_six_milliseconds() {
        assert_eq!(
            timestamp(0).unwrap().to_string(),
            "2019-07-01T00:00:12.092Z"
        );
        assert_eq!(
            timestamp(1).unwrap().to_string(),
            "2019-07-01T00:00:12.098Z"
        );
        assert_eq!(
            timestamp(151).unwrap().to_string(),
            "2019-07-01T00:00:12.998Z"
        );
        assert_eq!(
            timestamp(152).unwrap().to_string(),
            "2019-07-01T00:00:13.004Z"
        );
    }

    #[test]
    fn sizes_cover_every_layout_and_meet_the_bar() {
        let Some(dir) = fixtures() else { return };
        let fixture = Fixture::load(&dir).unwrap();
        let messages = fixture.messages().unwrap();
        let stamps: Vec<_> = (0..messages.len()).map(|i| timestamp(i).unwrap()).collect();
        let records = build_records(&messages, &stamps).unwrap();
        assert_eq!(golden_difference(&messages, &fixture.golden).unwrap(), None);
        let sizes = sizes(&records, &fixture).unwrap();
        let frames: Vec<(usize, usize)> = sizes.iter().map(|s| (s.files, s.frames)).collect();
        assert_eq!(
            &frames[..5],
            &[(1, 1), (140, 140), (1, 420), (1, 42), (1, 5)]
        );
        assert!(
            sizes[0].bytes_per_record <= BAR_BYTES_PER_RECORD,
            "{sizes:?}"
        );
        // Frequent flushes cost bytes: each frame restarts the compressor's history.
        assert!(sizes[2].bytes_per_record > sizes[3].bytes_per_record);
        assert!(sizes[3].bytes_per_record > sizes[4].bytes_per_record);
    }

    #[test]
    fn golden_difference_names_the_first_differing_line() {
        let Some(dir) = fixtures() else { return };
        let fixture = Fixture::load(&dir).unwrap();
        let messages = fixture.messages().unwrap();
        let mut altered = fixture.golden.clone();
        let third = altered
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .nth(1)
            .map(|(i, _)| i + 3)
            .unwrap();
        altered[third] ^= 1;
        assert_eq!(golden_difference(&messages, &altered).unwrap(), Some(3));
    }

    #[test]
    fn verdict_fails_above_the_bar_or_off_golden() {
        let report = |bytes_per_record: f64, golden_first_difference: Option<usize>| Report {
            machine: Machine::probe(),
            seconds_per_measurement: 0.1,
            records: 420,
            connections: 140,
            first_timestamp: String::new(),
            step_ms: STEP_MS,
            zstd_level: DEFAULT_LEVEL,
            throughput: Vec::new(),
            sizes: Vec::new(),
            bar_bytes_per_record: BAR_BYTES_PER_RECORD,
            one_frame_bytes_per_record: bytes_per_record,
            golden_identical: golden_first_difference.is_none(),
            golden_first_difference,
        };
        assert!(report(40.0, None).verdict().is_ok());
        let above = report(40.01, None).verdict().unwrap_err().to_string();
        assert!(above.contains("40.01 B/record"), "{above}");
        let off = report(30.0, Some(7)).verdict().unwrap_err().to_string();
        assert!(off.contains("line 7"), "{off}");
        assert!(
            report(30.0, Some(7))
                .markdown()
                .contains("FAIL (first difference at line 7)")
        );
    }
}
