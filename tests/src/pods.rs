//! Throw-away "pods" for the multi-namespace tests: each a named network namespace with a
//! process living in it (as a pod's sandbox), that process in a cgroup laid out like kubelet's
//! (`…/kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope`), and the pod's name and
//! namespace where a node would find them: the container runtime's OCI bundle, or the
//! process's environment. Everything is removed on drop.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context as _, Result, bail};
use tcp_info::sockdiag::{in_netns, named_netns_path};

use crate::netns::run;
use crate::traffic;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Where a pod's name and namespace can be read.
#[derive(Debug, Clone)]
pub enum Naming {
    /// In the annotations of its sandbox's OCI bundle (containerd's layout) under this root.
    Bundle(PathBuf),
    /// In its process's environment, as the downward API sets `POD_NAME` and `POD_NAMESPACE`.
    Environment,
    /// Only its hostname (`HOSTNAME`), which is the pod name by default: no namespace.
    Hostname,
}

/// A pod: a network namespace, a process in it, a cgroup and a name.
#[derive(Debug)]
pub struct Pod {
    /// The namespace's name (under `/run/netns`).
    pub ns: String,
    /// The pod's name.
    pub name: String,
    /// The pod's Kubernetes namespace.
    pub namespace: String,
    /// The pod's UID (dashed).
    pub uid: String,
    /// The sandbox container's ID (64 hex digits).
    pub container: String,
    sleeper: Option<Child>,
    /// The cgroup directories created, outermost first.
    cgroups: Vec<PathBuf>,
    bundle: Option<PathBuf>,
}

impl Pod {
    /// Creates a pod named `<test>-<n>` whose name and namespace are found as `naming` says.
    pub fn create(test: &str, naming: &Naming) -> Result<Self> {
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut pod = Self {
            ns: format!("tp{pid}p{n}"),
            name: format!("{test}-{n}"),
            namespace: format!("team-{n}"),
            uid: format!(
                "{pid:08x}-{n:04x}-4000-8000-{:012x}",
                u64::from(pid) << 8 | u64::from(n)
            ),
            container: format!("{pid:08x}{n:08x}").repeat(4),
            sleeper: None,
            cgroups: Vec::new(),
            bundle: None,
        };
        run("ip", &["netns", "add", &pod.ns])?;
        run("ip", &["-n", &pod.ns, "link", "set", "lo", "up"])?;
        pod.make_cgroup()?;
        if let Naming::Bundle(root) = naming {
            pod.write_bundle(root)?;
        }
        pod.start_sleeper(naming)?;
        Ok(pod)
    }

    /// The namespace file.
    pub fn path(&self) -> PathBuf {
        named_netns_path(&self.ns)
    }

    /// The namespace's inode.
    pub fn inode(&self) -> Result<u32> {
        use std::os::unix::fs::MetadataExt as _;
        let ino = std::fs::metadata(self.path())?.ino();
        Ok(u32::try_from(ino)?)
    }

    /// A loopback connection inside the pod: (client, server, the server socket's cookie).
    pub fn connection(&self) -> Result<(TcpStream, TcpStream, u64)> {
        in_netns(&self.path(), || -> Result<_> {
            let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
            let client = TcpStream::connect(listener.local_addr()?)?;
            let (server, cookie, _) = traffic::accept(&listener)?;
            Ok((client, server, cookie))
        })?
    }

    /// `…/tcpinfo-<pid>-<n>/kubepods.slice/kubepods-besteffort.slice/
    /// kubepods-besteffort-pod<uid with _>.slice/cri-containerd-<id>.scope` in the cgroup v2
    /// hierarchy, under a directory of this test's own so that parallel tests never share one.
    fn make_cgroup(&mut self) -> Result<()> {
        let root = cgroup2_mount()?.join(format!("tcpinfo-{}", self.ns));
        let pod_slice = format!(
            "kubepods-besteffort-pod{}.slice",
            self.uid.replace('-', "_")
        );
        let scope = format!("cri-containerd-{}.scope", self.container);
        let mut dir = root;
        for part in [
            "",
            "kubepods.slice",
            "kubepods-besteffort.slice",
            &pod_slice,
            &scope,
        ] {
            if !part.is_empty() {
                dir = dir.join(part);
            }
            std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
            self.cgroups.push(dir.clone());
        }
        Ok(())
    }

    /// containerd's bundle of the sandbox: `<root>/<id>/config.json` with the CRI annotations.
    fn write_bundle(&mut self, root: &Path) -> Result<()> {
        let dir = root.join(&self.container);
        std::fs::create_dir_all(&dir)?;
        let config = format!(
            r#"{{"ociVersion":"1.1.0","annotations":{{"io.kubernetes.cri.container-type":"sandbox","io.kubernetes.cri.sandbox-name":"{}","io.kubernetes.cri.sandbox-namespace":"{}","io.kubernetes.cri.sandbox-uid":"{}"}}}}"#,
            self.name, self.namespace, self.uid
        );
        std::fs::write(dir.join("config.json"), config)?;
        self.bundle = Some(dir);
        Ok(())
    }

    /// The pod's process: `sleep` in the namespace, moved into the pod's cgroup.
    fn start_sleeper(&mut self, naming: &Naming) -> Result<()> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, "sleep", "3600"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .env("HOSTNAME", "not-a-pod");
        match naming {
            Naming::Environment => {
                cmd.env("POD_NAME", &self.name)
                    .env("POD_NAMESPACE", &self.namespace);
            }
            Naming::Hostname => {
                cmd.env("HOSTNAME", &self.name);
            }
            Naming::Bundle(_) => {}
        }
        let child = cmd.spawn().context("starting the pod's process")?;
        let pid = child.id();
        self.sleeper = Some(child);
        let leaf = self.cgroups.last().context("no cgroup")?;
        std::fs::write(leaf.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("moving {pid} into {}", leaf.display()))?;
        // `ip` execs `sleep` once it entered the namespace: wait for that, so that the
        // process the daemon finds is the pod's, with its environment.
        crate::wait_for(
            std::time::Duration::from_secs(5),
            "the pod's process",
            || {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))?;
                Ok((comm.trim() == "sleep").then_some(()))
            },
        )
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Some(mut child) = self.sleeper.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in self.cgroups.iter().rev() {
            if let Err(e) = std::fs::remove_dir(dir) {
                eprintln!("warning: could not remove cgroup {}: {e}", dir.display());
            }
        }
        if let Some(bundle) = &self.bundle {
            let _ = std::fs::remove_dir_all(bundle);
        }
        if let Err(e) = run("ip", &["netns", "del", &self.ns]) {
            eprintln!(
                "warning: could not delete network namespace {}: {e:#}",
                self.ns
            );
        }
    }
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or `…/unified` on hybrid hosts).
fn cgroup2_mount() -> Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    for line in mounts.lines() {
        // `… mount-point options … - fstype source options`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() == Some("cgroup2")
            && let Some(point) = left.split_whitespace().nth(4)
        {
            return Ok(PathBuf::from(point));
        }
    }
    bail!("no cgroup2 hierarchy is mounted")
}
