//! Least privilege: once the programs are loaded and the sockets opened, the daemon gives up
//! every capability it no longer needs, in every set (effective, permitted, inheritable,
//! ambient and, when it holds CAP_SETPCAP, bounding), and sets `no_new_privs`, so that nothing
//! it could execute would get them back. A flaw in the code that reads sockets, files or
//! clients then has the kept capabilities at most. The daemon still runs as the user it was
//! started as (uid 0 in the shipped deployments), with that user's file permissions.
//!
//! Capabilities are per thread on Linux. The main thread reduces itself to [`kept`] before it
//! starts the collection threads (which inherit that set); the threads of the edges' runtime
//! (metrics, event socket, signals: the only code that talks to other programs) and the
//! pipeline (archives and events) hold none at all.

use anyhow::{Context, Result};
use caps::{CapSet, Capability, CapsHashSet};

/// The capabilities still needed after start-up, with the reason for each.
///
/// - `--netns self` (the default): none. Every socket is open, the programs are attached, the
///   ring buffer is mapped, and sock_diag checks the credentials a socket was opened with.
/// - another scope: the namespace watcher enters namespaces that appear later and opens their
///   sockets: CAP_SYS_ADMIN for `setns(2)`, CAP_SYS_PTRACE to open `/proc/PID/ns/net` and read
///   `/proc/PID/environ` of processes that hold capabilities we do not, CAP_NET_ADMIN to force
///   the receive buffer of their sockets (`SO_RCVBUFFORCE`) and join their destroy groups.
/// - eBPF mode on kernels before 6.5: CAP_BPF, because there every `bpf(2)` command checks it
///   (with `kernel.unprivileged_bpf_disabled` set, the default), including the map reads and
///   updates the daemon makes while running (kernel drop counters, watched namespaces). From
///   6.5 on, an open map descriptor is enough.
pub fn kept(
    other_namespaces: bool,
    ebpf_mode: bool,
    kernel_release: &str,
) -> Vec<(Capability, &'static str)> {
    let mut kept = Vec::new();
    if other_namespaces {
        kept.extend([
            (
                Capability::CAP_SYS_ADMIN,
                "setns(2) into network namespaces found later",
            ),
            (
                Capability::CAP_SYS_PTRACE,
                "open /proc/PID/ns/net and read /proc/PID/environ of other processes",
            ),
            (
                Capability::CAP_NET_ADMIN,
                "SO_RCVBUFFORCE and destroy groups on the sockets of new namespaces",
            ),
        ]);
    }
    if ebpf_mode && !tcp_info::namespaces::kernel_at_least(kernel_release, 6, 5) {
        kept.push((
            Capability::CAP_BPF,
            "bpf(2) map reads and updates (checked per command before Linux 6.5)",
        ));
    }
    kept
}

/// Reduces this thread (and the threads it starts from now on) to `keep`: every other
/// capability leaves the bounding set (when this thread holds CAP_SETPCAP, as root does) and
/// the permitted and effective sets; the inheritable and ambient sets are emptied. A
/// capability in `keep` that the thread does not hold stays absent.
pub fn drop_to(keep: &[Capability]) -> Result<Dropped> {
    let keep: CapsHashSet = keep.iter().copied().collect();
    // The bounding set first: removing from it needs CAP_SETPCAP, which goes below.
    let bounding = caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)
        .context("reading the effective capabilities")?;
    if bounding {
        let bounding = caps::read(None, CapSet::Bounding).context("reading the bounding set")?;
        for cap in bounding.difference(&keep) {
            caps::drop(None, CapSet::Bounding, *cap)
                .with_context(|| format!("dropping {cap} from the bounding set"))?;
        }
    }
    // Without it, executing a program as uid 0 would refill the permitted set from the
    // bounding set. The daemon executes nothing; this makes sure nothing can.
    nix::sys::prctl::set_no_new_privs().context("setting no_new_privs")?;
    caps::clear(None, CapSet::Ambient).context("clearing the ambient set")?;
    caps::clear(None, CapSet::Inheritable).context("clearing the inheritable set")?;
    let permitted = caps::read(None, CapSet::Permitted).context("reading the permitted set")?;
    let kept: CapsHashSet = permitted.intersection(&keep).copied().collect();
    // Effective must stay within permitted, so it shrinks first.
    caps::set(None, CapSet::Effective, &kept).context("setting the effective set")?;
    caps::set(None, CapSet::Permitted, &kept).context("setting the permitted set")?;
    Ok(Dropped { bounding })
}

