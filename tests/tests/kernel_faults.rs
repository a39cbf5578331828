//! Netlink and eBPF faults (issue 12) against the real daemon: the kernel drops what the daemon
//! does not read in time, and the daemon must count it and recover, never close connections
//! that are alive, never panic, never stop.
//!
//! The daemon is stopped (SIGSTOP) while a storm of short connections runs in a namespace it
//! watches (its own, or with `--netns` paths the test's other one), so that what the kernel
//! queues for it overflows as it would behind a daemon starved of CPU:
//! - the destroy listener's receive buffer (32 MiB, which the kernel doubles: about 52 000
//!   notifications; those beyond are lost and the next receive reports `ENOBUFS`): counted in
//!   `tcpinfo_destroy_listener_overruns_total`; connections whose notification was lost are
//!   closed by the sweeps (after the close grace, confirmed gone by an exact query), in eBPF
//!   mode also in a namespace whose safety-net sweeps are otherwise minutes apart;
//! - in eBPF mode, the 4 MiB ring buffer of marks (58 254 marks): the programs count what they
//!   could not submit (`tcpinfo_ebpf_kernel_drops_total{reason="ringbuf_full"}`), the daemon
//!   sees the count grow and sweeps at once (the safety net), which records the changes the
//!   lost marks would have reported.
//!
//! The storm runs on an address (on that namespace's `lo`) that `-exclude-dstip` excludes, so it
//! costs the daemon no archive and no event, only what it must read.
//!
//! Interrupted dumps, unknown attribute types and overruns of batched exact queries are tested
//! below the daemon, where they can be made on demand, against the real kernel where one is
//! involved (library unit tests):
//! - interrupted dumps (`NLM_F_DUMP_INTR`): `sockdiag::dump::tests::
//!   interrupted_dump_returns_nothing_and_the_next_one_is_complete`, `pipeline::tests::
//!   an_interrupted_dump_is_counted_and_closes_nothing_d12`;
//! - attribute types above 38: `record::build::tests::
//!   unknown_types_anywhere_are_counted_and_leave_the_record_intact`, `pipeline::tests::
//!   attributes_above_type_38_are_counted_and_do_not_break_records`;
//! - overruns of batched exact queries: `sockdiag::exact::tests::large_batch_survives_enobufs`,
//!   `sources::ebpf::tests::an_overrun_of_exact_queries_is_counted_and_every_record_arrives`,
//!   `pipeline::tests::an_overrun_of_confirming_queries_is_counted_and_closes_only_what_went_away`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use tcp_info::events::{Decoded, EventKind, FlowEvent};
use tcp_info_tests::conn::Conn;
use tcp_info_tests::events::EventReader;
use tcp_info_tests::exposition::Exposition;
use tcp_info_tests::sockets::{set_linger_zero, socket_cookie};
use tcp_info_tests::{Daemon, NetPair, Setup, archive, faults, netns, wait_for};

/// The storm's address, on the storm namespace's `lo` (both ends of every storm connection
/// use it; it is excluded with `-exclude-dstip`). A documentation address: no other use.
const STORM_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// `-exclude-dstip` for [`STORM_IP`].
const EXCLUDE_STORM: &str = "--exclude-dstip=192.0.2.1";
/// Marks the ring buffer holds: its 4 MiB (`tcp_info_common::MARKS_BYTES`) over 72 bytes a
/// record (a 64-byte `Mark` and the ring's 8-byte header).
const RING_MARKS: usize = (4 << 20) / 72;
/// Marks one storm connection makes: both ends enter ESTABLISHED (a state change, never
/// rate-limited); the reset that ends them makes none (CLOSE only forgets the socket).
const MARKS_PER_STORM_CONNECTION: usize = 2;
/// Records reach the archive within 200 ms (and the pipeline's 100 ms tick).
const FLUSH: &str = "--flush-interval=200ms";
/// Long-lived connections of each test (server ends recorded by the daemon).
const LONG_LIVED: usize = 16;
/// Generous bound for anything the daemon must do, on a loaded two-core machine.
const WAIT: Duration = Duration::from_secs(60);

/// The storms of these tests load the machine: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Which of the test's two namespaces something happens in: the daemon's (the server side) or
/// the other one (the client side, which a daemon run with `--netns` paths may also watch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

