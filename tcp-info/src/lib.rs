//! tcp-info: record `tcp_info` for every TCP connection of a Linux host, in the archive format of
//! m-lab/tcp-info.
//!
//! The library has two sides, and the compiler keeps them apart:
//! - the **parser side** (always built, any OS): [`wire`] (what the kernel sends), [`tcpinfo`],
//!   [`record`], [`snapshot`], [`diff`], [`csv`], [`etl`] and [`uuid`]. It reads and writes
//!   archives and builds records from raw netlink bytes.
//! - the **collector side** (feature `collector`, on by default, Linux only): [`sockdiag`] (the
//!   sock_diag sockets), [`ebpf`], `sources` → [`pipeline`] → [`saver`], [`events`] and
//!   [`metrics`], with the rules applied on the way ([`exclude`], [`anonymize`]), the
//!   collection [`mode`] and the watched network [`namespaces`].
//!
//! `cargo build -p tcp-info --no-default-features` builds the parser side alone (CI does), so
//! nothing on the parser side can reach into the collector side. The daemon's command line and
//! wiring live in the `tcp-info` binary, not here. docs/ARCHITECTURE.md draws the whole picture;
//! docs/compatibility.md is the contract with upstream that comments cite as "SPEC §N" and "D<n>".

#![deny(missing_docs)]

// ---- parser side ----
pub mod csv;
pub mod diff;
pub mod etl;
/// A connection's life drawn from its archive records, as SVG or PNG (feature `plot`).
#[cfg(feature = "plot")]
pub mod plot;
pub mod record;
pub mod snapshot;
pub mod tcpinfo;
pub mod uuid;
pub mod wire;

// ---- collector side ----
#[cfg(all(feature = "collector", target_os = "linux"))]
pub mod anonymize;
#[cfg(all(feature = "collector", feature = "plot", target_os = "linux"))]
pub mod api;
#[cfg(all(feature = "collector", target_os = "linux"))]
pub mod ebpf;
#[cfg(all(feature = "collector", target_os = "linux"))]
pub mod events;
#[cfg(all(feature = "collector", target_os = "linux"))]
pub mod exclude;
#[cfg(all(feature = "collector", target_os = "linux"))]
pub mod http;
#[cfg(all(feature = "collector", target_os = "linux"))]
pub mod metrics;
#[cfg(all(feature = "collector", target_os = "linux"))]
pub mod mode;
#[cfg(all(feature = "collector", target_os = "linux"))]
pub mod namespaces;
#[cfg(all(feature = "collector", target_os = "linux"))]
pub mod pipeline;
#[cfg(all(feature = "collector", target_os = "linux"))]
pub mod saver;
#[cfg(all(feature = "collector", target_os = "linux"))]
pub mod sockdiag;
#[cfg(all(feature = "collector", target_os = "linux"))]
pub mod sources;
#[cfg(all(test, feature = "collector", target_os = "linux"))]
mod test_net;
#[cfg(all(test, feature = "collector", target_os = "linux"))]
mod test_runtime;
