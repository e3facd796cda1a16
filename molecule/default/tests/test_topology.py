"""The local topology: every inventory host is a running systemd host on one network."""

from __future__ import annotations

from conftest import ALL_HOSTS, INVENTORY

testinfra_hosts = ALL_HOSTS


def test_inventory_has_every_group_of_the_topology() -> None:
    for group in ("lb", "app", "workers", "redis", "db_primary", "db_replicas", "monitoring"):
        assert INVENTORY.get_hosts(group), f"group {group} has no host"


def test_systemd_runs_with_no_failed_unit(host) -> None:
    state = host.run("systemctl is-system-running")
    failed = host.run("systemctl --failed --no-legend --plain").stdout.strip()
    assert state.stdout.strip() == "running", f"systemd is {state.stdout.strip()}; failed: {failed}"


def test_every_private_address_answers(host, private_ips) -> None:
    unreachable = [
        name for name, ip in private_ips.items() if host.run(f"ping -c 1 -W 2 {ip}").rc != 0
    ]
    assert not unreachable, f"unreachable from {host.backend.get_hostname()}: {unreachable}"


def test_private_ip_is_the_hosts_own_address(host, private_ips) -> None:
    name = host.backend.get_hostname()
    addresses = host.run("hostname -I").stdout.split()
    assert private_ips[name] in addresses
