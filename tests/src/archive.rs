//! Reading the daemon's output tree: file names (SPEC §5.1), strict decoding, and an
//! independent walk over the zstd frames of a file (SPEC §5.3).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use tcp_info::record::{ArchivalRecord, ArchiveReader};
use tcp_info::tcpinfo::TcpInfo;
use tcp_info::wire::attr::INFO;

/// The parts of `YYYY/MM/DD/<prefix>_<%016X cookie>.<%05d seq>.jsonl.zst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveName {
    /// The date directories.
    pub date: (i64, u32, u32),
    /// `<prefix>_<cookie>`.
    pub uuid: String,
    /// The prefix (everything before the last `_`).
    pub prefix: String,
    /// The cookie parsed from the 16 hex digits.
    pub cookie: u64,
    /// The segment number.
    pub seq: u32,
}

/// Parses `path` relative to the output root; errors say what does not follow SPEC §5.1.
pub fn parse_name(root: &Path, path: &Path) -> Result<ArchiveName> {
    let rel = path
        .strip_prefix(root)
        .with_context(|| format!("{} is not under {}", path.display(), root.display()))?;
    let parts: Vec<&str> = rel
        .iter()
        .map(|p| {
            p.to_str()
                .ok_or_else(|| anyhow!("non-UTF-8 path {}", rel.display()))
        })
        .collect::<Result<_>>()?;
    let [y, m, d, file] = parts[..] else {
        bail!("{} is not YYYY/MM/DD/<file>", rel.display());
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    ensure!(
        digits(y, 4) && digits(m, 2) && digits(d, 2),
        "{} does not start with YYYY/MM/DD",
        rel.display()
    );
    let stem = file
        .strip_suffix(".jsonl.zst")
        .ok_or_else(|| anyhow!("{file} does not end in .jsonl.zst"))?;
    let (uuid, seq) = stem
        .rsplit_once('.')
        .ok_or_else(|| anyhow!("{file} has no .<SEQ>"))?;
    ensure!(
        seq.len() >= 5 && seq.bytes().all(|b| b.is_ascii_digit()),
        "{file}: sequence {seq:?} is not at least 5 decimal digits"
    );
    let (prefix, hex) = uuid
        .rsplit_once('_')
        .ok_or_else(|| anyhow!("{file}: UUID {uuid:?} has no _<cookie>"))?;
    ensure!(
        hex.len() == 16
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
        "{file}: cookie {hex:?} is not 16 upper-case hex digits"
    );
    Ok(ArchiveName {
        date: (y.parse()?, m.parse()?, d.parse()?),
        uuid: uuid.to_owned(),
        prefix: prefix.to_owned(),
        cookie: u64::from_str_radix(hex, 16)?,
        seq: seq.parse()?,
    })
}

/// Every regular file under `root`, sorted. Directories are listed in `dirs`.
pub fn walk(root: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == root => {
                return Ok((files, dirs));
            }
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
                stack.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    dirs.sort();
    Ok((files, dirs))
}

/// Every `.jsonl.zst` file under `root` (anything else in the tree is an error).
pub fn archive_files(root: &Path) -> Result<Vec<(PathBuf, ArchiveName)>> {
    walk(root)?
        .0
        .into_iter()
        .map(|p| {
            let name = parse_name(root, &p)?;
            Ok((p, name))
        })
        .collect()
}

/// Decodes every line of `path` with the project's strict reader; any error fails.
pub fn read_records(path: &Path) -> Result<Vec<ArchivalRecord>> {
    let context = || format!("decoding {}", path.display());
    ArchiveReader::open(path)
        .with_context(context)?
        .map(|r| r.with_context(context))
        .collect()
}

/// One decoded file.
#[derive(Debug, Clone)]
pub struct ArchiveFile {
    /// Its path.
    pub path: PathBuf,
    /// Its parsed name.
    pub name: ArchiveName,
    /// Every line, Metadata first.
    pub records: Vec<ArchivalRecord>,
}

impl ArchiveFile {
    /// The snapshot lines (everything after the Metadata line).
    pub fn snapshots(&self) -> &[ArchivalRecord] {
        self.records.get(1..).unwrap_or_default()
    }

    /// The last snapshot line.
    pub fn last(&self) -> Option<&ArchivalRecord> {
        self.snapshots().last()
    }
}

/// Every file of the tree, decoded, grouped by cookie and ordered by sequence number.
pub fn read_tree(root: &Path) -> Result<BTreeMap<u64, Vec<ArchiveFile>>> {
    let mut out: BTreeMap<u64, Vec<ArchiveFile>> = BTreeMap::new();
    for (path, name) in archive_files(root)? {
        let records = read_records(&path)?;
        out.entry(name.cookie).or_default().push(ArchiveFile {
            path,
            name,
            records,
        });
    }
    for files in out.values_mut() {
        files.sort_by_key(|f| f.name.seq);
    }
    Ok(out)
}

/// The decoded `tcp_info` of a snapshot, if it has `INET_DIAG_INFO`.
pub fn tcp_info(record: &ArchivalRecord) -> Option<TcpInfo> {
    record.attribute(usize::from(INFO)).map(TcpInfo::decode)
}

/// What [`check_frames`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSummary {
    /// Number of zstd frames (skippable frames excluded).
    pub frames: usize,
    /// Number of skippable frames.
    pub skippable: usize,
}

