"""The common role across the full topology: what `make up` and the role do together.

The role's own details are checked in roles/common/molecule/default.
"""

from __future__ import annotations

import re

from conftest import ALL_HOSTS

testinfra_hosts = ALL_HOSTS

SYSCTL_FILE = "/etc/sysctl.d/60-kit.conf"


def wanted_sysctls(host) -> dict[str, str]:
    lines = host.file(SYSCTL_FILE).content_string.splitlines()
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {key.strip(): " ".join(value.split()) for key, value in pairs}


def test_network_settings_for_many_connections_are_in_force(host) -> None:
    wanted = wanted_sysctls(host)
    network = {k: v for k, v in wanted.items() if re.match(r"net\.(ipv4\.|core\.somaxconn$)", k)}
    assert network, f"no network settings in {SYSCTL_FILE}"
    in_force = {k: " ".join(host.run(f"sysctl -n {k}").stdout.split()) for k in network}
    assert in_force == network


def test_somaxconn_allows_a_deep_accept_queue(host) -> None:
    assert int(host.run("sysctl -n net.core.somaxconn").stdout) >= 4096


def test_services_start_with_the_raised_open_file_limit(host) -> None:
    wanted = host.run("systemctl show --value -p DefaultLimitNOFILE").stdout.strip()
    soft = host.run("systemd-run --quiet --wait --pipe sh -c 'ulimit -n'")
    assert soft.rc == 0, soft.stderr
    assert int(soft.stdout) == int(wanted) > 1024
