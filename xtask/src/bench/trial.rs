//! One trial: its [`Arena`] (on the N axis, fresh namespaces), optionally a collector, the
//! workload, a measured window, the close of every connection, the collector's stop, and
//! grading of what it wrote.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::collector::{Archives, CollectorSpec, Placeholders, RunningCollector, StopOutcome};
use super::coverage::{ArchiveIndex, Coverage, coverage, records_per_second};
use super::measure::{Peaks, Sampler, clock_ticks_per_sec, sample_tree, system_busy_ticks};
use super::output::{OutputStats, scan_output};
use crate::interrupt::Interrupt;
use crate::workload::driver::{ProcessPlan, Workload, WorkloadParams};
use crate::workload::netns::Topology;
use crate::workload::pods::{PodLoad, Pods};
use crate::workload::truth::{ConnClass, TruthSummary};

/// Timing and sizing shared by every trial of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialSettings {
    /// Bulk flows (K).
    pub bulk: usize,
    /// Per-flow sender rate, bytes/s.
    pub bulk_rate: u64,
    /// Short connections per second (R).
    pub short_rate: f64,
    /// Client addresses.
    pub client_addrs: usize,
    /// Idle connections per worker process.
    pub idle_per_worker: usize,
    /// Seed for short-connection sizes.
    pub seed: u64,
    /// Seconds between starting the collector and starting the workload.
    pub collector_startup_s: f64,
    /// Seconds between the workload being up and the window.
    pub warmup_s: f64,
    /// Length of the measured window.
    pub window_s: f64,
    /// Seconds between closing the workload and stopping the collector.
    pub drain_s: f64,
    /// How long a collector may take to exit after SIGTERM.
    pub stop_timeout_s: f64,
    /// Sampling interval of the process-tree sampler.
    pub sample_interval_ms: u64,
    /// Keep archives and ground truth after grading.
    pub keep_archives: bool,
    /// Write each trial's archives to a tmpfs of its own instead of the disk (see
    /// [`ArchiveTmpfs`]).
    #[serde(default)]
    pub archives_on_tmpfs: bool,
}

/// A tmpfs mounted on a trial's archive directory, unmounted on drop.
///
/// Why: trials create and then delete tens of thousands of archive files back to back, and on
/// ext4 a file created soon after mass deletions pays for a search past the recently freed
/// inodes (`recently_deleted` in `ext4_create`): measured at N = 20 000 in eBPF mode, 16.8 % of a
/// core on disk against 4.3 % on tmpfs, the difference being file creation alone. That cost is
/// the benchmark's own doing and the same for every collector that writes one file per
/// connection, so by default it is kept out of the collection cost.
pub struct ArchiveTmpfs(PathBuf);

impl ArchiveTmpfs {
    /// Mounts a tmpfs on `dir` (in the bench's mount namespace, which `ip netns exec` copies).
    pub fn mount(dir: &Path) -> anyhow::Result<Self> {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=0755", "tcpinfo-bench"])
            .arg(dir)
            .status()
            .context("running mount")?;
        anyhow::ensure!(
            status.success(),
            "mount -t tmpfs on {} failed ({status})",
            dir.display()
        );
        Ok(Self(dir.to_path_buf()))
    }
}

impl Drop for ArchiveTmpfs {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            eprintln!(
                "warning: could not unmount the tmpfs on {}",
                self.0.display()
            );
        }
    }
}

/// What a collector cost and wrote in one trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectorResult {
    /// CPU seconds (user+sys) of the collector's tree during the window.
    pub cpu_window_s: f64,
    /// CPU seconds of the whole run, from `wait4` at exit.
    pub cpu_total_s: f64,
    /// Peak RSS, processes, threads and descriptors over the collector's life.
    pub peaks: Peaks,
    /// How it stopped.
    pub stop: StopOutcome,
    /// Files, bytes and lines written.
    pub output: OutputStats,
    /// Snapshot records in its archives (when graded).
    pub records: Option<u64>,
    /// Coverage (when graded).
    pub coverage: Option<Coverage>,
    /// Archive files that failed to read.
    pub bad_archives: u64,
    /// The first archive read error.
    pub first_archive_error: Option<String>,
    /// Records with `tcp_info` per second of window, median over the bulk flows (when graded):
    /// the time resolution the collector gives busy connections.
    #[serde(default)]
    pub bulk_records_per_s: Option<f64>,
}

