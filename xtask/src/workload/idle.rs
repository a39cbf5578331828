//! Idle connections: established, one small greeting each way, then silent until the end.
//!
//! Both ends of every connection stay in this process, so no event loop is needed while they
//! sit idle. Closing runs in four batched phases (all client FINs, all server reads and FINs,
//! all client reads and closes, all server final counters and closes), so tens of thousands of
//! connections close in well under a second.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddrV4, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::Endpoints;
use super::sock::{self, connect_from, read_to_eof, v4};
use super::truth::{ConnClass, ConnTruth, FinalCounters};
use crate::timefmt::now_unix_ns;

/// Bytes the client sends when it connects.
pub const HELLO_LEN: usize = 32;
/// Bytes the server answers.
pub const REPLY_LEN: usize = 48;
/// How long setup may take per connection before giving up (generous: the machine is shared).
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

struct IdlePair {
    client: TcpStream,
    server: TcpStream,
    client_addr: SocketAddrV4,
    server_addr: SocketAddrV4,
    cookie: u64,
    opened_ns: u64,
}

/// A set of established idle connections, both ends held.
pub struct IdleShard {
    pairs: Vec<IdlePair>,
}

impl IdleShard {
    /// Opens `count` idle connections to `port` on the server, spread over the client addresses.
    pub fn open(ep: &Endpoints, port: u16, count: usize) -> anyhow::Result<Self> {
        if count == 0 {
            return Ok(Self { pairs: Vec::new() });
        }
        let server = SocketAddrV4::new(ep.server_addr, port);
        let listener = super::netns::run_in(&ep.server_ns, || {
            sock::listen(server, 65_535).with_context(|| format!("listening on {server}"))
        })?;
        listener
            .set_nonblocking(true)
            .context("making the idle listener non-blocking")?;
        let give_up = Arc::new(AtomicBool::new(false));
        let give_up_srv = Arc::clone(&give_up);
        let acceptor = std::thread::spawn(
            move || -> anyhow::Result<Vec<(SocketAddrV4, TcpStream, u64)>> {
                let start = Instant::now();
                let mut out = Vec::with_capacity(count);
                while out.len() < count {
                    if give_up_srv.load(Ordering::Relaxed) {
                        bail!("client side failed");
                    }
                    if start.elapsed() > SETUP_TIMEOUT {
                        bail!("accepted only {} of {count} idle connections", out.len());
                    }
                    if !sock::wait_readable(&listener, Duration::from_millis(100))? {
                        continue;
                    }
                    let (mut s, peer) = match listener.accept() {
                        Ok(x) => x,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        Err(e) => return Err(e).context("accepting an idle connection"),
                    };
                    s.set_nonblocking(false)?;
                    s.set_read_timeout(Some(IO_TIMEOUT))?;
                    let mut hello = [0u8; HELLO_LEN];
                    s.read_exact(&mut hello)
                        .context("reading an idle greeting")?;
                    s.write_all(&[b'r'; REPLY_LEN])
                        .context("answering an idle greeting")?;
                    let cookie = sock::cookie(&s).context("reading SO_COOKIE")?;
                    out.push((v4(peer)?, s, cookie));
                }
                Ok(out)
            },
        );

        let clients = super::netns::run_in(&ep.client_ns, || {
            let mut clients = Vec::with_capacity(count);
            for i in 0..count {
                let local = ep.client_addrs[i % ep.client_addrs.len()];
                let opened_ns = now_unix_ns();
                let mut c = connect_from(local, server, IO_TIMEOUT)
                    .with_context(|| format!("idle connection {i} from {local} to {server}"))?;
                c.write_all(&[b'h'; HELLO_LEN])
                    .context("sending an idle greeting")?;
                clients.push((v4(c.local_addr()?)?, c, opened_ns));
            }
            for (_, c, _) in &mut clients {
                c.set_read_timeout(Some(IO_TIMEOUT))?;
                let mut reply = [0u8; REPLY_LEN];
                c.read_exact(&mut reply).context("reading an idle reply")?;
            }
            Ok(clients)
        });
        if clients.is_err() {
            give_up.store(true, Ordering::Relaxed);
        }
        let accepted = acceptor
            .join()
            .map_err(|_| anyhow::anyhow!("idle acceptor panicked"))?;
        let clients = clients?;
        let mut by_peer: HashMap<SocketAddrV4, (TcpStream, u64)> =
            accepted?.into_iter().map(|(p, s, c)| (p, (s, c))).collect();
        let mut pairs = Vec::with_capacity(count);
        for (client_addr, client, opened_ns) in clients {
            let (server_s, cookie) = by_peer
                .remove(&client_addr)
                .with_context(|| format!("no accepted socket for idle client {client_addr}"))?;
            pairs.push(IdlePair {
                client,
                server: server_s,
                client_addr,
                server_addr: server,
                cookie,
                opened_ns,
            });
        }
        Ok(Self { pairs })
    }

