//! Streaming reader for `.jsonl` and `.jsonl.zst` archives.
//!
//! Memory stays constant whatever the file size: one reused line buffer, a bounded line length,
//! and zstd decoded in-process as a stream (any number of concatenated frames).

use super::{ArchivalRecord, DecodeError};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use thiserror::Error;

/// Longest line accepted. The ETL's scanner stops at 64 KiB; this is looser so that odd files
/// can still be inspected, while keeping memory bounded on garbage input.
pub const MAX_LINE_LEN: usize = 1 << 20;

/// An error reading an archive, with the file and 1-based line it happened at.
#[derive(Debug, Error)]
pub struct ReadError {
    /// The file being read (`-` for standard input).
    pub source_name: String,
    /// 1-based line number (0 when the file could not be opened).
    pub line: u64,
    /// What went wrong.
    #[source]
    pub kind: ReadErrorKind,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.source_name, self.kind)
        } else {
            write!(f, "{}:{}: {}", self.source_name, self.line, self.kind)
        }
    }
}

impl ReadError {
    /// The error for a line of `source_name` that is not a valid record.
    pub fn decode(source_name: &str, line: u64, error: DecodeError) -> Self {
        Self {
            source_name: source_name.to_owned(),
            line,
            kind: ReadErrorKind::Decode(error),
        }
    }
}

/// The classes of archive read errors.
#[derive(Debug, Error)]
pub enum ReadErrorKind {
    /// Opening or reading the file failed, or its zstd stream is corrupt or truncated.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    /// The line is not a valid archive record.
    #[error("bad record (column {col}): {0}", col = .0.column())]
    Decode(#[from] DecodeError),
    /// The line exceeds [`MAX_LINE_LEN`].
    #[error("line longer than {MAX_LINE_LEN} bytes")]
    LineTooLong,
    /// The file ends in the middle of a line (a writer died mid-line).
    #[error("file ends inside a line (no final newline)")]
    PartialLine,
}

/// Iterates over the records of one archive.
pub struct ArchiveReader {
    input: Box<dyn BufRead + Send>,
    source_name: String,
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl fmt::Debug for ArchiveReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveReader")
            .field("source_name", &self.source_name)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl ArchiveReader {
    /// Opens `path`, decompressing it if its name ends in `.zst`.
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| ReadError {
            source_name: name.clone(),
            line: 0,
            kind: ReadErrorKind::Io(e),
        })?;
        let compressed = path.extension().is_some_and(|e| e == "zst");
        Self::from_reader(file, compressed, name)
    }

    /// Reads from any byte stream; `compressed` selects zstd decoding. `source_name` is used in
    /// error messages.
    pub fn from_reader<R: Read + Send + 'static>(
        input: R,
        compressed: bool,
        source_name: impl Into<String>,
    ) -> Result<Self, ReadError> {
        let source_name = source_name.into();
        let input: Box<dyn BufRead + Send> = if compressed {
            let decoder = zstd::stream::read::Decoder::new(input).map_err(|e| ReadError {
                source_name: source_name.clone(),
                line: 0,
                kind: ReadErrorKind::Io(e),
            })?;
            Box::new(BufReader::with_capacity(64 * 1024, decoder))
        } else {
            Box::new(BufReader::with_capacity(64 * 1024, input))
        };
        Ok(Self {
            input,
            source_name,
            line: 0,
            buf: Vec::with_capacity(1024),
            done: false,
        })
    }

    /// The name used in error messages.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// The 1-based number of the line last returned.
    pub fn line_number(&self) -> u64 {
        self.line
    }

    /// Reads the next raw line (without its `\n`) into the internal buffer. `Ok(None)` at EOF.
    pub fn next_line(&mut self) -> Result<Option<&[u8]>, ReadError> {
        if self.done {
            return Ok(None);
        }
        self.buf.clear();
        self.line += 1;
        match read_bounded_line(&mut self.input, &mut self.buf) {
            Ok(0) => {
                self.done = true;
                Ok(None)
            }
            Ok(_) if self.buf.last() == Some(&b'\n') => {
                self.buf.pop();
                Ok(Some(&self.buf))
            }
            Ok(_) => {
                self.done = true;
                Err(self.error(ReadErrorKind::PartialLine))
            }
            Err(e) => {
                self.done = true;
                let kind = if e.kind() == io::ErrorKind::OutOfMemory {
                    ReadErrorKind::LineTooLong
                } else {
                    ReadErrorKind::Io(e)
                };
                Err(self.error(kind))
            }
        }
    }

    fn error(&self, kind: ReadErrorKind) -> ReadError {
        ReadError {
            source_name: self.source_name.clone(),
            line: self.line,
            kind,
        }
    }
}

