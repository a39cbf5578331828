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
//! - when the close source loses destroy notifications (a receive-buffer overrun), every
//!   namespace is swept at the next round and then counts as active for [`closes_window`]: the
//!   pipeline closes a connection that a sweep misses only when a sweep at least the close
//!   grace later misses it too, and an idle namespace's next sweep may be minutes away.

use crate::namespaces::NetnsId;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// An idle namespace is swept every this many safety intervals (2 minutes at the default 5 s).
pub(super) const IDLE_FACTOR: u32 = 24;

/// How long, after an overrun is counted, the close source may still lose notifications: the
/// kernel drops every notification for a congested listener until the daemon has read its
/// whole queue (about 52 000 notifications, well under a second to read), and the first
/// sweep may wait for the pipeline. A bound, with room to spare.
const DRAIN: Duration = Duration::from_secs(5);

/// How long every namespace counts as active after an overrun counted at time 0, so that a
/// connection whose notification was lost is closed after the close grace wherever it was: it
/// is first missed by a sweep within [`DRAIN`] and an interval, and the namespace is then
/// swept every interval until a sweep at least the grace after that one (the last sweep of
/// the window comes at or after its end).
pub(super) fn closes_window(grace: Duration, interval: Duration) -> Duration {
    grace + interval * 2 + DRAIN
}

/// The safety net's schedule.
#[derive(Debug)]
pub(super) struct SafetyNet {
    interval: Duration,
    own: NetnsId,
    /// When each namespace's next sweep is due.
    due: BTreeMap<NetnsId, Instant>,
    /// Namespaces with a mark since their last sweep.
    marked: BTreeSet<NetnsId>,
    /// Until when every namespace counts as active, after lost destroy notifications.
    closes_until: Option<Instant>,
}

impl SafetyNet {
    /// A schedule sweeping active namespaces every `interval`; `own` always counts as active.
    pub(super) fn new(interval: Duration, own: NetnsId) -> Self {
        Self {
            interval,
            own,
            due: BTreeMap::new(),
            marked: BTreeSet::new(),
            closes_until: None,
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
    /// (unless a window is already open: an overrun on every round does not sweep on every
    /// round) and counts as active until [`closes_window`] from now.
    pub(super) fn lost_closes(&mut self, now: Instant, grace: Duration) {
        if self.closes_until.is_none_or(|until| until <= now) {
            self.lost(now);
        }
        let until = now + closes_window(grace, self.interval);
        self.closes_until = Some(self.closes_until.map_or(until, |u| u.max(until)));
    }

    /// The namespaces due now, each rescheduled: an interval on if it is the own namespace, was
    /// marked since its last sweep, or destroy notifications were lost (within the window of
    /// [`Self::lost_closes`]); else [`IDLE_FACTOR`] intervals on, plus a spread of up to half
    /// of that derived from its inode.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<NetnsId> {
        let closing = self.closes_until.is_some_and(|until| now < until);
        let mut due = Vec::new();
        for (&netns, at) in &mut self.due {
            if *at > now {
                continue;
            }
            due.push(netns);
            let marked = self.marked.remove(&netns);
            let active = netns == self.own || marked || closing;
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
    fn lost_closes_make_everyone_active_for_the_window_then_idle_again() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(10);
        let window = closes_window(grace, S);
        let mut net = SafetyNet::new(S, OWN);
        for n in [OWN, 2, 3] {
            net.add(n, t0);
        }
        net.take_due(t0);
        let t1 = t0 + Duration::from_secs(1);
        net.lost_closes(t1, grace);
        assert_eq!(net.take_due(t1), [OWN, 2, 3], "everyone at once");
        // Another overrun a round later: no second sweep of everyone, a longer window.
        let t2 = t1 + Duration::from_millis(10);
        net.lost_closes(t2, grace);
        assert!(net.take_due(t2).is_empty());
        // Every interval while the window lasts, the last sweep at or after its end (held
        // back here by a pipeline that is behind: the sweeps come late, none is skipped).
        let mut at = t1;
        while at < t2 + window {
            at += S + Duration::from_millis(300);
            assert_eq!(net.take_due(at), [OWN, 2, 3], "{:?}", at - t1);
        }
        // Then idle again: 2 and 3 not before the idle interval.
        assert_eq!(net.take_due(at + S), [OWN]);
        assert!(!net.take_due(at + S * (IDLE_FACTOR - 1)).contains(&2));
        assert!(net.take_due(at + S * IDLE_FACTOR * 2).contains(&2));
    }

    /// What the window is for: a connection whose notification was lost by the end of the
    /// drain is first missed by a sweep after that, and missed again by a sweep at least the
    /// grace later, before its namespace goes back to idle.
    #[test]
    fn the_window_covers_a_miss_after_the_drain_plus_the_grace() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(10);
        let mut net = SafetyNet::new(S, OWN);
        net.add(2, t0);
        net.take_due(t0);
        net.lost_closes(t0, grace);
        let mut sweeps = Vec::new();
        let mut at = t0;
        while at < t0 + S * IDLE_FACTOR {
            if net.take_due(at).contains(&2) {
                sweeps.push(at);
            }
            at += Duration::from_millis(100);
        }
        let first_miss = sweeps.iter().find(|&&s| s >= t0 + DRAIN).copied();
        let first_miss = first_miss.unwrap_or_else(|| panic!("{sweeps:?}"));
        // (Within an interval of that: not at some idle sweep minutes later.)
        assert!(
            sweeps
                .iter()
                .any(|&s| s >= first_miss + grace && s <= first_miss + grace + S),
            "{sweeps:?}"
        );
    }
}
