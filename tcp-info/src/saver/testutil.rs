//! Helpers for the saver's unit tests; [`TempTree`] also serves the event socket's tests.

use crate::record::{ArchivalRecord, ArchiveReader, RAW_IDM_LEN, Timestamp};
use std::path::{Path, PathBuf};

/// A uniquely named temporary directory, removed when dropped.
pub struct TempTree(tempfile::TempDir);

impl TempTree {
    /// A new empty directory whose name contains `label` and the process id.
    pub fn new(label: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("tcp-info-{label}-{}-", std::process::id()))
            .tempdir()
            .unwrap();
        Self(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Every file below the directory, sorted, as paths relative to it.
    pub fn files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_dir() {
                    walk(&entry.path(), out);
                } else {
                    out.push(entry.path());
                }
            }
        }
        let mut out = Vec::new();
        walk(self.path(), &mut out);
        let mut rel: Vec<_> = out
            .into_iter()
            .map(|p| p.strip_prefix(self.path()).unwrap().to_owned())
            .collect();
        rel.sort();
        rel
    }
}

/// A 72-byte `AF_INET` `inet_diag_msg` for `cookie` (host order halves at bytes 44–51), with
/// `tag` in the state byte's neighbour so records can be told apart.
pub fn raw_idm(cookie: u64, tag: u8) -> [u8; RAW_IDM_LEN] {
    let mut idm = [0u8; RAW_IDM_LEN];
    idm[0] = 2; // AF_INET
    idm[1] = 1; // ESTABLISHED
    idm[2] = tag;
    idm[4..6].copy_from_slice(&9091u16.to_be_bytes());
    idm[8..12].copy_from_slice(&[192, 168, 14, 134]);
    idm[24..28].copy_from_slice(&[10, 1, 2, 3]);
    idm[44..48].copy_from_slice(&(cookie as u32).to_ne_bytes());
    idm[48..52].copy_from_slice(&((cookie >> 32) as u32).to_ne_bytes());
    idm
}

/// A snapshot of `cookie` at Unix time `secs` with a tcp_info-like attribute.
pub fn snapshot(cookie: u64, secs: i64, tag: u8) -> ArchivalRecord {
    let info = [tag; 232];
    ArchivalRecord::new(
        Timestamp::from_unix(secs, 123_000_000).unwrap(),
        &raw_idm(cookie, tag),
        &[None, None, Some(&info), None, Some(b"cubic\0")],
    )
}

/// Every record of an archive file, failing the test on any read error.
pub fn read_all(path: &Path) -> Vec<ArchivalRecord> {
    ArchiveReader::open(path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