impl Iterator for ArchiveReader {
    type Item = Result<ArchivalRecord, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        let decoded = match self.next_line() {
            Ok(None) => return None,
            Ok(Some(line)) => ArchivalRecord::from_json(line),
            Err(e) => return Some(Err(e)),
        };
        Some(decoded.map_err(|e| self.error(ReadErrorKind::Decode(e))))
    }
}

/// `read_until(b'\n')` that refuses lines over [`MAX_LINE_LEN`] (reported as `OutOfMemory`).
fn read_bounded_line(input: &mut dyn BufRead, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut total = 0;
    loop {
        let available = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(total);
        }
        let (used, found) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if buf.len() + used > MAX_LINE_LEN + 1 {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        buf.extend_from_slice(&available[..used]);
        input.consume(used);
        total += used;
        if found {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const LINE: &[u8] =
        b"{\"Timestamp\":\"0001-01-01T00:00:00Z\",\"Attributes\":[null,\"AQI=\"]}\n";

    fn zst(data: &[u8]) -> Vec<u8> {
        zstd::encode_all(data, 3).unwrap()
    }

    #[test]
    fn reads_plain_and_multi_frame_zstd() {
        let plain: Vec<u8> = LINE.repeat(3);
        let n = ArchiveReader::from_reader(Cursor::new(plain), false, "x")
            .unwrap()
            .count();
        assert_eq!(n, 3);
        let mut two_frames = zst(&LINE.repeat(2));
        two_frames.extend(zst(&LINE.repeat(5)));
        let records: Vec<_> = ArchiveReader::from_reader(Cursor::new(two_frames), true, "x")
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records.len(), 7);
    }

    #[test]
    fn truncated_zstd_is_an_error_with_line() {
        let data = zst(&LINE.repeat(200));
        let cut = data[..data.len() - 8].to_vec();
        let results: Vec<_> = ArchiveReader::from_reader(Cursor::new(cut), true, "f.jsonl.zst")
            .unwrap()
            .collect();
        let err = results
            .iter()
            .find_map(|r| r.as_ref().err())
            .expect("an error");
        assert!(err.to_string().starts_with("f.jsonl.zst:"), "{err}");
        assert!(results.last().unwrap().is_err());
    }

    #[test]
    fn not_zstd_at_all() {
        let err = ArchiveReader::from_reader(Cursor::new(b"hello world\n".to_vec()), true, "g.zst")
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err();
        assert!(matches!(err.kind, ReadErrorKind::Io(_)), "{err}");
        assert_eq!(err.line, 1);
    }

    #[test]
    fn bad_json_and_partial_line_name_the_line() {
        let mut data = LINE.to_vec();
        data.extend_from_slice(b"{\"RawIDM\":\"!!\"}\n");
        data.extend_from_slice(b"{\"Timestamp\":\"0001");
        let results: Vec<_> = ArchiveReader::from_reader(Cursor::new(data), false, "h.jsonl")
            .unwrap()
            .collect();
        assert_eq!(results.len(), 3);
        let second = results[1].as_ref().unwrap_err();
        assert_eq!(second.line, 2);
        assert!(
            second.to_string().starts_with("h.jsonl:2: bad record"),
            "{second}"
        );
        let third = results[2].as_ref().unwrap_err();
        assert!(matches!(third.kind, ReadErrorKind::PartialLine));
    }

    #[test]
    fn overlong_line_is_refused() {
        let data = vec![b'x'; MAX_LINE_LEN + 10];
        let err = ArchiveReader::from_reader(Cursor::new(data), false, "big")
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err();
        assert!(matches!(err.kind, ReadErrorKind::LineTooLong));
    }

    #[test]
    fn missing_file() {
        let err = ArchiveReader::open(Path::new("/nonexistent/x.jsonl.zst")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.jsonl.zst"));
    }
}
