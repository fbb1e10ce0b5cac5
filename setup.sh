#!/usr/bin/env bash
# Sets up a control host for Claude Code Cluster, idempotently: system packages, then a
# virtualenv in .venv with the project and its development tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(git openssh-client ca-certificates docker.io debootstrap iproute2 cron bubblewrap)
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

missing_apt_packages() {
    local pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
    done
}

install_system_packages() {
    local missing
    missing="$(missing_apt_packages | tr '\n' ' ')"
    if [[ -z "${missing// }" ]]; then
        log "system packages present"
        return
    fi
    if ! command -v apt-get >/dev/null; then
        log "missing packages ($missing) and no apt-get: install them by hand"
        exit 1
    fi
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    log "installing: $missing"
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

install_python() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
    if [[ -f "$stamp" ]]; then
        log "python packages present"
        return
    fi
    log "installing the project and its tools into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e '.[dev]'
    rm -f "$VENV"/.installed-*
    touch "$stamp"
}

install_system_packages
install_python
log "ready: $VENV/bin/invoke --list"
