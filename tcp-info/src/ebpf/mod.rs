//! eBPF mode's kernel side (DESIGN §1): loading and attaching the programs of `tcp-info-ebpf`,
//! draining the marks they send, and reading their counters. What to do with the marks is the
//! eBPF source's job ([`crate::sources::ebpf`]).
//!
//! Requirements, checked by [`Programs::load`] (any failure is an [`EbpfError`] naming it, so that
//! `--mode auto` can fall back to sweep mode with that reason): the object embedded at build time
//! (`cargo xtask build-ebpf` before building the daemon), the kernel's BTF, Linux 5.12 (tp_btf
//! programs calling `bpf_get_socket_cookie`; ring buffer 5.8, LRU hash 4.10), and CAP_BPF with
//! CAP_PERFMON (or CAP_SYS_ADMIN).

pub mod btf;
mod object;

use std::path::Path;
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData, MapError, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, ProgramError};
use aya::{Ebpf, EbpfLoader};
use tcp_info_common::{CONFIG_SYMBOL, Config, Counter, Mark, SKIP_LOOPBACK, maps, programs};
use thiserror::Error;

pub use object::EMBEDDED;

/// Why eBPF mode cannot run. Each message says what is missing.
#[derive(Debug, Error)]
pub enum EbpfError {
    /// The daemon was built without the eBPF object.
    #[error(
        "this build has no eBPF object (run `cargo xtask build-ebpf`, then rebuild the daemon)"
    )]
    NotEmbedded,
    /// The kernel's BTF is missing or unusable, or lacks a field the programs read.
    #[error("kernel BTF: {0}")]
    Btf(#[from] btf::BtfError),
    /// aya could not read the kernel's BTF.
    #[error("kernel BTF (aya): {0}")]
    AyaBtf(#[from] aya::BtfError),
    /// The object could not be loaded (maps created, relocations applied).
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program is missing from the object.
    #[error("the eBPF object has no program {0}")]
    NoProgram(&'static str),
    /// A map is missing from the object.
    #[error("the eBPF object has no map {0}")]
    NoMap(&'static str),
    /// A program failed to load (verifier, privileges) or attach (kernel without the hook).
    #[error("program {name}: {source}")]
    Program {
        /// The program (named after its tracepoint).
        name: &'static str,
        /// aya's error, with the verifier log if it rejected the program.
        #[source]
        source: ProgramError,
    },
    /// A map operation failed.
    #[error("map {name}: {source}")]
    Map {
        /// The map.
        name: &'static str,
        /// aya's error.
        #[source]
        source: MapError,
    },
    /// The close source is unavailable (joining the destroy groups needs CAP_NET_ADMIN).
    #[error(
        "no close source (the sock_diag destroy groups need CAP_NET_ADMIN): eBPF mode relies on \
         it for final records and for connections shorter than a poll interval"
    )]
    NoCloseSource,
    /// The watched namespace could not be identified.
    #[error("network namespace {path}: {source}")]
    Netns {
        /// Its `/proc/.../ns/net` path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Totals of the kernel-side counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Marks submitted to the ring buffer.
    pub submitted: u64,
    /// Marks lost because the ring buffer was full.
    pub ring_full: u64,
    /// Last-mark times the LRU map refused.
    pub map_full: u64,
    /// Socket fields that could not be read.
    pub read_failed: u64,
}

/// The ring buffer through which the programs send their marks.
///
/// The programs do not wake a reader for each mark: they wake it only when the ring's fill
/// passes a quarter of its size, so the reader drains on its own clock (the poll interval) and
/// early only in a burst. It is pollable (`AsRawFd`): readable means "drain now".
pub struct MarkRing(RingBuf<MapData>);

impl MarkRing {
    /// Moves every mark waiting in the ring buffer to `out`; returns how many. Memory reads
    /// only: no system call. A record of the wrong size (never written by these programs) is
    /// skipped and counted in the second value.
    pub fn drain(&mut self, out: &mut Vec<Mark>) -> (usize, usize) {
        let (mut read, mut malformed) = (0, 0);
        while let Some(item) = self.0.next() {
            match mark_from_bytes(&item) {
                Some(mark) => {
                    out.push(mark);
                    read += 1;
                }
                None => malformed += 1,
            }
        }
        (read, malformed)
    }
}

impl std::os::fd::AsRawFd for MarkRing {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

impl std::fmt::Debug for MarkRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarkRing").finish_non_exhaustive()
    }
}

/// The loaded and attached programs. Dropping it detaches them.
pub struct Programs {
    /// Taken by the reader with [`Programs::take_marks`].
    marks: Option<MarkRing>,
    counters: PerCpuArray<MapData, u64>,
    /// The namespaces whose sockets are marked (inode → 1).
    watched: BpfHashMap<MapData, u32, u8>,
    // Owns the programs and their links: kept last so the maps above close first.
    _ebpf: Ebpf,
}

impl std::fmt::Debug for Programs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Programs").finish_non_exhaustive()
    }
}

