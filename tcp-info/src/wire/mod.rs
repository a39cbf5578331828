//! Byte layouts of what the kernel sends (parser side): netlink framing ([`netlink`]), sock_diag's
//! `inet_diag_msg` and socket id ([`inet_diag`]) and its attributes ([`attr`]).
//!
//! Nothing here does I/O; the collector's sockets live in `sockdiag`, and both the collector and
//! the raw-capture reader ([`crate::record::reader`]) decode through this module.

pub mod attr;
pub mod inet_diag;
pub mod netlink;
