//! eBPF mode end to end (DESIGN §1, §2): the real programs loaded and attached by the daemon,
//! real connections between namespaces, real archives. These tests run in eBPF mode whatever
//! `TCP_INFO_E2E_MODE` says, with the safety-net sweeps pushed out of the way (one hour) so that
//! what they see comes from marks alone.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure should fail the test where it happens"
)]

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tcp_info::record::ArchivalRecord;
use tcp_info::wire::inet_diag::{InetDiagMsg, state};
use tcp_info_tests::daemon::run_to_exit;
use tcp_info_tests::exposition::Exposition;
use tcp_info_tests::{Daemon, Setup, archive, traffic, wait_for};

/// Safety-net sweeps effectively off: only the one at start-up runs.
const NO_SAFETY_NET: &str = "--safety-sweep-interval=1h";

/// The tests of this file run one at a time: several measure timing (records per poll, lag
/// behind an event) that a two-core machine busy with the others' thousand connections and bulk
/// flows could not give them.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

fn start_ebpf(setup: &Setup, extra: &[&str]) -> Daemon {
    let mut args = vec!["--mode=ebpf", NO_SAFETY_NET, "--flush-interval=200ms"];
    args.extend_from_slice(extra);
    setup.start(&args, &[]).unwrap()
}

fn scrape(setup: &Setup, daemon: &mut Daemon) -> Exposition {
    setup.scrape(daemon).unwrap()
}

/// The sum of a counter's samples with these labels (0 if none).
fn total(m: &Exposition, name: &str, labels: &[(&str, &str)]) -> u64 {
    m.total(name, labels) as u64
}

/// Whether `tcpinfo_mode` says `mode` is in use.
fn mode_is(m: &Exposition, mode: &str) -> bool {
    total(m, "tcpinfo_mode", &[("mode", mode)]) == 1
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn record_secs(r: &ArchivalRecord) -> f64 {
    r.timestamp.unix_nanos() as f64 / 1e9
}

fn state_of(r: &ArchivalRecord) -> u8 {
    InetDiagMsg::new(r.raw_idm()).unwrap().state()
}

/// Sends for `duration` from `from` to `to` (drained on a thread) in small paced writes.
fn flow(
    mut from: TcpStream,
    mut to: TcpStream,
    duration: Duration,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let reader = std::thread::spawn(move || traffic::drain(&mut to).unwrap());
        let chunk = vec![0x42u8; 16 * 1024];
        let end = Instant::now() + duration;
        while Instant::now() < end {
            from.write_all(&chunk).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        from.shutdown(Shutdown::Write).unwrap();
        let received = reader.join().unwrap();
        drop(from);
        received
    })
}

/// Test 1: with the safety net off, a bulk flow in either direction is recorded at the poll
/// interval's resolution from marks alone: at least 80 records per second at 10 ms.
#[test]
fn bulk_flows_are_recorded_every_poll_interval_from_marks_alone() {
    let _serial = one_at_a_time();
    let Some(setup) = Setup::new("ebpfbulk") else {
        return;
    };
    let mut daemon = start_ebpf(&setup, &[]);
    // The start-up sweep must be over before the flows start: it is to record none of them.
    setup
        .wait_ready(&mut daemon, Duration::from_secs(10))
        .unwrap();
    let listener = setup.net.listen().unwrap();
    let (up_client, up_server, up_cookie) = setup.connected(&listener).unwrap();
    let (down_client, down_server, down_cookie) = setup.connected(&listener).unwrap();
    let start = unix_secs(SystemTime::now());
    let secs = 3.0;
    // The server receives on one connection and sends on the other.
    let up = flow(up_client, up_server, Duration::from_secs_f64(secs));
    let down = flow(down_server, down_client, Duration::from_secs_f64(secs));
    assert!(up.join().unwrap() > 0 && down.join().unwrap() > 0);
    for (cookie, what) in [(up_cookie, "receiving"), (down_cookie, "sending")] {
        let files = archive::wait_for_last(
            &setup.output(),
            cookie,
            Duration::from_secs(10),
            "the final record",
            |r, _| state_of(r) == state::CLOSE || state_of(r) == state::TIME_WAIT,
        )
        .unwrap_or_else(|e| panic!("{what} server: {e:#}"));
        // The steady part of the flow: its middle two seconds.
        let (from, to) = (start + 0.5, start + secs - 0.5);
        let records = files
            .iter()
            .flat_map(archive::ArchiveFile::snapshots)
            .filter(|r| (from..to).contains(&record_secs(r)))
            .count();
        let per_second = records as f64 / (to - from);
        eprintln!("{what} server: {per_second:.1} records/s");
        assert!(
            per_second >= 80.0,
            "{what} server: {per_second:.1} records/s, want at least 80 at a 10 ms poll interval"
        );
    }
    let m = scrape(&setup, &mut daemon);
    assert_eq!(
        total(&m, "tcpinfo_sweeps_total", &[("kind", "safety_net")]),
        1,
        "only the start-up sweep ran"
    );
    assert_eq!(
        total(&m, "tcpinfo_records_total", &[("source", "sweep")]),
        0
    );
    assert!(total(&m, "tcpinfo_records_total", &[("source", "ebpf")]) >= 320);
    assert_eq!(total(&m, "tcpinfo_ebpf_kernel_drops_total", &[]), 0);
    assert!(mode_is(&m, "ebpf"));
}

