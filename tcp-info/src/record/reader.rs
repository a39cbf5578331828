//! Streaming reader for `.jsonl` and `.jsonl.zst` archives.
//!
//! Memory stays bounded whatever the file holds: one reused line buffer, a bounded line length
//! ([`MAX_LINE_LEN`]), and zstd decoded in-process as a stream (any number of concatenated
//! frames) with a bounded window ([`WINDOW_LOG_MAX`]). A small file that decompresses to
//! gigabytes (a "zstd bomb") costs at most one line of it; a frame that asks for a huge window
//! is refused before anything is allocated for it.

use super::{ArchivalRecord, DecodeError};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use thiserror::Error;

/// Longest line accepted. The ETL's scanner stops at 64 KiB; this is looser so that odd files
/// can still be inspected, while keeping memory bounded on garbage input.
pub const MAX_LINE_LEN: usize = 1 << 20;

/// Largest zstd window accepted, as a power of two: 2^23 = 8 MiB.
///
/// A frame header declares the window its decoder must keep, and the streaming decoder
/// allocates that much (and, on a long enough stream, touches all of it) however small the
/// file is: zstd's default limit, 2^27, let a 32 KiB archive make csvtool use 131 MiB. The
/// archives this reader is for need far less: upstream's `zstd` CLI at level 3 and this
/// crate's writer use at most 2^21 (2 MiB). 2^23 is the largest window of any level the
/// `zstd` CLI offers without `--ultra` or `--long` (level 19), so even an archive recompressed
/// harder still reads; a larger one is refused with an error that says so.
pub const WINDOW_LOG_MAX: u32 = 23;

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
    /// Opening or reading the file failed, or its zstd stream is corrupt, truncated or needs a
    /// window over [`WINDOW_LOG_MAX`] (the message says which).
    #[error("{}", describe_io(.0))]
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
    /// [`MAX_LINE_LEN`], for users of the re-exported type.
    pub const MAX_LINE_LEN: usize = MAX_LINE_LEN;
    /// [`WINDOW_LOG_MAX`], for users of the re-exported type (e.g. an independent decoder
    /// that must refuse the same frames).
    pub const WINDOW_LOG_MAX: u32 = WINDOW_LOG_MAX;

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

    /// Reads from any byte stream; `compressed` selects zstd decoding (an empty stream is an
    /// empty archive, as an empty plain file is). `source_name` is used in error messages.
    pub fn from_reader<R: Read + Send + 'static>(
        input: R,
        compressed: bool,
        source_name: impl Into<String>,
    ) -> Result<Self, ReadError> {
        let source_name = source_name.into();
        let input: Box<dyn BufRead + Send> = if compressed {
            let decoder = Decompressed::new(input).map_err(|e| ReadError {
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

/// The compressed input, counting what it delivers and marking its errors ([`InputError`]) so
/// that they can be told apart from the decoder's own once they come out of it.
struct CompressedInput<R> {
    inner: R,
    bytes_read: u64,
}

impl<R: Read> Read for CompressedInput<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.bytes_read += n as u64;
                Ok(n)
            }
            // Left as it is: the decoder and `read_bounded_line` retry it.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => Err(io::Error::new(e.kind(), InputError(e))),
        }
    }
}

/// An error of the compressed input itself (the file), on its way through the decoder.
#[derive(Debug)]
struct InputError(io::Error);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for InputError {}

/// What the decoder found wrong with the compressed data; the message says what it means.
#[derive(Debug)]
struct ZstdError(String);

impl fmt::Display for ZstdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ZstdError {}

/// The zstd decoder (window limited to [`WINDOW_LOG_MAX`]) over [`CompressedInput`], with its
/// errors explained: input errors come out as they were, decoder errors as [`ZstdError`].
struct Decompressed<R: Read> {
    decoder: zstd::stream::read::Decoder<'static, BufReader<CompressedInput<R>>>,
}

impl<R: Read> Decompressed<R> {
    fn new(input: R) -> io::Result<Self> {
        let input = CompressedInput {
            inner: input,
            bytes_read: 0,
        };
        let buffer = BufReader::with_capacity(zstd::zstd_safe::DCtx::in_size(), input);
        let mut decoder = zstd::stream::read::Decoder::with_buffer(buffer)?;
        decoder.window_log_max(WINDOW_LOG_MAX)?;
        Ok(Self { decoder })
    }
}