/// What [`drop_to`] could do.
#[derive(Debug, Clone, Copy)]
pub struct Dropped {
    /// Whether the bounding set was reduced too (it needs CAP_SETPCAP, which a container
    /// started with an explicit capability list usually lacks; `no_new_privs` covers it).
    pub bounding: bool,
}

/// [`drop_to`] nothing, for threads that never need a capability (the edges' runtime workers,
/// the pipeline). Failing is logged, not fatal: the thread still works, with what it had.
pub fn drop_all_on_this_thread() {
    if let Err(e) = drop_to(&[]).map(|_| ()) {
        tracing::error!("cannot drop this thread's capabilities: {e:#}");
    }
}

/// Drops the main thread to what `--netns` and the mode still need, and logs what is kept.
pub fn drop_after_start(other_namespaces: bool, ebpf_mode: bool) -> Result<()> {
    let kept = kept(
        other_namespaces,
        ebpf_mode,
        &tcp_info::namespaces::kernel_release(),
    );
    let caps: Vec<Capability> = kept.iter().map(|&(cap, _)| cap).collect();
    let dropped = drop_to(&caps).context("dropping capabilities after start-up")?;
    if !dropped.bounding {
        tracing::info!(
            "capability bounding set left as it is (no CAP_SETPCAP); no_new_privs is set, so \
             no program this process could execute would regain a capability"
        );
    }
    if kept.is_empty() {
        tracing::info!("capabilities: all dropped");
    }
    for (cap, why) in kept {
        tracing::info!(capability = %cap, reason = why, "capability kept");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use caps::Capability::{CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_SYS_PTRACE};

    use super::kept;

    fn names(other: bool, ebpf: bool, release: &str) -> Vec<caps::Capability> {
        kept(other, ebpf, release)
            .into_iter()
            .map(|(c, _)| c)
            .collect()
    }

    #[test]
    fn the_kept_set_follows_scope_mode_and_kernel() {
        assert_eq!(names(false, false, "6.18.0"), []);
        assert_eq!(names(false, true, "6.18.0"), []);
        assert_eq!(names(false, true, "6.5.0"), []);
        assert_eq!(names(false, true, "6.1.0-18-amd64"), [CAP_BPF]);
        assert_eq!(
            names(false, false, "5.10.0"),
            [],
            "sweep mode makes no bpf(2) call"
        );
        let all = [CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_NET_ADMIN];
        assert_eq!(names(true, false, "6.18.0"), all);
        assert_eq!(names(true, true, "6.18.0"), all);
        assert_eq!(
            names(true, true, "5.15.0"),
            [all.as_slice(), &[CAP_BPF]].concat()
        );
    }

    #[test]
    fn dropping_on_a_thread_leaves_other_threads_alone() {
        let before = caps::read(None, caps::CapSet::Effective).unwrap();
        std::thread::spawn(|| {
            super::drop_all_on_this_thread();
            for set in [
                caps::CapSet::Effective,
                caps::CapSet::Permitted,
                caps::CapSet::Inheritable,
                caps::CapSet::Ambient,
            ] {
                assert!(caps::read(None, set).unwrap().is_empty(), "{set:?}");
            }
        })
        .join()
        .unwrap();
        assert_eq!(caps::read(None, caps::CapSet::Effective).unwrap(), before);
    }
}
