//! Hostile archives (issue 12): corrupt, truncated, garbage and huge inputs given to the real
//! `csvtool` binary and to the library's `ArchiveReader`. Whatever the input, both must end with
//! a clear error naming the file and line (csvtool: exit status 1, never a panic) after the
//! well-formed lines before the damage (csvtool prints rows as it reads), or read it whole if it
//! is valid — in bounded memory: csvtool runs under an address-space limit
//! ([`ADDRESS_SPACE_LIMIT`]), and its peak RSS (`VmHWM` in `/proc/<pid>/status`, polled) must
//! stay under [`RSS_LIMIT_KIB`].
//!
//! What the tools must do is computed independently of the reader: an independent zstd decoder
//! (with the reader's window limit and read size) gives the bytes a damaged stream yields before
//! its error, a plain line split the lines, and the library's record and snapshot decoding
//! which of those lines are valid.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failed spawn or temp-file write should fail the test where it happens"
)]

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Cursor, Read, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tcp_info::csv;
use tcp_info::record::{ArchivalRecord, ArchiveReader, ReadErrorKind};
use tcp_info::snapshot::Snapshot;

const CSVTOOL: &str = env!("CARGO_BIN_EXE_csvtool");
/// The larger m-lab fixture: one zstd frame (with a checksum) of 892 lines.
const FIXTURE: &str = "ndt-7hhhv_1559749627_0000000000062D84.00000.jsonl.zst";
/// Peak resident memory csvtool may use on any input, in KiB.
const RSS_LIMIT_KIB: u64 = 64 << 10;
/// csvtool's address space (`RLIMIT_AS`): whatever the polling of its RSS sees or misses (a run
/// of a millisecond), an allocation beyond this fails, and csvtool aborts instead of exiting with
/// the status and message each test expects. A debug build reads the fixtures within 64 MiB.
const ADDRESS_SPACE_LIMIT: libc::rlim_t = 128 << 20;
/// The read size of the reader's line buffer over the decoder, which the independent decoder
/// copies: how much a corrupt stream yields before its error depends on it.
const READ_SIZE: usize = 64 * 1024;
/// The reader's message for a stream cut inside a frame.
const TRUNCATED: &str = "the zstd data ends inside a frame (incomplete frame): the file is \
                         truncated, or still being written";
/// The reader's message for a frame whose window is over its limit.
const WINDOW_TOO_LARGE: &str = "a zstd frame needs a window larger than the 8 MiB this reader \
                                allows (Frame requires too much memory for decoding); \
                                recompress the file without --long or --ultra";
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

// ---------------------------------------------------------------------------------------------
// Inputs.

/// The fixture: its compressed bytes and its lines (without their `\n`).
struct Fixture {
    compressed: Vec<u8>,
    lines: Vec<Vec<u8>>,
}

fn fixture() -> Option<Fixture> {
    let path = common::mlab_fixtures()?.join(FIXTURE);
    let compressed = std::fs::read(&path).unwrap();
    let plain = common::decompress(&path);
    assert!(plain.ends_with(b"\n"));
    let lines: Vec<Vec<u8>> = plain[..plain.len() - 1]
        .split(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(lines.len(), 892);
    Some(Fixture { compressed, lines })
}

/// `lines`, each followed by `\n`.
fn joined<L: AsRef<[u8]>>(lines: &[L]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        out.extend_from_slice(line.as_ref());
        out.push(b'\n');
    }
    out
}

