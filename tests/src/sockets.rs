//! Socket helpers: the kernel cookie of a socket, and a plain HTTP GET from inside a namespace.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::netns::NetPair;

/// `getsockopt(SO_COOKIE)`: the cookie the daemon keys the connection by (SPEC §5.2).
pub fn socket_cookie(socket: &impl AsRawFd) -> Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: SO_COOKIE writes one u64 into a buffer of that size.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            std::ptr::from_mut(&mut cookie).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("getsockopt(SO_COOKIE)");
    }
    Ok(cookie)
}

/// The UUID of a connection: `<prefix>_<%016X cookie>`.
pub fn uuid(prefix: &str, cookie: u64) -> String {
    format!("{prefix}_{cookie:016X}")
}

/// An HTTP/1.0 GET of `path` on `addr`, connecting from inside the server namespace. Returns
/// the status code and the body.
pub fn http_get(net: &NetPair, addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = net
        .in_server(|| TcpStream::connect_timeout(&addr, Duration::from_secs(5)))?
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("reading the response of GET {path}"))?;
    let text = String::from_utf8(response).context("the response is not UTF-8")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in {text:?}"))?;
    let status_line = head.lines().next().unwrap_or_default();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!("chunked response to an HTTP/1.0 request: {head}");
    }
    Ok((code, body.to_owned()))
}
