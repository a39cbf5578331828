//! A small HTTP/1.1 server for the daemon's endpoints (metrics, query API): hyper on the
//! edges' tokio runtime, over TCP or a unix socket, with the limits a daemon needs.
//!
//! - a deadline for each request head ([`HEAD_TIMEOUT`]) and a bound on its size
//!   ([`MAX_HEAD`], answered with 431);
//! - a deadline for the whole exchange ([`CONNECTION_DEADLINE`]): a client that asks and then
//!   never reads the answer is cut off;
//! - one request per connection;
//! - at most [`MAX_CONNECTIONS`] connections at once, at most [`MAX_PER_PEER`] of them from one
//!   peer, admitted by the policy below.
//!
//! What to answer is the caller's [`Handler`].
//!
//! # Clients the daemon does not control
//!
//! A fixed cap alone lets one client that opens [`MAX_CONNECTIONS`] connections and trickles
//! its request heads (slowloris), or asks and never reads, take every slot: a scrape would be
//! refused for up to [`HEAD_TIMEOUT`] or [`CONNECTION_DEADLINE`]. So the server tells cheap
//! connections from the others, and peers apart:
//!
//! - A connection is **waiting** until its request head is complete, **stalled** once writing
//!   its answer has been blocked for [`STALL_GRACE`] (its client does not read), and **busy**
//!   otherwise (being answered, its answer moving). Waiting and stalled connections are cheap
//!   to drop: nothing has been done for them yet, or their client does not take what was done.
//!   A real scraper sends its head at once, in one packet, and reads its answer; a busy
//!   connection is never dropped to make room.
//! - A **peer** is an IPv4 address, an IPv6 /64 (one host gets a /64 and may use any address
//!   in it), or, on a unix socket, the client's uid (`SO_PEERCRED`: the only identity a unix
//!   client has; one user's programs are one peer, as that user could open any number of
//!   connections, and other users — root's probes — are not crowded out by them).
//! - A new connection from a peer that already holds [`MAX_PER_PEER`] connections **evicts**
//!   that peer's oldest connection waiting for [`HEAD_GRACE`] or more, else its
//!   longest-stalled one; without one, the newcomer is closed at once
//!   ([`DropReason::PeerLimit`]). The grace makes a peer's storm of connections cost an
//!   accept and a close each, not a connection served (each newcomer would otherwise push out
//!   the previous one before it was even read), and keeps a real client whose head is on its
//!   way from being pushed out by a flood from its own address.
//! - A new connection when all [`MAX_CONNECTIONS`] are taken evicts a waiting (else stalled)
//!   connection of the peer holding the **most** slots, taken among the peers that hold more
//!   than the newcomer's own peer (however young: a heavier peer has no claim on fairness),
//!   or among the newcomer's own peer's as above: a flooding host pushes out its own
//!   connections or those of a heavier host, never a lighter peer's scrape. Without such a
//!   connection the newcomer is closed at once ([`DropReason::Full`]).
//!
//! So one host, whatever it opens or sends, holds at most [`MAX_PER_PEER`] slots and never
//! makes the server turn another host away, and a scraper that shares a slowloris client's
//! address still gets in by evicting its oldest connection (not a client that renews its
//! connections faster than [`HEAD_GRACE`]: nothing tells the scraper from it then). Keeping
//! every slot from scrapers takes [`MAX_CONNECTIONS`] / [`MAX_PER_PEER`] hosts whose requests
//! are slow to answer, or whose clients read their answers slowly but without a pause of
//! [`STALL_GRACE`], and then only for [`CONNECTION_DEADLINE`].
//!
//! The kernel's accept queue is deepened to [`ACCEPT_BACKLOG`]: a connect flood fills a short
//! one faster than the accept loop empties it, and a scraper's SYN dropped there is retried
//! only after a second (then 3, 7 s).
//!
//! Every connection the server closes without a complete answer is reported, with its
//! [`DropReason`], to [`Options::on_drop`] (the metrics endpoint counts them in
//! `tcpinfo_http_connections_dropped_total{server,reason}`), and logged: at debug level each,
//! and as a warning at most once per minute.

use std::cmp::Reverse;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Connections served at the same time (see the module's admission policy).
pub const MAX_CONNECTIONS: usize = 16;
/// Connections one peer (IPv4 address, IPv6 /64, unix uid) may hold at the same time.
pub const MAX_PER_PEER: usize = MAX_CONNECTIONS / 4;
/// How long a connection may wait for its request head before newer connections from its own
/// peer may push it out: far longer than a real client takes (its head comes with the
/// connection), far shorter than [`HEAD_TIMEOUT`].
pub const HEAD_GRACE: Duration = Duration::from_millis(500);
/// How long writing an answer must have been blocked before its connection counts as stalled
/// (its client does not read) and may be evicted: longer than a slow link's pause, shorter
/// than anything a scraper would notice.
pub const STALL_GRACE: Duration = Duration::from_secs(1);
/// Longest time a client may take to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted (hyper's read buffer; its minimum is 8 KiB).
pub const MAX_HEAD: usize = 8 * 1024;
/// Longest time one connection may take, request and answer (a metrics exposition or a plot,
/// read by a slow client) included.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);
/// Length of the kernel's queue of connections not yet accepted (capped by
/// `net.core.somaxconn`). Each holds a socket in the kernel until accepted.
pub const ACCEPT_BACKLOG: i32 = 1024;
/// Pause after an accept error that is not about one connection (e.g. EMFILE), so the loop
/// does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Shortest time between two warnings about dropped connections.
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// A response being prepared.
pub type Responding = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

/// What a server answers: one response per request.
pub type Handler = Arc<dyn Fn(Request<Incoming>) -> Responding + Send + Sync>;

/// Told of every connection the server closes without a complete answer, and why.
pub type DropHook = Arc<dyn Fn(DropReason) + Send + Sync>;

/// Why the server closed a connection without (completely) answering it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A new connection, closed at once: every slot was taken and none could be pushed out
    /// (each being answered, or waiting for its head for less than [`HEAD_GRACE`], or stalled
    /// for less than [`STALL_GRACE`], or held by a peer with no more slots than the newcomer's).
    Full,
    /// A new connection, closed at once: its peer already held [`MAX_PER_PEER`] connections and
    /// none of them could be pushed out (as for [`DropReason::Full`]).
    PeerLimit,
    /// An older connection still waiting for its request head, closed to make room.
    EvictedWaiting,
    /// An older connection whose client had not read its answer for [`STALL_GRACE`], closed to
    /// make room.
    EvictedStalled,
    /// No complete request head within [`HEAD_TIMEOUT`].
    HeadTimeout,
    /// The exchange took longer than the connection deadline ([`CONNECTION_DEADLINE`]).
    Deadline,
}

