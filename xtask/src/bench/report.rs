//! The Markdown report: machine, parameters, and per (N, collector) figures as
//! median [min–max] over repetitions, plus ratios between collectors of the same run. On the
//! namespace axis, its description and table come from [`super::namespaces::report`].

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::collector::CollectorSpec;
use super::namespaces::{self, Axis};
use super::trial::{CollectorResult, TrialResult};
use crate::workload::truth::ConnClass;

/// The machine a run was made on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// `/proc/sys/kernel/hostname`.
    pub hostname: String,
    /// First `model name` of `/proc/cpuinfo`.
    pub cpu: String,
    /// Online CPUs.
    pub cores: usize,
    /// `MemTotal`, GiB.
    pub mem_gib: f64,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// `ss -V`.
    pub ss_version: String,
}

impl Machine {
    /// Reads the current machine's description.
    pub fn current() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let meminfo = read("/proc/meminfo");
        let field = |text: &str, key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        let mem_kib: f64 = field(&meminfo, "MemTotal")
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap_or(0.0);
        let ss_version = std::process::Command::new("ss")
            .arg("-V")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Self {
            hostname: read("/proc/sys/kernel/hostname").trim().to_owned(),
            cpu: field(&cpuinfo, "model name"),
            cores: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            mem_gib: mem_kib / 1024.0 / 1024.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            ss_version,
        }
    }
}

/// Everything about a run except its results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    /// UTC start time (RFC 3339).
    pub started: String,
    /// The command line, for rerunning.
    pub command_line: String,
    /// `git describe`-like identification of the source tree (`<commit>[-dirty]`).
    pub source: String,
    /// The machine.
    pub machine: Machine,
    /// Idle connection counts (on the namespace axis, over all pods: P × M).
    pub ns: Vec<usize>,
    /// The namespace axis, if the run measured it.
    #[serde(default)]
    pub namespaces: Option<Axis>,
    /// Bulk flows.
    pub bulk: usize,
    /// Per-flow sender rate, Mbit/s.
    pub bulk_rate_mbit: f64,
    /// Short connections per second.
    pub short_rate: f64,
    /// Repetitions.
    pub repeat: usize,
    /// Window, warm-up, collector start-up and drain, seconds.
    pub window_s: f64,
    /// Warm-up seconds.
    pub warmup_s: f64,
    /// Client addresses.
    pub client_addrs: usize,
    /// The collectors, in order.
    pub collectors: Vec<CollectorSpec>,
    /// Collector the ratios are computed against.
    pub reference: Option<String>,
    /// Whether archives went to a tmpfs per trial (see `trial::ArchiveTmpfs`).
    #[serde(default)]
    pub archives_on_tmpfs: bool,
}

/// Min, median, max of a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// Smallest.
    pub min: f64,
    /// Median (mean of the two middle values for even counts).
    pub median: f64,
    /// Largest.
    pub max: f64,
    /// Sample size.
    pub count: usize,
}

impl Stat {
    /// `None` for an empty sample.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            f64::midpoint(v[n / 2 - 1], v[n / 2])
        };
        Some(Self {
            min: v[0],
            median,
            max: v[n - 1],
            count: n,
        })
    }

    /// `median [min–max]`, or just the value for a single sample.
    pub fn show(&self, fmt: impl Fn(f64) -> String) -> String {
        if self.count == 1 || (self.max - self.min).abs() <= f64::EPSILON * self.max.abs() {
            fmt(self.median)
        } else {
            format!("{} [{}–{}]", fmt(self.median), fmt(self.min), fmt(self.max))
        }
    }
}

/// `median [min–max]` of `values`, or `n/a`.
pub(super) fn cell(values: &[f64], fmt: impl Fn(f64) -> String) -> String {
    Stat::of(values).map_or_else(|| "n/a".into(), |s| s.show(fmt))
}

