//! `cargo xtask bench`: measure collectors on the reproducible workload.
//!
//! Two axes: idle connections N between two namespaces (the default), or pod namespaces P
//! ([`namespaces`], `--namespaces`).
//!
//! - [`collector`]: collector specs, presets and processes;
//! - [`trial`]: one measured trial and its arena; [`measure`]: process-tree CPU, RSS, procs, fds;
//! - [`coverage`]: grading archives against the ground truth; [`output`]: files/lines/bytes;
//! - [`fake`]: fake collectors for the self-test; [`repeat`]: the `ss` baseline's ticker;
//! - [`report`], [`plot`]: Markdown and SVG output.

pub mod collector;
pub mod coverage;
pub mod fake;
pub mod measure;
pub mod namespaces;
pub mod output;
pub mod plot;
pub mod repeat;
pub mod report;
pub mod trial;

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use self::collector::{Archives, CollectorSpec, DaemonBinary, parse_spec};
use self::namespaces::Axis;
use self::report::{Machine, RunInfo, Stat};
use self::trial::{Arena, TrialEnv, TrialKey, TrialResult, TrialSettings, run_trial};
use crate::interrupt::{Interrupt, Interrupted};
use crate::timefmt::{compact, now_unix_ns, timestamp};
use crate::workload::driver::DEFAULT_IDLE_PER_WORKER;
use crate::workload::mbit_to_bytes;
use crate::workload::truth::ConnClass;
use crate::workspace_root;

