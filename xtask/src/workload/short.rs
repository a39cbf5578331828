//! Short connections at a steady rate: connect, request, reply, close.
//!
//! The request's first four bytes carry the reply length (big-endian). Half the connections are
//! tiny (8-byte request, 16-byte reply), which on a veth pair live well under a millisecond;
//! the rest carry up to 2 KiB of request and up to 256 KiB of reply. Sizes come from a seeded
//! generator, so a run is reproducible.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read as _, Write as _};
use std::net::{Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::Endpoints;
use super::sock::{self, connect_from, read_to_eof, v4, write_filler};
use super::truth::{ConnClass, ConnTruth, FinalCounters};
use crate::timefmt::now_unix_ns;

const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// SplitMix64: small, seeded, good enough to pick sizes.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// (request length, reply length) of the next connection; the request is at least 4 bytes.
pub fn pick_sizes(rng: &mut SplitMix) -> (u64, u64) {
    match rng.next_u64() % 4 {
        0 | 1 => (8, 16),
        2 => (rng.range(4, 512), rng.range(0, 4096)),
        _ => (rng.range(4, 2048), rng.range(16 * 1024, 256 * 1024)),
    }
}

#[derive(Debug)]
struct ClientRec {
    local: SocketAddrV4,
    opened_ns: u64,
    closed_ns: u64,
    sent: u64,
    received: u64,
}

#[derive(Debug)]
struct ServerRec {
    peer: SocketAddrV4,
    cookie: u64,
    closed_ns: u64,
    sent: u64,
    received: u64,
    fin: Option<FinalCounters>,
}

/// The running short-connection generator.
pub struct ShortRunner {
    stop: Arc<AtomicBool>,
    client: JoinHandle<anyhow::Result<Vec<ClientRec>>>,
    server: JoinHandle<anyhow::Result<Vec<ServerRec>>>,
    server_addr: SocketAddrV4,
}

impl ShortRunner {
    /// Starts `rate` connections per second to `port`; `done` counts completed ones.
    pub fn start(
        ep: &Endpoints,
        port: u16,
        rate: f64,
        seed: u64,
        done: &Arc<AtomicU64>,
    ) -> anyhow::Result<Self> {
        let server_addr = SocketAddrV4::new(ep.server_addr, port);
        let listener = super::netns::run_in(&ep.server_ns, || {
            sock::listen(server_addr, 1024).with_context(|| format!("listening on {server_addr}"))
        })?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let client_done = Arc::new(AtomicBool::new(false));
        let server = {
            let client_done = Arc::clone(&client_done);
            std::thread::spawn(move || serve(&listener, &client_done))
        };
        let client = {
            let stop = Arc::clone(&stop);
            let done = Arc::clone(done);
            let ns = ep.client_ns.clone();
            let addrs = ep.client_addrs.clone();
            std::thread::spawn(move || {
                let r = super::netns::enter(&ns)
                    .and_then(|()| run_clients(&addrs, server_addr, rate, seed, &stop, &done));
                client_done.store(true, Ordering::SeqCst);
                r
            })
        };
        Ok(Self {
            stop,
            client,
            server,
            server_addr,
        })
    }

    /// Stops after the connection in progress and returns the ground truth.
    pub fn stop(self) -> anyhow::Result<Vec<ConnTruth>> {
        self.stop.store(true, Ordering::SeqCst);
        let clients = self
            .client
            .join()
            .map_err(|_| anyhow::anyhow!("short-connection client panicked"))??;
        let servers = self
            .server
            .join()
            .map_err(|_| anyhow::anyhow!("short-connection server panicked"))??;
        // A client port comes back once the ephemeral range wraps (an hour-long soak makes
        // 180 000 connections from 8 addresses): both sides are handled one connection at a
        // time, in order, so the n-th client connection from a port is the n-th the server
        // accepted from it. (Keyed by port alone, the later ones lost their server side.)
        let mut by_peer: HashMap<SocketAddrV4, VecDeque<ServerRec>> = HashMap::new();
        for server in servers {
            by_peer.entry(server.peer).or_default().push_back(server);
        }
        Ok(clients
            .into_iter()
            .map(|c| {
                let s = by_peer.get_mut(&c.local).and_then(VecDeque::pop_front);
                ConnTruth {
                    class: ConnClass::Short,
                    client: c.local,
                    server: self.server_addr,
                    cookie: s.as_ref().map_or(0, |s| s.cookie),
                    opened_ns: c.opened_ns,
                    closed_ns: s
                        .as_ref()
                        .map_or(c.closed_ns, |s| s.closed_ns.max(c.closed_ns)),
                    client_closed_ns: c.closed_ns,
                    client_sent: c.sent,
                    client_received: c.received,
                    server_sent: s.as_ref().map_or(0, |s| s.sent),
                    server_received: s.as_ref().map_or(0, |s| s.received),
                    server_final: s.and_then(|s| s.fin),
                }
            })
            .collect())
    }
}

fn run_clients(
    addrs: &[std::net::Ipv4Addr],
    server: SocketAddrV4,
    rate: f64,
    seed: u64,
    stop: &AtomicBool,
    done: &AtomicU64,
) -> anyhow::Result<Vec<ClientRec>> {
    let mut out = Vec::new();
    if rate <= 0.0 {
        return Ok(out);
    }
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut rng = SplitMix::new(seed);
    let mut next = Instant::now();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(50)));
            continue;
        }
        // Keep the cadence, but never burst to catch up after a stall.
        next = (next + period).max(now);
        let (req, reply) = pick_sizes(&mut rng);
        let local = addrs[i % addrs.len()];
        i += 1;
        let opened_ns = now_unix_ns();
        let mut c = connect_from(local, server, IO_TIMEOUT)
            .with_context(|| format!("short connection from {local} to {server}"))?;
        let local_addr = v4(c.local_addr()?)?;
        let mut msg = Vec::with_capacity(req as usize);
        msg.extend_from_slice(&(reply as u32).to_be_bytes());
        msg.resize(req as usize, b'q');
        c.write_all(&msg).context("sending a short request")?;
        c.shutdown(Shutdown::Write)?;
        let received = read_to_eof(&mut c, IO_TIMEOUT).context("reading a short reply")?;
        drop(c);
        out.push(ClientRec {
            local: local_addr,
            opened_ns,
            closed_ns: now_unix_ns(),
            sent: req,
            received,
        });
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(out)
}

