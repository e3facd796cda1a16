"""How fast HAProxy takes a dead or hung gunicorn instance out of rotation, and how many
requests fail while HAProxy reloads under concurrent load.

Runs against the local stack (`make up`); the containers are named after the inventory
hosts. Prints a Markdown table for benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/lb_failover.py [--trials 5] [--clients 16]
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable

LB_CONTAINER = "kit-lb-1"
APP_CONTAINER = "kit-app-2"
PORT = 8002
SERVER = f"{APP_CONTAINER}-{PORT}"
LB_URL = "http://127.0.0.1:8080"
SOCKET = "/run/haproxy/admin.sock"


def in_container(container: str, command: str) -> str:
    return subprocess.run(
        ["docker", "exec", container, "sh", "-c", command],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def server_status() -> str:
    raw = in_container(LB_CONTAINER, f"echo 'show stat' | socat stdio {SOCKET}").lstrip("# ")
    for row in csv.DictReader(io.StringIO(raw)):
        if row["pxname"] == "app" and row["svname"] == SERVER:
            return row["status"]
    raise SystemExit(f"{SERVER} is not in HAProxy's app backend")


def seconds_until(status: str, start: float, timeout: float = 30.0) -> float:
    while time.monotonic() - start < timeout:
        if server_status().startswith(status):
            return time.monotonic() - start
        time.sleep(0.05)
    raise SystemExit(f"{SERVER} not {status} after {timeout}s")


def wait_up() -> None:
    seconds_until("UP", time.monotonic())
    time.sleep(1)


def trial_stopped() -> float:
    """The instance's unit stops: connections are refused at once."""
    start = time.monotonic()
    in_container(APP_CONTAINER, f"systemctl stop gunicorn@{PORT}.service")
    elapsed = seconds_until("DOWN", start)
    in_container(APP_CONTAINER, f"systemctl start gunicorn@{PORT}.service")
    wait_up()
    return elapsed


def trial_hung() -> float:
    """Every process of the instance is frozen (SIGSTOP): the socket accepts, nothing answers."""
    start = time.monotonic()
    in_container(APP_CONTAINER, f"systemctl kill -s STOP gunicorn@{PORT}.service")
    try:
        elapsed = seconds_until("DOWN", start)
    finally:
        in_container(APP_CONTAINER, f"systemctl kill -s CONT gunicorn@{PORT}.service")
    wait_up()
    return elapsed


def fetch(path: str) -> int:
    try:
        with urllib.request.urlopen(LB_URL + path, timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def reloads_under_load(clients: int, reloads: int) -> Counter[str]:
    """`clients` threads send requests back to back while HAProxy reloads `reloads` times."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                outcome = "ok" if fetch("/whoami") == 200 else "http error"
            except OSError as error:
                outcome = type(error).__name__
            with lock:
                outcomes[outcome] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for _ in range(reloads):
        time.sleep(2)
        in_container(LB_CONTAINER, "systemctl reload haproxy")
    time.sleep(2)
    stop.set()
    for thread in threads:
        thread.join()
    return outcomes


def summary(name: str, trial: Callable[[], float], trials: int) -> str:
    values = [trial() for _ in range(trials)]
    return (
        f"| {name} | {trials} | {min(values):.2f} | {statistics.median(values):.2f} "
        f"| {max(values):.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--reloads", type=int, default=5)
    args = parser.parse_args()

    wait_up()
    print("| instance failure | trials | min s | median s | max s |")
    print("|---|---|---|---|---|")
    print(summary("unit stopped (connection refused)", trial_stopped, args.trials))
    print(summary("processes frozen (SIGSTOP, no answer)", trial_hung, args.trials))
    outcomes = reloads_under_load(args.clients, args.reloads)
    total = sum(outcomes.values())
    failed = total - outcomes["ok"]
    print()
    print(
        f"{args.reloads} HAProxy reloads under {args.clients} concurrent clients: "
        f"{total} requests, {failed} failed {dict(outcomes)}"
    )


if __name__ == "__main__":
    main()
