//! `cargo xtask soak`: the daemon under an hour of churn (issue 12), in each mode.
//!
//! Per mode: fresh namespaces, the release daemon in the server namespace, and the benchmark's
//! workload (idle connections held throughout, rate-limited bulk flows, and thousands of short
//! connections a minute, each with ground truth). Every `--sample-secs` the daemon's RSS and
//! descriptor count are recorded. At the end the workload closes everything, the daemon stops
//! with SIGTERM, and the archives are graded against the ground truth.
//!
//! The verdict: RSS and descriptors flat (the last tenth of the run no higher than the tenth
//! after warm-up, within a slack), every archive readable, every connection seen, and every
//! connection's last record with its exact final counters. The report names the first 20
//! connections that fail the last two, and their archives are copied to `<mode>/misses/`.
//! Several modes run side by side, in separate namespaces, so an hour per mode takes an hour.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::bench::collector::{DaemonBinary, RunningCollector, shell_quote};
use crate::bench::coverage::{ArchiveIndex, Coverage, archive_paths, coverage, misses};
use crate::bench::measure::sample_tree;
use crate::bench::plot::{Labels, Series, line_plot};
use crate::interrupt::Interrupt;
use crate::workload::driver::{Workload, WorkloadParams};
use crate::workload::mbit_to_bytes;
use crate::workload::netns::Topology;
use crate::workload::truth::{ConnClass, ConnTruth};

/// Arguments of `cargo xtask soak`.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// Modes to soak, side by side (`ebpf`, `sweep`).
    #[arg(long, value_delimiter = ',', default_value = "ebpf,sweep")]
    modes: Vec<String>,
    /// Length of the churn, in minutes.
    #[arg(long, default_value_t = 60.0)]
    minutes: f64,
    /// Idle connections held throughout.
    #[arg(long, default_value_t = 500)]
    idle: usize,
    /// Bulk flows held throughout.
    #[arg(long, default_value_t = 2)]
    bulk: usize,
    /// Per-flow bulk rate, Mbit/s.
    #[arg(long, default_value_t = 20.0)]
    bulk_rate_mbit: f64,
    /// Short connections per second (50/s is 3 000 a minute).
    #[arg(long, default_value_t = 50.0)]
    short_rate: f64,
    /// Seconds between samples of RSS and descriptors.
    #[arg(long, default_value_t = 10.0)]
    sample_secs: f64,
    /// RSS growth allowed between the early and the late window, MiB.
    #[arg(long, default_value_t = 8.0)]
    rss_slack_mib: f64,
    /// Descriptor growth allowed between the early and the late window.
    #[arg(long, default_value_t = 16)]
    fd_slack: usize,
    /// The daemon binary (default: the workspace's release build).
    #[arg(long)]
    tcp_info_bin: Option<PathBuf>,
    /// Where to write the report (default: `bench-out/soak-<unix time>`).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One sample: seconds since the daemon started, RSS bytes, descriptors.
type Sample = (f64, u64, usize);

/// What one mode's soak found.
struct ModeResult {
    mode: String,
    samples: Vec<Sample>,
    coverage: Coverage,
    files: u64,
    records: u64,
    bad_files: u64,
    first_error: Option<String>,
    short_done: u64,
    stop: String,
    /// The first [`MISSES_SHOWN`] connections not seen or not exact, described.
    misses: Vec<String>,
    problems: Vec<String>,
}

/// How many missed connections the report describes and keeps the archives of.
const MISSES_SHOWN: usize = 20;