fn serve(listener: &TcpListener, client_done: &AtomicBool) -> anyhow::Result<Vec<ServerRec>> {
    let mut out = Vec::new();
    loop {
        // Check the flag before polling, so a connection that arrived before the client
        // finished is always served.
        let finished = client_done.load(Ordering::SeqCst);
        let timeout = if finished {
            Duration::ZERO
        } else {
            Duration::from_millis(50)
        };
        if !sock::wait_readable(listener, timeout)? {
            if finished {
                return Ok(out);
            }
            continue;
        }
        let (s, peer) = match listener.accept() {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e).context("accepting a short connection"),
        };
        s.set_nonblocking(false)?;
        out.push(handle(s, v4(peer)?)?);
    }
}

/// Serves one short connection; I/O failures leave `fin` unset rather than stop the server.
fn handle(mut s: TcpStream, peer: SocketAddrV4) -> anyhow::Result<ServerRec> {
    let cookie = sock::cookie(&s).context("reading SO_COOKIE")?;
    let mut rec = ServerRec {
        peer,
        cookie,
        closed_ns: 0,
        sent: 0,
        received: 0,
        fin: None,
    };
    let result = (|| -> io::Result<()> {
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        let mut head = [0u8; 4];
        s.read_exact(&mut head)?;
        rec.received = 4 + read_to_eof(&mut s, IO_TIMEOUT)?;
        let reply = u64::from(u32::from_be_bytes(head));
        write_filler(&mut s, reply)?;
        rec.sent = reply;
        let k = sock::server_finish(&s, IO_TIMEOUT)?;
        rec.fin = Some(FinalCounters {
            bytes_acked: k.bytes_acked,
            bytes_received: k.bytes_received,
        });
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!("warning: short connection from {peer}: {e}");
    }
    drop(s);
    rec.closed_ns = now_unix_ns();
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_reproducible_and_in_range() {
        let mut a = SplitMix::new(7);
        let mut b = SplitMix::new(7);
        let mut tiny = 0;
        for _ in 0..10_000 {
            let (req, reply) = pick_sizes(&mut a);
            assert_eq!((req, reply), pick_sizes(&mut b));
            assert!((4..=2048).contains(&req) && reply <= 256 * 1024);
            tiny += usize::from(req == 8 && reply == 16);
        }
        // About half are tiny (the sub-millisecond ones).
        assert!((4500..5500).contains(&tiny), "{tiny}");
    }
}
