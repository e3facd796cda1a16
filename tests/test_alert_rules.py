"""The monitoring role's alerting rules, rendered as its template task would: promtool accepts
them, and the unit tests in tests/prometheus/ make every alert fire and keep it silent."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from conftest import ROOT, load_yaml

TEMPLATE = ROOT / "roles" / "monitoring" / "templates" / "rules" / "kit.rules.yml.j2"
DEFAULTS_FILE = ROOT / "roles" / "monitoring" / "defaults" / "main.yml"
UNIT_TESTS = ROOT / "tests" / "prometheus" / "kit.rules.test.yml"
PROMTOOL_SCRIPT = ROOT / "scripts" / "promtool.sh"
# The unit tests name the rendered file by this name, next to them.
RENDERED_NAME = "kit.rules.yml"

# The role's defaults, used until roles/monitoring/defaults/main.yml exists; the unit tests'
# expected values (thresholds in annotations, for: durations) assume these.
ALERT_DEFAULTS: dict[str, Any] = {
    "monitoring_alert_down_for": "1m",
    "monitoring_alert_5xx_ratio": 0.05,
    "monitoring_alert_5xx_for": "5m",
    "monitoring_alert_replication_for": "1m",
    "monitoring_alert_replication_lag_seconds": 30,
    "monitoring_alert_wal_safe_bytes": 1073741824,
    "monitoring_alert_redis_memory_ratio": 0.9,
    "monitoring_alert_disk_free_ratio": 0.1,
    "monitoring_alert_reaper_kills": 5,
    "monitoring_alert_reaper_recycles": 20,
    "monitoring_alert_reaper_window": "10m",
    "monitoring_alert_pgbouncer_waiting_for": "1m",
    "monitoring_alert_queue_depth": 1000,
    "monitoring_alert_queue_for": "10m",
    "monitoring_alert_failed_jobs": 10,
}
# Computed by the role from the inventory's db_replicas group.
ROLE_FACTS: dict[str, Any] = {"__monitoring_db_replicas": 1}


def alert_variables() -> dict[str, Any]:
    """The monitoring_alert_* variables: from the role's defaults once it has them."""
    if not DEFAULTS_FILE.exists():
        return dict(ALERT_DEFAULTS)
    defaults = load_yaml(DEFAULTS_FILE) or {}
    found = {k: v for k, v in defaults.items() if k.startswith("monitoring_alert_")}
    missing = sorted(set(ALERT_DEFAULTS) - set(found))
    assert not missing, f"{DEFAULTS_FILE} should define {missing}; it defines {sorted(found)}"
    return found


def ansible_comment(text: str) -> str:
    """Ansible's `comment` filter, default (plain) style."""
    return "\n".join(["#", *(f"# {line}" for line in text.splitlines()), "#"])


def render_rules() -> str:
    """The template rendered with Ansible's template module settings (trim_blocks on)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE.parent),
        trim_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["comment"] = ansible_comment
    template = env.get_template(TEMPLATE.name)
    return template.render(ansible_managed="Ansible managed", **alert_variables(), **ROLE_FACTS)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def promtool() -> str:
    """A promtool binary: on PATH, or unpacked from Debian's package by scripts/promtool.sh."""
    result = run(str(PROMTOOL_SCRIPT), cwd=ROOT)
    assert result.returncode == 0, f"{PROMTOOL_SCRIPT} found no promtool:\n{result.stderr}"
    path = result.stdout.strip().splitlines()[-1]
    assert Path(path).is_file(), f"{PROMTOOL_SCRIPT} printed {path!r}, not a file"
    return path


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """A directory with the rendered rules and a copy of the unit tests that name them."""
    (tmp_path / RENDERED_NAME).write_text(render_rules())
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    return tmp_path


def rule_alerts(rendered: str) -> set[str]:
    groups = yaml.safe_load(rendered)["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def unit_test_cases() -> list[tuple[str, bool]]:
    """(alert name, whether the case expects it firing) for every alert_rule_test case."""
    cases: list[tuple[str, bool]] = []
    for test in load_yaml(UNIT_TESTS)["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.append((case["alertname"], bool(case.get("exp_alerts"))))
    return cases


def test_rules_pass_promtool_check(promtool: str, rules_dir: Path) -> None:
    result = run(promtool, "check", "rules", RENDERED_NAME, cwd=rules_dir)

    assert result.returncode == 0, result.stdout + result.stderr


def test_unit_tests_pass_against_rendered_rules(promtool: str, rules_dir: Path) -> None:
    result = run(promtool, "test", "rules", UNIT_TESTS.name, cwd=rules_dir)

    assert result.returncode == 0, (
        f"promtool test rules failed (the cases assume the thresholds {alert_variables()}):\n"
        + result.stdout
        + result.stderr
    )


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    alerts = rule_alerts(render_rules())
    cases = unit_test_cases()
    firing = {name for name, fires in cases if fires}
    silent = {name for name, fires in cases if not fires}

    assert alerts - firing == set(), "alerts without a case where they fire"
    assert alerts - silent == set(), "alerts without a case where they stay silent"
    # A case naming no rule passes vacuously when it expects silence.
    assert {name for name, _ in cases} - alerts == set(), "cases naming no alert of the rules"


def test_every_threshold_variable_is_used_by_the_template() -> None:
    text = TEMPLATE.read_text()

    unused = [name for name in [*ALERT_DEFAULTS, *ROLE_FACTS] if name not in text]

    assert unused == []
