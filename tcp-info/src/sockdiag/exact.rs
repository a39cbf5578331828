//! Batched exact `inet_diag` queries (SPEC §13): one request per socket, many per `sendmsg`.
//!
//! The kernel answers every request of a batch synchronously inside `sendmsg`, each with one
//! unicast reply sent without blocking. When the receive queue is full the remaining replies are
//! dropped and the next `recv` reports `ENOBUFS` (§13.4). So: send a batch sized to the receive
//! buffer, drain until the queue is empty, and re-send whatever got no reply.

use std::net::SocketAddr;

use super::SockDiagError;
use super::diag::DiagSocket;
use super::request::{self, Family, STATE_MASK, SockId};
use super::socket::{self, Drained};
use crate::wire::inet_diag::{self, InetDiagMsg};
use crate::wire::netlink::{Messages, NLMSG_ERROR, SOCK_DIAG_BY_FAMILY};

/// Rounds in a row without a single reply before giving up.
const MAX_IDLE_ROUNDS: usize = 3;

/// One socket to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExactTarget {
    /// Family of the request: the kernel does an IPv4 lookup for `Inet`, and for `Inet6` when
    /// both addresses are v4-mapped (SPEC §13.2).
    pub family: Family,
    /// Local end (`idiag_src`/`sport`).
    pub local: SocketAddr,
    /// Remote end (`idiag_dst`/`dport`).
    pub remote: SocketAddr,
    /// `idiag_if`: 0 unless the socket is bound to a device; then the value the dump returned.
    pub interface: u32,
    /// The socket cookie to match, or `None` for `INET_DIAG_NOCOOKIE` (no check).
    pub cookie: Option<u64>,
}

impl ExactTarget {
    /// The request that finds the socket a record describes again: its family, tuple and
    /// interface, with its cookie checked by the kernel. `None` for a family other than
    /// AF_INET/AF_INET6.
    pub fn of(idm: &InetDiagMsg<'_>) -> Option<Self> {
        let family = Family::from_af(idm.family())?;
        Some(Self {
            family,
            local: SocketAddr::new(idm.src(), idm.sport()),
            remote: SocketAddr::new(idm.dst(), idm.dport()),
            interface: idm.interface(),
            cookie: Some(idm.cookie()),
        })
    }

    /// What `outcome` says about the socket this target names (SPEC §13.2, §13.8): a reply is
    /// that socket only if its cookie matches (when the target has one) and its state is one
    /// the sweeps list (`idiag_states` 0xF37). A `TIME_WAIT` entry inherits the cookie of the
    /// socket it replaced, so it means the socket is gone; any other cookie or state is a
    /// mismatch, never archived under this target. Only `ENOENT` (no such tuple, or its cookie
    /// differs) means gone; another errno says nothing about the socket.
    pub fn check<'a>(&self, outcome: &'a ExactOutcome) -> Checked<'a> {
        let payload = match outcome {
            ExactOutcome::Gone(libc::ENOENT) => return Checked::Gone,
            ExactOutcome::Gone(errno) => return Checked::Failed(*errno),
            ExactOutcome::Found(payload) => payload.as_slice(),
        };
        let Ok(idm) = InetDiagMsg::new(payload) else {
            return Checked::Mismatch;
        };
        if self.cookie.is_some_and(|c| c != idm.cookie()) {
            return Checked::Mismatch;
        }
        match idm.state() {
            inet_diag::state::TIME_WAIT => Checked::Gone,
            state
                if state != inet_diag::state::LISTEN
                    && 1u32.checked_shl(state.into()).unwrap_or(0) & STATE_MASK != 0 =>
            {
                Checked::Live(payload)
            }
            _ => Checked::Mismatch,
        }
    }
}

/// An exact reply checked against its target ([`ExactTarget::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked<'a> {
    /// The socket exists in a state the sweeps list: this payload is its current record.
    Live(&'a [u8]),
    /// No such socket (`ENOENT`, or only its `TIME_WAIT` entry is left).
    Gone,
    /// The reply is some other socket or state; it must not be archived under this target.
    Mismatch,
    /// The query failed with this errno (not `ENOENT`): nothing is known about the socket.
    Failed(i32),
}