/// Arguments of `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent command-line switches"
)]
pub struct BenchArgs {
    /// CI smoke preset: N ∈ {0, 500}, 3 s window, one repetition; collectors ss-baseline,
    /// tcp-info-sweep and tcp-info-ebpf (if built) and the fake-collector self-test.
    #[arg(long)]
    pub quick: bool,
    /// Idle connection counts N to measure, comma-separated [default: 0,1000,5000,20000].
    #[arg(long = "n", value_delimiter = ',')]
    pub n: Option<Vec<usize>>,
    /// The namespace axis instead: pod namespace counts P, comma-separated (e.g. 1,10,100).
    /// Each pod holds --per-namespace idle loopback connections, the first
    /// min(P, --active-namespaces) one bulk flow each; the collectors are tcp-info-sweep and
    /// tcp-info-ebpf with --netns all, run in this namespace. Not part of --quick.
    #[arg(long, value_delimiter = ',', conflicts_with_all = [
        "quick", "n", "collectors", "bulk", "short_rate", "client_addrs",
    ])]
    pub namespaces: Option<Vec<usize>>,
    /// Idle connections per pod namespace (M), on the namespace axis.
    #[arg(long, default_value_t = 200)]
    pub per_namespace: usize,
    /// Bulk flows on the namespace axis, one in each of the first pods (spread over the pods
    /// when there are fewer, so that every P carries the same traffic).
    #[arg(long, default_value_t = 3)]
    pub active_namespaces: usize,
    /// Bulk flows K (N axis).
    #[arg(long, default_value_t = 4)]
    pub bulk: usize,
    /// Per-flow bulk sender rate, Mbit/s (0: unlimited).
    #[arg(long, default_value_t = 100.0)]
    pub bulk_rate_mbit: f64,
    /// Short connections per second R (N axis).
    #[arg(long, default_value_t = 50.0)]
    pub short_rate: f64,
    /// Repetitions of every (N, collector) trial [default: 3; quick: 1].
    #[arg(long)]
    pub repeat: Option<usize>,
    /// Measured window, seconds [default: 10; quick: 3].
    #[arg(long)]
    pub window: Option<f64>,
    /// Warm-up between the workload being up and the window, seconds [default: 3; quick: 1].
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Time the collector gets to start before the workload, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub collector_startup: f64,
    /// Time between closing all connections and stopping the collector, seconds [default: 2; quick: 1].
    #[arg(long)]
    pub drain: Option<f64>,
    /// A collector: NAME=COMMAND (run with `sh -c` in the server namespace; `{out}` is its
    /// output directory, `{prefix_file}` a UUID prefix file, `{truth}` the ground truth written
    /// before SIGTERM, `{xtask}` this program) or a preset: tcp-info-sweep, tcp-info-auto,
    /// tcp-info-ebpf, ss-baseline, fake-drop-third, fake-stale, fake-faithful. Repeatable
    /// [default: tcp-info-ebpf, tcp-info-sweep, ss-baseline; quick: ss-baseline, and
    /// tcp-info-sweep and tcp-info-ebpf if the daemon is built].
    #[arg(long = "collector")]
    pub collectors: Vec<String>,
    /// Add the fake collectors that prove the coverage measure can fail (on in --quick).
    #[arg(long)]
    pub self_test: bool,
    /// Collector the ratio table divides by [default: ss-baseline if measured, else the first].
    #[arg(long)]
    pub reference: Option<String>,
    /// The tcp-info daemon binary [default: $CARGO_TARGET_DIR/release/tcp-info, then target/release/tcp-info].
    #[arg(long)]
    pub tcp_info_bin: Option<PathBuf>,
    /// Output directory [default: <workspace>/bench-out/<UTC timestamp>].
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Fail (exit non-zero) when a tcp-info collector sees less than this fraction of any class.
    #[arg(long, default_value_t = 0.5)]
    pub min_coverage: f64,
    /// Fail when a tcp-info collector's exact-final-counter fraction of any class is below this.
    #[arg(long, default_value_t = 0.0)]
    pub min_exact: f64,
    /// Keep every trial's archives and ground truth.
    #[arg(long)]
    pub keep_archives: bool,
    /// Write archives to the disk under the run directory instead of a tmpfs per trial (which
    /// keeps ext4's file-creation cost after the previous trial's mass deletions out of the
    /// collectors' figures).
    #[arg(long)]
    pub archives_on_disk: bool,
    /// Client addresses on the client side of the veth pair (N axis).
    #[arg(long, default_value_t = 8)]
    pub client_addrs: usize,
    /// Idle connections per workload worker process (each costs two descriptors).
    #[arg(long, default_value_t = DEFAULT_IDLE_PER_WORKER)]
    pub idle_per_worker: usize,
    /// Seed for short-connection sizes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Process-tree sampling interval, milliseconds.
    #[arg(long, default_value_t = 100)]
    pub sample_interval_ms: u64,
    /// How long a collector may take to exit after SIGTERM, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub stop_timeout: f64,
    /// Skip the no-collector trials (no data-path comparison).
    #[arg(long)]
    pub no_baseline: bool,
}

/// The run, with every default resolved.
#[derive(Debug, Clone)]
struct Plan {
    ns: Vec<usize>,
    axis: Option<Axis>,
    repeat: usize,
    collectors: Vec<CollectorSpec>,
    reference: Option<String>,
    settings: TrialSettings,
    notes: Vec<String>,
}

