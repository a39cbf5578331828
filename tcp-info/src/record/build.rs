//! Building an [`ArchivalRecord`] from a raw sock_diag reply (SPEC §3.6).

use super::{ArchivalRecord, Attributes, Timestamp};
use crate::wire::netlink::{Message, SOCK_DIAG_BY_FAMILY, align, u16_at};
use thiserror::Error;

/// Size of `struct inet_diag_msg`, archived verbatim as `RawIDM`.
pub const RAW_IDM_LEN: usize = crate::wire::inet_diag::MSG_LEN;
/// The highest attribute type upstream archives: 2 × its `INET_DIAG_MAX` of 19.
pub const INET_DIAG_MAX_TYPE: u16 = 38;

/// Why a reply could not become a record. Upstream drops such messages; so does the collector,
/// counting them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BuildError {
    /// The netlink message is not `SOCK_DIAG_BY_FAMILY`.
    #[error("netlink message type {0} is not SOCK_DIAG_BY_FAMILY (20)")]
    NotSockDiag(u16),
    /// Fewer than 72 payload bytes.
    #[error("sock_diag payload of {0} bytes is shorter than the 72-byte inet_diag_msg")]
    Truncated(usize),
    /// An attribute header is inconsistent with the bytes that follow it.
    #[error("attribute at payload offset {offset} has nla_len {len} with {remaining} bytes left")]
    BadAttributeLength {
        /// Offset of the attribute header within the payload.
        offset: usize,
        /// The claimed `nla_len`.
        len: u16,
        /// Bytes left from the header on.
        remaining: usize,
    },
}

/// Attributes left out of a record because their type exceeds [`INET_DIAG_MAX_TYPE`]
/// (which includes types carrying the nested/byte-order flag bits). Upstream logs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DroppedAttributes {
    /// How many were dropped.
    pub count: u16,
    /// The type of the first one dropped.
    pub first_type: u16,
}

impl ArchivalRecord {
    /// Builds a record from a netlink message, which must be `SOCK_DIAG_BY_FAMILY`.
    pub fn from_netlink(
        message: &Message<'_>,
        timestamp: Timestamp,
    ) -> Result<(Self, DroppedAttributes), BuildError> {
        if message.header.kind != SOCK_DIAG_BY_FAMILY {
            return Err(BuildError::NotSockDiag(message.header.kind));
        }
        Self::from_diag_payload(message.payload, timestamp)
    }

    /// Builds a record from a sock_diag payload (`inet_diag_msg` followed by attributes): the
    /// first 72 bytes verbatim, then the attribute array indexed by type. Exclusion (SPEC §8.2)
    /// is the caller's business and should run on the payload first.
    pub fn from_diag_payload(
        payload: &[u8],
        timestamp: Timestamp,
    ) -> Result<(Self, DroppedAttributes), BuildError> {
        let parsed = ParsedPayload::parse(payload)?;
        Ok((parsed.to_record(timestamp), parsed.dropped))
    }
}

/// A sock_diag payload split into `RawIDM` and its attribute array (SPEC §3.6) without copying:
/// the collector compares it with the cached record and only builds an [`ArchivalRecord`] when
/// something changed.
#[derive(Debug, Clone)]
pub struct ParsedPayload<'a> {
    raw_idm: &'a [u8],
    slots: [Option<&'a [u8]>; INET_DIAG_MAX_TYPE as usize + 1],
    /// Length of the attribute array: the highest type seen, capped at
    /// [`INET_DIAG_MAX_TYPE`], plus one (at least 1).
    count: usize,
    /// Attributes left out because their type exceeds [`INET_DIAG_MAX_TYPE`].
    pub dropped: DroppedAttributes,
}

