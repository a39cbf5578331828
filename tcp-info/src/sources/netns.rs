//! The namespace watcher (`--netns all` or a list of paths): every [`RESCAN`] it discovers the
//! namespaces in scope, opens the sockets of those that appeared and hands them to the threads
//! that use them, and retires those that went away.
//!
//! The order of the hand-over makes every record land in a namespace the pipeline knows:
//! - **Added**: the pipeline first (its [`Input::NetnsAdded`] carries the tag and the
//!   confirming socket), then the close source and the polling source, which start reading it.
//! - **Removed** (no process and no bind mount left): the polling source drops its socket (and
//!   the eBPF programs stop marking it); the close source reads what its listener still holds,
//!   then sends [`Input::NetnsRemoved`] so that the connections' final records come before they
//!   are closed. A namespace without a listener is removed from the pipeline directly.
//!
//! Holding a socket in a namespace keeps the namespace alive, so "went away" means the node no
//! longer references it; releasing our sockets then lets the kernel free it.

use super::Input;
use crate::metrics::Metrics;
use crate::namespaces::discover::{self, Roots};
use crate::namespaces::{Change, NetnsId, Opened, Opener, Scope};
use crate::record::NetnsTag;
use crate::sockdiag::{DestroyListener, DiagSocket};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Time between two discoveries: a new namespace is recorded within about this long (its
/// connections from before are found by the first sweep of it).
pub const RESCAN: Duration = Duration::from_secs(1);

/// Where the watcher sends what it opens.
#[derive(Debug)]
pub struct Outlets {
    /// The pipeline.
    pub pipeline: Sender<Input>,
    /// The polling source (sweep or eBPF).
    pub poll: Sender<Change<DiagSocket>>,
    /// The close source, when it runs.
    pub close: Option<Sender<Change<DestroyListener>>>,
}

/// What the watcher remembers of a namespace it handed out.
#[derive(Debug, Clone, Copy)]
struct Watched {
    /// Whether the close source has a listener for it.
    listener: bool,
    /// Whether its tag names an owner (a pod UID).
    owned: bool,
    /// The process its tag was read from.
    pid: Option<u32>,
}

/// What one discovery found to do.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Namespaces opened, to hand out.
    pub opened: Vec<Opened>,
    /// Namespaces gone, to retire.
    pub gone: Vec<NetnsId>,
    /// Namespaces whose owner is known now but was not when they were opened (a runtime makes
    /// a pod's namespace before its sandbox process).
    pub retagged: Vec<(NetnsId, Arc<NetnsTag>)>,
}

/// The watcher's state: what is in scope and how to open it.
#[derive(Debug)]
pub struct Watcher {
    scope: Scope,
    roots: Roots,
    opener: Opener,
    /// The namespaces handed out.
    watched: BTreeMap<NetnsId, Watched>,
    /// Namespaces whose opening failed, so that the failure is logged once, not every rescan.
    failing: BTreeSet<NetnsId>,
}

impl Watcher {
    /// A watcher of `scope`, with nothing opened yet.
    pub fn new(scope: Scope, roots: Roots, opener: Opener) -> Self {
        Self {
            scope,
            roots,
            opener,
            watched: BTreeMap::new(),
            failing: BTreeSet::new(),
        }
    }

    /// Opens no destroy listeners from now on (no close source runs).
    pub fn without_listeners(&mut self) {
        self.opener.destroy_rcvbuf = None;
    }

    /// Discovers what is in scope now, opens the namespaces not yet watched, and re-reads the
    /// owner of those opened without one whose process changed; returns what to do (the
    /// caller hands it out: at start-up, before the threads run, or [`Self::run`]).
    pub fn discover(&mut self, metrics: &Metrics) -> Discovery {
        let found = discover::discover(&self.scope, &self.roots);
        let mut discovery = Discovery {
            gone: self
                .watched
                .keys()
                .filter(|n| !found.contains_key(n))
                .copied()
                .collect(),
            ..Discovery::default()
        };
        for (&netns, place) in &found {
            if let Some(watched) = self.watched.get_mut(&netns) {
                if self.opener.attributor.is_some() && !watched.owned && watched.pid != place.pid {
                    let tag = self.opener.tag(netns, place);
                    watched.pid = place.pid;
                    watched.owned = tag.pod_uid.is_some();
                    if watched.owned {
                        discovery.retagged.push((netns, Arc::new(tag)));
                    }
                }
                continue;
            }
            match self.opener.open(netns, place) {
                Ok(o) => {
                    self.failing.remove(&netns);
                    let watched = Watched {
                        listener: o.destroy.is_some(),
                        owned: o.tag.pod_uid.is_some(),
                        pid: place.pid,
                    };
                    self.watched.insert(netns, watched);
                    discovery.opened.push(o);
                }
                Err(e) => {
                    metrics.netns_open_failures.inc();
                    if self.failing.insert(netns) {
                        tracing::warn!(netns, path = %place.path.display(), error = %e, "cannot open sockets in a network namespace; retrying at each discovery");
                    }
                }
            }
        }
        self.failing.retain(|n| found.contains_key(n));
        discovery
    }

