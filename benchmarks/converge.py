"""How long `ansible/site.yml` takes on the converged local stack when nothing changes, with
Ansible's own linear strategy and with Mitogen's, measured alternately in one run.

    make up && python benchmarks/converge.py [--rounds 2]

Each run must change nothing (the stack is converged); the script stops if one does. It
prints each run's wall time and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import time
from pathlib import Path

from stack import ROOT

STRATEGIES = ("linear", "mitogen_linear")


def converge(
    strategy: str,
    playbook: str = "ansible/site.yml",
    extra_env: dict[str, str] | None = None,
    log: Path | None = None,
) -> tuple[float, int]:
    """Seconds one run of the playbook took on the local stack, and how many tasks it changed;
    its output goes to `log` when one is named."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STRATEGY=strategy,
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1") | (extra_env or {})  # fmt: skip
    start = time.monotonic()
    result = subprocess.run(
        [str(ROOT / ".venv/bin/ansible-playbook"), "-i", str(ROOT / "inventories/local"),
         str(ROOT / playbook)],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"{playbook} with {strategy} failed:\n{result.stdout[-3000:]}")
    changed = sum(int(n) for n in re.findall(r"changed=(\d+)", result.stdout))
    return elapsed, changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    times: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    print("| round | strategy | seconds | tasks changed |\n| --- | --- | --- | --- |")
    for round_ in range(1, args.rounds + 1):
        for strategy in STRATEGIES:
            seconds, changed = converge(strategy)
            print(f"| {round_} | {strategy} | {seconds:.1f} | {changed} |", flush=True)
            if changed:
                raise SystemExit(f"a run with {strategy} changed {changed} tasks: converge first")
            times[strategy].append(seconds)
    linear, mitogen = (statistics.median(times[s]) for s in STRATEGIES)
    print(f"\nmedian: linear {linear:.1f} s, mitogen_linear {mitogen:.1f} s, "
          f"ratio {linear / mitogen:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
