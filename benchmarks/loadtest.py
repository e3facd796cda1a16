"""Many concurrent keep-alive clients with think time, through every load balancer.

`make loadtest CLIENTS=50000 DURATION=60` runs it against the local stack (`make up LB=6`
for 50,000: one HAProxy here holds about 9,500 connections). The load generators are wrk
processes (benchmarks/think.lua) in containers this script creates on the stack network and
removes afterwards, one container per lb host, each process at most --per-process
connections so none nears the open-file limit. A client connects just before its first
request, at a time drawn from the wait until a client's next request in steady state (the
residual of its think time): the request rate is the steady one from the first second, with
no burst of first requests. Once the last client has connected (after the longest think
time) every client stays connected for DURATION seconds. Traffic goes only to the stack's
own lb containers.

Every few seconds a progress line; at the end a Markdown table for benchmarks/RESULTS.md:
requests, rate, latency percentiles (merged over the processes), non-2xx answers by code,
socket errors by kind, peak HAProxy connections per lb host, HAProxy memory per connection,
app-tier CPU, and access-log lines against requests.

    .venv/bin/python benchmarks/loadtest.py --clients 50000 --duration 60 [--think 25-75]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from stack import cpu_seconds, haproxy, inventory, run

SCRIPT = Path(__file__).with_name("think.lua")
IMAGE = "kit-loadgen:latest"
LABEL = "kit.loadgen=1"
INFO = re.compile(r"^(\w+): (.*)$", re.M)


def haproxy_info(lb: str) -> dict[str, str]:
    return dict(INFO.findall(haproxy(lb, "show info")))


def frontend_requests(lb: str) -> int:
    """Requests the public frontend has received (req_tot of `show stat`)."""
    lines = haproxy(lb, "show stat -1 1 -1").splitlines()
    header = lines[0].lstrip("# ").split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == "public":
            return int(row.get("req_tot") or 0)
    return 0


def haproxy_memory(lb: str) -> tuple[int, int]:
    """(RSS of the HAProxy processes, bytes its memory pools hold in use)."""
    out = run("docker", "exec", lb, "ps", "-C", "haproxy", "-o", "rss=", check=False)
    pools = float(haproxy_info(lb).get("PoolUsed_MB", "0"))
    return sum(int(x) for x in out.split()) * 1024, int(pools * 1024 * 1024)


def residual_quantile(q: float, low: float, high: float) -> float:
    """Seconds t such that a fraction q of clients in steady state send their next request
    within t, with think times uniform in [low, high]: the inverse of the residual-time
    distribution, whose density is P(think > t) / E[think]."""
    mean = (low + high) / 2

    def cdf(t: float) -> float:
        if t <= low:
            return t / mean
        return (low + ((high - low) ** 2 - (high - t) ** 2) / (2 * (high - low))) / mean

    lo, hi = 0.0, high
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < q else (lo, mid)
    return lo


def keepalive_seconds(lb: str) -> float:
    cfg = run("docker", "exec", lb, "cat", "/etc/haproxy/haproxy.cfg")
    match = re.search(r"^\s*timeout http-keep-alive (\d+)(ms|s|m)?\s*$", cfg, re.M)
    if not match:
        return 0.0
    return int(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, None: 0.001}[match.group(2)]


def ensure_image(base: str) -> None:
    """The base image plus Debian's wrk, built once and kept."""
    if run("docker", "images", "-q", IMAGE).strip():
        return
    print(f"loadtest: building {IMAGE} from {base} (Debian's wrk)", flush=True)
    name = "kit-loadgen-build"
    run("docker", "rm", "-f", name, check=False)
    run("docker", "run", "-d", "--name", name, "--entrypoint", "sleep", base, "infinity")
    try:
        run(
            "docker",
            "exec",
            name,
            "sh",
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk",
        )
        run("docker", "commit", "-c", 'ENTRYPOINT ["sleep", "infinity"]', name, IMAGE)
    finally:
        run("docker", "rm", "-f", name, check=False)


