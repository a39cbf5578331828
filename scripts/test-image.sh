#!/usr/bin/env bash
# Builds the container image from ./Dockerfile with buildah, without Docker and without an image
# registry, and runs the daemon from it:
#
#   bash scripts/test-image.sh                 build localhost/tcp-info:test, then test it
#   bash scripts/test-image.sh --reuse-image   test an existing localhost/tcp-info:test
#
# As root on Debian 12. The build compiles the whole project in release mode inside the image:
# 5-30 minutes on 2 cores, depending on the network. No intermediate image is kept (no --layers:
# the build stage weighs about 4 GB and each build would leave another one).
#
#  1. Installs buildah, runc, debootstrap, curl and python3 with apt-get when missing.
#  2. The build stage's base image (the Dockerfile's first FROM, e.g. debian:12.11, resolved as
#     docker.io/library/debian:12.11 like Docker and buildah's short-name alias do): used from
#     local storage if there, else pulled; if it cannot be pulled (no registry reachable), made
#     with `debootstrap --variant=minbase bookworm` from the Debian mirror and committed under
#     exactly that name. Such an image holds the mirror's current bookworm point release, not
#     necessarily the tag's: the script says so.
#  3. `buildah bud --format docker --network host --pull=never --build-arg
#     GIT_COMMIT=...`, tagged localhost/tcp-info:test, with the host's extra CA certificates
#     (a TLS-inspecting proxy's) visible to the RUN steps only; prints the image's size.
#  4. Runs the image with `buildah run` (see "Why buildah run with runc" below):
#     a. /tcp-info -version prints "eBPF programs: embedded";
#     b. /tcp-info write-uuid-prefix /x/prefix writes the prefix into a mounted directory;
#     c. the daemon as README's docker example runs it (host network and PID namespace,
#        exactly the capabilities BPF, PERFMON, NET_ADMIN, SYS_ADMIN, SYS_PTRACE (checked first
#        in a container of the base image), /sys/kernel/btf read-only, /run/netns read-only,
#        the prefix directory read-only, an output directory, -netns=all), with
#        -exclude-local=false and metrics on a free loopback port, for about 10 s: /ready answers
#        200 within 10 s, /metrics has tcpinfo_mode{mode="ebpf"} 1, a loopback connection to a
#        python3 http.server made during the run leaves an archive named with the prefix under
#        the output directory (/csvtool from the image finds the server's port in one), and
#        SIGTERM makes it exit 0.
#  Any failure exits non-zero with a message; the working containers and the temporary files
#  are removed on exit (the images stay in local storage).
#
# Why buildah run with runc (tried on a Debian 12 VM, kernel 6.18, hybrid cgroup v1 layout, a
# sandbox that withholds CAP_SYS_RESOURCE, open-files hard limit 20000):
#  - podman 4.3.1 run (crun 1.8.1 by default) fails with "crun: setrlimit `RLIMIT_NOFILE`:
#    Operation not permitted: OCI permission denied": podman asks for open-files and process
#    limits above this host's hard limits, and raising a hard limit needs CAP_SYS_RESOURCE.
#    With --runtime runc the same happens ("error setting rlimit type 7"). With --ulimit
#    nofile=20000:20000 --ulimit nproc=32768:32768, crun still refuses: "cgroups in hybrid mode
#    not supported, drop all controllers from cgroupv2"; runc then works. So podman works here
#    only with --runtime runc and both --ulimit values.
#  - buildah (needed for the build anyway) asks for no limit above this host's (open files
#    1024:1024 unless `buildah from --ulimit` says otherwise), cgroup v1 suits runc, and `buildah run` takes --network/--pid/--uts host, --cap-add,
#    --cap-drop and -v like docker run: no podman, conmon or crun to install. It has no detached
#    mode and answers SIGTERM by SIGKILLing the container, so the script sends SIGTERM to the
#    container's process itself, found among the descendants of its `buildah run`; buildah run
#    returns that process's exit status.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

IMAGE=localhost/tcp-info:test
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
RUNTIME=runc

