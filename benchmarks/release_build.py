"""How long the controller takes to build a release of the example application (the app
role's files/build_wheelhouse.py, as every converge and deploy runs it), resolving its
dependencies at every build (app_resolution_max_age: 0) and with the resolution kept
(the default, an hour), alternately in one run. Needs no stack, only the package index.

    python benchmarks/release_build.py [--rounds 3]

Each build goes to a wheelhouse of its own under a temporary directory, warmed by one build
first, so the wheels are on disk for both: the difference is the question to the index.
Every build must give the same release id. Prints each build's time and the ratio of the
medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stack import ROOT

BUILDER = ROOT / "roles/app/files/build_wheelhouse.py"
# The example application as the app role builds it for a Debian 13 host (roles/app/vars).
ARGS = [
    "--require", "gunicorn", "--python-version", "3.13", "--platform", "manylinux_2_41_x86_64",
    "--source", str(ROOT / "app_skeleton"), "--local", str(ROOT / "reaper"),
    "--extra", "py-spy>=0.4,<1",
]  # fmt: skip


def build(wheelhouse: Path, max_age: int) -> tuple[float, str]:
    """Seconds one build took, and the release id it gave."""
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(BUILDER), "--wheelhouse", str(wheelhouse),
         "--resolved-max-age", str(max_age), *ARGS],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.monotonic() - start
    if result.returncode != 0:
        raise SystemExit(f"build_wheelhouse.py failed:\n{result.stdout}\n{result.stderr}")
    return seconds, str(json.loads(result.stdout)["release"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times: dict[int, list[float]] = {0: [], 3600: []}
    releases: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="kit-release-build-") as tmp:
        wheelhouse = Path(tmp) / "wheelhouse"
        _, first = build(wheelhouse, 3600)
        releases.add(first)
        for round_ in range(1, args.rounds + 1):
            for max_age in times:
                seconds, release = build(wheelhouse, max_age)
                times[max_age].append(seconds)
                releases.add(release)
                print(f"round {round_}: app_resolution_max_age={max_age:<4} {seconds:6.2f} s")
    if len(releases) != 1:
        raise SystemExit(f"the builds gave different releases: {sorted(releases)}")
    resolved, kept = statistics.median(times[0]), statistics.median(times[3600])
    print(f"release {releases.pop()}: median {resolved:.2f} s resolving at every build, "
          f"{kept:.2f} s with the resolution kept; ratio {resolved / kept:.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
