//! D3: an orphaned FIN_WAIT2 socket turned time-wait minisock (state 5, no attributes) is
//! dumped on every poll; it must not produce a `"Attributes":[null]` line every 10 ms.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use tcp_info::events::{Decoded, EventKind, FlowEvent};
use tcp_info::wire::inet_diag::InetDiagMsg;
use tcp_info_tests::ss::ss_server;
use tcp_info_tests::{Setup, archive};

#[test]
fn fin_wait2_minisock_writes_at_most_one_null_record() {
    let Some(setup) = Setup::new("finwait2") else {
        return;
    };
    let (_daemon, reader) = setup
        .start_with_events(&["--flush-interval=200ms"])
        .unwrap();
    let listener = setup.net.listen().unwrap();
    let port = listener.local_addr().unwrap().port();
    let (mut client, mut server, cookie) = setup.connected(&listener).unwrap();
    client.write_all(b"hello").unwrap();
    server.read_exact(&mut [0; 5]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // The server closes first; the client's kernel ACKs the FIN but the client never closes,
    // so the orphaned server socket ends in FIN_WAIT2 as a time-wait minisock (60 s).
    drop(server);
    let filter_text = format!("sport = :{port}");
    let filter: Vec<&str> = filter_text.split(' ').collect();
    let minisock = |what: &str| {
        let sockets = ss_server(&setup.net, &filter).unwrap();
        let found = sockets
            .iter()
            .find(|s| s.state == "FIN-WAIT-2" && s.cookie == Some(cookie));
        assert!(
            found.is_some(),
            "{what}: no FIN_WAIT2 socket with cookie {cookie:x}: {sockets:#?}"
        );
    };
    std::thread::sleep(Duration::from_millis(100));
    minisock("after the close");
    // 150 polls.
    std::thread::sleep(Duration::from_millis(1500));
    minisock("at the end of the window");
    // Let the last records reach the file.
    std::thread::sleep(Duration::from_millis(600));

    let files = archive::cookie_files(&setup.output(), cookie)
        .unwrap()
        .expect("no archive for the connection");
    let records: Vec<_> = files.iter().flat_map(|f| f.snapshots().iter()).collect();
    let nulls: Vec<_> = records
        .iter()
        .filter(|r| r.attributes().all(|a| a.is_none()))
        .collect();
    for r in &nulls {
        let idm = InetDiagMsg::new(r.raw_idm()).unwrap();
        assert_eq!(idm.state(), 5, "attribute-less record not in FIN_WAIT2");
    }
    let events: Vec<(EventKind, String)> = reader
        .lines()
        .iter()
        .filter_map(|l| match FlowEvent::decode(l.text.as_bytes()) {
            Ok(Decoded::Event(e)) => Some((e.kind, e.uuid)),
            _ => None,
        })
        .collect();
    eprintln!(
        "{} file(s), {} snapshot(s), {} attribute-less; events {events:?}",
        files.len(),
        records.len(),
        nulls.len()
    );
    assert!(
        nulls.len() <= 1,
        "{} attribute-less FIN_WAIT2 records in 1.5 s (D3 allows one)",
        nulls.len()
    );
    // The minisock is the same connection (same cookie): no second Open, no second segment.
    let uuid = setup.uuid(cookie);
    let opens = events
        .iter()
        .filter(|(k, u)| *k == EventKind::Open && *u == uuid)
        .count();
    assert_eq!(opens, 1, "Open events for {uuid}: {events:?}");
    assert_eq!(files.len(), 1, "{files:#?}");
    drop(client);
}
