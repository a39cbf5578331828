//! The sweep source: full sock_diag dumps, AF_INET6 then AF_INET, every poll interval, over one
//! long-lived socket per watched network namespace (D13). A failed dump is counted and reported
//! as such, never as an empty dump (D12). Its cost grows with the number of namespaces: each
//! dump walks the kernel's socket hash (SPEC §13.6), whichever namespace asks.

use super::{Input, Ticker};
use crate::metrics::{AddressFamily, DumpFailure, ErrorType, Metrics, SweepKind};
use crate::namespaces::{NetnsId, NetnsSweep, Table};
use crate::record::Timestamp;
use crate::sockdiag::{DiagSocket, DumpError, Family, FamilyDump, Payloads};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Settings of the sweep loop.
#[derive(Debug, Clone, Copy)]
pub struct SweepConfig {
    /// Time between the starts of two cycles (a ticker: missed ticks are dropped).
    pub interval: Duration,
    /// Cycles to run; 0 = until stopped.
    pub reps: u64,
    /// Sweeps that may wait for the pipeline; the next dump waits while this many are queued
    /// (upstream's queue depth is 2). The channel itself is unbounded so that the close source
    /// never blocks behind sweeps.
    pub max_queued: usize,
}

/// Runs the sweep loop until `stop` is set, the pipeline hangs up, or `reps` cycles ran (then
/// it sends [`Input::Finished`]).
/// `queued` counts the sweeps sent and not yet consumed; the pipeline decrements it.
pub fn run(
    mut sockets: Table<DiagSocket>,
    config: SweepConfig,
    tx: &Sender<Input>,
    queued: &AtomicUsize,
    stop: &CancellationToken,
    metrics: &Arc<Metrics>,
) {
    let mut ticker = Ticker::new(config.interval, config.reps);
    let mut sizes = DumpSizes::default();
    while !stop.is_cancelled() {
        if queued.load(Ordering::Acquire) >= config.max_queued {
            // The pipeline is behind: wait, as upstream's polling blocks on a full queue.
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        for (netns, _socket) in sockets.update().removed {
            sizes.forget(netns);
        }
        let dumps = sweep(sockets.iter_mut(), &mut sizes, SweepKind::Poll, metrics);
        queued.fetch_add(1, Ordering::AcqRel);
        if tx.send(Input::Sweep(dumps)).is_err() {
            return;
        }
        if ticker.cycle_done(tx) {
            return;
        }
        ticker.wait();
    }
}

/// Sizes of the last successful dump of each family (AF_INET6, AF_INET) of each namespace, to
/// allocate the next one's buffers once instead of growing them.
#[derive(Debug, Default)]
pub(crate) struct DumpSizes(HashMap<NetnsId, [(usize, usize); 2]>);

impl DumpSizes {
    /// Drops what is known of a namespace no longer watched.
    pub(super) fn forget(&mut self, netns: NetnsId) {
        self.0.remove(&netns);
    }
}

/// One sweep (one cycle, counted once) of the given namespaces, each AF_INET6 then AF_INET
/// (SPEC §3.4), each dump timed. The connection count of each family is the sum over the
/// namespaces whose dump of it succeeded.
pub(crate) fn sweep<'a>(
    sockets: impl Iterator<Item = (NetnsId, &'a mut DiagSocket)>,
    sizes: &mut DumpSizes,
    kind: SweepKind,
    metrics: &Metrics,
) -> Vec<NetnsSweep> {
    metrics.sweeps.get(kind).inc();
    let mut counts: [Option<usize>; 2] = [None; 2];
    let swept = sockets
        .map(|(netns, socket)| {
            let sizes = sizes.0.entry(netns).or_default();
            let families = [Family::Inet6, Family::Inet]
                .into_iter()
                .zip(sizes.iter_mut().zip(&mut counts))
                .map(|(family, (size, count))| {
                    let (dump, messages) = dump_family(socket, family, size, metrics);
                    if let Some(messages) = messages {
                        *count = Some(count.unwrap_or(0) + messages);
                    }
                    dump
                })
                .collect();
            NetnsSweep { netns, families }
        })
        .collect();
    for (family, count) in [AddressFamily::V6, AddressFamily::V4]
        .into_iter()
        .zip(counts)
    {
        if let Some(count) = count {
            metrics.connection_count.get(family).observe(count as f64);
        }
    }
    swept
}

/// One family's dump, timed. `size` holds the payload count and bytes of the previous
/// successful dump, and is updated. Returns the dump and, if it succeeded, its message count.
fn dump_family(
    socket: &mut DiagSocket,
    family: Family,
    size: &mut (usize, usize),
    metrics: &Metrics,
) -> (FamilyDump, Option<usize>) {
    let label = match family {
        Family::Inet => AddressFamily::V4,
        Family::Inet6 => AddressFamily::V6,
    };
    let start = Instant::now();
    // A little headroom so that a few new connections do not make the buffers grow.
    let mut payloads = Payloads::with_capacity(size.0 + size.0 / 8, size.1 + size.1 / 8);
    let result = socket.dump(family, &mut payloads);
    let timestamp = Timestamp::now();
    metrics
        .syscall_time
        .get(label)
        .observe(start.elapsed().as_secs_f64());
    let (payloads, messages) = match result {
        Ok(stats) => {
            *size = (payloads.len(), payloads.bytes_len());
            (Some(payloads), Some(stats.messages))
        }
        Err(e) => {
            count_failure(&e, metrics);
            tracing::warn!(?family, error = %e, "dump failed; keeping the previous state of this family");
            (None, None)
        }
    };
    let dump = FamilyDump {
        family,
        payloads,
        timestamp,
    };
    (dump, messages)
}

fn count_failure(e: &DumpError, metrics: &Metrics) {
    let (upstream, failure) = match e {
        DumpError::WrongSeq { .. } => (Some(ErrorType::WrongSeqNum), DumpFailure::Malformed),
        DumpError::WrongPid { .. } => (Some(ErrorType::WrongPid), DumpFailure::Malformed),
        DumpError::NlmsgError { .. } => (Some(ErrorType::NlmsgError), DumpFailure::NlmsgError),
        DumpError::Interrupted { .. } => (None, DumpFailure::Interrupted),
        DumpError::Overrun { .. } => (None, DumpFailure::Enobufs),
        DumpError::Send { .. } => (None, DumpFailure::Send),
        DumpError::Recv { .. } => (None, DumpFailure::Receive),
        DumpError::ShortError { .. }
        | DumpError::DoneError { .. }
        | DumpError::Frame { .. }
        | DumpError::Truncated { .. } => (None, DumpFailure::Malformed),
    };
    if let Some(kind) = upstream {
        metrics.errors.get(kind).inc();
    }
    metrics.dump_failures.get(failure).inc();
}
