//! The eBPF source (DESIGN §1): every poll interval it drains the marks the kernel programs made
//! (sockets whose statistics changed, at most one mark per socket per interval), asks the
//! kernel for exactly those sockets with batched exact inet_diag queries (SPEC §13), and hands
//! the checked replies to the pipeline. Its cost follows activity, not the number of sockets.
//!
//! - **Follow-up.** The kernel rate-limits marks, so a burst of segments right after a mark is
//!   not marked again. Every socket found through a mark is therefore queried once more in the
//!   first round at least an interval after its last mark: that query sees the end of the
//!   burst. A steadily busy socket is marked every interval anyway; an idle one costs nothing.
//! - **Back-pressure.** Replies go to the pipeline as [`Input::Refreshed`], counted in `queued`
//!   like sweeps. While the pipeline is `max_queued` inputs behind, rounds still drain the ring
//!   buffer (so that no mark is lost) but only merge the marks by socket; the queries are made
//!   once the pipeline has caught up, one per socket however many marks it got meanwhile.
//! - **Safety net.** Full sweeps still run, rarely (`safety_interval`; idle namespaces far more
//!   rarely, see `super::safety`), and first at start-up so
//!   that connections that exist before the daemon (and never change) are recorded. They catch
//!   what marks cannot: connections that stay in SYN_SENT, and changes a lost mark (ring buffer
//!   full, counted) did not report, and closes a destroy-listener overrun lost (after an
//!   overrun every namespace is swept every interval for a while). The pipeline counts what
//!   they find.
//! - New connections are found by their state-change marks, closed ones by the close source.
//! - **Reading the ring buffer.** Each round drains the ring (memory reads, no system call), on
//!   this source's own clock. Between rounds, a burst is handled by a task on the daemon's tokio
//!   runtime ([`start`]): it waits on the ring's descriptor (`AsyncFd`), which the programs make
//!   readable only when the ring fills past a quarter, drains it at once and hands the marks
//!   to the next round. A burst is thus moved out of the 4 MiB ring long before it fills,
//!   while a quiet host costs no wake-up at all beyond the rounds'. The rounds, which make
//!   blocking netlink queries, stay on this source's own thread ([`run`]).
//! - **Namespaces.** Each mark names its socket's network namespace; the exact query goes to
//!   that namespace's socket. The programs mark only the namespaces this source watches: when
//!   the namespace watcher adds one, it is watched from then on and swept at once (its sockets
//!   from before are recorded by that sweep); when one is removed, its marks are dropped.

use super::safety::SafetyNet;
use super::sweep::{DumpSizes, sweep};
use super::{Input, Ticker};
use crate::ebpf::{KernelCounters, MarkRing, Programs, error_chain};
use crate::metrics::{ExactQueryOutcome, KernelDrop, Metrics, SweepKind};
use crate::namespaces::{NetnsId, Table};
use crate::record::Timestamp;
use crate::sockdiag::{Checked, DiagSocket, ExactReply, ExactTarget, Family, Payloads};
use crate::wire::inet_diag;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tcp_info_common::Mark;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;

/// Batches of marks the burst reader may hand over between two rounds.
const MARK_BATCHES: usize = 64;
/// Marks the burst reader holds while the rounds do not take its batches, before it stops
/// draining (and the ring, then the kernel's drop counter, absorb the rest): about 17 MB.
const MAX_HELD_MARKS: usize = 1 << 18;

/// How often the kernel-side counters are read.
const COUNTERS_EVERY: Duration = Duration::from_secs(1);

/// Settings of the eBPF source.
#[derive(Debug, Clone, Copy)]
pub struct EbpfConfig {
    /// How often marks are drained and queried (the programs mark a socket at most this often).
    pub interval: Duration,
    /// Time between safety-net sweeps (of the own namespace and of namespaces with marks).
    pub safety_interval: Duration,
    /// The daemon's own namespace: swept every `safety_interval` whatever its marks.
    pub own_netns: NetnsId,
    /// Rounds to run; 0 = until stopped.
    pub reps: u64,
    /// Inputs (refreshes and sweeps) that may wait for the pipeline; beyond, rounds only merge
    /// marks.
    pub max_queued: usize,
    /// The pipeline's close grace (`Duration::ZERO` without a close source). When the close
    /// source counts an overrun (`tcpinfo_destroy_listener_overruns_total`), closes were lost
    /// in some namespace: every namespace is swept at the next round and every safety interval
    /// until a sweep more than the grace later (`super::safety`), so that the connections
    /// whose notification was lost are closed after the grace, not at an idle namespace's next
    /// sweep minutes later.
    pub close_grace: Duration,
}

