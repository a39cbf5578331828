//! Finding and reading the archive segments of one connection.

use std::io;
use std::path::{Path, PathBuf};

use super::PlotError;
use crate::record::{ArchivalRecord, ArchiveReader};

/// One file's records and its Metadata facts.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// `(UUID, Sequence)` of its Metadata line, if it has one.
    meta: Option<(String, i64)>,
    records: Vec<ArchivalRecord>,
}

/// Reads the archive files of one connection, given in any order, and returns their records
/// concatenated in segment order (`Metadata.Sequence`), Metadata lines included.
///
/// Every file is read whole; a missing, corrupt or truncated file fails with an error naming
/// it (and the line). With several files, each must start with a Metadata line, all of one
/// UUID, no segment twice. A single file needs no Metadata line.
pub fn read_segments(paths: &[PathBuf]) -> Result<Vec<ArchivalRecord>, PlotError> {
    read(paths, false)
}

/// [`read_segments`] for a connection that may still be open: each file is read up to its
/// first unreadable frame or line (the one a writer may be appending to at that moment, or an
/// empty file whose first flush has not come yet) instead of failing there. A file that cannot
/// be opened is still an error.
pub fn read_segments_so_far(paths: &[PathBuf]) -> Result<Vec<ArchivalRecord>, PlotError> {
    read(paths, true)
}

fn read(paths: &[PathBuf], so_far: bool) -> Result<Vec<ArchivalRecord>, PlotError> {
    let mut segments = Vec::with_capacity(paths.len());
    for path in paths {
        let reader = ArchiveReader::open(path)?;
        let records = if so_far {
            reader.map_while(Result::ok).collect()
        } else {
            reader.collect::<Result<Vec<_>, _>>()?
        };
        let meta = records
            .iter()
            .find_map(|r| r.metadata.as_deref())
            .map(|m| (m.uuid.clone(), m.sequence));
        // A segment just opened has nothing flushed yet, not even its Metadata line.
        if so_far && records.is_empty() {
            continue;
        }
        segments.push(Segment {
            path: path.clone(),
            meta,
            records,
        });
    }
    order(segments)
}

