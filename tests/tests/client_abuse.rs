//! Clients the daemon does not control (issue 12), against the real daemon.
//!
//! While attackers flood the metrics endpoint (slowloris clients that trickle their request
//! heads, clients that ask and never read the answer, a storm of connections opened and closed
//! as fast as possible, some sending garbage or invalid HTTP or resetting) and the event socket
//! (connections opened and closed as fast as possible, clients writing garbage into it without
//! pause, clients that never read), the daemon must:
//! - answer every scrape of a scraper running every 200 ms, promptly;
//! - record connections at its usual pace (from a connection's end to its Close event);
//! - keep its threads, descriptors and memory bounded;
//! - and afterwards work as before, and stop cleanly.
//!
//! Every attacker is another loopback address of the daemon's namespace, the scraper one of its
//! own (as Prometheus is another host): the endpoint's fairness is per address
//! (`tcp_info::http`); that a scraper sharing the attacker's address gets in too is the unit
//! tests' business.
//!
//! Measured on a 2-core machine busy with other builds, in both modes: 25 000–35 000
//! connections to the metrics endpoint and 230 000–390 000 to the event socket in 10 s; every
//! scrape answered, the worst in 70–310 ms; Close events within 90 ms (1–3 ms before).
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure should fail the test where it happens"
)]

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tcp_info::events::EventServerConfig;
use tcp_info::http::MAX_CONNECTIONS;
use tcp_info_tests::events::worst_close_latency;
use tcp_info_tests::events::{EventReader, connect_stalled};
use tcp_info_tests::sockets::{connect_from, set_linger_zero};
use tcp_info_tests::{Setup, raise_nofile, thread_count, wait_for};

/// How long the attack lasts.
const ABUSE: Duration = Duration::from_secs(10);
/// The scraper's period.
const SCRAPE_EVERY: Duration = Duration::from_millis(200);
/// The worst scrape latency allowed during the attack. A refused scrape fails at once; the
/// defects guarded against stall a scrape for a head timeout (10 s) or longer; a loaded 2-core
/// machine answers in milliseconds.
const WORST_SCRAPE: Duration = Duration::from_secs(2);
/// The worst time from a connection's end to its Close event allowed, before, during and after
/// the attack (`event_clients.rs` allows the same).
const WORST_CLOSE: Duration = Duration::from_secs(2);
/// Short connections whose Close latency is measured each time.
const PROBES: usize = 20;
/// Event-socket clients that never read, held throughout the attack.
const NEVER_READERS: usize = 100;
/// Event-socket clients writing garbage without pause.
const GARBAGE_WRITERS: usize = 2;
/// Metrics clients that ask and never read, at any time.
const NON_READERS: usize = 8;
/// Memory the daemon may grow by during the attack: clients' bytes must not pile up in it.
const MAX_RSS_GROWTH_KIB: u64 = 64 * 1024;

const SCRAPER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const SLOWLORIS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const NON_READER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
const STORM: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);

/// One scrape: how long it took and its status, or why it failed.
type Scrape = (Duration, Result<u16, String>);

/// The daemon's open descriptors.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The daemon's resident memory, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A GET of `/metrics` from `from` (in the calling thread's namespace): its status code.
fn scrape_from(from: Ipv4Addr, addr: SocketAddrV4) -> Result<u16, String> {
    let mut stream = connect_from(from, addr, None).map_err(|e| format!("{e:#}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: scraper\r\n\r\n")
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("reading the answer: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no complete answer ({} bytes)", answer.len()))?;
    if !body.contains("\ntcpinfo_snapshot_total ") {
        return Err(format!("an incomplete exposition ({} bytes)", body.len()));
    }
    head.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))
}

/// Scrapes every `SCRAPE_EVERY` until `stop`.
fn scraper(addr: SocketAddrV4, stop: &AtomicBool) -> Vec<Scrape> {
    let mut scrapes = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let status = scrape_from(SCRAPER, addr);
        scrapes.push((start.elapsed(), status));
        std::thread::sleep(SCRAPE_EVERY.saturating_sub(start.elapsed()));
    }
    scrapes
}

