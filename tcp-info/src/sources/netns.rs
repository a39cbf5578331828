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
use crate::namespaces::discover::{self, Found, Roots};
use crate::namespaces::{Change, NetnsId, Opened, Opener, Scope};
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

/// The watcher's state: what is in scope and how to open it.
#[derive(Debug)]
pub struct Watcher {
    scope: Scope,
    roots: Roots,
    opener: Opener,
    /// The namespaces handed out, and whether the close source has a listener for each.
    watched: BTreeMap<NetnsId, bool>,
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

    /// Discovers what is in scope now and opens the namespaces not yet watched; returns them
    /// (the caller hands them out: at start-up, before the threads run, or [`Self::rescan`]).
    pub fn open_new(&mut self, metrics: &Metrics) -> (Vec<Opened>, Vec<NetnsId>) {
        let found = discover::discover(&self.scope, &self.roots);
        let gone: Vec<NetnsId> = self
            .watched
            .keys()
            .filter(|n| !found.contains_key(n))
            .copied()
            .collect();
        let mut opened = Vec::new();
        for (&netns, place) in &found {
            if self.watched.contains_key(&netns) {
                continue;
            }
            match self.open(netns, place) {
                Ok(o) => {
                    self.failing.remove(&netns);
                    self.watched.insert(netns, o.destroy.is_some());
                    opened.push(o);
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
        (opened, gone)
    }

    fn open(
        &self,
        netns: NetnsId,
        place: &Found,
    ) -> Result<Opened, crate::sockdiag::SockDiagError> {
        self.opener.open(netns, place)
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
            let (opened, gone) = self.open_new(metrics);
            for netns in gone {
                if !self.retire(netns, outlets) {
                    return;
                }
            }
            for o in opened {
                if !hand_out(o, outlets) {
                    return;
                }
            }
        }
    }

    /// Retires a namespace that went away; `false` if the pipeline is gone.
    fn retire(&mut self, netns: NetnsId, outlets: &Outlets) -> bool {
        let had_listener = self.watched.remove(&netns).unwrap_or(false);
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
