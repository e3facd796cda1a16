"""The backend's servers, and what the runtime API says about them.

One definition of a server's name (`<host>-<port>`), used by the configuration template,
the published `haproxy_endpoint` fact and the drain/ready entry point (tasks/server_state.yml).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def haproxy_server_name(host: str, port: int | str) -> str:
    """The backend server of one gunicorn instance: inventory host and port."""
    return f"{host}-{port}"


def haproxy_servers(
    backend_hosts: Sequence[str], hostvars: Mapping[str, Mapping[str, Any]], lb_count: int
) -> list[dict[str, Any]]:
    """Every gunicorn instance the backend hosts published (`app_gunicorn_listeners`): name,
    private address, port, capacity, and this lb's share of the capacity,
    (capacity - lbs) // lbs, which leaves one slot per lb free for its health check."""
    lbs = max(int(lb_count), 1)
    out = []
    for host in backend_hosts:
        host_vars = hostvars[host]
        for listener in host_vars.get("app_gunicorn_listeners") or []:
            capacity = int(listener["capacity"])
            out.append({
                "host": host,
                "name": haproxy_server_name(host, listener["port"]),
                "address": host_vars["private_ip"],
                "port": int(listener["port"]),
                "capacity": capacity,
                "maxconn": (capacity - lbs) // lbs,
            })  # fmt: skip
    return out


def haproxy_names_by_host(servers: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """The server names of each backend host, from `haproxy_servers`: {host: [name, ...]}."""
    out: dict[str, list[str]] = {}
    for server in servers:
        out.setdefault(str(server["host"]), []).append(str(server["name"]))
    return out


def haproxy_lb_servers(
    hosts: Sequence[str], hostvars: Mapping[str, Mapping[str, Any]], backend_host: str
) -> list[list[str]]:
    """[lb, server name] for each server of `backend_host` on each of `hosts` that published
    `haproxy_endpoint` in this run, in inventory order."""
    pairs = []
    for lb in hosts:
        endpoint = hostvars[lb].get("haproxy_endpoint")
        if endpoint:
            pairs += [[lb, name] for name in endpoint["servers"].get(backend_host, [])]
    return pairs


def haproxy_stat(show_stat: str, backend: str, names: Sequence[str]) -> list[dict[str, Any]]:
    """The named servers of `backend` in the output of the runtime API's `show stat`: name,
    status (UP, DOWN, DRAIN, MAINT, ...), requests in flight (current sessions plus queued),
    served so far (total sessions) and errors so far (5xx answers from the server plus
    responses that failed: aborted or empty). A named server missing from the output is
    reported with status MISSING."""
    rows = {
        row["svname"]: row
        for row in csv.DictReader(io.StringIO(show_stat.lstrip("# ")))
        if row.get("pxname") == backend
    }
    out = []
    for name in names:
        row = rows.get(name)
        if row is None:
            out.append({"name": name, "status": "MISSING", "inflight": 0, "served": 0, "errors": 0})
            continue
        inflight = int(row.get("scur") or 0) + int(row.get("qcur") or 0)
        served = int(row.get("stot") or 0)
        errors = int(row.get("hrsp_5xx") or 0) + int(row.get("eresp") or 0)
        out.append(
            {
                "name": name,
                "status": row.get("status", ""),
                "inflight": inflight,
                "served": served,
                "errors": errors,
            }
        )
    return out


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "haproxy_server_name": haproxy_server_name,
            "haproxy_servers": haproxy_servers,
            "haproxy_names_by_host": haproxy_names_by_host,
            "haproxy_lb_servers": haproxy_lb_servers,
            "haproxy_stat": haproxy_stat,
        }
