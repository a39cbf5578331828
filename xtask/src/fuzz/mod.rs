//! `cargo xtask fuzz`: builds the cargo-fuzz targets in `fuzz/` and runs each for a while, on
//! seed corpora made from the m-lab fixtures, with the committed findings of earlier runs
//! (`fuzz/regressions/<target>/`) replayed first. CI runs every target briefly; a long run is
//! the same command with `--seconds 1800`. Exits non-zero if any target finds a crash, a leak,
//! an allocation over the limit or a timeout; libFuzzer leaves the input in
//! `fuzz/artifacts/<target>/`.

mod seeds;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::Args;

use crate::build_ebpf::{NIGHTLY, clean_command};

/// Every fuzz target (`fuzz/fuzz_targets/<name>.rs`).
pub const TARGETS: &[&str] = &[
    "netlink_splitter",
    "json_line",
    "archive_reader",
    "event_line",
    "flags",
    "btf",
    "api_query",
];
/// The cargo-fuzz release this project was checked with.
const CARGO_FUZZ_VERSION: &str = "0.13.1";
/// Largest input, by target: archives need room for a few frames, the rest are small.
fn max_len(target: &str) -> usize {
    match target {
        "archive_reader" => 64 * 1024,
        "btf" | "netlink_splitter" => 8 * 1024,
        _ => 4 * 1024,
    }
}

/// Arguments of `cargo xtask fuzz`.
#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Seconds to run each target (CI: a short run; a long run: 1800 or more).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Targets to run (default: all).
    targets: Vec<String>,
}

/// What one run found.
#[derive(Debug)]
struct Outcome {
    target: String,
    executions: Option<u64>,
    coverage: Option<u64>,
    corpus: Option<u64>,
    seconds: f64,
    failed: bool,
}

/// `cargo xtask fuzz`: builds every target, seeds and runs the chosen ones, prints a table of
/// executions, coverage and corpus size, and fails if any target found something.
pub fn run(args: &FuzzArgs) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let fuzz = root.join("fuzz");
    let fixtures = root.join("../shared/fixtures/m-lab");
    if !fixtures.is_dir() {
        bail!(
            "no fixtures at {} (the seeds come from them)",
            fixtures.display()
        );
    }
    let targets: Vec<String> = if args.targets.is_empty() {
        TARGETS.iter().map(|t| (*t).to_owned()).collect()
    } else {
        args.targets.clone()
    };
    for target in &targets {
        if !TARGETS.contains(&target.as_str()) {
            bail!(
                "unknown fuzz target {target:?}; the targets are {}",
                TARGETS.join(", ")
            );
        }
    }
    let nightly = Command::new("rustc")
        .arg(format!("+{NIGHTLY}"))
        .arg("--version")
        .output();
    if !nightly.is_ok_and(|o| o.status.success()) {
        bail!(
            "no {NIGHTLY} toolchain (libFuzzer needs its sanitizer flags): run `cargo xtask \
             build-ebpf`, which installs it, or `rustup toolchain install {NIGHTLY}`"
        );
    }
    ensure_cargo_fuzz()?;
    let corpus = fuzz.join("corpus");
    write_dictionaries(&root, &corpus)?;
    let build = cargo_fuzz(&fuzz)
        .args(["build", "--debug-assertions"])
        .status();
    if !build.context("running cargo fuzz build")?.success() {
        bail!("cargo fuzz build failed");
    }
    let mut outcomes = Vec::new();
    for target in &targets {
        let seeded = seeds::write(target, &fixtures, &fuzz.join("seeds"), &corpus)?;
        println!("fuzz: {target}: {seeded} seeds, {} s", args.seconds);
        outcomes.push(run_target(&fuzz, &corpus, target, args.seconds)?);
    }
    println!(
        "\n{:<18} {:>12} {:>8} {:>8} {:>8}  result",
        "target", "executions", "cov", "corpus", "seconds"
    );
    for o in &outcomes {
        let show = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
        println!(
            "{:<18} {:>12} {:>8} {:>8} {:>8.0}  {}",
            o.target,
            show(o.executions),
            show(o.coverage),
            show(o.corpus),
            o.seconds,
            if o.failed {
                "FAILED (see fuzz/artifacts)"
            } else {
                "no finding"
            }
        );
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.failed)
        .map(|o| o.target.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("fuzzing found failures in: {}", failed.join(", "));
    }
    Ok(())
}

/// `cargo +nightly fuzz` in `fuzz/`, with the outer cargo's variables removed.
fn cargo_fuzz(fuzz: &Path) -> Command {
    let mut cmd = clean_command("cargo");
    cmd.current_dir(fuzz).arg(format!("+{NIGHTLY}")).arg("fuzz");
    cmd
}

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION)
        });
    if installed {
        return Ok(());
    }
    println!("fuzz: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    let status = clean_command("cargo")
        .args([
            "install",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
            "--locked",
            "--force",
        ])
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz {CARGO_FUZZ_VERSION} failed");
    }
    Ok(())
}

