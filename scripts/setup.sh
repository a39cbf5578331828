#!/usr/bin/env bash
# Installs what this project needs on a fresh Debian 12 machine of the project's kind, and
# nothing when it is already there. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# A C compiler and libc headers: zstd-sys builds C, and every binary links with cc.
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
# A C++ compiler: libFuzzer (libfuzzer-sys, `cargo xtask fuzz`) is C++.
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v ss >/dev/null 2>&1 || need_apt+=(iproute2)
command -v zstd >/dev/null 2>&1 || need_apt+=(zstd)
# Headless Chromium and its WebDriver: the end-to-end test of the API's live page drives them.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
if ((${#need_apt[@]})); then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
    else
        echo "setup: please install: ${need_apt[*]}" >&2
    fi
fi

# The toolchain named in rust-toolchain.toml, with rustfmt and clippy.
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# The eBPF programs: `cargo xtask build-ebpf` installs what it needs when missing (the nightly's
# rust-src, bpf-linker 0.10.0) and writes the object the daemon's build embeds. Without it the
# daemon still builds and runs, in sweep mode only — but CI must test eBPF mode, so there a
# failure here is fatal.
if ! cargo xtask build-ebpf; then
    if [ "${CI:-}" = "true" ]; then
        echo "setup: building the eBPF programs failed (fatal under CI=true)" >&2
        exit 1
    fi
    echo "setup: building the eBPF programs failed; the daemon will run in sweep mode only" >&2
fi
