"""The postgresql role's decisions that need no server: when a db_replicas host may be
wiped and rebuilt, and the name of its replication slot. Each fake host below stands for one
state of a db_replicas host, as roles/postgresql/tasks/replica.yml reads it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from conftest import run_ansible

# host: (same cluster as the primary, in recovery, its own databases, rebuild allowed)
STATES = {
    "standby": (True, True, "", False),
    "fresh": (False, False, "", False),
    "promoted": (True, False, "", False),
    "promoted-rebuild": (True, False, "", True),
    "foreign": (False, False, "shop", False),
    "foreign-rebuild": (False, False, "shop", True),
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, int]]:
    """One run over every state; the output and each host's failed count."""
    tmp = tmp_path_factory.mktemp("postgresql")
    hosts = {
        name: {
            "ansible_connection": "local",
            "__postgresql_same_cluster": same,
            "__postgresql_standby": standby,
            "__postgresql_own_databases": databases,
            "postgresql_replica_rebuild": rebuild,
        }
        for name, (same, standby, databases, rebuild) in STATES.items()
    }
    hosts["Kit-DB-2"] = dict(hosts["standby"])
    inventory = tmp / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"db_replicas": {"hosts": hosts}}}}))
    playbook = tmp / "replica.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Decide as replica.yml does",
                    "hosts": "db_replicas",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Refuse what must not be wiped",
                            "ansible.builtin.include_role": {
                                "name": "postgresql",
                                "tasks_from": "rebuild_guard.yml",
                                "public": True,
                            },
                        },
                        {
                            "name": "Print the slot name",
                            "ansible.builtin.debug": {"msg": "slot={{ __postgresql_slot }}"},
                        },
                    ],
                }
            ],
            sort_keys=False,
        )
    )
    result = run_ansible("ansible-playbook", "-i", str(inventory), str(playbook))
    output = result.stdout + result.stderr
    failed = {
        host: int(count)
        for host, count in re.findall(r"^(\S+)\s+:.*\bfailed=(\d+)", output, flags=re.M)
    }
    assert set(failed) == set(hosts), output
    return output, failed


@pytest.mark.parametrize(
    ("host", "refused"),
    [
        ("standby", False),
        ("fresh", False),
        ("promoted", True),
        ("promoted-rebuild", False),
        ("foreign", True),
        ("foreign-rebuild", False),
    ],
)
def test_postgresql_replica_rebuild_overrides_every_refusal_to_wipe_a_replica(
    run: tuple[str, dict[str, int]], host: str, refused: bool
) -> None:
    output, failed = run
    assert failed[host] == int(refused), output


def test_the_refusals_name_the_host_the_reason_and_the_flag(
    run: tuple[str, dict[str, int]],
) -> None:
    output, _ = run
    assert "promoted is in db_replicas but was promoted" in output
    assert "foreign is in db_replicas but holds databases of its own (shop)" in output
    assert output.count("set postgresql_replica_rebuild=true for this host") == 2


def test_the_slot_of_a_replica_is_its_host_name_sanitised(
    run: tuple[str, dict[str, int]],
) -> None:
    output, _ = run
    assert "slot=kit_db_2" in output
    assert "slot=promoted_rebuild" in output


def cluster_version_run(tmp: Path, versions: dict[str, dict[str, int]]) -> tuple[int, str]:
    """The cluster version check on a primary and a replica of this machine (facts gathered),
    each with the inventory variables given; the run's exit code and output."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    hosts = {name: local | extra for name, extra in versions.items()}
    primary, replica = sorted(hosts)
    inventory = tmp / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "db": {
                            "children": {
                                "db_primary": {"hosts": {primary: hosts[primary]}},
                                "db_replicas": {"hosts": {replica: hosts[replica]}},
                            }
                        }
                    }
                }
            }
        )
    )
    playbook = tmp / "cluster_version.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Check the cluster's versions as the role does",
                    "hosts": "db",
                    "tasks": [
                        {
                            "name": "Refuse two major versions",
                            "ansible.builtin.include_role": {
                                "name": "postgresql",
                                "tasks_from": "cluster_version.yml",
                            },
                        }
                    ],
                }
            ]
        )
    )
    result = run_ansible("ansible-playbook", "-i", str(inventory), str(playbook))
    return result.returncode, result.stdout


def test_a_cluster_of_one_release_passes(tmp_path: Path) -> None:
    code, output = cluster_version_run(tmp_path, {"db-1": {}, "db-2": {}})
    assert code == 0, output


def test_a_replica_of_another_major_version_is_refused(tmp_path: Path) -> None:
    code, output = cluster_version_run(tmp_path, {"db-1": {}, "db-2": {"postgresql_version": 99}})
    assert code != 0
    assert "different PostgreSQL major versions" in output
    assert "db-2: 99" in output
