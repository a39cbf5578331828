//! The collector's `sock_diag` I/O layer (Linux only): one long-lived request socket for full dumps
//! and batched exact queries ([`DiagSocket`]), a listener for the TCP destroy multicast groups
//! ([`DestroyListener`]), and opening either inside another network namespace ([`in_netns`]).
//!
//! This layer moves bytes: it returns each reply's payload (`inet_diag_msg` + attributes) without
//! interpreting it. Framing is [`crate::wire::netlink`]; decoding is the parser side's job.

mod destroy;
mod diag;
mod dump;
mod exact;
mod netns;
mod payloads;
mod request;
mod socket;
#[cfg(test)]
pub(crate) mod testutil;

use std::io;

use thiserror::Error;

pub use destroy::{
    DestroyListener, RecvOutcome, SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET6_TCP_DESTROY,
};
pub use diag::{DEFAULT_RCVBUF, DiagSocket, MAX_BATCH};
pub use dump::{DumpError, DumpStats};
pub use exact::{Checked, ExactOutcome, ExactReply, ExactStats, ExactTarget};
pub use netns::{NetnsError, in_netns, named_netns_path, pid_netns_path};
pub use payloads::{FamilyDump, Payloads};
pub use request::{Family, NO_COOKIE, STATE_MASK};
pub use socket::RcvBuf;

use crate::wire::netlink::FrameError;

/// Errors of socket set-up, exact queries and the destroy listener. (Dumps have their own
/// [`DumpError`], whose variants map to metric labels.)
#[derive(Debug, Error)]
pub enum SockDiagError {
    /// `socket(AF_NETLINK, SOCK_RAW, NETLINK_SOCK_DIAG)` failed.
    #[error("cannot open a NETLINK_SOCK_DIAG socket: {0}")]
    Open(#[source] io::Error),
    /// Binding the socket failed.
    #[error("cannot bind the sock_diag socket: {0}")]
    Bind(#[source] io::Error),
    /// Neither `SO_RCVBUFFORCE` nor `SO_RCVBUF` could be set, or the result not read back.
    #[error("cannot set the sock_diag receive buffer to {requested} bytes: {source}")]
    RcvBuf {
        /// The size asked for.
        requested: usize,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `SO_SNDBUF` could not be read.
    #[error("cannot read the sock_diag send buffer size: {0}")]
    SndBuf(#[source] io::Error),
    /// Joining a multicast group failed (typically missing `CAP_NET_ADMIN`).
    #[error("cannot join sock_diag multicast group {group} ({name}): {source}")]
    Join {
        /// Group number.
        group: u32,
        /// Its name in `sock_diag.h`.
        name: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `sendmsg` failed.
    #[error("sending sock_diag requests: {0}")]
    Send(#[source] io::Error),
    /// `sendmsg` sent less than the whole batch.
    #[error("short send on the sock_diag socket: {sent} of {len} bytes")]
    ShortSend {
        /// Bytes sent.
        sent: usize,
        /// Bytes in the batch.
        len: usize,
    },
    /// `recv` failed with something other than `EAGAIN`/`ENOBUFS`/`EINTR`.
    #[error("receiving from the sock_diag socket: {0}")]
    Recv(#[source] io::Error),
    /// `poll` failed.
    #[error("waiting on the sock_diag socket: {0}")]
    Poll(#[source] io::Error),
    /// A datagram was larger than the receive buffer.
    #[error("a {len}-byte sock_diag datagram did not fit the {capacity}-byte buffer")]
    Truncated {
        /// The datagram's length.
        len: usize,
        /// The buffer's length.
        capacity: usize,
    },
    /// A datagram did not split into well-formed netlink messages.
    #[error("malformed sock_diag reply: {0}")]
    Frame(#[from] FrameError),
    /// Exact queries got no reply at all for several batches in a row.
    #[error(
        "exact queries made no progress in {rounds} batches; {unanswered} of {total} targets unanswered"
    )]
    NoProgress {
        /// Batches in a row without a reply.
        rounds: usize,
        /// Targets still unanswered.
        unanswered: usize,
        /// Targets in the call.
        total: usize,
    },
    /// Entering the requested network namespace failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
}
