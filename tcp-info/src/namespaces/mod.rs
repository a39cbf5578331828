//! Every network namespace of a node (`--netns`): which namespaces to watch, finding them
//! ([`discover`]), opening sockets inside them ([`Opener`]) and who owns each one
//! ([`attribution`]). The watcher that follows them as they come and go is a source
//! (`sources::netns`).
//!
//! A sock_diag socket sees only the namespace it was created in (SPEC §13.5), so every watched
//! namespace gets its own sockets, each created on a helper thread that entered it: one for
//! dumps and exact queries (the polling source's), one for the pipeline's confirming queries,
//! and a destroy listener (the close source's). Each thread that uses sockets keeps them in a
//! [`Table`], which the watcher updates through a channel: the threads never share a socket.
//!
//! With `--netns self` (the default) there is one namespace, the daemon's own, no watcher and no
//! helper thread: the daemon behaves as before this module existed.

pub mod attribution;
pub mod discover;
mod open;
mod table;

pub use open::{Opened, Opener};
pub use table::{Applied, Change, Table};

use crate::sockdiag::FamilyDump;
use std::path::PathBuf;

/// One namespace's part of a sweep.
#[derive(Debug)]
pub struct NetnsSweep {
    /// The namespace swept.
    pub netns: NetnsId,
    /// Its dumps, AF_INET6 then AF_INET.
    pub families: Vec<FamilyDump>,
}

/// A network namespace, named by its inode number (`net->ns.inum`, `ls -iL /proc/PID/ns/net`):
/// what the eBPF programs report in each mark, and unique on the node while the namespace lives.
pub type NetnsId = u32;

/// Which network namespaces the daemon watches (`--netns`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Scope {
    /// Its own (`self`, the default).
    #[default]
    Own,
    /// Every namespace of the node (`all`): those of processes (`/proc/*/ns/net`) and named
    /// ones (bind mounts under `/run/netns`), followed as they come and go.
    All,
    /// These namespace files (`/run/netns/NAME`, `/proc/PID/ns/net`, …), followed until each
    /// disappears.
    Paths(Vec<PathBuf>),
}

impl Scope {
    /// Parses `self`, `all` or a comma-separated list of paths.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "self" => Ok(Self::Own),
            "all" => Ok(Self::All),
            "" => Err("expected self, all or a list of namespace paths".into()),
            paths => {
                let paths: Vec<PathBuf> = paths
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
                    .collect();
                if let Some(relative) = paths.iter().find(|p| !p.is_absolute()) {
                    return Err(format!(
                        "namespace path {} is not absolute",
                        relative.display()
                    ));
                }
                Ok(Self::Paths(paths))
            }
        }
    }
}

/// Whether socket cookies are unique across namespaces: from Linux 5.12 they come from one
/// counter for the whole kernel; before, each namespace had its own, so two namespaces can
/// hand out the same cookie.
pub fn cookies_are_global(kernel_release: &str) -> bool {
    kernel_at_least(kernel_release, 5, 12)
}

/// Whether a kernel release string (`uname -r`, e.g. `6.1.0-18-amd64`) is at least
/// `major.minor`. An unreadable release counts as old.
pub fn kernel_at_least(kernel_release: &str, major: u32, minor: u32) -> bool {
    let mut parts = kernel_release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

/// The key a connection is tracked and archived under (its UUID is `<prefix>_<%016X key>`).
///
/// Where cookies are global, or for the daemon's own namespace, it is the socket cookie, as
/// upstream. On kernels before 5.12 the cookies of other namespaces can collide with each
/// other's, so there the key is the namespace inode in the high 32 bits and the cookie's low
/// 32 bits below: unique on the node as long as a namespace generates fewer than 2³² cookies
/// (cookies are made lazily, only for sockets that are asked about). Namespace inodes are at
/// least 0xF000_0000, so these keys cannot meet an own-namespace cookie either.
pub fn connection_key(global_cookies: bool, own: NetnsId, netns: NetnsId, cookie: u64) -> u64 {
    if global_cookies || netns == own {
        cookie
    } else {
        (u64::from(netns) << 32) | (cookie & 0xFFFF_FFFF)
    }
}

/// The release of the running kernel (`uname -r`), empty if unknown.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_parsing() {
        assert_eq!(Scope::parse("self"), Ok(Scope::Own));
        assert_eq!(Scope::parse("all"), Ok(Scope::All));
        assert_eq!(
            Scope::parse("/run/netns/a,/proc/1/ns/net"),
            Ok(Scope::Paths(vec![
                "/run/netns/a".into(),
                "/proc/1/ns/net".into()
            ]))
        );
        assert!(Scope::parse("").is_err());
        assert!(
            Scope::parse("run/netns/a")
                .unwrap_err()
                .contains("not absolute")
        );
    }

    #[test]
    fn cookies_are_global_from_5_12() {
        assert!(cookies_are_global("6.18.0-1-cloud-amd64"));
        assert!(cookies_are_global("5.12.0"));
        assert!(!cookies_are_global("5.11.22"));
        assert!(!cookies_are_global("4.19.0-21-amd64"));
        assert!(!cookies_are_global(""));
        assert!(kernel_at_least("6.5.0", 6, 5));
        assert!(kernel_at_least("10.0", 6, 5));
        assert!(!kernel_at_least("6.4.16-arch1", 6, 5));
        assert!(!kernel_at_least("garbage", 4, 0));
    }

    #[test]
    fn keys_stay_unique_without_global_cookies() {
        let own = 0xF000_0001;
        assert_eq!(connection_key(true, own, 0xF000_0002, 5), 5);
        assert_eq!(connection_key(false, own, own, 5), 5);
        let a = connection_key(false, own, 0xF000_0002, 5);
        let b = connection_key(false, own, 0xF000_0003, 5);
        assert_ne!(a, b);
        assert_eq!(a, 0xF000_0002_0000_0005);
    }
}
