//! The pipeline's decisions, with recording sinks instead of files and sockets.

use super::{ArchiveSink, EventSink, Lookup, Pipeline, PipelineConfig};
use crate::exclude::Exclusions;
use crate::metrics::{ErrorType, ExactQueryOutcome as Q, Metrics};
use crate::namespaces::NetnsSweep;
use crate::record::{ArchivalRecord, NetnsTag, Timestamp};
use crate::sockdiag::{ExactOutcome, ExactReply, ExactTarget, Family, FamilyDump, Payloads};
use crate::uuid::Prefix;
use crate::wire::inet_diag::{AF_INET, AF_INET6, InetDiagMsg};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Write(u64, u8, u64),
    Close(u64),
    Open(String),
    Closed(String),
    Shutdown,
}

type Log = Rc<RefCell<Vec<Seen>>>;
/// A tag as the test sinks note it: its inode and pod name.
type Noted = Option<(u32, Option<String>)>;
/// The `Netns` tags the sinks were given: (what, key or UUID, the tag).
type Tags = Rc<RefCell<Vec<(&'static str, String, Noted)>>>;

fn note(netns: Option<&Arc<NetnsTag>>) -> Noted {
    netns.map(|t| (t.inode, t.pod_name.clone()))
}

struct Archive(Log, Tags);
impl ArchiveSink for Archive {
    fn write(
        &mut self,
        cookie: u64,
        record: &ArchivalRecord,
        netns: Option<&Arc<NetnsTag>>,
        _: Instant,
    ) -> Result<(), String> {
        self.1
            .borrow_mut()
            .push(("write", format!("{cookie:x}"), note(netns)));
        let acked = record
            .attribute(2)
            .map_or(0, |i| crate::tcpinfo::TcpInfo::decode(i).bytes_acked);
        self.0
            .borrow_mut()
            .push(Seen::Write(cookie, record.raw_idm()[1], acked));
        Ok(())
    }
    fn close(&mut self, cookie: u64, _: Instant) {
        self.0.borrow_mut().push(Seen::Close(cookie));
    }
    fn tick(&mut self, _: Instant) {}
    fn shutdown(&mut self) {
        self.0.borrow_mut().push(Seen::Shutdown);
    }
}

struct Events(Log, Tags);
impl EventSink for Events {
    fn open(&self, _: Timestamp, uuid: &str, _: &InetDiagMsg<'_>, netns: Option<&Arc<NetnsTag>>) {
        self.1
            .borrow_mut()
            .push(("open", uuid.to_owned(), note(netns)));
        self.0.borrow_mut().push(Seen::Open(uuid.to_owned()));
    }
    fn close(&self, _: Timestamp, uuid: &str, netns: Option<&Arc<NetnsTag>>) {
        self.1
            .borrow_mut()
            .push(("close", uuid.to_owned(), note(netns)));
        self.0.borrow_mut().push(Seen::Closed(uuid.to_owned()));
    }
}

/// A sock_diag payload: a 10.0.0.x ↔ 10.0.1.x socket with tcp_info whose bytes_acked is `acked`.
fn payload(cookie: u64, state: u8, acked: u64, family: u8) -> Vec<u8> {
    let mut p = vec![0u8; 72];
    p[0] = family;
    p[1] = state;
    p[4..6].copy_from_slice(&80u16.to_be_bytes());
    p[6..8].copy_from_slice(&40000u16.to_be_bytes());
    if family == AF_INET {
        p[8..12].copy_from_slice(&[10, 0, 0, 1]);
        p[24..28].copy_from_slice(&[10, 0, 1, 1]);
    } else {
        p[8..24].copy_from_slice(&"fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
    }
    p[44..52].copy_from_slice(&cookie.to_le_bytes());
    let mut info = vec![0u8; 232];
    info[120..128].copy_from_slice(&acked.to_le_bytes());
    p.extend(((info.len() + 4) as u16).to_ne_bytes());
    p.extend(2u16.to_ne_bytes());
    p.extend(info);
    p
}

fn pipeline(grace: Duration) -> (Pipeline<Archive, Events>, Log, Arc<Metrics>) {
    let (o, log, _, metrics) = pipeline_with(grace, OWN, true, false);
    (o, log, metrics)
}

/// The own namespace of the tests' pipelines.
const OWN: u32 = 0xF000_0001;

/// A pipeline with the own namespace `own`, cookies global or not, attribution on or off;
/// also returns the tags its sinks were given.
fn pipeline_with(
    grace: Duration,
    own: u32,
    global_cookies: bool,
    attribution: bool,
) -> (Pipeline<Archive, Events>, Log, Tags, Arc<Metrics>) {
    let log: Log = Rc::default();
    let tags: Tags = Rc::default();
    let metrics = Arc::new(Metrics::new("abc").unwrap());
    let mut config = PipelineConfig::new(
        Exclusions::new(true, &[22], &[]),
        Prefix::from_bytes(b"host_1".to_vec()).unwrap(),
    );
    config.close_grace = grace;
    config.own_netns = own;
    config.global_cookies = global_cookies;
    config.attribution = attribution;
    let o = Pipeline::new(
        config,
        Archive(Rc::clone(&log), Rc::clone(&tags)),
        Events(Rc::clone(&log), Rc::clone(&tags)),
        Arc::clone(&metrics),
    )
    .with_own_namespace();
    (o, log, tags, metrics)
}

/// One family's dump as the tests write it: payloads as a slice, `None` for a failed dump.
type Dump<'a> = (Family, Option<&'a [Vec<u8>]>, Timestamp);

/// [`Pipeline::sweep`] with each family's payloads given as a slice.
fn sweep(o: &mut Pipeline<Archive, Events>, families: &[Dump<'_>], now: Instant) {
    let dumps: Vec<FamilyDump> = families
        .iter()
        .map(|&(family, payloads, timestamp)| FamilyDump {
            family,
            payloads: payloads.map(Payloads::from_iter),
            timestamp,
        })
        .collect();
    o.sweep(&dumps, now);
}

/// [`Pipeline::destroyed`] with the payloads given as a slice.
fn destroyed(o: &mut Pipeline<Archive, Events>, payloads: &[Vec<u8>], t: Timestamp, now: Instant) {
    o.destroyed(OWN, &Payloads::from_iter(payloads), t, now);
}

fn take(log: &Log) -> Vec<Seen> {
    std::mem::take(&mut *log.borrow_mut())
}

const UUID_7: &str = "host_1_0000000000000007";

#[test]
fn new_changed_unchanged_and_closed() {
    let (mut o, log, metrics) = pipeline(Duration::ZERO);
    let t = Timestamp::now();
    let now = Instant::now();
    let v4 = [payload(7, 1, 100, AF_INET)];
    sweep(
        &mut o,
        &[(Family::Inet6, Some(&[]), t), (Family::Inet, Some(&v4), t)],
        now,
    );
    assert_eq!(
        take(&log),
        [Seen::Open(UUID_7.into()), Seen::Write(7, 1, 100)]
    );
    sweep(
        &mut o,
        &[(Family::Inet6, Some(&[]), t), (Family::Inet, Some(&v4), t)],
        now,
    );
    assert_eq!(take(&log), [], "unchanged: nothing written");
    let v4 = [payload(7, 1, 200, AF_INET)];
    sweep(
        &mut o,
        &[(Family::Inet6, Some(&[]), t), (Family::Inet, Some(&v4), t)],
        now,
    );
    assert_eq!(take(&log), [Seen::Write(7, 1, 200)]);
    sweep(
        &mut o,
        &[(Family::Inet6, Some(&[]), t), (Family::Inet, Some(&[]), t)],
        now,
    );
    assert_eq!(take(&log), [Seen::Closed(UUID_7.into()), Seen::Close(7)]);
    assert_eq!(o.tracked(), 0);
    assert_eq!(
        metrics
            .flow_events
            .get(crate::events::EventKind::Open)
            .get(),
        1
    );
    assert_eq!(
        metrics
            .flow_events
            .get(crate::events::EventKind::Close)
            .get(),
        1
    );
    assert_eq!(metrics.snapshots.get(), 2);
}

#[test]
fn failed_dump_keeps_its_family_d12() {
    let (mut o, log, _) = pipeline(Duration::ZERO);
    let t = Timestamp::now();
    let now = Instant::now();
    let v6 = [payload(6, 1, 1, AF_INET6)];
    let v4 = [payload(4, 1, 1, AF_INET)];
    sweep(
        &mut o,
        &[(Family::Inet6, Some(&v6), t), (Family::Inet, Some(&v4), t)],
        now,
    );
    take(&log);
    // The AF_INET dump fails: its connection stays; the AF_INET6 one that vanished closes.
    sweep(
        &mut o,
        &[(Family::Inet6, Some(&[]), t), (Family::Inet, None, t)],
        now,
    );
    assert_eq!(
        take(&log),
        [
            Seen::Closed("host_1_0000000000000006".into()),
            Seen::Close(6)
        ]
    );
    assert_eq!(o.tracked(), 1);
    sweep(
        &mut o,
        &[(Family::Inet6, Some(&[]), t), (Family::Inet, Some(&v4), t)],
        now,
    );
    assert_eq!(take(&log), [], "no Close/Open churn after a failed dump");
}

#[test]
fn ready_after_the_first_sweep_with_a_completed_dump_or_the_first_marks() {
    let (mut o, _, metrics) = pipeline(Duration::ZERO);
    let t = Timestamp::now();
    let now = Instant::now();
    sweep(
        &mut o,
        &[(Family::Inet6, None, t), (Family::Inet, None, t)],
        now,
    );
    assert!(!metrics.is_ready(), "a sweep whose dumps all failed");
    sweep(
        &mut o,
        &[(Family::Inet6, None, t), (Family::Inet, Some(&[]), t)],
        now,
    );
    assert!(metrics.is_ready(), "one completed dump, even an empty one");

    let (mut o, _, metrics) = pipeline(Duration::ZERO);
    assert!(!metrics.is_ready());
    o.refreshed(
        &[(OWN, Payloads::from_iter(&[payload(7, 1, 1, AF_INET)]))],
        t,
        now,
    );
    assert!(metrics.is_ready(), "the first drained marks");
}

#[test]
fn destroy_gives_exact_final_record_and_ends_at_once() {
    let (mut o, log, _) = pipeline(Duration::from_millis(500));
    let t = Timestamp::now();
    let now = Instant::now();
    let v4 = [payload(7, 1, 100, AF_INET)];
    sweep(&mut o, &[(Family::Inet, Some(&v4), t)], now);
    take(&log);
    // Gone from the next sweep (TIME_WAIT is not dumped): within the grace, nothing happens.
    sweep(
        &mut o,
        &[(Family::Inet, Some(&[]), t)],
        now + Duration::from_millis(10),
    );
    assert_eq!(take(&log), []);
    destroyed(
        &mut o,
        &[payload(7, 7, 5000, AF_INET)],
        t,
        now + Duration::from_millis(20),
    );
    assert_eq!(
        take(&log),
        [
            Seen::Write(7, 7, 5000),
            Seen::Closed(UUID_7.into()),
            Seen::Close(7)
        ]
    );
    // A late sweep that still saw the socket does not resurrect it.
    sweep(
        &mut o,
        &[(Family::Inet, Some(&v4), t)],
        now + Duration::from_millis(30),
    );
    assert_eq!(take(&log), []);
    assert_eq!(o.tracked(), 0);
}

#[test]
fn missing_connection_closes_after_the_grace_without_destroy() {
    let (mut o, log, _) = pipeline(Duration::from_millis(500));
    let t = Timestamp::now();
    let now = Instant::now();
    sweep(
        &mut o,
        &[(Family::Inet, Some(&[payload(7, 1, 1, AF_INET)]), t)],
        now,
    );
    take(&log);
    sweep(
        &mut o,
        &[(Family::Inet, Some(&[]), t)],
        now + Duration::from_millis(100),
    );
    assert_eq!(take(&log), []);
    sweep(
        &mut o,
        &[(Family::Inet, Some(&[]), t)],
        now + Duration::from_millis(700),
    );
    assert_eq!(take(&log), [Seen::Closed(UUID_7.into()), Seen::Close(7)]);
}

/// A scripted kernel: answers an exact query for a cookie with the outcome set for it (once)
/// and records the targets asked.
#[derive(Clone, Default)]
struct Script(Arc<Mutex<Scripted>>);

/// The outcome to give per cookie, and the targets asked so far.
type Scripted = (HashMap<u64, ExactOutcome>, Vec<ExactTarget>);

impl Script {
    fn answer(&self, cookie: u64, outcome: ExactOutcome) {
        self.0.lock().unwrap().0.insert(cookie, outcome);
    }
    fn asked(&self) -> Vec<ExactTarget> {
        std::mem::take(&mut self.0.lock().unwrap().1)
    }
}

impl Lookup for Script {
    fn lookup(
        &mut self,
        targets: &[ExactTarget],
        out: &mut Vec<ExactReply>,
    ) -> Result<usize, String> {
        let mut state = self.0.lock().unwrap();
        for (index, t) in targets.iter().enumerate() {
            state.1.push(*t);
            let outcome = state
                .0
                .remove(&t.cookie.unwrap())
                .expect("no answer scripted");
            out.push(ExactReply { index, outcome });
        }
        Ok(0)
    }
}

/// SPEC §13: a connection the sweeps stopped listing is confirmed gone with an exact query
/// before it is closed. Found alive, it is recorded and kept; gone, it is closed, and a destroy
/// notification arriving after that (a socket its application kept in CLOSE) is counted and
/// reopens nothing: one Open and one Close per UUID.
#[test]
fn missing_connection_is_confirmed_before_close_and_a_late_destroy_reopens_nothing() {
    let script = Script::default();
    let (o, log, metrics) = pipeline(Duration::from_millis(500));
    let mut o = o.with_lookup(Box::new(script.clone()));
    let t = Timestamp::now();
    let now = Instant::now();
    let at = |ms| now + Duration::from_millis(ms);
    sweep(
        &mut o,
        &[(Family::Inet, Some(&[payload(7, 1, 1, AF_INET)]), t)],
        now,
    );
    assert_eq!(
        take(&log),
        [Seen::Open(UUID_7.into()), Seen::Write(7, 1, 1)]
    );
    let empty: &[Vec<u8>] = &[];
    sweep(&mut o, &[(Family::Inet, Some(empty), t)], at(100));
    assert!(script.asked().is_empty(), "no query within the grace");
    // At the grace's end the kernel still has it (the dump missed it): recorded, kept open.
    script.answer(7, ExactOutcome::Found(payload(7, 8, 2, AF_INET)));
    sweep(&mut o, &[(Family::Inet, Some(empty), t)], at(700));
    assert_eq!(take(&log), [Seen::Write(7, 8, 2)]);
    let asked = script.asked();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].cookie, Some(7));
    assert_eq!(asked[0].local, "10.0.0.1:80".parse().unwrap());
    assert_eq!(asked[0].remote, "10.0.1.1:40000".parse().unwrap());
    assert_eq!(o.tracked(), 1);
    // Missing again; after another grace the kernel says ENOENT: closed.
    sweep(&mut o, &[(Family::Inet, Some(empty), t)], at(800));
    script.answer(7, ExactOutcome::Gone(libc::ENOENT));
    sweep(&mut o, &[(Family::Inet, Some(empty), t)], at(1400));
    assert_eq!(take(&log), [Seen::Closed(UUID_7.into()), Seen::Close(7)]);
    assert_eq!(o.tracked(), 0);
    // The socket was held in CLOSE; its destroy notification comes now.
    destroyed(&mut o, &[payload(7, 7, 3, AF_INET)], t, at(5000));
    assert_eq!(take(&log), [], "no second Open, file or Close");
    assert_eq!(metrics.late_destroys.get(), 1);
    let outcomes = |o| metrics.exact_queries.get(o).get();
    assert_eq!((outcomes(Q::Found), outcomes(Q::NotFound)), (1, 1));
    assert_eq!(o.tracked(), 0);
}