impl DropReason {
    /// Every reason, in declaration order.
    pub const ALL: [Self; 6] = [
        Self::Full,
        Self::PeerLimit,
        Self::EvictedWaiting,
        Self::EvictedStalled,
        Self::HeadTimeout,
        Self::Deadline,
    ];

    /// The reason as a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::PeerLimit => "peer_limit",
            Self::EvictedWaiting => "evicted_waiting",
            Self::EvictedStalled => "evicted_stalled",
            Self::HeadTimeout => "head_timeout",
            Self::Deadline => "deadline",
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a server runs, beyond its handler.
#[derive(Clone)]
pub struct Options {
    /// Longest time one connection may take ([`CONNECTION_DEADLINE`] by default).
    pub deadline: Duration,
    /// Told of every connection closed without a complete answer (none by default).
    pub on_drop: Option<DropHook>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            deadline: CONNECTION_DEADLINE,
            on_drop: None,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("deadline", &self.deadline)
            .field("on_drop", &self.on_drop.is_some())
            .finish()
    }
}

/// A bound listener, TCP or unix.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener (non-blocking, not yet registered with a runtime).
    Tcp(std::net::TcpListener),
    /// A unix-socket listener (non-blocking, not yet registered with a runtime) and its path.
    Unix(std::os::unix::net::UnixListener, PathBuf),
}

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalAddr {
    /// A TCP address (with the real port when port 0 was asked for).
    Tcp(SocketAddr),
    /// A unix socket path.
    Unix(PathBuf),
}

impl std::fmt::Display for LocalAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "http://{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A running server. Stops when [`Server::shutdown`] is called or it is dropped.
#[derive(Debug)]
pub struct Server {
    local: LocalAddr,
    stop: CancellationToken,
    runtime: Handle,
    accept: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Server {
    /// Serves `handler` on `listener` as tasks on `runtime`, with the default [`Options`].
    /// `name` names the server in logs.
    pub fn start(
        name: &'static str,
        listener: Listener,
        handler: Handler,
        runtime: &Handle,
    ) -> io::Result<Self> {
        Self::start_with(name, listener, handler, runtime, Options::default())
    }

    /// [`Server::start`] with other [`Options`].
    pub fn start_with(
        name: &'static str,
        listener: Listener,
        handler: Handler,
        runtime: &Handle,
        options: Options,
    ) -> io::Result<Self> {
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            name,
            handler,
            table: Mutex::new(Table::new(MAX_CONNECTIONS, MAX_PER_PEER)),
            options,
        });
        let _context = runtime.enter();
        let (local, accept) = match listener {
            Listener::Tcp(listener) => {
                listener.set_nonblocking(true)?;
                deepen_backlog(name, &socket2::SockRef::from(&listener));
                let local = LocalAddr::Tcp(listener.local_addr()?);
                let listener = Arc::new(TcpListener::from_std(listener)?);
                let accept = runtime.spawn(accept_loop(
                    Arc::clone(&shared),
                    move || {
                        let listener = Arc::clone(&listener);
                        async move {
                            let (stream, addr) = listener.accept().await?;
                            Ok((stream, PeerAddr::Tcp(addr)))
                        }
                    },
                    stop.clone(),
                ));
                (local, accept)
            }
            Listener::Unix(listener, path) => {
                listener.set_nonblocking(true)?;
                deepen_backlog(name, &socket2::SockRef::from(&listener));
                let listener = Arc::new(UnixListener::from_std(listener)?);
                let accept = runtime.spawn(accept_loop(
                    Arc::clone(&shared),
                    move || {
                        let listener = Arc::clone(&listener);
                        async move {
                            let (stream, _) = listener.accept().await?;
                            // Without credentials (never on Linux), every such client is one
                            // peer.
                            let uid = stream.peer_cred().ok().map(|c| c.uid());
                            Ok((stream, PeerAddr::Unix(uid)))
                        }
                    },
                    stop.clone(),
                ));
                (LocalAddr::Unix(path), accept)
            }
        };
        Ok(Self {
            local,
            stop,
            runtime: runtime.clone(),
            accept: Some(accept),
            shared,
        })
    }

    /// Where the server listens.
    pub fn local_addr(&self) -> &LocalAddr {
        &self.local
    }

    /// Connections being served now (evicted ones are no longer counted).
    pub fn open_connections(&self) -> usize {
        lock(&self.shared.table).slots.len()
    }

    /// Stops accepting, ends the connections being served, and waits for the accept task.
    /// Blocks the calling thread, which must not be one of the runtime's own.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.stop.cancel();
        if let Some(accept) = self.accept.take() {
            let (runtime, name) = (&self.runtime, self.shared.name);
            // From a scoped thread, so that this also works if dropped inside the runtime.
            std::thread::scope(|s| {
                s.spawn(|| {
                    if runtime.block_on(accept).is_err() {
                        tracing::error!("the {name} accept task panicked");
                    }
                });
            });
        }
        if let LocalAddr::Unix(path) = &self.local {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sets the listener's accept queue to [`ACCEPT_BACKLOG`]: `listen` again on a listening socket
/// only changes its backlog. A failure leaves the listener as it was, which still works.
fn deepen_backlog(name: &str, socket: &socket2::SockRef<'_>) {
    if let Err(e) = socket.listen(ACCEPT_BACKLOG) {
        tracing::warn!("{name} server: cannot set the accept backlog to {ACCEPT_BACKLOG}: {e}");
    }
}

/// Locks a mutex, ignoring poisoning: the connection table stays consistent even if a holder
/// panicked, because every critical section is a handful of non-panicking operations.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the accept loop and the connection tasks share.
struct Shared {
    name: &'static str,
    handler: Handler,
    table: Mutex<Table>,
    options: Options,
}

impl Shared {
    fn dropped(&self, reason: DropReason) {
        if let Some(hook) = &self.options.on_drop {
            hook(reason);
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Who is at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerAddr {
    /// A TCP client's address.
    Tcp(SocketAddr),
    /// A unix client's uid, if its credentials could be read.
    Unix(Option<u32>),
}

/// The unit connections are counted by for [`MAX_PER_PEER`] and fair eviction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerKey {
    V4(Ipv4Addr),
    /// The /64 an IPv6 address is in.
    V6(u64),
    Uid(u32),
    UnixUnknown,
}

impl PeerAddr {
    fn key(self) -> PeerKey {
        match self {
            Self::Tcp(addr) => match addr.ip() {
                IpAddr::V4(v4) => PeerKey::V4(v4),
                // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
                IpAddr::V6(v6) => v6
                    .to_ipv4_mapped()
                    .map_or(PeerKey::V6((v6.to_bits() >> 64) as u64), PeerKey::V4),
            },
            Self::Unix(Some(uid)) => PeerKey::Uid(uid),
            Self::Unix(None) => PeerKey::UnixUnknown,
        }
    }
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(Some(uid)) => write!(f, "a unix client (uid {uid})"),
            Self::Unix(None) => f.write_str("a unix client"),
        }
    }
}

/// What the admission policy knows of one connection, updated by its task.
#[derive(Debug)]
struct Activity {
    /// The table's reference instant, for `stalled_since`.
    epoch: Instant,
    accepted: Instant,
    /// Set once the request head is complete (the handler was called).
    answering: AtomicBool,
    /// Nanoseconds after `epoch`, plus one, since when writing has been blocked; 0 when it is
    /// not.
    stalled_since: AtomicU64,
    /// Cancelled when the connection is evicted.
    evict: CancellationToken,
}

/// Where a connection is, for the admission policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Stalled(Instant),
    Busy,
}

