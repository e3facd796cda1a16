"""common's install_held_back entry point checks its input when another role includes it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_ansible


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({}, "missing required arguments: common_held_back_packages"),
        ({"common_held_back_packages": {"pgbouncer": True}}, "common_held_back_packages"),
    ],
)
def test_install_held_back_refuses_a_missing_or_malformed_package_list(
    tmp_path: Path, variables: dict[str, object], message: str
) -> None:
    playbook = tmp_path / "held_back.yml"
    task = {
        "name": "Install with service starts held back",
        "ansible.builtin.include_role": {"name": "common", "tasks_from": "install_held_back"},
    }
    if variables:
        task["vars"] = variables
    playbook.write_text(
        yaml.safe_dump([{"name": "Include", "hosts": "localhost", "gather_facts": False,
                         "tasks": [task]}])
    )  # fmt: skip
    result = run_ansible("ansible-playbook", str(playbook), "--check")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Validating arguments against arg spec 'install_held_back'" in output
    assert message in output, output
    assert "Check which are installed" not in output


def test_every_caller_includes_the_entry_point_by_its_spec_name() -> None:
    callers = [
        path
        for path in ROOT.glob("roles/*/tasks/*.yml")
        if "install_held_back" in path.read_text() and path.parent.parent.name != "common"
    ]
    assert callers
    for path in callers:
        assert "tasks_from: install_held_back\n" in path.read_text(), path
