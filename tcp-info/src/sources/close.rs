//! The close source: sock_diag TCP destroy notifications (the mechanism behind `ss -E`). Each
//! carries a socket's final `inet_diag_msg` and `tcp_info`, so every connection, however short,
//! ends with an exact final record and its file closes at once. Notifications are per network
//! namespace, so there is one listener per watched namespace; one `poll` waits on them all.
//!
//! When the namespace watcher removes a namespace, this source reads what its listener still
//! holds, then tells the pipeline the namespace is gone: its last connections end with their
//! final records, and only then are the rest closed.

use super::Input;
use crate::metrics::Metrics;
use crate::namespaces::{NetnsId, Table};
use crate::record::Timestamp;
use crate::sockdiag::{DestroyListener, Payloads, RecvOutcome};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long one receive waits, which bounds how long a stop request waits.
const POLL: Duration = Duration::from_millis(50);
/// Receive calls (each up to 1 024 datagrams) made after a stop to collect the notifications
/// already queued; bounds the drain if closes keep streaming in.
const MAX_DRAIN_CALLS: usize = 16;

/// Receives destroy notifications until `stop` is set or the pipeline hangs up. A receive-queue
/// overrun is counted; the sweeps that follow reconcile the lost closes. After a stop, the
/// notifications already queued are still read and sent, so that connections that ended before
/// the stop keep their exact final records.
pub fn run(
    mut listeners: Table<DestroyListener>,
    tx: &Sender<Input>,
    stop: &CancellationToken,
    metrics: &Arc<Metrics>,
) {
    let mut ready = Vec::new();
    while !stop.is_cancelled() {
        for (netns, mut listener) in listeners.update().removed {
            if drain(netns, &mut listener, tx, metrics).is_err()
                || tx.send(Input::NetnsRemoved { netns }).is_err()
            {
                return;
            }
        }
        if !wait(&mut listeners, &mut ready) {
            continue;
        }
        let mut failed = false;
        for &netns in &ready {
            let Some(listener) = listeners.get_mut(netns) else {
                continue;
            };
            match receive(netns, listener, tx, metrics) {
                Pass::HungUp => return,
                Pass::Failed => failed = true,
                Pass::Idle | Pass::Received => {}
            }
        }
        if failed {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    for (netns, listener) in listeners.iter_mut() {
        if drain(netns, listener, tx, metrics).is_err() {
            return;
        }
    }
}

/// Waits up to [`POLL`] for any listener to become readable; fills `ready` with their
/// namespaces and returns whether there are any.
fn wait(listeners: &mut Table<DestroyListener>, ready: &mut Vec<NetnsId>) -> bool {
    ready.clear();
    if listeners.is_empty() {
        std::thread::sleep(POLL);
        return false;
    }
    let (ids, mut fds): (Vec<NetnsId>, Vec<PollFd<'_>>) = listeners
        .iter_mut()
        .map(|(netns, l)| (netns, PollFd::new(l.as_fd(), PollFlags::POLLIN)))
        .unzip();
    let timeout = PollTimeout::try_from(POLL.as_millis()).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, timeout) {
        Ok(0) | Err(nix::errno::Errno::EINTR) => return false,
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "polling the destroy listeners failed; retrying");
            std::thread::sleep(POLL);
            return false;
        }
    }
    let readable = fds.iter().map(|fd| fd.any().unwrap_or(true));
    ready.extend(
        ids.iter()
            .zip(readable)
            .filter_map(|(&id, r)| r.then_some(id)),
    );
    !ready.is_empty()
}

/// Reads and sends the notifications already queued on `listener` (bounded by
/// [`MAX_DRAIN_CALLS`]); `Err` if the pipeline is gone.
fn drain(
    netns: NetnsId,
    listener: &mut DestroyListener,
    tx: &Sender<Input>,
    metrics: &Metrics,
) -> Result<(), ()> {
    for _ in 0..MAX_DRAIN_CALLS {
        match receive(netns, listener, tx, metrics) {
            Pass::HungUp => return Err(()),
            Pass::Received => {}
            Pass::Idle | Pass::Failed => return Ok(()),
        }
    }
    Ok(())
}

/// What one [`receive`] call did.
enum Pass {
    /// Nothing was waiting.
    Idle,
    /// Notifications were read (and any destroy payloads sent).
    Received,
    /// The listener failed (logged); payloads read before the failure were sent.
    Failed,
    /// The pipeline is gone.
    HungUp,
}

/// Reads what is queued on `netns`'s listener and sends its payloads to the pipeline.
fn receive(
    netns: NetnsId,
    listener: &mut DestroyListener,
    tx: &Sender<Input>,
    metrics: &Metrics,
) -> Pass {
    let mut payloads = Payloads::new();
    let pass = match listener.recv(Duration::ZERO, &mut payloads) {
        Ok(RecvOutcome::TimedOut) => Pass::Idle,
        Ok(RecvOutcome::Received(_)) => Pass::Received,
        Ok(RecvOutcome::Overrun { received }) => {
            metrics.destroy_overruns.inc();
            tracing::warn!(
                received,
                "destroy notifications lost to a receive-buffer overrun; sweeps will reconcile"
            );
            Pass::Received
        }
        Err(e) => {
            tracing::error!(netns, error = %e, "destroy listener failed; retrying");
            Pass::Failed
        }
    };
    // Known once the overrun's queue has been drained, over one call or several.
    let lost = listener.take_lost();
    if lost > 0 {
        metrics.destroy_notifications_lost.inc_by(lost);
        tracing::debug!(netns, lost, "destroy notifications dropped by the kernel");
    }
    if payloads.is_empty() {
        return pass;
    }
    let input = Input::Destroyed {
        netns,
        payloads,
        timestamp: Timestamp::now(),
    };
    if tx.send(input).is_err() {
        return Pass::HungUp;
    }
    pass
}
