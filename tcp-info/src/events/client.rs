//! One connected client: a tokio task with its bounded queue and a write deadline.
//!
//! The publisher (the pipeline thread) only ever calls `try_send` on the client's queue, so it
//! can never be held up by a client. The task takes whole lines off the queue, sends them with
//! non-blocking writes bounded by a deadline, and notices a hang-up while idle.
//!
//! Whole lines only: on Linux a Unix stream `send` that fits one socket buffer allocation
//! (`sk_sndbuf / 2 − 64` bytes, at most 32 KiB of page fragments plus the head) is queued as a
//! single skb, and a non-blocking send either queues that skb or fails with `EAGAIN` having sent
//! nothing. Batches are kept under that size, so a client that stops reading never receives a
//! line cut in half. (A single line longer than the limit, which needs a UUID prefix of many
//! kilobytes, is sent in pieces and could be cut if its client is dropped mid-line.)

use super::stats::Counters;
use socket2::SockRef;
use std::io::{self, ErrorKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tokio::net::UnixStream;
use tokio::sync::mpsc::{self, error::TryRecvError, error::TrySendError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One encoded event line, shared by every client queue it is offered to.
pub(super) type Line = Arc<[u8]>;

/// Upper bound of one batch (see the module comment); the socket's own limit may be lower.
const MAX_BATCH: usize = 32 * 1024;
/// Lower bound of one batch, should the send buffer report something absurdly small.
const MIN_BATCH: usize = 512;
/// Bytes a client may send before it is disconnected. Clients never send (SPEC §7.1): a few
/// stray bytes (someone typing into `socat`) are read and discarded, but a client that keeps
/// writing is no event client, and reading what it writes would cost the edges' workers a
/// read per kilobyte for nothing (a local process writing without pause kept both busy).
pub(super) const MAX_CLIENT_BYTES: usize = 4096;

/// Why a client was disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum CloseReason {
    /// Its queue was full when an event was published.
    QueueFull = 1,
    /// The server shut down before the client's queue could be written.
    ShutdownCutOff = 2,
    /// A batch could not be sent within the write timeout.
    WriteTimeout,
    /// It hung up (seen while idle).
    HungUp,
    /// A send failed (usually `EPIPE`: it hung up).
    WriteError,
    /// It sent more than [`MAX_CLIENT_BYTES`].
    Sent,
    /// The server shut down and the client's queue was empty.
    Shutdown,
}

impl CloseReason {
    fn is_lag(self) -> bool {
        matches!(self, Self::QueueFull | Self::WriteTimeout)
    }
}

/// Whether [`ClientHandle::offer`] kept the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Offer {
    /// Queued for writing.
    Queued,
    /// The client is closed (now or before); forget it.
    Closed,
}

/// How the server stops a client's task from outside: the reason is stored first, then the
/// token is cancelled, and the task reads the reason when it sees the cancellation.
#[derive(Debug, Default)]
struct Kill {
    token: CancellationToken,
    reason: AtomicU8,
}

impl Kill {
    fn kill(&self, reason: CloseReason) {
        // The first reason wins: a client cut off at shutdown after its queue overflowed is
        // still counted as lagging.
        let _ = self
            .reason
            .compare_exchange(0, reason as u8, Ordering::SeqCst, Ordering::SeqCst);
        self.token.cancel();
    }

    fn reason(&self) -> CloseReason {
        if self.reason.load(Ordering::SeqCst) == CloseReason::QueueFull as u8 {
            CloseReason::QueueFull
        } else {
            CloseReason::ShutdownCutOff
        }
    }
}

/// The server's side of a client: its queue's sender and the means to stop its task.
pub(super) struct ClientHandle {
    id: u64,
    queue: mpsc::Sender<Line>,
    kill: Arc<Kill>,
    counters: Arc<Counters>,
}

impl ClientHandle {
    /// Queues `line` without ever waiting for the client. A client whose queue is full is
    /// disconnected at once (D8); the line is counted as dropped here, the rest of its queue by
    /// its task.
    pub(super) fn offer(&self, line: &Line) -> Offer {
        match self.queue.try_send(Arc::clone(line)) {
            Ok(()) => Offer::Queued,
            Err(TrySendError::Full(_)) => {
                Counters::add(&self.counters.events_dropped, 1);
                self.kill.kill(CloseReason::QueueFull);
                Offer::Closed
            }
            Err(TrySendError::Closed(_)) => Offer::Closed,
        }
    }

