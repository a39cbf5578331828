//! The metrics endpoint: `GET`/`HEAD /metrics` and `/ready` (the readiness probe), served by
//! [`crate::http`] (its limits keep a slow or malicious client from blocking the scrapes) on a
//! listener bound with Go's `net.Listen` semantics ([`listen`](super::listen)). The exposition
//! itself is ours ([`Metrics::render`]): byte-identical to Go's.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::runtime::Handle;

use super::exposition::CONTENT_TYPE as EXPOSITION_TYPE;
use super::listen::bind;
use super::{Metrics, MetricsError};
use crate::http::{Handler, Listener, LocalAddr, Options, Server};

/// A running metrics HTTP server. Stops when [`MetricsServer::shutdown`] is called or it is
/// dropped.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    server: Server,
}

/// Binds `listen` now (so a bad address or a port in use is reported at start-up) and serves
/// `/metrics` and `/ready` from `metrics` as tasks on `runtime`.
///
/// `listen` is `host:port` as Go's `net.Listen` takes it: `:9990` is every interface (IPv6 and
/// IPv4), `:0` a free port, `127.0.0.1:1234`, `[::1]:0`, or a host name.
pub fn serve(
    listen: &str,
    metrics: Arc<Metrics>,
    runtime: &Handle,
) -> Result<MetricsServer, MetricsError> {
    let bind_error = |source| MetricsError::Bind {
        addr: listen.to_owned(),
        source,
    };
    let listener = bind(listen)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    let options = Options {
        on_drop: Some(metrics.http_drop_hook("metrics")?),
        ..Options::default()
    };
    let handler: Handler = Arc::new(move |request: Request<Incoming>| {
        let response = respond(&request, &metrics);
        Box::pin(async move { response })
    });
    let server = Server::start_with(
        "metrics",
        Listener::Tcp(listener),
        handler,
        runtime,
        options,
    )
    .map_err(bind_error)?;
    debug_assert_eq!(server.local_addr(), &LocalAddr::Tcp(local_addr));
    tracing::info!("serving metrics on http://{local_addr}/metrics");
    Ok(MetricsServer { local_addr, server })
}

impl MetricsServer {
    /// The address the server is bound to (with the real port when `:0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, ends the connections being served, and waits for the accept task.
    /// Blocks the calling thread, which must not be one of the runtime's own.
    pub fn shutdown(self) {
        self.server.shutdown();
    }
}

