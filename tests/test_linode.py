"""Provisioning on Linode and the production inventory, against a local stand-in for the
Linode API (tests/linode_standin.py): the kit's own playbook and inventory configuration,
and the bundled module and plugin, run unchanged; only HTTPS_PROXY and the CA bundle send
their requests to the stand-in instead of api.linode.com."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, encrypted_copy, run_ansible
from linode_standin import LinodeStandIn

sys.path.insert(0, str(ROOT / "scripts"))
import new_env

TOKEN = "kit-test-token-0123456789"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKitTestKeyOnlyForTheStandIn kit@test"
SPEC = {"lb": 1, "app": 2, "workers": 1, "redis": 1, "db_primary": 1, "db_replicas": 1}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LinodeStandIn]:
    with LinodeStandIn(tmp_path_factory.mktemp("linode"), TOKEN) as standin:
        yield standin


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("inventories") / "qa"
    new_env.render("qa", output, provider="linode")
    # The environment's description as a user would edit it: a key, no SSH wait (the
    # stand-in's addresses are documentation addresses nobody answers on).
    spec = output / "group_vars" / "all" / "linode.yml"
    text = spec.read_text().replace(
        "linode_authorized_keys: []", f'linode_authorized_keys: ["{KEY}"]'
    )
    spec.write_text(text.replace("linode_wait_for_ssh: true", "linode_wait_for_ssh: false"))
    return output


def plain(value: object) -> object:
    """A value of `ansible-inventory --list`, which marks what came from the API as unsafe."""
    if isinstance(value, dict) and set(value) == {"__ansible_unsafe"}:
        return value["__ansible_unsafe"]
    return value


def provision(
    environment: Path, api: LinodeStandIn, *extra: str, token: str = TOKEN
) -> subprocess.CompletedProcess[str]:
    env = api.env | {"LINODE_ACCESS_TOKEN": token}
    return run_ansible(
        "ansible-playbook", "ansible/provision.yml", "-i", str(environment), *extra, env=env
    )


def test_provisioning_creates_what_the_environment_describes(
    environment: Path, api: LinodeStandIn
) -> None:
    result = provision(environment, api)
    assert result.returncode == 0, result.stdout + result.stderr
    created = [body for method, path, body in api.account.requests if method == "POST"]
    assert len(created) == sum(SPEC.values())
    # Root logs in with the keys only: no root password is set, so none can be printed.
    assert not [body for body in created if body and "root_pass" in body]
    by_label = {body["label"]: body for body in created if body}
    assert sorted(by_label) == sorted(
        f"qa-{group.replace('_', '-')}-{n}"
        for group, count in SPEC.items()
        for n in range(1, count + 1)
    )
    for body in by_label.values():
        assert body["region"] == "eu-central"
        assert body["image"] == "linode/debian13"
        assert body["authorized_keys"] == [KEY]
        assert body["private_ip"] is True
        assert "kit-env-qa" in body["tags"]
    assert by_label["qa-db-primary-1"]["type"] == "g6-standard-4"
    assert by_label["qa-app-2"]["tags"] == ["kit-env-qa", "app"]


def test_a_second_run_creates_nothing(environment: Path, api: LinodeStandIn) -> None:
    before = api.count("POST")
    result = provision(environment, api)
    assert result.returncode == 0, result.stdout + result.stderr
    assert api.count("POST") == before
    assert "changed=0" in result.stdout


def test_inventory_groups_come_from_tags_and_private_ip_is_set(
    environment: Path, api: LinodeStandIn
) -> None:
    listed = run_ansible("ansible-inventory", "-i", str(environment), "--list", env=api.env)
    assert listed.returncode == 0, listed.stderr
    inventory = json.loads(listed.stdout)
    hostvars = inventory["_meta"]["hostvars"]
    assert sorted(inventory["app"]["hosts"]) == ["qa-app-1", "qa-app-2"]
    assert inventory["db_primary"]["hosts"] == ["qa-db-primary-1"]
    assert inventory["db_replicas"]["hosts"] == ["qa-db-replicas-1"]
    assert sorted(inventory["db"]["hosts"]) == ["qa-db-primary-1", "qa-db-replicas-1"]
    assert len(hostvars) == sum(SPEC.values())
    for name, variables in hostvars.items():
        assert str(plain(variables["private_ip"])).startswith("192.168."), name
        assert str(plain(variables["ansible_host"])).startswith("203.0.113."), name
        assert variables["kit_environment"] == "qa"
    addresses = [plain(variables["private_ip"]) for variables in hostvars.values()]
    assert len(set(addresses)) == len(addresses)


def test_site_pre_flight_accepts_the_provisioned_fleet_once_secrets_are_set(
    environment: Path, api: LinodeStandIn, tmp_path: Path
) -> None:
    ssh = json.dumps({"firewall_ssh_networks": ["10.8.0.0/24"]})
    refused = run_ansible(
        "ansible-playbook", "ansible/site.yml", "-i", str(environment), "-e", ssh, env=api.env
    )
    assert refused.returncode != 0
    assert "is empty or a placeholder in environment 'qa'" in refused.stdout + refused.stderr
    vault = yaml.safe_load((environment / "group_vars" / "all" / "vault.yml").read_text())
    secrets = {name: f"{name}-0123456789abcdef" for name in vault}
    secrets["firewall_ssh_networks"] = ["10.8.0.0/24"]
    encrypted, opener = encrypted_copy(environment, tmp_path)
    accepted = run_ansible(
        "ansible-playbook", "ansible/preflight.yml", "-i", str(encrypted), *opener,
        "-e", json.dumps(secrets), env=api.env,
    )  # fmt: skip
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


def test_a_bad_token_fails_with_the_api_answer(environment: Path, api: LinodeStandIn) -> None:
    result = provision(environment, api, token="not-the-token")
    assert result.returncode != 0
    assert "Invalid Token" in result.stdout + result.stderr


def test_missing_keys_are_refused_before_any_call(environment: Path, api: LinodeStandIn) -> None:
    before = len(api.account.requests)
    result = provision(environment, api, "-e", json.dumps({"linode_authorized_keys": []}))
    assert result.returncode != 0
    assert "linode_authorized_keys must list at least one public key" in result.stdout
    # Only the inventory's listing reached the API, no create.
    assert all(method == "GET" for method, _, _ in api.account.requests[before:])


def test_destroy_needs_the_environment_name_then_deletes_every_instance(
    environment: Path, api: LinodeStandIn
) -> None:
    wrong = provision(environment, api, "-e", "linode_destroy=production")
    assert wrong.returncode != 0
    assert "set it to this environment's name, 'qa'" in wrong.stdout
    assert len(api.account.instances) == sum(SPEC.values())
    gone = provision(environment, api, "-e", "linode_destroy=qa")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert api.account.instances == {}
    deletes = [path for method, path, _ in api.account.requests if method == "DELETE"]
    assert len(deletes) == sum(SPEC.values())