impl<'a> ParsedPayload<'a> {
    /// Splits `payload`; fails where upstream drops the message.
    pub fn parse(payload: &'a [u8]) -> Result<Self, BuildError> {
        if payload.len() < RAW_IDM_LEN {
            return Err(BuildError::Truncated(payload.len()));
        }
        let mut slots = [None; INET_DIAG_MAX_TYPE as usize + 1];
        let mut max_type = 0u16;
        let mut dropped = DroppedAttributes::default();
        let mut offset = RAW_IDM_LEN;
        // Stops when fewer than 4 bytes (an attribute header) remain.
        while let (Some(len), Some(kind)) = (u16_at(payload, offset), u16_at(payload, offset + 2)) {
            let remaining = payload.len() - offset;
            if len < 4 || usize::from(len) > remaining {
                return Err(BuildError::BadAttributeLength {
                    offset,
                    len,
                    remaining,
                });
            }
            // Upstream sizes the array by every type seen, dropped ones included (SPEC §3.6).
            max_type = max_type.max(kind);
            if kind > INET_DIAG_MAX_TYPE {
                if dropped.count == 0 {
                    dropped.first_type = kind;
                }
                dropped.count = dropped.count.saturating_add(1);
            } else {
                // A repeated type: the last one wins, as upstream.
                slots[usize::from(kind)] = Some(&payload[offset + 4..offset + usize::from(len)]);
            }
            // The last attribute may lack its padding; the next read then finds nothing.
            offset += align(usize::from(len));
        }
        Ok(Self {
            raw_idm: &payload[..RAW_IDM_LEN],
            slots,
            count: usize::from(max_type.min(INET_DIAG_MAX_TYPE)) + 1,
            dropped,
        })
    }

    /// The owned record, stamped with `timestamp`.
    pub fn to_record(&self, timestamp: Timestamp) -> ArchivalRecord {
        ArchivalRecord::new(timestamp, self.raw_idm, &self.slots[..self.count])
    }
}

