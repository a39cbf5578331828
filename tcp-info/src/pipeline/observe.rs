//! The connection cache and the decisions made for every record.

use super::{ArchiveSink, EventSink, Lookup};
use crate::diff::{self, Change};
use crate::events::EventKind;
use crate::exclude::{Excluded, Exclusions};
use crate::metrics::rates::{CycleBytes, RateAccounting};
use crate::metrics::{ExactQueryOutcome, ExclusionReason, Metrics, Source, Unmarked};
use crate::namespaces::{self, NetnsId, NetnsSweep};
use crate::record::{ArchivalRecord, Attributes, NetnsTag, ParsedPayload, Timestamp};
use crate::sockdiag::{Checked, ExactReply, ExactTarget, Family, FamilyDump, Payloads};
use crate::tcpinfo;
use crate::uuid::Prefix;
use crate::wire::attr;
use crate::wire::inet_diag::{AF_INET, AF_INET6, InetDiagMsg};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Index of `INET_DIAG_INFO` in the attribute array.
const INFO: usize = attr::INFO as usize;

/// How long a destroyed connection's cookie is remembered, so that a sweep read before the
/// destroy notification cannot resurrect it, nor its time-wait minisock (which keeps the cookie
/// for up to `tcp_fin_timeout`, 60 s by default) open a second file. See [`Pipeline::destroyed`].
const TOMBSTONE_TTL: Duration = Duration::from_secs(120);

/// How long the cookie of a connection closed *without* its destroy notification is
/// remembered, so that a late notification (a socket an application keeps in CLOSE, which no
/// sock_diag query can see) cannot reopen it: no second Open, file or Close for one UUID. A
/// day: such closes are rare (a lost notification, a socket held in CLOSE for longer than the
/// close grace) and an entry costs a few dozen bytes.
const CLOSED_WITHOUT_DESTROY_TTL: Duration = Duration::from_secs(24 * 3600);

/// Why a cookie is remembered after its connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Its destroy notification ended it.
    Destroyed,
    /// It was closed because the sweeps and an exact query no longer found it; its destroy
    /// notification may still come.
    WithoutDestroy,
}

/// A remembered cookie: why, and until when.
#[derive(Debug, Clone, Copy)]
struct Tombstone {
    ended: Ended,
    until: Instant,
}

/// Settings of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Which sockets to ignore.
    pub exclusions: Exclusions,
    /// UUID prefix for events.
    pub prefix: Prefix,
    /// How long a connection missing from sweeps stays open waiting for its destroy
    /// notification (which carries the exact final counters) before it is confirmed gone with
    /// an exact query and closed without one. A connection that entered TIME_WAIT leaves the
    /// dumps just before the kernel announces its destruction; one whose application keeps the
    /// socket in CLOSE leaves them until the application closes it (sock_diag cannot see a
    /// socket in CLOSE: it is unhashed). Zero when no close source runs: a missing connection
    /// closes at once, as upstream.
    pub close_grace: Duration,
    /// eBPF mode: marks report changes and sweeps are the safety net, so every record a sweep
    /// writes is one no mark reported (`tcpinfo_ebpf_unmarked_changes_total`).
    pub safety_net: bool,
    /// The daemon's own network namespace: known from the start; the others are added and
    /// removed as the namespace watcher finds them.
    pub own_netns: NetnsId,
    /// Whether socket cookies are unique across namespaces (Linux ≥ 5.12); if not, other
    /// namespaces' connections get keys of their own (see [`namespaces::connection_key`]).
    pub global_cookies: bool,
    /// `--netns.attribution`: archives' Metadata lines and events carry the `Netns` key.
    pub attribution: bool,
}

impl PipelineConfig {
    /// Settings for the daemon's own namespace alone, without attribution: upstream's
    /// behaviour.
    pub fn new(exclusions: Exclusions, prefix: Prefix) -> Self {
        Self {
            exclusions,
            prefix,
            close_grace: Duration::ZERO,
            safety_net: false,
            own_netns: 0,
            global_cookies: true,
            attribution: false,
        }
    }
}

