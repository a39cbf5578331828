//! Pod namespaces, for the benchmark's namespace axis: P network namespaces, each holding M
//! idle connections with both ends on its own loopback, and a few rate-limited bulk flows, one
//! in each of the first pods (spread over them when there are fewer pods than flows).
//!
//! Names come from [`netns::unique_base`] (`tib<pid>x<n>p<k>`), so [`netns::cleanup_stale`]
//! removes those of killed runs; an [`Owned`] guard deletes them when the [`Pods`] go.

use std::net::Ipv4Addr;

use super::driver::{PORT_BASE, ProcessPlan};
use super::netns::{self, Owned};
use super::worker::WorkerPlan;

/// P pod namespaces, deleted on drop.
#[derive(Debug)]
pub struct Pods {
    names: Vec<String>,
    _owned: Owned,
}

impl Pods {
    /// Creates `count` namespaces with their loopback up and TIME_WAIT off.
    ///
    /// The pods outlive the trials that use them, and a closed connection's TIME_WAIT socket
    /// would otherwise stay in the kernel's socket table (which every sweep walks) for 60 s,
    /// into the next trial: `net.ipv4.tcp_max_tw_buckets = 0` (per namespace) closes it at once.
    pub fn create(count: usize) -> anyhow::Result<Self> {
        let base = netns::unique_base();
        let mut owned = Owned::default();
        let mut names = Vec::with_capacity(count);
        for k in 0..count {
            let name = format!("{base}p{k}");
            owned.add(&name)?;
            netns::write_sysctl(&name, "net/ipv4/tcp_max_tw_buckets", "0")?;
            names.push(name);
        }
        Ok(Self {
            names,
            _owned: owned,
        })
    }

    /// The namespaces' names, pod 0 first.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// What runs in the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodLoad {
    /// Idle connections per pod (M).
    pub per_pod: usize,
    /// Bulk flows, one in each of the first pods; with fewer pods than flows, spread over
    /// them (all in the only pod at P = 1), so that every P carries the same traffic.
    pub active: usize,
    /// Per-flow sender rate, bytes/s (0: unlimited).
    pub bulk_rate: u64,
    /// Most idle connections one worker process holds (two descriptors each).
    pub idle_per_process: usize,
}

impl PodLoad {
    /// Pods one worker process holds: as many as fit in `idle_per_process` idle connections.
    /// A pod is never split, so `per_pod` must fit in one process.
    pub fn pods_per_process(&self) -> anyhow::Result<usize> {
        anyhow::ensure!(
            self.per_pod <= self.idle_per_process,
            "{} idle connections per namespace do not fit in one workload process \
             (at most {} each: raise --idle-per-worker or lower --per-namespace)",
            self.per_pod,
            self.idle_per_process
        );
        Ok((self.idle_per_process / self.per_pod.max(1)).max(1))
    }

    /// Bulk flows of pod `k` of `pods`: [`Self::active`] spread over the first
    /// `min(pods, active)` pods, the first ones taking the remainder.
    fn flows_of(&self, k: usize, pods: usize) -> usize {
        let spread = pods.min(self.active).max(1);
        if k >= spread {
            return 0;
        }
        self.active / spread + usize::from(k < self.active % spread)
    }

    /// One plan per pod, grouped into worker processes ([`Self::pods_per_process`]).
    pub fn processes(&self, pods: &[String]) -> anyhow::Result<Vec<ProcessPlan>> {
        let per_process = self.pods_per_process()?;
        let plans: Vec<WorkerPlan> = pods
            .iter()
            .enumerate()
            .map(|(k, ns)| WorkerPlan {
                index: k,
                server_ns: ns.clone(),
                client_ns: ns.clone(),
                server_addr: Ipv4Addr::LOCALHOST,
                client_addrs: vec![Ipv4Addr::LOCALHOST],
                idle: self.per_pod,
                bulk: self.flows_of(k, pods.len()),
                bulk_rate: self.bulk_rate,
                short_rate: 0.0,
                // Every pod has a loopback of its own: the same ports everywhere.
                port_base: PORT_BASE,
                seed: 0,
            })
            .collect();
        Ok(plans.chunks(per_process).map(<[_]>::to_vec).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::testutil::require_root;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|k| format!("tib1x0p{k}")).collect()
    }

    #[test]
    fn processes_respect_the_descriptor_budget() {
        let load = PodLoad {
            per_pod: 200,
            active: 3,
            bulk_rate: 1,
            idle_per_process: 8000,
        };
        let procs = load.processes(&names(100)).unwrap();
        // 40 pods (8000 idle connections, 16 000 descriptors) per process.
        assert_eq!(procs.iter().map(Vec::len).collect::<Vec<_>>(), [40, 40, 20]);
        let all: Vec<&WorkerPlan> = procs.iter().flatten().collect();
        assert_eq!(all.iter().map(|p| p.idle).sum::<usize>(), 20_000);
        assert_eq!(all.iter().map(|p| p.bulk).sum::<usize>(), 3);
        assert!(all[..3].iter().all(|p| p.bulk == 1));
        assert!(
            all.iter()
                .all(|p| p.server_ns == p.client_ns && p.short_rate == 0.0)
        );
        assert_eq!(all[57].server_ns, "tib1x0p57");
        // Fewer pods than flows: every flow still runs, spread over the pods.
        let one = load.processes(&names(1)).unwrap();
        assert_eq!((one.len(), one[0][0].bulk), (1, 3));
        let two = load.processes(&names(2)).unwrap();
        assert_eq!(two[0].iter().map(|p| p.bulk).collect::<Vec<_>>(), [2, 1]);
        // A pod larger than a process is refused, not split.
        let big = PodLoad {
            per_pod: 9000,
            ..load
        };
        assert!(big.processes(&names(2)).is_err());
    }

    #[test]
    fn pods_are_created_and_removed() {
        if !require_root("pods_are_created_and_removed") {
            return;
        }
        let pods = Pods::create(3).unwrap();
        let names = pods.names().to_vec();
        let listed = netns::list_namespaces();
        assert!(names.iter().all(|n| listed.contains(n)), "{names:?}");
        assert_eq!(
            netns::read_sysctl(&names[2], "net/ipv4/tcp_max_tw_buckets").unwrap(),
            "0"
        );
        let other = Pods::create(1).unwrap();
        assert!(!names.contains(&other.names()[0]));
        drop(pods);
        let listed = netns::list_namespaces();
        assert!(!names.iter().any(|n| listed.contains(n)));
    }
}
