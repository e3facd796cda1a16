"""Requests/s through HAProxy against requests/s straight to the same gunicorn instances,
measured in one run, rounds alternating so that noise hits both alike.

Runs against the local stack (`make up`) with wrk (`apt-get install wrk`). The servers are
read from HAProxy itself (`show servers state`), so both paths reach the same instances.
Prints a Markdown table for benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/lb_throughput.py [--rounds 3] [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess

from stack import cpu_seconds

LB_CONTAINER = "kit-lb-1"
SOCKET = "/run/haproxy/admin.sock"
PATH = "/whoami"
RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
ERRORS = re.compile(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)$", re.M)


def servers() -> list[str]:
    """host:port of every server of HAProxy's app backend."""
    out = subprocess.run(
        ["docker", "exec", LB_CONTAINER, "sh", "-c",
         f"echo 'show servers state app' | socat stdio {SOCKET}"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    rows = [line.split() for line in out.splitlines() if line and not line.startswith("#")]
    # Columns: be_id be_name srv_id srv_name srv_addr srv_op_state ... srv_port is 19th.
    return [f"{row[4]}:{row[18]}" for row in rows if len(row) > 18]


def lb_address() -> str:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
         LB_CONTAINER],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    return f"{out}:80"


def app_containers() -> list[str]:
    out = subprocess.run(["docker", "ps", "--format", "{{.Names}}", "--filter", "name=kit-app-"],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    return sorted(out.split())


def wrk(targets: list[str], connections: int, seconds: int) -> tuple[float, str]:
    """Run one wrk per target at once, connections shared out; total requests/s."""
    share = max(1, connections // len(targets))
    command = ["wrk", "-t1", f"-c{share}", f"-d{seconds}s"]
    procs = [
        subprocess.Popen([*command, f"http://{target}{PATH}"], stdout=subprocess.PIPE, text=True)
        for target in targets
    ]
    total, errors = 0.0, []
    for proc in procs:
        out, _ = proc.communicate()
        match = RATE.search(out)
        if not match:
            raise SystemExit(f"wrk printed no rate:\n{out}")
        total += float(match.group(1))
        errors += [m.group(0) for m in ERRORS.finditer(out)]
    return total, "; ".join(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")

    direct_targets, lb = servers(), lb_address()
    apps = app_containers()
    direct, through = [], []
    # CPU seconds per 1,000 requests, of the app containers and of the lb container.
    cost: dict[str, list[tuple[float, float]]] = {"direct": [], "lb": []}

    def measured(path: str, targets: list[str]) -> tuple[float, str]:
        app0, lb0 = sum(map(cpu_seconds, apps)), cpu_seconds(LB_CONTAINER)
        rate, errors = wrk(targets, args.connections, args.seconds)
        app1, lb1 = sum(map(cpu_seconds, apps)), cpu_seconds(LB_CONTAINER)
        kreq = rate * args.seconds / 1000
        cost[path].append(((app1 - app0) / kreq, (lb1 - lb0) / kreq))
        return rate, errors

    for _ in range(args.rounds):
        rate, errors = measured("direct", direct_targets)
        direct.append(rate)
        rate, errors_lb = measured("lb", [lb])
        through.append(rate)
        for label, text in (("direct", errors), ("lb", errors_lb)):
            if text:
                print(f"  {label}: {text}")
    d, t = statistics.median(direct), statistics.median(through)
    print(f"{len(direct_targets)} gunicorn instances ({', '.join(direct_targets)}), GET {PATH},")
    print(f"{args.connections} connections, {args.rounds} rounds of {args.seconds}s each way:")
    print()
    print("| path | requests/s per round | median | ratio |")
    print("|---|---|---|---|")
    rounds = {path: ", ".join(f"{r:.0f}" for r in rates) for path, rates in
              (("direct", direct), ("lb", through))}  # fmt: skip
    print(f"| straight to the instances | {rounds['direct']} | {d:.0f} | 1.00 |")
    print(f"| through HAProxy | {rounds['lb']} | {t:.0f} | {t / d:.2f} |")
    print()
    print("CPU seconds per 1,000 requests (median over rounds), where the cores go:")
    print()
    print("| path | app containers | lb container |")
    print("|---|---|---|")
    for path, label in (("direct", "straight to the instances"), ("lb", "through HAProxy")):
        app_cost = statistics.median(c[0] for c in cost[path])
        lb_cost = statistics.median(c[1] for c in cost[path])
        print(f"| {label} | {app_cost:.3f} | {lb_cost:.3f} |")


if __name__ == "__main__":
    main()
