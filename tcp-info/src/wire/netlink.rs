//! Netlink message framing (`struct nlmsghdr`), shared by the raw-capture reader and the
//! collector's sock_diag sockets.
//!
//! Layout (host order, which is little-endian on every supported host):
//! `len u32 | type u16 | flags u16 | seq u32 | pid u32`, followed by `len - 16` payload bytes,
//! and padding up to the next multiple of 4.

use thiserror::Error;

/// Size of `struct nlmsghdr`.
pub const HEADER_LEN: usize = 16;
/// `NLMSG_ERROR`.
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`.
pub const NLMSG_DONE: u16 = 3;
/// `SOCK_DIAG_BY_FAMILY`, the type of every sock_diag request and data reply.
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_MULTI`: part of a multipart reply.
pub const NLM_F_MULTI: u16 = 0x2;
/// `NLM_F_DUMP_INTR`: the dump was interrupted by a concurrent change; its content is inconsistent.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// `NLM_F_ROOT | NLM_F_MATCH`.
pub const NLM_F_DUMP: u16 = 0x300;

/// The `N` bytes at `at`, or `None` if `bytes` ends before them.
fn bytes_at<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// The host-order `u16` at byte `at`, or `None` if `bytes` ends before it. Netlink and every
/// sock_diag structure carry integers in host order; this and its siblings are the crate's one
/// reader for them.
pub fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    bytes_at(bytes, at).map(u16::from_ne_bytes)
}

/// The host-order `u32` at byte `at`, or `None` if `bytes` ends before it.
pub fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    bytes_at(bytes, at).map(u32::from_ne_bytes)
}

/// The host-order `u64` at byte `at`, or `None` if `bytes` ends before it.
pub fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    bytes_at(bytes, at).map(u64::from_ne_bytes)
}

/// A decoded `nlmsghdr`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    /// Total length of the message, header included.
    pub len: u32,
    /// Message type (`SOCK_DIAG_BY_FAMILY`, `NLMSG_DONE`, …).
    pub kind: u16,
    /// `NLM_F_*` flags.
    pub flags: u16,
    /// Sequence number chosen by the requester.
    pub seq: u32,
    /// Port id of the sender (0 for the kernel).
    pub pid: u32,
}

impl Header {
    /// Decodes a header from the first 16 bytes of `bytes`.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            len: u32_at(bytes, 0)?,
            kind: u16_at(bytes, 4)?,
            flags: u16_at(bytes, 6)?,
            seq: u32_at(bytes, 8)?,
            pid: u32_at(bytes, 12)?,
        })
    }

    /// `len` as a size, checked to cover at least the header itself.
    fn checked_len(&self, offset: u64) -> Result<usize, FrameError> {
        let len = self.len as usize;
        if len < HEADER_LEN {
            return Err(FrameError::LengthTooSmall {
                offset,
                len: self.len,
            });
        }
        Ok(len)
    }

    /// Encodes the header into 16 bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&self.len.to_ne_bytes());
        out[4..6].copy_from_slice(&self.kind.to_ne_bytes());
        out[6..8].copy_from_slice(&self.flags.to_ne_bytes());
        out[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        out[12..16].copy_from_slice(&self.pid.to_ne_bytes());
        out
    }
}

/// One netlink message borrowed from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// The decoded header.
    pub header: Header,
    /// The payload: `header.len - 16` bytes, without trailing padding.
    pub payload: &'a [u8],
}

impl Message<'_> {
    /// For an `NLMSG_ERROR` message, the (positive) errno it carries; 0 is an acknowledgement.
    /// `None` if this is not an error message or its payload is shorter than 4 bytes.
    pub fn errno(&self) -> Option<i32> {
        if self.header.kind != NLMSG_ERROR {
            return None;
        }
        let code: [u8; 4] = bytes_at(self.payload, 0)?;
        Some(-i32::from_ne_bytes(code))
    }
}

/// A framing error: the buffer does not hold a well-formed sequence of messages.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// Fewer than 16 bytes remain where a header should start.
    #[error("truncated netlink header at byte {offset}: {available} bytes left, 16 needed")]
    TruncatedHeader {
        /// Offset of the header within the buffer or stream.
        offset: u64,
        /// Bytes that were left.
        available: usize,
    },
    /// The header's length is smaller than the header itself.
    #[error("netlink header at byte {offset} claims length {len}, less than the 16-byte header")]
    LengthTooSmall {
        /// Offset of the header.
        offset: u64,
        /// The claimed `nlmsg_len`.
        len: u32,
    },
    /// The header claims a message longer than the stream reader accepts (it is not read).
    #[error("netlink message at byte {offset} claims length {len}, over the {max}-byte limit")]
    TooLong {
        /// Offset of the header.
        offset: u64,
        /// The claimed `nlmsg_len`.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// The header's length runs past the end of the buffer.
    #[error(
        "netlink message at byte {offset} claims length {len} but only {available} bytes remain"
    )]
    LengthPastEnd {
        /// Offset of the header.
        offset: u64,
        /// The claimed `nlmsg_len`.
        len: u32,
        /// Bytes that were left.
        available: usize,
    },
}

