//! The two network namespaces and the veth pair the workload runs on.
//!
//! Everything lives inside namespaces this module creates: the veth pair is created directly in
//! them (it never appears in the host namespace), so addresses and interface names cannot clash
//! with the host or with concurrent runs. Namespace names carry the pid and a counter
//! ([`unique_base`]); a `Drop` guard ([`Owned`]) deletes them, and [`cleanup_stale`] removes
//! those left behind by killed runs. The namespace axis's pod namespaces (`pods`) follow the
//! same rules.

use std::fmt::Write as _;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context as _, bail};
use nix::sched::CloneFlags;
use tcp_info::sockdiag::{in_netns, named_netns_path};

/// Prefix of every namespace name this module creates.
const NS_PREFIX: &str = "tib";
/// Interface names inside the namespaces (namespaced, so fixed names do not clash).
const SERVER_IF: &str = "vs";
const CLIENT_IF: &str = "vc";
/// Most client addresses a topology can carry (10.77.1.1 – 10.77.250.250 would allow more,
/// but nothing needs it).
pub const MAX_CLIENT_ADDRS: usize = 1000;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A server namespace and a client namespace joined by a veth pair.
#[derive(Debug)]
pub struct Topology {
    /// Name of the server namespace (under `/run/netns`).
    pub server_ns: String,
    /// Name of the client namespace.
    pub client_ns: String,
    /// The server's address (10.77.0.1/16, on the server end of the veth).
    pub server_addr: Ipv4Addr,
    /// The client addresses (10.77.x.y/16, on the client end of the veth).
    pub client_addrs: Vec<Ipv4Addr>,
    /// Namespaces created so far, deleted (and the veth pair with them) on drop.
    created: Owned,
}

impl Topology {
    /// Creates the namespaces, the veth pair, the addresses and the sysctls.
    ///
    /// Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN). On error, whatever was created is removed.
    pub fn create(client_addr_count: usize) -> anyhow::Result<Self> {
        if client_addr_count == 0 || client_addr_count > MAX_CLIENT_ADDRS {
            bail!(
                "client address count must be within 1..={MAX_CLIENT_ADDRS}, got {client_addr_count}"
            );
        }
        let base = unique_base();
        let mut topo = Self {
            server_ns: format!("{base}s"),
            client_ns: format!("{base}c"),
            server_addr: Ipv4Addr::new(10, 77, 0, 1),
            client_addrs: (0..client_addr_count)
                .map(|i| Ipv4Addr::new(10, 77, 1 + (i / 250) as u8, 1 + (i % 250) as u8))
                .collect(),
            created: Owned::default(),
        };
        topo.build()?;
        Ok(topo)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let (s, c) = (self.server_ns.clone(), self.client_ns.clone());
        self.created.add(&s)?;
        self.created.add(&c)?;
        ip(&[
            "link", "add", "name", SERVER_IF, "netns", &s, "type", "veth", "peer", "name",
            CLIENT_IF, "netns", &c,
        ])?;
        ip(&[
            "-n",
            &s,
            "addr",
            "add",
            &format!("{}/16", self.server_addr),
            "dev",
            SERVER_IF,
        ])?;
        let mut batch = String::new();
        for a in &self.client_addrs {
            let _ = writeln!(batch, "addr add {a}/16 dev {CLIENT_IF}");
        }
        ip_batch(&c, &batch)?;
        for (ns, dev) in [(&s, SERVER_IF), (&c, CLIENT_IF)] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        // Room for tens of thousands of connections: a deep accept queue on the server and a
        // wide ephemeral port range on the client (both sysctls are per namespace).
        write_sysctl(&s, "net/core/somaxconn", "65535")?;
        write_sysctl(&s, "net/ipv4/tcp_max_syn_backlog", "65535")?;
        write_sysctl(&c, "net/ipv4/ip_local_port_range", "1024 65000")?;
        Ok(())
    }
}

/// A fresh name stem for this process's namespaces: the prefix, the pid and a counter
/// (`tib<pid>x<n>`); a role suffix follows (`s`, `c`, or `p<k>` for pod `k`).
pub fn unique_base() -> String {
    let id = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{NS_PREFIX}{}x{id}", std::process::id())
}

/// Named network namespaces this process created, deleted (last first) when dropped.
#[derive(Debug, Default)]
pub struct Owned(Vec<String>);

impl Owned {
    /// Creates the named namespace `name` with its loopback up, and owns it from then on.
    pub fn add(&mut self, name: &str) -> anyhow::Result<()> {
        ip(&["netns", "add", name])?;
        self.0.push(name.to_owned());
        ip(&["-n", name, "link", "set", "lo", "up"])
    }

