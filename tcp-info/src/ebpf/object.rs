//! The eBPF object, embedded at build time when `cargo xtask build-ebpf` has built it (see
//! `build.rs`). A build without it still works, in sweep mode only.

/// Whether this build embeds the eBPF object.
pub const EMBEDDED: bool = cfg!(tcp_info_ebpf);

/// The object's bytes (aligned as aya requires), if embedded.
#[cfg(tcp_info_ebpf)]
pub(super) static OBJECT: Option<&[u8]> =
    Some(aya::include_bytes_aligned!(env!("TCP_INFO_EBPF_OBJECT")));

/// The object's bytes, if embedded: not in this build.
#[cfg(not(tcp_info_ebpf))]
pub(super) static OBJECT: Option<&[u8]> = None;
