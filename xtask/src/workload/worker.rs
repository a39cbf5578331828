//! One workload process: a shard of idle connections, plus (in worker 0) the bulk flows and the
//! short connections.
//!
//! A process may hold at most `RLIMIT_NOFILE` descriptors (20 000 on the reference machine, and
//! the hard limit cannot be raised without CAP_SYS_RESOURCE), and every connection costs two.
//! So the driver splits the idle connections over several worker processes. A process runs one
//! or more parts ([`WorkerPlan`], e.g. one per pod namespace) and is driven over stdin/stdout
//! with one JSON line per message (see [`serve`]).

use std::io::{BufRead as _, Write as _};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::Endpoints;
use super::bulk::BulkFlows;
use super::idle::IdleShard;
use super::short::ShortRunner;
use super::truth::{ConnTruth, write_truth};

/// One part of a worker process: idle connections, bulk flows and short connections between a
/// server and a client namespace (the same one for a pod).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerPlan {
    /// Part number (on the N axis, worker 0 runs the bulk and short connections; on the
    /// namespace axis, the pod).
    pub index: usize,
    /// Server namespace.
    pub server_ns: String,
    /// Client namespace.
    pub client_ns: String,
    /// Server address.
    pub server_addr: Ipv4Addr,
    /// Client addresses.
    pub client_addrs: Vec<Ipv4Addr>,
    /// Idle connections to hold.
    pub idle: usize,
    /// Bulk flows to run.
    pub bulk: usize,
    /// Per-flow sender rate in bytes/s (0: unlimited).
    pub bulk_rate: u64,
    /// Short connections per second.
    pub short_rate: f64,
    /// First of three server ports (idle, bulk, short).
    pub port_base: u16,
    /// Seed for short-connection sizes.
    pub seed: u64,
}

impl WorkerPlan {
    /// The part, for error messages.
    fn who(&self) -> String {
        format!("part {} (namespace {})", self.index, self.server_ns)
    }

    fn endpoints(&self) -> Endpoints {
        Endpoints {
            server_ns: self.server_ns.clone(),
            client_ns: self.client_ns.clone(),
            server_addr: self.server_addr,
            client_addrs: self.client_addrs.clone(),
        }
    }
}

/// Live progress counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Bytes delivered to bulk receivers so far.
    pub bulk_bytes: u64,
    /// Short connections completed so far.
    pub short_done: u64,
}

impl std::ops::Add for Counters {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            bulk_bytes: self.bulk_bytes + o.bulk_bytes,
            short_done: self.short_done + o.short_done,
        }
    }
}

/// A running worker (in this process).
pub struct Worker {
    idle: IdleShard,
    bulk: BulkFlows,
    short: Option<ShortRunner>,
    bulk_bytes: Arc<AtomicU64>,
    short_done: Arc<AtomicU64>,
}

impl Worker {
    /// Opens the idle shard, then starts bulk flows and short connections; returns when all
    /// idle connections are established.
    pub fn start(plan: &WorkerPlan) -> anyhow::Result<Self> {
        anyhow::ensure!(!plan.client_addrs.is_empty(), "no client addresses");
        let ep = plan.endpoints();
        let bulk_bytes = Arc::new(AtomicU64::new(0));
        let short_done = Arc::new(AtomicU64::new(0));
        let idle = IdleShard::open(&ep, plan.port_base, plan.idle)
            .with_context(|| format!("{}: opening {} idle connections", plan.who(), plan.idle))?;
        let bulk = BulkFlows::start(
            &ep,
            plan.port_base + 1,
            plan.bulk,
            plan.bulk_rate,
            &bulk_bytes,
        )
        .with_context(|| format!("{}: starting bulk flows", plan.who()))?;
        let short = if plan.short_rate > 0.0 {
            Some(
                ShortRunner::start(
                    &ep,
                    plan.port_base + 2,
                    plan.short_rate,
                    plan.seed,
                    &short_done,
                )
                .with_context(|| format!("{}: starting short connections", plan.who()))?,
            )
        } else {
            None
        };
        Ok(Self {
            idle,
            bulk,
            short,
            bulk_bytes,
            short_done,
        })
    }

    /// Idle connections held.
    pub fn idle_count(&self) -> usize {
        self.idle.len()
    }

    /// Progress so far.
    pub fn counters(&self) -> Counters {
        Counters {
            bulk_bytes: self.bulk_bytes.load(Ordering::Relaxed),
            short_done: self.short_done.load(Ordering::Relaxed),
        }
    }

