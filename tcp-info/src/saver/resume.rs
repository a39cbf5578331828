//! Start-up scan of an existing archive tree, so that a restarted daemon continues each
//! connection's sequence instead of reusing its names, in any date directory (SPEC §12 D1).
//!
//! Only names are listed, plus the first line of one file per connection to recover its
//! `StartTime`. The pusher deletes uploaded files, so the tree is normally small.

use super::tree;
use crate::record::{ArchiveReader, Timestamp};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

/// What the tree says about a connection archived before the restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// One past the highest sequence number found.
    pub next_sequence: u32,
    /// `Metadata.StartTime` of the newest segment, if it could be read.
    pub start_time: Option<Timestamp>,
}

/// The connections archived under `root` with `prefix`, by cookie.
pub fn scan(root: &Path, prefix: &str) -> io::Result<HashMap<u64, Resume>> {
    let mut newest: HashMap<u64, (u32, PathBuf)> = HashMap::new();
    for archive in tree::list(root, prefix)? {
        let slot = newest
            .entry(archive.cookie)
            .or_insert((archive.sequence, PathBuf::new()));
        if archive.sequence >= slot.0 {
            *slot = (archive.sequence, archive.path);
        }
    }
    Ok(newest
        .into_iter()
        .map(|(cookie, (sequence, path))| {
            let resume = Resume {
                next_sequence: sequence.saturating_add(1),
                start_time: start_time(&path),
            };
            (cookie, resume)
        })
        .collect())
}

/// `Metadata.StartTime` from the first line of an archive, if it has one.
fn start_time(path: &Path) -> Option<Timestamp> {
    let first = ArchiveReader::open(path).ok()?.next()?.ok()?;
    first.metadata.map(|m| m.start_time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ArchivalRecord, ArchiveWriter, Metadata};
    use crate::saver::testutil::TempTree;
    use std::fs;

    fn archive(path: &Path, uuid: &str, sequence: i64, start: Timestamp) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut w = ArchiveWriter::new(fs::File::create(path).unwrap()).unwrap();
        w.write_record(&ArchivalRecord::metadata_line(Metadata {
            uuid: uuid.to_owned(),
            sequence,
            start_time: start,
            netns: None,
        }));
        w.finish().unwrap();
    }

    #[test]
    fn finds_the_highest_sequence_in_any_date_dir() {
        let tree = TempTree::new("resume-scan");
        let root = tree.path();
        let start = Timestamp::from_unix(1_554_104_557, 371_000_000).unwrap();
        let uuid = "h_1_00000000000003E8";
        let name = |seq: u32| format!("{uuid}.{seq:05}.jsonl.zst");
        archive(&root.join("2019/04/01").join(name(0)), uuid, 0, start);
        archive(&root.join("2019/04/02").join(name(7)), uuid, 7, start);
        archive(&root.join("2019/04/01").join(name(3)), uuid, 3, start);
        // A corrupt file still reserves its name; its StartTime is unknown.
        fs::write(
            root.join("2019/04/02/h_1_0000000000000001.00002.jsonl.zst"),
            b"junk",
        )
        .unwrap();

        let found = scan(root, "h_1").unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        let want = Resume {
            next_sequence: 8,
            start_time: Some(start),
        };
        assert_eq!(found[&0x3E8], want);
        let want = Resume {
            next_sequence: 3,
            start_time: None,
        };
        assert_eq!(found[&1], want);
        assert!(scan(&root.join("missing"), "h_1").unwrap().is_empty());
    }
}