impl Activity {
    fn new(epoch: Instant, accepted: Instant) -> Self {
        Self {
            epoch,
            accepted,
            answering: AtomicBool::new(false),
            stalled_since: AtomicU64::new(0),
            evict: CancellationToken::new(),
        }
    }

    fn state(&self) -> State {
        if !self.answering.load(Ordering::Relaxed) {
            return State::Waiting;
        }
        match self.stalled_since.load(Ordering::Relaxed) {
            0 => State::Busy,
            n => State::Stalled(self.epoch + Duration::from_nanos(n - 1)),
        }
    }

    /// Follows a write: `Pending` means the client is not taking the answer.
    fn wrote<T>(&self, poll: &Poll<T>) {
        let since = self.stalled_since.load(Ordering::Relaxed);
        match poll {
            Poll::Pending if since == 0 => {
                let nanos = self.epoch.elapsed().as_nanos();
                let nanos = u64::try_from(nanos).unwrap_or(u64::MAX - 1);
                self.stalled_since.store(nanos + 1, Ordering::Relaxed);
            }
            Poll::Ready(_) if since != 0 => self.stalled_since.store(0, Ordering::Relaxed),
            _ => {}
        }
    }
}

/// The connections being served.
#[derive(Debug)]
struct Table {
    slots: Vec<Slot>,
    next_id: u64,
    epoch: Instant,
    max: usize,
    per_peer: usize,
}

#[derive(Debug)]
struct Slot {
    id: u64,
    peer: PeerAddr,
    key: PeerKey,
    activity: Arc<Activity>,
}

/// The admission policy's answer for a new connection.
#[derive(Debug)]
enum Admission {
    /// Serve it; `evicted` was closed to make room for it (its token is cancelled).
    Admitted {
        id: u64,
        activity: Arc<Activity>,
        evicted: Option<(PeerAddr, DropReason)>,
    },
    /// Close it at once.
    Refused(DropReason),
}

impl Table {
    fn new(max: usize, per_peer: usize) -> Self {
        Self {
            slots: Vec::with_capacity(max),
            next_id: 0,
            epoch: Instant::now(),
            max,
            per_peer,
        }
    }

    fn held_by(&self, key: PeerKey) -> usize {
        self.slots.iter().filter(|s| s.key == key).count()
    }

    /// Applies the module's admission policy to a connection from `peer` accepted `now`.
    fn admit(&mut self, peer: PeerAddr, now: Instant) -> Admission {
        let key = peer.key();
        let held = self.held_by(key);
        let victim = if held >= self.per_peer {
            match self.cheapest(now, HEAD_GRACE, |slot, _| slot.key == key) {
                Some(victim) => Some(victim),
                None => return Admission::Refused(DropReason::PeerLimit),
            }
        } else if self.slots.len() >= self.max {
            // A heavier peer's connection however young, else one of the newcomer's own peer's
            // that had its grace.
            let pick = self
                .cheapest(now, Duration::ZERO, |_, theirs| theirs > held)
                .or_else(|| self.cheapest(now, HEAD_GRACE, |slot, _| slot.key == key));
            match pick {
                Some(victim) => Some(victim),
                None => return Admission::Refused(DropReason::Full),
            }
        } else {
            None
        };
        let evicted = victim.map(|(index, reason)| {
            let slot = self.slots.swap_remove(index);
            slot.activity.evict.cancel();
            (slot.peer, reason)
        });
        self.next_id += 1;
        let activity = Arc::new(Activity::new(self.epoch, now));
        self.slots.push(Slot {
            id: self.next_id,
            peer,
            key,
            activity: Arc::clone(&activity),
        });
        Admission::Admitted {
            id: self.next_id,
            activity,
            evicted,
        }
    }