    /// Stops everything, closes every connection, returns the ground truth.
    pub fn stop(self) -> anyhow::Result<Vec<ConnTruth>> {
        let mut out = match self.short {
            Some(s) => s.stop()?,
            None => Vec::new(),
        };
        out.extend(self.bulk.stop());
        out.extend(self.idle.close());
        Ok(out)
    }
}

/// A message from a worker process to its driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum WorkerEvent {
    /// All connections are up.
    Ready {
        /// Idle connections held.
        idle: usize,
    },
    /// Answer to `counters`.
    Counters(Counters),
    /// Answer to `stop`: the ground truth is written.
    Done {
        /// Connections in the ground truth.
        connections: usize,
    },
    /// A fatal error; the worker exits non-zero after it.
    Error {
        /// What went wrong.
        message: String,
    },
}

fn emit(ev: &WorkerEvent) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, ev)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// The `workload-worker` process: starts every part, prints `ready`, then answers `counters`
/// lines on stdin and, on `stop` (or EOF), closes everything and writes the ground truth.
pub fn serve(parts: &[WorkerPlan], truth_path: &Path) -> anyhow::Result<()> {
    let result = serve_inner(parts, truth_path);
    if let Err(e) = &result {
        emit(&WorkerEvent::Error {
            message: format!("{e:#}"),
        })?;
    }
    result
}

fn serve_inner(parts: &[WorkerPlan], truth_path: &Path) -> anyhow::Result<()> {
    super::sock::raise_nofile_limit().context("raising RLIMIT_NOFILE")?;
    let workers = parts
        .iter()
        .map(Worker::start)
        .collect::<anyhow::Result<Vec<_>>>()?;
    emit(&WorkerEvent::Ready {
        idle: workers.iter().map(Worker::idle_count).sum(),
    })?;
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        match line.context("reading commands on stdin")?.trim() {
            "counters" => emit(&WorkerEvent::Counters(
                workers
                    .iter()
                    .map(Worker::counters)
                    .fold(Counters::default(), |a, b| a + b),
            ))?,
            "stop" => break,
            other => anyhow::bail!("unknown worker command {other:?}"),
        }
    }
    let mut truth = Vec::new();
    for w in workers {
        truth.extend(w.stop()?);
    }
    write_truth(truth_path, &truth)?;
    emit(&WorkerEvent::Done {
        connections: truth.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::netns::Topology;
    use crate::workload::testutil::require_root;
    use crate::workload::truth::{ConnClass, TruthSummary};

    /// Real connections in real namespaces: every class shows up, both ends agree on every
    /// byte, and the server's final counters are application bytes plus FIN.
    #[test]
    fn worker_ground_truth_is_exact() {
        if !require_root("worker_ground_truth_is_exact") {
            return;
        }
        let topo = Topology::create(4).unwrap();
        let plan = WorkerPlan {
            index: 0,
            server_ns: topo.server_ns.clone(),
            client_ns: topo.client_ns.clone(),
            server_addr: topo.server_addr,
            client_addrs: topo.client_addrs.clone(),
            idle: 300,
            bulk: 2,
            bulk_rate: 2_000_000,
            short_rate: 200.0,
            port_base: 5000,
            seed: 1,
        };
        let w = Worker::start(&plan).unwrap();
        assert_eq!(w.idle_count(), 300);
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let c = w.counters();
        let truth = w.stop().unwrap();
        let s = TruthSummary::of(&truth);
        assert_eq!(s.inconsistent, 0, "{:?}", s.first_error);
        assert_eq!(s.per_class[ConnClass::Idle as usize], 300);
        assert_eq!(s.per_class[ConnClass::Bulk as usize], 2);
        assert!(s.per_class[ConnClass::Short as usize] >= 100, "{s:?}");
        assert!(
            s.short_under_1ms > 0,
            "no short connection lived under 1 ms: {s:?}"
        );
        // Bulk senders moved data at roughly the configured rate (2 MB/s each, over ≥1.5 s).
        assert!(c.bulk_bytes > 3_000_000, "{c:?}");
        let bulk: Vec<_> = truth
            .iter()
            .filter(|t| t.class == ConnClass::Bulk)
            .collect();
        assert!(bulk[0].server_sent > 1_000_000 && bulk[0].server_received == 0);
        assert!(bulk[1].server_received > 1_000_000 && bulk[1].server_sent == 0);
        // 4-tuples and cookies are unique.
        let mut cookies: Vec<_> = truth.iter().map(|t| t.cookie).collect();
        cookies.sort_unstable();
        cookies.dedup();
        assert_eq!(cookies.len(), truth.len());
        assert!(truth.iter().all(
            |t| t.server.ip() == &topo.server_addr && topo.client_addrs.contains(t.client.ip())
        ));
    }
}