say() { printf 'test-image: %s\n' "$*"; }
die() { printf 'test-image: FAILED: %s\n' "$*" >&2; exit 1; }

REUSE=false
case "${1:-}" in
    "") ;;
    --reuse-image) REUSE=true ;;
    -h | --help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
esac

[ "$(id -u)" = 0 ] || die "run as root (buildah needs it for rootful storage and capabilities)"
[ -f Dockerfile ] || die "no Dockerfile in $ROOT"

WORK=$(mktemp -d /var/tmp/tcp-info-test-image.XXXXXX)
CONTAINERS=()
BG_PIDS=()
cleanup() {
    local status=$?
    set +e
    for pid in "${BG_PIDS[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    for c in "${CONTAINERS[@]}"; do
        "${B[@]}" rm "$c" >/dev/null 2>&1
    done
    if [ -n "${BASE_CTR:-}" ]; then
        "${B[@]}" rm "$BASE_CTR" >/dev/null 2>&1
    fi
    # --one-file-system: never descend into a /proc or /sys a failed debootstrap left mounted.
    if [ -d "$WORK/rootfs" ]; then
        for m in proc sys dev/pts dev; do umount "$WORK/rootfs/$m" 2>/dev/null; done
    fi
    rm -rf --one-file-system "$WORK"
    exit "$status"
}
B=(buildah)
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# 1. Tools.
missing=()
command -v buildah >/dev/null || missing+=(buildah)
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
[ -d /etc/ssl/certs ] || missing+=(ca-certificates)
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >"$WORK/apt.log" 2>&1 || { tail -20 "$WORK/apt.log" >&2; die "apt-get install ${missing[*]}"; }
fi
say "$(buildah --version), $(runc --version | head -1)"

# Storage: overlay (kernel overlayfs, rootful) where it mounts, else vfs in its own root (a store
# cannot switch drivers once it holds layers).
probe=$(buildah from scratch 2>"$WORK/probe.log") || { cat "$WORK/probe.log" >&2; die "buildah from scratch"; }
if buildah mount "$probe" >/dev/null 2>>"$WORK/probe.log"; then
    B=(buildah)
    driver=$(buildah info --format '{{.store.GraphDriverName}}')
else
    B=(buildah --storage-driver vfs --root /var/lib/containers/storage-vfs
        --runroot /run/containers/storage-vfs)
    driver="vfs (the default driver cannot mount: $(tail -1 "$WORK/probe.log"))"
fi
buildah rm "$probe" >/dev/null
say "storage driver: $driver"

# ---------------------------------------------------------------------------------------------
# 2. The build stage's base image.
FROM_REF=$(awk 'toupper($1) == "FROM" { for (i = 2; i <= NF; i++) if ($i !~ /^--/) { print $i; exit } }' Dockerfile)
[ -n "$FROM_REF" ] || die "no FROM in Dockerfile"
case "$FROM_REF" in
    *@*) die "the first FROM ($FROM_REF) is pinned by digest: an image made here cannot have that digest; pull it where a registry is reachable (buildah pull) and copy it here (buildah push ... oci-archive:)" ;;
