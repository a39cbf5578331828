//! Listing the archives of an existing tree (`<root>/YYYY/MM/DD/<prefix>_<cookie>.<seq>.jsonl.zst`).

use super::paths::parse_file_name;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One archive file found in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// Where it is.
    pub path: PathBuf,
    /// The connection's cookie, from the name.
    pub cookie: u64,
    /// The segment number, from the name.
    pub sequence: u32,
}

/// Every regular file named like an archive with `prefix` under `<root>/YYYY/MM/DD/` (symlinks
/// are not followed). A missing root is an empty tree; an unreadable root is an error;
/// unreadable subdirectories are logged and skipped.
pub fn list(root: &Path, prefix: &str) -> io::Result<Vec<Archive>> {
    let years = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for year in subdirs(years, 4) {
        for month in read_subdirs(&year, 2) {
            for day in read_subdirs(&month, 2) {
                let Some(entries) = read_logged(&day) else {
                    continue;
                };
                for entry in entries.flatten() {
                    if !entry.file_type().is_ok_and(|t| t.is_file()) {
                        continue;
                    }
                    let name = entry.file_name();
                    if let Some((cookie, sequence)) =
                        name.to_str().and_then(|n| parse_file_name(n, prefix))
                    {
                        found.push(Archive {
                            path: entry.path(),
                            cookie,
                            sequence,
                        });
                    }
                }
            }
        }
    }
    Ok(found)
}

fn read_logged(dir: &Path) -> Option<fs::ReadDir> {
    fs::read_dir(dir)
        .inspect_err(|e| {
            tracing::warn!(dir = %dir.display(), error = %e, "skipping unreadable archive directory");
        })
        .ok()
}

fn read_subdirs(dir: &Path, digits: usize) -> Vec<PathBuf> {
    read_logged(dir).map_or_else(Vec::new, |entries| subdirs(entries, digits))
}

/// Subdirectories (not symlinks) whose names are exactly `digits` ASCII digits.
fn subdirs(entries: fs::ReadDir, digits: usize) -> Vec<PathBuf> {
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| {
            let name = e.file_name();
            let name = name.as_encoded_bytes();
            name.len() == digits && name.iter().all(u8::is_ascii_digit)
        })
        .map(|e| e.path())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saver::testutil::TempTree;

    #[test]
    fn lists_only_our_archives_in_date_dirs() {
        let tree = TempTree::new("tree-list");
        let root = tree.path();
        let day = root.join("2019/04/01");
        fs::create_dir_all(&day).unwrap();
        fs::create_dir_all(root.join("lost+found/01/02")).unwrap();
        let ours = day.join("h_1_00000000000003E8.00002.jsonl.zst");
        for name in [
            "h_1_00000000000003E8.00002.jsonl.zst",
            "other_00000000000003E8.00002.jsonl.zst",
            "notes.txt",
        ] {
            fs::write(day.join(name), b"").unwrap();
        }
        fs::write(root.join("h_1_0000000000000001.00000.jsonl.zst"), b"").unwrap();
        fs::create_dir(day.join("h_1_0000000000000002.00000.jsonl.zst")).unwrap();
        std::os::unix::fs::symlink(root.join("2019"), root.join("2020")).unwrap();
        let found = list(root, "h_1").unwrap();
        assert_eq!(
            found,
            vec![Archive {
                path: ours,
                cookie: 0x3E8,
                sequence: 2
            }]
        );
        assert!(list(&root.join("missing"), "h_1").unwrap().is_empty());
        assert!(list(&day.join("notes.txt"), "h_1").is_err());
    }
}
