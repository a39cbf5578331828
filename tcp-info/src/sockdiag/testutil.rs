//! Test helpers: throw-away network namespaces and real TCP connections inside them.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::netns::{in_netns, named_netns_path};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh network namespace with `lo` up, deleted on drop.
pub struct TestNetns {
    name: String,
    path: PathBuf,
}

impl TestNetns {
    /// Creates `tcpinfo-nl-<pid>-<n>`. Without the needed privileges this prints why and returns
    /// `None` (the test then passes vacuously) — except under `CI=true`, where it panics.
    pub fn create() -> Option<Self> {
        let name = format!(
            "tcpinfo-nl-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let created = run("ip", &["netns", "add", &name]);
        if let Err(reason) = created {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: cannot create a network namespace: {reason}"
            );
            eprintln!("skipping: cannot create a network namespace (needs root): {reason}");
            return None;
        }
        let ns = Self {
            path: named_netns_path(&name),
            name,
        };
        if let Err(e) = run("ip", &["-n", &ns.name, "link", "set", "lo", "up"]) {
            panic!("bringing lo up in {}: {e}", ns.name);
        }
        Some(ns)
    }

    /// The namespace file, for `in_netns` and `open_in_netns`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` inside the namespace (sockets it creates live there).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.path, f).unwrap()
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            eprintln!(
                "warning: could not delete network namespace {}: {e}",
                self.name
            );
        }
    }
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Sends `datagram` to the netlink socket with port id `port` of `ns`, from another
/// `NETLINK_SOCK_DIAG` socket of that namespace (user-to-user unicast needs `CAP_NET_ADMIN`):
/// it is queued on the receiver like a kernel reply, so tests can make replies the kernel does
/// not produce on demand (an interrupted dump). The receiver sees sender port id ≠ 0.
pub fn inject(ns: &TestNetns, port: u32, datagram: &[u8]) {
    ns.run(|| {
        let mut sock = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_SOCK_DIAG).unwrap();
        sock.bind_auto().unwrap();
        let sent = sock
            .send_to(datagram, &netlink_sys::SocketAddr::new(port, 0), 0)
            .unwrap();
        assert_eq!(sent, datagram.len());
    });
}

/// One netlink message: header (`kind`, `flags`, `seq`, `pid`) and `payload`, padded.
pub fn message(kind: u16, flags: u16, seq: u32, pid: u32, payload: &[u8]) -> Vec<u8> {
    use crate::wire::netlink::{HEADER_LEN, Header, align};
    let h = Header {
        len: u32::try_from(HEADER_LEN + payload.len()).unwrap(),
        kind,
        flags,
        seq,
        pid,
    };
    let mut v = h.to_bytes().to_vec();
    v.extend_from_slice(payload);
    v.resize(align(v.len()), 0);
    v
}

/// Queues on `diag` a reply flagged `NLM_F_DUMP_INTR` (the kernel's socket tables changed
/// during the dump) carrying the sequence number `diag`'s next request will take, so that its
/// next dump reads it first. Another thread may reserve that number first; the dump then fails
/// with `WrongSeq` instead, and the caller may retry.
pub fn interrupt_next_dump(ns: &TestNetns, diag: &super::DiagSocket) {
    use crate::wire::netlink::{NLM_F_DUMP_INTR, NLM_F_MULTI, SOCK_DIAG_BY_FAMILY};
    let seq = super::request::reserve_seqs(0);
    let reply = message(
        SOCK_DIAG_BY_FAMILY,
        NLM_F_MULTI | NLM_F_DUMP_INTR,
        seq,
        diag.port_id(),
        &[0; 72],
    );
    inject(ns, diag.port_id(), &reply);
}

/// `SO_COOKIE` (include/uapi/asm-generic/socket.h).
const SO_COOKIE: libc::c_int = 57;

/// The kernel's socket cookie of a real socket.
pub fn so_cookie(sock: &impl AsRawFd) -> u64 {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` and `len` are valid for writes of the sizes given, for the call's duration.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    assert_eq!(
        rc,
        0,
        "getsockopt(SO_COOKIE): {}",
        std::io::Error::last_os_error()
    );
    cookie
}

/// (sport, dport) of an `inet_diag_msg` payload: big-endian at bytes 4 and 6.
pub fn diag_ports(p: &[u8]) -> (u16, u16) {
    (
        u16::from_be_bytes([p[4], p[5]]),
        u16::from_be_bytes([p[6], p[7]]),
    )
}

/// The cookie of an `inet_diag_msg` payload: two host-order u32 at 44 and 48, low half first.
pub fn diag_cookie(p: &[u8]) -> u64 {
    let lo = u32::from_ne_bytes([p[44], p[45], p[46], p[47]]);
    let hi = u32::from_ne_bytes([p[48], p[49], p[50], p[51]]);
    u64::from(lo) | (u64::from(hi) << 32)
}

/// The value of attribute `kind` in a payload (attributes start after the 72-byte
/// `inet_diag_msg`: u16 len, u16 type, value, padded to 4).
pub fn diag_attr(p: &[u8], kind: u16) -> Option<&[u8]> {
    let mut rest = p.get(72..)?;
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let ty = u16::from_ne_bytes([rest[2], rest[3]]);
        assert!(len >= 4 && len <= rest.len(), "malformed attribute");
        if ty == kind {
            return Some(&rest[4..len]);
        }
        rest = rest.get(crate::wire::netlink::align(len)..).unwrap_or(&[]);
    }
    None
}

/// `tcpi_bytes_acked`: u64 at offset 120 of the `INET_DIAG_INFO` (type 2) attribute.
pub fn bytes_acked(p: &[u8]) -> u64 {
    let info = diag_attr(p, 2).expect("INET_DIAG_INFO attribute");
    u64::from_ne_bytes(info[120..128].try_into().unwrap())
}

/// One established connection: both ends, with their cookies.
pub struct Conn {
    pub client: TcpStream,
    pub server: TcpStream,
    pub client_cookie: u64,
    pub server_cookie: u64,
}

/// A listener and established connections to it, all inside one namespace.
pub struct ConnSet {
    pub listener: TcpListener,
    pub listener_cookie: u64,
    pub conns: Vec<Conn>,
}

/// Opens a listener on `bind` (e.g. `127.0.0.1:0`) inside `ns` and `n` connections to it.
pub fn connections(ns: &TestNetns, bind: &str, n: usize) -> ConnSet {
    ns.run(|| {
        let listener = TcpListener::bind(bind).unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = (0..n)
            .map(|_| {
                let client = TcpStream::connect(addr).unwrap();
                let (server, _) = listener.accept().unwrap();
                Conn {
                    client_cookie: so_cookie(&client),
                    server_cookie: so_cookie(&server),
                    client,
                    server,
                }
            })
            .collect();
        ConnSet {
            listener_cookie: so_cookie(&listener),
            listener,
            conns,
        }
    })
}

impl ConnSet {
    /// What a dump of this set's family must return: (state, sport, dport, cookie) of the
    /// listener (LISTEN = 10, no remote port) and of both ends of every connection (ESTABLISHED).
    pub fn expected_dump_entries(&self) -> BTreeSet<(u8, u16, u16, u64)> {
        let port = self.listener.local_addr().unwrap().port();
        let mut set = BTreeSet::from([(10, port, 0, self.listener_cookie)]);
        for c in &self.conns {
            let local = c.client.local_addr().unwrap().port();
            set.insert((1, local, port, c.client_cookie));
            set.insert((1, port, local, c.server_cookie));
        }
        set
    }
}
