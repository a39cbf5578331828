//! One connected client: its bounded queue and its writer thread.
//!
//! The publisher only ever takes the queue's mutex for a push (never during I/O), so it cannot
//! be held up by a client. The writer takes whole lines off the queue and sends them with
//! non-blocking sends bounded by a deadline.
//!
//! Whole lines only: on Linux a Unix stream `send` that fits one socket buffer allocation
//! (`sk_sndbuf / 2 − 64` bytes, at most 32 KiB of page fragments plus the head) is queued as a
//! single skb, and a non-blocking send either queues that skb or fails with `EAGAIN` having sent
//! nothing. Batches are kept under that size, so a client that stops reading never receives a
//! line cut in half. (A single line longer than the limit, which needs a UUID prefix of many
//! kilobytes, is sent in pieces and could be cut if its client is dropped mid-line.)

use super::stats::Counters;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use socket2::SockRef;
use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// One encoded event line, shared by every client queue it is offered to.
pub(super) type Line = Arc<[u8]>;

/// How often an idle writer checks whether its client hung up, so that the connected-clients
/// gauge does not wait for the next event to notice.
const IDLE_CHECK: Duration = Duration::from_millis(500);
/// Upper bound of one batch (see the module comment); the socket's own limit may be lower.
const MAX_BATCH: usize = 32 * 1024;
/// Lower bound of one batch, should the send buffer report something absurdly small.
const MIN_BATCH: usize = 512;

/// Locks a mutex, ignoring poisoning: the queue stays consistent even if a holder panicked,
/// because every critical section is a handful of non-panicking operations.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a client was disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseReason {
    /// Its queue was full when an event was published.
    QueueFull,
    /// A batch could not be sent within the write timeout.
    WriteTimeout,
    /// It hung up (seen while idle).
    HungUp,
    /// A send failed (usually `EPIPE`: it hung up).
    WriteError,
    /// The server shut down and the client's queue was empty.
    Shutdown,
    /// The server shut down before the client's queue could be written.
    ShutdownCutOff,
    /// No writer thread could be started for it.
    NoWriter,
}

impl CloseReason {
    fn is_lag(self) -> bool {
        matches!(self, Self::QueueFull | Self::WriteTimeout)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Accepting events.
    Open,
    /// The server is shutting down: write what is queued, then close.
    Draining,
    /// Done; the writer exits and the publisher forgets the client.
    Closed,
}

struct Queue {
    lines: VecDeque<Line>,
    state: State,
}

/// Whether [`Client::offer`] kept the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Offer {
    /// Queued for writing.
    Queued,
    /// The client is closed (now or before); forget it.
    Closed,
}

/// What a writer thread needs beyond its client.
#[derive(Debug, Clone)]
pub(super) struct WriterContext {
    /// How long one batch may take to send before the client counts as lagging.
    pub(super) write_timeout: Duration,
    /// Set once, at shutdown: nothing is written after it.
    pub(super) drain_deadline: Arc<OnceLock<Instant>>,
}

/// A connected client.
pub(super) struct Client {
    id: u64,
    stream: UnixStream,
    capacity: usize,
    queue: Mutex<Queue>,
    ready: Condvar,
    counters: Arc<Counters>,
}

