#!/usr/bin/env bash
# Set up (or refresh) the project's Python environment.  Idempotent.
#
#   bash scripts/setup.sh            # create/refresh .venv from requirements/test.lock
#   bash scripts/setup.sh --relock   # regenerate requirements/test.lock from pyproject.toml
#
# What it does, from any working directory:
#   1. (optional) installs system packages with apt -- see install_system_packages
#   2. creates a virtual environment with python3 (>= 3.11) at $RLM_VENV
#      (default: .venv in the repository root)
#   3. upgrades pip in it, installs the hashed lock
#      (pip install --require-hashes -r requirements/test.lock)
#      and then this project editable without dependencies (the lock has them)
#   4. writes a stamp into the venv recording the hashes of the lock file and
#      pyproject.toml; while both are unchanged, later runs skip step 3
#
# Environment knobs:
#   RLM_VENV=/path      venv location (default <repo>/.venv)
#   RLM_PYTHON=python3  interpreter used to create the venv
#   RLM_FORCE_INSTALL=1 reinstall even if the stamp says nothing changed
#   RLM_APT=1           allow apt-get installs outside CI (needs root)
#   RLM_LOCK_COOLDOWN_DAYS=3  --relock ignores releases younger than this
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${RLM_VENV:-$ROOT/.venv}"
PYTHON="${RLM_PYTHON:-python3}"
LOCK="requirements/test.lock"
STAMP="$VENV/.rlm-setup-stamp"
# Bump when the meaning of the stamp (or of an install) changes.
STAMP_FORMAT=1

# litellm otherwise downloads its model price map at import time.
export LITELLM_LOCAL_MODEL_COST_MAP=True
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# SYSTEM PACKAGES (apt) -- the one place for apt-get installs.
#
# chromium: the browser of tests/browser/ (driven by playwright, which must
# never download its own; apt pulls chromium's shared libraries with it).
# fonts-dejavu-core: a font, so the headless browser renders text.
# Later: bubblewrap for the sandbox.
#
# apt runs only when CI=true or RLM_APT=1, and only as root; otherwise the
# missing packages are just reported.
# ---------------------------------------------------------------------------
APT_PACKAGES=(chromium fonts-dejavu-core bubblewrap)

install_system_packages() {
    local wanted=("$@") missing=() pkg
    ((${#wanted[@]})) || return 0
    for pkg in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    if [[ "${CI:-}" != "true" && "${RLM_APT:-}" != "1" ]]; then
        log "system packages missing: ${missing[*]} (not installing: set RLM_APT=1, or CI=true, to let this script run apt-get)"
        return 0
    fi
    if [[ "$(id -u)" != "0" ]]; then
        log "system packages missing: ${missing[*]} (not root: install them with: sudo apt-get install ${missing[*]})"
        return 0
    fi
    command -v apt-get >/dev/null || die "apt-get not found; install these by hand: ${missing[*]}"
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Fingerprint of what the lock is resolved from (pyproject's dependencies and
# the test extra).  --relock records it in the lock's header; installs refuse
# a lock whose fingerprint no longer matches pyproject.toml, because the
# editable install runs with --no-deps and would silently miss new deps.
deps_fingerprint() {
    "$PYTHON" - <<'PY'
import hashlib, json, tomllib
with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
deps = {
    "requires-python": project.get("requires-python"),
    "dependencies": sorted(project.get("dependencies", [])),
    "test": sorted(project.get("optional-dependencies", {}).get("test", [])),
}
print(hashlib.sha256(json.dumps(deps, sort_keys=True).encode()).hexdigest()[:16])
PY
}

# ---------------------------------------------------------------------------
# --relock: regenerate requirements/test.lock (needs network to PyPI).
# ---------------------------------------------------------------------------
relock() {
    local uvenv tmp version cutoff
    # Only consider releases at least this old: a just-published (possibly
    # compromised, possibly not yet mirrored) release is never locked.
    cutoff="$(date -u -d "${RLM_LOCK_COOLDOWN_DAYS:-3} days ago" +%Y-%m-%dT%H:%M:%SZ)"
    uvenv="$(mktemp -d)/uvenv"
    tmp="$(mktemp)"
    log "installing uv into throwaway venv $uvenv"
    "$PYTHON" -m venv "$uvenv"
    "$uvenv/bin/python" -m pip install -q uv
    "$uvenv/bin/uv" pip compile pyproject.toml --extra test --generate-hashes \
        --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
        --exclude-newer "$cutoff" --no-header --quiet -o "$tmp"
    version="$(sed -n 's/^litellm==\([^ ]*\).*/\1/p' "$tmp")"
    [[ -n "$version" ]] || die "litellm missing from the resolved lock"
    case "$version" in
        1.82.7 | 1.82.8) die "resolved compromised litellm $version; refusing" ;;
    esac
    {
        cat <<EOF
# Hashed lock of rlm-magic's dependencies plus the [test] extra,
# for CPython 3.11 on Linux x86_64 (glibc).  Installed by scripts/setup.sh with
#   pip install --require-hashes -r requirements/test.lock
#
# DO NOT EDIT BY HAND.  Regenerate after changing dependencies in pyproject.toml:
#   bash scripts/setup.sh --relock
# which installs uv into a throwaway venv and runs
#   uv pip compile pyproject.toml --extra test --generate-hashes \\
#       --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \\
#       --exclude-newer <now - \${RLM_LOCK_COOLDOWN_DAYS:-3} days> -o requirements/test.lock
# then re-adds this header.  litellm must stay within pyproject's pin
# (>=1.83.0,<1.110; 1.82.7 and 1.82.8 were compromised releases).
# Resolved litellm: $version; releases newer than $cutoff ignored.
# pyproject-deps-fingerprint: $(deps_fingerprint)
EOF
        cat "$tmp"
    } >"$LOCK"
    rm -rf "$tmp" "$(dirname "$uvenv")"
    log "wrote $LOCK (litellm $version); run bash scripts/setup.sh to install it"
}

# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------
case "${1:-}" in
    -h | --help) sed -n '2,22p' "${BASH_SOURCE[0]}"; exit 0 ;;
esac

command -v "$PYTHON" >/dev/null || die "$PYTHON not found; Python >= 3.11 is required"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is Python $("$PYTHON" -c 'import platform; print(platform.python_version())'); Python >= 3.11 is required (set RLM_PYTHON to another interpreter)"

case "${1:-}" in
    "") ;;
    --relock) relock; exit 0 ;;
    *) die "unknown argument: $1 (try --help)" ;;