/// More clients than the endpoint has slots, each sending a request head a line every 200 ms
/// and never finishing it; a client the daemon closed is replaced. Returns the connections
/// made.
fn slowloris(addr: SocketAddrV4, stop: &AtomicBool) -> usize {
    let mut held: Vec<TcpStream> = Vec::new();
    let mut made = 0;
    while !stop.load(Ordering::Relaxed) {
        while held.len() < MAX_CONNECTIONS + 8 {
            let Ok(mut s) = connect_from(SLOWLORIS, addr, None) else {
                break;
            };
            made += 1;
            if s.write_all(b"GET /metrics HTTP/1.1\r\n").is_ok() {
                held.push(s);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        // Writing to a connection the daemon closed fails (at the latest the second time).
        held.retain_mut(|s| s.write_all(b"X-Slow: 1\r\n").is_ok());
    }
    made
}

/// Clients that ask for the exposition with the smallest receive buffer and never read it,
/// `NON_READERS` at a time, replaced every second. Returns the connections made.
fn non_readers(addr: SocketAddrV4, stop: &AtomicBool) -> usize {
    let mut made = 0;
    while !stop.load(Ordering::Relaxed) {
        let held: Vec<TcpStream> = (0..NON_READERS)
            .filter_map(|_| {
                let mut s = connect_from(NON_READER, addr, Some(1024)).ok()?;
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                    .ok()?;
                Some(s)
            })
            .collect();
        made += held.len();
        std::thread::sleep(Duration::from_secs(1));
        drop(held);
    }
    made
}

/// Connections opened and closed as fast as possible, doing one of: nothing, garbage bytes,
/// invalid HTTP, half a head, a request never read, a reset. Returns the connections made.
fn http_storm(addr: SocketAddrV4, stop: &AtomicBool) -> usize {
    let mut made = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = connect_from(STORM, addr, None) else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        made += 1;
        let _ = match made % 6 {
            0 => Ok(()),
            1 => s.write_all(&[0xA5; 2048]).map_err(anyhow::Error::from),
            2 => s
                .write_all(b"\x16\x03\x01 NOT HTTP\r\n\r\n")
                .map_err(anyhow::Error::from),
            3 => s
                .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
                .map_err(anyhow::Error::from),
            4 => s.write_all(b"GET /metrics HT").map_err(anyhow::Error::from),
            _ => set_linger_zero(&s),
        };
        drop(s);
    }
    made
}

/// Event-socket connections opened and closed as fast as possible, every other one writing
/// garbage first. Returns the connections made.
fn event_storm(path: &Path, stop: &AtomicBool) -> usize {
    let mut made = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = UnixStream::connect(path) else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        made += 1;
        if made.is_multiple_of(2) {
            let _ = s.write_all(b"{\"Event\":\"garbage\"}\n\x00\xff");
        }
    }
    made
}

