"""The firewall's rules: each port open only to the hosts that use it."""

from __future__ import annotations

from typing import Any

from conftest import load_plugin

fw = load_plugin("roles/firewall/filter_plugins/firewall_services.py")

GROUPS = {
    "all": ["lb-1", "app-1", "workers-1", "redis-1", "db-1", "db-2", "mon-1"],
    "lb": ["lb-1"],
    "app": ["app-1"],
    "workers": ["workers-1"],
    "redis": ["redis-1"],
    "db": ["db-1", "db-2"],
    "monitoring": ["mon-1"],
    "ungrouped": [],
}
IPS = {h: f"10.0.0.{i}" for i, h in enumerate(GROUPS["all"], start=1)}
SETTINGS: dict[str, Any] = {
    "lb_group": "lb", "app_group": "app", "redis_group": "redis", "db_group": "db",
    "monitoring_group": "monitoring", "client_groups": ["app", "workers"],
    "public_ports": [80, 443], "extra_rules": [],
}  # fmt: skip
IPS_OF = fw.firewall_ips_of(GROUPS, {h: {"private_ip": ip} for h, ip in IPS.items()})


def services(host: str, **published: Any) -> dict[str, dict[str, Any]]:
    got = fw.firewall_services(host, IPS[host], GROUPS, IPS_OF, SETTINGS, published)
    return {s["name"]: s for s in got}


def test_groups_map_to_their_hosts_private_addresses() -> None:
    ips = fw.firewall_ips_of({"g": ["a", "b"]}, {"a": {"private_ip": "10.1.1.1"}, "b": {}})
    assert ips == {"g": ["10.1.1.1"]}


def test_lb_serves_everyone_and_its_stats_only_to_monitoring() -> None:
    got = services("lb-1", haproxy_endpoint={"stats_port": "8404"})

    assert got["load balancer"] == {"name": "load balancer", "ports": [80, 443], "from": "any"}
    assert got["HAProxy stats and metrics"]["ports"] == [8404]
    assert got["HAProxy stats and metrics"]["from"] == [IPS["mon-1"]]


def test_gunicorn_only_from_the_lbs_redis_only_from_app_and_workers() -> None:
    app = services("app-1", app_gunicorn_listeners=[{"port": 8001}, {"port": "8002"}])
    redis = services(
        "redis-1", redis_endpoints={"sessions": {"port": 6379}, "queues": {"port": 6380}}
    )

    assert app["gunicorn"]["ports"] == [8001, 8002]
    assert app["gunicorn"]["from"] == [IPS["lb-1"]]
    assert redis["Redis"]["ports"] == [6379, 6380]
    assert redis["Redis"]["from"] == [IPS["app-1"], IPS["workers-1"]]


def test_reaper_metrics_only_to_monitoring_and_closed_without_it() -> None:
    endpoint = {"metrics_address": IPS["app-1"], "metrics_port": "9405"}
    got = services("app-1", reaper_endpoint=endpoint)

    assert got["reaper metrics"] == {
        "name": "reaper metrics", "ports": [9405], "from": [IPS["mon-1"]]
    }  # fmt: skip
    off = services("app-1", reaper_endpoint=endpoint | {"metrics_port": 0})
    assert "reaper metrics" not in off
    no_monitoring = dict(GROUPS, monitoring=[])
    ips_of = fw.firewall_ips_of(no_monitoring, {h: {"private_ip": ip} for h, ip in IPS.items()})
    alone = fw.firewall_services(
        "app-1", IPS["app-1"], no_monitoring, ips_of, SETTINGS, {"reaper_endpoint": endpoint}
    )
    assert alone == []


def test_postgresql_from_the_clients_and_the_other_database_hosts_not_itself() -> None:
    got = services("db-1", postgresql_endpoint={"port": 5432})

    assert got["PostgreSQL"]["from"] == [IPS["app-1"], IPS["workers-1"], IPS["db-2"]]


def test_pgbackrest_only_from_its_peers() -> None:
    endpoint = {"port": 8432, "peers": [IPS["mon-1"]]}
    got = services("db-1", pgbackrest_endpoint=endpoint)

    assert got["pgBackRest"] == {"name": "pgBackRest", "ports": [8432], "from": [IPS["mon-1"]]}
    assert "pgBackRest" not in services("db-1", pgbackrest_endpoint=endpoint | {"peers": []})


def test_etcd_clients_and_peers_from_the_other_members_metrics_to_monitoring() -> None:
    members = [IPS["db-1"], IPS["db-2"], IPS["mon-1"]]
    endpoint = {"client_port": 2379, "peer_port": "2380", "metrics_port": 2381,
                "members": members, "clients": members}  # fmt: skip
    got = services("mon-1", etcd_endpoint=endpoint)

    assert got["etcd clients"] == {"name": "etcd clients", "ports": [2379], "from": members[:2]}
    assert got["etcd peers"] == {"name": "etcd peers", "ports": [2380], "from": members[:2]}
    assert got["etcd metrics"]["ports"] == [2381]
    assert got["etcd metrics"]["from"] == [IPS["mon-1"]]
    assert "etcd" not in " ".join(services("app-1"))


def test_nothing_is_opened_for_what_was_not_published() -> None:
    assert services("app-1") == {}
    assert list(services("lb-1")) == ["load balancer"]


def test_an_extra_rule_opens_its_port_to_its_groups() -> None:
    SETTINGS["extra_rules"] = [{"port": 9100, "from_groups": ["monitoring"]}]
    try:
        got = services("redis-1")
    finally:
        SETTINGS["extra_rules"] = []

    assert got["extra: port 9100"] == {
        "name": "extra: port 9100", "proto": "tcp", "ports": [9100], "from": [IPS["mon-1"]],
    }  # fmt: skip


def test_every_exporter_is_open_to_the_monitoring_hosts_only() -> None:
    exporters = [{"job": "node", "port": 9100}, {"job": "redis", "port": "9121"}]
    got = services("redis-1", exporters_endpoints=exporters)

    assert got["exporters"]["ports"] == [9100, 9121]
    assert got["exporters"]["from"] == [IPS["mon-1"]]


def test_prometheus_and_alertmanager_open_between_monitoring_hosts_gossip_only_when_clustered() -> (
    None
):
    endpoint = {"prometheus_port": 9090, "alertmanager_port": "9093", "cluster_port": 0}
    one = services("mon-1", monitoring_endpoint=endpoint)
    several = services("mon-1", monitoring_endpoint=endpoint | {"cluster_port": "9094"})

    assert one["Prometheus and Alertmanager"]["ports"] == [9090, 9093]
    assert one["Prometheus and Alertmanager"]["from"] == [IPS["mon-1"]]
    assert "Alertmanager gossip" not in one
    assert several["Prometheus and Alertmanager"]["ports"] == [9090, 9093, 9094]
    assert several["Alertmanager gossip"]["proto"] == "udp"
    assert several["Alertmanager gossip"]["ports"] == [9094]
    # Published on a host outside the monitoring group, it opens nothing.
    assert "Prometheus and Alertmanager" not in services("db-1", monitoring_endpoint=endpoint)