impl Client {
    /// A client in the open state. The caller has counted it as connected.
    pub(super) fn new(
        id: u64,
        stream: UnixStream,
        capacity: usize,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            id,
            stream,
            capacity,
            queue: Mutex::new(Queue {
                lines: VecDeque::new(),
                state: State::Open,
            }),
            ready: Condvar::new(),
            counters,
        }
    }

    /// Queues `line` without ever waiting for the client. A client whose queue is full is
    /// closed, and its connection shut down so that its writer stops at once (D8).
    pub(super) fn offer(&self, line: &Line) -> Offer {
        let mut q = lock(&self.queue);
        if q.state != State::Open {
            return Offer::Closed;
        }
        if q.lines.len() >= self.capacity {
            self.close(&mut q, CloseReason::QueueFull, 1);
            drop(q);
            self.ready.notify_all();
            // Ignored: the only failure is a connection that is already gone.
            let _ = self.stream.shutdown(Shutdown::Both);
            return Offer::Closed;
        }
        let was_empty = q.lines.is_empty();
        q.lines.push_back(Arc::clone(line));
        drop(q);
        // The writer only waits on an empty queue, so only that transition needs a wake-up.
        if was_empty {
            self.ready.notify_one();
        }
        Offer::Queued
    }

    /// Starts the shutdown drain: the writer sends what is queued, then closes.
    pub(super) fn begin_drain(&self) {
        let mut q = lock(&self.queue);
        if q.state == State::Open {
            q.state = State::Draining;
        }
        drop(q);
        self.ready.notify_all();
    }

    /// Closes a client whose writer thread could not be started.
    pub(super) fn abandon(&self) {
        self.close(&mut lock(&self.queue), CloseReason::NoWriter, 0);
        self.cut();
    }

    /// Shuts the connection down, failing any send in progress at once.
    pub(super) fn cut(&self) {
        // Ignored: the only failure is a connection that is already gone.
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Marks the client closed and counts what it loses: every queued line plus `in_flight`
    /// lines the caller holds. Only the first call counts the client itself.
    fn close(&self, q: &mut Queue, reason: CloseReason, in_flight: usize) {
        let lost = q.lines.len() + in_flight;
        Counters::add(&self.counters.events_dropped, lost);
        q.lines.clear();
        if q.state == State::Closed {
            return;
        }
        q.state = State::Closed;
        self.counters
            .clients_connected
            .fetch_sub(1, Ordering::Relaxed);
        if reason.is_lag() {
            Counters::add(&self.counters.clients_dropped_lag, 1);
            tracing::warn!(
                client = self.id,
                ?reason,
                dropped_events = lost,
                "event socket client fell behind; disconnected"
            );
        } else {
            Counters::add(&self.counters.clients_closed, 1);
            tracing::debug!(
                client = self.id,
                ?reason,
                dropped_events = lost,
                "event socket client closed"
            );
        }
    }

    /// The writer thread's body: sends batches of whole lines until the client is closed.
    pub(super) fn run_writer(&self, ctx: &WriterContext) {
        let limit = batch_limit(&self.stream);
        let mut batch = Vec::with_capacity(limit);
        while let Some(lines) = self.next_batch(&mut batch, limit) {
            let mut deadline = deadline_after(ctx.write_timeout);
            if let Some(&drain) = ctx.drain_deadline.get() {
                deadline = deadline.min(drain);
            }
            match send_all(&self.stream, &batch, deadline) {
                Ok(()) => Counters::add(&self.counters.events_written, lines),
                Err(err) => {
                    let reason = if ctx.drain_deadline.get().is_some() {
                        CloseReason::ShutdownCutOff
                    } else if err.kind() == ErrorKind::TimedOut {
                        CloseReason::WriteTimeout
                    } else {
                        CloseReason::WriteError
                    };
                    tracing::debug!(client = self.id, error = %err, "event socket send failed");
                    self.close(&mut lock(&self.queue), reason, lines);
                    break;
                }
            }
        }
        self.cut();
    }

    /// Waits for queued lines and moves whole lines into `batch` (at least one, then as many as
    /// fit in `limit` bytes). Returns how many, or `None` once the client is closed.
    fn next_batch(&self, batch: &mut Vec<u8>, limit: usize) -> Option<usize> {
        batch.clear();
        let mut q = lock(&self.queue);
        loop {
            match q.state {
                State::Closed => return None,
                _ if !q.lines.is_empty() => break,
                State::Draining => {
                    self.close(&mut q, CloseReason::Shutdown, 0);
                    return None;
                }
                State::Open => {
                    let (guard, waited) = self
                        .ready
                        .wait_timeout(q, IDLE_CHECK)
                        .unwrap_or_else(PoisonError::into_inner);
                    q = guard;
                    if waited.timed_out() && q.state == State::Open && q.lines.is_empty() {
                        drop(q);
                        let gone = peer_gone(&self.stream);
                        q = lock(&self.queue);
                        if gone {
                            self.close(&mut q, CloseReason::HungUp, 0);
                            return None;
                        }
                    }
                }
            }
        }
        let mut lines = 0;
        while let Some(line) = q.lines.front() {
            if lines > 0 && batch.len() + line.len() > limit {
                break;
            }
            batch.extend_from_slice(line);
            q.lines.pop_front();
            lines += 1;
        }
        Some(lines)
    }
}

/// `now + timeout`, or a year from now for a timeout too large to represent.
pub(super) fn deadline_after(timeout: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(365 * 86_400);
    let now = Instant::now();
    now.checked_add(timeout.min(FAR)).unwrap_or(now)
}

/// The largest batch that one non-blocking send queues atomically on this socket.
fn batch_limit(stream: &UnixStream) -> usize {
    // The kernel reports the doubled value it uses internally, which is what the limit is
    // computed from. Without it, assume the smallest buffer Linux allows (about 4.5 KiB).
    let sndbuf = SockRef::from(stream).send_buffer_size().unwrap_or(4 * 1024);
    (sndbuf / 2).saturating_sub(64).clamp(MIN_BATCH, MAX_BATCH)
}

