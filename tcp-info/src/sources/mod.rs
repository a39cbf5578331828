//! The sources that feed the pipeline (DESIGN §1). Each runs on its own thread (the eBPF source
//! also has a reader task for its ring buffer on the daemon's runtime) and sends
//! [`Input`]s over one channel; the pipeline thread consumes them in order. Sweep mode runs the
//! sweep source; eBPF mode runs the eBPF source, which also makes the safety-net sweeps; the
//! close source runs in both.

pub mod close;
pub mod ebpf;
pub mod netns;
mod safety;
pub mod sweep;

use crate::namespaces::{NetnsId, NetnsSweep};
use crate::record::{NetnsTag, Timestamp};
use crate::sockdiag::{DiagSocket, Payloads};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// What a source hands the pipeline.
#[derive(Debug)]
pub enum Input {
    /// A full sweep of some namespaces (every watched one, or one just added): for each,
    /// AF_INET6 then AF_INET. Only the connections of these namespaces can be found missing.
    Sweep(Vec<NetnsSweep>),
    /// Destroy notifications of one namespace: each payload is a socket's final state.
    Destroyed {
        /// The namespace whose listener received them.
        netns: NetnsId,
        /// The payloads (`inet_diag_msg` + attributes).
        payloads: Payloads,
        /// When they were received.
        timestamp: Timestamp,
    },
    /// Exact-query replies for sockets the eBPF programs marked (each checked against its
    /// target: the socket's current record), by namespace.
    Refreshed {
        /// The payloads (`inet_diag_msg` + attributes) of each namespace queried.
        batches: Vec<(NetnsId, Payloads)>,
        /// When the replies were received.
        timestamp: Timestamp,
    },
    /// The namespace watcher opened a new namespace: its records are accepted from now on.
    NetnsAdded {
        /// The namespace.
        netns: NetnsId,
        /// Its tag (inode and owner).
        tag: Arc<NetnsTag>,
        /// The socket for the pipeline's confirming queries in it.
        lookup: DiagSocket,
    },
    /// The owner of a namespace was found after it was added: connections opened from now on
    /// carry this tag.
    NetnsRetagged {
        /// The namespace.
        netns: NetnsId,
        /// Its new tag.
        tag: Arc<NetnsTag>,
    },
    /// A namespace went away (no process and no bind mount left; the close source drained
    /// its last destroy notifications first): its connections end.
    NetnsRemoved {
        /// The namespace.
        netns: NetnsId,
    },
    /// The polling source ran its `-reps` cycles: shut down cleanly.
    Finished,
}

/// The clock of a polling source (sweep or eBPF): a ticker whose missed ticks are dropped (a
/// slow cycle is followed at once by the next, as upstream's), and the `-reps` count.
#[derive(Debug)]
pub(crate) struct Ticker {
    interval: Duration,
    next: Instant,
    reps: u64,
    cycles: u64,
}

impl Ticker {
    /// A ticker starting now; `reps` cycles (0: unlimited).
    pub(crate) fn new(interval: Duration, reps: u64) -> Self {
        Self {
            interval,
            next: Instant::now(),
            reps,
            cycles: 0,
        }
    }

    /// Counts one finished cycle. After the `-reps`-th it sends [`Input::Finished`] and
    /// returns `true`: the source stops.
    pub(crate) fn cycle_done(&mut self, tx: &Sender<Input>) -> bool {
        self.cycles += 1;
        if self.reps > 0 && self.cycles >= self.reps {
            // The receiver may already be gone during shutdown; nothing else to do then.
            let _ = tx.send(Input::Finished);
            return true;
        }
        false
    }

    /// Sleeps until the next tick, or returns at once after a slow cycle.
    pub(crate) fn wait(&mut self) {
        self.next += self.interval;
        let now = Instant::now();
        if self.next <= now {
            self.next = now;
        } else {
            std::thread::sleep(self.next - now);
        }
    }
}
