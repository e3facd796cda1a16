#!/usr/bin/env bash
# Make sure PYTHON (the first argument, python3 by default) can create virtualenvs: venv
# and ensurepip, which Debian ships apart from Python, in python3-venv. When it cannot:
#   - install Debian's python3-venv (root on Debian/Ubuntu only),
#   - elsewhere print what to install and stop.
# Every action is reported on stderr; nothing is done when venv already works.
set -euo pipefail

python="${1:-python3}"
log() { printf 'python-venv: %s\n' "$*" >&2; }
can_venv() { "$python" -m venv --help >/dev/null 2>&1 && "$python" -c 'import ensurepip' >/dev/null 2>&1; }

if can_venv; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "$python cannot create virtualenvs (no venv or ensurepip); installing Debian's python3-venv"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3-venv >/dev/null
    if can_venv; then
        exit 0
    fi
    log "$python still cannot create virtualenvs after installing python3-venv:"
    log "point PYTHON at Debian's own python3 ('make setup PYTHON=/usr/bin/python3')."
    exit 1
fi

log "$python cannot create virtualenvs (no venv or ensurepip), and cannot install them here."
log "install them (Debian/Ubuntu: 'sudo apt-get install python3-venv'), then re-run make."
exit 1
