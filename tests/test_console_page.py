"""The monitoring role's page of graphs (files/consoles/kit.html): Prometheus can serve it as
a Go template, it loads nothing from another host, and every panel is a valid PromQL query
with a unit the page knows."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT

PAGE = ROOT / "roles" / "monitoring" / "files" / "consoles" / "kit.html"
PROMTOOL_SCRIPT = ROOT / "scripts" / "promtool.sh"
TIERS = ["Load balancer", "App servers", "Database", "PgBouncer", "Redis", "Queues"]
UNITS = {"seconds", "bytes", "percent", "per_second", "count"}
PANELS_BLOCK = re.compile(
    r'<script type="application/json" id="kit-panels">(?P<json>.*?)</script>', re.DOTALL
)


def page() -> str:
    return PAGE.read_text()


def panels() -> list[dict[str, Any]]:
    found = PANELS_BLOCK.search(page())
    assert found, f'{PAGE} has no <script type="application/json" id="kit-panels"> block'
    loaded: list[dict[str, Any]] = json.loads(found.group("json"))
    return loaded


def test_the_page_holds_no_go_template_action() -> None:
    """Prometheus expands a console as a Go template: a pair of opening braces would be run."""
    for number, line in enumerate(page().splitlines(), start=1):
        assert "{{" not in line, f"{PAGE}:{number} holds a Go template action: {line.strip()}"


def test_the_page_loads_nothing_from_another_host() -> None:
    """The monitoring hosts reach no CDN: styles and scripts are inline, queries relative."""
    text = page()
    assert not re.search(r"<(script|img|iframe)[^>]*\ssrc=", text), "an element loads a file"
    assert "<link" not in text, "a stylesheet comes from elsewhere"
    assert "@import" not in text, "a stylesheet comes from elsewhere"
    assert re.findall(r'fetch\("([^"]*)"', text) == ["../api/v1/query_range?", "../api/v1/alerts"]


def test_every_panel_names_its_tier_title_query_unit_and_legend() -> None:
    for panel in panels():
        assert set(panel) <= {"tier", "title", "query", "unit", "legend", "empty"}, panel
        assert panel["tier"] in TIERS, panel
        assert panel["title"], panel
        assert panel["query"], panel
        assert panel["unit"] in UNITS, panel
        assert panel["legend"], panel
        assert all(isinstance(label, str) for label in panel["legend"]), panel


def test_every_tier_has_panels_in_order() -> None:
    seen = [panel["tier"] for panel in panels()]
    assert list(dict.fromkeys(seen)) == TIERS
    assert seen == sorted(seen, key=TIERS.index), "a tier's panels are not together"


@pytest.fixture(scope="module")
def promtool() -> str:
    """A promtool binary: on PATH, or unpacked from Debian's package by scripts/promtool.sh."""
    result = subprocess.run(
        [str(PROMTOOL_SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, f"{PROMTOOL_SCRIPT} found no promtool:\n{result.stderr}"
    return result.stdout.strip().splitlines()[-1]


def test_every_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    """Each query as a recording rule: promtool parses it as Prometheus would."""
    rules = [
        {"record": f"kit_console_panel_{number}", "expr": panel["query"]}
        for number, panel in enumerate(panels())
    ]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "kit-console", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