esac

install_system_packages ${APT_PACKAGES[@]+"${APT_PACKAGES[@]}"}

[[ -f "$LOCK" ]] || die "$LOCK not found (regenerate it with: bash scripts/setup.sh --relock)"
lock_fp="$(sed -n 's/^# pyproject-deps-fingerprint: *//p' "$LOCK")"
[[ "$lock_fp" == "$(deps_fingerprint)" ]] \
    || die "$LOCK is stale: pyproject.toml's dependencies (or test extra) changed since it was generated; run: bash scripts/setup.sh --relock"

mkdir -p "$VENV"
# Serialise concurrent runs (e.g. test.sh and quickstart.sh started together).
if command -v flock >/dev/null; then
    exec 9>"$VENV/.rlm-setup.lock"
    flock 9
fi

VPY="$VENV/bin/python"
if [[ ! -e "$VPY" ]]; then
    if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        # Debian's python3 ships venv/ensurepip separately.
        install_system_packages "python3-venv"
        "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null \
            || die "$PYTHON cannot create virtual environments; install the python3-venv package (apt-get install python3-venv)"
    fi
    log "creating virtual environment $VENV with $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
    "$PYTHON" -m venv "$VENV"
fi
"$VPY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
    || die "$VENV exists but its python is missing, broken or older than 3.11; delete $VENV and re-run"

want_stamp="$(
    printf 'format=%s\n' "$STAMP_FORMAT"
    printf 'python=%s\n' "$("$VPY" -c 'import sys; print(sys.version.split()[0])')"
    printf 'lock=%s\n' "$(sha256sum "$LOCK" | cut -d' ' -f1)"
    printf 'pyproject=%s\n' "$(sha256sum pyproject.toml | cut -d' ' -f1)"
)"

if [[ "${RLM_FORCE_INSTALL:-}" != "1" && -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" ]] \
    && "$VPY" -c 'import importlib.metadata as m; m.version("rlm-magic")' 2>/dev/null; then
    log "environment $VENV is up to date (lock and pyproject unchanged)"
    exit 0
fi

rm -f "$STAMP"
pip_opts=()
[[ "${CI:-}" == "true" ]] && pip_opts+=(--progress-bar off)

log "upgrading pip in $VENV"
"$VPY" -m pip install ${pip_opts[@]+"${pip_opts[@]}"} -q --upgrade pip
log "installing $LOCK (hash-checked)"
"$VPY" -m pip install ${pip_opts[@]+"${pip_opts[@]}"} -q --require-hashes -r "$LOCK"
log "installing rlm-magic (editable, no deps)"
"$VPY" -m pip install ${pip_opts[@]+"${pip_opts[@]}"} -q --no-deps -e .
"$VPY" -m pip check >/dev/null 2>&1 || {
    log "warning: pip check reports conflicts (packages outside the lock?):"
    "$VPY" -m pip check || true
}

printf '%s\n' "$want_stamp" >"$STAMP"
log "environment ready: $VENV"