/// Walks the zstd frames of `bytes` from the format description (RFC 8878), independently of
/// any decoder: every frame must be complete (last block and checksum present) and none may
/// carry a `Frame_Content_Size` field; nothing may follow the last frame.
pub fn check_frames(bytes: &[u8]) -> Result<FrameSummary> {
    const MAGIC: u32 = 0xFD2F_B528;
    let mut at = 0usize;
    let mut summary = FrameSummary {
        frames: 0,
        skippable: 0,
    };
    let take = |at: usize, n: usize| -> Result<&[u8]> {
        bytes
            .get(at..at + n)
            .ok_or_else(|| anyhow!("truncated at byte {at} (need {n} more of {})", bytes.len()))
    };
    ensure!(!bytes.is_empty(), "empty file");
    while at < bytes.len() {
        let magic = u32::from_le_bytes(take(at, 4)?.try_into()?);
        if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
            let len = u32::from_le_bytes(take(at + 4, 4)?.try_into()?) as usize;
            take(at + 8, len)?;
            at += 8 + len;
            summary.skippable += 1;
            continue;
        }
        ensure!(
            magic == MAGIC,
            "bad magic {magic:#010x} at byte {at} (frame {})",
            summary.frames
        );
        let frame_start = at;
        let descriptor = take(at + 4, 1)?[0];
        at += 5;
        let fcs_flag = descriptor >> 6;
        let single_segment = descriptor & 0x20 != 0;
        let checksum = descriptor & 0x04 != 0;
        let dict_id_len = [0, 1, 2, 4][usize::from(descriptor & 0x03)];
        ensure!(
            fcs_flag == 0 && !single_segment,
            "frame {} at byte {frame_start} carries a Frame_Content_Size field (descriptor {descriptor:#04x})",
            summary.frames
        );
        at += 1 + dict_id_len; // window descriptor + dictionary id
        loop {
            let header = take(at, 3)?;
            let header =
                u32::from(header[0]) | u32::from(header[1]) << 8 | u32::from(header[2]) << 16;
            at += 3;
            let last = header & 1 != 0;
            let block_type = (header >> 1) & 3;
            let size = (header >> 3) as usize;
            let content = match block_type {
                0 | 2 => size,
                1 => 1,
                _ => bail!("reserved block type at byte {}", at - 3),
            };
            take(at, content)?;
            at += content;
            if last {
                break;
            }
        }
        if checksum {
            take(at, 4)?;
            at += 4;
        }
        summary.frames += 1;
    }
    ensure!(summary.frames > 0, "no zstd frame");
    Ok(summary)
}