impl<R: Read> Read for Decompressed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let error = match self.decoder.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => e,
        };
        let kind = error.kind();
        // An empty file holds no frame, hence no record, like an empty plain file; the decoder
        // calls it an incomplete frame, as it does a file cut inside its first frame.
        if kind == io::ErrorKind::UnexpectedEof && self.decoder.get_ref().get_ref().bytes_read == 0
        {
            return Ok(0);
        }
        let message = error.to_string();
        let Some(inner) = error.into_inner() else {
            return Err(io::Error::new(kind, ZstdError(message)));
        };
        match inner.downcast::<InputError>() {
            Ok(input) => Err(input.0),
            Err(_) => Err(io::Error::new(
                kind,
                ZstdError(explain_zstd(kind, &message)),
            )),
        }
    }
}

/// The decoder's message, with what it means for an archive.
fn explain_zstd(kind: io::ErrorKind, message: &str) -> String {
    // zstd's name for ZSTD_error_frameParameter_windowTooLarge (zstd_safe::get_error_name).
    const WINDOW_TOO_LARGE: &str = "Frame requires too much memory for decoding";
    if kind == io::ErrorKind::UnexpectedEof {
        format!(
            "the zstd data ends inside a frame ({message}): the file is truncated, or still \
             being written"
        )
    } else if message == WINDOW_TOO_LARGE {
        format!(
            "a zstd frame needs a window larger than the {} MiB this reader allows ({message}); \
             recompress the file without --long or --ultra",
            (1u64 << WINDOW_LOG_MAX) >> 20
        )
    } else {
        format!("corrupt zstd data: {message}")
    }
}

/// How [`ReadErrorKind::Io`] reads: a decoder error says what it found, an I/O error is
/// `read failed: …`.
fn describe_io(error: &io::Error) -> String {
    match error.get_ref().and_then(|e| e.downcast_ref::<ZstdError>()) {
        Some(zstd) => zstd.to_string(),
        None => format!("read failed: {error}"),
    }
}