/// One zstd frame of `data`, declaring a window of 2^`window_log` bytes (no content size, so
/// the declared window is what a streaming decoder allocates), with a checksum.
fn frame(data: &[u8], window_log: u32) -> Vec<u8> {
    use zstd::zstd_safe::CParameter;
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
    encoder
        .set_parameter(CParameter::WindowLog(window_log))
        .unwrap();
    encoder.include_checksum(true).unwrap();
    encoder.include_contentsize(false).unwrap();
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A frame header declaring a window of 2^`window_log` bytes (no content size, no checksum).
fn frame_header(window_log: u32) -> Vec<u8> {
    let mut header = ZSTD_MAGIC.to_vec();
    header.extend([0x00, ((window_log - 10) << 3) as u8]);
    header
}

/// A zstd block header: `size` bytes (raw) or `size` repeats of one byte (RLE).
fn block_header(last: bool, rle: bool, size: usize) -> [u8; 3] {
    let header = u32::from(last) | (u32::from(rle) << 1) | ((size as u32) << 3);
    let bytes = header.to_le_bytes();
    [bytes[0], bytes[1], bytes[2]]
}

/// A raw (stored) block holding `data` (at most 128 KiB).
fn raw_block(data: &[u8], last: bool) -> Vec<u8> {
    let mut block = block_header(last, false, data.len()).to_vec();
    block.extend_from_slice(data);
    block
}

/// `count` RLE blocks of 128 KiB of `byte` each, the last one ending the frame: 4 bytes that
/// decompress to 128 KiB.
fn rle_blocks(byte: u8, count: usize) -> Vec<u8> {
    let mut blocks = Vec::with_capacity(count * 4);
    for i in 0..count {
        blocks.extend(block_header(i + 1 == count, true, 128 << 10));
        blocks.push(byte);
    }
    blocks
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend(seed.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A scratch directory for input files.
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hostile-archives-")
        .tempdir()
        .unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// What the reader and csvtool must do.

/// How reading a line can end, as the reader reports it.
#[derive(Clone, PartialEq, Eq)]
enum Outcome {
    /// A record.
    Record(Box<ArchivalRecord>),
    /// A line that is not a valid record (the reader goes on): the error's text.
    Decode(String),
    /// The last item: the stream broke (its message), a line ran past the limit, or the input
    /// ended inside a line.
    Broken(String),
    TooLong,
    Partial,
}

/// Short, so that a failed comparison of hundreds of outcomes stays readable.
impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Record(record) => {
                let json = record.to_json_line();
                let shown = String::from_utf8_lossy(&json[..json.len().min(60)]);
                write!(f, "Record({shown}…)")
            }
            Self::Decode(message) => write!(f, "Decode({message})"),
            Self::Broken(message) => write!(f, "Broken({message})"),
            Self::TooLong => f.write_str("TooLong"),
            Self::Partial => f.write_str("Partial"),
        }
    }
}

/// The outcomes the reader must yield for `data` (zstd-compressed if `compressed`).
fn expected_outcomes(data: &[u8], compressed: bool) -> Vec<Outcome> {
    let (plain, broken) = if compressed {
        independent_decode(data)
    } else {
        (data.to_vec(), None)
    };
    let mut out = Vec::new();
    let mut rest = &plain[..];
    loop {
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            // The reader counts the newline it looks for against the limit.
            if rest.len() > ArchiveReader::MAX_LINE_LEN + 1 {
                out.push(Outcome::TooLong);
            } else if let Some(message) = broken {
                out.push(Outcome::Broken(message));
            } else if !rest.is_empty() {
                out.push(Outcome::Partial);
            }
            return out;
        };
        let line = &rest[..end];
        if line.len() > ArchiveReader::MAX_LINE_LEN {
            out.push(Outcome::TooLong);
            return out;
        }
        out.push(line_outcome(line));
        rest = &rest[end + 1..];
    }
}

thread_local! {
    /// Outcomes of lines already decoded, and csvtool rows (or errors) of records already
    /// converted: the tests check the same lines many times over, and debug builds are slow.
    static LINES: RefCell<HashMap<Vec<u8>, Outcome>> = RefCell::new(HashMap::new());
    static ROWS: RefCell<HashMap<Vec<u8>, Result<String, String>>> = RefCell::new(HashMap::new());
}

/// What the reader must make of one complete line.
fn line_outcome(line: &[u8]) -> Outcome {
    if let Some(known) = LINES.with(|cache| cache.borrow().get(line).cloned()) {
        return known;
    }
    let outcome = match ArchivalRecord::from_json(line) {
        Ok(record) => Outcome::Record(Box::new(record)),
        Err(e) => Outcome::Decode(format!("bad record (column {}): {e}", e.column())),
    };
    LINES.with(|cache| cache.borrow_mut().insert(line.to_vec(), outcome.clone()));
    outcome
}

/// csvtool's row for a record, or its error text.
fn csv_row(record: &ArchivalRecord) -> Result<String, String> {
    let key = record.to_json_line();
    if let Some(known) = ROWS.with(|cache| cache.borrow().get(&key).cloned()) {
        return known;
    }
    let row = Snapshot::decode(record)
        .map(|snapshot| {
            let mut row = String::new();
            csv::write_row(&mut row, &snapshot);
            row
        })
        .map_err(|e| e.to_string());
    ROWS.with(|cache| cache.borrow_mut().insert(key, row.clone()));
    row
}

