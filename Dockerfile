# tcp-info container image: the statically linked daemon and csvtool, nothing else.
#
#   docker build --build-arg GIT_COMMIT="$(git rev-parse --short HEAD)" \
#       -t registry.example.com/tcp-info:0.1.0 .          # set your registry
#   (`podman build` / `buildah bud` take the same arguments.)
#
# The build runs the commands CI runs (`cargo xtask build-ebpf`, then `cargo build --release -p
# tcp-info --bins`) with the toolchains DEVELOPERS.md checks. `bash scripts/check-deploy.sh` lints
# this file (hadolint, checkov); deploy/ has the Kubernetes manifests, deploy/README.md explains
# them.

# ---------------------------------------------------------------------------------------------
# Build stage. Debian 12 at an exact point release, the system the project's machines run.
# Not pinned by digest: a digest can only be read from the registry, which the machines this
# project is developed on cannot reach. Where you can, pin it as
# `FROM debian:12.11@sha256:<digest>` (from `docker buildx imagetools inspect debian:12.11`).
FROM debian:12.11 AS build

# Pinned tools (DEVELOPERS.md, "Toolchains and checked versions").
# rustup-init 1.29.0 for x86_64-unknown-linux-gnu; its SHA-256 is the one published beside it
# (static.rust-lang.org/rustup/archive/1.29.0/x86_64-unknown-linux-gnu/rustup-init.sha256) and
# was checked against the downloaded binary.
ARG RUSTUP_VERSION=1.29.0
ARG RUSTUP_SHA256=4acc9acc76d5079515b46346a485974457b5a79893cfb01112423c89aeb5aa10
# Stable, as rust-toolchain.toml pins it; the nightly that builds the eBPF programs
# (1.97.0-nightly 2026-05-19, LLVM 22, which bpf-linker 0.10 loads).
ARG RUST_STABLE=1.95.0
ARG RUST_NIGHTLY=nightly-2026-05-20
ARG BPF_LINKER_VERSION=0.10.0
# The short git commit for the git_short_commit metric and `tcp-info -version`
# (.git is not part of the build context).
ARG GIT_COMMIT=""

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# A C compiler and libc (zstd-sys builds C; libc.a for the static link), curl and CA
# certificates for rustup. Versions come from the pinned point release and its security
# updates: Debian removes superseded package versions, so exact `=version` pins would break
# the build at the next security update.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates curl gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*

ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# rustup-init, verified before it runs (an empty checksum, `--build-arg RUSTUP_SHA256=`, fails
# here instead of running an unverified installer); the stable toolchain; the dated nightly with
# rust-src. `cargo xtask build-ebpf` runs `cargo +nightly`, so `nightly` is made this dated
# nightly: rustup refuses `toolchain link` to a channel name, and a toolchain directory symlink
# is what it reads. The nightly's LLVM must be 22 (bpf-linker 0.10 loads it). bpf-linker is
# built by the stable toolchain, as `cargo xtask build-ebpf` itself would install it.
RUN test -n "${RUSTUP_SHA256}" \
        || { echo "RUSTUP_SHA256 is empty: set it to rustup-init ${RUSTUP_VERSION}'s SHA-256" >&2; exit 1; } \
 && curl --proto '=https' --tlsv1.2 -sSfo /tmp/rustup-init \
        "https://static.rust-lang.org/rustup/archive/${RUSTUP_VERSION}/x86_64-unknown-linux-gnu/rustup-init" \
 && echo "${RUSTUP_SHA256}  /tmp/rustup-init" | sha256sum -c - \
 && chmod 0755 /tmp/rustup-init \
 && /tmp/rustup-init -y --no-modify-path --profile minimal \
        --default-toolchain "${RUST_STABLE}" --component rustfmt,clippy \
 && rm /tmp/rustup-init \
 && rustup toolchain install "${RUST_NIGHTLY}" --profile minimal --component rust-src \
 && ln -s "${RUST_NIGHTLY}-x86_64-unknown-linux-gnu" \
        "${RUSTUP_HOME}/toolchains/nightly-x86_64-unknown-linux-gnu" \
 && rustc +nightly -vV | grep -q '^LLVM version: 22\.' \
 && cargo install bpf-linker --version "${BPF_LINKER_VERSION}" --locked \
 && rm -rf "${CARGO_HOME}/registry" "${CARGO_HOME}/git"

