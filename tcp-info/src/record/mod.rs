//! The archive record: one line of an m-lab/tcp-info JSONL archive (SPEC §3.6, §5).
//!
//! An [`ArchivalRecord`] is either a snapshot (`RawIDM` + `Attributes`) or the Metadata line that
//! starts every file. Snapshots are stored compactly — one buffer with the 72-byte
//! `inet_diag_msg` followed by every attribute payload, plus a slot per attribute index — because
//! the daemon keeps the previous record of every tracked connection in memory.

mod build;
mod json;
mod netns;
mod reader;
mod timestamp;
mod writer;

pub use build::{BuildError, DroppedAttributes, INET_DIAG_MAX_TYPE, ParsedPayload, RAW_IDM_LEN};
pub use json::DecodeError;
#[cfg(feature = "collector")]
pub(crate) use json::push_go_string;
pub use netns::NetnsTag;
pub use reader::{ArchiveReader, ReadError, ReadErrorKind};
pub use timestamp::{Timestamp, TimestampError};
pub use writer::{
    ArchiveWriter, DEFAULT_LEVEL, FrameCompressor, ZSTD_MAGIC, frame_has_content_size,
};

/// The Metadata object of line 1 of every archive file (SPEC §5.5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    /// `<prefix>_<%016X cookie>` (SPEC §5.2).
    pub uuid: String,
    /// The file's segment number, equal to `<SEQ>` in its name.
    pub sequence: i64,
    /// Timestamp of the connection's first observed record, the same in every segment.
    pub start_time: Timestamp,
    /// The opt-in `Netns` key (`--netns.attribution`): written after `StartTime` when set;
    /// upstream never writes it.
    pub netns: Option<std::sync::Arc<NetnsTag>>,
}

/// Read access to a snapshot's `RawIDM` and attribute array, shared by owned records and
/// payloads parsed in place, so that change detection runs on either without copying.
pub trait Attributes {
    /// The raw `inet_diag_msg` (72 bytes for a snapshot).
    fn raw_idm(&self) -> &[u8];
    /// Length of the attribute array.
    fn attribute_count(&self) -> usize;
    /// The payload at index `t`, if present and non-null.
    fn attribute(&self, t: usize) -> Option<&[u8]>;
}

impl Attributes for ArchivalRecord {
    fn raw_idm(&self) -> &[u8] {
        ArchivalRecord::raw_idm(self)
    }

    fn attribute_count(&self) -> usize {
        ArchivalRecord::attribute_count(self)
    }

    fn attribute(&self, t: usize) -> Option<&[u8]> {
        ArchivalRecord::attribute(self, t)
    }
}

/// Where one attribute's payload lives inside [`ArchivalRecord`]'s buffer; `start == NULL` is null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    start: u32,
    len: u32,
}

const NULL: u32 = u32::MAX;

/// One archive line: a timestamped snapshot of a socket, or a Metadata line.
///
/// Equality compares every field, the timestamp's offset included.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ArchivalRecord {
    /// When the record was read (for Metadata lines, the zero time).
    pub timestamp: Timestamp,
    /// Present on the Metadata line only.
    pub metadata: Option<Box<Metadata>>,
    /// `RawIDM` bytes followed by every non-null attribute payload.
    data: Box<[u8]>,
    /// Length of `RawIDM` at the start of `data` (0 = absent).
    raw_idm_len: u32,
    /// One slot per index of the `Attributes` array (empty = absent).
    slots: Box<[Slot]>,
}

impl ArchivalRecord {
    /// A snapshot record from its parts. `raw_idm` is normally 72 bytes; `attributes[t]` is the
    /// payload of attribute type `t` or `None`.
    pub fn new(timestamp: Timestamp, raw_idm: &[u8], attributes: &[Option<&[u8]>]) -> Self {
        let total = raw_idm.len() + attributes.iter().flatten().map(|a| a.len()).sum::<usize>();
        let mut data = Vec::with_capacity(total);
        data.extend_from_slice(raw_idm);
        let slots = attributes
            .iter()
            .map(|attr| match attr {
                None => Slot {
                    start: NULL,
                    len: 0,
                },
                Some(bytes) => {
                    let start = data.len() as u32;
                    data.extend_from_slice(bytes);
                    Slot {
                        start,
                        len: bytes.len() as u32,
                    }
                }
            })
            .collect();
        Self {
            timestamp,
            metadata: None,
            data: data.into_boxed_slice(),
            raw_idm_len: raw_idm.len() as u32,
            slots,
        }
    }

    /// The Metadata line that starts a file: zero Timestamp, no RawIDM, no Attributes.
    pub fn metadata_line(metadata: Metadata) -> Self {
        Self {
            metadata: Some(Box::new(metadata)),
            ..Self::default()
        }
    }

    /// The raw 72-byte `inet_diag_msg`, or an empty slice on a Metadata line.
    pub fn raw_idm(&self) -> &[u8] {
        &self.data[..self.raw_idm_len as usize]
    }

    /// Length of the `Attributes` array (0 when absent).
    pub fn attribute_count(&self) -> usize {
        self.slots.len()
    }

    /// The payload at index `t` of the `Attributes` array, if present and non-null.
    pub fn attribute(&self, t: usize) -> Option<&[u8]> {
        let slot = self.slots.get(t)?;
        (slot.start != NULL)
            .then(|| &self.data[slot.start as usize..(slot.start + slot.len) as usize])
    }

    /// Every entry of the `Attributes` array, in index order.
    pub fn attributes(&self) -> impl ExactSizeIterator<Item = Option<&[u8]>> + '_ {
        (0..self.slots.len()).map(|t| self.attribute(t))
    }

    /// The kernel socket cookie from RawIDM bytes 44–51 (host order), if RawIDM reaches them.
    pub fn cookie(&self) -> Option<u64> {
        crate::wire::inet_diag::cookie(self.raw_idm())
    }

    /// Whether this is a Metadata line.
    pub fn is_metadata(&self) -> bool {
        self.metadata.is_some()
    }

    /// Approximate heap bytes held by this record (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.data.len()
            + self.slots.len() * std::mem::size_of::<Slot>()
            + self
                .metadata
                .as_ref()
                .map_or(0, |m| m.uuid.len() + std::mem::size_of::<Metadata>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_roundtrip() {
        let idm = [7u8; 72];
        let r = ArchivalRecord::new(Timestamp::ZERO, &idm, &[None, Some(b"ab"), None, Some(b"")]);
        assert_eq!(r.raw_idm(), &idm);
        assert_eq!(r.attribute_count(), 4);
        assert_eq!(r.attribute(0), None);
        assert_eq!(r.attribute(1), Some(&b"ab"[..]));
        assert_eq!(r.attribute(3), Some(&b""[..]));
        assert_eq!(r.attribute(9), None);
        assert_eq!(r.cookie(), Some(0x0707_0707_0707_0707));
        let m = ArchivalRecord::metadata_line(Metadata::default());
        assert!(m.is_metadata() && m.raw_idm().is_empty() && m.attribute_count() == 0);
        assert_eq!(m.cookie(), None);
    }
}
