//! Conformance of the rendered exposition with SPEC §9.2/§9.3, written from the SPEC tables
//! independently of the definitions in `mod.rs` and `buckets.rs`.

use std::collections::{BTreeMap, BTreeSet};

use super::{LargeNetlinkType, Metrics, git_commit_number};
use crate::mode::Mode;

/// One sample line: (sample name, labels in order, value text).
type ParsedSample = (String, Vec<(String, String)>, String);

/// One metric family as parsed back from the text exposition.
#[derive(Debug, Default)]
struct Family {
    help: String,
    kind: String,
    samples: Vec<ParsedSample>,
}

/// A SPEC §9.2 histogram row: name, help, label, label values, rendered bucket bounds.
type HistogramRow = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static [&'static str],
    &'static [&'static str],
);

/// A SPEC §9.2 counter or gauge row: name, type, help, label, label values.
type ScalarRow = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static [&'static str],
);

/// A new metric: name, type, label, label values.
type NewRow = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static [&'static str],
);

impl Family {
    /// Distinct values of label `name` across the samples.
    fn label_values(&self, name: &str) -> BTreeSet<String> {
        self.samples
            .iter()
            .flat_map(|(_, labels, _)| labels.iter())
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Label names used by the samples, `le` excluded.
    fn label_names(&self) -> BTreeSet<String> {
        self.samples
            .iter()
            .flat_map(|(_, labels, _)| labels.iter())
            .map(|(n, _)| n.clone())
            .filter(|n| n != "le")
            .collect()
    }

    /// The `le` values of the `_bucket` samples whose other labels equal `labels`, in order.
    fn le_values(&self, name: &str, labels: &[(&str, &str)]) -> Vec<String> {
        let bucket = format!("{name}_bucket");
        self.samples
            .iter()
            .filter(|(sample, l, _)| {
                *sample == bucket
                    && l.iter()
                        .filter(|(n, _)| n != "le")
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .eq(labels.iter().copied())
            })
            .filter_map(|(_, l, _)| l.iter().find(|(n, _)| n == "le").map(|(_, v)| v.clone()))
            .collect()
    }

    fn value(&self, sample: &str, labels: &[(&str, &str)]) -> Option<&str> {
        self.samples
            .iter()
            .find(|(s, l, _)| {
                s == sample
                    && l.iter()
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .eq(labels.iter().copied())
            })
            .map(|(_, _, v)| v.as_str())
    }
}

/// Parses `name{a="x",b="y"} value` (the label values used in these tests need no escaping).
fn parse_sample(line: &str) -> ParsedSample {
    let (series, value) = line.rsplit_once(' ').unwrap();
    let Some((name, rest)) = series.split_once('{') else {
        return (series.to_owned(), Vec::new(), value.to_owned());
    };
    let body = rest.strip_suffix('}').unwrap();
    let mut labels = Vec::new();
    let mut remaining = body;
    while !remaining.is_empty() {
        let (label, after) = remaining.split_once("=\"").unwrap();
        let end = after.find('"').unwrap();
        labels.push((label.to_owned(), after[..end].to_owned()));
        remaining = after[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&after[end + 1..]);
    }
    (name.to_owned(), labels, value.to_owned())
}

fn parse(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            current = name.to_owned();
            families.entry(current.clone()).or_default().help = help.to_owned();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert_eq!(name, current, "TYPE must follow its HELP");
            families.get_mut(name).unwrap().kind = kind.to_owned();
        } else {
            let sample = parse_sample(line);
            assert!(
                sample.0.starts_with(&current),
                "{line} outside family {current}"
            );
            families.get_mut(&current).unwrap().samples.push(sample);
        }
    }
    families
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

/// SPEC §9.3 B1, as text.
const B1: &[&str] = &[
    "0.001", "0.00125", "0.0016", "0.002", "0.0025", "0.0032", "0.004", "0.005", "0.0063",
    "0.0079", "0.01", "0.0125", "0.016", "0.02", "0.025", "0.032", "0.04", "0.05", "0.063",
    "0.079", "0.1", "0.125", "0.16", "0.2", "+Inf",
];

