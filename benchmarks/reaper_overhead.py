"""What the worker reaper costs: on the request path, and per scan.

1. Requests per second of a trivial app under gunicorn without the reaper's hooks, with
   them, and with them and the request metrics (PROMETHEUS_MULTIPROC_DIR set), the three
   instances up at once and measured in alternating rounds, reported as ratios; and the
   hooks' own cost per request (pre_request + post_request), timed in-process, without and
   with the request metrics.
2. Per worker, the cost of reading /proc/PID/status (the VmRSS prefilter), smaps_rollup
   (USS) and full smaps, and of one whole reaper scan, for 8 and 64 idle gunicorn workers
   (a preloaded app sharing 20 MB, each worker holding 5 MB of its own).

Traffic goes to 127.0.0.1 only; every loop is bounded. Prints Markdown tables.

    .cache/reaper-venv/bin/python benchmarks/reaper_overhead.py [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from kit_reaper import appmetrics, hooks, procfs
from kit_reaper.config import Config, MemoryConfig
from kit_reaper.reaper import Reaper
from kit_reaper.scoreboard import Board

APP = """\
import os

_shared = b"s" * (20 << 20)  # allocated once in the preloading master, shared by workers


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
"""

CONF = """\
bind = "127.0.0.1:{port}"
wsgi_app = "bench_app:app"
pythonpath = {directory!r}
workers = {workers}
worker_class = {worker_class!r}
threads = {threads}
preload_app = True
timeout = 300
accesslog = None
loglevel = "warning"
"""

CONF_HOOKS = """\
from kit_reaper import hooks as reaper_hooks
from kit_reaper.hooks import *  # noqa: F403

reaper_hooks.configure(directory={scoreboard!r}, instance="{port}")


def post_fork(server, worker):
    reaper_hooks.post_fork(server, worker)
    worker.private = b"p" * (5 << 20)  # each worker's own memory
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def gunicorn(
    directory: Path,
    *,
    workers: int,
    with_hooks: bool,
    worker_class: str = "sync",
    threads: int = 1,
    metrics: bool = False,
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    conf = directory / f"gunicorn-{port}.conf.py"
    text = CONF.format(
        port=port,
        directory=str(directory),
        workers=workers,
        worker_class=worker_class,
        threads=threads,
    )
    if with_hooks:
        text += CONF_HOOKS.format(scoreboard=str(directory / "scoreboard"), port=port)
    conf.write_text(text)
    env = {k: v for k, v in os.environ.items() if k != appmetrics.ENV}
    if metrics:
        env[appmetrics.ENV] = str(directory / "metrics" / str(port))
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(conf)], env=env)
    try:
        wait_ready(port, process, workers, directory / "scoreboard" if with_hooks else None)
        yield port, process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def worker_pids(arbiter: int) -> list[int]:
    children = Path(f"/proc/{arbiter}/task/{arbiter}/children").read_text().split()
    return [int(pid) for pid in children]


def wait_ready(
    port: int, process: subprocess.Popen[bytes], workers: int, scoreboard: Path | None
) -> None:
    end = time.monotonic() + 120
    while time.monotonic() < end:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn on port {port} exited with {process.returncode}")
        try:
            get(port)
        except OSError:
            time.sleep(0.1)
            continue
        if len(worker_pids(process.pid)) == workers and (
            scoreboard is None or registered(scoreboard, port) == workers
        ):
            return
        time.sleep(0.1)
    raise SystemExit(f"gunicorn on port {port} not ready after 120 s")


def registered(scoreboard: Path, port: int) -> int:
    pids = set()
    for path in scoreboard.glob(f"{port}.*.scoreboard"):
        board = Board(path)
        pids |= {s.pid for s in board.read_slots() if s is not None and s.pid > 0}
        board.close()
    return len(pids)


def get(port: int, conn: http.client.HTTPConnection | None = None) -> None:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise OSError(f"status {resp.status}")
    finally:
        if own:
            conn.close()


def load(port: int, seconds: float, clients: int, keepalive: bool) -> float:
    """Requests per second from `clients` threads for `seconds`."""
    counts = [0] * clients
    end = time.monotonic() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10) if keepalive else None
        while time.monotonic() < end:
            get(port, conn)
            counts[i] += 1
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - began)


def throughput(args: argparse.Namespace, worker_class: str) -> tuple[float, float, float]:
    threads = 4 if worker_class == "gthread" else 1
    keepalive = worker_class == "gthread"  # the sync worker closes every connection
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "bench_app.py").write_text(APP)
        with (
            gunicorn(
                directory, workers=2, with_hooks=False, worker_class=worker_class, threads=threads
            ) as (plain, _),
            gunicorn(
                directory, workers=2, with_hooks=True, worker_class=worker_class, threads=threads
            ) as (hooked, _),
            gunicorn(
                directory,
                workers=2,
                with_hooks=True,
                worker_class=worker_class,
                threads=threads,
                metrics=True,
            ) as (counted, _),
        ):
            for port in (plain, hooked, counted):  # warm up
                load(port, 0.5, args.clients, keepalive)
            without, with_, with_metrics = [], [], []
            for _ in range(args.rounds):  # alternate, so drift hits all alike
                without.append(load(plain, args.seconds, args.clients, keepalive))
                with_.append(load(hooked, args.seconds, args.clients, keepalive))
                with_metrics.append(load(counted, args.seconds, args.clients, keepalive))
    return (
        statistics.median(without),
        statistics.median(with_),
        statistics.median(with_metrics),
    )