/// A reply about another socket (a TIME_WAIT entry, another cookie) never keeps the connection.
#[test]
fn confirmation_replies_about_other_sockets_close_the_connection() {
    let script = Script::default();
    let (o, log, metrics) = pipeline(Duration::from_millis(500));
    let mut o = o.with_lookup(Box::new(script.clone()));
    let t = Timestamp::now();
    let now = Instant::now();
    let v4 = [payload(7, 1, 1, AF_INET), payload(8, 1, 1, AF_INET)];
    sweep(&mut o, &[(Family::Inet, Some(&v4), t)], now);
    take(&log);
    let empty: &[Vec<u8>] = &[];
    sweep(
        &mut o,
        &[(Family::Inet, Some(empty), t)],
        now + Duration::from_millis(10),
    );
    script.answer(7, ExactOutcome::Found(payload(7, 6, 1, AF_INET)));
    script.answer(8, ExactOutcome::Found(payload(9, 1, 1, AF_INET)));
    sweep(
        &mut o,
        &[(Family::Inet, Some(empty), t)],
        now + Duration::from_secs(1),
    );
    let mut seen = take(&log);
    seen.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(
        seen.iter()
            .all(|s| matches!(s, Seen::Close(_) | Seen::Closed(_)))
    );
    assert_eq!(
        metrics.exact_queries.get(Q::NotFound).get(),
        1,
        "TIME_WAIT: gone"
    );
    assert_eq!(
        metrics.exact_queries.get(Q::Mismatch).get(),
        1,
        "another cookie"
    );
}