/// Test 2: a new connection, a state change and a close each reach the archive within two poll
/// intervals, and the last record has the exact final counters. (A 50 ms interval keeps the
/// bound meaningful on a loaded two-core machine.)
#[test]
fn open_state_change_and_close_are_recorded_within_two_poll_intervals() {
    let _serial = one_at_a_time();
    let Some(setup) = Setup::new("ebpflife") else {
        return;
    };
    let interval = 0.05;
    let _daemon = start_ebpf(&setup, &["--poll-interval=50ms"]);
    let listener = setup.net.listen().unwrap();

    let opened = unix_secs(SystemTime::now());
    let (mut client, mut server, cookie) = setup.connected(&listener).unwrap();
    client.write_all(&[1; 1000]).unwrap();
    server.read_exact(&mut [0; 1000]).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    // The client closes its side: the server moves to CLOSE_WAIT.
    let half_closed = unix_secs(SystemTime::now());
    client.shutdown(Shutdown::Write).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let closed = unix_secs(SystemTime::now());
    server.write_all(&[2; 500]).unwrap();
    drop(server);
    assert_eq!(traffic::drain(&mut client).unwrap(), 500);
    drop(client);

    let files = archive::wait_for_last(
        &setup.output(),
        cookie,
        Duration::from_secs(10),
        "the exact final record",
        |_, info| info.is_some_and(|i| i.bytes_received == 1001 && i.bytes_acked == 501),
    )
    .unwrap();
    assert_eq!(files.len(), 1);
    let records = files[0].snapshots();
    let first = &records[0];
    let within = |t: f64, since: f64, what: &str| {
        let lag = t - since;
        assert!(
            (0.0..=2.0 * interval).contains(&lag),
            "{what} reached the archive {:.1} ms after it happened",
            lag * 1e3
        );
    };
    within(record_secs(first), opened, "the new connection");
    let close_wait = records
        .iter()
        .find(|r| state_of(r) == state::CLOSE_WAIT)
        .expect("a CLOSE_WAIT record");
    within(record_secs(close_wait), half_closed, "the state change");
    let last = records.last().unwrap();
    within(record_secs(last), closed, "the close");
}

