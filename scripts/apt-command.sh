#!/usr/bin/env bash
# Make sure a command the kit runs on this machine exists: `scripts/apt-command.sh COMMAND
# [PACKAGE]` (PACKAGE defaults to COMMAND). When it is missing:
#   - install Debian's PACKAGE (root on Debian/Ubuntu only),
#   - elsewhere print what to install and stop.
# Every action is reported on stderr; nothing is done when the command is there.
set -euo pipefail

command="$1"
package="${2:-$1}"
log() { printf 'apt-command: %s\n' "$*" >&2; }

if command -v "$command" >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "$command not found; installing Debian's $package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "$package" >/dev/null
    if command -v "$command" >/dev/null 2>&1; then
        exit 0
    fi
    log "$package is installed but $command is still not on PATH ($PATH)"
    exit 1
fi

log "$command is missing and cannot be installed here."
log "install it (Debian/Ubuntu: 'sudo apt-get install $package'), then re-run make."
exit 1
