//! csvtool: converts one tcp-info archive (JSONL, plain or zstd) to CSV on standard output,
//! one row per input line (SPEC §10). See `csvtool --help`.

use std::ffi::OsString;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use tcp_info::csv;
use tcp_info::record::{ArchiveReader, ZSTD_MAGIC};
use tcp_info::snapshot::Snapshot;

const USAGE: &str = "\
Usage: csvtool [FILE]

Converts one tcp-info archive to CSV on standard output: a header row, then one row per
input line, the Metadata line included (its Timestamp is the placeholder
2009-05-29T23:59:59Z, Observed, NotFullyParsed, TOS, TClass, ClassID, Shutdown, Protocol
and Mark are 0, and its other cells are empty).

  FILE     an archive; decompressed if its name ends in .zst.
  (none)   read JSONL from standard input; zstd input is detected by its magic number.
  -        the same as no argument.
  -h, --help  show this help.

Columns are upstream's 105 (m-lab/tcp-info csvtool), with the same names and formatting;
every cell equals upstream's except in three columns that follow corrected decoding
(SPEC §12 D6):
  IDM.SockID.Interface  idiag_if in host order (upstream reads it big-endian, so
                        interface 2 printed as 33554432).
  ClassID               the full 32-bit class id (upstream keeps only its first byte, so
                        the cells differ only for a class id above 255).
  TCP.WScale            <snd_wscale>/<rcv_wscale>, e.g. 7/9 (upstream prints the raw
                        byte holding both nibbles, e.g. 151).
As upstream: PacingRate, MaxPacingRate, BytesAcked, BytesReceived, DeliveryRate, BusyTime,
RWndLimited, SndBufLimited, BytesSent, BytesRetrans and BBR.BW are signed 64-bit (an
unlimited pacing rate prints -1), SegsOut and SegsIn signed 32-bit; TCP.AppLimited is the
raw byte (bit 0 delivery_rate_app_limited, bits 1-2 fastopen_client_fail); tcp_info columns stop
at SndWnd, and fields a shorter tcp_info lacks print 0; absent parts print empty cells.

Limits, against hostile input: a line holds at most 1 MiB (1048576 bytes), and a zstd frame
may need at most an 8 MiB window (what zstd -19 and lower levels use; not --long or --ultra).

Exit status: 0 on success; 1 on bad arguments or input (the message names the file and
line). Rows already written stay written.";

/// What went wrong, as printed on standard error.
enum Failure {
    /// A usage or input problem, with its message.
    Message(String),
    /// Standard output is closed (e.g. piped to `head`): stop quietly.
    BrokenPipe,
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Self::BrokenPipe
        } else {
            Self::Message(format!("writing standard output: {e}"))
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match run(&args) {
        Ok(()) | Err(Failure::BrokenPipe) => ExitCode::SUCCESS,
        Err(Failure::Message(msg)) => {
            // Nothing more can be done if standard error is gone too.
            let _ = writeln!(io::stderr(), "csvtool: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[OsString]) -> Result<(), Failure> {
    let reader = match args {
        [] => stdin_reader()?,
        [flag] if flag == "-h" || flag == "--help" => {
            let mut out = io::stdout().lock();
            writeln!(out, "{USAGE}")?;
            out.flush()?;
            return Ok(());
        }
        [path] if path == "-" => stdin_reader()?,
        [path] => {
            ArchiveReader::open(Path::new(path)).map_err(|e| Failure::Message(e.to_string()))?
        }
        _ => {
            return Err(Failure::Message(
                "Too many command-line arguments.".to_owned(),
            ));
        }
    };
    convert(reader)
}

/// Standard input, zstd-decoded when it starts with the zstd frame magic.
fn stdin_reader() -> Result<ArchiveReader, Failure> {
    let mut stdin = io::stdin();
    let mut head = Vec::with_capacity(4);
    // A pipe may deliver fewer than 4 bytes per read; stop early at EOF.
    (&mut stdin)
        .take(4)
        .read_to_end(&mut head)
        .map_err(|e| Failure::Message(format!("<stdin>: read failed: {e}")))?;
    let compressed = head == ZSTD_MAGIC;
    let input = io::Cursor::new(head).chain(stdin);
    ArchiveReader::from_reader(input, compressed, "<stdin>")
        .map_err(|e| Failure::Message(e.to_string()))
}

/// Streams records to CSV rows: one line buffer, rows written as they are read.
fn convert(reader: ArchiveReader) -> Result<(), Failure> {
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let result = write_rows(reader, &mut out);
    // Rows converted before an input error are still delivered.
    let flushed = out.flush();
    result?;
    Ok(flushed?)
}

fn write_rows(mut reader: ArchiveReader, out: &mut impl Write) -> Result<(), Failure> {
    let mut line = String::with_capacity(2048);
    let mut rows = 0u64;
    while let Some(record) = reader.next() {
        let record = record.map_err(|e| Failure::Message(e.to_string()))?;
        let snap = Snapshot::decode(&record).map_err(|e| {
            Failure::Message(format!(
                "{}:{}: {e}",
                reader.source_name(),
                reader.line_number()
            ))
        })?;
        line.clear();
        if rows == 0 {
            csv::write_header(&mut line);
        }
        csv::write_row(&mut line, &snap);
        out.write_all(line.as_bytes())?;
        rows += 1;
    }
    if rows == 0 {
        return Err(Failure::Message(format!(
            "{}:1: no records: the input is empty",
            reader.source_name()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_documents_the_corrected_columns() {
        for needle in [
            "IDM.SockID.Interface",
            "ClassID",
            "TCP.WScale",
            "2009-05-29T23:59:59Z",
        ] {
            assert!(USAGE.contains(needle), "{needle}");
        }
    }

    #[test]
    fn usage_states_the_reader_limits() {
        let line = format!("{} bytes", ArchiveReader::MAX_LINE_LEN);
        let window = format!(
            "{} MiB window",
            (1u64 << ArchiveReader::WINDOW_LOG_MAX) >> 20
        );
        assert!(USAGE.contains(&line), "{line}");
        assert!(USAGE.contains(&window), "{window}");
    }

    #[test]
    fn too_many_arguments() {
        let args = [OsString::from("a"), OsString::from("b")];
        match run(&args) {
            Err(Failure::Message(m)) => assert_eq!(m, "Too many command-line arguments."),
            _ => panic!("expected an error"),
        }
    }
}
