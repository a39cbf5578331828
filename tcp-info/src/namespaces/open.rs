//! Opening a namespace's sockets, and naming its owner.

use super::NetnsId;
use super::attribution::{Attributor, Owner};
use super::discover::Found;
use crate::record::NetnsTag;
use crate::sockdiag::{self, DestroyListener, DiagSocket, SockDiagError};
use std::sync::Arc;

/// The sockets a namespace needs, created inside it, and who owns it.
#[derive(Debug)]
pub struct Opened {
    /// The namespace.
    pub netns: NetnsId,
    /// Its `Netns` tag for archives and events.
    pub tag: Arc<NetnsTag>,
    /// For the polling source: dumps and exact queries of marked sockets.
    pub poll: DiagSocket,
    /// For the pipeline: the exact queries that confirm a connection is gone. Its own socket,
    /// because a socket busy with a dump answers exact queries with EBUSY (SPEC §13.3).
    pub lookup: DiagSocket,
    /// For the close source, when it runs.
    pub destroy: Option<DestroyListener>,
}

/// Opens namespaces' sockets with the daemon's settings.
#[derive(Debug, Clone)]
pub struct Opener {
    /// The daemon's own namespace: its sockets are opened directly, needing no `setns`.
    pub own: NetnsId,
    /// Receive buffer of the polling socket (`-rcvbuf`).
    pub rcvbuf: usize,
    /// Receive buffer of destroy listeners; `None` when no close source runs.
    pub destroy_rcvbuf: Option<usize>,
    /// Reads who owns a namespace; `None` tags namespaces by inode alone.
    pub attributor: Option<Attributor>,
}

impl Opener {
    /// Opens the sockets of `netns`, found at `found`: in one helper thread that entered the
    /// namespace (SPEC §13.5), or directly for the daemon's own. A destroy listener that
    /// cannot be opened is logged and left out (the sweeps then close that namespace's
    /// connections, as upstream).
    pub fn open(&self, netns: NetnsId, found: &Found) -> Result<Opened, SockDiagError> {
        let make = || -> Result<_, SockDiagError> {
            let poll = DiagSocket::open(self.rcvbuf)?;
            let lookup = DiagSocket::open(sockdiag::DEFAULT_RCVBUF)?;
            let destroy = self
                .destroy_rcvbuf
                .map(DestroyListener::open)
                .transpose()
                .unwrap_or_else(|e| {
                    tracing::warn!(netns, error = %e, "no destroy listener in this namespace");
                    None
                });
            Ok((poll, lookup, destroy))
        };
        let (poll, lookup, destroy) = if netns == self.own {
            make()?
        } else {
            sockdiag::in_netns(&found.path, make)??
        };
        Ok(Opened {
            netns,
            tag: Arc::new(self.tag(netns, found)),
            poll,
            lookup,
            destroy,
        })
    }

    /// The namespace's tag: its inode, and its owner when attribution is on and a process
    /// lives in it.
    pub fn tag(&self, netns: NetnsId, found: &Found) -> NetnsTag {
        let owner = match (&self.attributor, found.pid) {
            (Some(attributor), Some(pid)) => attributor.owner(pid),
            _ => Owner::default(),
        };
        NetnsTag {
            inode: netns,
            pod_uid: owner.pod_uid,
            container_id: owner.container_id,
            pod_namespace: owner.pod_namespace,
            pod_name: owner.pod_name,
        }
    }
}
