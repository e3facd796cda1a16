"""Facts one layer publishes for another are computed in every run, never read from an
earlier one, and the application's environment is never rendered without them.

The playbooks run against the local inventory with every host on this machine
(`ansible_connection=local`): the plays gather facts and publish endpoints exactly as on the
containers, and nothing here changes a host (the refusals run in check mode).
"""

from __future__ import annotations

import configparser
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, run_ansible

# Every host of the inventory is this machine, through its own Python.
ON_THIS_MACHINE = json.dumps(
    {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
)
# Playbooks that only touch the controller (containers, the Linode API), or are imported.
NOT_ON_THE_HOSTS = {
    "local_up.yml",
    "local_down.yml",
    "provision.yml",
    "preflight.yml",
    "endpoints.yml",
    # Pieces of deploy.yml and site.yml, imported by them (the rolling path after their
    # endpoints: test_the_rolling_play_comes_after_the_endpoints).
    "deploy_checks.yml",
    "roll.yml",
}
PUBLISHED = (
    "redis_endpoints",
    "postgresql_endpoint",
    "pgbouncer_endpoint",
    "app_gunicorn_listeners",
)


def run_playbook(tmp_path: Path, plays: list[dict], *args: str) -> subprocess.CompletedProcess[str]:
    """Write the plays to a playbook and run it on the local inventory with no fact cache
    of any earlier run (a fresh, empty cache directory should the cache be persistent)."""
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    return run_ansible(
        "ansible-playbook", str(playbook), "-i", "inventories/local",
        "-e", ON_THIS_MACHINE, *args,
        env={"ANSIBLE_CACHE_PLUGIN_CONNECTION": str(tmp_path / "no-facts")},
    )  # fmt: skip


def test_facts_live_for_one_run_only() -> None:
    """A persistent fact cache made a deploy's result depend on what ran before it."""
    config = configparser.ConfigParser()
    config.read(ROOT / "ansible.cfg")
    assert config.get("defaults", "fact_caching") == "memory"


@pytest.mark.parametrize("playbook", ["deploy.yml", "site.yml"])
def test_the_rolling_play_comes_after_the_endpoints(playbook: str) -> None:
    plays = yaml.safe_load((ROOT / "ansible" / playbook).read_text())
    imports = [play.get("ansible.builtin.import_playbook") for play in plays]
    assert imports.index("endpoints.yml") < imports.index("roll.yml")


@pytest.mark.parametrize(
    "playbook",
    sorted(p.name for p in (ROOT / "ansible").glob("*.yml") if p.name not in NOT_ON_THE_HOSTS),
)
def test_every_playbook_on_the_hosts_computes_the_endpoints_first(playbook: str) -> None:
    plays = yaml.safe_load((ROOT / "ansible" / playbook).read_text())
    imports = [play.get("ansible.builtin.import_playbook") for play in plays]
    assert "endpoints.yml" in imports, f"{playbook} does not import endpoints.yml"
    # A play that applies a role or reads a published fact comes after the import.
    readers = [
        n
        for n, play in enumerate(plays)
        if imports[n] is None
        and (
            "roles" in play
            or re.search("include_role|" + "|".join(PUBLISHED), yaml.safe_dump(play))
        )
    ]
    assert readers, f"{playbook}: no play reads the endpoints"
    assert imports.index("endpoints.yml") < readers[0], (
        f"{playbook}: import endpoints.yml before its plays that read them"
    )


def test_a_cold_run_renders_every_url_into_the_environment(tmp_path: Path) -> None:
    out = tmp_path / "env"
    out.mkdir()
    result = run_playbook(
        tmp_path,
        [
            {"ansible.builtin.import_playbook": str(ROOT / "ansible" / "endpoints.yml")},
            {
                "name": "Render the application's environment as the app and rq_worker roles do",
                "hosts": "app:workers",
                "gather_facts": False,
                "tasks": [
                    {
                        "name": "Load the app role's variables and check the endpoints",
                        "ansible.builtin.include_role": {
                            "name": "app",
                            "tasks_from": "require_endpoints.yml",
                            "public": True,
                        },
                    },
                    {
                        "name": "Render the environment file",
                        "ansible.builtin.template": {
                            "src": str(ROOT / "roles" / "app" / "templates" / "env.j2"),
                            "dest": f"{out}/{{{{ inventory_hostname }}}}",
                            "mode": "0600",
                        },
                    },
                ],
            },
            {
                "name": "Count the gunicorn instances as the smoke test does",
                "hosts": "lb",
                "gather_facts": False,
                "tasks": [
                    {
                        "name": "Print the instances",
                        "ansible.builtin.debug": {
                            "msg": "instances={{ groups['app'] | map('extract', hostvars, "
                            "'app_gunicorn_listeners') | map('length') | sum }}"
                        },
                    }
                ],
            },
        ],
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    rendered = {path.name: path.read_text() for path in out.iterdir()}
    assert sorted(rendered) == ["kit-app-1", "kit-app-2", "kit-workers-1"]
    for host, text in rendered.items():
        for name in (
            "KIT_REDIS_SESSIONS_URL=rediss://app:",
            "KIT_REDIS_QUEUES_URL=rediss://app:",
            "KIT_DATABASE_URL=postgresql://kit_app:",
            "KIT_DATABASE_READ_URL=postgresql://kit_ro:",
        ):
            assert name in text, f"{host}: no {name} in\n{text}"
    # Two app nodes with two instances each (inventories/local/group_vars/app.yml).
    assert "instances=4" in output


def role_tasks_play(hosts: str, role: str, tasks_from: str) -> dict[str, Any]:
    """A play that runs one task file of a role on `hosts`, and nothing before it."""
    return {
        "name": f"Run {role}'s {tasks_from} on {hosts}",
        "hosts": hosts,
        "gather_facts": False,
        "tasks": [
            {
                "name": f"Include {role}'s {tasks_from}",
                "ansible.builtin.include_role": {"name": role, "tasks_from": tasks_from},
            }
        ],
    }


def test_the_environment_is_not_rendered_without_the_redis_endpoints(tmp_path: Path) -> None:
    result = run_playbook(
        tmp_path,
        [
            role_tasks_play("workers", "app", "environment.yml"),
        ],
        "--check",
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "redis_endpoints is not set on kit-redis-1" in output, output
    assert "TASK [app : Render the application's environment]" not in output


def test_the_environment_is_not_rendered_without_the_database_endpoint(tmp_path: Path) -> None:
    result = run_playbook(
        tmp_path,
        [
            role_tasks_play("redis", "redis", "endpoints.yml"),
            role_tasks_play("workers", "app", "environment.yml"),
        ],
        "--check",
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "kit-workers-1: pgbouncer_endpoint is not set" in output, output
    assert "app_database_group" in output
    assert "TASK [app : Render the application's environment]" not in output


def test_a_run_limited_away_from_the_database_hosts_stops_naming_the_fact(
    tmp_path: Path,
) -> None:
    result = run_playbook(
        tmp_path,
        [{"ansible.builtin.import_playbook": str(ROOT / "ansible" / "endpoints.yml")}],
        "--limit",
        "kit-workers-1",
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "PgBouncer's servers are unknown on kit-workers-1" in output, output
    assert "postgresql_endpoint" in output


@pytest.mark.parametrize("fact", PUBLISHED)
def test_published_facts_are_not_kept_between_runs(fact: str) -> None:
    """set_fact's cacheable would put them back in a persistent cache, were one configured."""
    for task_file in (ROOT / "roles").glob("*/tasks/*.yml"):
        for task in yaml.safe_load(task_file.read_text()) or []:
            set_fact = task.get("ansible.builtin.set_fact") or {}
            if fact in set_fact:
                assert not set_fact.get("cacheable"), f"{task_file}: {fact} is cacheable"
