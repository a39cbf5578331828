//! The tcp-info kernel programs (DESIGN §1, SPEC §14): BTF tracepoints on the hooks that mean
//! "this socket's statistics changed" mark the socket — at most once per poll interval, state
//! changes always — by sending its cookie, tuple and namespace through a ring buffer. The daemon
//! drains the marks every poll interval and asks the kernel for exactly those sockets.
//!
//! Cost on the hot path (a busy socket, every received segment): one cookie read, one LRU
//! lookup and a clock read. Sockets of namespaces the daemon does not watch are remembered as
//! ignored in the same LRU map, so they cost the same.
//!
//! Build: `cargo xtask build-ebpf` (nightly, `bpfel-unknown-none`, bpf-linker). For any other
//! target the crate builds as an empty program, so that workspace-wide `cargo build`, `clippy`
//! and `test` on the host check this code too.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![expect(
    clippy::needless_pass_by_value,
    reason = "the btf_tracepoint macro hands each program its context by value"
)]

use aya_ebpf::helpers::bpf_probe_read_kernel;
use aya_ebpf::helpers::generated::{bpf_get_socket_cookie, bpf_ktime_get_ns};
use aya_ebpf::macros::{btf_tracepoint, map};
use aya_ebpf::maps::{HashMap, LruHashMap, PerCpuArray, RingBuf};
use aya_ebpf::programs::BtfTracePointContext;
use core::ffi::c_void;
use tcp_info_common::{
    COUNTERS as COUNTER_SLOTS, Config, Counter, Hook, IGNORED, LAST_MARK_ENTRIES, MARKS_BYTES,
    Mark, NO_STATE, Offsets, SKIP_LOOPBACK, WATCHED_NETNS_ENTRIES, unwatched, unwatched_netns,
};

/// Marks for the daemon.
#[map(name = "MARKS")]
static MARKS: RingBuf = RingBuf::with_byte_size(MARKS_BYTES, 0);

/// Socket cookie → time of its last mark, or `IGNORED`.
#[map(name = "LAST_MARK")]
static LAST_MARK: LruHashMap<u64, u64> = LruHashMap::with_max_entries(LAST_MARK_ENTRIES, 0);

/// Network namespaces to watch (inode → 1).
#[map(name = "WATCHED_NETNS")]
static WATCHED_NETNS: HashMap<u32, u8> = HashMap::with_max_entries(WATCHED_NETNS_ENTRIES, 0);

/// Kernel-side counters (see `Counter`).
#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Set by the loader before the programs load (`.rodata`).
#[unsafe(no_mangle)]
static CONFIG: Config = Config {
    interval_ns: 0,
    offsets: Offsets {
        sk_protocol: 0,
        family: 0,
        local_port: 0,
        remote_port: 0,
        local_v4: 0,
        remote_v4: 0,
        local_v6: 0,
        remote_v6: 0,
        bound_if: 0,
        net: 0,
        net_inum: 0,
        pad: 0,
    },
    flags: 0,
    pad: 0,
};

const IPPROTO_TCP: u16 = 6;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
/// TCP states that are not worth a query: SYN_SENT (no local port yet, SPEC §14.3), SYN_RECV
/// (a passive child not yet established: its ESTABLISHED mark follows at once, and sweeps do
/// not list SYN_RECV either), CLOSE (already unhashed: invisible to sock_diag; its destroy
/// notification carries the final record) and LISTEN (not a connection).
const TCP_SYN_SENT: i32 = 2;
const TCP_SYN_RECV: i32 = 3;
const TCP_CLOSE: i32 = 7;
const TCP_LISTEN: i32 = 10;
/// `BPF_RB_NO_WAKEUP`: the daemon drains on its own clock, so a mark normally wakes no one.
const BPF_RB_NO_WAKEUP: u64 = 1;
/// `BPF_RB_FORCE_WAKEUP`: wake the reader now.
const BPF_RB_FORCE_WAKEUP: u64 = 2;
/// `BPF_RB_AVAIL_DATA`: `bpf_ringbuf_query` returns the bytes not yet consumed.
const BPF_RB_AVAIL_DATA: u64 = 0;
/// Fill level at which a mark wakes the reader: a burst is drained early, long before the ring
/// is full, while a quiet host causes no wake-up at all.
const WAKE_AT_BYTES: u64 = MARKS_BYTES as u64 / 4;
/// Only the marks that find the fill level within this band above [`WAKE_AT_BYTES`] wake the
/// reader (a band, not the exact crossing, because CPUs submit concurrently). Beyond it the
/// reader has been woken already; a reader that is not draining (its consumer is behind) is
/// not woken again and again from the hot path.
const WAKE_BAND_BYTES: u64 = MARKS_BYTES as u64 / 64;