/// Where a batch of payloads comes from: looked up once per namespace and batch, not per
/// payload.
#[derive(Debug, Clone, Copy)]
struct Origin {
    netns: NetnsId,
    /// Whether a sweep covered this namespace before (see [`Space::swept`]).
    swept: bool,
}

/// A watched namespace, as the pipeline knows it.
struct Space {
    tag: Arc<NetnsTag>,
    /// Exact queries confirming closes in this namespace.
    lookup: Option<Box<dyn Lookup>>,
    /// Whether a sweep covered it yet (its first sweep finds what existed before it was
    /// watched: no mark could have reported that).
    swept: bool,
}

/// What the cache keeps per connection: the previous poll's record (SPEC §6.1) and the last
/// byte counters seen, for rate accounting of connections whose latest record lacks tcp_info.
#[derive(Debug)]
struct Conn {
    last: ArchivalRecord,
    /// Its network namespace.
    netns: NetnsId,
    /// Its namespace's tag when it opened (`--netns.attribution`), for its Close event.
    tag: Option<Arc<NetnsTag>>,
    /// The sweep cycle that last saw it (0 = only seen by another source).
    seen: u64,
    sent: u64,
    received: u64,
    /// When a sweep first missed it (monotonic, and as the Close event's time).
    missing_since: Option<(Instant, Timestamp)>,
}

impl Conn {
    /// Adds this connection's last byte counters to a rate cycle: live if its latest record
    /// carries tcp_info, closing (a time-wait minisock) otherwise.
    fn add_bytes(&self, bytes: &mut CycleBytes) {
        if self.last.attribute(INFO).is_some() {
            bytes.live_sent += self.sent;
            bytes.live_received += self.received;
        } else {
            bytes.closing_sent += self.sent;
            bytes.closing_received += self.received;
        }
    }
}

/// The pipeline: owns the cache and drives the sinks.
pub struct Pipeline<A, E> {
    config: PipelineConfig,
    archive: A,
    events: E,
    metrics: Arc<Metrics>,
    rates: RateAccounting,
    cache: HashMap<u64, Conn>,
    /// Cookies of ended connections that a late record must not reopen.
    tombstones: HashMap<u64, Tombstone>,
    /// The watched namespaces; records of others are dropped.
    spaces: HashMap<NetnsId, Space>,
    cycle: u64,
    last_cycle_end: Option<Instant>,
    /// Bytes sent and received by connections ended since the last rate sample.
    ended: (u64, u64),
}

impl<A: ArchiveSink, E: EventSink> Pipeline<A, E> {
    /// A pipeline writing to `archive` and `events`.
    pub fn new(config: PipelineConfig, archive: A, events: E, metrics: Arc<Metrics>) -> Self {
        let rates = RateAccounting::new(&metrics);
        Self {
            spaces: HashMap::new(),
            config,
            archive,
            events,
            metrics,
            rates,
            cache: HashMap::new(),
            tombstones: HashMap::new(),
            cycle: 0,
            last_cycle_end: None,
            ended: (0, 0),
        }
    }

    /// Accepts records of the own namespace (`PipelineConfig::own_netns`), tagged with its
    /// inode alone, from the start. (The daemon instead adds every namespace it watches with
    /// [`Self::add_namespace`].)
    #[must_use]
    pub fn with_own_namespace(mut self) -> Self {
        let netns = self.config.own_netns;
        let tag = Arc::new(NetnsTag {
            inode: netns,
            ..NetnsTag::default()
        });
        self.add_namespace(netns, tag, None);
        self
    }

    /// Confirms with `lookup` that a connection of the own namespace is gone before closing
    /// it: one the sweeps stopped listing but an exact query still finds is recorded and kept
    /// open.
    #[must_use]
    pub fn with_lookup(mut self, lookup: Box<dyn Lookup>) -> Self {
        if !self.spaces.contains_key(&self.config.own_netns) {
            self = self.with_own_namespace();
        }
        if let Some(own) = self.spaces.get_mut(&self.config.own_netns) {
            own.lookup = Some(lookup);
        }
        self
    }

