//! `/metrics` over plain HTTP with the upstream names, help strings, types and buckets (SPEC
//! §9), and fatal flag and environment errors (SPEC §2, D10).

use std::io::Write as _;
use std::net::Shutdown;
use std::time::Duration;

use tcp_info_tests::daemon::run_to_exit;
use tcp_info_tests::exposition::{self, Exposition};
use tcp_info_tests::sockets::http_get;
use tcp_info_tests::{Setup, archive, traffic};

/// SPEC §9.3 B1, as Go renders it.
const B1: &[&str] = &[
    "0.001", "0.00125", "0.0016", "0.002", "0.0025", "0.0032", "0.004", "0.005", "0.0063",
    "0.0079", "0.01", "0.0125", "0.016", "0.02", "0.025", "0.032", "0.04", "0.05", "0.063",
    "0.079", "0.1", "0.125", "0.16", "0.2", "+Inf",
];
/// SPEC §9.3 B2: Go's `LinearBuckets(0, .001, 30)` accumulates the step, and renders each
/// bound in its shortest round-trip form.
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
/// SPEC §9.3 B3.
const B3: &[&str] = &[
    "1", "2", "3", "4", "5", "6", "8", "10", "12.5", "16", "20", "25", "32", "40", "50", "63",
    "79", "100", "125", "160", "200", "250", "320", "400", "500", "630", "790", "1000", "1250",
    "1600", "2000", "2500", "3200", "4000", "5000", "6300", "7900", "10000", "12500", "16000",
    "20000", "25000", "32000", "40000", "50000", "63000", "79000", "1e+07", "+Inf",
];
/// SPEC §9.3 B4.
const B4: &[&str] = &[
    "0", "1", "10", "100", "1000", "1580", "2510", "3980", "6310", "10000", "15800", "25100",
    "39800", "63100", "100000", "158000", "251000", "398000", "631000", "1e+06", "1.58e+06",
    "2.51e+06", "3.98e+06", "6.31e+06", "1e+07", "1.58e+07", "2.51e+07", "3.98e+07", "6.31e+07",
    "1e+08", "1.58e+08", "2.51e+08", "3.98e+08", "6.31e+08", "1e+09", "1.26e+09", "1.58e+09",
    "2e+09", "2.51e+09", "3.16e+09", "3.98e+09", "5.01e+09", "6.31e+09", "7.94e+09", "1e+10",
    "+Inf",
];

/// SPEC §9.2: name, type, help.
const METRICS: &[(&str, &str, &str)] = &[
    (
        "tcpinfo_syscall_time_histogram",
        "histogram",
        "netlink syscall latency distribution (seconds)",
    ),
    (
        "tcpinfo_polling_interval_histogram",
        "histogram",
        "netlink polling interval distribution (seconds)",
    ),
    (
        "tcpinfo_connection_count_histogram",
        "histogram",
        "connection count histogram",
    ),
    (
        "tcpinfo_cache_count_histogram",
        "histogram",
        "cache connection count histogram",
    ),
    (
        "tcpinfo_error_total",
        "counter",
        "The total number of errors encountered.",
    ),
    (
        "tcpinfo_new_file_total",
        "counter",
        "Number of files created.",
    ),
    (
        "tcpinfo_send_rate_histogram",
        "histogram",
        "send rate histogram",
    ),
    (
        "tcpinfo_receive_rate_histogram",
        "histogram",
        "receive rate histogram",
    ),
    (
        "tcpinfo_snapshot_total",
        "counter",
        "Number of snapshots taken.",
    ),
    (
        "tcpinfo_flow_events_total",
        "counter",
        "Number of flow events by event type.",
    ),
    (
        "git_short_commit",
        "gauge",
        "The git commit interpreted as a number.",
    ),
];

/// One flag-error case: arguments, environment, and the name the message must contain.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

fn value(m: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = m.select(name, labels).map(|s| s.value).collect();
    assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
    found[0]
}

