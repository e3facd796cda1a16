"""Every environment's inventory describes the kit's topology with private addresses."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import INVENTORIES, KIT_GROUPS, ROOT, inventory_list, load_yaml

REQUIRED_NON_EMPTY = ("lb", "app", "workers", "redis", "db_primary")


def hosts_of(data: dict, group: str) -> set[str]:
    found = set(data.get(group, {}).get("hosts", []))
    for child in data.get(group, {}).get("children", []):
        found |= hosts_of(data, child)
    return found


@pytest.mark.parametrize("inventory", INVENTORIES, ids=lambda p: p.name)
def test_inventory_has_every_group_of_the_kit(inventory: Path) -> None:
    data = inventory_list(inventory)
    unknown = [g for g in data if g not in (*KIT_GROUPS, "all", "ungrouped", "local", "_meta")]
    assert not unknown, f"{inventory.name}: groups the kit does not know: {unknown}"
    empty = [g for g in REQUIRED_NON_EMPTY if not hosts_of(data, g)]
    assert not empty, f"{inventory.name}: groups with no host: {empty}"


@pytest.mark.parametrize("inventory", INVENTORIES, ids=lambda p: p.name)
def test_every_host_has_a_unique_private_address(inventory: Path) -> None:
    data = inventory_list(inventory)
    hostvars = data["_meta"]["hostvars"]
    addresses = {}
    for host in hosts_of(data, "all"):
        ip = hostvars.get(host, {}).get("private_ip")
        assert ip, f"{inventory.name}: {host} has no private_ip"
        assert ipaddress.ip_address(ip).is_private, f"{inventory.name}: {host} private_ip {ip}"
        addresses[host] = ip
    assert len(set(addresses.values())) == len(addresses), addresses


@pytest.mark.parametrize("inventory", INVENTORIES, ids=lambda p: p.name)
def test_replicas_are_not_also_primary(inventory: Path) -> None:
    data = inventory_list(inventory)
    assert not hosts_of(data, "db_primary") & hosts_of(data, "db_replicas")
    assert len(hosts_of(data, "db_primary")) == 1


def test_local_hosts_sit_on_the_stack_subnet() -> None:
    data = inventory_list(ROOT / "inventories" / "local")
    stack = load_yaml(ROOT / "inventories" / "local" / "group_vars" / "all" / "local_stack.yml")
    subnet = ipaddress.ip_network(stack["local_stack_subnet"])
    gateway = ipaddress.ip_address(stack["local_stack_gateway"])
    for host in hosts_of(data, "all"):
        ip = ipaddress.ip_address(data["_meta"]["hostvars"][host]["private_ip"])
        assert ip in subnet, f"{host}: {ip} is outside {subnet}"
        assert ip != gateway, f"{host} uses the gateway address {gateway}"


def test_local_stack_publishes_only_the_load_balancers_and_monitoring_on_loopback() -> None:
    local_up = (ROOT / "ansible" / "local_up.yml").read_text()
    rest = local_up[local_up.index("kit_container_ports:") :]
    published = rest[: rest.index("kit_container_labels:")]
    # HTTP and HTTPS of each lb; Prometheus and Alertmanager of the first monitoring host.
    assert "if item in groups['lb'] else []" in published
    assert "if item == (groups['monitoring'] | default([]) + [''])[0] else []" in published
    assert published.count("'127.0.0.1:'") == 4
    # The shared container definition publishes those ports and no other.
    container = (ROOT / "ansible" / "tasks" / "systemd_container.yml").read_text()
    assert container.count("published_ports:") == 1
    assert 'published_ports: "{{ kit_container_ports | default(omit) }}"' in container


@pytest.mark.parametrize("count", [1, 3, 9])
def test_local_lb_count_is_a_setting_not_an_edit(
    count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIT_LB_COUNT", str(count))
    data = inventory_list(ROOT / "inventories" / "local")
    lbs = sorted(hosts_of(data, "lb"))
    assert lbs == sorted(f"kit-lb-{n}" for n in range(1, count + 1))
    addresses = {data["_meta"]["hostvars"][h]["private_ip"] for h in hosts_of(data, "all")}
    assert len(addresses) == len(hosts_of(data, "all"))


@pytest.mark.parametrize("bad", ["0", "10", "two"])
def test_local_lb_count_out_of_range_is_refused_by_name(bad: str) -> None:
    env = {**os.environ, "KIT_LB_COUNT": bad}
    script = ROOT / "inventories" / "local" / "lb_hosts.py"
    result = subprocess.run(
        [sys.executable, script, "--list"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "KIT_LB_COUNT" in result.stderr
    assert bad in result.stderr


@pytest.mark.parametrize(
    "inventory", [p for p in INVENTORIES if p.name != "local"], ids=lambda p: p.name
)
def test_remote_inventories_connect_over_ssh_and_say_their_environment(inventory: Path) -> None:
    data = inventory_list(inventory)
    for host in hosts_of(data, "all"):
        hostvars = data["_meta"]["hostvars"][host]
        assert hostvars.get("ansible_connection", "ssh") == "ssh", host
        assert hostvars.get("kit_environment") == inventory.name, host
