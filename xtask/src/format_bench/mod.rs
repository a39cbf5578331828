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

mod fixture;
mod report;
mod sizes;
mod throughput;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use clap::Parser;
use tcp_info::record::DEFAULT_LEVEL;

use self::fixture::{Fixture, build_records, golden_difference, group_by_cookie, timestamp};
use self::report::{Machine, Report};

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
    crate::workspace_root().join("../shared/fixtures/m-lab")
}

/// Timing a debug build would mislead, so build and run the release one with the same words.
fn rerun_in_release(args: &[String]) -> Result<()> {
    let manifest = crate::workspace_root().join("Cargo.toml");
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

fn measure_all(fixtures: &Path, budget: Duration) -> Result<Report> {
    let machine = Machine::probe();
    let fixture = Fixture::load(fixtures)?;
    let messages = fixture.messages()?;
    let stamps = (0..messages.len())
        .map(timestamp)
        .collect::<Result<Vec<_>>>()?;
    let records = build_records(&messages, &stamps)?;

    let golden_first_difference = golden_difference(&messages, &fixture.golden)?;
    let sizes = sizes::sizes(&records, &fixture)?;
    let one_frame = sizes.first().map_or(f64::INFINITY, |s| s.bytes_per_record);
    let throughput = throughput::throughput(&messages, &stamps, &records, budget)?;
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