impl Programs {
    /// Loads the embedded object with the running kernel's field offsets and `interval` as the
    /// per-socket mark interval, watches the network namespaces with these inode numbers (more
    /// can be added and removed later), and attaches every program. With `skip_loopback`, sockets with a loopback local address are
    /// never marked (see [`tcp_info_common::SKIP_LOOPBACK`]).
    pub fn load(interval: Duration, watch: &[u32], skip_loopback: bool) -> Result<Self, EbpfError> {
        let object = object::OBJECT.ok_or(EbpfError::NotEmbedded)?;
        let offsets = btf::Btf::from_kernel()?.offsets()?;
        let config = Config {
            interval_ns: u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX),
            offsets,
            flags: if skip_loopback { SKIP_LOOPBACK } else { 0 },
            pad: 0,
        };
        raise_memlock();
        let kernel_btf = aya::Btf::from_sys_fs()?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&kernel_btf))
            .override_global(CONFIG_SYMBOL, &config, true)
            .load(object)?;
        for name in programs::ALL {
            let program: &mut BtfTracePoint = ebpf
                .program_mut(name)
                .ok_or(EbpfError::NoProgram(name))?
                .try_into()
                .map_err(|source| EbpfError::Program { name, source })?;
            program
                .load(name, &kernel_btf)
                .map_err(|source| EbpfError::Program { name, source })?;
            program
                .attach()
                .map_err(|source| EbpfError::Program { name, source })?;
        }
        let take =
            |ebpf: &mut Ebpf, name: &'static str| ebpf.take_map(name).ok_or(EbpfError::NoMap(name));
        let marks =
            RingBuf::try_from(take(&mut ebpf, maps::MARKS)?).map_err(|source| EbpfError::Map {
                name: maps::MARKS,
                source,
            })?;
        let counters =
            PerCpuArray::try_from(take(&mut ebpf, maps::COUNTERS)?).map_err(|source| {
                EbpfError::Map {
                    name: maps::COUNTERS,
                    source,
                }
            })?;
        let watched =
            BpfHashMap::try_from(take(&mut ebpf, maps::WATCHED_NETNS)?).map_err(|source| {
                EbpfError::Map {
                    name: maps::WATCHED_NETNS,
                    source,
                }
            })?;
        let mut programs = Self {
            marks: Some(MarkRing(marks)),
            counters,
            watched,
            _ebpf: ebpf,
        };
        for &inode in watch {
            programs.watch(inode)?;
        }
        Ok(programs)
    }

    /// Marks the sockets of the network namespace with this inode from now on.
    pub fn watch(&mut self, inode: u32) -> Result<(), EbpfError> {
        self.watched
            .insert(inode, 1, 0)
            .map_err(|source| EbpfError::Map {
                name: maps::WATCHED_NETNS,
                source,
            })
    }

    /// Stops marking the sockets of that namespace (a namespace no longer watched: its inode
    /// number may be reused by a new one).
    pub fn unwatch(&mut self, inode: u32) {
        if let Err(e) = self.watched.remove(&inode) {
            tracing::debug!(inode, error = %e, "namespace was not watched");
        }
    }

    /// The ring buffer of marks, for the one reader that drains it; `None` once taken.
    pub fn take_marks(&mut self) -> Option<MarkRing> {
        self.marks.take()
    }

    /// The kernel-side counters, summed over CPUs.
    pub fn counters(&self) -> Result<KernelCounters, EbpfError> {
        let total = |counter: Counter| -> Result<u64, EbpfError> {
            let values =
                self.counters
                    .get(&(counter as u32), 0)
                    .map_err(|source| EbpfError::Map {
                        name: maps::COUNTERS,
                        source,
                    })?;
            Ok(values.iter().copied().fold(0u64, u64::wrapping_add))
        };
        Ok(KernelCounters {
            submitted: total(Counter::Submitted)?,
            ring_full: total(Counter::RingFull)?,
            map_full: total(Counter::MapFull)?,
            read_failed: total(Counter::ReadFailed)?,
        })
    }
}

