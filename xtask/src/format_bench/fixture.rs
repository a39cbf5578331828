//! The m-lab fixture in memory, the records built from it, and the golden comparison.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use tcp_info::record::{ArchivalRecord, Timestamp};
use tcp_info::wire::netlink::{Message, Messages};

use super::{FIXTURE_MESSAGES, START_UNIX_MS, STEP_MS};

/// The fixture in memory.
pub(super) struct Fixture {
    /// `testdata.zst` decompressed: raw netlink messages back to back.
    pub raw: Vec<u8>,
    /// `archiveRecords.jsonl.zst` decompressed: upstream's conversion of `raw` at the zero time.
    pub golden: Vec<u8>,
    /// Size of `archiveRecords.jsonl.zst` as shipped.
    pub golden_compressed: u64,
}

impl Fixture {
    /// Reads and decompresses both files of `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path)
                .with_context(|| format!("reading fixture {} (use --fixtures DIR)", path.display()))
        };
        let unzstd = |name: &str, bytes: &[u8]| {
            zstd::decode_all(bytes).with_context(|| format!("decompressing {name}"))
        };
        let raw = unzstd("testdata.zst", &read("testdata.zst")?)?;
        let golden_zst = read("archiveRecords.jsonl.zst")?;
        Ok(Self {
            raw,
            golden: unzstd("archiveRecords.jsonl.zst", &golden_zst)?,
            golden_compressed: golden_zst.len() as u64,
        })
    }

    /// The netlink messages of `testdata.zst` (exactly [`FIXTURE_MESSAGES`] of them).
    pub fn messages(&self) -> Result<Vec<Message<'_>>> {
        let messages = Messages::new(&self.raw)
            .collect::<Result<Vec<_>, _>>()
            .context("splitting testdata.zst into netlink messages")?;
        ensure!(
            messages.len() == FIXTURE_MESSAGES,
            "testdata.zst holds {} messages, expected {FIXTURE_MESSAGES}",
            messages.len()
        );
        Ok(messages)
    }
}

/// Record `i`'s timestamp: the start time plus `i` × 6 ms.
pub(super) fn timestamp(i: usize) -> Result<Timestamp> {
    let ms = START_UNIX_MS + i as i64 * STEP_MS;
    Timestamp::from_unix(
        ms.div_euclid(1000),
        (ms.rem_euclid(1000) * 1_000_000) as u32,
    )
    .with_context(|| format!("timestamp of record {i}"))
}

/// The fixture's records, record `i` stamped `stamps[i]`.
pub(super) fn build_records(
    messages: &[Message<'_>],
    stamps: &[Timestamp],
) -> Result<Vec<ArchivalRecord>> {
    messages
        .iter()
        .zip(stamps)
        .enumerate()
        .map(|(i, (msg, &ts))| {
            ArchivalRecord::from_netlink(msg, ts)
                .map(|(record, _)| record)
                .with_context(|| format!("building record {i} of testdata.zst"))
        })
        .collect()
}

/// Converts the fixture at the zero time, as upstream did, and returns the 1-based number of the
/// first line that differs from `archiveRecords.jsonl.zst` (`None` when byte-identical).
pub(super) fn golden_difference(messages: &[Message<'_>], golden: &[u8]) -> Result<Option<usize>> {
    let mut produced = Vec::with_capacity(golden.len());
    for (i, msg) in messages.iter().enumerate() {
        let (record, _) = ArchivalRecord::from_netlink(msg, Timestamp::ZERO)
            .with_context(|| format!("building record {i} at the zero time"))?;
        record.write_json_line(&mut produced);
    }
    if produced == golden {
        return Ok(None);
    }
    let mut ours = produced.split_inclusive(|&b| b == b'\n');
    let mut theirs = golden.split_inclusive(|&b| b == b'\n');
    let mut line = 1;
    loop {
        match (ours.next(), theirs.next()) {
            (Some(a), Some(b)) if a == b => line += 1,
            _ => return Ok(Some(line)),
        }
    }
}

/// The records of each connection, in order of first appearance.
pub(super) fn group_by_cookie(
    records: &[ArchivalRecord],
) -> Result<Vec<(u64, Vec<&ArchivalRecord>)>> {
    let mut groups: Vec<(u64, Vec<&ArchivalRecord>)> = Vec::new();
    let mut index = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let cookie = r
            .cookie()
            .with_context(|| format!("record {i} has no cookie"))?;
        let slot = *index.entry(cookie).or_insert_with(|| {
            groups.push((cookie, Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.push(r);
    }
    Ok(groups)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The fixture directory, or `None` (skip) outside CI when it is missing.
    pub fn fixtures() -> Option<PathBuf> {
        let dir = super::super::default_fixtures();
        if dir.is_dir() {
            return Some(dir);
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "fixtures missing at {}",
            dir.display()
        );
        eprintln!("SKIP: fixtures not found at {}", dir.display());
        None
    }

    #[test]
    fn timestamps_step_six_milliseconds() {
        assert_eq!(
            timestamp(0).unwrap().to_string(),
            "2019-07-01T00:00:12.092Z"
        );
        assert_eq!(
            timestamp(1).unwrap().to_string(),
            "2019-07-01T00:00:12.098Z"
        );
        assert_eq!(
            timestamp(151).unwrap().to_string(),
            "2019-07-01T00:00:12.998Z"
        );
        assert_eq!(
            timestamp(152).unwrap().to_string(),
            "2019-07-01T00:00:13.004Z"
        );
    }

    #[test]
    fn golden_difference_names_the_first_differing_line() {
        let Some(dir) = fixtures() else { return };
        let fixture = Fixture::load(&dir).unwrap();
        let messages = fixture.messages().unwrap();
        let mut altered = fixture.golden.clone();
        let third = altered
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .nth(1)
            .map(|(i, _)| i + 3)
            .unwrap();
        altered[third] ^= 1;
        assert_eq!(golden_difference(&messages, &altered).unwrap(), Some(3));
    }
}
