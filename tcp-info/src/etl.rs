//! The m-lab/etl parser's acceptance rules (SPEC §11.1), as a checker: what the ETL would make of
//! one archive file. A file it rejects is lost whole, so the collector's tests run every file it
//! writes through this.

use crate::record::{ArchivalRecord, ArchiveReader, ReadError};
use crate::snapshot::Snapshot;
use crate::wire::attr;
use std::path::Path;
use thiserror::Error;

/// The ETL scanner's line limit.
pub const MAX_LINE: usize = 64 * 1024;

/// Why the ETL would drop a file.
#[derive(Debug, Error)]
pub enum EtlError {
    /// Only objects whose names end in `jsonl.zst` are parsed.
    #[error("{0}: name does not end in jsonl.zst")]
    Name(String),
    /// A zstd, JSON, base64 or timestamp error.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A line at or over the scanner's 64 KiB limit.
    #[error("{file}:{line}: line of {len} bytes reaches the ETL's 64 KiB limit")]
    LineTooLong {
        /// The file.
        file: String,
        /// 1-based line.
        line: u64,
        /// Its length.
        len: usize,
    },
    /// A line with neither RawIDM nor Metadata.
    #[error("{file}:{line}: line has neither RawIDM nor Metadata")]
    Empty {
        /// The file.
        file: String,
        /// 1-based line.
        line: u64,
    },
    /// An empty congestion-control payload, on which the ETL's decoder panics.
    #[error("{file}:{line}: empty INET_DIAG_CONG payload")]
    EmptyCongestion {
        /// The file.
        file: String,
        /// 1-based line.
        line: u64,
    },
    /// A RawIDM the decoder cannot read.
    #[error("{file}:{line}: {reason}")]
    Undecodable {
        /// The file.
        file: String,
        /// 1-based line.
        line: u64,
        /// The decoder's message.
        reason: String,
    },
}

/// What the ETL would produce from a file: one row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtlRow {
    /// `Metadata.UUID` (the row id), if the file has a Metadata line.
    pub uuid: Option<String>,
    /// Snapshots kept (`Observed != 0`).
    pub kept: usize,
    /// Lines read, Metadata included.
    pub lines: usize,
    /// The last kept snapshot (the row's FinalSnapshot), if any.
    pub final_snapshot: Option<ArchivalRecord>,
}

