"""Once an environment's vault is encrypted, as the README says to, the commands the README
prints for it carry the vault password, and they run with it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml
from conftest import ROOT, load_yaml, run_ansible

sys.path.insert(0, str(ROOT / "scripts"))
import new_env

VAULT_OPTION = re.compile(r"--ask-vault-pass|--vault-password-file")


def test_readme_commands_on_real_environments_carry_the_vault_password() -> None:
    commands = [
        line
        for line in (ROOT / "README.md").read_text().splitlines()
        if re.search(r"ansible-playbook ansible/(site|deploy)\.yml -i inventories/(?!local)", line)
    ]
    assert commands
    missing = [line.strip() for line in commands if not VAULT_OPTION.search(line)]
    assert not missing, missing


def test_an_encrypted_vault_needs_the_password_and_runs_with_a_password_file(
    tmp_path: Path,
) -> None:
    env = tmp_path / "vaulted"
    new_env.render("vaulted", env)
    vault = env / "group_vars" / "all" / "vault.yml"
    vault.write_text(
        yaml.safe_dump({name: f"{name}-0123456789abcdef" for name in load_yaml(vault)})
    )
    kit = env / "group_vars" / "all" / "kit.yml"
    kit.write_text(
        kit.read_text().replace(
            "firewall_ssh_networks: []", 'firewall_ssh_networks: ["10.8.0.0/24"]'
        )
    )
    password = tmp_path / "kit-vault-vaulted"
    password.write_text("correct horse battery staple\n")
    password.chmod(0o600)
    encrypted = run_ansible(
        "ansible-vault", "encrypt", str(vault), "--vault-password-file", str(password)
    )
    assert encrypted.returncode == 0, encrypted.stderr
    assert vault.read_text().startswith("$ANSIBLE_VAULT;")

    refused = run_ansible("ansible-playbook", "ansible/preflight.yml", "-i", str(env))
    assert refused.returncode != 0
    assert "no vault secrets found" in refused.stdout + refused.stderr

    with_file = run_ansible(
        "ansible-playbook", "ansible/preflight.yml", "-i", str(env),
        "--vault-password-file", str(password),
    )  # fmt: skip
    assert with_file.returncode == 0, with_file.stdout + with_file.stderr

    from_env = run_ansible(
        "ansible-playbook", "ansible/preflight.yml", "-i", str(env),
        env={"ANSIBLE_VAULT_PASSWORD_FILE": str(password)},
    )  # fmt: skip
    assert from_env.returncode == 0, from_env.stdout + from_env.stderr
