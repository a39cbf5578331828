//! Event server tests over real Unix sockets (SPEC §16 "Event socket", D8, D11).

use super::*;
use crate::record::Timestamp;
use crate::saver::testutil::TempTree;
use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// A fresh directory for the socket file, removed on drop.
struct TempDir(TempTree);

impl TempDir {
    fn new() -> Self {
        Self(TempTree::new("events"))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn sock(&self) -> PathBuf {
        self.path().join("events.sock")
    }
}

use crate::test_runtime::handle as rt;

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

/// Connects a client and waits until the server has registered it.
fn connect(server: &EventServer) -> UnixStream {
    let before = server.stats().clients_accepted;
    let stream = UnixStream::connect(server.path()).unwrap();
    wait_until("the client to be accepted", || {
        server.stats().clients_accepted > before
    });
    stream
}

fn reader(stream: UnixStream) -> BufReader<UnixStream> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    BufReader::new(stream)
}

fn read_line(r: &mut BufReader<UnixStream>) -> Vec<u8> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).unwrap();
    line
}

fn newlines(bytes: &[u8]) -> usize {
    bytes.split(|&b| b == b'\n').count() - 1
}

fn id(cookie: i64) -> FlowId {
    FlowId {
        sport: 9091,
        dport: 43508,
        src_ip: "192.168.14.134".into(),
        dst_ip: "192.168.14.129".into(),
        interface: 3,
        cookie,
    }
}

fn open_event(n: u64) -> FlowEvent {
    let ts = Timestamp::from_unix(1_554_213_157, (n % 1_000_000) as u32 * 1000).unwrap();
    FlowEvent::open(ts, format!("host_1554213157_{n:016X}"), id(n as i64))
}

fn small_config() -> EventServerConfig {
    EventServerConfig {
        shutdown_grace: Duration::from_millis(500),
        ..EventServerConfig::default()
    }
}

#[test]
fn open_and_close_reach_every_client() {
    let dir = TempDir::new();
    let server = EventServer::start(&dir.sock(), small_config(), rt()).unwrap();
    let mut a = reader(connect(&server));
    let mut b = reader(connect(&server));
    assert_eq!(server.stats().clients_connected, 2);

    let open = open_event(0x3E8);
    let close = FlowEvent::close(
        Timestamp::parse(b"2019-04-02T14:13:01.02Z").unwrap(),
        open.uuid.clone(),
    );
    server.publish(&open);
    server.publish(&close);
    for r in [&mut a, &mut b] {
        let first = read_line(r);
        assert_eq!(first, open.to_line());
        assert_eq!(
            FlowEvent::decode(&first).unwrap(),
            Decoded::Event(open.clone())
        );
        let second = read_line(r);
        assert_eq!(
            String::from_utf8(second.clone()).unwrap(),
            format!(
                "{{\"Event\":1,\"Timestamp\":\"2019-04-02T14:13:01.02Z\",\"UUID\":\"{}\",\"ID\":null}}\n",
                open.uuid
            )
        );
        assert_eq!(
            FlowEvent::decode(&second).unwrap(),
            Decoded::Event(close.clone())
        );
    }
    let stats = server.shutdown();
    assert_eq!(stats.events_published, 2);
    assert_eq!(stats.events_written, 4);
    assert_eq!(stats.events_dropped, 0);
    // The server closed the connections: both clients see EOF after the two lines.
    for r in [&mut a, &mut b] {
        assert!(read_line(r).is_empty());
    }
}

