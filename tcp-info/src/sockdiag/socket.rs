//! Opening and configuring `NETLINK_SOCK_DIAG` sockets, and the receive primitive shared by the
//! diag and destroy sockets.

use std::io;
use std::os::fd::AsFd;

use netlink_sys::{Socket, protocols::NETLINK_SOCK_DIAG};
use nix::sys::socket::{setsockopt, sockopt};

use super::SockDiagError;

/// Size of the user-space receive buffer: a dump datagram is at most 32 KiB (the kernel caps its
/// dump allocation there), and upstream reads with 64 KiB (SPEC §3.1).
pub(crate) const RECV_BUF_LEN: usize = 64 * 1024;

/// The receive-buffer size a socket ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RcvBuf {
    /// The size asked for (the value passed to `SO_RCVBUF[FORCE]`).
    pub requested: usize,
    /// What `getsockopt(SO_RCVBUF)` reports afterwards: the kernel doubles the requested value
    /// for bookkeeping, and without `CAP_NET_ADMIN` caps the request at `net.core.rmem_max`.
    pub effective: usize,
    /// Whether `SO_RCVBUFFORCE` was accepted (otherwise plain `SO_RCVBUF` was used).
    pub forced: bool,
}

/// Opens a `NETLINK_SOCK_DIAG` socket in the calling thread's network namespace, binds it to a
/// kernel-assigned port id and sizes its receive buffer. Returns the socket, its port id and the
/// buffer size obtained.
pub(crate) fn open(rcvbuf: usize) -> Result<(Socket, u32, RcvBuf), SockDiagError> {
    let mut sock = Socket::new(NETLINK_SOCK_DIAG).map_err(SockDiagError::Open)?;
    let addr = sock.bind_auto().map_err(SockDiagError::Bind)?;
    let rcv = size_rcvbuf(&sock, rcvbuf)?;
    Ok((sock, addr.port_number(), rcv))
}

/// Sets the receive buffer: `SO_RCVBUFFORCE` first (bypasses `net.core.rmem_max`, needs
/// `CAP_NET_ADMIN`), then `SO_RCVBUF` when that is refused.
fn size_rcvbuf(sock: &Socket, requested: usize) -> Result<RcvBuf, SockDiagError> {
    let forced = match setsockopt(sock, sockopt::RcvBufForce, &requested) {
        Ok(()) => true,
        Err(force_err) => {
            tracing::debug!(
                requested,
                error = %force_err,
                "SO_RCVBUFFORCE refused; falling back to SO_RCVBUF (capped at net.core.rmem_max)"
            );
            setsockopt(sock, sockopt::RcvBuf, &requested).map_err(|e| SockDiagError::RcvBuf {
                requested,
                source: e.into(),
            })?;
            false
        }
    };
    let effective = sock
        .get_rx_buf_sz()
        .map_err(|source| SockDiagError::RcvBuf { requested, source })?;
    Ok(RcvBuf {
        requested,
        effective,
        forced,
    })
}

/// Reads the socket's send-buffer size (`SO_SNDBUF`, as the kernel accounts it).
pub(crate) fn sndbuf(sock: &impl AsFd) -> io::Result<usize> {
    nix::sys::socket::getsockopt(sock, sockopt::SndBuf).map_err(io::Error::from)
}

/// `SK_MEMINFO_DROPS` (`include/uapi/linux/sock_diag.h`): the index of the drop count in the
/// array `SO_MEMINFO` returns.
const SK_MEMINFO_DROPS: usize = 8;
/// `SK_MEMINFO_VARS`: the length of that array.
const SK_MEMINFO_VARS: usize = 9;

/// The messages the kernel dropped for this socket since it was opened (`sk_drops`, read with
/// `SO_MEMINFO`; a 32-bit count that wraps): for a netlink socket, one per message it could not
/// queue because the receive buffer was full or the socket congested.
pub(crate) fn drops(sock: &impl AsFd) -> io::Result<u32> {
    let mut info = [0_u32; SK_MEMINFO_VARS];
    let mut len = libc::socklen_t::try_from(std::mem::size_of_val(&info))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: SO_MEMINFO writes at most `len` bytes into `info`, which is that large, and
    // updates `len`; both outlive the call.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock.as_fd()),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info[SK_MEMINFO_DROPS])
}

/// Receives one datagram into `buf`, retrying on `EINTR` (no data is consumed by an interrupted
/// call). `MSG_TRUNC` is always added, so the returned length is the datagram's real length and a
/// value larger than `buf.len()` means the datagram was truncated.
pub(crate) fn recv(sock: &Socket, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    loop {
        match sock.recv(&mut &mut buf[..], flags | libc::MSG_TRUNC) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Like [`recv`], but also returns the sender's port id (0 for the kernel).
pub(crate) fn recv_from(
    sock: &Socket,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<(usize, u32)> {
    loop {
        match sock.recv_from(&mut &mut buf[..], flags | libc::MSG_TRUNC) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
            Ok((n, addr)) => return Ok((n, addr.port_number())),
        }
    }
}

/// What one non-blocking receive produced.
pub(crate) enum Drained {
    /// A whole datagram of `len` bytes from port id `sender` (0 for the kernel).
    Datagram { len: usize, sender: u32 },
    /// Nothing is queued (`EAGAIN`).
    Empty,
    /// The receive queue overflowed (`ENOBUFS`): the kernel dropped messages.
    Overrun,
}

/// One non-blocking receive into `buf`, with the errors the draining loops all handle alike
/// classified. A datagram larger than `buf` is an error: its tail is lost.
pub(crate) fn recv_nonblocking(sock: &Socket, buf: &mut [u8]) -> Result<Drained, SockDiagError> {
    match recv_from(sock, buf, libc::MSG_DONTWAIT) {
        Ok((len, _)) if len > buf.len() => Err(SockDiagError::Truncated {
            len,
            capacity: buf.len(),
        }),
        Ok((len, sender)) => Ok(Drained::Datagram { len, sender }),
        Err(e) if is_would_block(&e) => Ok(Drained::Empty),
        Err(e) if is_enobufs(&e) => Ok(Drained::Overrun),
        Err(e) => Err(SockDiagError::Recv(e)),
    }
}

/// Whether `e` is the receive-queue overrun error.
pub(crate) fn is_enobufs(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOBUFS)
}

/// Whether `e` means "nothing to read right now" on a non-blocking receive.
pub(crate) fn is_would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}
