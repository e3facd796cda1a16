"""The database cluster under Patroni: a killed primary, a planned switchover and a stopped
replica, each under load through HAProxy, over several trials.

Runs against the local stack (`make up`); the containers are named after the inventory
hosts. Each trial:

1. failover: writer threads POST /items through the lb (PgBouncer's <db>, the leader) at
   20 or more per second; the leader's container is killed (`docker kill`). Timed: until a
   survivor leads (Patroni's GET /cluster), and until writes succeed again (three in a row).
   Then every acknowledged write (201) is looked for on the new leader: "lost" counts the
   ones missing. The killed container is started again and waited for until it streams
   (it rejoins with pg_rewind), and the next trial kills the new leader.
2. switchover: the same writers while `ansible/db_switchover.yml` moves the leader to the
   other member. Timed: the playbook, and the window from the first failed write to the
   last; lost acknowledged writes as above.
3. a stopped replica: reader threads GET /items (PgBouncer's <db>_ro) while the replica's
   Patroni is stopped. Timed: until the router of an app node (kit-pgrouter, polled every
   200 ms) shows it DOWN; failed reads counted; then started again.

--synchronous runs every kind of trial once with Patroni's synchronous mode off (the
default) and once on (set with `patronictl edit-config`, put back after).
The leader is moved back to the db_primary host at the end. Prints Markdown tables for
benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/db_failover.py [--trials 3] [--writers 2] [--synchronous]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from stack import ROOT, inventory, run

LB_URL = "http://127.0.0.1:8080"
ROUTER_SOCKET = "/run/kit-pgrouter/admin.sock"


def in_container(container: str, command: str, check: bool = True) -> str:
    return run("docker", "exec", container, "sh", "-c", command, check=check)


class Cluster:
    """The db hosts, their Patroni REST API (asked from an app node, which the firewall lets
    in, over TLS with the kit's CA), and SQL on them as the postgres superuser."""

    def __init__(self) -> None:
        groups = inventory("db_primary", "db_replicas", "app")
        self.members = dict(groups["db_primary"] + groups["db_replicas"])
        self.bootstrap = groups["db_primary"][0][0]
        self.app_node = groups["app"][0][0]
        self.synchronous = False

    def api(self, member: str, path: str) -> tuple[int, str]:
        out = in_container(
            self.app_node,
            "curl -s -o /dev/stdout -w '\\n%{http_code}' --max-time 2"
            f" --cacert /etc/ssl/kit/ca.crt https://{self.members[member]}:8008{path}",
            check=False,
        )
        body, _, code = out.rpartition("\n")
        return int(code or 0), body

    def leader(self, asked: list[str] | None = None) -> str:
        """The leader as the first member that answers says; "" when none does or none leads."""
        for member in asked or list(self.members):
            code, body = self.api(member, "/cluster")
            if code == 200:
                roles = {m["name"]: m["role"] for m in json.loads(body)["members"]}
                return next((n for n, r in roles.items() if r in ("leader", "master")), "")
        return ""

    def wait_for_leader(self, timeout: float = 60) -> str:
        """The leader, waited for: right after a kill or a start, none may lead yet."""
        self.wait("a leader", lambda: bool(self.leader()), timeout)
        return self.leader()

    def sql(self, member: str, query: str) -> str:
        return in_container(
            member, f'runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d kit -c "{query}"'
        ).strip()

    def patronictl(self, member: str, command: str) -> str:
        config = in_container(member, "ls /etc/patroni/ | grep -E '^[0-9]+-main.yml$'").strip()
        return in_container(member, f"patronictl -c /etc/patroni/{config} {command}")

    def unit(self, member: str) -> str:
        config = in_container(member, "ls /etc/patroni/ | grep -E '^[0-9]+-main.yml$'").strip()
        return f"patroni@{config.removesuffix('.yml')}.service"

    def wait(self, what: str, check: Callable[[], bool], timeout: float) -> float:
        start = time.monotonic()
        while not check():
            if time.monotonic() - start > timeout:
                raise SystemExit(f"{what}: not after {timeout:.0f} s")
            time.sleep(0.2)
        return time.monotonic() - start

    def wait_for_sync_standby(self) -> None:
        """In synchronous mode, until a replica is the synchronous standby: Patroni promotes
        no other, so a primary killed before a rejoined member is chosen has no successor."""
        if self.synchronous:
            self.wait(
                "a synchronous replica",
                lambda: any(self.api(m, "/sync")[0] == 200 for m in self.members),
                60,
            )

    def streams(self, member: str) -> bool:
        return self.api(member, "/replica")[0] == 200

    def all_stream(self) -> bool:
        leader = self.leader()
        return bool(leader) and all(self.streams(m) for m in self.members if m != leader)


@dataclass
class Load:
    """Requests sent back to back (a pause between each) through the lb, timestamped."""

    outcomes: list[tuple[float, str]] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)

    def failures(self) -> list[float]:
        return [t for t, o in self.outcomes if o != "ok"]

    def rate(self, since: float, until: float) -> float:
        sent = [t for t, o in self.outcomes if since <= t < until and o == "ok"]
        return len(sent) / (until - since) if until > since else 0.0


