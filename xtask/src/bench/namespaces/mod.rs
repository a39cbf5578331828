//! The namespace axis of `cargo xtask bench` (`--namespaces P,…`).
//!
//! For each P: P pod namespaces, each with M idle connections on its own loopback, and A
//! rate-limited bulk flows, one in each of the first A pods (spread over the pods when there are
//! fewer, so that every P carries the same traffic; [`crate::workload::pods`]). The
//! collectors are tcp-info in sweep and in eBPF mode with `--netns all`, run in the benchmark's
//! own namespace as a node agent runs, against the no-collector baseline. Trials, measurement,
//! grading and most of the report are the N axis's: a trial's N is the idle connections of all
//! its pods (P × M), so every P is a group of its own.
//!
//! - this module: the axis's plan and its trial loop; [`report`]: its part of the report.

pub mod report;

use serde::{Deserialize, Serialize};

use super::collector::CollectorSpec;
use super::trial::{Arena, TrialKey};
use super::{BenchArgs, Trials};
use crate::workload::pods::{PodLoad, Pods};

/// What the axis adds to the tcp-info presets' command.
pub const NETNS_ALL: &str = "--netns all";
/// The presets the axis measures, in report order (the first is the ratios' reference).
pub const COLLECTORS: [&str; 2] = ["tcp-info-sweep", "tcp-info-ebpf"];

/// The namespace axis of a run, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Axis {
    /// Pod namespace counts P, increasing.
    pub counts: Vec<usize>,
    /// Idle connections per pod (M).
    pub per_namespace: usize,
    /// Bulk flows, spread over the first `min(P, active)` pods.
    pub active: usize,
    /// Most idle connections one workload process holds.
    pub idle_per_process: usize,
}

impl Axis {
    /// The axis `--namespaces` asks for; `None` without it.
    pub fn from_args(args: &BenchArgs) -> anyhow::Result<Option<Self>> {
        let Some(counts) = &args.namespaces else {
            return Ok(None);
        };
        let mut counts = counts.clone();
        counts.sort_unstable();
        counts.dedup();
        anyhow::ensure!(
            counts.first().is_some_and(|&p| p > 0),
            "--namespaces needs pod counts of at least 1"
        );
        anyhow::ensure!(args.per_namespace > 0, "--per-namespace must be at least 1");
        let axis = Self {
            counts,
            per_namespace: args.per_namespace,
            active: args.active_namespaces,
            idle_per_process: args.idle_per_worker,
        };
        // A pod must fit in one workload process: fail now rather than in every trial.
        axis.load(0).pods_per_process()?;
        Ok(Some(axis))
    }

    /// Idle connections over `p` pods (a trial's N).
    pub fn idle(&self, p: usize) -> usize {
        p * self.per_namespace
    }

    /// Workload processes at `p` pods.
    pub fn processes(&self, p: usize) -> usize {
        self.load(0)
            .pods_per_process()
            .map_or(p, |per| p.div_ceil(per))
    }

    /// What runs in the pods, bulk senders at `bulk_rate` bytes/s.
    pub fn load(&self, bulk_rate: u64) -> PodLoad {
        PodLoad {
            per_pod: self.per_namespace,
            active: self.active,
            bulk_rate,
            idle_per_process: self.idle_per_process,
        }
    }

    /// The collectors: each preset in [`COLLECTORS`] made by `parse` with `--netns all`.
    pub fn collectors(
        parse: impl Fn(&str) -> anyhow::Result<CollectorSpec>,
    ) -> anyhow::Result<Vec<CollectorSpec>> {
        COLLECTORS
            .iter()
            .map(|name| Ok(parse(name)?.with_args(NETNS_ALL)))
            .collect()
    }
}

/// Runs the axis's trials: repetitions outermost (drift spreads over every P and collector),
/// then P, then the slots (`None`: the baseline). The pods are created once per repetition and
/// P and shared by its trials, so creating and destroying namespaces stays out of the windows.
pub(super) fn run(
    axis: &Axis,
    repeat: usize,
    bulk_rate: u64,
    slots: &[Option<&CollectorSpec>],
    trials: &mut Trials<'_>,
) -> anyhow::Result<()> {
    let load = axis.load(bulk_rate);
    for rep in 0..repeat {
        for &p in &axis.counts {
            eprintln!("creating {p} pod namespace(s)");
            let pods = Pods::create(p)?;
            for c in slots {
                let key = TrialKey {
                    n: axis.idle(p),
                    namespaces: Some(p),
                    rep,
                };
                trials.run(key, *c, || Arena::pods(&pods, &load))?;
            }
        }
    }
    Ok(())
}
