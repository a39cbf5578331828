//! The saver: writes the records the pipeline decides to keep into per-connection archives,
//! `<root>/YYYY/MM/DD/<prefix>_<%016X cookie>.<%05d seq>.jsonl.zst` (SPEC §5, §6.3, §6.4).
//!
//! # Bounded memory and descriptors
//!
//! A host may track 100 000 connections, so nothing here is per-connection heavyweight:
//!
//! - **One zstd context** ([`FrameCompressor`]) for the whole saver. An open segment holds its
//!   `File`, its path, a few instants and the JSON lines not yet on disk. A flush compresses
//!   those lines into one complete frame (no content size, with checksum) and appends it, so
//!   every file is a valid multi-frame zstd stream up to its last flush — readable while open,
//!   with an mtime that advances as it grows (SPEC §5.3, §11.2, §12 D14).
//! - **Flushes** happen when a file's buffer reaches `max_pending` bytes, when its oldest buffered
//!   line is `flush_interval` old (checked on every write and [`tick`](Saver::tick)), and when the
//!   segment ends. `flush_interval` bounds how long data sits only in memory. Each frame is
//!   compressed on its own, so a connection that changes rarely gets small frames and a worse
//!   ratio than a long frame would give; a longer interval trades memory-only time for ratio.
//! - **One file per connection and rotation period**, as upstream: a segment stays open from
//!   its connection's first record (or the previous rotation) until its rotation age, counted
//!   from its open time (D2) and enforced by [`tick`](Saver::tick) even for silent
//!   connections, or until the connection ends. A connection that pauses and resumes stays in
//!   the same file, so a connection shorter than the rotation age is one file and one ETL row.
//!   When a segment ends before its connection does (rotation, eviction), the connection stays
//!   tracked in a 33-byte hash table entry (its `StartTime` and next sequence number), about
//!   55 bytes with the table's spare capacity (measured by a test, see [`Saver::heap_bytes`]);
//!   its next record opens the next segment lazily, Metadata line first.
//! - **Descriptors are budgeted**: `max_open_files` caps open archive descriptors. Only when
//!   opening one more would exceed it are the least recently written segments closed, a small
//!   batch at a time ([`EVICTION_BATCH_DIVISOR`]); their connections continue in a new segment
//!   if they write again. If `open(2)` fails with `EMFILE`/`ENFILE` anyway (the descriptor
//!   limit is lower than the budget assumed, or the rest of the process holds more), the cap
//!   drops to the segments open at that moment minus a headroom left to the rest of the process
//!   (a sixteenth of them, at least [`MIN_DESCRIPTOR_HEADROOM`]: its sockets, metrics scrapes,
//!   event clients), enough segments are evicted to get under it, and the open is tried once
//!   more. The full cap comes back when `RLIMIT_NOFILE` changes, or [`DESCRIPTOR_RETRY`] later
//!   (checked by [`tick`](Saver::tick)). Without the lowered cap the saver would take every
//!   descriptor freed by an eviction again within a poll interval, and keep the whole process
//!   at its limit. Under a descriptor limit above the number of concurrently written
//!   connections none of this happens.
//!
//! # Files
//!
//! Every file starts with the Metadata line and never holds it without a snapshot: a segment is
//! opened only when a record must be written, and the Metadata line and that record are buffered
//! together, so the file's first frame (written within `flush_interval`; the file is empty
//! until then) holds both. Files are created with `O_EXCL` and never reopened or truncated (D1): if
//! a name is taken, the next free sequence number is used with the same `StartTime`, and at
//! start-up the existing tree is scanned so that a restarted daemon continues each connection's
//! sequence (and `StartTime`) from the archives still present. No temporary file is ever created
//! in the tree (SPEC §11.2).
//!
//! # Write errors (SPEC §12 D17)
//!
//! A failed append (a full disk, an I/O error) or compression ends its segment: the buffered
//! lines are dropped, the file is cut back to its last complete frame (removed if it has none,
//! and its sequence number is used again) and closed, and the connection's next record opens
//! its next segment. A file that cannot be created (a read-only or unwritable directory, no
//! descriptor left) refuses the record, and the next record tries again. Nothing is retried or
//! held back, so memory stays bounded whatever the disk does, and writing resumes by itself
//! with the first record after the fault clears.
//!
//! **What is lost, and the bound.** Exactly the snapshots whose frame or file failed: for each
//! connection, the records buffered when one of its writes failed — those of at most one
//! `flush_interval` (plus the caller's tick period) or `max_pending` bytes — and every record
//! it gets while its writes keep failing; nothing buffered before that, nothing after a write
//! succeeds again. Each lost snapshot is counted once in [`SaverStats::snapshots_lost`] (and
//! each failure in its error class), so once the segments ended the snapshot lines in the
//! archives are exactly the snapshots given to [`Saver::write`] minus `snapshots_lost`. The
//! Metadata line of a failed segment is not a loss: every segment gets its own.
//!
//! # Crashes
//!
//! Since every write is a whole frame of whole lines, a crash can damage only the last frame of
//! a file (a partial write) or leave a file created less than `flush_interval` before it empty.
//! [`repair_tree`] fixes both at start-up. After a failed write during operation the saver
//! itself cuts the file back to its last complete frame and closes it (SPEC §12 D17).
//!
//! # Use
//!
//! Everything is synchronous and meant for the pipeline thread: [`Saver::write`] for each record
//! to keep, [`Saver::close`] when a connection ends, [`Saver::tick`] periodically (every
//! `flush_interval` or more often: tick work is proportional to the number of open files), and
//! [`Saver::shutdown`] on SIGTERM (D11). Failures are returned and counted per class in
//! [`SaverStats`].

