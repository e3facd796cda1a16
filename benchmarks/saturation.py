"""Slow-request saturation: busy instances stay up, dead and hung ones leave rotation.

Against the local stack (`make up`, any LB=N). Clients numbering --factor times the app
tier's worker slots (workers x threads of every gunicorn instance) call a --seconds long
endpoint (/_test/sleep) through every lb host, for --duration seconds: the script counts the
answers by status and every DOWN transition HAProxy made (chkdown). Then, under the same
load, it stops one instance (systemctl stop: connection refused) and freezes another
(SIGSTOP of every process of the unit: no answer), and reports how long each lb took to take
it out of rotation; both are brought back and the script waits until every lb has them UP.

    .venv/bin/python benchmarks/saturation.py [--factor 4] [--seconds 3] [--duration 30]
"""

from __future__ import annotations

import argparse
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

from stack import inventory, run, servers


def slots(app: str) -> int:
    """Worker slots of one app node: instances x workers x threads, from its gunicorn config."""
    conf = run("docker", "exec", app, "cat", "/etc/kit-app/gunicorn.conf.py")
    workers = int(re.search(r"^workers = (\d+)", conf, re.M)[1])  # type: ignore[index]
    threads = re.search(r"^(?:threads|worker_connections) = (\d+)", conf, re.M)
    units = run("docker", "exec", app, "systemctl", "list-units", "--plain", "--no-legend",
                "gunicorn@*.service")  # fmt: skip
    return len(units.splitlines()) * workers * (int(threads[1]) if threads else 1)


def downs(lbs: list[tuple[str, str]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for lb, _ in lbs:
        for name, row in servers(lb).items():
            total[name] += int(row["chkdown"])
    return total


def wait_all(lbs: list[tuple[str, str]], server: str, status: str, start: float,
             timeout: float) -> list[float]:  # fmt: skip
    """Seconds from `start` until each lb reported `server` with `status`, each lb polled
    in its own thread every 100 ms."""
    seen: dict[str, float] = {}

    def poll(lb: str) -> None:
        while time.monotonic() - start < timeout:
            if servers(lb)[server]["status"].startswith(status):
                seen[lb] = time.monotonic() - start
                return
            time.sleep(0.1)

    pollers = [threading.Thread(target=poll, args=(lb,)) for lb, _ in lbs]
    for poller in pollers:
        poller.start()
    for poller in pollers:
        poller.join()
    if len(seen) < len(lbs):
        missing = sorted({lb for lb, _ in lbs} - set(seen))
        raise SystemExit(f"{server} not {status} on {missing} after {timeout} s")
    return sorted(seen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=int, default=4, help="clients per worker slot")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each request")
    parser.add_argument("--duration", type=float, default=30.0)
    args = parser.parse_args()

    hosts = inventory("lb", "app")
    lbs, apps = hosts["lb"], hosts["app"]
    total_slots = sum(slots(app) for app, _ in apps)
    clients = args.factor * total_slots
    outcomes: Counter[str] = Counter()
    stop = threading.Event()

    def client(address: str) -> None:
        url = f"http://{address}/_test/sleep?s={args.seconds:g}"
        while not stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    response.read()
                    outcomes[str(response.status)] += 1
            except urllib.error.HTTPError as error:
                outcomes[str(error.code)] += 1
            except OSError as error:
                outcomes[type(error).__name__] += 1

    print(
        f"saturation: {clients} clients ({args.factor} x {total_slots} worker slots) through "
        f"{len(lbs)} lb host(s), {args.seconds:g} s requests, {args.duration:g} s",
        flush=True,
    )
    before = downs(lbs)
    threads = [
        threading.Thread(target=client, args=(lbs[i % len(lbs)][1],), daemon=True)
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(args.duration)
        saturated = Counter(outcomes)
        transitions = downs(lbs) - before
        (stopped_node, _), (frozen_node, _) = apps[-1], apps[0]
        stopped, frozen = f"{stopped_node}-8002", f"{frozen_node}-8001"
        # Timed from the stop itself: --no-block, since a graceful stop lasts as long as
        # the requests in flight.
        start = time.monotonic()
        run("docker", "exec", stopped_node, "systemctl", "stop", "--no-block",
            "gunicorn@8002.service")  # fmt: skip
        stop_s = wait_all(lbs, stopped, "DOWN", start, 30)
        run("docker", "exec", stopped_node, "systemctl", "start", "gunicorn@8002.service")
        wait_all(lbs, stopped, "UP", time.monotonic(), 60)
        start = time.monotonic()
        run("docker", "exec", frozen_node, "systemctl", "kill", "--signal=SIGSTOP",
            "gunicorn@8001.service")  # fmt: skip
        try:
            freeze_s = wait_all(lbs, frozen, "DOWN", start, 30)
        finally:
            run("docker", "exec", frozen_node, "systemctl", "kill", "--signal=SIGCONT",
                "gunicorn@8001.service")  # fmt: skip
        wait_all(lbs, frozen, "UP", time.monotonic(), 60)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=90)
    after = outcomes - saturated
    print()
    print("| phase | clients | answers by status | 503 | DOWN transitions |")
    print("|---|---|---|---|---|")
    downs_seen = f"{sum(transitions.values())} {dict(+transitions) or ''}"
    print(f"| {args.duration:g} s saturated | {clients} | {dict(saturated)} "
          f"| {saturated.get('503', 0)} | {downs_seen} |")  # fmt: skip
    print(
        f"| instance stopped, then frozen | {clients} | {dict(after)} | {after.get('503', 0)} "
        "| 2 expected |"
    )
    print()
    print(f"Out of rotation, per lb host: stopped instance ({stopped}) "
          f"{stop_s[0]:.2f}-{stop_s[-1]:.2f} s, frozen instance ({frozen}) "
          f"{freeze_s[0]:.2f}-{freeze_s[-1]:.2f} s.")  # fmt: skip


if __name__ == "__main__":
    main()
