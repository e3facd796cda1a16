"""What TLS costs Redis: requests per second of the local stack's `cache` instance (TLS,
as the kit runs every instance) against a plain-text redis-server started for the run on the
same host, from the same redis-benchmark, in one run.

Runs inside the redis container (docker exec), both servers on loopback, both the same
binary. Two ways of connecting: connections kept open (as redis-py's pool keeps them: the
cost is encryption) and a new connection per request (`-k 0`: the cost is the handshake).
The plain server listens on loopback only, keeps nothing on disk and is stopped at the end.
Prints a Markdown table for benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/redis_tls.py [--requests 200000] [--clients 50]
"""

from __future__ import annotations

import argparse
import re

from stack import ROOT, inventory, run

CACHE_PORT, PLAIN_PORT = 6381, 16381
CA = "/etc/ssl/kit/ca.crt"
RPS = re.compile(r'^"(?P<test>[A-Z]+)","(?P<rps>[\d.]+)"', re.M)


def server(host: str) -> str:
    """redis or valkey, whichever the redis role installed."""
    found = run("docker", "exec", host, "sh", "-c", "ls /usr/bin/valkey-server 2>/dev/null || true")
    return "valkey" if found.strip() else "redis"


def benchmark(
    host: str, binary: str, target: list[str], requests: int, clients: int, keepalive: bool
) -> dict[str, float]:
    """GET and SET per second, by redis-benchmark's CSV output."""
    out = run(
        "docker", "exec", host, f"{binary}-benchmark", *target, "-t", "set,get",
        "-n", str(requests), "-c", str(clients), "-k", "1" if keepalive else "0",
        "-d", "256", "--csv",
    )  # fmt: skip
    return {m["test"]: float(m["rps"]) for m in RPS.finditer(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()

    host = inventory("redis")["redis"][0][0]
    binary = server(host)
    password = (ROOT / "inventories/local/.secrets/redis_admin_password").read_text().strip()
    tls = ["--tls", "--cacert", CA, "-h", "127.0.0.1", "-p", str(CACHE_PORT),
           "--user", "admin", "-a", password]  # fmt: skip
    plain = ["-h", "127.0.0.1", "-p", str(PLAIN_PORT)]
    run("docker", "exec", host, "runuser", "-u", binary, "--", f"{binary}-server",
        "--port", str(PLAIN_PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", "/tmp", "--daemonize", "yes")  # fmt: skip
    rows = []
    try:
        for keepalive, requests in ((True, args.requests), (False, args.requests // 10)):
            with_tls = benchmark(host, binary, tls, requests, args.clients, keepalive)
            without = benchmark(host, binary, plain, requests, args.clients, keepalive)
            for test in ("SET", "GET"):
                rows.append((keepalive, test, requests, without[test], with_tls[test]))
    finally:
        run("docker", "exec", host, f"{binary}-cli", "-p", str(PLAIN_PORT), "shutdown", "nosave",
            check=False)  # fmt: skip

    print(f"{binary}-benchmark in {host}, {args.clients} clients, 256-byte values:\n")
    print("| connections | command | requests | plain req/s | TLS req/s | TLS / plain |")
    print("|---|---|---|---|---|---|")
    for keepalive, test, requests, plain_rps, tls_rps in rows:
        kind = "kept open" if keepalive else "new per request"
        print(f"| {kind} | {test} | {requests} | {plain_rps:,.0f} | {tls_rps:,.0f} "
              f"| {tls_rps / plain_rps:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
