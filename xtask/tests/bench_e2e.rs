//! End-to-end tests of `cargo xtask workload` and `cargo xtask bench` on real namespaces.
//!
//! They need root (network namespaces). Without root they skip with a message, except under
//! `CI=true`, where they fail.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs root and CI=true forbids skipping it"
    );
    eprintln!("skipping {test}: needs root to create network namespaces");
    false
}

/// Namespaces created by process `pid` (see `workload::netns`).
fn namespaces_of(pid: u32) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(&format!("tib{pid}x")))
                .collect()
        })
        .unwrap_or_default()
}

/// Pids of live processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) && pid != std::process::id() {
            out.push(pid);
        }
    }
    out
}

fn results(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap()
}

fn overall(trial: &serde_json::Value) -> (u64, u64, u64, u64) {
    let cov = &trial["collector_result"]["coverage"]["per_class"];
    let sum = |k: &str| (0..3).map(|i| cov[i][k].as_u64().unwrap()).sum::<u64>();
    (sum("total"), sum("seen"), sum("gradable"), sum("exact"))
}

/// Short trials: the coverage self-test on a real workload, graded from real archives.
const FAST: [&str; 10] = [
    "--window",
    "1",
    "--warmup",
    "0.5",
    "--collector-startup",
    "0.3",
    "--drain",
    "0.3",
    "--short-rate",
    "100",
];

#[test]
fn fake_collectors_score_as_designed_on_a_real_workload() {
    if !require_root("fake_collectors_score_as_designed_on_a_real_workload") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(XTASK)
        .args(["bench", "--n", "300", "--no-baseline", "--repeat", "1"])
        .args(FAST)
        .args([
            "--collector",
            "fake-faithful",
            "--collector",
            "fake-drop-third",
        ])
        .args(["--collector", "fake-stale", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r = results(dir.path());
    let trials = r["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 3);
    for t in trials {
        assert!(t["error"].is_null(), "{t}");
        assert_eq!(t["truth"]["inconsistent"], 0);
        let (total, seen, gradable, exact) = overall(t);
        assert!(total >= 300 + 4 + 50, "{t}");
        match t["collector"].as_str().unwrap() {
            "fake-faithful" => assert_eq!((seen, exact), (total, gradable)),
            "fake-drop-third" => {
                let f = seen as f64 / total as f64;
                assert!((f - 2.0 / 3.0).abs() < 0.02, "seen fraction {f}");
                assert_eq!(seen, exact);
            }
            "fake-stale" => assert_eq!((seen, exact), (total, 0)),
            other => panic!("unexpected collector {other}"),
        }
    }
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(
        md.contains("## Coverage self-test") && md.contains("| pass |"),
        "{md}"
    );
    assert!(!md.contains("FAIL"), "{md}");
    for svg in ["cpu_vs_n.svg", "rss_vs_n.svg"] {
        assert!(dir.path().join(svg).is_file(), "{svg} missing");
    }
    // The report also went to stdout.
    assert!(String::from_utf8_lossy(&out.stdout).contains("# Collector benchmark"));
}

/// A "daemon" that writes nothing must fail the coverage gate (exit non-zero).
#[test]
fn a_daemon_that_records_nothing_fails_the_gate() {
    if !require_root("a_daemon_that_records_nothing_fails_the_gate") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fake_daemon = dir.path().join("tcp-info");
    std::fs::write(&fake_daemon, "#!/bin/sh\nexec sleep 1000\n").unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&fake_daemon)
        .status()
        .unwrap();
    let run = dir.path().join("run");
    let out = Command::new(XTASK)
        .args(["bench", "--n", "50", "--no-baseline", "--repeat", "1"])
        .args(["--collector", "tcp-info-sweep"])
        .args(FAST)
        .arg("--tcp-info-bin")
        .arg(&fake_daemon)
        .arg("--out-dir")
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("saw 0.0% of idle connections (< --min-coverage 0.5)"),
        "{stderr}"
    );
    let r = results(&run);
    let (total, seen, _, exact) = overall(&r["trials"][0]);
    assert!(total > 50);
    assert_eq!((seen, exact), (0, 0));
}

#[test]
fn workload_command_writes_consistent_truth_and_cleans_up() {
    if !require_root("workload_command_writes_consistent_truth_and_cleans_up") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("truth.jsonl");
    let child = Command::new(XTASK)
        .args([
            "workload",
            "--idle",
            "2500",
            "--idle-per-worker",
            "1000",
            "--duration",
            "1.5",
        ])
        .arg("--truth")
        .arg(&truth)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ground truth consistent"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("over 3 worker process(es)"),
        "2500 idle at 1000 per worker needs 3 workers"
    );
    let text = std::fs::read_to_string(&truth).unwrap();
    let idle = text
        .lines()
        .filter(|l| l.contains(r#""class":"idle""#))
        .count();
    let bulk = text
        .lines()
        .filter(|l| l.contains(r#""class":"bulk""#))
        .count();
    let short = text
        .lines()
        .filter(|l| l.contains(r#""class":"short""#))
        .count();
    assert_eq!((idle, bulk), (2500, 4));
    assert!(short >= 30, "{short} short connections in 1.5 s at 50/s");
    assert!(
        namespaces_of(pid).is_empty(),
        "namespaces left: {:?}",
        namespaces_of(pid)
    );
}

/// Ctrl-C in the middle of a trial removes namespaces, workers and the collector.
#[test]
fn ctrl_c_tears_everything_down() {
    if !require_root("ctrl_c_tears_everything_down") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("{}", 900_000 + std::process::id() % 99_999);
    let mut child = Command::new(XTASK)
        .args([
            "bench",
            "--n",
            "500",
            "--no-baseline",
            "--window",
            "60",
            "--repeat",
            "1",
        ])
        .arg("--collector")
        .arg(format!("sleeper=exec sleep {marker}"))
        .arg("--out-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait until the collector runs and the workload workers are up.
    let start = Instant::now();
    loop {
        let ns = namespaces_of(pid);
        let workers = ns.first().map_or(0, |n| processes_with(n).len());
        if ns.len() == 2 && workers > 0 && !processes_with(&format!("sleep {marker}")).is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "bench never got going"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let ns = namespaces_of(pid);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGINT,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "bench did not exit after SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        namespaces_of(pid).is_empty(),
        "namespaces left: {:?}",
        namespaces_of(pid)
    );
    for n in &ns {
        assert!(processes_with(n).is_empty(), "workers of {n} still running");
    }
    assert!(
        processes_with(&format!("sleep {marker}")).is_empty(),
        "collector still running"
    );
}