mod config;
mod error;
mod paths;
mod repair;
mod resume;
mod segment;
mod stats;
mod tree;

#[cfg(test)]
mod tests;
/// Test helpers shared with the other collector-side modules' tests (temporary trees).
#[cfg(test)]
pub(crate) mod testutil;

pub use config::{
    Anonymizer, DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_OPEN_FILES, DEFAULT_MAX_PENDING,
    DEFAULT_ROTATION_AGE, SaverConfig,
};
pub use error::{ErrorClass, SaveError};
pub use paths::{SUFFIX, file_name};
pub use repair::{Repair, RepairReport, complete_frames_len, repair_file, repair_tree};
pub use stats::SaverStats;

use crate::record::{ArchivalRecord, FrameCompressor, Metadata, NetnsTag, RAW_IDM_LEN, Timestamp};
use resume::Resume;
use segment::Segment;
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Lines must stay below the ETL scanner's 64 KiB limit (SPEC §5.4, §11.1).
const MAX_LINE_LEN: usize = 64 * 1024;

/// An eviction closes `max_open_files / EVICTION_BATCH_DIVISOR` segments (at least one): few
/// enough that only the least recently written close, enough that finding them (a linear
/// selection over the open segments) is paid once per many opens.
pub const EVICTION_BATCH_DIVISOR: usize = 64;

/// Descriptors left to the rest of the process, at least, when `open(2)` of an archive failed
/// with `EMFILE`/`ENFILE` and the saver lowers its cap (see the module documentation).
pub const MIN_DESCRIPTOR_HEADROOM: usize = 32;

/// How long a cap lowered after `EMFILE`/`ENFILE` holds if `RLIMIT_NOFILE` does not change:
/// descriptors the rest of the process held then (event clients, scrapes) may have been
/// released since.
pub const DESCRIPTOR_RETRY: Duration = Duration::from_secs(60);

/// What the saver keeps for a tracked connection (with or without an open segment).
#[derive(Debug, Clone, Copy)]
struct Conn {
    /// `Metadata.StartTime` of every segment.
    start_time: Timestamp,
    /// Sequence number of the next segment to open.
    next_sequence: u32,
}

/// Why a segment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Connection,
    Rotation,
    Eviction,
    Shutdown,
}

/// What [`Saver::write`] did besides buffering the record.
#[derive(Debug, Default)]
#[must_use]
pub struct WriteOutcome {
    /// The cookie was not tracked before this record.
    pub new_connection: bool,
    /// The sequence number of the segment opened for this record, if one was opened.
    pub opened: Option<u32>,
    /// Failures on *other* files during this call (ending this connection's expired segment,
    /// evicting segments). They are counted in [`SaverStats`]; this record was still accepted.
    pub errors: Vec<SaveError>,
}