/// The outcome of one trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    /// Idle connections (on the namespace axis, over all pods).
    pub n: usize,
    /// Pod namespaces (the namespace axis; `None` on the N axis).
    #[serde(default)]
    pub namespaces: Option<usize>,
    /// Repetition number.
    pub rep: usize,
    /// Collector name (`None`: the no-collector baseline).
    pub collector: Option<String>,
    /// Why the trial failed, if it did.
    pub error: Option<String>,
    /// Measured window length, seconds.
    pub window_s: f64,
    /// Bulk throughput during the window (all flows), Mbit/s.
    pub bulk_mbit: Option<f64>,
    /// Short connections completed during the window.
    pub short_in_window: Option<u64>,
    /// Busy CPU seconds of the whole machine during the window (all CPUs, every process and
    /// the kernel): compared with the no-collector trials, what a collector costs system-wide,
    /// including eBPF programs running in other tasks' context.
    #[serde(default)]
    pub system_busy_s: Option<f64>,
    /// Ground-truth summary.
    pub truth: Option<TruthSummary>,
    /// The collector's figures.
    pub collector_result: Option<CollectorResult>,
}

impl TrialResult {
    /// `P=… N=… rep=… collector`, for progress lines and the verdict.
    pub fn label(&self) -> String {
        let key = TrialKey {
            n: self.n,
            namespaces: self.namespaces,
            rep: self.rep,
        };
        key.label(self.collector.as_deref())
    }

    /// One line on what the collector did, or why the trial failed (`None` for a baseline
    /// trial that went well).
    pub fn outcome(&self) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(format!("failed: {e}"));
        }
        let cr = self.collector_result.as_ref()?;
        Some(format!(
            "cpu {:.3} s in window, peak rss {:.1} MiB, {} files{}",
            cr.cpu_window_s,
            cr.peaks.rss_bytes as f64 / 1_048_576.0,
            cr.output.files,
            cr.coverage.map_or(String::new(), |cv| {
                let all = cv.overall();
                format!(
                    ", seen {}/{}, exact {}/{}",
                    all.seen, all.total, all.exact, all.gradable
                )
            })
        ))
    }
}

/// Which trial: its idle connections, pod namespaces and repetition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrialKey {
    /// Idle connections in all.
    pub n: usize,
    /// Pod namespaces (the namespace axis).
    pub namespaces: Option<usize>,
    /// Repetition number.
    pub rep: usize,
}

impl TrialKey {
    /// `P=… N=… rep=… collector` (`None`: the no-collector baseline).
    pub fn label(&self, collector: Option<&str>) -> String {
        format!(
            "{}N={} rep={} {}",
            self.namespaces.map_or(String::new(), |p| format!("P={p} ")),
            self.n,
            self.rep,
            collector.unwrap_or("(no collector)")
        )
    }
}

/// Where a trial's collector runs and what its workload does.
pub struct Arena {
    /// The network namespace the collector runs in (`None`: the benchmark's own).
    pub collector_ns: Option<String>,
    /// The workload's worker processes.
    pub processes: Vec<ProcessPlan>,
    /// Warm-up added to the run's (seconds): time a collector needs to record the arena's
    /// connections before the window measures its steady state.
    pub settle_s: f64,
    /// Namespaces that live as long as the trial (deleted when it ends).
    _owned: Option<Topology>,
}

impl Arena {
    /// The N axis: fresh server and client namespaces joined by a veth pair, `idle` idle
    /// connections and the run's bulk and short connections; the collector in the server
    /// namespace.
    pub fn pair(s: &TrialSettings, idle: usize) -> anyhow::Result<Self> {
        let topo = Topology::create(s.client_addrs)?;
        let params = WorkloadParams {
            idle,
            bulk: s.bulk,
            bulk_rate: s.bulk_rate,
            short_rate: s.short_rate,
            idle_per_worker: s.idle_per_worker,
            seed: s.seed,
        };
        Ok(Self {
            collector_ns: Some(topo.server_ns.clone()),
            processes: params.processes(&topo),
            settle_s: 0.0,
            _owned: Some(topo),
        })
    }

