//! The query API's parameters and the figures it lists: parsing (every mistake is a 400 that
//! names the parameter) and one connection's key figures.

use std::cmp::Ordering;
use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::record::{ArchivalRecord, Timestamp};
use crate::snapshot::Snapshot;
use crate::wire::inet_diag::state_name;

/// A parameter the client got wrong: answered 400 with this text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadParameter {
    /// The parameter.
    pub name: String,
    /// What is wrong with it.
    pub reason: String,
}

impl BadParameter {
    fn new(name: &str, reason: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Default and largest `limit` of a listing.
pub const DEFAULT_LIMIT: usize = 1000;
/// Largest `limit`.
pub const MAX_LIMIT: usize = 100_000;

/// The figures a listing can be sorted by, as named in `sort=`.
pub const SORT_KEYS: [&str; 7] = [
    "age",
    "bytes_acked",
    "bytes_received",
    "delivery_rate",
    "rtt",
    "cwnd",
    "retransmits",
];

/// `GET /v1/connections` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Only connections with this local or remote port.
    pub port: Option<u16>,
    /// Only connections in this TCP state (`idiag_state`).
    pub state: Option<u8>,
    /// Sort by this figure (one of [`SORT_KEYS`]); `None` sorts by UUID.
    pub sort: Option<&'static str>,
    /// Ascending instead of the default descending order for `sort`.
    pub ascending: bool,
    /// At most this many connections.
    pub limit: usize,
}

/// `GET /v1/connections/{uuid}` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetailQuery {
    /// Answer with an exact query made now instead of the latest archived record.
    pub fresh: bool,
}

/// Splits a query string into decoded `(name, value)` pairs.
fn pairs(query: Option<&str>) -> Result<Vec<(String, String)>, BadParameter> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(Vec::new());
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(name).ok_or_else(|| BadParameter::new(name, "bad %-encoding"))?;
            let value = decode(value).ok_or_else(|| BadParameter::new(&name, "bad %-encoding"))?;
            Ok((name, value))
        })
        .collect()
}

/// Percent-decoding of one query component: `+` is a space.
fn decode(text: &str) -> Option<String> {
    percent_decode(text, true)
}

/// Percent-decoding of one URL component (`%XX` → that byte); `+` is a space when
/// `plus_is_space` (a query), else itself (a path segment). `None` if malformed or not UTF-8.
pub(super) fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

fn unknown(name: &str, allowed: &str) -> BadParameter {
    BadParameter::new(name, format!("unknown parameter (allowed: {allowed})"))
}

impl ListQuery {
    /// Parses the query string of `GET /v1/connections`.
    pub fn parse(query: Option<&str>) -> Result<Self, BadParameter> {
        let mut parsed = Self {
            port: None,
            state: None,
            sort: None,
            ascending: false,
            limit: DEFAULT_LIMIT,
        };
        let mut order = None;
        for (name, value) in pairs(query)? {
            match name.as_str() {
                "port" => {
                    parsed.port = Some(value.parse().map_err(|_| {
                        BadParameter::new("port", format!("{value:?} is not a port (0-65535)"))
                    })?);
                }
                "state" => parsed.state = Some(parse_state(&value)?),
                "sort" => {
                    parsed.sort =
                        Some(SORT_KEYS.into_iter().find(|k| *k == value).ok_or_else(|| {
                            BadParameter::new(
                                "sort",
                                format!("{value:?} is not one of {}", SORT_KEYS.join(", ")),
                            )
                        })?);
                }
                "order" => {
                    order = Some(match value.as_str() {
                        "asc" => true,
                        "desc" => false,
                        _ => {
                            return Err(BadParameter::new(
                                "order",
                                format!("{value:?} is not asc or desc"),
                            ));
                        }
                    });
                }
                "limit" => {
                    parsed.limit = value
                        .parse()
                        .ok()
                        .filter(|l| (1..=MAX_LIMIT).contains(l))
                        .ok_or_else(|| {
                            BadParameter::new(
                                "limit",
                                format!("{value:?} is not a number from 1 to {MAX_LIMIT}"),
                            )
                        })?;
                }
                other => return Err(unknown(other, "port, state, sort, order, limit")),
            }
        }
        if let Some(ascending) = order {
            if parsed.sort.is_none() {
                return Err(BadParameter::new("order", "needs sort"));
            }
            parsed.ascending = ascending;
        }
        Ok(parsed)
    }
}

