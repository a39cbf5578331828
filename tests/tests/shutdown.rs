//! SIGTERM (D11) and restart over an existing tree (D1): complete files, Close events, exit 0,
//! the event socket removed, and nothing overwritten by a second run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::ensure;
use tcp_info::events::{Decoded, EventKind, FlowEvent};
use tcp_info_tests::archive::{self, check_finished_file};
use tcp_info_tests::events::{EventReader, Line};
use tcp_info_tests::{Daemon, Setup, traffic, wait_for};

/// (kind, uuid) of every decodable event line.
fn events(lines: &[Line]) -> Vec<(EventKind, String)> {
    lines
        .iter()
        .map(|l| match FlowEvent::decode(l.text.as_bytes()) {
            Ok(Decoded::Event(e)) => (e.kind, e.uuid),
            other => panic!("undecodable event line {:?}: {other:?}", l.text),
        })
        .collect()
}

/// Stops `daemon` with SIGTERM and checks the clean-exit contract: exit 0 within 30 s, the
/// event socket removed, and a Close for every connection in `open_at_exit`. Connections in
/// `seen_open` were made after the reader connected, so their Open must precede the Close;
/// others may have been announced before the reader connected (at the daemon's first sweep).
fn terminate_and_check(
    daemon: &mut Daemon,
    reader: &EventReader,
    socket: &std::path::Path,
    open_at_exit: &BTreeSet<String>,
    seen_open: &BTreeSet<String>,
) -> anyhow::Result<()> {
    let (status, took) = daemon.terminate()?;
    eprintln!("daemon exited with {status} {took:?} after SIGTERM");
    ensure!(
        status.code() == Some(0),
        "exit status {status}\n{}",
        daemon.stderr()
    );
    ensure!(
        !socket.exists(),
        "the event socket {} was not removed",
        socket.display()
    );
    reader.wait_eof(Duration::from_secs(5))?;
    let evs = events(&reader.lines());
    let mut opened = BTreeSet::new();
    let mut closed = BTreeSet::new();
    for (kind, uuid) in &evs {
        match kind {
            EventKind::Open => {
                ensure!(opened.insert(uuid.clone()), "second Open for {uuid}");
                ensure!(!closed.contains(uuid), "Open after Close for {uuid}");
            }
            EventKind::Close => {
                ensure!(closed.insert(uuid.clone()), "second Close for {uuid}");
                ensure!(
                    opened.contains(uuid) || !seen_open.contains(uuid),
                    "Close before Open for {uuid}"
                );
            }
        }
    }
    let missing: Vec<_> = seen_open.difference(&opened).collect();
    ensure!(
        missing.is_empty(),
        "no Open event for {missing:?}: {evs:#?}"
    );
    let missing: Vec<_> = open_at_exit.difference(&closed).collect();
    ensure!(
        missing.is_empty(),
        "no Close event for {missing:?}: {evs:#?}"
    );
    let unclosed: Vec<_> = opened.difference(&closed).collect();
    ensure!(unclosed.is_empty(), "no Close event for {unclosed:?}");
    let ours: BTreeSet<String> = open_at_exit.union(seen_open).cloned().collect();
    let others: Vec<_> = opened
        .union(&closed)
        .filter(|u| !ours.contains(*u))
        .collect();
    ensure!(
        others.is_empty(),
        "events for other connections: {others:?}"
    );
    Ok(())
}

