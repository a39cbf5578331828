//! The sources that feed the pipeline (DESIGN §1). Each runs on its own thread and sends
//! [`Input`]s over one channel; the pipeline thread consumes them in order. Sweep mode runs the
//! sweep source; eBPF mode runs the eBPF source, which also makes the safety-net sweeps; the
//! close source runs in both.

pub mod close;
pub mod ebpf;
pub mod sweep;

use crate::netlink::{Family, Payloads};
use crate::record::Timestamp;

/// One family's part of a sweep.
#[derive(Debug)]
pub struct FamilyDump {
    /// The family dumped.
    pub family: Family,
    /// The payloads, or `None` if the dump failed (the pipeline then keeps the family's state).
    pub payloads: Option<Payloads>,
    /// When the dump completed (shared by all its records, SPEC §3.4).
    pub timestamp: Timestamp,
}

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