/// Runs `zstd -t` on `path` if the CLI is installed: `None` when it is not.
pub fn zstd_cli_test(path: &Path) -> Option<Result<()>> {
    let out = match Command::new("zstd").arg("-q").arg("-t").arg(path).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(e).context("running zstd -t")),
    };
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(anyhow!(
            "zstd -t {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    })
}

/// Checks one finished file completely: frames, strict decoding, `zstd -t`, Metadata on line 1
/// only, Sequence and UUID matching the name, StartTime, chronological snapshots with the
/// name's cookie. Returns the records.
pub fn check_finished_file(root: &Path, path: &Path) -> Result<ArchiveFile> {
    let name = parse_name(root, path)?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    check_frames(&bytes).with_context(|| format!("zstd frames of {}", path.display()))?;
    if let Some(result) = zstd_cli_test(path) {
        result?;
    }
    let records = read_records(path)?;
    // The golden ETL check (SPEC §16): m-lab/etl would accept the file and make a row of it.
    let row = tcp_info::etl::check_file(path).with_context(|| "m-lab/etl would drop the file")?;
    ensure!(
        row.lines == records.len() && row.uuid.is_some(),
        "{}: ETL row {row:?} does not match the file",
        path.display()
    );
    let file = ArchiveFile {
        path: path.to_owned(),
        name,
        records,
    };
    check_file_contents(&file)?;
    Ok(file)
}

/// The content rules of SPEC §5.5/§6.3 for one decoded file.
pub fn check_file_contents(file: &ArchiveFile) -> Result<()> {
    let p = file.path.display();
    let first = file
        .records
        .first()
        .ok_or_else(|| anyhow!("{p}: empty file"))?;
    let meta = first
        .metadata
        .as_ref()
        .ok_or_else(|| anyhow!("{p}: line 1 is not a Metadata line"))?;
    ensure!(
        first.timestamp.is_zero(),
        "{p}: Metadata Timestamp is {} (must be the zero time)",
        first.timestamp
    );
    ensure!(
        meta.uuid == file.name.uuid,
        "{p}: Metadata UUID {:?} differs from the file name's {:?}",
        meta.uuid,
        file.name.uuid
    );
    ensure!(
        meta.sequence == i64::from(file.name.seq),
        "{p}: Metadata Sequence {} differs from the file name's {}",
        meta.sequence,
        file.name.seq
    );
    let snaps = file.snapshots();
    ensure!(
        !snaps.is_empty(),
        "{p}: no snapshot after the Metadata line"
    );
    let mut prev = None;
    for (i, r) in snaps.iter().enumerate() {
        let line = i + 2;
        ensure!(r.metadata.is_none(), "{p}:{line}: a second Metadata line");
        ensure!(
            r.raw_idm().len() == 72,
            "{p}:{line}: RawIDM is {} bytes",
            r.raw_idm().len()
        );
        ensure!(
            r.cookie() == Some(file.name.cookie),
            "{p}:{line}: cookie {:?} differs from the file name's {:016X}",
            r.cookie(),
            file.name.cookie
        );
        ensure!(
            r.timestamp.offset_secs() == 0,
            "{p}:{line}: Timestamp {} is not UTC",
            r.timestamp
        );
        if let Some(prev) = prev {
            ensure!(
                r.timestamp.unix_nanos() >= prev,
                "{p}:{line}: Timestamp {} goes backwards",
                r.timestamp
            );
        }
        prev = Some(r.timestamp.unix_nanos());
    }
    if file.name.seq == 0 {
        ensure!(
            meta.start_time == snaps[0].timestamp,
            "{p}: StartTime {} differs from the first record's Timestamp {}",
            meta.start_time,
            snaps[0].timestamp
        );
        ensure!(
            meta.start_time.utc_date() == file.name.date,
            "{p}: segment 0 is not in the UTC date directory of StartTime {}",
            meta.start_time
        );
    }
    Ok(())
}

/// The files of one cookie, decoded, once they are readable; `None` while there are none.
/// Files still being written may end in an incomplete frame; that is reported as an error so
/// that [`crate::wait_for`] retries.
pub fn cookie_files(root: &Path, cookie: u64) -> Result<Option<Vec<ArchiveFile>>> {
    let mut files = Vec::new();
    for (path, name) in archive_files(root)? {
        if name.cookie != cookie {
            continue;
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        check_frames(&bytes).with_context(|| format!("zstd frames of {}", path.display()))?;
        let records = read_records(&path)?;
        files.push(ArchiveFile {
            path,
            name,
            records,
        });
    }
    files.sort_by_key(|f| f.name.seq);
    Ok((!files.is_empty()).then_some(files))
}

/// Waits until the last snapshot of `cookie` satisfies `done` (given its `tcp_info`); returns
/// the cookie's files. On timeout the error shows the last snapshot seen.
pub fn wait_for_last(
    root: &Path,
    cookie: u64,
    timeout: std::time::Duration,
    what: &str,
    mut done: impl FnMut(&ArchivalRecord, Option<&TcpInfo>) -> bool,
) -> Result<Vec<ArchiveFile>> {
    let mut seen = String::from("no file");
    let result = crate::wait_for(timeout, what, || {
        let Some(files) = cookie_files(root, cookie)? else {
            return Ok(None);
        };
        let Some(last) = files.last().and_then(ArchiveFile::last) else {
            "a file without snapshots".clone_into(&mut seen);
            return Ok(None);
        };
        let info = tcp_info(last);
        if done(last, info.as_ref()) {
            return Ok(Some(files));
        }
        seen = match &info {
            Some(i) => format!(
                "last snapshot {} state {} bytes_acked {} bytes_received {} bytes_sent {}",
                last.timestamp, i.state, i.bytes_acked, i.bytes_received, i.bytes_sent
            ),
            None => format!("last snapshot {} without INET_DIAG_INFO", last.timestamp),
        };
        Ok(None)
    });
    result.with_context(|| format!("cookie {cookie:016X} under {}: {seen}", root.display()))
}

#[cfg(test)]
mod tests {
    use super::{FrameSummary, check_frames, parse_name};
    use std::io::Write as _;
    use std::path::Path;

    #[test]
    fn names_follow_spec_5_1() {
        let root = Path::new("/o");
        let n = parse_name(
            root,
            Path::new("/o/2019/04/01/ndt-jdczh_1553815964_00000000000003E8.00185.jsonl.zst"),
        )
        .unwrap();
        assert_eq!(n.date, (2019, 4, 1));
        assert_eq!(n.uuid, "ndt-jdczh_1553815964_00000000000003E8");
        assert_eq!(n.prefix, "ndt-jdczh_1553815964");
        assert_eq!((n.cookie, n.seq), (0x3E8, 185));
        for bad in [
            "/o/2019/04/01/p_00000000000003e8.00000.jsonl.zst",
            "/o/2019/04/01/p_3E8.00000.jsonl.zst",
            "/o/2019/04/01/p_00000000000003E8.0000.jsonl.zst",
            "/o/2019/04/01/p_00000000000003E8.00000.jsonl",
            "/o/2019/4/01/p_00000000000003E8.00000.jsonl.zst",
            "/o/2019/04/p_00000000000003E8.00000.jsonl.zst",
        ] {
            assert!(parse_name(root, Path::new(bad)).is_err(), "{bad}");
        }
    }

    /// A streamed frame: no content size, with a checksum.
    fn streamed(data: &[u8]) -> Vec<u8> {
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.include_checksum(true).unwrap();
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn complete_streamed_frames_pass() {
        let mut two = streamed(b"line 1\n");
        two.extend(streamed(&vec![b'x'; 300_000]));
        assert_eq!(
            check_frames(&two).unwrap(),
            FrameSummary {
                frames: 2,
                skippable: 0
            }
        );
    }

    #[test]
    fn truncated_frames_fail() {
        let mut two = streamed(b"line 1\n");
        two.extend(streamed(&vec![b'x'; 300_000]));
        for cut in [1, 4, 5, 20, two.len() / 2] {
            let short = &two[..two.len() - cut];
            assert!(check_frames(short).is_err(), "cut {cut}");
        }
        assert!(check_frames(&[]).is_err());
    }

    #[test]
    fn a_content_size_field_fails() {
        let one_shot = zstd::bulk::compress(b"line 1\n", 3).unwrap();
        let err = check_frames(&one_shot).unwrap_err();
        assert!(err.to_string().contains("Frame_Content_Size"), "{err}");
    }
}
