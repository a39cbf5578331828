//! The sockets one thread holds, one per watched namespace, and the channel that updates them.

use super::NetnsId;
use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, TryRecvError};

/// A namespace appeared (with the thread's socket for it) or went away.
#[derive(Debug)]
pub enum Change<S> {
    /// Watch this namespace with this socket.
    Added(NetnsId, S),
    /// Stop watching this namespace: its socket is dropped.
    Removed(NetnsId),
}

/// The sockets of one thread, by namespace, kept up to date by the watcher's [`Change`]s.
#[derive(Debug)]
pub struct Table<S> {
    sockets: BTreeMap<NetnsId, S>,
    changes: Option<Receiver<Change<S>>>,
}

/// What [`Table::update`] applied.
#[derive(Debug, PartialEq, Eq)]
pub struct Applied<S> {
    /// Namespaces added.
    pub added: Vec<NetnsId>,
    /// Namespaces removed, with their sockets (to drain, or drop).
    pub removed: Vec<(NetnsId, S)>,
}

impl<S> Table<S> {
    /// A table with one namespace that never changes (`--netns self`).
    pub fn fixed(netns: NetnsId, socket: S) -> Self {
        Self {
            sockets: BTreeMap::from([(netns, socket)]),
            changes: None,
        }
    }

    /// A table starting with `initial` and following `changes`.
    pub fn following(initial: Vec<(NetnsId, S)>, changes: Receiver<Change<S>>) -> Self {
        Self {
            sockets: initial.into_iter().collect(),
            changes: Some(changes),
        }
    }

    /// Applies the changes that arrived since the last call (never waits).
    pub fn update(&mut self) -> Applied<S> {
        let mut applied = Applied {
            added: Vec::new(),
            removed: Vec::new(),
        };
        let Some(changes) = &self.changes else {
            return applied;
        };
        loop {
            match changes.try_recv() {
                Ok(Change::Added(netns, socket)) => {
                    self.sockets.insert(netns, socket);
                    applied.added.push(netns);
                }
                Ok(Change::Removed(netns)) => {
                    if let Some(socket) = self.sockets.remove(&netns) {
                        applied.removed.push((netns, socket));
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    // The watcher stopped (shutdown): keep what we have.
                    self.changes = None;
                    break;
                }
            }
        }
        applied
    }

    /// The socket of `netns`, if watched.
    pub fn get_mut(&mut self, netns: NetnsId) -> Option<&mut S> {
        self.sockets.get_mut(&netns)
    }

    /// Takes the socket of `netns` out of the table.
    pub fn remove(&mut self, netns: NetnsId) -> Option<S> {
        self.sockets.remove(&netns)
    }

    /// Every namespace and its socket, in inode order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (NetnsId, &mut S)> {
        self.sockets.iter_mut().map(|(&n, s)| (n, s))
    }

    /// Number of namespaces.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Whether no namespace is watched.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_changes_in_order() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut table = Table::following(vec![(1, "a")], rx);
        tx.send(Change::Added(2, "b")).unwrap();
        tx.send(Change::Removed(1)).unwrap();
        tx.send(Change::Removed(9)).unwrap();
        assert_eq!(
            table.update(),
            Applied {
                added: vec![2],
                removed: vec![(1, "a")]
            }
        );
        assert_eq!(
            table.iter_mut().map(|(n, s)| (n, *s)).collect::<Vec<_>>(),
            [(2, "b")]
        );
        drop(tx);
        assert_eq!(
            table.update(),
            Applied {
                added: vec![],
                removed: vec![]
            }
        );
        assert_eq!(table.len(), 1);
    }
}