    /// Number of connections held.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Closes every connection with the close protocol and returns the ground truth.
    ///
    /// A connection that misbehaves is still reported, with `server_final: None`, so the
    /// ground-truth check counts it instead of the whole run failing.
    pub fn close(self) -> Vec<ConnTruth> {
        struct Closing {
            client: Option<TcpStream>,
            server: TcpStream,
            client_addr: SocketAddrV4,
            server_addr: SocketAddrV4,
            cookie: u64,
            opened_ns: u64,
            extra_server_rx: u64,
            extra_client_rx: u64,
            client_closed_ns: u64,
            ok: bool,
        }
        let mut v: Vec<Closing> = self
            .pairs
            .into_iter()
            .map(|p| Closing {
                client: Some(p.client),
                server: p.server,
                client_addr: p.client_addr,
                server_addr: p.server_addr,
                cookie: p.cookie,
                opened_ns: p.opened_ns,
                extra_server_rx: 0,
                extra_client_rx: 0,
                client_closed_ns: 0,
                ok: true,
            })
            .collect();
        // 1: every client sends FIN.
        for c in &mut v {
            if let Some(client) = &c.client {
                c.ok &= client.shutdown(Shutdown::Write).is_ok();
            }
        }
        // 2: every server reads to EOF and sends its FIN.
        for c in &mut v {
            match read_to_eof(&mut c.server, IO_TIMEOUT) {
                Ok(n) => c.extra_server_rx = n,
                Err(_) => c.ok = false,
            }
            c.ok &= c.server.shutdown(Shutdown::Write).is_ok();
        }
        // 3: every client reads to EOF and closes.
        for c in &mut v {
            if let Some(mut client) = c.client.take() {
                match read_to_eof(&mut client, IO_TIMEOUT) {
                    Ok(n) => c.extra_client_rx = n,
                    Err(_) => c.ok = false,
                }
            }
            c.client_closed_ns = now_unix_ns();
        }
        // 4: every server reads its final counters (its FIN is acked by now), then closes.
        v.into_iter()
            .map(|c| {
                let fin = if c.ok {
                    sock::wait_closed(&c.server, IO_TIMEOUT)
                        .ok()
                        .map(|k| FinalCounters {
                            bytes_acked: k.bytes_acked,
                            bytes_received: k.bytes_received,
                        })
                } else {
                    None
                };
                drop(c.server);
                ConnTruth {
                    class: ConnClass::Idle,
                    client: c.client_addr,
                    server: c.server_addr,
                    cookie: c.cookie,
                    opened_ns: c.opened_ns,
                    closed_ns: now_unix_ns(),
                    client_closed_ns: c.client_closed_ns,
                    client_sent: HELLO_LEN as u64,
                    client_received: REPLY_LEN as u64 + c.extra_client_rx,
                    server_sent: REPLY_LEN as u64,
                    server_received: HELLO_LEN as u64 + c.extra_server_rx,
                    server_final: fin,
                }
            })
            .collect()
    }
}