impl Side {
    fn name(self, net: &NetPair) -> &str {
        match self {
            Self::Server => net.server_ns(),
            Self::Client => net.client_ns(),
        }
    }

    /// Runs `f` on a thread inside this side's namespace.
    fn enter<T: Send>(self, net: &NetPair, f: impl FnOnce() -> T + Send) -> Result<T> {
        match self {
            Self::Server => net.in_server(f),
            Self::Client => net.in_client(f),
        }
    }
}

/// Adds [`STORM_IP`] to the `lo` of `side`'s namespace.
fn add_storm_address(net: &NetPair, side: Side) -> Result<()> {
    netns::run(
        "ip",
        &[
            "-n",
            side.name(net),
            "addr",
            "add",
            &format!("{STORM_IP}/32"),
            "dev",
            "lo",
        ],
    )?;
    Ok(())
}

/// A storm of `count` short connections in `side`'s namespace, on [`STORM_IP`]: each is
/// connected, accepted and reset by its client (no TIME_WAIT, so ports are reused at once), so
/// it destroys two sockets (two destroy notifications) and makes two marks (at least one of
/// each if its server end was never made). Returns how long it took.
fn storm(net: &NetPair, side: Side, count: usize) -> Result<Duration> {
    side.enter(net, || -> Result<Duration> {
        let listener = TcpListener::bind(SocketAddr::new(IpAddr::V4(STORM_IP), 0))?;
        // A deeper accept queue than std's 128: a full one delays handshakes by milliseconds.
        // SAFETY: listen(2) again on a listening socket only changes its backlog.
        if unsafe { libc::listen(listener.as_raw_fd(), 4096) } != 0 {
            return Err(std::io::Error::last_os_error()).context("listen");
        }
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let done = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let done = Arc::clone(&done);
            std::thread::spawn(move || -> Result<usize> {
                let mut accepted = 0;
                loop {
                    match listener.accept() {
                        Ok((server, _)) => {
                            drop(server);
                            accepted += 1;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            if done.load(Ordering::Acquire) {
                                return Ok(accepted);
                            }
                            std::thread::sleep(Duration::from_micros(200));
                        }
                        Err(e) => return Err(e).context("accepting a storm connection"),
                    }
                }
            })
        };
        let start = Instant::now();
        let made = (0..count).try_for_each(|_| {
            let client = TcpStream::connect(addr).context("storm connection")?;
            set_linger_zero(&client)
        });
        // The last handshakes reach the accept queue within the connect calls; a moment more
        // for the acceptor to drain it.
        std::thread::sleep(Duration::from_millis(100));
        done.store(true, Ordering::Release);
        let accepted = acceptor
            .join()
            .map_err(|_| anyhow!("the storm's acceptor panicked"))??;
        made?;
        // Fewer when the accept queue overflowed: the server end of such a connection was
        // never made (its client reset it first), which costs the storm a socket, no more.
        ensure!(accepted > 0, "the storm accepted none of {count}");
        Ok(start.elapsed())
    })?
}

/// The daemon stopped (SIGSTOP, every thread), resumed (SIGCONT) by [`Self::resume`] or, if
/// the test fails first, on drop — so that the daemon's own guard can end it.
struct Stopped {
    pid: u32,
    resumed: bool,
}

impl Stopped {
    /// Stops `daemon` and waits until each of its threads is stopped.
    fn stop(daemon: &Daemon) -> Result<Self> {
        let pid = daemon.pid().context("the daemon is not running")?;
        daemon.signal(libc::SIGSTOP)?;
        let stopped = Self {
            pid,
            resumed: false,
        };
        wait_for(
            Duration::from_secs(10),
            "every daemon thread stopped",
            || {
                let dir = format!("/proc/{pid}/task");
                for task in std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
                    let stat = std::fs::read_to_string(task?.path().join("stat"))?;
                    // The state follows the parenthesised command name.
                    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
                    if state != Some(Some('T')) {
                        return Ok(None);
                    }
                }
                Ok(Some(()))
            },
        )?;
        Ok(stopped)
    }

    fn resume(mut self) -> Result<()> {
        self.resumed = true;
        kill(self.pid, libc::SIGCONT)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if !self.resumed {
            let _ = kill(self.pid, libc::SIGCONT);
        }
    }
}

