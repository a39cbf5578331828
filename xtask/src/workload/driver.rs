//! Runs a whole workload as worker processes and collects their ground truth.
//!
//! Each process runs one or more parts ([`WorkerPlan`]s): the N axis gives every process one
//! part between the server and client namespaces, the namespace axis gives it several pods.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::netns::Topology;
use super::truth::{ConnTruth, read_truth, write_truth};
use super::worker::{Counters, WorkerEvent, WorkerPlan};
use crate::interrupt::Interrupt;

/// Idle connections one worker process holds at most: two descriptors each, and the reference
/// machine's hard `RLIMIT_NOFILE` is 20 000.
pub const DEFAULT_IDLE_PER_WORKER: usize = 8000;
/// First server port; worker `i` uses `PORT_BASE + 10 * i` .. `+ 2`.
pub const PORT_BASE: u16 = 5000;

/// What one worker process runs: its parts, each started in turn.
pub type ProcessPlan = Vec<WorkerPlan>;

/// The workload's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadParams {
    /// Idle connections (N).
    pub idle: usize,
    /// Bulk flows (K).
    pub bulk: usize,
    /// Per-flow sender rate, bytes/s (0: unlimited).
    pub bulk_rate: u64,
    /// Short connections per second (R).
    pub short_rate: f64,
    /// Idle connections per worker process.
    pub idle_per_worker: usize,
    /// Seed for short-connection sizes.
    pub seed: u64,
}

impl WorkloadParams {
    /// One plan per worker process.
    pub fn plans(&self, topo: &Topology) -> Vec<WorkerPlan> {
        let per = self.idle_per_worker.max(1);
        let workers = self.idle.div_ceil(per).max(1);
        (0..workers)
            .map(|i| {
                // Spread idle connections evenly; the first `idle % workers` get one more.
                let idle = self.idle / workers + usize::from(i < self.idle % workers);
                WorkerPlan {
                    index: i,
                    server_ns: topo.server_ns.clone(),
                    client_ns: topo.client_ns.clone(),
                    server_addr: topo.server_addr,
                    client_addrs: topo.client_addrs.clone(),
                    idle,
                    bulk: if i == 0 { self.bulk } else { 0 },
                    bulk_rate: self.bulk_rate,
                    short_rate: if i == 0 { self.short_rate } else { 0.0 },
                    port_base: PORT_BASE + 10 * i as u16,
                    seed: self.seed,
                }
            })
            .collect()
    }

    /// [`Self::plans`], one worker process each.
    pub fn processes(&self, topo: &Topology) -> Vec<ProcessPlan> {
        self.plans(topo).into_iter().map(|p| vec![p]).collect()
    }
}

struct WorkerProc {
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<anyhow::Result<WorkerEvent>>,
    truth: PathBuf,
    index: usize,
}

impl WorkerProc {
    fn next_event(&self, timeout: Duration, interrupt: &Interrupt) -> anyhow::Result<WorkerEvent> {
        let end = Instant::now() + timeout;
        loop {
            interrupt.check()?;
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "workload worker {} did not answer within {timeout:?}",
                    self.index
                );
            }
            match self
                .events
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(Ok(WorkerEvent::Error { message })) => {
                    bail!("workload worker {} failed: {message}", self.index)
                }
                Ok(ev) => return ev,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("workload worker {} exited unexpectedly", self.index)
                }
            }
        }
    }

    fn send(&mut self, cmd: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("worker stdin already closed")?;
        stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .with_context(|| format!("sending {cmd:?} to workload worker {}", self.index))
    }
}

/// A running workload: worker processes holding connections.
pub struct Workload {
    workers: Vec<WorkerProc>,
}