/// SPEC §9.4: a connection's bytes move from live to closed when it ends, whichever source
/// ended it, so the total never goes backwards (before, a destroyed connection's bytes vanished
/// and the next sample counted a regression).
#[test]
fn rates_keep_the_bytes_of_destroyed_connections() {
    let (mut o, _log, metrics) = pipeline(Duration::from_millis(500));
    let at = |secs: i64| Timestamp::from_unix(1_700_000_000 + secs, 0).unwrap();
    let now = Instant::now();
    let mut p = payload(7, 1, 0, AF_INET);
    // bytes_sent (tcp_info offset 200) is 10 000.
    p[76 + 200..76 + 208].copy_from_slice(&10_000u64.to_le_bytes());
    sweep(&mut o, &[(Family::Inet, Some(&[p.clone()]), at(0))], now);
    p[76 + 200..76 + 208].copy_from_slice(&15_000u64.to_le_bytes());
    destroyed(&mut o, &[p], at(0), now);
    let empty: &[Vec<u8>] = &[];
    sweep(&mut o, &[(Family::Inet, Some(empty), at(1))], now);
    let regressions = metrics.errors.get(ErrorType::SentRegression).get();
    assert_eq!(
        regressions, 0,
        "a destroyed connection's bytes must not vanish"
    );
    assert_eq!(metrics.send_rate.get_sample_count(), 1);
    assert_eq!(metrics.send_rate.get_sample_sum() as u64, 8 * 5_000);
}

