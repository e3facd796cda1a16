"""Shared helpers for the repo-level tests: paths and running the pinned Ansible tools."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").exists())
INVENTORIES = sorted(p for p in (ROOT / "inventories").iterdir() if p.is_dir())
KIT_GROUPS = (
    "lb", "app", "workers", "redis", "db", "db_primary", "db_replicas", "monitoring", "etcd"
)  # fmt: skip


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_plugin(relative: str) -> ModuleType:
    """A plugin file of the kit (a filter plugin, say), imported from its path in the repo."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_ansible(
    tool: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """One of the pinned Ansible tools, from the repository root; env adds variables."""
    return subprocess.run(
        [str(BIN / tool), *args],
        cwd=ROOT,
        env=ansible_env() | (env or {}),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def encrypted_copy(inventory: Path, tmp: Path) -> tuple[Path, list[str]]:
    """A copy of an inventory directory (under tmp, same name) with its vault files encrypted
    as an operator would, and the ansible-playbook arguments that open them."""
    copy = tmp / inventory.name
    shutil.copytree(inventory, copy)
    password = tmp / "vault-password"
    password.write_text("kit-test-vault-password\n")
    for vault in sorted(copy.glob("*_vars/**/vault*.yml")):
        result = run_ansible(
            "ansible-vault", "encrypt", "--vault-password-file", str(password), str(vault)
        )
        assert result.returncode == 0, result.stderr
    return copy, ["--vault-password-file", str(password)]


def inventory_list(inventory: Path) -> dict[str, Any]:
    result = run_ansible("ansible-inventory", "-i", str(inventory), "--list")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