impl Workload {
    /// Spawns one worker (`exe workload-worker`, out of any collector's process tree) per
    /// process plan and waits until every connection is up. Per-worker ground truth goes to
    /// `dir`.
    pub fn start(
        exe: &Path,
        processes: &[ProcessPlan],
        dir: &Path,
        interrupt: &Interrupt,
    ) -> anyhow::Result<Self> {
        let mut wl = Self {
            workers: Vec::new(),
        };
        for (index, plan) in processes.iter().enumerate() {
            let truth = dir.join(format!("truth-worker{index}.jsonl"));
            let mut child = Command::new(exe)
                .arg("workload-worker")
                .arg("--plan")
                .arg(serde_json::to_string(&plan)?)
                .arg("--truth")
                .arg(&truth)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                // Its own process group: a terminal Ctrl-C reaches only the driver, which then
                // tears workers down in order.
                .process_group(0)
                .spawn()
                .with_context(|| format!("spawning {} workload-worker", exe.display()))?;
            let stdout = child.stdout.take().context("worker stdout")?;
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let ev = line.context("reading worker output").and_then(|l| {
                        serde_json::from_str(&l).with_context(|| format!("bad worker line {l:?}"))
                    });
                    if tx.send(ev).is_err() {
                        break;
                    }
                }
            });
            wl.workers.push(WorkerProc {
                stdin: child.stdin.take(),
                child,
                events: rx,
                truth,
                index,
            });
        }
        let idle: usize = processes.iter().flatten().map(|p| p.idle).sum();
        let timeout = Duration::from_secs(60) + Duration::from_millis(5 * idle as u64);
        for w in &wl.workers {
            match w.next_event(timeout, interrupt)? {
                WorkerEvent::Ready { .. } => {}
                other => bail!("workload worker {}: expected ready, got {other:?}", w.index),
            }
        }
        Ok(wl)
    }

    /// Number of worker processes.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Current progress, summed over workers.
    pub fn counters(&mut self, interrupt: &Interrupt) -> anyhow::Result<Counters> {
        for w in &mut self.workers {
            w.send("counters")?;
        }
        let mut sum = Counters::default();
        for w in &self.workers {
            match w.next_event(Duration::from_secs(10), interrupt)? {
                WorkerEvent::Counters(c) => sum = sum + c,
                other => bail!(
                    "workload worker {}: expected counters, got {other:?}",
                    w.index
                ),
            }
        }
        Ok(sum)
    }

    /// Closes every connection, merges the ground truth into `truth_out`, and returns it.
    pub fn stop(
        mut self,
        truth_out: &Path,
        interrupt: &Interrupt,
    ) -> anyhow::Result<Vec<ConnTruth>> {
        for w in &mut self.workers {
            w.send("stop")?;
        }
        let mut all = Vec::new();
        for w in &mut self.workers {
            match w.next_event(Duration::from_secs(120), interrupt)? {
                WorkerEvent::Done { .. } => {}
                other => bail!("workload worker {}: expected done, got {other:?}", w.index),
            }
            w.stdin = None;
            let status = w.child.wait().context("waiting for a workload worker")?;
            if !status.success() {
                bail!("workload worker {} exited with {status}", w.index);
            }
            all.extend(read_truth(&w.truth)?);
            std::fs::remove_file(&w.truth).ok();
        }
        write_truth(truth_out, &all)?;
        Ok(all)
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        for w in &mut self.workers {
            if matches!(w.child.try_wait(), Ok(None)) {
                let _ = w.child.kill();
                let _ = w.child.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_split_idle_connections_and_ports() {
        let topo_like = |p: &WorkloadParams| {
            // Plans only read names and addresses from the topology; build them by hand.
            let t = Topology::for_tests();
            p.plans(&t)
        };
        let p = WorkloadParams {
            idle: 20_000,
            bulk: 4,
            bulk_rate: 1,
            short_rate: 50.0,
            idle_per_worker: 8000,
            seed: 3,
        };
        let plans = topo_like(&p);
        assert_eq!(plans.len(), 3);
        assert_eq!(plans.iter().map(|w| w.idle).sum::<usize>(), 20_000);
        assert!(plans.iter().all(|w| w.idle <= 8000 && w.idle >= 6666));
        assert_eq!((plans[0].bulk, plans[1].bulk), (4, 0));
        assert!(plans[0].short_rate > 0.0 && plans[2].short_rate == 0.0);
        assert_eq!(plans[2].port_base, PORT_BASE + 20);
        let p0 = WorkloadParams { idle: 0, ..p };
        assert_eq!(topo_like(&p0).len(), 1);
        let procs = p.processes(&Topology::for_tests());
        assert!(procs.len() == 3 && procs.iter().all(|pp| pp.len() == 1));
    }
}
