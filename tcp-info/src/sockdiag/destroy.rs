//! [`DestroyListener`]: the `sock_diag` multicast groups that announce each TCP socket's
//! destruction with its final `inet_diag_msg` and attributes (the mechanism behind `ss -E`).
//!
//! The kernel sends the notification from a workqueue shortly after the socket is freed, to the
//! listeners of the namespace the socket lived in. It carries the last `tcp_info`, so even a
//! connection that lived under a millisecond gets an exact final record.

use std::path::Path;
use std::time::Duration;

use netlink_sys::Socket;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::payloads::Payloads;
use super::socket::{self, Drained, RECV_BUF_LEN, RcvBuf};
use super::{SockDiagError, netns};
use crate::wire::netlink::{Messages, SOCK_DIAG_BY_FAMILY};

/// `SKNLGRP_INET_TCP_DESTROY` (`include/uapi/linux/sock_diag.h`, `enum sknetlink_groups`).
pub const SKNLGRP_INET_TCP_DESTROY: u32 = 1;
/// `SKNLGRP_INET6_TCP_DESTROY`.
pub const SKNLGRP_INET6_TCP_DESTROY: u32 = 3;
/// Datagrams read per [`DestroyListener::recv`] call at most, so that a stream of closes cannot
/// keep one call (and the caller's stop check) waiting indefinitely.
const MAX_DATAGRAMS_PER_RECV: usize = 1_024;

/// What one [`DestroyListener::recv`] call produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvOutcome {
    /// This many destroy notifications were appended (possibly 0 if only other messages came).
    Received(usize),
    /// Nothing arrived within the timeout.
    TimedOut,
    /// The receive queue overflowed (`ENOBUFS`) and notifications were lost; `received` were
    /// still appended. The caller should count it and reconcile with a full sweep; how many
    /// were lost is known once the queue has been drained ([`DestroyListener::take_lost`]).
    Overrun {
        /// Notifications appended by this call.
        received: usize,
    },
}

/// A `sock_diag` socket subscribed to the TCP destroy groups of its network namespace. Joining
/// the groups needs `CAP_NET_ADMIN` on some kernels; run as root or with that capability.
#[derive(Debug)]
pub struct DestroyListener {
    sock: Socket,
    rcvbuf: RcvBuf,
    buf: Vec<u8>,
    /// The kernel's drop count (`sk_drops`) when it was last read.
    drops: u32,
    /// Since an overrun, until the queue has been read empty: the kernel drops every
    /// notification for a congested listener until then, so the drop count is read after each
    /// call meanwhile (and only then: it costs a system call).
    draining: bool,
    /// Notifications lost and not yet taken.
    lost: u64,
}

impl DestroyListener {
    /// Opens a listener in the calling thread's namespace with a receive buffer of `rcvbuf`
    /// bytes (see [`RcvBuf`]).
    pub fn open(rcvbuf: usize) -> Result<Self, SockDiagError> {
        let (sock, _pid, rcvbuf) = socket::open(rcvbuf)?;
        for (group, name) in [
            (SKNLGRP_INET_TCP_DESTROY, "SKNLGRP_INET_TCP_DESTROY"),
            (SKNLGRP_INET6_TCP_DESTROY, "SKNLGRP_INET6_TCP_DESTROY"),
        ] {
            sock.add_membership(group)
                .map_err(|source| SockDiagError::Join {
                    group,
                    name,
                    source,
                })?;
        }
        tracing::debug!(
            requested = rcvbuf.requested,
            effective = rcvbuf.effective,
            forced = rcvbuf.forced,
            "listening for TCP destroy notifications"
        );
        let drops = socket::drops(&sock).map_err(SockDiagError::Recv)?;
        Ok(Self {
            sock,
            rcvbuf,
            buf: vec![0; RECV_BUF_LEN],
            drops,
            draining: false,
            lost: 0,
        })
    }

    /// Opens a listener inside the network namespace at `netns` (SPEC §13.5).
    pub fn open_in_netns(netns: &Path, rcvbuf: usize) -> Result<Self, SockDiagError> {
        netns::in_netns(netns, || Self::open(rcvbuf))?
    }