/// The mark interval alone: the hot path reads one field, not the whole configuration.
fn interval_ns() -> u64 {
    // SAFETY: as `config`.
    unsafe { core::ptr::read_volatile(&raw const CONFIG.interval_ns) }
}

fn config() -> Config {
    // SAFETY: a plain read of a global the loader initialised; volatile so that the compiler
    // does not fold in the zero default.
    unsafe { core::ptr::read_volatile(&raw const CONFIG) }
}

fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: a valid, aligned u64 map value of this CPU. Programs run with migration (not
        // preemption) disabled, so a softirq program can interrupt another on the same CPU
        // between this load and store and one increment is lost: these counters may undercount
        // in that rare case. (`bpfel-unknown-none` has no atomic read-modify-write in `core`.)
        unsafe { slot.write_volatile(slot.read_volatile() + 1) };
    }
}

/// Reads a `T` at `offset` bytes into the kernel object at `base`.
fn read<T>(base: *const u8, offset: u32) -> Result<T, ()> {
    // Plain address arithmetic: the pointer is the kernel's, not one Rust may assume in bounds.
    let at = base.wrapping_add(offset as usize).cast::<T>();
    // SAFETY: bpf_probe_read_kernel checks the address; a failure is returned, not faulted.
    unsafe { bpf_probe_read_kernel(at) }.map_err(|_| ())
}

fn cookie_of(sk: *const u8) -> u64 {
    // SAFETY: `sk` is the tracepoint's `struct sock *` argument (a BTF pointer the helper
    // accepts in tracing programs, Linux 5.12).
    unsafe { bpf_get_socket_cookie(sk.cast_mut().cast::<c_void>()) }
}

/// Marks `sk` unless it was marked less than an interval ago (`always` skips that check) or
/// belongs to a namespace nobody watches.
fn mark(sk: *const u8, hook: Hook, state: u8, always: bool) {
    let cookie = cookie_of(sk);
    // SAFETY: kernel time, no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(slot) = LAST_MARK.get_ptr(cookie) {
        // SAFETY: a valid, aligned map value; read once, volatile, because other CPUs update it
        // concurrently (a stale value only moves one mark by an interval).
        let last = unsafe { core::ptr::read_volatile(slot) };
        if last == IGNORED {
            return;
        }
        if let Some(netns) = unwatched_netns(last) {
            // SAFETY: a lookup in our own hash map.
            if unsafe { WATCHED_NETNS.get(netns) }.is_none() {
                return;
            }
            // Its namespace is watched now: mark it.
        } else if !always && now.wrapping_sub(last) < interval_ns() {
            return;
        }
    }
    let cfg = config();
    let Ok(mark) = describe(sk, &cfg.offsets, cookie, now, hook, state) else {
        count(Counter::ReadFailed);
        return;
    };
    // SAFETY: as above.
    let watched = unsafe { WATCHED_NETNS.get(mark.netns) }.is_some();
    let ignored = if !watched {
        unwatched(mark.netns)
    } else if cfg.flags & SKIP_LOOPBACK != 0 && is_loopback(&mark) {
        IGNORED
    } else {
        0
    };
    if ignored != 0 {
        if LAST_MARK.insert(cookie, ignored, 0).is_err() {
            count(Counter::MapFull);
        }
        return;
    }
    let pending = MARKS.query(BPF_RB_AVAIL_DATA);
    let wake = if (WAKE_AT_BYTES..WAKE_AT_BYTES + WAKE_BAND_BYTES).contains(&pending) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    if MARKS.output::<Mark>(&mark, wake).is_err() {
        // Not remembered as marked: the socket's next event tries again.
        count(Counter::RingFull);
        return;
    }
    count(Counter::Submitted);
    if LAST_MARK.insert(cookie, now, 0).is_err() {
        count(Counter::MapFull);
    }
}

