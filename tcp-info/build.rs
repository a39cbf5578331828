//! Build-time inputs of the daemon:
//! - the short git commit, for the `git_short_commit` metric (SPEC §9.2);
//!   `TCP_INFO_GIT_COMMIT` in the build environment wins (image builds without `.git`);
//! - the eBPF object, embedded when `cargo xtask build-ebpf` has put it at
//!   `<target>/ebpf/tcp-info-ebpf.o` (or `TCP_INFO_EBPF_OBJECT` names it); without it the daemon
//!   builds and runs in sweep mode only.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    git_commit();
    ebpf_object();
}

fn git_commit() {
    println!("cargo:rerun-if-env-changed=TCP_INFO_GIT_COMMIT");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
    let commit = std::env::var("TCP_INFO_GIT_COMMIT").ok().or_else(|| {
        let out = Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    println!(
        "cargo:rustc-env=TCP_INFO_GIT_COMMIT={}",
        commit.unwrap_or_default()
    );
}

fn ebpf_object() {
    println!("cargo::rustc-check-cfg=cfg(tcp_info_ebpf)");
    // The parser side alone (`--no-default-features`) has no use for the programs.
    if std::env::var_os("CARGO_FEATURE_COLLECTOR").is_none() {
        return;
    }
    println!("cargo:rerun-if-env-changed=TCP_INFO_EBPF_OBJECT");
    let object = if let Some(path) = std::env::var_os("TCP_INFO_EBPF_OBJECT") {
        PathBuf::from(path)
    } else if let Some(target) = target_dir() {
        // The directory `cargo xtask build-ebpf` writes to. Created if missing, because a
        // missing watched path would rerun this script (and rebuild the crate) every time.
        let dir = target.join("ebpf");
        let _ = std::fs::create_dir_all(&dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        dir.join("tcp-info-ebpf.o")
    } else {
        println!("cargo:warning=cannot locate the target directory: no eBPF object embedded");
        return;
    };
    if object.is_file() {
        println!("cargo:rerun-if-changed={}", object.display());
        println!("cargo:rustc-cfg=tcp_info_ebpf");
        println!("cargo:rustc-env=TCP_INFO_EBPF_OBJECT={}", object.display());
    } else {
        println!(
            "cargo:warning=no eBPF object at {}: this daemon runs in sweep mode only (run `cargo xtask build-ebpf` first)",
            object.display()
        );
    }
}

/// The target directory this build writes to, however it was chosen (default, `--target-dir`,
/// `CARGO_TARGET_DIR`, `build.target-dir`): the nearest ancestor of `OUT_DIR`
/// (`<target>/[<triple>/]<profile>/build/<package>-<hash>/out`) holding cargo's `CACHEDIR.TAG`,
/// or its parent when that ancestor is the `<triple>` directory of a `--target` build (cargo
/// tags both).
fn target_dir() -> Option<PathBuf> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR")?);
    let tagged = out
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())?;
    let triple = std::env::var_os("TARGET");
    match tagged.parent() {
        Some(parent)
            if triple.is_some_and(|t| tagged.file_name() == Some(t.as_os_str()))
                && parent.join("CACHEDIR.TAG").is_file() =>
        {
            Some(parent.to_path_buf())
        }
        _ => Some(tagged.to_path_buf()),
    }
}