fn plan(args: &BenchArgs) -> anyhow::Result<Plan> {
    let q = args.quick;
    let axis = Axis::from_args(args)?;
    let daemon = DaemonBinary::locate(args.tcp_info_bin.as_deref(), &workspace_root());
    let mut notes = Vec::new();
    let mut names: Vec<String> = args.collectors.clone();
    // The namespace axis measures its own collectors (below); only fakes join them.
    if axis.is_none() && names.is_empty() {
        if q {
            names.push("ss-baseline".into());
            if daemon.found.is_some() {
                names.extend(["tcp-info-sweep".into(), "tcp-info-ebpf".into()]);
            } else {
                notes.push(format!(
                    "tcp-info-sweep and tcp-info-ebpf skipped: no daemon binary at {}",
                    daemon
                        .searched
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        } else {
            names.extend([
                "tcp-info-ebpf".into(),
                "tcp-info-sweep".into(),
                "ss-baseline".into(),
            ]);
        }
    }
    if args.self_test || q {
        for f in ["fake-drop-third", "fake-stale"] {
            if !names.iter().any(|n| n == f) {
                names.push(f.into());
            }
        }
    }
    let mut collectors = match axis {
        Some(_) => Axis::collectors(|n| parse_spec(n, &daemon))?,
        None => Vec::new(),
    };
    for n in &names {
        collectors.push(parse_spec(n, &daemon)?);
    }
    let mut seen = std::collections::HashSet::new();
    for c in &collectors {
        anyhow::ensure!(
            seen.insert(c.name.clone()),
            "collector {} given twice",
            c.name
        );
    }
    let reference = match &args.reference {
        Some(r) => {
            anyhow::ensure!(
                collectors.iter().any(|c| &c.name == r),
                "--reference {r}: no such collector"
            );
            Some(r.clone())
        }
        None => collectors
            .iter()
            .find(|c| c.name == "ss-baseline")
            .or(collectors.first())
            .map(|c| c.name.clone()),
    };
    let ns = match &axis {
        Some(a) => a.counts.iter().map(|&p| a.idle(p)).collect(),
        None => args.n.clone().unwrap_or_else(|| {
            if q {
                vec![0, 500]
            } else {
                vec![0, 1000, 5000, 20_000]
            }
        }),
    };
    anyhow::ensure!(!ns.is_empty(), "--n needs at least one value");
    let pick = |v: Option<f64>, full: f64, quick: f64| v.unwrap_or(if q { quick } else { full });
    let settings = TrialSettings {
        bulk: args.bulk,
        bulk_rate: mbit_to_bytes(args.bulk_rate_mbit),
        short_rate: args.short_rate,
        client_addrs: args.client_addrs,
        idle_per_worker: args.idle_per_worker,
        seed: args.seed,
        collector_startup_s: args.collector_startup,
        warmup_s: pick(args.warmup, 3.0, 1.0),
        window_s: pick(args.window, 10.0, 3.0),
        drain_s: pick(args.drain, 2.0, 1.0),
        stop_timeout_s: args.stop_timeout,
        sample_interval_ms: args.sample_interval_ms.max(1),
        keep_archives: args.keep_archives,
        archives_on_tmpfs: !args.archives_on_disk,
    };
    anyhow::ensure!(settings.window_s > 0.0, "--window must be positive");
    Ok(Plan {
        ns,
        axis,
        repeat: args.repeat.unwrap_or(if q { 1 } else { 3 }).max(1),
        collectors,
        reference,
        settings,
        notes,
    })
}

/// Runs the benchmark; the report goes to stdout and to `<out>/report.md`.
pub fn run(args: &BenchArgs, interrupt: &Interrupt) -> anyhow::Result<()> {
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "cargo xtask bench needs root: it creates network namespaces and a veth pair"
    );
    let plan = plan(args)?;
    let removed = crate::workload::netns::cleanup_stale();
    if !removed.is_empty() {
        eprintln!(
            "removed namespaces left by killed runs: {}",
            removed.join(", ")
        );
    }
    let started_ns = now_unix_ns();
    let started = timestamp(started_ns)?;
    let run_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| workspace_root().join("bench-out").join(compact(&started)));
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let exe = std::env::current_exe().context("locating the xtask executable")?;
    for n in &plan.notes {
        eprintln!("note: {n}");
    }
    let info = RunInfo {
        started: timestamp(started_ns - started_ns % 1_000_000_000)?.to_string(),
        command_line: command_line(),
        source: source_revision(),
        machine: Machine::current(),
        ns: plan.ns.clone(),
        namespaces: plan.axis.clone(),
        bulk: plan.settings.bulk,
        bulk_rate_mbit: args.bulk_rate_mbit,
        short_rate: plan.settings.short_rate,
        repeat: plan.repeat,
        window_s: plan.settings.window_s,
        warmup_s: plan.settings.warmup_s,
        client_addrs: plan.settings.client_addrs,
        collectors: plan.collectors.clone(),
        reference: plan.reference.clone(),
        archives_on_tmpfs: plan.settings.archives_on_tmpfs,
    };
    let mut slots: Vec<Option<&CollectorSpec>> = Vec::new();
    if !args.no_baseline {
        slots.push(None);
    }
    slots.extend(plan.collectors.iter().map(Some));
    let mut trials = Trials {
        env: TrialEnv {
            settings: &plan.settings,
            exe: &exe,
            run_dir: &run_dir,
            interrupt,
        },
        total: plan.repeat * plan.ns.len() * slots.len(),
        results: Vec::new(),
    };
    match &plan.axis {
        Some(axis) => namespaces::run(
            axis,
            plan.repeat,
            plan.settings.bulk_rate,
            &slots,
            &mut trials,
        )?,
        // Repetitions are the outer loop, so drift over time (thermal, other load) spreads over
        // every collector instead of biasing one.
        None => {
            for rep in 0..plan.repeat {
                for &n in &plan.ns {
                    for c in &slots {
                        let key = TrialKey {
                            n,
                            namespaces: None,
                            rep,
                        };
                        trials.run(key, *c, || Arena::pair(&plan.settings, n))?;
                    }
                }
            }
        }
    }
    let results = trials.results;
    let verdict = verdict(&plan, args, &results);
    let plots = write_plots(&run_dir, &info, &results)?;
    let plot_refs: Vec<(&str, &str)> = plots
        .iter()
        .map(|(t, f)| (t.as_str(), f.as_str()))
        .collect();
    let md = report::render(&info, &results, &plot_refs, &verdict);
    std::fs::write(run_dir.join("report.md"), &md)?;
    std::fs::write(
        run_dir.join("results.json"),
        serde_json::to_vec_pretty(&serde_json::json!({ "run": info, "trials": results }))?,
    )?;
    println!("{md}");
    eprintln!("report: {}", run_dir.join("report.md").display());
    if verdict.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} check(s) failed:\n- {}",
            verdict.len(),
            verdict.join("\n- ")
        )
    }
}