/// The answer to one request: the exposition for `GET`/`HEAD /metrics` (hyper leaves out the
/// body of a `HEAD` answer); for `/ready`, 200 once the daemon has collected (see
/// [`Metrics::set_ready`]) and 503 before, so that a readiness probe waits for the first
/// sweep; 404 for other paths, 405 for other methods.
fn respond(request: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if path != "/metrics" && path != "/ready" {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if path == "/ready" {
        return if metrics.is_ready() {
            text(StatusCode::OK, "ready\n")
        } else {
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: no sweep has completed yet\n",
            )
        };
    }
    let mut response = Response::new(Full::new(Bytes::from(metrics.render())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(EXPOSITION_TYPE));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::serve;
    use crate::http::{HEAD_GRACE, MAX_CONNECTIONS, MAX_PER_PEER};
    use crate::metrics::{Metrics, MetricsError};
    use crate::test_net::connect_from;
    use crate::test_runtime::handle as rt;

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
        let server = serve("127.0.0.1:0", Arc::clone(&m), rt()).unwrap();
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
        let server = serve("127.0.0.1:0", metrics(), rt()).unwrap();
        let response = get(server.local_addr(), "/metrics?x=1");
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        let head = exchange(server.local_addr(), "HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
    }

    #[test]
    fn other_paths_and_methods() {
        let server = serve("127.0.0.1:0", metrics(), rt()).unwrap();
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
    fn ready_answers_503_until_the_daemon_has_collected() {
        let m = metrics();
        let server = serve("127.0.0.1:0", Arc::clone(&m), rt()).unwrap();
        let before = get(server.local_addr(), "/ready");
        assert!(
            before.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{before}"
        );
        assert!(before.ends_with("\r\n\r\nnot ready: no sweep has completed yet\n"));
        m.set_ready();
        let after = get(server.local_addr(), "/ready");
        assert!(after.starts_with("HTTP/1.1 200 OK\r\n"), "{after}");
        assert!(after.ends_with("\r\n\r\nready\n"), "{after}");
        let head = exchange(server.local_addr(), "HEAD /ready HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        let post = exchange(
            server.local_addr(),
            "POST /ready HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    }

    #[test]
    fn wildcard_port_zero_serves_ipv4_and_ipv6() {
        let server = serve(":0", metrics(), rt()).unwrap();
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
        match serve("[::1]:0", metrics(), rt()) {
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
        let first = serve("127.0.0.1:0", metrics(), rt()).unwrap();
        let taken = format!("127.0.0.1:{}", first.local_addr().port());
        assert!(matches!(
            serve(&taken, metrics(), rt()),
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
                    serve(bad, metrics(), rt()),
                    Err(MetricsError::InvalidListenAddress { .. })
                ),
                "{bad}"
            );
        }
    }

    /// The value of `tcpinfo_http_connections_dropped_total{server="metrics",reason}`.
    fn dropped(m: &Metrics, reason: &str) -> u64 {
        let line = format!(
            "tcpinfo_http_connections_dropped_total{{reason=\"{reason}\",server=\"metrics\"}} "
        );
        let rendered = m.render();
        let value = rendered
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line:?} in the exposition"));
        value.parse().unwrap()
    }

    #[test]
    fn slow_clients_do_not_block_scrapes() {
        let m = metrics();
        let server = serve("127.0.0.1:0", Arc::clone(&m), rt()).unwrap();
        let addr = server.local_addr();
        assert_eq!(dropped(&m, "evicted_waiting"), 0);
        // More clients than slots connect from the scraper's own address, send half a
        // request, then stall...
        let n = MAX_CONNECTIONS + 4;
        let stalled: Vec<TcpStream> = (0..n)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET /metr").unwrap();
                s
            })
            .collect();
        // ...but a scrape still gets its answer promptly, from another address, and from theirs
        // once they had their head grace: the oldest makes room (counted).
        std::thread::sleep(HEAD_GRACE);
        for from in [[127, 0, 0, 2], [127, 0, 0, 1]] {
            let start = Instant::now();
            let mut stream = connect_from(from, addr);
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{:?}",
                start.elapsed()
            );
        }
        // The stalled clients over their address's share were turned away, or pushed out older
        // ones; the scrape from their address pushed out one.
        assert!(dropped(&m, "evicted_waiting") >= 1);
        assert_eq!(
            dropped(&m, "evicted_waiting") + dropped(&m, "peer_limit"),
            (n - MAX_PER_PEER + 1) as u64
        );
        assert_eq!(dropped(&m, "full"), 0);
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

    /// Whether the server closed `s` (end of file or reset) within `wait`.
    fn closed(s: &mut TcpStream, wait: Duration) -> bool {
        s.set_read_timeout(Some(wait)).unwrap();
        let mut byte = [0u8; 1];
        match s.read(&mut byte) {
            Ok(n) => {
                assert_eq!(n, 0, "an answer to an idle connection");
                true
            }
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }

    #[test]
    fn idle_connections_over_an_address_share_are_closed_not_queued() {
        let m = metrics();
        let server = serve("127.0.0.1:0", Arc::clone(&m), rt()).unwrap();
        let addr = server.local_addr();
        let mut held: Vec<TcpStream> = (0..MAX_CONNECTIONS)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        // One address keeps MAX_PER_PEER idle connections; the others are closed at once,
        // without an answer.
        let over = (MAX_CONNECTIONS - MAX_PER_PEER) as u64;
        let deadline = Instant::now() + Duration::from_secs(10);
        while dropped(&m, "peer_limit") + dropped(&m, "evicted_waiting") < over {
            assert!(Instant::now() < deadline, "never turned away");
            std::thread::sleep(Duration::from_millis(10));
        }
        let open: Vec<usize> = (0..held.len())
            .filter(|&i| !closed(&mut held[i], Duration::from_millis(200)))
            .collect();
        assert_eq!(open.len(), MAX_PER_PEER, "{open:?}");
        // Once they had their head grace, a newer connection from the address pushes out the
        // oldest of them.
        std::thread::sleep(HEAD_GRACE);
        let evicted = dropped(&m, "evicted_waiting");
        let response = get(addr, "/metrics");
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert_eq!(dropped(&m, "evicted_waiting"), evicted + 1);
        assert!(closed(&mut held[open[0]], Duration::from_secs(5)));
        assert!(!closed(&mut held[open[1]], Duration::from_millis(100)));
        drop(held);
        // Slots free up again once the held connections are gone.
        let response = get(addr, "/metrics");
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    }

    #[test]
    fn drop_stops_the_server() {
        let server = serve("127.0.0.1:0", metrics(), rt()).unwrap();
        let addr = server.local_addr();
        drop(server);
        assert!(TcpStream::connect(addr).is_err());
    }
}
