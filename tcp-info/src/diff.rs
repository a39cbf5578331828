//! Change detection: whether a record differs enough from the previous poll's record of the
//! same connection to be archived (SPEC §6.2), with SPEC §12 D3 and D7 fixed.
//!
//! Every result other than [`Change::NoMajorChange`] means "write it". The collector must write at
//! least every record upstream would write; the only reduction allowed is D3 (a time-wait
//! minisock without `tcp_info` no longer writes a `[null]` line every poll).

use crate::record::{Attributes, RAW_IDM_LEN};
use crate::tcpinfo::{COMPARED_COUNTERS, COMPARED_HEAD};
use crate::wire::attr;
use crate::wire::inet_diag::offset::STATE;
use thiserror::Error;

/// Index of `INET_DIAG_INFO` (struct tcp_info) in the attribute array.
const INFO: usize = attr::INFO as usize;

/// The outcome of a comparison; the discriminants are upstream's enum values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Change {
    /// Nothing that matters changed: do not write.
    NoMajorChange = 0,
    /// `idiag_state` changed.
    IDiagStateChange = 1,
    /// One of the records lacks `tcp_info`.
    NoTCPInfo = 2,
    /// An attribute appeared (or the array grew).
    NewAttribute = 3,
    /// An attribute disappeared (or the array shrank).
    LostAttribute = 4,
    /// An attribute other than `tcp_info` changed length.
    AttributeLength = 5,
    /// Compared `tcp_info` bytes differ, or its length changed (D7).
    StateOrCounterChange = 6,
    /// Unused, kept for upstream's numbering.
    PacketCountChange = 7,
    /// No previous record: the connection is new.
    PreviousWasNil = 8,
    /// An attribute other than `tcp_info` changed content.
    Other = 9,
}

impl Change {
    /// Whether the record must be written.
    pub fn is_change(self) -> bool {
        self != Change::NoMajorChange
    }

    /// Upstream's name for the result, for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Change::NoMajorChange => "NoMajorChange",
            Change::IDiagStateChange => "IDiagStateChange",
            Change::NoTCPInfo => "NoTCPInfo",
            Change::NewAttribute => "NewAttribute",
            Change::LostAttribute => "LostAttribute",
            Change::AttributeLength => "AttributeLength",
            Change::StateOrCounterChange => "StateOrCounterChange",
            Change::PacketCountChange => "PacketCountChange",
            Change::PreviousWasNil => "PreviousWasNil",
            Change::Other => "Other",
        }
    }
}

/// A record that cannot be compared: its `RawIDM` is shorter than 72 bytes. Upstream drops and
/// logs such a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("cannot compare records: RawIDM of {len} bytes in the {which} record, 72 needed")]
pub struct CompareError {
    /// `"current"` or `"previous"`.
    pub which: &'static str,
    /// The short length.
    pub len: usize,
}

