//! The event socket under a flood of clients: 5 000 local connections to it. The daemon's
//! thread count stays bounded (a task per client, not a thread), clients over the cap are
//! refused cleanly (closed at once, counted), and collection goes on at its usual pace.

use std::io::{ErrorKind, Read as _};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use tcp_info::events::EventServerConfig;
use tcp_info_tests::events::EventReader;
use tcp_info_tests::events::worst_close_latency;
use tcp_info_tests::{Setup, raise_nofile, thread_count, wait_for};

const CLIENTS: usize = 5_000;
/// Short connections whose Close latency is measured before and during the flood.
const PROBES: usize = 20;

#[test]
fn five_thousand_clients_are_capped_without_threads_or_slowdown() {
    let cap = EventServerConfig::default().max_clients;
    assert!(CLIENTS > 2 * cap, "the flood must exceed the cap");
    let Some(setup) = Setup::new("evmany") else {
        return;
    };
    let limit = raise_nofile();
    assert!(
        limit >= CLIENTS as u64 + 1_000,
        "RLIMIT_NOFILE hard limit {limit} is too low for {CLIENTS} clients"
    );
    let (mut daemon, reader) = setup.start_with_events(&[]).unwrap();
    let pid = daemon.pid().unwrap();
    let before = worst_close_latency(&setup, &reader, PROBES, Duration::from_secs(20)).unwrap();
    let threads_before = thread_count(pid).unwrap();

    let sock = setup.event_socket();
    let clients: Vec<UnixStream> = (0..CLIENTS)
        .map(|i| {
            UnixStream::connect(&sock).unwrap_or_else(|e| panic!("client {i} cannot connect: {e}"))
        })
        .collect();
    // The reader holds one slot, so the first `cap - 1` are served and the rest refused.
    let served = cap - 1;
    let refused = CLIENTS - served;
    wait_for(
        Duration::from_secs(30),
        "every client accepted or refused",
        || {
            let m = setup.scrape(&mut daemon)?;
            let done = m.total("tcpinfo_eventsocket_clients_refused_total", &[]) as usize
                == refused
                && m.total("tcpinfo_eventsocket_clients", &[]) as usize == cap;
            Ok(done.then_some(()))
        },
    )
    .unwrap();
    let threads_during = thread_count(pid).unwrap();
    eprintln!("daemon threads: {threads_before} before, {threads_during} with {CLIENTS} clients");
    assert!(
        threads_during <= threads_before + 2,
        "threads grew from {threads_before} to {threads_during} with {CLIENTS} clients"
    );

    // Refused clients read end-of-file at once; served ones are open and waiting for events.
    let mut eof = Vec::new();
    for (i, mut c) in clients.iter().enumerate() {
        c.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        match c.read(&mut byte) {
            Ok(0) => eof.push(i),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("client {i}: {e}"),
        }
    }
    assert_eq!(eof.len(), refused, "clients refused");
    assert!(
        eof.iter().all(|&i| i >= served),
        "a client within the cap was refused"
    );

    // Collection and delivery go on at their usual pace with every slot taken.
    let during = worst_close_latency(&setup, &reader, PROBES, Duration::from_secs(20)).unwrap();
    eprintln!("worst Close latency: {before:?} before the flood, {during:?} during");
    assert!(
        during < Duration::from_secs(2),
        "a Close took {during:?} to arrive with {CLIENTS} clients connected"
    );
    // A served client gets the events too.
    let mut first = &clients[0];
    first.set_nonblocking(false).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut line = [0u8; 10];
    first.read_exact(&mut line).unwrap();
    assert_eq!(&line, b"{\"Event\":0", "a served client's first line");

    // Once the clients hang up, their slots free up again.
    drop(clients);
    wait_for(Duration::from_secs(10), "the slots to free up", || {
        let m = setup.scrape(&mut daemon)?;
        Ok((m.total("tcpinfo_eventsocket_clients", &[]) as usize == 1).then_some(()))
    })
    .unwrap();
    let again = EventReader::connect(&sock, Duration::from_secs(5)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(!again.eof(), "a client after the flood was refused");
}
