#!/usr/bin/env bash
# Run each command given at once, in the background, its output kept apart and printed whole
# when it ends, under a line with its result and time. The exit status is non-zero when any
# command failed, and every failed one is named at the end.
#
#   scripts/parallel.sh "make unit" "make molecule-roles"
set -euo pipefail

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

run_one() {
    local number=$1 command=$2 start status
    start=$SECONDS
    if bash -c "$command" >"$logs/$number.log" 2>&1; then
        status=passed
    else
        status=FAILED
        echo "$command" >"$logs/$number.failed"
    fi
    (
        flock 9
        echo "== parallel: $command ($status in $((SECONDS - start)) s)"
        cat "$logs/$number.log"
    ) 9>"$logs/.print"
}

pids=()
number=0
for command in "$@"; do
    number=$((number + 1))
    run_one "$number" "$command" &
    pids+=("$!")
done
for pid in "${pids[@]}"; do
    wait "$pid" || true
done

if compgen -G "$logs/*.failed" >/dev/null; then
    sed 's/^/== parallel: failed: /' "$logs"/*.failed >&2
    exit 1
fi
