"""Every role documents its contract: variables typed and described in argument_specs (the
README's variable table is rendered from it: tests/test_role_docs.py)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import ROLES, ROOT, load_yaml

sys.path.insert(0, str(ROOT / "scripts"))
import role_docs

ids = [r.name for r in ROLES]


def spec_options(role: Path) -> dict:
    spec = load_yaml(role / "meta" / "argument_specs.yml")
    return spec["argument_specs"]["main"]["options"]


def defaults(role: Path) -> dict:
    path = role / "defaults" / "main.yml"
    return (load_yaml(path) or {}) if path.exists() else {}


@pytest.mark.parametrize("role", ROLES, ids=ids)
def test_every_default_is_declared_with_a_type_and_description(role: Path) -> None:
    options = spec_options(role)
    undeclared = sorted(set(defaults(role)) - set(options))
    assert not undeclared, f"{role.name}: defaults missing from argument_specs: {undeclared}"
    for name, option in options.items():
        assert option.get("type"), f"{role.name}: {name} has no type"
        assert role_docs.description(option), f"{role.name}: {name} has no description"


@pytest.mark.parametrize("role", ROLES, ids=ids)
def test_every_optional_variable_has_a_default(role: Path) -> None:
    """What the README's Default column shows comes from defaults/main.yml; only a required
    option may be absent from it."""
    options = spec_options(role)
    missing = [
        name
        for name, option in options.items()
        if name not in defaults(role) and not option.get("required")
    ]
    assert not missing, f"{role.name}: options without a value in defaults/main.yml: {missing}"


@pytest.mark.parametrize("role", ROLES, ids=ids)
def test_every_public_variable_carries_the_role_name(role: Path) -> None:
    prefix = role.name + "_"
    wrong = [name for name in spec_options(role) if not name.startswith(prefix)]
    assert not wrong, f"{role.name}: variables without the {prefix} prefix: {wrong}"


@pytest.mark.parametrize("role", ROLES, ids=ids)
def test_role_has_its_own_molecule_scenario(role: Path) -> None:
    scenario = role / "molecule" / "default"
    assert (scenario / "molecule.yml").exists()
    assert list((scenario / "tests").glob("test_*.py")), f"{role.name}: scenario has no tests"


@pytest.mark.parametrize("role", ROLES, ids=ids)
def test_templates_carry_the_managed_marker(role: Path) -> None:
    """Config files open with it as a comment (scripts right after their #! line); raw files
    (an HTTP error page) carry it inside; a format that takes no comments (a Redis ACL file)
    says so in a template comment instead."""
    for template in (role / "templates").glob("*.j2"):
        text = template.read_text()
        if text.startswith("{# An ACL file takes no comments"):
            continue
        if text.startswith("HTTP/"):
            assert "{{ ansible_managed }}" in text, template
        else:
            lines = text.splitlines()
            first = lines[1] if lines[0].startswith("#!") else lines[0]
            assert re.search(r"ansible_managed\s*\|\s*comment", first), template


@pytest.mark.parametrize("role", ROLES, ids=ids)
def test_every_entry_point_variable_is_typed_and_documented(role: Path) -> None:
    """Task files other roles include (tasks_from) declare their inputs as entry points."""
    specs = load_yaml(role / "meta" / "argument_specs.yml")["argument_specs"]
    readme = (role / "README.md").read_text()
    for entry_point, spec in specs.items():
        if entry_point == "main":
            continue
        assert (role / "tasks" / f"{entry_point}.yml").exists(), f"{role.name}: {entry_point}"
        for name, option in spec.get("options", {}).items():
            assert option.get("type"), f"{role.name} {entry_point}: {name} has no type"
            assert option.get("description"), f"{role.name} {entry_point}: {name} undescribed"
            assert name.startswith(role.name + "_"), f"{role.name} {entry_point}: {name}"
            assert f"`{name}`" in readme, f"{role.name}/README.md does not document {name}"
