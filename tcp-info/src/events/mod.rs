//! The event socket (SPEC §7): a Unix stream socket on which the daemon tells sidecars when a
//! connection opens and closes.
//!
//! - [`wire`]: the line format, byte-compatible with upstream ([`FlowEvent::encode`]), and a
//!   decoder as lenient as the Go client library ([`FlowEvent::decode`]).
//! - [`EventServer`]: listens at the configured path and broadcasts every event to every client.
//!   Unlike upstream (D8), [`EventServer::publish`] never waits for a client: each client has a
//!   bounded queue and its own tokio task (at most `max_clients` of them), and a client that falls behind is disconnected and
//!   counted in [`EventStats`].
//!
//! Deliberate differences from upstream, all within SPEC §7 and §12:
//! - `ID.Interface` is the host-order `idiag_if` (upstream byte-swaps it, D6).
//! - Timestamps are always written in UTC (D9); Close keeps upstream's `"ID":null`.
//! - On shutdown, queued events (the Close events of the final flush) are delivered for a bounded
//!   time and the socket file is removed (D11).

mod client;
mod server;
mod stats;
pub mod wire;

#[cfg(test)]
mod tests;

pub use server::{EventServer, EventServerConfig};
pub use stats::{EventStats, EventStatsReader};
pub use wire::{DecodeError, Decoded, EventKind, FlowEvent, FlowId, UnknownEvent};

use std::path::PathBuf;
use thiserror::Error;

/// Why the event socket could not be started.
#[derive(Debug, Error)]
pub enum EventsError {
    /// The path is empty; an empty `-tcpinfo.eventsocket` means "no event socket", which the
    /// caller handles by not starting a server.
    #[error("event socket path is empty (an empty path disables the event socket)")]
    EmptyPath,
    /// The configured queue capacity is zero.
    #[error("event socket queue capacity must be at least 1 event")]
    ZeroCapacity,
    /// The path could not be made absolute or inspected.
    #[error("cannot inspect event socket path {}: {source}", path.display())]
    Inspect {
        /// The configured path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A directory sits at the path; it is never removed.
    #[error("event socket path {} is a directory; refusing to remove it", path.display())]
    IsDirectory {
        /// The configured path.
        path: PathBuf,
    },
    /// Whatever was left at the path (a stale socket, upstream #126) could not be removed.
    #[error("cannot remove stale file at event socket path {}: {source}", path.display())]
    RemoveStale {
        /// The configured path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The socket's directory did not exist and could not be created.
    #[error("cannot create the event socket's directory {}", path.display())]
    CreateDirectory {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `bind`/`listen` failed (for example, a path longer than 107 bytes).
    #[error("cannot listen on event socket {}: {source}", path.display())]
    Bind {
        /// The configured path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
