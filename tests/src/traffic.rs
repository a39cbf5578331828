//! Small blocking-socket helpers for the tests' traffic.

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};

use anyhow::{Context as _, Result};

use crate::sockets::socket_cookie;

/// Accepts one connection; returns it with its cookie and the peer address.
pub fn accept(listener: &TcpListener) -> Result<(TcpStream, u64, SocketAddr)> {
    let (stream, peer) = listener.accept().context("accept")?;
    let cookie = socket_cookie(&stream)?;
    Ok((stream, cookie, peer))
}

/// Reads until end of stream; returns the number of bytes read.
pub fn drain(stream: &mut TcpStream) -> Result<usize> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = stream.read(&mut buf).context("read")?;
        if n == 0 {
            return Ok(total);
        }
        total += n;
    }
}
