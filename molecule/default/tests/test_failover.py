"""Automatic failover (Patroni over etcd) under a steady write load through the lb, the old
primary rejoining with pg_rewind, a switchover on purpose, and reads that skip a replica
that is gone. Runs before test_scale (conftest.LAST_MODULES) and ends with the inventory's
primary leading again, as the other modules expect."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
import requests
from conftest import INVENTORY, LB_URL, get_host, host_vars, run_playbook, superuser_sql

PRIMARY = INVENTORY.get_hosts("db_primary")[0]
REPLICA = sorted(INVENTORY.get_hosts("db_replicas"))[0]
BOUNCERS = sorted(INVENTORY.get_hosts("app")) + sorted(INVENTORY.get_hosts("workers"))
CA = "/etc/ssl/kit/ca.crt"
# What the issue allows for a killed primary: a survivor leads, and writes succeed again.
FAILOVER_BOUND_S = 30.0


def api(member: str, path: str, via: str | None = None) -> tuple[int, str]:
    """Patroni's REST API of `member`, asked with curl from `via` (a database host)."""
    address = host_vars(member)["private_ip"]
    result = get_host(via or member).run(
        f"curl -s -o /dev/stdout -w '\\n%{{http_code}}' --max-time 3 --cacert {CA}"
        f" https://{address}:8008{path}"
    )
    body, _, code = result.stdout.rpartition("\n")
    return int(code or 0), body


def leader(via: str) -> str:
    code, body = api(via, "/cluster")
    assert code == 200, body
    members = json.loads(body)["members"]
    return next((m["name"] for m in members if m["role"] in ("leader", "master")), "")


def wait_until(what: str, check, timeout: float) -> float:
    """Seconds until `check()` is true; fails after `timeout`."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, f"{what}: not after {timeout} s"
        time.sleep(0.5)
    return time.monotonic() - start


@dataclass
class Load:
    """Requests through the lb, timestamped: writes (POST /items: PgBouncer's <db>, the
    leader), whose acknowledged names are kept, or reads (GET /items: <db>_ro)."""

    outcomes: list[tuple[float, str]] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)

    def failures(self) -> list[tuple[float, str]]:
        return [o for o in self.outcomes if o[1] != "ok"]

    def rate(self, since: float, until: float) -> float:
        """Successful requests per second between two moments."""
        done = [t for t, o in self.outcomes if since <= t < until and o == "ok"]
        return len(done) / (until - since)


RUN = uuid.uuid4().hex[:8]


def _client(kind: str, load: Load, stop: threading.Event, lock: threading.Lock) -> None:
    while not stop.is_set():
        name = f"failover-{RUN}-{uuid.uuid4()}"
        try:
            if kind == "write":
                response = requests.post(f"{LB_URL}/items", json={"name": name}, timeout=10)
                expected = 201
            else:
                response = requests.get(f"{LB_URL}/items", params={"limit": 5}, timeout=10)
                expected = 200
            outcome = "ok" if response.status_code == expected else f"status {response.status_code}"
        except requests.RequestException as error:
            outcome = type(error).__name__
        with lock:
            load.outcomes.append((time.monotonic(), outcome))
            if kind == "write" and outcome == "ok":
                load.acknowledged.append(name)
        time.sleep(0.02)


@contextmanager
def running(kind: str, clients: int = 2) -> Iterator[Load]:
    load = Load()
    stop = threading.Event()
    lock = threading.Lock()
    threads = [
        threading.Thread(target=_client, args=(kind, load, stop, lock)) for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    try:
        yield load
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


@pytest.fixture
def writing() -> Iterator[Load]:
    with running("write") as load:
        yield load


def lost_writes(load: Load, member: str) -> list[str]:
    """The acknowledged writes `member`'s database does not hold. The names are copied first:
    the writers go on, and a write acknowledged after the query is not missing."""
    acknowledged = list(load.acknowledged)
    rows = superuser_sql(
        get_host(member), f"SELECT name FROM items WHERE name LIKE 'failover-{RUN}-%'"
    )
    found = set(rows.split())
    return [name for name in acknowledged if name not in found]


def patroni_config(member: str) -> str:
    """The name of Patroni's configuration on a member: <version>-main.yml."""
    return get_host(member).check_output("ls /etc/patroni/ | grep -E '^[0-9]+-main.yml$'")


def patronictl(member: str, command: str) -> str:
    config = patroni_config(member)
    return get_host(member).check_output(f"patronictl -c /etc/patroni/{config} {command}")


@pytest.fixture(scope="module", autouse=True)
def synchronous() -> Iterator[None]:
    """Patroni's synchronous mode on for the module (postgresql_synchronous_mode: true, set
    in the cluster's configuration in etcd as the role sets it), off again afterwards: a
    commit is acknowledged once the replica has it, so no acknowledged write is lost."""
    patronictl(PRIMARY, "edit-config --force --set synchronous_mode=true")
    wait_until(
        "the replica is synchronous", lambda: api(REPLICA, "/sync", via=PRIMARY)[0] == 200, 60
    )
    yield
    patronictl(PRIMARY, "edit-config --force --set synchronous_mode=false")


def patroni_unit(member: str) -> str:
    """Patroni's unit on a member (patroni@<version>-main), named after its configuration:
    a stopped template instance is not matched by a glob."""
    return f"patroni@{patroni_config(member).removesuffix('.yml')}.service"


