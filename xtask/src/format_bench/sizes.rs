//! Compressed bytes per record in each file layout.

use std::io::Cursor;

use anyhow::{Context, Result, ensure};
use serde::Serialize;
use tcp_info::record::{
    ArchivalRecord, ArchiveReader, ArchiveWriter, DEFAULT_LEVEL, FrameCompressor, Metadata,
    Timestamp,
};

use super::START_UNIX_MS;
use super::fixture::{Fixture, group_by_cookie};

/// One size figure.
#[derive(Debug, Serialize)]
pub(super) struct Size {
    pub layout: String,
    pub files: usize,
    pub frames: usize,
    pub records: usize,
    pub json_bytes: u64,
    pub compressed_bytes: u64,
    pub bytes_per_record: f64,
}

/// Writes `records` as one archive, flushing a frame every `flush_every` lines (or only at the
/// end); returns the archive and the number of frames. `first` (a Metadata line) counts as a line.
fn write_archive<'a>(
    first: Option<&'a ArchivalRecord>,
    records: impl IntoIterator<Item = &'a ArchivalRecord>,
    flush_every: Option<usize>,
) -> Result<(Vec<u8>, u64, usize)> {
    let mut writer = ArchiveWriter::new(Vec::new()).context("creating an archive writer")?;
    let mut frames = 0;
    let mut pending = 0;
    for r in first.into_iter().chain(records) {
        writer.write_record(r);
        pending += 1;
        if flush_every == Some(pending) {
            writer.flush().context("flushing a frame")?;
            frames += 1;
            pending = 0;
        }
    }
    frames += usize::from(pending > 0);
    let json_bytes = writer.raw_bytes();
    let bytes = writer.finish().context("finishing an archive")?;
    Ok((bytes, json_bytes, frames))
}

fn size_row(
    layout: impl Into<String>,
    files: usize,
    frames: usize,
    records: usize,
    json_bytes: u64,
    compressed_bytes: u64,
) -> Size {
    Size {
        layout: layout.into(),
        files,
        frames,
        records,
        json_bytes,
        compressed_bytes,
        bytes_per_record: compressed_bytes as f64 / records as f64,
    }
}

/// Every size figure of the report; (a) comes first.
pub(super) fn sizes(records: &[ArchivalRecord], fixture: &Fixture) -> Result<Vec<Size>> {
    let n = records.len();
    let mut out = Vec::new();

    // (a) everything in one frame; also proves the archive reads back to the same records.
    let (archive, json, frames) = write_archive(None, records, None)?;
    let back = ArchiveReader::from_reader(Cursor::new(archive.clone()), true, "layout (a)")?
        .collect::<Result<Vec<_>, _>>()?;
    ensure!(
        back == records,
        "layout (a) does not read back to the same records"
    );
    out.push(size_row(
        "(a) one archive, one frame",
        1,
        frames,
        n,
        json,
        archive.len() as u64,
    ));

    // (b) one file per connection: Metadata line + that connection's records, one frame.
    let groups = group_by_cookie(records)?;
    let (mut json, mut compressed, mut frames) = (0, 0, 0);
    for (cookie, group) in &groups {
        let meta = ArchivalRecord::metadata_line(Metadata {
            uuid: format!("bench_{}_{cookie:016X}", START_UNIX_MS / 1000),
            sequence: 0,
            start_time: group.first().map_or(Timestamp::ZERO, |r| r.timestamp),
            netns: None,
        });
        let (bytes, j, f) = write_archive(Some(&meta), group.iter().copied(), None)?;
        json += j;
        compressed += bytes.len() as u64;
        frames += f;
    }
    out.push(size_row(
        "(b) one file per connection (Metadata + its records)",
        groups.len(),
        frames,
        n,
        json,
        compressed,
    ));

    // (c) one archive, a frame every N lines.
    for every in [1, 10, 100] {
        let (archive, json, frames) = write_archive(None, records, Some(every))?;
        out.push(size_row(
            if every == 1 {
                "(c) one archive, frame every line".to_owned()
            } else {
                format!("(c) one archive, frame every {every} lines")
            },
            1,
            frames,
            n,
            json,
            archive.len() as u64,
        ));
    }

    // For reference: upstream's file (zero timestamps) and ours for the same lines.
    let mut compressor = FrameCompressor::new(DEFAULT_LEVEL)?;
    let ours = compressor.compress_frame(&fixture.golden)?.len() as u64;
    let golden_json = fixture.golden.len() as u64;
    out.push(size_row(
        "ref: zero timestamps, one frame (ours)",
        1,
        1,
        n,
        golden_json,
        ours,
    ));
    out.push(size_row(
        "ref: archiveRecords.jsonl.zst as shipped",
        1,
        1,
        n,
        golden_json,
        fixture.golden_compressed,
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format_bench::BAR_BYTES_PER_RECORD;
    use crate::format_bench::fixture::tests::fixtures;
    use crate::format_bench::fixture::{build_records, golden_difference, timestamp};

    #[test]
    fn sizes_cover_every_layout_and_meet_the_bar() {
        let Some(dir) = fixtures() else { return };
        let fixture = Fixture::load(&dir).unwrap();
        let messages = fixture.messages().unwrap();
        let stamps: Vec<_> = (0..messages.len()).map(|i| timestamp(i).unwrap()).collect();
        let records = build_records(&messages, &stamps).unwrap();
        assert_eq!(golden_difference(&messages, &fixture.golden).unwrap(), None);
        let sizes = sizes(&records, &fixture).unwrap();
        let frames: Vec<(usize, usize)> = sizes.iter().map(|s| (s.files, s.frames)).collect();
        assert_eq!(
            &frames[..5],
            &[(1, 1), (140, 140), (1, 420), (1, 42), (1, 5)]
        );
        assert!(
            sizes[0].bytes_per_record <= BAR_BYTES_PER_RECORD,
            "{sizes:?}"
        );
        // Frequent flushes cost bytes: each frame restarts the compressor's history.
        assert!(sizes[2].bytes_per_record > sizes[3].bytes_per_record);
        assert!(sizes[3].bytes_per_record > sizes[4].bytes_per_record);
    }
}
