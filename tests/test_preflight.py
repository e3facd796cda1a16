"""Bad input fails in the pre-flight play, naming the variable, before any host is touched."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, encrypted_copy, load_yaml, run_ansible


def secrets_token(name: str) -> str:
    """A stand-in for a real secret: long, random-looking, no placeholder."""
    return hashlib.sha256(name.encode()).hexdigest()[:24]


def real_secrets(environment: str, networks: list[str] | None) -> dict[str, object]:
    """Extra variables giving every secret of an example environment's vault stub a real
    value, and firewall_ssh_networks these networks unless None."""
    vault = load_yaml(ROOT / "inventories" / environment / "group_vars" / "all" / "vault.yml")
    variables: dict[str, object] = {name: secrets_token(name) for name in vault}
    if networks is not None:
        variables["firewall_ssh_networks"] = networks
    return variables


@pytest.mark.parametrize(
    ("inventory", "variable", "value"),
    [
        ("inventories/local", "common_sysctls", ["net.core.somaxconn"]),
        ("inventories/local", "common_nofile_limit", "a lot"),
        ("inventories/local", "common_time_sync", "sometimes"),
        ("inventories/staging", "common_packages", {"curl": True}),
    ],
)
def test_wrong_type_stops_the_run_before_any_host_changes(
    inventory: str, variable: str, value: object
) -> None:
    result = run_ansible(
        "ansible-playbook", "ansible/site.yml", "-i", inventory, "-e", json.dumps({variable: value})
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert variable in output, output
    assert "PLAY [Pre-flight" in output
    # Nothing after the pre-flight play ran: no fact gathering, no role task.
    assert "Gathering Facts" not in output
    assert "TASK [common" not in output


def test_local_inventory_passes_the_pre_flight_checks() -> None:
    result = run_ansible("ansible-playbook", "ansible/preflight.yml", "-i", "inventories/local")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("inventory", ["inventories/staging", "inventories/production"])
def test_placeholder_secrets_are_refused_outside_local(inventory: str) -> None:
    result = run_ansible("ansible-playbook", "ansible/site.yml", "-i", inventory)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "haproxy_stats_password is empty or a placeholder" in output
    assert "vault_haproxy_stats_password" in output
    assert "TASK [common" not in output


def test_real_secrets_pass_the_pre_flight_checks(tmp_path: Path) -> None:
    secrets = real_secrets("production", ["10.8.0.0/24"])
    inventory, opener = encrypted_copy(ROOT / "inventories" / "production", tmp_path)
    result = run_ansible(
        "ansible-playbook", "ansible/preflight.yml", "-i", str(inventory), *opener,
        "-e", json.dumps(secrets),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def assert_site_refused(environment: str, variables: dict[str, object], message: str) -> None:
    """site.yml on an example environment with these extra variables stops in the pre-flight
    with the message, before any role task."""
    result = run_ansible(
        "ansible-playbook", "ansible/site.yml", "-i", f"inventories/{environment}",
        "-e", json.dumps(variables),
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert message in output, output
    assert "TASK [common" not in output


def test_a_vault_file_in_plain_text_is_refused_outside_local() -> None:
    """The same secrets, the example's vault.yml left unencrypted: refused, naming the file."""
    assert_site_refused(
        "production",
        real_secrets("production", ["10.8.0.0/24"]),
        "group_vars/all/vault.yml in environment 'production' is not encrypted",
    )


def test_site_playbook_has_one_play_per_group() -> None:
    result = run_ansible("ansible-playbook", "ansible/site.yml", "--list-hosts", "--list-tags")
    assert result.returncode == 0, result.stderr
    for play in (
        "Load balancers",
        "Application nodes",
        "Background workers",
        "Redis",
        "Databases",
        "Monitoring",
    ):
        assert play in result.stdout, play


def test_the_firewall_comes_before_every_service() -> None:
    """On a first converge no service listens unfiltered: the firewall play follows only
    the pre-flight, the rolling deploy's variable checks, the endpoints and the base system."""
    plays = [p["name"] for p in load_yaml(ROOT / "ansible/site.yml")]
    firewall = plays.index("Firewall on every host")
    assert plays[:firewall] == [
        "Pre-flight checks", "Check the rolling deploy's variables", "Endpoints of every layer",
        "Base system on every host",
    ]  # fmt: skip


def test_the_local_inventory_fits_the_connection_budget_on_every_database_host() -> None:
    """Any database host may lead and take the read-only pools too: 3 nodes x 2 pools x 20
    = 120 on each, against 200 - 3 - 10 = 187."""
    result = run_ansible("ansible-playbook", "ansible/preflight.yml", "-i", "inventories/local")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "(item=kit-db-1: 120 of 187)" in output
    assert "(item=kit-db-2: 120 of 187)" in output


