#!/usr/bin/env bash
# Dependency hygiene, run by CI: `cargo deny` (licenses, one version of each crate, crates.io
# only; see deny.toml) and a build with the toolchain named by `rust-version`, so that the
# declared minimum is a checked fact. Installs cargo-deny and that toolchain when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# cargo-deny 0.20 needs Rust 1.88; --locked builds it with the versions it was tested with.
CARGO_DENY_VERSION=0.20.2
if ! cargo deny --version 2>/dev/null | grep -qF "$CARGO_DENY_VERSION"; then
    cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked
fi
# Advisories need the RustSec database from github.com, which the CI machines cannot reach;
# the other checks need nothing beyond crates.io.
cargo deny --all-features check bans licenses sources

msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
[ -n "$msrv" ] || { echo "check-deps: no rust-version in Cargo.toml" >&2; exit 1; }
rustup toolchain install "$msrv" --profile minimal >/dev/null
# Its own target directory: artifacts of two compilers do not mix.
CARGO_TARGET_DIR=target/msrv cargo +"$msrv" check --workspace --all-targets