/// SPEC §9.3 B2 as the Go daemon renders it: upstream computes the bounds with
/// `LinearBuckets(0, .001, 30)`, which accumulates floating-point error from the tenth bound on.
const B2: &[&str] = &[
    "0",
    "0.001",
    "0.002",
    "0.003",
    "0.004",
    "0.005",
    "0.006",
    "0.007",
    "0.008",
    "0.009000000000000001",
    "0.010000000000000002",
    "0.011000000000000003",
    "0.012000000000000004",
    "0.013000000000000005",
    "0.014000000000000005",
    "0.015000000000000006",
    "0.016000000000000007",
    "0.017000000000000008",
    "0.01800000000000001",
    "0.01900000000000001",
    "0.02000000000000001",
    "0.02100000000000001",
    "0.022000000000000013",
    "0.023000000000000013",
    "0.024000000000000014",
    "0.025000000000000015",
    "0.026000000000000016",
    "0.027000000000000017",
    "0.028000000000000018",
    "0.02900000000000002",
    "+Inf",
];

/// SPEC §9.3 B3, as text.
const B3: &[&str] = &[
    "1", "2", "3", "4", "5", "6", "8", "10", "12.5", "16", "20", "25", "32", "40", "50", "63",
    "79", "100", "125", "160", "200", "250", "320", "400", "500", "630", "790", "1000", "1250",
    "1600", "2000", "2500", "3200", "4000", "5000", "6300", "7900", "10000", "12500", "16000",
    "20000", "25000", "32000", "40000", "50000", "63000", "79000", "1e+07", "+Inf",
];

/// SPEC §9.3 B4, as text.
const B4: &[&str] = &[
    "0", "1", "10", "100", "1000", "1580", "2510", "3980", "6310", "10000", "15800", "25100",
    "39800", "63100", "100000", "158000", "251000", "398000", "631000", "1e+06", "1.58e+06",
    "2.51e+06", "3.98e+06", "6.31e+06", "1e+07", "1.58e+07", "2.51e+07", "3.98e+07", "6.31e+07",
    "1e+08", "1.58e+08", "2.51e+08", "3.98e+08", "6.31e+08", "1e+09", "1.26e+09", "1.58e+09",
    "2e+09", "2.51e+09", "3.16e+09", "3.98e+09", "5.01e+09", "6.31e+09", "7.94e+09", "1e+10",
    "+Inf",
];

#[test]
fn upstream_histograms_match_spec() {
    let m = Metrics::new("0").unwrap();
    let families = parse(&m.render());
    // (name, help, label, label values, buckets)
    let table: &[HistogramRow] = &[
        (
            "tcpinfo_syscall_time_histogram",
            "netlink syscall latency distribution (seconds)",
            Some("af"),
            &["ipv4", "ipv6"],
            B1,
        ),
        (
            "tcpinfo_polling_interval_histogram",
            "netlink polling interval distribution (seconds)",
            None,
            &[],
            B2,
        ),
        (
            "tcpinfo_connection_count_histogram",
            "connection count histogram",
            Some("af"),
            &["ipv4", "ipv6"],
            B3,
        ),
        (
            "tcpinfo_cache_count_histogram",
            "cache connection count histogram",
            None,
            &[],
            B3,
        ),
        (
            "tcpinfo_send_rate_histogram",
            "send rate histogram",
            None,
            &[],
            B4,
        ),
        (
            "tcpinfo_receive_rate_histogram",
            "receive rate histogram",
            None,
            &[],
            B4,
        ),
    ];
    for &(name, help, label, values, buckets) in table {
        let family = families
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(family.help, help, "{name}");
        assert_eq!(family.kind, "histogram", "{name}");
        let Some(label) = label else {
            assert!(family.label_names().is_empty(), "{name}");
            assert_eq!(family.le_values(name, &[]), strings(buckets), "{name}");
            assert_eq!(family.value(&format!("{name}_count"), &[]), Some("0"));
            continue;
        };
        assert_eq!(
            family.label_names(),
            BTreeSet::from([label.to_owned()]),
            "{name}"
        );
        assert_eq!(
            family.label_values(label),
            values.iter().map(|v| (*v).to_owned()).collect()
        );
        for value in values {
            assert_eq!(
                family.le_values(name, &[(label, value)]),
                strings(buckets),
                "{name}"
            );
            assert_eq!(
                family.value(&format!("{name}_count"), &[(label, value)]),
                Some("0")
            );
            assert_eq!(
                family.value(&format!("{name}_sum"), &[(label, value)]),
                Some("0")
            );
        }
    }
}