#[test]
fn connection_shorter_than_a_poll_gets_open_record_close() {
    let (mut o, log, _) = pipeline(Duration::from_millis(500));
    destroyed(
        &mut o,
        &[payload(9, 7, 42, AF_INET6)],
        Timestamp::now(),
        Instant::now(),
    );
    assert_eq!(
        take(&log),
        [
            Seen::Open("host_1_0000000000000009".into()),
            Seen::Write(9, 7, 42),
            Seen::Closed("host_1_0000000000000009".into()),
            Seen::Close(9)
        ]
    );
}

#[test]
fn excluded_zero_cookie_and_foreign_family_are_invisible() {
    let (mut o, log, _) = pipeline(Duration::ZERO);
    let t = Timestamp::now();
    let mut ssh = payload(1, 1, 1, AF_INET);
    ssh[4..6].copy_from_slice(&22u16.to_be_bytes());
    let mut loopback = payload(2, 1, 1, AF_INET);
    loopback[24..28].copy_from_slice(&[127, 0, 0, 1]);
    let zero = payload(0, 1, 1, AF_INET);
    let mut unix = payload(3, 1, 1, AF_INET);
    unix[0] = 1;
    let all = [ssh, loopback, zero, unix, vec![1, 2, 3]];
    sweep(&mut o, &[(Family::Inet, Some(&all), t)], Instant::now());
    assert_eq!(take(&log), []);
    assert_eq!(o.tracked(), 0);
}