/// `cargo xtask soak`: soaks every mode of `--modes` side by side, writes the report, the plots
/// and the samples, and fails if any mode grew or lost something.
pub fn run(args: &SoakArgs, interrupt: &Interrupt) -> anyhow::Result<()> {
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !positive(args.minutes) || !positive(args.sample_secs) {
        bail!("--minutes and --sample-secs must be positive numbers");
    }
    let root = crate::workspace_root();
    let daemon = DaemonBinary::locate(args.tcp_info_bin.as_deref(), &root)
        .found
        .context("no release daemon: run `cargo build --release -p tcp-info` first")?;
    let out = args.out.clone().unwrap_or_else(|| {
        root.join("bench-out").join(format!(
            "soak-{}",
            crate::timefmt::now_unix_ns() / 1_000_000_000
        ))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let exe = std::env::current_exe().context("locating the xtask executable")?;
    for mode in &args.modes {
        if !matches!(mode.as_str(), "ebpf" | "sweep") {
            bail!("unknown mode {mode:?}: ebpf or sweep");
        }
    }
    println!(
        "soak: {} min of {} short/s, {} idle, {} bulk at {} Mbit/s, modes {}; report in {}",
        args.minutes,
        args.short_rate,
        args.idle,
        args.bulk,
        args.bulk_rate_mbit,
        args.modes.join(", "),
        out.display()
    );
    let results: Vec<anyhow::Result<ModeResult>> = std::thread::scope(|scope| {
        let handles: Vec<_> = args
            .modes
            .iter()
            .map(|mode| {
                let (daemon, exe, out) = (&daemon, &exe, &out);
                scope.spawn(move || soak_mode(args, mode, daemon, exe, &out.join(mode), interrupt))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("soak thread panicked")))
            })
            .collect()
    });
    let mut report = String::new();
    let mut ok = true;
    let mut plotted = Vec::new();
    for (mode, result) in args.modes.iter().zip(results) {
        match result {
            Ok(r) => {
                ok &= r.problems.is_empty();
                report.push_str(&describe(&r));
                plotted.push(r);
            }
            Err(e) => {
                ok = false;
                let _ = writeln!(report, "## {mode}\n\nfailed: {e:#}\n");
            }
        }
    }
    plot(&out, &plotted)?;
    write_samples(&out, &plotted)?;
    std::fs::write(out.join("report.md"), &report)?;
    println!("\n{report}");
    if !ok {
        bail!("the soak found problems (see above and {})", out.display());
    }
    Ok(())
}

fn soak_mode(
    args: &SoakArgs,
    mode: &str,
    daemon: &Path,
    exe: &Path,
    dir: &Path,
    interrupt: &Interrupt,
) -> anyhow::Result<ModeResult> {
    let archives = dir.join("out");
    std::fs::create_dir_all(&archives)?;
    let prefix = dir.join("uuid-prefix");
    std::fs::write(&prefix, format!("soak-{mode}_{}", std::process::id()))?;
    let topo = Topology::create(8)?;
    let command = format!(
        "exec {} -output={} -uuid-prefix-file={} -mode={mode} -prometheusx.listen-address=127.0.0.1:0",
        shell_quote(&daemon.display().to_string()),
        shell_quote(&archives.display().to_string()),
        shell_quote(&prefix.display().to_string()),
    );
    let mut collector =
        RunningCollector::spawn(&command, Some(&topo.server_ns), &dir.join("daemon.log"))?;
    let started = Instant::now();
    interrupt.sleep(Duration::from_secs(2))?;
    if let Some(status) = collector.try_exit()? {
        bail!(
            "{mode}: the daemon exited at start ({status}); see {}",
            dir.join("daemon.log").display()
        );
    }
    let params = WorkloadParams {
        idle: args.idle,
        bulk: args.bulk,
        bulk_rate: mbit_to_bytes(args.bulk_rate_mbit),
        short_rate: args.short_rate,
        idle_per_worker: crate::workload::driver::DEFAULT_IDLE_PER_WORKER,
        seed: 1,
    };
    let mut workload = Workload::start(exe, &params.processes(&topo), dir, interrupt)?;
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs_f64(args.minutes * 60.0);
    let mut next_report = Instant::now();
    while Instant::now() < deadline {
        let s = sample_tree(collector.pid());
        samples.push((started.elapsed().as_secs_f64(), s.rss_bytes, s.fds));
        if let Some(status) = collector.try_exit()? {
            bail!("{mode}: the daemon exited during the soak ({status})");
        }
        if Instant::now() >= next_report {
            let done = workload.counters(interrupt)?.short_done;
            println!(
                "soak {mode}: {:>5.1} min, rss {:.1} MiB, {} descriptors, {done} short connections",
                started.elapsed().as_secs_f64() / 60.0,
                s.rss_bytes as f64 / 1_048_576.0,
                s.fds
            );
            next_report += Duration::from_secs(300);
        }
        interrupt.sleep(Duration::from_secs_f64(args.sample_secs))?;
    }
    let short_done = workload.counters(interrupt)?.short_done;
    let truth = workload.stop(&dir.join("truth.jsonl"), interrupt)?;
    // Time for the close source and the last sweeps to record the final counters.
    interrupt.sleep(Duration::from_secs(5))?;
    let stop = collector.stop(Duration::from_secs(60))?;
    let index = ArchiveIndex::from_dir(&archives);
    let coverage = coverage(&truth, &index);
    let missed = misses(&truth, &index);
    // Evidence only: failing to copy it must not lose the report.
    let kept = keep_archives(&archives, &dir.join("misses"), &missed).unwrap_or_else(|e| {
        eprintln!("soak {mode}: could not keep the missed connections' archives: {e:#}");
        0
    });
    let misses = missed
        .iter()
        .take(MISSES_SHOWN)
        .map(|t| {
            format!(
                "{} connection {} -> {}, cookie {:016X}, opened {} ns, closed {} ns, final {:?}: {}",
                t.class,
                t.client,
                t.server,
                t.cookie,
                t.opened_ns,
                t.closed_ns,
                t.server_final,
                index.describe(t)
            )
        })
        .collect();
    if kept > 0 {
        println!(
            "soak {mode}: kept {kept} archive files of missed connections in {}",
            dir.join("misses").display()
        );
    }
    let mut result = ModeResult {
        mode: mode.to_owned(),
        problems: Vec::new(),
        coverage,
        files: index.files,
        records: index.records,
        bad_files: index.bad_files,
        first_error: index.first_error,
        short_done,
        stop: stop.status.clone(),
        misses,
        samples,
    };
    result.problems = problems(args, &result, stop.clean);
    drop(topo);
    Ok(result)
}