    /// Runs until `stop` is cancelled or the pipeline hangs up: every [`RESCAN`], hands out the
    /// namespaces that appeared and retires those that went away.
    pub fn run(mut self, outlets: &Outlets, stop: &CancellationToken, metrics: &Arc<Metrics>) {
        loop {
            // Sleep in short steps so that a stop is seen promptly.
            let wake = std::time::Instant::now() + RESCAN;
            while std::time::Instant::now() < wake {
                if stop.is_cancelled() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let discovery = self.discover(metrics);
            for netns in discovery.gone {
                if !self.retire(netns, outlets) {
                    return;
                }
            }
            for o in discovery.opened {
                if !hand_out(o, outlets) {
                    return;
                }
            }
            for (netns, tag) in discovery.retagged {
                tracing::info!(netns, owner = ?tag, "network namespace owner found");
                if outlets
                    .pipeline
                    .send(Input::NetnsRetagged { netns, tag })
                    .is_err()
                {
                    return;
                }
            }
        }
    }

    /// Retires a namespace that went away; `false` if the pipeline is gone.
    fn retire(&mut self, netns: NetnsId, outlets: &Outlets) -> bool {
        let had_listener = self.watched.remove(&netns).is_some_and(|w| w.listener);
        // The polling source may be gone during shutdown; nothing to do then.
        let _ = outlets.poll.send(Change::Removed(netns));
        match (&outlets.close, had_listener) {
            (Some(close), true) if close.send(Change::Removed(netns)).is_ok() => true,
            _ => outlets.pipeline.send(Input::NetnsRemoved { netns }).is_ok(),
        }
    }
}

/// Hands a namespace's sockets to the threads that use them, pipeline first; `false` if the
/// pipeline is gone.
pub fn hand_out(opened: Opened, outlets: &Outlets) -> bool {
    let Opened {
        netns,
        tag,
        poll,
        lookup,
        destroy,
    } = opened;
    if outlets
        .pipeline
        .send(Input::NetnsAdded { netns, tag, lookup })
        .is_err()
    {
        return false;
    }
    if let (Some(close), Some(listener)) = (&outlets.close, destroy) {
        let _ = close.send(Change::Added(netns, listener));
    }
    let _ = outlets.poll.send(Change::Added(netns, poll));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespaces::attribution::Attributor;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    /// A fake `/proc` and `/run/netns` whose entries link to this process's own namespace.
    fn watcher(root: &Path) -> (Watcher, NetnsId) {
        let own = discover::inode_of(Path::new("/proc/self/ns/net")).unwrap();
        let roots = Roots {
            proc: root.join("proc"),
            run_netns: root.join("run"),
        };
        std::fs::create_dir_all(&roots.proc).unwrap();
        std::fs::create_dir_all(&roots.run_netns).unwrap();
        let opener = Opener {
            own,
            rcvbuf: 1 << 16,
            destroy_rcvbuf: None,
            attributor: Some(Attributor::new(roots.proc.clone(), Vec::new())),
        };
        (Watcher::new(Scope::All, roots, opener), own)
    }

    #[test]
    fn a_namespace_is_opened_retagged_once_its_pod_process_appears_and_retired() {
        let dir = tempfile::tempdir().unwrap();
        let (mut watcher, own) = watcher(dir.path());
        let metrics = Metrics::new("").unwrap();
        // The runtime made the namespace (a bind mount) before the sandbox process.
        let mount = dir.path().join("run/cni-1");
        symlink("/proc/self/ns/net", &mount).unwrap();
        let first = watcher.discover(&metrics);
        assert_eq!(first.opened.len(), 1);
        assert_eq!(first.opened[0].netns, own);
        assert_eq!(first.opened[0].tag.pod_uid, None);
        assert!(first.gone.is_empty() && first.retagged.is_empty());

        // The sandbox process appears, in a pod's cgroup.
        let pid = dir.path().join("proc/4242");
        std::fs::create_dir_all(pid.join("ns")).unwrap();
        symlink("/proc/self/ns/net", pid.join("ns/net")).unwrap();
        std::fs::write(
            pid.join("cgroup"),
            "0::/kubepods.slice/kubepods-besteffort.slice/\
             kubepods-besteffort-pod0f3c6d7e_1b2a_4c5d_8e9f_001122334455.slice/\
             cri-containerd-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.scope\n",
        )
        .unwrap();
        let second = watcher.discover(&metrics);
        assert!(second.opened.is_empty() && second.gone.is_empty());
        assert_eq!(second.retagged.len(), 1);
        let (netns, tag) = &second.retagged[0];
        assert_eq!(*netns, own);
        assert_eq!(
            tag.pod_uid.as_deref(),
            Some("0f3c6d7e-1b2a-4c5d-8e9f-001122334455")
        );
        // Known now: not read again.
        assert!(watcher.discover(&metrics).retagged.is_empty());

        // The process ends and the mount goes: the namespace is gone.
        std::fs::remove_dir_all(&pid).unwrap();
        std::fs::remove_file(&mount).unwrap();
        let last = watcher.discover(&metrics);
        assert_eq!(last.gone, [own]);
        assert!(last.opened.is_empty());
    }

    #[test]
    fn a_namespace_that_cannot_be_opened_is_counted_and_retried() {
        let dir = tempfile::tempdir().unwrap();
        let (mut watcher, _) = watcher(dir.path());
        let metrics = Metrics::new("").unwrap();
        // A namespace file that `setns(CLONE_NEWNET)` refuses (it is not a network namespace):
        // found, but its sockets cannot be opened.
        symlink("/proc/self/ns/uts", dir.path().join("run/bad")).unwrap();
        for attempt in 1..=2 {
            let found = watcher.discover(&metrics);
            assert!(found.opened.is_empty() && found.gone.is_empty());
            assert_eq!(metrics.netns_open_failures.get(), attempt);
        }
    }
}
