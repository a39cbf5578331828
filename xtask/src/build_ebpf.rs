//! `cargo xtask build-ebpf`: builds the kernel programs (`tcp-info-ebpf`) for
//! `bpfel-unknown-none` and puts the object where the daemon's build embeds it,
//! `<target>/ebpf/tcp-info-ebpf.o` (see `tcp-info/build.rs`).
//!
//! The toolchain it needs — checked versions, see DEVELOPERS.md — is installed when missing:
//! the nightly toolchain with its `rust-src` (`-Z build-std=core`), and `bpf-linker` 0.10.0
//! (later releases need a system LLVM 23; 0.10 uses the nightly's own LLVM). Without network
//! access the task prints the exact commands instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::workspace_root;

/// The toolchain that builds the programs.
pub const NIGHTLY: &str = "nightly";
/// The bpf-linker release that works with the nightly's LLVM (22).
pub const BPF_LINKER_VERSION: &str = "0.10.0";
/// The LLVM major version of the checked nightly, which bpf-linker 0.10 loads.
const CHECKED_LLVM: &str = "22";
/// The eBPF target.
pub const TARGET: &str = "bpfel-unknown-none";
/// The package holding the programs.
const PACKAGE: &str = "tcp-info-ebpf";

/// Arguments of `cargo xtask build-ebpf`.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildEbpfArgs {
    /// Do not install missing tools: print the commands that would and fail.
    #[arg(long)]
    pub no_install: bool,
}

/// Where the object goes: `<target>/ebpf/tcp-info-ebpf.o`, where the daemon's build script
/// looks for it.
pub fn object_path(target: &Path) -> PathBuf {
    target.join("ebpf").join("tcp-info-ebpf.o")
}

/// The workspace's target directory as cargo resolves it (`CARGO_TARGET_DIR`,
/// `build.target-dir`, or `<workspace>/target`).
fn target_dir(root: &Path) -> anyhow::Result<PathBuf> {
    let out = clean_command("cargo")
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    anyhow::ensure!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    meta.get("target_directory")
        .and_then(serde_json::Value::as_str)
        .map(PathBuf::from)
        .context("cargo metadata has no target_directory")
}

/// Builds the object; returns its path.
pub fn run(args: &BuildEbpfArgs) -> anyhow::Result<PathBuf> {
    ensure_toolchain(args.no_install)?;
    let root = workspace_root();
    let mut cargo = clean_command("cargo");
    cargo
        .current_dir(&root)
        .arg(format!("+{NIGHTLY}"))
        .args([
            "build",
            "--package",
            PACKAGE,
            "--release",
            "--target",
            TARGET,
        ])
        .args(["-Z", "build-std=core"]);
    eprintln!("build-ebpf: {cargo:?}");
    let status = cargo.status().context("running cargo +nightly")?;
    if !status.success() {
        bail!("building {PACKAGE} failed ({status})");
    }
    let target = target_dir(&root)?;
    let built = target.join(TARGET).join("release").join(PACKAGE);
    let object = object_path(&target);
    install_if_changed(&built, &object)?;
    eprintln!("build-ebpf: {}", object.display());
    Ok(object)
}

/// Copies `from` to `to` unless `to` already has the same bytes, so that the daemon is not
/// rebuilt when nothing changed.
fn install_if_changed(from: &Path, to: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    if std::fs::read(to).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let dir = to.parent().context("object path without a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Written beside, then renamed: the daemon's build never sees half an object.
    let tmp = dir.join(".tcp-info-ebpf.o.tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, to).with_context(|| format!("renaming to {}", to.display()))?;
    Ok(())
}

/// A command without the variables the outer `cargo xtask` (stable) or the caller's
/// environment set for host builds, so that the nightly cargo and rustc choose their own
/// toolchain and flags.
pub(crate) fn clean_command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Succeeds if `cmd` runs and exits 0; its output is captured.
fn succeeds(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Makes sure the nightly toolchain, its `rust-src` and bpf-linker are there.
fn ensure_toolchain(no_install: bool) -> anyhow::Result<()> {
    let mut missing: Vec<(&str, Vec<String>)> = Vec::new();
    let nightly = succeeds(
        clean_command("rustc")
            .arg(format!("+{NIGHTLY}"))
            .arg("--print=sysroot"),
    );
    if nightly.is_some() {
        check_llvm()?;
    }
    match nightly {
        None => missing.push((
            "the nightly toolchain with rust-src",
            words(&format!(
                "rustup toolchain install {NIGHTLY} --profile minimal --component rust-src"
            )),
        )),
        Some(sysroot) => {
            let src = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library/core");
            if !src.is_dir() {
                missing.push((
                    "the nightly's rust-src",
                    words(&format!(
                        "rustup component add rust-src --toolchain {NIGHTLY}"
                    )),
                ));
            }
        }
    }
    let linker = succeeds(Command::new("bpf-linker").arg("--version"));
    if !linker.is_some_and(|v| v.contains(BPF_LINKER_VERSION)) {
        missing.push((
            "bpf-linker",
            words(&format!(
                "cargo install bpf-linker --version {BPF_LINKER_VERSION} --locked --force"
            )),
        ));
    }
    for (what, argv) in &missing {
        let line = argv.join(" ");
        if no_install {
            eprintln!("build-ebpf: {what} is missing; install it with: {line}");
            continue;
        }
        eprintln!("build-ebpf: installing {what}: {line}");
        let status = clean_command(&argv[0]).args(&argv[1..]).status();
        if !status.is_ok_and(|s| s.success()) {
            bail!("could not install {what} (no network?). Run, with network access: {line}");
        }
    }
    if no_install && !missing.is_empty() {
        bail!("missing tools (see above); rerun without --no-install to install them");
    }
    Ok(())
}

/// bpf-linker 0.10 links with the nightly's own LLVM and was checked with LLVM 22: a nightly
/// with another major version may produce objects it cannot read, so say so plainly.
fn check_llvm() -> anyhow::Result<()> {
    let Some(version) = succeeds(clean_command("rustc").arg(format!("+{NIGHTLY}")).arg("-vV"))
    else {
        return Ok(());
    };
    let llvm = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .unwrap_or("unknown");
    if !llvm.starts_with(&format!("{CHECKED_LLVM}.")) {
        bail!(
            "the {NIGHTLY} toolchain uses LLVM {llvm}; bpf-linker {BPF_LINKER_VERSION} was checked \
             with LLVM {CHECKED_LLVM} (nightly 1.97, 2026-05-19): install that nightly \
             (`rustup toolchain install nightly-2026-05-19 --component rust-src`) and make it \
             the `{NIGHTLY}` toolchain, or see DEVELOPERS.md"
        );
    }
    Ok(())
}

fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}
