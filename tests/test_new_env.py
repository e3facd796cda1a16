"""`make env NAME=...` scaffolds an environment that documents every variable and that
site.yml's pre-flight accepts once its secrets are set, and refuses while they are not."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROLES, ROOT, encrypted_copy, load_yaml, run_ansible

sys.path.insert(0, str(ROOT / "scripts"))
import new_env


@pytest.fixture(scope="module")
def scaffold(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("inventories") / "qa"
    assert new_env.main(["qa", "--output", str(output)]) == 0
    return output


def test_every_role_variable_is_documented_for_its_groups(scaffold: Path) -> None:
    for group, roles in new_env.roles_by_group(ROOT).items():
        path = scaffold / "group_vars" / ("all/roles.yml" if group == "all" else f"{group}.yml")
        text = path.read_text()
        # Nothing is set: every line is a comment, so the file changes no default.
        assert load_yaml(path) is None, path
        for role in roles:
            spec = load_yaml(ROOT / "roles" / role / "meta" / "argument_specs.yml")
            for name in spec["argument_specs"]["main"]["options"]:
                assert re.search(rf"^# {name}:", text, re.M), f"{name} missing from {path}"


def test_every_role_appears_in_some_group(scaffold: Path) -> None:
    placed = {role for roles in new_env.roles_by_group(ROOT).values() for role in roles}
    assert placed == {role.name for role in ROLES}


def test_uncommented_defaults_are_the_roles_defaults(scaffold: Path) -> None:
    text = (scaffold / "group_vars" / "db.yml").read_text()
    block = re.search(r"^# (postgresql_client_groups:\n(?:# .*\n)+)", text, re.M)
    assert block is not None
    value = yaml.safe_load(re.sub(r"^# ", "", block.group(1), flags=re.M))
    defaults = load_yaml(ROOT / "roles" / "postgresql" / "defaults" / "main.yml")
    assert value["postgresql_client_groups"] == defaults["postgresql_client_groups"]


def test_vault_stub_lists_every_secret_as_a_placeholder(scaffold: Path) -> None:
    vault = load_yaml(scaffold / "group_vars" / "all" / "vault.yml")
    production = load_yaml(ROOT / "inventories" / "production" / "group_vars" / "all" / "vault.yml")
    assert set(vault) == set(production)
    assert set(vault.values()) == {"CHANGE-ME"}
    assert load_yaml(scaffold / "group_vars" / "all" / "kit.yml")["kit_environment"] == "qa"


def test_new_environment_is_refused_until_its_secrets_are_set(
    scaffold: Path, tmp_path: Path
) -> None:
    refused = run_ansible("ansible-playbook", "ansible/site.yml", "-i", str(scaffold))
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, output
    assert "firewall_ssh_networks is empty in environment 'qa'" in output
    assert "TASK [common" not in output
    ssh = json.dumps({"firewall_ssh_networks": ["10.8.0.0/24"]})
    refused = run_ansible("ansible-playbook", "ansible/site.yml", "-i", str(scaffold), "-e", ssh)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, output
    assert "is empty or a placeholder in environment 'qa'" in output
    assert "TASK [common" not in output
    vault = load_yaml(scaffold / "group_vars" / "all" / "vault.yml")
    secrets = {name: f"{name}-0123456789abcdef" for name in vault}
    secrets["firewall_ssh_networks"] = ["10.8.0.0/24"]
    plain = run_ansible(
        "ansible-playbook", "ansible/preflight.yml", "-i", str(scaffold), "-e", json.dumps(secrets)
    )
    assert plain.returncode != 0
    assert "vault.yml in environment 'qa' is not encrypted" in plain.stdout
    encrypted, opener = encrypted_copy(scaffold, tmp_path)
    accepted = run_ansible(
        "ansible-playbook", "ansible/preflight.yml", "-i", str(encrypted), *opener,
        "-e", json.dumps(secrets),
    )  # fmt: skip
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


def test_inventory_lists_every_kit_group(scaffold: Path) -> None:
    listed = run_ansible("ansible-inventory", "-i", str(scaffold), "--list")
    assert listed.returncode == 0, listed.stderr
    groups = json.loads(listed.stdout)
    for group in ("lb", "app", "workers", "redis", "db_primary", "db_replicas"):
        assert groups[group]["hosts"], group


@pytest.mark.parametrize(
    ("name", "message"),
    [("Bad-Name", "use a lowercase letter"), ("local", "kit's own local environment")],
)
def test_bad_names_are_refused(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(new_env.Refused, match=message):
        new_env.render(name, tmp_path / name)
    assert not (tmp_path / name).exists()


def test_an_existing_environment_is_never_overwritten(scaffold: Path) -> None:
    before = (scaffold / "hosts.yml").read_text()
    assert new_env.main(["qa", "--output", str(scaffold)]) == 2
    assert (scaffold / "hosts.yml").read_text() == before
