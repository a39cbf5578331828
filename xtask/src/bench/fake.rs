//! Fake collectors that prove the coverage measure can fail.
//!
//! A fake writes m-lab archives (with the project's own record writer) *from the ground truth*:
//! per connection a Metadata line, a first snapshot and a final one. `faithful` writes the true
//! final counters; `drop-every-third` omits every third connection of each class; `stale-final`
//! writes final counters from before the close handshake (each one byte short: the FIN), the
//! view of a poller that missed the end. Run as a collector (`xtask fake-collector`), a fake
//! idles until SIGTERM — by then the harness has written the ground truth — and then writes.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use tcp_info::record::{ArchivalRecord, ArchiveWriter, Metadata};

use crate::interrupt::Interrupt;
use crate::timefmt::{date_path, timestamp};
use crate::workload::sock::{TCP_CLOSE, TCP_ESTABLISHED};
use crate::workload::truth::{ConnClass, ConnTruth, read_truth};

/// How a fake collector distorts the truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FakeMode {
    /// Every connection, true final counters.
    Faithful,
    /// Omits every third connection of each class.
    DropEveryThird,
    /// Every connection, final counters one byte short in each direction.
    StaleFinal,
}

impl FakeMode {
    /// The `--mode` value.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Faithful => "faithful",
            Self::DropEveryThird => "drop-every-third",
            Self::StaleFinal => "stale-final",
        }
    }
}

/// `AF_INET`.
const AF_INET: u8 = 2;
/// Length of `struct tcp_info` written (the 5.4-era layout; decoders zero-fill shorter ones).
const TCP_INFO_LEN: usize = 232;

/// A 72-byte `inet_diag_msg` for the server end of `c` (SPEC §4.1).
pub fn raw_idm(c: &ConnTruth, state: u8) -> [u8; 72] {
    let mut b = [0u8; 72];
    b[0] = AF_INET;
    b[1] = state;
    b[4..6].copy_from_slice(&c.server.port().to_be_bytes());
    b[6..8].copy_from_slice(&c.client.port().to_be_bytes());
    b[8..12].copy_from_slice(&c.server.ip().octets());
    b[24..28].copy_from_slice(&c.client.ip().octets());
    b[44..48].copy_from_slice(&(c.cookie as u32).to_ne_bytes());
    b[48..52].copy_from_slice(&((c.cookie >> 32) as u32).to_ne_bytes());
    b
}

/// A `tcp_info` payload with the given state and counters (SPEC §4.3 offsets).
pub fn tcp_info_payload(state: u8, bytes_acked: u64, bytes_received: u64) -> Vec<u8> {
    let mut b = vec![0u8; TCP_INFO_LEN];
    b[0] = state;
    b[120..128].copy_from_slice(&bytes_acked.to_ne_bytes());
    b[128..136].copy_from_slice(&bytes_received.to_ne_bytes());
    b[200..208].copy_from_slice(&bytes_acked.to_ne_bytes());
    b
}

/// Writes archives for `truth` as `mode` dictates; returns the number of files written.
pub fn write_fake_archives(
    truth: &[ConnTruth],
    mode: FakeMode,
    out: &Path,
    prefix: &str,
) -> anyhow::Result<usize> {
    let mut order: Vec<&ConnTruth> = truth.iter().collect();
    order.sort_by_key(|c| (c.class, c.opened_ns, c.cookie));
    let mut per_class = [0usize; ConnClass::ALL.len()];
    let mut files = 0;
    for c in order {
        let i = per_class[c.class as usize];
        per_class[c.class as usize] += 1;
        if mode == FakeMode::DropEveryThird && i % 3 == 2 {
            continue;
        }
        let Some(fin) = c.server_final else {
            continue; // nothing true to write
        };
        let (acked, received) = match mode {
            FakeMode::StaleFinal => (
                fin.bytes_acked.saturating_sub(1),
                fin.bytes_received.saturating_sub(1),
            ),
            FakeMode::Faithful | FakeMode::DropEveryThird => (fin.bytes_acked, fin.bytes_received),
        };
        let uuid = format!("{prefix}_{:016X}", c.cookie);
        let start = timestamp(c.opened_ns)?;
        let dir = out.join(date_path(&start));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{uuid}.00000.jsonl.zst"));
        let f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = ArchiveWriter::new(BufWriter::new(f)).context("starting a zstd frame")?;
        w.write_record(&ArchivalRecord::metadata_line(Metadata {
            uuid,
            sequence: 0,
            start_time: start,
            netns: None,
        }));
        let first = tcp_info_payload(TCP_ESTABLISHED, 0, 0);
        w.write_record(&ArchivalRecord::new(
            start,
            &raw_idm(c, TCP_ESTABLISHED),
            &[None, None, Some(&first)],
        ));
        let last = tcp_info_payload(TCP_CLOSE, acked, received);
        w.write_record(&ArchivalRecord::new(
            timestamp(c.closed_ns)?,
            &raw_idm(c, TCP_CLOSE),
            &[None, None, Some(&last)],
        ));
        let mut inner = w
            .finish()
            .with_context(|| format!("writing {}", path.display()))?;
        std::io::Write::flush(&mut inner).with_context(|| format!("writing {}", path.display()))?;
        files += 1;
    }
    Ok(files)
}

/// `xtask fake-collector`: idle until SIGTERM/SIGINT, then write archives from the truth.
#[derive(Debug, clap::Args)]
pub struct FakeArgs {
    /// How to distort the truth.
    #[arg(long, value_enum)]
    pub mode: FakeMode,
    /// The ground-truth log (read after the signal).
    #[arg(long)]
    pub truth: PathBuf,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// UUID prefix file (raw bytes, like the daemon's `--uuid-prefix-file`).
    #[arg(long)]
    pub prefix_file: Option<PathBuf>,
}

/// Runs a fake collector (see [`FakeArgs`]).
pub fn run_fake_collector(args: &FakeArgs, interrupt: &Interrupt) -> anyhow::Result<()> {
    // Like a real collector it runs until told to stop; a day is a safety net, not a limit.
    let _ = interrupt.sleep(Duration::from_secs(86_400));
    let prefix = match &args.prefix_file {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => "fake".into(),
    };
    let truth = read_truth(&args.truth)?;
    let files = write_fake_archives(&truth, args.mode, &args.out, &prefix)?;
    eprintln!(
        "fake collector ({}): wrote {files} archives for {} connections",
        args.mode.flag(),
        truth.len()
    );
    Ok(())
}