    /// Drops the queue's sender, so that the task sends what is queued and then stops
    /// (shutdown), and returns what can still cut it off.
    pub(super) fn into_killer(self) -> Killer {
        Killer(self.kill)
    }

    /// The client's number, for logs.
    pub(super) fn id(&self) -> u64 {
        self.id
    }
}

/// Stops a client's task from outside once its queue's sender is gone.
pub(super) struct Killer(Arc<Kill>);

impl Killer {
    /// Stops the task now, counting what it still holds as dropped (shutdown deadline).
    pub(super) fn cut(&self) {
        self.0.kill(CloseReason::ShutdownCutOff);
    }
}

/// The task's side of a client.
pub(super) struct ClientTask {
    id: u64,
    stream: UnixStream,
    queue: mpsc::Receiver<Line>,
    kill: Arc<Kill>,
    counters: Arc<Counters>,
    write_timeout: Duration,
    /// Bytes the client sent (and were discarded).
    received: usize,
}

/// A new client: the handle the server keeps and the task to spawn. The caller has counted it
/// as connected.
pub(super) fn client(
    id: u64,
    stream: UnixStream,
    capacity: usize,
    counters: &Arc<Counters>,
    write_timeout: Duration,
) -> (ClientHandle, ClientTask) {
    let (tx, rx) = mpsc::channel(capacity);
    let kill = Arc::new(Kill::default());
    let handle = ClientHandle {
        id,
        queue: tx,
        kill: Arc::clone(&kill),
        counters: Arc::clone(counters),
    };
    let task = ClientTask {
        id,
        stream,
        queue: rx,
        kill,
        counters: Arc::clone(counters),
        write_timeout,
        received: 0,
    };
    (handle, task)
}

impl ClientTask {
    /// Sends batches of whole lines until the client hangs up, lags, fails, is killed, or its
    /// queue's sender is dropped (shutdown) and the queue is empty.
    pub(super) async fn run(mut self) {
        let limit = batch_limit(&self.stream);
        let mut batch = Vec::with_capacity(limit);
        let mut held = None;
        let token = self.kill.token.clone();
        let (reason, in_flight) = loop {
            let first = match held.take() {
                Some(line) => line,
                None => match self.next_line().await {
                    Ok(line) => line,
                    Err(reason) => break (reason, 0),
                },
            };
            let (lines, next) = self.fill(&mut batch, &first, limit);
            held = next;
            let deadline = Instant::now() + self.write_timeout;
            let sent = tokio::select! {
                biased;
                () = token.cancelled() => break (self.kill.reason(), lines + usize::from(held.is_some())),
                sent = send_all(&self.stream, &batch, deadline) => sent,
            };
            match sent {
                Ok(()) => Counters::add(&self.counters.events_written, lines),
                Err(e) => {
                    tracing::debug!(client = self.id, error = %e, "event socket send failed");
                    let why = if e.kind() == ErrorKind::TimedOut {
                        CloseReason::WriteTimeout
                    } else {
                        CloseReason::WriteError
                    };
                    break (why, lines + usize::from(held.is_some()));
                }
            }
        };
        self.close(reason, in_flight);
    }