/// What an independent zstd decoder makes of `data` — with the reader's window limit and
/// read size — up to its error, and the reader's message for that error. An empty input is an
/// empty archive.
fn independent_decode(data: &[u8]) -> (Vec<u8>, Option<String>) {
    if data.is_empty() {
        return (Vec::new(), None);
    }
    let mut decoder = zstd::stream::read::Decoder::new(Cursor::new(data)).unwrap();
    decoder
        .window_log_max(ArchiveReader::WINDOW_LOG_MAX)
        .unwrap();
    let mut out = Vec::new();
    let mut chunk = vec![0; READ_SIZE];
    loop {
        // Once the last line is past the reader's limit, the reader stops reading: so does
        // this decoder (a bomb would take it through gigabytes).
        let line_start = out.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if out.len() - line_start > ArchiveReader::MAX_LINE_LEN + 1 {
            return (out, None);
        }
        match decoder.read(&mut chunk) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) => {
                let message = e.to_string();
                let explained = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    TRUNCATED.to_owned()
                } else if message == "Frame requires too much memory for decoding" {
                    WINDOW_TOO_LARGE.to_owned()
                } else {
                    format!("corrupt zstd data: {message}")
                };
                return (out, Some(explained));
            }
        }
    }
}

/// What csvtool must do with an input named `name`.
struct CsvExpected {
    /// Its exact standard output.
    stdout: Vec<u8>,
    /// The rows in it (the header aside).
    rows: usize,
    /// Its exact standard error, or `None`: success, nothing on standard error.
    failure: Option<String>,
}

/// What csvtool must print for input named `name`, given the reader's outcomes: a row per
/// record while records come, stopping at the first line that is not one (or whose snapshot
/// does not decode) or at the reader's terminal error.
fn expected_csvtool(name: &str, outcomes: &[Outcome]) -> CsvExpected {
    let mut stdout = String::new();
    let mut rows = 0;
    let mut failure = None;
    for (i, outcome) in outcomes.iter().enumerate() {
        let line = i + 1;
        let at = |what: &str| Some(format!("csvtool: {name}:{line}: {what}\n"));
        failure = match outcome {
            Outcome::Record(record) => match csv_row(record) {
                Ok(row) => {
                    if rows == 0 {
                        csv::write_header(&mut stdout);
                    }
                    stdout.push_str(&row);
                    rows += 1;
                    continue;
                }
                Err(e) => at(&e),
            },
            Outcome::Decode(message) | Outcome::Broken(message) => at(message),
            Outcome::TooLong => at("line longer than 1048576 bytes"),
            Outcome::Partial => at("file ends inside a line (no final newline)"),
        };
        break;
    }
    if failure.is_none() && rows == 0 {
        failure = Some(format!(
            "csvtool: {name}:1: no records: the input is empty\n"
        ));
    }
    CsvExpected {
        stdout: stdout.into_bytes(),
        rows,
        failure,
    }
}

// ---------------------------------------------------------------------------------------------
// Running them.

/// csvtool's run: exit status, standard output, standard error, and its peak RSS in KiB as
/// polled (0 if it exited before the first poll).
struct Run {
    status: ExitStatus,
    stdout: Vec<u8>,
    stdout_len: u64,
    stderr: String,
    peak_rss_kib: u64,
    elapsed: Duration,
}