/// Whether the socket's local address is loopback: 127.0.0.0/8, `::1` or `::ffff:127.0.0.0/104`.
fn is_loopback(mark: &Mark) -> bool {
    let a = &mark.local_addr;
    if mark.family == AF_INET {
        return a[0] == 127;
    }
    let (head, tail) = a.split_at(10);
    if head.iter().all(|&b| b == 0) {
        // `::1`, or v4-mapped.
        return (tail[..5].iter().all(|&b| b == 0) && tail[5] == 1)
            || (tail[0] == 0xff && tail[1] == 0xff && tail[2] == 127);
    }
    false
}

/// Reads what the daemon needs to query `sk`.
fn describe(
    sk: *const u8,
    off: &Offsets,
    cookie: u64,
    now: u64,
    hook: Hook,
    state: u8,
) -> Result<Mark, ()> {
    let net: *const u8 = read(sk, off.net)?;
    let family: u16 = read(sk, off.family)?;
    let mut mark = Mark {
        cookie,
        marked_ns: now,
        netns: read(net, off.net_inum)?,
        bound_if: read::<i32>(sk, off.bound_if)? as u32,
        family,
        local_port: read(sk, off.local_port)?,
        remote_port: u16::from_be(read(sk, off.remote_port)?),
        state,
        hook: hook as u8,
        local_addr: [0; 16],
        remote_addr: [0; 16],
    };
    if family == AF_INET6 {
        mark.local_addr = read(sk, off.local_v6)?;
        mark.remote_addr = read(sk, off.remote_v6)?;
    } else if family == AF_INET {
        let local: [u8; 4] = read(sk, off.local_v4)?;
        let remote: [u8; 4] = read(sk, off.remote_v4)?;
        mark.local_addr[..4].copy_from_slice(&local);
        mark.remote_addr[..4].copy_from_slice(&remote);
    } else {
        return Err(());
    }
    Ok(mark)
}

/// `sock:inet_sock_set_state(const struct sock *sk, int oldstate, int newstate)`.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: BtfTracePointContext) -> i32 {
    let sk: *const u8 = ctx.arg(0);
    let newstate: i32 = ctx.arg(2);
    if newstate == TCP_CLOSE {
        // A socket back in CLOSE may connect again (same cookie, another address): its next
        // state change decides afresh whether it is watched or ignored.
        let _ = LAST_MARK.remove(cookie_of(sk));
        return 0;
    }
    if matches!(newstate, TCP_SYN_SENT | TCP_SYN_RECV | TCP_LISTEN) {
        return 0;
    }
    match read::<u16>(sk, config().offsets.sk_protocol) {
        Ok(IPPROTO_TCP) => mark(sk, Hook::SetState, newstate as u8, true),
        Ok(_) => {}
        Err(()) => count(Counter::ReadFailed),
    }
    0
}

/// `tcp:tcp_retransmit_skb(const struct sock *sk, const struct sk_buff *skb, int err)`.
#[btf_tracepoint(function = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb(ctx: BtfTracePointContext) -> i32 {
    mark(ctx.arg(0), Hook::Retransmit, NO_STATE, false);
    0
}

/// `tcp:tcp_probe(struct sock *sk, const struct sk_buff *skb)`: every segment received in
/// ESTABLISHED, so the rate limit matters most here.
#[btf_tracepoint(function = "tcp_probe")]
pub fn tcp_probe(ctx: BtfTracePointContext) -> i32 {
    mark(ctx.arg(0), Hook::Probe, NO_STATE, false);
    0
}

/// `tcp:tcp_rcv_space_adjust(struct sock *sk)`.
#[btf_tracepoint(function = "tcp_rcv_space_adjust")]
pub fn tcp_rcv_space_adjust(ctx: BtfTracePointContext) -> i32 {
    mark(ctx.arg(0), Hook::RcvSpace, NO_STATE, false);
    0
}

/// `tcp:tcp_destroy_sock(struct sock *sk)`: forgets the socket, whose final record the destroy
/// notification (the close source) delivers.
#[btf_tracepoint(function = "tcp_destroy_sock")]
pub fn tcp_destroy_sock(ctx: BtfTracePointContext) -> i32 {
    let cookie = cookie_of(ctx.arg(0));
    // Absent (never marked) is fine.
    let _ = LAST_MARK.remove(cookie);
    0
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// On the host the programs are only type-checked: there is nothing to run.
#[cfg(not(target_arch = "bpf"))]
fn main() {}

/// `bpf_probe_read_kernel` and `bpf_get_socket_cookie` need a GPL-compatible license.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
