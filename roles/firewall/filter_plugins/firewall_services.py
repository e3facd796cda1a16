"""What a host serves and to whom: the rules the firewall role renders into nftables.conf.

Built from the inventory's groups and what the other roles publish in every run
(haproxy_endpoint, app_gunicorn_listeners, reaper_endpoint, redis_endpoints,
postgresql_endpoint, pgbackrest_endpoint, etcd_endpoint), so a port
is opened only to the private addresses of the hosts that use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any


def firewall_ips_of(
    groups: Mapping[str, Sequence[str]], hostvars: Mapping[str, Mapping[str, Any]]
) -> dict[str, list[str]]:
    """Each inventory group's hosts' private addresses (hosts without one are left out)."""
    out: dict[str, list[str]] = {}
    for group, members in groups.items():
        ips = [hostvars[m].get("private_ip") for m in members]
        out[group] = [str(ip) for ip in ips if ip]
    return out


def _ips(ips_of: Mapping[str, Sequence[str]], groups: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(ip for group in groups for ip in ips_of.get(group, [])))


def firewall_services(
    host: str,
    ip: str,
    groups: Mapping[str, Sequence[str]],
    ips_of: Mapping[str, Sequence[str]],
    settings: Mapping[str, Any],
    published: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """The services `host` (private address `ip`) offers: a list of {name, proto, ports,
    from}, `from` a list of addresses or "any".

    `settings` holds the role's lb_group, app_group, redis_group, db_group,
    monitoring_group, client_groups, public_ports and extra_rules; `published` what this
    host's roles published in this run (absent or None when they did not)."""

    def member(group_var: str) -> bool:
        return host in groups.get(settings[group_var], [])

    lbs = _ips(ips_of, [settings["lb_group"]])
    clients = _ips(ips_of, settings["client_groups"])
    monitoring = _ips(ips_of, [settings["monitoring_group"]])
    out: list[dict[str, Any]] = []
    haproxy = published.get("haproxy_endpoint")
    if member("lb_group"):
        out.append(
            {"name": "load balancer", "ports": list(settings["public_ports"]), "from": "any"}
        )
        if monitoring and haproxy:
            out.append({"name": "HAProxy stats and metrics", "ports": [int(haproxy["stats_port"])],
                        "from": monitoring})  # fmt: skip
    listeners = published.get("app_gunicorn_listeners")
    if listeners and lbs and member("app_group"):
        out.append({"name": "gunicorn", "ports": [int(lst["port"]) for lst in listeners],
                    "from": lbs})  # fmt: skip
    reaper = published.get("reaper_endpoint")
    if reaper and int(reaper["metrics_port"]) > 0 and monitoring and member("app_group"):
        out.append({"name": "reaper metrics", "ports": [int(reaper["metrics_port"])],
                    "from": monitoring})  # fmt: skip
    redis = published.get("redis_endpoints")
    if redis and clients and member("redis_group"):
        out.append({"name": "Redis", "ports": [int(e["port"]) for e in redis.values()],
                    "from": clients})  # fmt: skip
    postgresql = published.get("postgresql_endpoint")
    if postgresql:
        peers = [
            a for a in _ips(ips_of, [*settings["client_groups"], settings["db_group"]]) if a != ip
        ]
        out.append({"name": "PostgreSQL", "ports": [int(postgresql["port"])], "from": peers})
        if postgresql.get("patroni_port"):
            # The other members (leader race, rewind), the PgBouncer nodes' router (health
            # checks) and Prometheus.
            out.append({"name": "Patroni REST API", "ports": [int(postgresql["patroni_port"])],
                        "from": list(dict.fromkeys([*peers, *monitoring]))})  # fmt: skip
    pgbackrest = published.get("pgbackrest_endpoint")
    if pgbackrest and pgbackrest.get("peers"):
        out.append({"name": "pgBackRest", "ports": [int(pgbackrest["port"])],
                    "from": list(pgbackrest["peers"])})  # fmt: skip
    etcd = published.get("etcd_endpoint")
    if etcd:
        peers = [a for a in etcd["members"] if a != ip]
        clients = [a for a in etcd["clients"] if a != ip]
        if clients:
            out.append({"name": "etcd clients", "ports": [int(etcd["client_port"])],
                        "from": clients})  # fmt: skip
        if peers:
            out.append({"name": "etcd peers", "ports": [int(etcd["peer_port"])], "from": peers})
        if monitoring:
            out.append({"name": "etcd metrics", "ports": [int(etcd["metrics_port"])],
                        "from": monitoring})  # fmt: skip
    exporters = published.get("exporters_endpoints")
    if exporters and monitoring:
        out.append({"name": "exporters", "ports": [int(e["port"]) for e in exporters],
                    "from": monitoring})  # fmt: skip
    prometheus = published.get("monitoring_endpoint")
    if prometheus and member("monitoring_group"):
        gossip = int(prometheus["cluster_port"])
        ports = [int(prometheus["prometheus_port"]), int(prometheus["alertmanager_port"])]
        ports += [gossip] if gossip else []
        out.append({"name": "Prometheus and Alertmanager", "ports": ports, "from": monitoring})
        if gossip:
            out.append({"name": "Alertmanager gossip", "proto": "udp", "ports": [gossip],
                        "from": monitoring})  # fmt: skip
    for rule in settings["extra_rules"]:
        sources = _ips(ips_of, rule["from_groups"])
        out.append({"name": f"extra: port {rule['port']}", "proto": rule.get("proto", "tcp"),
                    "ports": [rule["port"]], "from": sources})  # fmt: skip
    return out


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"firewall_ips_of": firewall_ips_of, "firewall_services": firewall_services}