@dataclass
class Process:
    container: str
    target: str
    connections: int
    start: float
    spread: float
    seed: int
    popen: subprocess.Popen[str] | None = None
    output: str = ""


@dataclass
class Totals:
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    quantiles: list[tuple[int, dict[float, int]]] = field(default_factory=list)
    max_us: int = 0

    def add(self, output: str) -> None:
        summary = re.search(r"^KIT_SUMMARY (.*)$", output, re.M)
        if not summary:
            raise SystemExit(f"a wrk process printed no summary:\n{output[-2000:]}")
        fields = dict(kv.split("=") for kv in summary.group(1).split())
        requests = int(fields["requests"])
        self.requests += requests
        for kind in ("connect", "read", "write", "timeout"):
            self.errors[kind] = self.errors.get(kind, 0) + int(fields[kind])
        self.errors["status"] = self.errors.get("status", 0) + int(fields["status"])
        points = {float(p): int(v) for p, v in re.findall(r"^KIT_Q ([\d.]+) (\d+)$", output, re.M)}
        self.quantiles.append((requests, points))
        self.max_us = max(self.max_us, int(re.search(r"^KIT_MAX (\d+)$", output, re.M)[1]))

    def percentile(self, p: float) -> float:
        """Merged over processes: the latency below which p% of all requests fall, from each
        process's own percentiles weighted by its request count (ms)."""
        total = sum(n for n, _ in self.quantiles)

        def below(value: int) -> float:
            count = 0.0
            for n, points in self.quantiles:
                share = max((q for q, v in points.items() if v <= value), default=0.0)
                count += n * share / 100
            return count

        candidates = sorted({v for _, points in self.quantiles for v in points.values()})
        for value in candidates:
            if below(value) >= total * p / 100:
                return value / 1000
        return self.max_us / 1000