    /// Starts accepting records of `netns` (or updates its tag and lookup), tagged `tag`,
    /// confirming its closes with `lookup`.
    pub fn add_namespace(
        &mut self,
        netns: NetnsId,
        tag: Arc<NetnsTag>,
        lookup: Option<Box<dyn Lookup>>,
    ) {
        tracing::info!(netns, owner = ?tag, "watching a network namespace");
        let swept = self.spaces.get(&netns).is_some_and(|s| s.swept);
        self.spaces.insert(netns, Space { tag, lookup, swept });
        self.metrics.netns_watched.set(self.spaces.len() as i64);
    }

    /// Tags the connections of `netns` opened from now on with `tag` (its owner was found
    /// after it was added).
    pub fn retag_namespace(&mut self, netns: NetnsId, tag: Arc<NetnsTag>) {
        if let Some(space) = self.spaces.get_mut(&netns) {
            space.tag = tag;
        }
    }

    /// A namespace went away: each of its connections ends now, as upstream ends a connection
    /// a sweep no longer lists (its final records came first, through the close source), and
    /// its records are no longer accepted.
    pub fn remove_namespace(&mut self, netns: NetnsId, now: Instant) {
        let timestamp = Timestamp::now();
        let ended: Vec<u64> = self
            .cache
            .iter()
            .filter_map(|(&key, conn)| (conn.netns == netns).then_some(key))
            .collect();
        tracing::info!(netns, connections = ended.len(), "network namespace gone");
        for key in ended {
            self.end(key, timestamp, now);
        }
        self.spaces.remove(&netns);
        self.metrics.netns_watched.set(self.spaces.len() as i64);
        self.metrics
            .connections_tracked
            .set(self.cache.len() as i64);
    }

    /// Number of connections in the cache.
    pub fn tracked(&self) -> usize {
        self.cache.len()
    }

    /// The archive sink (for tests and statistics).
    pub fn archive(&self) -> &A {
        &self.archive
    }

    /// The event sink.
    pub fn events(&self) -> &E {
        &self.events
    }

    /// The metrics the pipeline updates.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Gives the sinks back (after [`shutdown`](Self::shutdown)).
    pub fn into_sinks(self) -> (A, E) {
        (self.archive, self.events)
    }

    /// Handles one sweep cycle of the own namespace (see [`Self::sweep_namespaces`]).
    pub fn sweep(&mut self, families: &[FamilyDump], now: Instant) {
        let netns = self.config.own_netns;
        self.sweep_parts(&[(netns, families)], now);
    }

    /// Handles one sweep cycle: for each namespace swept, each family's dump result with the
    /// time it completed. Only connections of these namespaces can be found missing, and a
    /// family whose dump failed keeps its previous state: none of its connections in that
    /// namespace is closed this cycle (D12).
    pub fn sweep_namespaces(&mut self, sweeps: &[NetnsSweep], now: Instant) {
        let parts: Vec<(NetnsId, &[FamilyDump])> = sweeps
            .iter()
            .map(|s| (s.netns, s.families.as_slice()))
            .collect();
        self.sweep_parts(&parts, now);
    }