impl Attributes for ParsedPayload<'_> {
    fn raw_idm(&self) -> &[u8] {
        self.raw_idm
    }

    fn attribute_count(&self) -> usize {
        self.count
    }

    fn attribute(&self, t: usize) -> Option<&[u8]> {
        self.slots.get(..self.count)?.get(t).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::netlink::Header;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut v = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        v.extend(kind.to_ne_bytes());
        v.extend(value);
        v.resize(align(v.len()), 0);
        v
    }

    fn payload(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut p = vec![0u8; RAW_IDM_LEN];
        p[0] = 2;
        for (k, v) in attrs {
            p.extend(attr(*k, v));
        }
        p
    }

    #[test]
    fn indexes_by_type_and_keeps_order_irrelevant() {
        let p = payload(&[(8, &[3]), (5, &[0]), (2, &[1; 10]), (4, b"cubic\0")]);
        let (r, dropped) = ArchivalRecord::from_diag_payload(&p, Timestamp::ZERO).unwrap();
        assert_eq!(dropped.count, 0);
        assert_eq!(r.attribute_count(), 9);
        assert_eq!(r.attribute(2), Some(&[1u8; 10][..]));
        assert_eq!(r.attribute(4), Some(&b"cubic\0"[..]));
        assert_eq!(r.attribute(8), Some(&[3u8][..]));
        assert_eq!(r.attribute(1), None);
        assert_eq!(r.raw_idm(), &p[..72]);
    }

    #[test]
    fn no_attributes_gives_one_null() {
        let (r, _) = ArchivalRecord::from_diag_payload(&payload(&[]), Timestamp::ZERO).unwrap();
        assert_eq!(r.attribute_count(), 1);
        assert_eq!(r.attribute(0), None);
    }

    #[test]
    fn last_duplicate_wins_and_high_types_are_dropped() {
        let p = payload(&[(1, &[1]), (1, &[2]), (39, &[9]), (0x8000 | 2, &[9])]);
        let (r, dropped) = ArchivalRecord::from_diag_payload(&p, Timestamp::ZERO).unwrap();
        assert_eq!(r.attribute(1), Some(&[2u8][..]));
        // Upstream sizes the array by the highest type seen, capped at 38 (SPEC §3.6), so the
        // dropped types leave 37 trailing nulls.
        assert_eq!(r.attribute_count(), 39);
        assert!((2..39).all(|t| r.attribute(t).is_none()));
        assert!(r.to_json_line().ends_with(&b",null]}\n"[..]));
        assert_eq!(
            dropped,
            DroppedAttributes {
                count: 2,
                first_type: 39
            }
        );
    }

    /// Unknown types — above 38, with a flag bit (`NLA_F_NESTED`, `NLA_F_NET_BYTEORDER`), the
    /// largest, empty or of an unaligned length — anywhere among known ones leave those intact
    /// (no masking: `0x4000 | 5` is not type 5), are counted, and the record survives its JSON
    /// line unchanged.
    #[test]
    fn unknown_types_anywhere_are_counted_and_leave_the_record_intact() {
        let info = [7u8; 16];
        let p = payload(&[
            (0x4000 | 5, &[1, 2, 3]),
            (2, &info),
            (u16::MAX, &[]),
            (4, b"cubic\0"),
            (0x8000 | 2, &[9; 5]),
            (39, &[1; 5]),
            (8, &[3]),
        ]);
        let (r, dropped) = ArchivalRecord::from_diag_payload(&p, Timestamp::ZERO).unwrap();
        assert_eq!(
            dropped,
            DroppedAttributes {
                count: 4,
                first_type: 0x4005
            }
        );
        assert_eq!(r.attribute(2), Some(&info[..]));
        assert_eq!(r.attribute(4), Some(&b"cubic\0"[..]));
        assert_eq!(r.attribute(8), Some(&[3u8][..]));
        assert_eq!(r.attribute(5), None);
        assert_eq!(r.attribute_count(), 39);
        assert_eq!(ArchivalRecord::from_json(&r.to_json_line()).unwrap(), r);
        // The same payload without the unknown types differs only in the array's length.
        let known = payload(&[(2, &info), (4, b"cubic\0"), (8, &[3])]);
        let (k, none) = ArchivalRecord::from_diag_payload(&known, Timestamp::ZERO).unwrap();
        assert_eq!(none.count, 0);
        assert_eq!(k.attribute_count(), 9);
        assert!((0..39).all(|t| k.attribute(t) == r.attribute(t)));
    }

    #[test]
    fn rejects_truncated_wrong_type_and_bad_lengths() {
        assert_eq!(
            ArchivalRecord::from_diag_payload(&[0; 71], Timestamp::ZERO).unwrap_err(),
            BuildError::Truncated(71)
        );
        let mut p = payload(&[(2, &[0; 8])]);
        p[72..74].copy_from_slice(&3u16.to_ne_bytes());
        assert!(matches!(
            ArchivalRecord::from_diag_payload(&p, Timestamp::ZERO),
            Err(BuildError::BadAttributeLength {
                offset: 72,
                len: 3,
                ..
            })
        ));
        p[72..74].copy_from_slice(&200u16.to_ne_bytes());
        assert!(matches!(
            ArchivalRecord::from_diag_payload(&p, Timestamp::ZERO),
            Err(BuildError::BadAttributeLength { len: 200, .. })
        ));
        let header = Header {
            len: 88,
            kind: 3,
            flags: 0,
            seq: 0,
            pid: 0,
        };
        let msg = Message {
            header,
            payload: &p,
        };
        assert_eq!(
            ArchivalRecord::from_netlink(&msg, Timestamp::ZERO).unwrap_err(),
            BuildError::NotSockDiag(3)
        );
    }

    #[test]
    fn trailing_bytes_shorter_than_a_header_are_ignored() {
        let mut p = payload(&[(5, &[1])]);
        p.extend([0, 0]);
        let (r, _) = ArchivalRecord::from_diag_payload(&p, Timestamp::ZERO).unwrap();
        assert_eq!(r.attribute(5), Some(&[1u8][..]));
    }
}