/// An error and its sources in one line, down to the errno (`Operation not permitted` without
/// CAP_BPF), each cause once: aya's messages repeat their sources' text.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// Decodes one ring-buffer record.
fn mark_from_bytes(bytes: &[u8]) -> Option<Mark> {
    if bytes.len() != size_of::<Mark>() {
        return None;
    }
    // SAFETY: `Mark` is plain `#[repr(C)]` data valid for any bit pattern, and the length was
    // checked; `read_unaligned` makes no alignment assumption.
    Some(unsafe { bytes.as_ptr().cast::<Mark>().read_unaligned() })
}

/// The inode number of a network namespace file (`/proc/<pid>/ns/net`, a bind mount under
/// `/run/netns`): what the programs compare `net->ns.inum` with.
pub fn netns_inode(path: &Path) -> Result<u32, EbpfError> {
    use std::os::unix::fs::MetadataExt as _;
    let netns = |source| EbpfError::Netns {
        path: path.display().to_string(),
        source,
    };
    let inode = std::fs::metadata(path).map_err(netns)?.ino();
    u32::try_from(inode).map_err(|_| {
        netns(std::io::Error::other(format!(
            "inode {inode} does not fit ns_common.inum (u32)"
        )))
    })
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; lift it (best effort: later kernels
/// do not need it, and the load error says so if an old one does).
fn raise_memlock() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_MEMLOCK) {
        let _ = setrlimit(Resource::RLIMIT_MEMLOCK, hard, hard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_decode_only_at_their_size() {
        let mark = Mark {
            cookie: 0x1122_3344_5566_7788,
            marked_ns: 42,
            netns: 4_026_531_840,
            bound_if: 3,
            family: 10,
            local_port: 443,
            remote_port: 50_000,
            state: 1,
            hook: 0,
            local_addr: [1; 16],
            remote_addr: [2; 16],
        };
        // SAFETY: viewing plain data as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(std::ptr::from_ref(&mark).cast::<u8>(), size_of::<Mark>())
        };
        assert_eq!(mark_from_bytes(bytes), Some(mark));
        assert_eq!(mark_from_bytes(&bytes[1..]), None);
        assert_eq!(mark_from_bytes(&[bytes, &[0]].concat()), None);
    }

    #[test]
    fn error_chains_name_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: {0}")]
        struct Outer(#[source] Middle);
        #[derive(Debug, thiserror::Error)]
        #[error("middle")]
        struct Middle(#[source] std::io::Error);
        let e = Outer(Middle(std::io::Error::from_raw_os_error(libc::EPERM)));
        assert_eq!(
            error_chain(&e),
            "outer: middle: Operation not permitted (os error 1)"
        );
    }

    #[test]
    fn netns_inode_of_this_process() {
        let inode = netns_inode(Path::new("/proc/self/ns/net")).unwrap();
        assert!(inode > 0);
        assert!(netns_inode(Path::new("/nonexistent/ns/net")).is_err());
    }
}

#[cfg(test)]
pub(crate) mod load_tests {
    use super::*;
    use crate::sockdiag::testutil::{self, TestNetns};
    use tcp_info_common::Hook;

    /// Whether this test can load programs: the object must be embedded and we must be root.
    /// Skips with a reason outside CI; under `CI=true` it fails instead.
    pub(crate) fn can_load() -> bool {
        let reason = if !EMBEDDED {
            "the eBPF object is not embedded (run `cargo xtask build-ebpf`)"
        } else if
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() } == 0 {
            return true;
        } else {
            "loading eBPF programs needs root"
        };
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: {reason}"
        );
        eprintln!("skipping: {reason}");
        false
    }

    /// The programs load and attach on this kernel, and a connection in a watched namespace is
    /// marked (cookie, tuple, namespace) while one in another namespace is not.
    #[test]
    fn programs_load_and_mark_only_watched_namespaces() {
        if !can_load() {
            return;
        }
        let (Some(watched), Some(other)) = (TestNetns::create(), TestNetns::create()) else {
            return;
        };
        let inode = netns_inode(watched.path()).unwrap();
        let mut programs = Programs::load(Duration::from_millis(10), &[inode], false).unwrap();
        let mut ring = programs.take_marks().unwrap();
        assert!(programs.take_marks().is_none(), "one reader only");
        let mut out = Vec::new();
        ring.drain(&mut out);
        let seen = testutil::connections(&watched, "127.0.0.1:0", 2);
        let unseen = testutil::connections(&other, "127.0.0.1:0", 2);
        std::thread::sleep(Duration::from_millis(50));
        out.clear();
        let (read, malformed) = ring.drain(&mut out);
        assert_eq!(malformed, 0);
        assert_eq!(read, out.len());
        for c in &seen.conns {
            for (sock, cookie) in [(&c.client, c.client_cookie), (&c.server, c.server_cookie)] {
                let m = out
                    .iter()
                    .find(|m| m.cookie == cookie && m.hook == Hook::SetState as u8)
                    .unwrap_or_else(|| panic!("no state-change mark for {cookie:x}: {out:?}"));
                assert_eq!(m.netns, inode);
                assert_eq!(m.family, 2);
                assert_eq!(m.local_port, sock.local_addr().unwrap().port());
                assert_eq!(m.remote_port, sock.peer_addr().unwrap().port());
                assert_eq!(&m.local_addr[..4], &[127, 0, 0, 1]);
                assert_eq!(m.state, 1, "ESTABLISHED");
            }
        }
        for c in &unseen.conns {
            assert!(
                !out.iter()
                    .any(|m| m.cookie == c.client_cookie || m.cookie == c.server_cookie),
                "a connection of an unwatched namespace was marked"
            );
        }
        let counters = programs.counters().unwrap();
        assert!(counters.submitted >= 4, "{counters:?}");
        assert_eq!(counters.ring_full, 0);
    }

    /// With `skip_loopback` (the daemon's `-exclude-local`), loopback connections are never
    /// marked: they would be excluded anyway.
    #[test]
    fn loopback_sockets_are_not_marked_when_excluded() {
        if !can_load() {
            return;
        }
        let Some(ns) = TestNetns::create() else {
            return;
        };
        let inode = netns_inode(ns.path()).unwrap();
        let mut programs = Programs::load(Duration::from_millis(10), &[inode], true).unwrap();
        let v4 = testutil::connections(&ns, "127.0.0.1:0", 2);
        let v6 = testutil::connections(&ns, "[::1]:0", 2);
        std::thread::sleep(Duration::from_millis(50));
        let mut out = Vec::new();
        programs.take_marks().unwrap().drain(&mut out);
        assert!(out.is_empty(), "loopback sockets marked: {out:?}");
        assert!(programs.counters().unwrap().submitted == 0);
        drop((v4, v6));
    }
}