esac
qualify() {
    local ref=$1 first=${1%%/*}
    if [[ $ref != */* ]]; then
        ref=docker.io/library/$ref
    elif [[ $first != *.* && $first != *:* && $first != localhost ]]; then
        ref=docker.io/$ref
    fi
    [[ ${ref##*/} == *:* ]] || ref=$ref:latest
    printf '%s\n' "$ref"
}
BASE=$(qualify "$FROM_REF")

if "${B[@]}" inspect --type image "$BASE" >/dev/null 2>&1; then
    say "base image $BASE ($FROM_REF): in local storage"
elif timeout 120 "${B[@]}" pull --quiet "$BASE" >"$WORK/pull.log" 2>&1; then
    say "base image $BASE ($FROM_REF): pulled"
else
    say "base image $BASE ($FROM_REF) is not in local storage and cannot be pulled:"
    sed 's/^/    /' "$WORK/pull.log" | tail -3
    case "$BASE" in
        docker.io/library/debian:12 | docker.io/library/debian:12.* | docker.io/library/debian:bookworm*) ;;
        *) die "can only make Debian 12 (bookworm) here with debootstrap, not $BASE" ;;
    esac
    say "making it: debootstrap --variant=minbase bookworm from $MIRROR (a few minutes)"
    rootfs=$WORK/rootfs
    debootstrap --variant=minbase --arch=amd64 bookworm "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap bookworm from $MIRROR"; }
    # As the official image: deb822 sources with the updates and security suites, no package
    # lists or caches, no host files.
    rm -f "$rootfs/etc/apt/sources.list" "$rootfs/etc/hostname"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
    : >"$rootfs/etc/resolv.conf"
    point_release=$(cat "$rootfs/etc/debian_version")
    BASE_CTR=$("${B[@]}" from scratch)
    mnt=$("${B[@]}" mount "$BASE_CTR")
    # /dev, /proc and /sys stay empty: the runtime mounts them.
    tar -C "$rootfs" --numeric-owner --one-file-system --xattrs \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf - . \
        | tar -C "$mnt" --numeric-owner --xattrs -xpf -
    "${B[@]}" unmount "$BASE_CTR" >/dev/null
    "${B[@]}" config --os linux --arch amd64 --cmd '["bash"]' \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --label "org.opencontainers.image.description=debootstrap --variant=minbase bookworm ($point_release) from $MIRROR, made by scripts/test-image.sh for $FROM_REF" \
        "$BASE_CTR"
    "${B[@]}" commit --quiet --rm "$BASE_CTR" "$BASE" >/dev/null
    BASE_CTR=
    rm -rf --one-file-system "$rootfs"
    say "base image $BASE: made with debootstrap, Debian $point_release (the mirror's current bookworm, not necessarily $FROM_REF's point release)"
fi

# ---------------------------------------------------------------------------------------------
# 3. The image.
if $REUSE && "${B[@]}" inspect --type image "$IMAGE" >/dev/null 2>&1; then
    say "using the existing $IMAGE (--reuse-image)"
else
    GIT_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || true)
    if [ -n "$GIT_COMMIT" ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
        say "note: the work tree has uncommitted changes; the image is built from the tree as it is"
    fi
    # Certificate authorities this host trusts that Debian's ca-certificates does not ship (a
    # TLS-inspecting proxy's, as on the machines this project is developed on, where the curl
    # of rustup-init otherwise fails with "SSL certificate problem: self-signed certificate in
    # certificate chain"): mounted read-only at /usr/local/share/ca-certificates in every RUN,
    # so the Dockerfile's `apt-get install ca-certificates` adds them to the build stage's
    # bundle (used by curl, rustup and cargo). Nothing of them reaches the FROM scratch image.
    mkdir -p "$WORK/extra-ca"
    python3 - "$WORK/extra-ca" <<'EOF' || die "cannot read this host's CA bundle"
import glob, os, re, sys
pem = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)
def certs(path):
    try:
        with open(path) as f:
            return pem.findall(f.read())
    except OSError:
        return []
key = lambda c: "".join(c.split())
shipped = {key(c) for f in glob.glob("/usr/share/ca-certificates/**/*.crt", recursive=True) for c in certs(f)}
extra = [c for c in certs("/etc/ssl/certs/ca-certificates.crt") if key(c) not in shipped]
for i, c in enumerate(extra):
    with open(os.path.join(sys.argv[1], f"host-extra-{i}.crt"), "w") as f:
        f.write(c + "\n")
