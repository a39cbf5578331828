#!/usr/bin/env bash
# Sets up a fresh machine, builds the daemon in release mode and runs it with the given flags
# (m-lab/tcp-info flags; see `tcp-info --help`). Without flags it records every TCP connection of
# this host's network namespace under ./tcpinfo-out with metrics on 127.0.0.1:9990.
# Needs root (or CAP_NET_ADMIN for the close source). Stop it with Ctrl-C: it shuts down cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -p tcp-info --bins
if [ "$#" -eq 0 ]; then
    set -- -output=tcpinfo-out -prometheusx.listen-address=127.0.0.1:9990
fi
exec target/release/tcp-info "$@"
