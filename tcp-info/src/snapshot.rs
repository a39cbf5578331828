//! The typed decode of one archive record, for tools (csvtool, analyses).
//!
//! Like upstream's `snapshot` package, with its decoder defects fixed (SPEC §12 D6): the
//! `Observed` and `NotFullyParsed` flags are a bit set of any width, `idiag_if` and the cookie
//! are read in host order, addresses follow the family, `CLASS_ID` is a full u32, an empty `CONG`
//! payload is `""`, and `tcp_info` is decoded up to the 6.18 layout.
//!
//! Flags (SPEC §4.4): for every non-null index `t ≥ 1` of the `Attributes` array, bit `t − 1`
//! is set in [`Snapshot::observed`]; it is also set in [`Snapshot::not_fully_parsed`] when the
//! payload is longer than the struct it decodes into or the type is not decoded here. A shorter
//! payload is zero-filled and counts as parsed. A non-null index 0 (never written by a kernel)
//! has no bit; it is kept in [`Snapshot::undecoded`].

use crate::record::{ArchivalRecord, Metadata, Timestamp};
use crate::tcpinfo::TcpInfo;
use crate::wire::attr::{self, BbrInfo, DctcpInfo, MemInfo, SkMemInfo, SockOpt, VegasInfo};
use crate::wire::inet_diag::{InetDiagMsg, ShortMessage, state_name};
use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use thiserror::Error;

/// A record that cannot be decoded into a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    /// The line has neither `RawIDM` nor `Metadata` (upstream's `ErrEmptyRecord`).
    #[error("record has neither RawIDM nor Metadata")]
    Empty,
    /// `RawIDM` is present but shorter than an `inet_diag_msg`.
    #[error("bad RawIDM: {0}")]
    ShortIdm(#[from] ShortMessage),
}

/// A set of attribute types, as bits (type `t` is bit `t − 1`), of any width (D6: upstream's
/// `uint32` loses types ≥ 33). Displays as the decimal value of the whole bit set, which for
/// types ≤ 32 equals upstream's number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TypeSet {
    /// Types 1–64.
    low: u64,
    /// Types 65 and up, 64 per word; never ends with a zero word.
    high: Vec<u64>,
}

impl TypeSet {
    /// Adds type `t`; type 0 has no bit and is ignored.
    pub fn insert(&mut self, t: usize) {
        let Some(bit) = t.checked_sub(1) else {
            return;
        };
        if bit < 64 {
            self.low |= 1 << bit;
        } else {
            let word = bit / 64 - 1;
            if self.high.len() <= word {
                self.high.resize(word + 1, 0);
            }
            self.high[word] |= 1 << (bit % 64);
        }
    }

    /// Whether type `t` is in the set.
    pub fn contains(&self, t: usize) -> bool {
        let Some(bit) = t.checked_sub(1) else {
            return false;
        };
        let word = if bit < 64 {
            self.low
        } else {
            self.high.get(bit / 64 - 1).copied().unwrap_or(0)
        };
        word >> (bit % 64) & 1 == 1
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.low == 0 && self.high.is_empty()
    }

    /// The bits as a `u64` when every type is ≤ 64.
    pub fn as_u64(&self) -> Option<u64> {
        self.high.is_empty().then_some(self.low)
    }

    /// The types in the set, ascending.
    pub fn types(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.low)
            .chain(self.high.iter().copied())
            .enumerate()
            .flat_map(|(w, word)| {
                (0..64)
                    .filter(move |b| word >> b & 1 == 1)
                    .map(move |b| w * 64 + b + 1)
            })
    }
}

impl fmt::Display for TypeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Arbitrary-width decimal: divide the little-endian words by 10^19 repeatedly.
        const CHUNK: u64 = 10_000_000_000_000_000_000;
        if self.high.is_empty() {
            return write!(f, "{}", self.low);
        }
        let mut words: Vec<u64> = std::iter::once(self.low)
            .chain(self.high.iter().copied())
            .collect();
        let mut chunks = Vec::new();
        while words.iter().any(|&w| w != 0) {
            let mut rem: u128 = 0;
            for w in words.iter_mut().rev() {
                let cur = rem << 64 | u128::from(*w);
                *w = (cur / u128::from(CHUNK)) as u64;
                rem = cur % u128::from(CHUNK);
            }
            chunks.push(rem as u64);
        }
        let mut iter = chunks.iter().rev();
        if let Some(first) = iter.next() {
            write!(f, "{first}")?;
        }
        for chunk in iter {
            write!(f, "{chunk:019}")?;
        }
        Ok(())
    }
}