    /// The namespace axis: existing pods (they outlive the trial) running `load`; the
    /// collector in the benchmark's own namespace, as a node agent runs. Both ends of every
    /// connection are recorded, and recording a socket's first file takes the daemon about
    /// half a millisecond (more once its descriptor budget forces evictions): the window waits
    /// [`SETTLE_PER_SOCKET_S`] per socket more, so that it measures what the namespaces cost
    /// afterwards, not the start-up (20 s at 100 pods of 200 connections).
    pub fn pods(pods: &Pods, load: &PodLoad) -> anyhow::Result<Self> {
        let sockets = 2 * pods.names().len() * load.per_pod;
        Ok(Self {
            collector_ns: None,
            processes: load.processes(pods.names())?,
            settle_s: sockets as f64 * SETTLE_PER_SOCKET_S,
            _owned: None,
        })
    }
}

/// Extra warm-up per socket of a pods arena (see [`Arena::pods`]).
pub const SETTLE_PER_SOCKET_S: f64 = 0.0005;

/// Where a trial runs.
pub struct TrialEnv<'a> {
    /// Shared settings.
    pub settings: &'a TrialSettings,
    /// This executable (workers and helper commands).
    pub exe: &'a Path,
    /// The run's directory; trials get sub-directories.
    pub run_dir: &'a Path,
    /// Ctrl-C.
    pub interrupt: &'a Interrupt,
}

/// Runs one trial in the arena `arena` makes. Errors other than an interrupt are reported in
/// the result.
pub fn run_trial(
    env: &TrialEnv<'_>,
    key: TrialKey,
    collector: Option<&CollectorSpec>,
    arena: impl FnOnce() -> anyhow::Result<Arena>,
) -> Result<TrialResult, crate::interrupt::Interrupted> {
    let mut result = TrialResult {
        n: key.n,
        namespaces: key.namespaces,
        rep: key.rep,
        collector: collector.map(|c| c.name.clone()),
        error: None,
        window_s: 0.0,
        bulk_mbit: None,
        short_in_window: None,
        system_busy_s: None,
        truth: None,
        collector_result: None,
    };
    if let Err(e) = trial_inner(env, collector, arena, &mut result) {
        if e.downcast_ref::<crate::interrupt::Interrupted>().is_some() {
            return Err(crate::interrupt::Interrupted);
        }
        result.error = Some(format!("{e:#}"));
    }
    Ok(result)
}