/// One decimal.
pub(super) fn f1(x: f64) -> String {
    format!("{x:.1}")
}
/// Two decimals.
pub(super) fn f2(x: f64) -> String {
    format!("{x:.2}")
}
fn f3(x: f64) -> String {
    format!("{x:.3}")
}
fn int(x: f64) -> String {
    format!("{x:.0}")
}
/// A fraction as a percentage.
pub(super) fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// Results of one (N, collector) pair.
pub(super) struct Group<'a> {
    /// Its trials that did not fail.
    pub(super) ok: Vec<&'a TrialResult>,
}

impl<'a> Group<'a> {
    /// The pair's trials (`collector` `None`: the no-collector baseline).
    pub(super) fn of(results: &'a [TrialResult], n: usize, collector: Option<&str>) -> Self {
        Self {
            ok: results
                .iter()
                .filter(|r| r.n == n && r.collector.as_deref() == collector && r.error.is_none())
                .collect(),
        }
    }

    fn collected(&self) -> impl Iterator<Item = &'a CollectorResult> + '_ {
        self.ok.iter().filter_map(|r| r.collector_result.as_ref())
    }

    /// `f` of every collector result.
    pub(super) fn values(&self, f: impl Fn(&CollectorResult) -> Option<f64>) -> Vec<f64> {
        self.collected().filter_map(f).collect()
    }

    /// The median of [`Self::values`].
    pub(super) fn median(&self, f: impl Fn(&CollectorResult) -> Option<f64>) -> Option<f64> {
        Stat::of(&self.values(f)).map(|s| s.median)
    }

    /// System-wide CPU above `baseline` of every trial, % of one core
    /// ([`system_above_baseline_pct`]).
    pub(super) fn system_pct(&self, baseline: Option<f64>) -> Vec<f64> {
        self.ok
            .iter()
            .filter_map(|r| system_above_baseline_pct(r, baseline))
            .collect()
    }

    fn bulk(&self) -> Vec<f64> {
        self.ok.iter().filter_map(|r| r.bulk_mbit).collect()
    }
}

/// The collector's own CPU in the window, % of one core.
pub(super) fn cpu_pct(c: &CollectorResult, window_s: f64) -> f64 {
    c.cpu_window_s / window_s * 100.0
}

/// Median busy CPU seconds of the whole machine in the no-collector trials at `n`.
pub fn baseline_system_busy(results: &[TrialResult], n: usize) -> Option<f64> {
    let base: Vec<f64> = Group::of(results, n, None)
        .ok
        .iter()
        .filter_map(|r| r.system_busy_s)
        .collect();
    Stat::of(&base).map(|s| s.median)
}

/// What one trial cost the whole machine above the no-collector baseline, in % of one core.
pub fn system_above_baseline_pct(r: &TrialResult, baseline_busy_s: Option<f64>) -> Option<f64> {
    let busy = r.system_busy_s?;
    let base = baseline_busy_s?;
    (r.window_s > 0.0).then(|| (busy - base) / r.window_s * 100.0)
}

/// The N axis's workload paragraph.
fn pair_workload(info: &RunInfo) -> String {
    let ns: Vec<String> = info.ns.iter().map(ToString::to_string).collect();
    format!(
        "**Workload:** N ∈ {{{}}} idle connections; K = {} bulk flows at {} Mbit/s each \
         (alternately server→client and client→server); R = {} short connections/s; {} client \
         addresses; between two network namespaces over a veth pair.",
        ns.join(", "),
        info.bulk,
        info.bulk_rate_mbit,
        info.short_rate,
        info.client_addrs
    )
}