/// The decoded `inet_diag_msg` (SPEC §4.1), with D6's corrections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idm {
    /// `idiag_family` (2 `AF_INET`, 10 `AF_INET6`).
    pub family: u8,
    /// `idiag_state` (SPEC §4.2).
    pub state: u8,
    /// `idiag_timer`.
    pub timer: u8,
    /// `idiag_retrans`.
    pub retrans: u8,
    /// Local port.
    pub sport: u16,
    /// Remote port.
    pub dport: u16,
    /// Local address, read as the family says.
    pub src: IpAddr,
    /// Remote address, read as the family says.
    pub dst: IpAddr,
    /// The raw 16 bytes of the local address (for upstream-style rendering).
    pub src_bytes: [u8; 16],
    /// The raw 16 bytes of the remote address.
    pub dst_bytes: [u8; 16],
    /// `idiag_if`, host order.
    pub interface: u32,
    /// The socket cookie, host order.
    pub cookie: u64,
    /// `idiag_expires` (ms).
    pub expires: u32,
    /// `idiag_rqueue`.
    pub rqueue: u32,
    /// `idiag_wqueue`.
    pub wqueue: u32,
    /// `idiag_uid`.
    pub uid: u32,
    /// `idiag_inode` (0 for time-wait minisocks).
    pub inode: u32,
}

impl Idm {
    /// Copies every field out of a message view.
    pub fn from_msg(m: &InetDiagMsg<'_>) -> Self {
        Self {
            family: m.family(),
            state: m.state(),
            timer: m.timer(),
            retrans: m.retrans(),
            sport: m.sport(),
            dport: m.dport(),
            src: m.src(),
            dst: m.dst(),
            src_bytes: *m.src_bytes(),
            dst_bytes: *m.dst_bytes(),
            interface: m.interface(),
            cookie: m.cookie(),
            expires: m.expires(),
            rqueue: m.rqueue(),
            wqueue: m.wqueue(),
            uid: m.uid(),
            inode: m.inode(),
        }
    }

    /// The upstream name of the state (`ESTABLISHED`, …).
    pub fn state_name(&self) -> Cow<'static, str> {
        state_name(self.state)
    }
}

/// An attribute this module does not decode, kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAttribute {
    /// Its index in the `Attributes` array, i.e. its type.
    pub kind: usize,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// One archive record, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The record's timestamp (the zero time on Metadata lines).
    pub timestamp: Timestamp,
    /// The Metadata object, on a file's first line.
    pub metadata: Option<Metadata>,
    /// Types present (non-null).
    pub observed: TypeSet,
    /// Types present but longer than their struct, or not decoded.
    pub not_fully_parsed: TypeSet,
    /// The `inet_diag_msg`, absent on a Metadata line.
    pub idm: Option<Idm>,
    /// `INET_DIAG_MEMINFO`.
    pub mem_info: Option<MemInfo>,
    /// `INET_DIAG_INFO`.
    pub tcp_info: Option<TcpInfo>,
    /// `INET_DIAG_VEGASINFO`.
    pub vegas_info: Option<VegasInfo>,
    /// `INET_DIAG_CONG`, without its NUL.
    pub congestion_algorithm: Option<String>,
    /// `INET_DIAG_TOS`.
    pub tos: Option<u8>,
    /// `INET_DIAG_TCLASS`.
    pub tclass: Option<u8>,
    /// `INET_DIAG_SKMEMINFO`.
    pub sk_mem_info: Option<SkMemInfo>,
    /// `INET_DIAG_SHUTDOWN`.
    pub shutdown: Option<u8>,
    /// `INET_DIAG_DCTCPINFO`.
    pub dctcp_info: Option<DctcpInfo>,
    /// `INET_DIAG_PROTOCOL`.
    pub protocol: Option<u8>,
    /// `INET_DIAG_MARK` (only when exactly 4 bytes).
    pub mark: Option<u32>,
    /// `INET_DIAG_BBRINFO`.
    pub bbr_info: Option<BbrInfo>,
    /// `INET_DIAG_CLASS_ID`, the full u32.
    pub class_id: Option<u32>,
    /// `INET_DIAG_CGROUP_ID`.
    pub cgroup_id: Option<u64>,
    /// `INET_DIAG_SOCKOPT`.
    pub sockopt: Option<SockOpt>,
    /// Every non-null attribute not decoded above, in index order.
    pub undecoded: Vec<RawAttribute>,
}

