"""Monitoring: Prometheus scrapes every exporter the inventory implies, and a real fault
fires its alert in Alertmanager, which resolves once the fault is repaired."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import yaml
from conftest import INVENTORY, get_host, host_vars

MONITORING = INVENTORY.get_hosts("monitoring")[0]
PROMETHEUS_URL = str(host_vars(MONITORING)["local_stack_prometheus_url"])
ALERTMANAGER_URL = str(host_vars(MONITORING)["local_stack_alertmanager_url"])
LBS = sorted(INVENTORY.get_hosts("lb"))
APP_NODES = sorted(INVENTORY.get_hosts("app"))
REPLICAS = sorted(INVENTORY.get_hosts("db_replicas"))
# Local settings (inventories/local/group_vars/monitoring.yml): 5 s scrapes and evaluations,
# alerts after 10 s, grouped for 5 s. A fault is in Alertmanager well within this.
ALERT_WITHIN = 90.0
ROOT = Path(__file__).resolve().parents[3]
REDIS_DEFAULTS = yaml.safe_load((ROOT / "roles" / "redis" / "defaults" / "main.yml").read_text())
APP_DEFAULTS = yaml.safe_load((ROOT / "roles" / "app" / "defaults" / "main.yml").read_text())


def targets() -> list[dict[str, Any]]:
    answer = requests.get(f"{PROMETHEUS_URL}/api/v1/targets?state=active", timeout=10)
    answer.raise_for_status()
    return list(answer.json()["data"]["activeTargets"])


def alerts(name: str) -> list[dict[str, Any]]:
    """The alerts of that name Alertmanager holds now, firing (resolved ones are gone)."""
    answer = requests.get(
        f"{ALERTMANAGER_URL}/api/v2/alerts", params={"filter": f'alertname="{name}"'}, timeout=10
    )
    answer.raise_for_status()
    return [a for a in answer.json() if a["status"]["state"] == "active"]


def wait_for(what: str, check: Callable[[], bool], within: float = ALERT_WITHIN) -> float:
    """Seconds until check() holds; fails the test after `within`."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < within, f"{what}: not within {within:.0f} s"
        time.sleep(1)
    return time.monotonic() - start


def test_prometheus_scrapes_every_target_the_inventory_implies_all_up() -> None:
    hosts = sorted(INVENTORY.get_hosts("all"))
    redis_instances = {
        name: len(host_vars(name).get("redis_instances", REDIS_DEFAULTS["redis_instances"]))
        for name in INVENTORY.get_hosts("redis")
    }
    expected = {
        "node": len(hosts),
        "postgres": len(INVENTORY.get_hosts("db")),
        # Debian 13 only (the exporters role's README).
        "pgbouncer": sum(
            int(get_host(name).system_info.release.split(".")[0]) >= 13
            for name in set(APP_NODES) | set(INVENTORY.get_hosts("workers"))
        ),
        "redis": sum(redis_instances.values()),
        "haproxy": len(LBS),
        "reaper": len(APP_NODES),
        "prometheus": len(INVENTORY.get_hosts("monitoring")),
        "alertmanager": len(INVENTORY.get_hosts("monitoring")),
    }

    # Right after a converge that restarted an exporter, its first scrape may be pending.
    wait_for("every target UP", lambda: all(t["health"] == "up" for t in targets()), 30)
    got = targets()
    by_job: dict[str, int] = {}
    for target in got:
        by_job[target["labels"]["job"]] = by_job.get(target["labels"]["job"], 0) + 1

    assert by_job == {job: count for job, count in expected.items() if count}
    assert {t["labels"]["host"] for t in got if t["labels"]["job"] == "node"} == set(hosts)
    assert [t["scrapeUrl"] for t in got if t["health"] != "up"] == []


def test_a_stopped_gunicorn_instance_fires_backend_down_on_every_lb_then_resolves() -> None:
    node = get_host(APP_NODES[-1])
    port = int(
        host_vars(APP_NODES[-1]).get(
            "app_gunicorn_base_port", APP_DEFAULTS["app_gunicorn_base_port"]
        )
    )
    server = f"{APP_NODES[-1]}-{port}"

    def firing_on() -> set[str]:
        return {a["labels"]["host"] for a in alerts("KitBackendServerDown")
                if a["labels"].get("server") == server}  # fmt: skip

    assert firing_on() == set()
    node.check_output("systemctl stop gunicorn@%s.service", str(port))
    try:
        fired = wait_for("KitBackendServerDown on every lb", lambda: firing_on() == set(LBS))
    finally:
        node.check_output("systemctl start gunicorn@%s.service", str(port))
    resolved = wait_for("KitBackendServerDown resolved", lambda: firing_on() == set())
    print(
        f"{server} stopped: alert on {len(LBS)} lb(s) after {fired:.0f} s;"
        f" resolved {resolved:.0f} s after the start"
    )


def test_a_stopped_replica_fires_replication_broken_then_resolves() -> None:
    replica = get_host(REPLICAS[0])
    version = replica.check_output("ls /etc/postgresql")

    def firing() -> bool:
        return len(alerts("KitReplicationBroken")) > 0

    assert not firing()
    replica.check_output("systemctl stop postgresql@%s-main.service", version)
    try:
        fired = wait_for("KitReplicationBroken", firing)
    finally:
        replica.check_output("systemctl start postgresql@%s-main.service", version)
    resolved = wait_for("KitReplicationBroken resolved", lambda: not firing())
    print(
        f"{REPLICAS[0]} stopped: alert after {fired:.0f} s;"
        f" resolved {resolved:.0f} s after the start"
    )


def test_prometheus_counts_the_rq_workers_the_workers_hosts_run() -> None:
    running = 0
    for name in INVENTORY.get_hosts("workers"):
        units = get_host(name).check_output(
            "systemctl list-units --state=active --plain --no-legend 'rq-worker@*.service'"
        )
        running += len(units.splitlines())

    def counted() -> float:
        answer = requests.get(
            f"{PROMETHEUS_URL}/api/v1/query",
            params={"query": 'sum(redis_key_size{key="rq:workers"})'},
            timeout=10,
        )
        answer.raise_for_status()
        result = answer.json()["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    assert running > 0
    wait_for("the workers registered in the queues instance", lambda: counted() == running, 30)