    fn sweep_parts(&mut self, parts: &[(NetnsId, &[FamilyDump])], now: Instant) {
        self.cycle += 1;
        let cycle = self.cycle;
        let mut bytes = CycleBytes::default();
        // Per namespace swept: whether each family's dump failed. Sorted by namespace and
        // searched for every cached connection: one comparison with one namespace.
        let mut failed: Vec<(NetnsId, [bool; 2])> = Vec::with_capacity(parts.len());
        let mut rate_second = None;
        // Whether any dump of this cycle succeeded: the first one makes the daemon ready.
        let mut completed = false;
        for &(netns, families) in parts {
            let Some(origin) = self.origin(netns) else {
                continue;
            };
            failed.push((netns, [false; 2]));
            let Some((_, failed)) = failed.last_mut() else {
                continue;
            };
            for dump in families {
                let (family, timestamp) = (dump.family, dump.timestamp);
                let Some(payloads) = &dump.payloads else {
                    failed[usize::from(family == Family::Inet)] = true;
                    continue;
                };
                completed = true;
                if family == Family::Inet {
                    rate_second = Some(timestamp.unix_secs());
                }
                for payload in payloads {
                    self.observe(payload, origin, timestamp, Source::Sweep, now);
                }
            }
            if let Some(space) = self.spaces.get_mut(&netns) {
                space.swept = true;
            }
        }
        if completed {
            self.metrics.set_ready();
        }
        failed.sort_unstable_by_key(|&(netns, _)| netns);
        // In eBPF mode rates are accounted every second by `tick`, sweeps being rare.
        let rate_second = rate_second.filter(|_| !self.config.safety_net);
        if rate_second.is_some() {
            self.take_ended(&mut bytes);
        }
        // Closes: connections this cycle did not see, unless their family's dump failed, once
        // the grace for their destroy notification has passed. Every connection still in the
        // cache counts as live for the rates; those that end count as closed from the next
        // cycle on.
        let detected = Timestamp::now();
        let grace = self.config.close_grace;
        let mut gone = Vec::new();
        for (&cookie, conn) in &mut self.cache {
            let family_failed = failed
                .binary_search_by_key(&conn.netns, |&(netns, _)| netns)
                .map_or(true, |i| {
                    failed[i].1[usize::from(conn.last.raw_idm()[0] == AF_INET)]
                });
            if conn.seen != cycle && !family_failed {
                let (since, at) = *conn.missing_since.get_or_insert((now, detected));
                if now.saturating_duration_since(since) >= grace {
                    gone.push((cookie, at));
                }
            }
            conn.add_bytes(&mut bytes);
        }
        let gone = self.confirm_gone(gone, now);
        for (cookie, at) in gone {
            self.end(cookie, at, now);
            if !grace.is_zero() {
                // A close source runs, so this connection's destroy notification may still
                // come (a socket held in CLOSE): it must not reopen the connection.
                self.bury(cookie, Ended::WithoutDestroy, now);
            }
        }
        if let Some(second) = rate_second {
            self.rates.end_cycle(second, &bytes);
        }
        let tracked = self.cache.len();
        self.metrics.cache_count.observe(tracked as f64);
        self.metrics.connections_tracked.set(tracked as i64);
        // In eBPF mode the eBPF source's rounds are the polling cycles; it observes them.
        if !self.config.safety_net
            && let Some(previous) = self.last_cycle_end.replace(now)
        {
            self.metrics
                .polling_interval
                .observe(now.duration_since(previous).as_secs_f64());
        }
    }

    /// Handles the current records of sockets the eBPF programs marked (exact-query replies
    /// already checked against their targets), by namespace: archived if changed, like a
    /// sweep's, but no connection is closed for being absent.
    pub fn refreshed(
        &mut self,
        batches: &[(NetnsId, Payloads)],
        timestamp: Timestamp,
        now: Instant,
    ) {
        for (netns, payloads) in batches {
            let Some(origin) = self.origin(*netns) else {
                continue;
            };
            for payload in payloads {
                self.observe(payload, origin, timestamp, Source::Ebpf, now);
            }
        }
        self.metrics.set_ready();
        self.metrics
            .connections_tracked
            .set(self.cache.len() as i64);
    }

    /// Handles destroy notifications: each payload is its socket's last state. It is archived
    /// if it differs from the previous record (so even a connection shorter than the poll
    /// interval gets a file with exact final counters), then the connection ends at once.
    pub fn destroyed(
        &mut self,
        netns: NetnsId,
        payloads: &Payloads,
        timestamp: Timestamp,
        now: Instant,
    ) {
        let Some(origin) = self.origin(netns) else {
            return;
        };
        for payload in payloads {
            if let Some(cookie) = self.observe(payload, origin, timestamp, Source::Close, now) {
                self.end(cookie, timestamp, now);
                self.bury(cookie, Ended::Destroyed, now);
            }
        }
        self.metrics
            .connections_tracked
            .set(self.cache.len() as i64);
    }

