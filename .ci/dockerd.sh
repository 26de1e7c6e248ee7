#!/usr/bin/env bash
# A private Docker engine on a unix socket, for the container drill runtime's tests.
#
# No image registry is reachable from the CI machines and there is no system dockerd,
# so CI installs Debian's docker.io and starts dockerd by hand, as root (FACTS.md,
# "Containers for the drill runtime"). Everything the engine owns lives under RUNDIR:
# socket, data root, exec root (with its managed containerd), pid file and log.
#
# Defaults keep the engine off the host network: no docker0 bridge, no iptables rules
# (the drill's containers run with network "none"; other sessions on the machine keep
# their network untouched), and --ip 127.0.0.1 so a published port, if any, stays on
# loopback. Override with DR_DOCKERD_ARGS (e.g. DR_DOCKERD_ARGS="" for Docker's defaults).
#
# Use it from a script (functions; the exports land in your shell):
#   source .ci/dockerd.sh
#   dockerd_install            # apt-get docker.io unless dockerd exists (idempotent)
#   dockerd_start /tmp/dr-dockerd   # start, wait for `docker info`, export DOCKER_HOST
#   dockerd_stop  /tmp/dr-dockerd   # SIGTERM, wait, SIGKILL; keeps RUNDIR
#   dockerd_testcontainers_env      # only the testcontainers variables
# or as a command (prints the exports to eval):
#   eval "$(.ci/dockerd.sh start /tmp/dr-dockerd)"
#   .ci/dockerd.sh stop /tmp/dr-dockerd
#   .ci/dockerd.sh install
# Idempotent: `start` on a RUNDIR whose engine already answers only prints the exports.

DR_DOCKERD_ARGS="${DR_DOCKERD_ARGS---bridge=none --iptables=false --ip6tables=false --ip 127.0.0.1}"
DR_DOCKERD_TIMEOUT="${DR_DOCKERD_TIMEOUT:-60}"

_dockerd_log() { printf 'dockerd.sh: %s\n' "$*" >&2; }

# The docker CLI from the package (a different docker binary may come first on PATH).
_dockerd_cli() {
    if [ -x /usr/bin/docker ]; then echo /usr/bin/docker; else command -v docker; fi
}

dockerd_install() {
    if command -v dockerd >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        _dockerd_log "dockerd is missing and installing docker.io needs root"
        return 1
    fi
    _dockerd_log "installing Debian docker.io"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        docker.io >/dev/null
    command -v dockerd >/dev/null 2>&1
}

_dockerd_exports() {
    printf 'export DOCKER_HOST=%q\n' "unix://$1/docker.sock"
    _testcontainers_exports
}

# testcontainers: its Ryuk reaper image cannot be pulled here, and the machine has a
# /.dockerenv, so it would otherwise think it runs inside a container. Values the user
# already set are kept.
_testcontainers_exports() {
    printf 'export TESTCONTAINERS_RYUK_DISABLED=%q\n' "${TESTCONTAINERS_RYUK_DISABLED:-true}"
    printf 'export TESTCONTAINERS_CONNECTION_MODE=%q\n' \
        "${TESTCONTAINERS_CONNECTION_MODE:-docker_host}"
    printf 'export TC_HOST=%q\n' "${TC_HOST:-127.0.0.1}"
}

# dockerd_testcontainers_env: export the testcontainers variables (for an engine that
# DOCKER_HOST already names).
dockerd_testcontainers_env() {
    eval "$(_testcontainers_exports)"
}

_dockerd_answers() {
    "$(_dockerd_cli)" -H "unix://$1/docker.sock" info >/dev/null 2>&1
}

