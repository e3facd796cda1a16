#!/usr/bin/env bash
# Build the systemd Debian base image the local stack and Molecule run on, without a
# container registry: debootstrap from the machine's own apt mirror, then `docker import`.
#
#   KIT_DIST         Debian release: trixie (Debian 13, the default) or bookworm (Debian 12)
#   KIT_BASE_IMAGE   image name (default kit-$KIT_DIST-systemd:latest). A user with a registry
#                    may point the kit at any systemd image instead and skip this script.
#   KIT_MIRROR       Debian mirror (default: the mirror this machine's apt sources use for
#                    that release, else for any Debian release, else deb.debian.org)
#   KIT_IMAGE_REBUILD=1  rebuild even when the image exists
#
# The image is cached: nothing is done when it already exists. Containers made from it
# are stopped with SIGRTMIN+3 (systemd's halt); `docker import` on older engines cannot
# record a stop signal, so the container definitions set it.
set -euo pipefail

log() { printf 'build-image: %s\n' "$*" >&2; }
dist="${KIT_DIST:-trixie}"
case "$dist" in
    trixie | bookworm) ;;
    *) log "KIT_DIST=$dist is not a release the kit supports: trixie (Debian 13) or bookworm (Debian 12)"; exit 2 ;;
esac
image="${KIT_BASE_IMAGE:-kit-$dist-systemd:latest}"

# The image records which version of this script built it: the kit's own image (its default
# name) is rebuilt when the script changed. An image named by KIT_BASE_IMAGE is used as is.
build=$(sha256sum "$0" | cut -c1-12)
if [ "${KIT_IMAGE_REBUILD:-0}" != 1 ] && docker image inspect "$image" >/dev/null 2>&1; then
    built=$(docker image inspect -f '{{index .Config.Labels "kit.build"}}' "$image" 2>/dev/null || true)
    if [ "$built" = "$build" ] || [ "$image" != "kit-$dist-systemd:latest" ]; then
        log "$image is present; not rebuilding (KIT_IMAGE_REBUILD=1 forces it)"
        exit 0
    fi
    log "$image was built by another version of this script; rebuilding it"
fi

# The first http(s) URI the machine's apt sources use for a Debian suite, one-line or deb822.
find_mirror() {
    local suite=$1 files
    files=$(ls /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$files" ] || return 0
    # shellcheck disable=SC2086
    awk -v suite="$suite" '
        /^[[:space:]]*deb[[:space:]]/ {
            for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) { uri = $i; s = $(i + 1); break }
            if (s == suite) { print uri; exit }
        }
        /^URIs:/   { uris = $2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite && uris != "") { print uris; exit } }
        /^$/       { uris = "" }
    ' $files
}

# A machine on one release serves the other from the same mirror: its sources name only its own.
first_mirror() {
    local suite uri
    for suite in "$@"; do
        uri=$(find_mirror "$suite")
        if [ -n "$uri" ]; then echo "$uri"; return; fi
    done
}
mirror="${KIT_MIRROR:-$(first_mirror "$dist" trixie bookworm)}"
mirror="${mirror:-http://deb.debian.org/debian}"
security="$(first_mirror "$dist-security" trixie-security bookworm-security)"
security="${security:-http://deb.debian.org/debian-security}"

if ! command -v debootstrap >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    else
        log "debootstrap is missing: install it ('sudo apt-get install debootstrap') or set KIT_BASE_IMAGE to a systemd image you have"
        exit 1
    fi
fi

root=$(mktemp -d /var/tmp/kit-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT

log "debootstrap $dist from $mirror into $root"
debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,python3,python3-apt,ca-certificates,iproute2,procps,iputils-ping \
    "$dist" "$root" "$mirror" >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $dist main
deb $mirror $dist-updates main
deb $security $dist-security main
SOURCES
# Package installs as Debian's own container images make them: dpkg does not fsync each
# file it unpacks (a container's filesystem is thrown away, not recovered after a crash),
# and apt fetches no translations. Installing the stack's packages takes about a third less.
echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/kit-unsafe-io"
echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/kit-no-languages"
# An empty machine-id: systemd gives each container its own at boot.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
# No package lists are shipped: mark them as never updated so the first apt run updates.
touch -d @0 "$root/var/lib/apt/lists"

log "importing as $image"
tar -C "$root" -c . | docker import \
    -c 'CMD ["/lib/systemd/systemd"]' \
    -c 'ENV container=docker' \
    -c "LABEL kit.build=$build" \
    - "$image" >/dev/null
log "built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