/// What the source reads from the kernel programs: their counters, their ring buffer, and the
/// marks the burst reader took off it between rounds. Made by [`start`].
#[derive(Debug)]
pub struct Kernel {
    programs: Programs,
    ring: Arc<Mutex<MarkRing>>,
    early: Receiver<Vec<Mark>>,
}

/// Takes the programs' ring buffer and starts its burst reader on `runtime` (until `stop` is
/// cancelled; `interval` paces its retries when the rounds fall behind); returns what [`run`]
/// needs.
pub fn start(
    mut programs: Programs,
    interval: Duration,
    runtime: &tokio::runtime::Handle,
    stop: CancellationToken,
) -> std::io::Result<Kernel> {
    let ring = programs.take_marks().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "the eBPF ring buffer already has a reader",
        )
    })?;
    let ring = Arc::new(Mutex::new(ring));
    let readiness = pollable(&ring, runtime)?;
    let (batches, early) = std::sync::mpsc::sync_channel(MARK_BATCHES);
    runtime.spawn(drain_bursts(
        readiness,
        Arc::clone(&ring),
        interval,
        batches,
        stop,
    ));
    Ok(Kernel {
        programs,
        ring,
        early,
    })
}

/// Locks the ring, ignoring poisoning: draining leaves it consistent whatever happened.
fn lock(ring: &Mutex<MarkRing>) -> MutexGuard<'_, MarkRing> {
    ring.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Moves every mark waiting in the ring to `out` (for the rounds and the burst task alike),
/// logging records of an unexpected size, which are skipped.
fn drain_ring(ring: &Mutex<MarkRing>, out: &mut Vec<Mark>) {
    let (_, malformed) = lock(ring).drain(out);
    if malformed > 0 {
        tracing::warn!(
            malformed,
            "ring buffer records of an unexpected size skipped"
        );
    }
}

/// The ring's descriptor, for readiness only; it keeps the ring (and so the descriptor) alive.
struct RingFd {
    fd: RawFd,
    _ring: Arc<Mutex<MarkRing>>,
}

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

/// A socket to query.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Its namespace: whose socket asks.
    netns: NetnsId,
    target: ExactTarget,
    /// Its first and last marks since its last query (`CLOCK_MONOTONIC` ns), `None` for a
    /// follow-up.
    marked_ns: Option<(u64, u64)>,
}

/// The state kept between rounds, with buffers reused from one round to the next.
#[derive(Debug, Default)]
struct Refresher {
    marks: Vec<Mark>,
    /// Sockets to query, by cookie; kept across rounds while the pipeline is behind.
    pending: HashMap<u64, Pending>,
    order: Vec<(u64, Pending)>,
    targets: Vec<ExactTarget>,
    replies: Vec<ExactReply>,
    /// Sockets found through a mark, to query once more when their follow-up is due
    /// (`CLOCK_MONOTONIC` ns: an interval after their last mark).
    follow_ups: HashMap<u64, (NetnsId, ExactTarget, u64)>,
    counters: KernelCounters,
}

