//! The collection mode: how the collector finds what changed.

/// The sources that run besides the close source. Which one runs is decided at start-up (the
/// daemon's `-mode auto` tries eBPF first); it is exported as `tcpinfo_mode{mode}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Full dumps every poll interval, as upstream.
    Sweep,
    /// eBPF marks with exact queries, plus rare safety-net sweeps.
    Ebpf,
}
