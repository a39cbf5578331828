//! [`DiagSocket`]: the long-lived request socket used for dumps and exact queries.

use std::path::Path;

use netlink_sys::Socket;

use super::socket::{self, RECV_BUF_LEN, RcvBuf};
use super::{SockDiagError, netns};

/// Receive-buffer bytes one exact-query reply costs with the full extension set (SPEC §13.4:
/// ≈1.3 KB measured on 6.18), plus a margin so a batch sized from it does not overrun.
pub(crate) const REPLY_BUDGET: usize = 1_400;
/// Upper bound on the requests sent in one `sendmsg`. Older kernels hold a global `sock_diag` mutex
/// for the whole batch (SPEC §13.4), so a batch should stay short even with a huge buffer.
pub const MAX_BATCH: usize = 1_024;
/// A receive buffer that holds a full [`MAX_BATCH`] of replies once the kernel doubles it.
pub const DEFAULT_RCVBUF: usize = 1 << 20;
/// Longest drain of stale data before giving up (a dump of 100k sockets is ≈4k datagrams).
const MAX_DRAIN_DATAGRAMS: usize = 1 << 20;

/// One `NETLINK_SOCK_DIAG` socket, kept open for the daemon's lifetime (SPEC §12 D13), with a sized
/// receive buffer and a reused 64 KiB user buffer.
///
/// Dumps ([`DiagSocket::dump`]) and exact queries ([`DiagSocket::query_exact`]) may share one
/// socket because each call completes (or is drained) before returning; two threads must not
/// share one socket (the methods take `&mut self`).
#[derive(Debug)]
pub struct DiagSocket {
    pub(crate) sock: Socket,
    pub(crate) pid: u32,
    rcvbuf: RcvBuf,
    sndbuf: usize,
    /// Receive buffer, reused across calls.
    pub(crate) buf: Vec<u8>,
    /// Request buffer, reused across calls.
    pub(crate) req: Vec<u8>,
    /// Set when a call failed part-way: unread replies may be queued, or a dump may still be
    /// running in the kernel (which would make the next dump fail with EBUSY).
    pub(crate) dirty: bool,
    batch_override: Option<usize>,
}

impl DiagSocket {
    /// Opens a socket in the calling thread's network namespace, asking for a receive buffer of
    /// `rcvbuf` bytes (see [`RcvBuf`] for what the kernel makes of it).
    pub fn open(rcvbuf: usize) -> Result<Self, SockDiagError> {
        let (sock, pid, rcvbuf) = socket::open(rcvbuf)?;
        let sndbuf = socket::sndbuf(&sock).map_err(SockDiagError::SndBuf)?;
        tracing::debug!(
            pid,
            requested = rcvbuf.requested,
            effective = rcvbuf.effective,
            forced = rcvbuf.forced,
            sndbuf,
            "opened sock_diag socket"
        );
        Ok(Self {
            sock,
            pid,
            rcvbuf,
            sndbuf,
            buf: vec![0; RECV_BUF_LEN],
            req: Vec::new(),
            dirty: false,
            batch_override: None,
        })
    }

    /// Opens a socket inside the network namespace at `netns` (`/run/netns/NAME` or
    /// `/proc/PID/ns/net`); it will see only that namespace's sockets (SPEC §13.5).
    pub fn open_in_netns(netns: &Path, rcvbuf: usize) -> Result<Self, SockDiagError> {
        netns::in_netns(netns, || Self::open(rcvbuf))?
    }

    /// The receive buffer obtained at open time.
    pub fn rcvbuf(&self) -> RcvBuf {
        self.rcvbuf
    }

    /// The socket's netlink port id; kernel replies carry it as `nlmsg_pid`.
    pub fn port_id(&self) -> u32 {
        self.pid
    }

    /// Requests per `sendmsg` in [`DiagSocket::query_exact`]: the override if set, otherwise as
    /// many replies as the receive buffer holds (≈1.4 KB each), capped by the send buffer and
    /// [`MAX_BATCH`].
    pub fn batch_size(&self) -> usize {
        if let Some(n) = self.batch_override {
            return n.max(1);
        }
        let by_rcv = self.rcvbuf.effective / REPLY_BUDGET;
        // netlink_sendmsg refuses a message longer than sk_sndbuf - 32.
        let by_snd = self.sndbuf.saturating_sub(32) / super::request::REQUEST_LEN;
        by_rcv.min(by_snd).clamp(1, MAX_BATCH)
    }

    /// Overrides the batch size (`None` restores the computed one). Larger batches than the
    /// receive buffer holds still work, but lose replies to ENOBUFS and re-send them.
    pub fn set_batch_size(&mut self, batch: Option<usize>) {
        self.batch_override = batch;
    }

    /// If a previous call failed part-way, reads and discards whatever is queued (continuing an
    /// abandoned dump to its end), so the next request starts on an empty socket.
    pub(crate) fn settle(&mut self) {
        if !self.dirty {
            return;
        }
        for _ in 0..MAX_DRAIN_DATAGRAMS {
            match socket::recv(&self.sock, &mut self.buf, libc::MSG_DONTWAIT) {
                Ok(_) => {}
                Err(e) if socket::is_enobufs(&e) => {}
                Err(e) if socket::is_would_block(&e) => {
                    self.dirty = false;
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "draining the sock_diag socket failed");
                    return;
                }
            }
        }
        tracing::warn!(
            "sock_diag socket still had data after draining {MAX_DRAIN_DATAGRAMS} datagrams"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockdiag::testutil::TestNetns;

    #[test]
    fn sockets_can_move_to_worker_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<DiagSocket>();
        assert_send::<crate::sockdiag::DestroyListener>();
    }

    #[test]
    fn rcvbuf_is_sized_and_reported() {
        let Some(ns) = TestNetns::create() else {
            return;
        };
        let small = DiagSocket::open_in_netns(ns.path(), 32 * 1024).unwrap();
        let big = DiagSocket::open_in_netns(ns.path(), 8 << 20).unwrap();
        // As root SO_RCVBUFFORCE is accepted and the kernel doubles the value.
        assert!(small.rcvbuf().forced);
        assert_eq!(small.rcvbuf().effective, 64 * 1024);
        assert_eq!(big.rcvbuf().effective, 16 << 20);
        assert_eq!(small.batch_size(), 64 * 1024 / REPLY_BUDGET);
        assert_eq!(big.batch_size(), MAX_BATCH);
        assert_ne!(small.port_id(), 0);
        assert_ne!(small.port_id(), big.port_id());
    }
}
