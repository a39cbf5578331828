//! Long-lived bulk flows with rate-limited senders, so their kernel counters change continuously.
//!
//! Even-numbered flows are downloads (the server sends), odd-numbered ones uploads (the client
//! sends), so both `bytes_acked` and `bytes_received` of server sockets keep moving. Each end
//! runs on its own thread with a blocking socket; the sender paces itself with a token bucket.

use std::io::{self, Read as _, Write as _};
use std::net::{Shutdown, SocketAddrV4, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::Endpoints;
use super::sock::{self, connect_from, read_to_eof, v4};
use super::truth::{ConnClass, ConnTruth, FinalCounters};
use crate::timefmt::now_unix_ns;

const CHUNK: usize = 16 * 1024;
/// Burst allowance of the token bucket.
const BURST: f64 = 64.0 * 1024.0;
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often blocked reads and writes look at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// What one end of a flow did.
#[derive(Debug, Default)]
struct EndResult {
    sent: u64,
    received: u64,
    fin: Option<FinalCounters>,
    closed_ns: u64,
}

struct Flow {
    client_addr: SocketAddrV4,
    server_addr: SocketAddrV4,
    cookie: u64,
    opened_ns: u64,
    server: JoinHandle<EndResult>,
    client: JoinHandle<EndResult>,
}

/// Running bulk flows.
pub struct BulkFlows {
    flows: Vec<Flow>,
    stop: Arc<AtomicBool>,
}

impl BulkFlows {
    /// Starts `count` flows to `port`, each sender limited to `rate` bytes/s (0: unlimited).
    /// `delivered` counts bytes read by receivers (the throughput measure).
    pub fn start(
        ep: &Endpoints,
        port: u16,
        count: usize,
        rate: u64,
        delivered: &Arc<AtomicU64>,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut flows = Vec::with_capacity(count);
        if count == 0 {
            return Ok(Self { flows, stop });
        }
        let server_addr = SocketAddrV4::new(ep.server_addr, port);
        let listener = super::netns::run_in(&ep.server_ns, || {
            sock::listen(server_addr, 128).with_context(|| format!("listening on {server_addr}"))
        })?;
        for i in 0..count {
            let local = ep.client_addrs[i % ep.client_addrs.len()];
            let opened_ns = now_unix_ns();
            let client = super::netns::run_in(&ep.client_ns, || {
                connect_from(local, server_addr, IO_TIMEOUT)
                    .with_context(|| format!("bulk flow {i} from {local} to {server_addr}"))
            })?;
            let (server, peer) = listener.accept().context("accepting a bulk flow")?;
            let client_addr = v4(client.local_addr()?)?;
            anyhow::ensure!(
                v4(peer)? == client_addr,
                "bulk accept returned an unexpected peer {peer}"
            );
            let cookie = sock::cookie(&server).context("reading SO_COOKIE")?;
            let download = i % 2 == 0;
            let spawn = |s: TcpStream, is_server: bool, sends: bool| {
                let stop = Arc::clone(&stop);
                let delivered = Arc::clone(delivered);
                std::thread::spawn(move || run_end(s, is_server, sends, rate, &stop, &delivered))
            };
            flows.push(Flow {
                client_addr,
                server_addr,
                cookie,
                opened_ns,
                server: spawn(server, true, download),
                client: spawn(client, false, !download),
            });
        }
        Ok(Self { flows, stop })
    }

    /// Stops the senders, closes every flow with the close protocol, returns the ground truth.
    pub fn stop(self) -> Vec<ConnTruth> {
        self.stop.store(true, Ordering::SeqCst);
        self.flows
            .into_iter()
            .map(|f| {
                let s = f.server.join().unwrap_or_default();
                let c = f.client.join().unwrap_or_default();
                ConnTruth {
                    class: ConnClass::Bulk,
                    client: f.client_addr,
                    server: f.server_addr,
                    cookie: f.cookie,
                    opened_ns: f.opened_ns,
                    closed_ns: s.closed_ns.max(c.closed_ns),
                    client_closed_ns: c.closed_ns,
                    client_sent: c.sent,
                    client_received: c.received,
                    server_sent: s.sent,
                    server_received: s.received,
                    server_final: s.fin,
                }
            })
            .collect()
    }
}

/// One end of a flow: send or receive until stopped, then run its half of the close protocol.
fn run_end(
    mut s: TcpStream,
    is_server: bool,
    sends: bool,
    rate: u64,
    stop: &AtomicBool,
    delivered: &AtomicU64,
) -> EndResult {
    let mut r = EndResult::default();
    let ok = if sends {
        send_paced(&mut s, rate, stop, &mut r.sent).is_ok()
    } else {
        receive(&mut s, is_server, stop, delivered, &mut r.received).is_ok()
    };
    // The sender finishes its half here; a receiver has already read EOF.
    let ok = ok
        && if sends {
            if !is_server {
                let _ = s.shutdown(Shutdown::Write);
            }
            match read_to_eof(&mut s, IO_TIMEOUT) {
                Ok(n) => {
                    r.received += n;
                    true
                }
                Err(_) => false,
            }
        } else {
            true
        };
    if is_server && ok {
        r.fin = sock::server_finish(&s, IO_TIMEOUT)
            .ok()
            .map(|k| FinalCounters {
                bytes_acked: k.bytes_acked,
                bytes_received: k.bytes_received,
            });
    }
    drop(s);
    r.closed_ns = now_unix_ns();
    r
}

/// Writes filler at `rate` bytes/s until `stop` is set.
fn send_paced(s: &mut TcpStream, rate: u64, stop: &AtomicBool, sent: &mut u64) -> io::Result<()> {
    s.set_write_timeout(Some(POLL))?;
    let buf = [b'b'; CHUNK];
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if rate > 0 {
            let allowed = start.elapsed().as_secs_f64() * rate as f64 + BURST;
            let want = *sent as f64 + CHUNK as f64;
            if want > allowed {
                let wait = ((want - allowed) / rate as f64).min(0.01);
                std::thread::sleep(Duration::from_secs_f64(wait));
                continue;
            }
        }
        match s.write(&buf) {
            Ok(n) => *sent += n as u64,
            Err(e) if is_transient(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads until EOF. A client receiver sends its FIN once `stop` is set (it starts the close).
fn receive(
    s: &mut TcpStream,
    is_server: bool,
    stop: &AtomicBool,
    delivered: &AtomicU64,
    received: &mut u64,
) -> io::Result<()> {
    s.set_read_timeout(Some(POLL))?;
    let mut buf = [0u8; CHUNK];
    let mut fin_sent = false;
    let mut stop_seen: Option<Instant> = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            let since = *stop_seen.get_or_insert_with(Instant::now);
            if !is_server && !fin_sent {
                s.shutdown(Shutdown::Write)?;
                fin_sent = true;
            }
            if since.elapsed() > IO_TIMEOUT {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no EOF after stop"));
            }
        }
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                *received += n as u64;
                delivered.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if is_transient(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// A socket error after which the flow just tries again: a timeout (the sockets have read and
/// write timeouts so that stop requests are noticed) or an interrupted call.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
