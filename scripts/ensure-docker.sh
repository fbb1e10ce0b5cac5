#!/usr/bin/env bash
# Makes sure a docker engine answers on this machine, starting dockerd in the background if not.
# Idempotent and non-interactive (CI=true, no stdin): a second run finds the engine and returns.
set -euo pipefail

LOG="${DOCKERD_LOG:-/var/log/dockerd-cluster.log}"
DEADLINE_SECONDS="${DOCKERD_DEADLINE_SECONDS:-60}"

log() { printf '[ensure-docker] %s\n' "$*" >&2; }

engine_answers() { docker info >/dev/null 2>&1; }

fail() {
    log "FAILED: $*"
    if [[ -f "$LOG" ]]; then
        log "last lines of $LOG:"
        tail -n 40 "$LOG" >&2 || true
    fi
    exit 1
}

if engine_answers; then
    log "docker engine already answers"
    exit 0
fi

command -v docker >/dev/null || fail "no docker client on PATH: run ./setup.sh first"
command -v dockerd >/dev/null || fail "no dockerd on PATH: run ./setup.sh first"
[[ $(id -u) -eq 0 ]] || fail "starting dockerd needs root (or start the docker service yourself)"

# A dockerd that died uncleanly leaves its pid file behind, and a new one refuses to start.
pidfile=/var/run/docker.pid
if [[ -f "$pidfile" ]] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "removing stale $pidfile"
    rm -f "$pidfile"
fi

if [[ -f "$pidfile" ]]; then
    log "dockerd (pid $(cat "$pidfile")) is running but not answering yet; waiting for it"
else
    log "starting dockerd in the background, log in $LOG"
    mkdir -p "$(dirname "$LOG")"
    # setsid + nohup: the daemon must outlive this script, the CI step and its process group.
    setsid nohup dockerd >>"$LOG" 2>&1 </dev/null &
fi

deadline=$((SECONDS + DEADLINE_SECONDS))
until engine_answers; do
    if ((SECONDS >= deadline)); then
        fail "docker info still fails after ${DEADLINE_SECONDS}s"
    fi
    if [[ -f "$pidfile" ]] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        fail "dockerd exited during start-up"
    fi
    sleep 0.5
done
log "docker engine answers ($(docker version --format '{{.Server.Version}}'))"