/// Rounds `len` up to the netlink alignment of 4 bytes.
pub const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// Iterates over the messages packed in one buffer (one `recv`, or a whole capture in memory).
///
/// After an error the iterator is fused: it yields that error once and then `None`.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Messages<'a> {
    /// Starts iterating over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let result = frame(rest, self.pos as u64);
        match result {
            Ok((msg, consumed)) => {
                self.pos += consumed.min(rest.len());
                Some(Ok(msg))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Frames the message at the start of `rest`; returns it and the number of bytes it occupies
/// including alignment padding (which may exceed `rest.len()` for the last message).
fn frame(rest: &[u8], offset: u64) -> Result<(Message<'_>, usize), FrameError> {
    let header = Header::parse(rest).ok_or(FrameError::TruncatedHeader {
        offset,
        available: rest.len(),
    })?;
    let len = header.checked_len(offset)?;
    if len > rest.len() {
        return Err(FrameError::LengthPastEnd {
            offset,
            len: header.len,
            available: rest.len(),
        });
    }
    Ok((
        Message {
            header,
            payload: &rest[HEADER_LEN..len],
        },
        align(len),
    ))
}

/// An owned message read from a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedMessage {
    /// The decoded header.
    pub header: Header,
    /// The payload (`header.len - 16` bytes).
    pub payload: Vec<u8>,
}

impl OwnedMessage {
    /// Borrows this as a [`Message`].
    pub fn as_message(&self) -> Message<'_> {
        Message {
            header: self.header,
            payload: &self.payload,
        }
    }
}