#[test]
fn shutdown_closes_everything() {
    let (mut o, log, _) = pipeline(Duration::ZERO);
    let t = Timestamp::now();
    let v4 = [payload(7, 1, 1, AF_INET), payload(8, 1, 1, AF_INET)];
    sweep(&mut o, &[(Family::Inet, Some(&v4), t)], Instant::now());
    take(&log);
    o.shutdown();
    let seen = take(&log);
    assert_eq!(
        seen.iter().filter(|s| matches!(s, Seen::Closed(_))).count(),
        2
    );
    assert_eq!(seen.last(), Some(&Seen::Shutdown));
}

/// A namespace sweep of one family's payloads.
fn ns_sweep(netns: u32, payloads: Option<&[Vec<u8>]>, t: Timestamp) -> NetnsSweep {
    NetnsSweep {
        netns,
        families: vec![FamilyDump {
            family: Family::Inet,
            payloads: payloads.map(Payloads::from_iter),
            timestamp: t,
        }],
    }
}

fn tag(inode: u32, pod: &str) -> Arc<NetnsTag> {
    Arc::new(NetnsTag {
        inode,
        pod_name: Some(pod.into()),
        ..NetnsTag::default()
    })
}

const POD_A: u32 = 0xF000_00A0;
const POD_B: u32 = 0xF000_00B0;

#[test]
fn a_sweep_closes_only_connections_of_the_namespaces_it_covers() {
    let (mut o, log, _, _) = pipeline_with(Duration::ZERO, OWN, true, false);
    o.add_namespace(POD_A, tag(POD_A, "a"), None);
    let t = Timestamp::now();
    let now = Instant::now();
    let own = [payload(1, 1, 1, AF_INET)];
    let pod = [payload(2, 1, 1, AF_INET)];
    o.sweep_namespaces(
        &[ns_sweep(OWN, Some(&own), t), ns_sweep(POD_A, Some(&pod), t)],
        now,
    );
    assert_eq!(o.tracked(), 2);
    take(&log);
    // A sweep of the pod alone (just added, say) does not close the own namespace's.
    o.sweep_namespaces(&[ns_sweep(POD_A, Some(&pod), t)], now);
    assert_eq!(take(&log), []);
    // A failed dump of the pod keeps its connection; an empty own dump closes the own one.
    o.sweep_namespaces(
        &[ns_sweep(OWN, Some(&[]), t), ns_sweep(POD_A, None, t)],
        now,
    );
    assert_eq!(
        take(&log),
        [
            Seen::Closed("host_1_0000000000000001".into()),
            Seen::Close(1)
        ]
    );
    assert_eq!(o.tracked(), 1);
}

#[test]
fn a_removed_namespace_ends_its_connections_and_its_late_records_are_dropped() {
    let (mut o, log, _, metrics) = pipeline_with(Duration::ZERO, OWN, true, false);
    o.add_namespace(POD_A, tag(POD_A, "a"), None);
    o.add_namespace(POD_B, tag(POD_B, "b"), None);
    assert_eq!(metrics.netns_watched.get(), 3);
    let t = Timestamp::now();
    let now = Instant::now();
    let a = [payload(0x10, 1, 1, AF_INET), payload(0x11, 1, 1, AF_INET)];
    let b = [payload(0x20, 1, 1, AF_INET)];
    o.sweep_namespaces(
        &[ns_sweep(POD_A, Some(&a), t), ns_sweep(POD_B, Some(&b), t)],
        now,
    );
    take(&log);
    // Its last destroy notification first, then the namespace goes.
    o.destroyed(POD_A, &Payloads::from_iter(&a[..1]), t, now);
    o.remove_namespace(POD_A, now);
    let mut seen = take(&log);
    seen.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(
        seen,
        [
            Seen::Close(0x10),
            Seen::Close(0x11),
            Seen::Closed("host_1_0000000000000010".into()),
            Seen::Closed("host_1_0000000000000011".into()),
        ]
    );
    assert_eq!(o.tracked(), 1);
    assert_eq!(metrics.netns_watched.get(), 2);
    // A sweep of it still in flight changes nothing; the other namespace is untouched.
    o.sweep_namespaces(&[ns_sweep(POD_A, Some(&a), t)], now);
    o.refreshed(&[(POD_A, Payloads::from_iter(&a))], t, now);
    assert_eq!(take(&log), []);
    assert_eq!(o.tracked(), 1);
}

