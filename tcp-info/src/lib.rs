//! tcp-info: record `tcp_info` for every TCP connection of a Linux host, in the archive format of
//! m-lab/tcp-info.
//!
//! The crate has two sides:
//! - the **parser side** (`nlmsg`, `inetdiag`, `tcpinfo`, `record`, `snapshot`, `diff`, `csv`,
//!   `etl`, `uuid`), which reads and writes archives and builds records from raw netlink bytes; it builds
//!   on any OS and never depends on the collector side;
//! - the **collector side** (Linux only): the daemon's configuration (`cli`), sock_diag I/O
//!   (`netlink`), `sources` → `pipeline` → `saver`, `events` and `metrics`, and the rules applied
//!   on the way (`exclude`, `anonymize`), wired together by `daemon`.

// ---- parser side ----
pub mod csv;
pub mod diff;
pub mod etl;
pub mod inetdiag;
pub mod nlmsg;
pub mod record;
pub mod snapshot;
pub mod tcpinfo;
pub mod uuid;

// ---- collector side (Linux only) ----
#[cfg(target_os = "linux")]
pub mod anonymize;
#[cfg(target_os = "linux")]
pub mod cli;
#[cfg(target_os = "linux")]
pub mod daemon;
#[cfg(target_os = "linux")]
pub mod ebpf;
#[cfg(target_os = "linux")]
pub mod events;
#[cfg(target_os = "linux")]
pub mod exclude;
#[cfg(target_os = "linux")]
pub mod metrics;
#[cfg(target_os = "linux")]
pub mod netlink;
#[cfg(target_os = "linux")]
pub mod pipeline;
#[cfg(target_os = "linux")]
pub mod saver;
#[cfg(target_os = "linux")]
pub mod sources;