/// Reads `path` as the ETL would and returns its row, or why the whole file would be dropped.
pub fn check_file(path: &Path) -> Result<EtlRow, EtlError> {
    let file = path.display().to_string();
    if !file.ends_with("jsonl.zst") {
        return Err(EtlError::Name(file));
    }
    let mut reader = ArchiveReader::open(path)?;
    let mut row = EtlRow::default();
    loop {
        let line_no = reader.line_number() + 1;
        let Some(line) = reader.next_line()? else {
            break;
        };
        if line.len() + 1 >= MAX_LINE {
            return Err(EtlError::LineTooLong {
                file,
                line: line_no,
                len: line.len(),
            });
        }
        let record = ArchivalRecord::from_json(line)
            .map_err(|e| ReadError::decode(reader.source_name(), line_no, e))?;
        row.lines += 1;
        if let Some(meta) = &record.metadata {
            row.uuid = Some(meta.uuid.clone());
        }
        if record.raw_idm().is_empty() {
            if record.metadata.is_none() {
                return Err(EtlError::Empty {
                    file,
                    line: line_no,
                });
            }
            continue;
        }
        if record
            .attribute(usize::from(attr::CONG))
            .is_some_and(<[u8]>::is_empty)
        {
            return Err(EtlError::EmptyCongestion {
                file,
                line: line_no,
            });
        }
        let snapshot = Snapshot::decode(&record).map_err(|e| EtlError::Undecodable {
            file: file.clone(),
            line: line_no,
            reason: e.to_string(),
        })?;
        if snapshot.is_etl_kept() {
            row.kept += 1;
            row.final_snapshot = Some(record);
        }
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ArchiveWriter, Metadata, Timestamp};

    fn write(dir: &Path, name: &str, records: &[ArchivalRecord]) -> std::path::PathBuf {
        let path = dir.join(name);
        let mut w = ArchiveWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
        for r in records {
            w.write_record(r);
        }
        w.finish().unwrap();
        path
    }

    fn meta() -> ArchivalRecord {
        ArchivalRecord::metadata_line(Metadata {
            uuid: "h_1_0000000000000001".into(),
            sequence: 0,
            start_time: Timestamp::from_unix(1, 0).unwrap(),
            netns: None,
        })
    }

    fn snap(cong: &[u8]) -> ArchivalRecord {
        let mut idm = [0u8; 72];
        idm[0] = 2;
        idm[1] = 1;
        ArchivalRecord::new(
            Timestamp::from_unix(2, 0).unwrap(),
            &idm,
            &[None, None, Some(&[0; 168]), None, Some(cong)],
        )
    }

    #[test]
    fn accepts_a_good_file_and_names_its_row() {
        let dir = tempfile::tempdir().unwrap();
        let tw = ArchivalRecord::new(Timestamp::from_unix(3, 0).unwrap(), &[2; 72], &[None]);
        let p = write(dir.path(), "a.jsonl.zst", &[meta(), snap(b"cubic\0"), tw]);
        let row = check_file(&p).unwrap();
        assert_eq!(row.uuid.as_deref(), Some("h_1_0000000000000001"));
        assert_eq!((row.lines, row.kept), (3, 1), "the [null] line is not kept");
        assert_eq!(
            row.final_snapshot.unwrap().timestamp,
            Timestamp::from_unix(2, 0).unwrap()
        );
    }

    /// `--netns.attribution` adds a `Netns` key to the Metadata line: the ETL's parser ignores
    /// keys it does not know, so the file keeps its row and UUID.
    #[test]
    fn accepts_the_opt_in_netns_key() {
        let dir = tempfile::tempdir().unwrap();
        let tag = crate::record::NetnsTag {
            inode: 4_026_532_001,
            pod_uid: Some("0f3c6d7e-1b2a-4c5d-8e9f-001122334455".into()),
            pod_name: Some("web-0".into()),
            ..crate::record::NetnsTag::default()
        };
        let mut tagged = meta();
        if let Some(m) = tagged.metadata.as_mut() {
            m.netns = Some(std::sync::Arc::new(tag.clone()));
        }
        let line = String::from_utf8(tagged.to_json_line()).unwrap();
        assert!(
            line.ends_with(
                ",\"StartTime\":\"1970-01-01T00:00:01Z\",\"Netns\":{\"Inode\":4026532001,\
                 \"PodUID\":\"0f3c6d7e-1b2a-4c5d-8e9f-001122334455\",\"PodName\":\"web-0\"}}}\n"
            ),
            "{line}"
        );
        let p = write(dir.path(), "n.jsonl.zst", &[tagged, snap(b"cubic\0")]);
        let row = check_file(&p).unwrap();
        assert_eq!(row.uuid.as_deref(), Some("h_1_0000000000000001"));
        assert_eq!((row.lines, row.kept), (2, 1));
        // And the reader gives the tag back.
        let records = crate::record::ArchiveReader::open(&p)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let meta = records[0].metadata.as_ref().unwrap();
        assert_eq!(meta.netns.as_deref(), Some(&tag));
    }

    #[test]
    fn rejects_what_the_etl_drops() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "b.jsonl.zst", &[meta(), snap(b"")]);
        assert!(matches!(
            check_file(&p),
            Err(EtlError::EmptyCongestion { line: 2, .. })
        ));
        let p = write(
            dir.path(),
            "c.jsonl.zst",
            &[meta(), ArchivalRecord::default()],
        );
        assert!(matches!(
            check_file(&p),
            Err(EtlError::Empty { line: 2, .. })
        ));
        let p = write(dir.path(), "d.jsonl", &[meta()]);
        assert!(matches!(check_file(&p), Err(EtlError::Name(_))));
        std::fs::write(dir.path().join("e.jsonl.zst"), b"not zstd").unwrap();
        assert!(matches!(
            check_file(&dir.path().join("e.jsonl.zst")),
            Err(EtlError::Read(_))
        ));
    }
}