#[test]
fn records_of_unknown_namespaces_are_dropped() {
    let (mut o, log, _, _) = pipeline_with(Duration::ZERO, OWN, true, false);
    let t = Timestamp::now();
    o.refreshed(
        &[(POD_A, Payloads::from_iter(&[payload(5, 1, 1, AF_INET)]))],
        t,
        Instant::now(),
    );
    o.destroyed(
        POD_B,
        &Payloads::from_iter(&[payload(6, 7, 1, AF_INET)]),
        t,
        Instant::now(),
    );
    assert_eq!(take(&log), []);
    assert_eq!(o.tracked(), 0);
}

#[test]
fn attribution_tags_files_and_events_only_when_asked() {
    for attribution in [false, true] {
        let (mut o, _, tags, _) = pipeline_with(Duration::ZERO, OWN, true, attribution);
        o.add_namespace(POD_A, tag(POD_A, "a"), None);
        let t = Timestamp::now();
        let now = Instant::now();
        let a = [payload(0x10, 1, 1, AF_INET)];
        o.sweep_namespaces(&[ns_sweep(POD_A, Some(&a), t)], now);
        o.remove_namespace(POD_A, now);
        let want = attribution.then(|| (POD_A, Some("a".to_owned())));
        assert_eq!(
            *tags.borrow(),
            [
                ("open", "host_1_0000000000000010".to_owned(), want.clone()),
                ("write", "10".to_owned(), want.clone()),
                ("close", "host_1_0000000000000010".to_owned(), want),
            ],
            "attribution {attribution}"
        );
    }
}

#[test]
fn without_global_cookies_other_namespaces_get_keys_of_their_own() {
    let (mut o, log, _, _) = pipeline_with(Duration::ZERO, OWN, false, false);
    o.add_namespace(POD_A, tag(POD_A, "a"), None);
    o.add_namespace(POD_B, tag(POD_B, "b"), None);
    let t = Timestamp::now();
    // The same cookie in three namespaces: three connections, three UUIDs.
    let same = [payload(5, 1, 1, AF_INET)];
    o.sweep_namespaces(
        &[
            ns_sweep(OWN, Some(&same), t),
            ns_sweep(POD_A, Some(&same), t),
            ns_sweep(POD_B, Some(&same), t),
        ],
        Instant::now(),
    );
    assert_eq!(o.tracked(), 3);
    let opens: Vec<Seen> = take(&log)
        .into_iter()
        .filter(|s| matches!(s, Seen::Open(_)))
        .collect();
    assert_eq!(
        opens,
        [
            Seen::Open("host_1_0000000000000005".into()),
            Seen::Open("host_1_F00000A000000005".into()),
            Seen::Open("host_1_F00000B000000005".into()),
        ]
    );
}

#[test]
fn a_connection_keeps_the_tag_it_opened_with_when_its_namespace_is_retagged() {
    let (mut o, _, tags, _) = pipeline_with(Duration::ZERO, OWN, true, true);
    let bare = Arc::new(NetnsTag {
        inode: POD_A,
        ..NetnsTag::default()
    });
    o.add_namespace(POD_A, bare, None);
    let t = Timestamp::now();
    let now = Instant::now();
    let first = [payload(0x10, 1, 1, AF_INET)];
    o.sweep_namespaces(&[ns_sweep(POD_A, Some(&first), t)], now);
    // The pod's process appeared: connections opened from now on name the pod.
    o.retag_namespace(POD_A, tag(POD_A, "a"));
    let both = [payload(0x10, 1, 1, AF_INET), payload(0x11, 1, 1, AF_INET)];
    o.sweep_namespaces(&[ns_sweep(POD_A, Some(&both), t)], now);
    o.shutdown();
    let seen = tags.borrow();
    let of = |what: &str, cookie: u64| {
        let uuid = format!("host_1_{cookie:016X}");
        seen.iter()
            .find(|(w, u, _)| *w == what && *u == uuid)
            .map(|(_, _, noted)| noted.clone())
    };
    let named = Some(Some((POD_A, Some("a".to_owned()))));
    assert_eq!(of("open", 0x10), Some(Some((POD_A, None))));
    assert_eq!(
        of("close", 0x10),
        Some(Some((POD_A, None))),
        "its Open's tag"
    );
    assert_eq!(of("open", 0x11), named);
    assert_eq!(of("close", 0x11), named);
}

/// A pipeline that excludes nothing (the sockets of a `TestNetns` are on loopback) and closes
/// a connection the moment a sweep misses it (no close source, no grace).
fn pipeline_of_everything() -> (Pipeline<Archive, Events>, Log, Arc<Metrics>) {
    let log: Log = Rc::default();
    let tags: Tags = Rc::default();
    let metrics = Arc::new(Metrics::new("abc").unwrap());
    let mut config = PipelineConfig::new(
        Exclusions::new(false, &[], &[]),
        Prefix::from_bytes(b"host_1".to_vec()).unwrap(),
    );
    config.own_netns = OWN;
    let o = Pipeline::new(
        config,
        Archive(Rc::clone(&log), Rc::clone(&tags)),
        Events(Rc::clone(&log), Rc::clone(&tags)),
        Arc::clone(&metrics),
    )
    .with_own_namespace();
    (o, log, metrics)
}

