#!/usr/bin/env bash
# Checks the container image definition and the Kubernetes manifests, as CI runs it:
#
#   bash scripts/check-deploy.sh               every check on this tree's files
#   bash scripts/check-deploy.sh --self-test   the same checks pass on copies of the files and
#                                              fail on copies broken in one way each
#
# The checks: hadolint on the Dockerfile (.hadolint.yaml: every finding fails, no rule ignored
# there); the image's version label against Cargo.toml; checkov on the Dockerfile and on deploy/
# (with the policies in deploy/checkov/; a finding is only skipped by an annotation or comment
# in the file itself, with its reason); kubernetes-validate --strict on every manifest against
# the Kubernetes versions below, offline (the schemas ship with it); kustomization.yaml lists
# every manifest; `promtool check rules` on the alert rules held by deploy/prometheus-rules.yaml,
# whose alerts must each have `for`, a severity and a summary and description, and name only
# metrics tcp-info exports.
#
# Installs what it needs on a fresh Debian 12 machine: a virtualenv under
# target/check-deploy-venv with scripts/check-deploy.requirements.txt (from PyPI; python3-venv
# with apt-get when missing, as root), and promtool from Debian's prometheus package, downloaded
# and unpacked under target/check-deploy-tools (the service is not installed).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

VENV=$ROOT/target/check-deploy-venv
TOOLS=$ROOT/target/check-deploy-tools
REQUIREMENTS=$ROOT/scripts/check-deploy.requirements.txt
PY=$VENV/bin/python
PROMTOOL=$TOOLS/root/usr/bin/promtool
# The oldest and the newest Kubernetes release whose schemas kubernetes-validate 1.37.0 ships.
K8S_VERSIONS=(1.25.0 1.37.0)
# No __pycache__ left in deploy/checkov/ by checkov loading the policies. (checkov runs with
# --skip-download: its built-in policies only, nothing fetched from its vendor's service.)
export PYTHONDONTWRITEBYTECODE=1

say() { printf 'check-deploy: %s\n' "$*"; }
die() { printf 'check-deploy: %s\n' "$*" >&2; exit 1; }

SELF_TEST=false
case "${1:-}" in
    "") ;;
    --self-test) SELF_TEST=true ;;
    *) die "usage: bash scripts/check-deploy.sh [--self-test]" ;;
esac

# ---- tools ------------------------------------------------------------------------------------

