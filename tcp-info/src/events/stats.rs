//! Counters of the event socket, for the metrics exporter.
//!
//! Every copy of an event offered to a client ends up either written in full
//! ([`EventStats::events_written`]) or dropped ([`EventStats::events_dropped`]); the difference
//! while running is what still sits in client queues.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the event socket counters. All are totals since start except
/// `clients_connected`, which is a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventStats {
    /// Clients connected now.
    pub clients_connected: u64,
    /// Clients accepted since start. A client is counted once it is registered: every event
    /// published after the count includes it is offered to it.
    pub clients_accepted: u64,
    /// Clients refused because [`max_clients`](super::EventServerConfig::max_clients) were
    /// already connected: accepted and closed at once.
    pub clients_refused: u64,
    /// Clients disconnected because they fell behind: their queue was full, or a write made no
    /// progress within the write timeout (D8).
    pub clients_dropped_lag: u64,
    /// Clients disconnected because they sent more than
    /// 4 KiB (`MAX_CLIENT_BYTES`): clients never send (§7.1).
    pub clients_dropped_input: u64,
    /// Clients gone for any other reason: they hung up, a write failed, or the server shut down.
    pub clients_closed: u64,
    /// Calls to [`publish`](super::EventServer::publish).
    pub events_published: u64,
    /// Event lines written in full to a client (one per client per event).
    pub events_written: u64,
    /// Event lines accepted for a client but never written to it, because the client was
    /// dropped, failed, or was cut off by the shutdown deadline.
    pub events_dropped: u64,
}

/// The live counters, shared by the server, its tasks and any [`EventStatsReader`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) clients_connected: AtomicU64,
    pub(super) clients_accepted: AtomicU64,
    pub(super) clients_refused: AtomicU64,
    pub(super) clients_dropped_lag: AtomicU64,
    pub(super) clients_dropped_input: AtomicU64,
    pub(super) clients_closed: AtomicU64,
    pub(super) events_published: AtomicU64,
    pub(super) events_written: AtomicU64,
    pub(super) events_dropped: AtomicU64,
}

impl Counters {
    pub(super) fn add(counter: &AtomicU64, n: usize) {
        if n > 0 {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> EventStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EventStats {
            clients_connected: get(&self.clients_connected),
            clients_accepted: get(&self.clients_accepted),
            clients_refused: get(&self.clients_refused),
            clients_dropped_lag: get(&self.clients_dropped_lag),
            clients_dropped_input: get(&self.clients_dropped_input),
            clients_closed: get(&self.clients_closed),
            events_published: get(&self.events_published),
            events_written: get(&self.events_written),
            events_dropped: get(&self.events_dropped),
        }
    }
}

/// A cheap, cloneable handle to the counters of one [`EventServer`](super::EventServer), for a
/// metrics exporter running on another thread. It stays valid after the server is shut down.
#[derive(Debug, Clone)]
pub struct EventStatsReader(pub(super) Arc<Counters>);

impl EventStatsReader {
    /// The current values.
    pub fn snapshot(&self) -> EventStats {
        self.0.snapshot()
    }
}
