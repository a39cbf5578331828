//! The close source: sock_diag TCP destroy notifications (the mechanism behind `ss -E`). Each
//! carries a socket's final `inet_diag_msg` and `tcp_info`, so every connection, however short,
//! ends with an exact final record and its file closes at once.

use super::Input;
use crate::metrics::Metrics;
use crate::record::Timestamp;
use crate::sockdiag::{DestroyListener, Payloads, RecvOutcome};
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
    mut listener: DestroyListener,
    tx: &Sender<Input>,
    stop: &CancellationToken,
    metrics: &Arc<Metrics>,
) {
    while !stop.is_cancelled() {
        match receive(&mut listener, POLL, tx, metrics) {
            Pass::HungUp => return,
            Pass::Failed => std::thread::sleep(Duration::from_millis(200)),
            Pass::Idle | Pass::Received => {}
        }
    }
    for _ in 0..MAX_DRAIN_CALLS {
        if !matches!(
            receive(&mut listener, Duration::ZERO, tx, metrics),
            Pass::Received
        ) {
            return;
        }
    }
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

/// Waits up to `timeout`, reads what is queued and sends its payloads to the pipeline.
fn receive(
    listener: &mut DestroyListener,
    timeout: Duration,
    tx: &Sender<Input>,
    metrics: &Metrics,
) -> Pass {
    let mut payloads = Payloads::new();
    let pass = match listener.recv(timeout, &mut payloads) {
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
            tracing::error!(error = %e, "destroy listener failed; retrying");
            Pass::Failed
        }
    };
    if payloads.is_empty() {
        return pass;
    }
    let input = Input::Destroyed {
        payloads,
        timestamp: Timestamp::now(),
    };
    if tx.send(input).is_err() {
        return Pass::HungUp;
    }
    pass
}
