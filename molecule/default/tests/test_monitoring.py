"""Monitoring: Prometheus scrapes every exporter the inventory implies, and a real fault
fires its alert in Alertmanager, which resolves once the fault is repaired."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import yaml
from conftest import INVENTORY, LB_URL, get_host, host_vars

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


def query(expression: str) -> list[dict[str, Any]]:
    """The instant vector Prometheus answers now."""
    answer = requests.get(
        f"{PROMETHEUS_URL}/api/v1/query", params={"query": expression}, timeout=10
    )
    answer.raise_for_status()
    return list(answer.json()["data"]["result"])


def scalar(expression: str) -> float:
    """The expression's single value now (0 when it has no series)."""
    result = query(expression)
    return float(result[0]["value"][1]) if result else 0.0


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
        "etcd": len(INVENTORY.get_hosts("etcd")),
        "patroni": len(INVENTORY.get_hosts("db")),
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
    # Patroni runs the replica's PostgreSQL: stopping it stops both.
    replica.check_output("systemctl stop patroni@%s-main.service", version)
    try:
        fired = wait_for("KitReplicationBroken", firing)
    finally:
        replica.check_output("systemctl start patroni@%s-main.service", version)
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


def test_every_request_through_the_lb_is_counted_by_route_on_every_app_node() -> None:
    """The workers' request metrics (kit_app_*), served by each node's reaper: requests
    through HAProxy are counted by their route's template, on every node, with a latency
    histogram Prometheus can take a p99 from."""
    # A status no other check asks for (n above 10000 is refused), so the count is exact.
    counted = 'sum(kit_app_requests_total{route="/cache/fibonacci/<int:n>", status="400"})'
    before = scalar(counted)
    sent = 60
    for n in range(sent):
        answer = requests.get(f"{LB_URL}/cache/fibonacci/{20000 + n}", timeout=10)
        assert answer.status_code == 400
    wait_for("the requests counted", lambda: scalar(counted) >= before + sent, 30)
    assert scalar(counted) == before + sent

    by_node = query('sum by (host) (kit_app_requests_total{route="/cache/fibonacci/<int:n>"})')
    assert sorted(r["metric"]["host"] for r in by_node) == APP_NODES
    p99 = query(
        "histogram_quantile(0.99, sum by (host, le) "
        "(rate(kit_app_request_duration_seconds_bucket[1m])))"
    )
    assert sorted(r["metric"]["host"] for r in p99) == APP_NODES
    assert all(0 < float(r["value"][1]) < 10 for r in p99), p99
    in_flight = query("sum by (host) (kit_app_requests_in_flight)")
    assert sorted(r["metric"]["host"] for r in in_flight) == APP_NODES


def test_rq_jobs_done_are_counted_with_their_time() -> None:
    """RQ's workers summed by the queues exporter's script: a job run shows in the jobs
    succeeded and the seconds worked, and every worker counts as busy or idle."""
    succeeded = 'sum(redis_script_values{key="rq_jobs_succeeded"})'
    before = scalar(succeeded)
    job = requests.post(
        f"{LB_URL}/jobs", params={"label": "metrics", "seconds": "8", "queue": "low"}, timeout=10
    )
    assert job.status_code == 202
    # While it runs, RQ keeps it in its started registry, under the name RQ really uses.
    wait_for("the running job seen", lambda: scalar('redis_key_size{key="rq:wip:low"}') >= 1, 30)
    wait_for("the job counted", lambda: scalar(succeeded) >= before + 1, 60)
    assert scalar('sum(redis_script_values{key="rq_working_seconds"})') >= 8
    workers = scalar('sum(redis_key_size{key="rq:workers"})')
    states = scalar('sum(redis_script_values{key=~"rq_workers_(busy|idle)"})')
    assert workers > 0
    assert states == workers


def test_the_statements_that_took_the_most_time_are_reported() -> None:
    """pg_stat_statements on the primary, read by PostgreSQL's exporter: the app's own
    statements (its role, its database) are among them."""
    primary = sorted(INVENTORY.get_hosts("db_primary"))
    found = query('kit_pg_statements_calls{datname="kit"}')
    assert {r["metric"]["host"] for r in found} >= set(primary)
    assert any(float(r["value"][1]) > 0 and r["metric"]["query"] for r in found)


def test_the_certificates_expiry_is_reported() -> None:
    """The lb's certificate and each host's from the kit's CA (the pki role: the database
    hosts, every PgBouncer node and the backup repository), read by kit-tls-expiry.timer into
    node_exporter's textfile collector: each valid for 825 days from its creation."""
    found = query("kit_tls_certificate_not_after_seconds")
    by_path: dict[str, list[str]] = {}
    for r in found:
        by_path.setdefault(r["metric"]["path"], []).append(r["metric"]["host"])
    assert sorted(by_path.pop("/etc/ssl/kit/host.crt")) == sorted(
        set(INVENTORY.get_hosts("db"))
        | set(APP_NODES)
        | set(INVENTORY.get_hosts("workers"))
        | set(INVENTORY.get_hosts("monitoring"))
    )
    assert sorted(host for hosts in by_path.values() for host in hosts) == LBS
    days = [(float(r["value"][1]) - time.time()) / 86400 for r in found]
    assert all(700 < d <= 825 for d in days), days
    assert alerts("KitCertificateExpiring") == []


