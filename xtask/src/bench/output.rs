//! What a collector wrote: files, compressed bytes and (decompressed) lines.

use std::io::{BufRead as _, BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Totals over an output directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputStats {
    /// Regular files.
    pub files: u64,
    /// Bytes on disk (compressed where the collector compresses).
    pub bytes: u64,
    /// Lines after decompression (`.zst` files are decoded; a corrupt tail is not counted).
    pub lines: u64,
}

/// Walks `dir` recursively.
pub fn scan_output(dir: &Path) -> OutputStats {
    let mut s = OutputStats::default();
    walk(dir, &mut s);
    s
}

fn walk(dir: &Path, s: &mut OutputStats) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&p, s),
            Ok(t) if t.is_file() => {
                s.files += 1;
                s.bytes += e.metadata().map_or(0, |m| m.len());
                s.lines += count_lines(&p);
            }
            _ => {}
        }
    }
}

#[expect(
    clippy::naive_bytecount,
    reason = "not worth a dependency in a benchmark helper"
)]
fn count_lines(p: &Path) -> u64 {
    let Ok(f) = std::fs::File::open(p) else {
        return 0;
    };
    let zst = p.extension().is_some_and(|e| e == "zst");
    let input: Box<dyn Read> = if zst {
        match zstd::stream::read::Decoder::new(f) {
            Ok(d) => Box::new(d),
            Err(_) => return 0,
        }
    } else {
        Box::new(f)
    };
    let mut r = BufReader::with_capacity(64 * 1024, input);
    let mut n = 0;
    loop {
        let (consumed, newlines) = match r.fill_buf() {
            Ok([]) | Err(_) => return n,
            Ok(buf) => (
                buf.len(),
                buf.iter().filter(|&&b| b == b'\n').count() as u64,
            ),
        };
        n += newlines;
        r.consume(consumed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_plain_and_compressed_lines() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("2026/01/02");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("a.jsonl"), b"1\n2\n3\n").unwrap();
        let z = zstd::encode_all(&b"x\ny\n"[..], 3).unwrap();
        std::fs::write(sub.join("b.jsonl.zst"), &z).unwrap();
        std::fs::write(dir.path().join("c.zst"), b"garbage").unwrap();
        let s = scan_output(dir.path());
        assert_eq!(s.files, 3);
        assert_eq!(s.lines, 5);
        assert_eq!(s.bytes, 6 + z.len() as u64 + 7);
        assert_eq!(
            scan_output(&dir.path().join("missing")),
            OutputStats::default()
        );
    }
}