#[test]
fn upstream_counters_and_gauge_match_spec() {
    let m = Metrics::new("1a2b3c4").unwrap();
    // The decoder counters exist only once incremented (as upstream's, which its collector
    // never increments).
    let before = parse(&m.render());
    assert!(!before.contains_key("large_netlink_total"));
    assert!(!before.contains_key("netlink_skipped_total"));
    for kind in [
        LargeNetlinkType::MemInfo,
        LargeNetlinkType::TcpInfo,
        LargeNetlinkType::VegasInfo,
        LargeNetlinkType::SockMemInfo,
        LargeNetlinkType::DctcpInfo,
        LargeNetlinkType::BbrInfo,
    ] {
        m.inc_large_netlink(kind);
    }
    for attribute in [11, 12, 13, 14, 21] {
        m.inc_netlink_skipped(attribute);
    }
    m.new_files.inc();
    m.snapshots.inc_by(4);
    let families = parse(&m.render());

    // (name, type, help, label, exact label values)
    let table: &[ScalarRow] = &[
        (
            "tcpinfo_error_total",
            "counter",
            "The total number of errors encountered.",
            Some("type"),
            &[
                "wrong seq num",
                "wrong pid",
                "NLMSG_ERROR",
                "totalSent < reportedSent",
                "totalSent-reportedSent exceeds network capacity",
                "totalReceived < reportedReceived",
                "totalReceived-reportedReceived exceeds network capacity",
            ],
        ),
        (
            "tcpinfo_new_file_total",
            "counter",
            "Number of files created.",
            None,
            &[],
        ),
        (
            "tcpinfo_snapshot_total",
            "counter",
            "Number of snapshots taken.",
            None,
            &[],
        ),
        (
            "tcpinfo_flow_events_total",
            "counter",
            "Number of flow events by event type.",
            Some("event"),
            &["open", "close"],
        ),
        (
            "large_netlink_total",
            "counter",
            "Number of oversize netlink messages.",
            Some("type"),
            &[
                "MemInfo",
                "TCPInfo",
                "VegasInfo",
                "SockMemInfo",
                "DCTCPInfo",
                "BBRInfo",
            ],
        ),
        (
            "netlink_skipped_total",
            "counter",
            "Number of skipped netlink messages.",
            Some("type"),
            &[
                "INET_DIAG_SKV6ONLY",
                "INET_DIAG_LOCALS",
                "INET_DIAG_PEERS",
                "INET_DIAG_PAD",
                "21",
            ],
        ),
        (
            "git_short_commit",
            "gauge",
            "The git commit interpreted as a number.",
            Some("commit"),
            &["1a2b3c4"],
        ),
    ];
    for &(name, kind, help, label, values) in table {
        let family = families
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(family.kind, kind, "{name}");
        assert_eq!(family.help, help, "{name}");
        match label {
            Some(label) => {
                assert_eq!(
                    family.label_names(),
                    BTreeSet::from([label.to_owned()]),
                    "{name}"
                );
                let want: BTreeSet<String> = values.iter().map(|v| (*v).to_owned()).collect();
                assert_eq!(family.label_values(label), want, "{name}");
            }
            None => assert!(family.label_names().is_empty(), "{name}"),
        }
    }
    assert_eq!(
        families["tcpinfo_new_file_total"].value("tcpinfo_new_file_total", &[]),
        Some("1")
    );
    assert_eq!(
        families["tcpinfo_snapshot_total"].value("tcpinfo_snapshot_total", &[]),
        Some("4")
    );
    assert_eq!(
        families["git_short_commit"].value("git_short_commit", &[("commit", "1a2b3c4")]),
        Some("2.7440068e+07")
    );
    assert_eq!(
        families["netlink_skipped_total"].value("netlink_skipped_total", &[("type", "21")]),
        Some("1")
    );
}