fn kill(pid: u32, signal: libc::c_int) -> Result<()> {
    // SAFETY: kill(2) on the daemon we spawned (not reaped while a `Daemon` holds it).
    if unsafe { libc::kill(libc::pid_t::try_from(pid)?, signal) } != 0 {
        return Err(std::io::Error::last_os_error()).context("kill");
    }
    Ok(())
}

/// The daemon's destroy listener in `side`'s namespace as `/proc/thread-self/net/netlink` shows
/// it there: a `NETLINK_SOCK_DIAG` socket (protocol 4) in groups 1 and 3 (mask 5), alone of its
/// kind in that namespace.
#[derive(Debug, Clone, Copy)]
struct ListenerQueue {
    /// Bytes queued (`sk_rmem_alloc`).
    rmem: u64,
    /// Notifications the kernel could not queue (`sk_drops`).
    drops: u64,
}

fn destroy_listener_queue(net: &NetPair, side: Side) -> Result<ListenerQueue> {
    let path = "/proc/thread-self/net/netlink";
    let text = side
        .enter(net, || std::fs::read_to_string(path))?
        .with_context(|| format!("reading {path} in {}", side.name(net)))?;
    let rows: Vec<ListenerQueue> = text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
            (f.len() >= 9 && f[1] == "4" && f[3] == "00000005").then(|| ListenerQueue {
                rmem: f[4].parse().unwrap_or(0),
                drops: f[8].parse().unwrap_or(0),
            })
        })
        .collect();
    match rows.as_slice() {
        [one] => Ok(*one),
        _ => bail!("{} destroy listeners in {path}:\n{text}", rows.len()),
    }
}

/// The events received so far, per UUID, in order.
fn events(reader: &EventReader) -> BTreeMap<String, Vec<EventKind>> {
    let mut out: BTreeMap<String, Vec<EventKind>> = BTreeMap::new();
    for line in reader.lines() {
        if let Ok(Decoded::Event(e)) = FlowEvent::decode(line.text.as_bytes()) {
            out.entry(e.uuid).or_default().push(e.kind);
        }
    }
    out
}

/// Waits until every cookie of `cookies` has had an event of `kind`.
fn wait_events(
    reader: &EventReader,
    setup: &Setup,
    cookies: &[u64],
    kind: EventKind,
    timeout: Duration,
) -> Result<()> {
    let uuids: Vec<String> = cookies.iter().map(|c| setup.uuid(*c)).collect();
    reader.wait_until(
        timeout,
        &format!("{kind:?} of {} UUIDs", uuids.len()),
        |_| {
            let events = events(reader);
            uuids
                .iter()
                .all(|u| events.get(u).is_some_and(|e| e.contains(&kind)))
        },
    )?;
    Ok(())
}

/// Fails if the daemon exited.
fn alive(daemon: &mut Daemon) -> Result<()> {
    if let Some(status) = daemon.try_status()? {
        bail!("the daemon exited ({status}):\n{}", daemon.stderr());
    }
    Ok(())
}

/// The sum of a counter's samples with these labels.
fn total(m: &Exposition, name: &str, labels: &[(&str, &str)]) -> u64 {
    m.total(name, labels) as u64
}

/// Waits until the archive of `cookie` holds a record whose `tcp_info` says at least `acked`
/// bytes acknowledged and `received` received; returns the cookie's files.
fn wait_recorded(
    root: &Path,
    cookie: u64,
    (acked, received): (u64, u64),
    timeout: Duration,
    what: &str,
) -> Result<Vec<archive::ArchiveFile>> {
    archive::wait_for_last(root, cookie, timeout, what, |_, info| {
        info.is_some_and(|i| i.bytes_acked >= acked && i.bytes_received >= received)
    })
}

/// Waits until the daemon counts as lost (`tcpinfo_destroy_notifications_lost_total`) exactly
/// the notifications the kernel dropped for its listener in `side`'s namespace since its count
/// was `drops_before`: the kernel's own count, which the daemon reads once it has drained the
/// listener's queue. (The kernel may drop a few more after the storm while the queue is still
/// congested: both are read anew.)
fn wait_lost_counted(
    setup: &Setup,
    daemon: &mut Daemon,
    side: Side,
    drops_before: u64,
) -> Result<()> {
    let mut last = (0, 0);
    let result = wait_for(WAIT, "the lost notifications counted", || {
        let m = setup.scrape(daemon)?;
        let counted = total(&m, "tcpinfo_destroy_notifications_lost_total", &[]);
        let dropped = destroy_listener_queue(&setup.net, side)?.drops - drops_before;
        last = (dropped, counted);
        Ok((counted == dropped).then_some(()))
    });
    eprintln!(
        "lost notifications: {} dropped by the kernel, {} counted",
        last.0, last.1
    );
    result
}