/// The answer for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExactOutcome {
    /// The reply payload: `inet_diag_msg` followed by its attributes, as in dump replies.
    Found(Vec<u8>),
    /// The kernel's errno: `ENOENT` when no socket has that tuple (or its cookie differs),
    /// `EINVAL` for a target whose addresses cannot be written in its family (answered locally).
    Gone(i32),
}

/// A reply, tagged with the index of the target it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExactReply {
    /// Index into the `targets` slice passed to [`DiagSocket::query_exact`].
    pub index: usize,
    /// What the kernel said.
    pub outcome: ExactOutcome,
}

/// Counters of one [`DiagSocket::query_exact`] call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExactStats {
    /// Requests sent, re-sends included.
    pub requests: usize,
    /// `sendmsg` calls.
    pub batches: usize,
    /// `ENOBUFS` reports (each means some replies were lost and re-sent).
    pub overruns: usize,
    /// Requests sent again because their replies were lost (to `ENOBUFS`, or answered with
    /// `EAGAIN`/`ENOBUFS`): `requests` minus the targets sent.
    pub resent: usize,
    /// Messages that matched no outstanding request (ignored).
    pub stray: usize,
}

impl DiagSocket {
    /// Looks up each target with an exact request, sent in batches of
    /// [`DiagSocket::batch_size`], and appends one [`ExactReply`] per target to `out` (in arrival
    /// order, not target order). Targets whose replies were lost to `ENOBUFS` are re-sent.
    ///
    /// Replies are matched to targets by sequence number only. **The caller must check the state
    /// and cookie of a `Found` payload** (SPEC §13.2, §13.8): without a cookie the kernel may
    /// answer with the LISTEN socket that owns the port or with a `TIME_WAIT` entry, and even with
    /// the right cookie a closed connection may be answered by its `TIME_WAIT` entry, which
    /// inherits the cookie.
    ///
    /// On error `out` is restored to its length before the call.
    pub fn query_exact(
        &mut self,
        targets: &[ExactTarget],
        out: &mut Vec<ExactReply>,
    ) -> Result<ExactStats, SockDiagError> {
        self.settle();
        let start = out.len();
        let result = self.query_inner(targets, out);
        if result.is_err() {
            out.truncate(start);
            self.dirty = true;
            self.settle();
        }
        result
    }

    fn query_inner(
        &mut self,
        targets: &[ExactTarget],
        out: &mut Vec<ExactReply>,
    ) -> Result<ExactStats, SockDiagError> {
        let mut stats = ExactStats::default();
        let mut pending = Vec::with_capacity(targets.len());
        for (index, t) in targets.iter().enumerate() {
            match SockId::exact(t.family, t.local, t.remote, t.interface, t.cookie) {
                Some(id) => pending.push((index, id)),
                None => out.push(ExactReply {
                    index,
                    outcome: ExactOutcome::Gone(libc::EINVAL),
                }),
            }
        }
        let mut batch = self.batch_size();
        let mut answered = Vec::new();
        let mut lost = Vec::new();
        let mut idle_rounds = 0;
        while !pending.is_empty() {
            let mut next = 0;
            while next < pending.len() {
                let chunk = &pending[next..pending.len().min(next + batch)];
                next += chunk.len();
                let (got, overrun) = self.round(targets, chunk, &mut answered, out, &mut stats)?;
                for (slot, done) in answered.iter().enumerate() {
                    if !done {
                        lost.push(chunk[slot]);
                    }
                }
                if got == 0 {
                    idle_rounds += 1;
                    if idle_rounds >= MAX_IDLE_ROUNDS {
                        return Err(SockDiagError::NoProgress {
                            rounds: idle_rounds,
                            unanswered: pending.len() - next + lost.len(),
                            total: targets.len(),
                        });
                    }
                } else {
                    idle_rounds = 0;
                }
                if overrun {
                    // The buffer held `got` replies this time: do not send more than that.
                    batch = batch.min(got.max(1));
                }
            }
            stats.resent += lost.len();
            std::mem::swap(&mut pending, &mut lost);
            lost.clear();
        }
        Ok(stats)
    }

