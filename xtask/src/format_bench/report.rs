//! The report: machine facts, the Markdown tables and the pass/fail verdict.

use anyhow::{Result, bail};
use serde::Serialize;

use super::sizes::Size;
use super::throughput::Throughput;

/// Everything measured in one run.
#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub machine: Machine,
    pub seconds_per_measurement: f64,
    pub records: usize,
    pub connections: usize,
    pub first_timestamp: String,
    pub step_ms: i64,
    pub zstd_level: i32,
    pub throughput: Vec<Throughput>,
    pub sizes: Vec<Size>,
    pub bar_bytes_per_record: f64,
    pub one_frame_bytes_per_record: f64,
    pub golden_identical: bool,
    pub golden_first_difference: Option<usize>,
}

#[derive(Debug, Serialize)]
pub(super) struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub rustc: String,
    pub profile: &'static str,
    /// `/proc/loadavg` when the run started: other work on the machine skews the figures.
    pub load_average: String,
}

impl Machine {
    /// Reads the current machine's facts.
    pub fn probe() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
        let rustc =
            std::process::Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
                .arg("--version")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map_or_else(
                    || "unknown".to_owned(),
                    |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
                );
        let load_average = std::fs::read_to_string("/proc/loadavg").map_or_else(
            |_| "unknown".to_owned(),
            |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        );
        Self {
            load_average,
            cpu,
            cores: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            kernel,
            rustc,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        }
    }
}

impl Report {
    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let m = &self.machine;
        // Writing to a String cannot fail.
        let _ = writeln!(
            s,
            "## cargo xtask bench-format ({} build, {:.1} s per throughput figure)\n",
            m.profile, self.seconds_per_measurement
        );
        let _ = writeln!(
            s,
            "Machine: {} ({} cores available), Linux {}, {}, load average {} at start.  ",
            m.cpu, m.cores, m.kernel, m.rustc, m.load_average
        );
        let _ = writeln!(
            s,
            "Input: the {} messages of testdata.zst ({} connections); record i stamped {} + i × {} ms; zstd level {}.\n",
            self.records, self.connections, self.first_timestamp, self.step_ms, self.zstd_level
        );
        s.push_str("| stage | records/s | ns/record | records timed |\n|---|---:|---:|---:|\n");
        for t in &self.throughput {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.0} | {} |",
                t.stage, t.records_per_second, t.ns_per_record, t.records
            );
        }
        s.push_str(
            "\n| layout | files | frames | JSON B/record | zstd bytes | zstd B/record |\n\
             |---|---:|---:|---:|---:|---:|\n",
        );
        for z in &self.sizes {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {} | {:.2} |",
                z.layout,
                z.files,
                z.frames,
                z.json_bytes as f64 / z.records as f64,
                z.compressed_bytes,
                z.bytes_per_record
            );
        }
        let pass = |ok: bool| if ok { "PASS" } else { "FAIL" };
        let _ = writeln!(
            s,
            "\n- (a) ≤ {:.0} B/record: {} ({:.2})",
            self.bar_bytes_per_record,
            pass(self.bar_ok()),
            self.one_frame_bytes_per_record
        );
        let _ = writeln!(
            s,
            "- golden: {} lines at the zero time byte-identical to archiveRecords.jsonl.zst: {}{}",
            self.records,
            pass(self.golden_identical),
            self.golden_first_difference
                .map(|l| format!(" (first difference at line {l})"))
                .unwrap_or_default()
        );
        s
    }

    fn bar_ok(&self) -> bool {
        self.one_frame_bytes_per_record <= self.bar_bytes_per_record
    }

    /// The exit status: an error when a bar is missed.
    pub fn verdict(&self) -> Result<()> {
        if !self.bar_ok() {
            bail!(
                "one-frame archive takes {:.2} B/record, above the {:.0} B/record bar",
                self.one_frame_bytes_per_record,
                self.bar_bytes_per_record
            );
        }
        if let Some(line) = self.golden_first_difference {
            bail!("golden conversion differs from archiveRecords.jsonl.zst at line {line}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format_bench::{BAR_BYTES_PER_RECORD, STEP_MS};
    use tcp_info::record::DEFAULT_LEVEL;

    #[test]
    fn verdict_fails_above_the_bar_or_off_golden() {
        let report = |bytes_per_record: f64, golden_first_difference: Option<usize>| Report {
            machine: Machine::probe(),
            seconds_per_measurement: 0.1,
            records: 420,
            connections: 140,
            first_timestamp: String::new(),
            step_ms: STEP_MS,
            zstd_level: DEFAULT_LEVEL,
            throughput: Vec::new(),
            sizes: Vec::new(),
            bar_bytes_per_record: BAR_BYTES_PER_RECORD,
            one_frame_bytes_per_record: bytes_per_record,
            golden_identical: golden_first_difference.is_none(),
            golden_first_difference,
        };
        assert!(report(40.0, None).verdict().is_ok());
        let above = report(40.01, None).verdict().unwrap_err().to_string();
        assert!(above.contains("40.01 B/record"), "{above}");
        let off = report(30.0, Some(7)).verdict().unwrap_err().to_string();
        assert!(off.contains("line 7"), "{off}");
        assert!(
            report(30.0, Some(7))
                .markdown()
                .contains("FAIL (first difference at line 7)")
        );
    }
}
