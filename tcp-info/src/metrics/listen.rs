//! The metrics listener: `[host]:port` (parsed by [`ListenAddress`], the same grammar the
//! `-prometheusx.listen-address` flag is validated with) to a bound, listening `TcpListener`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

use super::ListenAddress;
use super::MetricsError;

/// Listen backlog.
const BACKLOG: i32 = 128;

/// Where to listen, from `host:port`.
#[derive(Debug)]
pub(super) enum ListenTarget {
    /// Empty host: every interface.
    Wildcard(u16),
    /// Literal or resolved addresses, tried in order.
    Addresses(Vec<SocketAddr>),
}

pub(super) fn parse_listen(listen: &str) -> Result<ListenTarget, MetricsError> {
    let address: ListenAddress =
        listen
            .parse()
            .map_err(|reason| MetricsError::InvalidListenAddress {
                addr: listen.to_owned(),
                reason,
            })?;
    if address.host().is_empty() {
        return Ok(ListenTarget::Wildcard(address.port()));
    }
    let resolved = address
        .socket_addrs()
        .map_err(|source| MetricsError::Resolve {
            addr: listen.to_owned(),
            source,
        })?;
    if resolved.is_empty() {
        return Err(MetricsError::InvalidListenAddress {
            addr: listen.to_owned(),
            reason: "the host name has no addresses".to_owned(),
        });
    }
    Ok(ListenTarget::Addresses(resolved))
}

/// Binds and listens on `listen` (Go's `net.Listen("tcp", listen)`).
pub(super) fn bind(listen: &str) -> Result<TcpListener, MetricsError> {
    let bind_error = |source| MetricsError::Bind {
        addr: listen.to_owned(),
        source,
    };
    match parse_listen(listen)? {
        ListenTarget::Wildcard(port) => {
            // Like Go: one dual-stack IPv6 socket, or IPv4 only where IPv6 is unavailable.
            let any6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
            match bind_one(any6) {
                Ok(listener) => Ok(listener),
                Err(e) if ipv6_unavailable(&e) => {
                    let any4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
                    bind_one(any4).map_err(bind_error)
                }
                Err(e) => Err(bind_error(e)),
            }
        }
        ListenTarget::Addresses(addrs) => {
            let mut last = None;
            for addr in addrs {
                match bind_one(addr) {
                    Ok(listener) => return Ok(listener),
                    Err(e) => last = Some(e),
                }
            }
            Err(bind_error(last.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::AddrNotAvailable, "no address to bind")
            })))
        }
    }
}

fn ipv6_unavailable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT | libc::EADDRNOTAVAIL)
    )
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As Go does, so a restarted daemon can bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::{ListenTarget, parse_listen};

    #[test]
    fn listen_address_forms() {
        assert!(matches!(
            parse_listen(":9990"),
            Ok(ListenTarget::Wildcard(9990))
        ));
        assert!(matches!(
            parse_listen("[]:0"),
            Ok(ListenTarget::Wildcard(0))
        ));
        let Ok(ListenTarget::Addresses(a)) = parse_listen("127.0.0.1:1234") else {
            panic!("literal v4");
        };
        assert_eq!(a, vec!["127.0.0.1:1234".parse().unwrap()]);
        let Ok(ListenTarget::Addresses(a)) = parse_listen("[::1]:0") else {
            panic!("literal v6");
        };
        assert_eq!(a, vec!["[::1]:0".parse().unwrap()]);
        let Ok(ListenTarget::Addresses(a)) = parse_listen("localhost:80") else {
            panic!("host name");
        };
        assert!(
            a.iter()
                .all(|addr| addr.ip().is_loopback() && addr.port() == 80)
        );
    }
}
