//! The event line format (SPEC §7.2): one JSON object per line, keys `Event`, `Timestamp`,
//! `UUID`, `ID` in that order, exactly as upstream's Go encoder writes them.
//!
//! ```text
//! {"Event":0,"Timestamp":"2019-04-02T14:12:37.511Z","UUID":"…","ID":{"SPort":9091,"DPort":43508,"SrcIP":"192.168.14.134","DstIP":"192.168.14.129","Interface":0,"Cookie":1000}}
//! {"Event":1,"Timestamp":"2019-04-02T14:13:01.02Z","UUID":"…","ID":null}
//! ```

use crate::record::{NetnsTag, Timestamp, push_go_string};
use crate::wire::inet_diag::{InetDiagMsg, go_ip_string};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, de::IgnoredAny};
use std::fmt;
use std::io::Write as _;
use std::sync::Arc;
use thiserror::Error;

/// What happened to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// First seen (`"Event":0`).
    Open,
    /// Gone (`"Event":1`).
    Close,
}

impl EventKind {
    /// The number on the wire (upstream's `TCPEvent`).
    pub fn code(self) -> i64 {
        match self {
            Self::Open => 0,
            Self::Close => 1,
        }
    }

    /// The kind for a wire number, if it is one this version knows.
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(Self::Open),
            1 => Some(Self::Close),
            _ => None,
        }
    }
}

/// The identity of a connection carried by an Open event (upstream's `inetdiag.SockID`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FlowId {
    /// Local port.
    pub sport: u16,
    /// Remote port.
    pub dport: u16,
    /// Local address as text (SPEC §4.1 rendering, never anonymized).
    pub src_ip: String,
    /// Remote address as text (SPEC §4.1 rendering, never anonymized).
    pub dst_ip: String,
    /// `idiag_if`. Upstream sends it byte-swapped (D6); this is the correct host-order value.
    pub interface: u32,
    /// The socket cookie reinterpreted as a signed 64-bit integer, as upstream sends it.
    pub cookie: i64,
}

impl FlowId {
    /// The identity of the socket described by `idm`.
    ///
    /// The addresses come from the raw message: uuid-annotator needs the real peer even when
    /// archives are anonymized (SPEC §11.3), so never pass an anonymized copy here.
    pub fn from_idm(idm: &InetDiagMsg<'_>) -> Self {
        Self {
            sport: idm.sport(),
            dport: idm.dport(),
            src_ip: go_ip_string(idm.src_bytes()),
            dst_ip: go_ip_string(idm.dst_bytes()),
            interface: idm.interface(),
            cookie: idm.cookie() as i64,
        }
    }

    /// The cookie as the kernel's unsigned value.
    pub fn cookie_u64(&self) -> u64 {
        self.cookie as u64
    }
}

/// One event line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowEvent {
    /// Open or Close.
    pub kind: EventKind,
    /// Open: the timestamp of the connection's first record; Close: when the close was
    /// detected. Always written in UTC (D9).
    pub timestamp: Timestamp,
    /// The connection UUID (SPEC §5.2), identical to the archive's.
    pub uuid: String,
    /// The connection identity. [`FlowEvent::close`] leaves it `None`, which writes upstream's
    /// `"ID":null`; SPEC allows a Close to carry it (Go clients ignore it), so a `Some` on a Close
    /// is written as given.
    pub id: Option<FlowId>,
    /// The connection's network namespace and owner, written as a `Netns` key after `ID` only
    /// with `--netns.attribution` (upstream has no such key; Go clients ignore unknown keys).
    pub netns: Option<Arc<NetnsTag>>,
}

impl FlowEvent {
    /// An Open event.
    pub fn open(timestamp: Timestamp, uuid: impl Into<String>, id: FlowId) -> Self {
        Self {
            kind: EventKind::Open,
            timestamp,
            uuid: uuid.into(),
            id: Some(id),
            netns: None,
        }
    }

    /// A Close event, with `"ID":null` as upstream sends it.
    pub fn close(timestamp: Timestamp, uuid: impl Into<String>) -> Self {
        Self {
            kind: EventKind::Close,
            timestamp,
            uuid: uuid.into(),
            id: None,
            netns: None,
        }
    }

    /// The event with its connection's `Netns` tag.
    #[must_use]
    pub fn with_netns(mut self, netns: Option<Arc<NetnsTag>>) -> Self {
        self.netns = netns;
        self
    }