/// The early window (the second tenth of the run, after warm-up) and the late one (the last
/// tenth): the highest value of each.
fn windows<T: Copy + Ord>(samples: &[Sample], value: impl Fn(&Sample) -> T) -> Option<(T, T)> {
    let tenth = samples.len() / 10;
    if tenth == 0 {
        return None;
    }
    let early = samples[tenth..2 * tenth].iter().map(&value).max()?;
    let late = samples[samples.len() - tenth..].iter().map(&value).max()?;
    Some((early, late))
}

fn problems(args: &SoakArgs, r: &ModeResult, clean_stop: bool) -> Vec<String> {
    let mut out = Vec::new();
    if !clean_stop {
        out.push(format!(
            "the daemon did not stop cleanly on SIGTERM: {}",
            r.stop
        ));
    }
    match windows(&r.samples, |s| s.1) {
        Some((early, late)) if late as f64 > early as f64 + args.rss_slack_mib * 1_048_576.0 => {
            out.push(format!(
                "RSS grew: {:.1} MiB early, {:.1} MiB late (slack {} MiB)",
                early as f64 / 1_048_576.0,
                late as f64 / 1_048_576.0,
                args.rss_slack_mib
            ));
        }
        None => out.push("too few samples to judge RSS and descriptors".to_owned()),
        _ => {}
    }
    if let Some((early, late)) = windows(&r.samples, |s| s.2)
        && late > early + args.fd_slack
    {
        out.push(format!(
            "descriptors grew: {early} early, {late} late (slack {})",
            args.fd_slack
        ));
    }
    if r.bad_files > 0 {
        out.push(format!(
            "{} archives unreadable; first: {}",
            r.bad_files,
            r.first_error.clone().unwrap_or_default()
        ));
    }
    let all = r.coverage.overall();
    if all.seen < all.total {
        out.push(format!(
            "{} of {} connections have no record",
            all.total - all.seen,
            all.total
        ));
    }
    if all.exact < all.gradable {
        out.push(format!(
            "{} of {} connections lack exact final counters",
            all.gradable - all.exact,
            all.gradable
        ));
    }
    out
}

