//! Arbitrary bytes as an archive, read both as plain JSONL and as zstd: every problem must come
//! back as an `Err`, never a panic. Each record read must survive re-encoding, and the reader's
//! outcome is compared with an independent line split (plain) and an independent decompression
//! (zstd, with the reader's window limit). The same bytes as a crash leftover: what the start-up
//! repair keeps (its leading complete frames) always decompresses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::{Cursor, Read};
use tcp_info::record::{ArchivalRecord, ArchiveReader, ReadErrorKind};
use tcp_info::saver::complete_frames_len;

/// The reader's line limit.
const MAX_LINE_LEN: usize = ArchiveReader::MAX_LINE_LEN;
/// Decompressed output beyond which the zstd comparison is skipped (decompression bombs).
const DECOMPRESSED_CAP: u64 = 4 << 20;

/// What the reader yielded for one line, reduced to something comparable.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// A record, as its canonical JSON line.
    Record(Vec<u8>),
    /// A JSON decode error.
    Decode,
    /// The input ended inside a line.
    PartialLine,
    /// The line exceeded the reader's limit.
    TooLong,
    /// An I/O (for zstd: decompression) error.
    Io,
}

fuzz_target!(|data: &[u8]| {
    let plain = read_all(data, false);
    assert_eq!(plain, expected_plain(data), "plain reader vs line split");

    let compressed = read_all(data, true);
    check_repair(data);
    if data.is_empty() {
        // An empty .zst is an empty archive, as an empty plain file is.
        assert_eq!(compressed, Vec::new(), "an empty compressed input");
        return;
    }
    // An independent decompression of the same bytes, bounded, refusing the windows the reader
    // refuses.
    let mut decompressed = Vec::new();
    let decoded = zstd::stream::read::Decoder::new(data)
        .and_then(|mut d| {
            d.window_log_max(ArchiveReader::WINDOW_LOG_MAX)?;
            Ok(d)
        })
        .and_then(|d| d.take(DECOMPRESSED_CAP + 1).read_to_end(&mut decompressed));
    match decoded {
        Ok(_) if decompressed.len() as u64 <= DECOMPRESSED_CAP => {
            assert_eq!(
                compressed,
                read_all(&decompressed, false),
                "zstd reader vs decompress-then-read"
            );
        }
        Ok(_) => {}
        Err(_) => {
            assert_eq!(
                compressed.last(),
                Some(&Outcome::Io),
                "corrupt zstd must end in an I/O error"
            );
        }
    }
});

/// The start-up repair cuts an archive back to its leading complete frames (or removes it if
/// there are none): what it keeps must decompress without error.
fn check_repair(data: &[u8]) {
    let complete = complete_frames_len(data);
    assert!(complete <= data.len());
    if complete == 0 {
        return;
    }
    let mut decoder = zstd::stream::read::Decoder::new(&data[..complete]).expect("a decoder");
    if let Err(e) = std::io::copy(&mut decoder, &mut std::io::sink()) {
        panic!("the {complete} bytes the repair keeps do not decompress: {e}");
    }
}

/// Reads `data` to the end with [`ArchiveReader`], checking every record it returns.
fn read_all(data: &[u8], compressed: bool) -> Vec<Outcome> {
    let reader = match ArchiveReader::from_reader(Cursor::new(data.to_vec()), compressed, "fuzz") {
        Ok(reader) => reader,
        Err(_) => return vec![Outcome::Io],
    };
    let mut out = Vec::new();
    for item in reader {
        let outcome = match item {
            Ok(record) => Outcome::Record(roundtrip(&record)),
            Err(e) => {
                assert_eq!(
                    e.line,
                    out.len() as u64 + 1,
                    "error names the wrong line: {e}"
                );
                match e.kind {
                    ReadErrorKind::Decode(_) => Outcome::Decode,
                    ReadErrorKind::PartialLine => Outcome::PartialLine,
                    ReadErrorKind::LineTooLong => Outcome::TooLong,
                    ReadErrorKind::Io(_) => Outcome::Io,
                }
            }
        };
        out.push(outcome);
    }
    if let Some(pos) = out
        .iter()
        .position(|o| matches!(o, Outcome::PartialLine | Outcome::TooLong | Outcome::Io))
    {
        assert_eq!(pos + 1, out.len(), "items after a terminal error: {out:?}");
    }
    out
}

/// What the plain reader must yield: one outcome per `\n`-terminated line, then `PartialLine`
/// if bytes follow the last newline.
fn expected_plain(data: &[u8]) -> Vec<Outcome> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            // The reader counts the newline it is looking for against the limit.
            out.push(if rest.len() > MAX_LINE_LEN + 1 {
                Outcome::TooLong
            } else {
                Outcome::PartialLine
            });
            break;
        };
        let line = &rest[..end];
        if line.len() > MAX_LINE_LEN {
            out.push(Outcome::TooLong);
            break;
        }
        out.push(match ArchivalRecord::from_json(line) {
            Ok(record) => Outcome::Record(record.to_json_line()),
            Err(_) => Outcome::Decode,
        });
        rest = &rest[end + 1..];
    }
    out
}

/// Re-encodes a record read from an archive and decodes it again: equal record, identical line.
fn roundtrip(record: &ArchivalRecord) -> Vec<u8> {
    let line = record.to_json_line();
    let back = match ArchivalRecord::from_json(&line) {
        Ok(back) => back,
        Err(e) => panic!(
            "re-encoded line does not decode ({e}): {}",
            String::from_utf8_lossy(&line)
        ),
    };
    assert_eq!(&back, record, "decoded record differs");
    assert_eq!(back.to_json_line(), line, "second encoding differs");
    line
}