class _Log:
    def info(self, msg: str, *args: object) -> None: ...
    def warning(self, msg: str, *args: object) -> None: ...
    def error(self, msg: str, *args: object) -> None: ...


class _Cfg:
    workers = 1
    threads = 1
    worker_connections = 1
    bind = ("127.0.0.1:1",)


class _Server:
    cfg = _Cfg()
    log = _Log()
    WORKERS: dict[int, object] = {}  # noqa: RUF012
    worker_class = type("SyncWorker", (), {})


class _Worker:
    log = _Log()

    def __init__(self) -> None:
        self.pid = os.getpid()


class _Response:
    status_code = 200


class _Request:
    method = "POST"
    path = "/api/v1/orders/12345"
    headers = (("HOST", "example"), ("USER-AGENT", "bench"), ("X-REQUEST-ID", "0" * 32))


def hook_cost_us(n: int = 200_000) -> float:
    """pre_request + post_request on a real scoreboard, in this process, per request."""
    with tempfile.TemporaryDirectory() as tmp:
        hooks.configure(directory=tmp)
        server, worker, req = _Server(), _Worker(), _Request()
        hooks.on_starting(server)
        hooks.pre_fork(server, worker)
        hooks.post_fork(server, worker)
        began = time.perf_counter()
        for _ in range(n):
            hooks.pre_request(worker, req)
            hooks.post_request(worker, req, {"kit.route": "/api/v1/orders/<id>"}, _Response)
        elapsed = time.perf_counter() - began
        hooks.on_exit(server)
    return elapsed / n * 1e6


def hook_cost_with_metrics_us() -> float:
    """hook_cost_us() with the request metrics on: in a process of its own, since
    prometheus_client reads PROMETHEUS_MULTIPROC_DIR when it is first imported."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, appmetrics.ENV: tmp}
        code = "import reaper_overhead as b; print(b.hook_cost_us(50_000))"
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            check=True,
        )
        return float(out.stdout)


def per_worker_us(pids: list[int], read: Callable[[int], object], repeat: int) -> float:
    began = time.perf_counter()
    for _ in range(repeat):
        for pid in pids:
            read(pid)
    return (time.perf_counter() - began) / (repeat * len(pids)) * 1e6


def scan_costs(workers: int, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "bench_app.py").write_text(APP)
        with gunicorn(directory, workers=workers, with_hooks=True) as (_, process):
            pids = worker_pids(process.pid)
            uss = [procfs.read_uss_bytes(pid) or 0 for pid in pids]
            rss = [procfs.read_rss_bytes(pid) or 0 for pid in pids]
            maps = len(Path(f"/proc/{pids[0]}/maps").read_text().splitlines())
            # One whole scan: scoreboard, identity (stat) and the VmRSS prefilter, with
            # every worker under the limit (no smaps read), as on a healthy node.
            config = Config(
                scoreboard_dir=directory / "scoreboard",
                stacks=False,
                memory=MemoryConfig(limit_mb=4096),
            )
            reaper = Reaper(config, emit=lambda event: None)
            reaper.scan()
            began = time.perf_counter()
            for _ in range(repeat):
                reaper.scan()
            scan_ms = (time.perf_counter() - began) / repeat * 1e3
            reaper.close()
            return {
                "status": per_worker_us(pids, procfs.read_rss_bytes, repeat),
                "rollup": per_worker_us(pids, procfs.read_uss_bytes, repeat),
                "smaps": per_worker_us(
                    pids, lambda pid: procfs.read_uss_bytes(pid, rollup=False), repeat
                ),
                "scan_ms": scan_ms,
                "uss_mb": statistics.median(uss) / (1 << 20),
                "rss_mb": statistics.median(rss) / (1 << 20),
                "maps": maps,
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--repeat", type=int, default=50, help="reads per worker per method")
    args = parser.parse_args()

    print("## Request path\n")
    print(
        f"2 workers, {args.clients} client threads on the same 2 cores, median of "
        f"{args.rounds} alternating rounds of {args.seconds:g} s.\n"
    )
    print(
        "| worker class | without hooks req/s | with hooks req/s | hooks + request metrics "
        "req/s | ratio hooks/without | ratio hooks + metrics/without |"
    )
    print("|---|---|---|---|---|---|")
    for worker_class in ("sync", "gthread"):
        without, with_, counted = throughput(args, worker_class)
        print(
            f"| {worker_class} | {without:,.0f} | {with_:,.0f} | {counted:,.0f} "
            f"| {with_ / without:.3f} | {counted / without:.3f} |"
        )
    print(
        f"\nHooks alone (pre_request + post_request, in-process): "
        f"{hook_cost_us():.2f} µs per request; with the request metrics: "
        f"{hook_cost_with_metrics_us():.2f} µs.\n"
    )

    print("## Scan cost per worker\n")
    print(
        "| workers | /proc/PID/status µs | smaps_rollup µs | smaps µs | smaps/rollup "
        "| whole scan ms | mappings | RSS MB | USS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for workers in args.workers:
        c = scan_costs(workers, max(5, args.repeat * 8 // workers))
        print(
            f"| {workers} | {c['status']:.1f} | {c['rollup']:.1f} | {c['smaps']:.1f} "
            f"| {c['smaps'] / c['rollup']:.1f}x | {c['scan_ms']:.2f} | {c['maps']:.0f} "
            f"| {c['rss_mb']:.1f} | {c['uss_mb']:.1f} |"
        )


if __name__ == "__main__":
    main()