/// Stops the daemon and storms in `side`'s namespace until the daemon's destroy listener there
/// drops notifications — from then on its queue is congested and every notification is
/// dropped until the daemon has read them all — or until the storm surely overflows it (two
/// notifications a connection, about 1.3 KB of buffer each; the kernel sends notifications
/// from a workqueue, which may lag behind). Then runs `while_overflowing` (connections closed
/// there lose their notifications), waits until every notification queued for the workqueue
/// is sent (the listener's queue and drops have stopped growing), checks that the listener
/// dropped some, and resumes the daemon. Returns when it resumed, and the listener's drop count
/// before the storm (the kernel's count, as `/proc` shows it).
fn overflow_destroy_listener(
    daemon: &Daemon,
    net: &NetPair,
    side: Side,
    while_overflowing: impl FnOnce() -> Result<()>,
) -> Result<(Instant, u64)> {
    let stopped = Stopped::stop(daemon)?;
    let stop_started = Instant::now();
    let before = destroy_listener_queue(net, side)?;
    let (mut storm_connections, mut storm_time) = (0_usize, Duration::ZERO);
    while destroy_listener_queue(net, side)?.drops == before.drops && storm_connections < 40_000 {
        storm_time += storm(net, side, 5_000)?;
        storm_connections += 5_000;
    }
    while_overflowing()?;
    let mut last = destroy_listener_queue(net, side)?;
    let mut stable_since = Instant::now();
    let full = wait_for(WAIT, "the destroy notifications all sent", || {
        let now = destroy_listener_queue(net, side)?;
        if (now.rmem, now.drops) != (last.rmem, last.drops) {
            (last, stable_since) = (now, Instant::now());
        }
        Ok((stable_since.elapsed() > Duration::from_secs(2)).then_some(now))
    })?;
    ensure!(
        full.drops > before.drops,
        "{storm_connections} storm connections did not overflow the destroy listener: {full:?}"
    );
    let stopped_for = stop_started.elapsed();
    stopped.resume()?;
    eprintln!(
        "{} mode, {side:?} side: {storm_connections} storm connections in {storm_time:?} \
         ({:.0}/s) while stopped for {stopped_for:?}; the listener held {} bytes and dropped {} \
         notifications",
        tcp_info_tests::mode(),
        storm_connections as f64 / storm_time.as_secs_f64(),
        full.rmem,
        full.drops - before.drops,
    );
    Ok((Instant::now(), before.drops))
}

