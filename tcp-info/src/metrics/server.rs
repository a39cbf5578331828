//! The HTTP endpoint: `GET /metrics` on a plain std `TcpListener`, one short-lived thread per
//! connection ([`listen`](super::listen) binds, [`http`](super::http) answers one request).
//!
//! Every connection gets a deadline for its request head and timeouts on each read and write, and
//! only [`MAX_CONNECTIONS`] are served at once, so a slow or malicious client can hold one slot
//! for a bounded time but cannot block the other scrapes. Each response closes its connection.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use socket2::SockRef;

use super::http::serve_connection;
use super::listen::bind;
use super::{Metrics, MetricsError};

/// Connections served at the same time; more are closed at once.
pub const MAX_CONNECTIONS: usize = 16;
/// Pause after an accept error that is not about one connection (e.g. EMFILE), so the loop
/// does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// A running metrics HTTP server. Stops when [`MetricsServer::shutdown`] is called or it is
/// dropped.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    shared: Arc<Shared>,
    /// A handle on the listening socket, used to wake the blocked `accept`.
    listener: TcpListener,
    accept_thread: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    stopping: AtomicBool,
    connections: Mutex<Connections>,
}

/// Connections being served, so that shutdown can interrupt and join them.
#[derive(Debug, Default)]
struct Connections {
    next_id: u64,
    active: HashMap<u64, (TcpStream, JoinHandle<()>)>,
}

impl Shared {
    fn connections(&self) -> MutexGuard<'_, Connections> {
        // The map stays consistent even if a holder panicked, so poisoning is ignored.
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Binds `listen` now (so a bad address or a port in use is reported at start-up) and serves
/// `/metrics` from `metrics` on background threads.
///
/// `listen` is `host:port` as Go's `net.Listen` takes it: `:9990` is every interface (IPv6 and
/// IPv4), `:0` a free port, `127.0.0.1:1234`, `[::1]:0`, or a host name.
pub fn serve(listen: &str, metrics: Arc<Metrics>) -> Result<MetricsServer, MetricsError> {
    let listener = bind(listen)?;
    let local_addr = listener.local_addr().map_err(|source| MetricsError::Bind {
        addr: listen.to_owned(),
        source,
    })?;
    let waker = listener.try_clone().map_err(|source| MetricsError::Bind {
        addr: listen.to_owned(),
        source,
    })?;
    let shared = Arc::new(Shared::default());
    let accept_shared = Arc::clone(&shared);
    let accept_thread = thread::Builder::new()
        .name("metrics-http".to_owned())
        .spawn(move || accept_loop(&listener, &accept_shared, &metrics))
        .map_err(|source| MetricsError::Spawn { source })?;
    tracing::info!("serving metrics on http://{local_addr}/metrics");
    Ok(MetricsServer {
        local_addr,
        running: Some(Running {
            shared,
            listener: waker,
            accept_thread,
        }),
    })
}

impl MetricsServer {
    /// The address the server is bound to (with the real port when `:0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, interrupts the connections being served, and waits for every thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        running.shared.stopping.store(true, Ordering::SeqCst);
        // On Linux, shutting down a listening socket wakes a thread blocked in accept(), which
        // then fails with EINVAL and sees `stopping`.
        if let Err(e) = SockRef::from(&running.listener).shutdown(Shutdown::Both) {
            tracing::warn!("cannot shut down the metrics listener: {e}");
        }
        if running.accept_thread.join().is_err() {
            tracing::error!("the metrics accept thread panicked");
        }
        let active: Vec<_> = running.shared.connections().active.drain().collect();
        for (_, (stream, worker)) in active {
            // Ends any blocked read or write at once; the socket may already be closed.
            let _ = stream.shutdown(Shutdown::Both);
            if worker.join().is_err() {
                tracing::error!("a metrics connection thread panicked");
            }
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, metrics: &Arc<Metrics>) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((stream, peer)) => dispatch(stream, peer, shared, metrics),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(e) => {
                tracing::warn!("metrics server: accept failed: {e}");
                thread::sleep(ACCEPT_ERROR_PAUSE);
            }
        }
    }
}