/// An error reading a raw netlink capture stream.
#[derive(Debug, Error)]
pub enum StreamError {
    /// The underlying reader failed (including corrupt or truncated zstd).
    #[error("read failed at byte {offset}: {source}")]
    Io {
        /// Stream offset of the message being read.
        offset: u64,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The stream does not frame as netlink messages.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Reads consecutive netlink messages (`nlmsghdr` + payload, 4-byte aligned) from a byte stream,
/// such as the raw captures `m-lab/tcp-info` tests use, with constant memory.
///
/// Messages longer than `max_len` are a framing error rather than an allocation.
#[derive(Debug)]
pub struct StreamReader<R> {
    input: R,
    offset: u64,
    max_len: u32,
    failed: bool,
}

impl<R: std::io::Read> StreamReader<R> {
    /// Wraps `input`; messages may be at most 1 MiB.
    pub fn new(input: R) -> Self {
        Self {
            input,
            offset: 0,
            max_len: 1 << 20,
            failed: false,
        }
    }

    /// Stream offset of the next message.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads the next message into `message`, reusing its payload buffer; `Ok(false)` at a clean
    /// end of stream.
    pub fn read_into(&mut self, message: &mut OwnedMessage) -> Result<bool, StreamError> {
        if self.failed {
            return Ok(false);
        }
        let result = self.read_inner(message);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn read_inner(&mut self, message: &mut OwnedMessage) -> Result<bool, StreamError> {
        let offset = self.offset;
        let io = |source| StreamError::Io { offset, source };
        let mut head = [0u8; HEADER_LEN];
        let got = read_full(&mut self.input, &mut head).map_err(io)?;
        if got == 0 {
            return Ok(false);
        }
        let header = Header::parse(&head[..got]).ok_or(FrameError::TruncatedHeader {
            offset,
            available: got,
        })?;
        let len = header.checked_len(offset)?;
        if header.len > self.max_len {
            return Err(FrameError::TooLong {
                offset,
                len: header.len,
                max: self.max_len,
            }
            .into());
        }
        let body = len - HEADER_LEN;
        message.header = header;
        message.payload.clear();
        message.payload.resize(body, 0);
        let got = read_full(&mut self.input, &mut message.payload).map_err(io)?;
        if got < body {
            return Err(FrameError::LengthPastEnd {
                offset,
                len: header.len,
                available: HEADER_LEN + got,
            }
            .into());
        }
        // Skip alignment padding; a stream may end without it.
        let mut padding = [0u8; 3];
        let got_pad = read_full(&mut self.input, &mut padding[..align(len) - len]).map_err(io)?;
        self.offset += (len + got_pad) as u64;
        Ok(true)
    }
}

impl<R: std::io::Read> Iterator for StreamReader<R> {
    type Item = Result<OwnedMessage, StreamError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut message = OwnedMessage::default();
        match self.read_into(&mut message) {
            Ok(true) => Some(Ok(message)),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(input: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u16, payload: &[u8]) -> Vec<u8> {
        let h = Header {
            len: (HEADER_LEN + payload.len()) as u32,
            kind,
            flags: NLM_F_MULTI,
            seq: 7,
            pid: 0,
        };
        let mut v = h.to_bytes().to_vec();
        v.extend_from_slice(payload);
        v.resize(align(v.len()), 0);
        v
    }

    #[test]
    fn splits_aligned_messages() {
        let mut buf = msg(20, &[1, 2, 3]);
        buf.extend(msg(NLMSG_DONE, &[0, 0, 0, 0]));
        let all: Vec<_> = Messages::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].payload, &[1, 2, 3]);
        assert_eq!(all[0].header.seq, 7);
        assert_eq!(all[1].header.kind, NLMSG_DONE);
    }

    #[test]
    fn lying_length_is_an_error_with_offset() {
        let mut buf = msg(20, &[0; 8]);
        let second = buf.len();
        let mut bad = msg(20, &[0; 8]);
        bad[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        buf.extend(bad);
        let items: Vec<_> = Messages::new(&buf).collect();
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[1],
            Err(FrameError::LengthPastEnd {
                offset: second as u64,
                len: 1000,
                available: 24
            })
        );
    }

    #[test]
    fn short_length_and_truncated_header() {
        let mut bad = msg(20, &[]);
        bad[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(matches!(
            Messages::new(&bad).next(),
            Some(Err(FrameError::LengthTooSmall { len: 3, .. }))
        ));
        assert!(matches!(
            Messages::new(&[1, 2, 3]).next(),
            Some(Err(FrameError::TruncatedHeader { available: 3, .. }))
        ));
    }

    #[test]
    fn stream_reader_matches_buffer_splitter_and_reports_truncation() {
        let mut buf = msg(20, &[1, 2, 3]);
        buf.extend(msg(20, &[4; 9]));
        let from_stream: Vec<_> = StreamReader::new(&buf[..])
            .collect::<Result<_, _>>()
            .unwrap();
        let from_buf: Vec<_> = Messages::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(from_stream.len(), 2);
        for (a, b) in from_stream.iter().zip(&from_buf) {
            assert_eq!(a.as_message(), *b);
        }
        let cut = &buf[..buf.len() - 6];
        let items: Vec<_> = StreamReader::new(cut).collect();
        assert_eq!(items.len(), 2);
        assert!(matches!(
            items[1],
            Err(StreamError::Frame(FrameError::LengthPastEnd {
                offset: 20,
                ..
            }))
        ));
        let half_header = &buf[..buf.len() - 20];
        let items: Vec<_> = StreamReader::new(&half_header[..22]).collect();
        assert!(matches!(
            items[1],
            Err(StreamError::Frame(FrameError::TruncatedHeader {
                offset: 20,
                available: 2
            }))
        ));
    }

    #[test]
    fn stream_reader_refuses_huge_messages_without_reading_them() {
        let mut buf = msg(20, &[0; 8]);
        buf[0..4].copy_from_slice(&83_886_080u32.to_ne_bytes());
        let items: Vec<_> = StreamReader::new(&buf[..]).collect();
        assert!(matches!(
            items[..],
            [Err(StreamError::Frame(FrameError::TooLong {
                offset: 0,
                len: 83_886_080,
                max: 1_048_576
            }))]
        ));
    }

    #[test]
    fn host_order_readers_stop_at_the_end() {
        let mut b = 0x0102_0304_0506_0708u64.to_ne_bytes().to_vec();
        b.push(9);
        assert_eq!(u64_at(&b, 0), Some(0x0102_0304_0506_0708));
        assert_eq!(
            u64_at(&b, 1),
            Some(u64::from_ne_bytes(b[1..9].try_into().unwrap()))
        );
        assert_eq!(u64_at(&b, 2), None);
        assert_eq!(
            u32_at(&b, 5),
            Some(u32::from_ne_bytes([b[5], b[6], b[7], b[8]]))
        );
        assert_eq!(u32_at(&b, 6), None);
        assert_eq!(u16_at(&b, 7), Some(u16::from_ne_bytes([b[7], b[8]])));
        assert_eq!(u16_at(&b, 8), None);
        assert_eq!(u16_at(&b, usize::MAX), None, "no overflow");
    }

    #[test]
    fn errno_of_error_message() {
        let buf = msg(NLMSG_ERROR, &(-2i32).to_ne_bytes());
        let m = Messages::new(&buf).next().unwrap().unwrap();
        assert_eq!(m.errno(), Some(2));
    }
}