/// Resets `conn` (`SO_LINGER` 0 on its client end, then both ends closed) and waits until a
/// dump of `family` no longer lists either end.
fn reset(
    diag: &mut crate::sockdiag::DiagSocket,
    family: Family,
    conn: crate::sockdiag::testutil::Conn,
) {
    use std::os::fd::AsRawFd as _;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket with a valid `linger` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            conn.client.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    let cookies = [conn.client_cookie, conn.server_cookie];
    drop(conn);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut out = Payloads::new();
        diag.dump(family, &mut out).unwrap();
        if !out
            .iter()
            .any(|p| cookies.contains(&crate::sockdiag::testutil::diag_cookie(p)))
        {
            return;
        }
        assert!(Instant::now() < deadline, "the reset sockets never left");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The sockets' Close notes in `seen`, as a set of keys.
fn closed(seen: &[Seen]) -> std::collections::BTreeSet<u64> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Close(cookie) => Some(*cookie),
            _ => None,
        })
        .collect()
}

/// D12 from the kernel to the pipeline: a real dump interrupted (`NLM_F_DUMP_INTR`) is sent by
/// the sweep source as failed, counted under `tcpinfo_dump_failures_total{reason=
/// "interrupted"}`, and the pipeline closes none of that family's connections — though the
/// sweep listed none of them and this pipeline closes a missing connection at once — not even
/// one that really went away meanwhile: it closes at the next complete dump. The other family,
/// dumped completely in the same sweep, still closes its connection that went away; nothing is
/// reopened.
#[test]
fn an_interrupted_dump_is_counted_and_closes_nothing_d12() {
    use crate::metrics::{DumpFailure, SweepKind};
    use crate::sockdiag::DiagSocket;
    use crate::sockdiag::testutil::{self, TestNetns};
    use crate::sources::sweep::{DumpSizes, sweep as sweep_source};

    let Some(ns) = TestNetns::create() else {
        return;
    };
    let mut diag = DiagSocket::open_in_netns(ns.path(), 64 * 1024).unwrap();
    let mut v4 = testutil::connections(&ns, "127.0.0.1:0", 2);
    let mut v6 = testutil::connections(&ns, "[::1]:0", 2);
    let (mut o, log, metrics) = pipeline_of_everything();
    let mut sizes = DumpSizes::default();
    let mut cycle = |o: &mut Pipeline<Archive, Events>, diag: &mut DiagSocket| {
        let swept = sweep_source(
            std::iter::once((OWN, diag)),
            &mut sizes,
            SweepKind::Poll,
            &metrics,
        );
        o.sweep_namespaces(&swept, Instant::now());
    };
    cycle(&mut o, &mut diag);
    // Each family: a listener and both ends of two connections.
    assert_eq!(o.tracked(), 10);
    take(&log);

    let gone = v6.conns.remove(0);
    let gone6 = [gone.client_cookie, gone.server_cookie];
    reset(&mut diag, Family::Inet6, gone);
    let gone4 = v4.conns.remove(0);
    let gone4_keys = [gone4.client_cookie, gone4.server_cookie];
    reset(&mut diag, Family::Inet, gone4);
    // AF_INET6 is dumped first, so it reads the flagged reply.
    let failures = |reason| metrics.dump_failures.get(reason).get();
    let mut attempts = 0;
    while failures(DumpFailure::Interrupted) == 0 {
        attempts += 1;
        assert!(attempts <= 20, "the flagged reply was never read first");
        testutil::interrupt_next_dump(&ns, &diag);
        cycle(&mut o, &mut diag);
        // Each attempt fails its AF_INET6 dump once: interrupted, or — when a test running
        // beside this one took the sequence number first — `WrongSeq`, counted as malformed
        // (the pipeline treats every failed dump alike).
        assert_eq!(
            failures(DumpFailure::Malformed) + failures(DumpFailure::Interrupted),
            attempts
        );
    }
    assert_eq!(failures(DumpFailure::Interrupted), 1);
    let seen = take(&log);
    assert_eq!(
        closed(&seen),
        gone4_keys.into(),
        "only the AF_INET connection that went away closes: {seen:?}"
    );
    assert!(!seen.iter().any(|s| matches!(s, Seen::Open(_))), "{seen:?}");
    assert_eq!(o.tracked(), 8);

    // The next complete dump closes the AF_INET6 connection that went away, and only it.
    cycle(&mut o, &mut diag);
    let seen = take(&log);
    assert_eq!(closed(&seen), gone6.into(), "{seen:?}");
    assert!(!seen.iter().any(|s| matches!(s, Seen::Open(_))), "{seen:?}");
    assert_eq!(o.tracked(), 6);
    drop((v4, v6));
}

/// `p` with attribute `kind` (value `value`) appended.
fn with_attr(mut p: Vec<u8>, kind: u16, value: &[u8]) -> Vec<u8> {
    p.extend(u16::try_from(4 + value.len()).unwrap().to_ne_bytes());
    p.extend(kind.to_ne_bytes());
    p.extend(value);
    p.resize(crate::wire::netlink::align(p.len()), 0);
    p
}