/// Hands `stream` to a new connection thread, or closes it when all slots are taken.
fn dispatch(stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>, metrics: &Arc<Metrics>) {
    let mut connections = shared.connections();
    if connections.active.len() >= MAX_CONNECTIONS {
        tracing::debug!("metrics server: refusing {peer}: {MAX_CONNECTIONS} connections busy");
        return;
    }
    let handle = match stream.try_clone() {
        Ok(handle) => handle,
        Err(e) => {
            tracing::warn!("metrics server: cannot serve {peer}: {e}");
            return;
        }
    };
    let id = connections.next_id;
    connections.next_id += 1;
    let worker_shared = Arc::clone(shared);
    let worker_metrics = Arc::clone(metrics);
    // The lock is held across the spawn so the worker cannot remove its entry before it exists.
    let spawned = thread::Builder::new()
        .name("metrics-conn".to_owned())
        .spawn(move || {
            if let Err(e) = serve_connection(stream, &worker_metrics) {
                tracing::debug!("metrics server: connection from {peer}: {e}");
            }
            worker_shared.connections().active.remove(&id);
        });
    match spawned {
        Ok(worker) => {
            connections.active.insert(id, (handle, worker));
        }
        Err(e) => tracing::warn!("metrics server: cannot start a thread for {peer}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::{MAX_CONNECTIONS, serve};
    use crate::metrics::{Metrics, MetricsError};

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new("abc123").unwrap())
    }

    /// Sends `request` and reads the whole response (the server closes the connection).
    fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    fn get(addr: SocketAddr, path: &str) -> String {
        exchange(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: test\r\nAccept: */*\r\n\r\n"),
        )
    }

    fn loopback(server: &super::MetricsServer) -> SocketAddr {
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), server.local_addr().port())
    }

    #[test]
    fn serves_metrics_over_loopback() {
        let m = metrics();
        m.snapshots.inc_by(4);
        let server = serve("127.0.0.1:0", Arc::clone(&m)).unwrap();
        assert_ne!(server.local_addr().port(), 0);
        let response = get(server.local_addr(), "/metrics");
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        assert_eq!(lines.next(), Some("HTTP/1.1 200 OK"));
        let headers: Vec<&str> = lines.collect();
        assert!(headers.contains(&"Content-Type: text/plain; version=0.0.4; charset=utf-8"));
        assert!(headers.contains(&format!("Content-Length: {}", body.len()).as_str()));
        assert!(body.contains("# TYPE tcpinfo_snapshot_total counter\ntcpinfo_snapshot_total 4\n"));
        assert!(body.contains("# TYPE tcpinfo_syscall_time_histogram histogram\n"));
        assert!(body.contains("git_short_commit{commit=\"abc123\"} 1.1256099e+07\n"));
        assert!(body.contains("process_open_fds "));
        server.shutdown();
    }

    #[test]
    fn query_string_is_ignored_and_head_has_no_body() {
        let server = serve("127.0.0.1:0", metrics()).unwrap();
        let response = get(server.local_addr(), "/metrics?x=1");
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        let head = exchange(server.local_addr(), "HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
    }

    #[test]
    fn other_paths_and_methods() {
        let server = serve("127.0.0.1:0", metrics()).unwrap();
        let addr = server.local_addr();
        for path in ["/", "/debug/pprof/", "/metricsx", "/metrics/"] {
            let response = get(addr, path);
            assert!(
                response.starts_with("HTTP/1.1 404 Not Found\r\n"),
                "{path}: {response}"
            );
            assert!(
                response.ends_with("\r\n\r\n404 page not found\n"),
                "{path}: {response}"
            );
        }
        let post = exchange(addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(
            post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{post}"
        );
        assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
        let garbage = exchange(addr, "hello\r\n\r\n");
        assert!(
            garbage.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{garbage}"
        );
        let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The server may answer and close before it has read everything we send.
        let _ = stream.write_all(huge.as_bytes());
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 431 "), "{response}");
    }

    #[test]
    fn wildcard_port_zero_serves_ipv4_and_ipv6() {
        let server = serve(":0", metrics()).unwrap();
        let port = server.local_addr().port();
        assert_ne!(port, 0);
        assert!(server.local_addr().ip().is_unspecified());
        let v4 = get(loopback(&server), "/metrics");
        assert!(v4.starts_with("HTTP/1.1 200 OK\r\n"), "{v4}");
        if server.local_addr().is_ipv6() {
            let v6 = get(
                SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), port),
                "/metrics",
            );
            assert!(v6.starts_with("HTTP/1.1 200 OK\r\n"), "{v6}");
        }
    }

    #[test]
    fn ipv6_loopback_literal() {
        match serve("[::1]:0", metrics()) {
            Ok(server) => {
                assert_eq!(server.local_addr().ip(), std::net::Ipv6Addr::LOCALHOST);
                let response = get(server.local_addr(), "/metrics");
                assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
            }
            // Hosts without IPv6 cannot bind ::1; that must be reported, not hidden.
            Err(MetricsError::Bind { .. }) if std::env::var("CI").as_deref() != Ok("true") => {
                eprintln!("skipping: IPv6 loopback unavailable on this host");
            }
            Err(e) => panic!("[::1]:0: {e}"),
        }
    }

    #[test]
    fn bind_errors_are_reported_at_start() {
        let first = serve("127.0.0.1:0", metrics()).unwrap();
        let taken = format!("127.0.0.1:{}", first.local_addr().port());
        assert!(matches!(
            serve(&taken, metrics()),
            Err(MetricsError::Bind { .. })
        ));
        for bad in [
            "9990",
            "127.0.0.1:",
            "127.0.0.1:70000",
            "::1:80",
            "[::1:80",
            "1.2.3.4:x",
        ] {
            assert!(
                matches!(
                    serve(bad, metrics()),
                    Err(MetricsError::InvalidListenAddress { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn slow_clients_do_not_block_scrapes() {
        let server = serve("127.0.0.1:0", metrics()).unwrap();
        let addr = server.local_addr();
        // Clients that connect and send half a request, then stall, hold slots...
        let stalled: Vec<TcpStream> = (0..MAX_CONNECTIONS - 1)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET /metr").unwrap();
                s
            })
            .collect();
        // ...but a scrape still gets its answer promptly.
        let start = Instant::now();
        let response = get(addr, "/metrics");
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        // Shutdown interrupts the stalled connections instead of waiting for their timeouts.
        let start = Instant::now();
        server.shutdown();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        for mut s in stalled {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            assert!(rest.is_empty());
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    #[test]
    fn over_the_connection_limit_is_closed_not_queued() {
        let server = serve("127.0.0.1:0", metrics()).unwrap();
        let addr = server.local_addr();
        let mut held: Vec<TcpStream> = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            held.push(TcpStream::connect(addr).unwrap());
        }
        // Wait until the server has taken every slot (each is accepted asynchronously).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut extra = TcpStream::connect(addr).unwrap();
            extra
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let _ = extra.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
            let mut response = Vec::new();
            let _ = extra.read_to_end(&mut response);
            if response.is_empty() {
                break; // Refused: closed without an answer.
            }
            assert!(
                Instant::now() < deadline,
                "the extra connection was never refused"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(held);
        // Slots free up again once the held connections are gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response);
            if response.starts_with("HTTP/1.1 200 OK\r\n") {
                break;
            }
            assert!(Instant::now() < deadline, "slots never freed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn drop_stops_the_server() {
        let server = serve("127.0.0.1:0", metrics()).unwrap();
        let addr = server.local_addr();
        drop(server);
        assert!(TcpStream::connect(addr).is_err());
    }
}