    /// Sends one batch and drains its replies. `answered[i]` tells whether `chunk[i]` got a final
    /// reply. Returns the number of final replies and whether `ENOBUFS` was seen.
    fn round(
        &mut self,
        targets: &[ExactTarget],
        chunk: &[(usize, SockId)],
        answered: &mut Vec<bool>,
        out: &mut Vec<ExactReply>,
        stats: &mut ExactStats,
    ) -> Result<(usize, bool), SockDiagError> {
        let base = request::reserve_seqs(chunk.len() as u32);
        self.req.clear();
        for (offset, (index, id)) in chunk.iter().enumerate() {
            let family = targets[*index].family;
            request::encode(
                &mut self.req,
                family,
                false,
                base.wrapping_add(offset as u32),
                id,
            );
        }
        self.dirty = true;
        let sent = self.sock.send(&self.req, 0).map_err(SockDiagError::Send)?;
        if sent != self.req.len() {
            return Err(SockDiagError::ShortSend {
                sent,
                len: self.req.len(),
            });
        }
        stats.requests += chunk.len();
        stats.batches += 1;
        answered.clear();
        answered.resize(chunk.len(), false);
        let mut got = 0;
        let mut overrun = false;
        // Every reply was queued (or dropped) before sendmsg returned, so a non-blocking drain
        // until EAGAIN sees all of them.
        loop {
            let len = match socket::recv_nonblocking(&self.sock, &mut self.buf)? {
                Drained::Datagram { len, .. } => len,
                Drained::Empty => break,
                Drained::Overrun => {
                    overrun = true;
                    stats.overruns += 1;
                    continue;
                }
            };
            for msg in Messages::new(&self.buf[..len]) {
                let msg = msg?;
                let offset = msg.header.seq.wrapping_sub(base) as usize;
                let Some(slot) = answered.get_mut(offset).filter(|done| !**done) else {
                    stats.stray += 1;
                    continue;
                };
                if msg.header.pid != self.pid {
                    stats.stray += 1;
                    continue;
                }
                let outcome = match (msg.header.kind, msg.errno()) {
                    (SOCK_DIAG_BY_FAMILY, _) => ExactOutcome::Found(msg.payload.to_vec()),
                    // The reply could not be queued: lost like an overrun, ask again.
                    (NLMSG_ERROR, Some(libc::EAGAIN | libc::ENOBUFS)) => continue,
                    (NLMSG_ERROR, Some(errno)) if errno != 0 => ExactOutcome::Gone(errno),
                    _ => {
                        stats.stray += 1;
                        continue;
                    }
                };
                *slot = true;
                got += 1;
                out.push(ExactReply {
                    index: chunk[offset].0,
                    outcome,
                });
            }
        }
        self.dirty = false;
        Ok((got, overrun))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockdiag::testutil::{self, TestNetns, diag_cookie, diag_ports};
    use std::net::Shutdown;

    fn target(
        family: Family,
        local: SocketAddr,
        remote: SocketAddr,
        cookie: Option<u64>,
    ) -> ExactTarget {
        ExactTarget {
            family,
            local,
            remote,
            interface: 0,
            cookie,
        }
    }

    fn found(reply: &ExactReply) -> &[u8] {
        match &reply.outcome {
            ExactOutcome::Found(p) => p,
            ExactOutcome::Gone(e) => panic!("target {} gone: errno {e}", reply.index),
        }
    }

    #[test]
    fn exact_lookup_by_tuple_and_cookie() {
        let Some(ns) = TestNetns::create() else {
            return;
        };
        let mut diag = DiagSocket::open_in_netns(ns.path(), 256 * 1024).unwrap();
        let v4 = testutil::connections(&ns, "127.0.0.1:0", 2);
        let v6 = testutil::connections(&ns, "[::1]:0", 1);
        let c4 = &v4.conns[0];
        let c6 = &v6.conns[0];
        let (l4, r4) = (
            c4.client.local_addr().unwrap(),
            c4.client.peer_addr().unwrap(),
        );
        let (l6, r6) = (
            c6.server.local_addr().unwrap(),
            c6.server.peer_addr().unwrap(),
        );
        let targets = [
            target(Family::Inet, l4, r4, Some(c4.client_cookie)),
            target(Family::Inet, l4, r4, None),
            target(Family::Inet, l4, r4, Some(c4.client_cookie ^ 1)),
            target(Family::Inet6, l6, r6, Some(c6.server_cookie)),
            // An IPv4 socket is also found through the v4-mapped AF_INET6 form.
            target(Family::Inet6, l4, r4, Some(c4.client_cookie)),
            // A real IPv6 address cannot be written in an AF_INET request.
            target(Family::Inet, l6, r6, None),
        ];
        let mut out = Vec::new();
        let stats = diag.query_exact(&targets, &mut out).unwrap();
        assert_eq!(out.len(), targets.len());
        assert_eq!(stats.requests, targets.len() - 1);
        assert_eq!(stats.overruns, 0);
        out.sort_by_key(|r| r.index);
        for i in [0, 1, 4] {
            let p = found(&out[i]);
            assert_eq!(p[0], 2, "the reply carries the socket's own family");
            assert_eq!(p[1], 1, "ESTABLISHED");
            assert_eq!(diag_ports(p), (l4.port(), r4.port()));
            assert_eq!(diag_cookie(p), c4.client_cookie);
            assert!(
                testutil::diag_attr(p, 2).is_some(),
                "INET_DIAG_INFO requested"
            );
        }
        assert_eq!(
            out[2].outcome,
            ExactOutcome::Gone(libc::ENOENT),
            "wrong cookie"
        );
        let p = found(&out[3]);
        assert_eq!((p[0], p[1]), (10, 1));
        assert_eq!(diag_ports(p), (l6.port(), r6.port()));
        assert_eq!(diag_cookie(p), c6.server_cookie);
        assert_eq!(out[5].outcome, ExactOutcome::Gone(libc::EINVAL));
    }

    #[test]
    fn closed_connection_is_gone_and_tuple_reuse_is_the_callers_problem() {
        let Some(ns) = TestNetns::create() else {
            return;
        };
        let mut diag = DiagSocket::open_in_netns(ns.path(), 256 * 1024).unwrap();
        let mut set = testutil::connections(&ns, "127.0.0.1:0", 1);
        let c = set.conns.remove(0);
        let client = (
            c.client.local_addr().unwrap(),
            c.client.peer_addr().unwrap(),
        );
        let server = (
            c.server.local_addr().unwrap(),
            c.server.peer_addr().unwrap(),
        );
        // An orderly close on both sides: the server (passive closer) ends in CLOSED, the client
        // in TIME_WAIT, which the established hash still holds.
        c.client.shutdown(Shutdown::Write).unwrap();
        c.server.shutdown(Shutdown::Write).unwrap();
        drop(c.server);
        drop(c.client);
        let targets = [
            target(Family::Inet, server.0, server.1, Some(c.server_cookie)),
            target(Family::Inet, server.0, server.1, None),
            target(Family::Inet, client.0, client.1, Some(c.client_cookie)),
        ];
        // The close handshake runs in softirq context on loopback; give it a moment.
        let mut out = Vec::new();
        for _ in 0..100 {
            out.clear();
            diag.query_exact(&targets, &mut out).unwrap();
            out.sort_by_key(|r| r.index);
            if out[0].outcome == ExactOutcome::Gone(libc::ENOENT) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(
            out[0].outcome,
            ExactOutcome::Gone(libc::ENOENT),
            "closed, with cookie"
        );
        // Without the cookie the server-side tuple finds the LISTEN socket owning the port.
        let p = found(&out[1]);
        assert_eq!(p[1], 10, "LISTEN");
        assert_eq!(diag_cookie(p), set.listener_cookie);
        // The active closer's tuple still resolves to its TIME_WAIT entry (state 6).
        let p = found(&out[2]);
        assert_eq!(p[1], 6, "TIME_WAIT");
    }

    /// ≥1000 queries in one batch into a 32 KiB buffer: most replies are dropped with ENOBUFS,
    /// re-sent in smaller batches, and every target is still answered exactly once.
    #[test]
    fn large_batch_survives_enobufs() {
        let Some(ns) = TestNetns::create() else {
            return;
        };
        let mut diag = DiagSocket::open_in_netns(ns.path(), 32 * 1024).unwrap();
        diag.set_batch_size(Some(2_000));
        let set = testutil::connections(&ns, "127.0.0.1:0", 520);
        let mut targets = Vec::new();
        for c in &set.conns {
            for (s, cookie) in [(&c.client, c.client_cookie), (&c.server, c.server_cookie)] {
                let (l, r) = (s.local_addr().unwrap(), s.peer_addr().unwrap());
                targets.push(target(Family::Inet, l, r, Some(cookie)));
            }
        }
        assert!(targets.len() >= 1_000);
        let mut out = Vec::new();
        let stats = diag.query_exact(&targets, &mut out).unwrap();
        assert!(
            stats.overruns >= 1,
            "the first batch must overrun: {stats:?}"
        );
        assert!(
            stats.requests > targets.len(),
            "lost replies are re-sent: {stats:?}"
        );
        assert_eq!(stats.requests, targets.len() + stats.resent, "{stats:?}");
        assert_eq!(out.len(), targets.len());
        let mut seen = vec![false; targets.len()];
        for r in &out {
            assert!(
                !std::mem::replace(&mut seen[r.index], true),
                "duplicate reply"
            );
            let p = found(r);
            assert_eq!(Some(diag_cookie(p)), targets[r.index].cookie);
            assert_eq!(diag_ports(p).0, targets[r.index].local.port());
        }
        // The socket is left clean: a dump on it works at once.
        let mut dump = crate::sockdiag::Payloads::new();
        diag.dump(Family::Inet, &mut dump).unwrap();
        assert_eq!(dump.len(), targets.len() + 1);
    }

    /// `ExactTarget::of` a dumped record finds the same socket again, and `check` tells a live
    /// socket from a gone one and from a reply about another socket.
    #[test]
    fn target_of_a_dumped_record_and_checked_replies() {
        let Some(ns) = TestNetns::create() else {
            return;
        };
        let mut diag = DiagSocket::open_in_netns(ns.path(), 256 * 1024).unwrap();
        let v4 = testutil::connections(&ns, "127.0.0.1:0", 1);
        let v6 = testutil::connections(&ns, "[::1]:0", 1);
        let mut targets = Vec::new();
        for family in [Family::Inet, Family::Inet6] {
            let mut dump = crate::sockdiag::Payloads::new();
            diag.dump(family, &mut dump).unwrap();
            for p in &dump {
                let idm = InetDiagMsg::new(p).unwrap();
                if idm.state() == inet_diag::state::ESTABLISHED {
                    targets.push(ExactTarget::of(&idm).unwrap());
                }
            }
        }
        assert_eq!(targets.len(), 4, "two connections, both ends");
        let mut out = Vec::new();
        diag.query_exact(&targets, &mut out).unwrap();
        assert_eq!(out.len(), 4);
        for r in &out {
            let t = &targets[r.index];
            match t.check(&r.outcome) {
                Checked::Live(p) => assert_eq!(Some(diag_cookie(p)), t.cookie),
                other => panic!("{t:?}: {other:?}"),
            }
        }
        // A reply carrying another cookie, or a LISTEN socket, is a mismatch; ENOENT is gone.
        let found = |r: &ExactReply| match &r.outcome {
            ExactOutcome::Found(p) => p.clone(),
            ExactOutcome::Gone(e) => panic!("errno {e}"),
        };
        let mut other = found(&out[0]);
        other[44] ^= 1;
        assert_eq!(
            targets[out[0].index].check(&ExactOutcome::Found(other)),
            Checked::Mismatch
        );
        let mut listen = found(&out[0]);
        listen[1] = inet_diag::state::LISTEN;
        assert_eq!(
            targets[out[0].index].check(&ExactOutcome::Found(listen)),
            Checked::Mismatch
        );
        let mut time_wait = found(&out[0]);
        time_wait[1] = inet_diag::state::TIME_WAIT;
        assert_eq!(
            targets[out[0].index].check(&ExactOutcome::Found(time_wait)),
            Checked::Gone
        );
        assert_eq!(
            targets[0].check(&ExactOutcome::Gone(libc::ENOENT)),
            Checked::Gone
        );
        assert_eq!(
            targets[0].check(&ExactOutcome::Gone(libc::ENOMEM)),
            Checked::Failed(libc::ENOMEM)
        );
        drop((v4, v6));
    }

    #[test]
    fn empty_query_is_a_no_op() {
        let Some(ns) = TestNetns::create() else {
            return;
        };
        let mut diag = DiagSocket::open_in_netns(ns.path(), 64 * 1024).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            diag.query_exact(&[], &mut out).unwrap(),
            ExactStats::default()
        );
        assert!(out.is_empty());
    }
}