    /// The socket, to wait on several listeners at once (`poll`); then [`Self::recv`] with a
    /// zero timeout reads what is queued.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.sock)
    }

    /// The receive buffer obtained at open time.
    pub fn rcvbuf(&self) -> RcvBuf {
        self.rcvbuf
    }

    /// The notifications the kernel dropped since the last call, as far as known: after an
    /// overrun they are counted until the queue has been read empty, exactly (the kernel's
    /// own count), so that the sum over an overrun is the number lost.
    pub fn take_lost(&mut self) -> u64 {
        std::mem::take(&mut self.lost)
    }

    /// Waits up to `timeout` for notifications, then appends the payload of every queued
    /// destroy notification (`inet_diag_msg` + attributes, as in dump replies) to `out`.
    ///
    /// To stop a reading thread promptly, call this in a loop with a short timeout and check a
    /// stop flag between calls. Payloads appended before an error stay valid in `out`.
    pub fn recv(
        &mut self,
        timeout: Duration,
        out: &mut Payloads,
    ) -> Result<RecvOutcome, SockDiagError> {
        if !self.wait_readable(timeout)? {
            return Ok(RecvOutcome::TimedOut);
        }
        let mut received = 0;
        let mut overrun = false;
        let mut emptied = false;
        for _ in 0..MAX_DATAGRAMS_PER_RECV {
            let (len, sender) = match socket::recv_nonblocking(&self.sock, &mut self.buf)? {
                Drained::Datagram { len, sender } => (len, sender),
                Drained::Empty => {
                    emptied = true;
                    break;
                }
                Drained::Overrun => {
                    overrun = true;
                    continue;
                }
            };
            if sender != 0 {
                // Only the kernel (port 0) sends destroy notifications.
                tracing::debug!(sender, "ignoring a datagram from a user-space sender");
                continue;
            }
            for msg in Messages::new(&self.buf[..len]) {
                let msg = msg?;
                if msg.header.kind == SOCK_DIAG_BY_FAMILY {
                    out.push(msg.payload);
                    received += 1;
                }
            }
        }
        if overrun || self.draining {
            self.count_drops();
            self.draining = !emptied;
        }
        Ok(if overrun {
            RecvOutcome::Overrun { received }
        } else {
            RecvOutcome::Received(received)
        })
    }

    /// Adds the drops since the last reading to `lost`. A failed read (not expected: the socket
    /// is open) leaves the count for the next one.
    fn count_drops(&mut self) {
        match socket::drops(&self.sock) {
            Ok(now) => {
                self.lost += u64::from(now.wrapping_sub(self.drops));
                self.drops = now;
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the destroy listener's drops"),
        }
    }

    /// Polls the socket; returns whether it is readable (or has a pending error) in time.
    fn wait_readable(&self, timeout: Duration) -> Result<bool, SockDiagError> {
        // Round up so that a sub-millisecond timeout still sleeps instead of spinning.
        let millis = timeout.as_nanos().div_ceil(1_000_000);
        let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(&self.sock),
            PollFlags::POLLIN,
        )];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) => Err(SockDiagError::Poll(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockdiag::testutil::{self, TestNetns, bytes_acked, diag_cookie};
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::net::Shutdown;
    use std::time::Instant;

    /// Reads notifications until one has arrived for each cookie, or fails after 5 s.
    fn collect(listener: &mut DestroyListener, cookies: &[u64]) -> HashMap<u64, Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = HashMap::new();
        let mut out = Payloads::new();
        while cookies.iter().any(|c| !got.contains_key(c)) {
            assert!(
                Instant::now() < deadline,
                "no destroy notification for some of {cookies:x?}"
            );
            out.clear();
            match listener.recv(Duration::from_millis(50), &mut out).unwrap() {
                RecvOutcome::Overrun { .. } => panic!("unexpected overrun"),
                RecvOutcome::TimedOut | RecvOutcome::Received(_) => {}
            }
            for p in &out {
                got.insert(diag_cookie(p), p.to_vec());
            }
        }
        got
    }

    /// Bytes the client sends before closing.
    const N: usize = 100_000;

    #[test]
    fn final_counters_of_closed_connections() {
        let Some(ns) = TestNetns::create() else {
            return;
        };
        let mut listener = DestroyListener::open_in_netns(ns.path(), 1 << 20).unwrap();
        let mut set = testutil::connections(&ns, "[::1]:0", 1);
        let mut c = set.conns.remove(0);
        let data = vec![7u8; N];
        let reader = std::thread::spawn(move || {
            let mut sink = Vec::new();
            c.server.read_to_end(&mut sink).unwrap();
            assert_eq!(sink.len(), N);
            c.server
        });
        c.client.write_all(&data).unwrap();
        c.client.shutdown(Shutdown::Write).unwrap();
        let server = reader.join().unwrap();
        drop(server);
        let mut rest = Vec::new();
        c.client.read_to_end(&mut rest).unwrap();
        drop(c.client);

        let got = collect(&mut listener, &[c.client_cookie, c.server_cookie]);
        let client = &got[&c.client_cookie];
        assert_eq!(client[0], 10, "AF_INET6");
        assert_eq!(
            testutil::diag_ports(client).1,
            set.listener.local_addr().unwrap().port()
        );
        // snd_una advanced over the SYN, the N data bytes and the FIN.
        assert_eq!(bytes_acked(client), N as u64 + 2);
        // The server sent no data: only its FIN counts (an accepted socket is created with its
        // SYN-ACK already acknowledged).
        assert_eq!(bytes_acked(&got[&c.server_cookie]), 1);
    }

    #[test]
    fn connection_opened_and_closed_within_a_millisecond() {
        let Some(ns) = TestNetns::create() else {
            return;
        };
        let mut listener = DestroyListener::open_in_netns(ns.path(), 1 << 20).unwrap();
        let (cookies, elapsed) = ns.run(|| {
            let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let started = Instant::now();
            let mut client = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
            let (accepted, _) = server.accept().unwrap();
            client.write_all(b"hello").unwrap();
            let cookies = (testutil::so_cookie(&client), testutil::so_cookie(&accepted));
            drop(client);
            drop(accepted);
            (cookies, started.elapsed())
        });
        eprintln!("connection lived {elapsed:?}");
        let got = collect(&mut listener, &[cookies.0, cookies.1]);
        let client = &got[&cookies.0];
        assert_eq!(client[0], 2, "AF_INET");
        // At least SYN + 5 bytes were acknowledged; the FIN may still be in flight when the
        // socket is freed.
        eprintln!("bytes_acked {}", bytes_acked(client));
        assert!(
            (6..=7).contains(&bytes_acked(client)),
            "{}",
            bytes_acked(client)
        );
    }

    #[test]
    fn overrun_is_reported_not_fatal() {
        let Some(ns) = TestNetns::create() else {
            return;
        };
        // The smallest buffer the kernel allows holds only a couple of notifications.
        let mut listener = DestroyListener::open_in_netns(ns.path(), 1).unwrap();
        let set = testutil::connections(&ns, "127.0.0.1:0", 100);
        drop(set);
        // Do not read until every socket is gone (the notifications are generated meanwhile), so
        // that the queue must overflow.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut diag = crate::sockdiag::DiagSocket::open_in_netns(ns.path(), 1 << 20).unwrap();
        let mut out = Payloads::new();
        loop {
            out.clear();
            diag.dump(crate::sockdiag::Family::Inet, &mut out).unwrap();
            if out.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "sockets never closed");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        loop {
            assert!(Instant::now() < deadline, "no overrun reported");
            if let RecvOutcome::Overrun { .. } =
                listener.recv(Duration::from_millis(100), &mut out).unwrap()
            {
                break;
            }
        }
        // Once the burst has been drained, the listener keeps working.
        while listener.recv(Duration::from_millis(50), &mut out).unwrap() != RecvOutcome::TimedOut {
            assert!(Instant::now() < deadline, "notifications never stopped");
        }
        // Every notification (the listener's and both ends' of each connection) was either
        // received or counted as lost, by the kernel's own count.
        let lost = listener.take_lost();
        eprintln!("received {}, lost {lost}", out.len());
        assert!(lost > 0);
        assert_eq!(out.len() as u64 + lost, 201);
        assert_eq!(listener.take_lost(), 0, "taken");
        // (One socket at a time: this buffer holds about one notification.)
        let later = ns.run(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
        let cookie = testutil::so_cookie(&later);
        drop(later);
        collect(&mut listener, &[cookie]);
    }

    #[test]
    fn timeout_returns_promptly() {
        let Some(ns) = TestNetns::create() else {
            return;
        };
        let mut listener = DestroyListener::open_in_netns(ns.path(), 64 * 1024).unwrap();
        let started = Instant::now();
        let mut out = Payloads::new();
        assert_eq!(
            listener.recv(Duration::from_millis(20), &mut out).unwrap(),
            RecvOutcome::TimedOut
        );
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert!(out.is_empty());
    }
}
