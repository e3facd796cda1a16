#!/usr/bin/env bash
# A screenshot of the kit's page of graphs (/consoles/kit.html, the monitoring role's
# files/consoles/kit.html) as Prometheus serves it, the whole page in one PNG:
#   scripts/screenshot.sh [OUTPUT.png]      (make screenshot)
# Prints the image's path: .cache/screenshots/kit-<date>.png unless OUTPUT is given.
#   KIT_PROMETHEUS_URL      where Prometheus answers (default: the local stack's)
#   KIT_SCREENSHOT_RANGE    the page's time range, e.g. 1h (default: 30m)
#   KIT_SCREENSHOT_WIDTH    the window's width in pixels (default: 1400)
# Uses the Chromium on PATH, or installs Debian's chromium (scripts/apt-command.sh).
set -euo pipefail

cd "$(dirname "$0")/.."
base="${KIT_PROMETHEUS_URL:-http://127.0.0.1:9090}"
url="${base%/}/consoles/kit.html?range=${KIT_SCREENSHOT_RANGE:-30m}"
width="${KIT_SCREENSHOT_WIDTH:-1400}"
output="${1:-.cache/screenshots/kit-$(date +%Y%m%d-%H%M%S).png}"
# Virtual milliseconds the page gets to fetch and draw every panel; virtual time stands
# still while a fetch is pending, and the page's 30 s refresh never comes.
budget=20000
log() { printf 'screenshot: %s\n' "$*" >&2; }

browser=""
for candidate in chromium chromium-browser google-chrome-stable google-chrome; do
    if command -v "$candidate" >/dev/null 2>&1; then
        browser="$candidate"
        break
    fi
done
if [ -z "$browser" ]; then
    scripts/apt-command.sh chromium
    browser=chromium
fi
scripts/apt-command.sh curl

if ! curl -fsS -o /dev/null --max-time 10 "$url"; then
    log "no page at $url: is Prometheus up (KIT_PROMETHEUS_URL), and kit.html in its consoles"
    log "directory (the monitoring role puts it there: make converge)?"
    exit 1
fi

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
flags=(--headless --disable-gpu --hide-scrollbars --no-first-run --disable-dev-shm-usage
       --user-data-dir="$profile" --virtual-time-budget="$budget")
# Chromium's sandbox refuses to run as root.
if [ "$(id -u)" -eq 0 ]; then
    flags+=(--no-sandbox)
fi

# The page records its full height once every panel is drawn (data-page-height): a first,
# invisible pass reads it, so the screenshot's window holds every panel and no blank tail.
dom="$("$browser" "${flags[@]}" --window-size="$width,1000" --dump-dom "$url" 2>"$profile/dump.log")" || {
    cat "$profile/dump.log" >&2
    log "$browser could not load $url"
    exit 1
}
height="$(printf '%s' "$dom" | grep -o 'data-page-height="[0-9]*"' | grep -o '[0-9]\+' | tail -n 1 || true)"
if [ -z "$height" ]; then
    height=4500
    log "the page did not report its height (not every panel drawn?); using $height px"
fi

mkdir -p "$(dirname "$output")"
rm -f "$output"
"$browser" "${flags[@]}" --window-size="$width,$height" --screenshot="$output" "$url" \
    >"$profile/shot.log" 2>&1 || true
if [ ! -s "$output" ]; then
    cat "$profile/shot.log" >&2
    log "$browser wrote no screenshot to $output"
    exit 1
fi
printf '%s\n' "$output"
