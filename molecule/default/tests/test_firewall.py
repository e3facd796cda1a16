"""The firewall in the full topology: from inside each container, every internal port is
reachable only from the hosts the design admits; the load balancer answers from outside."""

from __future__ import annotations

import pytest
import requests
from conftest import INVENTORY, get_host, host_vars

LB = INVENTORY.get_hosts("lb")[0]
LB_URL = str(host_vars(LB)["local_stack_lb_url"])
APP = sorted(INVENTORY.get_hosts("app"))
WORKERS = INVENTORY.get_hosts("workers")[0]
REDIS = INVENTORY.get_hosts("redis")[0]
PRIMARY = INVENTORY.get_hosts("db_primary")[0]
REPLICA = INVENTORY.get_hosts("db_replicas")[0]


def ip(name: str) -> str:
    return str(host_vars(name)["private_ip"])


def reaches(source: str, target: str, port: int) -> bool:
    """A TCP connection from inside one container to another's private address."""
    probe = get_host(source).run(
        "timeout 3 bash -c 'exec 3<>/dev/tcp/%s/%s' 2>/dev/null", ip(target), str(port)
    )
    return probe.rc == 0


@pytest.mark.parametrize(
    ("source", "target", "port", "allowed"),
    [
        # gunicorn: only the load balancer.
        (LB, APP[0], 8001, True),
        (LB, APP[-1], 8002, True),
        (APP[0], APP[-1], 8001, False),
        (WORKERS, APP[0], 8001, False),
        (PRIMARY, APP[0], 8002, False),
        # Redis: only the app and workers nodes.
        (APP[0], REDIS, 6379, True),
        (WORKERS, REDIS, 6380, True),
        (LB, REDIS, 6379, False),
        (PRIMARY, REDIS, 6380, False),
        # PostgreSQL: the app and workers nodes, and the other database host.
        (APP[-1], PRIMARY, 5432, True),
        (WORKERS, PRIMARY, 5432, True),
        (REPLICA, PRIMARY, 5432, True),
        (APP[0], REPLICA, 5432, True),
        (LB, PRIMARY, 5432, False),
        (REDIS, REPLICA, 5432, False),
        # HAProxy's stats: nobody but the monitoring group (empty here).
        (APP[0], LB, 8404, False),
    ],
    ids=lambda value: str(value),
)
def test_internal_ports_open_only_to_their_clients(
    source: str, target: str, port: int, allowed: bool
) -> None:
    assert reaches(source, target, port) is allowed


def test_every_host_drops_by_default() -> None:
    for name in [LB, *APP, WORKERS, REDIS, PRIMARY, REPLICA]:
        rules = get_host(name).check_output("nft list chain inet kit_firewall input")
        assert "policy drop;" in rules, name


def test_the_load_balancer_answers_from_outside() -> None:
    assert requests.get(f"{LB_URL}/healthz", timeout=5).status_code == 200
    # From another host of the stack too: port 80 is open to everyone.
    assert reaches(REDIS, LB, 80)