/// A client that writes garbage into the event socket without pause, reconnecting when the
/// daemon closes it (it should: clients never send). Returns the bytes written and the
/// connections made.
fn event_garbage(path: &Path, stop: &AtomicBool) -> (usize, usize) {
    let chunk = vec![0x5Au8; 64 * 1024];
    let (mut written, mut made) = (0usize, 0usize);
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = UnixStream::connect(path) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        made += 1;
        // Bounded, so that a daemon that stopped reading cannot hang the test.
        s.set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        while !stop.load(Ordering::Relaxed) {
            match s.write(&chunk) {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
    }
    (written, made)
}

#[test]
fn clients_that_abuse_the_endpoints_do_not_slow_collection_or_scrapes() {
    let Some(setup) = Setup::new("abuse") else {
        return;
    };
    raise_nofile();
    let (mut daemon, reader) = setup.start_with_events(&[]).unwrap();
    setup
        .wait_ready(&mut daemon, Duration::from_secs(20))
        .unwrap();
    let pid = daemon.pid().unwrap();
    let SocketAddr::V4(metrics) = daemon.metrics_addr(Duration::from_secs(5)).unwrap() else {
        panic!("the metrics listener is not IPv4 loopback");
    };
    let sock = setup.event_socket();

    let close_before =
        worst_close_latency(&setup, &reader, PROBES, Duration::from_secs(30)).unwrap();
    let (threads_before, fds_before, rss_before) =
        (thread_count(pid).unwrap(), fd_count(pid), rss_kib(pid));
    let clean_scrape = setup
        .net
        .in_server(|| scrape_from(SCRAPER, metrics))
        .unwrap();
    assert_eq!(clean_scrape, Ok(200));

    let never_readers: Vec<UnixStream> = (0..NEVER_READERS)
        .map(|_| connect_stalled(&sock, Duration::from_secs(5)).unwrap())
        .collect();
    let stop = AtomicBool::new(false);
    let net = &setup.net;
    let (scrapes, attacks, during) = std::thread::scope(|s| {
        let scrapes = s.spawn(|| net.in_server(|| scraper(metrics, &stop)).unwrap());
        let slow = s.spawn(|| net.in_server(|| slowloris(metrics, &stop)).unwrap());
        let unread = s.spawn(|| net.in_server(|| non_readers(metrics, &stop)).unwrap());
        let storm = s.spawn(|| net.in_server(|| http_storm(metrics, &stop)).unwrap());
        let events = s.spawn(|| event_storm(&sock, &stop));
        let garbage: Vec<_> = (0..GARBAGE_WRITERS)
            .map(|_| s.spawn(|| event_garbage(&sock, &stop)))
            .collect();

        let start = Instant::now();
        // Let every attacker get going, then measure collection while they run.
        std::thread::sleep(Duration::from_secs(1));
        let close_during =
            worst_close_latency(&setup, &reader, PROBES, Duration::from_secs(30)).unwrap();
        let mut peak = (0, 0, 0);
        while start.elapsed() < ABUSE {
            peak.0 = peak.0.max(thread_count(pid).unwrap());
            peak.1 = peak.1.max(fd_count(pid));
            peak.2 = peak.2.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
        let garbage: Vec<(usize, usize)> = garbage.into_iter().map(|g| g.join().unwrap()).collect();
        let attacks = (
            slow.join().unwrap(),
            unread.join().unwrap(),
            storm.join().unwrap(),
            events.join().unwrap(),
            garbage,
        );
        (scrapes.join().unwrap(), attacks, (close_during, peak))
    });
    drop(never_readers);
    let (slow, unread, storm, event_conns, garbage) = attacks;
    let (close_during, (threads_peak, fds_peak, rss_peak)) = during;
    let garbage_bytes: usize = garbage.iter().map(|g| g.0).sum();
    let garbage_conns: usize = garbage.iter().map(|g| g.1).sum();
    let worst = scrapes.iter().map(|s| s.0).max().unwrap_or_default();
    eprintln!(
        "attack: metrics endpoint: {slow} slowloris, {unread} non-reading and {storm} storm \
         connections; event socket: {event_conns} storm connections, {NEVER_READERS} never \
         reading, {} MiB of garbage over {garbage_conns} connections",
        garbage_bytes >> 20
    );
    eprintln!(
        "{} scrapes, worst {worst:?}; Close latency {close_before:?} before, {close_during:?} \
         during; threads {threads_before} → {threads_peak}, descriptors {fds_before} → \
         {fds_peak}, RSS {rss_before} → {rss_peak} KiB",
        scrapes.len()
    );

    // The attack was real.
    assert!(slow > 2 * MAX_CONNECTIONS, "{slow} slowloris connections");
    assert!(storm >= 1_000, "{storm} storm connections");
    assert!(
        event_conns >= 1_000,
        "{event_conns} event-socket connections"
    );
    assert!(garbage_bytes >= 1 << 20, "{garbage_bytes} bytes of garbage");
    // A client that keeps writing is not an event client: the daemon closes it.
    assert!(
        garbage_conns > 2 * GARBAGE_WRITERS,
        "garbage writers were not disconnected ({garbage_conns} connections)"
    );
    assert!(unread >= NON_READERS, "{unread} non-reading clients");

    // Every scrape answered, promptly.
    let failed: Vec<&Scrape> = scrapes.iter().filter(|s| s.1 != Ok(200)).collect();
    assert!(failed.is_empty(), "scrapes not answered 200: {failed:?}");
    let expected = (ABUSE.as_millis() / SCRAPE_EVERY.as_millis()) as usize;
    assert!(
        scrapes.len() >= expected / 2,
        "{} scrapes in {ABUSE:?}",
        scrapes.len()
    );
    assert!(worst < WORST_SCRAPE, "a scrape took {worst:?}");

    // Collection at its usual pace.
    assert!(
        close_before < WORST_CLOSE,
        "{close_before:?} before the attack"
    );
    assert!(
        close_during < WORST_CLOSE,
        "a Close took {close_during:?} to arrive during the attack"
    );

    // Bounded resources: no thread per client; at most a descriptor per client each endpoint
    // serves (a storm may fill the event socket's slots for an instant; the HTTP endpoint's
    // are few) and a few being closed; clients' bytes are not kept.
    assert!(
        threads_peak <= threads_before + 2,
        "threads grew from {threads_before} to {threads_peak}"
    );
    let served = EventServerConfig::default().max_clients + MAX_CONNECTIONS;
    assert!(
        fds_peak <= fds_before + served + 32,
        "descriptors grew from {fds_before} to {fds_peak}"
    );
    assert!(
        rss_peak <= rss_before + MAX_RSS_GROWTH_KIB,
        "resident memory grew from {rss_before} to {rss_peak} KiB"
    );

    // Afterwards: every client's descriptor is released...
    wait_for(
        Duration::from_secs(30),
        "the descriptors back to their count before the attack",
        || {
            let fds = fd_count(pid);
            Ok((fds <= fds_before + 2).then_some(fds))
        },
    )
    .unwrap();
    // ...the endpoint counted what it dropped, and the event socket is down to its reader...
    let m = setup.scrape(&mut daemon).unwrap();
    let dropped = |reason| {
        m.total(
            "tcpinfo_http_connections_dropped_total",
            &[("server", "metrics"), ("reason", reason)],
        )
    };
    eprintln!(
        "dropped: {:?}",
        tcp_info::http::DropReason::ALL
            .iter()
            .map(|r| (r.as_str(), dropped(r.as_str())))
            .collect::<Vec<_>>()
    );
    assert!(
        dropped("evicted_waiting") > 0.0,
        "no slowloris client evicted"
    );
    wait_for(
        Duration::from_secs(10),
        "the event socket down to its reader",
        || {
            let m = setup.scrape(&mut daemon)?;
            Ok((m.total("tcpinfo_eventsocket_clients", &[]) as usize == 1).then_some(()))
        },
    )
    .unwrap();
    // ...garbage writers were disconnected for sending, and counted (not each of their
    // connections: one the daemon refused while the storm filled the event socket, or one
    // whose write timed out while the daemon was busy, ended before it sent 4 KiB)...
    let sent_data = wait_for(
        Duration::from_secs(10),
        "the garbage writers counted",
        || {
            let m = setup.scrape(&mut daemon)?;
            let n = m.total("tcpinfo_eventsocket_clients_sent_data_total", &[]) as usize;
            Ok((n > 0).then_some(n))
        },
    )
    .unwrap();
    eprintln!("{sent_data} of {garbage_conns} garbage connections counted as sending");
    assert!(
        sent_data <= garbage_conns,
        "{sent_data} clients counted as sending, of {garbage_conns} garbage connections"
    );
    // ...a new event client gets connections' events at the usual pace...
    let fresh = EventReader::connect(&sock, Duration::from_secs(5)).unwrap();
    let close_after = worst_close_latency(&setup, &fresh, PROBES, Duration::from_secs(30)).unwrap();
    eprintln!("Close latency after the attack: {close_after:?}");
    assert!(
        close_after < WORST_CLOSE,
        "{close_after:?} after the attack"
    );
    assert!(!reader.eof(), "the reading client was dropped");
    // ...and the daemon stops cleanly.
    let (status, took) = daemon.terminate().unwrap();
    assert!(
        status.success(),
        "the daemon exited with {status} after the attack"
    );
    eprintln!("stopped in {took:?}");
}
