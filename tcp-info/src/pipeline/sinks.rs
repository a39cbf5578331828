//! Where the pipeline's decisions go. The daemon plugs in the saver and the event server; tests
//! plug in recorders.

use crate::record::{ArchivalRecord, NetnsTag, Timestamp};
use crate::sockdiag::{DiagSocket, ExactReply, ExactTarget};
use crate::wire::inet_diag::InetDiagMsg;
use std::sync::Arc;
use std::time::Instant;

/// Receives the records to archive, per connection.
pub trait ArchiveSink {
    /// Archives `record` for connection `cookie`; the first call for a cookie starts the
    /// connection. `netns` (`--netns.attribution`) goes into its files' Metadata lines. Errors
    /// are the sink's to count; the pipeline only logs them.
    fn write(
        &mut self,
        cookie: u64,
        record: &ArchivalRecord,
        netns: Option<&Arc<NetnsTag>>,
        now: Instant,
    ) -> Result<(), String>;
    /// Ends connection `cookie`: its file is finished and closed.
    fn close(&mut self, cookie: u64, now: Instant);
    /// Housekeeping: flush overdue data, close segments that reached their rotation age.
    fn tick(&mut self, now: Instant);
    /// Flushes and closes everything (graceful shutdown).
    fn shutdown(&mut self);
}

/// Receives connection open/close events.
pub trait EventSink {
    /// A connection was seen for the first time; `first` is its first record's RawIDM;
    /// `netns` is its namespace's tag when events carry one (`--netns.attribution`).
    fn open(
        &self,
        timestamp: Timestamp,
        uuid: &str,
        first: &InetDiagMsg<'_>,
        netns: Option<&Arc<NetnsTag>>,
    );
    /// A connection ended.
    fn close(&self, timestamp: Timestamp, uuid: &str, netns: Option<&Arc<NetnsTag>>);
}

/// An event sink that drops everything (no event socket configured).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn open(&self, _: Timestamp, _: &str, _: &InetDiagMsg<'_>, _: Option<&Arc<NetnsTag>>) {}
    fn close(&self, _: Timestamp, _: &str, _: Option<&Arc<NetnsTag>>) {}
}

/// Asks the kernel about particular sockets now, with exact sock_diag queries (SPEC §13). The
/// pipeline uses it to confirm that a connection the sweeps stopped listing is really gone
/// before closing it.
pub trait Lookup: Send {
    /// Looks each target up and appends one reply per target answered (in any order, tagged
    /// with the target's index). Returns how many requests were sent again because their
    /// replies were lost (a receive-buffer overrun), for `tcpinfo_exact_queries_total{outcome=
    /// "lost"}`. On error the replies appended so far are kept.
    fn lookup(
        &mut self,
        targets: &[ExactTarget],
        out: &mut Vec<ExactReply>,
    ) -> Result<usize, String>;
}

impl Lookup for DiagSocket {
    fn lookup(
        &mut self,
        targets: &[ExactTarget],
        out: &mut Vec<ExactReply>,
    ) -> Result<usize, String> {
        self.query_exact(targets, out)
            .map(|stats| stats.resent)
            .map_err(|e| e.to_string())
    }
}