/// Attributes the kernel may add that upstream's array has no room for (types above 38, and
/// types with a flag bit) do not break records: each record is archived with its `tcp_info`
/// intact (a flagged `0x8000 | 2` is not `INET_DIAG_INFO`), and what it left out is counted
/// in `tcpinfo_attributes_dropped_total`, once per archived record. A change in them alone is
/// no change: nothing written, nothing counted.
#[test]
fn attributes_above_type_38_are_counted_and_do_not_break_records() {
    let (mut o, log, metrics) = pipeline(Duration::ZERO);
    let t = Timestamp::now();
    let now = Instant::now();
    let odd = |acked: u64, v: u8| {
        let p = with_attr(payload(7, 1, acked, AF_INET), 39, &[v; 3]);
        with_attr(p, 0x8000 | 2, &[v; 8])
    };
    sweep(&mut o, &[(Family::Inet, Some(&[odd(100, 1)]), t)], now);
    assert_eq!(
        take(&log),
        [Seen::Open(UUID_7.into()), Seen::Write(7, 1, 100)]
    );
    assert_eq!(metrics.attributes_dropped.get(), 2);
    sweep(&mut o, &[(Family::Inet, Some(&[odd(100, 2)]), t)], now);
    assert_eq!(take(&log), [], "only unknown attributes changed");
    assert_eq!(metrics.attributes_dropped.get(), 2);
    sweep(&mut o, &[(Family::Inet, Some(&[odd(200, 3)]), t)], now);
    assert_eq!(take(&log), [Seen::Write(7, 1, 200)]);
    assert_eq!(metrics.attributes_dropped.get(), 4);
    destroyed(&mut o, &[odd(300, 4)], t, now);
    assert_eq!(
        take(&log),
        [
            Seen::Write(7, 1, 300),
            Seen::Closed(UUID_7.into()),
            Seen::Close(7)
        ]
    );
    assert_eq!(metrics.attributes_dropped.get(), 6);
    assert_eq!(metrics.snapshots.get(), 3);
}

/// Confirming closes through a receive buffer far too small for the replies (the kernel's
/// minimum, with a batch of 1 024): 200 connections a sweep missed but that are alive, and 100
/// that really went away. The overrun loses replies, which are asked again and counted
/// (`tcpinfo_exact_queries_total{outcome="lost"}`); every live connection is confirmed and
/// kept — a lost reply never closes one — and exactly the ones that went away close.
#[test]
fn an_overrun_of_confirming_queries_is_counted_and_closes_only_what_went_away() {
    use crate::sockdiag::DiagSocket;
    use crate::sockdiag::testutil::{self, TestNetns, diag_cookie};

    let Some(ns) = TestNetns::create() else {
        return;
    };
    let mut diag = DiagSocket::open_in_netns(ns.path(), 1 << 20).unwrap();
    let mut lookup = DiagSocket::open_in_netns(ns.path(), 1).unwrap();
    lookup.set_batch_size(Some(1_024));
    let (o, log, metrics) = pipeline_of_everything();
    let mut o = o.with_lookup(Box::new(lookup));
    let mut set = testutil::connections(&ns, "127.0.0.1:0", 300);
    let dump = |diag: &mut DiagSocket| {
        let mut out = Payloads::new();
        diag.dump(Family::Inet, &mut out).unwrap();
        out
    };
    let swept = FamilyDump {
        family: Family::Inet,
        payloads: Some(dump(&mut diag)),
        timestamp: Timestamp::now(),
    };
    o.sweep(&[swept], Instant::now());
    assert_eq!(o.tracked(), 601, "a listener and 300 connections");
    take(&log);

    let mut gone = std::collections::BTreeSet::new();
    for conn in set.conns.drain(..100) {
        gone.extend([conn.client_cookie, conn.server_cookie]);
        reset(&mut diag, Family::Inet, conn);
    }
    // A complete dump that lists the listener alone: every connection looks gone.
    let listener = set.listener_cookie;
    let only_listener: Payloads = dump(&mut diag)
        .iter()
        .filter(|p| diag_cookie(p) == listener)
        .collect();
    assert_eq!(only_listener.len(), 1);
    let swept = FamilyDump {
        family: Family::Inet,
        payloads: Some(only_listener),
        timestamp: Timestamp::now(),
    };
    o.sweep(&[swept], Instant::now());
    let seen = take(&log);
    assert_eq!(closed(&seen), gone, "exactly the reset connections close");
    assert_eq!(o.tracked(), 401);
    let queries = &metrics.exact_queries;
    assert_eq!(queries.get(Q::Found).get(), 400, "every live one confirmed");
    assert_eq!(queries.get(Q::NotFound).get(), 200);
    assert_eq!(queries.get(Q::Error).get(), 0);
    assert!(
        queries.get(Q::Lost).get() > 0,
        "the confirming queries must overrun"
    );
    drop(set);
}