#[test]
#[expect(
    clippy::float_cmp,
    reason = "integers below 2^53 and 2^63 itself are exact in f64"
)]
fn git_commit_parses_like_go_parse_int() {
    assert_eq!(git_commit_number("d72b41f"), 225_621_023.0);
    assert_eq!(git_commit_number("D72B41F"), 225_621_023.0);
    assert_eq!(git_commit_number("-10"), -16.0);
    assert_eq!(
        git_commit_number("7fffffffffffffff"),
        9_223_372_036_854_775_807.0
    );
    for bad in [
        "",
        "No commit specified",
        "0x10",
        "8000000000000000",
        "12 ",
        "1_0",
    ] {
        assert_eq!(git_commit_number(bad), 0.0, "{bad:?}");
    }
    let m = Metrics::new("No commit specified").unwrap();
    assert!(
        m.render()
            .contains("git_short_commit{commit=\"No commit specified\"} 0\n")
    );
}

#[test]
fn new_metrics_are_exported_under_new_names() {
    let m = Metrics::new("0").unwrap();
    m.set_mode(Mode::Sweep);
    m.set_mode(Mode::Ebpf);
    let _hook = m.http_drop_hook("metrics").unwrap();
    let families = parse(&m.render());
    // (name, type, label, label values)
    let table: &[NewRow] = &[
        ("tcpinfo_saver_files_closed_total", "counter", None, &[]),
        ("tcpinfo_saver_compressed_bytes_total", "counter", None, &[]),
        (
            "tcpinfo_saver_uncompressed_bytes_total",
            "counter",
            None,
            &[],
        ),
        ("tcpinfo_saver_lines_total", "counter", None, &[]),
        ("tcpinfo_saver_rotations_total", "counter", None, &[]),
        ("tcpinfo_saver_evictions_total", "counter", None, &[]),
        ("tcpinfo_late_destroys_total", "counter", None, &[]),
        ("tcpinfo_attributes_dropped_total", "counter", None, &[]),
        (
            "tcpinfo_sweeps_total",
            "counter",
            Some("kind"),
            &["poll", "safety_net"],
        ),
        ("tcpinfo_ebpf_marks_total", "counter", None, &[]),
        (
            "tcpinfo_ebpf_kernel_drops_total",
            "counter",
            Some("reason"),
            &["ringbuf_full", "map_full", "read_failed"],
        ),
        ("tcpinfo_exact_batch_size", "histogram", None, &[]),
        (
            "tcpinfo_ebpf_mark_to_record_seconds",
            "histogram",
            None,
            &[],
        ),
        (
            "tcpinfo_ebpf_unmarked_changes_total",
            "counter",
            Some("change"),
            &["new", "changed"],
        ),
        ("tcpinfo_saver_open_files", "gauge", None, &[]),
        (
            "tcpinfo_saver_errors_total",
            "counter",
            Some("type"),
            &["open", "encode", "write", "flush", "close"],
        ),
        (
            "tcpinfo_records_total",
            "counter",
            Some("source"),
            &["sweep", "ebpf", "close", "confirm"],
        ),
        (
            "tcpinfo_excluded_records_total",
            "counter",
            Some("reason"),
            &["local", "srcport", "dstip"],
        ),
        (
            "tcpinfo_dump_failures_total",
            "counter",
            Some("reason"),
            &[
                "socket",
                "send",
                "receive",
                "nlmsg_error",
                "interrupted",
                "enobufs",
                "malformed",
            ],
        ),
        (
            "tcpinfo_destroy_listener_overruns_total",
            "counter",
            None,
            &[],
        ),
        (
            "tcpinfo_destroy_notifications_lost_total",
            "counter",
            None,
            &[],
        ),
        (
            "tcpinfo_exact_queries_total",
            "counter",
            Some("outcome"),
            &["found", "not_found", "mismatch", "lost", "error"],
        ),
        ("tcpinfo_eventsocket_clients", "gauge", None, &[]),
        (
            "tcpinfo_eventsocket_events_dropped_total",
            "counter",
            None,
            &[],
        ),
        (
            "tcpinfo_eventsocket_clients_disconnected_total",
            "counter",
            None,
            &[],
        ),
        (
            "tcpinfo_eventsocket_clients_refused_total",
            "counter",
            None,
            &[],
        ),
        (
            "tcpinfo_eventsocket_clients_sent_data_total",
            "counter",
            None,
            &[],
        ),
        ("tcpinfo_connections_tracked", "gauge", None, &[]),
        ("tcpinfo_netns_watched", "gauge", None, &[]),
        ("tcpinfo_netns_open_failures_total", "counter", None, &[]),
        ("tcpinfo_mode", "gauge", Some("mode"), &["ebpf"]),
        (
            "tcpinfo_http_connections_dropped_total",
            "counter",
            Some("reason"),
            &[
                "full",
                "peer_limit",
                "evicted_waiting",
                "evicted_stalled",
                "head_timeout",
                "deadline",
            ],
        ),
    ];
    for &(name, kind, label, values) in table {
        let family = families
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(family.kind, kind, "{name}");
        assert!(!family.help.is_empty(), "{name}");
        assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
        match label {
            Some(label) => {
                let want: BTreeSet<String> = values.iter().map(|v| (*v).to_owned()).collect();
                assert_eq!(family.label_values(label), want, "{name}");
            }
            None => assert!(family.label_names().is_empty(), "{name}"),
        }
    }
    assert_eq!(
        families["tcpinfo_mode"].value("tcpinfo_mode", &[("mode", "ebpf")]),
        Some("1")
    );
    assert_eq!(
        families["tcpinfo_http_connections_dropped_total"].label_values("server"),
        BTreeSet::from(["metrics".to_owned()])
    );
    // Every family is either upstream's (SPEC §9.2), process_*, or in the table above.
    let upstream = [
        "tcpinfo_syscall_time_histogram",
        "tcpinfo_polling_interval_histogram",
        "tcpinfo_connection_count_histogram",
        "tcpinfo_cache_count_histogram",
        "tcpinfo_error_total",
        "tcpinfo_new_file_total",
        "tcpinfo_send_rate_histogram",
        "tcpinfo_receive_rate_histogram",
        "tcpinfo_snapshot_total",
        "tcpinfo_flow_events_total",
        "git_short_commit",
    ];
    for name in families.keys() {
        assert!(
            upstream.contains(&name.as_str())
                || name.starts_with("process_")
                || table.iter().any(|row| row.0 == name),
            "unexpected family {name}"
        );
    }
}