/// A storm of short connections overflows the destroy listener's receive buffer while the
/// daemon is stopped, and connections that were known to the daemon close meanwhile, their
/// notifications lost. After SIGCONT the overrun is counted, every connection that closed is
/// closed by the sweeps (Close event, archive finished: no longer open in the daemon), the
/// long-lived connections open through it are not (no Close, their archive continues in the
/// same file), the listener keeps working (a connection closed afterwards ends with its exact
/// final record, in state CLOSE, which only a destroy notification carries), and the daemon
/// runs on and stops cleanly. Both modes.
#[test]
fn destroy_listener_overrun_while_stopped_closes_only_what_closed() {
    let _serial = one_at_a_time();
    let Some(setup) = Setup::new("kfdestroy") else {
        return;
    };
    add_storm_address(&setup.net, Side::Server).unwrap();
    // eBPF mode: safety-net sweeps every second, so that the closes the sweeps reconcile come
    // after the close grace (10 s) rather than after the default 5 s interval as well.
    let (mut daemon, reader) = setup
        .start_with_events(&[EXCLUDE_STORM, FLUSH, "--safety-sweep-interval=1s"])
        .unwrap();
    setup.wait_ready(&mut daemon, WAIT).unwrap();
    let pid = daemon.pid().unwrap();
    let root = setup.output();

    let listener = setup.net.listen().unwrap();
    let mut long_lived: Vec<Conn> = (0..LONG_LIVED)
        .map(|_| Conn::open(&setup, &listener).unwrap())
        .collect();
    let doomed: Vec<Conn> = (0..LONG_LIVED)
        .map(|_| Conn::open(&setup, &listener).unwrap())
        .collect();
    let long_cookies: Vec<u64> = long_lived.iter().map(|c| c.cookie).collect();
    let doomed_cookies: Vec<u64> = doomed.iter().map(|c| c.cookie).collect();
    let known: Vec<u64> = long_cookies
        .iter()
        .chain(&doomed_cookies)
        .copied()
        .collect();
    wait_events(&reader, &setup, &known, EventKind::Open, WAIT).unwrap();
    for conn in long_lived.iter().chain(&doomed) {
        wait_recorded(&root, conn.cookie, conn.counters().unwrap(), WAIT, "first").unwrap();
    }

    // The known connections that close while the listener is overflowing lose their
    // notifications too; the long-lived ones' tcp_info changes while the daemon is stopped:
    // recorded after it resumes.
    let (resumed, drops_before) =
        overflow_destroy_listener(&daemon, &setup.net, Side::Server, || {
            for conn in doomed {
                set_linger_zero(&conn.server)?;
                drop(conn);
            }
            for conn in &mut long_lived {
                conn.exchange(1000)?;
            }
            Ok(())
        })
        .unwrap();

    let m = wait_for(WAIT, "the overrun counted", || {
        let m = setup.scrape(&mut daemon)?;
        Ok((total(&m, "tcpinfo_destroy_listener_overruns_total", &[]) > 0).then_some(m))
    })
    .unwrap();
    wait_lost_counted(&setup, &mut daemon, Side::Server, drops_before).unwrap();
    eprintln!(
        "overruns counted: {}",
        total(&m, "tcpinfo_destroy_listener_overruns_total", &[])
    );
    // Every connection that closed is closed by the sweeps: the close grace (10 s), then an
    // exact query confirms it gone.
    wait_events(&reader, &setup, &doomed_cookies, EventKind::Close, WAIT).unwrap();
    eprintln!(
        "the doomed connections closed {:?} after SIGCONT",
        resumed.elapsed()
    );
    alive(&mut daemon).unwrap();
    let open = faults::open_archives(pid).unwrap();
    for &cookie in &doomed_cookies {
        let files = archive::cookie_files(&root, cookie).unwrap().unwrap();
        for file in &files {
            archive::check_finished_file(&root, &file.path).unwrap();
            assert!(
                !open.contains(&file.path),
                "{} still open after its Close",
                file.path.display()
            );
        }
        // Its notification was lost: it ends with the last record a sweep took (a
        // notification's final record is in state CLOSE, 7).
        let last = files.last().and_then(archive::ArchiveFile::last).unwrap();
        assert_eq!(last.raw_idm()[1], 1, "{cookie:016X} ends ESTABLISHED");
    }

    // The long-lived connections: recorded with what they did while the daemon was stopped, in
    // the same file, and they keep being recorded.
    for conn in &long_lived {
        let files =
            wait_recorded(&root, conn.cookie, conn.counters().unwrap(), WAIT, "stop").unwrap();
        assert_eq!(files.len(), 1, "one segment for {:016X}", conn.cookie);
    }
    for conn in &mut long_lived {
        conn.exchange(1000).unwrap();
    }
    for conn in &long_lived {
        let files =
            wait_recorded(&root, conn.cookie, conn.counters().unwrap(), WAIT, "after").unwrap();
        assert_eq!(files.len(), 1, "one segment for {:016X}", conn.cookie);
    }
    // The listener still works: a connection closed now ends with its final record (state
    // CLOSE: no sweep lists it, only a destroy notification carries it).
    let mut last = Conn::open(&setup, &listener).unwrap();
    wait_events(&reader, &setup, &[last.cookie], EventKind::Open, WAIT).unwrap();
    last.client.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    last.server.read_to_end(&mut rest).unwrap();
    let last_cookie = last.cookie;
    drop(last.server);
    last.client.read_to_end(&mut rest).unwrap();
    drop(last.client);
    wait_events(&reader, &setup, &[last_cookie], EventKind::Close, WAIT).unwrap();
    let files = archive::wait_for_last(&root, last_cookie, WAIT, "final record", |r, _| {
        r.raw_idm()[1] == 7
    })
    .unwrap();
    archive::check_finished_file(&root, &files[0].path).unwrap();

    // No mass close: Close events for exactly the connections that closed, one Open and at
    // most one Close per UUID, and nothing of the storm.
    let m = setup.scrape(&mut daemon).unwrap();
    let closed: BTreeSet<String> = doomed_cookies
        .iter()
        .chain([&last_cookie])
        .map(|c| setup.uuid(*c))
        .collect();
    let all: BTreeSet<String> = known
        .iter()
        .chain([&last_cookie])
        .map(|c| setup.uuid(*c))
        .collect();
    let seen = events(&reader);
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), all);
    for (uuid, kinds) in &seen {
        let want: &[EventKind] = if closed.contains(uuid) {
            &[EventKind::Open, EventKind::Close]
        } else {
            &[EventKind::Open]
        };
        assert_eq!(kinds, want, "{uuid}");
    }
    assert_eq!(
        total(&m, "tcpinfo_flow_events_total", &[("event", "close")]),
        closed.len() as u64
    );
    assert_eq!(
        total(&m, "tcpinfo_eventsocket_events_dropped_total", &[]),
        0
    );
    let cookies: BTreeSet<u64> = archive::read_tree(&root).unwrap().into_keys().collect();
    let expected: BTreeSet<u64> = known.iter().chain([&last_cookie]).copied().collect();
    assert_eq!(cookies, expected, "archives of these connections only");
    assert!(
        total(&m, "tcpinfo_excluded_records_total", &[]) > 0,
        "the storm's notifications were read and excluded"
    );

    let (status, _) = daemon.terminate().unwrap();
    assert!(status.success(), "{status}");
    let stderr = daemon.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A storm of short connections while the daemon is stopped fills the eBPF ring buffer of marks