impl Snapshot {
    /// Decodes a record. Fails only when it has neither `RawIDM` nor Metadata, or when `RawIDM` is
    /// shorter than 72 bytes; attribute payloads of any length decode.
    pub fn decode(record: &ArchivalRecord) -> Result<Self, SnapshotError> {
        let raw_idm = record.raw_idm();
        if raw_idm.is_empty() && record.metadata.is_none() {
            return Err(SnapshotError::Empty);
        }
        let idm = if raw_idm.is_empty() {
            None
        } else {
            Some(Idm::from_msg(&InetDiagMsg::new(raw_idm)?))
        };
        let mut snap = Self {
            timestamp: record.timestamp,
            metadata: record.metadata.as_deref().cloned(),
            idm,
            ..Self::default()
        };
        for (t, payload) in record.attributes().enumerate() {
            let Some(payload) = payload else { continue };
            if t == 0 {
                snap.keep_raw(t, payload);
                continue;
            }
            snap.observed.insert(t);
            if !snap.decode_attribute(t, payload) {
                snap.not_fully_parsed.insert(t);
            }
        }
        Ok(snap)
    }

    /// Decodes one attribute into its field; returns whether it was fully parsed.
    fn decode_attribute(&mut self, t: usize, p: &[u8]) -> bool {
        let Ok(kind) = u16::try_from(t) else {
            self.keep_raw(t, p);
            return false;
        };
        match kind {
            attr::MEMINFO => store(&mut self.mem_info, MemInfo::decode(p)),
            attr::INFO => {
                let info = TcpInfo::decode(p);
                let complete = info.extra.is_empty();
                self.tcp_info = Some(info);
                complete
            }
            attr::VEGASINFO => store(&mut self.vegas_info, VegasInfo::decode(p)),
            attr::CONG => {
                self.congestion_algorithm = Some(attr::decode_congestion(p).into_owned());
                true
            }
            attr::TOS => store(&mut self.tos, attr::decode_u8(p)),
            attr::TCLASS => store(&mut self.tclass, attr::decode_u8(p)),
            attr::SKMEMINFO => store(&mut self.sk_mem_info, SkMemInfo::decode(p)),
            attr::SHUTDOWN => store(&mut self.shutdown, attr::decode_u8(p)),
            attr::DCTCPINFO => store(&mut self.dctcp_info, DctcpInfo::decode(p)),
            attr::PROTOCOL => store(&mut self.protocol, attr::decode_u8(p)),
            attr::MARK => {
                self.mark = attr::decode_mark(p);
                if self.mark.is_none() {
                    self.keep_raw(t, p);
                }
                self.mark.is_some()
            }
            attr::BBRINFO => store(&mut self.bbr_info, BbrInfo::decode(p)),
            attr::CLASS_ID => store(&mut self.class_id, attr::decode_class_id(p)),
            attr::CGROUP_ID => store(&mut self.cgroup_id, attr::decode_cgroup_id(p)),
            attr::SOCKOPT => store(&mut self.sockopt, SockOpt::decode(p)),
            _ => {
                self.keep_raw(t, p);
                false
            }
        }
    }

    fn keep_raw(&mut self, kind: usize, payload: &[u8]) {
        self.undecoded.push(RawAttribute {
            kind,
            payload: payload.to_vec(),
        });
    }

    /// Whether this is a Metadata line.
    pub fn is_metadata(&self) -> bool {
        self.metadata.is_some()
    }

    /// The m-lab/etl rule (SPEC §11.1): snapshots with `Observed == 0` — the Metadata line and
    /// attribute-less (`[null]`) time-wait lines — are dropped.
    pub fn is_etl_kept(&self) -> bool {
        !self.observed.is_empty()
    }
}