EOF
    CA_MOUNT=()
    n_ca=$(find "$WORK/extra-ca" -name '*.crt' | wc -l)
    if [ "$n_ca" -gt 0 ]; then
        say "this host trusts $n_ca CA certificate(s) Debian does not ship: the build's RUN steps get them in /usr/local/share/ca-certificates (not in the image)"
        CA_MOUNT=(-v "$WORK/extra-ca:/usr/local/share/ca-certificates:ro")
    fi
    say "building $IMAGE (GIT_COMMIT=${GIT_COMMIT:-unknown}); the release build takes 5-30 minutes on 2 cores"
    # --format docker: the OCI format has no SHELL, and buildah would run the RUN steps with
    # /bin/sh instead of the Dockerfile's bash -o pipefail (as `docker build` does).
    # --network host: RUN steps reach Debian's mirror, static.rust-lang.org and crates.io
    # through the host's network and resolver, with no CNI plugin or bridge needed.
    # --pull=never: the base image is the one step 2 provided; nothing else is pulled.
    # Without --layers a failed step leaves no working container or image behind.
    start=$SECONDS
    "${B[@]}" bud --runtime "$RUNTIME" --format docker --network host --pull=never \
        "${CA_MOUNT[@]}" --build-arg "GIT_COMMIT=$GIT_COMMIT" -f Dockerfile -t "$IMAGE" . \
        || die "buildah bud failed (its output is above)"
    say "built $IMAGE in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
fi
"${B[@]}" images "$IMAGE"
say "image size: $("${B[@]}" images --format '{{.Size}}' "$IMAGE" | head -1)"

# ---------------------------------------------------------------------------------------------
# 4. Run it.
# The open-files limit: buildah run otherwise gives the container 1024:1024, where docker gives
# a high one (README: the daemon raises its soft limit to the hard one). This host's hard limit
# is the most a container can get: raising it needs CAP_SYS_RESOURCE.
NOFILE=$(ulimit -Hn)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
CTR=$("${B[@]}" from --pull=never --ulimit "nofile=$NOFILE:$NOFILE" --name "tcp-info-test-$$" "$IMAGE")
CONTAINERS+=("$CTR")
RUN=("${B[@]}" run --runtime "$RUNTIME")

# The capabilities of README's docker example, `--cap-drop ALL --cap-add BPF --cap-add PERFMON
# --cap-add NET_ADMIN --cap-add SYS_ADMIN --cap-add SYS_PTRACE`. buildah 1.28 applies
# --cap-drop after --cap-add, so `--cap-drop ALL` would leave none: the defaults it grants
# (containers.conf's default_capabilities) are dropped by name instead, and the result is
# checked in a container of the base image (which has a shell): exactly these five, in the
# bounding, permitted and effective sets.
CAPS=()
for cap in CHOWN DAC_OVERRIDE FOWNER FSETID KILL NET_BIND_SERVICE SETFCAP SETGID SETPCAP SETUID \
    SYS_CHROOT NET_RAW MKNOD AUDIT_WRITE; do
    CAPS+=(--cap-drop "CAP_$cap")
done
for cap in BPF PERFMON NET_ADMIN SYS_ADMIN SYS_PTRACE; do
    CAPS+=(--cap-add "CAP_$cap")
done
WANT_CAPS=000000c000281000 # bits 12 NET_ADMIN, 19 SYS_PTRACE, 21 SYS_ADMIN, 38 PERFMON, 39 BPF
PROBE=$("${B[@]}" from --pull=never --ulimit "nofile=$NOFILE:$NOFILE" --name "tcp-info-test-caps-$$" "$BASE")
CONTAINERS+=("$PROBE")
"${RUN[@]}" --network host --pid host --uts host "${CAPS[@]}" "$PROBE" -- \
    cat /proc/self/status /proc/self/limits >"$WORK/caps.txt" 2>&1 \
    || { cat "$WORK/caps.txt" >&2; die "buildah run with the daemon's capabilities failed"; }
for set in CapBnd CapPrm CapEff; do
    got=$(awk -v k="$set:" '$1 == k { print $2 }' "$WORK/caps.txt")
    [ "$got" = "$WANT_CAPS" ] || die "$set is ${got:-missing} with the daemon's flags, not $WANT_CAPS (BPF PERFMON NET_ADMIN SYS_ADMIN SYS_PTRACE)"
