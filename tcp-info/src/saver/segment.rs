//! One open archive file: its descriptor and the lines buffered for it.
//!
//! A segment holds no compression state. A flush compresses the buffered lines into one
//! complete zstd frame (shared context, no content size, with checksum) and appends it, so the
//! file is a valid multi-frame stream after every flush and its mtime advances (SPEC §5.3, §11.2).
//! Lines are only ever buffered whole, so frames end on line boundaries.

use super::SaveError;
use super::paths::Created;
use crate::record::FrameCompressor;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Buffer capacity kept after a flush; larger buffers are released so that many open but
/// quiet segments do not each pin a burst-sized allocation.
const KEPT_CAPACITY: usize = 4096;

/// What one flush wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// JSONL bytes compressed.
    pub uncompressed: usize,
    /// Frame bytes appended to the file.
    pub compressed: usize,
}

/// What [`Segment::abort`] dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aborted {
    /// Buffered lines dropped (the Metadata line included, if it was never written).
    pub lines: u64,
    /// Of those, snapshot lines.
    pub snapshots: u64,
    /// Whether the file was removed (it held no complete frame).
    pub removed: bool,
}

/// An open archive file.
#[derive(Debug)]
pub struct Segment {
    file: File,
    path: PathBuf,
    sequence: u32,
    /// When the segment was opened; it expires `rotation_age` later.
    opened: Instant,
    /// When a line was last buffered.
    last_write: Instant,
    /// When the oldest buffered line was buffered (`None`: nothing buffered).
    pending_since: Option<Instant>,
    pending: Vec<u8>,
    pending_lines: u64,
    /// Buffered snapshot lines (`pending_lines` minus the Metadata line while it is buffered).
    pending_snapshots: u64,
    /// Bytes of complete frames on disk.
    committed: u64,
}

