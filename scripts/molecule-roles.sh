#!/usr/bin/env bash
# Run the Molecule scenario of each role given (roles/<role>/), KIT_MOLECULE_JOBS at a time
# (default 2). Each scenario's output is kept apart and printed whole when it ends, under a
# line with its result and time; the exit status is non-zero when any scenario failed, and
# every failed one is named at the end.
#
#   scripts/molecule-roles.sh roles/app/ roles/redis/
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
jobs=${KIT_MOLECULE_JOBS:-2}
case "$jobs" in
    '' | *[!0-9]* | 0) echo "molecule-roles: KIT_MOLECULE_JOBS=$jobs is not a positive number" >&2; exit 2 ;;
esac
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

scenarios=()
for role in "$@"; do
    if [ -d "$role/molecule/default" ]; then scenarios+=("${role%/}"); fi
done

run_one() {
    local role=$1 name start status
    name=$(basename "$role")
    start=$SECONDS
    if (cd "$role" && molecule --base-config "$root/.config/molecule/config.yml" test) \
        >"$logs/$name.log" 2>&1; then
        status=passed
    else
        status=FAILED
        touch "$logs/$name.failed"
    fi
    # One scenario's output at a time, whole.
    (
        flock 9
        echo "== molecule: $role ($status in $((SECONDS - start)) s)"
        cat "$logs/$name.log"
    ) 9>"$logs/.print"
}
export -f run_one
export root logs

start=$SECONDS
# shellcheck disable=SC2016  # $1 is run_one's argument, expanded by the inner bash
printf '%s\n' "${scenarios[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one "$1"' _ {} || true
failed=$(find "$logs" -name '*.failed' -printf '%f ' | sed 's/\.failed//g')
echo "== molecule: ${#scenarios[@]} role scenarios in $((SECONDS - start)) s, $jobs at a time"
if [ -n "$failed" ]; then
    echo "== molecule: failed: $failed" >&2
    exit 1
fi