/// (4 MiB, 58 254 marks: the storm makes half as many again), then long-lived connections
/// change, their marks lost. After SIGCONT the drops are counted
/// (`tcpinfo_ebpf_kernel_drops_total{reason="ringbuf_full"}`) and, although the scheduled
/// safety-net sweeps are pushed out of the way (1 h), the daemon sweeps at once because marks
/// were lost: every long-lived connection's change is recorded by that sweep (counted as
/// `tcpinfo_ebpf_unmarked_changes_total{change="changed"}`), marks work again afterwards, no
/// connection is closed, the daemon runs on and stops cleanly.
///
/// Sweep mode has no ring of marks: there the test checks the equivalent — changes made while
/// the daemon was stopped are recorded by its next sweeps, nothing is closed — with a smaller
/// storm, and says so.
#[test]
fn mark_ring_overflow_while_stopped_is_recovered_by_the_safety_net() {
    let _serial = one_at_a_time();
    let Some(setup) = Setup::new("kfring") else {
        return;
    };
    let ebpf = tcp_info_tests::mode() == "ebpf";
    add_storm_address(&setup.net, Side::Server).unwrap();
    let (mut daemon, reader) = setup
        .start_with_events(&[EXCLUDE_STORM, FLUSH, "--safety-sweep-interval=1h"])
        .unwrap();
    setup.wait_ready(&mut daemon, WAIT).unwrap();
    let root = setup.output();
    let mode = if ebpf { "ebpf" } else { "sweep" };
    let m = setup.scrape(&mut daemon).unwrap();
    assert_eq!(
        total(&m, "tcpinfo_mode", &[("mode", mode)]),
        1,
        "{mode} mode"
    );

    let listener = setup.net.listen().unwrap();
    let mut long_lived: Vec<Conn> = (0..LONG_LIVED)
        .map(|_| Conn::open(&setup, &listener).unwrap())
        .collect();
    let cookies: Vec<u64> = long_lived.iter().map(|c| c.cookie).collect();
    wait_events(&reader, &setup, &cookies, EventKind::Open, WAIT).unwrap();
    for conn in &long_lived {
        wait_recorded(&root, conn.cookie, conn.counters().unwrap(), WAIT, "first").unwrap();
    }
    let before = setup.scrape(&mut daemon).unwrap();
    let ring_full = |m: &Exposition| {
        total(
            m,
            "tcpinfo_ebpf_kernel_drops_total",
            &[("reason", "ringbuf_full")],
        )
    };
    let unmarked = |m: &Exposition| {
        total(
            m,
            "tcpinfo_ebpf_unmarked_changes_total",
            &[("change", "changed")],
        )
    };
    let safety_sweeps =
        |m: &Exposition| total(m, "tcpinfo_sweeps_total", &[("kind", "safety_net")]);
    let ebpf_records = |m: &Exposition| total(m, "tcpinfo_records_total", &[("source", "ebpf")]);

    let storm_size = if ebpf {
        RING_MARKS * 3 / 2 / MARKS_PER_STORM_CONNECTION
    } else {
        eprintln!(
            "sweep mode: no ring buffer of marks to overflow; checking that changes made while \
             the daemon is stopped are recorded by its next sweeps, with a smaller storm"
        );
        5_000
    };
    let stopped = Stopped::stop(&daemon).unwrap();
    let stop_started = Instant::now();
    let storm_time = storm(&setup.net, Side::Server, storm_size).unwrap();
    // The ring is full: these changes' marks are lost, and so are those of the segments that
    // follow them (delayed acknowledgements) while the daemon stays stopped a little longer.
    for conn in &mut long_lived {
        conn.exchange(1000).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let stopped_for = stop_started.elapsed();
    stopped.resume().unwrap();
    let resumed = Instant::now();
    eprintln!(
        "{mode} mode: {storm_size} storm connections in {storm_time:?} ({:.0}/s) while stopped \
         for {stopped_for:?}",
        storm_size as f64 / storm_time.as_secs_f64()
    );

    if ebpf {
        wait_for(WAIT, "marks lost to the full ring counted", || {
            let m = setup.scrape(&mut daemon)?;
            Ok((ring_full(&m) > ring_full(&before)).then_some(()))
        })
        .unwrap();
    }
    // Each change made while stopped is recorded: in eBPF mode by the sweep the lost marks
    // triggered (no mark reported them, and no scheduled sweep is due for an hour).
    for conn in &long_lived {
        wait_recorded(&root, conn.cookie, conn.counters().unwrap(), WAIT, "stop").unwrap();
    }
    eprintln!(
        "changes made while stopped recorded {:?} after SIGCONT",
        resumed.elapsed()
    );
    let recovered = setup.scrape(&mut daemon).unwrap();
    if ebpf {
        eprintln!(
            "marks drained {}, lost to the full ring {} (it holds {RING_MARKS}), changes \
             recorded by the safety net {}",
            total(&recovered, "tcpinfo_ebpf_marks_total", &[])
                - total(&before, "tcpinfo_ebpf_marks_total", &[]),
            ring_full(&recovered) - ring_full(&before),
            unmarked(&recovered) - unmarked(&before),
        );
        assert!(
            safety_sweeps(&recovered) > safety_sweeps(&before),
            "no safety-net sweep after the lost marks"
        );
        assert!(
            unmarked(&recovered) >= unmarked(&before) + LONG_LIVED as u64,
            "the changes were recorded by that sweep: {} unmarked changes before, {} after",
            unmarked(&before),
            unmarked(&recovered)
        );
    }

    // Marks work again: new changes are recorded (in eBPF mode from marks alone).
    for conn in &mut long_lived {
        conn.exchange(1000).unwrap();
    }
    for conn in &long_lived {
        let files =
            wait_recorded(&root, conn.cookie, conn.counters().unwrap(), WAIT, "after").unwrap();
        assert_eq!(files.len(), 1, "one segment for {:016X}", conn.cookie);
    }
    let m = setup.scrape(&mut daemon).unwrap();
    if ebpf {
        assert!(
            ebpf_records(&m) >= ebpf_records(&recovered) + LONG_LIVED as u64,
            "the last changes were recorded from marks"
        );
    }

    // Nothing closed, nothing of the storm recorded.
    alive(&mut daemon).unwrap();
    assert_eq!(
        total(&m, "tcpinfo_flow_events_total", &[("event", "close")]),
        0
    );
    let seen = events(&reader);
    let want: BTreeMap<String, Vec<EventKind>> = cookies
        .iter()
        .map(|c| (setup.uuid(*c), vec![EventKind::Open]))
        .collect();
    assert_eq!(seen, want);
    let archived: BTreeSet<u64> = archive::read_tree(&root).unwrap().into_keys().collect();
    assert_eq!(archived, cookies.iter().copied().collect());

    let (status, _) = daemon.terminate().unwrap();
    assert!(status.success(), "{status}");
    let stderr = daemon.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A watched namespace other than the daemon's own is swept rarely while idle (in eBPF mode
/// every 24 safety intervals or more; here, with the safety net every second, 24–36 s apart).
/// When its destroy listener overruns, the connections that closed meanwhile must still close
/// after the close grace (10 s), not at its next idle sweep: the overrun makes the eBPF source
/// sweep every namespace at once and then every interval until past the grace. The daemon
/// watches both of the test's namespaces (`--netns` paths); the doomed connections, both ends
/// in the client namespace, close while the storm there overflows that namespace's listener,
/// and their Close events must come within 20 s of SIGCONT. In sweep mode every namespace is
/// swept every poll, so the same bound holds there and is checked too.
#[test]
fn destroy_overrun_in_an_idle_watched_namespace_closes_after_the_grace() {
    let _serial = one_at_a_time();
    let Some(setup) = Setup::new("kfidle") else {
        return;
    };
    add_storm_address(&setup.net, Side::Client).unwrap();
    let netns_arg = format!(
        "--netns={},{}",
        setup.net.server_path().display(),
        setup.net.client_path().display()
    );
    let (mut daemon, reader) = setup
        .start_with_events(&[
            EXCLUDE_STORM,
            FLUSH,
            "--safety-sweep-interval=1s",
            &netns_arg,
        ])
        .unwrap();
    setup.wait_ready(&mut daemon, WAIT).unwrap();

    // Both ends in the client namespace, on its veth address (loopback is excluded).
    let addr = SocketAddr::new(IpAddr::V4(setup.net.client_ip()), 0);
    let doomed: Vec<(TcpStream, TcpStream)> = setup
        .net
        .in_client(|| -> Result<Vec<(TcpStream, TcpStream)>> {
            let listener = TcpListener::bind(addr)?;
            let addr = listener.local_addr()?;
            (0..LONG_LIVED)
                .map(|_| {
                    let client = TcpStream::connect(addr)?;
                    let (server, _) = listener.accept()?;
                    Ok((client, server))
                })
                .collect()
        })
        .unwrap()
        .unwrap();
    let cookies: Vec<u64> = doomed
        .iter()
        .flat_map(|(client, server)| [socket_cookie(client), socket_cookie(server)])
        .collect::<Result<_>>()
        .unwrap();
    wait_events(&reader, &setup, &cookies, EventKind::Open, WAIT).unwrap();
    // Recorded, and the namespace idle since: no mark after its sweep.
    std::thread::sleep(Duration::from_secs(3));

    let (resumed, drops_before) =
        overflow_destroy_listener(&daemon, &setup.net, Side::Client, || {
            for (client, server) in doomed {
                set_linger_zero(&server)?;
                drop(server);
                drop(client);
            }
            Ok(())
        })
        .unwrap();
    wait_events(&reader, &setup, &cookies, EventKind::Close, WAIT).unwrap();
    let closed_after = resumed.elapsed();
    eprintln!("the doomed connections closed {closed_after:?} after SIGCONT");
    let m = setup.scrape(&mut daemon).unwrap();
    assert!(total(&m, "tcpinfo_destroy_listener_overruns_total", &[]) > 0);
    wait_lost_counted(&setup, &mut daemon, Side::Client, drops_before).unwrap();
    // Their notifications were lost (so the sweeps closed them): each ends with the last
    // record a sweep took, ESTABLISHED (a notification's final record is in state CLOSE).
    let root = setup.output();
    for &cookie in &cookies {
        let files = archive::cookie_files(&root, cookie).unwrap().unwrap();
        let last = files.last().and_then(archive::ArchiveFile::last).unwrap();
        assert_eq!(last.raw_idm()[1], 1, "{cookie:016X} ends ESTABLISHED");
    }
    assert!(
        closed_after < Duration::from_secs(20),
        "closed {closed_after:?} after SIGCONT: at an idle sweep, not after the grace"
    );
    // Nothing else closed: only the doomed connections ever had events.
    let seen = events(&reader);
    let expected: BTreeSet<String> = cookies.iter().map(|c| setup.uuid(*c)).collect();
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), expected);
    for (uuid, kinds) in &seen {
        assert_eq!(kinds, &[EventKind::Open, EventKind::Close], "{uuid}");
    }
    alive(&mut daemon).unwrap();
    let (status, _) = daemon.terminate().unwrap();
    assert!(status.success(), "{status}");
    let stderr = daemon.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
}
