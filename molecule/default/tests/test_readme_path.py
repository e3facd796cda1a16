"""The README's "Running against real hosts", followed as written against the local stack.

The commands are read from README.md, so a step the README changes is the step tested:
`make env`, the vault password file, `ansible-vault encrypt`, and a `site.yml` run that
reads the encrypted vault through `--vault-password-file`. Only what the README asks the
operator to edit is edited (hosts.yml, how Ansible logs in, firewall_ssh_networks, the
secrets), and the daily upgrades are off, as in the local environment; the hosts are the
stack's containers, reached with `docker exec` instead of SSH. The run converges the
`common` layer, which this environment and the local one configure alike, so it must change
nothing on the converged stack.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import INVENTORY, host_vars, secret

ROOT = Path(__file__).resolve().parents[3]
ENV = "readme_path"
# The site.yml line that converges one layer with the vault password file.
SITE_ONE_LAYER = (
    r"^\s*\.venv/bin/ansible-playbook ansible/site.yml .*"
    r"--vault-password-file ~/\.kit-vault-production --tags common.*$"
)
SECTION = re.compile(r"^## Running against real hosts\n(.*?)^## ", re.DOTALL | re.MULTILINE)


def readme_steps() -> str:
    match = SECTION.search((ROOT / "README.md").read_text())
    assert match, 'README.md has no "## Running against real hosts" section'
    return match.group(1)


def printed(pattern: str) -> str:
    """The one command of the section that matches `pattern` (inline or in a code block),
    with the example environment's name replaced by the test's."""
    text = readme_steps()
    found = [m.group(0) for m in re.finditer(pattern, text, re.MULTILINE)]
    assert len(found) == 1, f"README: expected one command matching {pattern!r}, found {found}"
    command = found[0].split("   #")[0].strip()
    return command.replace("NAME=<name>", f"NAME={ENV}").replace(
        "inventories/production", f"inventories/{ENV}"
    )


def shell(command: str, home: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """A README command as an operator's shell runs it: from the repository's root, with
    the operator's home, and none of the variables Molecule sets for its own runs."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "ANSIBLE_NOCOLOR": "1",
        **extra,
    }
    return subprocess.run(
        ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=900, check=False,
    )  # fmt: skip


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path}: expected {old!r} in the scaffolded file"
    path.write_text(text.replace(old, new, 1))


def hosts_file() -> dict[str, object]:
    """The stack's hosts, in the inventory layout `make env` scaffolds."""

    def group(name: str) -> dict[str, object]:
        hosts = sorted(INVENTORY.get_hosts(name))
        return {"hosts": {h: {"private_ip": str(host_vars(h)["private_ip"])} for h in hosts}}

    return {
        "all": {
            "children": {
                "lb": group("lb"),
                "app": group("app"),
                "workers": group("workers"),
                "redis": group("redis"),
                "db": {"children": {"db_primary": group("db_primary"),
                                    "db_replicas": group("db_replicas")}},
                "monitoring": group("monitoring"),
            }
        }
    }  # fmt: skip


@pytest.fixture(scope="module")
def followed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Every step of the section, in order; the environment is removed afterwards."""
    home = tmp_path_factory.mktemp("operator-home")
    inventory = ROOT / "inventories" / ENV
    shutil.rmtree(inventory, ignore_errors=True)
    results: dict[str, object] = {"home": home, "inventory": inventory}
    try:
        # 1. Scaffold the environment, put the hosts in hosts.yml, set the secrets.
        scaffold = shell(printed(r"make env NAME=<name>"), home)
        assert scaffold.returncode == 0, scaffold.stdout + scaffold.stderr
        (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts_file(), sort_keys=False))
        vault = inventory / "group_vars" / "all" / "vault.yml"
        secrets: dict[str, str] = {}
        for line in vault.read_text().splitlines():
            # Every secret the local environment has; the keys of an S3 backup repository,
            # which neither uses, stay placeholders.
            if line.startswith("vault_") and not line.startswith("vault_pgbackrest_s3_"):
                name = line.split(":", 1)[0]
                secrets[name] = secret(name.removeprefix("vault_"))
                edit(vault, line, f"{name}: {secrets[name]}")
        results["secrets"] = secrets

        # The password file, as the README creates it, then the encryption.
        password_file = printed(r"install -m 600 /dev/null ~/\.kit-vault-production")
        created = shell(f"{password_file} && echo readme-path-password > ~/.kit-vault-production",
                        home)  # fmt: skip
        assert created.returncode == 0, created.stderr
        variable = printed(r"export ANSIBLE_VAULT_PASSWORD_FILE=~/\.kit-vault-production")
        encrypt = shell(
            f"{variable} && "
            + printed(r"\.venv/bin/ansible-vault encrypt inventories/production/[\w/]+\.yml"),
            home,
        )
        assert encrypt.returncode == 0, encrypt.stdout + encrypt.stderr
        results["vault_text"] = vault.read_text()

        # 2. How Ansible logs in (here: docker exec as root) and who may reach SSH.
        kit = inventory / "group_vars" / "all" / "kit.yml"
        edit(kit, "ansible_user: deploy", "ansible_connection: docker\nansible_user: root")
        edit(kit, "ansible_become: true", "ansible_become: false")
        gateway = host_vars(sorted(INVENTORY.get_hosts("all"))[0])["local_stack_gateway"]
        edit(kit, "firewall_ssh_networks: []", f'firewall_ssh_networks: ["{gateway}/32"]')
        # The stack's containers are rebuilt, never upgraded in place: the local environment
        # turns Debian's daily upgrades off (the common scenario tests them), and so does this
        # one, or its run would install them on every host.
        edit(inventory / "group_vars" / "all" / "roles.yml",
             "# common_unattended_upgrades: true", "common_unattended_upgrades: false")  # fmt: skip

        # 3. Converge one layer, the vault read through the password file. Mitogen's strategy,
        # as the local stack's runs use it (an operator opts in the same way): it changes how
        # Ansible talks to the hosts, not what the run reads or does, and saves a minute.
        results["converge"] = shell(printed(SITE_ONE_LAYER), home,
                                    ANSIBLE_STRATEGY="mitogen_linear")  # fmt: skip
        yield results
    finally:
        shutil.rmtree(inventory, ignore_errors=True)


def test_vault_is_encrypted_with_the_password_file(followed: dict[str, object]) -> None:
    text = str(followed["vault_text"])
    secrets = followed["secrets"]
    assert isinstance(secrets, dict)

    assert text.startswith("$ANSIBLE_VAULT;1.1;AES256\n")
    assert len(secrets) >= 9
    assert not [name for name, value in secrets.items() if value in text]


def test_site_run_with_the_vault_password_file_reaches_every_host_and_changes_nothing(
    followed: dict[str, object],
) -> None:
    run = followed["converge"]
    assert isinstance(run, subprocess.CompletedProcess)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]

    recap = dict(re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", run.stdout, re.MULTILINE))
    recap.pop("localhost", None)  # the pre-flight's connection budget play
    assert sorted(recap) == sorted(INVENTORY.get_hosts("all"))
    assert {host for host, changed in recap.items() if changed != "0"} == set()


def test_site_run_without_the_password_refuses_before_touching_a_host(
    followed: dict[str, object],
) -> None:
    command = printed(SITE_ONE_LAYER)
    without = " ".join(
        word
        for word in shlex.split(command)
        if "vault-password-file" not in word and ".kit-vault-production" not in word
    )
    home = followed["home"]
    assert isinstance(home, Path)

    run = shell(without, home)

    assert run.returncode != 0
    assert "Attempting to decrypt but no vault secrets found" in run.stdout + run.stderr