    /// Appends the event as one JSON line, `\n` included, byte-identical to upstream's encoder
    /// except where SPEC requires otherwise (UTC timestamps, host-order `Interface`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail, so the `write!` results carry no information.
        let _ = write!(out, "{{\"Event\":{},\"Timestamp\":\"", self.kind.code());
        self.timestamp.to_utc().write_rfc3339(out);
        out.extend_from_slice(b"\",\"UUID\":");
        push_go_string(out, &self.uuid);
        out.extend_from_slice(b",\"ID\":");
        match &self.id {
            None => out.extend_from_slice(b"null"),
            Some(id) => {
                let _ = write!(
                    out,
                    "{{\"SPort\":{},\"DPort\":{},\"SrcIP\":",
                    id.sport, id.dport
                );
                push_go_string(out, &id.src_ip);
                out.extend_from_slice(b",\"DstIP\":");
                push_go_string(out, &id.dst_ip);
                let _ = write!(
                    out,
                    ",\"Interface\":{},\"Cookie\":{}}}",
                    id.interface, id.cookie
                );
            }
        }
        if let Some(netns) = &self.netns {
            out.extend_from_slice(b",\"Netns\":");
            netns.write_json(out);
        }
        out.extend_from_slice(b"}\n");
    }

    /// The event as one JSON line (with its `\n`).
    pub fn to_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(192 + self.uuid.len());
        self.encode(&mut out);
        out
    }

    /// Decodes one line (a trailing `\n` or `\r\n` is allowed) the way the Go client library
    /// does (SPEC §7.4): keys match case-insensitively, unknown keys are ignored, and a missing
    /// or `null` value leaves Go's zero value (so a line without `Event` is an Open, and `{}` an
    /// Open with zero time, empty UUID and no ID). An `Event` number this version does not know
    /// is not an error: it yields [`Decoded::Unknown`], which a client should log and skip.
    /// Anything Go's `json.Unmarshal` would reject (wrong types, out-of-range numbers, a bad
    /// timestamp, trailing data) is an error.
    pub fn decode(line: &[u8]) -> Result<Decoded, DecodeError> {
        let mut de = serde_json::Deserializer::from_slice(line);
        let raw = de.deserialize_any(EventVisitor)?;
        de.end()?;
        Ok(match EventKind::from_code(raw.event) {
            Some(kind) => Decoded::Event(FlowEvent {
                kind,
                timestamp: raw.timestamp,
                uuid: raw.uuid,
                id: raw.id,
                netns: raw.netns.map(Arc::new),
            }),
            None => Decoded::Unknown(UnknownEvent {
                event: raw.event,
                timestamp: raw.timestamp,
                uuid: raw.uuid,
            }),
        })
    }
}

/// The result of decoding a well-formed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// An Open or a Close.
    Event(FlowEvent),
    /// An `Event` number this version does not know (a newer server); skip it.
    Unknown(UnknownEvent),
}

/// A well-formed line with an unknown `Event` number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownEvent {
    /// The `Event` number.
    pub event: i64,
    /// The `Timestamp`.
    pub timestamp: Timestamp,
    /// The `UUID`.
    pub uuid: String,
}

/// A line that is not a valid event (fatal to a Go sidecar, SPEC §7.4).
#[derive(Debug, Error)]
#[error("invalid event line: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

impl DecodeError {
    /// 1-based column of the error within the line (0 if unknown).
    pub fn column(&self) -> usize {
        self.0.column()
    }
}