/// What [`Saver::tick`], [`Saver::flush_all`] and [`Saver::shutdown`] did.
#[derive(Debug, Default)]
#[must_use]
pub struct Report {
    /// Frames written.
    pub flushed: usize,
    /// Segments closed.
    pub closed: usize,
    /// Failures, each already counted in [`SaverStats`].
    pub errors: Vec<SaveError>,
}

/// The open-file cap after `open(2)` ran out of descriptors.
#[derive(Debug, Clone, Copy)]
struct LoweredCap {
    /// When it was lowered.
    at: Instant,
    /// The soft `RLIMIT_NOFILE` then: the full cap comes back as soon as it changes.
    rlimit: Option<u64>,
}

/// Writes connection archives; see the [module documentation](self).
pub struct Saver {
    config: SaverConfig,
    /// Archive files open at most: `config.max_open_files`, or less after `EMFILE`.
    open_cap: usize,
    /// Set while `open_cap` is lowered.
    lowered: Option<LoweredCap>,
    compressor: FrameCompressor,
    /// Every tracked connection.
    conns: HashMap<u64, Conn>,
    /// The `Netns` tag of connections that have one (`--netns.attribution`), for the
    /// Metadata line of each of their segments.
    tags: HashMap<u64, Arc<NetnsTag>>,
    /// The open segments, a subset of `conns`.
    segments: HashMap<u64, Segment>,
    /// Segments in the order their buffers became non-empty (when, cookie): the order their
    /// flushes fall due, so that [`tick`](Self::tick) visits only those. Entries whose buffer
    /// was flushed meanwhile are skipped.
    flush_queue: VecDeque<(Instant, u64)>,
    /// Segments in the order they opened (when, cookie, sequence): the order they reach their
    /// rotation age. Entries of segments already ended are skipped, and dropped in bulk when
    /// they outnumber the open segments.
    rotation_queue: VecDeque<(Instant, u64, u32)>,
    /// Connections found in the tree at start-up and not seen since.
    resume: HashMap<u64, Resume>,
    /// Scratch buffers for the line being written and for Metadata lines.
    line: Vec<u8>,
    meta: Vec<u8>,
    stats: SaverStats,
}