fn run_target(fuzz: &Path, corpus: &Path, target: &str, seconds: u64) -> anyhow::Result<Outcome> {
    let mut dirs: Vec<PathBuf> = vec![corpus.join(target)];
    let regressions = fuzz.join("regressions").join(target);
    if regressions.is_dir() {
        dirs.push(regressions);
    }
    let mut cmd = cargo_fuzz(fuzz);
    cmd.args(["run", "--debug-assertions", target])
        .args(&dirs)
        .arg("--");
    cmd.arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={}", max_len(target)))
        // Each input's time and memory: a hang or a huge allocation is a finding too.
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-malloc_limit_mb=512")
        .arg("-print_final_stats=1");
    // A dictionary made from the sources (see `write_dictionaries`), or the committed one of
    // archive JSON keys for the targets that read archive lines.
    let made = corpus.join(format!("{target}.dict"));
    let committed = fuzz.join("dicts/json_line.dict");
    let dict = if made.is_file() {
        Some(made)
    } else {
        matches!(target, "json_line" | "archive_reader").then_some(committed)
    };
    if let Some(dict) = dict {
        cmd.arg(format!("-dict={}", dict.display()));
    }
    let started = Instant::now();
    let output = cmd
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running cargo fuzz run {target}"))?;
    let log = String::from_utf8_lossy(&output.stderr);
    // libFuzzer's log is long: keep its start, its findings and its end.
    for line in log.lines().filter(|l| is_worth_showing(l)) {
        eprintln!("{target}: {line}");
    }
    let stat = |name: &str| {
        log.lines()
            .filter_map(|l| l.strip_prefix(name))
            .filter_map(|rest| rest.trim().parse().ok())
            .next_back()
    };
    let last_status = log
        .lines()
        .rfind(|l| l.contains(" cov: ") && l.contains(" corp: "))
        .unwrap_or("");
    let field = |name: &str| {
        last_status
            .split_whitespace()
            .skip_while(|w| *w != name)
            .nth(1)
            .and_then(|v| v.split('/').next())
            .and_then(|v| v.parse().ok())
    };
    Ok(Outcome {
        target: target.to_owned(),
        executions: stat("stat::number_of_executed_units:"),
        coverage: field("cov:"),
        corpus: field("corp:"),
        seconds: started.elapsed().as_secs_f64(),
        failed: !output.status.success(),
    })
}

fn is_worth_showing(line: &str) -> bool {
    line.starts_with("==")
        || line.starts_with("SUMMARY")
        || line.contains("panicked")
        || line.contains("Done ")
        || line.contains("INITED")
        || line.starts_with("artifact_prefix")
        || line.starts_with("Test unit written")
        || line.starts_with("stat::")
        || line.starts_with("Error")
}

/// libFuzzer dictionaries, from the sources: the daemon's flag names (as flags and as
/// environment variables) and the BTF names the loader looks up.
fn write_dictionaries(root: &Path, corpus: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let flags_rs = root.join("tcp-info/src/bin/tcp-info/cli/flags.rs");
    let source =
        std::fs::read_to_string(&flags_rs).with_context(|| flags_rs.display().to_string())?;
    let mut entries = Vec::new();
    for name in string_literals(&source, "const ") {
        let env: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        entries.extend([format!("-{name}="), format!("--{name}"), env]);
    }
    entries.extend(
        [
            "true",
            "false",
            "0",
            "1s",
            "10ms",
            "-1",
            "sweep",
            "ebpf",
            "auto",
            "all",
            "self",
            "none",
            "netblock",
            "127.0.0.1:0",
            "[::1]:9990",
            "/run/x.sock",
            "10.0.0.0/8",
            "::1/128",
            "-help",
            "-version",
        ]
        .map(str::to_owned),
    );
    write_dict(&corpus.join("flags.dict"), &entries)?;
    let btf_rs = root.join("tcp-info/src/ebpf/btf.rs");
    let source = std::fs::read_to_string(&btf_rs).with_context(|| btf_rs.display().to_string())?;
    let names: Vec<String> = string_literals(&source, "")
        .into_iter()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .collect();
    write_dict(&corpus.join("btf.dict"), &names)?;
    let query = [
        "port=",
        "state=",
        "sort=",
        "order=",
        "limit=",
        "fresh=",
        "asc",
        "desc",
        "rtt",
        "cwnd",
        "age",
        "delivery_rate",
        "ESTABLISHED",
        "%",
        "+",
        "&",
    ];
    write_dict(&corpus.join("api_query.dict"), &query.map(str::to_owned))
}

/// The `"…"` literals on lines containing `marker` (plain ASCII, no escapes).
fn string_literals(source: &str, marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in source.lines().filter(|l| l.contains(marker)) {
        let mut parts = line.split('"');
        parts.next();
        while let (Some(literal), Some(_)) = (parts.next(), parts.next()) {
            if literal.is_ascii() && !literal.contains('\\') && !out.iter().any(|o| o == literal) {
                out.push(literal.to_owned());
            }
        }
    }
    out
}

fn write_dict(path: &Path, entries: &[String]) -> anyhow::Result<()> {
    let mut text = String::new();
    for entry in entries {
        text.push('"');
        text.push_str(entry);
        text.push_str("\"\n");
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
