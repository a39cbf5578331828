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

/// A TCP connection to `to` from the local address `from`, made in the calling thread's
/// network namespace (loopback accepts any 127/8 source, so one test can be several hosts).
/// The port is chosen at connect time (`IP_BIND_ADDRESS_NO_PORT`), so that connection storms
/// may reuse ports left in TIME_WAIT. Connecting gives up after 5 s (`SO_SNDTIMEO`).
/// `rcvbuf` sets the receive buffer first: a small one makes a client that never reads stall
/// its server at once.
pub fn connect_from(
    from: std::net::Ipv4Addr,
    to: std::net::SocketAddrV4,
    rcvbuf: Option<usize>,
) -> Result<TcpStream> {
    use std::os::fd::{FromRawFd as _, OwnedFd};

    fn sockaddr(addr: std::net::SocketAddrV4) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: addr.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*addr.ip()).to_be(),
            },
            sin_zero: [0; 8],
        }
    }
    fn check(rc: libc::c_int, what: &str) -> Result<()> {
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context(what.to_owned());
        }
        Ok(())
    }
    fn set<T>(fd: libc::c_int, level: libc::c_int, name: libc::c_int, value: &T) -> libc::c_int {
        // SAFETY: `value` points to a live `T` of the size passed.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                std::ptr::from_ref(value).cast(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        }
    }

    // SAFETY: socket has no memory preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(AF_INET, SOCK_STREAM)");
    }
    // SAFETY: `fd` is a socket just created and owned by nobody else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    check(
        set(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, &one),
        "IP_BIND_ADDRESS_NO_PORT",
    )?;
    let timeout = libc::timeval {
        tv_sec: 5,
        tv_usec: 0,
    };
    check(
        set(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO, &timeout),
        "SO_SNDTIMEO",
    )?;
    if let Some(size) = rcvbuf {
        let size = libc::c_int::try_from(size).context("receive buffer size")?;
        check(
            set(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &size),
            "SO_RCVBUF",
        )?;
    }
    let local = sockaddr(std::net::SocketAddrV4::new(from, 0));
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `local` is a valid sockaddr_in of `len` bytes.
    let rc = unsafe { libc::bind(fd, std::ptr::from_ref(&local).cast(), len) };
    check(rc, &format!("binding to {from}"))?;
    let remote = sockaddr(to);
    // SAFETY: `remote` is a valid sockaddr_in of `len` bytes.
    let rc = unsafe { libc::connect(fd, std::ptr::from_ref(&remote).cast(), len) };
    check(rc, &format!("connecting from {from} to {to}"))?;
    Ok(TcpStream::from(socket))
}

/// Makes closing `stream` reset the connection (`SO_LINGER` 0) instead of ending it.
pub fn set_linger_zero(stream: &TcpStream) -> Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket with a valid `linger` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("SO_LINGER 0");
    }
    Ok(())
}
