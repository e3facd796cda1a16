"""ansible/db_rebuild_replica.yml rebuilds one database replica: any other host it is given,
or a source other than the primary or the repository, is refused before a host is touched
(the rebuild itself runs in the full topology's test_data.py)."""

from __future__ import annotations

import pytest
from conftest import run_ansible


@pytest.mark.parametrize(
    ("extra", "found"),
    [
        ([], "found replica ''"),
        (["-e", "replica=kit-db-1"], "found replica 'kit-db-1'"),  # the primary
        (["-e", "replica=kit-app-1"], "found replica 'kit-app-1'"),
        (["-e", "replica=kit-db-2", "-e", "source=elsewhere"], "source 'elsewhere'"),
    ],
)
def test_a_host_that_is_not_a_replica_is_refused_before_any_host_is_touched(
    extra: list[str], found: str
) -> None:
    # Every host points at a container that does not exist: should the check ever let the
    # run through, it fails to connect instead of touching a running local stack.
    result = run_ansible("ansible-playbook", "ansible/db_rebuild_replica.yml", *extra,
                         "-e", "ansible_host=kit-no-such-container")  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "replica must name one host of the db_replicas group (kit-db-2)" in output, output
    assert "source be primary or repository" in output, output
    assert found in output, output
    assert "Nothing was changed." in output
    assert "PLAY [Pre-flight" not in output
