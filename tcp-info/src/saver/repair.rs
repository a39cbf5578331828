//! Crash repair (SPEC §5.3 "Completeness", §12 D11).
//!
//! The saver appends only complete zstd frames, each holding whole lines, so a running file is
//! valid up to its last flush. The one thing a crash (or power loss) can leave behind is a
//! partially written last frame, which gozstd silently drops but strict readers (the `zstd` CLI,
//! this crate's reader) reject, or a file created less than a flush interval before the crash
//! that never received a frame. [`repair_tree`] cuts every archive back to its last complete,
//! checksum-verified frame and removes files with none.
//!
//! Run it at start-up, **before** the saver opens files, and only on this daemon's own prefix.
//! The previous process's descriptors were closed when it died, so m-lab/pusher may already have
//! uploaded (and deleted) a damaged file; repair fixes what is still there for the next upload
//! or for other readers.

use super::SaveError;
use super::tree;
use crate::uuid::Prefix;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// What [`repair_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// Every byte belongs to a complete frame.
    Intact,
    /// This many trailing bytes (an incomplete or corrupt frame and anything after it) were cut.
    Truncated(u64),
    /// The file held no complete frame and was removed.
    Removed,
}

/// The outcome of [`repair_tree`].
#[derive(Debug, Default)]
pub struct RepairReport {
    /// Archives examined.
    pub checked: usize,
    /// Archives cut back to their last complete frame.
    pub truncated: Vec<PathBuf>,
    /// Archives removed because they held no complete frame.
    pub removed: Vec<PathBuf>,
    /// Bytes cut off in total.
    pub bytes_cut: u64,
    /// Archives that could not be examined or repaired.
    pub failures: Vec<(PathBuf, io::Error)>,
}

/// Length of the leading run of complete zstd frames of `data` whose contents decode and match
/// their checksums.
pub fn complete_frames_len(data: &[u8]) -> usize {
    let mut end = 0;
    while end < data.len() {
        let rest = &data[end..];
        let Ok(size) = zstd::zstd_safe::find_frame_compressed_size(rest) else {
            break;
        };
        // The files are crash leftovers: never trust a size to lie within them.
        match rest.get(..size) {
            Some(frame) if size > 0 && frame_decodes(frame) => end += size,
            _ => break,
        }
    }
    end
}

fn frame_decodes(frame: &[u8]) -> bool {
    let decoded = zstd::stream::read::Decoder::with_buffer(frame)
        .map(zstd::stream::read::Decoder::single_frame)
        .and_then(|mut decoder| io::copy(&mut decoder, &mut io::sink()));
    decoded.is_ok()
}

/// Cuts one archive back to its last complete frame, or removes it if it has none.
pub fn repair_file(path: &Path) -> io::Result<Repair> {
    let data = fs::read(path)?;
    let good = complete_frames_len(&data);
    if good == 0 {
        fs::remove_file(path)?;
        return Ok(Repair::Removed);
    }
    if good == data.len() {
        return Ok(Repair::Intact);
    }
    OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(good as u64)?;
    Ok(Repair::Truncated((data.len() - good) as u64))
}

/// Repairs every archive named with `prefix` under `<root>/YYYY/MM/DD/`.
pub fn repair_tree(root: &Path, prefix: &Prefix) -> Result<RepairReport, SaveError> {
    let archives = tree::list(root, prefix.as_str()).map_err(|source| SaveError::Scan {
        path: root.to_owned(),
        source,
    })?;
    let mut report = RepairReport::default();
    for archive in archives {
        report.checked += 1;
        match repair_file(&archive.path) {
            Ok(Repair::Intact) => {}
            Ok(Repair::Truncated(cut)) => {
                tracing::warn!(path = %archive.path.display(), bytes = cut, "cut off an incomplete zstd frame");
                report.bytes_cut += cut;
                report.truncated.push(archive.path);
            }
            Ok(Repair::Removed) => {
                tracing::warn!(path = %archive.path.display(), "removed an archive without a complete zstd frame");
                report.removed.push(archive.path);
            }
            // Deleted meanwhile (by the pusher): nothing left to repair.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => report.failures.push((archive.path, e)),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{DEFAULT_LEVEL, FrameCompressor};
    use crate::saver::testutil::TempTree;

    fn frames(parts: &[&[u8]]) -> (Vec<u8>, Vec<usize>) {
        let mut zstd = FrameCompressor::new(DEFAULT_LEVEL).unwrap();
        let mut out = Vec::new();
        let mut ends = Vec::new();
        for part in parts {
            out.extend_from_slice(zstd.compress_frame(part).unwrap());
            ends.push(out.len());
        }
        (out, ends)
    }

    #[test]
    fn complete_prefix_stops_at_a_torn_or_corrupt_frame() {
        let (data, ends) = frames(&[b"{\"a\":1}\n", b"{\"a\":2}\n{\"a\":3}\n"]);
        assert_eq!(complete_frames_len(&data), data.len());
        assert_eq!(complete_frames_len(&[]), 0);
        // Every cut inside the second frame leaves exactly the first.
        for cut in ends[0]..ends[1] {
            assert_eq!(complete_frames_len(&data[..cut]), ends[0], "cut at {cut}");
        }
        // A flipped checksum byte makes the last frame invalid.
        let mut bad = data.clone();
        *bad.last_mut().unwrap() ^= 0xFF;
        assert_eq!(complete_frames_len(&bad), ends[0]);
        assert_eq!(complete_frames_len(b"not zstd at all"), 0);
    }

    #[test]
    fn repairs_a_tree_in_place() {
        let tree = TempTree::new("repair-tree");
        let day = tree.path().join("2021/02/03");
        fs::create_dir_all(&day).unwrap();
        let (data, ends) = frames(&[b"{\"a\":1}\n", b"{\"a\":2}\n"]);
        let name = |c: u32| day.join(format!("p_{c:016X}.00000.jsonl.zst"));
        fs::write(name(1), &data).unwrap();
        fs::write(name(2), &data[..ends[1] - 3]).unwrap();
        fs::write(name(3), &data[..ends[0] - 1]).unwrap();
        fs::write(name(4), b"").unwrap();
        let foreign = day.join("q_0000000000000005.00000.jsonl.zst");
        fs::write(&foreign, b"torn").unwrap();
        let prefix = Prefix::from_bytes(b"p".to_vec()).unwrap();

        let report = repair_tree(tree.path(), &prefix).unwrap();
        assert_eq!(report.checked, 4);
        assert_eq!(report.truncated, vec![name(2)]);
        assert_eq!(report.bytes_cut, (ends[1] - 3 - ends[0]) as u64);
        let mut removed = report.removed.clone();
        removed.sort();
        assert_eq!(removed, vec![name(3), name(4)]);
        assert!(report.failures.is_empty());
        assert_eq!(fs::read(name(1)).unwrap(), data);
        assert_eq!(fs::read(name(2)).unwrap(), &data[..ends[0]]);
        assert!(!name(3).exists() && !name(4).exists());
        assert_eq!(fs::read(&foreign).unwrap(), b"torn");
        // Idempotent.
        let again = repair_tree(tree.path(), &prefix).unwrap();
        assert_eq!(
            (again.checked, again.truncated.len(), again.removed.len()),
            (2, 0, 0)
        );
    }
}