ensure_venv() {
    local want
    want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
    if [ -x "$PY" ] && [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" = "$want" ]; then
        return
    fi
    rm -rf "$VENV"
    mkdir -p "$ROOT/target"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        [ "$(id -u)" -eq 0 ] || die "python3 -m venv failed: please install python3-venv"
        say "installing python3-venv"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$VENV"
    fi
    say "installing $(grep -cv '^\s*\(#\|$\)' "$REQUIREMENTS") pinned tools into ${VENV#"$ROOT"/}"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS"
    echo "$want" >"$VENV/.requirements.sha256"
}

ensure_promtool() {
    [ -x "$PROMTOOL" ] && return
    rm -rf "$TOOLS"
    mkdir -p "$TOOLS/deb"
    local apt_opts=()
    # apt's download sandbox user cannot write under target/; as root, download as root.
    [ "$(id -u)" -eq 0 ] && apt_opts=(-o APT::Sandbox::User=root)
    download() { (cd "$TOOLS/deb" && apt-get download -qq "${apt_opts[@]}" prometheus) >/dev/null; }
    if ! download 2>/dev/null; then
        [ "$(id -u)" -eq 0 ] || die "apt-get download prometheus failed: run apt-get update as root"
        apt-get update -qq
        download
    fi
    dpkg-deb -x "$TOOLS"/deb/prometheus_*.deb "$TOOLS/root"
    [ -x "$PROMTOOL" ] || die "the prometheus package has no usr/bin/promtool"
}

# ---- helpers in Python (PyYAML comes with checkov) ---------------------------------------------

py() {
    "$PY" - "$@" <<'PYTHON'
import json, pathlib, re, sys
import yaml

cmd, args = sys.argv[1], sys.argv[2:]

def docs(path):
    return [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d is not None]

def fail(message):
    print(f"FAILED: {message}")
    sys.exit(1)

if cmd == "hadolint-config":
    # The configuration itself: strict threshold, no rule ignored wholesale.
    config = yaml.safe_load(pathlib.Path(args[0]).read_text()) or {}
    if config.get("ignored"):
        fail(f"{args[0]} ignores {config['ignored']} for every line: ignore inline, with a reason")
    if config.get("failure-threshold") not in ("info", "style"):
        fail(f"{args[0]}: failure-threshold must be info or style, not {config.get('failure-threshold')!r}")
    print(f"passed: {args[0]} fails on every finding and ignores no rule")

elif cmd == "image-version":
    dockerfile, cargo = args
    want = re.search(r'^version = "([^"]+)"', pathlib.Path(cargo).read_text(), re.M).group(1)
    found = re.findall(r'org\.opencontainers\.image\.version="([^"]*)"', pathlib.Path(dockerfile).read_text())
    if found != [want]:
        fail(f"the image's version label is {found}, Cargo.toml's workspace version is {want!r}")
    print(f"passed: org.opencontainers.image.version is {want}, as Cargo.toml")

elif cmd == "dockerfile-skips":
    # Every checkov skip in the Dockerfile gives its reason.
    skips = re.findall(r"^#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?$", pathlib.Path(args[0]).read_text(), re.M)
    bad = [check for check, reason in skips if len((reason or "").strip()) < 20]
    if bad:
        fail(f"checkov skips without a reason in {args[0]}: {bad}")
    print(f"passed: {len(skips)} checkov skip(s) in {args[0]}, each with its reason")

elif cmd == "checkov-report":
    # checkov's JSON report: no failure, no parsing error, and (for manifests) every workload
    # and every one of tcp-info's own policies evaluated.
    report_file, manifests = args[0], args[1:]
    report = json.loads(pathlib.Path(report_file).read_text() or "[]")
    reports = report if isinstance(report, list) else [report]
    if not reports or not reports[0].get("results"):
        fail("checkov reported nothing (no file parsed?)")
    passed, failed, skipped, errors = [], [], [], []
    for r in reports:
        passed += r["results"].get("passed_checks", [])
        failed += r["results"].get("failed_checks", [])
        skipped += r["results"].get("skipped_checks", [])
        errors += r["results"].get("parsing_errors", [])
    for f in failed:
        print(f"  {f['check_id']} {f['check_name']}: {f['resource']} ({f['file_path']})")
    if errors:
        fail(f"checkov could not parse {errors}")
    if failed:
        fail(f"{len(failed)} checkov finding(s): {sorted({f['check_id'] for f in failed})}")
    evaluated = {}
    for c in passed + skipped:
        evaluated.setdefault(c["resource"], set()).add(c["check_id"])
    for path in manifests:
        for d in docs(path):
            spec = d.get("spec", {}) if isinstance(d, dict) else {}
            if isinstance(spec, dict) and isinstance(spec.get("template"), dict):
                name = f"{d['kind']}.{d['metadata'].get('namespace', 'default')}.{d['metadata']['name']}"
                missing = {"CKV_TCPINFO_1", "CKV_TCPINFO_2"} - evaluated.get(name, set())
                if missing:
                    fail(f"checkov did not evaluate {sorted(missing)} on {name} (policy not loaded?)")
    for s in skipped:
        print(f"  skipped {s['check_id']} on {s['resource']}: {s['check_result'].get('suppress_comment')}")
    print(f"passed: checkov {len(passed)} passed, 0 failed, {len(skipped)} skipped with a reason")

elif cmd == "manifest-skips":
    # Every checkov skip annotation names one check and gives its reason.
    count = 0
    for path in args:
        for d in docs(path):
            annotations = (d.get("metadata") or {}).get("annotations") or {}
            for key, value in annotations.items():
                if not key.startswith("checkov.io/skip"):
                    continue
                count += 1
                m = re.fullmatch(r"(CKV2?_[A-Z0-9]+_[0-9]+)=(.*)", str(value), re.S)
                if not m or len(m.group(2).strip()) < 20:
                    fail(f"{path}: {key}: {value!r} must be CKV_..._N=<reason>")
    print(f"passed: {count} checkov skip annotation(s), each with its reason")

elif cmd == "kustomization":
    # Lists exactly the manifests beside it, each once.
    path = pathlib.Path(args[0])
    k = yaml.safe_load(path.read_text())
    listed = k.get("resources") or []
    present = sorted(p.name for p in path.parent.glob("*.yaml") if p.name != path.name)
    if sorted(listed) != present or len(set(listed)) != len(listed):
        fail(f"{path} lists {sorted(listed)}, the directory holds {present}")
    print(f"passed: {path.name} lists the {len(present)} manifests")

elif cmd == "extract-rules":
    # The rules file held by the ConfigMap.
    configmap, out = args
    (d,) = docs(configmap)
    data = d.get("data") or {}
    if len(data) != 1:
        fail(f"{configmap} must hold exactly one rules file, holds {sorted(data)}")
    pathlib.Path(out).write_text(next(iter(data.values())))

elif cmd == "lint-rules":
    # Every rule is an alert with `for`, a severity, a summary and a description, and every
    # tcpinfo_* metric it names is one the daemon exports (a string literal in its sources).
    rules_file, sources = args
    exported = set()
    for f in pathlib.Path(sources).rglob("*.rs"):
        exported |= set(re.findall(r'"(tcpinfo_[a-z0-9_]+)"', f.read_text()))
    rules = yaml.safe_load(pathlib.Path(rules_file).read_text())
    alerts = 0
    for group in rules["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            if "alert" not in rule:
                fail(f"{name}: only alerting rules belong here")
            alerts += 1
            if "for" not in rule:
                fail(f"{name} has no `for`")
            if (rule.get("labels") or {}).get("severity") not in ("critical", "warning", "info"):
                fail(f"{name} needs a severity label: critical, warning or info")
            annotations = rule.get("annotations") or {}
            for key in ("summary", "description"):
                if not str(annotations.get(key, "")).strip():
                    fail(f"{name} has no {key} annotation")
            for metric in re.findall(r"\btcpinfo_[a-z0-9_]+", str(rule.get("expr", ""))):
                if metric not in exported:
                    fail(f"{name}: {metric} is not a metric tcp-info exports")
    print(f"passed: {alerts} alerts, each with for, severity, summary, description; metrics exist")

elif cmd == "mutate":
    # Replaces the first occurrence of OLD by NEW in FILE; OLD must be there, so that a
    # self-test case can never go stale and pass for the wrong reason.
    path, old, new = pathlib.Path(args[0]), args[1], args[2]
    text = path.read_text()
    if old not in text:
        sys.exit(f"self-test: {path.name} no longer contains {old!r}: update the case")
    path.write_text(text.replace(old, new, 1))

else:
    sys.exit(f"unknown helper {cmd}")
PYTHON
}

# ---- the checks: each takes the paths it checks and ends with "passed: ..." or "FAILED: ..." ----
# They run where `set -e` does not apply (in `if`), so every step's failure is returned explicitly.

check_hadolint() { # DOCKERFILE HADOLINT_CONFIG
    py hadolint-config "$2" || return 1
    if "$VENV/bin/hadolint" --no-color --config "$2" "$1"; then
        echo "passed: hadolint $("$VENV/bin/hadolint" --version | grep -o '[0-9.]*$'), no finding"
    else
        echo "FAILED: hadolint findings (above)"
        return 1
    fi
}

check_image_version() { # DOCKERFILE
    py image-version "$1" "$ROOT/Cargo.toml"
}

check_checkov_dockerfile() { # DOCKERFILE
    local report
    report=$(mktemp)
    py dockerfile-skips "$1" || return 1
    "$VENV/bin/checkov" --framework dockerfile -f "$1" --skip-download -o json \
        >"$report" 2>/dev/null || true
    py checkov-report "$report" || { rm -f "$report"; return 1; }
    rm -f "$report"
}

check_schema() { # MANIFEST...
    local version out status=0
    for version in "${K8S_VERSIONS[@]}"; do
        out=$("$VENV/bin/kubernetes-validate" --strict -k "$version" "$@" 2>&1) || status=1
        printf '%s\n' "$out"
        # An unknown kind or apiVersion is only a warning to kubernetes-validate.
        if grep -q '^WARN' <<<"$out"; then status=1; fi
    done
    if [ "$status" -ne 0 ]; then
        echo "FAILED: schema validation (above)"
        return 1
    fi
    echo "passed: $# manifests valid (strict) against Kubernetes ${K8S_VERSIONS[*]}"
}

check_kustomization() { # KUSTOMIZATION
    py kustomization "$1"
}

check_checkov_manifests() { # DEPLOY_DIR (with its checkov/ policies)
    local dir=$1 report manifests
    report=$(mktemp)
    manifests=("$dir"/*.yaml)
    py manifest-skips "${manifests[@]}" || return 1
    "$VENV/bin/checkov" --framework kubernetes -d "$dir" --external-checks-dir "$dir/checkov" \
        --skip-download -o json >"$report" 2>/dev/null || true
    py checkov-report "$report" "${manifests[@]}" || { rm -f "$report"; return 1; }
    rm -f "$report"
}

check_rules() { # PROMETHEUS_RULES_CONFIGMAP
    local rules
    rules=$(mktemp -d)/tcp-info.rules.yaml
    py extract-rules "$1" "$rules" || { rm -rf "${rules%/*}"; return 1; }
    if ! (cd "${rules%/*}" && "$PROMTOOL" check rules --lint=all --lint-fatal "${rules##*/}"); then
        rm -rf "${rules%/*}"
        echo "FAILED: promtool check rules (above)"
        return 1
    fi
    py lint-rules "$rules" "$ROOT/tcp-info/src" || { rm -rf "${rules%/*}"; return 1; }
    rm -rf "${rules%/*}"
}

# ---- running them -------------------------------------------------------------------------------

LOG=$(mktemp)
WORK=$(mktemp -d)
trap 'rm -rf "$LOG" "$WORK"' EXIT

# run NAME CHECK ARGS...: runs a check that must pass; prints one line, or its output if it fails.
run() {
    local name=$1
    shift
    if "$@" >"$LOG" 2>&1; then
        printf 'check-deploy: ok    %-34s %s\n' "$name" "$(grep '^passed: ' "$LOG" | tail -1 | cut -c9-)"
    else
        printf 'check-deploy: FAIL  %s\n' "$name"
        sed 's/^/    /' "$LOG"
        return 1
    fi
}

# all DIR: every check on DIR's Dockerfile, .hadolint.yaml and deploy/.
all() {
    local d=$1 status=0 manifests=()
    local f
    for f in "$d"/deploy/*.yaml; do
        [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
    done
    run "hadolint Dockerfile" check_hadolint "$d/Dockerfile" "$d/.hadolint.yaml" || status=1
    run "image version label" check_image_version "$d/Dockerfile" || status=1
    run "checkov Dockerfile" check_checkov_dockerfile "$d/Dockerfile" || status=1
    run "kubernetes-validate deploy/*.yaml" check_schema "${manifests[@]}" || status=1
    run "kustomization.yaml" check_kustomization "$d/deploy/kustomization.yaml" || status=1
    run "checkov deploy/" check_checkov_manifests "$d/deploy" || status=1
    run "promtool prometheus-rules.yaml" check_rules "$d/deploy/prometheus-rules.yaml" || status=1
    return "$status"
}

# fresh: a new copy of the checked files under $WORK/copy.
fresh() {
    rm -rf "$WORK/copy"
    mkdir -p "$WORK/copy"
    cp -r "$ROOT/Dockerfile" "$ROOT/.hadolint.yaml" "$ROOT/deploy" "$WORK/copy/"
    rm -rf "$WORK/copy/deploy/checkov/__pycache__"
}

# breaks DESCRIPTION FILE OLD NEW CHECK ARGS...: the check must fail on a fresh copy whose FILE
# has OLD replaced by NEW. Paths in FILE and ARGS are relative to the copy.
CASES=0
FAILED_CASES=0
breaks() {
    local description=$1 file=$2 old=$3 new=$4 check=$5
    shift 5
    local args=() a
    for a in "$@"; do args+=("$WORK/copy/$a"); done
    fresh
    py mutate "$WORK/copy/$file" "$old" "$new" || exit 1
    CASES=$((CASES + 1))
    if "$check" "${args[@]}" >"$LOG" 2>&1; then
        FAILED_CASES=$((FAILED_CASES + 1))
        printf 'check-deploy: self-test FAIL  %-20s passed on: %s\n' "$check" "$description"
        sed 's/^/    /' "$LOG"
    else
        # The tool's own words for it: its first error line, else the check's verdict.
        local why
        why=$({ grep -m1 -E 'DL[0-9]{4}|CKV_[A-Z0-9_]+ |^(ERROR|WARN) |rule [0-9]+, |parse YAML' "$LOG" ||
            grep -m1 '^FAILED: ' "$LOG" || true; } | sed -e "s|$WORK/copy/||g" -e "s|$WORK/||g" -e 's/^ *//' | cut -c1-150)
        printf 'check-deploy: self-test ok  %s fails on %s\n    %s\n' "${check#check_}" "$description" "$why"
    fi
}

ensure_venv
ensure_promtool

if ! $SELF_TEST; then
    say "tools: hadolint $("$VENV/bin/hadolint" --version | awk '{print $NF}')," \
        "kubernetes-validate $("$VENV/bin/kubernetes-validate" --version)," \
        "checkov $("$VENV/bin/checkov" --version)," \
        "promtool $("$PROMTOOL" --version 2>&1 | awk 'NR == 1 {print $3}') (Debian)"
    all "$ROOT"
    exit
fi

# The self-test: the checks pass on unbroken copies...
fresh
all "$WORK/copy" || die "self-test: the checks fail on the unbroken copies"

# ...and each fails on a copy broken in one way.
DF=Dockerfile
DS=deploy/daemonset.yaml
RULES=deploy/prometheus-rules.yaml
breaks "FROM debian:latest" $DF "FROM debian:12.11 AS build" "FROM debian:latest AS build" \
    check_hadolint $DF .hadolint.yaml
breaks "apt-get install without --no-install-recommends" $DF \
    "apt-get install -y --no-install-recommends" "apt-get install -y" \
    check_hadolint $DF .hadolint.yaml
breaks "a rule ignored in .hadolint.yaml" .hadolint.yaml "failure-threshold: info" \
    "failure-threshold: info
ignored: [DL3008]" check_hadolint $DF .hadolint.yaml
breaks "a version label other than Cargo.toml's" $DF 'image.version="0.1.0"' 'image.version="9.9.9"' \
    check_image_version $DF
breaks "HEALTHCHECK finding without its skip" $DF "# checkov:skip=CKV_DOCKER_2:" "# skip=CKV_DOCKER_2:" \
    check_checkov_dockerfile $DF
breaks "a Dockerfile skip without a reason" $DF \
    "# checkov:skip=CKV_DOCKER_3:the daemon must start as uid 0" "# checkov:skip=CKV_DOCKER_3:
# the daemon must start as uid 0" check_checkov_dockerfile $DF
breaks "a misspelled field (hostNetwrok)" $DS "      hostNetwork: true" "      hostNetwrok: true" \
    check_schema $DS
breaks "a wrong type (grace period \"thirty\")" $DS "terminationGracePeriodSeconds: 30" \
    'terminationGracePeriodSeconds: "thirty"' check_schema $DS
breaks "a missing required field (container name)" $DS "        - name: tcp-info
          image:" "        - image:" check_schema $DS
breaks "an unknown kind (DaemonSett)" $DS "kind: DaemonSet" "kind: DaemonSett" check_schema $DS
breaks "invalid YAML (unquoted ': ' in a value)" $DS "app.kubernetes.io/version: \"0.1.0\"" \
    "app.kubernetes.io/version: a: b" check_schema $DS
breaks "a manifest left out of kustomization.yaml" deploy/kustomization.yaml \
    "  - daemonset-sweep.yaml
" "" check_kustomization deploy/kustomization.yaml
breaks "privileged: true without a skip" $DS "            privileged: false
            # no_new_privs" "            privileged: true
            # no_new_privs" check_checkov_manifests deploy
breaks "hostPath / mounted" $DS "path: /run/netns
            type: DirectoryOrCreate" "path: /
            type: DirectoryOrCreate" check_checkov_manifests deploy
breaks "a writable hostPath (/run/netns)" $DS "              mountPath: /run/netns
              readOnly: true" "              mountPath: /run/netns" check_checkov_manifests deploy
breaks "a capability beyond the justified ones (SYS_MODULE)" $DS "                - SYS_PTRACE" \
    "                - SYS_PTRACE
                - SYS_MODULE" check_checkov_manifests deploy
breaks "a skip annotation without a reason" $DS "checkov.io/skip1: CKV_K8S_17=hostPID is how" \
    "checkov.io/skip1: CKV_K8S_17
    x-ignored: hostPID is how" check_checkov_manifests deploy
breaks "a bad PromQL expression" $RULES 'expr: up{job="tcp-info"} == 0' 'expr: up{job="tcp-info" == 0' \
    check_rules $RULES
breaks "a rule without expr" $RULES '            expr: up{job="tcp-info"} == 0
' "" check_rules $RULES
breaks "an alert without for" $RULES "            for: 5m
" "" check_rules $RULES
breaks "an alert without severity" $RULES "              severity: critical" "              team: net" \
    check_rules $RULES
breaks "a metric tcp-info does not export" $RULES "tcpinfo_ebpf_kernel_drops_total" \
    "tcpinfo_ebpf_kernel_drop_total" check_rules $RULES

if [ "$FAILED_CASES" -ne 0 ]; then
    die "self-test: $FAILED_CASES of $CASES broken copies passed a check that should have failed"
fi
say "self-test: every check passed on the unbroken copies and failed on each of $CASES broken ones"
