"""pgbench through an app node's PgBouncer against pgbench straight to the PostgreSQL
primary, from the same place, in one run, at 100 and 1,000 clients.

Runs against the local stack (`make up`). pgbench is the primary's own binary (Debian ships
it with the server), run in the primary container's filesystem but in the app node's
network namespace (nsenter), so "through PgBouncer" is that node's 127.0.0.1:6432 and
"direct" is the primary's private address, exactly the two paths an app process has. The
pgbench tables are created in the application's database by its owner and dropped at the end.
Prints a Markdown table for benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/pgbouncer_pgbench.py [--seconds 20] [--clients 100 1000]
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import resource
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECRETS = ROOT / "inventories" / "local" / ".secrets"
PRIMARY, PRIMARY_IP, NODE = "kit-db-1", "172.30.213.51", "kit-app-1"
TPS = re.compile(r"^tps = ([\d.]+) \(without initial connection time\)", re.M)
FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)
DONE = re.compile(r"^number of transactions actually processed: (\d+)", re.M)


def pid(container: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", container],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


@functools.cache
def pgbench_path() -> str:
    """The primary's pgbench: under its PostgreSQL major version (15 on Debian 12, 17 on 13)."""
    found = subprocess.run(
        ["docker", "exec", PRIMARY, "sh", "-c", "ls /usr/lib/postgresql/*/bin/pgbench"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return found[-1]


def pgbench(conninfo: str, password: str, *args: str) -> subprocess.CompletedProcess[str]:
    """pgbench from the primary's filesystem in the app node's network namespace."""

    def more_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (16384, 16384))

    command = [
        "nsenter", f"--mount=/proc/{pid(PRIMARY)}/ns/mnt", f"--net=/proc/{pid(NODE)}/ns/net",
        "--", pgbench_path(), *args, conninfo,
    ]  # fmt: skip
    env = dict(os.environ, PGPASSWORD=password)
    return subprocess.run(
        command, env=env, capture_output=True, text=True, check=False, preexec_fn=more_files
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--scale", type=int, default=10)
    options = parser.parse_args()

    owner = (SECRETS / "postgresql_owner_password").read_text().strip()
    app = (SECRETS / "postgresql_app_password").read_text().strip()
    # Verified TLS with a certificate from the kit's CA, as PgBouncer connects (the primary's
    # own files: pgbench runs in its filesystem).
    direct = (
        f"host={PRIMARY_IP} port=5432 dbname=kit sslmode=verify-full"
        " sslrootcert=/etc/ssl/kit/ca.crt sslcert=/etc/ssl/kit/host.crt"
        " sslkey=/etc/ssl/private/kit-host.key"
    )
    pooled = "host=127.0.0.1 port=6432 dbname=kit"

    init = pgbench(f"{direct} user=kit_owner", owner, "-i", "-q", f"-s{options.scale}")
    if init.returncode != 0:
        raise SystemExit(f"pgbench -i failed:\n{init.stderr}")
    rows = []
    try:
        for clients in options.clients:
            for path, conninfo in (("PgBouncer", pooled), ("direct", direct)):
                run = pgbench(
                    f"{conninfo} user=kit_app", app,
                    "-n", "-M", "simple", f"-c{clients}", "-j2", f"-T{options.seconds}",
                )  # fmt: skip
                tps = TPS.search(run.stdout)
                failed = FAILED.search(run.stdout)
                done = DONE.search(run.stdout)
                errors = [line for line in run.stderr.splitlines() if "error" in line.lower()]
                rows.append(
                    (
                        clients,
                        path,
                        float(tps.group(1)) if tps else 0.0,
                        int(done.group(1)) if done else 0,
                        int(failed.group(1)) if failed else 0,
                        run.returncode,
                        errors[0][:110] if errors else "",
                        len(errors),
                    )
                )
    finally:
        pgbench(f"{direct} user=kit_owner", owner, "-i", "-I", "d")

    print(f"pgbench tpcb-like, scale {options.scale}, {options.seconds} s per run, -M simple -j2")
    print()
    print("| clients | path | TPS | transactions | failed | exit | client errors | first error |")
    print("|---|---|---|---|---|---|---|---|")
    for clients, path, tps, done, failed, code, first, count in rows:
        cells = [clients, path, f"{tps:.0f}", done, failed, code, count, first]
        print("| " + " | ".join(str(cell) for cell in cells) + " |")


if __name__ == "__main__":
    main()
