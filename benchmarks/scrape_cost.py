"""What scraping costs the hosts: requests/s through HAProxy and straight to the instances, with
Prometheus scraping every exporter and with it stopped, rounds alternating in one run.

Runs against the local stack (`make up`) with wrk, like lb_throughput.py (whose measurement
it reuses). Scraping is turned off by stopping Prometheus on the first monitoring host, and on
again by starting it; the exporters keep running either way (idle, an exporter costs nothing:
it works only when scraped). Each round also measures the whole stack at rest for --idle
seconds: the cores every container uses, so what scraping adds shows on its own. Prints
Markdown tables for benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/scrape_cost.py [--rounds 3] [--seconds 10] [--connections 32]
                                               [--idle 20]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import time

from lb_throughput import lb_address, servers, wrk
from stack import cpu_seconds, run

MONITORING_CONTAINER = "kit-mon-1"


def prometheus(action: str) -> None:
    subprocess.run(
        ["docker", "exec", MONITORING_CONTAINER, "systemctl", action, "prometheus.service"],
        check=True,
    )
    if action == "start":
        time.sleep(10)  # its first scrapes of every target, before the measurement


def containers() -> list[str]:
    return sorted(
        run("docker", "ps", "--format", "{{.Names}}", "--filter", "label=kit.stack").split()
    )


def cores_at_rest(seconds: int) -> float:
    """Cores the stack's containers use together, no request sent."""
    names = containers()
    before = sum(map(cpu_seconds, names))
    time.sleep(seconds)
    return (sum(map(cpu_seconds, names)) - before) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--idle", type=int, default=20)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")

    direct_targets, lb = servers(), lb_address()
    rates: dict[tuple[str, str], list[float]] = {}
    rest: dict[str, list[float]] = {"on": [], "off": []}
    try:
        for _ in range(args.rounds):
            for scraping in ("on", "off"):
                prometheus("start" if scraping == "on" else "stop")
                rest[scraping].append(cores_at_rest(args.idle))
                for path, targets in (("direct", direct_targets), ("lb", [lb])):
                    rate, errors = wrk(targets, args.connections, args.seconds)
                    rates.setdefault((scraping, path), []).append(rate)
                    if errors:
                        print(f"  scraping {scraping}, {path}: {errors}")
    finally:
        prometheus("start")

    print(f"{len(direct_targets)} gunicorn instances, {args.connections} connections,")
    print(f"{args.rounds} rounds of {args.seconds}s per path and setting:")
    print()
    print("| scraping | direct req/s (median) | through HAProxy req/s (median) | lb / direct |")
    print("|---|---|---|---|")
    for scraping in ("on", "off"):
        direct = statistics.median(rates[(scraping, "direct")])
        through = statistics.median(rates[(scraping, "lb")])
        print(f"| {scraping} | {direct:.0f} | {through:.0f} | {through / direct:.2f} |")
    print()
    print(
        f"The stack at rest ({len(containers())} containers, {args.idle} s per round), cores used:"
    )
    print()
    print("| scraping | per round | median |")
    print("|---|---|---|")
    for scraping in ("on", "off"):
        rounds = ", ".join(f"{c:.3f}" for c in rest[scraping])
        print(f"| {scraping} | {rounds} | {statistics.median(rest[scraping]):.3f} |")


if __name__ == "__main__":
    main()
