"""pgBackRest on the local stack: a full backup's and a restore's duration at a pgbench scale,
and how far WAL archiving lags behind the primary under a write load.

Runs against the local stack (`make up`). Creates the pgbench tables in the application's
database (as the postgres superuser, on the primary's socket), then:

1. a full backup on the repository host (`pgbackrest backup --type=full`, as its timer runs it);
2. the archive lag under load: pgbench writes for --seconds while the primary's current WAL
   segment and pg_stat_archiver's last archived one are sampled every 0.5 s (lag in 16 MiB
   segments), and five times a segment is switched and timed until it is archived;
3. `ansible/db_restore.yml -e db_restore_type=immediate` (the primary restored in place from
   that backup, then every replica rebuilt), timed whole, with pgBackRest's own restore time
   from its log.

The pgbench tables are dropped at the end. Prints a Markdown table for benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/backup_restore.py [--scale 50] [--seconds 30]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import threading
import time

from stack import ROOT, inventory, run


# pgBackRest's own time of a command ("backup" or "restore"; a backup runs "expire" after it).
def ended(command: str) -> re.Pattern[str]:
    return re.compile(rf"{command} command end: completed successfully \((\d+)ms\)")


def sql(host: str, query: str) -> str:
    return run(
        "docker", "exec", host, "runuser", "-u", "postgres", "--",
        "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", "kit", "-c", query,
    ).strip()  # fmt: skip


def segment_number(name: str) -> int:
    """A WAL file name's position: timeline aside, log * 256 + segment (16 MiB segments)."""
    return int(name[8:16], 16) * 256 + int(name[16:24], 16)


def archive_lag(primary: str, seconds: int) -> tuple[list[int], list[float]]:
    """Segments behind, sampled under a pgbench write load; seconds for switched segments."""
    load = subprocess.Popen(
        ["docker", "exec", primary, "runuser", "-u", "postgres", "--", "sh", "-c",
         f"$(ls /usr/lib/postgresql/*/bin/pgbench | tail -1) -n -c 8 -j 2 -T {seconds} kit"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    behind: list[int] = []
    switched: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            row = sql(
                primary,
                "SELECT pg_walfile_name(pg_current_wal_lsn()) || '|'"
                " || coalesce(last_archived_wal, '') FROM pg_stat_archiver",
            )
            current, archived = row.split("|")
            if archived:
                behind.append(segment_number(current) - segment_number(archived))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for _ in range(5):
        time.sleep(seconds / 6)
        segment = sql(primary, "SELECT pg_walfile_name(pg_switch_wal())")
        start = time.monotonic()
        archived = "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver"
        while sql(primary, archived) < segment:
            time.sleep(0.05)
        switched.append(time.monotonic() - start)
    load.wait()
    stop.set()
    sampler.join()
    return behind, switched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=30)
    options = parser.parse_args()
    primary = inventory("db_primary")["db_primary"][0][0]
    repository = inventory("monitoring")["monitoring"][0][0]
    pgbench = "$(ls /usr/lib/postgresql/*/bin/pgbench | tail -1)"

    run("docker", "exec", primary, "runuser", "-u", "postgres", "--", "sh", "-c",
        f"{pgbench} -i -q -s {options.scale} kit")  # fmt: skip
    size = sql(primary, "SELECT pg_size_pretty(pg_database_size('kit'))")
    try:
        start = time.monotonic()
        backup = run("docker", "exec", repository, "runuser", "-u", "pgbackrest", "--",
                     "pgbackrest", "--stanza=kit", "--type=full", "backup")  # fmt: skip
        backup_wall = time.monotonic() - start
        backup_ms = int(ended("backup").findall(backup)[-1])

        behind, switched = archive_lag(primary, options.seconds)

        start = time.monotonic()
        run(str(ROOT / ".venv/bin/ansible-playbook"), "-i", str(ROOT / "inventories/local"),
            str(ROOT / "ansible/db_restore.yml"), "-e", "db_restore_type=immediate",
            "-e", "db_restore_confirm=yes")  # fmt: skip
        restore_wall = time.monotonic() - start
        log = run("docker", "exec", primary, "sh", "-c", "cat /var/log/pgbackrest/kit-restore.log")
        restore_ms = int(ended("restore").findall(log)[-1])
        archive_timeout = sql(primary, "SHOW archive_timeout")
    finally:
        sql(primary, "DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches,"
                     " pgbench_history, pgbench_tellers")  # fmt: skip

    print(f"pgbench scale {options.scale} ({size}); archive_timeout {archive_timeout}\n")
    print("| step | seconds |")
    print("|---|---|")
    print(f"| full backup (pgBackRest's own time) | {backup_ms / 1000:.1f} |")
    print(f"| full backup (command, wall) | {backup_wall:.1f} |")
    print(f"| restore in place, --delta (pgBackRest's own time) | {restore_ms / 1000:.1f} |")
    print(f"| db_restore.yml, whole (primary restored, replicas rebuilt) | {restore_wall:.1f} |")
    print()
    print(f"Archive lag under pgbench -c 8 for {options.seconds} s ({len(behind)} samples):"
          f" segments behind median {statistics.median(behind):.0f}, max {max(behind)};"
          f" a switched segment archived after median {statistics.median(switched):.2f} s,"
          f" max {max(switched):.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
