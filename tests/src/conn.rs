//! A held connection between the test's two namespaces: both ends, the cookie the daemon keys
//! it by, and exchanges that change its counters on demand.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tcp_info::tcpinfo::TcpInfo;

use crate::Setup;

/// A connection from the client namespace to a listener of the server namespace (where the
/// daemon runs), accepted, with 10 s timeouts on both ends so a stuck test fails instead of
/// hanging.
#[derive(Debug)]
pub struct Conn {
    /// The client end.
    pub client: TcpStream,
    /// The server end: the socket the daemon records.
    pub server: TcpStream,
    /// The server end's cookie.
    pub cookie: u64,
}

impl Conn {
    /// Connects to `listener` and makes one 100-byte exchange, so the connection has counters
    /// the daemon's first record of it shows.
    pub fn open(setup: &Setup, listener: &TcpListener) -> Result<Self> {
        let (client, server, cookie) = setup.connected(listener)?;
        for s in [&client, &server] {
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.set_write_timeout(Some(Duration::from_secs(10)))?;
        }
        let mut conn = Self {
            client,
            server,
            cookie,
        };
        conn.exchange(100)?;
        Ok(conn)
    }

    /// A request and its answer of `len` bytes each: the server end's counters change, so the
    /// daemon takes a record of it at its next poll (or mark).
    pub fn exchange(&mut self, len: usize) -> Result<()> {
        let mut buf = vec![0; len];
        self.client.write_all(&buf)?;
        self.server.read_exact(&mut buf)?;
        self.server.write_all(&buf)?;
        self.client.read_exact(&mut buf)?;
        Ok(())
    }

    /// The server end's `(bytes_acked, bytes_received)` now, as the kernel counts them.
    pub fn counters(&self) -> Result<(u64, u64)> {
        let info = tcp_info_of(&self.server)?;
        Ok((info.bytes_acked, info.bytes_received))
    }
}

/// `getsockopt(TCP_INFO)`, decoded as the daemon decodes the kernel's `tcp_info`.
pub fn tcp_info_of(stream: &TcpStream) -> Result<TcpInfo> {
    let mut buf = [0u8; 512];
    let mut len = libc::socklen_t::try_from(buf.len())?;
    // SAFETY: TCP_INFO writes at most `len` bytes into `buf`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("getsockopt(TCP_INFO)");
    }
    Ok(TcpInfo::decode(&buf[..usize::try_from(len)?]))
}