def docker(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True, text=True)


def test_a_killed_primary_is_replaced_and_writes_resume_within_30_s(writing: Load) -> None:
    assert leader(REPLICA) == PRIMARY
    time.sleep(3)
    killed_at = time.monotonic()
    rate = writing.rate(killed_at - 3, killed_at)
    docker("kill", PRIMARY)
    try:
        led = wait_until("a survivor leads", lambda: leader(REPLICA) == REPLICA, 60)

        # Writes succeed again: three in a row after the kill.
        def resumed() -> bool:
            after = [o for t, o in writing.outcomes if t > killed_at]
            return after[-3:] == ["ok"] * 3

        wait_until("writes succeed again", resumed, 60)
        resumed_after = max(t for t, o in writing.outcomes if o != "ok") - killed_at
    finally:
        docker("start", PRIMARY)
    assert led < FAILOVER_BOUND_S, f"a replica led {led:.1f} s after the kill"
    assert resumed_after < FAILOVER_BOUND_S, f"writes failed until {resumed_after:.1f} s"
    failed_before = [o for t, o in writing.failures() if t < killed_at]
    assert failed_before == []
    assert rate >= 20, f"{rate:.0f} acknowledged writes per second before the kill"
    # Synchronous: every write acknowledged before, during and after is on the new leader.
    assert lost_writes(writing, REPLICA) == []
    print(
        f"failover: {rate:.0f} writes/s, leader after {led:.1f} s, last failed write"
        f" {resumed_after:.1f} s after the"
        f" kill, {len(writing.failures())} failed of {len(writing.outcomes)}:"
        f" {Counter(o for _, o in writing.failures())}"
    )


def test_the_old_primary_rejoins_as_a_replica_with_pg_rewind() -> None:
    wait_until(
        "the old primary streams", lambda: api(PRIMARY, "/replica", via=REPLICA)[0] == 200, 180
    )
    journal = get_host(PRIMARY).check_output("journalctl -u 'patroni@*' --no-pager -n 400")
    assert "pg_rewind" in journal
    # The same data as the leader: a row written now reaches it.
    name = f"rejoined-{uuid.uuid4()}"
    assert requests.post(f"{LB_URL}/items", json={"name": name}, timeout=10).status_code == 201
    wait_until(
        "the row reaches the old primary",
        lambda: (
            name
            in superuser_sql(get_host(PRIMARY), f"SELECT name FROM items WHERE name = '{name}'")
        ),
        30,
    )


def test_a_switchover_puts_the_inventory_primary_back_with_few_failed_writes(
    writing: Load,
) -> None:
    started = time.monotonic()
    result = run_playbook("db_switchover.yml", "-e", f"candidate={PRIMARY}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert leader(REPLICA) == PRIMARY
    wait_until(
        "the old leader streams", lambda: api(REPLICA, "/replica", via=PRIMARY)[0] == 200, 120
    )
    failures = writing.failures()
    window = (max(t for t, _ in failures) - min(t for t, _ in failures)) if failures else 0.0
    assert window <= 5, f"writes failed for {window:.1f} s during the switchover"
    assert lost_writes(writing, PRIMARY) == []
    print(f"switchover: {time.monotonic() - started:.1f} s, writes failed for {window:.1f} s")


def router_state(node: str, member: str) -> str:
    """The member's state in the replicas' backend of `node`'s router (kit-pgrouter)."""
    stat = get_host(node).check_output(
        "echo 'show stat' | socat stdio /run/kit-pgrouter/admin.sock"
    )
    for line in stat.splitlines():
        fields = line.split(",")
        if fields[:2] == ["kit_replicas", member]:
            return fields[17]
    return ""


def test_a_replica_stopped_under_read_load_leaves_the_read_pool_within_3_s() -> None:
    """Every node's router takes the replica out of <db>_ro within 3 s of its stop, reads
    keep succeeding (the leader takes them), and it comes back once it streams again."""
    unit = patroni_unit(REPLICA)
    with running("read") as reads:
        time.sleep(3)
        stopped = time.monotonic()
        get_host(REPLICA).run_test(f"systemctl stop --no-block {unit}")
        try:
            out = wait_until(
                "out of kit_ro on every node",
                lambda: all(router_state(node, REPLICA) == "DOWN" for node in BOUNCERS),
                30,
            )
            time.sleep(3)
        finally:
            get_host(REPLICA).run_test(f"systemctl start {unit}")
    failed = [o for t, o in reads.failures() if t > stopped]
    print(
        f"replica stopped: out of kit_ro after {out:.1f} s, {len(failed)} failed reads of"
        f" {len(reads.outcomes)}"
    )
    assert out <= 3, f"the replica left kit_ro {out:.1f} s after its stop"
    assert failed == [], Counter(failed)
    wait_until(
        "back in kit_ro on every node",
        lambda: all(router_state(node, REPLICA) == "UP" for node in BOUNCERS),
        120,
    )


def test_unsafe_calls_need_the_password_and_a_kit_certificate() -> None:
    address = host_vars(PRIMARY)["private_ip"]
    host = get_host(REPLICA)
    no_auth = host.run(
        f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 3 --cacert {CA}"
        f" -X POST https://{address}:8008/restart -d '{{}}'"
    )
    assert no_auth.stdout != "200"
    assert leader(REPLICA) == PRIMARY
