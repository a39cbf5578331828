//! End-to-end tests of the `csvtool` binary (SPEC §10, §16 csvtool row): arguments, the
//! fixture conversion, standard input (plain and zstd), and corrupt inputs.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failed spawn or temp-file write should fail the test where it happens"
)]

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const CSVTOOL: &str = env!("CARGO_BIN_EXE_csvtool");
const NDT_JDCZH: &str = "ndt-jdczh_1553815964_00000000000003E8.00185.jsonl.zst";
const NDT_7HHHV: &str = "ndt-7hhhv_1559749627_0000000000062D84.00000.jsonl.zst";

/// A scratch directory removed on drop, unique per test process and call.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("csvtool-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(CSVTOOL).args(args).output().unwrap()
}

/// Runs csvtool with `input` on standard input (written from a thread, so a full stdout pipe
/// cannot deadlock the test).
fn run_stdin(args: &[&str], input: Vec<u8>) -> Output {
    let mut child = Command::new(CSVTOOL)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // The tool may stop reading early on bad input; a broken pipe here is fine.
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn stdout(out: &Output) -> &str {
    std::str::from_utf8(&out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failure that is a clean error exit: status 1, not a panic (101) or a signal.
fn assert_clean_failure(out: &Output) {
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(out));
    let err = stderr(out);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.starts_with("csvtool: "), "{err}");
}

/// The error names `path` followed by `:<line>:`.
fn assert_names_file_and_line(out: &Output, path: &Path) {
    assert_clean_failure(out);
    let err = stderr(out);
    let prefix = format!("csvtool: {}:", path.display());
    let rest = err
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("no file name in {err:?}"));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    assert!(!digits.is_empty(), "no line number in {err:?}");
    assert!(rest[digits.len()..].starts_with(": "), "{err:?}");
}

fn rows(csv: &str) -> Vec<Vec<&str>> {
    csv.lines().map(|l| l.split(',').collect()).collect()
}

#[test]
fn more_than_one_argument_is_an_error() {
    let out = run(&["a.jsonl", "b.jsonl"]);
    assert_clean_failure(&out);
    assert!(stderr(&out).contains("Too many command-line arguments."));
    assert!(out.stdout.is_empty());
}

#[test]
fn help_goes_to_stdout() {
    for flag in ["--help", "-h"] {
        let out = run(&[flag]);
        assert_eq!(out.status.code(), Some(0));
        let text = stdout(&out);
        assert!(text.starts_with("Usage: csvtool"), "{text}");
        assert!(text.contains("IDM.SockID.Interface") && text.contains("TCP.WScale"));
    }
}