fn store<T>(slot: &mut Option<T>, decoded: attr::Decoded<T>) -> bool {
    *slot = Some(decoded.value);
    decoded.fit.fully_parsed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::inet_diag::{AF_INET, AF_INET6};

    fn idm(family: u8) -> [u8; 72] {
        let mut b = [0u8; 72];
        b[0] = family;
        b[1] = 1;
        b[4..6].copy_from_slice(&443u16.to_be_bytes());
        b[6..8].copy_from_slice(&50000u16.to_be_bytes());
        b[8..12].copy_from_slice(&[10, 0, 0, 1]);
        b[24..28].copy_from_slice(&[10, 0, 0, 2]);
        b[40..44].copy_from_slice(&2u32.to_ne_bytes());
        b[44..48].copy_from_slice(&0x3E8u32.to_ne_bytes());
        b[68..72].copy_from_slice(&12345u32.to_ne_bytes());
        b
    }

    fn record(family: u8, attrs: &[Option<&[u8]>]) -> ArchivalRecord {
        ArchivalRecord::new(Timestamp::ZERO, &idm(family), attrs)
    }

    #[test]
    fn typeset_bits_and_decimal() {
        let mut s = TypeSet::default();
        assert!(s.is_empty());
        assert_eq!(s.to_string(), "0");
        for t in [1, 2, 4, 5, 6, 7, 8] {
            s.insert(t);
        }
        assert_eq!(s.as_u64(), Some(0xFB));
        assert_eq!(s.to_string(), "251");
        s.insert(0);
        assert_eq!(s.as_u64(), Some(0xFB), "type 0 has no bit");
        assert!(s.contains(8) && !s.contains(3) && !s.contains(0) && !s.contains(500));

        let mut wide = TypeSet::default();
        wide.insert(64);
        assert_eq!(wide.to_string(), (1u64 << 63).to_string());
        wide.insert(65);
        assert_eq!(wide.as_u64(), None);
        assert_eq!(wide.to_string(), (3u128 << 63).to_string());
        wide.insert(128);
        assert_eq!(
            wide.to_string(),
            ((1u128 << 127) | (3u128 << 63)).to_string()
        );
        let mut huge = TypeSet::default();
        huge.insert(130);
        // 2^129 = 680564733841876926926749214863536422912
        assert_eq!(huge.to_string(), "680564733841876926926749214863536422912");
        assert_eq!(wide.types().collect::<Vec<_>>(), [64, 65, 128]);
        assert!(huge.contains(130) && !huge.contains(129));
    }

    #[test]
    fn decodes_every_typed_attribute() {
        let mem: Vec<u8> = [1u32, 2, 3, 4]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let sk: Vec<u8> = (1u32..=9).flat_map(u32::to_ne_bytes).collect();
        let bbr: Vec<u8> = [5u32, 1, 7, 256, 512]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let info = vec![1u8; 224];
        let class = 0x0001_0002u32.to_ne_bytes();
        let cg = 99u64.to_ne_bytes();
        let mut attrs: Vec<Option<&[u8]>> = vec![None; 23];
        attrs[1] = Some(&mem);
        attrs[2] = Some(&info);
        attrs[3] = Some(&mem);
        attrs[4] = Some(b"bbr\0");
        attrs[5] = Some(&[0x28]);
        attrs[6] = Some(&[0]);
        attrs[7] = Some(&sk);
        attrs[8] = Some(&[3]);
        attrs[9] = Some(&mem);
        attrs[10] = Some(&[6]);
        attrs[15] = Some(&[9, 0, 0, 0]);
        attrs[16] = Some(&bbr);
        attrs[17] = Some(&class);
        attrs[21] = Some(&cg);
        attrs[22] = Some(&[0x02, 0x01]);
        let s = Snapshot::decode(&record(AF_INET6, &attrs)).unwrap();
        assert!(s.not_fully_parsed.is_empty(), "{}", s.not_fully_parsed);
        assert_eq!(
            s.observed.types().collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 16, 17, 21, 22]
        );
        assert_eq!(s.mem_info.unwrap().tmem, 4);
        assert_eq!(s.tcp_info.as_ref().unwrap().len, 224);
        assert_eq!(s.vegas_info.unwrap().min_rtt, 4);
        assert_eq!(s.congestion_algorithm.as_deref(), Some("bbr"));
        assert_eq!(
            (s.tos, s.tclass, s.shutdown, s.protocol),
            (Some(0x28), Some(0), Some(3), Some(6))
        );
        assert_eq!(s.sk_mem_info.unwrap().drops, 9);
        assert_eq!(s.dctcp_info.unwrap().alpha, 2);
        assert_eq!(s.mark, Some(9));
        assert_eq!(s.bbr_info.unwrap().bw, (1 << 32) | 5);
        assert_eq!(s.class_id, Some(0x0001_0002));
        assert_eq!(s.cgroup_id, Some(99));
        assert!(
            s.sockopt
                .unwrap()
                .has(SockOpt::IS_ICSK | SockOpt::BIND_ADDRESS_NO_PORT)
        );
        assert!(s.undecoded.is_empty());
        assert!(s.is_etl_kept() && !s.is_metadata());
    }

    #[test]
    fn not_fully_parsed_for_long_and_undecoded() {
        let long_mem = [0u8; 20];
        let long_info = vec![0u8; 300];
        let md5 = [7u8; 10];
        let mut attrs: Vec<Option<&[u8]>> = vec![None; 41];
        attrs[1] = Some(&long_mem);
        attrs[2] = Some(&long_info);
        attrs[4] = Some(b"");
        attrs[11] = Some(&[1]);
        attrs[15] = Some(&[1, 2]);
        attrs[18] = Some(&md5);
        attrs[40] = Some(&[1]);
        let s = Snapshot::decode(&record(AF_INET, &attrs)).unwrap();
        assert_eq!(
            s.observed.types().collect::<Vec<_>>(),
            [1, 2, 4, 11, 15, 18, 40]
        );
        assert_eq!(
            s.not_fully_parsed.types().collect::<Vec<_>>(),
            [1, 2, 11, 15, 18, 40]
        );
        assert_eq!(
            s.congestion_algorithm.as_deref(),
            Some(""),
            "empty CONG (D6)"
        );
        assert_eq!(s.tcp_info.as_ref().unwrap().extra.len(), 20);
        assert_eq!(s.mark, None);
        let kinds: Vec<usize> = s.undecoded.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [11, 15, 18, 40]);
        assert_eq!(s.undecoded[2].payload, md5);
        // Type 40 does not overflow (D6): bit 39 is set.
        assert_eq!(s.observed.as_u64().unwrap() >> 39, 1);
    }

    #[test]
    fn idm_fields_by_family() {
        let s = Snapshot::decode(&record(AF_INET, &[None])).unwrap();
        let idm = s.idm.unwrap();
        assert_eq!(idm.src.to_string(), "10.0.0.1");
        assert_eq!(idm.dst.to_string(), "10.0.0.2");
        assert_eq!((idm.sport, idm.dport), (443, 50000));
        assert_eq!((idm.interface, idm.cookie, idm.inode), (2, 0x3E8, 12345));
        assert_eq!(idm.state_name(), "ESTABLISHED");
        assert!(
            s.observed.is_empty() && !s.is_etl_kept(),
            "[null] lines are dropped by the ETL"
        );

        let v6 = Snapshot::decode(&record(AF_INET6, &[])).unwrap();
        assert_eq!(
            v6.idm.unwrap().src.to_string(),
            "a00:1::",
            "the family decides (D6)"
        );
    }

    #[test]
    fn metadata_and_errors() {
        let meta = Metadata {
            uuid: "host_1_0000000000000001".into(),
            sequence: 3,
            start_time: Timestamp::ZERO,
            netns: None,
        };
        let s = Snapshot::decode(&ArchivalRecord::metadata_line(meta.clone())).unwrap();
        assert_eq!(s.metadata, Some(meta));
        assert!(s.is_metadata() && s.idm.is_none() && !s.is_etl_kept());

        let empty = ArchivalRecord::new(Timestamp::ZERO, &[], &[None, Some(b"x")]);
        assert_eq!(Snapshot::decode(&empty), Err(SnapshotError::Empty));
        let short = ArchivalRecord::new(Timestamp::ZERO, &[2; 40], &[]);
        let err = Snapshot::decode(&short).unwrap_err();
        assert_eq!(err, SnapshotError::ShortIdm(ShortMessage(40)));
        assert_eq!(
            err.to_string(),
            "bad RawIDM: inet_diag_msg needs 72 bytes, got 40"
        );

        let odd = ArchivalRecord::new(Timestamp::ZERO, &idm(AF_INET), &[Some(b"zero")]);
        let s = Snapshot::decode(&odd).unwrap();
        assert!(s.observed.is_empty());
        assert_eq!(s.undecoded.len(), 1);
    }
}