/// The trials of a run, run one at a time with a line of progress each.
struct Trials<'a> {
    env: TrialEnv<'a>,
    total: usize,
    results: Vec<TrialResult>,
}

impl Trials<'_> {
    /// Runs one trial in the arena `arena` makes and keeps its result.
    fn run(
        &mut self,
        key: TrialKey,
        collector: Option<&CollectorSpec>,
        arena: impl FnOnce() -> anyhow::Result<Arena>,
    ) -> Result<(), Interrupted> {
        let name = collector.map(|c| c.name.as_str());
        let done = self.results.len();
        eprintln!("[{}/{}] {}", done + 1, self.total, key.label(name));
        let r = run_trial(&self.env, key, collector, arena)?;
        if let Some(outcome) = r.outcome() {
            eprintln!("  {outcome}");
        }
        self.results.push(r);
        Ok(())
    }
}

/// The workspace's commit, `-dirty` if it has local changes (read-only git queries).
fn source_revision() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(workspace_root())
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(rev) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{rev}-dirty") } else { rev }
        }
        None => "unknown (not a git checkout)".into(),
    }
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo xtask {}", args.join(" "))
}

/// Failed trials, broken ground truth, tcp-info collectors below the thresholds, and
/// self-test collectors that did not score what they must.
fn verdict(plan: &Plan, args: &BenchArgs, results: &[TrialResult]) -> Vec<String> {
    let mut v = Vec::new();
    for r in results {
        let who = r.label();
        if let Some(e) = &r.error {
            v.push(format!("{who}: trial failed: {e}"));
            continue;
        }
        if let Some(t) = &r.truth
            && t.inconsistent > 0
        {
            v.push(format!(
                "{who}: {} connections with inconsistent ground truth",
                t.inconsistent
            ));
        }
        let Some(spec) = plan
            .collectors
            .iter()
            .find(|c| Some(&c.name) == r.collector.as_ref())
        else {
            continue;
        };
        let Some(cr) = &r.collector_result else {
            continue;
        };
        if spec.archives == Archives::Expected && cr.coverage.is_none() {
            v.push(format!("{who}: archives were not graded"));
        }
        let Some(cov) = cr.coverage else { continue };
        if spec.name.starts_with("tcp-info") {
            for class in ConnClass::ALL {
                let c = cov.class(class);
                if let Some(f) = c.seen_frac().filter(|f| *f < args.min_coverage) {
                    v.push(format!(
                        "{who}: saw {:.1}% of {class} connections (< --min-coverage {})",
                        f * 100.0,
                        args.min_coverage
                    ));
                }
                if let Some(f) = c.exact_frac().filter(|f| *f < args.min_exact) {
                    v.push(format!("{who}: exact final counters for {:.1}% of {class} connections (< --min-exact {})", f * 100.0, args.min_exact));
                }
            }
        }
        if let Some(exp) = spec.expectation
            && let Some(problem) = exp.problem(&cov)
        {
            v.push(format!(
                "{who}: self-test failed, the coverage measure is broken: {problem}"
            ));
        }
    }
    v
}