/// Sends all of `buf` with non-blocking sends, waiting for room until `deadline`.
fn send_all(stream: &UnixStream, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
    let sock = SockRef::from(stream);
    while !buf.is_empty() {
        match sock.send_with_flags(buf, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => buf = buf.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => wait_writable(stream, deadline)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits until the socket may have room (or has hung up), failing with `TimedOut` once
/// `deadline` has passed.
fn wait_writable(stream: &UnixStream, deadline: Instant) -> io::Result<()> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(ErrorKind::TimedOut.into());
    }
    // Round up so that a sub-millisecond remainder still sleeps instead of spinning.
    let millis = remaining.as_nanos().div_ceil(1_000_000);
    let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLOUT)];
    match poll(&mut fds, timeout) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether the client has hung up. Clients never send (SPEC §7.1); anything they do send is
/// read and discarded.
fn peer_gone(stream: &UnixStream) -> bool {
    let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(0) | Err(nix::errno::Errno::EINTR) => return false,
        Ok(_) => {}
        Err(_) => return true,
    }
    let revents = fds[0].revents().unwrap_or(PollFlags::empty());
    if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
        return true;
    }
    let mut scratch = [MaybeUninit::<u8>::uninit(); 4096];
    match SockRef::from(stream).recv_with_flags(&mut scratch, libc::MSG_DONTWAIT) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(capacity: usize) -> (Arc<Client>, UnixStream, Arc<Counters>) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let counters = Arc::new(Counters::default());
        counters.clients_connected.fetch_add(1, Ordering::Relaxed);
        let c = Arc::new(Client::new(1, ours, capacity, Arc::clone(&counters)));
        (c, theirs, counters)
    }

    fn line(text: &str) -> Line {
        Arc::from(text.as_bytes())
    }

    #[test]
    fn full_queue_closes_and_counts() {
        let (c, _peer, counters) = client(2);
        assert_eq!(c.offer(&line("a\n")), Offer::Queued);
        assert_eq!(c.offer(&line("b\n")), Offer::Queued);
        assert_eq!(c.offer(&line("c\n")), Offer::Closed);
        assert_eq!(c.offer(&line("d\n")), Offer::Closed);
        assert_eq!(counters.events_dropped.load(Ordering::Relaxed), 3);
        assert_eq!(counters.clients_dropped_lag.load(Ordering::Relaxed), 1);
        assert_eq!(counters.clients_connected.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn batches_hold_whole_lines_within_the_limit() {
        let (c, _peer, _) = client(100);
        for text in ["aaaa\n", "bbbb\n", "cccc\n", "a-much-longer-line\n"] {
            c.offer(&line(text));
        }
        let mut batch = Vec::new();
        assert_eq!(c.next_batch(&mut batch, 10), Some(2));
        assert_eq!(batch, b"aaaa\nbbbb\n");
        assert_eq!(c.next_batch(&mut batch, 10), Some(1));
        assert_eq!(batch, b"cccc\n");
        // A line longer than the limit still goes out, alone.
        assert_eq!(c.next_batch(&mut batch, 10), Some(1));
        assert_eq!(batch, b"a-much-longer-line\n");
        c.begin_drain();
        assert_eq!(c.next_batch(&mut batch, 10), None);
    }

    #[test]
    fn send_times_out_without_partial_lines() {
        let (ours, peer) = UnixStream::pair().unwrap();
        let limit = batch_limit(&ours);
        let text = vec![b'x'; 99]
            .into_iter()
            .chain([b'\n'])
            .collect::<Vec<u8>>();
        let batch: Vec<u8> = text.repeat(limit / text.len());
        let deadline = Instant::now() + Duration::from_millis(300);
        let mut sent = 0usize;
        let err = loop {
            match send_all(&ours, &batch, deadline) {
                Ok(()) => sent += batch.len(),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(Instant::now() >= deadline);
        // Everything queued in the peer is whole lines: nothing of the failed batch went out.
        drop(ours);
        let mut got = Vec::new();
        io::Read::read_to_end(&mut &peer, &mut got).unwrap();
        assert_eq!(got.len(), sent, "a timed-out batch must not be partly sent");
        assert!(got.len().is_multiple_of(text.len()) && got.ends_with(b"\n"));
    }

    #[test]
    fn hangup_is_noticed() {
        let (ours, peer) = UnixStream::pair().unwrap();
        assert!(!peer_gone(&ours));
        io::Write::write_all(&mut &peer, b"stray bytes").unwrap();
        assert!(
            !peer_gone(&ours),
            "data from a client is discarded, not a hang-up"
        );
        drop(peer);
        assert!(peer_gone(&ours));
    }
}
