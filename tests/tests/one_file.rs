//! One connection, one file, one Open, one Close — as upstream writes it, even when the
//! connection pauses for longer than a minute or its application keeps the socket in CLOSE
//! after the peer reset it (a state no sock_diag query can see, so the sweeps lose it long
//! before its destroy notification comes).
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failure should fail the test where it happens"
)]

use std::io::{Read as _, Write as _};
use std::time::Duration;

use tcp_info::events::{Decoded, EventKind, FlowEvent};
use tcp_info::wire::inet_diag::{InetDiagMsg, state};
use tcp_info_tests::events::EventReader;
use tcp_info_tests::sockets::set_linger_zero;
use tcp_info_tests::{Setup, archive, traffic};

/// The Open and Close events seen for `uuid`.
fn events_of(reader: &EventReader, uuid: &str) -> (usize, usize) {
    let mut counts = (0, 0);
    for line in reader.lines() {
        if let Ok(Decoded::Event(e)) = FlowEvent::decode(line.text.as_bytes())
            && e.uuid == uuid
        {
            match e.kind {
                EventKind::Open => counts.0 += 1,
                EventKind::Close => counts.1 += 1,
            }
        }
    }
    counts
}

/// Waits for the Close of `uuid`, then checks: one file, one Open, one Close.
fn assert_one_file(setup: &Setup, reader: &EventReader, cookie: u64, timeout: Duration) {
    let uuid = setup.uuid(cookie);
    reader
        .wait_until(timeout, "the connection's Close", |_| {
            events_of(reader, &uuid).1 >= 1
        })
        .unwrap();
    // Anything that would wrongly reopen it (a late record) has had time to arrive.
    std::thread::sleep(Duration::from_millis(500));
    let files = archive::cookie_files(&setup.output(), cookie)
        .unwrap()
        .expect("no archive for the connection");
    let names: Vec<_> = files.iter().map(|f| f.path.display().to_string()).collect();
    assert_eq!(files.len(), 1, "files of {uuid}: {names:#?}");
    assert_eq!(files[0].name.seq, 0);
    assert_eq!(
        events_of(reader, &uuid),
        (1, 1),
        "Open and Close events of {uuid}"
    );
}

/// A connection quiet for 90 s between two exchanges stays in one file (upstream splits only
/// at the 10-minute rotation), and its last record has the exact final counters.
#[test]
fn a_ninety_second_pause_keeps_one_file() {
    let Some(setup) = Setup::new("pause") else {
        return;
    };
    let (_daemon, reader) = setup
        .start_with_events(&["--flush-interval=200ms"])
        .unwrap();
    let listener = setup.net.listen().unwrap();
    let (mut client, mut server, cookie) = setup.connected(&listener).unwrap();
    client.write_all(b"before").unwrap();
    server.read_exact(&mut [0; 6]).unwrap();
    server.write_all(b"ok").unwrap();
    client.read_exact(&mut [0; 2]).unwrap();
    std::thread::sleep(Duration::from_secs(90));
    client.write_all(b"after the pause").unwrap();
    server.read_exact(&mut [0; 15]).unwrap();
    drop(client);
    assert_eq!(traffic::drain(&mut server).unwrap(), 0);
    drop(server);
    assert_one_file(&setup, &reader, cookie, Duration::from_secs(20));
    let files = archive::cookie_files(&setup.output(), cookie)
        .unwrap()
        .unwrap();
    let last = files[0].last().unwrap();
    let info = archive::tcp_info(last).expect("final record with tcp_info");
    // Server side: 21 bytes received plus the FIN, 2 sent plus the FIN.
    assert_eq!(
        (info.bytes_received, info.bytes_acked),
        (22, 3),
        "exact final counters"
    );
}

/// The peer resets the connection and the server keeps its socket (now in CLOSE, unlisted by
/// sweeps and exact queries) for 2 s before closing it. The sweeps lose it at once; the
/// connection must still end once, with the destroy notification's final record in the same
/// file — not be closed by the sweeps and reopened by the late notification.
#[test]
fn a_socket_held_in_close_for_two_seconds_keeps_one_file() {
    let Some(setup) = Setup::new("heldclose") else {
        return;
    };
    let (mut daemon, reader) = setup
        .start_with_events(&["--flush-interval=200ms"])
        .unwrap();
    let listener = setup.net.listen().unwrap();
    let (client, mut server, cookie) = setup.connected(&listener).unwrap();
    server.write_all(b"hello").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // An abortive close: the client sends RST, the server's socket moves to CLOSE.
    set_linger_zero(&client).unwrap();
    drop(client);
    let err = server
        .read(&mut [0; 16])
        .expect_err("the peer reset the connection");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    std::thread::sleep(Duration::from_secs(2));
    let uuid = setup.uuid(cookie);
    assert_eq!(
        events_of(&reader, &uuid),
        (1, 0),
        "no Close while the socket exists"
    );
    drop(server);
    assert_one_file(&setup, &reader, cookie, Duration::from_secs(10));
    let files = archive::cookie_files(&setup.output(), cookie)
        .unwrap()
        .unwrap();
    let last = files[0].last().unwrap();
    let idm = InetDiagMsg::new(last.raw_idm()).unwrap();
    assert_eq!(
        idm.state(),
        state::CLOSE,
        "the destroy notification's record ends the file"
    );
    let addr = daemon.metrics_addr(Duration::from_secs(5)).unwrap();
    let (_, text) = tcp_info_tests::sockets::http_get(&setup.net, addr, "/metrics").unwrap();
    assert!(
        text.lines().any(|l| l == "tcpinfo_late_destroys_total 0"),
        "no late destroy"
    );
}
