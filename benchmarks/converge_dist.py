"""How long `ansible/site.yml` takes on a fresh local stack of each Debian release, measured
one after the other in one run: the first converge, then a run that changes nothing.

    python benchmarks/converge_dist.py [--dists bookworm,trixie]

It replaces the running local stack: for each release it removes the stack (`make down`),
builds the release's base image when missing (`make image`), creates the containers
(ansible/local_up.yml) and times site.yml twice with the strategy `make up` uses, each
run's output (with every task's time) in .cache/converge_dist/. The last release's stack is
left running. `make bench` does not run it, for that reason.
"""

from __future__ import annotations

import argparse

from converge import converge
from stack import ROOT, run

DISTS = ("bookworm", "trixie")
# Each run's output, with the time of every task (profile_tasks), to see where they differ.
LOGS = ROOT / ".cache" / "converge_dist"
CALLBACKS = "ansible.posix.timer,ansible.posix.profile_roles,ansible.posix.profile_tasks"


def make(target: str, dist: str) -> None:
    """One make target for the release; its output is shown only when it fails."""
    run("make", "-s", "-C", str(ROOT), target, f"DIST={dist}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dists", default=",".join(DISTS))
    parser.add_argument("--strategy", default="mitogen_linear")
    args = parser.parse_args()
    dists = args.dists.split(",")
    first: dict[str, float] = {}
    second: dict[str, float] = {}
    print("| release | first converge (s) | tasks changed | second run (s) | tasks changed |")
    print("| --- | --- | --- | --- | --- |")
    for dist in dists:
        make("down", dist)
        make("image", dist)
        env = {"KIT_DIST": dist, "KIT_BASE_IMAGE": f"kit-{dist}-systemd:latest",
               "ANSIBLE_CALLBACKS_ENABLED": CALLBACKS}  # fmt: skip
        converge(args.strategy, "ansible/local_up.yml", env)
        first[dist], changed = converge(args.strategy, "ansible/site.yml", env,
                                        LOGS / f"{dist}-first.log")  # fmt: skip
        second[dist], changed_again = converge(args.strategy, "ansible/site.yml", env,
                                               LOGS / f"{dist}-second.log")  # fmt: skip
        print(f"| {dist} | {first[dist]:.1f} | {changed} | {second[dist]:.1f} | {changed_again} |",
              flush=True)  # fmt: skip
        if changed_again:
            raise SystemExit(f"{dist}: the second run changed {changed_again} tasks")
    if len(dists) == 2:
        a, b = dists
        print(f"\n{b} against {a}: first converge {first[b] / first[a]:.2f}, "
              f"second run {second[b] / second[a]:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