/// Checks that the segments are one connection's and concatenates them in sequence order.
fn order(mut segments: Vec<Segment>) -> Result<Vec<ArchivalRecord>, PlotError> {
    if segments.len() > 1 {
        let mut first: Option<(&Path, &str)> = None;
        for s in &segments {
            let Some((uuid, _)) = &s.meta else {
                return Err(PlotError::NoMetadata {
                    path: s.path.clone(),
                });
            };
            match first {
                None => first = Some((&s.path, uuid)),
                Some((first_path, first_uuid)) if first_uuid != uuid => {
                    return Err(PlotError::MixedFiles {
                        first: first_path.to_owned(),
                        first_uuid: first_uuid.to_owned(),
                        path: s.path.clone(),
                        uuid: uuid.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        segments.sort_by_key(|s| s.meta.as_ref().map(|m| m.1));
        for pair in segments.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if let (Some((_, sa)), Some((_, sb))) = (&a.meta, &b.meta)
                && sa == sb
            {
                return Err(PlotError::DuplicateSegment {
                    first: a.path.clone(),
                    path: b.path.clone(),
                    sequence: *sa,
                });
            }
        }
    }
    match segments.len() {
        0 => Err(PlotError::NoArchive),
        1 => Ok(segments.pop().map(|s| s.records).unwrap_or_default()),
        _ => Ok(segments.into_iter().flat_map(|s| s.records).collect()),
    }
}

/// The segment files of `uuid` under the output tree `root`
/// (`root/YYYY/MM/DD/<uuid>.<seq>.jsonl.zst`), sorted by segment number.
///
/// Only directory listings are read (no file is opened): the year, month and day directories
/// (names of 4, 2 and 2 digits; anything else in the tree is ignored) and each day's entries.
/// An empty result means the tree holds no file of that UUID.
pub fn find_segments(root: &Path, uuid: &str) -> Result<Vec<PathBuf>, PlotError> {
    find_segments_since(root, uuid, (0, 0, 0))
}

/// [`find_segments`] in the date directories from `since` (UTC year, month, day) on only: a
/// connection's segments are never in a directory older than its first record's date, and a
/// tree of years of archives then costs a few listings, not thousands.
pub fn find_segments_since(
    root: &Path,
    uuid: &str,
    since: (i64, u32, u32),
) -> Result<Vec<PathBuf>, PlotError> {
    if uuid.is_empty() || uuid.contains(['/', '\0']) {
        return Err(PlotError::BadUuid(uuid.to_owned()));
    }
    let number = |dir: &Path| -> i64 {
        dir.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let (since_year, since_month, since_day) = (since.0, i64::from(since.1), i64::from(since.2));
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    for year in numbered_dirs(root, 4)? {
        let y = number(&year);
        if y < since_year {
            continue;
        }
        for month in numbered_dirs(&year, 2)? {
            let m = number(&month);
            if (y, m) < (since_year, since_month) {
                continue;
            }
            for day in numbered_dirs(&month, 2)? {
                if (y, m, number(&day)) < (since_year, since_month, since_day) {
                    continue;
                }
                let Some(entries) = list(&day)? else { continue };
                for entry in entries {
                    let entry = entry.map_err(|source| PlotError::List {
                        path: day.clone(),
                        source,
                    })?;
                    let name = entry.file_name();
                    if let Some(seq) = name.to_str().and_then(|n| segment_number(n, uuid)) {
                        found.push((seq, entry.path()));
                    }
                }
            }
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, path)| path).collect())
}

/// `<uuid>.<at least 5 digits>.jsonl.zst` → the segment number.
fn segment_number(name: &str, uuid: &str) -> Option<u64> {
    let seq = name
        .strip_prefix(uuid)?
        .strip_prefix('.')?
        .strip_suffix(".jsonl.zst")?;
    (seq.len() >= 5 && seq.bytes().all(|b| b.is_ascii_digit()))
        .then(|| seq.parse().ok())
        .flatten()
}

/// Lists `dir`; `None` when it is not a directory (a file named like a date).
fn list(dir: &Path) -> Result<Option<std::fs::ReadDir>, PlotError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(Some(entries)),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Ok(None),
        Err(source) => Err(PlotError::List {
            path: dir.to_owned(),
            source,
        }),
    }
}

/// The entries of `dir` whose names are `digits` ASCII digits.
fn numbered_dirs(dir: &Path, digits: usize) -> Result<Vec<PathBuf>, PlotError> {
    let Some(entries) = list(dir)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| PlotError::List {
            path: dir.to_owned(),
            source,
        })?;
        let name = entry.file_name();
        let numbered = name
            .to_str()
            .is_some_and(|n| n.len() == digits && n.bytes().all(|b| b.is_ascii_digit()));
        if numbered {
            out.push(entry.path());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::series::tests::{Point, meta, null_line, snapshot};
    use super::super::{PlotError, Series};
    use super::*;
    use crate::record::ArchiveWriter;
    use crate::wire::inet_diag::state;

    /// Writes `records` as a `.jsonl.zst` archive at `path`.
    fn write(path: &Path, records: &[ArchivalRecord]) {
        let mut w = ArchiveWriter::new(std::fs::File::create(path).unwrap()).unwrap();
        for r in records {
            w.write_record(r);
        }
        w.finish().unwrap();
    }

    fn point(ms: i64, acked: u64) -> ArchivalRecord {
        snapshot(&Point {
            ms,
            state: state::ESTABLISHED,
            acked,
            cwnd: 10,
            ..Point::default()
        })
    }

    #[test]
    fn segments_given_out_of_order_are_read_in_sequence_order() {
        let dir = tempfile::tempdir().unwrap();
        let uuid = "h_1_00000000000003E8";
        let files = [
            (0, vec![meta(uuid, 0), point(0, 1), point(10, 2)]),
            (1, vec![meta(uuid, 1), point(20, 3)]),
            (
                2,
                vec![meta(uuid, 2), point(30, 4), null_line(40, state::TIME_WAIT)],
            ),
        ];
        let mut paths = Vec::new();
        for (seq, records) in &files {
            let p = dir.path().join(format!("{uuid}.{seq:05}.jsonl.zst"));
            write(&p, records);
            paths.push(p);
        }
        let shuffled = [paths[2].clone(), paths[0].clone(), paths[1].clone()];
        let records = read_segments(&shuffled).unwrap();
        let expected: Vec<ArchivalRecord> = files.iter().flat_map(|f| f.1.clone()).collect();
        assert_eq!(records, expected);
        let s = Series::from_records(&records).unwrap();
        assert_eq!(s.bytes_acked, [1, 2, 3, 4]);
        assert_eq!(s.times_s, [0.0, 0.01, 0.02, 0.03]);
        assert_eq!(s.states.last().unwrap().1, "TIME_WAIT");
    }

    #[test]
    fn refuses_mixed_uuids_duplicates_and_unordered_files() {
        let dir = tempfile::tempdir().unwrap();
        let a0 = dir.path().join("a0.jsonl.zst");
        let b1 = dir.path().join("b1.jsonl.zst");
        let a0_copy = dir.path().join("copy.jsonl.zst");
        let bare = dir.path().join("bare.jsonl.zst");
        write(&a0, &[meta("a_1", 0), point(0, 1)]);
        write(&a0_copy, &[meta("a_1", 0), point(0, 1)]);
        write(&b1, &[meta("b_2", 1), point(0, 1)]);
        write(&bare, &[point(0, 1)]);

        let err = read_segments(&[a0.clone(), b1.clone()]).unwrap_err();
        assert!(matches!(err, PlotError::MixedFiles { .. }));
        let text = err.to_string();
        assert!(text.contains("b1.jsonl.zst is connection b_2"), "{text}");
        assert!(text.contains("a0.jsonl.zst is connection a_1"), "{text}");

        let err = read_segments(&[a0.clone(), a0_copy]).unwrap_err();
        assert!(err.to_string().ends_with("are both segment 0"), "{err}");

        let err = read_segments(&[a0.clone(), bare.clone()]).unwrap_err();
        assert!(matches!(err, PlotError::NoMetadata { .. }), "{err}");

        // Alone, a file without Metadata is fine.
        assert_eq!(read_segments(&[bare]).unwrap().len(), 1);
        assert!(matches!(read_segments(&[]), Err(PlotError::NoArchive)));
    }

    #[test]
    fn truncated_and_missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.jsonl.zst");
        let records: Vec<ArchivalRecord> = std::iter::once(meta("a_1", 0))
            .chain((0..300).map(|i| point(i, i as u64)))
            .collect();
        write(&good, &records);
        let bytes = std::fs::read(&good).unwrap();
        let cut = dir.path().join("cut.jsonl.zst");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_segments(&[cut]).unwrap_err();
        assert!(matches!(err, PlotError::Read(_)));
        assert!(err.to_string().contains("cut.jsonl.zst:"), "{err}");
        let err = read_segments(&[dir.path().join("none.jsonl.zst")]).unwrap_err();
        assert!(err.to_string().contains("none.jsonl.zst"), "{err}");
    }

    #[test]
    fn an_open_file_is_read_up_to_its_last_whole_frame() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("first.jsonl.zst");
        write(&first, &[meta("a_1", 0), point(0, 1), point(10, 2)]);
        let frame = std::fs::read(&first).unwrap();
        // A second frame being appended: only part of it is there yet.
        let second = dir.path().join("second.jsonl.zst");
        write(&second, &[point(20, 3), point(30, 4)]);
        let partial = std::fs::read(&second).unwrap();
        let open = dir.path().join("open.jsonl.zst");
        std::fs::write(
            &open,
            [frame.as_slice(), &partial[..partial.len() / 2]].concat(),
        )
        .unwrap();
        assert!(read_segments(std::slice::from_ref(&open)).is_err());
        let so_far = read_segments_so_far(&[open]).unwrap();
        assert_eq!(
            so_far.len(),
            3,
            "the Metadata line and the first frame's two records"
        );
        // A file whose first flush has not come yet (a new segment) is left out, beside the
        // segment before it; alone, there is nothing to read.
        let empty = dir.path().join("empty.jsonl.zst");
        std::fs::write(&empty, b"").unwrap();
        let earlier = dir.path().join("earlier.jsonl.zst");
        std::fs::copy(&first, &earlier).unwrap();
        assert_eq!(
            read_segments_so_far(&[earlier, empty.clone()])
                .unwrap()
                .len(),
            3
        );
        assert!(matches!(
            read_segments_so_far(&[empty]),
            Err(PlotError::NoArchive)
        ));
        let missing = read_segments_so_far(&[dir.path().join("none.jsonl.zst")]);
        assert!(
            missing.is_err(),
            "a file that cannot be opened is still an error"
        );
    }

    #[test]
    fn finds_segments_across_days_by_listing_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let uuid = "h_1_00000000000003E8";
        let mk = |rel: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"").unwrap();
            p
        };
        let s2 = mk(&format!("2024/01/02/{uuid}.00002.jsonl.zst"));
        let s0 = mk(&format!("2024/01/01/{uuid}.00000.jsonl.zst"));
        let s1 = mk(&format!("2024/01/01/{uuid}.00001.jsonl.zst"));
        let s10 = mk(&format!("2024/01/03/{uuid}.100000.jsonl.zst"));
        mk("2024/01/01/h_1_00000000000003E9.00000.jsonl.zst");
        mk(&format!("2024/01/01/{uuid}.0001.jsonl.zst"));
        mk(&format!("2024/01/01/{uuid}.00003.jsonl"));
        mk(&format!("2024/01/01/{uuid}.x.00003.jsonl.zst"));
        mk(&format!("misc/01/01/{uuid}.00004.jsonl.zst"));
        mk(&format!("2024/1/01/{uuid}.00005.jsonl.zst"));
        mk("2025");
        std::fs::create_dir_all(root.join("lost+found")).unwrap();
        assert_eq!(
            find_segments(root, uuid).unwrap(),
            [s0.clone(), s1.clone(), s2.clone(), s10.clone()]
        );
        // From a date on: older day directories are skipped (not even listed).
        assert_eq!(
            find_segments_since(root, uuid, (2024, 1, 2)).unwrap(),
            [s2.clone(), s10.clone()]
        );
        assert_eq!(
            find_segments_since(root, uuid, (2023, 12, 31))
                .unwrap()
                .len(),
            4
        );
        assert!(
            find_segments_since(root, uuid, (2024, 2, 1))
                .unwrap()
                .is_empty()
        );
        assert!(find_segments(root, "other_1").unwrap().is_empty());
        for bad in ["", "a/b", "a\0"] {
            assert!(matches!(
                find_segments(root, bad),
                Err(PlotError::BadUuid(_))
            ));
        }
        let err = find_segments(&root.join("absent"), uuid).unwrap_err();
        assert!(err.to_string().starts_with("listing "), "{err}");
    }
}