    /// Deletes every namespace owned (and what lives in it). Idempotent.
    fn teardown(&mut self) -> anyhow::Result<()> {
        let mut first_err = None;
        while let Some(ns) = self.0.pop() {
            if let Err(e) = ip(&["netns", "del", &ns])
                && first_err.is_none()
            {
                first_err = Some(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("warning: tearing down network namespaces: {e:#}");
        }
    }
}

#[cfg(test)]
impl Topology {
    /// A topology value that owns nothing (for tests of code that only reads its fields).
    pub fn for_tests() -> Self {
        Self {
            server_ns: "tib0x0s".into(),
            client_ns: "tib0x0c".into(),
            server_addr: Ipv4Addr::new(10, 77, 0, 1),
            client_addrs: vec![Ipv4Addr::new(10, 77, 1, 1)],
            created: Owned::default(),
        }
    }
}

/// Moves the calling thread into the named network namespace, for good.
///
/// Only the calling thread changes namespace; sockets it creates afterwards belong to `ns`
/// for their whole life, whichever thread uses them later.
pub fn enter(ns: &str) -> anyhow::Result<()> {
    let path = named_netns_path(ns);
    let f = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    nix::sched::setns(&f, CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering network namespace {ns}"))?;
    Ok(())
}

/// Runs `f` on a helper thread inside `ns` and returns its result
/// ([`tcp_info::sockdiag::in_netns`]).
pub fn run_in<T: Send>(
    ns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send,
) -> anyhow::Result<T> {
    in_netns(&named_netns_path(ns), f)
        .with_context(|| format!("running in network namespace {ns}"))?
}

/// Writes `/proc/sys/<key>` as seen from namespace `ns`.
pub fn write_sysctl(ns: &str, key: &str, value: &str) -> anyhow::Result<()> {
    run_in(ns, || {
        let path = Path::new("/proc/sys").join(key);
        std::fs::write(&path, value)
            .with_context(|| format!("writing {value:?} to {} in namespace {ns}", path.display()))
    })
}

/// Reads `/proc/sys/<key>` as seen from namespace `ns`.
#[cfg(test)]
pub fn read_sysctl(ns: &str, key: &str) -> anyhow::Result<String> {
    run_in(ns, || {
        let path = Path::new("/proc/sys").join(key);
        let v = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} in namespace {ns}", path.display()))?;
        Ok(v.trim().to_owned())
    })
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (is iproute2 installed?)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs a batch of `ip` commands inside namespace `ns`.
fn ip_batch(ns: &str, batch: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running `ip -batch`")?;
    child
        .stdin
        .take()
        .context("stdin of `ip -batch`")?
        .write_all(batch.as_bytes())
        .context("writing to `ip -batch`")?;
    let out = child
        .wait_with_output()
        .context("waiting for `ip -batch`")?;
    if !out.status.success() {
        bail!(
            "`ip -n {ns} -batch` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Names of all network namespaces in `/run/netns`.
pub fn list_namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The pid encoded in a namespace name made from [`unique_base`] (`tib<pid>x<n>` followed by
/// `s`, `c` or `p<k>`), if it is one.
fn owner_pid(name: &str) -> Option<u32> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let rest = name.strip_prefix(NS_PREFIX)?;
    let (pid, tail) = rest.split_once('x')?;
    let counter = match tail.split_once('p') {
        Some((counter, pod)) if digits(pod) => counter,
        Some(_) => return None,
        None => tail.strip_suffix(['s', 'c'])?,
    };
    if !digits(counter) {
        return None;
    }
    pid.parse().ok()
}

/// Deletes namespaces left by runs whose process no longer exists. Returns their names.
pub fn cleanup_stale() -> Vec<String> {
    let mut removed = Vec::new();
    for name in list_namespaces() {
        if let Some(pid) = owner_pid(&name)
            && !Path::new(&format!("/proc/{pid}")).exists()
            && ip(&["netns", "del", &name]).is_ok()
        {
            removed.push(name);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::testutil::require_root;

    #[test]
    fn owner_pid_parses_only_our_names() {
        assert_eq!(owner_pid("tib123x0s"), Some(123));
        assert_eq!(owner_pid("tib123x45c"), Some(123));
        assert_eq!(owner_pid("tib123x45"), None);
        assert_eq!(owner_pid("tib123xs"), None);
        assert_eq!(owner_pid("other123x0s"), None);
        assert_eq!(owner_pid("tib123x4p17"), Some(123));
        assert_eq!(owner_pid("tib123x4p"), None);
        assert_eq!(owner_pid("tib123xp1"), None);
        assert_eq!(owner_pid("tib123x4p1s"), None);
    }

    #[test]
    fn create_connect_and_teardown() {
        if !require_root("create_connect_and_teardown") {
            return;
        }
        let topo = Topology::create(3).unwrap();
        let names = list_namespaces();
        assert!(names.contains(&topo.server_ns) && names.contains(&topo.client_ns));
        assert_eq!(
            read_sysctl(&topo.server_ns, "net/core/somaxconn").unwrap(),
            "65535"
        );
        assert_eq!(
            read_sysctl(&topo.client_ns, "net/ipv4/ip_local_port_range").unwrap(),
            "1024\t65000"
        );
        // Every client address reaches the server.
        let server = std::net::SocketAddrV4::new(topo.server_addr, 4000);
        let listener = run_in(&topo.server_ns, || {
            Ok(crate::workload::sock::listen(server, 16)?)
        })
        .unwrap();
        for &a in &topo.client_addrs {
            let s = run_in(&topo.client_ns, || {
                Ok(crate::workload::sock::connect_from(
                    a,
                    server,
                    std::time::Duration::from_secs(2),
                )?)
            })
            .unwrap();
            let (_, peer) = listener.accept().unwrap();
            assert_eq!(peer, s.local_addr().unwrap());
        }
        let (s, c) = (topo.server_ns.clone(), topo.client_ns.clone());
        drop(topo);
        let names = list_namespaces();
        assert!(!names.contains(&s) && !names.contains(&c));
    }
}