#[test]
fn process_metrics_are_exported() {
    let m = Metrics::new("0").unwrap();
    let families = parse(&m.render());
    for name in [
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_start_time_seconds",
        "process_threads",
    ] {
        assert!(families.contains_key(name), "{name} missing");
    }
}

#[test]
fn instances_are_independent() {
    let a = Metrics::new("0").unwrap();
    let b = Metrics::new("0").unwrap();
    a.snapshots.inc();
    assert!(a.render().contains("\ntcpinfo_snapshot_total 1\n"));
    assert!(b.render().contains("\ntcpinfo_snapshot_total 0\n"));
}

#[test]
fn observations_land_in_the_right_buckets() {
    let m = Metrics::new("0").unwrap();
    m.syscall_time.get(super::AddressFamily::V6).observe(0.0013);
    m.polling_interval.observe(0.0105);
    m.send_rate.observe(1.5e6);
    let families = parse(&m.render());
    let syscall = &families["tcpinfo_syscall_time_histogram"];
    let b = "tcpinfo_syscall_time_histogram_bucket";
    assert_eq!(
        syscall.value(b, &[("af", "ipv6"), ("le", "0.00125")]),
        Some("0")
    );
    assert_eq!(
        syscall.value(b, &[("af", "ipv6"), ("le", "0.0016")]),
        Some("1")
    );
    assert_eq!(
        syscall.value(b, &[("af", "ipv4"), ("le", "+Inf")]),
        Some("0")
    );
    let polling = &families["tcpinfo_polling_interval_histogram"];
    let b = "tcpinfo_polling_interval_histogram_bucket";
    assert_eq!(
        polling.value(b, &[("le", "0.010000000000000002")]),
        Some("0")
    );
    assert_eq!(
        polling.value(b, &[("le", "0.011000000000000003")]),
        Some("1")
    );
    let send = &families["tcpinfo_send_rate_histogram"];
    let b = "tcpinfo_send_rate_histogram_bucket";
    assert_eq!(send.value(b, &[("le", "1e+06")]), Some("0"));
    assert_eq!(send.value(b, &[("le", "1.58e+06")]), Some("1"));
    assert_eq!(
        send.value("tcpinfo_send_rate_histogram_sum", &[]),
        Some("1.5e+06")
    );
}
