"""nftables rules between a load balancer and an app node: each port open only to whom the
inventory says, everything else dropped."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import testinfra

LB, APP = "172.30.216.11", "172.30.216.12"

testinfra_hosts = ["kit-molecule-fw-lb"]


@pytest.fixture(scope="module")
def app(request: pytest.FixtureRequest) -> Any:
    return testinfra.get_host(
        "ansible://kit-molecule-fw-app", ansible_inventory=request.config.option.ansible_inventory
    )


def reaches(host: Any, address: str, port: int) -> bool:
    return host.run("nc -z -w 2 %s %s", address, str(port)).rc == 0


def reaches_from_here(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except OSError:
        return False


def test_rules_are_loaded_and_loaded_at_boot(host: Any) -> None:
    assert host.service("nftables").is_enabled
    rules = host.check_output("nft list table inet kit_firewall")
    assert "policy drop" in rules
    assert host.run("nft --check --file /etc/nftables.conf").rc == 0


def test_the_load_balancer_reaches_gunicorn(host: Any) -> None:
    assert reaches(host, APP, 8001)


def test_nothing_else_on_the_app_node_is_reachable(host: Any) -> None:
    # A port no rule opens, from a host of the inventory.
    assert not reaches(host, APP, 9999)


def test_the_app_node_cannot_reach_the_load_balancers_private_ports(app: Any) -> None:
    assert not reaches(app, LB, 8404)
    assert not reaches(app, LB, 9999)


def test_the_front_door_is_open_to_everyone(app: Any) -> None:
    assert reaches(app, LB, 80)
    assert reaches_from_here(LB, 80)


def test_gunicorn_is_closed_to_a_host_outside_the_inventory() -> None:
    # The machine running the tests is on the network but in no group.
    assert not reaches_from_here(APP, 8001)


def test_ping_works_between_hosts(host: Any) -> None:
    assert host.run("ping -c 1 -W 2 %s", APP).rc == 0