/// Sets the flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn sigterm_finishes_everything_and_a_restart_overwrites_nothing() {
    const IDLE: usize = 4;
    let Some(setup) = Setup::new("sigterm") else {
        return;
    };
    let sock = setup.event_socket();
    let sock_arg = format!("--tcpinfo.eventsocket={}", sock.display());
    let args = [sock_arg.as_str(), "--flush-interval=1s"];
    let mut daemon = setup.start(&args, &[]).unwrap();
    let reader = EventReader::connect(&sock, Duration::from_secs(10)).unwrap();

    let listener = setup.net.listen().unwrap();
    let port = listener.local_addr().unwrap().port();
    // Idle connections that exchanged some data, kept open across both runs.
    let mut held: Vec<(TcpStream, TcpStream)> = Vec::new();
    let mut cookies = Vec::new();
    for i in 0..IDLE {
        let mut client = setup.net.connect(port).unwrap();
        let (mut server, cookie, _) = traffic::accept(&listener).unwrap();
        client.write_all(&vec![1; 5000 + i]).unwrap();
        server.read_exact(&mut vec![0; 5000 + i]).unwrap();
        server.write_all(&vec![2; 3000 + i]).unwrap();
        client.read_exact(&mut vec![0; 3000 + i]).unwrap();
        cookies.push(cookie);
        held.push((client, server));
    }
    // And one that keeps streaming through SIGTERM, so there is always unflushed data.
    let mut stream_client = setup.net.connect(port).unwrap();
    let (mut stream_server, stream_cookie, _) = traffic::accept(&listener).unwrap();
    cookies.push(stream_cookie);
    let stop = Arc::new(AtomicBool::new(false));
    // Stops the streamer even when an assertion below fails first.
    let _stop_on_exit = StopOnDrop(Arc::clone(&stop));
    let streamer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                stream_client.write_all(&[3; 1000]).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            stream_client
        })
    };
    let sink = std::thread::spawn(move || traffic::drain(&mut stream_server));
    let uuids: BTreeSet<String> = cookies.iter().map(|c| setup.uuid(*c)).collect();
    let root = setup.output();

    // Run 1: wait until every connection has a file and an Open, then SIGTERM.
    for cookie in &cookies {
        archive::wait_for_last(
            &root,
            *cookie,
            Duration::from_secs(10),
            "first file",
            |_, _| true,
        )
        .unwrap();
    }
    reader
        .wait_until(Duration::from_secs(10), "an Open per connection", |lines| {
            events(lines).len() >= cookies.len()
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let sigterm_at = SystemTime::now();
    terminate_and_check(&mut daemon, &reader, &sock, &uuids, &uuids).unwrap();

    let mut run1: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    let mut seqs1: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
    for path in archive::walk(&root).unwrap().0 {
        let file = check_finished_file(&root, &path).unwrap();
        seqs1
            .entry(file.name.cookie)
            .or_default()
            .insert(file.name.seq);
        run1.insert(path.clone(), std::fs::read(&path).unwrap());
    }
    assert_eq!(
        seqs1.keys().copied().collect::<BTreeSet<_>>(),
        cookies.iter().copied().collect(),
        "files for other cookies than ours"
    );
    // Everything the daemon had in memory at SIGTERM reached the file: the streaming
    // connection's last record is from the last moments before the signal.
    let stream_files = archive::cookie_files(&root, stream_cookie)
        .unwrap()
        .unwrap();
    let last = stream_files.last().unwrap().last().unwrap();
    let sigterm_ns = sigterm_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    let lag_ms = (sigterm_ns - last.timestamp.unix_nanos()) / 1_000_000;
    assert!(
        lag_ms < 200,
        "the streaming connection's last record ({}) is {lag_ms} ms older than SIGTERM: buffered records were lost",
        last.timestamp
    );

    // Run 2 over the same tree, with the same prefix and the same connections still open.
    let mut daemon = setup.start(&args, &[]).unwrap();
    let reader = EventReader::connect(&sock, Duration::from_secs(10)).unwrap();
    for cookie in &cookies {
        wait_for(
            Duration::from_secs(10),
            "a new segment per connection",
            || {
                let Some(files) = archive::cookie_files(&root, *cookie)? else {
                    return Ok(None);
                };
                Ok(files
                    .iter()
                    .any(|f| !run1.contains_key(&f.path) && !f.snapshots().is_empty())
                    .then_some(()))
            },
        )
        .unwrap();
    }
    // A connection made during run 2, after the reader connected: Open and Close both seen.
    let mut late_client = setup.net.connect(port).unwrap();
    let (mut late_server, late_cookie, _) = traffic::accept(&listener).unwrap();
    late_client.write_all(b"late").unwrap();
    late_server.read_exact(&mut [0; 4]).unwrap();
    cookies.push(late_cookie);
    let late = BTreeSet::from([setup.uuid(late_cookie)]);
    reader
        .wait_until(
            Duration::from_secs(10),
            "the late connection's Open",
            |lines| events(lines).contains(&(EventKind::Open, setup.uuid(late_cookie))),
        )
        .unwrap();
    archive::wait_for_last(
        &root,
        late_cookie,
        Duration::from_secs(10),
        "late file",
        |_, _| true,
    )
    .unwrap();
    let all: BTreeSet<String> = uuids.union(&late).cloned().collect();
    terminate_and_check(&mut daemon, &reader, &sock, &all, &late).unwrap();
    drop((late_client, late_server));

    stop.store(true, Ordering::Relaxed);
    let stream_client = streamer.join().unwrap();
    drop(stream_client);
    sink.join().unwrap().unwrap();
    drop(held);

    // Nothing of run 1 changed, byte for byte.
    for (path, bytes) in &run1 {
        let now = std::fs::read(path)
            .unwrap_or_else(|e| panic!("{} of run 1 is gone: {e}", path.display()));
        assert!(
            &now == bytes,
            "{} was modified by the second run ({} bytes before, {} after)",
            path.display(),
            bytes.len(),
            now.len()
        );
    }
    // Run 2's files are complete and continue each connection with new sequence numbers.
    let mut seqs2: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
    for path in archive::walk(&root).unwrap().0 {
        if run1.contains_key(&path) {
            continue;
        }
        let file = check_finished_file(&root, &path).unwrap();
        seqs2
            .entry(file.name.cookie)
            .or_default()
            .insert(file.name.seq);
    }
    eprintln!("sequences: run 1 {seqs1:?}, run 2 {seqs2:?}");
    for cookie in &cookies[..=IDLE] {
        let old = &seqs1[cookie];
        let new = seqs2
            .get(cookie)
            .unwrap_or_else(|| panic!("no new file for {cookie:016X}"));
        let max_old = old.iter().max().unwrap();
        assert!(
            new.iter().all(|s| s > max_old),
            "{cookie:016X}: run 1 wrote sequences {old:?}, run 2 {new:?}"
        );
    }
}