impl std::fmt::Debug for Saver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saver")
            .field("config", &self.config)
            .field("tracked", &self.conns.len())
            .field("open", &self.segments.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Saver {
    /// A saver writing under `config.root`. Scans the existing tree for archives with this
    /// prefix so that their names are never reused (SPEC §12 D1).
    pub fn new(config: SaverConfig) -> Result<Self, SaveError> {
        config.validate()?;
        let compressor =
            FrameCompressor::new(config.compression_level).map_err(SaveError::Compressor)?;
        let resume = resume::scan(&config.root, config.prefix.as_str()).map_err(|source| {
            SaveError::Scan {
                path: config.root.clone(),
                source,
            }
        })?;
        if !resume.is_empty() {
            tracing::info!(
                root = %config.root.display(),
                connections = resume.len(),
                "continuing the sequence numbers of archives already in the tree"
            );
        }
        Ok(Self {
            open_cap: config.max_open_files,
            lowered: None,
            config,
            compressor,
            conns: HashMap::new(),
            tags: HashMap::new(),
            segments: HashMap::new(),
            flush_queue: VecDeque::new(),
            rotation_queue: VecDeque::new(),
            resume,
            line: Vec::new(),
            meta: Vec::new(),
            stats: SaverStats::default(),
        })
    }

    /// Writes one snapshot of connection `cookie`. The first record of a cookie sets its
    /// `StartTime` to `record.timestamp` (unless an archive left by a previous run gives it).
    /// Opens a segment when none is open (segment 0 in the `StartTime`'s UTC date directory,
    /// later ones in today's), after ending one that reached its rotation age.
    ///
    /// On error the record was not written; the error is counted in [`SaverStats`].
    pub fn write(
        &mut self,
        cookie: u64,
        record: &ArchivalRecord,
        now: Instant,
    ) -> Result<WriteOutcome, SaveError> {
        self.write_tagged(cookie, record, None, now)
    }

    /// [`Self::write`], with the connection's `Netns` tag: the first record of a connection
    /// sets it for the Metadata line of every segment of the connection.
    pub fn write_tagged(
        &mut self,
        cookie: u64,
        record: &ArchivalRecord,
        netns: Option<&Arc<NetnsTag>>,
        now: Instant,
    ) -> Result<WriteOutcome, SaveError> {
        if let Err(e) = self.encode(cookie, record) {
            self.stats.snapshots_lost += 1;
            return Err(self.counted(e));
        }
        let mut outcome = WriteOutcome::default();
        let conn = if let Some(conn) = self.conns.get(&cookie) {
            *conn
        } else {
            outcome.new_connection = true;
            if let Some(tag) = netns {
                self.tags.insert(cookie, Arc::clone(tag));
            }
            let resumed = self.resume.remove(&cookie);
            let conn = Conn {
                start_time: resumed
                    .and_then(|r| r.start_time)
                    .unwrap_or(record.timestamp),
                next_sequence: resumed.map_or(0, |r| r.next_sequence),
            };
            self.conns.insert(cookie, conn);
            conn
        };
        // The segment is taken out of the map while it is worked on.
        let mut segment = match self.segments.remove(&cookie) {
            Some(seg) if !seg.expired(now, self.config.rotation_age) => seg,
            previous => {
                if let Some(prev) = previous
                    && let Err(e) = self.retire(cookie, prev, End::Rotation)
                {
                    outcome.errors.push(e);
                }
                let seg = self
                    .open(cookie, conn, now, &mut outcome.errors)
                    .inspect_err(|_| self.stats.snapshots_lost += 1)?;
                outcome.opened = Some(seg.sequence());
                seg
            }
        };
        if segment.pending_len() == 0 {
            self.flush_queue.push_back((now, cookie));
        }
        segment.push_line(&self.line, now);
        self.stats.lines_written += 1;
        self.stats.snapshots_written += 1;
        self.stats.pending_bytes += self.line.len() as u64;
        if (segment.pending_len() >= self.config.max_pending
            || segment.flush_due(now, self.config.flush_interval))
            && let Err(e) = flush(&mut self.compressor, &mut self.stats, &mut segment)
        {
            self.abort(cookie, segment);
            return Err(self.counted(e));
        }
        self.segments.insert(cookie, segment);
        Ok(outcome)
    }

    /// Ends connection `cookie` (SPEC §6.4): flushes and closes its file (no closing record is
    /// written) and forgets the connection. Returns whether it was tracked.
    pub fn close(&mut self, cookie: u64) -> Result<bool, SaveError> {
        let tracked = self.conns.remove(&cookie).is_some();
        self.tags.remove(&cookie);
        self.resume.remove(&cookie);
        match self.segments.remove(&cookie) {
            Some(segment) => self.retire(cookie, segment, End::Connection).map(|()| true),
            None => Ok(tracked),
        }
    }

    /// Periodic work: ends segments that reached their rotation age and flushes buffers whose
    /// oldest line is `flush_interval` old. Its cost follows the segments that are due, not the
    /// number open. Also restores the open-file cap lowered after `EMFILE` once
    /// `RLIMIT_NOFILE` changed or [`DESCRIPTOR_RETRY`] passed.
    pub fn tick(&mut self, now: Instant) -> Report {
        self.restore_cap(now);
        let mut report = Report::default();
        let mut failed = Vec::new();
        let interval = self.config.flush_interval;
        while let Some(&(since, cookie)) = self.flush_queue.front() {
            if now.saturating_duration_since(since) < interval {
                break;
            }
            self.flush_queue.pop_front();
            if let Some(segment) = self.segments.get_mut(&cookie)
                && segment.flush_due(now, interval)
            {
                match flush(&mut self.compressor, &mut self.stats, segment) {
                    Ok(wrote) => report.flushed += usize::from(wrote),
                    Err(e) => failed.push((cookie, e)),
                }
            }
        }
        self.drop_failed(failed, &mut report);
        let age = self.config.rotation_age;
        while let Some(&(opened, cookie, sequence)) = self.rotation_queue.front() {
            if now.saturating_duration_since(opened) < age {
                break;
            }
            self.rotation_queue.pop_front();
            let current = self.segments.get(&cookie).map(Segment::sequence);
            if current == Some(sequence)
                && let Some(segment) = self.segments.remove(&cookie)
            {
                report.closed += 1;
                if let Err(e) = self.retire(cookie, segment, End::Rotation) {
                    report.errors.push(e);
                }
            }
        }
        if self.rotation_queue.len() > 2 * self.segments.len() + 1024 {
            let segments = &self.segments;
            self.rotation_queue.retain(|(_, cookie, sequence)| {
                segments.get(cookie).map(Segment::sequence) == Some(*sequence)
            });
        }
        self.compact();
        report
    }

    /// Writes every buffered line to disk, keeping the files open.
    pub fn flush_all(&mut self) -> Report {
        let mut report = Report::default();
        let mut failed = Vec::new();
        for (&cookie, segment) in &mut self.segments {
            match flush(&mut self.compressor, &mut self.stats, segment) {
                Ok(wrote) => report.flushed += usize::from(wrote),
                Err(e) => failed.push((cookie, e)),
            }
        }
        self.drop_failed(failed, &mut report);
        report
    }

    /// Flushes and closes every open file (SIGTERM, SPEC §12 D11). Connections stay tracked, so
    /// a later write would continue with the next segment.
    pub fn shutdown(&mut self) -> Report {
        let mut report = Report::default();
        for (cookie, segment) in std::mem::take(&mut self.segments) {
            report.closed += 1;
            if let Err(e) = self.retire(cookie, segment, End::Shutdown) {
                report.errors.push(e);
            }
        }
        report
    }

    /// Counters and gauges.
    pub fn stats(&self) -> SaverStats {
        SaverStats {
            open_segments: self.segments.len() as u64,
            ..self.stats.clone()
        }
    }

    /// Connections tracked (with or without an open file).
    pub fn tracked(&self) -> usize {
        self.conns.len()
    }

    /// The file open for `cookie`, if any.
    pub fn segment_path(&self, cookie: u64) -> Option<&Path> {
        self.segments.get(&cookie).map(Segment::path)
    }

    /// Approximate heap bytes held for connections and open files: hash tables (at their
    /// allocated size), buffers and paths. The zstd context, whose size does not depend on
    /// the number of connections, is not included.
    pub fn heap_bytes(&self) -> usize {
        table_bytes(&self.conns)
            + table_bytes(&self.segments)
            + table_bytes(&self.resume)
            + self
                .segments
                .values()
                .map(Segment::heap_bytes)
                .sum::<usize>()
            + self.line.capacity()
            + self.meta.capacity()
            + self.flush_queue.capacity() * size_of::<(Instant, u64)>()
            + self.rotation_queue.capacity() * size_of::<(Instant, u64, u32)>()
    }

    /// Heap bytes one tracked connection costs while no file is open for it (one hash table
    /// entry plus its control byte, before the table's spare capacity).
    pub const fn idle_connection_bytes() -> usize {
        size_of::<(u64, Conn)>() + 1
    }

    /// Encodes `record` into `self.line`, refusing records that would make the ETL drop the file.
    fn encode(&mut self, cookie: u64, record: &ArchivalRecord) -> Result<(), SaveError> {
        let refuse = |reason| SaveError::Encode { cookie, reason };
        if cookie == 0 {
            return Err(refuse("cookie 0 identifies no connection"));
        }
        if record.is_metadata() || record.raw_idm().is_empty() {
            return Err(refuse("not a snapshot (no RawIDM)"));
        }
        self.line.clear();
        match &self.config.anonymize {
            None => record.write_json_line(&mut self.line),
            Some(anonymize) => {
                let idm: &[u8; RAW_IDM_LEN] = record
                    .raw_idm()
                    .try_into()
                    .map_err(|_| refuse("RawIDM is not 72 bytes, so it cannot be anonymized"))?;
                let copy = anonymize(idm);
                record.write_json_line_with_idm(Some(&copy), &mut self.line);
            }
        }
        if self.line.len() >= MAX_LINE_LEN {
            return Err(refuse("line reaches the ETL's 64 KiB line limit"));
        }
        Ok(())
    }

    /// Creates the next segment of `cookie` and buffers its Metadata line.
    fn open(
        &mut self,
        cookie: u64,
        conn: Conn,
        now: Instant,
        errors: &mut Vec<SaveError>,
    ) -> Result<Segment, SaveError> {
        let uuid = self.config.prefix.uuid(cookie);
        let date = if conn.next_sequence == 0 {
            conn.start_time.utc_date()
        } else {
            Timestamp::now().utc_date()
        };
        let dir = paths::date_dir(&self.config.root, date);
        if self.segments.len() >= self.open_cap {
            self.make_room(errors);
        }
        let created = match paths::create_exclusive(&dir, &uuid, conn.next_sequence) {
            Err(e) if out_of_descriptors(&e.source) && !self.segments.is_empty() => {
                self.lower_cap(now, &e.source);
                self.make_room(errors);
                paths::create_exclusive(&dir, &uuid, conn.next_sequence)
            }
            other => other,
        };
        let created = created.map_err(|e| {
            self.counted(SaveError::Open {
                path: e.path,
                source: e.source,
            })
        })?;
        let sequence = created.sequence;
        if let Some(c) = self.conns.get_mut(&cookie) {
            c.next_sequence = sequence.saturating_add(1);
        }
        self.stats.files_opened += 1;
        self.meta.clear();
        ArchivalRecord::metadata_line(Metadata {
            uuid,
            sequence: i64::from(sequence),
            start_time: conn.start_time,
            netns: self.tags.get(&cookie).cloned(),
        })
        .write_json_line(&mut self.meta);
        let mut segment = Segment::new(created, now);
        self.rotation_queue.push_back((now, cookie, sequence));
        self.flush_queue.push_back((now, cookie));
        segment.push_metadata(&self.meta, now);
        self.stats.lines_written += 1;
        self.stats.pending_bytes += self.meta.len() as u64;
        Ok(segment)
    }

    /// Flushes and closes a segment taken out of the map.
    fn retire(&mut self, cookie: u64, mut segment: Segment, why: End) -> Result<(), SaveError> {
        if let Err(e) = flush(&mut self.compressor, &mut self.stats, &mut segment) {
            self.abort(cookie, segment);
            return Err(self.counted(e));
        }
        self.stats.files_closed += 1;
        match why {
            End::Rotation => self.stats.rotations += 1,
            End::Eviction => self.stats.evictions += 1,
            End::Connection | End::Shutdown => {}
        }
        segment.close().map_err(|e| self.counted(e))
    }

    /// Drops a segment whose flush failed (see [`Segment::abort`]). If its file was removed, its
    /// sequence number is free again and the connection's next segment reuses it.
    fn abort(&mut self, cookie: u64, segment: Segment) {
        let sequence = segment.sequence();
        self.stats.pending_bytes = self
            .stats
            .pending_bytes
            .saturating_sub(segment.pending_len() as u64);
        let aborted = segment.abort();
        self.stats.lines_discarded += aborted.lines;
        self.stats.snapshots_lost += aborted.snapshots;
        self.stats.files_closed += 1;
        if aborted.removed
            && let Some(conn) = self.conns.get_mut(&cookie)
            && conn.next_sequence == sequence.saturating_add(1)
        {
            conn.next_sequence = sequence;
        }
    }

    /// Aborts the segments whose flush failed during a pass over the map, counting each error
    /// and each closed file in `report`.
    fn drop_failed(&mut self, failed: Vec<(u64, SaveError)>, report: &mut Report) {
        for (cookie, error) in failed {
            if let Some(segment) = self.segments.remove(&cookie) {
                self.abort(cookie, segment);
            }
            report.closed += 1;
            report.errors.push(self.counted(error));
        }
    }

    /// Closes the least recently written segments down to a batch below the cap
    /// (`open_cap / EVICTION_BATCH_DIVISOR`, at least one), so that the next opens need no
    /// eviction: a batch when the cap was just reached, more when it was lowered.
    fn make_room(&mut self, errors: &mut Vec<SaveError>) {
        let batch = (self.open_cap / EVICTION_BATCH_DIVISOR).max(1);
        let count = (self.segments.len() + batch).saturating_sub(self.open_cap);
        self.evict(count, errors);
    }

    /// Closes the `count` least recently written segments (all of them if fewer are open).
    fn evict(&mut self, count: usize, errors: &mut Vec<SaveError>) {
        let batch = count.min(self.segments.len());
        if batch == 0 {
            return;
        }
        let mut by_age: Vec<(Instant, u64)> = self
            .segments
            .iter()
            .map(|(&cookie, s)| (s.last_write(), cookie))
            .collect();
        by_age.select_nth_unstable(batch - 1);
        for &(_, cookie) in &by_age[..batch] {
            if let Some(segment) = self.segments.remove(&cookie)
                && let Err(e) = self.retire(cookie, segment, End::Eviction)
            {
                errors.push(e);
            }
        }
    }

    /// `open(2)` failed with `EMFILE`/`ENFILE` while `segments.len()` files were open: from now
    /// on keep fewer open, leaving a headroom to the rest of the process (module documentation).
    fn lower_cap(&mut self, now: Instant, error: &std::io::Error) {
        let open = self.segments.len();
        let headroom = (open / 16).max(MIN_DESCRIPTOR_HEADROOM);
        self.open_cap = open.saturating_sub(headroom).max(1);
        self.lowered = Some(LoweredCap {
            at: now,
            rlimit: soft_nofile(),
        });
        tracing::warn!(
            open,
            cap = self.open_cap,
            %error,
            "out of descriptors for archive files: keeping fewer open until RLIMIT_NOFILE \
             changes or for {}s",
            DESCRIPTOR_RETRY.as_secs()
        );
    }

    /// Brings the full open-file cap back once `RLIMIT_NOFILE` changed or
    /// [`DESCRIPTOR_RETRY`] passed since it was lowered (if descriptors are still short, the
    /// next `EMFILE` lowers it again).
    fn restore_cap(&mut self, now: Instant) {
        let Some(lowered) = self.lowered else {
            return;
        };
        if now.saturating_duration_since(lowered.at) >= DESCRIPTOR_RETRY
            || soft_nofile() != lowered.rlimit
        {
            self.open_cap = self.config.max_open_files;
            self.lowered = None;
            tracing::info!(
                cap = self.open_cap,
                "archive files: back to the full descriptor budget"
            );
        }
    }

    /// Returns table memory after many segments ended or connections closed.
    fn compact(&mut self) {
        fn shrink<V>(table: &mut HashMap<u64, V>) {
            if table.capacity() > 64 && table.capacity() / 4 > table.len() {
                table.shrink_to(table.len() * 2);
            }
        }
        shrink(&mut self.segments);
        shrink(&mut self.conns);
        if self.flush_queue.capacity() > 64
            && self.flush_queue.capacity() / 4 > self.flush_queue.len()
        {
            self.flush_queue.shrink_to(self.flush_queue.len() * 2);
        }
        if self.rotation_queue.capacity() > 64
            && self.rotation_queue.capacity() / 4 > self.rotation_queue.len()
        {
            self.rotation_queue.shrink_to(self.rotation_queue.len() * 2);
        }
    }

    fn counted(&mut self, error: SaveError) -> SaveError {
        self.stats.count_error(error.class());
        error
    }
}

impl Drop for Saver {
    fn drop(&mut self) {
        for e in self.shutdown().errors {
            tracing::warn!(error = %e, "archive not closed cleanly");
        }
    }
}

/// Flushes one segment, keeping the byte counters. `Ok(true)` if a frame was written.
fn flush(
    compressor: &mut FrameCompressor,
    stats: &mut SaverStats,
    segment: &mut Segment,
) -> Result<bool, SaveError> {
    let Some(flushed) = segment.flush(compressor)? else {
        return Ok(false);
    };
    let raw = flushed.uncompressed as u64;
    stats.bytes_uncompressed += raw;
    stats.bytes_compressed += flushed.compressed as u64;
    stats.frames_written += 1;
    stats.pending_bytes = stats.pending_bytes.saturating_sub(raw);
    Ok(true)
}

fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// The soft `RLIMIT_NOFILE`, `None` if it cannot be read.
fn soft_nofile() -> Option<u64> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// Approximate heap bytes of a hash table: buckets (capacity / 0.875) × (entry + control byte).
fn table_bytes<V>(table: &HashMap<u64, V>) -> usize {
    table.capacity() * 8 / 7 * (size_of::<(u64, V)>() + 1)
}
