//! The reproducible workload: idle, bulk and short TCP connections between two network
//! namespaces, with a ground-truth log of every connection.
//!
//! - [`netns`]: the namespaces and veth pair (setup, teardown, stale clean-up); [`pods`]: the
//!   namespace axis's pod namespaces;
//! - [`idle`], [`bulk`], [`short`]: the three connection classes;
//! - [`sock`]: socket helpers and the close protocol that makes final counters exact;
//! - [`truth`]: the ground-truth log;
//! - [`worker`]: one process's share of the workload; [`driver`]: all worker processes.

pub mod bulk;
pub mod driver;
pub mod idle;
pub mod netns;
pub mod pods;
pub mod short;
pub mod sock;
#[cfg(test)]
pub mod testutil;
pub mod truth;
pub mod worker;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::interrupt::Interrupt;

/// Where connections go: the namespaces and addresses of a topology.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// Server namespace name.
    pub server_ns: String,
    /// Client namespace name.
    pub client_ns: String,
    /// Server address.
    pub server_addr: Ipv4Addr,
    /// Client addresses, used round-robin.
    pub client_addrs: Vec<Ipv4Addr>,
}

/// `cargo xtask workload`: run the workload alone and write its ground truth.
#[derive(Debug, clap::Args)]
pub struct WorkloadArgs {
    /// Idle connections held at once (N).
    #[arg(long, default_value_t = 1000)]
    pub idle: usize,
    /// Long-lived bulk flows (K).
    #[arg(long, default_value_t = 4)]
    pub bulk: usize,
    /// Per-flow sender rate in Mbit/s (0: unlimited).
    #[arg(long, default_value_t = 100.0)]
    pub bulk_rate_mbit: f64,
    /// Short connections per second (R).
    #[arg(long, default_value_t = 50.0)]
    pub short_rate: f64,
    /// How long to hold the workload, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Client addresses on the client end of the veth pair.
    #[arg(long, default_value_t = 8)]
    pub client_addrs: usize,
    /// Idle connections per worker process (two descriptors each).
    #[arg(long, default_value_t = driver::DEFAULT_IDLE_PER_WORKER)]
    pub idle_per_worker: usize,
    /// Seed for short-connection sizes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write the ground truth (JSONL).
    #[arg(long, default_value = "truth.jsonl")]
    pub truth: PathBuf,
}

impl WorkloadArgs {
    /// The workload shape these arguments describe.
    pub fn params(&self) -> driver::WorkloadParams {
        driver::WorkloadParams {
            idle: self.idle,
            bulk: self.bulk,
            bulk_rate: mbit_to_bytes(self.bulk_rate_mbit),
            short_rate: self.short_rate,
            idle_per_worker: self.idle_per_worker,
            seed: self.seed,
        }
    }
}

/// Mbit/s to bytes/s.
pub fn mbit_to_bytes(mbit: f64) -> u64 {
    (mbit.max(0.0) * 1_000_000.0 / 8.0) as u64
}

/// Runs the workload alone for `--duration`, writes the ground truth and checks it.
pub fn run_standalone(args: &WorkloadArgs, interrupt: &Interrupt) -> anyhow::Result<()> {
    let removed = netns::cleanup_stale();
    if !removed.is_empty() {
        eprintln!("removed stale namespaces: {}", removed.join(", "));
    }
    let exe = std::env::current_exe().context("locating the xtask executable")?;
    let topo = netns::Topology::create(args.client_addrs)?;
    let dir = tempdir_for("workload")?;
    let params = args.params();
    let started = Instant::now();
    let mut wl = driver::Workload::start(&exe, &params.processes(&topo), &dir, interrupt)?;
    eprintln!(
        "workload up in {:.1} s: {} idle, {} bulk, {} short/s over {} worker process(es), namespaces {} / {}",
        started.elapsed().as_secs_f64(),
        args.idle,
        args.bulk,
        args.short_rate,
        wl.worker_count(),
        topo.server_ns,
        topo.client_ns
    );
    let c0 = wl.counters(interrupt)?;
    let t0 = Instant::now();
    interrupt.sleep(Duration::from_secs_f64(args.duration))?;
    let c1 = wl.counters(interrupt)?;
    let secs = t0.elapsed().as_secs_f64();
    let truth = wl.stop(&args.truth, interrupt)?;
    std::fs::remove_dir_all(&dir).ok();
    let s = truth::TruthSummary::of(&truth);
    println!(
        "{} connections ({} idle, {} bulk, {} short; {} short under 1 ms); bulk {:.1} Mbit/s; ground truth in {}",
        s.total(),
        s.per_class[0],
        s.per_class[1],
        s.per_class[2],
        s.short_under_1ms,
        (c1.bulk_bytes - c0.bulk_bytes) as f64 * 8.0 / secs / 1e6,
        args.truth.display()
    );
    if s.inconsistent > 0 {
        anyhow::bail!(
            "{} connections have inconsistent ground truth; first: {}",
            s.inconsistent,
            s.first_error.unwrap_or_default()
        );
    }
    println!("ground truth consistent: both ends agree and final counters = bytes + FIN");
    Ok(())
}

/// A fresh private directory under the system temp dir.
fn tempdir_for(what: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "xtask-{what}-{}-{}",
        std::process::id(),
        crate::timefmt::now_unix_ns()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
