//! The event socket (SPEC §7): the exact line format, Open before Close per connection, UUIDs
//! matching the archive, and a client that never reads not slowing the daemon down (D8).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::Shutdown;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant, SystemTime};

use tcp_info::events::{Decoded, EventKind, FlowEvent};
use tcp_info::record::Timestamp;
use tcp_info_tests::events::{EventReader, Line, connect_stalled, unread_bytes};
use tcp_info_tests::{Setup, archive, traffic};

/// The text between `"<key>":"` and the next `"`.
fn string_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

/// Events per UUID, in arrival order.
fn by_uuid(lines: &[Line]) -> BTreeMap<String, Vec<(EventKind, String)>> {
    let mut out: BTreeMap<String, Vec<(EventKind, String)>> = BTreeMap::new();
    for line in lines {
        if let Ok(Decoded::Event(e)) = FlowEvent::decode(line.text.as_bytes()) {
            out.entry(e.uuid.clone())
                .or_default()
                .push((e.kind, line.text.clone()));
        }
    }
    out
}

fn has_open_and_close(events: Option<&Vec<(EventKind, String)>>) -> bool {
    events.is_some_and(|e| {
        e.iter().any(|(k, _)| *k == EventKind::Open)
            && e.iter().any(|(k, _)| *k == EventKind::Close)
    })
}

