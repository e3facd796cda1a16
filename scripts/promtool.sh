#!/usr/bin/env bash
# Print the path of a promtool binary (Prometheus's rule checker), providing one when missing:
#   - promtool on PATH,
#   - else the copy unpacked earlier under .cache/promtool/,
#   - else download Debian's prometheus .deb (no install: the package would start a
#     daemon) and unpack it into .cache/promtool/.
# Only the path goes to stdout; every action is reported on stderr.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.cache/promtool"
binary="$cache/usr/bin/promtool"
log() { printf 'promtool: %s\n' "$*" >&2; }

if command -v promtool >/dev/null 2>&1; then
    command -v promtool
    exit 0
fi

if [ -x "$binary" ]; then
    printf '%s\n' "$binary"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
    log "promtool is not on PATH and cannot be fetched here (no apt-get/dpkg-deb)."
    log "install Prometheus's promtool (Debian/Ubuntu: the prometheus package), then re-run."
    exit 1
fi

mkdir -p "$cache"
download() { (cd "$cache" && apt-get download -qq prometheus >&2); }
log "promtool not found; downloading Debian's prometheus package into $cache"
if ! download; then
    log "download failed; refreshing the package lists and retrying"
    apt-get update -qq >&2
    download
fi

deb="$(find "$cache" -maxdepth 1 -name 'prometheus_*.deb' -print | sort | tail -n 1)"
if [ -z "$deb" ]; then
    log "apt-get download reported success but no prometheus_*.deb is in $cache"
    exit 1
fi
dpkg-deb -x "$deb" "$cache"
rm -f "$deb"

if [ ! -x "$binary" ]; then
    log "unpacked $deb but $binary is not there"
    exit 1
fi
printf '%s\n' "$binary"
