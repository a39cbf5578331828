//! Loopback clients for unit tests of the edges (metrics endpoint, query API): connections
//! from a chosen 127/8 address, which the servers' per-peer admission sees as another host.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

/// How long [`bound_socket`] waits for a free port.
const PORT_WAIT: Duration = Duration::from_secs(10);

/// A TCP socket bound to the loopback address `from` (loopback accepts any 127/8 source) on a
/// port the kernel picks, with `configure` applied before the bind; an error when no port is
/// free.
pub(crate) fn try_bound_socket(
    from: [u8; 4],
    configure: impl Fn(&Socket),
) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    configure(&socket);
    socket.bind(&SocketAddr::from((from, 0)).into())?;
    Ok(socket)
}

/// [`try_bound_socket`] that waits for a free port.
///
/// Tests run in parallel, and a connection storm in one (`a_connect_flood_does_not_delay_scrapes`)
/// leaves thousands of ports of its own address in TIME_WAIT: a bind to that address then
/// fails with `AddrInUse` for a moment, which is not the server's doing, so it is retried.
pub(crate) fn bound_socket(from: [u8; 4], configure: impl Fn(&Socket)) -> Socket {
    let start = Instant::now();
    loop {
        match try_bound_socket(from, &configure) {
            Ok(socket) => return socket,
            Err(e) if e.kind() == ErrorKind::AddrInUse && start.elapsed() < PORT_WAIT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("binding a client to {from:?}: {e}"),
        }
    }
}

/// A connection to `to` from the loopback address `from`.
pub(crate) fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = bound_socket(from, |_| {});
    socket
        .connect(&to.into())
        .unwrap_or_else(|e| panic!("connecting from {from:?} to {to}: {e}"));
    socket.into()
}