#[test]
fn ndt_jdczh_to_csv() {
    let Some(dir) = common::mlab_fixtures() else {
        return;
    };
    let path = dir.join(NDT_JDCZH);
    let out = run(&[path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let csv = stdout(&out);
    assert!(!csv.contains('"'), "no cell of this fixture needs quoting");
    let rows = rows(csv);
    assert_eq!(rows.len(), 152, "header + 151 rows");
    assert!(rows.iter().all(|r| r.len() == 105));

    let header = &rows[0];
    assert_eq!(header[3], "IDM.Family");
    assert_eq!(header[7], "IDM.SockID.SPort");
    assert_eq!(header[12], "IDM.SockID.Cookie");
    assert_eq!(header[60], "TCP.BytesReceived");
    assert_eq!(header[73], "TCP.BytesSent");

    let meta = &rows[1];
    assert_eq!(meta[0], "2009-05-29T23:59:59Z");
    for (i, cell) in meta.iter().enumerate().skip(1) {
        let want = if [1, 2, 19, 20, 21, 22, 23, 24].contains(&i) {
            "0"
        } else {
            ""
        };
        assert_eq!(*cell, want, "Metadata cell {i} ({})", header[i]);
    }

    let first = &rows[2];
    assert_eq!(first[7], "9091");
    assert_eq!(first[9], "192.168.14.134");
    assert_eq!(first[10], "192.168.14.129");
    assert_eq!(first[12], "3E8");
    assert_eq!(first[1], "251");
    assert_eq!(first[2], "0", "NotFullyParsed is printed when 0");
    assert_eq!(first[3], "10");
    // The time cell is the line's RFC 3339 Timestamp, as written in the JSON.
    let json = common::decompress(&path);
    let line2 = json.split(|&b| b == b'\n').nth(1).unwrap();
    let line2 = std::str::from_utf8(line2).unwrap();
    let ts = line2
        .strip_prefix("{\"Timestamp\":\"")
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    assert_eq!(first[0], ts);

    let last = rows.last().unwrap();
    assert_eq!((last[60], last[73]), ("374061", "4988158"));
}

/// Upstream csvtool's own output for each fixture (`*.csvtool.csv` beside it), compared cell by
/// cell with ours. Only the corrected D6 columns may differ, and where they do, upstream's cell
/// must be exactly what its buggy decoding makes of our value.
#[test]
fn matches_upstream_csvtool_cell_by_cell() {
    let Some(dir) = common::mlab_fixtures() else {
        return;
    };
    let mut compared = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let Some(stem) = name.strip_suffix(".csvtool.csv") else {
            continue;
        };
        let archive = dir.join(format!("{stem}.jsonl.zst"));
        let out = run(&[archive.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        let upstream = std::fs::read_to_string(&path).unwrap();
        let (ours, theirs) = (rows(stdout(&out)), rows(&upstream));
        assert_eq!(ours.len(), theirs.len(), "{name}: row count");
        assert_eq!(ours[0], theirs[0], "{name}: header");
        let header = &theirs[0];
        let mut differing = 0;
        for (row, (a, b)) in ours.iter().zip(&theirs).enumerate().skip(1) {
            assert_eq!(a.len(), b.len(), "{name} row {row}: cell count");
            for (col, (x, y)) in a.iter().zip(b).enumerate() {
                if x == y {
                    continue;
                }
                differing += 1;
                let column = header[col];
                let explained = match column {
                    "IDM.SockID.Interface" => {
                        x.parse::<u32>().map(u32::swap_bytes).ok() == y.parse().ok()
                    }
                    "ClassID" => x.parse::<u32>().map(|v| v & 0xff).ok() == y.parse().ok(),
                    "TCP.WScale" => x.split_once('/').is_some_and(|(snd, rcv)| {
                        let (snd, rcv) = (snd.parse::<u32>().unwrap(), rcv.parse::<u32>().unwrap());
                        y.parse::<u32>().ok() == Some(snd | rcv << 4)
                    }),
                    _ => false,
                };
                assert!(
                    explained,
                    "{name} row {row} column {column}: ours {x:?}, upstream {y:?}"
                );
            }
        }
        // The fixtures do exercise a D6 column (WScale differs on every snapshot row).
        assert!(
            differing >= ours.len() - 2,
            "{name}: {differing} differing cells"
        );
        compared += 1;
    }
    assert!(
        compared >= 2,
        "expected the two upstream csvtool outputs, found {compared}"
    );
}

#[test]
fn stdin_plain_zstd_and_dash_match_the_file() {
    let Some(dir) = common::mlab_fixtures() else {
        return;
    };
    let path = dir.join(NDT_JDCZH);
    let from_file = run(&[path.to_str().unwrap()]);
    assert_eq!(from_file.status.code(), Some(0));

    let plain = run_stdin(&[], common::decompress(&path));
    assert_eq!(plain.status.code(), Some(0), "{}", stderr(&plain));
    assert_eq!(plain.stdout, from_file.stdout);

    let compressed = std::fs::read(&path).unwrap();
    let zst = run_stdin(&[], compressed.clone());
    assert_eq!(zst.status.code(), Some(0), "{}", stderr(&zst));
    assert_eq!(zst.stdout, from_file.stdout);

    let dash = run_stdin(&["-"], compressed);
    assert_eq!(dash.status.code(), Some(0), "{}", stderr(&dash));
    assert_eq!(dash.stdout, from_file.stdout);

    // An uncompressed file given by name.
    let tmp = TempDir::new();
    let plain_file = tmp.file("x.jsonl", &common::decompress(&path));
    let named = run(&[plain_file.to_str().unwrap()]);
    assert_eq!(named.stdout, from_file.stdout);
}

#[test]
fn corrupt_inputs_fail_cleanly_naming_file_and_line() {
    let tmp = TempDir::new();
    let good = b"{\"Timestamp\":\"2019-04-01T07:42:37.371Z\",\"Attributes\":[null]}\n".repeat(3);
    // The time-wait record of SPEC §5.7: valid, with RawIDM.
    let valid: &[u8] = b"{\"Timestamp\":\"2019-08-26T20:02:17.654076251-04:00\",\"RawIDM\":\"AgUDAITiAbtkZew0AAAAAAAAAAAAAAAA2O8gKQAAAAAAAAAAAAAAAAAAAAByojUBAAAAAFTqAAAAAAAAAAAAAAAAAAAAAAAA\",\"Attributes\":[null]}\n";

    let bad_json = tmp.file("bad-json.jsonl", &[valid, b"{\"Times\n"].concat());
    let bad_b64 = tmp.file(
        "bad-b64.jsonl",
        b"{\"Timestamp\":\"0001-01-01T00:00:00Z\",\"RawIDM\":\"!!!!\"}\n",
    );
    let garbage = tmp.file("garbage.jsonl", &[0xFF, 0x00, 0x13, 0x37, b'\n', 0xC3]);
    let garbage_zst = tmp.file("garbage.jsonl.zst", b"this is not zstd at all\n");
    let empty = tmp.file("empty.jsonl", b"");
    let empty_zst = tmp.file("empty.jsonl.zst", b"");
    // A line that is valid JSON but has neither RawIDM nor Metadata (upstream: ErrEmptyRecord).
    let no_idm = tmp.file("no-idm.jsonl", &good);
    let short_idm = tmp.file(
        "short-idm.jsonl",
        b"{\"Timestamp\":\"0001-01-01T00:00:00Z\",\"RawIDM\":\"AAAA\"}\n",
    );
    // Two frames, the second cut short: the first decodes, then the stream breaks.
    let whole_frame = zstd::encode_all(&valid.repeat(100)[..], 3).unwrap();
    let compressed = zstd::encode_all(&valid.repeat(2000)[..], 3).unwrap();
    let truncated = tmp.file(
        "truncated.jsonl.zst",
        &[&whole_frame[..], &compressed[..compressed.len() - 8]].concat(),
    );

    for path in [
        &bad_json,
        &bad_b64,
        &garbage,
        &garbage_zst,
        &empty,
        &empty_zst,
        &no_idm,
        &short_idm,
        &truncated,
    ] {
        let out = run(&[path.to_str().unwrap()]);
        assert_names_file_and_line(&out, path);
    }
    assert!(stderr(&run(&[empty.to_str().unwrap()])).contains("empty"));
    assert!(stderr(&run(&[short_idm.to_str().unwrap()])).contains("RawIDM"));

    // The bad JSON is on line 2; line 1 was already converted (streaming).
    let out = run(&[bad_json.to_str().unwrap()]);
    assert!(
        stderr(&out).starts_with(&format!("csvtool: {}:2: ", bad_json.display())),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out).lines().count(), 2, "header + line 1");

    // The truncated stream converts what it decoded, then fails.
    let out = run(&[truncated.to_str().unwrap()]);
    assert!(
        stdout(&out).lines().count() > 100,
        "header + the first frame"
    );

    let missing = tmp.0.join("missing.jsonl.zst");
    let out = run(&[missing.to_str().unwrap()]);
    assert_clean_failure(&out);
    assert!(stderr(&out).contains(missing.to_str().unwrap()));

    // Standard input: corrupt zstd and garbage.
    let out = run_stdin(&[], compressed[..compressed.len() / 2].to_vec());
    assert_clean_failure(&out);
    assert!(
        stderr(&out).starts_with("csvtool: <stdin>:"),
        "{}",
        stderr(&out)
    );
    let out = run_stdin(&[], vec![0x28, 0xB5, 0x2F]);
    assert_clean_failure(&out);
    let out = run_stdin(&[], Vec::new());
    assert_clean_failure(&out);
    assert!(stderr(&out).contains("empty"));
}

#[test]
fn closed_stdout_exits_quietly() {
    let Some(dir) = common::mlab_fixtures() else {
        return;
    };
    let mut child = Command::new(CSVTOOL)
        .arg(dir.join(NDT_7HHHV))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one chunk, then close the pipe while the tool still has most of ~0.5 MB to write.
    let mut first = [0u8; 16];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    assert_eq!(&first, b"Timestamp,Observ");
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}