def request(method: str, path: str, body: dict[str, str] | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if body is not None else {}
    req = urllib.request.Request(LB_URL + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@contextmanager
def load(kind: str, threads: int, prefix: str) -> Iterator[Load]:
    """`threads` writers (POST /items, names starting with `prefix`) or readers (GET)."""
    result = Load()
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            name = f"{prefix}-{uuid.uuid4()}"
            try:
                if kind == "write":
                    code = request("POST", "/items", {"name": name})
                    outcome = "ok" if code == 201 else f"status {code}"
                else:
                    outcome = "ok" if request("GET", "/items") == 200 else "error"
            except OSError as error:
                outcome = type(error).__name__
            with lock:
                result.outcomes.append((time.monotonic(), outcome))
                if kind == "write" and outcome == "ok":
                    result.acknowledged.append(name)
            time.sleep(0.02)

    workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield result
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)


def lost(cluster: Cluster, load_: Load, prefix: str) -> int:
    leader = cluster.wait_for_leader()
    found = set(cluster.sql(leader, f"SELECT name FROM items WHERE name LIKE '{prefix}-%'").split())
    return len([name for name in load_.acknowledged if name not in found])


@dataclass
class Trial:
    seconds: float  # to a new leader (failover), the playbook (switchover), DOWN (replica)
    resumed: float  # writes failed until (failover), failure window (switchover)
    failed: int
    total: int
    rate: float
    lost: int


def failover(cluster: Cluster, writers: int) -> Trial:
    victim = cluster.wait_for_leader()
    cluster.wait_for_sync_standby()
    survivors = [m for m in cluster.members if m != victim]
    prefix = f"bench-failover-{uuid.uuid4().hex[:8]}"
    with load("write", writers, prefix) as writes:
        time.sleep(5)
        killed = time.monotonic()
        rate = writes.rate(killed - 5, killed)
        run("docker", "kill", victim)
        try:
            led = cluster.wait(
                "a survivor leads",
                lambda: cluster.leader(survivors) in survivors,
                60,
            )

            def resumed() -> bool:
                after = [o for t, o in writes.outcomes if t > killed]
                return after[-3:] == ["ok"] * 3

            cluster.wait("writes succeed again", resumed, 60)
        finally:
            run("docker", "start", victim)
    failures = [t for t in writes.failures() if t > killed]
    until = (max(failures) - killed) if failures else 0.0
    missing = lost(cluster, writes, prefix)
    cluster.wait("the old leader streams", lambda: cluster.streams(victim), 300)
    return Trial(led, until, len(failures), len(writes.outcomes), rate, missing)


def switchover(cluster: Cluster, writers: int) -> Trial:
    cluster.wait_for_sync_standby()
    prefix = f"bench-switchover-{uuid.uuid4().hex[:8]}"
    with load("write", writers, prefix) as writes:
        time.sleep(5)
        start = time.monotonic()
        rate = writes.rate(start - 5, start)
        run(
            str(ROOT / ".venv/bin/ansible-playbook"), "-i", str(ROOT / "inventories/local"),
            str(ROOT / "ansible/db_switchover.yml"),
        )  # fmt: skip
        took = time.monotonic() - start
        time.sleep(3)
    failures = writes.failures()
    window = (max(failures) - min(failures)) if failures else 0.0
    missing = lost(cluster, writes, prefix)
    cluster.wait("every replica streams", cluster.all_stream, 120)
    return Trial(took, window, len(failures), len(writes.outcomes), rate, missing)


def router_state(cluster: Cluster, member: str) -> str:
    stat = in_container(cluster.app_node, f"echo 'show stat' | socat stdio {ROUTER_SOCKET}")
    for line in stat.splitlines():
        fields = line.split(",")
        if fields[:2] == ["kit_replicas", member]:
            return fields[17]
    return ""


def replica_stopped(cluster: Cluster, readers: int) -> Trial:
    leader = cluster.wait_for_leader()
    replica = next(m for m in cluster.members if m != leader)
    unit = cluster.unit(replica)
    with load("read", readers, "read") as reads:
        time.sleep(5)
        start = time.monotonic()
        rate = reads.rate(start - 5, start)
        in_container(replica, f"systemctl stop --no-block {unit}")
        down = cluster.wait(
            "the router takes the replica out",
            lambda: router_state(cluster, replica) == "DOWN",
            30,
        )
        time.sleep(5)
        in_container(replica, f"systemctl start {unit}")
        cluster.wait("the replica is back", lambda: router_state(cluster, replica) == "UP", 120)
    failures = [t for t in reads.failures() if t > start]
    return Trial(down, 0.0, len(failures), len(reads.outcomes), rate, 0)


def synchronous(cluster: Cluster, on: bool) -> None:
    leader = cluster.wait_for_leader()
    value = "true" if on else "false"
    cluster.patronictl(leader, f"edit-config --force --set synchronous_mode={value}")
    cluster.synchronous = on
    cluster.wait_for_sync_standby()


def row(name: str, trials: list[Trial], first: str, second: str | None) -> str:
    def spread(values: list[float]) -> str:
        return f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f}"

    cells = [name, str(len(trials)), f"{first}: {spread([t.seconds for t in trials])}"]
    cells.append(f"{second}: {spread([t.resumed for t in trials])}" if second else "")
    cells.append(", ".join(f"{t.failed} of {t.total}" for t in trials))
    cells.append(f"{statistics.median([t.rate for t in trials]):.0f}")
    cells.append(", ".join(str(t.lost) for t in trials))
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--synchronous", action="store_true")
    args = parser.parse_args()

    cluster = Cluster()
    cluster.wait("every replica streams", cluster.all_stream, 120)
    print(
        "| event | trials | seconds (min / median / max) | writes failed (min / median / max s)"
        " | failed of sent, per trial | ok/s before | acknowledged writes lost, per trial |"
    )
    print("|---|---|---|---|---|---|---|")
    modes = [False, True] if args.synchronous else [False]
    try:
        for mode in modes:
            synchronous(cluster, mode)
            label = "synchronous" if mode else "asynchronous"
            trials = [failover(cluster, args.writers) for _ in range(args.trials)]
            print(row(f"primary killed ({label})", trials, "to a new leader", "until"))
            trials = [switchover(cluster, args.writers) for _ in range(args.trials)]
            print(row(f"db_switchover.yml ({label})", trials, "playbook", "window"))
            trials = [replica_stopped(cluster, args.readers) for _ in range(args.trials)]
            print(row(f"replica's Patroni stopped, reads ({label})", trials, "out of kit_ro", None))
    finally:
        synchronous(cluster, False)
        if cluster.wait_for_leader() != cluster.bootstrap:
            run(
                str(ROOT / ".venv/bin/ansible-playbook"), "-i", str(ROOT / "inventories/local"),
                str(ROOT / "ansible/db_switchover.yml"), "-e", f"candidate={cluster.bootstrap}",
            )  # fmt: skip


if __name__ == "__main__":
    main()