#[test]
fn open_and_close_events_have_the_spec_format_and_match_the_archive() {
    const CONNECTIONS: usize = 3;
    let Some(setup) = Setup::new("evfmt") else {
        return;
    };
    let sock = setup.event_socket();
    let sock_arg = format!("--tcpinfo.eventsocket={}", sock.display());
    let _daemon = setup.start(&[&sock_arg], &[]).unwrap();
    let reader = EventReader::connect(&sock, Duration::from_secs(10)).unwrap();

    let listener = setup.net.listen().unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut conns = Vec::new(); // (cookie, client port)
    for i in 0..CONNECTIONS {
        let mut client = setup.net.connect(port).unwrap();
        let (mut server, cookie, peer) = traffic::accept(&listener).unwrap();
        client.write_all(&vec![7; 1000 * (i + 1)]).unwrap();
        let mut buf = vec![0; 1000 * (i + 1)];
        server.read_exact(&mut buf).unwrap();
        // Let the sweep see it open before it closes.
        std::thread::sleep(Duration::from_millis(50));
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(traffic::drain(&mut server).unwrap(), 0);
        drop(server);
        assert_eq!(traffic::drain(&mut client).unwrap(), 0);
        conns.push((cookie, peer.port()));
    }

    let lines = reader
        .wait_until(
            Duration::from_secs(10),
            "Open and Close of every connection",
            |lines| {
                let events = by_uuid(lines);
                conns
                    .iter()
                    .all(|(c, _)| has_open_and_close(events.get(&setup.uuid(*c))))
            },
        )
        .unwrap();
    let events = by_uuid(&lines);
    // Only our connections: the listener and loopback traffic are excluded.
    let ours: BTreeSet<String> = conns.iter().map(|(c, _)| setup.uuid(*c)).collect();
    let seen: BTreeSet<String> = events.keys().cloned().collect();
    assert_eq!(seen, ours, "events for unexpected UUIDs: {lines:#?}");

    let root = setup.output();
    for (cookie, client_port) in &conns {
        let uuid = setup.uuid(*cookie);
        let evs = &events[&uuid];
        assert_eq!(evs.len(), 2, "{uuid}: {evs:#?}");
        let ((k0, open), (k1, close)) = (&evs[0], &evs[1]);
        assert_eq!((*k0, *k1), (EventKind::Open, EventKind::Close), "{evs:#?}");

        // The Open line, byte for byte, but for the timestamp (checked below).
        let open_ts = string_field(open, "Timestamp").unwrap();
        let id = format!(
            r#"{{"SPort":{port},"DPort":{client_port},"SrcIP":"{}","DstIP":"{}","Interface":0,"Cookie":{}}}"#,
            setup.net.server_ip(),
            setup.net.client_ip(),
            *cookie as i64
        );
        assert_eq!(
            open,
            &format!(r#"{{"Event":0,"Timestamp":"{open_ts}","UUID":"{uuid}","ID":{id}}}"#)
        );
        // Close: ID null, or (D9 allows it) the same ID.
        let close_ts = string_field(close, "Timestamp").unwrap();
        let close_null =
            format!(r#"{{"Event":1,"Timestamp":"{close_ts}","UUID":"{uuid}","ID":null}}"#);
        let close_id =
            format!(r#"{{"Event":1,"Timestamp":"{close_ts}","UUID":"{uuid}","ID":{id}}}"#);
        assert!(
            close == &close_null || close == &close_id,
            "Close line {close}"
        );

        // Timestamps: RFC 3339 in UTC; Open = the first record's Timestamp; Close after the
        // last record.
        assert!(
            open_ts.ends_with('Z') && close_ts.ends_with('Z'),
            "{open} {close}"
        );
        let open_t = Timestamp::parse(open_ts.as_bytes()).unwrap();
        let close_t = Timestamp::parse(close_ts.as_bytes()).unwrap();
        let files = archive::wait_for_last(
            &root,
            *cookie,
            Duration::from_secs(10),
            "archive",
            |_, _| true,
        )
        .unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name.uuid, uuid, "file name and event UUID");
        let meta = files[0].records[0].metadata.as_ref().unwrap();
        assert_eq!(
            meta.start_time, open_t,
            "Open Timestamp is the first record's"
        );
        let last = files[0].last().unwrap();
        assert!(
            close_t.unix_nanos() >= last.timestamp.unix_nanos(),
            "Close at {close_t} before the last record at {}",
            last.timestamp
        );
    }
}

#[test]
fn a_client_that_never_reads_does_not_slow_the_daemon() {
    // 1200 connections paced at 300 a second: 2400 events, about 450 KB of lines — far more
    // than the socket buffers between the daemon and a client that never reads — produced at a
    // rate the daemon sustains, so that any slowdown comes from back-pressure, not load.
    const BATCHES: usize = 40;
    const BATCH: usize = 30;
    const BATCH_EVERY: Duration = Duration::from_millis(100);
    const FLOOD: usize = BATCHES * BATCH;
    const TICK: Duration = Duration::from_millis(50);
    let Some(setup) = Setup::new("evslow") else {
        return;
    };
    let sock = setup.event_socket();
    let sock_arg = format!("--tcpinfo.eventsocket={}", sock.display());
    let mut daemon = setup
        .start(&[&sock_arg, "--flush-interval=1s"], &[])
        .unwrap();
    let stalled = connect_stalled(&sock, Duration::from_secs(10)).unwrap();
    let reader = EventReader::connect(&sock, Duration::from_secs(10)).unwrap();

    let listener = setup.net.listen().unwrap();
    let port = listener.local_addr().unwrap().port();
    let server_addr = listener.local_addr().unwrap();

    // A long-lived connection that receives one byte every 50 ms throughout; each byte is a
    // change the daemon must record promptly.
    let mut ticker_client = setup.net.connect(port).unwrap();
    let (mut ticker_server, ticker_cookie, _) = traffic::accept(&listener).unwrap();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let ticker = std::thread::spawn(move || {
        let mut sent: Vec<SystemTime> = Vec::new();
        // Tick until told to stop, or until the test is gone (a failed assertion dropped
        // the sender): a disconnected channel must not turn this into a busy loop.
        while let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(TICK) {
            sent.push(SystemTime::now());
            ticker_client.write_all(&[1]).unwrap();
        }
        (sent, ticker_client)
    });
    let ticker_reader = std::thread::spawn(move || {
        let mut b = [0u8; 1];
        while ticker_server.read(&mut b).unwrap_or(0) == 1 {}
    });

    // The flood: short connections, two events each.
    let server = std::thread::spawn(move || {
        let mut cookies = Vec::with_capacity(FLOOD);
        for _ in 0..FLOOD {
            let (mut s, cookie, _) = traffic::accept(&listener)?;
            traffic::drain(&mut s)?;
            cookies.push(cookie);
        }
        anyhow::Ok(cookies)
    });
    std::thread::sleep(Duration::from_millis(300));
    let flood_start = Instant::now();
    let ended = setup
        .net
        .in_client(move || {
            let mut ended = Vec::with_capacity(FLOOD);
            for batch in 0..BATCHES {
                let due = flood_start + BATCH_EVERY * batch as u32;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                for _ in 0..BATCH {
                    let mut c = std::net::TcpStream::connect(server_addr)?;
                    c.shutdown(Shutdown::Write)?;
                    traffic::drain(&mut c)?;
                    ended.push(Instant::now());
                }
            }
            anyhow::Ok(ended)
        })
        .unwrap()
        .unwrap();
    let cookies = server.join().unwrap().unwrap();
    let flood_time = flood_start.elapsed();
    eprintln!("flood of {FLOOD} connections took {flood_time:?}");

    // The reading client gets every Open and Close, promptly.
    let want: Vec<String> = cookies.iter().map(|c| setup.uuid(*c)).collect();
    let lines = reader
        .wait_until(
            Duration::from_secs(10),
            "Open and Close of every flood connection",
            |lines| {
                let events = by_uuid(lines);
                want.iter().all(|u| has_open_and_close(events.get(u)))
            },
        )
        .unwrap();
    // Connections are made one after the other, so the i-th accepted cookie is the i-th
    // connection made; its Close reaches the reading client soon after the connection ended
    // (typically within 100 ms; the bound leaves room for a loaded machine).
    let arrival: BTreeMap<String, Instant> = lines
        .iter()
        .filter_map(|l| match FlowEvent::decode(l.text.as_bytes()) {
            Ok(Decoded::Event(e)) if e.kind == EventKind::Close => Some((e.uuid, l.at)),
            _ => None,
        })
        .collect();
    let close_latency = want
        .iter()
        .zip(&ended)
        .map(|(uuid, end)| arrival[uuid].saturating_duration_since(*end))
        .max()
        .unwrap();
    eprintln!(
        "reading client: {} lines; worst Close latency {close_latency:?}",
        lines.len()
    );
    assert!(
        close_latency < Duration::from_secs(2),
        "a Close reached the reading client {close_latency:?} after its connection ended"
    );

    // Keep ticking a little after the flood, then stop and note the final byte count.
    std::thread::sleep(Duration::from_millis(500));
    stop_tx.send(()).unwrap();
    let (sent, ticker_client) = ticker.join().unwrap();
    let stopped = SystemTime::now();
    let ticks = sent.len() as u64;

    // On time on disk: the record of the last tick is in the file within the flush interval
    // (plus slack), while the daemon keeps running.
    let root = setup.output();
    let files = archive::wait_for_last(
        &root,
        ticker_cookie,
        Duration::from_secs(3),
        "the ticker's last byte on disk",
        |_, info| info.is_some_and(|i| i.bytes_received == ticks),
    )
    .unwrap();
    let on_disk = SystemTime::now().duration_since(stopped).unwrap();
    eprintln!("last tick on disk {on_disk:?} after the ticker stopped");

    // Polling never stalled: each tick shows up in a record within a second of being sent
    // (typically 10–100 ms; the margin absorbs a loaded 2-core machine). A poll loop that
    // blocks on the stalled client waits for its write deadline (5 s here; forever upstream).
    let records: Vec<(i128, u64)> = files
        .iter()
        .flat_map(|f| f.snapshots().iter())
        .filter_map(|r| archive::tcp_info(r).map(|i| (r.timestamp.unix_nanos(), i.bytes_received)))
        .collect();
    let mut worst = Duration::ZERO;
    for (k, at) in sent.iter().enumerate() {
        let sent_ns = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i128;
        let seen = records
            .iter()
            .find(|(_, received)| *received > k as u64)
            .map_or_else(|| panic!("tick {k} never recorded"), |(ts, _)| *ts);
        let delay = Duration::from_nanos(u64::try_from(seen - sent_ns).unwrap_or(0));
        worst = worst.max(delay);
    }
    eprintln!("{ticks} ticks, worst record delay {worst:?}");
    assert!(
        worst < Duration::from_secs(1),
        "a tick took {worst:?} to be recorded: polling was held up"
    );

    // The stalled client really fell behind: when the reading client had every event, the
    // stalled one had only a fraction of the bytes available; the rest was held up in the
    // daemon (or dropped). The daemon is alive.
    let total: usize = lines.iter().map(|l| l.text.len() + 1).sum();
    let backlog = unread_bytes(&stalled).unwrap();
    eprintln!("stalled client: {backlog} bytes readable; the reading client got {total} bytes");
    assert!(
        backlog < total / 2,
        "the stalled client was not behind ({backlog} of {total} bytes readable): the flood is too small to test D8"
    );
    assert!(daemon.try_status().unwrap().is_none(), "the daemon exited");
    drop(ticker_client);
    ticker_reader.join().unwrap();
}
