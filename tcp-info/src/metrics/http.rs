//! One metrics HTTP exchange: read a request head (bounded in size and time), route it, write
//! the response, close. Only `GET`/`HEAD /metrics` are served.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use super::Metrics;
use super::exposition::CONTENT_TYPE;

/// Longest wait for one read or write.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest time a client may take to send its whole request head.
const HEAD_DEADLINE: Duration = Duration::from_secs(15);
/// Largest request head accepted.
const MAX_HEAD: usize = 8 * 1024;

/// Reads one request head and answers it.
pub(super) fn serve_connection(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let Some(head) = read_head(&mut stream)? else {
        return Ok(());
    };
    let response = match head {
        Head::TooLarge => Response::text(
            431,
            "Request Header Fields Too Large",
            "request head too large\n",
        ),
        Head::Complete(bytes) => respond(&bytes, metrics),
    };
    response.write_to(&mut stream)?;
    stream.flush()?;
    // Half-close so the client sees the end of the response before the socket goes away.
    stream.shutdown(Shutdown::Write)
}

enum Head {
    Complete(Vec<u8>),
    TooLarge,
}

/// Reads until the blank line ending the request head. `None` if the client closed first.
fn read_head(stream: &mut TcpStream) -> io::Result<Option<Head>> {
    let deadline = Instant::now() + HEAD_DEADLINE;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find_head_end(&head) {
            head.truncate(end);
            return Ok(Some(Head::Complete(head)));
        }
        if head.len() > MAX_HEAD {
            return Ok(Some(Head::TooLarge));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not received in time",
            ));
        }
        stream.set_read_timeout(Some(remaining.min(IO_TIMEOUT)))?;
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..n]);
    }
}

/// Position just past the `\r\n\r\n` (or bare `\n\n`) that ends a request head.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Chooses the response to a complete request head.
fn respond(head: &[u8], metrics: &Metrics) -> Response {
    let Some(line) = head
        .split(|&b| b == b'\n')
        .next()
        .and_then(|line| std::str::from_utf8(line).ok())
    else {
        return Response::text(400, "Bad Request", "malformed request\n");
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::text(400, "Bad Request", "malformed request line\n");
    };
    if !version.starts_with("HTTP/1.") {
        return Response::text(400, "Bad Request", "unsupported HTTP version\n");
    }
    if request_path(target) != "/metrics" {
        return Response::text(404, "Not Found", "404 page not found\n");
    }
    match method {
        "GET" => Response::metrics(metrics.render(), true),
        "HEAD" => Response::metrics(metrics.render(), false),
        _ => {
            let mut response = Response::text(405, "Method Not Allowed", "method not allowed\n");
            response.allow = true;
            response
        }
    }
}

/// The path of a request target, without query or fragment; an absolute URI loses its scheme
/// and authority.
fn request_path(target: &str) -> &str {
    let path = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let end = path.find(['?', '#']).unwrap_or(path.len());
    &path[..end]
}

struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    send_body: bool,
    allow: bool,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: &str) -> Self {
        Self {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
            send_body: true,
            allow: false,
        }
    }

    fn metrics(body: String, send_body: bool) -> Self {
        Self {
            status: 200,
            reason: "OK",
            content_type: CONTENT_TYPE,
            body,
            send_body,
            allow: false,
        }
    }

    fn write_to(&self, stream: &mut TcpStream) -> io::Result<()> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        if self.allow {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        out.push_str("\r\n");
        if self.send_body {
            out.push_str(&self.body);
        }
        stream.write_all(out.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::request_path;

    #[test]
    fn request_paths() {
        assert_eq!(request_path("/metrics"), "/metrics");
        assert_eq!(request_path("/metrics?a=b"), "/metrics");
        assert_eq!(request_path("/metrics#x"), "/metrics");
        assert_eq!(request_path("http://host:9990/metrics"), "/metrics");
        assert_eq!(request_path("http://host"), "/");
    }
}