fn describe(r: &ModeResult) -> String {
    let mut s = format!("## {}\n\n", r.mode);
    let mib = |b: u64| b as f64 / 1_048_576.0;
    if let (Some((rss_early, rss_late)), Some((fd_early, fd_late))) =
        (windows(&r.samples, |s| s.1), windows(&r.samples, |s| s.2))
    {
        let peak = r.samples.iter().map(|s| s.1).max().unwrap_or(0);
        let _ = writeln!(
            s,
            "- RSS: {:.1} MiB in the early window, {:.1} MiB in the last, peak {:.1} MiB",
            mib(rss_early),
            mib(rss_late),
            mib(peak)
        );
        let _ = writeln!(s, "- descriptors: {fd_early} early, {fd_late} last");
    }
    let _ = writeln!(
        s,
        "- {} short connections made; {} archives, {} records, {} unreadable; stop: {}",
        r.short_done, r.files, r.records, r.bad_files, r.stop
    );
    for class in [ConnClass::Idle, ConnClass::Bulk, ConnClass::Short] {
        let c = r.coverage.class(class);
        let _ = writeln!(
            s,
            "- {class:?}: {} connections, {} seen, exact final counters {}/{}",
            c.total, c.seen, c.exact, c.gradable
        );
    }
    for m in &r.misses {
        let _ = writeln!(s, "- missed: {m}");
    }
    if r.problems.is_empty() {
        s.push_str("- verdict: flat, nothing lost\n\n");
    } else {
        for p in &r.problems {
            let _ = writeln!(s, "- PROBLEM: {p}");
        }
        s.push('\n');
    }
    s
}

/// Copies the archive files of the first [`MISSES_SHOWN`] `missed` connections (named by their
/// cookie, SPEC §5.1) from `archives` to `to`, so that they can be read after the bulk of the
/// run's archives is deleted; returns how many files it copied.
fn keep_archives(archives: &Path, to: &Path, missed: &[&ConnTruth]) -> anyhow::Result<usize> {
    let names: Vec<String> = missed
        .iter()
        .take(MISSES_SHOWN)
        .map(|t| format!("_{:016X}.", t.cookie))
        .collect();
    if names.is_empty() {
        return Ok(0);
    }
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let mut kept = 0;
    for path in archive_paths(archives) {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if names.iter().any(|n| name.contains(n.as_str())) {
            std::fs::copy(&path, to.join(name))
                .with_context(|| format!("copying {}", path.display()))?;
            kept += 1;
        }
    }
    Ok(kept)
}

fn plot(out: &Path, results: &[ModeResult]) -> anyhow::Result<()> {
    let series = |value: &dyn Fn(&Sample) -> f64| -> Vec<Series> {
        results
            .iter()
            .map(|r| Series {
                name: r.mode.clone(),
                points: r
                    .samples
                    .iter()
                    .map(|s| {
                        let v = value(s);
                        (s.0 / 60.0, v, v, v)
                    })
                    .collect(),
            })
            .collect()
    };
    line_plot(
        &out.join("rss.svg"),
        Labels {
            title: "tcp-info soak: resident memory",
            x: "minutes",
            y: "RSS (MiB)",
        },
        &series(&|s| s.1 as f64 / 1_048_576.0),
    )?;
    line_plot(
        &out.join("descriptors.svg"),
        Labels {
            title: "tcp-info soak: open descriptors",
            x: "minutes",
            y: "descriptors",
        },
        &series(&|s| s.2 as f64),
    )
}

fn write_samples(out: &Path, results: &[ModeResult]) -> anyhow::Result<()> {
    let mut csv = String::from("mode,seconds,rss_bytes,descriptors\n");
    for r in results {
        for (t, rss, fds) in &r.samples {
            let _ = writeln!(csv, "{},{t:.1},{rss},{fds}", r.mode);
        }
    }
    std::fs::write(out.join("samples.csv"), csv).context("writing samples.csv")
}