def test_py_spy_dumps_a_live_worker_as_the_apps_user() -> None:
    """py-spy ships in the release: the app's user reads a serving worker's stacks."""
    node = get_host(APP_NODES[0])
    app_name = str(host_vars(APP_NODES[0]).get("app_name", APP_DEFAULTS["app_name"]))
    port = APP_DEFAULTS["app_gunicorn_base_port"]
    arbiter = node.check_output(f"systemctl show -p MainPID --value gunicorn@{port}.service")
    worker = node.check_output(f"pgrep -P {arbiter} | head -1")
    dump = node.run(
        f"runuser -u {app_name} -- /srv/{app_name}/current/venv/bin/py-spy dump --pid {worker}"
    )
    assert dump.rc == 0, dump.stderr
    assert "gunicorn" in dump.stdout, dump.stdout


def panels() -> list[dict[str, Any]]:
    """The page's panels: the JSON block kit-panels of roles/monitoring/files/consoles/kit.html."""
    page = (ROOT / "roles" / "monitoring" / "files" / "consoles" / "kit.html").read_text()
    start = page.index('<script type="application/json" id="kit-panels">')
    block = page[page.index(">", start) + 1 : page.index("</script>", start)]
    return list(json.loads(block))


def test_every_panel_of_the_page_has_data_for_every_tier() -> None:
    """The page a person looks at (/consoles/kit.html, served by Prometheus): after a little
    traffic of each kind, every panel's query has series over the last 10 minutes; only
    PgBouncer's may be empty, where no host runs its exporter (Debian 12)."""
    served = requests.get(f"{PROMETHEUS_URL}/consoles/kit.html", timeout=10)
    assert served.status_code == 200
    assert 'id="kit-panels"' in served.text
    for n in (5, 5, 6):  # a miss, a hit
        assert requests.get(f"{LB_URL}/cache/fibonacci/{n}", timeout=10).status_code == 200
    assert requests.post(f"{LB_URL}/items", json={"name": "page"}, timeout=10).status_code == 201
    assert requests.get(f"{LB_URL}/items", timeout=10).status_code == 200
    job = requests.post(f"{LB_URL}/jobs", params={"seconds": "20", "queue": "high"}, timeout=10)
    assert job.status_code == 202
    # Scrapes every 5 s: the requests are in Prometheus once the running job is.
    wait_for("the running job seen", lambda: scalar('redis_key_size{key="rq:wip:high"}') >= 1, 45)
    pgbouncer = any(t["labels"]["job"] == "pgbouncer" for t in targets())
    now = time.time()
    empty = []
    for panel in panels():
        answer = requests.get(
            f"{PROMETHEUS_URL}/api/v1/query_range",
            params={"query": panel["query"], "start": now - 600, "end": now, "step": 15},
            timeout=30,
        )
        answer.raise_for_status()
        if not answer.json()["data"]["result"]:
            empty.append(f"{panel['tier']}: {panel['title']}")
    expected = [] if pgbouncer else [p for p in empty if p.startswith("PgBouncer: ")]
    assert empty == expected
    tiers = {p["tier"] for p in panels()}
    assert {"Load balancer", "App servers", "Database", "Redis", "Queues"} <= tiers


def test_backups_and_wal_archiving_are_in_the_metrics() -> None:
    """The repository's backups (kit-pgbackrest-metrics, through node_exporter's textfile
    collector) and the primary's WAL archiving (PostgreSQL's exporter) reach Prometheus,
    and no backup alert fires on a stack just converged."""
    get_host(MONITORING).check_output("systemctl start kit-pgbackrest-metrics.service")
    wait_for(
        "the last full backup in Prometheus",
        lambda: bool(query('kit_pgbackrest_backup_end_seconds{stanza="kit",type="full"}')),
    )
    assert scalar('kit_pgbackrest_status{stanza="kit"}') == 0
    assert scalar("kit_pgbackrest_up") == 1
    ended = scalar('max(kit_pgbackrest_backup_end_seconds{stanza="kit"})')
    assert 0 < time.time() - ended < 6 * 3600
    primary = INVENTORY.get_hosts("db_primary")[0]
    archiver = query(f'kit_pg_archiver_last_archived_seconds{{host="{primary}"}}')
    assert archiver, "the primary's archiver is not in the metrics"
    assert (
        query(f'kit_pg_archiver_failing{{host="{primary}", role="primary"}}')[0]["value"][1] == "0"
    )
    for name in ("KitBackupTooOld", "KitBackupRepositoryUnhealthy", "KitWalArchiveFailing"):
        assert alerts(name) == [], name
