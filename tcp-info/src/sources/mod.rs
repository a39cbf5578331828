//! The sources that feed the pipeline (DESIGN §1). Each runs on its own thread (the eBPF source
//! also has a reader task for its ring buffer on the daemon's runtime) and sends
//! [`Input`]s over one channel; the pipeline thread consumes them in order. Sweep mode runs the
//! sweep source; eBPF mode runs the eBPF source, which also makes the safety-net sweeps; the
//! close source runs in both.

pub mod close;
pub mod ebpf;
pub mod sweep;

use crate::record::Timestamp;
use crate::sockdiag::{FamilyDump, Payloads};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// What a source hands the pipeline.
#[derive(Debug)]
pub enum Input {
    /// A full sweep: AF_INET6 then AF_INET.
    Sweep(Vec<FamilyDump>),
    /// Destroy notifications: each payload is a socket's final state.
    Destroyed {
        /// The payloads (`inet_diag_msg` + attributes).
        payloads: Payloads,
        /// When they were received.
        timestamp: Timestamp,
    },
    /// Exact-query replies for sockets the eBPF programs marked (each checked against its
    /// target: the socket's current record).
    Refreshed {
        /// The payloads (`inet_diag_msg` + attributes).
        payloads: Payloads,
        /// When the replies were received.
        timestamp: Timestamp,
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
