//! Bakes the short git commit into the daemon for the `git_short_commit` metric (SPEC §9.2).
//! `TCP_INFO_GIT_COMMIT` in the build environment wins (image builds without `.git`).

use std::process::Command;

fn main() {
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
