//! Archive paths (SPEC §5.1): `<root>/YYYY/MM/DD/<prefix>_<%016X cookie>.<%05d seq>.jsonl.zst`,
//! and exclusive creation that never reuses an existing name (SPEC §12 D1).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The suffix m-lab/etl selects archives by (SPEC §11.1).
pub const SUFFIX: &str = ".jsonl.zst";
/// Taken names skipped before giving up on one open: an existing tree never holds more
/// segments of one connection than this, so hitting it means something else is wrong.
const MAX_SKIPPED_NAMES: u32 = 10_000;

/// `<uuid>.<seq, at least 5 digits>.jsonl.zst`.
pub fn file_name(uuid: &str, sequence: u32) -> String {
    format!("{uuid}.{sequence:05}{SUFFIX}")
}

/// `<root>/YYYY/MM/DD` for a UTC calendar date.
pub fn date_dir(root: &Path, (year, month, day): (i64, u32, u32)) -> PathBuf {
    root.join(format!("{year:04}"))
        .join(format!("{month:02}"))
        .join(format!("{day:02}"))
}

/// The cookie and sequence number of an archive name written with `prefix`, or `None` for any
/// other file.
pub fn parse_file_name(name: &str, prefix: &str) -> Option<(u64, u32)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (uuid, seq) = stem.rsplit_once('.')?;
    if seq.len() < 5 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sequence = seq.parse().ok()?;
    let hex = uuid.strip_prefix(prefix)?.strip_prefix('_')?;
    let upper_hex = |b: u8| b.is_ascii_digit() || (b'A'..=b'F').contains(&b);
    if hex.len() != 16 || !hex.bytes().all(upper_hex) {
        return None;
    }
    Some((u64::from_str_radix(hex, 16).ok()?, sequence))
}

/// A newly created, empty archive file.
#[derive(Debug)]
pub struct Created {
    /// Open for writing.
    pub file: File,
    /// Where it is.
    pub path: PathBuf,
    /// Its sequence number (the first free one at or after the requested one).
    pub sequence: u32,
}

/// Mode of archive files: written by the daemon, readable by everyone (uploaders such as
/// m-lab/pusher usually run as another user).
pub const FILE_MODE: u32 = 0o644;
/// Mode of the date directories.
pub const DIR_MODE: u32 = 0o755;

/// A failed creation: the path tried and the error.
#[derive(Debug)]
pub struct CreateError {
    /// The file or directory that could not be created.
    pub path: PathBuf,
    /// The underlying error.
    pub source: io::Error,
}

/// Creates `<dir>/<uuid>.<seq>.jsonl.zst` with `O_EXCL` for the first `seq ≥ first` whose name is
/// free, creating `dir` (mode [`DIR_MODE`] minus the umask) when missing. Files get [`FILE_MODE`]
/// minus the umask; the daemon sets its umask to 022, so that is exactly what they get.
/// An existing file is never opened, truncated or replaced.
pub fn create_exclusive(dir: &Path, uuid: &str, first: u32) -> Result<Created, CreateError> {
    let mut sequence = first;
    let mut made_dir = false;
    let mut skipped = 0;
    loop {
        let path = dir.join(file_name(uuid, sequence));
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path);
        match opened {
            Ok(file) => {
                return Ok(Created {
                    file,
                    path,
                    sequence,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && skipped < MAX_SKIPPED_NAMES => {
                skipped += 1;
                sequence = sequence.checked_add(1).ok_or_else(|| CreateError {
                    path: path.clone(),
                    source: io::Error::other("sequence numbers exhausted"),
                })?;
            }
            // The date directory is created on demand, and again if something removed it.
            Err(e) if e.kind() == io::ErrorKind::NotFound && !made_dir => {
                DirBuilder::new()
                    .recursive(true)
                    .mode(DIR_MODE)
                    .create(dir)
                    .map_err(|source| CreateError {
                        path: dir.to_owned(),
                        source,
                    })?;
                made_dir = true;
            }
            Err(source) => return Err(CreateError { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saver::testutil::TempTree;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn names_follow_upstream_format() {
        assert_eq!(
            file_name("ndt-jdczh_1553815964_00000000000003E8", 185),
            "ndt-jdczh_1553815964_00000000000003E8.00185.jsonl.zst"
        );
        assert_eq!(
            file_name("p_0000000000000001", 123_456),
            "p_0000000000000001.123456.jsonl.zst"
        );
        assert_eq!(
            date_dir(Path::new("."), (2019, 4, 1)),
            PathBuf::from("./2019/04/01")
        );
    }

    #[test]
    fn parses_only_names_with_our_prefix() {
        let p = "host_1553815964";
        assert_eq!(
            parse_file_name("host_1553815964_00000000000003E8.00185.jsonl.zst", p),
            Some((0x3E8, 185))
        );
        assert_eq!(
            parse_file_name("host_1553815964_FFFFFFFFFFFFFFFF.123456.jsonl.zst", p),
            Some((u64::MAX, 123_456))
        );
        for other in [
            "other_1_00000000000003E8.00185.jsonl.zst",
            "host_1553815964_00000000000003e8.00185.jsonl.zst",
            "host_1553815964_3E8.00185.jsonl.zst",
            "host_1553815964_00000000000003E8.0185.jsonl.zst",
            "host_1553815964_00000000000003E8.00185.jsonl",
            "host_1553815964_00000000000003E8.0018x.jsonl.zst",
            "host_1553815964x00000000000003E8.00185.jsonl.zst",
            ".host_1553815964_00000000000003E8.00185.jsonl.zst",
        ] {
            assert_eq!(parse_file_name(other, p), None, "{other}");
        }
    }

    #[test]
    fn creates_dirs_and_skips_taken_names_without_touching_them() {
        let tree = TempTree::new("paths-skip");
        let dir = tree.path().join("2020/01/02");
        let first = create_exclusive(&dir, "u_0000000000000001", 0).unwrap();
        assert_eq!(first.sequence, 0);
        assert_eq!(first.path, dir.join("u_0000000000000001.00000.jsonl.zst"));
        std::fs::write(&first.path, b"keep").unwrap();
        let second = create_exclusive(&dir, "u_0000000000000001", 0).unwrap();
        assert_eq!(second.sequence, 1);
        assert_eq!(std::fs::read(&first.path).unwrap(), b"keep");
        assert_eq!(std::fs::metadata(&second.path).unwrap().len(), 0);
    }

    #[test]
    fn modes_are_0755_and_0644_minus_umask() {
        let tree = TempTree::new("paths-mode");
        let dir = tree.path().join("2020/01/02");
        let created = create_exclusive(&dir, "u_0000000000000002", 3).unwrap();
        let umask = current_umask();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&created.path), 0o644 & !umask);
        assert_eq!(mode(&dir), 0o755 & !umask);
        assert_eq!(mode(&tree.path().join("2020")), 0o755 & !umask);
    }

    #[test]
    fn reports_the_path_that_failed() {
        let tree = TempTree::new("paths-fail");
        let blocker = tree.path().join("2020");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let err = create_exclusive(&blocker.join("01/02"), "u_0000000000000003", 0).unwrap_err();
        assert!(err.path.starts_with(&blocker), "{}", err.path.display());
    }

    /// The umask, read from `/proc/self/status` (reading it with umask(2) would change it for
    /// every thread while other tests run).
    fn current_umask() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
    }
}
