//! Saver counters, exported by the daemon as Prometheus metrics.

use super::ErrorClass;

/// Counters and gauges of one [`Saver`](super::Saver). Counters only grow; gauges are current
/// values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaverStats {
    /// Archive files created (`tcpinfo_new_file_total`).
    pub files_opened: u64,
    /// Archive files closed, for any reason (connection end, rotation, eviction,
    /// shutdown, or after a failed write).
    pub files_closed: u64,
    /// Segments closed because they reached the rotation age (SPEC §12 D2).
    pub rotations: u64,
    /// Segments closed early to stay under `max_open_files` (or after `EMFILE`).
    pub evictions: u64,
    /// Lines accepted into a file (Metadata and snapshot lines), counted when buffered.
    pub lines_written: u64,
    /// Snapshot lines accepted (`tcpinfo_snapshot_total`).
    pub snapshots_written: u64,
    /// Accepted lines that never reached the disk because a write failed (Metadata lines
    /// included).
    pub lines_discarded: u64,
    /// Snapshot records given to the saver that are in no archive: refused because they could
    /// not be encoded or their file could not be created (one per `open` or `encode` error),
    /// or accepted and then dropped with their buffer when its frame could not be written.
    /// Every snapshot record given to [`Saver::write`](super::Saver::write) is either in an
    /// archive once its segment ends, or counted here exactly once.
    pub snapshots_lost: u64,
    /// JSONL bytes compressed into frames that reached the disk.
    pub bytes_uncompressed: u64,
    /// zstd bytes written to archive files.
    pub bytes_compressed: u64,
    /// zstd frames written (one per flush).
    pub frames_written: u64,
    /// Failed file creations (class `open`).
    pub open_errors: u64,
    /// Records refused as unencodable (class `encode`).
    pub encode_errors: u64,
    /// Failed compressions (class `write`).
    pub write_errors: u64,
    /// Failed appends of a frame to its file (class `flush`).
    pub flush_errors: u64,
    /// Failed `close(2)` calls (class `close`).
    pub close_errors: u64,
    /// Gauge: archive files open now.
    pub open_segments: u64,
    /// Gauge: uncompressed bytes buffered in memory, not yet on disk.
    pub pending_bytes: u64,
}

impl SaverStats {
    /// The error counter of `class`.
    pub fn errors(&self, class: ErrorClass) -> u64 {
        match class {
            ErrorClass::Open => self.open_errors,
            ErrorClass::Encode => self.encode_errors,
            ErrorClass::Write => self.write_errors,
            ErrorClass::Flush => self.flush_errors,
            ErrorClass::Close => self.close_errors,
        }
    }

    pub(super) fn count_error(&mut self, class: Option<ErrorClass>) {
        let counter = match class {
            None => return,
            Some(ErrorClass::Open) => &mut self.open_errors,
            Some(ErrorClass::Encode) => &mut self.encode_errors,
            Some(ErrorClass::Write) => &mut self.write_errors,
            Some(ErrorClass::Flush) => &mut self.flush_errors,
            Some(ErrorClass::Close) => &mut self.close_errors,
        };
        *counter += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_has_its_own_counter() {
        let mut stats = SaverStats::default();
        for (n, class) in ErrorClass::ALL.iter().enumerate() {
            for _ in 0..=n {
                stats.count_error(Some(*class));
            }
        }
        stats.count_error(None);
        for (n, class) in ErrorClass::ALL.iter().enumerate() {
            assert_eq!(stats.errors(*class), n as u64 + 1, "{}", class.as_str());
        }
    }
}