/// A plot: title (before "against …"), y-axis label, file name stem (before `_vs_n.svg` or
/// `_vs_p.svg`), and the figure of a collector trial (given the median system-wide busy seconds
/// of the no-collector trials at its N).
type Figure = (
    &'static str,
    &'static str,
    &'static str,
    fn(&TrialResult, Option<f64>) -> Option<f64>,
);

/// CPU (own tree and system-wide) and RSS against N (on the namespace axis, against P), one
/// line per collector; returns (title, file name) pairs.
fn write_plots(
    dir: &Path,
    info: &RunInfo,
    results: &[TrialResult],
) -> anyhow::Result<Vec<(String, String)>> {
    // (x, N) of every point: the namespace axis's trials are grouped by N = P × M too.
    let (against, x_label, suffix, xs): (&str, &str, &str, Vec<(f64, usize)>) =
        match &info.namespaces {
            Some(a) => (
                "pod namespaces",
                "pod namespaces (P)",
                "p",
                a.counts.iter().map(|&p| (p as f64, a.idle(p))).collect(),
            ),
            None => (
                "idle connections",
                "idle connections (N)",
                "n",
                info.ns.iter().map(|&n| (n as f64, n)).collect(),
            ),
        };
    let figures: [Figure; 3] = [
        (
            "Collector CPU",
            "CPU, % of one core (window)",
            "cpu",
            |r, _| {
                let c = r.collector_result.as_ref()?;
                Some(c.cpu_window_s / r.window_s.max(1e-9) * 100.0)
            },
        ),
        (
            "System-wide CPU above baseline",
            "busy CPU of the machine above baseline, % of one core",
            "system_cpu",
            report::system_above_baseline_pct,
        ),
        (
            "Collector peak RSS",
            "peak RSS of the process tree, MiB",
            "rss",
            |r, _| {
                let c = r.collector_result.as_ref()?;
                Some(c.peaks.rss_bytes as f64 / 1_048_576.0)
            },
        ),
    ];
    let mut out = Vec::new();
    for (title, y, stem, f) in figures {
        let title = format!("{title} against {against}");
        let file = format!("{stem}_vs_{suffix}.svg");
        let series: Vec<plot::Series> = info
            .collectors
            .iter()
            .filter(|c| c.expectation.is_none()) // fakes do no real work; keep them off the plots
            .map(|c| plot::Series {
                name: c.name.clone(),
                points: xs
                    .iter()
                    .filter_map(|&(x, n)| {
                        let baseline = report::baseline_system_busy(results, n);
                        let vals: Vec<f64> = results
                            .iter()
                            .filter(|r| {
                                r.n == n
                                    && r.collector.as_deref() == Some(&c.name)
                                    && r.error.is_none()
                            })
                            .filter_map(|r| f(r, baseline))
                            .collect();
                        Stat::of(&vals).map(|s| (x, s.median, s.min, s.max))
                    })
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        let labels = plot::Labels {
            title: &title,
            x: x_label,
            y,
        };
        plot::line_plot(&dir.join(&file), labels, &series)?;
        out.push((title, file));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        b: BenchArgs,
    }

    fn args(v: &[&str]) -> BenchArgs {
        Wrap::parse_from(std::iter::once("bench").chain(v.iter().copied())).b
    }

    #[test]
    fn quick_preset_defaults() {
        let p = plan(&args(&[
            "--quick",
            "--tcp-info-bin",
            "/nonexistent/tcp-info",
        ]))
        .unwrap();
        assert_eq!(p.ns, vec![0, 500]);
        assert_eq!(p.repeat, 1);
        assert!((p.settings.window_s - 3.0).abs() < 1e-9);
        let names: Vec<_> = p.collectors.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["ss-baseline", "fake-drop-third", "fake-stale"]);
        assert!(p.notes[0].contains("tcp-info-sweep and tcp-info-ebpf skipped"));
        assert_eq!(p.reference.as_deref(), Some("ss-baseline"));
        assert!(
            p.axis.is_none(),
            "--quick must not measure the namespace axis"
        );
    }

    #[test]
    fn namespace_axis_plan() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("tcp-info");
        std::fs::write(&bin, b"").unwrap();
        let bin = bin.to_str().unwrap();
        let p = plan(&args(&[
            "--namespaces",
            "100,1,10,10",
            "--tcp-info-bin",
            bin,
        ]))
        .unwrap();
        let axis = p.axis.as_ref().unwrap();
        assert_eq!(axis.counts, [1, 10, 100]);
        assert_eq!(p.ns, [200, 2000, 20_000]);
        assert_eq!(
            [1, 10, 100].map(|n| axis.processes(n)),
            [1, 1, 3],
            "8000 idle connections (40 pods) per workload process"
        );
        let names: Vec<_> = p.collectors.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["tcp-info-sweep", "tcp-info-ebpf"]);
        assert!(
            p.collectors
                .iter()
                .all(|c| c.command.ends_with(" --netns all")),
            "{:?}",
            p.collectors
        );
        assert_eq!(p.reference.as_deref(), Some("tcp-info-sweep"));
        assert_eq!(p.repeat, 3);
        // The axis replaces the N axis and its workload, and stays out of --quick.
        for other in [
            &["--quick"][..],
            &["--n", "0"],
            &["--collector", "ss-baseline"],
            &["--bulk", "2"],
        ] {
            let argv = ["bench", "--namespaces", "1"].iter().chain(other);
            assert!(Wrap::try_parse_from(argv).is_err(), "{other:?}");
        }
        // Pods that do not fit in one workload process, and empty pods, are refused up front.
        let too_big = [
            "--namespaces",
            "1",
            "--per-namespace",
            "9000",
            "--tcp-info-bin",
            bin,
        ];
        let e = plan(&args(&too_big)).unwrap_err().to_string();
        assert!(e.contains("--idle-per-worker"), "{e}");
        assert!(plan(&args(&["--namespaces", "0,1", "--tcp-info-bin", bin])).is_err());
        let empty = [
            "--namespaces",
            "1",
            "--per-namespace",
            "0",
            "--tcp-info-bin",
            bin,
        ];
        assert!(plan(&args(&empty)).is_err());
    }

    #[test]
    fn full_defaults_need_the_daemon() {
        let e = plan(&args(&["--tcp-info-bin", "/nonexistent/tcp-info"])).unwrap_err();
        assert!(
            e.to_string().contains("cargo build --release -p tcp-info"),
            "{e}"
        );
        let p = plan(&args(&[
            "--collector",
            "x=true",
            "--collector",
            "ss-baseline",
            "--n",
            "0,7",
            "--repeat",
            "2",
        ]))
        .unwrap();
        assert_eq!(p.ns, vec![0, 7]);
        assert_eq!(p.repeat, 2);
        assert!((p.settings.window_s - 10.0).abs() < 1e-9);
        assert_eq!(p.reference.as_deref(), Some("ss-baseline"));
        assert!(plan(&args(&["--collector", "x=true", "--collector", "x=false"])).is_err());
        assert!(plan(&args(&["--collector", "x=true", "--reference", "y"])).is_err());
    }
}