done
grep -q "^Max open files  *$NOFILE  *$NOFILE " "$WORK/caps.txt" \
    || die "the container's open-files limit is not $NOFILE:$NOFILE: $(grep 'open files' "$WORK/caps.txt")"
say "ok: the daemon's flags give exactly BPF PERFMON NET_ADMIN SYS_ADMIN SYS_PTRACE ($WANT_CAPS), open files $NOFILE:$NOFILE"

# a. -version
"${RUN[@]}" "$CTR" -- /tcp-info -version >"$WORK/version.txt" 2>&1 \
    || { cat "$WORK/version.txt" >&2; die "/tcp-info -version exited non-zero"; }
sed 's/^/    /' "$WORK/version.txt"
grep -q '^eBPF programs: embedded$' "$WORK/version.txt" \
    || die "/tcp-info -version does not print 'eBPF programs: embedded'"
say "ok: /tcp-info -version (eBPF programs embedded)"

# b. write-uuid-prefix into a mounted directory, in the host's network and UTS namespaces
#    (the hostname is part of the prefix).
mkdir -p "$WORK/uuid"
"${RUN[@]}" --network host --uts host -v "$WORK/uuid:/x" "$CTR" -- \
    /tcp-info write-uuid-prefix /x/prefix >"$WORK/prefix.log" 2>&1 \
    || { cat "$WORK/prefix.log" >&2; die "/tcp-info write-uuid-prefix /x/prefix exited non-zero"; }
[ -s "$WORK/uuid/prefix" ] || die "write-uuid-prefix left no $WORK/uuid/prefix"
PREFIX=$(cat "$WORK/uuid/prefix")
[[ $PREFIX == "$(hostname)"_* ]] || die "prefix '$PREFIX' does not start with this host's name $(hostname)_"
[ "$(stat -c %a "$WORK/uuid/prefix")" = 644 ] || die "the prefix file's mode is $(stat -c %a "$WORK/uuid/prefix"), not 644"
say "ok: write-uuid-prefix wrote '$PREFIX' (mode 644)"

# c. The daemon.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
METRICS_PORT=$(free_port)
HTTP_PORT=$(free_port)
[ "$METRICS_PORT" != "$HTTP_PORT" ] || HTTP_PORT=$(free_port)
mkdir -p "$WORK/out" "$WORK/www" /run/netns
echo hello >"$WORK/www/index.html"
python3 -m http.server --bind 127.0.0.1 --directory "$WORK/www" "$HTTP_PORT" >"$WORK/http.log" 2>&1 &
HTTP_PID=$!
BG_PIDS+=("$HTTP_PID")

# shellcheck disable=SC2054 # "ro,rslave" is one volume option list, not two elements
DAEMON_CMD=("${RUN[@]}" --network host --pid host --uts host
    "${CAPS[@]}"
    -v /sys/kernel/btf:/sys/kernel/btf:ro -v /run/netns:/run/netns:ro,rslave
    -v "$WORK/out:/var/spool/tcpinfo" -v "$WORK/uuid:/var/local/uuid:ro"
    "$CTR" -- /tcp-info -output=/var/spool/tcpinfo -uuid-prefix-file=/var/local/uuid/prefix
    -netns=all -exclude-local=false "-prometheusx.listen-address=127.0.0.1:$METRICS_PORT")
say "running: ${DAEMON_CMD[*]}"
"${DAEMON_CMD[@]}" >"$WORK/daemon.log" 2>&1 &
DAEMON=$!
BG_PIDS+=("$DAEMON")
started=$SECONDS
started_ms=$(date +%s%3N)
daemon_log() { sed 's/^/    | /' "$WORK/daemon.log" >&2; }

# /ready: 200 within 10 s.
ready=""
while [ $((SECONDS - started)) -le 10 ]; do
    kill -0 "$DAEMON" 2>/dev/null || { daemon_log; die "the daemon exited before /ready answered 200"; }
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$METRICS_PORT/ready" || true)
    if [ "$code" = 200 ]; then ready=$(($(date +%s%3N) - started_ms)); break; fi
    sleep 0.1