def plan(lbs: list[tuple[str, str]], clients: int, per_process: int, think: tuple[float, float],
         path: str) -> list[Process]:  # fmt: skip
    """Processes spread evenly over the lbs, the lbs taking turns; each process starts at its
    quantile of the residual think time, its clients sending their first requests over the
    gap to the next start."""
    per_lb: list[list[int]] = []
    for i in range(len(lbs)):
        count = clients // len(lbs) + (1 if i < clients % len(lbs) else 0)
        n = max(1, math.ceil(count / per_process))
        per_lb.append([count // n + (1 if k < count % n else 0) for k in range(n)])
    order = [(i, chunks[k]) for k in range(max(map(len, per_lb)))
             for i, chunks in enumerate(per_lb) if k < len(chunks)]  # fmt: skip
    starts = [residual_quantile(k / len(order), *think) for k in range(len(order) + 1)]
    return [
        Process(
            container=f"kit-loadgen-{index + 1}", target=f"http://{lbs[index][1]}:80{path}",
            connections=count, start=starts[k], spread=starts[k + 1] - starts[k],
            seed=random.randrange(1 << 30),
        )
        for k, (index, count) in enumerate(order)
    ]  # fmt: skip


def check_stack(lbs: list[tuple[str, str]], clients: int, think_max: float) -> None:
    """Refuse a run the stack cannot hold, naming the fix."""
    if not SCRIPT.is_file():  # wrk runs without a missing script, silently
        raise SystemExit(f"{SCRIPT} is missing")
    for lb, _ in lbs:
        keepalive = keepalive_seconds(lb)
        if keepalive <= think_max:
            raise SystemExit(
                f"{lb}: timeout http-keep-alive is {keepalive:g} s, not above the clients' "
                f"longest think time ({think_max:g} s): HAProxy would close idle clients. Lower "
                "--think or raise haproxy_timeout_http_keep_alive (and haproxy_timeout_client)."
            )
        maxconn = int(haproxy_info(lb)["Maxconn"])
        if clients / len(lbs) > maxconn:
            raise SystemExit(
                f"{clients} clients over {len(lbs)} lb host(s) is more than {lb}'s maxconn "
                f"{maxconn}: make up LB={math.ceil(clients / maxconn)}"
            )


def logged_statuses(lb: str, since: float) -> Counter[int]:
    """Access log lines of the public frontend since `since`, by status code."""
    out = run("docker", "exec", lb, "sh", "-c",
              f"journalctl -u haproxy --since @{int(since)} -o cat "
              "| awk '$3 == \"public\" {print $6}' | sort | uniq -c", check=False)  # fmt: skip
    return Counter({int(code): int(n) for n, code in (line.split() for line in out.splitlines())})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--duration", type=int, default=60,
                        help="seconds with every client connected")  # fmt: skip
    parser.add_argument("--think", default="25-75", help="seconds between requests, MIN-MAX")
    parser.add_argument("--per-process", type=int, default=2000)
    parser.add_argument("--path", default="/whoami")
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()

    think_min, think_max = (float(x) for x in args.think.split("-"))
    hosts = inventory("lb", "app")
    lbs, apps = hosts["lb"], hosts["app"]
    check_stack(lbs, args.clients, think_max)
    dist = os.environ.get("KIT_DIST") or "trixie"
    ensure_image(os.environ.get("KIT_BASE_IMAGE") or f"kit-{dist}-systemd:latest")
    processes = plan(lbs, args.clients, args.per_process, (think_min, think_max), args.path)
    containers = sorted({p.container for p in processes})
    for name in containers:
        run("docker", "rm", "-f", name, check=False)
        run("docker", "run", "-d", "--name", name, "--label", LABEL, "--network", "kit",
            "--ulimit", "nofile=20000:20000",
            "--sysctl", "net.ipv4.ip_local_port_range=10240 65000", IMAGE)  # fmt: skip
        run("docker", "cp", str(SCRIPT), f"{name}:/think.lua")
    connect = processes[-1].start + processes[-1].spread
    print(f"loadtest: {args.clients} clients through {len(lbs)} lb host(s), "
          f"{len(processes)} wrk processes in {len(containers)} containers, think "
          f"{think_min:g}-{think_max:g} s; clients connect over {connect:.0f} s, "
          f"then {args.duration} s all connected", flush=True)  # fmt: skip

    idle = {lb: haproxy_memory(lb) for lb, _ in lbs}
    cpu_start = {app: cpu_seconds(app) for app, _ in apps}
    req_start = {lb: frontend_requests(lb) for lb, _ in lbs}
    log_since = time.time()
    peak = {lb: 0 for lb, _ in lbs}
    memory = dict(idle)  # at each lb's peak of connections
    began = time.monotonic()
    end = connect + args.duration
    done = threading.Event()

    def monitor() -> None:
        """A progress line every interval, and the peaks, while the clients run."""
        last_tick, last_req, last_cpu = began, sum(req_start.values()), 0.0
        while not done.wait(args.interval):
            # A runtime API that does not answer in time (a loaded machine) skips a line.
            try:
                conns = {lb: int(haproxy_info(lb)["CurrConns"]) for lb, _ in lbs}
            except (KeyError, ValueError):
                continue
            for lb, _ in lbs:
                if conns[lb] >= peak[lb]:
                    peak[lb], memory[lb] = conns[lb], haproxy_memory(lb)
            total_req = sum(frontend_requests(lb) for lb, _ in lbs)
            cpu = sum(cpu_seconds(app) - cpu_start[app] for app, _ in apps)
            tick = time.monotonic()
            print(f"  t={tick - began:5.0f}s  connections {sum(conns.values()):>6}  "
                  f"(per lb {'/'.join(str(c) for c in conns.values())})  "
                  f"{(total_req - last_req) / (tick - last_tick):7.0f} req/s  "
                  f"app tier {(cpu - last_cpu) / (tick - last_tick):.2f} cores",
                  flush=True)  # fmt: skip
            last_tick, last_req, last_cpu = tick, total_req, cpu

    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    try:
        for p in processes:
            time.sleep(max(0.0, p.start - (time.monotonic() - began)))
            # Every process ends at the same moment, however late it started.
            seconds = max(1, round(end - (time.monotonic() - began)))
            first_ms = max(1, int(min(8.0, p.spread) * 1000))
            p.popen = subprocess.Popen(
                ["docker", "exec", p.container, "wrk", "-t1", f"-c{p.connections}",
                 f"-d{seconds}s", "--timeout", "30s", "-s", "/think.lua", p.target, "--",
                 str(int(think_min * 1000)), str(int(think_max * 1000)), str(first_ms),
                 str(p.seed), str(p.connections)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        for p in processes:
            assert p.popen is not None
            p.output, _ = p.popen.communicate()
        wall = time.monotonic() - began
    finally:
        done.set()
        for p in processes:
            if p.popen and p.popen.poll() is None:
                p.popen.kill()
        for name in containers:
            run("docker", "rm", "-f", name, check=False)
    watcher.join()

    totals = Totals()
    for p in processes:
        totals.add(p.output)
    cpu = sum(cpu_seconds(app) - cpu_start[app] for app, _ in apps) / wall
    served = {lb: frontend_requests(lb) - req_start[lb] for lb, _ in lbs}
    time.sleep(2)  # the journal catches up
    logged = {lb: logged_statuses(lb, log_since) for lb, _ in lbs}
    codes: Counter[int] = sum(logged.values(), Counter())
    non2xx = {code: n for code, n in sorted(codes.items()) if not 200 <= code < 300}
    errors = {kind: n for kind, n in totals.errors.items() if kind != "status"}
    rss = [(memory[lb][0] - idle[lb][0]) / peak[lb] for lb, _ in lbs if peak[lb]]
    pools = [(memory[lb][1] - idle[lb][1]) / peak[lb] for lb, _ in lbs if peak[lb]]
    print()
    print(
        "| clients | lb hosts | s (connecting + all) | requests | req/s | p50 ms | p90 ms "
        "| p99 ms | max ms | non-2xx (access log) | socket errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.clients:,} | {len(lbs)} | {connect:.0f} + {args.duration} "
          f"| {totals.requests:,} | {totals.requests / wall:,.0f} "
          f"| {totals.percentile(50):.1f} | {totals.percentile(90):.1f} "
          f"| {totals.percentile(99):.1f} | {totals.max_us / 1000:.1f} "
          f"| {sum(non2xx.values())} {non2xx or ''} "
          f"| {sum(errors.values())} {errors} |")  # fmt: skip
    print()
    print(f"Peak HAProxy connections per lb host: {', '.join(f'{peak[lb]:,}' for lb, _ in lbs)} "
          f"(total {sum(peak.values()):,}).")  # fmt: skip
    if rss:
        print(f"HAProxy memory per connection at the peak: {min(pools):,.0f}-{max(pools):,.0f} "
              f"bytes in its pools, {min(rss):,.0f}-{max(rss):,.0f} bytes of RSS.")  # fmt: skip
    print(f"App tier CPU: {cpu:.2f} cores on average over {wall:.0f} s "
          f"({len(apps)} app containers).")  # fmt: skip
    per_lb = ", ".join(f"{sum(logged[lb].values())}/{served[lb]}" for lb, _ in lbs)
    print(f"Access log lines: {sum(codes.values()):,} for {sum(served.values()):,} requests "
          f"HAProxy received ({per_lb}); wrk counted {totals.errors.get('status', 0)} "
          "answers >= 400.")  # fmt: skip
    sys.exit(1 if non2xx or sum(errors.values()) else 0)


if __name__ == "__main__":
    main()
