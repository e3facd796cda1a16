#!/usr/bin/env bash
# Make sure a Docker engine answers. When `docker info` fails:
#   - install Debian's docker.io if dockerd is missing (root on Debian/Ubuntu only;
#     elsewhere print what to install and stop),
#   - start dockerd in the background (no init system starts it on these machines),
#   - wait until it answers.
# Every action is reported on stderr; nothing is done when the engine already answers.
set -euo pipefail

log() { printf 'docker-engine: %s\n' "$*" >&2; }

if docker info >/dev/null 2>&1; then
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "dockerd not found; installing Debian's docker.io"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq docker.io >/dev/null
    else
        log "no Docker engine and cannot install one here."
        log "install Docker (Debian/Ubuntu: 'sudo apt-get install docker.io') and start it, then re-run."
        exit 1
    fi
fi

if [ "$(id -u)" -ne 0 ]; then
    log "the Docker engine is not running and starting it needs root: 'sudo dockerd &' or 'sudo systemctl start docker'"
    exit 1
fi

logfile=/var/log/kit-dockerd.log
log "the Docker engine is not answering; starting dockerd in the background (log: $logfile)"
# setsid: the engine outlives the make target that started it.
setsid dockerd >>"$logfile" 2>&1 < /dev/null &

for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
        log "dockerd is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
        exit 0
    fi
    sleep 1
done
log "dockerd did not answer within 60 s; last lines of $logfile:"
tail -n 20 "$logfile" >&2
exit 1