/// Renders the report.
pub fn render(
    info: &RunInfo,
    results: &[TrialResult],
    plots: &[(&str, &str)],
    verdict: &[String],
) -> String {
    let mut md = String::new();
    let mach = &info.machine;
    let _ = writeln!(md, "# Collector benchmark — {}\n", info.started);
    let _ = writeln!(
        md,
        "**Machine:** {} ({}), {} cores, {:.1} GiB, Linux {}; {}.\n",
        mach.hostname, mach.cpu, mach.cores, mach.mem_gib, mach.kernel, mach.ss_version
    );
    let _ = writeln!(
        md,
        "**Command:** `{}` (source {})\n",
        info.command_line, info.source
    );
    // The workload, how each trial starts, and what one group of trials is called.
    let (workload, start, unit) = match &info.namespaces {
        Some(axis) => (
            namespaces::report::workload(axis, info),
            namespaces::report::TRIAL_START,
            "P",
        ),
        None => (
            pair_workload(info),
            "per trial, fresh namespaces; the collector starts in the server namespace, then \
             the workload",
            "N",
        ),
    };
    let _ = writeln!(md, "{workload}\n");
    // A pods arena waits longer: the collector first records every socket (`Arena::pods`).
    let settle = if info.namespaces.is_some() {
        format!(
            " plus {} ms per socket of the pods",
            crate::bench::trial::SETTLE_PER_SOCKET_S * 1000.0
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        md,
        "**Method:** {start}; after {} s of warm-up{settle}, a {} s window is measured; then every \
         connection closes, the collector gets SIGTERM, and its archives are graded against the \
         ground truth. Each ({unit}, collector) pair ran {} time(s); cells read \
         `median [min–max]`. The workload generator's CPU is never counted. {}\n",
        info.warmup_s,
        info.window_s,
        info.repeat,
        if info.archives_on_tmpfs {
            "Archives go to a tmpfs per trial: on ext4, creating files right after the previous \
             trial deleted tens of thousands costs every collector alike (a search past recently \
             freed inodes), which is the benchmark's doing, not collection (`--archives-on-disk` \
             measures it)."
        } else {
            "Archives go to the disk (`--archives-on-disk`), file-system costs included."
        }
    );
    let _ = writeln!(md, "**Collectors:**\n");
    for c in &info.collectors {
        let _ = writeln!(md, "- `{}`: `{}`", c.name, c.command);
    }
    md.push('\n');
    if let Some(axis) = &info.namespaces {
        md.push_str(&namespaces::report::table(axis, info.window_s, results));
    }

    // Self-test collectors do no real work: they appear in the coverage tables only.
    let names: Vec<&str> = info
        .collectors
        .iter()
        .filter(|c| c.expectation.is_none())
        .map(|c| c.name.as_str())
        .collect();
    let all_names: Vec<&str> = info.collectors.iter().map(|c| c.name.as_str()).collect();
    let window = info.window_s;

    md.push_str("## Collector cost\n\n");
    md.push_str("CPU is user+system time of the collector's whole process tree; `% core` is CPU seconds per second of window. *System-wide above baseline* is the busy CPU time of the whole machine (every process and the kernel, all cores, from `/proc/stat`) during the window minus the median of the no-collector trials at the same N, per second of window: it includes what eBPF programs cost in other tasks' context, which the collector's own tree never pays (`n/a` without the no-collector trials). Whole-run CPU (from `wait4`) includes start-up and the close of every connection. Peaks are sampled over the collector's whole life.\n\n");
    md.push_str("| N | collector | CPU % core (window) | system-wide above baseline % core | CPU s (window) | CPU s (whole run) | peak RSS MiB | peak procs | peak threads | peak fds | exit |\n");
    md.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for &n in &info.ns {
        let baseline = baseline_system_busy(results, n);
        for name in &names {
            let g = Group::of(results, n, Some(name));
            if g.ok.is_empty() {
                continue;
            }
            let system = g.system_pct(baseline);
            let exits: Vec<String> = g.collected().map(|c| c.stop.status.clone()).collect();
            let mut exits_u = exits.clone();
            exits_u.dedup();
            let _ = writeln!(
                md,
                "| {n} | {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(&g.values(|c| Some(cpu_pct(c, window))), f1),
                cell(&system, f1),
                cell(&g.values(|c| Some(c.cpu_window_s)), f3),
                cell(&g.values(|c| Some(c.cpu_total_s)), f3),
                cell(
                    &g.values(|c| Some(c.peaks.rss_bytes as f64 / 1_048_576.0)),
                    f1
                ),
                cell(&g.values(|c| Some(c.peaks.procs as f64)), int),
                cell(&g.values(|c| Some(c.peaks.threads as f64)), int),
                cell(&g.values(|c| Some(c.peaks.fds as f64)), int),
                exits_u.join(", ")
            );
        }
    }

    md.push_str("\n## Output\n\n");
    md.push_str("Files, bytes on disk and decompressed lines over the collector's whole run; bytes/record divides bytes by snapshot records (Metadata lines excluded) where the archives were graded, else by lines. Files/connection divides files by the connections seen (upstream writes one file per connection and 10-minute rotation period: each file is a row in the ETL's table).\n\n");
    md.push_str("| N | collector | files | files/connection | lines | bytes | bytes/record |\n|---:|---|---:|---:|---:|---:|---:|\n");
    for &n in &info.ns {
        for name in &names {
            let g = Group::of(results, n, Some(name));
            if g.ok.is_empty() {
                continue;
            }
            let _ = writeln!(
                md,
                "| {n} | {name} | {} | {} | {} | {} | {} |",
                cell(&g.values(|c| Some(c.output.files as f64)), int),
                cell(
                    &g.values(|c| {
                        let seen: usize =
                            c.coverage.as_ref()?.per_class.iter().map(|k| k.seen).sum();
                        (seen > 0).then(|| c.output.files as f64 / seen as f64)
                    }),
                    f2
                ),
                cell(&g.values(|c| Some(c.output.lines as f64)), int),
                cell(&g.values(|c| Some(c.output.bytes as f64)), int),
                cell(
                    &g.values(|c| {
                        let per = c.records.unwrap_or(c.output.lines);
                        (per > 0).then(|| c.output.bytes as f64 / per as f64)
                    }),
                    f1
                ),
            );
        }
    }

    md.push_str("\n## Coverage\n\n");
    md.push_str("*Seen*: connections with at least one record carrying `tcp_info`. *Exact*: connections whose last such record has `bytes_acked` and `bytes_received` equal to the server socket's final kernel counters (application bytes + 1 for each FIN), as read by the workload after the close handshake. `n/a`: the collector writes no archives.\n\n");
    md.push_str("| N | collector | seen idle | seen bulk | seen short | exact idle | exact bulk | exact short | unreadable files |\n");
    md.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for &n in &info.ns {
        for name in &all_names {
            let g = Group::of(results, n, Some(name));
            if g.ok.is_empty() {
                continue;
            }
            let mut row = format!("| {n} | {name} |");
            for exact in [false, true] {
                for class in ConnClass::ALL {
                    let v = g.values(|c| {
                        let cc = *c.coverage.as_ref()?.class(class);
                        if exact {
                            cc.exact_frac()
                        } else {
                            cc.seen_frac()
                        }
                    });
                    let _ = write!(row, " {} |", cell(&v, pct));
                }
            }
            let bad = g.values(|c| c.coverage.map(|_| c.bad_archives as f64));
            let _ = writeln!(row, " {} |", cell(&bad, int));
            md.push_str(&row);
        }
    }

    md.push_str("\n## Data path\n\n");
    md.push_str("Bulk throughput (all K flows, delivered bytes) during the window, without and with each collector. The senders are rate-limited, so a ratio below 1 means the collector took CPU the data path needed; `--bulk-rate-mbit 0` makes them unlimited. *Records/s per bulk flow*: archive records with `tcp_info` stamped inside the window, per second, median over the flows (100 at a 10 ms poll interval is every poll).\n\n");
    md.push_str("| N | collector | Mbit/s without | Mbit/s with | with / without | records/s per bulk flow |\n|---:|---|---:|---:|---:|---:|\n");
    for &n in &info.ns {
        let base = Group::of(results, n, None).bulk();
        let base_med = Stat::of(&base).map(|s| s.median);
        for name in &names {
            let group = Group::of(results, n, Some(name));
            let with = group.bulk();
            if with.is_empty() {
                continue;
            }
            let resolution = cell(&group.values(|c| c.bulk_records_per_s), f1);
            let ratio = match (Stat::of(&with), base_med) {
                (Some(w), Some(b)) if b > 0.0 => f3(w.median / b),
                _ => "n/a".into(),
            };
            let _ = writeln!(
                md,
                "| {n} | {name} | {} | {} | {ratio} | {resolution} |",
                cell(&base, f1),
                cell(&with, f1)
            );
        }
    }

    if let Some(reference) = &info.reference {
        let _ = writeln!(md, "\n## Ratios against `{reference}`\n");
        md.push_str("Medians of the same N divided by the reference's medians.\n\n");
        md.push_str("| N | collector | CPU (window) | CPU (whole run) | peak RSS |\n|---:|---|---:|---:|---:|\n");
        for &n in &info.ns {
            let r = Group::of(results, n, Some(reference));
            for name in names.iter().filter(|c| *c != reference) {
                let g = Group::of(results, n, Some(name));
                if g.ok.is_empty() || r.ok.is_empty() {
                    continue;
                }
                let ratio = |f: &dyn Fn(&CollectorResult) -> Option<f64>| match (
                    g.median(f),
                    r.median(f),
                ) {
                    (Some(a), Some(b)) if b > 0.0 => format!("{:.3}", a / b),
                    _ => "n/a".into(),
                };
                let _ = writeln!(
                    md,
                    "| {n} | {name} | {} | {} | {} |",
                    ratio(&|c| Some(c.cpu_window_s)),
                    ratio(&|c| Some(c.cpu_total_s)),
                    ratio(&|c| Some(c.peaks.rss_bytes as f64)),
                );
            }
        }
    }

    md.push_str("\n## Workload check\n\n");
    md.push_str("Per trial: connections in the ground truth, short connections completed in the window and those that lived under 1 ms, and the ground truth's self-check (both ends agree on every byte; final counters = bytes + FIN).\n\n");
    md.push_str("| N | rep | collector | idle | bulk | short | short in window | short < 1 ms | ground truth |\n|---:|---:|---|---:|---:|---:|---:|---:|---|\n");
    for r in results {
        let name = r.collector.as_deref().unwrap_or("(none)");
        match (&r.error, &r.truth) {
            (Some(e), _) => {
                let _ = writeln!(
                    md,
                    "| {} | {} | {name} | | | | | | **failed:** {} |",
                    r.n,
                    r.rep,
                    e.replace('|', "\\|")
                );
            }
            (None, Some(t)) => {
                let check = if t.inconsistent == 0 {
                    "consistent".to_owned()
                } else {
                    format!(
                        "**{} inconsistent**: {}",
                        t.inconsistent,
                        t.first_error.clone().unwrap_or_default()
                    )
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {name} | {} | {} | {} | {} | {} | {check} |",
                    r.n,
                    r.rep,
                    t.per_class[0],
                    t.per_class[1],
                    t.per_class[2],
                    r.short_in_window.unwrap_or(0),
                    t.short_under_1ms
                );
            }
            (None, None) => {}
        }
    }

    let fakes: Vec<&CollectorSpec> = info
        .collectors
        .iter()
        .filter(|c| c.expectation.is_some())
        .collect();
    if !fakes.is_empty() {
        md.push_str("\n## Coverage self-test\n\n");
        md.push_str("Fake collectors write archives from the ground truth with known defects; the coverage measure must score them as shown, or it is broken.\n\n");
        md.push_str("| N | rep | collector | expected | seen | exact | result |\n|---:|---:|---|---|---:|---:|---|\n");
        for r in results {
            let Some(spec) = fakes
                .iter()
                .find(|c| r.collector.as_deref() == Some(c.name.as_str()))
            else {
                continue;
            };
            let (Some(exp), Some(cov)) = (
                spec.expectation,
                r.collector_result.as_ref().and_then(|c| c.coverage),
            ) else {
                continue;
            };
            let all = cov.overall();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.n,
                r.rep,
                spec.name,
                exp.describe(),
                all.seen_frac().map_or_else(|| "n/a".into(), pct),
                all.exact_frac().map_or_else(|| "n/a".into(), pct),
                if exp.problem(&cov).is_none() {
                    "pass"
                } else {
                    "**FAIL**"
                }
            );
        }
    }

    if !plots.is_empty() {
        md.push_str("\n## Plots\n\n");
        for (title, file) in plots {
            let _ = writeln!(md, "![{title}]({file})\n");
        }
    }

    md.push_str("\n## Verdict\n\n");
    if verdict.is_empty() {
        md.push_str("All checks passed.\n");
    } else {
        for v in verdict {
            let _ = writeln!(md, "- {v}");
        }
    }
    md
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bench::collector::{Archives, StopOutcome};
    use crate::bench::coverage::{ClassCoverage, Coverage};
    use crate::bench::measure::Peaks;
    use crate::bench::output::OutputStats;
    use crate::workload::truth::TruthSummary;

    #[test]
    fn stat_min_median_max() {
        assert_eq!(Stat::of(&[]), None);
        let s = Stat::of(&[3.0, 1.0, 2.0, f64::NAN]).unwrap();
        assert_eq!((s.min, s.median, s.max, s.count), (1.0, 2.0, 3.0, 3));
        assert!((Stat::of(&[1.0, 4.0]).unwrap().median - 2.5).abs() < 1e-12);
        assert_eq!(s.show(f1), "2.0 [1.0–3.0]");
        assert_eq!(Stat::of(&[5.0]).unwrap().show(f1), "5.0");
    }

    /// A successful trial: `cpu` CPU seconds in a 10 s window, on top of a machine busy 6 s
    /// (used by the namespace axis's tests too).
    pub fn result(
        n: usize,
        rep: usize,
        collector: Option<&str>,
        cpu: f64,
        rss_mib: u64,
        bulk: f64,
    ) -> TrialResult {
        let cov = Coverage {
            per_class: [
                ClassCoverage {
                    total: 100,
                    seen: 100,
                    gradable: 100,
                    exact: 99,
                },
                ClassCoverage {
                    total: 4,
                    seen: 4,
                    gradable: 4,
                    exact: 4,
                },
                ClassCoverage {
                    total: 50,
                    seen: 25,
                    gradable: 50,
                    exact: 0,
                },
            ],
        };
        TrialResult {
            n,
            namespaces: None,
            rep,
            collector: collector.map(Into::into),
            error: None,
            window_s: 10.0,
            bulk_mbit: Some(bulk),
            short_in_window: Some(500),
            // The machine is busy 6 s of the window plus what the collector adds.
            system_busy_s: Some(6.0 + cpu),
            truth: Some(TruthSummary {
                per_class: [n, 4, 520],
                short_under_1ms: 300,
                inconsistent: 0,
                first_error: None,
            }),
            collector_result: collector.map(|c| CollectorResult {
                cpu_window_s: cpu,
                cpu_total_s: cpu * 2.0,
                peaks: Peaks {
                    rss_bytes: rss_mib * 1_048_576,
                    procs: 1,
                    threads: 3,
                    fds: 10,
                    samples: 5,
                },
                stop: StopOutcome {
                    status: "exit 0".into(),
                    clean: true,
                    stop_s: 0.1,
                    cpu_total_s: cpu * 2.0,
                },
                output: OutputStats {
                    files: 10,
                    bytes: 1000,
                    lines: 60,
                },
                records: (c != "ss").then_some(50),
                bulk_records_per_s: (c != "ss").then_some(95.0),
                coverage: (c != "ss").then_some(cov),
                bad_archives: 0,
                first_archive_error: None,
            }),
        }
    }

    #[test]
    fn renders_every_section_with_ratios() {
        let spec = |name: &str, archives| CollectorSpec {
            name: name.into(),
            command: format!("run {name}"),
            archives,
            expectation: None,
        };
        let info = RunInfo {
            started: "2026-01-01T00:00:00Z".into(),
            command_line: "cargo xtask bench".into(),
            source: "abc1234".into(),
            machine: Machine {
                hostname: "h".into(),
                cpu: "cpu".into(),
                cores: 2,
                mem_gib: 24.0,
                kernel: "6.1".into(),
                ss_version: "ss".into(),
            },
            ns: vec![0, 1000],
            namespaces: None,
            bulk: 4,
            bulk_rate_mbit: 100.0,
            short_rate: 50.0,
            archives_on_tmpfs: true,
            repeat: 3,
            window_s: 10.0,
            warmup_s: 3.0,
            client_addrs: 8,
            collectors: vec![
                spec("daemon", Archives::Expected),
                spec("ss", Archives::None),
                CollectorSpec {
                    expectation: Some(crate::bench::collector::Expectation::TwoThirds),
                    ..spec("fake", Archives::Expected)
                },
            ],
            reference: Some("ss".into()),
        };
        let mut results = Vec::new();
        for rep in 0..3 {
            let k = rep as f64;
            results.push(result(1000, rep, None, 0.0, 0, 400.0 + k));
            results.push(result(
                1000,
                rep,
                Some("daemon"),
                0.1 + k * 0.1,
                10 + rep as u64,
                390.0,
            ));
            results.push(result(1000, rep, Some("ss"), 1.0 + k, 2, 380.0));
        }
        results.push(result(1000, 0, Some("fake"), 0.0, 1, 400.0));
        let mut failed = result(0, 0, Some("daemon"), 0.0, 0, 0.0);
        failed.error = Some("collector exited early (exit 1)".into());
        results.push(failed);
        let md = render(
            &info,
            &results,
            &[("CPU", "cpu_vs_n.svg")],
            &["daemon: coverage too low".into()],
        );
        for needle in [
            "# Collector benchmark — 2026-01-01T00:00:00Z",
            "| 1000 | daemon | 2.0 [1.0–3.0] | 2.0 [1.0–3.0] | 0.200 [0.100–0.300] |",
            "| 1000 | ss | 20.0 [10.0–30.0] |",
            "| 1000 | daemon | 100.0% | 100.0% | 50.0% | 99.0% | 100.0% | 0.0% | 0 |",
            "| 1000 | ss | n/a | n/a | n/a | n/a | n/a | n/a | n/a |",
            "| 1000 | daemon | 401.0 [400.0–402.0] | 390.0 | 0.973 | 95.0 |",
            "| 1000 | ss | 401.0 [400.0–402.0] | 380.0 | 0.948 | n/a |",
            "## Ratios against `ss`",
            "| 1000 | daemon | 0.100 | 0.100 | 5.500 |",
            "| 1000 | daemon | 10 | 0.08 | 60 | 1000 | 20.0 |",
            "| 1000 | ss | 10 | n/a | 60 | 1000 | 16.7 |",
            "**failed:** collector exited early (exit 1)",
            "![CPU](cpu_vs_n.svg)",
            "- daemon: coverage too low",
            "| 1000 | fake | 100.0% | 100.0% | 50.0% |",
            "| 1000 | 0 | fake | ≈67% seen and exact | 83.8% | 66.9% | **FAIL** |",
        ] {
            assert!(md.contains(needle), "missing {needle:?} in\n{md}");
        }
        // The failed trial is not averaged in: N = 0 has no successful daemon row.
        assert!(!md.lines().any(|l| l.starts_with("| 0 | daemon |")), "{md}");
        // The fake is graded but kept out of the cost, output, data-path and ratio tables.
        assert_eq!(
            md.lines()
                .filter(|l| l.starts_with("| 1000 | fake |"))
                .count(),
            1,
            "{md}"
        );
    }
}