    /// The connection to evict among those `eligible` accepts (given the slot and how many
    /// slots its peer holds), and why: the peer holding the most slots first, then waiting
    /// before stalled, then the one waiting or stalled the longest. Busy connections, waits
    /// shorter than `grace` and stalls shorter than [`STALL_GRACE`] are never chosen.
    fn cheapest(
        &self,
        now: Instant,
        grace: Duration,
        eligible: impl Fn(&Slot, usize) -> bool,
    ) -> Option<(usize, DropReason)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| {
                let theirs = self.held_by(slot.key);
                if !eligible(slot, theirs) {
                    return None;
                }
                let accepted = slot.activity.accepted;
                let (class, since, reason) = match slot.activity.state() {
                    State::Waiting if now.saturating_duration_since(accepted) >= grace => {
                        (0, accepted, DropReason::EvictedWaiting)
                    }
                    State::Stalled(since)
                        if now.saturating_duration_since(since) >= STALL_GRACE =>
                    {
                        (1, since, DropReason::EvictedStalled)
                    }
                    State::Waiting | State::Stalled(_) | State::Busy => return None,
                };
                Some(((Reverse(theirs), class, since), index, reason))
            })
            .min_by_key(|(rank, ..)| *rank)
            .map(|(_, index, reason)| (index, reason))
    }

    /// Forgets connection `id` (ended, or already evicted).
    fn release(&mut self, id: u64) {
        if let Some(index) = self.slots.iter().position(|s| s.id == id) {
            self.slots.swap_remove(index);
        }
    }
}

