//! Finding the network namespaces to watch: those of processes (`/proc/*/ns/net`) and named ones
//! (bind mounts under `/run/netns`), de-duplicated by inode.

use super::{NetnsId, Scope};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// A namespace found: how to enter it, and a process living in it (for attribution).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// A file that enters it with `setns`: a bind mount when there is one (it outlives
    /// processes), else `/proc/PID/ns/net` of the lowest PID in it.
    pub path: PathBuf,
    /// The lowest PID living in it (in a pod, usually the sandbox's `pause`), if any.
    pub pid: Option<u32>,
}

/// Where discovery looks (the host's `/proc` and `/run/netns` unless a test says otherwise).
#[derive(Debug, Clone)]
pub struct Roots {
    /// The proc filesystem.
    pub proc: PathBuf,
    /// The directory of named namespaces (`ip netns add`).
    pub run_netns: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Self {
            proc: PathBuf::from("/proc"),
            run_netns: PathBuf::from("/run/netns"),
        }
    }
}

/// The namespaces `scope` covers right now. Entries that vanish while being read (a process
/// exiting) are skipped: the next discovery sees the truth.
pub fn discover(scope: &Scope, roots: &Roots) -> BTreeMap<NetnsId, Found> {
    let mut found = BTreeMap::new();
    match scope {
        Scope::Own => {
            let path = roots.proc.join("self/ns/net");
            if let Some(inode) = inode_of(&path) {
                found.insert(
                    inode,
                    Found {
                        path,
                        pid: Some(std::process::id()),
                    },
                );
            }
        }
        Scope::All => {
            scan_processes(&roots.proc, &mut found);
            scan_named(&roots.run_netns, &mut found);
        }
        Scope::Paths(paths) => {
            for path in paths {
                if let Some(inode) = inode_of(path) {
                    found.entry(inode).or_insert_with(|| Found {
                        path: path.clone(),
                        pid: pid_of(path),
                    });
                }
            }
        }
    }
    found
}

/// The inode of the namespace a namespace file refers to (following the `/proc` symlink).
pub fn inode_of(path: &Path) -> Option<NetnsId> {
    let inode = std::fs::metadata(path).ok()?.ino();
    NetnsId::try_from(inode).ok()
}

/// Every process's namespace, keeping the lowest PID of each.
fn scan_processes(proc: &Path, found: &mut BTreeMap<NetnsId, Found>) {
    let Ok(entries) = std::fs::read_dir(proc) else {
        tracing::warn!(proc = %proc.display(), "cannot list processes");
        return;
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let path = proc.join(pid.to_string()).join("ns/net");
        // Kernel threads and processes that just exited have no readable link: skipped.
        if let Some(inode) = inode_of(&path) {
            found.entry(inode).or_insert(Found {
                path,
                pid: Some(pid),
            });
        }
    }
}

/// Named namespaces: their bind mount becomes the path to enter them by.
fn scan_named(run_netns: &Path, found: &mut BTreeMap<NetnsId, Found>) {
    let Ok(entries) = std::fs::read_dir(run_netns) else {
        return; // No named namespaces on this node.
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(inode) = inode_of(&path) else {
            continue;
        };
        // A plain file left behind by a deleted namespace has an ordinary inode of the tmpfs,
        // not a namespace: check that it is on nsfs by comparing with a known namespace's dev.
        if !is_netns_file(&path) {
            continue;
        }
        found
            .entry(inode)
            .and_modify(|f| f.path.clone_from(&path))
            .or_insert(Found { path, pid: None });
    }
}

/// Whether `path` is a namespace file (on nsfs) rather than an ordinary file.
fn is_netns_file(path: &Path) -> bool {
    let dev = |p: &Path| std::fs::metadata(p).ok().map(|m| m.dev());
    match (dev(path), dev(Path::new("/proc/self/ns/net"))) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The PID in a `/proc/PID/ns/net` path.
fn pid_of(path: &Path) -> Option<u32> {
    let mut parts = path.components().rev();
    let (net, ns, pid) = (parts.next()?, parts.next()?, parts.next()?);
    if net.as_os_str() != "net" || ns.as_os_str() != "ns" {
        return None;
    }
    pid.as_os_str().to_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockdiag::testutil::TestNetns;

    #[test]
    fn own_namespace() {
        let found = discover(&Scope::Own, &Roots::default());
        assert_eq!(found.len(), 1);
        let (&inode, f) = found.iter().next().unwrap();
        assert_eq!(Some(inode), inode_of(Path::new("/proc/self/ns/net")));
        assert_eq!(f.pid, Some(std::process::id()));
    }

    #[test]
    fn all_finds_processes_and_named_namespaces_once() {
        let Some(ns) = TestNetns::create() else {
            return;
        };
        let found = discover(&Scope::All, &Roots::default());
        let own = inode_of(Path::new("/proc/self/ns/net")).unwrap();
        let named = inode_of(ns.path()).unwrap();
        assert!(found.contains_key(&own));
        // No process lives in the test's namespace: found through its bind mount alone.
        assert_eq!(
            found.get(&named),
            Some(&Found {
                path: ns.path().to_owned(),
                pid: None
            })
        );
        // Our own process is in the own namespace, so its lowest PID is at most ours.
        assert!(found[&own].pid.is_some_and(|p| p <= std::process::id()));
    }

    #[test]
    fn paths_skip_missing_files_and_know_pids() {
        let own = format!("/proc/{}/ns/net", std::process::id());
        let scope = Scope::Paths(vec![own.clone().into(), "/run/netns/tcpinfo-none".into()]);
        let found = discover(&scope, &Roots::default());
        assert_eq!(found.len(), 1);
        let f = found.values().next().unwrap();
        assert_eq!(f.pid, Some(std::process::id()));
        assert_eq!(f.path, PathBuf::from(own));
        assert_eq!(pid_of(Path::new("/run/netns/x")), None);
    }
}