# dockerd_start RUNDIR: start an engine there (or reuse the one that answers) and export
# DOCKER_HOST and the testcontainers variables into the calling shell.
dockerd_start() {
    local rundir=${1:?usage: dockerd_start RUNDIR}
    rundir=$(mkdir -p "$rundir" && cd "$rundir" && pwd)
    chmod 0700 "$rundir"
    if ! _dockerd_answers "$rundir"; then
        if ! command -v dockerd >/dev/null 2>&1; then
            _dockerd_log "dockerd not found (run dockerd_install as root)"
            return 1
        fi
        mkdir -p "$rundir/data" "$rundir/exec"
        # shellcheck disable=SC2086  # DR_DOCKERD_ARGS is a list of flags
        setsid -w dockerd \
            --host "unix://$rundir/docker.sock" \
            --data-root "$rundir/data" \
            --exec-root "$rundir/exec" \
            --pidfile "$rundir/dockerd.pid" \
            $DR_DOCKERD_ARGS \
            </dev/null >>"$rundir/dockerd.log" 2>&1 &
        echo $! >"$rundir/dockerd.launcher.pid"
        local deadline=$((SECONDS + DR_DOCKERD_TIMEOUT))
        until _dockerd_answers "$rundir"; do
            if ! kill -0 "$(cat "$rundir/dockerd.launcher.pid")" 2>/dev/null; then
                _dockerd_log "dockerd exited while starting; log $rundir/dockerd.log:"
                tail -n 20 "$rundir/dockerd.log" >&2
                return 1
            fi
            if [ "$SECONDS" -ge "$deadline" ]; then
                _dockerd_log "dockerd did not answer within ${DR_DOCKERD_TIMEOUT}s; log:"
                tail -n 20 "$rundir/dockerd.log" >&2
                dockerd_stop "$rundir"
                return 1
            fi
            sleep 0.2
        done
        _dockerd_log "engine up on unix://$rundir/docker.sock (log $rundir/dockerd.log)"
    fi
    eval "$(_dockerd_exports "$rundir")"
}

# dockerd_stop RUNDIR: stop the engine started there; no-op when none runs.
dockerd_stop() {
    local rundir=${1:?usage: dockerd_stop RUNDIR}
    rundir=$(cd "$rundir" 2>/dev/null && pwd) || return 0
    local pid="" file candidate
    for file in "$rundir/dockerd.pid" "$rundir/dockerd.launcher.pid"; do
        candidate=$(cat "$file" 2>/dev/null) || continue
        # A stale pid file may name a reused pid: only a process naming RUNDIR is ours.
        if tr '\0' ' ' 2>/dev/null <"/proc/$candidate/cmdline" | grep -qF "$rundir/"; then
            pid=$candidate
            break
        fi
    done
    if [ -n "$pid" ]; then
        # SIGTERM: dockerd stops its containers and its managed containerd, then exits.
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 20))
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    # The managed containerd and its shims run in sessions of their own; after a clean
    # shutdown none is left, after a killed dockerd they (and the containers) may be.
    # They name RUNDIR on their command line. A container's init is a shim's child, and
    # SIGKILL to the init of a pid namespace ends every process in that container.
    local proc cmd ppid owned=" "
    for proc in /proc/[0-9]*; do
        cmd=$(tr '\0' ' ' 2>/dev/null <"$proc/cmdline") || continue
        case "$cmd" in
        containerd*" $rundir/"* | */containerd*" $rundir/"*) owned="$owned${proc#/proc/} " ;;
        esac
    done
    if [ "$owned" != " " ]; then
        for proc in /proc/[0-9]*; do
            ppid=$(sed 's/.*) //' 2>/dev/null <"$proc/stat" | cut -d' ' -f2) || continue
            case "$owned" in *" $ppid "*) kill -KILL "${proc#/proc/}" 2>/dev/null || true ;; esac
        done
        # shellcheck disable=SC2086  # a list of pids
        kill -KILL $owned 2>/dev/null || true
    fi
    rm -f "$rundir/dockerd.launcher.pid" "$rundir/docker.sock"
    # Mounts a killed engine may leave under its roots.
    if [ -d "$rundir" ]; then
        { grep -F " $rundir/" /proc/self/mounts || true; } | awk '{print $2}' | sort -r |
            while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
    fi
    return 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case "${1:-}" in
    install) dockerd_install ;;
    start)
        dockerd_start "${2:?usage: $0 start RUNDIR}" >&2
        _dockerd_exports "$(cd "$2" && pwd)"
        ;;
    stop) dockerd_stop "${2:?usage: $0 stop RUNDIR}" ;;
    *)
        echo "usage: $0 install | start RUNDIR | stop RUNDIR" >&2
        exit 2
        ;;
    esac
fi
