//! Two throw-away network namespaces joined by a veth pair: the daemon and the server sockets
//! live in the "server" namespace, clients in the "client" one, so the daemon sees exactly the
//! sockets a test makes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context as _, Result, bail};
use tcp_info::sockdiag::{in_netns, named_netns_path};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A pair of namespaces `ti<pid>s<n>` / `ti<pid>c<n>` joined by veths of the same names, with
/// `10.<pid>.<n>.1/30` on the server side and `.2` on the client side. Deleted on drop.
#[derive(Debug)]
pub struct NetPair {
    server: String,
    client: String,
    server_ip: Ipv4Addr,
    client_ip: Ipv4Addr,
}

impl NetPair {
    /// Creates the pair. Without privileges this prints why and returns `None` (the caller then
    /// skips) — except under `CI=true`, where it panics so that the test fails.
    pub fn create() -> Option<Self> {
        if !crate::privileged("create network namespaces") {
            return None;
        }
        match Self::try_create() {
            Ok(pair) => Some(pair),
            Err(e) => panic!("cannot set up the test network namespaces: {e:#}"),
        }
    }

    fn try_create() -> Result<Self> {
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Namespaces of different pairs never share a link, so the addresses only need to be
        // distinct within one pair; they still carry the pid and counter to ease debugging.
        let [_, _, p1, p0] = (pid & 0xFFFF).to_be_bytes();
        let base = (n % 64) as u8 * 4;
        let pair = Self {
            server: format!("ti{pid}s{n}"),
            client: format!("ti{pid}c{n}"),
            server_ip: Ipv4Addr::new(10, p1 ^ p0, p0, base + 1),
            client_ip: Ipv4Addr::new(10, p1 ^ p0, p0, base + 2),
        };
        // Drop deletes whatever was created if a later step fails.
        run("ip", &["netns", "add", &pair.server])?;
        run("ip", &["netns", "add", &pair.client])?;
        let (s, c) = (pair.server.as_str(), pair.client.as_str());
        run(
            "ip",
            &[
                "link", "add", s, "netns", s, "type", "veth", "peer", "name", c, "netns", c,
            ],
        )?;
        for (ns, dev, ip) in [(s, s, pair.server_ip), (c, c, pair.client_ip)] {
            run(
                "ip",
                &["-n", ns, "addr", "add", &format!("{ip}/30"), "dev", dev],
            )?;
            run("ip", &["-n", ns, "link", "set", dev, "up"])?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(pair)
    }

    /// Name of the server (daemon) namespace, for `ip netns exec`.
    pub fn server_ns(&self) -> &str {
        &self.server
    }

    /// Name of the client namespace.
    pub fn client_ns(&self) -> &str {
        &self.client
    }

    /// The server side's address.
    pub fn server_ip(&self) -> Ipv4Addr {
        self.server_ip
    }

    /// The client side's address.
    pub fn client_ip(&self) -> Ipv4Addr {
        self.client_ip
    }

    /// Path of the server namespace file.
    pub fn server_path(&self) -> PathBuf {
        named_netns_path(&self.server)
    }

    /// Path of the client namespace file.
    pub fn client_path(&self) -> PathBuf {
        named_netns_path(&self.client)
    }

    /// Runs `f` on a thread inside the server namespace.
    pub fn in_server<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        in_ns(&self.server_path(), f)
    }

    /// Runs `f` on a thread inside the client namespace.
    pub fn in_client<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        in_ns(&self.client_path(), f)
    }

    /// A listener on the server address with a kernel-chosen port, inside the server namespace.
    pub fn listen(&self) -> Result<TcpListener> {
        let addr = SocketAddr::new(IpAddr::V4(self.server_ip), 0);
        self.in_server(|| TcpListener::bind(addr))?
            .with_context(|| format!("binding a listener on {addr} in {}", self.server))
    }

    /// A connection from the client namespace to `port` on the server address.
    pub fn connect(&self, port: u16) -> Result<TcpStream> {
        let addr = SocketAddr::new(IpAddr::V4(self.server_ip), port);
        self.in_client(|| TcpStream::connect(addr))?
            .with_context(|| format!("connecting to {addr} from {}", self.client))
    }

    /// Runs `ip netns exec <server ns> <cmd> <args>` and returns its standard output.
    pub fn exec_in_server(&self, cmd: &str, args: &[&str]) -> Result<String> {
        let mut full = vec!["netns", "exec", &self.server, cmd];
        full.extend_from_slice(args);
        run("ip", &full)
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        // Deleting a namespace removes its veth end, and with it the peer.
        for ns in [&self.server, &self.client] {
            if let Err(e) = run("ip", &["netns", "del", ns]) {
                eprintln!("warning: could not delete network namespace {ns}: {e:#}");
            }
        }
    }
}

fn in_ns<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<T> {
    in_netns(path, f).with_context(|| format!("entering {}", path.display()))
}

/// Runs a command and returns its standard output; a failure carries its standard error.
pub fn run(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