impl DetailQuery {
    /// Parses the query string of `GET /v1/connections/{uuid}`.
    pub fn parse(query: Option<&str>) -> Result<Self, BadParameter> {
        let mut parsed = Self { fresh: false };
        for (name, value) in pairs(query)? {
            match name.as_str() {
                "fresh" => {
                    parsed.fresh = match value.as_str() {
                        "true" | "1" | "" => true,
                        "false" | "0" => false,
                        _ => {
                            return Err(BadParameter::new(
                                "fresh",
                                format!("{value:?} is not true or false"),
                            ));
                        }
                    };
                }
                other => return Err(unknown(other, "fresh")),
            }
        }
        Ok(parsed)
    }
}

/// A state by upstream name (`ESTABLISHED`, any case) or number (1–11).
fn parse_state(value: &str) -> Result<u8, BadParameter> {
    if let Ok(n) = value.parse::<u8>()
        && (1..=11).contains(&n)
    {
        return Ok(n);
    }
    (1..=11)
        .find(|&n| state_name(n).eq_ignore_ascii_case(value))
        .ok_or_else(|| {
            BadParameter::new(
                "state",
                format!("{value:?} is not a TCP state name (e.g. ESTABLISHED) or number 1-11"),
            )
        })
}

/// One connection's key figures, as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Its UUID.
    pub uuid: String,
    /// `idiag_state`.
    pub state: u8,
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port.
    pub remote: SocketAddr,
    /// `tcpi_bytes_acked`.
    pub bytes_acked: Option<u64>,
    /// `tcpi_bytes_received`.
    pub bytes_received: Option<u64>,
    /// `tcpi_delivery_rate`, bytes per second.
    pub delivery_rate: Option<u64>,
    /// `tcpi_rtt`, microseconds.
    pub rtt_us: Option<u32>,
    /// `tcpi_snd_cwnd`, segments.
    pub cwnd: Option<u32>,
    /// `tcpi_total_retrans`.
    pub retransmits: Option<u32>,
    /// Seconds since the daemon first archived it.
    pub age_s: f64,
    /// Its latest record's time.
    pub updated: Timestamp,
}

impl Summary {
    /// The figures of `record` (already anonymized if addresses must be), `None` if its
    /// `RawIDM` does not decode.
    pub fn of(
        uuid: &str,
        record: &ArchivalRecord,
        first_seen: Timestamp,
        now: Timestamp,
    ) -> Option<Self> {
        let snap = Snapshot::decode(record).ok()?;
        let idm = snap.idm?;
        let info = snap.tcp_info.as_ref();
        let age_ns = now.unix_nanos() - first_seen.unix_nanos();
        Some(Self {
            uuid: uuid.to_owned(),
            state: idm.state,
            local: SocketAddr::new(idm.src, idm.sport),
            remote: SocketAddr::new(idm.dst, idm.dport),
            bytes_acked: info.map(|i| i.bytes_acked),
            bytes_received: info.map(|i| i.bytes_received),
            delivery_rate: info.map(|i| i.delivery_rate),
            rtt_us: info.map(|i| i.rtt),
            cwnd: info.map(|i| i.snd_cwnd),
            retransmits: info.map(|i| i.total_retrans),
            age_s: age_ns.max(0) as f64 / 1e9,
            updated: snap.timestamp,
        })
    }

    /// Whether it passes the listing's filters.
    pub fn matches(&self, query: &ListQuery) -> bool {
        query
            .port
            .is_none_or(|p| self.local.port() == p || self.remote.port() == p)
            && query.state.is_none_or(|s| self.state == s)
    }

    /// The figure `key` (one of [`SORT_KEYS`]); absent figures sort lowest.
    fn figure(&self, key: &str) -> f64 {
        let n = |v: Option<u64>| v.map_or(-1.0, |v| v as f64);
        match key {
            "age" => self.age_s,
            "bytes_acked" => n(self.bytes_acked),
            "bytes_received" => n(self.bytes_received),
            "delivery_rate" => n(self.delivery_rate),
            "rtt" => n(self.rtt_us.map(u64::from)),
            "cwnd" => n(self.cwnd.map(u64::from)),
            "retransmits" => n(self.retransmits.map(u64::from)),
            _ => 0.0,
        }
    }

    /// The JSON object listed for it.
    pub fn to_json(&self) -> Value {
        json!({
            "uuid": self.uuid,
            "state": state_name(self.state),
            "local": self.local.to_string(),
            "remote": self.remote.to_string(),
            "bytes_acked": self.bytes_acked,
            "bytes_received": self.bytes_received,
            "delivery_rate_bps": self.delivery_rate.map(|r| r.saturating_mul(8)),
            "rtt_ms": self.rtt_us.map(|r| f64::from(r) / 1000.0),
            "cwnd": self.cwnd,
            "retransmits": self.retransmits,
            "age_s": (self.age_s * 1000.0).round() / 1000.0,
            "updated": self.updated.to_string(),
        })
    }
}