    /// Periodic housekeeping; in eBPF mode also the per-second rate accounting (SPEC §9.4).
    pub fn tick(&mut self, now: Instant) {
        self.archive.tick(now);
        self.tombstones.retain(|_, t| t.until > now);
        if self.config.safety_net {
            let second = Timestamp::now().unix_secs();
            if self.rates.due(second) {
                let mut bytes = CycleBytes::default();
                self.take_ended(&mut bytes);
                for conn in self.cache.values() {
                    conn.add_bytes(&mut bytes);
                }
                self.rates.end_cycle(second, &bytes);
            }
        }
    }

    /// Moves the bytes of the connections ended since the last rate sample into `bytes`.
    fn take_ended(&mut self, bytes: &mut CycleBytes) {
        let (sent, received) = std::mem::take(&mut self.ended);
        bytes.closed_sent = sent;
        bytes.closed_received = received;
    }

    /// Graceful shutdown (D11): a Close event for every open connection, then every file
    /// finished.
    pub fn shutdown(&mut self) {
        let now = Instant::now();
        let timestamp = Timestamp::now();
        let cookies: Vec<u64> = self.cache.keys().copied().collect();
        for cookie in cookies {
            self.end(cookie, timestamp, now);
        }
        self.archive.shutdown();
        self.metrics.connections_tracked.set(0);
    }

    /// The origin of payloads from `netns`; `None` (dropped) for a namespace no longer watched:
    /// its records were in flight when it was removed.
    fn origin(&self, netns: NetnsId) -> Option<Origin> {
        let Some(space) = self.spaces.get(&netns) else {
            tracing::debug!(netns, "records of a namespace no longer watched dropped");
            return None;
        };
        Some(Origin {
            netns,
            swept: space.swept,
        })
    }

