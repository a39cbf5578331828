//! Full `SOCK_DIAG_BY_FAMILY` dumps (SPEC §3.1–§3.5 with the D12/D13 fixes).

use std::io;

use thiserror::Error;

use super::diag::DiagSocket;
use super::payloads::Payloads;
use super::request::{self, Family, SockId};
use super::socket;
use crate::wire::netlink::{
    FrameError, Messages, NLM_F_DUMP_INTR, NLM_F_MULTI, NLMSG_DONE, NLMSG_ERROR,
    SOCK_DIAG_BY_FAMILY,
};

/// What one successful dump read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpStats {
    /// `SOCK_DIAG_BY_FAMILY` messages whose payloads were appended.
    pub messages: usize,
    /// Datagrams received.
    pub datagrams: usize,
    /// Bytes received.
    pub bytes: usize,
    /// Messages of another type (neither data, `NLMSG_DONE` nor `NLMSG_ERROR`) that were skipped.
    pub skipped: usize,
}

/// Why a dump failed. A failed dump yields nothing: the caller keeps its previous state for the
/// family (SPEC §12 D12) and counts the error under [`DumpError::kind`].
#[derive(Debug, Error)]
pub enum DumpError {
    /// Sending the request failed.
    #[error("sending the {family:?} dump request: {source}")]
    Send {
        /// Family being dumped.
        family: Family,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A reply carried another request's sequence number.
    #[error("{family:?} dump: reply has sequence number {got}, expected {expected}")]
    WrongSeq {
        /// Family being dumped.
        family: Family,
        /// The request's sequence number.
        expected: u32,
        /// The reply's.
        got: u32,
    },
    /// A reply was addressed to another port id.
    #[error("{family:?} dump: reply has port id {got}, expected {expected}")]
    WrongPid {
        /// Family being dumped.
        family: Family,
        /// This socket's port id.
        expected: u32,
        /// The reply's.
        got: u32,
    },
    /// The kernel answered with `NLMSG_ERROR` and a non-zero errno.
    #[error("{family:?} dump: kernel returned NLMSG_ERROR: {}", io::Error::from_raw_os_error(*errno))]
    NlmsgError {
        /// Family being dumped.
        family: Family,
        /// The (positive) errno.
        errno: i32,
    },
    /// An `NLMSG_ERROR` too short to carry an errno.
    #[error("{family:?} dump: NLMSG_ERROR message with a {len}-byte payload, 4 needed")]
    ShortError {
        /// Family being dumped.
        family: Family,
        /// The payload length.
        len: usize,
    },
    /// `NLMSG_DONE` carried a negative status: the kernel aborted the dump part-way.
    #[error("{family:?} dump: kernel ended the dump with an error: {}", io::Error::from_raw_os_error(*errno))]
    DoneError {
        /// Family being dumped.
        family: Family,
        /// The (positive) errno.
        errno: i32,
    },
    /// A message had `NLM_F_DUMP_INTR` set: the socket tables changed during the dump and its
    /// content is inconsistent.
    #[error("{family:?} dump interrupted by a concurrent change (NLM_F_DUMP_INTR)")]
    Interrupted {
        /// Family being dumped.
        family: Family,
    },
    /// A datagram did not split into well-formed netlink messages.
    #[error("{family:?} dump: malformed reply: {source}")]
    Frame {
        /// Family being dumped.
        family: Family,
        /// The framing error.
        #[source]
        source: FrameError,
    },
    /// A datagram was larger than the receive buffer.
    #[error("{family:?} dump: a {len}-byte datagram did not fit the {capacity}-byte buffer")]
    Truncated {
        /// Family being dumped.
        family: Family,
        /// The datagram's length.
        len: usize,
        /// The buffer's length.
        capacity: usize,
    },
    /// The receive queue overflowed (`ENOBUFS`) and replies were lost.
    #[error("{family:?} dump: receive queue overrun (ENOBUFS)")]
    Overrun {
        /// Family being dumped.
        family: Family,
    },
    /// Any other receive error.
    #[error("{family:?} dump: receiving: {source}")]
    Recv {
        /// Family being dumped.
        family: Family,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl DumpError {
    /// The `type` label under which `tcpinfo_error_total` counts this error. The first three are
    /// upstream's values; the others are new.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::WrongSeq { .. } => "wrong seq num",
            Self::WrongPid { .. } => "wrong pid",
            Self::NlmsgError { .. } => "NLMSG_ERROR",
            Self::ShortError { .. } => "NLMSG_ERROR short",
            Self::DoneError { .. } => "NLMSG_DONE error",
            Self::Interrupted { .. } => "dump interrupted",
            Self::Frame { .. } => "netlink framing",
            Self::Truncated { .. } => "netlink truncated",
            Self::Overrun { .. } => "ENOBUFS",
            Self::Send { .. } => "netlink send",
            Self::Recv { .. } => "netlink recv",
        }
    }
}

impl DiagSocket {
    /// Dumps every TCP socket of `family` in the socket's namespace with the upstream request
    /// (SPEC §3.1: all extensions, state mask 0xF37) and appends each reply's payload — the bytes
    /// after the `nlmsghdr`: `inet_diag_msg` followed by its attributes — to `out`.
    ///
    /// All or nothing: on any error `out` is restored to its length before the call, and the
    /// socket is drained so that the next call starts clean.
    pub fn dump(&mut self, family: Family, out: &mut Payloads) -> Result<DumpStats, DumpError> {
        self.settle();
        let start = out.len();
        let result = self.dump_inner(family, out);
        if result.is_err() {
            out.truncate(start);
            self.dirty = true;
            self.settle();
        }
        result
    }

