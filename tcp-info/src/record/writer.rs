//! Writing archives as zstd frames (SPEC §5.3).
//!
//! Every frame is complete (epilogue and XXH64 checksum written) and carries **no**
//! Frame_Content_Size, so the ETL's gozstd takes its streaming path and decodes any number of
//! concatenated frames. A file is therefore always a valid zstd stream up to its last frame.
//!
//! One [`FrameCompressor`] (one zstd context, about a megabyte) serves any number of files: a
//! daemon tracking 100 000 connections buffers each connection's pending lines and compresses
//! them into a frame when it flushes, instead of holding a compression context per connection.

use super::ArchivalRecord;
use std::io::{self, Write};

/// The magic number that starts every zstd frame.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// zstd level used by upstream (the `zstd` CLI default).
pub const DEFAULT_LEVEL: i32 = 3;

/// A reusable zstd context that turns a buffer of complete lines into one self-contained frame.
pub struct FrameCompressor {
    context: zstd::bulk::Compressor<'static>,
    frame: Vec<u8>,
}

impl std::fmt::Debug for FrameCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameCompressor").finish_non_exhaustive()
    }
}

impl FrameCompressor {
    /// A compressor at `level`, with content checksums on and content sizes off.
    pub fn new(level: i32) -> io::Result<Self> {
        use zstd::zstd_safe::CParameter;
        let mut context = zstd::bulk::Compressor::new(level)?;
        context.set_parameter(CParameter::ContentSizeFlag(false))?;
        context.set_parameter(CParameter::ChecksumFlag(true))?;
        Ok(Self {
            context,
            frame: Vec::new(),
        })
    }

    /// Compresses `data` into one complete frame and returns it (valid until the next call).
    pub fn compress_frame(&mut self, data: &[u8]) -> io::Result<&[u8]> {
        self.frame.clear();
        self.frame
            .reserve(zstd::zstd_safe::compress_bound(data.len()));
        self.context.compress_to_buffer(data, &mut self.frame)?;
        Ok(&self.frame)
    }
}

/// Writes the records of one archive to `out`, buffering lines and emitting a frame per
/// [`flush`](Self::flush) (and on [`finish`](Self::finish)).
#[derive(Debug)]
pub struct ArchiveWriter<W: Write> {
    out: W,
    compressor: FrameCompressor,
    pending: Vec<u8>,
    lines: u64,
    raw_bytes: u64,
    compressed_bytes: u64,
}

impl<W: Write> ArchiveWriter<W> {
    /// A writer at upstream's compression level.
    pub fn new(out: W) -> io::Result<Self> {
        Ok(Self {
            out,
            compressor: FrameCompressor::new(DEFAULT_LEVEL)?,
            pending: Vec::new(),
            lines: 0,
            raw_bytes: 0,
            compressed_bytes: 0,
        })
    }

    /// Buffers one record as a JSON line.
    pub fn write_record(&mut self, record: &ArchivalRecord) {
        let before = self.pending.len();
        record.write_json_line(&mut self.pending);
        self.raw_bytes += (self.pending.len() - before) as u64;
        self.lines += 1;
    }

    /// Compresses the buffered lines into one frame and writes it. Nothing is written when no
    /// line is pending.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let frame = self.compressor.compress_frame(&self.pending)?;
        self.out.write_all(frame)?;
        self.compressed_bytes += frame.len() as u64;
        self.pending.clear();
        self.out.flush()
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush()?;
        Ok(self.out)
    }

    /// Lines written so far (flushed or not).
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Uncompressed bytes of the lines written so far.
    pub fn raw_bytes(&self) -> u64 {
        self.raw_bytes
    }

    /// Compressed bytes emitted so far (flushed frames only).
    pub fn compressed_bytes(&self) -> u64 {
        self.compressed_bytes
    }
}

/// Whether a zstd frame header at the start of `frame` declares a content size (it must not).
pub fn frame_has_content_size(frame: &[u8]) -> Option<bool> {
    if frame.get(..4)? != ZSTD_MAGIC {
        return None;
    }
    let descriptor = *frame.get(4)?;
    // Frame_Content_Size_flag (bits 7-6) non-zero, or Single_Segment_flag (bit 5) which
    // implies a one-byte content size.
    Some(descriptor >> 6 != 0 || descriptor & 0x20 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ArchiveReader, Metadata, Timestamp};
    use std::io::Cursor;

    #[test]
    fn frames_have_no_content_size_and_concatenate() {
        let mut w = ArchiveWriter::new(Vec::new()).unwrap();
        w.write_record(&ArchivalRecord::metadata_line(Metadata {
            uuid: "host_1_0000000000000001".into(),
            sequence: 0,
            start_time: Timestamp::from_unix(1, 0).unwrap(),
            netns: None,
        }));
        w.flush().unwrap();
        let first_frame_len = w.compressed_bytes() as usize;
        for i in 0..10 {
            let r =
                ArchivalRecord::new(Timestamp::from_unix(i, 0).unwrap(), &[i as u8; 72], &[None]);
            w.write_record(&r);
        }
        assert_eq!(w.lines(), 11);
        let bytes = w.finish().unwrap();
        assert_eq!(frame_has_content_size(&bytes), Some(false));
        assert_eq!(
            frame_has_content_size(&bytes[first_frame_len..]),
            Some(false)
        );
        assert_eq!(frame_has_content_size(b"nope"), None);
        let records: Vec<_> = ArchiveReader::from_reader(Cursor::new(bytes), true, "mem")
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records.len(), 11);
        assert!(records[0].is_metadata());
        assert_eq!(records[10].raw_idm(), &[9u8; 72]);
    }

    #[test]
    fn empty_flush_writes_nothing() {
        let mut w = ArchiveWriter::new(Vec::new()).unwrap();
        w.flush().unwrap();
        assert!(w.finish().unwrap().is_empty());
    }
}