/// Compares `current` with the previous poll's record of the same connection.
///
/// Either side may be an owned record or a payload parsed in place ([`Attributes`]).
pub fn compare<C: Attributes + ?Sized, P: Attributes + ?Sized>(
    current: &C,
    previous: Option<&P>,
) -> Result<Change, CompareError> {
    let Some(previous) = previous else {
        return Ok(Change::PreviousWasNil);
    };
    for (which, len) in [
        ("current", current.raw_idm().len()),
        ("previous", previous.raw_idm().len()),
    ] {
        if len < RAW_IDM_LEN {
            return Err(CompareError { which, len });
        }
    }
    if current.raw_idm()[STATE] != previous.raw_idm()[STATE] {
        return Ok(Change::IDiagStateChange);
    }
    let (cur_info, prev_info) = (current.attribute(INFO), previous.attribute(INFO));
    let (Some(cur_info), Some(prev_info)) = (cur_info, prev_info) else {
        // D3: two INFO-less records (a time-wait minisock polled twice) with identical
        // attributes are not a change; upstream wrote a `[null]` line every poll.
        if cur_info.is_none() && prev_info.is_none() && same_attributes(current, previous) {
            return Ok(Change::NoMajorChange);
        }
        return Ok(Change::NoTCPInfo);
    };
    // D7: a length change is a change, and only bytes both payloads have are compared.
    // Counters first, then state through `fackets` (rules 5 and 6); the `last_*` timers and
    // everything from `busy_time` on are ignored, as upstream ignores them.
    if cur_info.len() != prev_info.len() {
        return Ok(Change::StateOrCounterChange);
    }
    for range in [COMPARED_COUNTERS, COMPARED_HEAD] {
        let end = range.end.min(cur_info.len());
        let start = range.start.min(end);
        if cur_info[start..end] != prev_info[start..end] {
            return Ok(Change::StateOrCounterChange);
        }
    }
    let (cur_len, prev_len) = (current.attribute_count(), previous.attribute_count());
    if prev_len < cur_len {
        return Ok(Change::NewAttribute);
    }
    if prev_len > cur_len {
        return Ok(Change::LostAttribute);
    }
    for t in (0..cur_len).filter(|&t| t != INFO) {
        match (previous.attribute(t), current.attribute(t)) {
            (None, Some(_)) => return Ok(Change::NewAttribute),
            (Some(_), None) => return Ok(Change::LostAttribute),
            (Some(p), Some(c)) if p.len() != c.len() => return Ok(Change::AttributeLength),
            (Some(p), Some(c)) if p != c => return Ok(Change::Other),
            _ => {}
        }
    }
    Ok(Change::NoMajorChange)
}

fn same_attributes<A: Attributes + ?Sized, B: Attributes + ?Sized>(a: &A, b: &B) -> bool {
    a.attribute_count() == b.attribute_count()
        && (0..a.attribute_count()).all(|t| a.attribute(t) == b.attribute(t))
}

#[cfg(test)]
mod tests {
    use super::{Change, CompareError, INFO, STATE};
    use crate::record::{ArchivalRecord, ParsedPayload, Timestamp};
    use proptest::prelude::*;

    /// The comparison on owned records (the generic one cannot infer the type of `None`).
    fn compare(
        current: &ArchivalRecord,
        previous: Option<&ArchivalRecord>,
    ) -> Result<Change, CompareError> {
        super::compare(current, previous)
    }

    fn record(state: u8, attrs: &[Option<Vec<u8>>]) -> ArchivalRecord {
        let mut idm = [0u8; 72];
        idm[STATE] = state;
        let refs: Vec<Option<&[u8]>> = attrs.iter().map(Option::as_deref).collect();
        ArchivalRecord::new(Timestamp::ZERO, &idm, &refs)
    }

    fn with_info(info: Vec<u8>) -> ArchivalRecord {
        record(
            1,
            &[
                None,
                Some(vec![1; 16]),
                Some(info),
                None,
                Some(b"cubic\0".to_vec()),
            ],
        )
    }

    #[test]
    fn upstream_conformance_cases() {
        // SPEC §16: bytes [44,60) changed → no change; byte 10 or byte 60 → StateOrCounterChange.
        let base = with_info(vec![0; 168]);
        let mut timers = vec![0; 168];
        timers[44..60].fill(9);
        assert_eq!(
            compare(&with_info(timers), Some(&base)),
            Ok(Change::NoMajorChange)
        );
        for byte in [10, 60, 167] {
            let mut info = vec![0; 168];
            info[byte] = 1;
            assert_eq!(
                compare(&with_info(info), Some(&base)),
                Ok(Change::StateOrCounterChange),
                "byte {byte}"
            );
        }
        let mut state = with_info(vec![0; 168]);
        state = {
            let mut idm = state.raw_idm().to_vec();
            idm[STATE] = 8;
            let attrs: Vec<Option<&[u8]>> = state.attributes().collect();
            ArchivalRecord::new(Timestamp::ZERO, &idm, &attrs)
        };
        assert_eq!(compare(&state, Some(&base)), Ok(Change::IDiagStateChange));
        assert_eq!(compare(&base, None), Ok(Change::PreviousWasNil));
    }

