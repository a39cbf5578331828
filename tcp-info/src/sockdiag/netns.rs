//! Running a closure inside another network namespace (SPEC §13.5).
//!
//! A `sock_diag` socket sees only the namespace it was created in and stays bound to it. To open one
//! for another namespace we `setns(CLONE_NEWNET)` on a short-lived dedicated thread, create the
//! socket there, restore the thread's namespace and hand the socket back. The calling thread's own
//! namespace is never touched. `setns` needs `CAP_SYS_ADMIN` and access to the namespace file.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};
use thiserror::Error;

/// The namespace file of a named namespace (`ip netns add NAME`): `/run/netns/NAME`.
pub fn named_netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// The network namespace file of a process: `/proc/PID/ns/net`.
pub fn pid_netns_path(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

/// Why a closure could not be run inside a network namespace.
#[derive(Debug, Error)]
pub enum NetnsError {
    /// The current namespace could not be opened (needed to restore it).
    #[error("cannot open the current network namespace /proc/thread-self/ns/net: {0}")]
    OpenCurrent(#[source] std::io::Error),
    /// The target namespace file could not be opened.
    #[error("cannot open network namespace {}: {source}", path.display())]
    Open {
        /// The namespace file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `setns` into the target namespace failed (missing `CAP_SYS_ADMIN`, or not a netns file).
    #[error("setns into network namespace {} failed: {source}", path.display())]
    Enter {
        /// The namespace file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The helper thread could not be spawned.
    #[error("cannot spawn the network-namespace helper thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Runs `f` on a dedicated thread that has joined the network namespace at `netns`
/// (`/run/netns/NAME` or `/proc/PID/ns/net`) and returns its result. Sockets created by `f` stay
/// in that namespace. A panic in `f` is propagated to the caller.
pub fn in_netns<T, F>(netns: &Path, f: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("netns-helper".into())
            .spawn_scoped(scope, || run_entered(netns, f))
            .map_err(NetnsError::Spawn)?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Body of the helper thread: enter, run, restore.
fn run_entered<T>(netns: &Path, f: impl FnOnce() -> T) -> Result<T, NetnsError> {
    let original = File::open("/proc/thread-self/ns/net").map_err(NetnsError::OpenCurrent)?;
    let target = File::open(netns).map_err(|source| NetnsError::Open {
        path: netns.to_owned(),
        source,
    })?;
    setns(&target, CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError::Enter {
        path: netns.to_owned(),
        source: e.into(),
    })?;
    let result = f();
    // The thread ends right after this, so a failed restore cannot leak the namespace into other
    // work; it is still worth a log line because it points at a privilege problem.
    if let Err(e) = setns(&original, CloneFlags::CLONE_NEWNET) {
        tracing::warn!(error = %e, "could not restore the helper thread's network namespace");
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockdiag::testutil::TestNetns;

    fn netns_inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn closure_runs_in_the_target_namespace_and_caller_is_untouched() {
        let Some(ns) = TestNetns::create() else {
            return;
        };
        let before = netns_inode(Path::new("/proc/thread-self/ns/net"));
        let inside = in_netns(ns.path(), || {
            netns_inode(Path::new("/proc/thread-self/ns/net"))
        })
        .unwrap();
        assert_eq!(inside, netns_inode(ns.path()));
        assert_ne!(inside, before);
        assert_eq!(netns_inode(Path::new("/proc/thread-self/ns/net")), before);
    }

    #[test]
    fn missing_namespace_is_a_clear_error() {
        let err = in_netns(Path::new("/run/netns/tcpinfo-nl-does-not-exist"), || ()).unwrap_err();
        assert!(matches!(err, NetnsError::Open { .. }), "{err}");
        assert!(err.to_string().contains("tcpinfo-nl-does-not-exist"));
    }

    #[test]
    fn paths() {
        assert_eq!(named_netns_path("x"), PathBuf::from("/run/netns/x"));
        assert_eq!(pid_netns_path(42), PathBuf::from("/proc/42/ns/net"));
    }
}