    /// Exclusion, record building and change detection for one payload of namespace `netns`.
    /// Returns the key of the connection (its cookie, see [`namespaces::connection_key`]) if
    /// the payload was accepted (not excluded, well-formed, not destroyed, of a watched
    /// namespace).
    fn observe(
        &mut self,
        payload: &[u8],
        origin: Origin,
        timestamp: Timestamp,
        source: Source,
        now: Instant,
    ) -> Option<u64> {
        let Ok(idm) = InetDiagMsg::new(payload) else {
            tracing::warn!(
                len = payload.len(),
                "dropping a sock_diag reply shorter than inet_diag_msg"
            );
            return None;
        };
        if idm.family() != AF_INET && idm.family() != AF_INET6 {
            // SPEC §8.1: only AF_INET and AF_INET6 records are ever written.
            return None;
        }
        if let Some(reason) = self.config.exclusions.check(&idm) {
            self.metrics.excluded.get(exclusion_label(reason)).inc();
            return None;
        }
        if idm.cookie() == 0 {
            return None;
        }
        let netns = origin.netns;
        let cookie = namespaces::connection_key(
            self.config.global_cookies,
            self.config.own_netns,
            netns,
            idm.cookie(),
        );
        if let Some(tombstone) = self.tombstones.get(&cookie) {
            if source == Source::Close && tombstone.ended == Ended::WithoutDestroy {
                // The final record of a connection already closed: its file is finished and
                // is never reopened (SPEC §11.2), so the record is counted, not archived.
                self.metrics.late_destroys.inc();
                tracing::debug!(
                    cookie,
                    "destroy notification after the connection was closed"
                );
                self.bury(cookie, Ended::Destroyed, now);
            }
            return None;
        }
        let parsed = match ParsedPayload::parse(payload) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::warn!(cookie, error = %e, "dropping a malformed sock_diag reply");
                return None;
            }
        };
        if parsed.dropped.count > 0 {
            tracing::debug!(
                cookie,
                count = parsed.dropped.count,
                first_type = parsed.dropped.first_type,
                "attributes above type 38 not archived"
            );
        }
        let (sent, received) = parsed.attribute(INFO).map_or((None, None), |info| {
            (
                tcpinfo::field_u64(info, tcpinfo::BYTES_SENT),
                tcpinfo::field_u64(info, tcpinfo::BYTES_RECEIVED),
            )
        });
        let seen = if source == Source::Sweep {
            self.cycle
        } else {
            0
        };
        // One lookup serves the comparison and the update.
        let conn = self.cache.get_mut(&cookie);
        let change = match diff::compare(&parsed, conn.as_ref().map(|c| &c.last)) {
            Ok(change) => change,
            Err(e) => {
                tracing::warn!(cookie, error = %e, "record not comparable; dropped");
                return None;
            }
        };
        // Unchanged: the new record differs from the cached one only in bytes change detection
        // ignores, so every later comparison gives the same answer against either. Keep the
        // cached record and build nothing (the common case of a sweep).
        let record = change.is_change().then(|| {
            let record = parsed.to_record(timestamp);
            let tag = if self.config.attribution {
                self.spaces.get(&netns).map(|s| &s.tag)
            } else {
                None
            };
            if change == Change::PreviousWasNil {
                let uuid = self.config.prefix.uuid(cookie);
                self.events.open(record.timestamp, &uuid, &idm, tag);
                self.metrics.flow_events.get(EventKind::Open).inc();
            }
            self.metrics.snapshots.inc();
            self.metrics.records.get(source).inc();
            self.metrics
                .attributes_dropped
                .inc_by(u64::from(parsed.dropped.count));
            // The first sweep of a namespace records what existed before it was watched: no
            // mark could have.
            if source == Source::Sweep && self.config.safety_net && origin.swept {
                let kind = if change == Change::PreviousWasNil {
                    Unmarked::New
                } else {
                    Unmarked::Changed
                };
                self.metrics.unmarked_changes.get(kind).inc();
            }
            if let Err(e) = self.archive.write(cookie, &record, tag, now) {
                tracing::warn!(cookie, error = %e, "archiving a record failed");
            }
            record
        });
        match (conn, record) {
            (Some(conn), record) => {
                if let Some(record) = record {
                    conn.last = record;
                }
                conn.seen = seen;
                conn.sent = sent.unwrap_or(conn.sent);
                conn.received = received.unwrap_or(conn.received);
                conn.missing_since = None;
            }
            (None, Some(last)) => {
                self.cache.insert(
                    cookie,
                    Conn {
                        last,
                        netns,
                        tag: if self.config.attribution {
                            self.spaces.get(&netns).map(|s| Arc::clone(&s.tag))
                        } else {
                            None
                        },
                        seen,
                        sent: sent.unwrap_or(0),
                        received: received.unwrap_or(0),
                        missing_since: None,
                    },
                );
            }
            // Without a previous record every payload is a change (PreviousWasNil).
            (None, None) => {}
        }
        Some(cookie)
    }

    /// Remembers an ended connection's cookie (see [`Ended`]).
    fn bury(&mut self, cookie: u64, ended: Ended, now: Instant) {
        let ttl = match ended {
            Ended::Destroyed => TOMBSTONE_TTL,
            Ended::WithoutDestroy => CLOSED_WITHOUT_DESTROY_TTL,
        };
        self.tombstones.insert(
            cookie,
            Tombstone {
                ended,
                until: now + ttl,
            },
        );
    }

    /// Of the connections about to be closed because the sweeps stopped listing them, keeps
    /// those an exact query (in their namespace) still finds in a listed state (recording what
    /// it found, as a sweep would) and those it could not ask about (the query failed: they
    /// wait for the next sweep), and returns the others. Without a lookup all are returned:
    /// closing is upstream's behaviour.
    fn confirm_gone(&mut self, gone: Vec<(u64, Timestamp)>, now: Instant) -> Vec<(u64, Timestamp)> {
        let mut by_netns: HashMap<NetnsId, Vec<(u64, Timestamp)>> = HashMap::new();
        for (key, at) in gone {
            let netns = self
                .cache
                .get(&key)
                .map_or(self.config.own_netns, |c| c.netns);
            by_netns.entry(netns).or_default().push((key, at));
        }
        let mut confirmed = Vec::new();
        for (netns, gone) in by_netns {
            confirmed.extend(self.confirm_gone_in(netns, gone, now));
        }
        confirmed
    }

    /// [`Self::confirm_gone`] for the connections of one namespace.
    fn confirm_gone_in(
        &mut self,
        netns: NetnsId,
        gone: Vec<(u64, Timestamp)>,
        now: Instant,
    ) -> Vec<(u64, Timestamp)> {
        // Taken out while its replies are observed (which needs `self`), then put back.
        let Some(mut lookup) = self.spaces.get_mut(&netns).and_then(|s| s.lookup.take()) else {
            return gone;
        };
        let targets: Vec<Option<ExactTarget>> = gone
            .iter()
            .map(|(cookie, _)| {
                let conn = self.cache.get(cookie)?;
                ExactTarget::of(&InetDiagMsg::new(conn.last.raw_idm()).ok()?)
            })
            .collect();
        let (slots, queried): (Vec<usize>, Vec<ExactTarget>) = targets
            .iter()
            .enumerate()
            .filter_map(|(slot, t)| Some((slot, (*t)?)))
            .unzip();
        let mut replies: Vec<ExactReply> = Vec::with_capacity(queried.len());
        if !queried.is_empty() {
            match lookup.lookup(&queried, &mut replies) {
                Ok(resent) => self
                    .metrics
                    .exact_queries
                    .get(ExactQueryOutcome::Lost)
                    .inc_by(resent as u64),
                Err(e) => {
                    tracing::warn!(netns, error = %e, "exact queries confirming closes failed; retried next sweep");
                }
            }
        }
        if let Some(space) = self.spaces.get_mut(&netns) {
            space.lookup = Some(lookup);
        }
        if queried.is_empty() {
            return gone;
        }
        let Some(origin) = self.origin(netns) else {
            return gone;
        };
        let timestamp = Timestamp::now();
        // Kept unless a reply says gone: a connection nobody could ask about stays open.
        let mut keep: Vec<bool> = targets.iter().map(Option::is_some).collect();
        let unanswered = queried.len().saturating_sub(replies.len());
        self.metrics
            .exact_queries
            .get(ExactQueryOutcome::Error)
            .inc_by(unanswered as u64);
        for reply in &replies {
            let (Some(&slot), Some(target)) = (slots.get(reply.index), queried.get(reply.index))
            else {
                continue;
            };
            let outcome = match target.check(&reply.outcome) {
                Checked::Live(payload) => {
                    keep[slot] = self
                        .observe(payload, origin, timestamp, Source::Confirm, now)
                        .is_some();
                    ExactQueryOutcome::Found
                }
                Checked::Gone => {
                    keep[slot] = false;
                    ExactQueryOutcome::NotFound
                }
                Checked::Mismatch => {
                    keep[slot] = false;
                    ExactQueryOutcome::Mismatch
                }
                Checked::Failed(_) => ExactQueryOutcome::Error,
            };
            self.metrics.exact_queries.get(outcome).inc();
        }
        gone.into_iter()
            .zip(keep)
            .filter_map(|(g, keep)| (!keep).then_some(g))
            .collect()
    }

    /// Ends a connection: Close event, file finished, cache entry removed, its bytes kept for
    /// the next rate sample.
    fn end(&mut self, cookie: u64, timestamp: Timestamp, now: Instant) -> Option<Conn> {
        let conn = self.cache.remove(&cookie)?;
        self.ended.0 = self.ended.0.saturating_add(conn.sent);
        self.ended.1 = self.ended.1.saturating_add(conn.received);
        let uuid = self.config.prefix.uuid(cookie);
        self.events.close(timestamp, &uuid, conn.tag.as_ref());
        self.metrics.flow_events.get(EventKind::Close).inc();
        self.archive.close(cookie, now);
        Some(conn)
    }
}

fn exclusion_label(reason: Excluded) -> ExclusionReason {
    match reason {
        Excluded::Local => ExclusionReason::Local,
        Excluded::SrcPort => ExclusionReason::SrcPort,
        Excluded::DstIp => ExclusionReason::DstIp,
    }
}
