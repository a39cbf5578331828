//! Types shared by the eBPF programs (`tcp-info-ebpf`) and the daemon that loads them
//! (`tcp-info`): the mark a program sends when a socket's statistics changed, the configuration
//! the loader hands the programs, the names of the maps and programs, and the indices of the
//! kernel-side counters.
//!
//! Everything is `#[repr(C)]` plain data with explicit padding, so both sides agree on the layout
//! whatever compiler builds them; the `user` feature adds the `aya::Pod` impls the daemon needs.
#![no_std]

/// A socket the kernel reported as changed: what the daemon needs to query it exactly (SPEC §13)
/// and to measure how long the query took. One mark per socket per poll interval at most.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// The socket cookie (`bpf_get_socket_cookie`), the same value as `SO_COOKIE` and inet_diag.
    pub cookie: u64,
    /// `bpf_ktime_get_ns()` when the mark was made (`CLOCK_MONOTONIC`).
    pub marked_ns: u64,
    /// The inode number of the socket's network namespace (`net->ns.inum`).
    pub netns: u32,
    /// `sk_bound_dev_if`: the device the socket is bound to, 0 if none (`idiag_if`).
    pub bound_if: u32,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u16,
    /// Local port, host order.
    pub local_port: u16,
    /// Remote port, host order.
    pub remote_port: u16,
    /// The new TCP state for a state-change mark, [`NO_STATE`] otherwise.
    pub state: u8,
    /// Which hook made the mark (a [`Hook`] as `u8`).
    pub hook: u8,
    /// Local address: 4 bytes for `AF_INET` (the rest zero), 16 for `AF_INET6`, network order.
    pub local_addr: [u8; 16],
    /// Remote address, as `local_addr`.
    pub remote_addr: [u8; 16],
}

/// [`Mark::state`] of a mark that is not about a state change.
pub const NO_STATE: u8 = u8::MAX;

/// The hooks that mark sockets (SPEC §14.1), as [`Mark::hook`].
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `sock:inet_sock_set_state`: a state change (never rate-limited).
    SetState = 0,
    /// `tcp:tcp_retransmit_skb`: a retransmission.
    Retransmit = 1,
    /// `tcp:tcp_probe`: a segment received in ESTABLISHED (an ACK on a sender).
    Probe = 2,
    /// `tcp:tcp_rcv_space_adjust`: data copied to the application (receiver side).
    RcvSpace = 3,
}

impl Hook {
    /// Every hook, in `u8` order.
    pub const ALL: [Self; 4] = [
        Self::SetState,
        Self::Retransmit,
        Self::Probe,
        Self::RcvSpace,
    ];

    /// The hook with this number, if any.
    pub const fn from_u8(n: u8) -> Option<Self> {
        match n {
            0 => Some(Self::SetState),
            1 => Some(Self::Retransmit),
            2 => Some(Self::Probe),
            3 => Some(Self::RcvSpace),
            _ => None,
        }
    }
}

/// Byte offsets of the kernel fields the programs read. Rust eBPF has no CO-RE relocations, so
/// the loader resolves them from the running kernel's BTF (`/sys/kernel/btf/vmlinux`) and hands
/// them over in [`Config`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offsets {
    /// `struct sock`: `sk_protocol` (u16).
    pub sk_protocol: u32,
    /// `struct sock` → `__sk_common.skc_family` (u16).
    pub family: u32,
    /// `skc_num`: local port, host order (u16).
    pub local_port: u32,
    /// `skc_dport`: remote port, network order (u16).
    pub remote_port: u32,
    /// `skc_rcv_saddr`: local IPv4 address (4 bytes).
    pub local_v4: u32,
    /// `skc_daddr`: remote IPv4 address (4 bytes).
    pub remote_v4: u32,
    /// `skc_v6_rcv_saddr`: local IPv6 address (16 bytes).
    pub local_v6: u32,
    /// `skc_v6_daddr`: remote IPv6 address (16 bytes).
    pub remote_v6: u32,
    /// `skc_bound_dev_if` (i32).
    pub bound_if: u32,
    /// `skc_net`: the `struct net *` (possible_net_t).
    pub net: u32,
    /// `struct net` → `ns.inum` (u32).
    pub net_inum: u32,
    /// Keeps the size a multiple of 8.
    pub pad: u32,
}

/// What the loader hands the programs, as the read-only global [`CONFIG_SYMBOL`] (`.rodata`:
/// the verifier sees constants).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Config {
    /// A socket is marked at most once per this many nanoseconds (state changes excepted): the
    /// poll interval.
    pub interval_ns: u64,
    /// Field offsets of the running kernel.
    pub offsets: Offsets,
    /// [`SKIP_LOOPBACK`] or 0.
    pub flags: u32,
    /// Keeps the size a multiple of 8.
    pub pad: u32,
}

/// [`Config::flags`]: never mark a socket whose local address is loopback (`127.0.0.0/8`, `::1`,
/// `::ffff:127.0.0.0/104`). The daemon sets it when it excludes such connections anyway
/// (`-exclude-local`, SPEC §8.2), so that local chatter (metrics scrapes, sidecars on
/// localhost) costs no exact queries.
pub const SKIP_LOOPBACK: u32 = 1;

/// Name of the [`Config`] global in the object.
pub const CONFIG_SYMBOL: &str = "CONFIG";