/// Filters, sorts and cuts `all` as `query` asks; returns the page and how many matched.
pub fn select(mut all: Vec<Summary>, query: &ListQuery) -> (Vec<Summary>, usize) {
    all.retain(|s| s.matches(query));
    let matched = all.len();
    match query.sort {
        None => all.sort_by(|a, b| a.uuid.cmp(&b.uuid)),
        Some(key) => all.sort_by(|a, b| {
            let order = a
                .figure(key)
                .partial_cmp(&b.figure(key))
                .unwrap_or(Ordering::Equal)
                .then_with(|| a.uuid.cmp(&b.uuid));
            if query.ascending {
                order
            } else {
                order.reverse()
            }
        }),
    }
    all.truncate(query.limit);
    (all, matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(query: &str) -> BadParameter {
        ListQuery::parse(Some(query)).unwrap_err()
    }

    #[test]
    fn listing_parameters_and_their_errors() {
        let q = ListQuery::parse(Some(
            "port=443&state=established&sort=rtt&order=asc&limit=5",
        ))
        .unwrap();
        assert_eq!(
            q,
            ListQuery {
                port: Some(443),
                state: Some(1),
                sort: Some("rtt"),
                ascending: true,
                limit: 5
            }
        );
        assert_eq!(ListQuery::parse(Some("state=10")).unwrap().state, Some(10));
        assert_eq!(ListQuery::parse(None).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(bad("port=70000").name, "port");
        assert_eq!(bad("state=OPEN").name, "state");
        assert_eq!(bad("sort=speed").name, "sort");
        assert!(bad("sort=speed").reason.contains("bytes_acked"));
        assert_eq!(bad("order=up&sort=rtt").name, "order");
        assert_eq!(bad("order=asc").name, "order");
        assert_eq!(bad("limit=0").name, "limit");
        assert_eq!(bad("limit=100001").name, "limit");
        assert_eq!(bad("prot=1").name, "prot");
        assert_eq!(bad("port=%zz").name, "port");
        assert_eq!(
            ListQuery::parse(Some("state=SYN%2DSENT")).unwrap_err().name,
            "state"
        );
        assert_eq!(
            ListQuery::parse(Some("state=SYN_SENT")).unwrap().state,
            Some(2)
        );
    }

    #[test]
    fn detail_parameters() {
        assert!(DetailQuery::parse(Some("fresh=true")).unwrap().fresh);
        assert!(DetailQuery::parse(Some("fresh")).unwrap().fresh);
        assert!(!DetailQuery::parse(Some("fresh=false")).unwrap().fresh);
        assert!(!DetailQuery::parse(None).unwrap().fresh);
        assert_eq!(
            DetailQuery::parse(Some("fresh=yes")).unwrap_err().name,
            "fresh"
        );
        assert_eq!(DetailQuery::parse(Some("x=1")).unwrap_err().name, "x");
    }

    fn summary(uuid: &str, port: u16, rtt: u32, acked: Option<u64>) -> Summary {
        Summary {
            uuid: uuid.to_owned(),
            state: 1,
            local: SocketAddr::from(([10, 0, 0, 1], port)),
            remote: SocketAddr::from(([10, 0, 0, 2], 50_000)),
            bytes_acked: acked,
            bytes_received: None,
            delivery_rate: None,
            rtt_us: Some(rtt),
            cwnd: None,
            retransmits: None,
            age_s: 1.0,
            updated: Timestamp::default(),
        }
    }

    #[test]
    fn select_filters_sorts_and_limits() {
        let all = vec![
            summary("c", 80, 300, Some(5)),
            summary("a", 443, 100, None),
            summary("b", 443, 200, Some(9)),
        ];
        let uuids = |v: &[Summary]| v.iter().map(|s| s.uuid.clone()).collect::<Vec<_>>();
        let (page, n) = select(all.clone(), &ListQuery::parse(None).unwrap());
        assert_eq!(
            (uuids(&page), n),
            (vec!["a".into(), "b".into(), "c".into()], 3)
        );
        let (page, n) = select(
            all.clone(),
            &ListQuery::parse(Some("port=443&sort=rtt")).unwrap(),
        );
        assert_eq!((uuids(&page), n), (vec!["b".into(), "a".into()], 2));
        let q = ListQuery::parse(Some("sort=bytes_acked&order=asc&limit=2")).unwrap();
        let (page, n) = select(all, &q);
        assert_eq!(
            (uuids(&page), n),
            (vec!["a".into(), "c".into()], 3),
            "absent sorts lowest"
        );
    }
}
