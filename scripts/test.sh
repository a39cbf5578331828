#!/usr/bin/env bash
# Runs every test of the workspace. End-to-end tests need root (network namespaces, sock_diag
# multicast); as a normal user they skip with a printed reason, under CI=true they must run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --workspace --all-targets
cargo test --workspace --doc
cargo test --workspace --all-targets -- --test-threads="${TEST_THREADS:-4}"
# The end-to-end suite once more with the daemon in eBPF mode (the run above used sweep mode);
# eBPF mode never falls back here, so this fails if the programs cannot load.
TCP_INFO_E2E_MODE=ebpf cargo test -p tcp-info-tests --all-targets -- --test-threads="${TEST_THREADS:-4}"