/// Map names.
pub mod maps {
    /// `BPF_MAP_TYPE_RINGBUF` (Linux 5.8) of [`Mark`](super::Mark)s.
    pub const MARKS: &str = "MARKS";
    /// `BPF_MAP_TYPE_LRU_HASH` (Linux 4.10): socket cookie → time of its last mark (ns),
    /// [`IGNORED`](super::IGNORED) for a socket never to mark (loopback, when skipped), or
    /// [`unwatched`](super::unwatched) for a socket of a namespace that was not watched.
    pub const LAST_MARK: &str = "LAST_MARK";
    /// `BPF_MAP_TYPE_HASH`: network namespace inode → 1 for every namespace to watch.
    pub const WATCHED_NETNS: &str = "WATCHED_NETNS";
    /// `BPF_MAP_TYPE_PERCPU_ARRAY` of u64 counters, indexed by [`Counter`](super::Counter).
    pub const COUNTERS: &str = "COUNTERS";
}

/// [`maps::LAST_MARK`] value of a socket never to mark (a loopback socket when those are
/// skipped): recognised with one lookup per event.
pub const IGNORED: u64 = u64::MAX;

/// High half of the [`maps::LAST_MARK`] value of a socket whose namespace was not watched when
/// it was last seen; the low half is the namespace's inode. Such a socket costs one more lookup
/// per event (is its namespace watched now?), and is marked as soon as the daemon watches its
/// namespace (`--netns all` adds namespaces as they appear). `bpf_ktime_get_ns` never reaches
/// these values (they are centuries of uptime).
pub const UNWATCHED_TAG: u64 = 0xFFFF_FFFE_0000_0000;

/// The [`maps::LAST_MARK`] value of a socket of the unwatched namespace `netns`.
pub const fn unwatched(netns: u32) -> u64 {
    UNWATCHED_TAG | netns as u64
}

/// The namespace of a [`maps::LAST_MARK`] value made by [`unwatched`], if it is one.
pub const fn unwatched_netns(value: u64) -> Option<u32> {
    if value & 0xFFFF_FFFF_0000_0000 == UNWATCHED_TAG {
        Some(value as u32)
    } else {
        None
    }
}

/// Capacity of [`maps::MARKS`] in bytes (a power of two, a multiple of the page size): room for
/// about 58 000 marks, the marks of 20 000 busy sockets for almost three poll intervals.
pub const MARKS_BYTES: u32 = 4 << 20;
/// Entries of [`maps::LAST_MARK`]. An evicted entry only costs one extra mark.
pub const LAST_MARK_ENTRIES: u32 = 1 << 17;
/// Entries of [`maps::WATCHED_NETNS`].
pub const WATCHED_NETNS_ENTRIES: u32 = 4096;

/// Kernel-side counters, as indices into [`maps::COUNTERS`].
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Marks submitted to the ring buffer.
    Submitted = 0,
    /// Marks lost because the ring buffer was full.
    RingFull = 1,
    /// Last-mark times that could not be stored (the LRU map refused the update).
    MapFull = 2,
    /// A socket field could not be read (the mark was not made).
    ReadFailed = 3,
}

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Self; 4] = [
        Self::Submitted,
        Self::RingFull,
        Self::MapFull,
        Self::ReadFailed,
    ];
}

/// Number of counters in [`maps::COUNTERS`].
pub const COUNTERS: u32 = Counter::ALL.len() as u32;

/// The programs, by the kernel tracepoint each attaches to (`tp_btf`, Linux 5.5 with BTF;
/// `bpf_get_socket_cookie` in tracing programs needs 5.12).
pub mod programs {
    /// `sock:inet_sock_set_state`.
    pub const SET_STATE: &str = "inet_sock_set_state";
    /// `tcp:tcp_retransmit_skb`.
    pub const RETRANSMIT: &str = "tcp_retransmit_skb";
    /// `tcp:tcp_probe`.
    pub const PROBE: &str = "tcp_probe";
    /// `tcp:tcp_rcv_space_adjust`.
    pub const RCV_SPACE: &str = "tcp_rcv_space_adjust";
    /// `tcp:tcp_destroy_sock` (forgets the socket's last-mark time).
    pub const DESTROY: &str = "tcp_destroy_sock";
    /// Every program; each is named after its tracepoint.
    pub const ALL: [&str; 5] = [SET_STATE, RETRANSMIT, PROBE, RCV_SPACE, DESTROY];
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` data without implicit padding, valid for any bit pattern.
    unsafe impl aya::Pod for super::Mark {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Config {}
}

// The layouts both sides rely on: no implicit padding anywhere.
const _: () = assert!(size_of::<Mark>() == 64);
const _: () = assert!(size_of::<Offsets>() == 48);
const _: () = assert!(size_of::<Config>() == 64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwatched_values_name_their_namespace_and_never_meet_times_or_ignored() {
        for netns in [0, 1, 0xF000_0000, u32::MAX] {
            let value = unwatched(netns);
            assert_eq!(unwatched_netns(value), Some(netns));
            assert_ne!(value, IGNORED);
        }
        // Times (ns since boot, for the next five centuries) and IGNORED are not such values.
        for value in [0, 1, 5 * 365 * 24 * 3600 * 1_000_000_000 * 100, IGNORED] {
            assert_eq!(unwatched_netns(value), None, "{value:#x}");
        }
    }
}