impl Segment {
    /// A segment for a file just created.
    pub fn new(created: Created, now: Instant) -> Self {
        Self {
            file: created.file,
            path: created.path,
            sequence: created.sequence,
            opened: now,
            last_write: now,
            pending_since: None,
            pending: Vec::new(),
            pending_lines: 0,
            pending_snapshots: 0,
            committed: 0,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's sequence number.
    pub fn sequence(&self) -> u32 {
        self.sequence
    }

    /// When a line was last buffered.
    pub fn last_write(&self) -> Instant {
        self.last_write
    }

    /// Bytes buffered, not yet on disk.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Whether the segment was opened at least `rotation_age` before `now` (SPEC §12 D2).
    pub fn expired(&self, now: Instant, rotation_age: Duration) -> bool {
        now.saturating_duration_since(self.opened) >= rotation_age
    }

    /// Whether the oldest buffered line was buffered at least `flush_interval` before `now`.
    pub fn flush_due(&self, now: Instant, flush_interval: Duration) -> bool {
        self.pending_since
            .is_some_and(|t| now.saturating_duration_since(t) >= flush_interval)
    }

    /// Heap bytes held by the buffer and the path.
    pub fn heap_bytes(&self) -> usize {
        self.pending.capacity() + self.path.capacity()
    }

    /// Buffers one complete snapshot line (with its `\n`).
    pub fn push_line(&mut self, line: &[u8], now: Instant) {
        self.push(line, now);
        self.pending_snapshots += 1;
    }

    /// Buffers the file's Metadata line (with its `\n`).
    pub fn push_metadata(&mut self, line: &[u8], now: Instant) {
        self.push(line, now);
    }

    fn push(&mut self, line: &[u8], now: Instant) {
        self.pending.extend_from_slice(line);
        self.pending_lines += 1;
        self.pending_since.get_or_insert(now);
        self.last_write = now;
    }

    /// Compresses the buffered lines into one frame and appends it. `Ok(None)` when nothing was
    /// buffered. On error the buffer is kept; the caller must [`abort`](Self::abort).
    pub fn flush(
        &mut self,
        compressor: &mut FrameCompressor,
    ) -> Result<Option<Flushed>, SaveError> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let frame =
            compressor
                .compress_frame(&self.pending)
                .map_err(|source| SaveError::Write {
                    path: self.path.clone(),
                    lines: self.pending_lines,
                    source,
                })?;
        (&self.file)
            .write_all(frame)
            .map_err(|source| SaveError::Flush {
                path: self.path.clone(),
                lines: self.pending_lines,
                source,
            })?;
        let flushed = Flushed {
            uncompressed: self.pending.len(),
            compressed: frame.len(),
        };
        self.committed += frame.len() as u64;
        self.pending.clear();
        self.pending.shrink_to(KEPT_CAPACITY);
        self.pending_lines = 0;
        self.pending_snapshots = 0;
        self.pending_since = None;
        Ok(Some(flushed))
    }

    /// Closes the file, which must have been flushed. Each descriptor is closed exactly once,
    /// here or in [`abort`](Self::abort), and `close(2)` errors are reported.
    pub fn close(self) -> Result<(), SaveError> {
        debug_assert!(
            self.pending.is_empty(),
            "closing {} with buffered lines",
            self.path.display()
        );
        nix::unistd::close(self.file).map_err(|errno| SaveError::Close {
            path: self.path,
            source: errno.into(),
        })
    }

    /// Gives up on a segment after a failed flush: drops its buffered lines, cuts off whatever
    /// part of the failed frame reached the file (so the file ends with its last complete frame),
    /// removes the file if no complete frame was ever written (a file never exists without a
    /// snapshot), and closes it. Returns what was dropped.
    pub fn abort(self) -> Aborted {
        if let Err(e) = self.file.set_len(self.committed) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot cut off a partial zstd frame");
        }
        let removed = self.committed == 0 && std::fs::remove_file(&self.path).is_ok();
        // The data is already lost; a close error adds nothing actionable.
        drop(self.file);
        Aborted {
            lines: self.pending_lines,
            snapshots: self.pending_snapshots,
            removed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{DEFAULT_LEVEL, frame_has_content_size};
    use crate::saver::paths::create_exclusive;
    use crate::saver::testutil::TempTree;

    fn segment(tree: &TempTree, now: Instant) -> Segment {
        let created = create_exclusive(&tree.path().join("d"), "u_0000000000000001", 0).unwrap();
        Segment::new(created, now)
    }

    #[test]
    fn every_flush_appends_one_complete_frame() {
        let tree = TempTree::new("segment-frames");
        let t0 = Instant::now();
        let mut seg = segment(&tree, t0);
        let mut zstd = FrameCompressor::new(DEFAULT_LEVEL).unwrap();
        assert_eq!(seg.flush(&mut zstd).unwrap(), None);
        seg.push_line(b"{\"a\":1}\n", t0);
        seg.push_line(b"{\"a\":2}\n", t0);
        assert_eq!(seg.pending_len(), 16);
        assert_eq!(seg.pending_since, Some(t0));
        let first = seg.flush(&mut zstd).unwrap().unwrap();
        assert_eq!(first.uncompressed, 16);
        assert_eq!((seg.pending_len(), seg.pending_since), (0, None));
        seg.push_line(b"{\"a\":3}\n", t0);
        let second = seg.flush(&mut zstd).unwrap().unwrap();
        let path = seg.path().to_owned();
        seg.close().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), first.compressed + second.compressed);
        assert_eq!(frame_has_content_size(&bytes), Some(false));
        assert_eq!(
            frame_has_content_size(&bytes[first.compressed..]),
            Some(false)
        );
        let text = zstd::stream::decode_all(&bytes[..]).unwrap();
        assert_eq!(text, b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");
    }

    #[test]
    fn abort_cuts_back_to_the_last_complete_frame() {
        let tree = TempTree::new("segment-abort");
        let t0 = Instant::now();
        let mut zstd = FrameCompressor::new(DEFAULT_LEVEL).unwrap();
        let mut seg = segment(&tree, t0);
        seg.push_line(b"{\"a\":1}\n", t0);
        let good = seg.flush(&mut zstd).unwrap().unwrap().compressed;
        // A failed write that left half a frame behind.
        (&seg.file).write_all(&[0x28, 0xB5, 0x2F]).unwrap();
        seg.push_line(b"{\"a\":2}\n", t0);
        let path = seg.path().to_owned();
        assert_eq!(
            seg.abort(),
            Aborted {
                lines: 1,
                snapshots: 1,
                removed: false
            }
        );
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), good);
        assert_eq!(
            zstd::stream::decode_all(&bytes[..]).unwrap(),
            b"{\"a\":1}\n"
        );
    }

    #[test]
    fn abort_removes_a_file_without_any_frame() {
        let tree = TempTree::new("segment-abort-empty");
        let mut seg = segment(&tree, Instant::now());
        seg.push_metadata(b"{\"m\":0}\n", Instant::now());
        seg.push_line(b"{\"a\":1}\n", Instant::now());
        let path = seg.path().to_owned();
        assert_eq!(
            seg.abort(),
            Aborted {
                lines: 2,
                snapshots: 1,
                removed: true
            }
        );
        assert!(!path.exists());
    }
}