WORKDIR /src
COPY . .

# The eBPF object first, then the daemon and csvtool with it embedded, statically linked
# (glibc, `+crt-static`: the runtime stage has no libc). tcp-info/build.rs finds the object
# under target/ in `--target` builds too; it is named explicitly all the same, and checked
# before the build and (`tcp-info -version`) after it: an image never ships without it. A static
# glibc binary cannot load NSS modules: the metrics listen address must be numeric or empty
# (`:9990`), as the defaults below are.
ENV TCP_INFO_EBPF_OBJECT=/src/target/ebpf/tcp-info-ebpf.o \
    TCP_INFO_GIT_COMMIT=${GIT_COMMIT}
RUN cargo xtask build-ebpf \
 && test -s "${TCP_INFO_EBPF_OBJECT}" \
 && RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build --release -p tcp-info --bins --target x86_64-unknown-linux-gnu \
 && mkdir /out \
 && for bin in tcp-info csvtool; do \
        path="target/x86_64-unknown-linux-gnu/release/${bin}"; \
        if readelf -l "${path}" | grep 'program interpreter' >/dev/null; then \
            echo "${bin} is dynamically linked" >&2; exit 1; \
        fi; \
        cp "${path}" "/out/${bin}"; \
    done \
 && /out/tcp-info -version | tee /dev/stderr | grep '^eBPF programs: embedded' >/dev/null

# ---------------------------------------------------------------------------------------------
# Runtime stage: the two static binaries and nothing else (no shell, no libc, no zstd binary:
# compression is in-process).
FROM scratch

# The version is the workspace's (Cargo.toml; scripts/check-deploy.sh checks they agree). The
# source URL is a placeholder: set your repository.
LABEL org.opencontainers.image.title="tcp-info" \
      org.opencontainers.image.description="Linux TCP statistics collector (tcp_info for every connection, m-lab/tcp-info archive format), eBPF-assisted" \
      org.opencontainers.image.source="https://git.example.com/tcp-info" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"

COPY --from=build /out/tcp-info /tcp-info
COPY --from=build /out/csvtool /csvtool

# Prometheus metrics on /metrics and the readiness probe on /ready (200 after the first
# completed sweep or the first drained eBPF marks, 503 before), both on
# -prometheusx.listen-address.
EXPOSE 9990

# User 0, deliberately. The daemon needs capabilities (CAP_NET_ADMIN for the sock_diag destroy
# groups and SO_RCVBUFFORCE; CAP_BPF and CAP_PERFMON for eBPF mode; CAP_SYS_ADMIN and
# CAP_SYS_PTRACE for --netns all), and a non-root user only gets capabilities from file
# capabilities or ambient ones: Kubernetes sets no ambient capabilities, and file capabilities
# are ignored under no_new_privs (allowPrivilegeEscalation: false). So the process starts as
# uid 0 with exactly the capabilities the manifest adds (everything else dropped), and drops
# those it no longer needs itself after start-up (see deploy/README.md).
# hadolint ignore=DL3002
USER 0:0

# No HEALTHCHECK: there is no shell or HTTP client in the image to run one. Orchestrators probe
# over HTTP instead: Kubernetes httpGet on /ready (readiness) and /metrics (liveness), see
# deploy/daemonset.yaml.
# checkov:skip=CKV_DOCKER_2:no shell or HTTP client in a FROM scratch image; Kubernetes probes /ready and /metrics with httpGet
# checkov:skip=CKV_DOCKER_3:the daemon must start as uid 0 to hold its capabilities (see the USER comment); the manifests drop every capability not needed
# checkov:skip=CKV_DOCKER_8:same reason as CKV_DOCKER_3: uid 0 with a bounded capability set, not a general-purpose root user

ENTRYPOINT ["/tcp-info"]
# Archives under /var/spool/tcpinfo (mount a volume there), metrics and /ready on port 9990 of
# every address. Override to add -uuid-prefix-file, -tcpinfo.eventsocket, --mode, --netns...
CMD ["-output=/var/spool/tcpinfo", "-prometheusx.listen-address=:9990"]
