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
from dataclasses import dataclass, field

import pytest
import requests
from conftest import INVENTORY, LB_URL, get_host, host_vars, run_playbook, superuser_sql

PRIMARY = INVENTORY.get_hosts("db_primary")[0]
REPLICA = sorted(INVENTORY.get_hosts("db_replicas"))[0]
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
class Writes:
    """Writes through the lb (POST /items: PgBouncer's <db>, the leader), timestamped."""

    outcomes: list[tuple[float, str]] = field(default_factory=list)

    def failures(self) -> list[tuple[float, str]]:
        return [o for o in self.outcomes if o[1] != "ok"]


def _writer(writes: Writes, stop: threading.Event, lock: threading.Lock) -> None:
    while not stop.is_set():
        try:
            response = requests.post(
                f"{LB_URL}/items", json={"name": f"failover-{uuid.uuid4()}"}, timeout=10
            )
            outcome = "ok" if response.status_code == 201 else f"status {response.status_code}"
        except requests.RequestException as error:
            outcome = type(error).__name__
        with lock:
            writes.outcomes.append((time.monotonic(), outcome))
        time.sleep(0.05)


@pytest.fixture
def writing() -> Iterator[Writes]:
    writes = Writes()
    stop = threading.Event()
    lock = threading.Lock()
    threads = [threading.Thread(target=_writer, args=(writes, stop, lock)) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        yield writes
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


def patroni_unit(member: str) -> str:
    """Patroni's unit on a member (patroni@<version>-main), named after its configuration:
    a stopped template instance is not matched by a glob."""
    config = get_host(member).check_output("ls /etc/patroni/ | grep -E '^[0-9]+-main.yml$'")
    return f"patroni@{config.removesuffix('.yml')}.service"


def docker(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True, text=True)


def test_a_killed_primary_is_replaced_and_writes_resume_within_30_s(writing: Writes) -> None:
    assert leader(REPLICA) == PRIMARY
    time.sleep(3)
    killed_at = time.monotonic()
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
    print(
        f"failover: leader after {led:.1f} s, last failed write {resumed_after:.1f} s after the"
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
    writing: Writes,
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
    assert window < 15, f"writes failed for {window:.1f} s during the switchover"
    print(f"switchover: {time.monotonic() - started:.1f} s, writes failed for {window:.1f} s")


def test_reads_skip_a_stopped_replica_and_come_back_to_it() -> None:
    unit = patroni_unit(REPLICA)
    get_host(REPLICA).run_test(f"systemctl stop {unit}")
    try:
        # Every read answers while the only replica is down (the primary takes them).
        time.sleep(4)
        codes = Counter(requests.get(f"{LB_URL}/items", timeout=10).status_code for _ in range(20))
        assert codes == Counter({200: 20})
    finally:
        get_host(REPLICA).run_test(f"systemctl start {unit}")
    wait_until(
        "the replica streams again", lambda: api(REPLICA, "/replica", via=PRIMARY)[0] == 200, 120
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