/// Runs csvtool with `args`, `stdin` (if any) written from a thread, standard output kept if
/// `keep_stdout` (else only counted), polling its `VmHWM` until it exits.
fn csvtool(args: &[&OsStr], stdin: Option<Vec<u8>>, keep_stdout: bool) -> Run {
    let start = Instant::now();
    let mut command = Command::new(CSVTOOL);
    // SAFETY: setrlimit is async-signal-safe, and the closure touches nothing else.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: ADDRESS_SPACE_LIMIT,
                rlim_max: ADDRESS_SPACE_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &raw const limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let writer = stdin.map(|input| {
        let mut pipe = child.stdin.take().unwrap();
        // csvtool stops reading at the first error: a broken pipe here is expected.
        std::thread::spawn(move || drop(pipe.write_all(&input)))
    });
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut kept, mut len) = (Vec::new(), 0u64);
        let mut chunk = vec![0; 1 << 16];
        loop {
            let n = out.read(&mut chunk).unwrap();
            if n == 0 {
                return (kept, len);
            }
            len += n as u64;
            if keep_stdout {
                kept.extend_from_slice(&chunk[..n]);
            }
        }
    });
    let mut err = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        err.read_to_string(&mut text).unwrap();
        text
    });
    let status_path = format!("/proc/{pid}/status");
    let mut peak_rss_kib = 0;
    let status = loop {
        // VmHWM is the peak so far; once the process has exited it is gone.
        if let Ok(status) = std::fs::read_to_string(&status_path)
            && let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().strip_suffix("kB"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        {
            peak_rss_kib = peak_rss_kib.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    if let Some(writer) = writer {
        writer.join().unwrap();
    }
    let (stdout, stdout_len) = reader.join().unwrap();
    Run {
        status,
        stdout,
        stdout_len,
        stderr: errors.join().unwrap(),
        peak_rss_kib,
        elapsed: start.elapsed(),
    }
}

fn csvtool_file(path: &Path) -> Run {
    csvtool(&[path.as_os_str()], None, true)
}

/// Checks a csvtool run against what it must do with the input named `name`; returns that.
fn check_csvtool(run: &Run, name: &str, outcomes: &[Outcome], what: &str) -> CsvExpected {
    let want = expected_csvtool(name, outcomes);
    let stdout = &want.stdout;
    assert!(!run.stderr.contains("panicked"), "{what}: {}", run.stderr);
    match &want.failure {
        None => {
            assert_eq!(run.status.code(), Some(0), "{what}: {}", run.stderr);
            assert_eq!(run.stderr, "", "{what}");
        }
        Some(message) => {
            assert_eq!(run.status.code(), Some(1), "{what}: {}", run.stderr);
            assert_eq!(&run.stderr, message, "{what}");
        }
    }
    assert!(
        run.stdout == *stdout,
        "{what}: standard output differs: {} bytes, want {} ({} rows want {})",
        run.stdout.len(),
        stdout.len(),
        run.stdout.iter().filter(|&&b| b == b'\n').count(),
        stdout.iter().filter(|&&b| b == b'\n').count(),
    );
    assert!(
        run.peak_rss_kib < RSS_LIMIT_KIB,
        "{what}: peak RSS {} KiB",
        run.peak_rss_kib
    );
    want
}

/// What the library's reader yields for `data`.
fn library_outcomes(data: Vec<u8>, compressed: bool, name: &str) -> Vec<Outcome> {
    let reader = ArchiveReader::from_reader(Cursor::new(data), compressed, name).unwrap();
    let mut out = Vec::new();
    for item in reader {
        let line = out.len() as u64 + 1;
        out.push(match item {
            Ok(record) => Outcome::Record(Box::new(record)),
            Err(e) => {
                assert_eq!(e.line, line, "{e}");
                assert_eq!(e.to_string(), format!("{name}:{line}: {}", e.kind));
                match e.kind {
                    ReadErrorKind::Decode(_) => Outcome::Decode(e.kind.to_string()),
                    ReadErrorKind::Io(_) => Outcome::Broken(e.kind.to_string()),
                    ReadErrorKind::LineTooLong => Outcome::TooLong,
                    ReadErrorKind::PartialLine => Outcome::Partial,
                }
            }
        });
    }
    out
}

/// What [`check_both`] found: the reader's outcomes, csvtool's row count and whether it failed.
type Checked = (Vec<Outcome>, usize, bool);
/// An input file: its name and contents.
type Case = (String, Vec<u8>);

/// Both tools on one input: the library on the bytes, csvtool on a file `name` in `dir`.
/// Returns the reader's outcomes, csvtool's row count and whether it failed.
fn check_both(dir: &Path, name: &str, data: &[u8], what: &str) -> Checked {
    // As `ArchiveReader::open` decides.
    let compressed = Path::new(name).extension().is_some_and(|e| e == "zst");
    let want = expected_outcomes(data, compressed);
    assert_eq!(
        library_outcomes(data.to_vec(), compressed, name),
        want,
        "{what}: library"
    );
    let path = write(dir, name, data);
    let shown = path.display().to_string();
    let csv = check_csvtool(&csvtool_file(&path), &shown, &want, what);
    (want, csv.rows, csv.failure.is_some())
}

/// [`check_both`] on every `(name, data)` case, two at a time (csvtool runs in its own
/// process, and the test is dominated by waiting for it); results in the cases' order.
fn check_all(dir: &Path, cases: Vec<Case>) -> Vec<(Case, Checked)> {
    let mut names: Vec<&str> = cases.iter().map(|(name, _)| name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "cases share a file name");
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((name, data)) = cases.get(i) else {
                        return;
                    };
                    let result = check_both(dir, name, data, name);
                    results.lock().unwrap().push((i, result));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    cases
        .into_iter()
        .zip(results)
        .map(|(case, (_, result))| (case, result))
        .collect()
}

fn rows_printed(outcomes: &[Outcome]) -> usize {
    outcomes
        .iter()
        .take_while(|o| matches!(o, Outcome::Record(_)))
        .count()
}

// ---------------------------------------------------------------------------------------------
// Tests.

/// The fixture cut every 97 bytes and at each of its last 64 bytes (inside its only frame), and
/// a three-frame archive (as the daemon writes them, one frame per flush) cut every 13 bytes
/// of its last frame: the lines of every complete block come out, then the truncation is named.
#[test]
fn truncated_archives_print_every_line_before_the_cut_then_fail() {
    let Some(fixture) = fixture() else {
        return;
    };
    let dir = scratch();
    let n = fixture.compressed.len();
    let mut cuts: Vec<usize> = (0..n).step_by(97).collect();
    cuts.extend(n - 64..n);
    // Each cut is its own file, checked in parallel: no two may share a name.
    cuts.sort_unstable();
    cuts.dedup();
    let cases = cuts
        .iter()
        .map(|&cut| {
            (
                format!("cut-{cut}.jsonl.zst"),
                fixture.compressed[..cut].to_vec(),
            )
        })
        .collect();
    let mut with_rows = 0;
    for ((name, _), (outcomes, ..)) in check_all(dir.path(), cases) {
        if name == "cut-0.jsonl.zst" {
            assert!(outcomes.is_empty(), "an empty file is an empty archive");
            continue;
        }
        assert_eq!(
            outcomes.last(),
            Some(&Outcome::Broken(TRUNCATED.to_owned())),
            "{name}"
        );
        with_rows += usize::from(rows_printed(&outcomes) > 0);
    }
    assert!(
        with_rows > cuts.len() / 2,
        "most cuts keep some lines: {with_rows} of {}",
        cuts.len()
    );

    // Three frames of 300, 300 and 292 lines; cuts inside the last one keep the first 600.
    let frames: Vec<Vec<u8>> = fixture
        .lines
        .chunks(300)
        .map(|lines| frame(&joined(lines), 21))
        .collect();
    let whole = frames.concat();
    let last_start = whole.len() - frames[2].len();
    let mut cuts: Vec<usize> = (last_start..whole.len()).step_by(97).collect();
    cuts.extend(whole.len() - 16..=whole.len());
    cuts.sort_unstable();
    cuts.dedup();
    let cases = cuts
        .iter()
        .map(|&cut| (format!("frames-{cut}.jsonl.zst"), whole[..cut].to_vec()))
        .collect();
    for ((name, data), (outcomes, ..)) in check_all(dir.path(), cases) {
        if data.len() == last_start || data.len() == whole.len() {
            // Complete frames only: a valid archive.
            let lines = if data.len() == last_start { 600 } else { 892 };
            assert_eq!(rows_printed(&outcomes), lines, "{name}");
            assert_eq!(outcomes.len(), lines, "{name}");
        } else {
            assert!(rows_printed(&outcomes) >= 600, "{name}");
            assert_eq!(
                outcomes.last(),
                Some(&Outcome::Broken(TRUNCATED.to_owned())),
                "{name}"
            );
        }
    }

    // The same on standard input (zstd detected by its magic number), with and without `-`.
    let cut = n - 20;
    let outcomes = expected_outcomes(&fixture.compressed[..cut], true);
    for args in [&[][..], &[OsStr::new("-")][..]] {
        let run = csvtool(args, Some(fixture.compressed[..cut].to_vec()), true);
        check_csvtool(&run, "<stdin>", &outcomes, "standard input cut");
    }
}

/// Bytes of the fixture's zstd stream flipped — in the magic number, the frame header, block
/// headers, the compressed data and the checksum — one bit at a time: csvtool prints the rows
/// of the lines that still decode, then fails at the first broken one (or at the checksum), or
/// reads the file whole where the flip left it valid.
#[test]
fn bit_flips_fail_cleanly_after_the_good_lines() {
    let Some(fixture) = fixture() else {
        return;
    };
    let dir = scratch();
    let data = &fixture.compressed;
    let n = data.len();
    let positions = [
        0,
        3,
        4,
        5,
        6,
        7,
        8,
        9,
        64,
        1000,
        n / 4,
        n / 3,
        n / 2,
        2 * n / 3,
        n - 200,
        n - 9,
        n - 5,
        n - 4,
        n - 1,
    ];
    let mut cases = Vec::new();
    for &at in &positions {
        for bit in [0, 3, 7] {
            let mut flipped = data.clone();
            flipped[at] ^= 1 << bit;
            cases.push((format!("flip-{at}-{bit}.jsonl.zst"), flipped));
        }
    }
    let mut failures = 0;
    let mut after_rows = 0;
    for (_, (_, rows, failed)) in check_all(dir.path(), cases) {
        failures += usize::from(failed);
        after_rows += usize::from(failed && rows > 0);
    }
    // Most flips break the file, and some of those only after good lines were printed.
    assert!(failures > positions.len() * 2, "{failures} flips detected");
    assert!(after_rows > 0, "no flip failed after printing rows");
}

/// Inputs that are not archives at all, or whose lines are JSON but not records, or carry
/// absurd numbers or deep nesting.
#[test]
fn garbage_fails_cleanly_naming_file_and_line() {
    let Some(fixture) = fixture() else {
        return;
    };
    let dir = scratch();
    let good = joined(&fixture.lines[..3]);
    let metadata = &fixture.lines[0];
    let metadata_text = std::str::from_utf8(metadata).unwrap();
    // The Metadata line with a key added at the top level.
    let with = |key: &str, value: &str| -> Vec<u8> {
        let mut object: Vec<u8> = metadata[..metadata.len() - 1].to_vec();
        object.extend_from_slice(format!(",\"{key}\":{value}}}").as_bytes());
        object
    };
    // The Metadata line with a key added to its Metadata object.
    let in_metadata = |key: &str, value: &str| -> Vec<u8> {
        let mut line: Vec<u8> = metadata[..metadata.len() - 2].to_vec();
        line.extend_from_slice(format!(",\"{key}\":{value}}}}}").as_bytes());
        line
    };
    let sequence = |value: &str| -> Vec<u8> {
        let start = metadata_text.find("\"Sequence\":").unwrap() + "\"Sequence\":".len();
        let end = start + metadata_text[start..].find(',').unwrap();
        format!(
            "{}{value}{}",
            &metadata_text[..start],
            &metadata_text[end..]
        )
        .into_bytes()
    };
    let deep = "[".repeat(100_000);
    let balanced = format!("{deep}{}", "]".repeat(100_000));

    // (name, contents, rows csvtool prints, whether it fails)
    let cases: Vec<(&str, Vec<u8>, usize, bool)> = vec![
        ("random.jsonl.zst", random_bytes(100_000, 1), 0, true),
        ("random.jsonl", random_bytes(100_000, 2), 0, true),
        ("empty.jsonl.zst", Vec::new(), 0, true),
        ("empty.jsonl", Vec::new(), 0, true),
        // A zstd frame of nothing, then one of nothing followed by a good frame.
        (
            "empty-frame.jsonl.zst",
            zstd::encode_all(&[][..], 3).unwrap(),
            0,
            true,
        ),
        (
            "empty-raw-block.jsonl.zst",
            [frame_header(21), raw_block(&[], true)].concat(),
            0,
            true,
        ),
        (
            "empty-then-good.jsonl.zst",
            [zstd::encode_all(&[][..], 3).unwrap(), frame(&good, 21)].concat(),
            3,
            false,
        ),
        (
            "zstd-garbage.jsonl.zst",
            zstd::encode_all(&random_bytes(50_000, 3)[..], 3).unwrap(),
            0,
            true,
        ),
        // Valid JSON, not records: on line 4, after three good lines.
        (
            "object.jsonl",
            [&good[..], b"{\"a\":1}\n"].concat(),
            3,
            true,
        ),
        ("empty-object.jsonl", [&good[..], b"{}\n"].concat(), 3, true),
        ("array.jsonl", [&good[..], b"[1,2]\n"].concat(), 3, true),
        ("string.jsonl", [&good[..], b"\"x\"\n"].concat(), 3, true),
        ("null.jsonl", [&good[..], b"null\n"].concat(), 3, true),
        ("number.jsonl", [&good[..], b"42\n"].concat(), 3, true),
        ("empty-line.jsonl", [&good[..], b"\n"].concat(), 3, true),
        (
            "two-objects.jsonl",
            [&good[..], metadata, metadata, b"\n"].concat(),
            3,
            true,
        ),
        // Absurd numbers.
        ("huge-float.jsonl", joined(&[sequence("1e400")]), 0, true),
        (
            "huge-int.jsonl",
            joined(&[sequence("99999999999999999999")]),
            0,
            true,
        ),
        ("fraction.jsonl", joined(&[sequence("1.5")]), 0, true),
        (
            "negative-inode.jsonl",
            joined(&[in_metadata("Netns", "{\"Inode\":-1}")]),
            0,
            true,
        ),
        // Go's decoder too accepts a negative Sequence (an int) and skips unknown keys whatever
        // their numbers.
        (
            "negative-sequence.jsonl",
            joined(&[sequence("-1")]),
            1,
            false,
        ),
        (
            "unknown-huge.jsonl",
            joined(&[with("X", "1e400")]),
            1,
            false,
        ),
        // 100 000 nested arrays: as the line, unterminated in an unknown key, balanced in an
        // unknown key (skipped without recursion), and where a value is expected.
        ("deep.jsonl", joined(&[&deep]), 0, true),
        (
            "deep-unknown-open.jsonl",
            joined(&[with("X", &deep)]),
            0,
            true,
        ),
        (
            "deep-unknown.jsonl",
            joined(&[with("X", &balanced)]),
            1,
            false,
        ),
        (
            "deep-attributes.jsonl",
            joined(&[with("Attributes", &balanced)]),
            0,
            true,
        ),
        (
            "deep-unknown.jsonl.zst",
            zstd::encode_all(&joined(&[with("X", &balanced)])[..], 3).unwrap(),
            1,
            false,
        ),
        // A file ending inside its last line.
        (
            "partial.jsonl",
            [&good[..], &metadata[..20]].concat(),
            3,
            true,
        ),
    ];
    for (name, data, rows, fails) in cases {
        let (outcomes, printed, failed) = check_both(dir.path(), name, &data, name);
        assert_eq!((printed, failed), (rows, fails), "{name}: {outcomes:?}");
    }
}

/// A 64 KiB file that decompresses to 2 GiB of one line without a newline: the reader stops at
/// its line limit; csvtool fails at once with that error, in bounded memory. After good lines,
/// those are printed first.
#[test]
fn zstd_bomb_stops_at_the_line_limit_in_bounded_memory() {
    let Some(fixture) = fixture() else {
        return;
    };
    let dir = scratch();
    // 16384 blocks of 128 KiB: 2 GiB, in the largest window the reader accepts.
    let bomb = [
        frame_header(ArchiveReader::WINDOW_LOG_MAX),
        rle_blocks(b'x', 16 << 10),
    ]
    .concat();
    assert!(bomb.len() < 70_000, "{}", bomb.len());
    let good = joined(&fixture.lines[..3]);
    let after_good = [
        frame_header(ArchiveReader::WINDOW_LOG_MAX),
        raw_block(&good, false),
        rle_blocks(b'x', 16 << 10),
    ]
    .concat();
    for (name, data, rows) in [
        ("bomb.jsonl.zst", &bomb, 0),
        ("bomb-after-good.jsonl.zst", &after_good, 3),
    ] {
        let start = Instant::now();
        let (outcomes, ..) = check_both(dir.path(), name, data, name);
        assert_eq!(rows_printed(&outcomes), rows);
        assert_eq!(outcomes.last(), Some(&Outcome::TooLong), "{name}");
        // Stopping at the limit takes no time; decompressing 2 GiB would.
        assert!(start.elapsed() < Duration::from_secs(20), "{name}");
    }
    let path = write(dir.path(), "bomb.jsonl.zst", &bomb);
    let run = csvtool_file(&path);
    assert_eq!(
        run.stderr,
        format!(
            "csvtool: {}:1: line longer than 1048576 bytes\n",
            path.display()
        )
    );
    eprintln!(
        "csvtool on a {} B file of 2 GiB of one line: peak RSS {} KiB, {:?}",
        bomb.len(),
        run.peak_rss_kib,
        run.elapsed
    );
    assert!(run.peak_rss_kib < RSS_LIMIT_KIB, "{}", run.peak_rss_kib);
    // The same through a pipe.
    let run = csvtool(&[], Some(bomb), true);
    assert_eq!(
        run.stderr,
        "csvtool: <stdin>:1: line longer than 1048576 bytes\n"
    );
    assert!(run.peak_rss_kib < RSS_LIMIT_KIB, "{}", run.peak_rss_kib);
}

/// A frame header declaring a window over the reader's limit is refused before the decoder
/// allocates it, after the lines of the frames before; the largest accepted window reads. A
/// 2^27-byte window (zstd's own default limit) over 96 MiB of lines made csvtool's memory grow
/// with the input until the window was full (131 MiB over 300 MiB) before the limit; now it
/// fails at once.
#[test]
fn frames_declaring_huge_windows_are_refused() {
    let Some(fixture) = fixture() else {
        return;
    };
    let dir = scratch();
    let good = joined(&fixture.lines[..3]);
    let first = frame(&good, 21);
    let limit = ArchiveReader::WINDOW_LOG_MAX;
    // Refused: over the limit. Read: up to it (a raw block may not exceed the window: 2^16
    // holds these three lines).
    let refused = [limit + 1, 27, 30, 31].map(|log| (log, true));
    let read = [16, 21, limit].map(|log| (log, false));
    for (window_log, is_refused) in refused.into_iter().chain(read) {
        let archive = [
            first.clone(),
            frame_header(window_log),
            raw_block(&good, true),
        ]
        .concat();
        let (outcomes, ..) = check_both(
            dir.path(),
            "window.jsonl.zst",
            &archive,
            &format!("window 2^{window_log}"),
        );
        if is_refused {
            assert_eq!(rows_printed(&outcomes), 3);
            assert_eq!(
                outcomes.last(),
                Some(&Outcome::Broken(WINDOW_TOO_LARGE.to_owned()))
            );
        } else {
            assert_eq!(rows_printed(&outcomes), 6);
            assert_eq!(outcomes.len(), 6);
        }
    }

    // Lines enough to fill more of a 2^27 window than csvtool may use, in a frame declaring it.
    let lines = joined(&fixture.lines);
    let big = frame(&lines.repeat((96 << 20) / lines.len()), 27);
    let path = write(dir.path(), "window27.jsonl.zst", &big);
    let run = csvtool_file(&path);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!("csvtool: {}:1: {WINDOW_TOO_LARGE}\n", path.display())
    );
    assert!(run.stdout.is_empty());
    assert!(run.peak_rss_kib < RSS_LIMIT_KIB, "{}", run.peak_rss_kib);
}

/// Gigabytes of valid lines stream: the library reads 2 GiB of them (concatenated frames of the
/// fixture's lines in the largest accepted window), and csvtool converts 80 MiB of them (more
/// than it may use), line for line, without its memory growing with the input.
#[test]
fn gigabytes_of_valid_lines_stream_in_bounded_memory() {
    let Some(fixture) = fixture() else {
        return;
    };
    let lines = joined(&fixture.lines);
    // One frame of 16 MiB of whole copies of the fixture (twice the window), repeated.
    let copies = (16 << 20) / lines.len();
    let one = frame(&lines.repeat(copies), ArchiveReader::WINDOW_LOG_MAX);
    let per_frame = (copies * lines.len()) as u64;

    let frames = ((2u64 << 30) / per_frame) as usize + 1;
    let data = one.repeat(frames);
    let start = Instant::now();
    let mut reader = ArchiveReader::from_reader(Cursor::new(data), true, "big.jsonl.zst").unwrap();
    let (mut count, mut bytes) = (0u64, 0u64);
    while let Some(line) = reader.next_line().unwrap() {
        // Every line is one of the fixture's; check one in a hundred thousand decodes.
        if count % 100_000 == 0 {
            ArchivalRecord::from_json(line).unwrap();
        }
        count += 1;
        bytes += line.len() as u64 + 1;
    }
    let want_lines = (frames * copies * fixture.lines.len()) as u64;
    assert_eq!(count, want_lines);
    assert_eq!(bytes, frames as u64 * per_frame);
    assert!(bytes > 2 << 30);
    eprintln!(
        "library: {bytes} bytes, {count} lines in {:?}",
        start.elapsed()
    );

    // csvtool on over 64 MiB (what it may use): a header and a row per line, memory flat.
    let frames = ((64u64 << 20) / per_frame) as usize + 1;
    let dir = scratch();
    let path = write(dir.path(), "big.jsonl.zst", &one.repeat(frames));
    let run = csvtool(&[path.as_os_str()], None, false);
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    assert_eq!(run.stderr, "");
    let fixture_path = common::mlab_fixtures().unwrap().join(FIXTURE);
    let one_csv = csvtool_file(&fixture_path);
    assert_eq!(one_csv.status.code(), Some(0));
    let header = one_csv.stdout.iter().position(|&b| b == b'\n').unwrap() as u64 + 1;
    let rows = one_csv.stdout_len - header;
    assert_eq!(
        run.stdout_len,
        header + rows * (frames * copies) as u64,
        "a header and every row"
    );
    eprintln!(
        "csvtool: {} MiB of lines in {:?}, peak RSS {} KiB",
        (frames as u64 * per_frame) >> 20,
        run.elapsed,
        run.peak_rss_kib
    );
    assert!(run.peak_rss_kib < RSS_LIMIT_KIB, "{}", run.peak_rss_kib);
}