/// The decoded fields before `Event` is interpreted; missing fields hold Go's zero values.
#[derive(Default)]
struct RawEvent {
    event: i64,
    timestamp: Timestamp,
    uuid: String,
    id: Option<FlowId>,
    netns: Option<NetnsTag>,
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = RawEvent;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    /// Go's `json.Unmarshal` of `null` into a struct leaves the zero value.
    fn visit_unit<E: de::Error>(self) -> Result<RawEvent, E> {
        Ok(RawEvent::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEvent, A::Error> {
        let mut raw = RawEvent::default();
        while let Some(key) = map.next_key::<String>()? {
            if key.eq_ignore_ascii_case("Event") {
                if let Some(v) = map.next_value::<Option<i64>>()? {
                    raw.event = v;
                }
            } else if key.eq_ignore_ascii_case("Timestamp") {
                if let Some(GoTime(t)) = map.next_value::<Option<GoTime>>()? {
                    raw.timestamp = t;
                }
            } else if key.eq_ignore_ascii_case("UUID") {
                if let Some(v) = map.next_value::<Option<String>>()? {
                    raw.uuid = v;
                }
            } else if key.eq_ignore_ascii_case("ID") {
                // A JSON null sets Go's `*SockID` to nil.
                raw.id = map.next_value::<Option<IdWire>>()?.map(|IdWire(id)| id);
            } else if key.eq_ignore_ascii_case("Netns") {
                raw.netns = map.next_value::<Option<NetnsTag>>()?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(raw)
    }
}

/// A `time.Time` in JSON: an RFC 3339 string.
struct GoTime(Timestamp);

impl<'de> Deserialize<'de> for GoTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = GoTime;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GoTime, E> {
                Timestamp::parse(v.as_bytes())
                    .map(GoTime)
                    .map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// The `ID` object.
struct IdWire(FlowId);

impl<'de> Deserialize<'de> for IdWire {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IdWire;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an ID object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IdWire, A::Error> {
                let mut id = FlowId::default();
                while let Some(key) = map.next_key::<String>()? {
                    let k = |name: &str| key.eq_ignore_ascii_case(name);
                    if k("SPort") {
                        set(&mut id.sport, map.next_value()?);
                    } else if k("DPort") {
                        set(&mut id.dport, map.next_value()?);
                    } else if k("SrcIP") {
                        set(&mut id.src_ip, map.next_value()?);
                    } else if k("DstIP") {
                        set(&mut id.dst_ip, map.next_value()?);
                    } else if k("Interface") {
                        set(&mut id.interface, map.next_value()?);
                    } else if k("Cookie") {
                        set(&mut id.cookie, map.next_value()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(IdWire(id))
            }
        }
        d.deserialize_map(V)
    }
}

/// Go leaves a field unchanged when its JSON value is `null`.
fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::inet_diag::{AF_INET, AF_INET6, MSG_LEN, state};
    use proptest::prelude::*;
    use std::net::Ipv6Addr;

    const UUID: &str = "mlab1-lga03_1554213157_00000000000003E8";

    /// A 72-byte `inet_diag_msg` with the SPEC §7.2 example values.
    fn spec_idm(interface: u32, cookie: u64) -> [u8; MSG_LEN] {
        let mut b = [0u8; MSG_LEN];
        b[0] = AF_INET6;
        b[1] = state::ESTABLISHED;
        b[4..6].copy_from_slice(&9091u16.to_be_bytes());
        b[6..8].copy_from_slice(&43508u16.to_be_bytes());
        let v4mapped = |s: &str| s.parse::<Ipv6Addr>().unwrap().octets();
        b[8..24].copy_from_slice(&v4mapped("::ffff:192.168.14.134"));
        b[24..40].copy_from_slice(&v4mapped("::ffff:192.168.14.129"));
        b[40..44].copy_from_slice(&interface.to_ne_bytes());
        b[44..48].copy_from_slice(&(cookie as u32).to_ne_bytes());
        b[48..52].copy_from_slice(&((cookie >> 32) as u32).to_ne_bytes());
        b[68..72].copy_from_slice(&12345u32.to_ne_bytes());
        b
    }

    fn id_of(bytes: &[u8]) -> FlowId {
        FlowId::from_idm(&InetDiagMsg::new(bytes).unwrap())
    }

    fn ts(text: &str) -> Timestamp {
        Timestamp::parse(text.as_bytes()).unwrap()
    }

    fn line(event: &FlowEvent) -> String {
        String::from_utf8(event.to_line()).unwrap()
    }

    #[test]
    fn spec_open_line_exact() {
        let id = id_of(&spec_idm(0, 1000));
        let open = FlowEvent::open(ts("2019-04-02T14:12:37.511Z"), UUID, id);
        assert_eq!(
            line(&open),
            concat!(
                r#"{"Event":0,"Timestamp":"2019-04-02T14:12:37.511Z","#,
                r#""UUID":"mlab1-lga03_1554213157_00000000000003E8","#,
                r#""ID":{"SPort":9091,"DPort":43508,"SrcIP":"192.168.14.134","#,
                r#""DstIP":"192.168.14.129","Interface":0,"Cookie":1000}}"#,
                "\n"
            )
        );
    }

    #[test]
    fn spec_close_line_exact() {
        let close = FlowEvent::close(ts("2019-04-02T14:13:01.02Z"), UUID);
        assert_eq!(
            line(&close),
            concat!(
                r#"{"Event":1,"Timestamp":"2019-04-02T14:13:01.02Z","#,
                r#""UUID":"mlab1-lga03_1554213157_00000000000003E8","ID":null}"#,
                "\n"
            )
        );
    }

    #[test]
    fn timestamps_are_written_in_utc() {
        let close = FlowEvent::close(ts("2019-04-02T10:13:01.02-04:00"), "u");
        assert!(
            line(&close).contains(r#""Timestamp":"2019-04-02T14:13:01.02Z""#),
            "{}",
            line(&close)
        );
    }

    #[test]
    fn interface_host_order_and_signed_cookie() {
        let id = id_of(&spec_idm(2, 0xFF00_0000_0000_00FF));
        assert_eq!(id.interface, 2, "D6: ifindex 2 must not read as 33554432");
        assert_eq!(id.cookie, -72_057_594_037_927_681);
        assert_eq!(id.cookie_u64(), 0xFF00_0000_0000_00FF);
        let open = FlowEvent::open(Timestamp::ZERO, "u", id);
        assert!(
            line(&open).ends_with("\"Interface\":2,\"Cookie\":-72057594037927681}}\n"),
            "{}",
            line(&open)
        );
    }

    #[test]
    fn address_rendering() {
        let mut b = spec_idm(0, 1);
        // AF_INET layout: the address in bytes 0–3, the rest zero.
        b[0] = AF_INET;
        b[8..24].fill(0);
        b[8..12].copy_from_slice(&[10, 0, 0, 1]);
        b[24..40].copy_from_slice(&"fd0a:8d:ba3f:a834::".parse::<Ipv6Addr>().unwrap().octets());
        let id = id_of(&b);
        assert_eq!(id.src_ip, "10.0.0.1");
        assert_eq!(id.dst_ip, "fd0a:8d:ba3f:a834::");
    }

    #[test]
    fn uuid_escaped_like_go() {
        let close = FlowEvent::close(Timestamp::ZERO, "<uuid>&\"\\\n\u{1}\u{2028}é");
        assert!(
            line(&close).contains(r#""UUID":"\u003cuuid\u003e\u0026\"\\\n\u0001\u2028é""#),
            "{}",
            line(&close)
        );
    }

    #[test]
    fn decodes_spec_examples() {
        let open = br#"{"Event":0,"Timestamp":"2019-04-02T14:12:37.511Z","UUID":"<uuid>","ID":{"SPort":9091,"DPort":43508,"SrcIP":"192.168.14.134","DstIP":"192.168.14.129","Interface":0,"Cookie":1000}}"#;
        let Decoded::Event(ev) = FlowEvent::decode(open).unwrap() else {
            panic!("known event expected");
        };
        assert_eq!(ev.kind, EventKind::Open);
        assert_eq!(ev.timestamp, ts("2019-04-02T14:12:37.511Z"));
        assert_eq!(ev.uuid, "<uuid>");
        assert_eq!(ev.id, Some(id_of(&spec_idm(0, 1000))));

        let close = b"{\"Event\":1,\"Timestamp\":\"2019-04-02T14:13:01.02Z\",\"UUID\":\"<uuid>\",\"ID\":null}\r\n";
        assert_eq!(
            FlowEvent::decode(close).unwrap(),
            Decoded::Event(FlowEvent::close(ts("2019-04-02T14:13:01.02Z"), "<uuid>"))
        );
    }

    #[test]
    fn unknown_event_is_tolerated() {
        let decoded = FlowEvent::decode(
            br#"{"Event":7,"Timestamp":"2019-04-02T14:13:01Z","UUID":"x","ID":{"Future":[1,2]}}"#,
        )
        .unwrap();
        assert_eq!(
            decoded,
            Decoded::Unknown(UnknownEvent {
                event: 7,
                timestamp: ts("2019-04-02T14:13:01Z"),
                uuid: "x".into(),
            })
        );
        let negative = FlowEvent::decode(br#"{"Event":-1}"#).unwrap();
        assert!(matches!(
            negative,
            Decoded::Unknown(UnknownEvent { event: -1, .. })
        ));
    }

    #[test]
    fn decoder_is_as_lenient_as_go() {
        // Keys in any case, unknown keys ignored, nulls leave zero values, new keys are safe.
        let line = br#"{"event":1,"TIMESTAMP":"2019-04-02T10:13:01-04:00","uuid":"u","Extra":{"a":[null]},"id":{"sport":1,"dport":null,"SRCIP":"::1","New":true,"cookie":-5}}"#;
        let Decoded::Event(ev) = FlowEvent::decode(line).unwrap() else {
            panic!("known event expected");
        };
        assert_eq!(ev.kind, EventKind::Close);
        assert_eq!(
            ev.timestamp.unix_secs(),
            ts("2019-04-02T14:13:01Z").unix_secs()
        );
        assert_eq!(ev.uuid, "u");
        let id = ev.id.unwrap();
        assert_eq!(
            (id.sport, id.dport, id.src_ip.as_str(), id.dst_ip.as_str()),
            (1, 0, "::1", "")
        );
        assert_eq!(id.cookie, -5);
        // Missing keys and a null object give Go's zero FlowEvent, which is an Open.
        for zero in [
            &b"{}"[..],
            b"null",
            br#"{"Event":null,"UUID":null,"Timestamp":null}"#,
        ] {
            assert_eq!(
                FlowEvent::decode(zero).unwrap(),
                Decoded::Event(FlowEvent {
                    kind: EventKind::Open,
                    timestamp: Timestamp::ZERO,
                    uuid: String::new(),
                    id: None,
                    netns: None,
                })
            );
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in [
            &b""[..],
            b"not json",
            br#"{"Event":0"#,
            br#"{"Event":"0"}"#,
            br#"{"Event":1.5}"#,
            br#"{"Event":1e2}"#,
            br#"{"Timestamp":"yesterday"}"#,
            br#"{"UUID":5}"#,
            br#"{"ID":{"SPort":70000}}"#,
            br#"{"ID":{"Interface":-1}}"#,
            br#"{"ID":{"Cookie":18446744073709551615}}"#,
            br#"{"ID":[1]}"#,
            br#"[{"Event":0}]"#,
            br#"{"Event":0} {"Event":1}"#,
        ] {
            let err = FlowEvent::decode(bad).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid event line"),
                "{}: {err}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn arb_timestamp() -> impl Strategy<Value = Timestamp> {
        (0i64..253_402_200_000, 0u32..1_000_000_000, -1439i32..1440)
            .prop_map(|(s, n, m)| Timestamp::with_offset(s, n, m * 60).unwrap())
    }

    fn arb_id() -> impl Strategy<Value = FlowId> {
        (any::<(u16, u16, u32, i64)>(), ".*", ".*").prop_map(
            |((sport, dport, interface, cookie), src_ip, dst_ip)| FlowId {
                sport,
                dport,
                src_ip,
                dst_ip,
                interface,
                cookie,
            },
        )
    }

    fn arb_event() -> impl Strategy<Value = FlowEvent> {
        (
            any::<bool>(),
            arb_timestamp(),
            ".*",
            proptest::option::of(arb_id()),
            proptest::option::of((any::<u32>(), proptest::option::of(".*"))),
        )
            .prop_map(|(open, timestamp, uuid, id, netns)| FlowEvent {
                kind: if open {
                    EventKind::Open
                } else {
                    EventKind::Close
                },
                timestamp,
                uuid,
                id,
                netns: netns.map(|(inode, pod_name)| {
                    Arc::new(NetnsTag {
                        inode,
                        pod_name,
                        ..NetnsTag::default()
                    })
                }),
            })
    }

    proptest! {
        #[test]
        fn json_round_trip(event in arb_event()) {
            let line = event.to_line();
            prop_assert_eq!(line.last(), Some(&b'\n'));
            prop_assert_eq!(line.split(|&b| b == b'\n').count(), 2);
            // A standard JSON parser agrees on the content and the key order.
            let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
            prop_assert_eq!(value["UUID"].as_str(), Some(event.uuid.as_str()));
            let text = std::str::from_utf8(&line).unwrap();
            let keys: Vec<usize> = ["\"Event\":", "\"Timestamp\":", "\"UUID\":", "\"ID\":"]
                .iter()
                .map(|k| text.find(k).unwrap())
                .collect();
            prop_assert!(keys.windows(2).all(|w| w[0] < w[1]));
            let expected = FlowEvent { timestamp: event.timestamp.to_utc(), ..event };
            prop_assert_eq!(FlowEvent::decode(&line).unwrap(), Decoded::Event(expected));
        }
    }
}
