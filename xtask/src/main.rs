//! Developer and CI tasks.
//!
//! - `cargo xtask build-ebpf`: the kernel programs' object, embedded by the daemon's build;
//! - `cargo xtask bench`: the workload and collector benchmark (see `bench`);
//! - `cargo xtask workload`: the workload alone, writing its ground truth;
//! - `cargo xtask bench-format`: the archive-format benchmark;
//! - `cargo xtask fuzz`: the fuzz targets in `fuzz/`, briefly (CI) or long;
//! - `cargo xtask soak`: an hour of churn per mode, RSS and descriptors over time.
mod bench;
mod bench_scale;
mod build_ebpf;
mod format_bench;
mod fuzz;
mod interrupt;
mod soak;
mod timefmt;
mod workload;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Developer and CI tasks for tcp-info")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build the eBPF programs (tcp-info-ebpf) into the object the daemon embeds, installing
    /// the nightly's rust-src and bpf-linker if they are missing.
    BuildEbpf(build_ebpf::BuildEbpfArgs),
    /// Measure collectors (CPU, memory, output, coverage, data-path cost) on the workload.
    Bench(Box<bench::BenchArgs>),
    /// Measure the pipeline and saver tracking N synthetic connections (memory, fds, sweep time).
    BenchScale(bench_scale::ScaleArgs),
    /// Run the workload alone (between two network namespaces) and write its ground truth.
    Workload(workload::WorkloadArgs),
    /// Benchmark the archive format (every argument, `--help` included, goes to it).
    #[command(disable_help_flag = true)]
    BenchFormat {
        /// Arguments passed to the format benchmark.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Soak the daemon: an hour of churn per mode (side by side), RSS and descriptors sampled,
    /// every connection graded against the ground truth.
    Soak(soak::SoakArgs),
    /// Run the fuzz targets (cargo-fuzz, nightly) on seeds from the m-lab fixtures.
    Fuzz(fuzz::FuzzArgs),
    /// Internal: one workload worker process, driven over stdin/stdout.
    #[command(hide = true)]
    WorkloadWorker {
        /// The worker process's parts (a list of plans), as JSON.
        #[arg(long)]
        plan: String,
        /// Where to write this worker's ground truth.
        #[arg(long)]
        truth: PathBuf,
    },
    /// Internal: a fake collector writing archives from the ground truth (self-test).
    #[command(hide = true)]
    FakeCollector(bench::fake::FakeArgs),
    /// Internal: run a command every interval until SIGTERM (the `ss` baseline).
    #[command(hide = true)]
    Repeat(bench::repeat::RepeatArgs),
}

/// The workspace root (the parent of this crate's directory).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::BuildEbpf(args) => build_ebpf::run(&args).map(drop),
        Cmd::Bench(args) => {
            let interrupt = interrupt::Interrupt::install()?;
            bench::run(&args, &interrupt)
        }
        Cmd::FakeCollector(args) => {
            let interrupt = interrupt::Interrupt::install()?;
            bench::fake::run_fake_collector(&args, &interrupt)
        }
        Cmd::Repeat(args) => {
            let interrupt = interrupt::Interrupt::install()?;
            bench::repeat::run(&args, &interrupt).map(drop)
        }
        Cmd::Workload(args) => {
            let interrupt = interrupt::Interrupt::install()?;
            workload::run_standalone(&args, &interrupt)
        }
        Cmd::BenchFormat { args } => format_bench::run(&args),
        Cmd::Fuzz(args) => fuzz::run(&args),
        Cmd::Soak(args) => {
            let interrupt = interrupt::Interrupt::install()?;
            soak::run(&args, &interrupt)
        }
        Cmd::BenchScale(args) => bench_scale::run(&args),
        Cmd::WorkloadWorker { plan, truth } => {
            let plan: workload::driver::ProcessPlan =
                serde_json::from_str(&plan).map_err(|e| anyhow::anyhow!("bad --plan: {e}"))?;
            workload::worker::serve(&plan, &truth)
        }
    }
}
