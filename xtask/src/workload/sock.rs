//! Socket helpers: binding clients to chosen addresses, reading the socket cookie and the
//! kernel's byte counters, and the close handshake that makes the ground truth exact.
//!
//! Close protocol (every connection class): the client sends FIN first (`shutdown(Write)`) and
//! then reads to EOF; the server reads to EOF, sends its FIN, and keeps the descriptor open until
//! the kernel reports `TCP_CLOSE` (its FIN was acked). At that moment the socket's `tcp_info`
//! holds its final counters; the server reads them with `TCP_INFO` and only then closes. Those
//! are the counters a collector's last record must match (each side's FIN counts one byte in
//! `bytes_acked` / `bytes_received`).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// `TCP_CLOSE` in `tcp_info.tcpi_state`.
pub const TCP_CLOSE: u8 = 7;
/// `TCP_ESTABLISHED`.
pub const TCP_ESTABLISHED: u8 = 1;

/// A listening socket on `addr` with a deep backlog.
pub fn listen(addr: SocketAddrV4, backlog: i32) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::V4(addr).into())?;
    s.listen(backlog)?;
    Ok(s.into())
}

/// A blocking connection from `local` (any port) to `remote`.
pub fn connect_from(
    local: Ipv4Addr,
    remote: SocketAddrV4,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    // Let connect() pick the port for the full 4-tuple instead of reserving one per address.
    set_bind_address_no_port(&s)?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(local, 0)).into())?;
    s.connect_timeout(&SocketAddr::V4(remote).into(), timeout)?;
    Ok(s.into())
}

/// Sets `IP_BIND_ADDRESS_NO_PORT`.
fn set_bind_address_no_port(s: &Socket) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `one` is a valid c_int and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const one).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The IPv4 socket address of a peer or local end.
pub fn v4(addr: SocketAddr) -> io::Result<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(a) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected an IPv4 address, got {a}"),
        )),
    }
}

/// The kernel's socket cookie (`SO_COOKIE`), the key of a connection in the archives.
pub fn cookie(s: &impl AsFd) -> io::Result<u64> {
    let mut value: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: `value` is a valid, writable u64 and `len` holds its size; the kernel writes at
    // most `len` bytes and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            s.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// The fields of `struct tcp_info` the benchmark needs (offsets per SPEC §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelCounters {
    /// `tcpi_state`.
    pub state: u8,
    /// `tcpi_bytes_acked`.
    pub bytes_acked: u64,
    /// `tcpi_bytes_received`.
    pub bytes_received: u64,
}

/// Reads `TCP_INFO` of a socket.
pub fn tcp_info(s: &impl AsFd) -> io::Result<KernelCounters> {
    let mut buf = [0u8; 512];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is writable for `len` bytes; the kernel writes at most `len` and updates it.
    let rc = unsafe {
        libc::getsockopt(
            s.as_fd().as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < 136 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("TCP_INFO returned {len} bytes; this kernel predates tcpi_bytes_received"),
        ));
    }
    let u64_at = |off: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[off..off + 8]);
        u64::from_ne_bytes(b)
    };
    Ok(KernelCounters {
        state: buf[0],
        bytes_acked: u64_at(120),
        bytes_received: u64_at(128),
    })
}

/// Waits until the socket reaches `TCP_CLOSE` and returns its counters at that point.
pub fn wait_closed(s: &impl AsFd, timeout: Duration) -> io::Result<KernelCounters> {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let k = tcp_info(s)?;
        if k.state == TCP_CLOSE {
            return Ok(k);
        }
        if start.elapsed() > timeout {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("socket still in TCP state {} after {timeout:?}", k.state),
            ));
        }
        // The peer's ACK is normally tens of microseconds away: spin briefly, then back off.
        spins += 1;
        if spins < 50 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// Reads until EOF, returning the byte count; fails when no EOF arrives within `timeout`.
pub fn read_to_eof(s: &mut TcpStream, timeout: Duration) -> io::Result<u64> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no EOF from peer"));
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes `n` bytes of filler.
pub fn write_filler(s: &mut TcpStream, mut n: u64) -> io::Result<()> {
    let buf = [b'x'; 16 * 1024];
    while n > 0 {
        let k = n.min(buf.len() as u64) as usize;
        s.write_all(&buf[..k])?;
        n -= k as u64;
    }
    Ok(())
}

/// Server half of the close protocol, after the server has read EOF and sent everything:
/// send FIN, wait for `TCP_CLOSE`, return the final counters. The caller closes afterwards.
pub fn server_finish(s: &TcpStream, timeout: Duration) -> io::Result<KernelCounters> {
    s.shutdown(std::net::Shutdown::Write)?;
    wait_closed(s, timeout)
}

/// Waits until `fd` is readable (e.g. a listener has a pending connection); `false` on timeout.
pub fn wait_readable(fd: &impl AsFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `pfd` is one valid pollfd and the count is 1.
    let rc = unsafe { libc::poll(&raw mut pfd, 1, ms) };
    match rc {
        -1 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
        0 => Ok(false),
        _ => Ok(true),
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
    Ok(hard)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On loopback in the test's own namespace: the close protocol yields counters equal to the
    /// application bytes plus one for each FIN, and the cookie is stable and non-zero.
    #[test]
    fn close_protocol_final_counters_on_loopback() {
        let l = listen(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), 8).unwrap();
        let addr = v4(l.local_addr().unwrap()).unwrap();
        let mut c = connect_from(Ipv4Addr::LOCALHOST, addr, Duration::from_secs(2)).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let ck = cookie(&s).unwrap();
        assert_ne!(ck, 0);
        assert_eq!(ck, cookie(&s).unwrap());
        assert_ne!(ck, cookie(&c).unwrap());
        assert_eq!(tcp_info(&s).unwrap().state, TCP_ESTABLISHED);

        write_filler(&mut c, 1234).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_to_eof(&mut s, Duration::from_secs(2)).unwrap(), 1234);
        let client = std::thread::spawn(move || {
            let n = read_to_eof(&mut c, Duration::from_secs(2)).unwrap();
            drop(c);
            n
        });
        write_filler(&mut s, 70_000).unwrap();
        let k = server_finish(&s, Duration::from_secs(2)).unwrap();
        assert_eq!(client.join().unwrap(), 70_000);
        assert_eq!(k.state, TCP_CLOSE);
        assert_eq!(k.bytes_acked, 70_001);
        assert_eq!(k.bytes_received, 1235);
    }
}
