//! The sweep source: full sock_diag dumps, AF_INET6 then AF_INET, every poll interval, over one
//! long-lived socket (D13). A failed dump is counted and reported as such, never as an empty
//! dump (D12).

use super::{FamilyDump, Input, Ticker};
use crate::metrics::{AddressFamily, DumpFailure, ErrorType, Metrics, SweepKind};
use crate::record::Timestamp;
use crate::sockdiag::{DiagSocket, DumpError, Family, Payloads};
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
    mut socket: DiagSocket,
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
        let dumps = sweep_once(&mut socket, &mut sizes, SweepKind::Poll, metrics);
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

/// Sizes of the last successful dump of each family (AF_INET6, AF_INET), to allocate the next
/// one's buffers once instead of growing them.
#[derive(Debug, Default)]
pub(super) struct DumpSizes([(usize, usize); 2]);

/// One full sweep, AF_INET6 then AF_INET (SPEC §3.4), each family timed and counted.
pub(super) fn sweep_once(
    socket: &mut DiagSocket,
    sizes: &mut DumpSizes,
    kind: SweepKind,
    metrics: &Metrics,
) -> Vec<FamilyDump> {
    metrics.sweeps.get(kind).inc();
    [Family::Inet6, Family::Inet]
        .into_iter()
        .zip(&mut sizes.0)
        .map(|(family, size)| dump_family(socket, family, size, metrics))
        .collect()
}

/// One family's dump, timed and counted. `size` holds the payload count and bytes of the previous
/// successful dump, and is updated.
fn dump_family(
    socket: &mut DiagSocket,
    family: Family,
    size: &mut (usize, usize),
    metrics: &Metrics,
) -> FamilyDump {
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
    let payloads = match result {
        Ok(stats) => {
            *size = (payloads.len(), payloads.bytes_len());
            metrics
                .connection_count
                .get(label)
                .observe(stats.messages as f64);
            Some(payloads)
        }
        Err(e) => {
            count_failure(&e, metrics);
            tracing::warn!(?family, error = %e, "dump failed; keeping the previous state of this family");
            None
        }
    };
    FamilyDump {
        family,
        payloads,
        timestamp,
    }
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
