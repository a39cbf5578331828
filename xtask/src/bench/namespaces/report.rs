//! The namespace axis's part of the report: its workload paragraph, how a trial starts, and
//! the table of cost against P with the eBPF target (at most ×2 from the smallest P to the
//! largest). The report's other sections are the N axis's, with N = P × M.

use std::fmt::Write as _;

use super::super::report::{
    Group, RunInfo, Stat, baseline_system_busy, cell, cpu_pct, f1, f2, pct,
};
use super::super::trial::TrialResult;
use super::{Axis, COLLECTORS};

/// How much eBPF mode's system-wide CPU may grow from the smallest P to the largest.
pub const TARGET: f64 = 2.0;

/// How a trial starts, for the report's Method paragraph.
pub const TRIAL_START: &str = "for each repetition and P, the pods are created once and shared \
    by that P's trials (the no-collector baseline, then each collector); per trial the collector \
    starts in the benchmark's own network namespace with `--netns all` (every namespace of the \
    node, the pods among them), then the workload";

/// The Workload paragraph.
pub fn workload(axis: &Axis, info: &RunInfo) -> String {
    let rate = if info.bulk_rate_mbit > 0.0 {
        format!("{} Mbit/s", info.bulk_rate_mbit)
    } else {
        "an unlimited rate".into()
    };
    format!(
        "**Workload:** P ∈ {{{}}} pod network namespaces, each with M = {} idle connections on \
         its own loopback (both ends in the pod: {} sockets per pod, all recorded, with \
         `--exclude-local=false`), and {} bulk flows at {rate}, one in each of the first pods (all \
         in the only pod at P = 1: every P carries the same traffic); \
         N = P × M in the tables. A pod is never split across workload processes, which hold at \
         most {} idle connections ({} descriptors, under the reference machine's hard \
         `RLIMIT_NOFILE` of 20000) each; workload processes: {}. TIME_WAIT is off in the pods \
         (`net.ipv4.tcp_max_tw_buckets = 0`), so no trial leaves sockets behind in the table the \
         next one's sweeps walk.",
        axis.counts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        axis.per_namespace,
        2 * axis.per_namespace,
        axis.active,
        axis.idle_per_process,
        2 * axis.idle_per_process,
        axis.counts
            .iter()
            .map(|&p| format!("{} at P = {p}", axis.processes(p)))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// One mode's trials at one P.
struct Cost<'a> {
    group: Group<'a>,
    /// System-wide CPU above the baseline, % of one core, per trial.
    system: Vec<f64>,
}

impl<'a> Cost<'a> {
    fn of(axis: &Axis, results: &'a [TrialResult], p: usize, collector: &str) -> Self {
        let n = axis.idle(p);
        let group = Group::of(results, n, Some(collector));
        let system = group.system_pct(baseline_system_busy(results, n));
        Self { group, system }
    }

    fn system_median(&self) -> Option<f64> {
        Stat::of(&self.system).map(|s| s.median)
    }
}

/// `a / b` of two medians, if both are there and above zero (a system-wide figure at or
/// below zero is within the baseline's noise, and a ratio of it means nothing).
fn quotient(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// [`quotient`] with two decimals, or `n/a`.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    quotient(a, b).map_or_else(|| "n/a".into(), f2)
}

/// [`quotient`] as a growth factor (`×1.50`), or `n/a`.
fn times(a: Option<f64>, b: Option<f64>) -> String {
    quotient(a, b).map_or_else(|| "n/a".into(), |q| format!("×{}", f2(q)))
}

/// The section: a row per P with both modes' system-wide CPU and their ratios, own-tree CPU,
/// peak RSS and descriptors, and coverage; then eBPF mode's growth against [`TARGET`].
pub fn table(axis: &Axis, window_s: f64, results: &[TrialResult]) -> String {
    let [sweep_name, ebpf_name] = COLLECTORS;
    let first = axis.counts.first().copied().unwrap_or(1);
    let mut md = String::from("## Cost against pod namespaces\n\n");
    let _ = writeln!(
        md,
        "*% core*: the machine's busy CPU above the no-collector trials at the same P (as in \
         *Collector cost*: it includes what eBPF programs cost in other tasks' context), per \
         second of window. *eBPF ÷ sweep* and *eBPF ÷ eBPF at P = {first}* divide medians. Own \
         tree: the daemon's own CPU. Peaks are the daemon's. *Seen*: connections (idle and bulk) \
         with at least one record.\n"
    );
    let _ = writeln!(
        md,
        "| P | N | sweep % core | eBPF % core | eBPF ÷ sweep | eBPF ÷ eBPF at P = {first} | \
         own tree % core, sweep / eBPF | peak RSS MiB, sweep / eBPF | peak fds, sweep / eBPF | \
         seen, sweep / eBPF |"
    );
    md.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let ebpf_first = Cost::of(axis, results, first, ebpf_name).system_median();
    for &p in &axis.counts {
        let sweep = Cost::of(axis, results, p, sweep_name);
        let ebpf = Cost::of(axis, results, p, ebpf_name);
        let both = |f: &dyn Fn(&Cost<'_>) -> String| format!("{} / {}", f(&sweep), f(&ebpf));
        let _ = writeln!(
            md,
            "| {p} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            axis.idle(p),
            cell(&sweep.system, f1),
            cell(&ebpf.system, f1),
            ratio(ebpf.system_median(), sweep.system_median()),
            ratio(ebpf.system_median(), ebpf_first),
            both(&|c| cell(&c.group.values(|r| Some(cpu_pct(r, window_s))), f1)),
            both(&|c| cell(
                &c.group
                    .values(|r| Some(r.peaks.rss_bytes as f64 / 1_048_576.0)),
                f1
            )),
            both(
                &|c| cell(&c.group.values(|r| Some(r.peaks.fds as f64)), |x| {
                    format!("{x:.0}")
                })
            ),
            both(&|c| cell(
                &c.group
                    .values(|r| r.coverage.and_then(|cv| cv.overall().seen_frac())),
                pct
            )),
        );
    }
    md.push('\n');
    md.push_str(&growth(axis, window_s, results));
    md.push('\n');
    md
}

/// From the smallest P to the largest: eBPF mode's growth (system-wide, against [`TARGET`], and
/// in its own tree) and sweep mode's.
fn growth(axis: &Axis, window_s: f64, results: &[TrialResult]) -> String {
    let (Some(&first), Some(&last)) = (axis.counts.first(), axis.counts.last()) else {
        return String::new();
    };
    if first == last {
        return String::new();
    }
    let [sweep_name, ebpf_name] = COLLECTORS;
    let at = |p, name| Cost::of(axis, results, p, name);
    let own = |c: &Cost<'_>| c.group.median(|r| Some(cpu_pct(r, window_s)));
    let (e0, e1) = (at(first, ebpf_name), at(last, ebpf_name));
    let (s0, s1) = (at(first, sweep_name), at(last, sweep_name));
    let verdict = match quotient(e1.system_median(), e0.system_median()) {
        Some(q) if q <= TARGET => "met",
        Some(_) => "**not met**",
        None => "undecided: an eBPF figure is missing or not above the baseline's noise",
    };
    format!(
        "**From P = {first} to P = {last}:** eBPF mode {} system-wide (target at most ×{TARGET}: \
         {verdict}), {} in its own tree; sweep mode {} system-wide, {} in its own tree. A \
         system-wide figure of a few percent of a core is close to the baseline's trial-to-trial \
         noise (compare min and max); the own-tree ratios are the steadier ones.\n",
        times(e1.system_median(), e0.system_median()),
        times(own(&e1), own(&e0)),
        times(s1.system_median(), s0.system_median()),
        times(own(&s1), own(&s0)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::tests::result;

    fn axis() -> Axis {
        Axis {
            counts: vec![1, 10, 100],
            per_namespace: 200,
            active: 3,
            idle_per_process: 8000,
        }
    }

    /// Baseline, sweep and eBPF trials at every P; `ebpf_cpu[i]` CPU seconds (of 10) at the
    /// i-th P, which the fixture also adds to the machine's busy time.
    fn results(ebpf_cpu: [f64; 3]) -> Vec<TrialResult> {
        let a = axis();
        let mut out = Vec::new();
        for (i, &p) in a.counts.iter().enumerate() {
            let n = a.idle(p);
            let sweep_cpu = [0.5, 2.0, 9.0][i];
            for (c, cpu, rss) in [
                (None, 0.0, 0),
                (Some(COLLECTORS[0]), sweep_cpu, 30 + i as u64),
                (Some(COLLECTORS[1]), ebpf_cpu[i], 20),
            ] {
                let mut r = result(n, 0, c, cpu, rss, 300.0);
                r.namespaces = Some(p);
                out.push(r);
            }
        }
        out
    }

    #[test]
    fn table_has_a_row_per_p_with_ratios() {
        let md = table(&axis(), 10.0, &results([0.1, 0.12, 0.15]));
        for needle in [
            "| P | N | sweep % core | eBPF % core | eBPF ÷ sweep | eBPF ÷ eBPF at P = 1 |",
            "| 1 | 200 | 5.0 | 1.0 | 0.20 | 1.00 | 5.0 / 1.0 | 30.0 / 20.0 | 10 / 10 | 83.8% / 83.8% |",
            "| 10 | 2000 | 20.0 | 1.2 | 0.06 | 1.20 | 20.0 / 1.2 |",
            "| 100 | 20000 | 90.0 | 1.5 | 0.02 | 1.50 | 90.0 / 1.5 | 32.0 / 20.0 |",
            "eBPF mode ×1.50 system-wide (target at most ×2: met), ×1.50 in its own tree; \
             sweep mode ×18.00 system-wide",
        ] {
            assert!(md.contains(needle), "missing {needle:?} in\n{md}");
        }
    }

    #[test]
    fn growth_beyond_the_target_is_flagged_and_gaps_are_na() {
        let md = table(&axis(), 10.0, &results([0.1, 0.2, 0.3]));
        assert!(
            md.contains("eBPF mode ×3.00 system-wide (target at most ×2: **not met**)"),
            "{md}"
        );
        // No eBPF trial at P = 1 (e.g. the object was not built): nothing to divide by.
        let mut rs = results([0.1, 0.2, 0.3]);
        rs.retain(|r| !(r.namespaces == Some(1) && r.collector.as_deref() == Some(COLLECTORS[1])));
        let md = table(&axis(), 10.0, &rs);
        assert!(md.contains("| 1 | 200 | 5.0 | n/a | n/a | n/a |"), "{md}");
        assert!(
            md.contains("| 100 | 20000 | 90.0 | 3.0 | 0.03 | n/a |"),
            "{md}"
        );
        assert!(md.contains("undecided"), "{md}");
        // An eBPF figure below the baseline (noise) gives no ratio and no verdict either.
        let md = table(&axis(), 10.0, &results([0.1, 0.2, -0.05]));
        assert!(
            md.contains("| 100 | 20000 | 90.0 | -0.5 | n/a | n/a |"),
            "{md}"
        );
        assert!(
            md.contains("eBPF mode n/a system-wide (target at most ×2: undecided"),
            "{md}"
        );
    }

    #[test]
    fn workload_names_processes_per_p() {
        let mut info_axis = axis();
        info_axis.counts = vec![1, 100];
        let text = workload(&info_axis, &test_info());
        assert!(
            text.contains("P ∈ {1, 100}")
                && text.contains("workload processes: 1 at P = 1, 3 at P = 100."),
            "{text}"
        );
        assert!(
            text.contains("M = 200") && text.contains("at 100 Mbit/s"),
            "{text}"
        );
    }

    fn test_info() -> RunInfo {
        RunInfo {
            started: String::new(),
            command_line: String::new(),
            source: String::new(),
            machine: crate::bench::report::Machine::default(),
            ns: vec![200, 20_000],
            namespaces: Some(axis()),
            bulk: 4,
            bulk_rate_mbit: 100.0,
            short_rate: 50.0,
            repeat: 1,
            window_s: 10.0,
            warmup_s: 3.0,
            client_addrs: 8,
            collectors: Vec::new(),
            reference: None,
            archives_on_tmpfs: true,
        }
    }
}
