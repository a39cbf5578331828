//! The close source: sock_diag TCP destroy notifications (the mechanism behind `ss -E`). Each
//! carries a socket's final `inet_diag_msg` and `tcp_info`, so every connection, however short,
//! ends with an exact final record and its file closes at once.

use super::Input;
use crate::metrics::Metrics;
use crate::netlink::{DestroyListener, RecvOutcome};
use crate::record::Timestamp;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

/// How long one receive waits, which bounds how long a stop request waits.
const POLL: Duration = Duration::from_millis(50);

/// Receives destroy notifications until `stop` is set or the pipeline hangs up. A receive-queue
/// overrun is counted; the sweeps that follow reconcile the lost closes.
pub fn run(
    mut listener: DestroyListener,
    tx: &Sender<Input>,
    stop: &AtomicBool,
    metrics: &Arc<Metrics>,
) {
    while !stop.load(Ordering::Relaxed) {
        let mut payloads = Vec::new();
        match listener.recv(POLL, &mut payloads) {
            Ok(RecvOutcome::TimedOut) => continue,
            Ok(RecvOutcome::Received(_)) => {}
            Ok(RecvOutcome::Overrun { received }) => {
                metrics.destroy_overruns.inc();
                tracing::warn!(
                    received,
                    "destroy notifications lost to a receive-buffer overrun; sweeps will reconcile"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "destroy listener failed; retrying");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        }
        if payloads.is_empty() {
            continue;
        }
        let input = Input::Destroyed {
            payloads,
            timestamp: Timestamp::now(),
        };
        if tx.send(input).is_err() {
            return;
        }
    }
}