/// Frees a connection's slot when its task ends, however it ends (aborted at shutdown too).
struct Release {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Release {
    fn drop(&mut self) {
        lock(&self.shared.table).release(self.id);
    }
}

/// A connection's stream, telling its [`Activity`] whether writes move.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.activity.wrote(&poll);
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.activity.wrote(&poll);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Logs dropped connections: each at debug level, and a warning at most once per
/// [`DROP_WARNING_INTERVAL`] so that a flood does not flood the log too.
#[derive(Debug, Default)]
struct DropLog {
    warned: Option<Instant>,
    since_warning: u64,
}

impl DropLog {
    fn note(&mut self, name: &str, reason: DropReason, peer: PeerAddr) {
        tracing::debug!("{name} server: dropped a connection from {peer}: {reason}");
        self.since_warning += 1;
        if self
            .warned
            .is_none_or(|at| at.elapsed() >= DROP_WARNING_INTERVAL)
        {
            tracing::warn!(
                "{name} server: too many connections; dropping some to keep serving \
                 ({} since the last warning, the latest from {peer}: {reason})",
                self.since_warning
            );
            self.warned = Some(Instant::now());
            self.since_warning = 0;
        }
    }
}

/// Accepts connections until `stop`, admits them by the module's policy, and serves each in
/// its own task. The connection tasks are cancelled with the listener.
async fn accept_loop<S, A, F>(shared: Arc<Shared>, accept: A, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    A: Fn() -> F,
    F: Future<Output = io::Result<(S, PeerAddr)>>,
{
    let name = shared.name;
    let mut connections = tokio::task::JoinSet::new();
    let mut log = DropLog::default();
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = accept() => accepted,
            // Reap finished connections so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::warn!("{name} server: accept failed: {e}");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let admission = lock(&shared.table).admit(peer, Instant::now());
        match admission {
            Admission::Refused(reason) => {
                shared.dropped(reason);
                log.note(name, reason, peer);
                // Dropping the stream closes it.
            }
            Admission::Admitted {
                id,
                activity,
                evicted,
            } => {
                if let Some((evicted_peer, reason)) = evicted {
                    shared.dropped(reason);
                    log.note(name, reason, evicted_peer);
                }
                let release = Release {
                    shared: Arc::clone(&shared),
                    id,
                };
                // Under a storm `accept` is always ready and the `select!` never reaps.
                while connections.try_join_next().is_some() {}
                connections.spawn(serve(release, stream, peer, activity));
            }
        }
    }
    // Ends every connection being served, stalled ones included.
    connections.shutdown().await;
}

/// Serves one connection until it ends, is evicted or passes its deadline.
async fn serve<S>(release: Release, stream: S, peer: PeerAddr, activity: Arc<Activity>)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let shared = Arc::clone(&release.shared);
    let (name, deadline) = (shared.name, shared.options.deadline);
    let handler = Arc::clone(&shared.handler);
    let head_complete = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |request| {
        head_complete.answering.store(true, Ordering::Relaxed);
        let responding = handler(request);
        async move { Ok::<_, Infallible>(responding.await) }
    });
    let stream = Tracked {
        inner: stream,
        activity: Arc::clone(&activity),
    };
    let serving = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .keep_alive(false)
        .title_case_headers(true)
        .serve_connection(TokioIo::new(stream), service);
    let outcome = tokio::select! {
        // Counted and logged by the accept loop, which evicted it.
        () = activity.evict.cancelled() => return,
        outcome = tokio::time::timeout(deadline, serving) => outcome,
    };
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.is_timeout() => {
            shared.dropped(DropReason::HeadTimeout);
            tracing::debug!("{name} server: {peer} sent no request head within {HEAD_TIMEOUT:?}");
        }
        Ok(Err(e)) => tracing::debug!("{name} server: connection from {peer}: {e}"),
        Err(_) => {
            shared.dropped(DropReason::Deadline);
            tracing::debug!("{name} server: {peer} cut off after {deadline:?}");
        }
    }
    drop(release);
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Read as _, Write as _};
    use std::net::{Ipv6Addr, TcpStream};
    use std::sync::atomic::AtomicUsize;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::test_net::{bound_socket, connect_from, try_bound_socket};
    use crate::test_runtime::handle as rt;

    /// The address stalled clients come from (loopback accepts any 127/8 source).
    const ATTACKER: [u8; 4] = [127, 0, 0, 4];
    /// Another host, for a scraper.
    const OTHER: [u8; 4] = [127, 0, 0, 2];
    /// The address connect floods come from: theirs alone, as they leave thousands of its
    /// ports in TIME_WAIT, and tests run in parallel.
    const FLOODER: [u8; 4] = [127, 0, 0, 3];
    /// How long a scrape may take while the server is under attack. A refused scrape fails at
    /// once, and the defects this guards against cost a head timeout (10 s) or more; a loaded
    /// 2-core CI machine answers a loopback request in milliseconds.
    const PROMPT: Duration = Duration::from_secs(2);
    /// The body of `/big`: far more than socket buffers hold, so that its answer waits on a
    /// client that does not read.
    const BIG: usize = 16 << 20;
    /// Connections a burst flooder opens at once: more than a default accept queue holds,
    /// fewer than [`ACCEPT_BACKLOG`].
    const BURST: usize = 400;
    /// The worst scrape latency allowed during a connect flood.
    const FLOOD_WORST: Duration = Duration::from_millis(2_500);

    /// A server whose handler answers `/big` with [`BIG`] bytes, never answers `/block`, and
    /// answers anything else with `ok`; it counts the drops it reports.
    struct Fixture {
        server: Server,
        addr: SocketAddr,
        drops: Arc<[AtomicUsize; DropReason::ALL.len()]>,
        blocked: Arc<AtomicUsize>,
    }

    fn handler(blocked: &Arc<AtomicUsize>) -> Handler {
        let big = Bytes::from(vec![b'x'; BIG]);
        let blocked = Arc::clone(blocked);
        Arc::new(move |request| {
            let (big, blocked) = (big.clone(), Arc::clone(&blocked));
            Box::pin(async move {
                match request.uri().path() {
                    "/big" => Response::new(Full::new(big)),
                    "/block" => {
                        blocked.fetch_add(1, Ordering::SeqCst);
                        std::future::pending().await
                    }
                    _ => Response::new(Full::new(Bytes::from_static(b"ok\n"))),
                }
            })
        })
    }

    fn counting(drops: &Arc<[AtomicUsize; DropReason::ALL.len()]>) -> DropHook {
        let drops = Arc::clone(drops);
        Arc::new(move |reason| {
            let index = DropReason::ALL.iter().position(|r| *r == reason).unwrap();
            drops[index].fetch_add(1, Ordering::SeqCst);
        })
    }

    impl Fixture {
        fn start(listener: Listener, deadline: Duration) -> Self {
            let drops = Arc::new(std::array::from_fn(|_| AtomicUsize::new(0)));
            let blocked = Arc::new(AtomicUsize::new(0));
            let options = Options {
                deadline,
                on_drop: Some(counting(&drops)),
            };
            let server =
                Server::start_with("test", listener, handler(&blocked), rt(), options).unwrap();
            let addr = match server.local_addr() {
                LocalAddr::Tcp(addr) => *addr,
                LocalAddr::Unix(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
            };
            Self {
                server,
                addr,
                drops,
                blocked,
            }
        }

        fn tcp() -> Self {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            Self::start(Listener::Tcp(listener), CONNECTION_DEADLINE)
        }

        fn drops(&self, reason: DropReason) -> usize {
            let index = DropReason::ALL.iter().position(|r| *r == reason).unwrap();
            self.drops[index].load(Ordering::SeqCst)
        }

        fn all_drops(&self) -> usize {
            DropReason::ALL.iter().map(|r| self.drops(*r)).sum()
        }

        fn blocked(&self) -> usize {
            self.blocked.load(Ordering::SeqCst)
        }
    }

    /// Polls `done` every 10 ms for up to 10 s.
    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(10), "never: {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `request` from `from` and reads the whole answer: how long it took, and the answer.
    fn exchange(from: [u8; 4], addr: SocketAddr, request: &[u8]) -> (Duration, Vec<u8>) {
        let start = Instant::now();
        let mut stream = connect_from(from, addr);
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        // The server may close a refused connection before the request is written.
        let _ = stream.write_all(request);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        (start.elapsed(), answer)
    }

    /// A scrape from `from`: how long it took; fails unless answered 200 within [`PROMPT`].
    fn scrape(from: [u8; 4], addr: SocketAddr) -> Duration {
        let (took, answer) = exchange(from, addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            answer.starts_with(b"HTTP/1.1 200 OK\r\n") && answer.ends_with(b"\r\n\r\nok\n"),
            "scrape from {from:?}: {:?}",
            String::from_utf8_lossy(&answer)
        );
        assert!(took < PROMPT, "scrape from {from:?} took {took:?}");
        took
    }

    /// Whether the server has closed `stream` (end of file or reset), looking for `wait`.
    fn closed(stream: &mut TcpStream, wait: Duration) -> bool {
        stream.set_read_timeout(Some(wait)).unwrap();
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => panic!("unexpected bytes from the server"),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
            Err(e) => panic!("reading: {e}"),
        }
    }

    /// A client with the smallest receive buffer, so that an answer waits on it at once.
    fn non_reader(from: [u8; 4], addr: SocketAddr, path: &str) -> TcpStream {
        let socket = bound_socket(from, |s| s.set_recv_buffer_size(4096).unwrap());
        socket.connect(&addr.into()).unwrap();
        let mut stream: TcpStream = socket.into();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        stream
    }

    /// A flood connection to `addr` from [`FLOODER`]; an error when its ports are all taken
    /// for a moment.
    fn flood_connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
        let s = try_bound_socket(FLOODER, |_| {})?;
        s.connect(&addr.into())?;
        Ok(s.into())
    }

    #[test]
    fn peers_are_addresses_ipv6_prefixes_and_uids() {
        let v4 = |a: [u8; 4]| PeerAddr::Tcp(SocketAddr::from((a, 1))).key();
        let v6 = |a: &str| PeerAddr::Tcp(SocketAddr::new(a.parse().unwrap(), 1)).key();
        assert_eq!(v4([127, 0, 0, 1]), v4([127, 0, 0, 1]));
        assert_ne!(v4([127, 0, 0, 1]), v4([127, 0, 0, 2]));
        // One host's /64 is one peer, whichever address it picks.
        assert_eq!(v6("2001:db8:1:2::1"), v6("2001:db8:1:2:ffff::9"));
        assert_ne!(v6("2001:db8:1:2::1"), v6("2001:db8:1:3::1"));
        // An IPv4 client of a dual-stack listener is its IPv4 address.
        assert_eq!(v6("::ffff:10.0.0.1"), v4([10, 0, 0, 1]));
        assert_ne!(
            PeerAddr::Tcp(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 1)).key(),
            v4([127, 0, 0, 1])
        );
        assert_eq!(PeerAddr::Unix(Some(0)).key(), PeerAddr::Unix(Some(0)).key());
        assert_ne!(PeerAddr::Unix(Some(0)).key(), PeerAddr::Unix(Some(1)).key());
    }

    /// (i) More slowloris clients than slots, all from the scraper's own address: the address
    /// holds `MAX_PER_PEER` slots, the others are closed at once, a scrape from another host
    /// is answered at once, and one from the slow clients' own address too once they have
    /// had their head grace (it pushes out the oldest).
    #[test]
    fn slowloris_clients_cannot_keep_a_scraper_out() {
        let f = Fixture::tcp();
        let n = MAX_CONNECTIONS + 8;
        let mut slow: Vec<TcpStream> = (0..n)
            .map(|_| {
                let mut s = connect_from(ATTACKER, f.addr);
                s.write_all(b"GET /metr").unwrap();
                s
            })
            .collect();
        wait_until("every slow client admitted or refused", || {
            f.all_drops() == n - MAX_PER_PEER
        });
        wait_until("MAX_PER_PEER connections open", || {
            f.server.open_connections() == MAX_PER_PEER
        });
        // Connected within the head grace of the first ones: turned away at once, not served.
        assert!(
            f.drops(DropReason::PeerLimit) > 0,
            "young connections evicted"
        );
        scrape(OTHER, f.addr);
        std::thread::sleep(HEAD_GRACE);
        let evicted = f.drops(DropReason::EvictedWaiting);
        let took = scrape(ATTACKER, f.addr);
        eprintln!("scrape from the slowloris address with {n} slow clients: {took:?}");
        assert_eq!(f.drops(DropReason::EvictedWaiting), evicted + 1);
        assert_eq!(f.all_drops(), n - MAX_PER_PEER + 1);
        // The others still wait for their heads (up to HEAD_TIMEOUT).
        let open = slow
            .iter_mut()
            .filter_map(|s| (!closed(s, Duration::from_millis(200))).then_some(()))
            .count();
        assert_eq!(open, MAX_PER_PEER - 1);
    }

    /// (ii) Clients that ask for a large answer and never read it: one host holds at most
    /// `MAX_PER_PEER` slots (the others are refused or evict its stalled ones), so another
    /// host is served at once; once they have stalled for `STALL_GRACE`, a scraper from the
    /// same address evicts one and is served too.
    #[test]
    fn clients_that_never_read_cannot_keep_a_scraper_out() {
        let f = Fixture::tcp();
        let n = MAX_CONNECTIONS + 4;
        let stalled: Vec<TcpStream> = (0..n)
            .map(|_| non_reader(ATTACKER, f.addr, "/big"))
            .collect();
        scrape(OTHER, f.addr);
        // Each client over the address's share was refused, or pushed out one of its own.
        wait_until("every non-reader admitted or refused", || {
            f.drops(DropReason::PeerLimit)
                + f.drops(DropReason::EvictedWaiting)
                + f.drops(DropReason::EvictedStalled)
                == n - MAX_PER_PEER
        });
        // The scraper's finished connection is let go a moment after its answer.
        wait_until("only the admitted non-readers open", || {
            f.server.open_connections() == MAX_PER_PEER
        });
        std::thread::sleep(STALL_GRACE + Duration::from_millis(300));
        let evicted_before = f.drops(DropReason::EvictedStalled);
        // The stall clock starts when the server's write blocks, which a loaded machine may
        // delay past the sleep above: until then a newcomer from that address is refused
        // (counted as such), after it one is admitted by pushing out a stalled connection.
        let start = Instant::now();
        loop {
            let (took, answer) = exchange(ATTACKER, f.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            if answer.starts_with(b"HTTP/1.1 200 OK\r\n") {
                eprintln!(
                    "scrape from the non-readers' address: {took:?} after {:?}",
                    start.elapsed()
                );
                break;
            }
            assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
            assert!(start.elapsed() < Duration::from_secs(10), "never admitted");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(f.drops(DropReason::EvictedStalled), evicted_before + 1);
        assert_eq!(f.drops(DropReason::Full), 0);
        drop(stalled);
    }

    /// (iii) A flood of connections opened and closed as fast as possible, some sending
    /// garbage, invalid HTTP, half a head, or a request whose answer they never read, some
    /// reset: a scraper every 100 ms is answered every time, promptly.
    #[test]
    fn a_connect_flood_does_not_delay_scrapes() {
        let f = Fixture::tcp();
        let addr = f.addr;
        let stop = Arc::new(AtomicBool::new(false));
        let flooders: Vec<_> = (0..3)
            .map(|t| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let (mut made, mut failed) = (0usize, 0usize);
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(mut s) = flood_connect(addr) else {
                            // Out of ephemeral ports for a moment: not the server's doing.
                            failed += 1;
                            std::thread::sleep(Duration::from_millis(1));
                            continue;
                        };
                        made += 1;
                        let _ = match (made + t) % 6 {
                            0 => Ok(()),
                            1 => s.write_all(&[0xA5; 1024]),
                            2 => s.write_all(b"NOT HTTP AT ALL\r\n\r\n"),
                            3 => s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n"),
                            4 => s.write_all(b"GET / HTTP/1.1\r\nHos"),
                            _ => socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)),
                        };
                        drop(s);
                    }
                    (made, failed)
                })
            })
            .collect();
        // Bursts of connections opened at once (non-blocking connects), more than a default
        // accept queue (128) holds: without a deeper one, the scraper's SYN is dropped with
        // theirs and retried only after a second.
        let burster = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut made = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let burst: Vec<socket2::Socket> = (0..BURST)
                        .filter_map(|_| {
                            let s = try_bound_socket(FLOODER, |_| {}).ok()?;
                            s.set_nonblocking(true).ok()?;
                            // Loopback completes the handshake within connect, or drops the SYN.
                            let _ = s.connect(&addr.into());
                            Some(s)
                        })
                        .collect();
                    made += burst.len();
                    std::thread::sleep(Duration::from_millis(20));
                    drop(burst);
                }
                made
            })
        };
        let start = Instant::now();
        let mut latencies = Vec::new();
        while start.elapsed() < Duration::from_secs(4) {
            latencies.push(scrape(OTHER, addr));
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
        let (made, failed) = flooders
            .into_iter()
            .map(|t| t.join().unwrap())
            .fold((0, 0), |(m, f), (tm, tf)| (m + tm, f + tf));
        let burst = burster.join().unwrap();
        let worst = latencies.iter().max().copied().unwrap_or_default();
        eprintln!(
            "{made} flood connections ({failed} connects failed) and {burst} in bursts of \
             {BURST}, {} scrapes, worst {worst:?}",
            latencies.len()
        );
        // Generous for a loaded machine: a starved accept loop can still let a SYN be dropped
        // (retried after 1 s; the_accept_queue_holds_a_burst checks the queue itself), but a
        // refused scrape fails at once and a head timeout takes 10 s.
        assert!(worst < FLOOD_WORST, "a scrape took {worst:?}");
        assert!(latencies.len() >= 20, "only {} scrapes", latencies.len());
        assert!(
            made >= 300 && made + burst >= 5_000,
            "the flood made only {made} + {burst} connections"
        );
        // Nothing is left behind.
        wait_until("every flood connection ended", || {
            f.server.open_connections() == 0
        });
    }

    /// While the server is too busy to accept, the kernel queues a burst of connections far
    /// longer than the metrics listener's own backlog (128) instead of dropping their SYNs
    /// (and a scraper's with them, retried only after a second).
    #[test]
    fn the_accept_queue_holds_a_burst() {
        // A runtime whose only worker is held, so that nothing is accepted during the burst.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (holding, started) = std::sync::mpsc::channel::<()>();
        runtime.spawn(async move {
            holding.send(()).unwrap();
            let _ = held.recv();
        });
        started.recv().unwrap();
        // Bound and listening as metrics::listen does.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        socket.listen(128).unwrap();
        let blocked = Arc::new(AtomicUsize::new(0));
        let server = Server::start(
            "test",
            Listener::Tcp(socket.into()),
            handler(&blocked),
            runtime.handle(),
        )
        .unwrap();
        let LocalAddr::Tcp(addr) = *server.local_addr() else {
            panic!()
        };
        let burst: Vec<socket2::Socket> = (0..BURST)
            .map(|_| {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .unwrap();
                s.set_nonblocking(true).unwrap();
                // In progress; on loopback the handshake completes at once unless the queue is
                // full.
                let _ = s.connect(&addr.into());
                s
            })
            .collect();
        // On loopback a queued handshake completes at once; a dropped SYN is sent again only
        // after a second, so polling for 900 ms cannot mistake a dropped one for a slow one.
        let start = Instant::now();
        let connected = loop {
            let connected = burst.iter().filter(|s| s.peer_addr().is_ok()).count();
            if connected == BURST || start.elapsed() > Duration::from_millis(900) {
                break connected;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        release.send(()).unwrap();
        assert_eq!(connected, BURST, "the accept queue held {connected}");
        drop(burst);
        server.shutdown();
    }

    /// Busy connections are never evicted: with every slot answering, a newcomer from a peer
    /// at its share, or from anywhere once the server is full, is closed at once.
    #[test]
    fn busy_connections_are_kept_and_newcomers_refused() {
        let f = Fixture::tcp();
        let peers = MAX_CONNECTIONS / MAX_PER_PEER;
        let mut busy: Vec<TcpStream> = (0..MAX_CONNECTIONS)
            .map(|i| {
                let from = [127, 0, 1, (i % peers) as u8 + 1];
                let mut s = connect_from(from, f.addr);
                s.write_all(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                s
            })
            .collect();
        wait_until("every slot busy", || f.blocked() == MAX_CONNECTIONS);
        let (_, answer) = exchange([127, 0, 1, 1], f.addr, b"GET / HTTP/1.1\r\n\r\n");
        assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
        assert_eq!(f.drops(DropReason::PeerLimit), 1);
        let (_, answer) = exchange([127, 0, 1, 99], f.addr, b"GET / HTTP/1.1\r\n\r\n");
        assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
        assert_eq!(f.drops(DropReason::Full), 1);
        assert_eq!(f.all_drops(), 2);
        for (i, s) in busy.iter_mut().enumerate() {
            assert!(!closed(s, Duration::from_millis(50)), "busy connection {i}");
        }
    }

    /// A full server makes room by evicting from the peer holding the most slots, not the
    /// connection that waited longest.
    #[test]
    fn a_full_server_evicts_from_the_heaviest_peer() {
        let f = Fixture::tcp();
        let heavy_peers = MAX_CONNECTIONS / MAX_PER_PEER - 1;
        let busy: Vec<TcpStream> = (0..heavy_peers * MAX_PER_PEER)
            .map(|i| {
                let mut s = connect_from([127, 0, 1, (i % heavy_peers) as u8 + 1], f.addr);
                s.write_all(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                s
            })
            .collect();
        wait_until("the busy slots", || f.blocked() == busy.len());
        // The longest waiting connection is a light peer's...
        let mut light = connect_from([127, 0, 2, 1], f.addr);
        wait_until("the light peer admitted", || {
            f.server.open_connections() == busy.len() + 1
        });
        // ...and a heavier peer fills the last slots.
        let mut heavy: Vec<TcpStream> = (0..MAX_PER_PEER - 1)
            .map(|_| connect_from([127, 0, 2, 2], f.addr))
            .collect();
        wait_until("the server full", || {
            f.server.open_connections() == MAX_CONNECTIONS
        });
        scrape([127, 0, 2, 3], f.addr);
        assert_eq!(f.drops(DropReason::EvictedWaiting), 1);
        assert!(closed(&mut heavy[0], Duration::from_secs(5)));
        assert!(!closed(&mut heavy[1], Duration::from_millis(50)));
        assert!(!closed(&mut light, Duration::from_millis(50)));
        drop(busy);
    }

    /// A newcomer whose peer holds as many slots as the only peer with a waiting connection
    /// may not push it out: it is refused; a lighter newcomer evicts.
    #[test]
    fn a_peer_cannot_push_out_an_equally_light_one() {
        let f = Fixture::tcp();
        let heavy_peers = MAX_CONNECTIONS / MAX_PER_PEER - 1;
        let block = |from: [u8; 4]| {
            let mut s = connect_from(from, f.addr);
            s.write_all(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s
        };
        let mut busy: Vec<TcpStream> = (0..heavy_peers * MAX_PER_PEER)
            .map(|i| block([127, 0, 1, (i % heavy_peers) as u8 + 1]))
            .collect();
        let pair = MAX_CONNECTIONS - busy.len();
        assert!(pair >= 2 && pair.is_multiple_of(2) && pair / 2 < MAX_PER_PEER);
        busy.extend((0..pair / 2).map(|_| block([127, 0, 3, 1])));
        wait_until("the busy slots", || f.blocked() == busy.len());
        let mut waiting: Vec<TcpStream> = (0..pair / 2)
            .map(|_| connect_from([127, 0, 3, 2], f.addr))
            .collect();
        wait_until("the server full", || {
            f.server.open_connections() == MAX_CONNECTIONS
        });
        let (_, answer) = exchange([127, 0, 3, 1], f.addr, b"GET / HTTP/1.1\r\n\r\n");
        assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
        assert_eq!(f.drops(DropReason::Full), 1);
        scrape([127, 0, 3, 3], f.addr);
        assert_eq!(f.drops(DropReason::EvictedWaiting), 1);
        assert!(closed(&mut waiting[0], Duration::from_secs(5)));
        assert!(!closed(&mut waiting[1], Duration::from_millis(50)));
        drop(busy);
    }

    /// Unix clients are one peer per uid: this process's clients share `MAX_PER_PEER` slots.
    #[test]
    fn unix_clients_of_one_user_are_one_peer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("http.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let f = Fixture::start(Listener::Unix(listener, path.clone()), CONNECTION_DEADLINE);
        let idle: Vec<std::os::unix::net::UnixStream> = (0..MAX_PER_PEER + 2)
            .map(|_| std::os::unix::net::UnixStream::connect(&path).unwrap())
            .collect();
        wait_until("two turned away", || f.all_drops() == 2);
        wait_until("MAX_PER_PEER connections open", || {
            f.server.open_connections() == MAX_PER_PEER
        });
        // Once the idle ones have had their grace, a client of the same user gets in.
        std::thread::sleep(HEAD_GRACE);
        let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"));
        drop(idle);
    }

    #[test]
    fn clients_that_never_read_the_answer_are_cut_off_at_the_deadline() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let deadline = Duration::from_millis(500);
        let f = Fixture::start(Listener::Tcp(listener), deadline);
        let mut stalled = non_reader(ATTACKER, f.addr, "/big");
        let start = Instant::now();
        wait_until("the deadline", || f.drops(DropReason::Deadline) == 1);
        assert!(start.elapsed() + Duration::from_millis(100) >= deadline);
        wait_until("0 connections open", || f.server.open_connections() == 0);
        // What was sent before the cut is readable; then the connection ends, incomplete.
        stalled
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = Vec::new();
        let _ = stalled.read_to_end(&mut answer);
        assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(answer.len() < BIG, "{} bytes", answer.len());
    }

    #[test]
    fn shutdown_ends_stalled_connections_without_counting_them() {
        let f = Fixture::tcp();
        let mut slow = connect_from(ATTACKER, f.addr);
        slow.write_all(b"GET / HT").unwrap();
        let mut busy = connect_from(OTHER, f.addr);
        busy.write_all(b"GET /block HTTP/1.1\r\n\r\n").unwrap();
        wait_until("both admitted", || f.blocked() == 1);
        let start = Instant::now();
        let drops = Arc::clone(&f.drops);
        f.server.shutdown();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(closed(&mut slow, Duration::from_secs(5)));
        assert!(closed(&mut busy, Duration::from_secs(5)));
        assert_eq!(
            drops
                .iter()
                .map(|d| d.load(Ordering::SeqCst))
                .sum::<usize>(),
            0
        );
    }
}