#[test]
fn metrics_endpoint_serves_the_upstream_metrics() {
    let Some(setup) = Setup::new("metrics") else {
        return;
    };
    let sock = setup.event_socket();
    let sock_arg = format!("--tcpinfo.eventsocket={}", sock.display());
    let mut daemon = setup.start(&[&sock_arg], &[]).unwrap();
    let addr = daemon.metrics_addr(Duration::from_secs(1)).unwrap();

    // One connection with traffic, opened and closed, so that every counter has moved.
    let listener = setup.net.listen().unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut client = setup.net.connect(port).unwrap();
    let (mut server, cookie, _) = traffic::accept(&listener).unwrap();
    for _ in 0..20 {
        client.write_all(&[0; 10_000]).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    // Rates are sampled once per wall-clock second.
    std::thread::sleep(Duration::from_millis(1100));
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(traffic::drain(&mut server).unwrap(), 200_000);
    drop(server);
    traffic::drain(&mut client).unwrap();
    archive::wait_for_last(
        &setup.output(),
        cookie,
        Duration::from_secs(10),
        "archive",
        |_, i| i.is_some_and(|i| i.bytes_received == 200_001),
    )
    .unwrap();

    let (status, body) = http_get(&setup.net, addr, "/metrics").unwrap();
    assert_eq!(status, 200, "{body}");
    let m = exposition::parse(&body).unwrap();
    let mut problems = Vec::new();
    for (name, kind, help) in METRICS {
        match m.types.get(*name) {
            Some(t) if t == kind => {}
            other => problems.push(format!("{name}: TYPE {other:?}, want {kind}")),
        }
        match m.help.get(*name) {
            Some(h) if h == help => {}
            other => problems.push(format!("{name}: HELP {other:?}, want {help:?}")),
        }
    }
    let buckets = [
        ("tcpinfo_syscall_time_histogram", &[("af", "ipv4")][..], B1),
        ("tcpinfo_syscall_time_histogram", &[("af", "ipv6")][..], B1),
        ("tcpinfo_polling_interval_histogram", &[][..], B2),
        (
            "tcpinfo_connection_count_histogram",
            &[("af", "ipv4")][..],
            B3,
        ),
        (
            "tcpinfo_connection_count_histogram",
            &[("af", "ipv6")][..],
            B3,
        ),
        ("tcpinfo_cache_count_histogram", &[][..], B3),
        ("tcpinfo_send_rate_histogram", &[][..], B4),
        ("tcpinfo_receive_rate_histogram", &[][..], B4),
    ];
    for (name, labels, want) in buckets {
        let got = m.bucket_bounds(name, labels);
        if got != want {
            problems.push(format!("{name}{labels:?} buckets {got:?}, want {want:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{problems:#?}\n---- /metrics ----\n{body}"
    );

    // The values follow what happened: one connection, one file, its events, its snapshots,
    // one dump per family per cycle.
    assert_eq!(value(&m, "tcpinfo_new_file_total", &[]) as u64, 1);
    assert_eq!(
        value(&m, "tcpinfo_flow_events_total", &[("event", "open")]) as u64,
        1
    );
    assert_eq!(
        value(&m, "tcpinfo_flow_events_total", &[("event", "close")]) as u64,
        1
    );
    let files = archive::read_tree(&setup.output()).unwrap();
    let written: usize = files.values().flatten().map(|f| f.snapshots().len()).sum();
    assert!(
        value(&m, "tcpinfo_snapshot_total", &[]) >= written as f64,
        "tcpinfo_snapshot_total below the {written} snapshots on disk"
    );
    let cycles = value(&m, "tcpinfo_polling_interval_histogram_count", &[]);
    assert!(
        cycles >= 50.0,
        "{cycles} polling cycles in over 1 s at 10 ms"
    );
    for af in ["ipv4", "ipv6"] {
        let dumps = value(&m, "tcpinfo_syscall_time_histogram_count", &[("af", af)]);
        if tcp_info_tests::mode() == "ebpf" {
            // A cycle queries the marked sockets; full dumps are the rare safety net, the first
            // at start-up.
            let sweeps = value(&m, "tcpinfo_sweeps_total", &[("kind", "safety_net")]);
            assert!(sweeps >= 1.0, "no safety-net sweep at start-up");
            assert_eq!(
                dumps as u64, sweeps as u64,
                "{af}: one dump per family per sweep"
            );
        } else {
            assert!(dumps >= cycles, "{af}: {dumps} dumps for {cycles} cycles");
        }
    }
    let received = value(&m, "tcpinfo_receive_rate_histogram_count", &[]);
    assert!(
        received >= 1.0,
        "no receive-rate sample after a second of traffic"
    );
    let commits: Vec<_> = m.select("git_short_commit", &[]).collect();
    assert_eq!(commits.len(), 1, "{commits:?}");
    assert!(commits[0].labels.contains_key("commit"), "{commits:?}");

    let (status, _) = http_get(&setup.net, addr, "/no-such-page").unwrap();
    assert_eq!(status, 404);
    assert!(daemon.try_status().unwrap().is_none());
}

#[test]
fn bad_flags_and_environment_values_exit_2_naming_the_culprit() {
    let Some(setup) = Setup::new("flags") else {
        return;
    };
    let out = setup.output();
    let base = setup.base_args();
    let base: Vec<&str> = base.iter().map(String::as_str).collect();
    // The same arguments without the bad one run fine: one cycle, then a clean exit.
    let (status, stderr) = run_to_exit(
        &setup.net,
        &[],
        &[&base[..], &["--reps=1"]].concat(),
        &[],
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(status.code(), Some(0), "baseline run failed:\n{stderr}");
    std::fs::remove_dir_all(&out).unwrap();

    let missing = setup.dir().join("no-such-prefix-file");
    let missing_env = missing.display().to_string();
    let cases: &[Case<'_>] = &[
        (&["--anonymize.ip=bogus"], &[], "anonymize.ip"),
        (&["-anonymize.ip", "bogus"], &[], "anonymize.ip"),
        (&[], &[("ANONYMIZE_IP", "netblok")], "ANONYMIZE_IP"),
        (&["--exclude-srcport=70000"], &[], "exclude-srcport"),
        (&["--exclude-srcport=80,x"], &[], "exclude-srcport"),
        (&[], &[("EXCLUDE_SRCPORT", "9100,70000")], "EXCLUDE_SRCPORT"),
        (&["--exclude-dstip=1.2.3"], &[], "exclude-dstip"),
        (&[], &[("EXCLUDE_DSTIP", "not-an-ip")], "EXCLUDE_DSTIP"),
        (&["--reps=x"], &[], "reps"),
        (&[], &[("REPS", "abc")], "REPS"),
        (&["--poll-interval=fast"], &[], "poll-interval"),
        (&["--no-such-flag"], &[], "no-such-flag"),
        (
            &[],
            &[("UUID_PREFIX_FILE", &missing_env)],
            "UUID_PREFIX_FILE",
        ),
        (
            &["--prometheusx.listen-address=nonsense"],
            &[],
            "prometheusx.listen-address",
        ),
    ];
    let mut problems = Vec::new();
    for (args, envs, culprit) in cases {
        // Command-line flags override the environment, so a flag the case sets through its
        // variable is left off the command line. `--reps=1` makes a wrongly accepted case exit
        // by itself; it comes first so that the case's own `--reps` is the last occurrence.
        let overridden = |a: &&str| {
            envs.iter().any(|(k, _)| {
                let flag = k.to_ascii_lowercase().replace('_', "-");
                a.trim_start_matches('-').starts_with(&flag)
            })
        };
        let mut all: Vec<&str> = vec!["--reps=1"];
        all.extend(base.iter().copied());
        all.retain(|a| !overridden(a));
        all.extend_from_slice(args);
        let (status, stderr) =
            run_to_exit(&setup.net, &[], &all, envs, Duration::from_secs(10)).unwrap();
        if status.code() != Some(2) {
            problems.push(format!(
                "{args:?} {envs:?}: exit {status}, want 2; stderr:\n{stderr}"
            ));
        } else if !stderr.contains(culprit) {
            problems.push(format!(
                "{args:?} {envs:?}: stderr does not name {culprit}:\n{stderr}"
            ));
        }
        if out.exists() {
            problems.push(format!(
                "{args:?} {envs:?}: created the output directory before failing"
            ));
            std::fs::remove_dir_all(&out).unwrap();
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