    /// Waits for the next queued line, or for a reason to stop: a kill, the end of the queue
    /// (shutdown, once it is empty), a hang-up, or the client sending too much.
    async fn next_line(&mut self) -> Result<Line, CloseReason> {
        let mut scratch = [0u8; 1024];
        loop {
            tokio::select! {
                biased;
                () = self.kill.token.cancelled() => return Err(self.kill.reason()),
                line = self.queue.recv() => return line.ok_or(CloseReason::Shutdown),
                ready = self.stream.readable() => {
                    // Clients never send (SPEC §7.1); anything they do send is discarded, up to
                    // MAX_CLIENT_BYTES.
                    let gone = ready.is_err() || match self.stream.try_read(&mut scratch) {
                        Ok(0) => true,
                        Ok(n) => {
                            self.received += n;
                            if self.received > MAX_CLIENT_BYTES {
                                return Err(CloseReason::Sent);
                            }
                            false
                        }
                        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted),
                    };
                    if gone {
                        return Err(CloseReason::HungUp);
                    }
                }
            }
        }
    }

    /// Puts `first` and as many queued lines as fit in `limit` bytes into `batch`. Returns how
    /// many lines, and the line taken off the queue that did not fit, which starts the next
    /// batch (a line longer than the limit still goes out, alone).
    fn fill(&mut self, batch: &mut Vec<u8>, first: &Line, limit: usize) -> (usize, Option<Line>) {
        batch.clear();
        batch.extend_from_slice(first);
        let mut lines = 1;
        while batch.len() < limit {
            match self.queue.try_recv() {
                Ok(line) if batch.len() + line.len() <= limit => {
                    batch.extend_from_slice(&line);
                    lines += 1;
                }
                Ok(line) => return (lines, Some(line)),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        (lines, None)
    }

    /// Counts the client's end: every line still queued plus `in_flight` lines are dropped.
    fn close(mut self, reason: CloseReason, in_flight: usize) {
        self.queue.close();
        let mut lost = in_flight;
        while self.queue.try_recv().is_ok() {
            lost += 1;
        }
        Counters::add(&self.counters.events_dropped, lost);
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
        } else if reason == CloseReason::Sent {
            // Debug only: a process writing garbage in a loop would flood the log; the count
            // is in the metrics.
            Counters::add(&self.counters.clients_dropped_input, 1);
            tracing::debug!(
                client = self.id,
                dropped_events = lost,
                "event socket client sent data; disconnected"
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
        // Dropping the stream closes the connection.
    }
}

/// The largest batch that one non-blocking send queues atomically on this socket.
fn batch_limit(stream: &UnixStream) -> usize {
    // The kernel reports the doubled value it uses internally, which is what the limit is
    // computed from. Without it, assume the smallest buffer Linux allows (about 4.5 KiB).
    let sndbuf = SockRef::from(stream).send_buffer_size().unwrap_or(4 * 1024);
    (sndbuf / 2).saturating_sub(64).clamp(MIN_BATCH, MAX_BATCH)
}

/// Sends all of `buf` with non-blocking writes, waiting for room until `deadline`; fails with
/// `TimedOut` after it.
async fn send_all(stream: &UnixStream, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
    while !buf.is_empty() {
        match stream.try_write(buf) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => buf = buf.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                tokio::time::timeout_at(deadline, stream.writable())
                    .await
                    .map_err(|_| io::Error::from(ErrorKind::TimedOut))??;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn full_queue_kills_and_counts() {
        let rt = runtime();
        rt.block_on(async {
            let (ours, _peer) = UnixStream::pair().unwrap();
            let counters = Arc::new(Counters::default());
            counters.clients_connected.fetch_add(1, Ordering::Relaxed);
            let (handle, task) = client(1, ours, 2, &counters, Duration::from_secs(5));
            let line: Line = Arc::from(&b"a\n"[..]);
            assert_eq!(handle.offer(&line), Offer::Queued);
            assert_eq!(handle.offer(&line), Offer::Queued);
            assert_eq!(handle.offer(&line), Offer::Closed);
            // The task sees the kill before it sends anything: both queued lines are lost too.
            task.run().await;
            assert_eq!(handle.offer(&line), Offer::Closed);
            assert_eq!(counters.events_dropped.load(Ordering::Relaxed), 3);
            assert_eq!(counters.clients_dropped_lag.load(Ordering::Relaxed), 1);
            assert_eq!(counters.clients_connected.load(Ordering::Relaxed), 0);
        });
    }

    #[test]
    fn batches_hold_whole_lines_within_the_limit() {
        let rt = runtime();
        rt.block_on(async {
            let (ours, _peer) = UnixStream::pair().unwrap();
            let counters = Arc::new(Counters::default());
            let (handle, mut task) = client(1, ours, 100, &counters, Duration::from_secs(5));
            for text in ["bbbb\n", "cccc\n", "a-much-longer-line\n"] {
                handle.offer(&Arc::from(text.as_bytes()));
            }
            let mut batch = Vec::new();
            let (lines, held) = task.fill(&mut batch, &Arc::from(&b"aaaa\n"[..]), 12);
            assert_eq!((lines, batch.as_slice()), (2, &b"aaaa\nbbbb\n"[..]));
            let held = held.unwrap();
            assert_eq!(&*held, b"cccc\n");
            let (lines, held) = task.fill(&mut batch, &held, 12);
            assert_eq!((lines, batch.as_slice()), (1, &b"cccc\n"[..]));
            assert_eq!(held.as_deref(), Some(&b"a-much-longer-line\n"[..]));
            let (lines, held) = task.fill(&mut batch, &held.unwrap(), 12);
            assert_eq!((lines, batch.as_slice()), (1, &b"a-much-longer-line\n"[..]));
            assert!(held.is_none());
        });
    }

    #[test]
    fn send_times_out_without_partial_lines() {
        let rt = runtime();
        rt.block_on(async {
            let (ours, peer) = UnixStream::pair().unwrap();
            let limit = batch_limit(&ours);
            let text = [[b'x'; 99].as_slice(), b"\n"].concat();
            let batch: Vec<u8> = text.repeat(limit / text.len());
            let deadline = Instant::now() + Duration::from_millis(300);
            let mut sent = 0usize;
            let err = loop {
                match send_all(&ours, &batch, deadline).await {
                    Ok(()) => sent += batch.len(),
                    Err(e) => break e,
                }
            };
            assert_eq!(err.kind(), ErrorKind::TimedOut);
            assert!(Instant::now() >= deadline);
            // Everything queued in the peer is whole lines: nothing of the failed batch went out.
            drop(ours);
            let peer = peer.into_std().unwrap();
            peer.set_nonblocking(false).unwrap();
            let mut got = Vec::new();
            io::Read::read_to_end(&mut &peer, &mut got).unwrap();
            assert_eq!(got.len(), sent, "a timed-out batch must not be partly sent");
            assert!(got.len().is_multiple_of(text.len()) && got.ends_with(b"\n"));
        });
    }

    #[test]
    fn hangup_is_noticed_and_stray_bytes_are_not_one() {
        let rt = runtime();
        rt.block_on(async {
            let (ours, peer) = UnixStream::pair().unwrap();
            let counters = Arc::new(Counters::default());
            counters.clients_connected.fetch_add(1, Ordering::Relaxed);
            let (handle, task) = client(1, ours, 8, &counters, Duration::from_secs(5));
            let task = tokio::spawn(task.run());
            peer.writable().await.unwrap();
            peer.try_write(b"stray bytes").unwrap();
            // Data from a client is not a hang-up: a line offered after it still arrives.
            assert_eq!(handle.offer(&Arc::from(&b"after\n"[..])), Offer::Queued);
            let mut got = Vec::new();
            while !got.ends_with(b"\n") {
                tokio::time::timeout(Duration::from_secs(5), peer.readable())
                    .await
                    .unwrap()
                    .unwrap();
                let mut buf = [0u8; 64];
                match peer.try_read(&mut buf) {
                    Ok(0) => panic!("the client was closed after stray bytes"),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(got, b"after\n");
            assert!(!task.is_finished());
            drop(peer);
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(counters.clients_closed.load(Ordering::Relaxed), 1);
            assert_eq!(handle.offer(&Arc::from(&b"x\n"[..])), Offer::Closed);
        });
    }

    #[test]
    fn a_client_that_keeps_sending_is_disconnected() {
        let rt = runtime();
        rt.block_on(async {
            let (ours, peer) = UnixStream::pair().unwrap();
            let counters = Arc::new(Counters::default());
            counters.clients_connected.fetch_add(1, Ordering::Relaxed);
            let (handle, task) = client(1, ours, 8, &counters, Duration::from_secs(5));
            let task = tokio::spawn(task.run());
            // Up to the allowance, the client stays.
            let mut sent = 0;
            while sent < MAX_CLIENT_BYTES {
                peer.writable().await.unwrap();
                sent += peer.try_write(&[b'x'; 512]).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(!task.is_finished(), "disconnected within the allowance");
            // One byte more and it is disconnected: counted as such, not as closed or lagging.
            peer.writable().await.unwrap();
            peer.try_write(b"!").unwrap();
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(counters.clients_dropped_input.load(Ordering::Relaxed), 1);
            assert_eq!(counters.clients_closed.load(Ordering::Relaxed), 0);
            assert_eq!(counters.clients_dropped_lag.load(Ordering::Relaxed), 0);
            assert_eq!(counters.clients_connected.load(Ordering::Relaxed), 0);
            assert_eq!(handle.offer(&Arc::from(&b"x\n"[..])), Offer::Closed);
        });
    }
}