fn trial_inner(
    env: &TrialEnv<'_>,
    spec: Option<&CollectorSpec>,
    arena: impl FnOnce() -> anyhow::Result<Arena>,
    r: &mut TrialResult,
) -> anyhow::Result<()> {
    let s = env.settings;
    let name = spec.map_or("none", |c| c.name.as_str());
    let pods = r.namespaces.map_or(String::new(), |p| format!("p{p}-"));
    let dir = env
        .run_dir
        .join("trials")
        .join(format!("{pods}n{}-{name}-r{}", r.n, r.rep));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let paths = Placeholders {
        out: dir.join("out"),
        truth: dir.join("truth.jsonl"),
        prefix_file: dir.join("uuid-prefix"),
        xtask: env.exe.to_path_buf(),
    };
    std::fs::create_dir_all(&paths.out)?;
    // Unmounted when the trial ends, archives with it (after grading, or kept on disk).
    let tmpfs = if s.archives_on_tmpfs && spec.is_some() {
        Some(ArchiveTmpfs::mount(&paths.out)?)
    } else {
        None
    };
    std::fs::write(&paths.prefix_file, format!("bench{}", std::process::id()))?;

    let arena = arena()?;
    let mut running = match spec {
        Some(c) => {
            let cmd = c.render(&paths);
            let log = dir.join("collector.log");
            let proc = RunningCollector::spawn(&cmd, arena.collector_ns.as_deref(), &log)?;
            let sampler = Sampler::start(proc.pid(), Duration::from_millis(s.sample_interval_ms));
            Some((proc, sampler))
        }
        None => None,
    };
    env.interrupt.sleep(secs(s.collector_startup_s))?;
    check_alive(&mut running)?;

    let mut wl = Workload::start(env.exe, &arena.processes, &dir, env.interrupt)?;
    env.interrupt.sleep(secs(s.warmup_s + arena.settle_s))?;
    check_alive(&mut running)?;

    let cpu_at = |run: &Option<(RunningCollector, Sampler)>| {
        run.as_ref()
            .map_or(0, |(p, _)| sample_tree(p.pid()).cpu_ticks)
    };
    let c0 = wl.counters(env.interrupt)?;
    let cpu0 = cpu_at(&running);
    let sampler_at = |run: &Option<(RunningCollector, Sampler)>| {
        run.as_ref().map_or(0, |(_, sampler)| sampler.cpu_ns())
    };
    let sampler0 = sampler_at(&running);
    let busy0 = system_busy_ticks();
    let wall0 = unix_ns();
    let t0 = Instant::now();
    env.interrupt.sleep(secs(s.window_s))?;
    let c1 = wl.counters(env.interrupt)?;
    let cpu1 = cpu_at(&running);
    let sampler1 = sampler_at(&running);
    let busy1 = system_busy_ticks();
    let wall1 = unix_ns();
    let window = t0.elapsed().as_secs_f64();
    // The sampler's own reading of /proc is the benchmark's cost, not the collector's.
    let sampling_s = sampler1.saturating_sub(sampler0) as f64 / 1e9;
    r.system_busy_s = busy0.zip(busy1).map(|(a, b)| {
        (b.saturating_sub(a) as f64 / clock_ticks_per_sec() as f64 - sampling_s).max(0.0)
    });
    check_alive(&mut running)?;
    r.window_s = window;
    r.bulk_mbit = Some(c1.bulk_bytes.saturating_sub(c0.bulk_bytes) as f64 * 8.0 / window / 1e6);
    r.short_in_window = Some(c1.short_done.saturating_sub(c0.short_done));

    let truth = wl.stop(&paths.truth, env.interrupt)?;
    r.truth = Some(TruthSummary::of(&truth));

    if let Some((mut proc, sampler)) = running.take() {
        env.interrupt.sleep(secs(s.drain_s))?;
        let stop = proc.stop(secs(s.stop_timeout_s))?;
        let peaks = sampler.finish();
        let output = scan_output(&paths.out);
        let graded = match spec.map(|c| c.archives) {
            Some(Archives::Expected) => true,
            Some(Archives::IfPresent) => output.files > 0,
            _ => false,
        };
        let index = graded.then(|| ArchiveIndex::from_dir(&paths.out));
        r.collector_result = Some(CollectorResult {
            cpu_window_s: cpu1.saturating_sub(cpu0) as f64 / clock_ticks_per_sec() as f64,
            cpu_total_s: stop.cpu_total_s,
            peaks,
            stop,
            output,
            records: index.as_ref().map(|i| i.records),
            coverage: index.as_ref().map(|i| coverage(&truth, i)),
            bad_archives: index.as_ref().map_or(0, |i| i.bad_files),
            bulk_records_per_s: index.as_ref().and_then(|i| {
                let rates = records_per_second(&truth, i, ConnClass::Bulk, (wall0, wall1));
                super::report::Stat::of(&rates).map(|s| s.median)
            }),
            first_archive_error: index.and_then(|i| i.first_error),
        });
    }
    drop(arena);
    if s.keep_archives
        && let Some(mount) = tmpfs
    {
        keep_from_tmpfs(&paths.out, mount)?;
    } else {
        drop(tmpfs);
    }
    if !s.keep_archives {
        remove_bulky(&dir, &paths);
    }
    Ok(())
}

/// Copies the archives out of the tmpfs before it goes, for `--keep-archives`.
fn keep_from_tmpfs(out: &Path, mount: ArchiveTmpfs) -> anyhow::Result<()> {
    let kept = out.with_extension("kept");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(out)
        .arg(&kept)
        .status()
        .context("running cp")?;
    anyhow::ensure!(status.success(), "copying {} failed", out.display());
    drop(mount);
    std::fs::remove_dir(out).ok();
    std::fs::rename(&kept, out).with_context(|| format!("renaming {}", kept.display()))?;
    Ok(())
}

fn check_alive(running: &mut Option<(RunningCollector, Sampler)>) -> anyhow::Result<()> {
    if let Some((p, _)) = running
        && let Some(status) = p.try_exit()?
    {
        anyhow::bail!("collector exited early ({status}); see collector.log");
    }
    Ok(())
}

/// Wall-clock time in Unix nanoseconds (archive records carry wall-clock timestamps).
fn unix_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Removes archives and ground truth (tens of thousands of files per trial at large N).
fn remove_bulky(dir: &Path, paths: &Placeholders) {
    let _ = std::fs::remove_dir_all(&paths.out);
    let _ = std::fs::remove_file(&paths.truth);
    let _ = std::fs::remove_file(&paths.prefix_file);
    // Keep the directory if the collector left a log worth reading.
    let log: PathBuf = dir.join("collector.log");
    if std::fs::metadata(&log).is_ok_and(|m| m.len() == 0) {
        let _ = std::fs::remove_file(&log);
    }
    let _ = std::fs::remove_dir(dir);
}