    fn dump_inner(&mut self, family: Family, out: &mut Payloads) -> Result<DumpStats, DumpError> {
        let seq = request::reserve_seqs(1);
        self.req.clear();
        request::encode(&mut self.req, family, true, seq, &SockId::DUMP);
        let sent = self
            .sock
            .send(&self.req, 0)
            .map_err(|source| DumpError::Send { family, source })?;
        if sent != self.req.len() {
            return Err(DumpError::Send {
                family,
                source: io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short send: {sent} of {} bytes", self.req.len()),
                ),
            });
        }
        // From here on a failure may leave replies queued.
        self.dirty = true;
        let mut stats = DumpStats::default();
        loop {
            let len = socket::recv(&self.sock, &mut self.buf, 0).map_err(|source| {
                if socket::is_enobufs(&source) {
                    DumpError::Overrun { family }
                } else {
                    DumpError::Recv { family, source }
                }
            })?;
            if len > self.buf.len() {
                return Err(DumpError::Truncated {
                    family,
                    len,
                    capacity: self.buf.len(),
                });
            }
            stats.datagrams += 1;
            stats.bytes += len;
            if process_datagram(&self.buf[..len], family, seq, self.pid, out, &mut stats)? {
                self.dirty = false;
                return Ok(stats);
            }
        }
    }
}

