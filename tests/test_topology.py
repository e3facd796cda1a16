"""ansible/vars/topology.yml, the one declaration of which roles configure which group, matches
what site.yml does."""

from __future__ import annotations

import re

import yaml
from conftest import ROOT

TOPOLOGY = yaml.safe_load((ROOT / "ansible" / "vars" / "topology.yml").read_text())


def test_site_applies_exactly_the_declared_roles_to_each_group() -> None:
    plays = yaml.safe_load((ROOT / "ansible" / "site.yml").read_text())
    applied: dict[str, list[str]] = {}
    for play in plays:
        roles = [r["role"] if isinstance(r, dict) else r for r in play.get("roles") or []]
        if roles:
            applied.setdefault(play["hosts"], []).extend(roles)

    assert applied == TOPOLOGY["kit_roles_by_group"]


def test_each_declared_inclusion_is_in_the_including_roles_tasks() -> None:
    for role, included in TOPOLOGY["kit_roles_included"].items():
        tasks = "\n".join(p.read_text() for p in (ROOT / "roles" / role / "tasks").glob("*.yml"))
        for other in included:
            pattern = rf"(include|import)_role:\s*\n\s+name: {other}\b"
            assert re.search(pattern, tasks), f"roles/{role}/tasks include no {other} role"
