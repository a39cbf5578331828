//! Throughput of each stage of the format path, looped over the fixture for a fixed time.

use std::hint::black_box;
use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde::Serialize;
use tcp_info::record::{ArchivalRecord, ArchiveReader, DEFAULT_LEVEL, FrameCompressor, Timestamp};
use tcp_info::wire::netlink::Message;

/// One throughput figure.
#[derive(Debug, Serialize)]
pub(super) struct Throughput {
    pub stage: &'static str,
    pub records: u64,
    pub seconds: f64,
    pub records_per_second: f64,
    pub ns_per_record: f64,
}

/// Runs `pass` (which handles `per_pass` records) once to warm up, then repeatedly until `budget`
/// has elapsed.
fn timed(
    stage: &'static str,
    budget: Duration,
    per_pass: usize,
    mut pass: impl FnMut() -> Result<()>,
) -> Result<Throughput> {
    pass().with_context(|| format!("warm-up pass of {stage}"))?;
    let start = Instant::now();
    let mut passes = 0u64;
    let elapsed = loop {
        pass()?;
        passes += 1;
        let elapsed = start.elapsed();
        if elapsed >= budget {
            break elapsed;
        }
    };
    let records = passes * per_pass as u64;
    let seconds = elapsed.as_secs_f64();
    Ok(Throughput {
        stage,
        records,
        seconds,
        records_per_second: records as f64 / seconds,
        ns_per_record: seconds * 1e9 / records as f64,
    })
}

/// Every throughput figure of the report, each measured for `budget`.
pub(super) fn throughput(
    messages: &[Message<'_>],
    stamps: &[Timestamp],
    records: &[ArchivalRecord],
    budget: Duration,
) -> Result<Vec<Throughput>> {
    let n = messages.len();
    let mut compressor = FrameCompressor::new(DEFAULT_LEVEL).context("creating a zstd context")?;
    let mut lines = Vec::new();
    for r in records {
        r.write_json_line(&mut lines);
    }
    let line_spans: Vec<std::ops::Range<usize>> = {
        let mut start = 0;
        lines
            .split_inclusive(|&b| b == b'\n')
            .map(|l| {
                start += l.len();
                start - l.len()..start
            })
            .collect()
    };
    let archive: Arc<[u8]> = compressor
        .compress_frame(&lines)
        .context("compressing the fixture")?
        .into();
    let mut buf = Vec::with_capacity(lines.len());
    let mut out = Vec::new();

    out.push(timed(
        "end to end: netlink → record → JSON → zstd (frame per 420 lines)",
        budget,
        n,
        || {
            buf.clear();
            for (msg, &ts) in messages.iter().zip(stamps) {
                let (record, _) = ArchivalRecord::from_netlink(msg, ts)?;
                record.write_json_line(&mut buf);
            }
            black_box(compressor.compress_frame(&buf)?.len());
            Ok(())
        },
    )?);
    out.push(timed("build record (from_netlink)", budget, n, || {
        for (msg, &ts) in messages.iter().zip(stamps) {
            black_box(ArchivalRecord::from_netlink(black_box(msg), ts)?);
        }
        Ok(())
    })?);
    out.push(timed("encode JSON line", budget, n, || {
        buf.clear();
        for r in records {
            black_box(r).write_json_line(&mut buf);
        }
        black_box(&buf);
        Ok(())
    })?);
    out.push(timed(
        "compress (one frame per 420 lines)",
        budget,
        n,
        || {
            black_box(compressor.compress_frame(black_box(&lines))?.len());
            Ok(())
        },
    )?);
    out.push(timed("compress (one frame per line)", budget, n, || {
        for span in &line_spans {
            black_box(compressor.compress_frame(&lines[span.clone()])?.len());
        }
        Ok(())
    })?);
    out.push(timed(
        "read: zstd decode + JSON decode (ArchiveReader)",
        budget,
        n,
        || {
            let reader =
                ArchiveReader::from_reader(Cursor::new(Arc::clone(&archive)), true, "bench")?;
            let mut count = 0;
            for record in reader {
                black_box(record?);
                count += 1;
            }
            ensure!(count == n, "read {count} records back, expected {n}");
            Ok(())
        },
    )?);
    out.push(timed(
        "decode JSON line only (from_json)",
        budget,
        n,
        || {
            for span in &line_spans {
                black_box(ArchivalRecord::from_json(&lines[span.clone()])?);
            }
            Ok(())
        },
    )?);
    Ok(out)
}
