//! Seed corpora for the fuzz targets, made from the m-lab fixtures (real archives and a real
//! raw netlink capture) and from the hand-made seeds committed in `fuzz/seeds/`.

use std::fs::{self, File};
use std::io::Read as _;
use std::path::Path;

use anyhow::Context as _;
use tcp_info::events::{FlowEvent, FlowId};
use tcp_info::record::Timestamp;
use tcp_info::wire::inet_diag::InetDiagMsg;
use tcp_info::wire::netlink::{NLMSG_DONE, StreamReader};

/// The m-lab fixture archives.
const ARCHIVES: &[&str] = &[
    "archiveRecords.jsonl.zst",
    "ndt-7hhhv_1559749627_0000000000062D84.00000.jsonl.zst",
    "ndt-jdczh_1553815964_00000000000003E8.00185.jsonl.zst",
];
/// The raw netlink capture.
const CAPTURE: &str = "testdata.zst";
/// Archive lines taken as seeds (evenly spread over the fixtures).
const LINE_SEEDS: usize = 150;
/// Single netlink messages taken as seeds.
const MESSAGE_SEEDS: usize = 40;

/// Fills `corpus/<target>` with the target's seeds (existing files, e.g. a long run's corpus,
/// are kept) and returns how many were written.
pub fn write(
    target: &str,
    fixtures: &Path,
    committed: &Path,
    corpus: &Path,
) -> anyhow::Result<usize> {
    let dir = corpus.join(target);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut seeds: Vec<Vec<u8>> = match target {
        "netlink_splitter" => netlink_messages(fixtures)?,
        "json_line" => archive_lines(fixtures)?,
        "archive_reader" => archive_streams(fixtures)?,
        "event_line" => event_lines(fixtures)?,
        _ => Vec::new(),
    };
    let own = committed.join(target);
    if own.is_dir() {
        for entry in fs::read_dir(&own).with_context(|| format!("listing {}", own.display()))? {
            let path = entry?.path();
            seeds.push(fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
        }
    }
    for (i, seed) in seeds.iter().enumerate() {
        let path = dir.join(format!("seed-{i:04}"));
        fs::write(&path, seed).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(seeds.len())
}

fn decompress(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(
        File::open(path).with_context(|| path.display().to_string())?,
    )?
    .read_to_end(&mut out)
    .with_context(|| format!("decompressing {}", path.display()))?;
    Ok(out)
}

/// The capture's messages, framed as the kernel sends them.
fn capture_messages(fixtures: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let raw = decompress(&fixtures.join(CAPTURE))?;
    let mut out = Vec::new();
    for message in StreamReader::new(raw.as_slice()) {
        let message = message.context("reading the capture")?;
        let mut bytes = message.header.to_bytes().to_vec();
        bytes.extend_from_slice(&message.payload);
        bytes.resize(bytes.len().next_multiple_of(4), 0);
        out.push(bytes);
    }
    Ok(out)
}

fn netlink_messages(fixtures: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let messages = capture_messages(fixtures)?;
    let step = (messages.len() / MESSAGE_SEEDS).max(1);
    let mut seeds: Vec<Vec<u8>> = messages.iter().step_by(step).cloned().collect();
    // A whole receive buffer: a run of messages ended by NLMSG_DONE.
    let mut buffer: Vec<u8> = messages.iter().take(8).flatten().copied().collect();
    let mut done = messages.first().cloned().unwrap_or_default();
    if done.len() >= 20 {
        done.truncate(20);
        done[..4].copy_from_slice(&20u32.to_ne_bytes());
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        done[16..20].copy_from_slice(&0u32.to_ne_bytes());
        buffer.extend_from_slice(&done);
    }
    seeds.push(buffer);
    Ok(seeds)
}

fn all_lines(fixtures: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut lines = Vec::new();
    for name in ARCHIVES {
        let text = decompress(&fixtures.join(name))?;
        lines.extend(text.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec));
    }
    Ok(lines)
}

fn archive_lines(fixtures: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let lines = all_lines(fixtures)?;
    let step = (lines.len() / LINE_SEEDS).max(1);
    Ok(lines.into_iter().step_by(step).collect())
}

fn archive_streams(fixtures: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut seeds = Vec::new();
    for name in ARCHIVES {
        let path = fixtures.join(name);
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        // A crash leftover: the archive cut inside its last frame.
        seeds.push(bytes[..bytes.len() * 3 / 4].to_vec());
        seeds.push(bytes);
    }
    // Uncompressed JSONL too (the reader takes both).
    seeds.push(
        all_lines(fixtures)?
            .into_iter()
            .take(20)
            .flatten()
            .collect(),
    );
    Ok(seeds)
}

fn event_lines(fixtures: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let stamp = Timestamp::from_unix(1_559_749_627, 123_456_789).context("a timestamp")?;
    let mut seeds = Vec::new();
    for message in capture_messages(fixtures)?.iter().take(4) {
        let Ok(idm) = InetDiagMsg::new(&message[16..]) else {
            continue;
        };
        let uuid = format!("host_1559749627_{:016X}", idm.cookie());
        seeds.push(FlowEvent::open(stamp, uuid.clone(), FlowId::from_idm(&idm)).to_line());
        seeds.push(FlowEvent::close(stamp, uuid).to_line());
    }
    Ok(seeds)
}
