//! The daemon's Prometheus metrics (SPEC §9) and their HTTP endpoint.
//!
//! [`Metrics`] holds a typed handle for every upstream metric (SPEC §9.2, exact names, help
//! strings, labels and buckets) and for the metrics this rewrite adds under new names (saver,
//! sources, dump failures, exact queries, event socket, mode). Each instance owns a private
//! registry, so tests can create as many as they like. [`Metrics::render`] produces the text
//! exposition exactly as Go's client would (see [`exposition`]); [`serve`] exposes it over HTTP.

mod address;
pub mod buckets;
pub mod exposition;
pub mod gofloat;
pub mod labels;
mod listen;
pub mod rates;
mod server;

#[cfg(test)]
mod tests;

use prometheus::core::Collector;
use prometheus::process_collector::ProcessCollector;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};
use std::sync::atomic::{AtomicBool, Ordering};

use thiserror::Error;

pub use address::ListenAddress;
pub use labels::{
    AddressFamily, ByLabel, DumpFailure, ErrorClass, ErrorType, ExactQueryOutcome, ExclusionReason,
    KernelDrop, LabelValue, LargeNetlinkType, Source, SweepKind, Unmarked,
};
pub use server::{MetricsServer, serve};

/// Errors creating the metrics or their HTTP server.
#[derive(Debug, Error)]
pub enum MetricsError {
    /// A metric could not be created or registered.
    #[error("cannot create metric {name}: {source}")]
    Register {
        /// The metric's name.
        name: String,
        /// The registry's error.
        #[source]
        source: prometheus::Error,
    },
    /// The listen address is not `[host]:port`.
    #[error("invalid metrics listen address {addr:?}: {reason}")]
    InvalidListenAddress {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The listen address's host name could not be resolved.
    #[error("cannot resolve metrics listen address {addr:?}: {source}")]
    Resolve {
        /// The address as given.
        addr: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// Binding or listening failed.
    #[error("cannot listen for metrics on {addr:?}: {source}")]
    Bind {
        /// The address as given.
        addr: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
}

/// Every metric the daemon exports, with typed handles.
///
/// Upstream metrics (SPEC §9.2) keep their exact names, help strings, labels and buckets; the
/// others are new names. Label values with a closed set are enums ([`labels`]) whose children are
/// created up front, so they are exported (at 0) from the first scrape on.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,

    // ---- upstream (SPEC §9.2) ----
    /// `tcpinfo_syscall_time_histogram{af}`: seconds per family dump (socket, send, receive,
    /// parse). Buckets B1.
    pub syscall_time: ByLabel<AddressFamily, Histogram>,
    /// `tcpinfo_polling_interval_histogram`: seconds between the ends of successive cycles.
    /// Buckets B2.
    pub polling_interval: Histogram,
    /// `tcpinfo_connection_count_histogram{af}`: messages per dump, before exclusion. Buckets B3.
    pub connection_count: ByLabel<AddressFamily, Histogram>,
    /// `tcpinfo_cache_count_histogram`: non-excluded connections cached at the end of each cycle.
    /// Buckets B3.
    pub cache_count: Histogram,
    /// `tcpinfo_error_total{type}` with upstream's `type` values.
    pub errors: ByLabel<ErrorType, IntCounter>,
    /// `tcpinfo_new_file_total`: every archive segment opened.
    pub new_files: IntCounter,
    /// `tcpinfo_send_rate_histogram`: bits sent per rate sample (SPEC §9.4). Buckets B4.
    pub send_rate: Histogram,
    /// `tcpinfo_receive_rate_histogram`: bits received per rate sample (SPEC §9.4). Buckets B4.
    pub receive_rate: Histogram,
    /// `tcpinfo_snapshot_total`: records queued for writing (new + changed).
    pub snapshots: IntCounter,
    /// `tcpinfo_flow_events_total{event}`: open and close events emitted (close: SPEC §12 D9).
    pub flow_events: ByLabel<crate::events::EventKind, IntCounter>,
    large_netlink: IntCounterVec,
    netlink_skipped: IntCounterVec,

    // ---- new in this rewrite ----
    /// `tcpinfo_saver_files_closed_total`: archive files closed (rotation, close or shutdown).
    pub files_closed: IntCounter,
    /// `tcpinfo_saver_compressed_bytes_total`: zstd bytes written to archive files.
    pub compressed_bytes: IntCounter,
    /// `tcpinfo_saver_uncompressed_bytes_total`: JSONL bytes fed to the compressors.
    pub uncompressed_bytes: IntCounter,
    /// `tcpinfo_saver_lines_total`: JSONL lines written (Metadata and snapshot lines).
    pub lines_written: IntCounter,
    /// `tcpinfo_saver_rotations_total`: segments closed because they reached the rotation age.
    pub rotations: IntCounter,
    /// `tcpinfo_saver_open_files`: archive files open now.
    pub open_files: IntGauge,
    /// `tcpinfo_saver_errors_total{type}`: archive I/O and encoding failures (SPEC §12 D17).
    pub saver_errors: ByLabel<ErrorClass, IntCounter>,
    /// `tcpinfo_records_total{source}`: raw records read from each source, before exclusion.
    pub records: ByLabel<Source, IntCounter>,
    /// `tcpinfo_excluded_records_total{reason}`: records dropped by an exclusion rule.
    pub excluded: ByLabel<ExclusionReason, IntCounter>,
    /// `tcpinfo_dump_failures_total{reason}`: failed family dumps (SPEC §12 D12/D13).
    pub dump_failures: ByLabel<DumpFailure, IntCounter>,
    /// `tcpinfo_destroy_listener_overruns_total`: receive-buffer overruns (ENOBUFS) of the
    /// `sock_diag` destroy listener; each may have lost final snapshots.
    pub destroy_overruns: IntCounter,
    /// `tcpinfo_destroy_notifications_lost_total`: destroy notifications the kernel dropped for
    /// the listener in those overruns (its own count, `SO_MEMINFO`): connections whose final
    /// record is lost and which the sweeps close after the grace.
    pub destroy_notifications_lost: IntCounter,
    /// `tcpinfo_exact_queries_total{outcome}`: exact `inet_diag` queries by outcome (SPEC §13).
    pub exact_queries: ByLabel<ExactQueryOutcome, IntCounter>,
    /// `tcpinfo_eventsocket_clients`: event-socket clients connected now.
    pub event_clients: IntGauge,
    /// `tcpinfo_eventsocket_events_dropped_total`: events not delivered to a client whose queue
    /// was full (SPEC §12 D8).
    pub events_dropped: IntCounter,
    /// `tcpinfo_eventsocket_clients_disconnected_total`: clients disconnected for falling behind
    /// (SPEC §12 D8).
    pub event_clients_disconnected: IntCounter,
    /// `tcpinfo_eventsocket_clients_refused_total`: clients closed at once because the event
    /// socket already had its maximum number of clients.
    pub event_clients_refused: IntCounter,
    /// `tcpinfo_eventsocket_clients_sent_data_total`: clients disconnected for sending more
    /// than 4 KiB (clients never send; a process writing without pause would keep the edges'
    /// workers busy reading).
    pub event_clients_sent_data: IntCounter,
    /// `tcpinfo_connections_tracked`: connections in the cache now.
    pub connections_tracked: IntGauge,
    /// `tcpinfo_netns_watched`: network namespaces watched now (`--netns`).
    pub netns_watched: IntGauge,
    /// `tcpinfo_netns_open_failures_total`: namespaces found whose sockets could not be opened
    /// (retried at the next discovery).
    pub netns_open_failures: IntCounter,
    /// `tcpinfo_late_destroys_total`: destroy notifications that arrived after their connection
    /// was closed without one (its final record is not archived: the file is finished).
    pub late_destroys: IntCounter,
    /// `tcpinfo_attributes_dropped_total`: attributes left out of archived records because
    /// their type is above 38 (SPEC §3.6; upstream only logs them).
    pub attributes_dropped: IntCounter,
    /// `tcpinfo_saver_evictions_total`: segments closed early to stay within the descriptor
    /// budget (each costs its connection one more file if it writes again).
    pub evictions: IntCounter,
    /// `tcpinfo_sweeps_total{kind}`: full sweeps, polls and eBPF mode's safety net apart.
    pub sweeps: ByLabel<SweepKind, IntCounter>,
    /// `tcpinfo_ebpf_marks_total`: marks drained from the kernel.
    pub marks: IntCounter,
    /// `tcpinfo_ebpf_kernel_drops_total{reason}`: marks the kernel side could not make.
    pub kernel_drops: ByLabel<KernelDrop, IntCounter>,
    /// `tcpinfo_exact_batch_size`: requests per `sendmsg` of exact queries.
    pub exact_batch_size: Histogram,
    /// `tcpinfo_ebpf_mark_to_record_seconds`: from a mark to the reply of its exact query.
    pub mark_latency: Histogram,
    /// `tcpinfo_ebpf_unmarked_changes_total{change}`: what a safety-net sweep found that no mark
    /// had reported (the check that marks are complete).
    pub unmarked_changes: ByLabel<Unmarked, IntCounter>,
    mode: IntGaugeVec,
    /// `tcpinfo_http_connections_dropped_total{server,reason}`: connections an HTTP endpoint
    /// closed without a complete answer; fed by [`Metrics::http_drop_hook`].
    http_dropped: IntCounterVec,
    /// Whether `/ready` answers 200: set once the first sweep completed or the first marks were
    /// drained, never cleared.
    ready: AtomicBool,
}

impl Metrics {
    /// Creates every metric in a new private registry, with the standard `process_*` metrics and
    /// `git_short_commit{commit="<git_commit>"}` set to the commit parsed as hexadecimal (0 if it
    /// does not parse, as upstream's `prometheusx` does).
    pub fn new(git_commit: &str) -> Result<Self, MetricsError> {
        let r = Registry::new();
        let metrics = Self {
            syscall_time: histogram_by(
                &r,
                "tcpinfo_syscall_time_histogram",
                "netlink syscall latency distribution (seconds)",
                "af",
                &buckets::B1_SYSCALL_SECONDS,
            )?,
            polling_interval: histogram(
                &r,
                "tcpinfo_polling_interval_histogram",
                "netlink polling interval distribution (seconds)",
                &buckets::b2_polling_seconds(),
            )?,
            connection_count: histogram_by(
                &r,
                "tcpinfo_connection_count_histogram",
                "connection count histogram",
                "af",
                &buckets::B3_COUNTS,
            )?,
            cache_count: histogram(
                &r,
                "tcpinfo_cache_count_histogram",
                "cache connection count histogram",
                &buckets::B3_COUNTS,
            )?,
            errors: counter_by(
                &r,
                "tcpinfo_error_total",
                "The total number of errors encountered.",
                "type",
            )?,
            new_files: counter(&r, "tcpinfo_new_file_total", "Number of files created.")?,
            send_rate: histogram(
                &r,
                "tcpinfo_send_rate_histogram",
                "send rate histogram",
                &buckets::B4_RATES,
            )?,
            receive_rate: histogram(
                &r,
                "tcpinfo_receive_rate_histogram",
                "receive rate histogram",
                &buckets::B4_RATES,
            )?,
            snapshots: counter(&r, "tcpinfo_snapshot_total", "Number of snapshots taken.")?,
            flow_events: counter_by(
                &r,
                "tcpinfo_flow_events_total",
                "Number of flow events by event type.",
                "event",
            )?,
            large_netlink: counter_vec(
                &r,
                "large_netlink_total",
                "Number of oversize netlink messages.",
                "type",
            )?,
            netlink_skipped: counter_vec(
                &r,
                "netlink_skipped_total",
                "Number of skipped netlink messages.",
                "type",
            )?,
            files_closed: counter(
                &r,
                "tcpinfo_saver_files_closed_total",
                "Number of archive files closed.",
            )?,
            compressed_bytes: counter(
                &r,
                "tcpinfo_saver_compressed_bytes_total",
                "Compressed bytes written to archive files.",
            )?,
            uncompressed_bytes: counter(
                &r,
                "tcpinfo_saver_uncompressed_bytes_total",
                "Uncompressed JSONL bytes written to archive files.",
            )?,
            lines_written: counter(
                &r,
                "tcpinfo_saver_lines_total",
                "Number of JSONL lines written to archive files.",
            )?,
            rotations: counter(
                &r,
                "tcpinfo_saver_rotations_total",
                "Number of archive segments closed because they reached the rotation age.",
            )?,
            open_files: gauge(
                &r,
                "tcpinfo_saver_open_files",
                "Number of archive files currently open.",
            )?,
            saver_errors: counter_by(
                &r,
                "tcpinfo_saver_errors_total",
                "Number of archive file errors by type.",
                "type",
            )?,
            records: counter_by(
                &r,
                "tcpinfo_records_total",
                "Number of socket records read, by source, before exclusion.",
                "source",
            )?,
            excluded: counter_by(
                &r,
                "tcpinfo_excluded_records_total",
                "Number of socket records dropped by an exclusion rule.",
                "reason",
            )?,
            dump_failures: counter_by(
                &r,
                "tcpinfo_dump_failures_total",
                "Number of failed netlink dumps by reason.",
                "reason",
            )?,
            destroy_overruns: counter(
                &r,
                "tcpinfo_destroy_listener_overruns_total",
                "Number of receive buffer overruns of the socket destroy listener.",
            )?,
            destroy_notifications_lost: counter(
                &r,
                "tcpinfo_destroy_notifications_lost_total",
                "Number of socket destroy notifications the kernel dropped in those overruns.",
            )?,
            exact_queries: counter_by(
                &r,
                "tcpinfo_exact_queries_total",
                "Number of exact inet_diag queries by outcome.",
                "outcome",
            )?,
            event_clients: gauge(
                &r,
                "tcpinfo_eventsocket_clients",
                "Number of event socket clients connected.",
            )?,
            events_dropped: counter(
                &r,
                "tcpinfo_eventsocket_events_dropped_total",
                "Number of events not delivered to a client (queue full, write timeout or error, shutdown).",
            )?,
            event_clients_disconnected: counter(
                &r,
                "tcpinfo_eventsocket_clients_disconnected_total",
                "Number of event socket clients disconnected for falling behind.",
            )?,
            event_clients_refused: counter(
                &r,
                "tcpinfo_eventsocket_clients_refused_total",
                "Number of event socket clients refused because the maximum were connected.",
            )?,
            event_clients_sent_data: counter(
                &r,
                "tcpinfo_eventsocket_clients_sent_data_total",
                "Number of event socket clients disconnected for sending more than 4 KiB (clients never send).",
            )?,
            connections_tracked: gauge(
                &r,
                "tcpinfo_connections_tracked",
                "Number of connections currently tracked.",
            )?,
            netns_watched: gauge(
                &r,
                "tcpinfo_netns_watched",
                "Number of network namespaces watched.",
            )?,
            netns_open_failures: counter(
                &r,
                "tcpinfo_netns_open_failures_total",
                "Number of times a network namespace was found but its sockets could not be opened.",
            )?,
            late_destroys: counter(
                &r,
                "tcpinfo_late_destroys_total",
                "Number of destroy notifications for connections already closed without one.",
            )?,
            attributes_dropped: counter(
                &r,
                "tcpinfo_attributes_dropped_total",
                "Number of sock_diag attributes left out of archived records because their type is above 38.",
            )?,
            evictions: counter(
                &r,
                "tcpinfo_saver_evictions_total",
                "Number of archive segments closed early to stay within the descriptor budget.",
            )?,
            sweeps: counter_by(
                &r,
                "tcpinfo_sweeps_total",
                "Number of full sock_diag sweeps by kind.",
                "kind",
            )?,
            marks: counter(
                &r,
                "tcpinfo_ebpf_marks_total",
                "Number of socket marks received from the eBPF programs.",
            )?,
            kernel_drops: counter_by(
                &r,
                "tcpinfo_ebpf_kernel_drops_total",
                "Number of socket marks the eBPF programs could not make, by reason.",
                "reason",
            )?,
            exact_batch_size: histogram(
                &r,
                "tcpinfo_exact_batch_size",
                "Exact inet_diag requests per sendmsg.",
                &buckets::B3_COUNTS,
            )?,
            mark_latency: histogram(
                &r,
                "tcpinfo_ebpf_mark_to_record_seconds",
                "Time from an eBPF mark to the reply of its exact query (seconds).",
                &buckets::B1_SYSCALL_SECONDS,
            )?,
            unmarked_changes: counter_by(
                &r,
                "tcpinfo_ebpf_unmarked_changes_total",
                "Number of records a safety-net sweep wrote that no eBPF mark had reported.",
                "change",
            )?,
            mode: gauge_vec(
                &r,
                "tcpinfo_mode",
                "Collection mode in use (1 for the active mode).",
                "mode",
            )?,
            http_dropped: labelled_counter_vec(
                &r,
                "tcpinfo_http_connections_dropped_total",
                "Number of HTTP connections closed without a complete answer, by server and reason.",
                &["server", "reason"],
            )?,
            registry: r,
            ready: AtomicBool::new(false),
        };
        metrics.set_git_commit(git_commit)?;
        register(&metrics.registry, "process_*", ProcessCollector::for_self())?;
        Ok(metrics)
    }

    fn set_git_commit(&self, git_commit: &str) -> Result<(), MetricsError> {
        let name = "git_short_commit";
        let vec = GaugeVec::new(
            Opts::new(name, "The git commit interpreted as a number."),
            &["commit"],
        )
        .map_err(|source| register_error(name, source))?;
        register(&self.registry, name, vec.clone())?;
        vec.get_metric_with_label_values(&[git_commit])
            .map_err(|source| register_error(name, source))?
            .set(git_commit_number(git_commit));
        Ok(())
    }

    /// Records the collection mode in use: `tcpinfo_mode{mode="<mode>"} 1`, and no other series.
    pub fn set_mode(&self, mode: crate::mode::Mode) {
        self.mode.reset();
        match self.mode.get_metric_with_label_values(&[mode.as_str()]) {
            Ok(gauge) => gauge.set(1),
            Err(e) => tracing::error!("cannot set tcpinfo_mode: {e}"),
        }
    }

    /// Marks the daemon ready (`/ready` answers 200 from now on): the pipeline calls this after
    /// the first sweep that completed a dump, or the first marks it was handed.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// Whether [`Metrics::set_ready`] was called.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Counts one payload longer than the decoder's struct (`large_netlink_total{type}`).
    ///
    /// Upstream's collector never increments it, so its series are created on first use only.
    pub fn inc_large_netlink(&self, kind: LargeNetlinkType) {
        inc_child(&self.large_netlink, kind.as_str());
    }

    /// Counts one attribute the decoder skipped (`netlink_skipped_total{type}`), named as
    /// upstream does ([`labels::netlink_skipped_type`]). Created on first use, like
    /// [`Metrics::inc_large_netlink`].
    pub fn inc_netlink_skipped(&self, attribute_type: u16) {
        inc_child(
            &self.netlink_skipped,
            &labels::netlink_skipped_type(attribute_type),
        );
    }

    /// What the HTTP server named `server` reports its dropped connections to
    /// ([`crate::http::Options::on_drop`]): `tcpinfo_http_connections_dropped_total{server,
    /// reason}`, whose series for `server` are exported (at 0) from this call on.
    pub fn http_drop_hook(&self, server: &str) -> Result<crate::http::DropHook, MetricsError> {
        let name = "tcpinfo_http_connections_dropped_total";
        let counters = crate::http::DropReason::ALL
            .iter()
            .map(|reason| {
                self.http_dropped
                    .get_metric_with_label_values(&[server, reason.as_str()])
                    .map(|counter| (*reason, counter))
                    .map_err(|source| register_error(name, source))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(std::sync::Arc::new(move |reason| {
            if let Some((_, counter)) = counters.iter().find(|(r, _)| *r == reason) {
                counter.inc();
            }
        }))
    }

    /// The registry, for callers that add collectors of their own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition of every metric, as served on `/metrics`.
    pub fn render(&self) -> String {
        exposition::encode(&self.registry.gather())
    }
}

/// `git_short_commit`'s value: the commit parsed as a signed 64-bit hexadecimal number (Go's
/// `strconv.ParseInt(commit, 16, 64)`, which also accepts a leading sign), 0 if that fails.
pub fn git_commit_number(commit: &str) -> f64 {
    i64::from_str_radix(commit, 16).map_or(0.0, |n| n as f64)
}

fn register_error(name: &str, source: prometheus::Error) -> MetricsError {
    MetricsError::Register {
        name: name.to_owned(),
        source,
    }
}

fn register<C: Collector + 'static>(
    registry: &Registry,
    name: &str,
    collector: C,
) -> Result<(), MetricsError> {
    registry
        .register(Box::new(collector))
        .map_err(|source| register_error(name, source))
}

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
    let c = IntCounter::new(name, help).map_err(|source| register_error(name, source))?;
    register(registry, name, c.clone())?;
    Ok(c)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
    let g = IntGauge::new(name, help).map_err(|source| register_error(name, source))?;
    register(registry, name, g.clone())?;
    Ok(g)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
) -> Result<IntCounterVec, MetricsError> {
    labelled_counter_vec(registry, name, help, &[label])
}

fn labelled_counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    let v = IntCounterVec::new(Opts::new(name, help), labels)
        .map_err(|source| register_error(name, source))?;
    register(registry, name, v.clone())?;
    Ok(v)
}

fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
) -> Result<IntGaugeVec, MetricsError> {
    let v = IntGaugeVec::new(Opts::new(name, help), &[label])
        .map_err(|source| register_error(name, source))?;
    register(registry, name, v.clone())?;
    Ok(v)
}

