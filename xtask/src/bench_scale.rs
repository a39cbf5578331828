//! `cargo xtask bench-scale`: what tracking many connections costs the daemon's pipeline and
//! saver. Synthetic sock_diag payloads for N connections go through the real `Pipeline` and
//! `Saver` (archives in a temporary directory), with no sockets, so N can exceed what one host
//! can hold open in a test: memory per tracked connection, descriptors, and time per sweep.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tcp_info::exclude::Exclusions;
use tcp_info::metrics::Metrics;
use tcp_info::pipeline::sinks::NoEvents;
use tcp_info::pipeline::{ArchiveSink, Pipeline, PipelineConfig};
use tcp_info::record::{ArchivalRecord, NetnsTag, Timestamp};
use tcp_info::saver::{Saver, SaverConfig};
use tcp_info::sockdiag::{Family, FamilyDump, Payloads};
use tcp_info::uuid::Prefix;

/// Arguments of `cargo xtask bench-scale`.
#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// Connections to track.
    #[arg(long, default_value_t = 100_000)]
    connections: usize,
    /// Unchanged sweeps to time after the first one.
    #[arg(long, default_value_t = 20)]
    sweeps: usize,
    /// Where to write the archives (default: a temporary directory, removed afterwards).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The saver as the pipeline's archive sink (the daemon's adapter is private to it).
struct SaverSink(Saver);

