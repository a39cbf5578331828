//! The pipeline every source feeds (DESIGN §1): exclusion → change detection against the
//! previous record of the connection → archive, events and metrics.
//!
//! It runs on one thread and owns the connection cache. Sources hand it raw sock_diag payloads
//! with the time they were read; nothing downstream knows which source a record came from
//! except the `source` label of `tcpinfo_records_total`.

mod observe;
pub mod sinks;

pub use observe::{Pipeline, PipelineConfig};
pub use sinks::{ArchiveSink, EventSink, Lookup};

#[cfg(test)]
mod tests;