def budget_refusal(tmp: Path, host_vars: dict[str, dict[str, object]], **extra: object) -> str:
    """The output of site.yml on the local inventory with these host variables (an extra
    inventory file) and extra variables, which the pre-flight budget must refuse."""
    overrides = tmp / "overrides.yml"
    overrides.write_text(json.dumps({"all": {"hosts": host_vars}}))
    result = run_ansible(
        "ansible-playbook", "ansible/site.yml", "-i", "inventories/local", "-i", str(overrides),
        "-e", json.dumps(extra),
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "PLAY [Pre-flight - the PgBouncer connection budget]" in output, output
    assert "Nothing was changed." in output, output
    assert "TASK [common" not in output
    return output


def test_pgbouncer_pools_beyond_max_connections_are_refused_on_every_database_host(
    tmp_path: Path,
) -> None:
    # Three PgBouncer nodes x 2 pools x 40 = 240 server connections against 200 - 3 - 10.
    output = budget_refusal(tmp_path, {}, pgbouncer_max_db_connections=40)
    for host in ("kit-db-1", "kit-db-2"):
        assert f"{host} could receive up to 240 server connections" in output
        assert f"On {host}, postgresql_max_connections (200)" in output
    assert "3 nodes x 2 pools of pgbouncer_max_db_connections" in output
    assert "(kit-app-1: 40, kit-app-2: 40, kit-workers-1: 40)" in output
    assert "leaves 187" in output
    assert "Lower pgbouncer_max_db_connections or raise postgresql_max_connections" in output


def test_a_replica_too_small_for_the_fleet_is_refused_by_name(tmp_path: Path) -> None:
    """The replica may become the leader: it must hold what the primary holds."""
    output = budget_refusal(tmp_path, {"kit-db-2": {"postgresql_max_connections": 120}})
    assert "kit-db-2 could receive up to 120 server connections" in output
    assert "On kit-db-2, postgresql_max_connections (120)" in output
    assert "leaves 107" in output
    assert "kit-db-1 could receive" not in output


def test_a_node_s_own_pgbouncer_max_db_connections_is_counted(tmp_path: Path) -> None:
    # 2 x (60 + 20 + 20) = 200 against 187: only kit-app-1's own value makes it too many.
    output = budget_refusal(tmp_path, {"kit-app-1": {"pgbouncer_max_db_connections": 60}})
    assert "kit-db-1 could receive up to 200 server connections" in output
    assert "(kit-app-1: 60, kit-app-2: 20, kit-workers-1: 20)" in output


def test_a_host_both_primary_and_replica_is_refused(tmp_path: Path) -> None:
    extra = tmp_path / "both.yml"
    extra.write_text("all:\n  children:\n    db_replicas:\n      hosts:\n        kit-db-1: {}\n")
    result = run_ansible(
        "ansible-playbook", "ansible/site.yml", "-i", "inventories/local", "-i", str(extra)
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "kit-db-1: the group db_primary (postgresql_primary_group)" in output
    assert "no host to both (found in both: ['kit-db-1'])" in output
    assert "TASK [common" not in output


def test_an_empty_ssh_allow_list_is_refused_outside_local() -> None:
    assert_site_refused(
        "staging",
        real_secrets("staging", []),
        "firewall_ssh_networks is empty in environment 'staging'",
    )


def staging_with(
    firewall_ssh_networks: list[str] | None, tmp: Path, playbook: str = "site.yml"
) -> subprocess.CompletedProcess[str]:
    """A playbook on the staging example, its vault encrypted, with real secrets and, unless
    None, these networks."""
    variables = real_secrets("staging", firewall_ssh_networks)
    inventory, opener = encrypted_copy(ROOT / "inventories" / "staging", tmp)
    return run_ansible(
        "ansible-playbook", f"ansible/{playbook}", "-i", str(inventory), *opener,
        "-e", json.dumps(variables),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("networks", "refused"),
    [
        (["198.51.100.0/24"], "198.51.100.0/24"),
        (["192.0.2.10"], "192.0.2.10"),
        (["10.8.0.0/24", "203.0.113.7/32"], "203.0.113.7/32"),
        (["2001:db8:1::/48"], "2001:db8:1::/48"),
    ],
)
def test_documentation_networks_in_the_ssh_allow_list_are_refused_outside_local(
    networks: list[str], refused: str, tmp_path: Path
) -> None:
    result = staging_with(networks, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"firewall_ssh_networks in environment 'staging' lists {refused}:" in output
    assert "reserved for documentation examples" in output
    assert "Gathering Facts" not in output
    assert "TASK [common" not in output


def test_the_example_inventories_ship_a_network_the_pre_flight_refuses(tmp_path: Path) -> None:
    result = staging_with(None, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "lists 198.51.100.0/24: networks reserved for documentation examples" in output


@pytest.mark.parametrize(
    "networks", [["10.8.0.0/24"], ["192.0.3.0/24", "2001:db9::/32"], ["0.0.0.0/0"]]
)
def test_real_networks_in_the_ssh_allow_list_pass(networks: list[str], tmp_path: Path) -> None:
    result = staging_with(networks, tmp_path, playbook="preflight.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("variables", "refused"),
    [({"haproxy_tls_certificate": ""}, True),
     ({"haproxy_tls_certificate": "", "haproxy_http_only": True}, False),
     ({}, False)],
)  # fmt: skip
def test_an_lb_serving_plain_http_only_is_refused_outside_local_unless_intended(
    variables: dict[str, object], refused: bool, tmp_path: Path
) -> None:
    """The example inventories' lbs have a certificate; without one, haproxy_http_only must
    say plain HTTP is intended."""
    secrets = real_secrets("staging", ["10.8.0.0/24"]) | variables
    inventory, opener = encrypted_copy(ROOT / "inventories" / "staging", tmp_path)
    result = run_ansible(
        "ansible-playbook", "ansible/preflight.yml", "-i", str(inventory), *opener,
        "-e", json.dumps(secrets),
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert (result.returncode != 0) == refused, output
    message = "haproxy_tls_certificate is empty for stg-lb-1 in environment 'staging'"
    assert (message in output) == refused, output