impl ArchiveSink for SaverSink {
    fn write(
        &mut self,
        cookie: u64,
        record: &ArchivalRecord,
        netns: Option<&Arc<NetnsTag>>,
        now: Instant,
    ) -> Result<(), String> {
        self.0
            .write_tagged(cookie, record, netns, now)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn close(&mut self, cookie: u64, _now: Instant) {
        let _ = self.0.close(cookie);
    }
    fn tick(&mut self, now: Instant) {
        // Failures are counted in the saver's stats; the measurement checks descriptors.
        let _report = self.0.tick(now);
    }
    fn shutdown(&mut self) {
        let _report = self.0.shutdown();
    }
}

/// Runs the measurement and prints a Markdown table.
pub fn run(args: &ScaleArgs) -> Result<()> {
    // Kept alive until the end of the run, then removed.
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let root = args
        .out
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let budget = raise_fd_limit();
    let metrics = Arc::new(Metrics::new("").context("creating metrics")?);
    let prefix = Prefix::from_bytes(b"scale_1".to_vec())
        .map_err(|_| anyhow::anyhow!("prefix is not UTF-8"))?;
    let mut config = SaverConfig::new(prefix.clone());
    config.root.clone_from(&root);
    config.max_open_files = budget;
    let saver = Saver::new(config).context("starting the saver")?;
    let mut observer_config = PipelineConfig::new(Exclusions::new(true, &[], &[]), prefix);
    observer_config.close_grace = Duration::from_millis(500);
    let mut pipeline =
        Pipeline::new(observer_config, SaverSink(saver), NoEvents, metrics).with_own_namespace();

    let n = args.connections;
    let mut dump = Payloads::with_capacity(n, n * 400);
    for i in 0..n {
        dump.push(&payload(i, 1000));
    }
    let mut dump = [FamilyDump {
        family: Family::Inet,
        payloads: Some(dump),
        timestamp: Timestamp::now(),
    }];
    let (rss_before, fds_before) = (rss_kib(), open_fds(&root));
    let t0 = Instant::now();
    let now = Instant::now();
    pipeline.sweep(&dump, now);
    let first = t0.elapsed();
    let (rss_tracked, fds_tracked) = (rss_kib(), open_fds(&root));

    let t1 = Instant::now();
    for k in 0..args.sweeps {
        let at = now + Duration::from_millis(10 * (k as u64 + 1));
        dump[0].timestamp = Timestamp::now();
        pipeline.sweep(&dump, at);
    }
    let unchanged = t1.elapsed() / u32::try_from(args.sweeps.max(1)).unwrap_or(u32::MAX);

    // One sweep in which 1 % of the connections acknowledged more data.
    let mut changed = Payloads::with_capacity(n, n * 400);
    for i in 0..n {
        changed.push(&payload(i, if i % 100 == 0 { 2000 } else { 1000 }));
    }
    let mut changed = [FamilyDump {
        family: Family::Inet,
        payloads: Some(changed),
        timestamp: Timestamp::now(),
    }];
    let t2 = Instant::now();
    pipeline.sweep(&changed, now + Duration::from_secs(1));
    let one_percent = t2.elapsed();

    // At the rotation age nothing changed: rotated segments release their descriptors.
    let later = now + tcp_info::saver::DEFAULT_ROTATION_AGE + Duration::from_secs(1);
    changed[0].timestamp = Timestamp::now();
    pipeline.sweep(&changed, later);
    pipeline.tick(later);
    let (rss_idle, fds_idle) = (rss_kib(), open_fds(&root));
    let tracked = pipeline.tracked();
    pipeline.shutdown();
    let files = count_files(&root);

    let per_conn = |rss: u64| (rss.saturating_sub(rss_before) * 1024) as f64 / n as f64;
    println!(
        "## cargo xtask bench-scale ({} build)\n",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "{n} synthetic AF_INET connections (tcp_info 232 B, 5 attributes), saver descriptor budget {budget}.\n"
    );
    println!("| measure | value |\n|---|---:|");
    println!("| connections tracked | {tracked} |");
    println!(
        "| first sweep (all new: Open, file, Metadata + record each) | {:.1} ms |",
        first.as_secs_f64() * 1e3
    );
    println!(
        "| unchanged sweep, mean of {} | {:.2} ms ({:.0} ns/connection) |",
        args.sweeps,
        unchanged.as_secs_f64() * 1e3,
        unchanged.as_secs_f64() * 1e9 / n as f64
    );
    println!(
        "| sweep with 1 % changed | {:.2} ms |",
        one_percent.as_secs_f64() * 1e3
    );
    println!(
        "| RSS growth while segments are open | {:.0} B/connection |",
        per_conn(rss_tracked)
    );
    println!(
        "| RSS growth once segments rotated | {:.0} B/connection |",
        per_conn(rss_idle)
    );
    println!(
        "| archive descriptors open: before / tracking / after rotation | {fds_before} / {fds_tracked} / {fds_idle} |"
    );
    println!("| archive files written | {files} |");
    anyhow::ensure!(tracked == n, "tracked {tracked} of {n} connections");
    anyhow::ensure!(
        fds_before == 0 && fds_tracked > 0 && fds_tracked <= budget,
        "archive descriptors: {fds_tracked} open while tracking, budget {budget}"
    );
    anyhow::ensure!(
        fds_idle == 0,
        "rotated segments kept {fds_idle} descriptors"
    );
    Ok(())
}

/// A sock_diag payload for connection `i`: 10.1.x.y:80 ↔ 10.2.x.y:port, ESTABLISHED.
fn payload(index: usize, acked: u64) -> Vec<u8> {
    let mut msg = vec![0u8; 72];
    msg[0] = 2;
    msg[1] = 1;
    msg[4..6].copy_from_slice(&80u16.to_be_bytes());
    msg[6..8].copy_from_slice(&(1024 + (index % 60_000) as u16).to_be_bytes());
    let [_, hi, mid, lo] = (index as u32).to_be_bytes();
    msg[8..12].copy_from_slice(&[10, 1, hi, mid]);
    msg[24..28].copy_from_slice(&[10, 2, lo, 1]);
    msg[44..52].copy_from_slice(&(index as u64 + 1).to_le_bytes());
    let mut info = vec![0u8; 232];
    info[0] = 1;
    info[120..128].copy_from_slice(&acked.to_le_bytes());
    let attrs: [(u16, &[u8]); 5] = [
        (1, &[0; 16]),
        (2, &info),
        (4, b"cubic\0"),
        (5, &[0]),
        (7, &[0; 36]),
    ];
    for (kind, value) in attrs {
        msg.extend(((value.len() + 4) as u16).to_ne_bytes());
        msg.extend(kind.to_ne_bytes());
        msg.extend(value);
        msg.resize(msg.len().div_ceil(4) * 4, 0);
    }
    msg
}

/// Raises the soft descriptor limit to the hard one; returns a saver budget below it.
fn raise_fd_limit() -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let limit = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard))
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() =>
        {
            hard
        }
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    };
    usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(512)
        .clamp(16, 16_384)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Descriptors of this process open on files under `root` (other threads, such as parallel
/// tests, hold descriptors of their own).
fn open_fds(root: &Path) -> usize {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    std::fs::read_dir("/proc/self/fd").map_or(0, |fds| {
        fds.flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .filter(|target| target.starts_with(&root))
            .count()
    })
}

fn count_files(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() { count_files(&path) } else { 1 }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_tracks_every_connection_and_releases_descriptors() {
        let args = ScaleArgs {
            connections: 2_000,
            sweeps: 2,
            out: None,
        };
        run(&args).unwrap();
    }
}