    #[test]
    fn ignored_ranges_and_other_attributes() {
        let base = with_info(vec![0; 232]);
        let mut tail = vec![0; 232];
        tail[168..].fill(7);
        assert_eq!(
            compare(&with_info(tail), Some(&base)),
            Ok(Change::NoMajorChange)
        );
        let mut meminfo = record(
            1,
            &[
                None,
                Some(vec![2; 16]),
                Some(vec![0; 232]),
                None,
                Some(b"cubic\0".to_vec()),
            ],
        );
        assert_eq!(compare(&meminfo, Some(&base)), Ok(Change::Other));
        meminfo = record(
            1,
            &[
                None,
                Some(vec![1; 20]),
                Some(vec![0; 232]),
                None,
                Some(b"cubic\0".to_vec()),
            ],
        );
        assert_eq!(compare(&meminfo, Some(&base)), Ok(Change::AttributeLength));
        let lost = record(
            1,
            &[
                None,
                None,
                Some(vec![0; 232]),
                None,
                Some(b"cubic\0".to_vec()),
            ],
        );
        assert_eq!(compare(&lost, Some(&base)), Ok(Change::LostAttribute));
        assert_eq!(compare(&base, Some(&lost)), Ok(Change::NewAttribute));
        let longer = record(
            1,
            &[
                None,
                Some(vec![1; 16]),
                Some(vec![0; 232]),
                None,
                Some(b"cubic\0".to_vec()),
                Some(vec![0]),
            ],
        );
        assert_eq!(compare(&longer, Some(&base)), Ok(Change::NewAttribute));
        assert_eq!(compare(&base, Some(&longer)), Ok(Change::LostAttribute));
    }

    #[test]
    fn d3_time_wait_minisock_writes_once() {
        let tw = record(5, &[None]);
        assert_eq!(compare(&tw, None), Ok(Change::PreviousWasNil));
        assert_eq!(compare(&tw, Some(&tw.clone())), Ok(Change::NoMajorChange));
        // INFO appearing or vanishing is still a change.
        let live = with_info(vec![0; 168]);
        let live5 = record(5, &[None, None, Some(vec![0; 168])]);
        assert_eq!(compare(&tw, Some(&live5)), Ok(Change::NoTCPInfo));
        assert_eq!(compare(&live5, Some(&tw)), Ok(Change::NoTCPInfo));
        // Two INFO-less records whose other attributes differ are a change.
        let other = record(1, &[None, Some(vec![1])]);
        assert_eq!(
            compare(&record(1, &[None, Some(vec![2])]), Some(&other)),
            Ok(Change::NoTCPInfo)
        );
        assert!(compare(&live, Some(&live)).is_ok_and(|c| !c.is_change()));
    }

    #[test]
    fn d7_short_and_resized_tcp_info() {
        // Shorter than 168 bytes: no out-of-bounds, compared where both have bytes.
        let short = with_info(vec![0; 100]);
        let mut changed = vec![0; 100];
        changed[80] = 1;
        assert_eq!(
            compare(&with_info(changed), Some(&short)),
            Ok(Change::StateOrCounterChange)
        );
        assert_eq!(
            compare(&short, Some(&short.clone())),
            Ok(Change::NoMajorChange)
        );
        let tiny = with_info(vec![0; 20]);
        assert_eq!(
            compare(&tiny, Some(&tiny.clone())),
            Ok(Change::NoMajorChange)
        );
        assert_eq!(
            compare(&with_info(vec![0; 224]), Some(&with_info(vec![0; 232]))),
            Ok(Change::StateOrCounterChange)
        );
    }

    #[test]
    fn short_raw_idm_is_an_error() {
        let bad = ArchivalRecord::new(Timestamp::ZERO, &[0; 10], &[None]);
        let good = with_info(vec![0; 168]);
        assert_eq!(
            compare(&bad, Some(&good)),
            Err(CompareError {
                which: "current",
                len: 10
            })
        );
        assert_eq!(
            compare(&good, Some(&bad)),
            Err(CompareError {
                which: "previous",
                len: 10
            })
        );
        assert!(
            CompareError {
                which: "current",
                len: 10
            }
            .to_string()
            .contains("72 needed")
        );
    }