#[test]
fn the_socket_gets_its_mode_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let server = EventServer::start(&dir.sock(), small_config(), rt()).unwrap();
    assert_eq!(mode(&dir.sock()), 0o660);
    drop(server);
    let config = EventServerConfig {
        mode: 0o600,
        ..small_config()
    };
    let server = EventServer::start(&dir.sock(), config, rt()).unwrap();
    assert_eq!(mode(&dir.sock()), 0o600);
    drop(server);
    // A missing directory is created; a file in the way is an error naming it.
    let nested = dir.path().join("run/tcpinfo/events.sock");
    let server = EventServer::start(&nested, small_config(), rt()).unwrap();
    assert!(
        fs::metadata(dir.path().join("run/tcpinfo"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(mode(&nested), 0o660);
    drop(server);
    fs::write(dir.path().join("file"), "").unwrap();
    let err =
        EventServer::start(&dir.path().join("file/events.sock"), small_config(), rt()).unwrap_err();
    assert!(matches!(err, EventsError::CreateDirectory { .. }), "{err}");
}

#[test]
fn a_client_that_disconnects_is_removed() {
    let dir = TempDir::new();
    let server = EventServer::start(&dir.sock(), small_config(), rt()).unwrap();
    let mut stays = reader(connect(&server));
    // One client hangs up while idle: noticed without any event being published.
    drop(connect(&server));
    wait_until("the idle hang-up to be noticed", || {
        server.stats().clients_connected == 1
    });
    // Another hangs up and an event is published at once: the failed send removes it.
    drop(connect(&server));
    server.publish(&open_event(1));
    server.publish(&open_event(2));
    wait_until("the failed send to remove the client", || {
        server.stats().clients_connected == 1
    });
    let stats = server.stats();
    assert_eq!(stats.clients_closed, 2);
    assert_eq!(stats.clients_dropped_lag, 0);
    // The remaining client is unaffected.
    assert_eq!(read_line(&mut stays), open_event(1).to_line());
    assert_eq!(read_line(&mut stays), open_event(2).to_line());
    server.publish(&open_event(3));
    assert_eq!(read_line(&mut stays), open_event(3).to_line());
}

/// D8: one client that never reads must not slow publishing down nor starve the others.
#[test]
fn a_stuck_client_never_blocks_publish() {
    const EVENTS: u64 = 100_000;
    let dir = TempDir::new();
    let server = EventServer::start(&dir.sock(), small_config(), rt()).unwrap();
    let stuck = connect(&server);
    let good = reader(connect(&server));
    let received = Arc::new(AtomicU64::new(0));
    // The reader only stores what it gets (checked at the end), to keep up even unoptimized.
    let consumer = {
        let received = Arc::clone(&received);
        thread::spawn(move || {
            let mut good = good.into_inner();
            let mut all = Vec::with_capacity(32 << 20);
            let mut chunk = vec![0u8; 256 * 1024];
            loop {
                let n = good.read(&mut chunk).unwrap();
                if n == 0 {
                    return all;
                }
                let lines = newlines(&chunk[..n]);
                all.extend_from_slice(&chunk[..n]);
                received.fetch_add(lines as u64, Ordering::Relaxed);
            }
        })
    };

    let started = Instant::now();
    for n in 0..EVENTS {
        server.publish(&open_event(n));
    }
    let publishing = started.elapsed();
    assert!(
        publishing < Duration::from_secs(10),
        "publishing took {publishing:?}"
    );
    // The stuck client filled its socket buffer and then its queue, and was dropped.
    let stats = server.stats();
    assert!(stats.clients_dropped_lag >= 1, "{stats:?}");

    // Let the reader catch up (or be dropped) before shutting down, so that the shutdown
    // deadline plays no part.
    wait_until("the reader to be served", || {
        received.load(Ordering::Relaxed) == EVENTS || server.stats().clients_connected == 0
    });
    let stats = server.shutdown();
    let got_by_reader = consumer.join().unwrap();
    let received = received.load(Ordering::Relaxed);
    assert!(got_by_reader.is_empty() || got_by_reader.ends_with(b"\n"));
    for (n, line) in got_by_reader.split_inclusive(|&b| b == b'\n').enumerate() {
        assert_eq!(line, open_event(n as u64).to_line(), "line {n}");
    }
    println!("publish of {EVENTS} events took {publishing:?}; reader got {received}; {stats:?}");
    assert_eq!(stats.events_published, EVENTS);
    if received == EVENTS {
        assert_eq!(stats.clients_dropped_lag, 1, "only the stuck client lags");
    } else {
        // The reader itself fell 10 000 events behind (a slow machine): it got an in-order
        // prefix and was counted.
        assert_eq!(stats.clients_dropped_lag, 2, "{stats:?}");
    }
    // Copies offered to the stuck client after it was dropped are not counted: it is gone.
    assert!(stats.events_dropped > 10_000, "{stats:?}");
    assert!(
        stats.events_written + stats.events_dropped < 2 * EVENTS,
        "{stats:?}"
    );
    // The stuck client got whole lines only (what fit in its socket buffer), then EOF.
    let mut got = Vec::new();
    BufReader::new(stuck).read_to_end(&mut got).unwrap();
    assert!(!got.is_empty() && got.ends_with(b"\n"));
    let lines = got.split_inclusive(|&b| b == b'\n');
    for (n, line) in lines.enumerate() {
        assert_eq!(line, open_event(n as u64).to_line());
    }
    assert_eq!(stats.events_written, received + newlines(&got) as u64);
}

#[test]
fn a_client_that_reads_late_gets_every_queued_event_in_order() {
    const EVENTS: u64 = 5_000;
    let dir = TempDir::new();
    let server = EventServer::start(&dir.sock(), small_config(), rt()).unwrap();
    let mut late = reader(connect(&server));
    for n in 0..EVENTS {
        server.publish(&open_event(n));
    }
    for n in 0..EVENTS {
        assert_eq!(read_line(&mut late), open_event(n).to_line());
    }
    let stats = server.shutdown();
    assert_eq!((stats.events_written, stats.events_dropped), (EVENTS, 0));
    assert_eq!(stats.clients_dropped_lag, 0);
}

#[test]
fn shutdown_delivers_queued_events_and_removes_the_socket() {
    let dir = TempDir::new();
    let path = dir.sock();
    let server = EventServer::start(&path, small_config(), rt()).unwrap();
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
    // The client reads as a sidecar does, all along: a client that stops reading fills its
    // socket buffer (each small send costs a whole skb of it) and is cut at the deadline.
    let client = std::thread::spawn({
        let client = connect(&server);
        move || {
            reader(client)
                .lines()
                .map(Result::unwrap)
                .collect::<Vec<String>>()
        }
    });
    // Published right before shutdown, like the Close events of the final flush.
    for n in 0..500 {
        server.publish(&FlowEvent::close(Timestamp::now(), format!("u{n}")));
    }
    let stats = server.shutdown();
    assert_eq!((stats.events_written, stats.events_dropped), (500, 0));
    assert_eq!(stats.clients_connected, 0);
    assert!(!path.exists(), "the socket file must be removed");
    let lines = client.join().unwrap();
    assert_eq!(lines.len(), 500);
    assert!(lines[499].contains("\"UUID\":\"u499\""));
    assert!(UnixStream::connect(&path).is_err());
}

#[test]
fn shutdown_is_bounded_with_a_stuck_client() {
    let dir = TempDir::new();
    let config = EventServerConfig {
        shutdown_grace: Duration::from_millis(300),
        write_timeout: Duration::from_secs(30),
        ..EventServerConfig::default()
    };
    let server = EventServer::start(&dir.sock(), config, rt()).unwrap();
    let _stuck = connect(&server);
    // More than its socket buffer holds, less than its queue: the writer is blocked in a send.
    for n in 0..5_000 {
        server.publish(&open_event(n));
    }
    let started = Instant::now();
    let stats = server.shutdown();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    assert!(stats.events_dropped > 0, "{stats:?}");
    assert_eq!(stats.events_written + stats.events_dropped, 5_000);
    assert_eq!(
        stats.clients_dropped_lag, 0,
        "a shutdown cut-off is not lag"
    );
    assert_eq!(stats.clients_connected, 0);
}

#[test]
fn drop_shuts_down_and_removes_the_socket() {
    let dir = TempDir::new();
    let path = dir.sock();
    let server = EventServer::start(&path, small_config(), rt()).unwrap();
    let client = connect(&server);
    server.publish(&open_event(7));
    let reader_stats = server.stats_reader();
    drop(server);
    assert!(!path.exists());
    assert_eq!(reader_stats.snapshot().events_written, 1);
    let mut r = reader(client);
    assert_eq!(read_line(&mut r), open_event(7).to_line());
    assert!(read_line(&mut r).is_empty());
}

#[test]
fn stale_socket_and_stale_file_are_replaced() {
    let dir = TempDir::new();
    let path = dir.sock();
    // A socket file left behind by a crashed daemon (upstream #126).
    drop(UnixListener::bind(&path).unwrap());
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
    assert_eq!(
        UnixStream::connect(&path).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
    let server = EventServer::start(&path, small_config(), rt()).unwrap();
    let mut client = reader(connect(&server));
    server.publish(&open_event(1));
    assert_eq!(read_line(&mut client), open_event(1).to_line());
    drop(server);

    // A regular file at the path is replaced as well, as upstream does.
    fs::write(&path, b"not a socket").unwrap();
    let server = EventServer::start(&path, small_config(), rt()).unwrap();
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
    let mut client = reader(connect(&server));
    server.publish(&open_event(2));
    assert_eq!(read_line(&mut client), open_event(2).to_line());
}

#[test]
fn start_errors_say_what() {
    let dir = TempDir::new();
    let err = EventServer::start(dir.path(), small_config(), rt()).unwrap_err();
    assert!(matches!(err, EventsError::IsDirectory { .. }), "{err}");
    assert!(err.to_string().contains(&dir.path().display().to_string()));
    assert!(dir.path().is_dir());

    let err = EventServer::start(Path::new(""), small_config(), rt()).unwrap_err();
    assert!(matches!(err, EventsError::EmptyPath), "{err}");

    let zero = EventServerConfig {
        queue_capacity: 0,
        ..small_config()
    };
    let err = EventServer::start(&dir.sock(), zero, rt()).unwrap_err();
    assert!(matches!(err, EventsError::ZeroCapacity), "{err}");

    let long = dir.path().join("x".repeat(200));
    let err = EventServer::start(&long, small_config(), rt()).unwrap_err();
    assert!(matches!(err, EventsError::Bind { .. }), "{err}");
    assert!(err.to_string().contains("cannot listen on event socket"));
}

#[test]
fn shutdown_leaves_a_socket_that_replaced_ours() {
    let dir = TempDir::new();
    let path = dir.sock();
    let first = EventServer::start(&path, small_config(), rt()).unwrap();
    // A second instance takes the path over (it unlinks the first one's socket).
    let second = EventServer::start(&path, small_config(), rt()).unwrap();
    drop(first);
    assert!(
        path.exists(),
        "the first server must not remove the second one's socket"
    );
    let mut client = reader(connect(&second));
    second.publish(&open_event(5));
    assert_eq!(read_line(&mut client), open_event(5).to_line());
    drop(second);
    assert!(!path.exists());
}

#[test]
fn relative_paths_are_fixed_at_start() {
    let dir = TempDir::new();
    // A path relative to the working directory (tests never chdir): up to / and down again.
    let cwd = std::env::current_dir().unwrap();
    let up: PathBuf = cwd.components().skip(1).map(|_| "..").collect();
    let relative = up.join(dir.sock().strip_prefix("/").unwrap());
    assert!(relative.is_relative());
    let server = EventServer::start(&relative, small_config(), rt()).unwrap();
    assert!(server.path().is_absolute());
    assert!(dir.sock().exists());
    let mut client = reader(connect(&server));
    server.publish(&open_event(9));
    assert_eq!(read_line(&mut client), open_event(9).to_line());
    drop(server);
    assert!(!dir.sock().exists());
}