done
[ -n "$ready" ] || { daemon_log; die "GET /ready did not answer 200 within 10 s (last: ${code:-none})"; }
say "ok: GET /ready answered 200 ${ready} ms after buildah run started"

curl -sf --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" >"$WORK/metrics.txt" \
    || { daemon_log; die "GET /metrics failed"; }
grep -q '^tcpinfo_mode{mode="ebpf"} 1$' "$WORK/metrics.txt" \
    || { grep '^tcpinfo_mode' "$WORK/metrics.txt" >&2; daemon_log; die 'no tcpinfo_mode{mode="ebpf"} 1 on /metrics'; }
say 'ok: /metrics has tcpinfo_mode{mode="ebpf"} 1'

# A loopback connection held open for 2 s, then one request over it.
python3 - "$HTTP_PORT" <<'EOF' || die "the loopback connection to the http.server failed"
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
time.sleep(2)
s.sendall(b"GET /index.html HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
s.close()
assert data.startswith(b"HTTP/1.0 200"), data[:80]
EOF
say "ok: loopback connection 127.0.0.1 -> 127.0.0.1:$HTTP_PORT made"

# The rest of the ~10 s, then SIGTERM to the daemon itself (see the header for why not to
# buildah run): the container's process, a descendant of our buildah run.
while [ $((SECONDS - started)) -lt 10 ]; do sleep 0.5; done
kill -0 "$DAEMON" 2>/dev/null || { daemon_log; die "the daemon exited during the run"; }
descendants() {
    local p
    # shellcheck disable=SC2013 # the children file is a list of words
    for p in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        echo "$p"
        descendants "$p"
    done
}
TARGET=""
for p in $(descendants "$DAEMON"); do
    if [ "$(cat /proc/"$p"/comm 2>/dev/null)" = tcp-info ]; then TARGET=$p; break; fi
done
[ -n "$TARGET" ] || { daemon_log; die "cannot find the container's tcp-info process under buildah run (pid $DAEMON)"; }
say "sending SIGTERM to the daemon (host pid $TARGET)"
kill -TERM "$TARGET"
status=""
for _ in $(seq 150); do
    if ! kill -0 "$DAEMON" 2>/dev/null; then
        status=0
        wait "$DAEMON" || status=$?
        break
    fi
    sleep 0.1
done
[ -n "$status" ] || { daemon_log; die "the daemon did not exit within 15 s of SIGTERM"; }
BG_PIDS=("$HTTP_PID")
say "daemon log:"
sed 's/^/    | /' "$WORK/daemon.log"
[ "$status" = 0 ] || die "the daemon exited $status after SIGTERM (expected 0)"
say "ok: the daemon exited 0 after SIGTERM"

# Archives: named <prefix>_<cookie>.<seq>.jsonl.zst; one of them records the http.server's port.
mapfile -t archives < <(cd "$WORK/out" && find . -type f -name "${PREFIX}_*.jsonl.zst" | sort)
[ "${#archives[@]}" -gt 0 ] || { find "$WORK/out" >&2; die "no archive named ${PREFIX}_*.jsonl.zst under the output directory"; }
say "${#archives[@]} archive(s) under the output directory, e.g. ${archives[0]#./}"
found=""
for a in "${archives[@]}"; do
    "${RUN[@]}" -v "$WORK/out:/out:ro" "$CTR" -- /csvtool "/out/${a#./}" >"$WORK/csv.txt" 2>&1 \
        || { cat "$WORK/csv.txt" >&2; die "/csvtool /out/${a#./} exited non-zero"; }
    if grep -q ",$HTTP_PORT," "$WORK/csv.txt"; then found=${a#./}; break; fi
done
[ -n "$found" ] || die "no archive records a connection with port $HTTP_PORT (the http.server's)"
say "ok: $found records the loopback connection to port $HTTP_PORT ($(($(wc -l <"$WORK/csv.txt") - 1)) rows by /csvtool)"

say "PASSED: image $IMAGE built and the daemon ran from it"