/// Runs until `stop` is set, the pipeline hangs up, or `reps` rounds ran (then it sends
/// [`Input::Finished`]).
pub fn run(
    kernel: &mut Kernel,
    mut sockets: Table<DiagSocket>,
    config: EbpfConfig,
    tx: &Sender<Input>,
    queued: &AtomicUsize,
    stop: &CancellationToken,
    metrics: &Arc<Metrics>,
) {
    let mut state = Refresher::default();
    let mut sizes = DumpSizes::default();
    let start = Instant::now();
    let mut next_counters = start;
    let mut safety = SafetyNet::new(config.safety_interval, config.own_netns);
    for (netns, _) in sockets.iter_mut() {
        safety.add(netns, start);
    }
    let mut ticker = Ticker::new(config.interval, config.reps);
    let mut last_round_end: Option<Instant> = None;
    let interval_ns = u64::try_from(config.interval.as_nanos()).unwrap_or(u64::MAX);
    let mut destroy_overruns = metrics.destroy_overruns.get();
    while !stop.is_cancelled() {
        let added = state.follow_namespaces(kernel, &mut sockets, &mut sizes, &mut safety);
        if !added.is_empty() {
            // Sockets of a new namespace that existed before it was watched, and never change,
            // are recorded now rather than at the next safety-net sweep.
            let targets = sockets.iter_mut().filter(|(n, _)| added.contains(n));
            let dumps = sweep(targets, &mut sizes, SweepKind::SafetyNet, metrics);
            queued.fetch_add(1, Ordering::AcqRel);
            if tx.send(Input::Sweep(dumps)).is_err() {
                return;
            }
        }
        let behind = queued.load(Ordering::Acquire) >= config.max_queued;
        let round = state.round(kernel, &mut sockets, &mut safety, interval_ns, behind);
        if let Some(batches) = round.report(metrics) {
            let timestamp = Timestamp::now();
            queued.fetch_add(1, Ordering::AcqRel);
            if tx.send(Input::Refreshed { batches, timestamp }).is_err() {
                return;
            }
        }
        let now = Instant::now();
        // The close source's counter, read here (an atomic load) rather than sent, since it is
        // only a hint: the sweeps find what the lost notifications would have said.
        let overruns = metrics.destroy_overruns.get();
        if overruns > destroy_overruns {
            safety.lost_closes(now, config.close_grace);
            destroy_overruns = overruns;
        }
        if queued.load(Ordering::Acquire) < config.max_queued {
            let due = safety.take_due(now);
            if !due.is_empty() {
                let targets = sockets.iter_mut().filter(|(n, _)| due.contains(n));
                let dumps = sweep(targets, &mut sizes, SweepKind::SafetyNet, metrics);
                queued.fetch_add(1, Ordering::AcqRel);
                if tx.send(Input::Sweep(dumps)).is_err() {
                    return;
                }
            }
        }
        if now >= next_counters {
            if state.export_counters(&kernel.programs, metrics) {
                safety.lost(now);
            }
            next_counters = now + COUNTERS_EVERY;
        }
        // The polling cycle of upstream's histogram: from the end of one round to the next's.
        let end = Instant::now();
        if let Some(previous) = last_round_end.replace(end) {
            metrics
                .polling_interval
                .observe(end.duration_since(previous).as_secs_f64());
        }
        if ticker.cycle_done(tx) {
            return;
        }
        ticker.wait();
    }
}