/// Test 3: a thousand established, idle connections cost no exact query at all.
#[test]
fn a_thousand_idle_connections_cause_no_exact_queries() {
    let _serial = one_at_a_time();
    let Some(setup) = Setup::new("ebpfidle") else {
        return;
    };
    // Two thousand sockets in this process: more than a default soft limit of 1024.
    tcp_info_tests::raise_nofile();
    let mut daemon = start_ebpf(&setup, &[]);
    // After the start-up sweep, so that every connection is recorded from its marks.
    setup
        .wait_ready(&mut daemon, Duration::from_secs(10))
        .unwrap();
    let listener = setup.net.listen().unwrap();
    let mut held = Vec::new();
    for _ in 0..1000 {
        let (client, server, _) = setup.connected(&listener).unwrap();
        held.push((client, server));
    }
    // Established, marked, queried, followed up: wait until the counters hold still.
    let queries = |m: &Exposition| total(m, "tcpinfo_exact_queries_total", &[]);
    let marks = |m: &Exposition| total(m, "tcpinfo_ebpf_marks_total", &[]);
    let mut last = (u64::MAX, u64::MAX);
    let before = wait_for(Duration::from_secs(20), "counters at rest", || {
        std::thread::sleep(Duration::from_millis(500));
        let m = scrape(&setup, &mut daemon);
        let now = (queries(&m), marks(&m));
        Ok((std::mem::replace(&mut last, now) == now).then_some(m))
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let after = scrape(&setup, &mut daemon);
    assert!(
        total(&before, "tcpinfo_flow_events_total", &[("event", "open")]) >= 1000,
        "every connection was recorded"
    );
    assert!(queries(&before) >= 1000);
    assert_eq!(
        queries(&after),
        queries(&before),
        "exact queries while idle"
    );
    assert_eq!(marks(&after), marks(&before), "marks while idle");
    drop(held);
}

/// Test 4: connections in a namespace the daemon does not watch cause no marks, even busy ones.
#[test]
fn connections_in_an_unwatched_namespace_cause_no_marks() {
    let _serial = one_at_a_time();
    let Some(setup) = Setup::new("ebpfother") else {
        return;
    };
    let mut daemon = start_ebpf(&setup, &[]);
    setup
        .wait_ready(&mut daemon, Duration::from_secs(10))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let before = scrape(&setup, &mut daemon);
    // A flow entirely inside the client namespace, on its veth address (not loopback).
    let ip = setup.net.client_ip();
    let listener = setup
        .net
        .in_client(|| TcpListener::bind((ip, 0)))
        .unwrap()
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = setup
        .net
        .in_client(|| TcpStream::connect((ip, port)))
        .unwrap()
        .unwrap();
    let (server, _, _) = traffic::accept(&listener).unwrap();
    flow(client, server, Duration::from_secs(1)).join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let after = scrape(&setup, &mut daemon);
    for name in [
        "tcpinfo_ebpf_marks_total",
        "tcpinfo_exact_queries_total",
        "tcpinfo_flow_events_total",
    ] {
        assert_eq!(
            total(&after, name, &[]),
            total(&before, name, &[]),
            "{name}"
        );
    }
    assert!(
        archive::archive_files(&setup.output()).unwrap().is_empty(),
        "nothing of the other namespace is archived"
    );
    // The control: the same flow into the watched namespace is marked.
    let listener = setup.net.listen().unwrap();
    let (client, server, _) = setup.connected(&listener).unwrap();
    flow(client, server, Duration::from_secs(1)).join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let watched = scrape(&setup, &mut daemon);
    assert!(
        total(&watched, "tcpinfo_ebpf_marks_total", &[])
            > total(&after, "tcpinfo_ebpf_marks_total", &[]),
        "the watched namespace's flow was not marked: the programs mark nothing at all"
    );
}

/// Test 5: without CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (dropped from the bounding set),
/// `--mode auto` says why eBPF cannot run, falls back to sweep mode and still records every
/// connection with its exact final counters; `--mode ebpf` exits non-zero with the reason.
#[test]
fn auto_falls_back_to_sweep_when_ebpf_cannot_load() {
    let _serial = one_at_a_time();
    let Some(setup) = Setup::new("ebpfdrop") else {
        return;
    };
    // Out of the bounding set and, should the runner have any, the inheritable set: a root
    // process's capabilities after exec come from both.
    let drop_caps = [
        "setpriv",
        "--inh-caps=-all",
        "--bounding-set=-bpf,-perfmon,-sys_admin",
        "--",
    ];
    let mut daemon = setup
        .start_wrapped(&drop_caps, &["--mode=auto"], &[])
        .unwrap();
    let stderr = daemon.stderr();
    let line = stderr
        .lines()
        .find(|l| l.contains("eBPF mode unavailable; running sweep mode"))
        .unwrap_or_else(|| panic!("no fallback line:\n{stderr}"));
    assert!(
        line.contains("reason=") && line.contains("Operation not permitted"),
        "the line names the reason, down to the errno: {line}"
    );
    let m = scrape(&setup, &mut daemon);
    assert!(mode_is(&m, "sweep"));

    let listener = setup.net.listen().unwrap();
    let (mut client, mut server, cookie) = setup.connected(&listener).unwrap();
    client.write_all(&[7; 3000]).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(traffic::drain(&mut server).unwrap(), 3000);
    drop(server);
    drop(client);
    archive::wait_for_last(
        &setup.output(),
        cookie,
        Duration::from_secs(10),
        "the exact final record in sweep mode",
        |_, info| info.is_some_and(|i| i.bytes_received == 3001 && i.bytes_acked == 1),
    )
    .unwrap();
    drop(daemon);

    let base = setup.base_args();
    let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
    args.push("--mode=ebpf");
    let (status, stderr) =
        run_to_exit(&setup.net, &drop_caps, &args, &[], Duration::from_secs(20)).unwrap();
    assert!(!status.success(), "--mode ebpf must fail:\n{stderr}");
    assert!(
        stderr.contains("eBPF mode (--mode ebpf) cannot run"),
        "{stderr}"
    );
}
