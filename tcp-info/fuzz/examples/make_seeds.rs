//! Writes seed corpora for the fuzz targets from the m-lab fixtures.
//!
//! Usage: `cargo +nightly run --example make_seeds -- [FIXTURES_DIR] [CORPUS_DIR]`
//! (defaults: `../../../shared/fixtures/m-lab` and `corpus`, relative to this crate).
//! The corpora are generated, never committed.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use tcp_info::wire::netlink::{HEADER_LEN, Header, NLMSG_DONE, NLMSG_ERROR, StreamReader, align};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const JSONL_FIXTURES: [&str; 3] = [
    "archiveRecords.jsonl.zst",
    "ndt-7hhhv_1559749627_0000000000062D84.00000.jsonl.zst",
    "ndt-jdczh_1553815964_00000000000003E8.00185.jsonl.zst",
];

fn main() -> Result<()> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut args = std::env::args_os().skip(1);
    let fixtures = args.next().map_or_else(
        || here.join("../../../shared/fixtures/m-lab"),
        PathBuf::from,
    );
    let corpus = args
        .next()
        .map_or_else(|| here.join("corpus"), PathBuf::from);

    let netlink = netlink_seeds(&fixtures)?;
    let lines = json_seeds(&fixtures)?;
    let archives = archive_seeds(&fixtures, &lines)?;
    write_all(&corpus.join("netlink_splitter"), "nl", &netlink)?;
    write_all(&corpus.join("json_line"), "line", &lines)?;
    write_all(&corpus.join("archive_reader"), "archive", &archives)?;
    println!(
        "seeds in {}: netlink_splitter {}, json_line {}, archive_reader {}",
        corpus.display(),
        netlink.len(),
        lines.len(),
        archives.len()
    );
    Ok(())
}

/// Every message of testdata.zst on its own, a few runs of consecutive messages, and the
/// control messages a dump also carries (DONE, ERROR).
fn netlink_seeds(fixtures: &Path) -> Result<Vec<Vec<u8>>> {
    let raw = zstd::decode_all(fs::File::open(fixtures.join("testdata.zst"))?)?;
    let mut messages = Vec::new();
    for msg in StreamReader::new(&raw[..]) {
        let msg = msg?;
        let mut bytes = msg.header.to_bytes().to_vec();
        bytes.extend_from_slice(&msg.payload);
        bytes.resize(align(bytes.len()), 0);
        messages.push(bytes);
    }
    let mut seeds = messages.clone();
    for start in [0, 130, 260] {
        seeds.push(messages[start..start + 3].concat());
    }
    let control = |kind: u16, payload: &[u8]| {
        let header = Header {
            len: (HEADER_LEN + payload.len()) as u32,
            kind,
            flags: 0x2,
            seq: 1,
            pid: 0,
        };
        let mut bytes = header.to_bytes().to_vec();
        bytes.extend_from_slice(payload);
        bytes
    };
    let mut with_done = messages[0].clone();
    with_done.extend(control(NLMSG_DONE, &0i32.to_ne_bytes()));
    seeds.push(with_done);
    seeds.push(control(NLMSG_ERROR, &(-16i32).to_ne_bytes()));
    Ok(seeds)
}

/// The first lines of each JSONL fixture (the Metadata line included) and its last line.
fn json_seeds(fixtures: &Path) -> Result<Vec<Vec<u8>>> {
    let mut seeds = Vec::new();
    for name in JSONL_FIXTURES {
        let text = zstd::decode_all(fs::File::open(fixtures.join(name))?)?;
        let lines: Vec<&[u8]> = text
            .split_inclusive(|&b| b == b'\n')
            .filter(|l| l.len() > 1)
            .collect();
        for line in lines.iter().take(4).chain(lines.last()) {
            seeds.push(line.to_vec());
        }
    }
    Ok(seeds)
}

/// Small archives: the smallest fixture as shipped, a few lines in one and in two zstd frames,
/// the same lines uncompressed, and a truncated frame.
fn archive_seeds(fixtures: &Path, lines: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
    let mut seeds = vec![fs::read(fixtures.join(JSONL_FIXTURES[2]))?];
    let few: Vec<u8> = lines.iter().take(3).flatten().copied().collect();
    let one_frame = zstd::encode_all(&few[..], 3)?;
    let mut two_frames = zstd::encode_all(&lines[0][..], 3)?;
    two_frames.extend(zstd::encode_all(&lines[5][..], 3)?);
    let truncated = one_frame[..one_frame.len() - 5].to_vec();
    seeds.extend([few, one_frame, two_frames, truncated]);
    Ok(seeds)
}

fn write_all(dir: &Path, prefix: &str, seeds: &[Vec<u8>]) -> Result<()> {
    fs::create_dir_all(dir)?;
    for (i, seed) in seeds.iter().enumerate() {
        fs::write(dir.join(format!("{prefix}-{i:04}")), seed)?;
    }
    Ok(())
}