/// `read_until(b'\n')` that refuses lines over [`MAX_LINE_LEN`] (reported as `OutOfMemory`):
/// reads at most `MAX_LINE_LEN + 1` bytes (the line and its newline). A last line without a
/// newline that is exactly that long is returned as it is; the caller reports it as partial.
fn read_bounded_line(input: &mut dyn BufRead, buf: &mut Vec<u8>) -> io::Result<usize> {
    const LIMIT: u64 = MAX_LINE_LEN as u64 + 1;
    // `read_until` finds the newline with the C library's `memchr`: many times faster than a
    // byte loop, which matters for gigabytes of lines (and in debug builds, by a factor of 4
    // over the whole read).
    let read = input.take(LIMIT).read_until(b'\n', buf)?;
    if read as u64 == LIMIT && buf.last() != Some(&b'\n') {
        // At the limit without a newline: too long, unless the input ends right here.
        loop {
            match input.fill_buf() {
                Ok([]) => break,
                Ok(_) => return Err(io::Error::from(io::ErrorKind::OutOfMemory)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(read)
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
    fn line_limit_edges() {
        let run = |data: Vec<u8>| -> Vec<String> {
            ArchiveReader::from_reader(Cursor::new(data), false, "l")
                .unwrap()
                .map(|r| match r {
                    Ok(_) => "record".to_owned(),
                    Err(e) => match e.kind {
                        ReadErrorKind::Decode(_) => "decode".to_owned(),
                        ReadErrorKind::LineTooLong => "too long".to_owned(),
                        ReadErrorKind::PartialLine => "partial".to_owned(),
                        ReadErrorKind::Io(e) => format!("io {e}"),
                    },
                })
                .collect()
        };
        // A line of exactly MAX_LINE_LEN bytes and its newline is read (and is no record).
        let mut data = vec![b' '; MAX_LINE_LEN];
        data.push(b'\n');
        data.extend_from_slice(LINE);
        assert_eq!(run(data), ["decode", "record"]);
        // One byte more is too long, and nothing after it is read.
        let mut data = vec![b' '; MAX_LINE_LEN + 1];
        data.push(b'\n');
        data.extend_from_slice(LINE);
        assert_eq!(run(data), ["too long"]);
        // A last line without its newline: partial up to MAX_LINE_LEN + 1 bytes, then too long.
        assert_eq!(run(vec![b'x'; MAX_LINE_LEN + 1]), ["partial"]);
        assert_eq!(run(vec![b'x'; MAX_LINE_LEN + 2]), ["too long"]);
        assert_eq!(run([LINE, b"{"].concat()), ["record", "partial"]);
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

    /// A frame header declaring a window of 2^`window_log` bytes (no content size, no
    /// checksum), then `blocks` RLE blocks of `byte`, 128 KiB each (less if the window is
    /// smaller), the last one marked last.
    fn rle_frame(window_log: u32, blocks: usize, byte: u8) -> Vec<u8> {
        let mut frame = ZSTD_MAGIC_BYTES.to_vec();
        frame.extend([0x00, ((window_log - 10) << 3) as u8]);
        let size = (1u32 << window_log).min(128 << 10);
        for i in 0..blocks {
            let last = u32::from(i + 1 == blocks);
            let header = last | (1 << 1) | (size << 3);
            frame.extend(&header.to_le_bytes()[..3]);
            frame.push(byte);
        }
        frame
    }

    const ZSTD_MAGIC_BYTES: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

    #[test]
    fn empty_compressed_input_is_an_empty_archive() {
        let mut reader =
            ArchiveReader::from_reader(Cursor::new(Vec::new()), true, "e.zst").unwrap();
        assert!(reader.next().is_none());
        assert!(reader.next().is_none());
        // Only the magic number is a truncated frame, not an empty file.
        let err = ArchiveReader::from_reader(Cursor::new(ZSTD_MAGIC_BYTES.to_vec()), true, "m.zst")
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "m.zst:1: the zstd data ends inside a frame (incomplete frame): the file is \
             truncated, or still being written"
        );
    }

    #[test]
    fn windows_over_the_limit_are_refused_before_decoding() {
        let line = b"{\"Timestamp\":\"0001-01-01T00:00:00Z\",\"Metadata\":{\"UUID\":\"u\"}}\n";
        for window_log in [10, 21, WINDOW_LOG_MAX] {
            // A raw block with one line, in a frame declaring this window.
            let mut data = rle_frame(window_log, 0, 0);
            let header = 1 | ((line.len() as u32) << 3);
            data.extend(&header.to_le_bytes()[..3]);
            data.extend(line);
            let records: Vec<_> = ArchiveReader::from_reader(Cursor::new(data), true, "w.zst")
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(records.len(), 1, "window 2^{window_log}");
        }
        for window_log in [WINDOW_LOG_MAX + 1, 27, 31] {
            let err = ArchiveReader::from_reader(
                Cursor::new(rle_frame(window_log, 1, b'x')),
                true,
                "w.zst",
            )
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err();
            assert_eq!(
                err.to_string(),
                "w.zst:1: a zstd frame needs a window larger than the 8 MiB this reader allows \
                 (Frame requires too much memory for decoding); recompress the file without \
                 --long or --ultra",
                "window 2^{window_log}"
            );
        }
    }

    #[test]
    fn a_bomb_stops_at_the_line_limit() {
        // 2 GiB of 'x' without a newline in 64 KiB.
        let bomb = rle_frame(WINDOW_LOG_MAX, 16 << 10, b'x');
        assert!(bomb.len() < 70_000);
        let mut reader = ArchiveReader::from_reader(Cursor::new(bomb), true, "b.zst").unwrap();
        let err = reader.next().unwrap().unwrap_err();
        assert!(matches!(err.kind, ReadErrorKind::LineTooLong), "{err}");
        assert_eq!(err.to_string(), "b.zst:1: line longer than 1048576 bytes");
        assert!(reader.next().is_none());
    }

    /// A reader whose every read fails.
    struct Failing;

    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }

    #[test]
    fn input_errors_are_told_from_corrupt_data() {
        for compressed in [false, true] {
            let err = ArchiveReader::from_reader(Failing, compressed, "f")
                .unwrap()
                .next()
                .unwrap()
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                "f:1: read failed: disk on fire",
                "{compressed}"
            );
        }
        let mut corrupt = zst(&LINE.repeat(50));
        corrupt[4] ^= 0xFF;
        let err = ArchiveReader::from_reader(Cursor::new(corrupt), true, "c.zst")
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err();
        assert!(
            err.to_string().starts_with("c.zst:1: corrupt zstd data: "),
            "{err}"
        );
    }

    #[test]
    fn missing_file() {
        let err = ArchiveReader::open(Path::new("/nonexistent/x.jsonl.zst")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.jsonl.zst"));
    }
}