/// Drains the ring buffer whenever the programs signal that it is filling (a burst between two
/// rounds) and hands the marks to the next round, until `stop` is cancelled or the rounds hang
/// up.
///
/// Runs on the tokio runtime. If the rounds fall so far behind that their channel is full,
/// the marks wait here (retried every `interval`), up to [`MAX_HELD_MARKS`]; beyond that this
/// reader stops draining until the rounds catch up.
async fn drain_bursts(
    readiness: AsyncFd<RingFd>,
    ring: Arc<Mutex<MarkRing>>,
    interval: Duration,
    batches: SyncSender<Vec<Mark>>,
    stop: CancellationToken,
) {
    let mut held: Vec<Mark> = Vec::new();
    loop {
        let room = held.len() < MAX_HELD_MARKS;
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            ready = readiness.readable(), if room => match ready {
                Ok(mut guard) => guard.clear_ready(),
                Err(e) => {
                    // Only when the runtime is shutting down; the rounds still drain the ring.
                    tracing::warn!(error = %e, "polling the eBPF ring buffer failed; bursts wait for the next round");
                    return;
                }
            },
            () = tokio::time::sleep(interval), if !held.is_empty() => {}
        }
        if held.len() < MAX_HELD_MARKS {
            drain_ring(&ring, &mut held);
        }
        if held.is_empty() {
            continue;
        }
        match batches.try_send(std::mem::take(&mut held)) {
            Ok(()) => {}
            Err(TrySendError::Full(kept)) => held = kept,
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// Registers the ring buffer's descriptor with `runtime`'s reactor, for [`drain_bursts`].
fn pollable(
    ring: &Arc<Mutex<MarkRing>>,
    runtime: &tokio::runtime::Handle,
) -> std::io::Result<AsyncFd<RingFd>> {
    let _context = runtime.enter();
    let fd = RingFd {
        fd: lock(ring).as_raw_fd(),
        _ring: Arc::clone(ring),
    };
    // SAFETY: the descriptor belongs to the ring buffer map (aya's `MapData`, owned by the
    // `MarkRing`); `RingFd` holds the ring, so the descriptor stays open and the same for as
    // long as the `AsyncFd` that owns the `RingFd` lives.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(Into::into)
}

impl Refresher {
    /// Applies the namespace watcher's changes: the programs watch added namespaces and stop
    /// watching removed ones, whose pending queries are dropped. Returns the added ones.
    fn follow_namespaces(
        &mut self,
        kernel: &mut Kernel,
        sockets: &mut Table<DiagSocket>,
        sizes: &mut DumpSizes,
        safety: &mut SafetyNet,
    ) -> Vec<NetnsId> {
        let applied = sockets.update();
        for (netns, _socket) in &applied.removed {
            kernel.programs.unwatch(*netns);
            sizes.forget(*netns);
            safety.remove(*netns);
            self.pending.retain(|_, p| p.netns != *netns);
            self.follow_ups.retain(|_, f| f.0 != *netns);
        }
        for &netns in &applied.added {
            // Swept at once by the caller; then on the safety net's schedule.
            safety.just_swept(netns, Instant::now());
            if let Err(e) = kernel.programs.watch(netns) {
                // A full map (4 096 namespaces): its connections are left to the sweeps.
                tracing::warn!(netns, error = %error_chain(&e), "cannot watch a namespace with eBPF; safety-net sweeps only");
            }
        }
        applied.added
    }

    /// One round: drain and merge the marks; unless the pipeline is `behind`, add the due
    /// follow-ups, query every pending socket with its namespace's socket and check the
    /// replies.
    fn round(
        &mut self,
        kernel: &Kernel,
        sockets: &mut Table<DiagSocket>,
        safety: &mut SafetyNet,
        interval_ns: u64,
        behind: bool,
    ) -> Round {
        let mut round = Round::default();
        let now = Instant::now();
        self.marks.clear();
        // What the burst reader took first: those marks are older than the ring's.
        for early in kernel.early.try_iter() {
            self.marks.extend_from_slice(&early);
        }
        drain_ring(&kernel.ring, &mut self.marks);
        round.marks = self.marks.len();
        for mark in &self.marks {
            if sockets.get_mut(mark.netns).is_none() {
                // A namespace just removed (or not yet added): its sweep covers it.
                continue;
            }
            safety.marked(mark.netns, now);
            let Some(target) = target_of(mark) else {
                continue;
            };
            let at = mark.marked_ns;
            let entry = self.pending.entry(mark.cookie).or_insert(Pending {
                netns: mark.netns,
                target,
                marked_ns: None,
            });
            entry.target = target;
            entry.marked_ns = Some(entry.marked_ns.map_or((at, at), |(first, _)| (first, at)));
        }
        if behind {
            return round;
        }
        let now_ns = monotonic_ns();
        self.follow_ups
            .retain(|&cookie, &mut (netns, target, due)| {
                if due > now_ns {
                    return true;
                }
                self.pending.entry(cookie).or_insert(Pending {
                    netns,
                    target,
                    marked_ns: None,
                });
                false
            });
        if self.pending.is_empty() {
            return round;
        }
        self.order.clear();
        self.order.extend(self.pending.drain());
        self.order.sort_unstable_by_key(|(_, p)| p.netns);
        let mut start = 0;
        while let Some(&(_, first)) = self.order.get(start) {
            let len = self.order[start..]
                .iter()
                .take_while(|(_, p)| p.netns == first.netns)
                .count();
            if let Some(socket) = sockets.get_mut(first.netns) {
                self.query(socket, start..start + len, interval_ns, &mut round);
            }
            start += len;
        }
        round
    }

    /// Queries the pending sockets `self.order[range]`, all of one namespace, with that
    /// namespace's socket; adds the live ones' records to the round.
    fn query(
        &mut self,
        socket: &mut DiagSocket,
        range: std::ops::Range<usize>,
        interval_ns: u64,
        round: &mut Round,
    ) {
        let group = &self.order[range];
        let netns = group.first().map_or(0, |(_, p)| p.netns);
        self.targets.clear();
        self.targets.extend(group.iter().map(|(_, p)| p.target));
        self.replies.clear();
        match socket.query_exact(&self.targets, &mut self.replies) {
            Ok(stats) => {
                round.requests += stats.requests;
                round.batches += stats.batches;
                round.resent += stats.resent;
            }
            Err(e) => {
                tracing::warn!(netns, error = %e, targets = self.targets.len(), "exact queries failed");
                round.failed += self.targets.len();
                // Asked again next round.
                self.pending.extend(group.iter().copied());
                return;
            }
        }
        let now_ns = monotonic_ns();
        let mut payloads = Payloads::with_capacity(self.replies.len(), self.replies.len() * 1024);
        for reply in &self.replies {
            let Some(&(cookie, pending)) = group.get(reply.index) else {
                continue;
            };
            match pending.target.check(&reply.outcome) {
                Checked::Live(payload) => {
                    payloads.push(payload);
                    round.found += 1;
                    if let Some((first, last)) = pending.marked_ns {
                        round.latencies.push(now_ns.saturating_sub(first));
                        let due = last.saturating_add(interval_ns);
                        self.follow_ups.insert(cookie, (netns, pending.target, due));
                    }
                }
                Checked::Gone => round.gone += 1,
                Checked::Mismatch => round.mismatched += 1,
                Checked::Failed(_) => round.failed += 1,
            }
        }
        if !payloads.is_empty() {
            round.batches_out.push((netns, payloads));
        }
    }

    /// Adds what the kernel-side counters gained since the last read to the metrics; returns
    /// whether marks were lost meanwhile (a full ring, a failed read).
    fn export_counters(&mut self, programs: &Programs, metrics: &Metrics) -> bool {
        let now = match programs.counters() {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the eBPF counters");
                return false;
            }
        };
        let was = self.counters;
        for (reason, now, was) in [
            (KernelDrop::RingFull, now.ring_full, was.ring_full),
            (KernelDrop::MapFull, now.map_full, was.map_full),
            (KernelDrop::ReadFailed, now.read_failed, was.read_failed),
        ] {
            metrics
                .kernel_drops
                .get(reason)
                .inc_by(now.saturating_sub(was));
        }
        if now.ring_full > was.ring_full {
            tracing::warn!(
                lost = now.ring_full - was.ring_full,
                "marks lost to a full ring buffer; the safety-net sweep will catch up"
            );
        }
        let lost = now.ring_full > was.ring_full || now.read_failed > was.read_failed;
        self.counters = now;
        lost
    }
}

/// What one round did, for the metrics.
#[derive(Debug, Default)]
struct Round {
    marks: usize,
    /// Requests sent (re-sends included) and `sendmsg` calls, over every namespace.
    requests: usize,
    batches: usize,
    /// Requests sent again because their replies were lost to a receive-buffer overrun.
    resent: usize,
    found: u64,
    gone: u64,
    mismatched: u64,
    failed: usize,
    /// Mark-to-reply times (ns) of the marked sockets found.
    latencies: Vec<u64>,
    /// The live sockets' records, by namespace.
    batches_out: Vec<(NetnsId, Payloads)>,
}

impl Round {
    /// Counts the round in the metrics; returns the records to send, if any.
    fn report(self, metrics: &Metrics) -> Option<Vec<(NetnsId, Payloads)>> {
        metrics.marks.inc_by(self.marks as u64);
        let queries = &metrics.exact_queries;
        if self.batches > 0 {
            metrics
                .exact_batch_size
                .observe(self.requests as f64 / self.batches as f64);
            queries
                .get(ExactQueryOutcome::Lost)
                .inc_by(self.resent as u64);
        }
        queries.get(ExactQueryOutcome::Found).inc_by(self.found);
        queries.get(ExactQueryOutcome::NotFound).inc_by(self.gone);
        queries
            .get(ExactQueryOutcome::Mismatch)
            .inc_by(self.mismatched);
        queries
            .get(ExactQueryOutcome::Error)
            .inc_by(self.failed as u64);
        for ns in self.latencies {
            metrics.mark_latency.observe(ns as f64 / 1e9);
        }
        (!self.batches_out.is_empty()).then_some(self.batches_out)
    }
}

/// The exact query for a marked socket.
fn target_of(mark: &Mark) -> Option<ExactTarget> {
    let family = Family::from_af(u8::try_from(mark.family).ok()?)?;
    let ip = |bytes: &[u8; 16]| inet_diag::address(family.af(), bytes);
    Some(ExactTarget {
        family,
        local: SocketAddr::new(ip(&mark.local_addr), mark.local_port),
        remote: SocketAddr::new(ip(&mark.remote_addr), mark.remote_port),
        interface: mark.bound_if,
        cookie: Some(mark.cookie),
    })
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        u64::try_from(t.tv_sec())
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(t.tv_nsec()).unwrap_or(0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_of_marks() {
        let mut mark = Mark {
            cookie: 7,
            marked_ns: 1,
            netns: 1,
            bound_if: 3,
            family: 2,
            local_port: 80,
            remote_port: 40_000,
            state: 1,
            hook: 0,
            local_addr: [0; 16],
            remote_addr: [0; 16],
        };
        mark.local_addr[..4].copy_from_slice(&[10, 0, 0, 1]);
        mark.remote_addr[..4].copy_from_slice(&[10, 0, 0, 2]);
        let t = target_of(&mark).unwrap();
        assert_eq!(t.family, Family::Inet);
        assert_eq!(t.local, "10.0.0.1:80".parse().unwrap());
        assert_eq!(t.remote, "10.0.0.2:40000".parse().unwrap());
        assert_eq!((t.interface, t.cookie), (3, Some(7)));
        mark.family = 10;
        mark.local_addr = "::ffff:10.0.0.1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        mark.remote_addr = "fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let t = target_of(&mark).unwrap();
        assert_eq!(t.family, Family::Inet6);
        assert_eq!(t.local, "[::ffff:10.0.0.1]:80".parse().unwrap());
        assert_eq!(t.remote, "[fd00::2]:40000".parse().unwrap());
        mark.family = 1;
        assert!(target_of(&mark).is_none(), "AF_UNIX is not queried");
    }

    /// Marked sockets queried through a receive buffer far too small for their replies (the
    /// kernel's minimum, with a batch of 1 024): the overrun loses replies, they are asked
    /// again, every socket's record arrives exactly once, and the requests sent again are
    /// counted as `tcpinfo_exact_queries_total{outcome="lost"}`. Needs no eBPF: the queries
    /// are the source's own.
    #[test]
    fn an_overrun_of_exact_queries_is_counted_and_every_record_arrives() {
        use crate::sockdiag::testutil::{self, TestNetns, diag_cookie};
        let Some(ns) = TestNetns::create() else {
            return;
        };
        let set = testutil::connections(&ns, "127.0.0.1:0", 300);
        let mut socket = DiagSocket::open_in_netns(ns.path(), 1).unwrap();
        socket.set_batch_size(Some(1_024));
        let mut state = Refresher::default();
        let now = monotonic_ns();
        for c in &set.conns {
            for (s, cookie) in [(&c.client, c.client_cookie), (&c.server, c.server_cookie)] {
                let target = ExactTarget {
                    family: Family::Inet,
                    local: s.local_addr().unwrap(),
                    remote: s.peer_addr().unwrap(),
                    interface: 0,
                    cookie: Some(cookie),
                };
                let marked_ns = Some((now, now));
                let pending = Pending {
                    netns: 1,
                    target,
                    marked_ns,
                };
                state.order.push((cookie, pending));
            }
        }
        let n = state.order.len();
        let mut round = Round::default();
        state.query(&mut socket, 0..n, 10_000_000, &mut round);
        assert!(round.resent > 0, "the first batch must overrun: {round:?}");
        assert_eq!(round.requests, n + round.resent, "{round:?}");
        assert_eq!((round.found, round.failed), (n as u64, 0), "{round:?}");
        assert_eq!(
            state.follow_ups.len(),
            n,
            "each found socket is followed up"
        );
        assert!(state.pending.is_empty(), "nothing left to ask again");
        let resent = round.resent as u64;
        let metrics = Metrics::new("0").unwrap();
        let batches = round.report(&metrics).unwrap();
        let queries = &metrics.exact_queries;
        assert_eq!(queries.get(ExactQueryOutcome::Lost).get(), resent);
        assert_eq!(queries.get(ExactQueryOutcome::Found).get(), n as u64);
        assert_eq!(queries.get(ExactQueryOutcome::Error).get(), 0);
        assert_eq!(batches.len(), 1);
        let records = &batches[0].1;
        let cookies: std::collections::BTreeSet<u64> = records.iter().map(diag_cookie).collect();
        assert_eq!((records.len(), cookies.len()), (n, n), "each record once");
        assert!(state.order.iter().all(|(c, _)| cookies.contains(c)));
    }

    #[test]
    fn monotonic_clock_advances() {
        let a = monotonic_ns();
        std::thread::sleep(Duration::from_millis(2));
        assert!(monotonic_ns() >= a + 2_000_000);
    }
}

#[cfg(test)]
mod burst_tests {
    use super::*;
    use crate::ebpf::load_tests::can_load;
    use crate::ebpf::netns_inode;
    use crate::sockdiag::testutil::{self, TestNetns};
    use std::io::{Read as _, Write as _};
    use tcp_info_common::MARKS_BYTES;

    /// Marks that fill the ring past the level at which the programs wake its reader: a quarter
    /// of the ring, each mark taking its size plus the ring's 8-byte record header.
    fn marks_past_wake_level() -> u64 {
        let record = (size_of::<Mark>() + 8).next_multiple_of(8) as u64;
        u64::from(MARKS_BYTES) / 4 / record + 1
    }

    /// A trickle of marks wakes no one (the rounds drain it); a burst that fills the ring past a
    /// quarter wakes the burst task, which drains the ring at once and hands the marks over.
    #[test]
    fn a_burst_wakes_the_reader_and_a_trickle_does_not() {
        if !can_load() {
            return;
        }
        let Some(ns) = TestNetns::create() else {
            return;
        };
        let inode = netns_inode(ns.path()).unwrap();
        // A 1 ns mark interval: every segment marks its socket, so a burst is quick to make.
        let programs = Programs::load(Duration::from_nanos(1), &[inode], false).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let stop = CancellationToken::new();
        // An hour: the task's retry timer plays no part here.
        let kernel = start(
            programs,
            Duration::from_secs(3600),
            rt.handle(),
            stop.clone(),
        )
        .unwrap();

        let mut set = testutil::connections(&ns, "127.0.0.1:0", 1);
        let testutil::Conn { client, server, .. } = &mut set.conns[0];
        let mut ping_pong = |times: usize| {
            let mut byte = [0u8; 1];
            for _ in 0..times {
                client.write_all(b"x").unwrap();
                server.read_exact(&mut byte).unwrap();
                server.write_all(b"y").unwrap();
                client.read_exact(&mut byte).unwrap();
            }
        };

        // A trickle: the task is not woken, the marks wait in the ring for the next round.
        ping_pong(10);
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(300)).await });
        assert!(
            kernel.early.try_recv().is_err(),
            "a trickle woke the reader"
        );
        let mut trickle = Vec::new();
        lock(&kernel.ring).drain(&mut trickle);
        assert!(trickle.len() >= 10, "{} marks", trickle.len());

        // A burst past a quarter of the ring.
        let needed = marks_past_wake_level();
        while kernel.programs.counters().unwrap().submitted < needed + trickle.len() as u64 {
            ping_pong(500);
        }
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(300)).await });
        let burst = kernel
            .early
            .try_recv()
            .expect("the burst did not wake the reader");
        assert!(
            burst.len() as u64 >= needed,
            "{} marks handed over, {needed} expected",
            burst.len()
        );
        assert!(burst.iter().all(|m| m.netns == inode));
        assert_eq!(kernel.programs.counters().unwrap().ring_full, 0);
        stop.cancel();
    }
}