    fn arb_record() -> impl Strategy<Value = ArchivalRecord> {
        let attr = prop::option::weighted(0.7, prop::collection::vec(0u8..3, 0..6));
        let info = prop::option::weighted(
            0.8,
            (
                prop_oneof![Just(168usize), Just(224), Just(40)],
                prop::collection::vec(0u8..2, 232),
            ),
        )
        .prop_map(|o| {
            o.map(|(len, mut v)| {
                v.truncate(len);
                v
            })
        });
        (1u8..3, prop::collection::vec(attr, 0..7), info).prop_map(|(state, mut attrs, info)| {
            if attrs.len() > 2 || info.is_some() {
                attrs.resize(attrs.len().max(3), None);
                attrs[2] = info;
            }
            record(state, &attrs)
        })
    }

    fn mirror(c: Change) -> Change {
        match c {
            Change::NewAttribute => Change::LostAttribute,
            Change::LostAttribute => Change::NewAttribute,
            other => other,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Swapping the records gives the same decision, and the mirrored kind.
        #[test]
        fn symmetric(a in arb_record(), b in arb_record()) {
            let ab = compare(&a, Some(&b)).unwrap();
            let ba = compare(&b, Some(&a)).unwrap();
            prop_assert_eq!(ab, mirror(ba));
            prop_assert_eq!(ab.is_change(), ba.is_change());
        }

        /// A state change is never "no change", and a record equal to its predecessor never is
        /// a change unless it lacks tcp_info while its attributes differ (impossible when equal).
        #[test]
        fn state_changes_are_changes(a in arb_record(), b in arb_record()) {
            if a.raw_idm()[STATE] != b.raw_idm()[STATE] {
                prop_assert_eq!(compare(&a, Some(&b)).unwrap(), Change::IDiagStateChange);
            }
            prop_assert_eq!(compare(&a, Some(&a.clone())).unwrap(), Change::NoMajorChange);
        }

        /// Comparing a payload parsed in place gives what comparing its owned record gives.
        #[test]
        fn parsed_payload_compares_like_its_record(a in arb_record(), b in arb_record()) {
            let mut payload = a.raw_idm().to_vec();
            for (t, value) in a.attributes().enumerate() {
                if let Some(v) = value {
                    payload.extend(((v.len() + 4) as u16).to_ne_bytes());
                    payload.extend((t as u16).to_ne_bytes());
                    payload.extend(v);
                    payload.resize(payload.len().div_ceil(4) * 4, 0);
                }
            }
            let parsed = ParsedPayload::parse(&payload).unwrap();
            let rebuilt = parsed.to_record(Timestamp::ZERO);
            // Trailing nulls of the array are not representable on the wire.
            if rebuilt.attribute_count() == a.attribute_count() {
                prop_assert_eq!(super::compare(&parsed, Some(&b)), compare(&a, Some(&b)));
                prop_assert_eq!(super::compare(&b, Some(&parsed)), compare(&b, Some(&a)));
            }
        }

        /// Any difference outside the ignored tcp_info ranges is a change.
        #[test]
        fn differences_outside_ignored_ranges_are_changes(a in arb_record(), b in arb_record()) {
            let masked = |r: &ArchivalRecord| -> (u8, Vec<Option<Vec<u8>>>) {
                let attrs = r.attributes().enumerate().map(|(t, v)| v.map(|v| {
                    if t == INFO {
                        v.iter().enumerate().map(|(i, &x)| if (44..60).contains(&i) || i >= 168 { 0 } else { x }).collect::<Vec<u8>>()
                    } else { v.to_vec() }
                })).collect();
                (r.raw_idm()[STATE], attrs)
            };
            let both_infoless = a.attribute(INFO).is_none() && b.attribute(INFO).is_none();
            let lengths_differ = a.attribute(INFO).map(<[u8]>::len) != b.attribute(INFO).map(<[u8]>::len);
            if masked(&a) != masked(&b) || (lengths_differ && !both_infoless) {
                prop_assert!(compare(&a, Some(&b)).unwrap().is_change());
            }
        }
    }
}
