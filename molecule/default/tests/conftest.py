"""Fixtures for checks against the converged full topology.

Hosts and their variables come from the same inventory Molecule ran the playbooks with,
so a host added to ``inventories/local`` is checked without editing a test.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner


def _inventory_dir() -> str:
    inventory_file = os.environ.get("MOLECULE_INVENTORY_FILE")
    if inventory_file:
        return str(Path(inventory_file).parent)
    return str(Path(__file__).resolve().parents[3] / "inventories" / "local")


INVENTORY = AnsibleRunner(_inventory_dir())
ALL_HOSTS: list[str] = sorted(INVENTORY.get_hosts("all"))


def host_vars(name: str) -> dict[str, Any]:
    """The inventory variables of one host (group_vars and host_vars merged)."""
    return dict(INVENTORY.get_variables(name))


@pytest.fixture(scope="session")
def inventory() -> AnsibleRunner:
    return INVENTORY


@pytest.fixture(scope="session")
def private_ips() -> dict[str, str]:
    return {name: str(host_vars(name)["private_ip"]) for name in ALL_HOSTS}
