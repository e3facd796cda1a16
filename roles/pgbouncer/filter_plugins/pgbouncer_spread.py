"""Where each PgBouncer node's pools go, and what that adds up to on each database host.

One definition of the read-only spread, used by the role (each node's `<db>_ro`) and by the
pre-flight connection budget (ansible/preflight.yml), so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any


def pgbouncer_readonly_target(
    node: str,
    fleet: Sequence[str],
    replicas: Sequence[str],
    primary: str,
    pinned: str = "",
) -> str:
    """The database host `node`'s read-only pool reaches: the host it is pinned to, else
    replica i mod n for the node at position i of the fleet (stable from run to run), else
    the primary when there is no replica."""
    if pinned:
        return pinned
    if not replicas:
        return primary
    position = fleet.index(node) if node in fleet else 0
    return replicas[position % len(replicas)]


def pgbouncer_server_load(
    fleet: Sequence[str],
    hostvars: Mapping[str, Mapping[str, Any]],
    default_size: int,
    primary: str,
    replicas: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Server connections each database host would receive from the fleet: for each host,
    `total` and the nodes it comes `from`. A node opens up to its
    `pgbouncer_max_db_connections` (`default_size` unless its hostvars set it) to the
    primary (its `<db>`) and as many to its read-only target (its `<db>_ro`), the primary
    again when there is no replica."""
    hosts = [db for db in [primary, *replicas] if db]
    load: dict[str, dict[str, Any]] = {db: {"total": 0, "from": []} for db in hosts}
    for node in fleet:
        node_vars = hostvars[node]
        size = int(node_vars.get("pgbouncer_max_db_connections", default_size))
        pinned = str(node_vars.get("pgbouncer_readonly_host", "") or "")
        readonly = pgbouncer_readonly_target(node, fleet, replicas, primary, pinned)
        for db in (primary, readonly):
            if db in load:
                load[db]["total"] += size
                load[db]["from"].append(node)
    return load


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "pgbouncer_readonly_target": pgbouncer_readonly_target,
            "pgbouncer_server_load": pgbouncer_server_load,
        }