fn counter_by<E: LabelValue>(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
) -> Result<ByLabel<E, IntCounter>, MetricsError> {
    let v = counter_vec(registry, name, help, label)?;
    ByLabel::build(|value| {
        v.get_metric_with_label_values(&[value])
            .map_err(|source| register_error(name, source))
    })
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    bounds: &[f64],
) -> Result<Histogram, MetricsError> {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(bounds.to_vec()))
        .map_err(|source| register_error(name, source))?;
    register(registry, name, h.clone())?;
    Ok(h)
}

fn histogram_by<E: LabelValue>(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    bounds: &[f64],
) -> Result<ByLabel<E, Histogram>, MetricsError> {
    let v = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(bounds.to_vec()),
        &[label],
    )
    .map_err(|source| register_error(name, source))?;
    register(registry, name, v.clone())?;
    ByLabel::build(|value| {
        v.get_metric_with_label_values(&[value])
            .map_err(|source| register_error(name, source))
    })
}

fn inc_child(vec: &IntCounterVec, value: &str) {
    match vec.get_metric_with_label_values(&[value]) {
        Ok(counter) => counter.inc(),
        // Only a label-count mismatch fails here, and every vec has exactly one label.
        Err(e) => tracing::error!("cannot increment metric child {value:?}: {e}"),
    }
}
