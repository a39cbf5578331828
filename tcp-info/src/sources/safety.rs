//! When the eBPF source's safety-net sweeps run, namespace by namespace.
//!
//! A dump walks the kernel's whole socket hash, whichever namespace asks (SPEC §13.6), so
//! sweeping P namespaces costs P walks of every socket of the node: with 100 pods of 200
//! connections each, sweeping all of them every 5 s took a fifth of a core. Marks already
//! report every change of a watched socket, and a mark the kernel could not deliver is counted;
//! what the safety net is for is the rest. So:
//! - the daemon's own namespace, and any namespace that had a mark since its last sweep, is
//!   swept every safety interval, as before namespaces existed (a mark brings an idle
//!   namespace's sweep forward to at most an interval away);
//! - an idle namespace (no mark since its last sweep) is swept every [`IDLE_FACTOR`] intervals,
//!   spread out so that idle namespaces do not all come due at once;
//! - when the kernel counts a lost mark, every namespace is swept at the next round (the loss
//!   could be anyone's);
//! - when the close source loses destroy notifications, every namespace is swept at the next
//!   round and once more after the close grace: the pipeline closes a connection a sweep
//!   misses only once a sweep after the grace misses it too, and an idle namespace's next
//!   sweep may be minutes away.

use crate::namespaces::NetnsId;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// An idle namespace is swept every this many safety intervals (2 minutes at the default 5 s).
pub(super) const IDLE_FACTOR: u32 = 24;

/// The safety net's schedule.
#[derive(Debug)]
pub(super) struct SafetyNet {
    interval: Duration,
    own: NetnsId,
    /// When each namespace's next sweep is due.
    due: BTreeMap<NetnsId, Instant>,
    /// Namespaces with a mark since their last sweep.
    marked: BTreeSet<NetnsId>,
    /// When every namespace is swept again after lost destroy notifications.
    closes_due: Option<Instant>,
}

impl SafetyNet {
    /// A schedule sweeping active namespaces every `interval`; `own` always counts as active.
    pub(super) fn new(interval: Duration, own: NetnsId) -> Self {
        Self {
            interval,
            own,
            due: BTreeMap::new(),
            marked: BTreeSet::new(),
            closes_due: None,
        }
    }

    /// A namespace to sweep from `at` on.
    pub(super) fn add(&mut self, netns: NetnsId, at: Instant) {
        self.due.insert(netns, at);
    }

    /// A namespace swept just now, outside the schedule (when it was added): next due an
    /// interval from now.
    pub(super) fn just_swept(&mut self, netns: NetnsId, now: Instant) {
        self.due.insert(netns, now + self.interval);
    }

    /// A namespace no longer watched.
    pub(super) fn remove(&mut self, netns: NetnsId) {
        self.due.remove(&netns);
        self.marked.remove(&netns);
    }

    /// A mark came from `netns`: it is active, so swept at most an interval from now.
    pub(super) fn marked(&mut self, netns: NetnsId, now: Instant) {
        if self.marked.insert(netns)
            && let Some(due) = self.due.get_mut(&netns)
        {
            *due = (*due).min(now + self.interval);
        }
    }

    /// The kernel lost marks: every namespace is swept at the next round.
    pub(super) fn lost(&mut self, now: Instant) {
        for due in self.due.values_mut() {
            *due = (*due).min(now);
        }
    }

    /// The close source lost destroy notifications: every namespace is swept at the next round
    /// and again once `grace` and an interval have passed (the margin covers the time between
    /// this call and the first of those sweeps, from which the pipeline counts the grace).
    pub(super) fn lost_closes(&mut self, now: Instant, grace: Duration) {
        self.lost(now);
        self.closes_due = Some(now + grace + self.interval);
    }

    /// The namespaces due now, each rescheduled: an interval on if it is the own namespace or
    /// was marked since its last sweep, else [`IDLE_FACTOR`] intervals on, plus a spread of up
    /// to half of that derived from its inode.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<NetnsId> {
        if self.closes_due.is_some_and(|at| at <= now) {
            self.closes_due = None;
            self.lost(now);
        }
        let mut due = Vec::new();
        for (&netns, at) in &mut self.due {
            if *at > now {
                continue;
            }
            due.push(netns);
            let active = netns == self.own || self.marked.remove(&netns);
            *at = if active {
                now + self.interval
            } else {
                let idle = self.interval * IDLE_FACTOR;
                now + idle + idle.mul_f64(f64::from(netns % 64) / 128.0)
            };
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: NetnsId = 1;
    const S: Duration = Duration::from_secs(5);

    #[test]
    fn own_and_marked_namespaces_every_interval_idle_ones_rarely() {
        let t0 = Instant::now();
        let mut net = SafetyNet::new(S, OWN);
        for n in [OWN, 2, 3] {
            net.add(n, t0);
        }
        assert_eq!(net.take_due(t0), [OWN, 2, 3], "all at start-up");
        // 2 and 3 had no mark: idle. A mark on 2 brings its sweep to an interval away.
        let t1 = t0 + Duration::from_secs(1);
        net.marked(2, t1);
        net.marked(2, t1 + S);
        assert_eq!(net.take_due(t0 + S), [OWN]);
        assert_eq!(net.take_due(t1 + S), [2]);
        // Marked before that sweep: one more an interval later; no mark since, so idle again.
        assert_eq!(net.take_due(t0 + S * 3), [OWN, 2]);
        assert_eq!(net.take_due(t0 + S * 5), [OWN]);
        let idle = S * IDLE_FACTOR;
        // 3's spread (3/128 of the idle interval) puts it after the bare idle interval.
        assert!(!net.take_due(t0 + idle).contains(&3));
        assert_eq!(net.take_due(t0 + S * 3 + idle + idle / 2), [OWN, 2, 3]);
    }

    #[test]
    fn a_lost_mark_sweeps_everyone_at_once_and_removed_namespaces_never() {
        let t0 = Instant::now();
        let mut net = SafetyNet::new(S, OWN);
        for n in [OWN, 2, 3] {
            net.add(n, t0);
        }
        net.take_due(t0);
        net.remove(3);
        let t1 = t0 + Duration::from_secs(1);
        assert!(net.take_due(t1).is_empty());
        net.lost(t1);
        assert_eq!(net.take_due(t1), [OWN, 2]);
    }

    #[test]
    fn lost_closes_sweep_everyone_at_once_and_again_after_the_grace() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(10);
        let mut net = SafetyNet::new(S, OWN);
        for n in [OWN, 2, 3] {
            net.add(n, t0);
        }
        net.take_due(t0);
        let t1 = t0 + Duration::from_secs(1);
        net.lost_closes(t1, grace);
        assert_eq!(net.take_due(t1), [OWN, 2, 3]);
        // Idle namespaces wait for the follow-up; the own one keeps its interval.
        assert_eq!(net.take_due(t1 + S), [OWN]);
        assert_eq!(net.take_due(t1 + S * 2), [OWN]);
        assert_eq!(net.take_due(t1 + grace + S), [OWN, 2, 3]);
        // Once: then idle again.
        assert_eq!(net.take_due(t1 + grace + S * 2), [OWN]);
        assert!(!net.take_due(t1 + grace + S * 3 + S / 2).contains(&2));
    }
}