/// Handles the messages of one dump datagram; returns whether the dump is complete.
fn process_datagram(
    datagram: &[u8],
    family: Family,
    seq: u32,
    pid: u32,
    out: &mut Payloads,
    stats: &mut DumpStats,
) -> Result<bool, DumpError> {
    for msg in Messages::new(datagram) {
        let msg = msg.map_err(|source| DumpError::Frame { family, source })?;
        let h = msg.header;
        // Checked in upstream's order (SPEC §3.5), then the D12/D13 additions.
        if h.seq != seq {
            return Err(DumpError::WrongSeq {
                family,
                expected: seq,
                got: h.seq,
            });
        }
        if h.pid != pid {
            return Err(DumpError::WrongPid {
                family,
                expected: pid,
                got: h.pid,
            });
        }
        if h.flags & NLM_F_DUMP_INTR != 0 {
            return Err(DumpError::Interrupted { family });
        }
        match h.kind {
            NLMSG_DONE => {
                // The kernel puts the dump's final status in NLMSG_DONE's payload.
                if let Some(status) = msg.payload.get(..4) {
                    let status = i32::from_ne_bytes([status[0], status[1], status[2], status[3]]);
                    if status < 0 {
                        return Err(DumpError::DoneError {
                            family,
                            errno: -status,
                        });
                    }
                }
                return Ok(true);
            }
            NLMSG_ERROR => match msg.errno() {
                None => {
                    return Err(DumpError::ShortError {
                        family,
                        len: msg.payload.len(),
                    });
                }
                Some(0) => return Ok(true),
                Some(errno) => return Err(DumpError::NlmsgError { family, errno }),
            },
            SOCK_DIAG_BY_FAMILY => {
                out.push(msg.payload);
                stats.messages += 1;
            }
            _ => stats.skipped += 1,
        }
        if h.flags & NLM_F_MULTI == 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockdiag::testutil::{self, TestNetns, diag_cookie, diag_ports, message as msg};
    use std::collections::BTreeSet;

    fn run(datagram: &[u8]) -> (Result<bool, DumpError>, Payloads) {
        let mut out = Payloads::new();
        let mut stats = DumpStats::default();
        let r = process_datagram(datagram, Family::Inet, 5, 77, &mut out, &mut stats);
        (r, out)
    }

    #[test]
    fn data_then_done() {
        let mut d = msg(20, NLM_F_MULTI, 5, 77, &[1; 72]);
        d.extend(msg(20, NLM_F_MULTI, 5, 77, &[2; 80]));
        let (r, out) = run(&d);
        assert!(!r.unwrap(), "no DONE yet");
        assert_eq!(out, Payloads::from_iter([vec![1; 72], vec![2; 80]]));
        d.extend(msg(NLMSG_DONE, NLM_F_MULTI, 5, 77, &0i32.to_ne_bytes()));
        assert!(run(&d).0.unwrap());
    }

    #[test]
    fn every_error_class_is_reported() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (msg(20, NLM_F_MULTI, 6, 77, &[0; 72]), "wrong seq num"),
            (msg(20, NLM_F_MULTI, 5, 78, &[0; 72]), "wrong pid"),
            (
                msg(20, NLM_F_MULTI | NLM_F_DUMP_INTR, 5, 77, &[0; 72]),
                "dump interrupted",
            ),
            (
                msg(NLMSG_DONE, NLM_F_MULTI | NLM_F_DUMP_INTR, 5, 77, &[0; 4]),
                "dump interrupted",
            ),
            (
                msg(NLMSG_ERROR, 0, 5, 77, &(-16i32).to_ne_bytes()),
                "NLMSG_ERROR",
            ),
            (msg(NLMSG_ERROR, 0, 5, 77, &[0; 2]), "NLMSG_ERROR short"),
            (
                msg(NLMSG_DONE, NLM_F_MULTI, 5, 77, &(-4i32).to_ne_bytes()),
                "NLMSG_DONE error",
            ),
            (vec![1, 2, 3], "netlink framing"),
        ];
        for (datagram, kind) in cases {
            let (r, _) = run(&datagram);
            assert_eq!(r.unwrap_err().kind(), kind);
        }
    }

    #[test]
    fn ack_and_single_message_end_the_dump_and_unknown_types_are_skipped() {
        assert!(run(&msg(NLMSG_ERROR, 0, 5, 77, &[0; 20])).0.unwrap());
        let mut d = msg(1, NLM_F_MULTI, 5, 77, &[]);
        d.extend(msg(20, 0, 5, 77, &[3; 72]));
        let mut out = Payloads::new();
        let mut stats = DumpStats::default();
        assert!(process_datagram(&d, Family::Inet, 5, 77, &mut out, &mut stats).unwrap());
        assert_eq!(out.len(), 1);
        assert_eq!(stats.skipped, 1);
    }

    /// The dump of a fresh namespace returns exactly the sockets the test created, with their
    /// real cookies, and nothing of the other family.
    #[test]
    fn dump_returns_exactly_the_namespace_sockets() {
        let Some(ns) = TestNetns::create() else {
            return;
        };
        let mut diag = DiagSocket::open_in_netns(ns.path(), 256 * 1024).unwrap();
        let v4 = testutil::connections(&ns, "127.0.0.1:0", 3);
        let v6 = testutil::connections(&ns, "[::1]:0", 2);

        for (family, set) in [(Family::Inet, &v4), (Family::Inet6, &v6)] {
            let mut out = Payloads::from_iter([b"previous"]);
            let stats = diag.dump(family, &mut out).unwrap();
            assert_eq!(
                out.get(0),
                Some(&b"previous"[..]),
                "existing entries are kept"
            );
            assert_eq!(stats.messages, out.len() - 1);
            let got: BTreeSet<_> = out
                .iter()
                .skip(1)
                .map(|p| {
                    assert!(p.len() > 72, "attributes follow the inet_diag_msg");
                    assert_eq!(p[0], family.af());
                    let (sport, dport) = diag_ports(p);
                    (p[1], sport, dport, diag_cookie(p))
                })
                .collect();
            assert_eq!(got.len(), out.len() - 1, "no duplicates");
            assert_eq!(got, set.expected_dump_entries(), "{family:?}");
        }
    }

    /// A dump abandoned after its first datagram (as after a mid-dump error) is still running in
    /// the kernel, which would refuse the next dump with EBUSY; the socket drains it first.
    #[test]
    fn abandoned_dump_is_drained_before_the_next_one() {
        let Some(ns) = TestNetns::create() else {
            return;
        };
        let mut diag = DiagSocket::open_in_netns(ns.path(), 64 * 1024).unwrap();
        let set = testutil::connections(&ns, "127.0.0.1:0", 60);
        diag.req.clear();
        request::encode(&mut diag.req, Family::Inet, true, 1, &SockId::DUMP);
        diag.sock.send(&diag.req, 0).unwrap();
        let first = socket::recv(&diag.sock, &mut diag.buf, 0).unwrap();
        let in_first = Messages::new(&diag.buf[..first]).count();
        assert!(in_first < 121, "the dump must span several datagrams");
        diag.dirty = true;
        // Without the drain the next dump fails: the kernel refuses it (EBUSY) or the old dump's
        // replies come first (wrong seq num).
        let mut out = Payloads::new();
        let err = diag.dump_inner(Family::Inet, &mut out).unwrap_err();
        assert!(
            matches!(
                err,
                DumpError::NlmsgError {
                    errno: libc::EBUSY,
                    ..
                } | DumpError::WrongSeq { .. }
            ),
            "{err}"
        );

        diag.dirty = true;
        let mut out = Payloads::new();
        diag.dump(Family::Inet, &mut out).unwrap();
        assert_eq!(out.len(), set.expected_dump_entries().len());
    }

    /// A reply flagged `NLM_F_DUMP_INTR` fails the whole dump on a real socket: nothing of it
    /// is returned (the caller keeps its previous state, D12), and the rest of the kernel's
    /// dump is drained, so the next dump is complete. The kernel's TCP dumps do not set the
    /// flag on demand, so the flagged reply is queued from another netlink socket, where the
    /// dump reads it first.
    #[test]
    fn interrupted_dump_returns_nothing_and_the_next_one_is_complete() {
        let Some(ns) = TestNetns::create() else {
            return;
        };
        // A small buffer and enough sockets that the kernel's dump spans several datagrams:
        // most of it is still to come when the flagged reply is read.
        let mut diag = DiagSocket::open_in_netns(ns.path(), 16 * 1024).unwrap();
        let set = testutil::connections(&ns, "127.0.0.1:0", 60);
        let mut interrupted = false;
        for _ in 0..20 {
            testutil::interrupt_next_dump(&ns, &diag);
            let mut out = Payloads::from_iter([b"previous"]);
            match diag.dump(Family::Inet, &mut out) {
                Err(DumpError::Interrupted { family }) => {
                    assert_eq!(family, Family::Inet);
                    interrupted = true;
                }
                // Another test took the sequence number first: try again.
                Err(DumpError::WrongSeq { .. }) => {}
                other => panic!("expected an interrupted dump, got {other:?}"),
            }
            assert_eq!(out, Payloads::from_iter([b"previous"]), "all or nothing");
            if interrupted {
                break;
            }
        }
        assert!(interrupted, "never read the flagged reply first");
        let mut out = Payloads::new();
        let stats = diag.dump(Family::Inet, &mut out).unwrap();
        assert!(stats.datagrams > 1, "{stats:?}");
        let got: BTreeSet<_> = out
            .iter()
            .map(|p| (p[1], diag_ports(p).0, diag_ports(p).1, diag_cookie(p)))
            .collect();
        assert_eq!(got, set.expected_dump_entries());
    }

    #[test]
    fn dump_of_an_empty_namespace_is_empty_and_repeatable() {
        let Some(ns) = TestNetns::create() else {
            return;
        };
        let mut diag = DiagSocket::open_in_netns(ns.path(), 64 * 1024).unwrap();
        for _ in 0..3 {
            let mut out = Payloads::new();
            let stats = diag.dump(Family::Inet6, &mut out).unwrap();
            assert!(out.is_empty());
            assert_eq!(stats.messages, 0);
            assert_eq!(stats.datagrams, 1, "a lone NLMSG_DONE");
        }
    }
}
